"""Forecasts from a fitted chain: pure functions over numpy arrays.

Every public function checks its input once, then hands it to a kernel that
trusts it. "Fails within h" means at least one of the next h states
``S_1..S_h`` is a failure state (the current state ``S_0`` does not count).

The Monte Carlo simulator at the end is the reference every closed form is
tested against.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ._recursion import check_horizon as _check_horizon
from ._recursion import hitting_probabilities, scenario_hitting_probabilities

__all__ = [
    "failure_probabilities",
    "scenario_failure_probabilities",
    "expected_steps_to_failure",
    "simulate_chain",
    "monte_carlo_failure_probabilities",
    "check_transition_matrix",
]

_ATOL = 1e-8


# ---------------------------------------------------------------- validation
def check_transition_matrix(matrix, name: str = "transition matrix", atol: float = _ATOL) -> np.ndarray:
    """Check that ``matrix`` (or a stack of them) is row-stochastic.

    Parameters
    ----------
    matrix : array-like of shape (..., S, S)
    name : str
        Used in the error message.
    atol : float, default=1e-8
        Tolerance on the row sums.

    Returns
    -------
    ndarray of float64

    Raises
    ------
    ValueError
        If the matrix is not square, has negative or non-finite entries, or a
        row does not sum to 1 up to ``atol``.

    Examples
    --------
    >>> check_transition_matrix([[0.5, 0.5], [0.0, 1.0]]).shape
    (2, 2)
    >>> check_transition_matrix([[0.5, 0.6], [0.0, 1.0]])
    Traceback (most recent call last):
    ...
    ValueError: transition matrix is not a stochastic matrix (elements >= 0, rows sum up to 1) up to tolerance 1e-08: row 0 sums to 1.1
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim < 2 or m.shape[-1] != m.shape[-2]:
        raise ValueError(f"{name} must be square (..., S, S), got shape {m.shape}")
    if not np.isfinite(m).all() or (m < 0).any():
        raise ValueError(f"{name} has negative or non-finite entries")
    sums = m.sum(axis=-1)
    bad = np.abs(sums - 1.0) > atol
    if bad.any():
        first = np.argwhere(bad)[0]
        raise ValueError(
            f"{name} is not a stochastic matrix (elements >= 0, rows sum up to 1) up to "
            f"tolerance {atol:g}: row {first[-1]} sums to {sums[tuple(first)]:.6g}"
        )
    return m


def _check_mask(is_failure, n_states: int) -> np.ndarray:
    mask = np.asarray(is_failure)
    if mask.dtype != bool:
        # 0/1 integers would be ambiguous with state indices: ask for booleans
        raise TypeError(
            f"is_failure must be a boolean mask over the states, got dtype {mask.dtype}; "
            "for state indices idx use np.isin(np.arange(n_states), idx)."
        )
    if mask.shape != (n_states,):
        raise ValueError(f"is_failure must have shape ({n_states},), got {mask.shape}")
    return mask


# ---------------------------------------------------------------- closed forms
def failure_probabilities(transition_matrix, is_failure, horizon: int) -> np.ndarray:
    """P(at least one failure within h steps | S_0 = i) for h = 1..horizon at once.

    Parameters
    ----------
    transition_matrix : array-like of shape (S, S)
        Row-stochastic matrix ``T``.
    is_failure : array-like of bool of shape (S,)
        Failure states ``F``.
    horizon : int
        The largest ``h``.

    Returns
    -------
    ndarray of shape (S, horizon)

    Notes
    -----
    With :math:`f_0 = 1_F` and :math:`f_h = 1_F + 1_{\\neg F} \\odot (T f_{h-1})`,
    the probability of failing within :math:`h` steps from state :math:`i` is
    :math:`(T f_{h-1})(i)`: ``horizon`` matrix-vector products in all.

    Examples
    --------
    A two-state chain that fails with probability 0.1 per step from ``ok``:
    within h steps that is :math:`1 - 0.9^h`.

    >>> T = np.array([[0.9, 0.1], [0.5, 0.5]])
    >>> failure_probabilities(T, [False, True], 3)[0]
    array([0.1  , 0.19 , 0.271])
    """
    T = check_transition_matrix(transition_matrix)
    mask = _check_mask(is_failure, T.shape[0])
    return hitting_probabilities(T, mask, _check_horizon(horizon))


