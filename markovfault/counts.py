"""Counting kernels: pure numpy, one pass, no Python loop over rows or entities.

Counts are the sufficient statistics of the chain. ``C[e, i, j]`` is the
number of steps where event ``e`` arrived in state ``i`` and the entity ended
in state ``j``; the event-arrival counts are ``C.sum(axis=2).T``.
"""

from __future__ import annotations

import numpy as np

from .trajectories import Trajectories

__all__ = ["count_transitions", "count_codes", "count_codes_by_bin", "event_arrival_counts"]


def count_codes(
    state: np.ndarray,
    event: np.ndarray,
    starts: np.ndarray,
    n_states: int,
    n_events: int,
) -> np.ndarray:
    """Count event-conditioned transitions from flat code arrays.

    Parameters
    ----------
    state : ndarray of shape (n_steps,), int
        State codes, sorted by run and time.
    event : ndarray of shape (n_steps,), int
        Event codes; ``event[n]`` is the event that moved ``state[n-1]`` to
        ``state[n]``.
    starts : ndarray of shape (n_runs,), int
        Positions where runs begin; no transition is counted into them.
    n_states, n_events : int
        Sizes of the vocabularies.

    Returns
    -------
    counts : ndarray of shape (n_events, n_states, n_states), int64

    Examples
    --------
    Two runs, ``0 -x-> 1 -y-> 0`` and ``1 -x-> 1``:

    >>> c = count_codes(np.array([0, 1, 0, 1, 1]), np.array([0, 0, 1, 0, 0]),
    ...                 np.array([0, 3]), n_states=2, n_events=2)
    >>> c[0]          # event x: 0->1 once, 1->1 once
    array([[0, 1],
           [0, 1]])
    >>> c[1]          # event y: 1->0 once
    array([[0, 0],
           [1, 0]])
    """
    n = state.shape[0]
    size = n_events * n_states * n_states
    if n < 2:
        return np.zeros((n_events, n_states, n_states), dtype=np.int64)
    # Blocked: the flat index of a block of transitions is built in two small
    # buffers that stay in cache and counted at once, so each code array is read
    # from memory once and no array of n indices is ever written (this runs
    # faster than a plain np.bincount(prev * S + next) over the whole arrays).
    flat = np.zeros(size, dtype=np.int64)
    m = n - 1
    block = min(_BLOCK, m)
    idx = np.empty(block, dtype=np.int64)
    tmp = np.empty(block, dtype=np.int64)
    ss = n_states * n_states
    for lo in range(0, m, block):  # a loop over blocks of 2**18 steps, not over rows
        hi = min(lo + block, m)
        i, t = idx[: hi - lo], tmp[: hi - lo]
        np.multiply(event[lo + 1:hi + 1], ss, out=i, casting="unsafe")
        np.multiply(state[lo:hi], n_states, out=t, casting="unsafe")
        i += t
        np.add(i, state[lo + 1:hi + 1], out=i, casting="unsafe")
        flat += np.bincount(i, minlength=size)[:size]
    # pairs that cross a run boundary were counted above: take them out again
    inner = starts[starts > 0] - 1
    if inner.size:
        cross = (event[inner + 1].astype(np.int64) * n_states + state[inner]) * n_states \
            + state[inner + 1]
        flat -= np.bincount(cross, minlength=size)[:size]
    return flat.reshape(n_events, n_states, n_states)


#: Steps per block of :func:`count_codes`: two int64 buffers of 2 MiB each.
_BLOCK = 1 << 18


def count_codes_by_bin(
    state: np.ndarray,
    event: np.ndarray,
    starts: np.ndarray,
    bins: np.ndarray,
    n_bins: int,
    n_states: int,
    n_events: int,
) -> np.ndarray:
    """Transition counts split by a bin label of the arriving step, in one pass.

    The backtest labels each step with the time slice it falls in; the
    cumulative sum over slices then gives the counts before every cutoff at
    once.

    Parameters
    ----------
    state, event, starts, n_states, n_events
        As in :func:`count_codes`.
    bins : ndarray of shape (n_steps,), int
        Bin of each step in ``0..n_bins-1``; the transition into step ``n``
        is counted in ``bins[n]``.
    n_bins : int

    Returns
    -------
    counts : ndarray of shape (n_bins, n_events, n_states, n_states), int64

    Examples
    --------
    >>> c = count_codes_by_bin(np.array([0, 1, 1, 0]), np.zeros(4, int), np.array([0]),
    ...                        np.array([0, 0, 1, 1]), 2, n_states=2, n_events=1)
    >>> c[0, 0]      # 0->1 arrives in bin 0
    array([[0, 1],
           [0, 0]])
    >>> c[1, 0]      # 1->1 and 1->0 arrive in bin 1
    array([[0, 0],
           [1, 1]])
    """
    n = state.shape[0]
    size = n_events * n_states * n_states
    total = n_bins * size
    if n < 2:
        return np.zeros((n_bins, n_events, n_states, n_states), dtype=np.int64)
    itype = np.int32 if total < np.iinfo(np.int32).max else np.int64
    idx = bins[1:].astype(itype, copy=True)
    idx *= n_events
    idx += event[1:]
    idx *= n_states
    idx += state[:-1]
    idx *= n_states
    idx += state[1:]
    idx[starts[starts > 0] - 1] = total
    flat = np.bincount(idx, minlength=total + 1)
    return flat[:total].reshape(n_bins, n_events, n_states, n_states).astype(np.int64, copy=False)


def count_transitions(traj: Trajectories) -> np.ndarray:
    """Event-conditioned transition counts of a :class:`Trajectories`.

    Returns
    -------
    counts : ndarray of shape (n_events, n_states, n_states), int64

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"entity": ["a", "a", "a"], "time": [1, 2, 3],
    ...                       "event": ["x", "x", "y"]})
    >>> traj = Trajectories.from_frame(frame, [0, 1, 1], ["ok", "down"])
    >>> int(count_transitions(traj).sum())
    2
    """
    return count_codes(traj.state, traj.event, traj.run_starts, traj.n_states, traj.n_events)


def event_arrival_counts(counts: np.ndarray) -> np.ndarray:
    """Event-arrival counts ``N[i, e]`` = #(event e arrived in state i), shape (S, E).

    Examples
    --------
    >>> c = np.zeros((2, 2, 2), dtype=np.int64); c[1, 0, 1] = 3
    >>> event_arrival_counts(c)
    array([[0, 3],
           [0, 0]])
    """
    return counts.sum(axis=2).T
