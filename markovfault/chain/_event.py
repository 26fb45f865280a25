"""The event-conditioned Markov chain over plain states (see :mod:`markovfault.chain`)."""

from __future__ import annotations

import logging
import warnings
from typing import Sequence

import numpy as np

from .. import forecast as _forecast
from .._estimator import Estimator
from .._posterior import DEFAULT_DRAWS, Stacked, dirichlet
from .._priors import absorb_ends, check_prior_setting, choose_priors, estimate_tensors
from ..counts import count_codes_by_bin, count_transitions
from ..exceptions import DataWarning, NotFittedError
from ..trajectories import Trajectories
from ._intervals import chain_forecast, steps_bounds

__all__ = ["EventMarkovChain", "estimate_tensors"]  # estimate_tensors: see markovfault._priors

logger = logging.getLogger("markovfault.chain")


class EventMarkovChain(Estimator):
    """Event-conditioned Markov chain with Dirichlet smoothing and shrinkage.

    Learns ``P(S_n = j | S_{n-1} = i, E_n = e)`` for every event type ``e``,
    the event-arrival probabilities ``P(E_n = e | S_{n-1} = i)``, and the
    marginal chain ``T`` that forecasts use when the coming events are
    unknown. See :func:`estimate_tensors` for the formulas.

    Parameters
    ----------
    alpha : float or "auto", default=1.0
        Mass of the uniform Dirichlet prior on each pooled transition row.
        A state never left in training gets the uniform row (with a warning).
        ``"auto"``: the mass under which the pooled rows are most likely around
        the uniform row (the Dirichlet-multinomial evidence;
        :func:`markovfault._priors.choose_priors`).
    beta : float or "auto", default=1.0
        Pseudo-counts shrinking each event-conditioned row toward the pooled
        row (rare (state, event) pairs borrow strength from the pooled row),
        and each event-arrival row toward the global event mix. ``"auto"``:
        the strength under which the event-conditioned rows are most likely
        around the pooled rows of the other events, and a strength of its own
        for the arrival rows around the global mix (how far arrivals stray
        from the global mix is another matter than how far transitions stray
        from the pooled ones). Either is chosen again whenever the counts
        change (``partial_fit``, ``add_counts``).

    Attributes
    ----------
    alpha_, beta_, beta_arrivals_ : float
        The priors used: the given numbers (``beta_arrivals_`` is then
        ``beta``), or those chosen from the counts for ``"auto"``.
    counts_ : ndarray of shape (n_events, n_states, n_states), int64
        Transition counts ``C[e, i, j]``; sufficient statistics.
    event_matrices_ : ndarray of shape (n_events, n_states, n_states)
        Smoothed ``P[e, i, j]``.
    pooled_matrix_ : ndarray of shape (n_states, n_states)
        Smoothed transitions pooled over events.
    event_probs_ : ndarray of shape (n_states, n_events)
        ``Q[i, e] = P(E_n = e | S_{n-1} = i)``.
    transition_matrix_ : ndarray of shape (n_states, n_states)
        Marginal chain ``T = sum_e Q[:, e, None] * P[e]``.
    state_names_ : list of str
    event_names_ : list of str
    is_failure_ : ndarray of shape (n_states,), bool
    n_states_, n_events_ : int
    n_transitions_ : int
        Number of transitions counted.

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"entity": list("aaaabbbb"), "time": [1, 2, 3, 4] * 2,
    ...                       "event": list("xyxyxxyy")})
    >>> traj = Trajectories.from_frame(frame, [0, 1, 0, 1, 0, 0, 1, 1],
    ...                                ["ok", "down"], failure=["down"])
    >>> chain = EventMarkovChain(alpha=0.0, beta=0.0).fit(traj)
    >>> chain
    EventMarkovChain(alpha=0.0, beta=0.0)
    >>> int(chain.counts_.sum())      # 3 transitions per entity
    6

    From ``ok``, 3 of 4 steps went ``down``; from ``down``, 1 of 2 stayed.
    Within two steps from ``ok``: 0.75 + 0.25 * 0.75 = 0.9375.

    >>> chain.failure_probabilities(horizon=2)
    array([[0.75  , 0.9375],
           [0.5   , 0.875 ]])
    """

    def __init__(self, *, alpha: float | str = 1.0, beta: float | str = 1.0):
        self.alpha = alpha
        self.beta = beta

    # ------------------------------------------------------------------ fitting
    def fit(self, X: Trajectories, y=None) -> "EventMarkovChain":
        """Count the transitions of ``X`` and estimate the chain.

        Parameters
        ----------
        X : Trajectories
            Encoded histories.
        y : ignored

        Returns
        -------
        self
        """
        self._check_params()
        _check_trajectories(X)
        names, counts = sort_events(list(X.event_names), self.count(X))
        return self.fit_from_counts(counts, X.state_names, names, X.is_failure, warn=True)

    def partial_fit(self, X: Trajectories, y=None) -> "EventMarkovChain":
        """Add the transitions of ``X`` to the counts and re-estimate.

        Counts are additive, so ``fit(A)`` then ``partial_fit(B)`` equals
        ``fit(A ∪ B)`` exactly (for histories that do not share a run across
        A and B). New event types extend the vocabulary; the states must be
        the same.

        Returns
        -------
        self
        """
        if not hasattr(self, "counts_"):
            return self.fit(X)
        self._check_params()
        _check_trajectories(X)
        if list(X.state_names) != self.state_names_:
            raise ValueError(
                f"partial_fit got states {list(X.state_names)}, but the model was fitted on "
                f"{self.state_names_}; encode new histories with the fitted state extractor."
            )
        return self.add_counts(self.count(X), X.event_names, warn=True)

    def fit_from_counts(
        self,
        counts: np.ndarray,
        state_names: Sequence[str],
        event_names: Sequence[str],
        is_failure: Sequence[bool],
        *,
        warn: bool = False,
        is_end: Sequence[bool] | None = None,
    ) -> "EventMarkovChain":
        """Set the sufficient statistics and estimate the chain: the one entry every fit ends in.

        ``fit``, ``partial_fit``, the Dask back end, :func:`markovfault.load_model` and the backtest's
        folds all count first and then call this (deeptime's ``fit_from_counts``).

        Parameters
        ----------
        counts : ndarray of int of shape (n_events, n_states, n_states)
            ``counts[e, i, j]`` = #(state i, event e, next state j).
        state_names, event_names : sequence of str
        is_failure : sequence of bool of shape (n_states,)
        warn : bool, default=False
            Warn (:class:`~markovfault.exceptions.DataWarning`) about states never left.
        is_end : sequence of bool of shape (n_states,), optional
            End states: absorbing (every row of theirs stays put, whatever was counted), never
            failures (see :func:`markovfault._priors.absorb_ends`).

        Returns
        -------
        self

        Examples
        --------
        >>> chain = EventMarkovChain(alpha=0, beta=0).fit_from_counts(
        ...     np.array([[[3, 1], [2, 0]]]), ["ok", "down"], ["step"], [False, True])
        >>> chain.transition_matrix_
        array([[0.75, 0.25],
               [1.  , 0.  ]])
        """
        self._check_params()
        counts = np.asarray(counts)
        if counts.ndim != 3 or counts.shape[1] != counts.shape[2]:
            raise ValueError(f"counts must have shape (E, S, S), got {counts.shape}")
        if not np.issubdtype(counts.dtype, np.integer) or (counts < 0).any():
            raise ValueError("counts must be non-negative integers")
        if counts.shape[0] != len(event_names) or counts.shape[1] != len(state_names):
            raise ValueError(
                f"counts of shape {counts.shape} do not match {len(event_names)} events "
                f"and {len(state_names)} states"
            )
        self.counts_ = counts.astype(np.int64)
        self.state_names_ = [str(s) for s in state_names]
        self.event_names_ = [str(e) for e in event_names]
        self.is_failure_ = np.asarray(is_failure, dtype=bool).copy()
        self.is_end_ = (np.zeros(len(self.state_names_), dtype=bool) if is_end is None
                        else np.asarray(is_end, dtype=bool).copy())
        if self.is_end_.shape != self.is_failure_.shape or (self.is_end_ & self.is_failure_).any():
            raise ValueError("is_end must mark states that are not failures, one flag per state")
        self._estimate(warn=warn)
        return self

    def set_counts(self, counts, state_names, event_names, is_failure) -> "EventMarkovChain":
        """Alias of :meth:`fit_from_counts` (kept for existing callers)."""
        return self.fit_from_counts(counts, state_names, event_names, is_failure)

    # ------------------------------------------------- the chain interface
    # (the same methods as HistoryChain, so that no caller branches on the chain's type)
    spec = None  # no history-aware states

    @property
    def base_(self) -> "EventMarkovChain":
        """The chain over base states: this chain itself."""
        return self

    @property
    def base_state_(self) -> np.ndarray:
        """The base state of each of the chain's states: the identity."""
        return np.arange(len(self.state_names_))

    @property
    def tail_length(self) -> int:
        """How many last steps of each entity a later batch or forecast needs: one."""
        return 1

    def encode(self, X: Trajectories, n_events: int | None = None) -> np.ndarray:
        """The chain's state at every step of ``X``: the base state itself."""
        return np.asarray(X.state, dtype=np.int64)

    def count(self, X: Trajectories, bins: np.ndarray | None = None, n_bins: int = 1) -> np.ndarray:
        """Transition counts of ``X`` on its own vocabularies, (E, S, S); with ``bins`` (a bin per step)
        (n_bins, E, S, S). Works on an unfitted chain."""
        if bins is None:
            return count_transitions(X)
        return count_codes_by_bin(X.state, X.event, X.run_starts, bins, n_bins, X.n_states, X.n_events)

    def add_counts(self, counts: np.ndarray, event_names: Sequence[str], *,
                   warn: bool = False) -> "EventMarkovChain":
        """Add counts ``(E', S, S)`` on the events ``event_names`` (new events extend the vocabulary,
        kept sorted) and re-estimate."""
        names = list(self.event_names_)
        index = {n: k for k, n in enumerate(names)}
        for name in event_names:
            if str(name) not in index:
                index[str(name)] = len(names)
                names.append(str(name))
        merged = np.zeros((len(names),) + self.counts_.shape[1:], dtype=np.int64)
        merged[: self.counts_.shape[0]] = self.counts_
        np.add.at(merged, np.array([index[str(n)] for n in event_names], dtype=np.int64),
                  np.asarray(counts, dtype=np.int64))
        names, merged = sort_events(names, merged)
        return self.fit_from_counts(merged, self.state_names_, names, self.is_failure_, warn=warn,
                                    is_end=getattr(self, "is_end_", None))

    def transition_matrix(self, event_probs: np.ndarray | None = None) -> np.ndarray:
        """The marginal chain ``T = sum_e Q[i, e] P[e, i, j]``, under other arrival probabilities if given."""
        self._check_fitted()
        if event_probs is None:
            return self.transition_matrix_
        return np.einsum("ie,eij->ij", np.asarray(event_probs, float), self.event_matrices_)

    def event_matrix(self, code: int) -> np.ndarray:
        """``P[e]`` of event code ``code``; the pooled matrix for ``-1`` (an event never seen)."""
        self._check_fitted()
        return self.pooled_matrix_ if code < 0 else self.event_matrices_[code]

    def _check_params(self) -> None:
        for name in ("alpha", "beta"):
            check_prior_setting(name, getattr(self, name))

    def _estimate(self, warn: bool = True) -> None:
        alpha = check_prior_setting("alpha", self.alpha)
        beta = check_prior_setting("beta", self.beta)
        self.alpha_, self.beta_, self.beta_arrivals_ = choose_priors(self.counts_, alpha, beta)
        est = absorb_ends(estimate_tensors(self.counts_, self.alpha_, self.beta_, self.beta_arrivals_),
                          getattr(self, "is_end_", None))
        self.pooled_matrix_ = est["pooled"]
        self.event_matrices_ = est["event_matrices"]
        self.event_probs_ = est["event_probs"]
        self.transition_matrix_ = est["transition_matrix"]
        self.n_states_ = len(self.state_names_)
        self.n_events_ = len(self.event_names_)
        self.n_transitions_ = int(self.counts_.sum())
        unvisited = est["unvisited"]
        if warn and unvisited.any() and self.n_transitions_ > 0:
            names = [self.state_names_[i] for i in np.flatnonzero(unvisited)]
            msg = (
                f"states {names} were never left in training; their transition rows are the "
                f"prior (uniform, alpha={self._alpha_text()}). Forecasts from them are guesses: "
                "collect more history or merge rare states."
            )
            logger.warning(msg)
            warnings.warn(msg, DataWarning, stacklevel=3)

    def _alpha_text(self) -> str:
        if isinstance(self.alpha, str):
            return f"{self.alpha_:.3g}, chosen from the data"
        return str(self.alpha)

    # --------------------------------------------------------------- accessors
    def _check_fitted(self) -> None:
        if not hasattr(self, "counts_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet; call fit first."
            )

    def state_support(self) -> np.ndarray:
        """Observed transitions out of each state, shape (n_states,)."""
        self._check_fitted()
        return self.counts_.sum(axis=(0, 2))

    def event_codes(self, events: Sequence[str]) -> np.ndarray:
        """Codes of event names; unknown events get -1 and a warning.

        A -1 code stands for "an event never seen in training"; forecasts use
        the pooled row for it.
        """
        self._check_fitted()
        index = {n: k for k, n in enumerate(self.event_names_)}
        codes = np.array([index.get(str(e), -1) for e in events], dtype=np.int64)
        unknown = sorted({str(e) for e, c in zip(events, codes) if c < 0})
        if unknown:
            msg = (
                f"events {unknown} were never seen in training; the pooled transition row is "
                f"used for them. Known events: {self.event_names_}."
            )
            logger.warning(msg)
            warnings.warn(msg, DataWarning, stacklevel=3)
        return codes

    def scenario_matrices(self, events: Sequence[str]) -> np.ndarray:
        """Transition matrices for a sequence of next events, shape (k, S, S).

        Unknown events fall back to :attr:`pooled_matrix_` with a warning.
        """
        codes = self.event_codes(events)
        stack = np.concatenate([self.event_matrices_, self.pooled_matrix_[None]], axis=0)
        return stack[np.where(codes < 0, self.n_events_, codes)]

    # --------------------------------------------------------------- forecasts
    def failure_probabilities(
        self, horizon: int, scenario: Sequence[str] | None = None, *, event_probs=None,
        interval: float | None = None, n_draws: int = DEFAULT_DRAWS, random_state=None,
    ):
        """P(at least one failure within the next h steps | current state), h = 1..horizon.

        Parameters
        ----------
        horizon : int
            The largest number of steps ahead. With a ``scenario`` it must not
            exceed the scenario's length (default: the scenario's length).
        scenario : sequence of str, optional
            The next events, in order. Without one, the coming events follow
            the fitted arrival probabilities (marginal chain).
        event_probs : ndarray of shape (n_states, n_events), optional
            Event-arrival probabilities to use instead of :attr:`event_probs_`
            (an expected event mix; see :func:`markovfault.predictor.mix_event_probs`).
            They are taken as given: with an ``interval``, only the transition rows are drawn.
        interval : float, optional
            Also return a posterior interval of this probability (0.9: the 5% and 95% quantiles of
            ``n_draws`` draws of the model's rows from their Dirichlet posteriors;
            :mod:`markovfault._posterior`).
        n_draws : int, default=200
        random_state : int, Generator or None
            Seed of the draws (the same seed, the same bounds).

        Returns
        -------
        ndarray of shape (n_states, horizon), or Bounds
            Entry ``[i, h-1]`` is the probability from state ``i``. With ``interval``, a
            :class:`~markovfault._posterior.Bounds` ``(estimate, lower, upper)`` of such arrays.

        Examples
        --------
        >>> chain = EventMarkovChain(alpha=1, beta=1).fit_from_counts(
        ...     np.array([[[70, 30], [40, 10]]]), ["ok", "down"], ["step"], [False, True])
        >>> bounds = chain.failure_probabilities(1, interval=0.9, random_state=0)
        >>> [round(float(b[0, 0]), 2) for b in bounds]   # from ok: 30 of 100 steps went down
        [0.3, 0.23, 0.37]
        """
        self._check_fitted()
        return chain_forecast(self, horizon, scenario, event_probs, interval, n_draws, random_state)

    # ------------------------------------------------------- posterior draws
    def posterior_draws(self, n_draws: int, rng: np.random.Generator) -> dict:
        """``n_draws`` draws of the rows from their posteriors (see :mod:`markovfault._posterior`): the
        pooled rows ``Dirichlet(C_i + alpha / S)``, each event's rows around the pooled draw
        ``Dirichlet(C_ei + beta P-bar_i)``, the global event mix ``Dirichlet(N)`` and each arrival row
        around it ``Dirichlet(N_i + beta_a g)``; a row without data is its prior, an end state stays put.
        Keys ``pooled`` (D, S, S), ``event_matrices`` (D, E, S, S), ``event_probs`` (D, S, E)."""
        self._check_fitted()
        C = self.counts_.astype(np.float64)
        E, S, _ = C.shape
        pooled = dirichlet(rng, C.sum(axis=0), np.full((n_draws, S, S), 1.0 / S), self.alpha_)
        P = dirichlet(rng, C, np.broadcast_to(pooled[:, None], (n_draws, E, S, S)), self.beta_)
        arrivals = C.sum(axis=2).T  # (S, E)
        mix = dirichlet(rng, arrivals.sum(axis=0), np.full((n_draws, E), 1.0 / E), 0.0)
        Q = dirichlet(rng, arrivals, np.broadcast_to(mix[:, None, :], (n_draws, S, E)),
                      self.beta_arrivals_)
        end = np.flatnonzero(getattr(self, "is_end_", np.zeros(S, dtype=bool)))
        if len(end):
            pooled[:, end] = np.eye(S)[end]
            P[:, :, end] = np.eye(S)[end]
        return {"pooled": pooled, "event_matrices": P, "event_probs": Q}

    def draw_matrix(self, draws: dict, event_probs: np.ndarray | None = None, event: int | None = None):
        """The matrices of ``draws`` (:meth:`posterior_draws`) as one operator over draws x states
        (:class:`~markovfault._posterior.Stacked`): the marginal chain (under the given arrival
        probabilities, if any), or the matrix of event code ``event`` (-1: the pooled rows)."""
        if event is not None:
            return Stacked(draws["pooled"] if event < 0 else draws["event_matrices"][:, event])
        Q = draws["event_probs"] if event_probs is None else np.asarray(event_probs, np.float64)[None]
        return Stacked(np.einsum("dse,desj->dsj", np.broadcast_to(Q, draws["event_probs"].shape),
                                 draws["event_matrices"]))

    def floats_per_draw(self) -> int:
        """Floats one posterior draw holds (its rows and its matrices): what sizes the chunks of draws."""
        E, S = len(self.event_names_), len(self.state_names_)
        return 3 * (E + 2) * S * S

    def predict_proba(
        self, states, horizon: int, scenario: Sequence[str] | None = None
    ) -> np.ndarray:
        """P(fail within h), h = 1..horizon, for entities in the given current states.

        The array-level forecast: one table lookup per entity after
        ``horizon`` matrix-vector products.

        Parameters
        ----------
        states : array-like of int of shape (n_entities,)
            Current state code of each entity.
        horizon : int
        scenario : sequence of str, optional
            The next events (see :meth:`failure_probabilities`).

        Returns
        -------
        ndarray of shape (n_entities, horizon)

        Examples
        --------
        >>> traj = Trajectories.from_codes([0, 1, 0, 0, 0, 1], state_names=["ok", "down"],
        ...                                failure=["down"])
        >>> EventMarkovChain(alpha=0, beta=0).fit(traj).predict_proba([0, 0, 1], 2)
        array([[0.5 , 0.75],
               [0.5 , 0.75],
               [0.  , 0.5 ]])
        """
        table = self.failure_probabilities(horizon, scenario)
        states = np.asarray(states)
        if states.ndim != 1 or not np.issubdtype(states.dtype, np.integer):
            raise TypeError("states must be a 1-d array of integer state codes")
        if states.size and (states.min() < 0 or states.max() >= self.n_states_):
            raise ValueError(f"state codes must lie in 0..{self.n_states_ - 1}")
        return table[states]

    def expected_steps_to_failure(self, *, interval: float | None = None, n_draws: int = DEFAULT_DRAWS,
                                  random_state=None):
        """Expected number of steps until the next failure, per state (inf where
        a failure is not certain to come).

        With ``interval``, a :class:`~markovfault._posterior.Bounds` of the estimate and the posterior
        bounds: the same closed form solved for every draw of the marginal chain at once
        (a batched linear solve). Where failure is not certain under the fitted chain the bounds are inf
        too (the draws keep the fitted chain's zero pattern).

        Examples
        --------
        >>> chain = EventMarkovChain(alpha=1, beta=1).fit_from_counts(
        ...     np.array([[[70, 30], [40, 10]]]), ["ok", "down"], ["step"], [False, True])
        >>> [round(float(b[0]), 2) for b in chain.expected_steps_to_failure(interval=0.9, random_state=0)]
        [3.33, 2.67, 4.41]
        """
        self._check_fitted()
        steps = _forecast.expected_steps_to_failure(self.transition_matrix_, self.is_failure_)
        if interval is None:
            return steps
        return steps_bounds(self, steps, interval, n_draws, random_state)

    def log_likelihood(self, X: Trajectories, *, include_events: bool = False) -> float:
        """Log-likelihood of the transitions of held-out trajectories.

        Parameters
        ----------
        X : Trajectories
            Histories encoded with the same states. Events unseen in training
            are scored with the pooled row (with a warning).
        include_events : bool, default=False
            Also score the event arrivals, ``log Q[i, e]``; unseen events
            then have probability zero and the result is ``-inf``.

        Returns
        -------
        float
            Sum over transitions of ``log P[e, i, j]`` (plus ``log Q[i, e]``).
        """
        self._check_fitted()
        _check_trajectories(X)
        if list(X.state_names) != self.state_names_:
            raise ValueError("X is encoded with other states than the model")
        counts = count_transitions(X)
        codes = self.event_codes(list(X.event_names))
        stack = np.concatenate([self.event_matrices_, self.pooled_matrix_[None]], axis=0)
        mats = stack[np.where(codes < 0, self.n_events_, codes)]
        nz = counts > 0
        with np.errstate(divide="ignore"):
            ll = float((counts[nz] * np.log(mats[nz])).sum())
            if include_events:
                q = np.concatenate([self.event_probs_, np.zeros((self.n_states_, 1))], axis=1)
                qsel = q[:, np.where(codes < 0, self.n_events_, codes)]  # (S, E_X)
                arr = counts.sum(axis=2).T
                m = arr > 0
                ll += float((arr[m] * np.log(qsel[m])).sum())
        return ll

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "counts_")


def sort_events(names: list, counts: np.ndarray) -> tuple[list, np.ndarray]:
    """Events sorted by name, so that the vocabulary (and the codes) do not
    depend on the order in which data arrived."""
    order = np.argsort(np.asarray(names, dtype=object), kind="stable")
    return [names[k] for k in order], counts[order]


def _check_trajectories(X) -> None:
    if not isinstance(X, Trajectories):
        raise TypeError(
            f"expected a markovfault.Trajectories, got {type(X).__name__}; build one with "
            "Trajectories.from_frame or use FaultPredictor, which reads history frames and files."
        )