def scenario_failure_probabilities(matrices, is_failure) -> np.ndarray:
    """P(fail within h | S_0 = i) when the next events are known, h = 1..k.

    Parameters
    ----------
    matrices : array-like of shape (k, S, S)
        The transition matrix of each coming step in order (``P[e_1]``, ...,
        ``P[e_k]``).
    is_failure : array-like of bool of shape (S,)

    Returns
    -------
    ndarray of shape (S, k)

    Notes
    -----
    Folded from the last event backward, every horizon at once: k products
    of a matrix with a block of vectors (see
    :func:`markovfault._recursion.scenario_hitting_probabilities`).

    Examples
    --------
    >>> ok = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> bad = np.array([[0.5, 0.5], [0.0, 1.0]])
    >>> scenario_failure_probabilities([ok, bad, bad], [False, True])[0]
    array([0.  , 0.5 , 0.75])
    """
    mats = check_transition_matrix(matrices, "scenario matrices")
    if mats.ndim != 3:
        raise ValueError(f"matrices must have shape (k, S, S), got {mats.shape}")
    if mats.shape[0] == 0:
        raise ValueError("a scenario needs at least one event")
    mask = _check_mask(is_failure, mats.shape[1])
    return scenario_hitting_probabilities(mats, mask)


def expected_steps_to_failure(transition_matrix, is_failure) -> np.ndarray:
    """Expected number of steps until the next failure, per current state.

    The first *future* failure, ``min{n >= 1 : S_n in F}``, so the value is
    defined for failure states too (the time to the next failure after this
    one). It is ``inf`` wherever reaching ``F`` is not certain.

    Parameters
    ----------
    transition_matrix : array-like of shape (S, S)
    is_failure : array-like of bool of shape (S,)

    Returns
    -------
    ndarray of shape (S,)

    Notes
    -----
    On the non-failure states ``N`` from which failure is certain, solves
    :math:`(I - T_{NN}) m = 1`; then :math:`m_F = 1 + T_{FN} m_N`.

    Examples
    --------
    Failing with probability 0.25 per step takes 4 steps on average:

    >>> T = np.array([[0.75, 0.25], [1.0, 0.0]])
    >>> expected_steps_to_failure(T, [False, True])
    array([4., 5.])
    >>> expected_steps_to_failure(np.eye(2), [False, True])
    array([inf,  1.])
    """
    T = check_transition_matrix(transition_matrix)
    mask = _check_mask(is_failure, T.shape[0])
    return _expected_steps(T, mask)


def _expected_steps(T: np.ndarray, mask: np.ndarray) -> np.ndarray:
    S = T.shape[0]
    out = np.full(S, np.inf)
    if not mask.any():
        return out
    nonf = ~mask
    edge = T > 0
    # states that can reach F (in >= 1 step): backward reachability
    reach = edge[:, mask].any(axis=1)
    for _ in range(S):
        new = reach | (edge[:, nonf] & reach[nonf][None, :]).any(axis=1)
        if (new == reach).all():
            break
        reach = new
    # non-failure states that can never reach F, and those that can drift there
    lost = nonf & ~reach
    risky = lost.copy()
    for _ in range(S):
        new = risky | (nonf & (edge[:, risky]).any(axis=1))
        if (new == risky).all():
            break
        risky = new
    good = nonf & ~risky
    m = np.zeros(S)
    if good.any():
        A = np.eye(int(good.sum())) - T[np.ix_(good, good)]
        m[good] = np.linalg.solve(A, np.ones(int(good.sum())))
        out[good] = m[good]
    # failure states: one step, then the expected time from wherever it lands
    tail = np.where(nonf, np.where(good, m, np.inf), 0.0)
    with np.errstate(invalid="ignore"):
        contrib = np.where(edge[mask], T[mask] * tail[None, :], 0.0)
    out[mask] = 1.0 + contrib.sum(axis=1)
    return out


