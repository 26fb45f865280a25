"""The most likely paths into failure within k steps, exact, by best-first search.

A path is the start state, then per step the event and the state it led to, up to its first failure state
(within k steps); its probability is the product of its steps' ``Q[s, e] P_e[s, s']`` (under a scenario,
``P_e[s, s']`` of the given events). The search pops partial paths by ``probability x m``, where ``m`` is the
probability of the best completion into failure within the steps left, computed exactly by a max-product
recursion backward over the steps (a Viterbi pass): the priority of a partial path is the probability of the
best failing path that extends it. So the priorities never rise along a path and complete paths come out in
order of probability, exactly, and the search opens only partial paths at least as likely as the last path
it reports.
"""

from __future__ import annotations

import heapq
import logging

import numpy as np

from ._view import ChainView

__all__ = ["best_completion", "best_paths", "MAX_EXPANSIONS"]

logger = logging.getLogger(__name__)

#: Partial paths the search opens at most before it stops with the paths found (a warning says so).
MAX_EXPANSIONS = 200_000


def _row_max(view: ChainView, M, v: np.ndarray) -> np.ndarray:
    """``max_j M[i, j] v[j]`` for every row ``i``."""
    if not view.sparse:
        return (M * v[None, :]).max(axis=1)
    prod = M.data * v[M.indices]
    out = np.zeros(M.shape[0])
    nonempty = np.diff(M.indptr) > 0
    if prod.size:
        red = np.maximum.reduceat(prod, M.indptr[:-1][nonempty])
        out[nonempty] = red
    return out


def best_completion(view: ChainView, steps: list) -> list:
    """``m_t(s)``, t = 0..k: the probability of the most likely continuation from state ``s`` after ``t``
    steps that reaches a failure state within the steps left (0 when none does; ``m_k = 0``)."""
    k = len(steps)
    m = [None] * (k + 1)
    m[k] = np.zeros(view.n_states)
    for t in range(k - 1, -1, -1):
        v = np.where(view.mask, 1.0, m[t + 1])
        best = np.zeros(view.n_states)
        for _, M in steps[t]:
            np.maximum(best, _row_max(view, M, v), out=best)
        m[t] = best
    return m


def _row(view: ChainView, M, s: int) -> tuple:
    if view.sparse:
        lo, hi = M.indptr[s], M.indptr[s + 1]
        return M.indices[lo:hi], M.data[lo:hi]
    row = M[s]
    cols = np.flatnonzero(row > 0)
    return cols, row[cols]


def best_paths(view: ChainView, start: int, steps: list, n_paths: int,
               max_expansions: int = MAX_EXPANSIONS) -> tuple[list, bool]:
    """The ``n_paths`` most likely failing paths from chain state ``start``, most likely first.

    Returns ``(paths, complete)``: each path ``(probability, states, labels)`` (the chain states from the
    start on, the label of each step's event), and whether the search finished (False when it opened
    ``max_expansions`` partial paths first; the paths found are then the most likely ones, in order, but
    fewer may be listed than asked for).
    """
    k = len(steps)
    m = best_completion(view, steps)
    nodes = [(-1, None, start)]  # (parent, label, state)
    heap = [(-m[0][start], 0, 0, 1.0)]  # (-priority, node, t, probability)
    found, opened = [], 0
    mask = view.mask
    while heap and len(found) < n_paths:
        neg, node, t, p = heapq.heappop(heap)
        if -neg <= 0:
            break
        state = nodes[node][2]
        if t >= 1 and mask[state]:
            found.append((p, node))
            continue
        if t >= k:
            continue
        opened += 1
        if opened > max_expansions:
            logger.warning("the path search stopped after %d partial paths; %d paths found",
                           max_expansions, len(found))
            return _unwind(nodes, found), False
        nxt = np.where(mask, 1.0, m[t + 1])
        for label, M in steps[t]:
            cols, vals = _row(view, M, state)
            q = p * vals
            pri = q * nxt[cols]
            for j in np.flatnonzero(pri > 0):
                nodes.append((node, label, int(cols[j])))
                heapq.heappush(heap, (-float(pri[j]), len(nodes) - 1, t + 1, float(q[j])))
    return _unwind(nodes, found), True


def _unwind(nodes: list, found: list) -> list:
    out = []
    for p, node in found:
        states, labels = [], []
        while node >= 0:
            parent, label, state = nodes[node]
            states.append(state)
            if label is not None:
                labels.append(label)
            node = parent
        out.append((p, states[::-1], labels[::-1]))
    return out
