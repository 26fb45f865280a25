"""The event-conditioned chain over history-aware states, backed off level by level.

The states themselves (:class:`~markovfault.states.HistorySpec`, their mixed-radix codes, the back-off
hierarchy :meth:`~markovfault.states.HistorySpec.levels` and the counts over seen states) live in
:mod:`markovfault.states._history`; this module estimates the chain over them.

Estimation
----------
Level 0 is the base chain (``alpha``, ``beta``). Each finer level ``L`` sums the counts of its seen
states' descendants, ``N_L[e, c, j]``, and shrinks every row toward its parent's row with that level's
strength ``gamma_L`` (hierarchical shrinkage, n-gram style)::

    P_L(j | c, e) = (N_L[e, c, j] + gamma_L * P_{L-1}(j | parent(c), e)) / (N_L[e, c, .] + gamma_L)
    Q_L(e | c)    = (M_L[c, e]    + gamma_L * Q_{L-1}(e | parent(c)))    / (M_L[c, .]    + gamma_L)

(:func:`markovfault._priors.back_off`, one level at a time). With exogenous components (the group
context, the gap; jointly when both are on), the rows of their next value ``x'`` are counted and backed
off the same way, from the counts ``M_L[c, x']``, and the base rows shrink toward the overall mix of ``x'``
(``alpha``, ``beta``'s arrival strength)::

    R_L(x' | c) = (M_L[c, x'] + gamma_L * R_{L-1}(x' | parent(c))) / (M_L[c, .] + gamma_L)

and the matrix is ``T[a, f(a, e, j, x')] += Q(e | a) P(j | a, e) R(x' | a)`` (:attr:`successor_` then
has a last axis over ``x'``). The likelihoods (:meth:`counts_log_likelihood`) score ``P`` and ``Q``
only. A row without data is exactly its parent's
row. With ``backoff="auto"`` each level's strengths are chosen from the data, bottom-up (each level's prior
already estimated), and a next-state row backs off in two steps (:func:`back_off_split`): whether the next
state is a failure, then which state within its class, each with a strength of its own::

    P_L(F | c, e)    = (N_L[e, c, F] + g_f P_{L-1}(F | parent(c), e)) / (N_L[e, c, .] + g_f)
    P_L(j | c, e, F) = (N_L[e, c, j] + g_c P_{L-1}(j | parent(c), e, F)) / (N_L[e, c, F] + g_c)

(alike for the non-failure states). History changes the failure probability of a row far more than the
rest of it (a handler fails more often right after a failure, and moves among its other states as
before): one strength for the whole row is a compromise that pulls the failure probability back toward the
parent's. The arrival rows and the exogenous rows have strengths of their own (how far a state's
arrivals stray from its parent's has nothing to do with how far its transitions do). Each strength
maximises the leave-one-out likelihood of its level's transitions, in closed form
(:func:`loo_strengths`): every transition is held out of its row *and* of every row below it (the parents
and the base chain, refitted without it), and predicted by the rest. The Dirichlet evidence is not used
here: a level that splits a row where only the failure cells differ moves one direction of the row, and
the evidence charges for every direction; on the simulated failure memory it chose strengths of 1e5,
which erase the memory (``tests/test_history_sparse.py``). Leaving the transition out of the parents too
keeps a parent made of the same counts (a level that adds nothing) from looking like a good prior. The
strengths are reported in :attr:`HistoryChain.backoff_`.

The chain's states
------------------
The chain's states are the seen states (the codes of the counts, in their order: rows ``0..A_seen-1``)
and, after them, every coarser-level state with data and the base states. A seen state without a counted
transition out of it forecasts exactly as its nearest ancestor with data (its rows and successors are that
ancestor's), so counts with zero rows for states seen only later (a backtest fold) forecast as if those
states had never been seen. The next state after ``(e, j)``:

* from a full-level state: its successor code, or, when that was never seen with data, its nearest
  ancestor with data (the coarser levels in turn, down to the base state ``j``);
* from a coarser state of level ``L``: the successor one level finer when the level-``L`` state
  determines it (the oldest lag shifts out, the entering event is the new event, a capped count is known
  after a failure, ...), else the level-``L`` successor, each backed off in the same way.

So the k-step recursion stays exact on a closed chain over seen states, and a state met at predict time
that was never seen forecasts as its nearest seen ancestor, regaining history as its successors do.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .._estimator import Estimator
from .._posterior import DEFAULT_DRAWS, block_diagonal, dirichlet, split_dirichlet
from .._priors import AUTO, STRENGTH_GRID, back_off, maximise_strength
from ..exceptions import NotFittedError
from ..states._history import HistoryCounts, HistoryLayout, HistorySpec, augment, count_augmented
from ..trajectories import Trajectories
from ._event import EventMarkovChain
from ._intervals import chain_forecast

if TYPE_CHECKING:  # pragma: no cover
    from scipy.sparse import csr_matrix

__all__ = ["HistoryChain", "relayout"]

#: The columns of :attr:`HistoryChain.backoff_`: the strengths of each level's rows of whether the next
#: state is a failure, of which state it is (within its class; with a numeric ``backoff``, the whole row),
#: of the arrivals and of the exogenous components' next value (the group context and the gap).
BACKOFF_KINDS = ("failure", "next", "arrivals", "exogenous")


class HistoryChain(Estimator):
    """Event-conditioned chain over the seen history-aware states, backed off level by level.

    Built from the counts ``N[e, a, j]`` over the seen states (:class:`HistoryCounts`, see
    :meth:`count`); the coarser levels' and the base chain's counts are their sums, so one counting
    pass serves them all.

    Attributes
    ----------
    counts_ : HistoryCounts
        The counts, over the seen states ``counts_.codes`` (shape (E, A_seen, S)).
    base_ : EventMarkovChain
        The chain over base states.
    levels_ : list of (str, HistorySpec)
        The back-off hierarchy, from the base state (level 0) up to ``spec``
        (:meth:`HistorySpec.levels`; for a plain spec, as a candidate of
        :func:`~markovfault.selection.select_states`, the state itself backed off
        once to the base chain).
    backoff_ : DataFrame
        The back-off strengths of each level above the base (index: the labels of :attr:`levels_`),
        columns :data:`BACKOFF_KINDS`: ``"failure"`` (whether the next state is a failure) and ``"next"``
        (which state, within failures or within the others), ``"arrivals"`` and ``"exogenous"`` (the
        rows ``R`` of the next group level and gap bin; NaN without either). With a numeric
        ``spec.backoff`` every row backs off whole with that strength (``"failure"`` is NaN); with
        ``"auto"`` each is chosen from the data.
    n_aug_ : int
        Number of chain states: the seen states, then the coarser states with data and the base states.
    n_seen_ : int
        Number of seen states with a counted transition out of them.
    state_levels_, state_codes_ : ndarray of int64, shape (n_aug_,)
        The level of each chain state and its code on that level's layout.
    state_names_ : list of str
        Names of the chain states (``*`` marks what a coarser state does not know).
    next_probs_ : ndarray of shape (E, n_aug_, S)
        ``P(j | a, e)``.
    event_probs_ : ndarray of shape (n_aug_, E)
        ``Q(e | a)``.
    successor_ : ndarray of int64, shape (n_aug_, E, S) or (n_aug_, E, S, X)
        The chain state after base state ``j`` entered by event ``e`` (and, with exogenous
        components, their next joint value ``x'``).
    exo_probs_ : ndarray of shape (n_aug_, X) or None
        ``R(x' | a)``, with exogenous components (the group context, the gap: ``x'`` their joint
        value, :meth:`HistoryLayout.exo_values`).
    is_failure_ : ndarray of bool, shape (n_aug_,)
        Failure defined on the base state.
    base_state_ : ndarray of int64, shape (n_aug_,)
    """

    def __init__(self, spec: HistorySpec | None = None, alpha: float = 1.0, beta: float = 1.0):
        self.spec, self.alpha, self.beta = spec, alpha, beta

    def fit_from_counts(self, counts: HistoryCounts, state_names, event_names, is_failure, *,
                        warn: bool = False, is_end=None) -> "HistoryChain":
        """Set the counts (see :meth:`count`) and estimate every level and the base chain.

        The same entry as :meth:`EventMarkovChain.fit_from_counts`; ``state_names`` are the base states.
        """
        S, E = len(state_names), len(event_names)
        if not isinstance(counts, HistoryCounts):
            raise TypeError(f"a HistoryChain is fitted from HistoryCounts (see HistoryChain.count), "
                            f"got {type(counts).__name__}")
        if counts.shape != (E, len(counts.codes), S):
            raise ValueError(f"counts have shape {counts.shape}, expected {(E, len(counts.codes), S)} "
                             f"for {E} events and {S} states")
        if (counts.counts < 0).any():
            raise ValueError("counts must be non-negative integers")
        spec = self.spec
        self.layout_ = HistoryLayout(spec, S, E)
        V = counts.codes
        if len(V) and (V[0] < 0 or V[-1] >= self.layout_.A):
            raise ValueError(f"history codes lie outside 0..{self.layout_.A - 1} for {E} events and "
                             f"{S} states")
        self.counts_ = counts
        fail = np.asarray(is_failure, dtype=bool)
        self.levels_ = spec.levels()
        if len(self.levels_) == 1:  # a plain spec: the state itself, backed off once to the base chain
            self.levels_ = self.levels_ + [("order=1", spec)]
        lays = [HistoryLayout(s, S, E) for _, s in self.levels_]
        D = len(lays) - 1
        self._exo = lays[D] if lays[D].exo else None
        X = lays[D].n_exo if self._exo is not None else 0
        if X and (counts.exo is None or counts.exo.shape != (len(V), X)):
            raise ValueError(f"the states carry exogenous components ({[n for n, _ in lays[D].exo]}): "
                             f"the counts need their exogenous counts of shape {(len(V), X)} "
                             "(count them with HistoryChain.count)")

        codes, level_counts, parent = _level_counts(V, counts.counts, lays)
        if X:  # M[a, x'] of every level: the same sums
            level_exo = [None] * (D + 1)
            level_exo[D] = counts.exo
            for L in range(D, 0, -1):
                level_exo[L - 1] = _aggregate(level_exo[L][None], parent[L], len(codes[L - 1]))[0]
        self.base_ = EventMarkovChain(alpha=self.alpha, beta=self.beta).fit_from_counts(
            level_counts[0], state_names, event_names, fail, warn=warn, is_end=is_end)
        P, Q, strengths = self._level_rows(level_counts, parent, codes, fail)
        if X:  # R(x' | a): the base rows shrunk toward the overall mix, then level by level
            tot = level_exo[0].sum(axis=0)
            a0, b0 = float(self.base_.alpha_), float(self.base_.beta_arrivals_)
            overall = (tot + a0 / X) / (tot.sum() + a0)
            R = [_shrink(level_exo[0], overall[None, :], b0)]
            strengths["exogenous"] = (loo_strengths(level_exo, parent, self._base_arrivals(level_exo[0], b0, a0))
                                  if self._auto else [None] + [float(self.spec.backoff)] * D)
            for L in range(1, D + 1):
                R.append(_shrink(level_exo[L], R[L - 1][parent[L]], strengths["exogenous"][L]))
        self.backoff_ = pd.DataFrame({kind: strengths[kind][1:] if kind in strengths else np.nan
                                      for kind in BACKOFF_KINDS},
                                     index=pd.Index([label for label, _ in self.levels_[1:]], name="level"),
                                     dtype=np.float64)

        # the chain's states: the seen states, then coarser states with data, then the base states
        totals = [level_counts[L].sum(axis=(0, 2)) for L in range(D + 1)]
        blocks = [(D, V, np.arange(len(V)))]
        blocks += [(L, codes[L][totals[L] > 0], np.flatnonzero(totals[L] > 0)) for L in range(D - 1, 0, -1)]
        blocks.append((0, codes[0], np.arange(S)))
        sizes = [len(b[1]) for b in blocks]
        starts = np.r_[0, np.cumsum(sizes)].astype(np.int64)
        self.state_levels_ = np.concatenate([np.full(n, b[0], dtype=np.int64) for b, n in zip(blocks, sizes)])
        self.state_codes_ = np.concatenate([b[1] for b in blocks]).astype(np.int64)
        self.next_probs_ = np.concatenate([P[L][:, rows, :] for L, _, rows in blocks], axis=1)
        self.event_probs_ = np.concatenate([Q[L][rows] for L, _, rows in blocks], axis=0)
        self.exo_probs_ = (np.concatenate([R[L][rows] for L, _, rows in blocks], axis=0) if X
                           else None)
        self.base_state_ = self.state_codes_ % S
        ends = self.base_.is_end_[self.base_state_]
        if ends.any():  # an end state stays put under every event, whatever its history
            self.next_probs_[:, ends, :] = self.base_.event_matrices_[:, self.base_state_[ends], :]
        self.is_failure_ = fail[self.base_state_]
        self._support = np.concatenate([totals[L][rows] for L, _, rows in blocks])

        # where each level's states with data sit among the chain's states (for the back-off look-ups)
        seen = totals[D] > 0
        self._lays, self._base_start = lays, int(starts[-2])
        self._active = {D: (V[seen], np.flatnonzero(seen))}
        for k, (L, c, _) in enumerate(blocks[1:-1], start=1):
            self._active[L] = (c, starts[k] + np.arange(len(c)))
        self.n_seen_ = int(seen.sum())

        # successors, backed off; a seen state without data moves as its nearest ancestor with data
        succ = np.empty((len(self.state_codes_), E, S) + ((X,) if X else ()), dtype=np.int64)
        for k, (L, c, _) in enumerate(blocks):
            succ[starts[k]:starts[k + 1]] = self._successors(L, c, fail)
        alias = np.flatnonzero(~seen)
        if len(alias):
            succ[alias] = succ[self._resolve(D, V[alias])]
        self.successor_ = succ
        self.n_aug_ = len(self.state_codes_)
        self.n_transitions_ = int(counts.counts.sum())
        # what posterior_draws repeats with draws in place of means
        self._parts = {"level_counts": level_counts, "parent": parent, "strengths": strengths, "fail": fail,
                       "blocks": [(L, rows) for L, _, rows in blocks], "ends": ends,
                       "level_exo": level_exo if X else None}
        self._pattern = None
        self.__dict__.pop("state_names_", None)
        self._names_of = (list(state_names), list(event_names))
        return self

    def _level_rows(self, level_counts: list, parent: list, level_codes: list, fail: np.ndarray):
        """``P_L`` (E, n_L, S) and ``Q_L`` (n_L, E) of every level, each shrunk toward its parent's rows
        (level 0: the base chain's); returns the strengths too, ``{kind: [None, g_1, ...]}``."""
        D = len(level_counts) - 1
        if self._auto:
            g = self._loo_next(level_counts, parent, level_codes, fail)
            g["arrivals"] = loo_strengths([c.sum(axis=2).T for c in level_counts], parent,
                                          self._base_arrivals())
        else:
            g = {kind: [None] + [float(self.spec.backoff)] * D for kind in ("next", "arrivals")}
        P, Q = [self.base_.event_matrices_], [self.base_.event_probs_]
        for L in range(1, D + 1):  # bottom-up: each level's prior is estimated first
            prior_next, prior_arr = P[L - 1][:, parent[L], :], Q[L - 1][parent[L]]
            if self._auto:
                P.append(back_off_split(level_counts[L], prior_next, (g["failure"][L], g["next"][L]), fail))
            else:
                P.append(back_off(level_counts[L], prior_next, prior_arr, g["next"][L])[0])
            Q.append(back_off(level_counts[L], prior_next, prior_arr, g["arrivals"][L])[1])
        return P, Q, g

    @property
    def _auto(self) -> bool:
        return isinstance(self.spec.backoff, str) and self.spec.backoff == AUTO

    def _loo_next(self, level_counts: list, parent: list, level_codes: list, fail: np.ndarray) -> dict:
        """The next-state strengths of ``backoff="auto"`` (:func:`back_off_split`): ``"failure"``, chosen
        by :func:`loo_strengths` over whether each transition of every (event, state) enters a failure,
        and ``"next"``, over which state it enters within its class. End states' rows are fixed, so
        they do not enter."""
        E, _, S = level_counts[0].shape
        F = np.asarray(fail, dtype=bool)
        cls = np.where(F, 0, 1)  # class of each next state: 0 failure, 1 the others
        sizes = [c.shape[1] for c in level_counts]
        X = [c.reshape(-1, S).astype(np.float64) for c in level_counts]
        parents = [None] + [(np.arange(E * sizes[L]) // sizes[L]) * sizes[L - 1] + np.tile(parent[L], E)
                            for L in range(1, len(X))]
        is_end = self.base_.is_end_
        keep = [None] + [np.tile(~is_end[np.asarray(c) % S], E) for c in level_codes[1:]]
        alpha, beta = float(self.base_.alpha_), float(self.base_.beta_)
        pooled = level_counts[0].sum(axis=0).astype(np.float64)  # (S, S)
        two = np.stack([F, ~F], axis=1).astype(np.float64)  # (S, 2): next state -> class
        pooled2, share = pooled @ two, two.sum(axis=0) / S

        def flat(rows, k):  # a base cell left out (estimate_tensors: P-bar, then the event's row)
            i = rows % S
            bar = _left_out(np.stack([pooled[i, k], pooled[i].sum(axis=1)]), 1.0 / S, alpha)
            return _left_out(_cells(X[0], rows, k), bar, beta)

        X2 = [x @ two for x in X]

        def binary(rows, k):  # the same for the class of the next state
            i = rows % S
            bar = _left_out(np.stack([pooled2[i, k], pooled[i].sum(axis=1)]), share[k], alpha)
            return _left_out(_cells(X2[0], rows, k), bar, beta)

        # within a class: one row per (row, class), holding that class's cells
        Xc = [(x[:, None, :] * two.T[None, :, :]).reshape(-1, S) for x in X]
        parents_c = [None] + [(2 * p[:, None] + np.arange(2)).reshape(-1) for p in parents[1:]]
        keep_c = [None] + [np.repeat(k, 2) for k in keep[1:]]

        def within(blocks, k):
            rows = blocks // 2
            return flat(rows, k) / np.maximum(binary(rows, cls[k]), 1e-300)

        return {"failure": loo_strengths(X2, parents, binary, keep),
                "next": loo_strengths(Xc, parents_c, within, keep_c)}

    def _base_arrivals(self, counts=None, strength=None, alpha=0.0):
        """``base`` of :func:`loo_strengths` for rows shrunk toward one overall mix: the arrival rows
        (toward the global event mix, ``beta_arrivals_``), or, given their level-0 counts, the exogenous
        rows (toward their overall mix smoothed with ``alpha``)."""
        if counts is None:
            counts, strength = self.base_.counts_.sum(axis=2).T, float(self.base_.beta_arrivals_)
        counts = np.asarray(counts, dtype=np.float64)
        tot = counts.sum(axis=0)
        K = len(tot)

        def base(rows, k):
            mix = _left_out(np.stack([tot[k], np.full(len(k), tot.sum())]), 1.0 / K, alpha)
            return _left_out(_cells(counts, rows, k), mix, strength)

        return base

    def set_counts(self, counts, state_names, event_names, is_failure) -> "HistoryChain":
        """Alias of :meth:`fit_from_counts`."""
        return self.fit_from_counts(counts, state_names, event_names, is_failure)

    # -------------------------------------------------- back-off look-ups
    def _resolve(self, level: int, codes: np.ndarray) -> np.ndarray:
        """The chain state of level-``level`` codes: the state itself when it has data, else its nearest
        ancestor with data, else its base state."""
        codes = np.asarray(codes, dtype=np.int64)
        flat = codes.reshape(-1)
        out = np.full(len(flat), -1, dtype=np.int64)
        pending = np.arange(len(flat))
        lays = self._lays
        for L in range(level, 0, -1):
            if not len(pending):
                break
            have, node = self._active[L]
            if not len(have):
                continue
            c = lays[level].coarsen(flat[pending], lays[L])
            pos = np.minimum(np.searchsorted(have, c), len(have) - 1)
            hit = have[pos] == c
            out[pending[hit]] = node[pos[hit]]
            pending = pending[~hit]
        out[pending] = self._base_start + flat[pending] % lays[0].S
        return out.reshape(codes.shape)

    def _successors(self, level: int, codes: np.ndarray, fail: np.ndarray) -> np.ndarray:
        """(n, E, S) chain states after each (e, j) from the level-``level`` states ``codes``."""
        lays = self._lays
        exo = self._exo
        own = self._resolve(level, lays[level].successor(fail, codes, exo))
        if level == len(lays) - 1:
            return own
        # one level finer where this level's state determines it: the lowest and the highest
        # finer state consistent with it move to the same finer successor (an exogenous component
        # is drawn afresh, so a coarser state regains it with its own R(x' | a))
        fine = lays[level + 1]
        lo = fine.successor(fail, lays[level].lift(codes, fine, high=False), exo)
        hi = fine.successor(fail, lays[level].lift(codes, fine, high=True), exo)
        same = lo == hi
        own[same] = self._resolve(level + 1, lo[same])
        return own

    def state_index(self, codes: np.ndarray) -> np.ndarray:
        """The chain state (row of every table) of full-level history codes: a seen state's own row, and
        for a state never seen its nearest ancestor with data.

        Examples
        --------
        >>> traj = Trajectories.from_codes([0, 1, 1, 0, 1, 0], state_names=["ok", "down"],
        ...                                failure=["down"])
        >>> chain = HistoryChain(HistorySpec(order=2))
        >>> chain = chain.fit_from_counts(chain.count(traj), ["ok", "down"], ["step"], [False, True])
        >>> names = chain.state_names_
        >>> [names[i] for i in chain.state_index([0, 3, 4])]  # ok|prev=ok (code 0) was never seen
        ['ok|prev=*', 'down|prev=down', 'ok|prev=-']
        """
        self._check_fitted()
        codes = np.asarray(codes, dtype=np.int64)
        V = self.counts_.codes
        if not len(V):
            return self._resolve(len(self._lays) - 1, codes)
        pos = np.minimum(np.searchsorted(V, codes), len(V) - 1)
        found = V[pos] == codes
        out = np.where(found, pos, 0)
        if not found.all():
            out[~found] = self._resolve(len(self._lays) - 1, codes[~found])
        return out

    # ------------------------------------------------- the chain interface
    @property
    def tail_length(self) -> int:
        """How many last steps of each entity a later batch or forecast needs to know its history."""
        return self.spec.tail + 1

    def encode(self, X: Trajectories, n_events: int | None = None) -> np.ndarray:
        """The chain state of every step of ``X``.

        Fitted: rows of the chain's tables (:meth:`state_index`); events with codes ``>= n_events``
        (default: the chain's number of events) enter as "unknown". Unfitted: the states of ``X``'s own
        vocabulary, in the order :meth:`count` lays them out (so the rows of a chain fitted on those
        counts, as in a backtest).
        """
        if hasattr(self, "counts_"):
            E = len(self.base_.event_names_) if n_events is None else n_events
            return self.state_index(augment(X, self.spec, n_events=E))
        return np.unique(augment(X, self.spec, n_events=n_events), return_inverse=True)[1].reshape(-1)

    def count(self, X: Trajectories, bins: np.ndarray | None = None, n_bins: int = 1) -> HistoryCounts:
        """Counts ``N[e, a, j]`` of ``X``, on its own vocabularies. Works on an unfitted chain.

        Without ``bins``: over the states with a counted transition out of them (the sufficient
        statistics; a state met only at a run's last step adds nothing). With ``bins`` (a bin per step),
        ``(n_bins, E, A, S)`` over every state that occurs in ``X``, one vocabulary for every bin (zero
        rows where a state has no transition in a bin): the states whose rows :meth:`encode` gives on an
        unfitted chain, so that chains fitted on sums of bins (the folds of a backtest) share them.
        """
        layout = HistoryLayout(self.spec, X.n_states, X.n_events)
        counts = count_augmented(augment(X, self.spec), X, bins, n_bins, layout=layout)
        return counts.pruned() if bins is None else counts

    def add_counts(self, counts: HistoryCounts, event_names, *, warn: bool = False) -> "HistoryChain":
        """Add counts laid out on the events ``event_names`` (new events extend the vocabulary, which is
        kept sorted; new states extend the seen states) and re-estimate.

        States left without a counted transition after the merge are dropped: they forecast as their
        nearest ancestor either way.
        """
        if not isinstance(counts, HistoryCounts):
            raise TypeError(f"add_counts takes HistoryCounts (see HistoryChain.count), got "
                            f"{type(counts).__name__}")
        names = [str(e) for e in event_names]
        own = list(self.base_.event_names_)
        known = set(own)
        union = own + [e for e in dict.fromkeys(names) if e not in known]
        S = len(self.base_.state_names_)
        merged = (relayout(self.counts_, self.spec, own, union, S)
                  + relayout(counts, self.spec, names, union, S))
        order = np.argsort(np.asarray(union, dtype=object), kind="stable")
        sorted_names = [union[k] for k in order]
        merged = relayout(merged, self.spec, union, sorted_names, S).pruned()
        return self.fit_from_counts(merged, self.base_.state_names_, sorted_names,
                                    self.base_.is_failure_, warn=warn,
                                    is_end=self.base_.is_end_)

    @property
    def event_names_(self) -> list:
        return self.base_.event_names_

    @cached_property
    def state_names_(self) -> list:
        """Names of the chain states (made on first use: a backtest fold never needs them)."""
        self._check_fitted()
        states, events = self._names_of
        full = self._lays[-1]
        out = [""] * self.n_aug_
        for L in np.unique(self.state_levels_):  # a loop over levels
            at = np.flatnonzero(self.state_levels_ == L)
            for i, name in zip(at, self._lays[L].names(states, events, self.state_codes_[at], full)):
                out[i] = name
        return out

    def state_support(self) -> np.ndarray:
        """Observed transitions out of each chain state, at its level (shape (n_aug_,))."""
        self._check_fitted()
        return self._support.copy()

    def _check_fitted(self) -> None:
        if not hasattr(self, "counts_"):
            raise NotFittedError("This HistoryChain instance is not fitted yet; call fit_from_counts first.")

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "counts_")

    # ----------------------------------------------------------- matrices
    def _sparsity(self) -> tuple:
        """The matrices' sparsity pattern (it never changes, so it is built once): where each weight of
        ``(A, E, S[, X])`` lands among the nonzeros, their columns, the row pointers and their number."""
        A = self.n_aug_
        if getattr(self, "_pattern", None) is None:
            rows = np.broadcast_to(np.arange(A).reshape((A,) + (1,) * (self.successor_.ndim - 1)),
                                   self.successor_.shape).ravel()
            keys = rows.astype(np.int64) * A + self.successor_.ravel()
            uniq, inverse = np.unique(keys, return_inverse=True)
            indptr = np.searchsorted(uniq // A, np.arange(A + 1), side="left")
            self._pattern = (inverse.reshape(-1), (uniq % A).astype(np.int64), indptr, len(uniq))
        return self._pattern

    def _matrix(self, weights: np.ndarray) -> csr_matrix:
        """Sparse (A, A) matrix with T[a, f(a, e, j)] += weights[a, e, j]: one ``bincount`` over the
        weights on the fixed pattern (forecasts under many event mixes stay cheap)."""
        A = self.n_aug_
        inverse, indices, indptr, nnz = self._sparsity()
        data = np.bincount(inverse, weights=np.ravel(weights), minlength=nnz)
        import scipy.sparse  # only history-aware chains need it: not loaded for plain ones

        return scipy.sparse.csr_matrix((data, indices, indptr), shape=(A, A))

    def _with_exo(self, w: np.ndarray) -> np.ndarray:
        """Weights (A, E, S) times R(x' | a) for the exogenous components: (A, E, S, X)."""
        if self.exo_probs_ is None:
            return w
        return w[..., None] * self.exo_probs_[:, None, None, :]

    def transition_matrix(self, event_probs: np.ndarray | None = None) -> csr_matrix:
        """T[a, f(a, e, j, x')] += Q(e | a) P(j | a, e) R(x' | a) (R only with exogenous components)."""
        Q = self.event_probs_ if event_probs is None else event_probs
        w = Q[:, :, None] * np.transpose(self.next_probs_, (1, 0, 2))  # (A, E, S)
        return self._matrix(self._with_exo(w))

    def event_matrix(self, e: int) -> csr_matrix:
        """The matrix of event code ``e``; for -1 (an event never seen) the marginal chain."""
        if e < 0:
            return self.pooled_matrix()
        w = np.zeros((self.n_aug_,) + self.next_probs_.shape[::2])
        w[:, e, :] = self.next_probs_[e]
        return self._matrix(self._with_exo(w))

    def pooled_matrix(self) -> csr_matrix:
        """For an event never seen in training: the event-marginal row."""
        return self.transition_matrix()

    # ----------------------------------------------------------- forecasts
    def failure_probabilities(self, horizon: int, scenario=None, *, event_probs: np.ndarray | None = None,
                              interval: float | None = None, n_draws: int = DEFAULT_DRAWS,
                              random_state=None):
        """P(fail within h | chain state), (n_aug_, horizon); ``scenario`` the next events by name.

        ``interval``, ``n_draws`` and ``random_state`` as in :meth:`EventMarkovChain.failure_probabilities`:
        with ``interval`` a :class:`~markovfault._posterior.Bounds`, every level's rows drawn around
        their parent level's draws (:meth:`posterior_draws`).
        """
        self._check_fitted()
        return chain_forecast(self, horizon, scenario, event_probs, interval, n_draws, random_state)

    # ------------------------------------------------------- posterior draws
    def posterior_draws(self, n_draws: int, rng: np.random.Generator) -> dict:
        """``n_draws`` draws of every row from its posterior, level by level as the chain was estimated:
        the base chain's (:meth:`EventMarkovChain.posterior_draws`), then each level's rows around its
        parent level's draws, ``Dirichlet(N_L + gamma_L P_{L-1})`` (with ``backoff="auto"``, whether the
        next state is a failure and which state within its class separately,
        :func:`~markovfault._posterior.split_dirichlet`), the arrival and the exogenous rows alike; a
        row without data is its parent's draw. Keys ``next_probs`` (D, E, n_aug_, S), ``event_probs``
        (D, n_aug_, E), ``exo_probs`` (D, n_aug_, X) or None."""
        self._check_fitted()
        parts = self._parts
        counts, parent, g, fail = parts["level_counts"], parts["parent"], parts["strengths"], parts["fail"]
        base = self.base_.posterior_draws(n_draws, rng)
        P, Q = [base["event_matrices"]], [base["event_probs"]]
        for L in range(1, len(counts)):
            prior = P[L - 1][:, :, parent[L], :]
            P.append(split_dirichlet(rng, counts[L], prior, (g["failure"][L], g["next"][L]), fail)
                     if self._auto else dirichlet(rng, counts[L], prior, g["next"][L]))
            Q.append(dirichlet(rng, counts[L].sum(axis=2).T, Q[L - 1][:, parent[L]], g["arrivals"][L]))
        blocks = parts["blocks"]
        out = {"next_probs": np.concatenate([P[L][:, :, rows, :] for L, rows in blocks], axis=2),
               "event_probs": np.concatenate([Q[L][:, rows] for L, rows in blocks], axis=1), "exo_probs": None}
        ends = parts["ends"]
        if ends.any():
            out["next_probs"][:, :, ends, :] = base["event_matrices"][:, :, self.base_state_[ends], :]
        exo = parts["level_exo"]
        if exo is not None:  # the overall mix, the base rows around it, then level by level
            X = exo[0].shape[1]
            overall = dirichlet(rng, exo[0].sum(axis=0), np.full((n_draws, X), 1.0 / X),
                                float(self.base_.alpha_))
            R = [dirichlet(rng, exo[0], np.broadcast_to(overall[:, None, :], (n_draws,) + exo[0].shape),
                           float(self.base_.beta_arrivals_))]
            for L in range(1, len(exo)):
                R.append(dirichlet(rng, exo[L], R[L - 1][:, parent[L]], g["exogenous"][L]))
            out["exo_probs"] = np.concatenate([R[L][:, rows] for L, rows in blocks], axis=1)
        return out

    def draw_matrix(self, draws: dict, event_probs: np.ndarray | None = None, event: int | None = None):
        """The matrices of ``draws`` (:meth:`posterior_draws`) as one block-diagonal sparse matrix over
        draws x chain states: the marginal chain (under the given arrival probabilities, if any), or
        the matrix of event code ``event`` (-1, an event never seen: the marginal chain)."""
        P = np.transpose(draws["next_probs"], (0, 2, 1, 3))  # (D, A, E, S)
        D = P.shape[0]
        if event is not None and event >= 0:
            w = np.zeros_like(P)
            w[:, :, event, :] = P[:, :, event, :]
        else:
            Q = draws["event_probs"] if event_probs is None else np.asarray(event_probs, np.float64)[None]
            w = Q[..., None] * P
        if draws["exo_probs"] is not None:
            w = w[..., None] * draws["exo_probs"][:, :, None, None, :]
        inverse, indices, indptr, nnz = self._sparsity()
        slots = (inverse[None, :] + (np.arange(D, dtype=np.int64) * nnz)[:, None]).reshape(-1)
        data = np.bincount(slots, weights=w.reshape(-1), minlength=D * nnz).reshape(D, nnz)
        return block_diagonal((indices, indptr), data, self.n_aug_)

    def floats_per_draw(self) -> int:
        """Floats one posterior draw holds (every level's rows, the weights and the matrix)."""
        E, A, S = self.next_probs_.shape
        X = 1 if self.exo_probs_ is None else self.exo_probs_.shape[1]
        levels = sum(c.size for c in self._parts["level_counts"])
        return 2 * levels + 3 * A * E * S * X

    def log_likelihood(self, rows: np.ndarray, traj: Trajectories) -> float:
        """Sum over the transitions of ``traj`` of log P(j | a, e), with ``rows`` its chain states
        (:meth:`encode`) and its events on the chain's codes."""
        self._check_fitted()
        E, A, S = self.next_probs_.shape
        if traj.n_steps < 2:
            return 0.0
        idx = (traj.event[1:].astype(np.int64) * A + np.asarray(rows)[:-1]) * S + traj.state[1:]
        keep = ~traj.is_run_start()[1:]
        N = np.bincount(idx[keep], minlength=E * A * S).reshape(E, A, S)
        nz = N > 0
        with np.errstate(divide="ignore"):
            return float((N[nz] * np.log(self.next_probs_[nz])).sum())

    def counts_log_likelihood(self, counts: HistoryCounts, *, include_events: bool = True) -> float:
        """Sum of log P(j | a, e) (and log Q(e | a)) over the transitions of ``counts`` (on the chain's
        layout: its states and events), each scored from its chain state (:meth:`state_index`)."""
        self._check_fitted()
        rows = self.state_index(counts.codes)
        N = counts.counts
        P = self.next_probs_[:, rows, :]
        nz = N > 0
        with np.errstate(divide="ignore"):
            ll = float((N[nz] * np.log(P[nz])).sum())
            if include_events:
                M = N.sum(axis=2).T
                m = M > 0
                ll += float((M[m] * np.log(self.event_probs_[rows][m])).sum())
        return ll


def _level_counts(V: np.ndarray, counts: np.ndarray, lays: list) -> tuple[list, list, list]:
    """The states of every level (sorted codes; level 0: every base state), their counts (sums over the
    seen states below them) and each state's parent (its index one level down)."""
    D, S = len(lays) - 1, lays[0].S
    codes, level_counts, parent = [None] * (D + 1), [None] * (D + 1), [None] * (D + 1)
    codes[D], level_counts[D] = V, counts
    for L in range(D, 0, -1):
        c = lays[L].coarsen(codes[L], lays[L - 1])
        if L == 1:  # the base level holds every base state, seen or not
            uniq, inv = np.arange(S, dtype=np.int64), c
        else:
            uniq, inv = np.unique(c, return_inverse=True)
        codes[L - 1], parent[L] = uniq, inv.reshape(-1)
        level_counts[L - 1] = _aggregate(level_counts[L], parent[L], len(uniq))
    return codes, level_counts, parent


def _aggregate(counts: np.ndarray, group: np.ndarray, n: int) -> np.ndarray:
    """Counts (E, A, S) summed over the states of each group: (E, n, S)."""
    E, A, S = counts.shape
    idx = (np.arange(E, dtype=np.int64)[:, None, None] * n + np.asarray(group, np.int64)[None, :, None]) * S \
        + np.arange(S, dtype=np.int64)[None, None, :]
    return np.bincount(idx.ravel(), weights=counts.ravel(), minlength=E * n * S).reshape(E, n, S) \
        .round().astype(np.int64)


def _shrink(counts: np.ndarray, prior: np.ndarray, strength: float) -> np.ndarray:
    """Rows ``(counts + strength * prior) / (counts.sum + strength)``; a row without data is its prior."""
    n = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (counts + strength * prior) / (n + strength)
    return np.where(n + strength > 0, out, prior)


def relayout(counts: HistoryCounts, spec: HistorySpec, old_events, new_events, n_states: int) -> HistoryCounts:
    """Counts re-indexed from one event vocabulary to a larger or reordered one.

    Events keep their names; with ``entering_event`` the state codes change too (component by
    component, "unknown" staying unknown), and are sorted again.
    """
    old_events, new_events = [str(e) for e in old_events], [str(e) for e in new_events]
    if old_events == new_events:
        return counts
    pos = {e: k for k, e in enumerate(new_events)}
    missing = [e for e in old_events if e not in pos]
    if missing:
        raise ValueError(f"events {missing} are missing from the new event vocabulary")
    ev_map = np.array([pos[e] for e in old_events], dtype=np.int64)
    codes = counts.codes
    if spec.entering_event:
        old = HistoryLayout(spec, n_states, len(old_events))
        new = HistoryLayout(spec, n_states, len(new_events))
        comps = old.components(codes)
        k = old.index["in"]
        v = comps[k]
        comps[k] = np.where(v < len(old_events), ev_map[np.minimum(v, max(len(ev_map) - 1, 0))],
                            len(new_events))
        codes = new.compose(comps)
    order = np.argsort(codes, kind="stable")
    lead = counts.counts.shape[:-3]
    out = np.zeros(lead + (len(new_events),) + counts.counts.shape[-2:], dtype=np.int64)
    out[..., ev_map, :, :] = counts.counts[..., :, order, :]
    return HistoryCounts(codes[order], out, None if counts.exo is None else counts.exo[..., order, :])


# ---------------------------------------------------------------- back-off strengths from held-out rows
def _left_out(counts: np.ndarray, prior: np.ndarray, strength: float) -> np.ndarray:
    """Probabilities of cells with one of their own counts left out: ``(n - 1 + s q) / (N - 1 + s)``, where
    ``counts`` holds ``n`` and the row total ``N`` stacked (2, cells); a row left empty is its prior."""
    n, N = counts
    den = N - 1.0 + strength
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (n - 1.0 + strength * prior) / den
    return np.where(den > 0, out, prior)


def _loo_objective(n: np.ndarray, q: np.ndarray, totals: np.ndarray):
    """The leave-one-out log-likelihood of the non-zero cells ``n`` (rows of totals ``totals``) under rows
    shrunk with each strength toward the left-out parent probabilities ``q``, as a function of the
    strengths (one pass over the cells per strength)::

        sum_cells n log(n - 1 + g q) - sum_rows N log(N - 1 + g)
    """
    q = np.maximum(q, 1e-12)  # as the evidence: a count impossible under the parent stays finite

    def objective(strengths):
        out = np.empty(len(strengths))
        for k, g in enumerate(np.asarray(strengths, dtype=np.float64)):  # a loop over strengths
            out[k] = n @ np.log(n - 1.0 + g * q) - totals @ np.log(totals - 1.0 + g)
        return out

    return objective


def _cells(X: np.ndarray, r: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Counts of cells ``(r, k)`` of rows ``X`` and their row totals, stacked (2, cells)."""
    return np.stack([X[r, k], X[r].sum(axis=1)]).astype(np.float64)


def _loo_cells(X: list, parents: list, L: int, base, strengths: list):
    """The non-zero cells of level ``L``'s rows ``X[L]`` (2-D: rows x categories) with their row totals
    and the probability the parent levels give each of them with that one transition left out of every
    level (the hierarchy refitted without it: :func:`_left_out` from the base level up with the lower
    levels' ``strengths``). ``base(rows, cols)``: the base level's probability of its cells with the
    transition left out."""
    r, k = np.nonzero(X[L])
    n = X[L][r, k].astype(np.float64)
    anc = [None] * L
    a = r
    for l in range(L, 0, -1):
        a = parents[l][a]
        anc[l - 1] = a
    q = base(anc[0], k)
    for l in range(1, L):
        q = _left_out(_cells(X[l], anc[l], k), q, strengths[l])
    totals = X[L].sum(axis=1)
    return n, q, totals[totals > 0].astype(np.float64)


def loo_strengths(X: list, parents: list, base, keep=None) -> list:
    """The strength of every level above the base that maximises the leave-one-out likelihood of its
    rows, chosen bottom-up (each level with the strengths below it already chosen).

    ``X[l]`` are level ``l``'s count rows (rows x categories), ``parents[l]`` each row's parent row one
    level down, ``base`` as in :func:`_loo_cells`, ``keep[l]`` (optional) the rows that enter the
    choice. Returns ``[None, g_1, ..., g_D]``.

    Held-out transitions, not the Dirichlet evidence: a level that splits a row in two where only the
    failure cells differ (a handler that fails more right after a failure) moves one direction of a
    row of many, and the evidence charges for every direction (it chose strengths of 1e5 on the
    simulated failure memory, which erases it), where the held-out likelihood weighs what the split
    predicts. Each held-out transition leaves every level of the hierarchy, so a parent made of the
    same counts (a level that adds nothing) cannot look like a good prior.
    """
    out = [None]
    for L in range(1, len(X)):
        rows = X[L] if keep is None or keep[L] is None else np.where(keep[L][:, None], X[L], 0)
        n, q, totals = _loo_cells(X[:L] + [rows], parents, L, base, out)
        out.append(maximise_strength(_loo_objective(n, q, totals)) if len(n)
                   else float(np.sqrt(STRENGTH_GRID[0] * STRENGTH_GRID[-1])))
    return out


def back_off_split(counts: np.ndarray, prior: np.ndarray, strengths: tuple, fail: np.ndarray) -> np.ndarray:
    """Next-state rows backed off in two steps: whether the next state is a failure, with strength
    ``strengths[0]``, then which state within the failures (or within the others), with ``strengths[1]``::

        P(F | a, e)     = (N_F + g_f p_F) / (N + g_f)
        P(j | a, e, F)  = (N_j + g_c p_j / p_F) / (N_F + g_c)          (j a failure state; alike for the others)
        P(j | a, e)     = P(F | a, e) P(j | a, e, F)

    where ``p`` is the parent row. A row without data is its parent row. A class the parent gives no mass
    is its own counts.

    Examples
    --------
    >>> P = back_off_split(np.array([[[6, 2, 2]]]), np.array([[[0.5, 0.3, 0.2]]]), (2.0, 1e9),
    ...                    np.array([False, False, True]))
    >>> P.round(4).tolist()  # P(F) = (2 + 2 * 0.2) / 12 = 0.2; with g_c huge the others keep 5 : 3
    [[[0.5, 0.3, 0.2]]]
    """
    g_f, g_c = strengths
    F = np.asarray(fail, dtype=bool)
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.sum(axis=-1, keepdims=True)
    nF = counts[..., F].sum(axis=-1, keepdims=True)
    pF = prior[..., F].sum(axis=-1, keepdims=True)
    cls_n = np.where(F, nF, n - nF)
    cls_p = np.where(F, pF, 1.0 - pF)
    has_p = cls_p > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        PF = np.where(n + g_f > 0, (nF + g_f * pF) / (n + g_f), pF)
        within = np.where(has_p, prior / np.where(has_p, cls_p, 1.0), 0.0)  # the parent within the class
        den = cls_n + np.where(has_p, g_c, 0.0)
        cond = np.where(den > 0, (counts + g_c * within) / den, within)
    P = np.where(F, PF, 1.0 - PF) * cond
    return np.where(n > 0, P, prior)