# ---------------------------------------------------------------- Monte Carlo
def simulate_chain(
    event_matrices,
    event_probs,
    start_states,
    n_steps: int,
    *,
    scenario: Sequence[int] | None = None,
    random_state=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Simulate paths of the event-driven chain, all paths at once.

    At each step an event is drawn from ``event_probs[state]`` (or taken from
    ``scenario``), then the next state from ``event_matrices[event, state]``.

    Parameters
    ----------
    event_matrices : array-like of shape (E, S, S)
    event_probs : array-like of shape (S, E)
    start_states : array-like of int of shape (n_paths,)
    n_steps : int
    scenario : sequence of int, optional
        Event codes for the first ``len(scenario)`` steps (then ``n_steps``
        may not exceed it).
    random_state : int, RandomState or None

    Returns
    -------
    states : ndarray of shape (n_paths, n_steps), int64
        ``S_1..S_n`` of each path.
    events : ndarray of shape (n_paths, n_steps), int64

    Examples
    --------
    >>> P = np.array([[[0.0, 1.0], [1.0, 0.0]]])
    >>> states, events = simulate_chain(P, np.ones((2, 1)), [0, 1], 3, random_state=0)
    >>> states
    array([[1, 0, 1],
           [0, 1, 0]])
    """
    P = check_transition_matrix(event_matrices, "event_matrices")
    Q = check_transition_matrix_rect(event_probs, P.shape[1], P.shape[0])
    from sklearn.utils import check_random_state

    rng = check_random_state(random_state)
    cur = np.asarray(start_states, dtype=np.int64).copy()
    n_paths = cur.shape[0]
    E, S = P.shape[0], P.shape[1]
    if scenario is not None and n_steps > len(scenario):
        raise ValueError("n_steps exceeds the scenario's length")
    cumP = np.cumsum(P, axis=2)
    cumQ = np.cumsum(Q, axis=1)
    states = np.empty((n_paths, n_steps), dtype=np.int64)
    events = np.empty((n_paths, n_steps), dtype=np.int64)
    for t in range(n_steps):
        if scenario is None:
            u = rng.random_sample(n_paths)
            ev = (u[:, None] >= cumQ[cur]).sum(axis=1)
            np.minimum(ev, E - 1, out=ev)
        else:
            ev = np.full(n_paths, int(scenario[t]), dtype=np.int64)
        u = rng.random_sample(n_paths)
        nxt = (u[:, None] >= cumP[ev, cur]).sum(axis=1)
        np.minimum(nxt, S - 1, out=nxt)
        states[:, t] = nxt
        events[:, t] = ev
        cur = nxt
    return states, events


def check_transition_matrix_rect(matrix, n_rows: int, n_cols: int) -> np.ndarray:
    """Check a row-stochastic (n_rows, n_cols) matrix such as ``event_probs``."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (n_rows, n_cols):
        raise ValueError(f"event_probs must have shape ({n_rows}, {n_cols}), got {m.shape}")
    if (m < 0).any() or np.abs(m.sum(axis=1) - 1).max() > _ATOL:
        raise ValueError("event_probs rows must be probabilities summing to 1")
    return m


def monte_carlo_failure_probabilities(
    event_matrices,
    event_probs,
    is_failure,
    horizon: int,
    n_paths: int = 10_000,
    *,
    scenario: Sequence[int] | None = None,
    random_state=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Monte Carlo estimate of P(fail within h | S_0 = i) and its standard error.

    Simulates ``n_paths`` paths from every state.

    Returns
    -------
    p : ndarray of shape (S, horizon)
    se : ndarray of shape (S, horizon)
        Binomial standard errors ``sqrt(p (1 - p) / n_paths)``.
    """
    P = np.asarray(event_matrices, dtype=np.float64)
    S = P.shape[1]
    mask = _check_mask(is_failure, S)
    horizon = _check_horizon(horizon)
    start = np.repeat(np.arange(S), n_paths)
    states, _ = simulate_chain(
        P, event_probs, start, horizon, scenario=scenario, random_state=random_state
    )
    failed = np.logical_or.accumulate(mask[states], axis=1)  # (S*n, horizon)
    p = failed.reshape(S, n_paths, horizon).mean(axis=1)
    se = np.sqrt(p * (1 - p) / n_paths)
    return p, se
