"""Simulation from the null models of the diagnostics (the parametric bootstrap), vectorised over replicates,
data sets and runs at once: the only Python loop is over the steps of the longest run.

Every simulator keeps the layout of the data: each run's length and first state(s), and each step's observed
event (the events are conditioned on, as the tests condition on them). Rows of the null model that have no data
(a state never left in the data, a context never seen) are handled as their docstrings say.
"""

from __future__ import annotations

import numpy as np

__all__ = ["rng_of", "cumulative_rows", "simulate_event_chain", "simulate_order_chain", "replicate_blocks"]

#: how many simulated steps, and how many table cells, one block of replicates holds at most (bounds the
#: memory of a bootstrap)
BLOCK_STEPS = 4_000_000
BLOCK_CELLS = 4_000_000


def rng_of(random_state) -> np.random.Generator:
    """A ``numpy.random.Generator`` from None, an int, a SeedSequence, a Generator or a RandomState.

    Examples
    --------
    >>> float(rng_of(3).random()) == float(rng_of(3).random())
    True
    """
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2 ** 31 - 1, size=4))
    if isinstance(random_state, bool):
        raise TypeError("random_state must be None, an int or a numpy Generator, got a bool")
    return np.random.default_rng(random_state)


def cumulative_rows(counts: np.ndarray) -> np.ndarray:
    """Cumulative transition rows of counts (..., S, S) normalised per row; a row without data stays where it
    is (its own state with probability 1), so that a simulated entity that reaches a state the data never left
    stays in it, as nothing says where it would go.

    Examples
    --------
    >>> cumulative_rows(np.array([[1, 3], [0, 0]])).tolist()
    [[0.25, 1.0], [0.0, 1.0]]
    """
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum(axis=-1, keepdims=True)
    stay = np.broadcast_to(np.eye(c.shape[-1]), c.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(total > 0, c / total, stay)
    out = np.cumsum(p, axis=-1)
    out[..., -1] = 1.0
    return out


def _draw(cum: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Index j with cum[j - 1] <= u < cum[j] for every row (cum has a trailing axis of S)."""
    return np.minimum((u[..., None] >= cum).sum(axis=-1), cum.shape[-1] - 1)


def replicate_blocks(n_rep: int, n_steps: int, n_sets: int = 1, cells: int = 0, limit: int | None = None) -> list:
    """Sizes of blocks of replicates (of ``n_sets`` data sets at once) that each hold at most ``BLOCK_STEPS``
    simulated steps and ``BLOCK_CELLS`` table cells (``cells`` per replicate), and at most ``limit`` replicates;
    at least one replicate per block.

    Examples
    --------
    >>> replicate_blocks(10, 1_000_000)
    [4, 4, 2]
    """
    per = BLOCK_STEPS // max(1, n_steps * n_sets)
    if cells:
        per = min(per, BLOCK_CELLS // max(1, cells * n_sets))
    if limit is not None:
        per = min(per, limit)
    per = max(1, per)
    return [min(per, n_rep - lo) for lo in range(0, n_rep, per)]


def simulate_event_chain(cum: np.ndarray, state: np.ndarray, event: np.ndarray, starts: np.ndarray,
                         lengths: np.ndarray, n_rep: int, rng: np.random.Generator) -> np.ndarray:
    """Simulate ``n_rep`` replicates of each of K data sets from event-conditioned rows.

    Parameters
    ----------
    cum : ndarray of shape (K, E, S, S)
        Cumulative rows P(j | i, e) of each data set's null model (:func:`cumulative_rows`).
    state, event : ndarray of shape (K, n)
        The observed steps (runs one after another): the first state of every run is kept, every step's
        event is kept (the event of step t moves state t - 1 to state t).
    starts, lengths : ndarray of shape (R,)
        Where each run starts and how many steps it has (the same for every data set).
    n_rep : int
    rng : Generator

    Returns
    -------
    ndarray of shape (K, n_rep, n), int64

    Examples
    --------
    >>> cum = cumulative_rows(np.array([[[[0, 1], [1, 0]]]]))  # a chain that always switches
    >>> sim = simulate_event_chain(cum, np.array([[1, 0, 0, 0, 1]]), np.zeros((1, 5), dtype=int),
    ...                            np.array([0, 3]), np.array([3, 2]), 2, rng_of(0))
    >>> sim[0].tolist()
    [[1, 0, 1, 0, 1], [1, 0, 1, 0, 1]]
    """
    K, n = state.shape
    out = np.empty((K, n_rep, n), dtype=np.int64)
    out[:, :, starts] = state[:, None, starts]
    kk = np.arange(K)[:, None, None]
    for t in range(1, int(lengths.max()) if lengths.size else 0):  # a loop over steps, not rows
        pos = starts[lengths > t] + t
        prev = out[:, :, pos - 1]
        c = cum[kk, event[:, None, pos], prev]
        out[:, :, pos] = _draw(c, rng.random(prev.shape))
    return out


def simulate_order_chain(keys: np.ndarray, cum: np.ndarray, fallback: np.ndarray, order: int, n_states: int,
                         state: np.ndarray, starts: np.ndarray, lengths: np.ndarray, n_rep: int,
                         rng: np.random.Generator) -> np.ndarray:
    """Simulate ``n_rep`` replicates of each of K data sets from an order-m chain.

    The first ``order + 1`` states of every run are kept (the oldest state of the first window of the test of
    order m against m + 1 and its context); each later state is drawn from the row of its context, the last
    ``order`` states, coded ``k * S**m + sum(s_{n-lag} S**(lag - 1))`` (as :func:`markovfault.diagnostics.markov_order`
    codes contexts, with the data set k in front) and looked up in the sorted ``keys``; a context the data never
    had draws from the data set's ``fallback`` row (its next states pooled over every context).

    Parameters
    ----------
    keys : ndarray of shape (U,), sorted
    cum : ndarray of shape (U, S)
        Cumulative rows of the keys.
    fallback : ndarray of shape (K, S)
        Cumulative pooled row of each data set.
    order, n_states : int
    state : ndarray of shape (K, n)
    starts, lengths : ndarray of shape (R,)
    n_rep : int
    rng : Generator

    Returns
    -------
    ndarray of shape (K, n_rep, n), int64
    """
    K, n = state.shape
    out = np.empty((K, n_rep, n), dtype=np.int64)
    keep = np.zeros(n, dtype=bool)
    for t in range(order + 1):
        keep[starts[lengths > t] + t] = True
    out[:, :, keep] = state[:, None, keep]
    base = (np.arange(K, dtype=np.int64) * n_states ** order)[:, None, None]
    for t in range(order + 1, int(lengths.max()) if lengths.size else 0):  # a loop over steps
        pos = starts[lengths > t] + t
        ctx = np.zeros((K, n_rep, pos.shape[0]), dtype=np.int64)
        for lag in range(order, 0, -1):  # a loop over lags
            ctx = ctx * n_states + out[:, :, pos - lag]
        key = base + ctx
        idx = np.minimum(np.searchsorted(keys, key), max(len(keys) - 1, 0))
        found = keys[idx] == key if len(keys) else np.zeros(key.shape, dtype=bool)
        c = np.where(found[..., None], cum[idx], fallback[:, None, None, :])
        out[:, :, pos] = _draw(c, rng.random(key.shape))
    return out
