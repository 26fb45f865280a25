"""The event-conditioned chain over history-aware states, backed off to the base chain.

The states themselves (:class:`~markovfault.states.HistorySpec`, their mixed-radix layout and the augmentation
of trajectories) live in :mod:`markovfault.states`; this module estimates the chain over them. Sparse augmented
rows back off to the base chain by hierarchical shrinkage (n-gram style)::

    P(j | a, e) = (N[e, a, j] + gamma * P_base[e, base(a), j]) / (N[e, a, .] + gamma)
    Q(e | a)    = (M[a, e]    + gamma * Q_base[base(a), e])    / (M[a, .]    + gamma)

so an augmented state with no data forecasts exactly like its base state. Forecasts stay exact: the k-step
recursion of :mod:`markovfault.forecast` runs over the augmented states (sparse matrices), and failure is
defined on the base state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .._estimator import Estimator
from .._priors import back_off
from .._recursion import check_horizon, hitting_probabilities, scenario_hitting_probabilities
from ..exceptions import NotFittedError
from ..states._history import HistoryLayout, HistorySpec, augment, count_augmented
from ..trajectories import Trajectories
from ._event import EventMarkovChain, scenario_codes

if TYPE_CHECKING:  # pragma: no cover
    from scipy.sparse import csr_matrix

__all__ = ["HistoryChain", "relayout"]


class HistoryChain(Estimator):
    """Event-conditioned chain over history-aware states, backed off to the base chain.

    Built from the counts ``N[e, a, j]`` (see :func:`count_augmented`); the
    base chain's counts are their sums over augmented states of each base
    state, so one counting pass serves both.

    Attributes
    ----------
    base_ : EventMarkovChain
        The chain over base states.
    n_aug_ : int
        Number of augmented states.
    state_names_ : list of str
        Names of the augmented states.
    is_failure_ : ndarray of bool, shape (n_aug_,)
        Failure defined on the base state.
    """

    def __init__(self, spec: HistorySpec | None = None, alpha: float = 1.0, beta: float = 1.0):
        self.spec, self.alpha, self.beta = spec, alpha, beta

    def fit_from_counts(self, counts: np.ndarray, state_names, event_names, is_failure, *,
                        warn: bool = False, is_end=None) -> "HistoryChain":
        """Set the counts ``N[e, a, j]`` (see :meth:`count`) and estimate the chain and its base chain.

        The same entry as :meth:`EventMarkovChain.fit_from_counts`; ``state_names`` are the base states.
        """
        counts = np.asarray(counts, dtype=np.int64)
        S, E = len(state_names), len(event_names)
        self.layout_ = HistoryLayout(self.spec, S, E)
        if counts.shape != (E, self.layout_.A, S):
            raise ValueError(f"counts have shape {counts.shape}, expected {(E, self.layout_.A, S)}")
        self.counts_ = counts
        base_of = np.arange(self.layout_.A) % S
        base_counts = np.zeros((E, S, S), dtype=np.int64)
        np.add.at(base_counts, (slice(None), base_of), counts)
        self.base_ = EventMarkovChain(alpha=self.alpha, beta=self.beta).fit_from_counts(
            base_counts, state_names, event_names, is_failure, warn=warn, is_end=is_end)
        P, Q = back_off(counts, self.base_.event_matrices_[:, base_of, :],
                        self.base_.event_probs_[base_of], float(self.spec.backoff))
        ends = self.base_.is_end_[base_of]
        if ends.any():  # an end state stays put under every event, whatever its history
            P[:, ends, :] = self.base_.event_matrices_[:, base_of[ends], :]
        self.next_probs_ = P  # P(j | a, e), (E, A, S)
        self.event_probs_ = Q  # (A, E)
        self.is_failure_ = np.asarray(is_failure, bool)[base_of]
        self.base_state_ = base_of
        self.successor_ = self.layout_.successor(np.asarray(is_failure, bool))  # (A, E, S)
        self.state_names_ = self.layout_.names(state_names, event_names)
        self.n_aug_ = self.layout_.A
        self.n_transitions_ = int(counts.sum())
        self._pattern = None
        return self

    def set_counts(self, counts, state_names, event_names, is_failure) -> "HistoryChain":
        """Alias of :meth:`fit_from_counts`."""
        return self.fit_from_counts(counts, state_names, event_names, is_failure)

    # ------------------------------------------------- the chain interface
    @property
    def tail_length(self) -> int:
        """How many last steps of each entity a later batch or forecast needs to know its history."""
        return self.spec.tail + 1

    def encode(self, X: Trajectories, n_events: int | None = None) -> np.ndarray:
        """The augmented state of every step of ``X``; events with codes ``>= n_events`` (unknown to the
        chain) enter as "unknown"."""
        return augment(X, self.spec, n_events=n_events)

    def count(self, X: Trajectories, bins: np.ndarray | None = None, n_bins: int = 1) -> np.ndarray:
        """Counts ``N[e, a, j]`` of ``X`` on its own vocabularies (``(n_bins, E, A, S)`` with ``bins``).
        Works on an unfitted chain."""
        n_aug = HistoryLayout(self.spec, X.n_states, X.n_events).A
        return count_augmented(augment(X, self.spec), X, n_aug, bins, n_bins)

    def add_counts(self, counts: np.ndarray, event_names, *, warn: bool = False) -> "HistoryChain":
        """Add counts ``N[e, a, j]`` laid out on the events ``event_names`` (the chain's events first, new
        ones after, as trajectories encoded with the chain's events are) and re-estimate."""
        names = [str(e) for e in event_names]
        n_states = len(self.base_.state_names_)
        old = relayout(self.counts_, self.spec, self.base_.event_names_, names, n_states)
        order = np.argsort(np.asarray(names, dtype=object), kind="stable")
        sorted_names = [names[k] for k in order]
        merged = relayout(old + np.asarray(counts, dtype=np.int64), self.spec, names, sorted_names,
                          n_states)
        return self.fit_from_counts(merged, self.base_.state_names_, sorted_names,
                                    self.base_.is_failure_, warn=warn,
                                    is_end=self.base_.is_end_)

    @property
    def event_names_(self) -> list:
        return self.base_.event_names_

    def _check_fitted(self) -> None:
        if not hasattr(self, "counts_"):
            raise NotFittedError("This HistoryChain instance is not fitted yet; call fit_from_counts first.")

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "counts_")

    # ----------------------------------------------------------- matrices
    def _matrix(self, weights: np.ndarray) -> csr_matrix:
        """Sparse (A, A) matrix with T[a, f(a, e, j)] += weights[a, e, j].

        The sparsity pattern never changes, so it is built once: later calls
        are one ``bincount`` over the weights (forecasts under many event
        mixes stay cheap).
        """
        A = self.n_aug_
        if getattr(self, "_pattern", None) is None:
            rows = np.broadcast_to(np.arange(A)[:, None, None], self.successor_.shape).ravel()
            keys = rows.astype(np.int64) * A + self.successor_.ravel()
            uniq, inverse = np.unique(keys, return_inverse=True)
            indptr = np.searchsorted(uniq // A, np.arange(A + 1), side="left")
            self._pattern = (inverse, (uniq % A).astype(np.int64), indptr, len(uniq))
        inverse, indices, indptr, nnz = self._pattern
        data = np.bincount(inverse, weights=np.ravel(weights), minlength=nnz)
        import scipy.sparse  # only history-aware chains need it: not loaded for plain ones

        return scipy.sparse.csr_matrix((data, indices, indptr), shape=(A, A))

    def transition_matrix(self, event_probs: np.ndarray | None = None) -> csr_matrix:
        Q = self.event_probs_ if event_probs is None else event_probs
        w = Q[:, :, None] * np.transpose(self.next_probs_, (1, 0, 2))  # (A, E, S)
        return self._matrix(w)

    def event_matrix(self, e: int) -> csr_matrix:
        w = np.zeros((self.n_aug_,) + self.successor_.shape[1:])
        w[:, e, :] = self.next_probs_[e]
        return self._matrix(w)

    def pooled_matrix(self) -> csr_matrix:
        """For an event never seen in training: the event-marginal row."""
        return self.transition_matrix()

    # ----------------------------------------------------------- forecasts
    def failure_probabilities(self, horizon: int, scenario=None, *,
                              event_probs: np.ndarray | None = None) -> np.ndarray:
        """P(fail within h | augmented state), (A, horizon); ``scenario`` the next events by name."""
        self._check_fitted()
        if scenario is None:
            return hitting_probabilities(self.transition_matrix(event_probs), self.is_failure_,
                                         check_horizon(horizon))
        codes = scenario_codes(self, scenario, horizon)
        mats = {c: (self.event_matrix(c) if c >= 0 else self.pooled_matrix()) for c in set(codes.tolist())}
        return scenario_hitting_probabilities([mats[c] for c in codes.tolist()], self.is_failure_)

    def log_likelihood(self, aug: np.ndarray, traj: Trajectories) -> float:
        """Sum over transitions of log P(j | a, e) (events scored with their codes)."""
        N = count_augmented(aug, traj, self.n_aug_)
        nz = N > 0
        with np.errstate(divide="ignore"):
            return float((N[nz] * np.log(self.next_probs_[nz])).sum())


def relayout(counts: np.ndarray, spec: HistorySpec, old_events, new_events, n_states: int) -> np.ndarray:
    """Counts N[e, a, j] re-indexed from one event vocabulary to another.

    Events keep their names; with ``entering_event`` the augmented codes change too, and are mapped
    component by component.
    """
    old_events, new_events = list(old_events), list(new_events)
    if old_events == new_events:
        return counts
    pos = {e: k for k, e in enumerate(new_events)}
    ev_map = np.array([pos[e] for e in old_events], dtype=np.int64)
    old = HistoryLayout(spec, n_states, len(old_events))
    new = HistoryLayout(spec, n_states, len(new_events))
    comps = old.components(np.arange(old.A))
    if spec.entering_event:
        k = len(old.radices) - 1
        v = comps[k]
        comps[k] = np.where(v < len(old_events), ev_map[np.minimum(v, len(ev_map) - 1)],
                            len(new_events))
    a_map = (comps * new.strides[:, None]).sum(axis=0)
    out = np.zeros((len(new_events), new.A, n_states), dtype=np.int64)
    out[np.ix_(ev_map, a_map, np.arange(n_states))] += counts
    return out
