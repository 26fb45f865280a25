"""Exact attributions of P(fail within k): Shapley values of events or of entered states, removal
effects, and the gradient with respect to the event mix.

The value of a coalition ``S`` of players is P(fail within k) of the chain in which only the players of
``S`` act; the others are made neutral:

- events, ``neutral="absent"`` (the event does not occur): each state's arrival row keeps the events of
  ``S`` only, renormalised (``Q_S[s, e] = Q[s, e] / sum_{e' in S} Q[s, e']``); a state that receives none of
  them takes no further step (its path ends there, without a failure). Nothing fails when no event
  arrives, so the values add up to P(fail within k) itself.
- events, ``neutral="harmless"`` (the event occurs but moves the handler like an average step): the rows
  ``P_e`` of the events outside ``S`` are replaced by the pooled rows. The values add up to P(fail within k)
  minus the risk of the chain with every event's own rows pooled: an event with a positive value moves
  handlers toward failure more than an average step does.
- states (the non-failure base states): a transition into a state outside ``S`` (after the start) leaves
  for a safe place that never fails, the removal of marketing attribution's Markov models. The values add
  up to P(fail within k) minus P(the first step fails).

Every coalition's chain runs through the k-step recursion: the plain chain's matrices of all coalitions as
one batched product (:class:`~markovfault._posterior.Stacked`), a history-aware chain's as one
block-diagonal sparse matrix on the chain's fixed pattern. 2^n coalitions for n players (exact; the
default up to :data:`MAX_EXACT` players), or the coalitions of sampled permutations beyond.
"""

from __future__ import annotations

from math import factorial

import numpy as np

from .._posterior import Stacked, block_diagonal
from ._view import ChainView

__all__ = ["coalition_values", "state_players", "all_coalitions", "shapley_from_values", "sampled_shapley", "mix_gradient",
           "MAX_EXACT", "NEUTRALS"]

#: Players up to which Shapley values are exact by default (2^n coalitions).
MAX_EXACT = 15
NEUTRALS = ("absent", "harmless")
#: Floats one chunk of coalition matrices may hold.
_CHUNK_FLOATS = 4_000_000


def all_coalitions(n: int) -> np.ndarray:
    """Every subset of ``n`` players as a bool array (2^n, n); row ``c`` holds player ``j`` when bit ``j``
    of ``c`` is set."""
    c = np.arange(2 ** n, dtype=np.int64)
    return ((c[:, None] >> np.arange(n)) & 1).astype(bool)


def state_players(view: ChainView) -> np.ndarray:
    """The base states that are players of a state attribution: the non-failure ones."""
    base_fail = np.zeros(len(view.base_names), dtype=bool)
    base_fail[view.base_of[view.mask]] = True
    return np.flatnonzero(~base_fail)


def _recursion(op, fail: np.ndarray, horizon: int, shape: tuple) -> np.ndarray:
    """P(fail within ``horizon``) of a batch of chains (``op`` over C x A states; rows may lose mass, which
    never fails); returns (C, A)."""
    C, A = shape
    keep = 1.0 - fail
    f = np.broadcast_to(fail, (C, A)).copy()
    g = f
    for h in range(horizon):
        g = np.asarray(op @ f.reshape(-1)).reshape(C, A)
        f = fail + keep * g
    return np.clip(g, 0.0, 1.0)


