"""The event-conditioned Markov chain estimator.

:class:`EventMarkovChain` turns transition counts into smoothed estimates of
how each kind of event moves an entity between states, ``P(S_n | S_{n-1},
E_n)``, of which events arrive in which state, ``P(E_n | S_{n-1})``, and of the
marginal chain for unknown future events; :class:`HistoryChain` does the same
over history-aware states (:class:`markovfault.states.HistorySpec`), backed off
to the base chain. The numerics live in pure functions (every prior in
:mod:`markovfault._priors`, the k-step recursion in
:mod:`markovfault._recursion`); the estimators store counts and call them.
"""

from __future__ import annotations

import numpy as np

from ..states._history import HistoryCounts
from ._event import EventMarkovChain, estimate_tensors
from ._history import HistoryChain
from ._intervals import failure_bounds, failure_draws, failure_table, scenario_codes

__all__ = ["EventMarkovChain", "estimate_tensors", "HistoryChain", "make_chain", "merge_counts",
           "failure_table", "failure_bounds", "failure_draws", "scenario_codes",
           "counts_to_arrays", "counts_from_arrays"]


def make_chain(spec=None, *, alpha: float = 1.0, beta: float = 1.0):
    """An unfitted chain: :class:`EventMarkovChain` for plain states (``spec`` None or plain),
    :class:`HistoryChain` over the history-aware states of ``spec`` otherwise.

    Both answer the same interface (``count``, ``fit_from_counts``, ``add_counts``, ``encode``,
    ``failure_probabilities``, ...; see ``docs/architecture.md``), so no caller asks which one it holds.

    Examples
    --------
    >>> from markovfault.states import HistorySpec
    >>> type(make_chain(None)).__name__, type(make_chain(HistorySpec(order=2))).__name__
    ('EventMarkovChain', 'HistoryChain')
    """
    if spec is None or spec.is_plain:
        return EventMarkovChain(alpha=alpha, beta=beta)
    return HistoryChain(spec, alpha=alpha, beta=beta)


def merge_counts(parts) -> tuple:
    """The sum of counts of several parts of the data (as ``chain.count`` gives them, either layout),
    and for each part where its chain states' rows lie in the sum.

    Plain counts (ndarrays) keep their states (the maps are the identity); history-aware counts
    (:class:`~markovfault.states.HistoryCounts`) are summed over the union of their seen states.

    Examples
    --------
    >>> from markovfault.states import HistoryCounts
    >>> a = HistoryCounts([2, 5], np.ones((1, 2, 3), dtype=np.int64))
    >>> b = HistoryCounts([5, 8], np.ones((1, 2, 3), dtype=np.int64))
    >>> total, maps = merge_counts([a, b])
    >>> total.codes.tolist(), [m.tolist() for m in maps]
    ([2, 5, 8], [[0, 1], [1, 2]])
    """
    parts = list(parts)
    if not parts:
        raise ValueError("no counts to merge")
    if isinstance(parts[0], HistoryCounts):
        codes = np.unique(np.concatenate([p.codes for p in parts]))
        maps = [np.searchsorted(codes, p.codes) for p in parts]
        first = parts[0].counts
        total = np.zeros(first.shape[:-2] + (len(codes), first.shape[-1]), dtype=np.int64)
        exo = None
        if parts[0].exo is not None:
            e0 = parts[0].exo
            exo = np.zeros(e0.shape[:-2] + (len(codes), e0.shape[-1]), dtype=np.int64)
        for p, m in zip(parts, maps):  # a loop over parts, each one vectorised
            total[..., m, :] += p.counts
            if exo is not None:
                exo[..., m, :] += p.exo
        return HistoryCounts(codes, total, exo), maps
    total = np.sum(parts, axis=0).astype(np.int64)
    return total, [np.arange(total.shape[-1])] * len(parts)


def counts_to_arrays(counts) -> dict:
    """The arrays a model file stores for a chain's counts: ``counts`` and, for history-aware counts,
    ``history/codes`` (the seen states)."""
    if isinstance(counts, HistoryCounts):
        out = {"counts": counts.counts, "history/codes": counts.codes}
        if counts.exo is not None:
            out["history/exo"] = counts.exo
        return out
    return {"counts": np.asarray(counts, dtype=np.int64)}


def counts_from_arrays(arrays, history: bool):
    """The counts of a chain from a model file's arrays (see :func:`counts_to_arrays`).

    A history-aware model written before the seen-state layout holds its counts over the whole
    product space: its states with data are kept.
    """
    counts = np.asarray(arrays["counts"], dtype=np.int64)
    if not history:
        return counts
    if "history/codes" in arrays:
        return HistoryCounts(arrays["history/codes"], counts, arrays.get("history/exo"))
    return HistoryCounts(np.arange(counts.shape[1]), counts).pruned()