def coalition_values(view: ChainView, masks: np.ndarray, horizon: int, players: str = "events",
                     neutral: str = "absent") -> np.ndarray:
    """P(fail within ``horizon``) from every chain state for each coalition of ``masks`` (C, n):
    (C, n_states)."""
    masks = np.asarray(masks, dtype=bool)
    A, E = view.n_states, view.n_events
    fail = view.mask.astype(np.float64)
    per = A * A + A * E if not view.sparse else view.transition.nnz * (E + 1)
    chunk = max(1, _CHUNK_FLOATS // max(per, 1))
    out = np.empty((len(masks), A))
    for lo in range(0, len(masks), chunk):
        part = masks[lo:lo + chunk]
        op = (_dense_ops if not view.sparse else _sparse_ops)(view, part, players, neutral)
        out[lo:lo + len(part)] = _recursion(op, fail, horizon, (len(part), A))
    return out


def _event_weights(view: ChainView, part: np.ndarray, neutral: str) -> np.ndarray:
    """Arrival weights (C, A, E) of each coalition (``absent``: renormalised; a row left without mass is 0)."""
    q = view.probs[None] * part[:, None, :]
    if neutral == "harmless":
        return q
    den = q.sum(axis=2)
    return q / np.where(den > 0, den, 1.0)[..., None]


def _column_mask(view: ChainView, part: np.ndarray) -> np.ndarray:
    """For a state attribution: 1 where a chain state may be entered in each coalition (C, A)."""
    players = state_players(view)
    allowed = np.ones((len(part), len(view.base_names)))
    allowed[:, players] = part
    return allowed[:, view.base_of]


def _dense_ops(view: ChainView, part: np.ndarray, players: str, neutral: str):
    P = np.stack([view.event_matrix(e) for e in range(view.n_events)])  # (E, S, S)
    if players == "states":
        return Stacked(view.transition[None] * _column_mask(view, part)[:, None, :])
    q = _event_weights(view, part, neutral)
    rows = np.transpose(q, (1, 0, 2))  # (S, C, E)
    if neutral == "harmless":
        pooled = view.pooled
        T = pooled[:, None, :] + np.matmul(rows, np.transpose(P - pooled[None], (1, 0, 2)))
    else:
        T = np.matmul(rows, np.transpose(P, (1, 0, 2)))
    return Stacked(np.transpose(T, (1, 0, 2)))


def _sparse_ops(view: ChainView, part: np.ndarray, players: str, neutral: str):
    T = view.transition
    A = view.n_states
    pattern = (T.indices, T.indptr)
    if players == "states":
        data = T.data[None, :] * _column_mask(view, part)[:, T.indices]
        return block_diagonal(pattern, data, A)
    rows = np.repeat(np.arange(A), np.diff(T.indptr))
    D = np.stack([view.rows_data(view.event_matrix(e)) for e in range(view.n_events)], axis=1)  # (nnz, E)
    q = _event_weights(view, part, neutral)
    if neutral == "harmless":
        pooled = view.rows_data(view.pooled)
        data = pooled[None, :] + np.einsum("cne,ne->cn", q[:, rows, :], D - pooled[:, None])
    else:
        data = np.einsum("cne,ne->cn", q[:, rows, :], D)
    return block_diagonal(pattern, data, A)


def shapley_from_values(values: np.ndarray, n: int) -> np.ndarray:
    """Exact Shapley values (n, R) from the values (2^n, R) of every coalition of :func:`all_coalitions`:
    ``phi_j = sum_{S without j} |S|! (n - |S| - 1)! / n! (v(S + j) - v(S))``."""
    c = np.arange(2 ** n, dtype=np.int64)
    size = np.zeros(len(c), dtype=np.int64)
    for j in range(n):
        size += (c >> j) & 1
    weight = np.array([factorial(s) * factorial(n - s - 1) / factorial(n) for s in range(n)])
    out = np.empty((n, values.shape[1]))
    for j in range(n):  # a loop over players; each a vectorised sum over the coalitions without j
        without = c[((c >> j) & 1) == 0]
        out[j] = (weight[size[without]][:, None] * (values[without | (1 << j)] - values[without])).sum(axis=0)
    return out


def sampled_shapley(value_of, n: int, n_permutations: int, rng: np.random.Generator) -> tuple:
    """Shapley values by sampled permutations (``n_permutations`` orders of the players): each player's
    mean marginal contribution and its standard error, (n, R) each. ``value_of(masks)`` evaluates
    coalitions (C, n) -> (C, R); all coalitions of all permutations are evaluated in one call."""
    perms = np.argsort(rng.random((n_permutations, n)), axis=1)
    ranks = np.argsort(perms, axis=1)  # the position of each player in each order
    prefix = ranks[:, None, :] < np.arange(n + 1)[None, :, None]  # (P, n + 1, n): the first i players
    flat = prefix.reshape(-1, n)
    uniq, inverse = np.unique(np.packbits(flat, axis=1), axis=0, return_inverse=True)
    values = value_of(np.unpackbits(uniq, axis=1, count=n).astype(bool))[inverse.reshape(-1)]
    values = values.reshape(n_permutations, n + 1, -1)
    steps = values[:, 1:] - values[:, :-1]  # (P, n, R): the contribution of the player at each position
    contrib = np.take_along_axis(steps, ranks[:, :, None], axis=1)  # (P, n, R) by player
    mean = contrib.mean(axis=0)
    se = contrib.std(axis=0, ddof=1) / np.sqrt(n_permutations) if n_permutations > 1 else np.full_like(mean, np.nan)
    return mean, se


def mix_gradient(view: ChainView, horizon: int) -> np.ndarray:
    """d P(fail within ``horizon``) / d eps when every state's arrival row moves toward event e,
    ``Q_eps = (1 - eps) Q + eps 1_e``, at eps = 0: (E, n_states), by forward-mode differentiation of the
    recursion (``dT_e = P_e - T``)."""
    fail = view.mask.astype(np.float64)
    keep = 1.0 - fail
    T = view.transition
    E = view.n_events
    P = [view.event_matrix(e) for e in range(E)]
    f = fail.copy()
    df = np.zeros((E, view.n_states))
    dg = df
    for h in range(horizon):
        Tf = np.asarray(T @ f).reshape(-1)
        dg = np.stack([np.asarray(P[e] @ f).reshape(-1) for e in range(E)]) - Tf[None]
        dg += np.asarray(T @ df.T).T
        f = fail + keep * Tf
        df = keep[None] * dg
    return dg
