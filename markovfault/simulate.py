"""A generative event-driven system with known truth: an order service.

Handlers (``orders-worker-01``, ``orders-worker-02``, ...) each consume a
stream of events. At every step an event ``e`` arrives with probability
``Q[s, e]``, which depends on the handler's current state ``s``, and the
handler then moves to a new state drawn from ``P[e, s, :]``. Because the
matrices are known exactly, so are the marginal chain ``T`` and the true
probability of reaching a failure state within ``h`` steps; the rest of
markovfault is tested against this truth.

The simulated history follows the input contract (README, "Input"): one row per
step of one handler, with the status, the event type, a unique event id and
state-dependent metrics (``latency_ms``, ``error_rate``).

Options make the truth richer and keep it exact. *Failure memory*: a
handler that failed in the last ``memory_window`` steps has its probabilities
of moving into a failure state multiplied by ``memory_boost`` (rows
renormalised), so the true process is a first-order chain over (state,
memory). *Event-mix shifts*: outages multiply
the arrival probability of some events (say ``payment_failed`` x10) for a
window of steps, so the chain varies in time along a known schedule.
*Groups*: handlers in a group (``payments-db-1``, ...) share a hidden
dependency that goes down and recovers (a two-state Markov chain); while it
is down its members' failure probabilities are boosted, so they fail
together. *Idle gaps*: a step that comes more than ``idle_after`` after the
handler's previous step boosts the failure probabilities of the handler's
next step (a handler back from a long silence fails more); the gaps are
independent of everything else, so the true process carries one more flag,
drawn afresh at every step. *Finishing*: a handler may finish (a non-failure,
absorbing end, with a ``finished`` row or none), and handlers may start late.
The true process is then a chain over (dependency or idle flag, state,
memory) and END:
:func:`true_failure_probabilities` gives every simulated row its exact risk,
given the row's hidden dependency state and memory.

*Sojourns* (``sojourns=``) make the clock part of the process: a Markov
renewal process, in which the wait after a step that ends in state ``s`` is
drawn from that state's own distribution (a frozen ``scipy.stats``
distribution in units of ``step_interval``, ``'exponential'`` for mean-one
exponentials everywhere), divided by the handler's rate factor ``c``
(``rate_spread``: ``log c ~ N(0, rate_spread^2)``); the next event and state
are drawn as before, independently of the wait. The states and events are
those of the same seed without sojourns; only the times differ.
:meth:`SimulatedHistories.true_time_failure_probabilities` gives each handler's
exact P(a step ending in a failure within the next ``T``) at a time ``tau``,
from its last state, its age and its rate factor (conditional Monte Carlo over
a pool of age-0 paths with its standard errors, or the closed form ``expm`` of
the generator when every sojourn is exponential), and
:meth:`SimulatedHistories.true_time_failure_table` the same at age 0 per
(class, state), the truth of an origin at a step. Both use only the true
``Q``, ``P`` and sojourns, and refuse memory, shifts, groups and finishing,
which the simulation supports with sojourns but this truth does not follow.

*Handlers that call each other* (:func:`simulate_call_graph`, in :mod:`markovfault._callgraph`): traces through
a small service graph with a shared database, failure episodes injected at a known root cause that propagate
downstream with lags, and the truth of fault localization (root causes, propagation edges).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import linalg, stats
from sklearn.utils import check_random_state, check_scalar

from markovfault.exceptions import ConfigError

from ._callgraph import CallGraphSimulation, simulate_call_graph  # noqa: E402,F401  (handlers calling each other)

__all__ = [
    "CallGraphSimulation",
    "simulate_call_graph",
    "OrderServiceSystem",
    "SimulatedHistories",
    "TimeFailureTruth",
    "simulate_histories",
    "true_failure_probabilities",
]

STATE_NAMES: tuple[str, ...] = ("ok", "slow", "error", "timeout", "down")
EVENT_NAMES: tuple[str, ...] = (
    "order_created",
    "payment_succeeded",
    "payment_failed",
    "order_shipped",
    "order_delivered",
)
FAILURE_STATES: tuple[str, ...] = ("error", "timeout", "down")
HANDLER_CLASSES: tuple[str, ...] = ("normal", "flaky")

# --- the truth of the default system ---------------------------------------
# Q[s, e] = P(next event is e | handler in state s). Columns follow EVENT_NAMES.
# In error/timeout/down, clients retry failed payments, so payment_failed is
# far more frequent there.
_Q_NORMAL = np.array(
    [
        # created succeeded failed shipped delivered
        [0.35, 0.25, 0.05, 0.20, 0.15],  # ok
        [0.30, 0.22, 0.10, 0.20, 0.18],  # slow
        [0.20, 0.15, 0.35, 0.15, 0.15],  # error
        [0.20, 0.15, 0.35, 0.15, 0.15],  # timeout
        [0.25, 0.15, 0.30, 0.15, 0.15],  # down
    ]
)

# P[e, s, s'] = P(next state s' | state s, event e). Rows and columns follow
# STATE_NAMES: ok, slow, error, timeout, down.
_P_NORMAL = np.array(
    [
        # order_created: mostly benign
        [
            [0.930, 0.050, 0.010, 0.007, 0.003],
            [0.450, 0.480, 0.030, 0.030, 0.010],
            [0.500, 0.100, 0.300, 0.050, 0.050],
            [0.450, 0.150, 0.100, 0.250, 0.050],
            [0.250, 0.050, 0.020, 0.030, 0.650],
        ],
        # payment_succeeded: benign, helps recovery
        [
            [0.940, 0.040, 0.010, 0.007, 0.003],
            [0.500, 0.440, 0.030, 0.020, 0.010],
            [0.550, 0.100, 0.280, 0.040, 0.030],
            [0.500, 0.150, 0.080, 0.220, 0.050],
            [0.250, 0.050, 0.020, 0.030, 0.650],
        ],
        # payment_failed: pushes handlers toward error
        [
            [0.700, 0.080, 0.180, 0.030, 0.010],
            [0.250, 0.350, 0.280, 0.090, 0.030],
            [0.150, 0.050, 0.650, 0.080, 0.070],
            [0.150, 0.100, 0.250, 0.400, 0.100],
            [0.150, 0.030, 0.070, 0.050, 0.700],
        ],
        # order_shipped: calls the carrier, slow and timeouts
        [
            [0.880, 0.080, 0.010, 0.025, 0.005],
            [0.350, 0.500, 0.030, 0.100, 0.020],
            [0.450, 0.120, 0.330, 0.050, 0.050],
            [0.350, 0.150, 0.050, 0.380, 0.070],
            [0.220, 0.050, 0.020, 0.030, 0.680],
        ],
        # order_delivered: the most benign
        [
            [0.950, 0.035, 0.008, 0.005, 0.002],
            [0.550, 0.400, 0.020, 0.020, 0.010],
            [0.550, 0.100, 0.280, 0.040, 0.030],
            [0.500, 0.150, 0.050, 0.250, 0.050],
            [0.280, 0.050, 0.020, 0.020, 0.630],
        ],
    ]
)

# Where a handler is before its first recorded step: mostly ok.
_INITIAL = np.array([0.85, 0.10, 0.03, 0.015, 0.005])

# How a flaky handler differs from a normal one (see OrderServiceSystem.default).
_FLAKY_FAILURE_FACTOR = 2.5  # failure entries of non-failure rows of P
_FLAKY_RECOVERY_FACTOR = 0.6  # "ok" entry of failure rows of P
_FLAKY_RETRY_FACTOR = 1.6  # payment_failed column of Q

# Metric distributions per state name:
# latency_ms = offset + lognormal(log(median), sigma); error_rate ~ Beta(a, b),
# or a constant when b == 0 (a is then the value).
_METRIC_MODELS: dict[str, dict[str, float]] = {
    "ok": {"offset": 0.0, "median": 50.0, "sigma": 0.35, "a": 1.0, "b": 199.0},
    "slow": {"offset": 0.0, "median": 800.0, "sigma": 0.30, "a": 2.0, "b": 98.0},
    "error": {"offset": 0.0, "median": 120.0, "sigma": 0.50, "a": 14.0, "b": 6.0},
    "timeout": {"offset": 5000.0, "median": 1500.0, "sigma": 0.60, "a": 2.0, "b": 8.0},
    "down": {"offset": 0.0, "median": 2.0, "sigma": 0.50, "a": 1.0, "b": 0.0},
}


def _fail_within(
    transition_matrix: np.ndarray, failure_mask: np.ndarray, horizon: int
) -> np.ndarray:
    """P(fail within h | S0 = i) for h = 1..horizon, by the recursion of :func:`markovfault.forecast.failure_probabilities`.

    ``f_0 = 1_F``, ``f_h = 1_F + 1_{not F} * (T f_{h-1})`` and the answer for
    ``h`` is ``(T f_{h-1})(i)``. Returns an array of shape (S, horizon).
    """
    is_failure = failure_mask.astype(float)
    f = is_failure.copy()
    out = np.empty((transition_matrix.shape[0], horizon))
    for h in range(horizon):
        tf = transition_matrix @ f
        out[:, h] = tf
        f = is_failure + (1.0 - is_failure) * tf
    return out


def _make_flaky(
    event_matrices: np.ndarray, event_probs: np.ndarray, failure_mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Derive the flaky-handler matrices from the normal ones (renormalised)."""
    P = event_matrices.copy()
    healthy = ~failure_mask
    P[:, healthy[:, None] & failure_mask[None, :]] *= _FLAKY_FAILURE_FACTOR
    P[:, failure_mask, 0] *= _FLAKY_RECOVERY_FACTOR
    P /= P.sum(axis=-1, keepdims=True)
    Q = event_probs.copy()
    Q[:, EVENT_NAMES.index("payment_failed")] *= _FLAKY_RETRY_FACTOR
    Q /= Q.sum(axis=-1, keepdims=True)
    return P, Q


def _check_stochastic(name: str, array: np.ndarray) -> None:
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ValueError(f"{name} must hold finite probabilities >= 0.")
    sums = array.sum(axis=-1)
    if not np.allclose(sums, 1.0, rtol=0.0, atol=1e-8):
        worst = float(np.max(np.abs(sums - 1.0)))
        raise ValueError(
            f"{name} is not stochastic: its rows must sum to 1 up to 1e-8, "
            f"the worst row is off by {worst:.3g}."
        )


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.array(array, dtype=np.float64, copy=True)
    array.setflags(write=False)
    return array


# --- failure memory and event-mix shifts: exact truth --------------------------


def _memory_matrices(
    event_matrices: np.ndarray, failure_mask: np.ndarray, window: int, boost: float
) -> np.ndarray:
    """The event tensor per memory value: shape (window + 1, E, S, S).

    Slot ``d < window`` multiplies the entries from a non-failure state into a
    failure state by ``boost`` and renormalises those rows; failure rows are
    left as they are. Slot ``window`` ("no failure in the last ``window``
    steps") is ``event_matrices`` itself, bit for bit.
    """
    P = np.asarray(event_matrices, dtype=np.float64)
    out = np.empty((window + 1,) + P.shape)
    out[window] = P
    if window:
        out[:window] = _boost_failures(P, failure_mask, boost)
    return out


def _boost_failures(event_matrices: np.ndarray, failure_mask: np.ndarray, factor: float) -> np.ndarray:
    """``P`` with every entry from a non-failure into a failure state times ``factor``.

    The non-failure rows are renormalised; failure rows are left as they are.
    """
    boosted = np.array(event_matrices, dtype=np.float64, copy=True)
    healthy = ~failure_mask
    boosted[:, healthy[:, None] & failure_mask[None, :]] *= factor
    rows = boosted[:, healthy, :]
    boosted[:, healthy, :] = rows / rows.sum(axis=-1, keepdims=True)
    return boosted


def _dependency_matrices(
    event_matrices: np.ndarray,
    failure_mask: np.ndarray,
    window: int,
    memory_boost: float,
    group_boost: float | None,
) -> np.ndarray:
    """The event tensor per (dependency, memory): shape (U, window + 1, E, S, S).

    ``U = 1`` (the dependency is always up) when ``group_boost`` is None, else
    2. Slot ``[0]`` is :func:`_memory_matrices` bit for bit; slot ``[1, d]``
    ("the group's dependency is down") multiplies the entries from a
    non-failure into a failure state by ``group_boost``, and by
    ``memory_boost`` too while ``d < window``, renormalising those rows once.
    """
    up = _memory_matrices(event_matrices, failure_mask, window, memory_boost)
    if group_boost is None:
        return up[None]
    down = np.empty_like(up)
    down[window] = _boost_failures(event_matrices, failure_mask, group_boost)
    if window:
        down[:window] = _boost_failures(
            event_matrices, failure_mask, group_boost * memory_boost
        )
    return np.stack([up, down])


def _dependency_chain(rate: float, length: float) -> tuple[np.ndarray, float]:
    """The two-state chain of a group's dependency (0 = up, 1 = down) and P(down) at stationarity.

    Up goes down with probability ``rate`` per step, down recovers with
    probability ``1 / length`` (so outages last ``length`` steps on average);
    the stationary share of steps down is ``rate / (rate + 1 / length)``.
    """
    recover = 1.0 / length
    chain = np.array([[1.0 - rate, rate], [recover, 1.0 - recover]])
    return chain, rate / (rate + recover)


def _joint_matrix(
    dependency_matrices: np.ndarray,
    event_probs: np.ndarray,
    failure_mask: np.ndarray,
    dependency_chain: np.ndarray | None,
    finish: np.ndarray | None,
    idle_share: float | None = None,
) -> np.ndarray:
    """The first-order chain over (dependency, state, memory), plus END when handlers finish.

    Index ``(u * S + s) * (W + 1) + d``, and END last if ``finish`` is given:
    ``K[(u, s, d), (u', s', d')] = A[u, u'] (1 - phi[s]) T_{u', d}[s, s'] [d' = next(s, d)]``
    where ``T_{u', d}`` is the marginal chain of ``dependency_matrices[u', d]``
    under ``event_probs``: the dependency moves first, and the step is drawn
    under its new value. ``K[(u, s, d), END] = phi[s]``; END is absorbing.
    With one dependency slot (``dependency_chain`` None) and no ``finish`` it
    is :func:`_augmented_matrix`.

    With ``idle_share`` (and no dependency chain) the first index is the idle
    flag ``i`` of the current step instead: the next step is drawn under it
    and the next flag is idle with probability ``idle_share``, whatever came
    before, ``K[(i, s, d), (i', s', d')] = pi[i'] (1 - phi[s]) T_{i, d}[s, s']
    [d' = next(s, d)]`` with ``pi = (1 - idle_share, idle_share)``.
    """
    blocks = [
        _augmented_matrix(matrices, event_probs, failure_mask)
        for matrices in dependency_matrices
    ]
    if idle_share is not None:
        pi = (1.0 - idle_share, idle_share)
        K = np.block([[pi[v] * blocks[u] for v in range(2)] for u in range(2)])
    elif dependency_chain is None:
        K = blocks[0]
    else:
        A = dependency_chain
        K = np.block([[A[u, v] * blocks[v] for v in range(2)] for u in range(2)])
    if finish is None:
        return K
    n_memory = dependency_matrices.shape[1]
    phi = np.tile(np.repeat(finish, n_memory), len(dependency_matrices))
    out = np.zeros((K.shape[0] + 1, K.shape[0] + 1))
    out[:-1, :-1] = K * (1.0 - phi)[:, None]
    out[:-1, -1] = phi
    out[-1, -1] = 1.0
    return out


def _joint_failure_mask(
    failure_mask: np.ndarray, n_memory: int, n_dependency: int, finishing: bool
) -> np.ndarray:
    """Failure flags over the index of :func:`_joint_matrix` (END is no failure)."""
    fail = np.tile(np.repeat(failure_mask, n_memory), n_dependency)
    return np.append(fail, False) if finishing else fail


def _shifted_probs(event_probs: np.ndarray, multipliers: np.ndarray) -> np.ndarray:
    """``Q[s, e] * m[e]``, rows renormalised; ``Q`` itself when ``m`` is all ones."""
    Q = np.asarray(event_probs, dtype=np.float64)
    if np.all(multipliers == 1.0):
        return Q.copy()
    shifted = Q * multipliers[None, :]
    return shifted / shifted.sum(axis=1, keepdims=True)


def _augmented_matrix(
    memory_matrices: np.ndarray, event_probs: np.ndarray, failure_mask: np.ndarray
) -> np.ndarray:
    """The first-order chain over (state, memory), index ``s * (W + 1) + d``.

    ``T[(s, d), (s', d')] = [d' = next(s, d)] * sum_e Q[s, e] P_d[e, s, s']``
    with ``next(s, d) = 0`` if ``s`` is a failure, else ``min(d + 1, W)``.
    """
    n_memory, _, S, _ = memory_matrices.shape
    W = n_memory - 1
    T = np.zeros((S, n_memory, S, n_memory))
    states = np.arange(S)
    for d in range(n_memory):
        Td = np.einsum("ie,eij->ij", event_probs, memory_matrices[d])
        next_d = np.where(failure_mask, 0, min(d + 1, W))
        T[states[:, None], d, states[None, :], next_d[:, None]] = Td
    return T.reshape(S * n_memory, S * n_memory)


def _fail_within_schedule(
    matrices: np.ndarray, failure_mask: np.ndarray, patterns: np.ndarray
) -> np.ndarray:
    """P(fail within h | X_0 = x) under a time-varying chain, for many schedules.

    ``matrices[r]`` is the transition matrix of regime ``r``; ``patterns[p, k]``
    the regime of step ``k + 1`` of schedule ``p``. For each ``h`` the backward
    recursion ``f = 1_F`` at step ``h``, ``f = 1_F + 1_{not F} (T_k f)`` for
    ``k = h .. 2`` and the answer ``T_1 f``. Returns shape (P, A, H).
    """
    n_patterns, horizon = patterns.shape
    n_aug = matrices.shape[1]
    is_failure = failure_mask.astype(float)
    out = np.empty((n_patterns, n_aug, horizon))
    for h in range(1, horizon + 1):
        f = np.broadcast_to(is_failure, (n_patterns, n_aug)).copy()
        for k in range(h, 0, -1):
            regimes = patterns[:, k - 1]
            tf = np.empty_like(f)
            for r in np.unique(regimes):
                sel = regimes == r
                tf[sel] = f[sel] @ matrices[r].T
            f = tf if k == 1 else is_failure + (1.0 - is_failure) * tf
        out[:, :, h - 1] = f
    return out


def _check_memory(memory_window, memory_boost) -> tuple[int, float]:
    memory_window = check_scalar(
        memory_window, "memory_window", (int, np.integer), min_val=0
    )
    memory_boost = check_scalar(
        memory_boost, "memory_boost", (int, float), min_val=0.0,
        include_boundaries="neither",
    )
    if not np.isfinite(memory_boost):
        raise ValueError(f"memory_boost must be finite, got {memory_boost}.")
    return int(memory_window), float(memory_boost)


def _check_number(value, name: str, *, low: float, high: float = np.inf,
                  low_open: bool = False, meaning: str) -> float:
    """A finite real number in ``[low, high]`` (``(low, high]`` if ``low_open``).

    TypeError for a non-number, :class:`ConfigError` naming the parameter, the
    allowed range and what it means otherwise.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}.")
    value = float(value)
    below = value <= low if low_open else value < low
    if not np.isfinite(value) or below or value > high:
        bracket = "(" if low_open else "["
        upper = "inf)" if high == np.inf else f"{high:g}]"
        raise ConfigError(
            f"{name} == {value:g}, must be a finite number in {bracket}{low:g}, {upper}: {meaning}."
        )
    return value


def _check_groups(rate, length, boost) -> tuple[float, float, float]:
    rate = _check_number(
        rate, "group_outage_rate", low=0.0, high=1.0,
        meaning="the per-step probability that a group's dependency goes down",
    )
    length = _check_number(
        length, "group_outage_length", low=1.0,
        meaning="the mean number of steps an outage of a dependency lasts",
    )
    boost = _check_number(
        boost, "group_outage_boost", low=0.0, low_open=True,
        meaning="the factor on the failure probabilities of a group's members while its dependency is down",
    )
    return rate, length, boost


def _check_idle(idle_after, idle_boost, clock: str, n_groups: int) -> tuple[float | None, float]:
    """``idle_after`` in milliseconds (None: off) and ``idle_boost``."""
    boost = _check_number(
        idle_boost, "idle_boost", low=0.0, low_open=True,
        meaning="the factor on the failure probabilities of the step after an idle step",
    )
    if idle_after is None:
        return None, boost
    try:
        after = pd.Timedelta(idle_after)
    except (TypeError, ValueError):
        after = None
    if after is None or after <= pd.Timedelta(0):
        raise ConfigError(
            f"idle_after = {idle_after!r} must be a positive duration such as \"80s\": a step that "
            "comes more than this long after the handler's previous step is idle (None: off)."
        )
    if clock != "drift":
        raise ConfigError(
            "idle_after needs clock='drift': with the aligned clock a step's gap depends on the "
            "gap before it, and the exact truth assumes gaps independent of each other."
        )
    if n_groups:
        raise ConfigError(
            "idle_after cannot be combined with n_groups: the exact truth and the filter of a "
            "group's dependency do not carry the idle flag. Use one or the other."
        )
    return after.value / 1e6, boost


def _idle_share(step_ms: float, jitter: float, idle_ms: float) -> float:
    """P(a gap is idle): P(max(rint(step_ms * U), 1) > idle_ms), U uniform on [1 - jitter, 1 + jitter).

    A gap is a whole number of milliseconds, so it is idle when it is at least ``m = floor(idle_ms) + 1``,
    that is when ``step_ms * U >= m - 1/2`` (for ``m >= 2``; every gap is idle when ``m = 1``).
    """
    m = np.floor(idle_ms) + 1.0
    if m <= 1.0:
        return 1.0
    if jitter == 0.0:
        return float(max(np.rint(step_ms), 1.0) >= m)
    low, high = step_ms * (1.0 - jitter), step_ms * (1.0 + jitter)
    return float(np.clip((high - (m - 0.5)) / (high - low), 0.0, 1.0))


def _check_finish(
    finish_rate, finish_status, state_names: tuple[str, ...]
) -> tuple[np.ndarray | None, str | None]:
    """The finishing probability per state (None when no state finishes) and the status of a finished row."""
    meaning = "the per-step probability that a handler finishes"
    if isinstance(finish_rate, Mapping):
        phi = np.zeros(len(state_names))
        for state, rate in finish_rate.items():
            if state not in state_names:
                raise ConfigError(
                    f"finish_rate names state {state!r}, which is not among {state_names}; "
                    "give a rate per state name, or one number for every state."
                )
            phi[state_names.index(state)] = _check_number(
                rate, f"finish_rate[{state!r}]", low=0.0, high=1.0, meaning=meaning
            )
    else:
        if not isinstance(finish_rate, (int, float, np.integer, np.floating)) or isinstance(
            finish_rate, bool
        ):
            raise TypeError(
                "finish_rate must be a number or a dict of state name to number, "
                f"got {type(finish_rate).__name__}."
            )
        phi = np.full(
            len(state_names),
            _check_number(finish_rate, "finish_rate", low=0.0, high=1.0, meaning=meaning),
        )
    if finish_status is not None:
        if not isinstance(finish_status, str) or not finish_status:
            raise TypeError(
                f"finish_status must be a non-empty str or None, got {finish_status!r}."
            )
        if finish_status in state_names:
            raise ConfigError(
                f"finish_status={finish_status!r} is one of the states {state_names}; a "
                "finished handler needs a status of its own, such as 'finished', or None "
                "to end its history without a row."
            )
    return (phi if np.any(phi > 0) else None), finish_status


@dataclass(frozen=True, eq=False)
class OrderServiceSystem:
    """The true generative model of a simulated order service.

    Each handler class (``"normal"``, ``"flaky"``) has its own event-arrival
    matrix ``Q`` and event-conditioned transition tensor ``P``. A step of a
    handler in state ``i``: event ``e`` arrives with probability ``Q[i, e]``,
    then the handler moves to state ``j`` with probability ``P[e, i, j]``.

    Parameters
    ----------
    state_names : tuple of str
        The states, in code order.
    event_names : tuple of str
        The event types, in code order.
    failure_states : tuple of str
        The states that count as failures; a subset of ``state_names``.
    event_matrices : dict of str to ndarray of shape (n_events, n_states, n_states)
        Handler class -> ``P``; each ``P[e]`` is row-stochastic.
    event_probs : dict of str to ndarray of shape (n_states, n_events)
        Handler class -> ``Q``; row-stochastic.
    initial_probs : dict of str to ndarray of shape (n_states,)
        Handler class -> distribution of the state a handler is in before its
        first recorded step.

    Attributes
    ----------
    handler_classes : tuple of str
        The handler classes, in the order of ``event_matrices``.
    failure_mask : ndarray of shape (n_states,)
        Boolean, True for failure states.

    Notes
    -----
    The marginal chain for unknown future events is

    .. math:: T_{ij} = \\sum_e Q_{ie} P_{eij},

    and the probability of reaching a failure state within ``h`` steps is
    computed in closed form with :math:`f_0 = 1_F`,
    :math:`f_h = 1_F + 1_{\\neg F} \\odot (T f_{h-1})`,
    :math:`P(\\text{fail within } h \\mid S_0 = i) = (T f_{h-1})_i`.
    The current state does not count: "fails within h" means one of the
    next ``h`` states is a failure.

    Examples
    --------
    >>> import numpy as np
    >>> from markovfault.simulate import OrderServiceSystem
    >>> system = OrderServiceSystem.default()
    >>> system.state_names
    ('ok', 'slow', 'error', 'timeout', 'down')
    >>> system.failure_states
    ('error', 'timeout', 'down')
    >>> system.event_matrices["normal"].shape, system.event_probs["flaky"].shape
    ((5, 5, 5), (5, 5))
    >>> T = system.transition_matrix("normal")
    >>> bool(np.allclose(T.sum(axis=1), 1.0))
    True
    >>> risk = system.failure_probabilities(10, "flaky")
    >>> risk.shape
    (5, 10)
    >>> bool(np.all(np.diff(risk, axis=1) >= 0))
    True
    """

    state_names: tuple[str, ...]
    event_names: tuple[str, ...]
    failure_states: tuple[str, ...]
    event_matrices: Mapping[str, np.ndarray]
    event_probs: Mapping[str, np.ndarray]
    initial_probs: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        states = tuple(str(s) for s in self.state_names)
        events = tuple(str(e) for e in self.event_names)
        failures = tuple(str(f) for f in self.failure_states)
        if len(set(states)) != len(states) or not states:
            raise ValueError(f"state_names must be unique and non-empty, got {states}.")
        if len(set(events)) != len(events) or not events:
            raise ValueError(f"event_names must be unique and non-empty, got {events}.")
        unknown = [f for f in failures if f not in states]
        if unknown:
            raise ValueError(
                f"failure_states {unknown} are not among state_names {states}."
            )
        S, E = len(states), len(events)
        classes = tuple(self.event_matrices)
        if not classes:
            raise ValueError("event_matrices must hold at least one handler class.")
        if set(self.event_probs) != set(classes):
            raise ValueError(
                f"event_probs has handler classes {sorted(self.event_probs)}, "
                f"event_matrices has {sorted(classes)}; they must be the same."
            )
        matrices, probs, initial = {}, {}, {}
        for name in classes:
            P = _readonly(self.event_matrices[name])
            Q = _readonly(self.event_probs[name])
            if P.shape != (E, S, S):
                raise ValueError(
                    f"event_matrices[{name!r}] has shape {P.shape}, "
                    f"expected (n_events, n_states, n_states) = {(E, S, S)}."
                )
            if Q.shape != (S, E):
                raise ValueError(
                    f"event_probs[{name!r}] has shape {Q.shape}, "
                    f"expected (n_states, n_events) = {(S, E)}."
                )
            _check_stochastic(f"event_matrices[{name!r}]", P)
            _check_stochastic(f"event_probs[{name!r}]", Q)
            if name in self.initial_probs:
                p0 = _readonly(self.initial_probs[name])
            else:  # default: everyone starts in the first state
                p0 = _readonly(np.eye(S)[0])
            if p0.shape != (S,):
                raise ValueError(
                    f"initial_probs[{name!r}] has shape {p0.shape}, expected ({S},)."
                )
            _check_stochastic(f"initial_probs[{name!r}]", p0)
            matrices[name], probs[name], initial[name] = P, Q, p0
        extra = set(self.initial_probs) - set(classes)
        if extra:
            raise ValueError(
                f"initial_probs names handler classes {sorted(extra)} "
                "that event_matrices does not have."
            )
        object.__setattr__(self, "state_names", states)
        object.__setattr__(self, "event_names", events)
        object.__setattr__(self, "failure_states", failures)
        object.__setattr__(self, "event_matrices", matrices)
        object.__setattr__(self, "event_probs", probs)
        object.__setattr__(self, "initial_probs", initial)

    @property
    def handler_classes(self) -> tuple[str, ...]:
        """The handler classes, in the order of ``event_matrices``."""
        return tuple(self.event_matrices)

    @property
    def failure_mask(self) -> np.ndarray:
        """Boolean array of shape (n_states,), True for failure states."""
        return np.isin(np.array(self.state_names), np.array(self.failure_states))

    def _check_class(self, handler_class: str) -> None:
        if handler_class not in self.event_matrices:
            raise ValueError(
                f"handler_class={handler_class!r} is unknown; "
                f"expected one of {self.handler_classes}."
            )

    def transition_matrix(self, handler_class: str = "normal") -> np.ndarray:
        """The marginal transition matrix ``T[i, j] = sum_e Q[i, e] P[e, i, j]``.

        Parameters
        ----------
        handler_class : str, default="normal"
            Which handler class.

        Returns
        -------
        T : ndarray of shape (n_states, n_states)
            Row-stochastic.

        Examples
        --------
        >>> from markovfault.simulate import OrderServiceSystem
        >>> T = OrderServiceSystem.default().transition_matrix("flaky")
        >>> T.shape
        (5, 5)
        """
        self._check_class(handler_class)
        Q = self.event_probs[handler_class]
        P = self.event_matrices[handler_class]
        return np.einsum("ie,eij->ij", Q, P)

    def failure_probabilities(
        self, horizon: int, handler_class: str = "normal"
    ) -> np.ndarray:
        """True probability of reaching a failure state within 1..horizon steps.

        Parameters
        ----------
        horizon : int
            The largest number of steps ahead, >= 1.
        handler_class : str, default="normal"
            Which handler class.

        Returns
        -------
        probs : ndarray of shape (n_states, horizon)
            ``probs[i, h - 1] = P(one of S_1..S_h is a failure | S_0 = i)``.

        Examples
        --------
        >>> from markovfault.simulate import OrderServiceSystem
        >>> system = OrderServiceSystem.default()
        >>> p = system.failure_probabilities(3)
        >>> bool(abs(p[0, 0] - system.transition_matrix()[0, 2:].sum()) < 1e-12)
        True
        """
        horizon = check_scalar(horizon, "horizon", (int, np.integer), min_val=1)
        T = self.transition_matrix(handler_class)
        return _fail_within(T, self.failure_mask, int(horizon))

    def memory_event_matrices(
        self,
        handler_class: str = "normal",
        memory_window: int = 0,
        memory_boost: float = 3.0,
    ) -> np.ndarray:
        """The event tensors of a handler with failure memory, per memory value.

        A handler's memory ``d`` counts the steps since its last failure: on
        the step right after a failure state ``d = 0``, then ``d`` grows by
        one per step and is capped at ``memory_window`` ("no failure in the
        last ``memory_window`` steps"). While ``d < memory_window``, every
        probability of moving from a non-failure state into a failure state is
        multiplied by ``memory_boost`` and the row renormalised; rows of
        failure states do not change.

        Parameters
        ----------
        handler_class : str, default="normal"
            Which handler class.
        memory_window : int, default=0
            ``W``; 0 means no memory.
        memory_boost : float, default=3.0
            Factor on the failure entries of non-failure rows, > 0.

        Returns
        -------
        matrices : ndarray of shape (memory_window + 1, n_events, n_states, n_states)
            ``matrices[d]`` is the ``P`` in force at memory ``d``;
            ``matrices[memory_window]`` equals ``event_matrices[handler_class]``.

        Examples
        --------
        >>> import numpy as np
        >>> from markovfault.simulate import OrderServiceSystem
        >>> system = OrderServiceSystem.default()
        >>> P = system.memory_event_matrices("normal", memory_window=5, memory_boost=3.0)
        >>> P.shape
        (6, 5, 5, 5)
        >>> bool(np.array_equal(P[5], system.event_matrices["normal"]))
        True
        >>> bool(P[0][0, 0, 2:].sum() > 2.5 * P[5][0, 0, 2:].sum())
        True
        """
        self._check_class(handler_class)
        memory_window, memory_boost = _check_memory(memory_window, memory_boost)
        return _memory_matrices(
            self.event_matrices[handler_class], self.failure_mask,
            memory_window, memory_boost,
        )

    def shifted_event_probs(
        self,
        handler_class: str = "normal",
        multipliers: Mapping[str, float] | None = None,
    ) -> np.ndarray:
        """``Q`` during an event-mix shift: ``Q[s, e] * m[e]``, rows renormalised.

        Parameters
        ----------
        handler_class : str, default="normal"
            Which handler class.
        multipliers : dict of str to float, default=None
            Event name -> factor (> 0); events not named keep factor 1. None
            or ``{}`` gives ``event_probs[handler_class]``.

        Returns
        -------
        Q : ndarray of shape (n_states, n_events)

        Examples
        --------
        >>> from markovfault.simulate import OrderServiceSystem
        >>> system = OrderServiceSystem.default()
        >>> Q = system.shifted_event_probs("normal", {"payment_failed": 10})
        >>> round(float(Q[0, 2]), 4)  # 0.05 * 10 / (0.95 + 0.5)
        0.3448
        """
        self._check_class(handler_class)
        m = _multiplier_vector(self.event_names, multipliers or {}, "multipliers")
        return _shifted_probs(self.event_probs[handler_class], m)

    def augmented_transition_matrix(
        self,
        handler_class: str = "normal",
        memory_window: int = 0,
        memory_boost: float = 3.0,
        multipliers: Mapping[str, float] | None = None,
    ) -> np.ndarray:
        """The first-order chain over (state, memory) of a handler with failure memory.

        Parameters
        ----------
        handler_class, memory_window, memory_boost
            As in :meth:`memory_event_matrices`.
        multipliers : dict of str to float, default=None
            An event-mix shift in force, as in :meth:`shifted_event_probs`.

        Returns
        -------
        T : ndarray of shape (n_states * (W + 1), n_states * (W + 1))
            Row-stochastic, index ``s * (W + 1) + d``:
            ``T[(s, d), (s', d')] = [d' = next(s, d)] sum_e Q[s, e] P_d[e, s, s']``
            with ``next(s, d) = 0`` if ``s`` is a failure state, else
            ``min(d + 1, W)``. With ``memory_window=0`` and no shift it is
            :meth:`transition_matrix`.

        Examples
        --------
        >>> import numpy as np
        >>> from markovfault.simulate import OrderServiceSystem
        >>> system = OrderServiceSystem.default()
        >>> T = system.augmented_transition_matrix("flaky", memory_window=3)
        >>> T.shape, bool(np.allclose(T.sum(axis=1), 1.0))
        ((20, 20), True)
        >>> bool(np.allclose(system.augmented_transition_matrix(), system.transition_matrix()))
        True
        """
        Pm = self.memory_event_matrices(handler_class, memory_window, memory_boost)
        Q = self.shifted_event_probs(handler_class, multipliers)
        return _augmented_matrix(Pm, Q, self.failure_mask)

    def memory_failure_probabilities(
        self,
        horizon: int,
        handler_class: str = "normal",
        memory_window: int = 0,
        memory_boost: float = 3.0,
        multipliers: Mapping[str, float] | None = None,
    ) -> np.ndarray:
        """True P(fail within 1..horizon steps) from every (state, memory).

        The recursion of :meth:`failure_probabilities` on the chain of
        :meth:`augmented_transition_matrix`, with "failure" defined on the
        state. For a schedule of shifts that changes within the horizon, see
        :func:`true_failure_probabilities`.

        Returns
        -------
        probs : ndarray of shape (n_states, memory_window + 1, horizon)
            ``probs[s, d, h - 1] = P(one of S_1..S_h is a failure | S_0 = s, D_0 = d)``.

        Examples
        --------
        >>> import numpy as np
        >>> from markovfault.simulate import OrderServiceSystem
        >>> system = OrderServiceSystem.default()
        >>> p = system.memory_failure_probabilities(5, memory_window=10)
        >>> p.shape
        (5, 11, 5)
        >>> bool(p[0, 0, 0] > 2 * p[0, 10, 0])  # "ok" right after a failure
        True
        >>> bool(np.allclose(p[:, 10, 0], system.failure_probabilities(1)[:, 0]))
        True
        """
        horizon = check_scalar(horizon, "horizon", (int, np.integer), min_val=1)
        T = self.augmented_transition_matrix(
            handler_class, memory_window, memory_boost, multipliers
        )
        n_memory = T.shape[0] // len(self.state_names)
        fail = np.repeat(self.failure_mask, n_memory)
        out = _fail_within(T, fail, int(horizon))
        return out.reshape(len(self.state_names), n_memory, int(horizon))

    def group_event_matrices(
        self,
        handler_class: str = "normal",
        memory_window: int = 0,
        memory_boost: float = 3.0,
        group_outage_boost: float = 10.0,
    ) -> np.ndarray:
        """The event tensors of a group member, per dependency state and memory value.

        While a group's shared dependency is down, every probability of moving
        from a non-failure state into a failure state is multiplied by
        ``group_outage_boost``, and also by ``memory_boost`` while the
        handler's memory ``d < memory_window``; the row is then renormalised
        once. Rows of failure states do not change.

        Parameters
        ----------
        handler_class, memory_window, memory_boost
            As in :meth:`memory_event_matrices`.
        group_outage_boost : float, default=10.0
            Factor on the failure entries of non-failure rows while the
            dependency is down, > 0.

        Returns
        -------
        matrices : ndarray of shape (2, memory_window + 1, n_events, n_states, n_states)
            ``matrices[0]`` (dependency up) is :meth:`memory_event_matrices`;
            ``matrices[1]`` (down) is boosted.

        Examples
        --------
        >>> import numpy as np
        >>> from markovfault.simulate import OrderServiceSystem
        >>> system = OrderServiceSystem.default()
        >>> P = system.group_event_matrices("normal", group_outage_boost=6.0)
        >>> P.shape
        (2, 1, 5, 5, 5)
        >>> bool(np.array_equal(P[0, 0], system.event_matrices["normal"]))
        True
        >>> row = system.event_matrices["normal"][0, 0]  # order_created, from ok
        >>> want = np.r_[row[:2], 6 * row[2:]] / (row[:2].sum() + 6 * row[2:].sum())
        >>> bool(np.allclose(P[1, 0, 0, 0], want))
        True
        """
        self._check_class(handler_class)
        memory_window, memory_boost = _check_memory(memory_window, memory_boost)
        *_, group_outage_boost = _check_groups(0.0, 1.0, group_outage_boost)
        return _dependency_matrices(
            self.event_matrices[handler_class], self.failure_mask,
            memory_window, memory_boost, group_outage_boost,
        )

    def joint_transition_matrix(
        self,
        handler_class: str = "normal",
        *,
        memory_window: int = 0,
        memory_boost: float = 3.0,
        multipliers: Mapping[str, float] | None = None,
        dependency: bool = False,
        group_outage_rate: float = 0.005,
        group_outage_length: float = 20.0,
        group_outage_boost: float = 10.0,
        finish_rate: float | Mapping[str, float] = 0.0,
    ) -> np.ndarray:
        """The first-order chain over (dependency, state, memory) and END of a handler.

        The true process of :func:`simulate_histories` with groups
        (``dependency=True``) and finishing. At each step the group's
        dependency moves first (up to down with probability
        ``group_outage_rate``, down to up with ``1 / group_outage_length``);
        then the handler, in state ``s``, finishes with probability
        ``finish_rate[s]`` (END, absorbing, not a failure) or takes its step
        under the new dependency state and its memory (see
        :meth:`group_event_matrices`).

        Parameters
        ----------
        handler_class, memory_window, memory_boost, multipliers
            As in :meth:`augmented_transition_matrix`.
        dependency : bool, default=False
            Whether the handler belongs to a group with a shared dependency.
        group_outage_rate, group_outage_length, group_outage_boost
            The dependency, as in :func:`simulate_histories`; used only with
            ``dependency=True``.
        finish_rate : float or dict of str to float, default=0.0
            P(finish) per step, one number or one per state name (others 0).

        Returns
        -------
        T : ndarray of shape (n, n)
            Row-stochastic, index ``(u * n_states + s) * (W + 1) + d`` with
            ``u`` (0 = up, 1 = down) only with ``dependency=True``, and END as
            the last index when some ``finish_rate`` is > 0. Without either it
            is :meth:`augmented_transition_matrix`.

        Examples
        --------
        >>> import numpy as np
        >>> from markovfault.simulate import OrderServiceSystem
        >>> system = OrderServiceSystem.default()
        >>> T = system.joint_transition_matrix(
        ...     "normal", memory_window=2, dependency=True, finish_rate={"ok": 0.1})
        >>> T.shape  # 2 x 5 x 3 joint states and END
        (31, 31)
        >>> bool(np.allclose(T.sum(axis=1), 1.0)), float(T[0, -1]), float(T[-1, -1])
        (True, 0.1, 1.0)
        """
        self._check_class(handler_class)
        memory_window, memory_boost = _check_memory(memory_window, memory_boost)
        rate, length, boost = _check_groups(
            group_outage_rate, group_outage_length, group_outage_boost
        )
        phi, _ = _check_finish(finish_rate, None, self.state_names)
        chain = _dependency_chain(rate, length)[0] if dependency else None
        Pm = _dependency_matrices(
            self.event_matrices[handler_class], self.failure_mask,
            memory_window, memory_boost, boost if dependency else None,
        )
        Q = self.shifted_event_probs(handler_class, multipliers)
        return _joint_matrix(Pm, Q, self.failure_mask, chain, phi)

    def joint_failure_probabilities(
        self,
        horizon: int,
        handler_class: str = "normal",
        **chain,
    ) -> np.ndarray:
        """True P(fail within 1..horizon steps) from every (dependency, state, memory).

        The recursion of :meth:`failure_probabilities` on
        :meth:`joint_transition_matrix`; finishing within the horizon without
        failing counts as no failure.

        Parameters
        ----------
        horizon : int
            The largest number of steps ahead, >= 1.
        handler_class : str, default="normal"
            Which handler class.
        **chain
            The keyword arguments of :meth:`joint_transition_matrix`.

        Returns
        -------
        probs : ndarray of shape (n_dependency, n_states, memory_window + 1, horizon)
            ``probs[u, s, d, h - 1]``; ``n_dependency`` is 2 with
            ``dependency=True`` (``u = 1``: down), else 1.

        Examples
        --------
        >>> from markovfault.simulate import OrderServiceSystem
        >>> system = OrderServiceSystem.default()
        >>> p = system.joint_failure_probabilities(5, dependency=True)
        >>> p.shape
        (2, 5, 1, 5)
        >>> bool(p[1, 0, 0, 0] > 3 * p[0, 0, 0, 0])  # "ok" while the dependency is down
        True
        """
        horizon = int(check_scalar(horizon, "horizon", (int, np.integer), min_val=1))
        T = self.joint_transition_matrix(handler_class, **chain)
        W = int(chain.get("memory_window", 0))
        U = 2 if chain.get("dependency", False) else 1
        S = len(self.state_names)
        finishing = T.shape[0] == U * S * (W + 1) + 1
        fail = _joint_failure_mask(self.failure_mask, W + 1, U, finishing)
        out = _fail_within(T, fail, horizon)[: U * S * (W + 1)]
        return out.reshape(U, S, W + 1, horizon)

    @classmethod
    def default(
        cls, failure_states: tuple[str, ...] | list[str] = FAILURE_STATES
    ) -> OrderServiceSystem:
        """The order service used for the bundled sample and the tests.

        States ``ok, slow, error, timeout, down``; events ``order_created,
        payment_succeeded, payment_failed, order_shipped, order_delivered``.
        ``payment_failed`` pushes handlers toward ``error`` and is more
        frequent in failure states (retries); ``order_created`` and
        ``order_delivered`` are mostly benign; ``order_shipped`` brings
        ``slow`` and ``timeout``; ``down`` is sticky (about 0.65 to stay)
        but recovers, mostly to ``ok``.

        Flaky handlers use the same matrices with, per event, the
        probabilities of moving from ``ok``/``slow`` into ``error``,
        ``timeout`` or ``down`` multiplied by 2.5, the probability of
        recovering from a failure state to ``ok`` multiplied by 0.6, and
        ``payment_failed`` arrivals multiplied by 1.6, each row then
        renormalised. Both classes start mostly in ``ok``.

        Parameters
        ----------
        failure_states : sequence of str, default=("error", "timeout", "down")
            Which states count as failures for :meth:`failure_probabilities`.
            Does not change the matrices.

        Returns
        -------
        system : OrderServiceSystem

        Examples
        --------
        >>> from markovfault.simulate import OrderServiceSystem
        >>> OrderServiceSystem.default(failure_states=["down"]).failure_states
        ('down',)
        """
        canonical_mask = np.isin(np.array(STATE_NAMES), np.array(FAILURE_STATES))
        P_flaky, Q_flaky = _make_flaky(_P_NORMAL, _Q_NORMAL, canonical_mask)
        return cls(
            state_names=STATE_NAMES,
            event_names=EVENT_NAMES,
            failure_states=tuple(failure_states),
            event_matrices={"normal": _P_NORMAL, "flaky": P_flaky},
            event_probs={"normal": _Q_NORMAL, "flaky": Q_flaky},
            initial_probs={"normal": _INITIAL, "flaky": _INITIAL},
        )


_RandomStateLike = int | np.random.RandomState | np.random.Generator | None


def _check_rng(random_state: _RandomStateLike):
    """A ``np.random.Generator`` is used as is; anything else goes through
    ``sklearn.utils.check_random_state`` (None, int or RandomState)."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    return check_random_state(random_state)


def _generator(random_state) -> np.random.Generator:
    """A ``np.random.Generator`` from a seed, a Generator (used as is) or None."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(2**31))
    return np.random.default_rng(random_state)


def _sample_categorical(rng, cumulative: np.ndarray) -> np.ndarray:
    """One draw per row of ``cumulative`` (rows are cumulative sums ending in 1)."""
    u = rng.random(cumulative.shape[0])
    codes = (u[:, None] >= cumulative).sum(axis=1)
    return np.minimum(codes, cumulative.shape[1] - 1)


def _cumulative(array: np.ndarray) -> np.ndarray:
    c = np.cumsum(array, axis=-1)
    c[..., -1] = 1.0  # guard against rounding: every uniform < 1 lands in a bin
    return c


def _metrics(rng, state_names: tuple[str, ...], states: np.ndarray):
    """Draw latency_ms and error_rate for each row, vectorised per state."""
    missing = [s for s in state_names if s not in _METRIC_MODELS]
    if missing:
        raise ValueError(
            f"no metric model for states {missing}; metrics are defined for "
            f"{sorted(_METRIC_MODELS)}. Pass with_metrics=False."
        )
    latency = np.full(states.shape[0], np.nan)  # NaN stays on rows of finished handlers
    error_rate = np.full(states.shape[0], np.nan)
    for code, name in enumerate(state_names):
        rows = np.flatnonzero(states == code)
        m = _METRIC_MODELS[name]
        latency[rows] = m["offset"] + rng.lognormal(
            np.log(m["median"]), m["sigma"], rows.size
        )
        if m["b"] == 0.0:
            error_rate[rows] = m["a"]
        else:
            error_rate[rows] = rng.beta(m["a"], m["b"], rows.size)
    return latency, error_rate


def _handler_names(n_handlers: int) -> np.ndarray:
    width = max(2, len(str(n_handlers)))
    numbers = np.strings.zfill(np.arange(1, n_handlers + 1).astype(str), width)
    return np.strings.add("orders-worker-", numbers)


def _group_names(n_groups: int) -> np.ndarray:
    if not n_groups:
        return np.array([], dtype=object)
    numbers = np.strings.zfill(np.arange(1, n_groups + 1).astype(str), len(str(n_groups)))
    return np.strings.add("payments-db-", numbers).astype(object)


def _draw_dependency(rng, n_groups: int, n_steps: int, rate: float, length: float) -> np.ndarray:
    """The dependency of each group per step, True when down: shape (n_groups, n_steps).

    Step 0 is drawn from the stationary distribution; each next step moves
    by :func:`_dependency_chain`. Vectorised over groups.
    """
    _, stationary_down = _dependency_chain(rate, length)
    u = rng.random((n_groups, n_steps))
    path = np.empty((n_groups, n_steps), dtype=bool)
    path[:, 0] = u[:, 0] < stationary_down
    for n in range(1, n_steps):
        path[:, n] = np.where(path[:, n - 1], u[:, n] >= 1.0 / length, u[:, n] < rate)
    return path


def _multiplier_vector(
    event_names: tuple[str, ...], multipliers: Mapping[str, float], what: str
) -> np.ndarray:
    if not isinstance(multipliers, Mapping):
        raise TypeError(
            f"{what} must be a dict of event name to multiplier, "
            f"got {type(multipliers).__name__}."
        )
    m = np.ones(len(event_names))
    for name, factor in multipliers.items():
        if name not in event_names:
            raise ValueError(
                f"{what} names event {name!r}, which is not among {event_names}."
            )
        factor = float(factor)
        if not (np.isfinite(factor) and factor > 0):
            raise ValueError(
                f"{what}[{name!r}] == {factor}, must be a finite number > 0."
            )
        m[event_names.index(name)] *= factor
    return m


MixShift = tuple[int, int, Mapping[str, float]]


def _resolve_shifts(
    event_names: tuple[str, ...], mix_shifts
) -> tuple[tuple[int, int, dict[str, float]], ...]:
    """Validate ``[(start, end, {event: multiplier}), ...]`` into a tuple."""
    if mix_shifts is None:
        return ()
    out = []
    for i, shift in enumerate(mix_shifts):
        try:
            start, end, multipliers = shift
        except (TypeError, ValueError):
            raise TypeError(
                f"mix_shifts[{i}] must be a (start_step, end_step, "
                f"{{event: multiplier}}) tuple, got {shift!r}."
            ) from None
        for name, value in (("start_step", start), ("end_step", end)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(
                    f"mix_shifts[{i}] {name} must be an int, got {value!r}."
                )
        if not 0 <= start < end:
            raise ValueError(
                f"mix_shifts[{i}] covers steps [{start}, {end}); need 0 <= start < end."
            )
        _multiplier_vector(event_names, multipliers, f"mix_shifts[{i}]")
        out.append((int(start), int(end), {str(k): float(v) for k, v in multipliers.items()}))
    return tuple(out)


@dataclass(frozen=True, eq=False)
class _Schedule:
    """Regimes of the event mix per step index: piecewise constant.

    ``bounds`` are the sorted change points; step ``n`` lies in segment
    ``searchsorted(bounds, n, "right")`` whose regime is ``segment_regime``.
    Regime 0 is "no shift"; ``multipliers[r]`` is the product of the
    multipliers of the shifts active in regime ``r``.
    """

    bounds: np.ndarray
    segment_regime: np.ndarray
    multipliers: np.ndarray

    @classmethod
    def build(cls, event_names: tuple[str, ...], shifts) -> _Schedule:
        bounds = np.unique([b for start, end, _ in shifts for b in (start, end)])
        vectors = [np.ones(len(event_names))]
        keys = [tuple(vectors[0])]
        segment_regime = np.zeros(bounds.size + 1, dtype=np.intp)
        for k in range(1, bounds.size + 1):  # segment k = [bounds[k-1], bounds[k])
            step = bounds[k - 1]
            m = np.ones(len(event_names))
            for start, end, multipliers in shifts:
                if start <= step < end:
                    m = m * _multiplier_vector(event_names, multipliers, "mix_shifts")
            key = tuple(m)
            if key not in keys:
                keys.append(key)
                vectors.append(m)
            segment_regime[k] = keys.index(key)
        return cls(bounds.astype(np.int64), segment_regime, np.array(vectors))

    def regime_of(self, steps: np.ndarray) -> np.ndarray:
        steps = np.asarray(steps)
        return self.segment_regime[np.searchsorted(self.bounds, steps, side="right")]


def _draw_gaps(rng, step_ms: float, jitter: float, n_handlers: int, n_steps: int) -> np.ndarray:
    """The time from each handler's previous step, in whole milliseconds (at least 1), and at step 0 its
    offset from the start (within one interval)."""
    gaps = np.rint(step_ms * rng.uniform(1.0 - jitter, 1.0 + jitter, (n_handlers, n_steps)))
    gaps[:, 0] = np.floor(step_ms * rng.random(n_handlers))
    gaps[:, 1:] = np.maximum(gaps[:, 1:], 1.0)
    return gaps


def _draw_outages(
    rng, n_steps: int, outages: int, outage_length: int, outage_boost
) -> list[tuple[int, int, dict[str, float]]]:
    """``outages`` non-overlapping windows of ``outage_length`` steps within the run."""
    room = n_steps - outages * outage_length
    if room < 0:
        raise ValueError(
            f"outages * outage_length == {outages * outage_length} exceeds "
            f"n_steps == {n_steps}; the outage windows do not fit."
        )
    free = np.sort(np.floor(rng.random(outages) * (room + 1)).astype(np.int64))
    starts = free + np.arange(outages) * outage_length
    return [(int(s), int(s) + outage_length, dict(outage_boost)) for s in starts]


# --- state-dependent sojourns (a Markov renewal process): simulation and exact truth in time -------


def _resolve_sojourns(sojourns, state_names: tuple[str, ...]) -> dict[str, object]:
    """``sojourns`` as a dict state name -> frozen continuous distribution, every state present.

    ``"exponential"`` gives every state ``expon(scale=1)``; a mapping may leave states out, which then
    get ``expon(scale=1)`` too. Raises :class:`ConfigError` for unknown states, objects that are not
    frozen ``scipy.stats`` continuous distributions, a support reaching below 0 or a mean that is not
    finite and positive.
    """
    if isinstance(sojourns, str):
        if sojourns != "exponential":
            raise ConfigError(
                f"sojourns = {sojourns!r}: the only name accepted is 'exponential' (every state waits an "
                "exponential time of mean one step_interval); otherwise give a dict of state name to a "
                "frozen scipy.stats distribution such as scipy.stats.weibull_min(3, scale=1.1)."
            )
        sojourns = {}
    if not isinstance(sojourns, Mapping):
        raise ConfigError(
            f"sojourns must be None, 'exponential' or a dict of state name to a frozen scipy.stats "
            f"distribution, got {type(sojourns).__name__}."
        )
    unknown = [s for s in sojourns if s not in state_names]
    if unknown:
        raise ConfigError(
            f"sojourns names states {unknown} that are not among {state_names}; key the dict by the "
            "system's state names."
        )
    out = {}
    for name in state_names:
        dist = sojourns.get(name)
        if dist is None:
            out[name] = stats.expon(scale=1.0)
            continue
        if not (isinstance(dist, stats.distributions.rv_frozen) and isinstance(dist.dist, stats.rv_continuous)):
            raise ConfigError(
                f"sojourns[{name!r}] is a {type(dist).__name__}, not a frozen continuous scipy.stats "
                "distribution; pass one with its parameters, such as scipy.stats.expon(scale=2.0) "
                "(times in units of step_interval)."
            )
        low, _ = dist.support()
        mean = float(dist.mean())
        if not low >= 0.0 or not (np.isfinite(mean) and mean > 0.0):
            raise ConfigError(
                f"sojourns[{name!r}] has support from {low:g} and mean {mean:g}: a wait must be >= 0 "
                "with a finite positive mean; use a distribution on [0, inf), such as "
                "scipy.stats.weibull_min(3, scale=1.0) or a gamma, not one that reaches negative times."
            )
        out[name] = dist
    return out


def _draw_waits(rng, dists: list, codes: np.ndarray) -> np.ndarray:
    """One wait per entry of ``codes`` (state codes), ``dists[code].ppf(U)``, vectorised per state."""
    u = rng.random(codes.shape)
    w = np.empty(codes.shape)
    for code, dist in enumerate(dists):
        at = codes == code
        if at.any():
            w[at] = dist.ppf(u[at])
    return w


def _draw_sojourn_gaps(rng, step_ms: float, held: np.ndarray, dists: list, rate: np.ndarray) -> np.ndarray:
    """The gaps of the Markov renewal clock in whole milliseconds (at least 1).

    Column 0 is each handler's offset from the start (within one interval, as :func:`_draw_gaps`);
    column ``n >= 1`` the wait after step ``n - 1``, drawn from the sojourn of ``held[:, n - 1]`` (the
    state the handler is in after step ``n - 1``) and divided by the handler's rate factor.
    """
    n_handlers, n_steps = held.shape
    gaps = np.empty((n_handlers, n_steps))
    gaps[:, 0] = np.floor(step_ms * rng.random(n_handlers))
    waits = _draw_waits(rng, dists, held[:, :-1])
    gaps[:, 1:] = np.maximum(np.rint(step_ms * waits / rate[:, None]), 1.0)
    return gaps


def _hitting_pool(rng, dists: list, chains: np.ndarray, failure_mask: np.ndarray, n_paths: int,
                  horizon: float) -> np.ndarray:
    """Sampled times to the first failure step from each (class, state) entered at age 0, rate factor 1.

    ``chains[k]`` is the marginal chain ``T`` of class ``k``. A path from ``s`` waits ``D_s``, moves
    by ``T[s]``, stops when it enters a failure state; paths past ``horizon`` (in units of
    step_interval) are cut and get ``inf``. Vectorised over all paths: a loop over steps only, each
    step dropping the paths that failed or passed the horizon. Only non-failure starts are sampled
    (the others stay ``inf``; they are never used). Returns shape (K, S, n_paths).
    """
    K, S, _ = chains.shape
    out = np.full((K, S, n_paths), np.inf)
    starts = np.flatnonzero(~failure_mask)
    k = np.repeat(np.arange(K), starts.size * n_paths)
    cur = np.tile(np.repeat(starts, n_paths), K)
    slot = np.flatnonzero(np.broadcast_to(~failure_mask[None, :, None], out.shape).ravel())
    t = np.zeros(k.size)
    cumulative = _cumulative(chains)
    flat = out.reshape(-1)
    while k.size:
        t += _draw_waits(rng, dists, cur)
        nxt = _sample_categorical(rng, cumulative[k, cur])
        alive = t <= horizon
        hit = alive & failure_mask[nxt]
        flat[slot[hit]] = t[hit]
        go = alive & ~hit
        k, cur, t, slot = k[go], nxt[go], t[go], slot[go]
    return out


def _residual_cdf(dist, age: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``P(R <= u)`` of the residual wait ``R`` at ``age`` (unit time): ``1 - S(age + u) / S(age)``, 0 for u < 0.

    Through ``logsf``, so old ages whose survival underflows stay exact.
    """
    u = np.asarray(u, dtype=float)
    age = np.broadcast_to(age, u.shape)
    out = np.zeros(u.shape)
    ok = u >= 0.0
    if ok.any():
        now = dist.logsf(age[ok])
        with np.errstate(invalid="ignore"):  # past a bounded support the next step is due at once
            out[ok] = np.where(np.isneginf(now), 1.0, -np.expm1(dist.logsf(age[ok] + u[ok]) - now))
    return out


def _time_truth_mc(dists: list, chains: np.ndarray, failure_mask: np.ndarray, klass: np.ndarray,
                   state: np.ndarray, age: np.ndarray, rate: np.ndarray, within: np.ndarray,
                   n_paths: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """P(fail within each T) and its Monte Carlo standard error per origin (class, state, age, rate factor).

    All times in units of step_interval. With ``x = c a`` the origin's age in the time of a rate-1
    handler, the first next step comes after the residual ``R`` (``P(R > v) = S_s(x + v) / S_s(x)``)
    and ends in ``j`` with probability ``T[s, j]``, independently; if ``j`` fails the hit is ``R``,
    else ``R + H_j`` with ``H_j`` the age-0 hitting time from ``j``. In handler time, ``P(hit <= T)``
    is that at ``c T``, so (conditioning on ``j`` and integrating ``R`` exactly)

    ``p = sum_{j in F} T[s, j] F_R(cT) + sum_{j not in F} T[s, j] E[F_R(cT - H_j)]``

    with the expectation a mean over the pool of :func:`_hitting_pool` (``n_paths`` per class and
    state, shared by all origins): Monte Carlo only over ``H_j``, whose draws are iid, so the
    standard error is ``sqrt(sum_j T[s, j]^2 var(F_R(cT - H_j)) / n_paths)``. Loops over states,
    next states, durations and blocks of origins; vectorised over origins and pool draws.
    """
    n = klass.shape[0]
    p = np.zeros((n, within.size))
    var = np.zeros((n, within.size))
    if n == 0:
        return p, var
    x = rate * age
    y = rate[:, None] * within[None, :]  # the durations in rate-1 time
    pool = _hitting_pool(rng, dists, chains, failure_mask, n_paths, float(y.max()))
    healthy = np.flatnonzero(~failure_mask)
    block = max(1, 2_000_000 // n_paths)
    for s, dist in enumerate(dists):
        rows = np.flatnonzero(state == s)
        for lo in range(0, rows.size, block):
            r = rows[lo:lo + block]
            T_s = chains[klass[r], s]  # (r, S)
            for m in range(within.size):
                direct = _residual_cdf(dist, x[r], y[r, m])
                p[r, m] += T_s[:, failure_mask].sum(axis=1) * direct
                for j in healthy:
                    g = _residual_cdf(dist, x[r, None], y[r, m, None] - pool[klass[r], j])
                    p[r, m] += T_s[:, j] * g.mean(axis=1)
                    var[r, m] += T_s[:, j] ** 2 * g.var(axis=1, ddof=1) / n_paths
    return np.clip(p, 0.0, 1.0), np.sqrt(var)


def _fail_generator(chain: np.ndarray, means: np.ndarray, failure_mask: np.ndarray) -> np.ndarray:
    """The generator of the exponential clock with failures absorbing, rate factor 1: shape (S + 1, S + 1).

    Index ``S`` is FAIL (absorbing, row zero). From any state ``s`` (failure or not) the next step
    comes at rate ``1 / mean_s`` and moves by ``T[s]``: into a non-failure ``j != s`` directly, into
    any failure state (``s`` itself included) to FAIL. Nothing enters a failure state's own index, so
    a handler in a failure state takes its first jump with the true ``T`` (its current state does not
    count) and is absorbed at the next failure. On non-failure states this is ``diag(lambda) (T - I)``.
    """
    S = chain.shape[0]
    lam = 1.0 / means
    G = np.zeros((S + 1, S + 1))
    healthy = ~failure_mask
    G[:S, :S][:, healthy] = lam[:, None] * chain[:, healthy]
    G[:S, S] = lam * chain[:, failure_mask].sum(axis=1)
    G[np.arange(S), np.arange(S)] = 0.0
    G[np.arange(S), np.arange(S)] = -G[:S].sum(axis=1)
    return G


def _time_truth_expm(means: np.ndarray, chains: np.ndarray, failure_mask: np.ndarray, klass: np.ndarray,
                     state: np.ndarray, rate: np.ndarray, within: np.ndarray) -> np.ndarray:
    """The closed form for exponential sojourns: ``expm(c T G_k)[s, FAIL]`` per origin and duration.

    ``G_k`` is :func:`_fail_generator` of the class; age does not matter (memoryless). One batched
    ``scipy.linalg.expm`` over origins and durations.
    """
    S = chains.shape[1]
    if klass.size == 0:
        return np.zeros((0, within.size))
    G = np.stack([_fail_generator(chain, means, failure_mask) for chain in chains])
    A = (rate[:, None] * within[None, :])[:, :, None, None] * G[klass][:, None]
    E = linalg.expm(A)
    return np.clip(E[np.arange(klass.size), :, state, S], 0.0, 1.0)


def _durations(within) -> tuple[list, np.ndarray]:
    """``within`` as labels (as given) and positive Timedeltas."""
    items = [within] if isinstance(within, (str, pd.Timedelta)) else list(within)
    if not items:
        raise ConfigError("within is empty; give durations such as ['2min', '15min'].")
    out = []
    for item in items:
        try:
            td = pd.Timedelta(item)
        except (TypeError, ValueError):
            td = None
        if td is None or pd.isna(td) or td <= pd.Timedelta(0):
            raise ConfigError(
                f"within holds {item!r}; each duration must be positive, such as '15min' or "
                "pd.Timedelta(minutes=15)."
            )
        out.append(td)
    return items, np.array([td.value for td in out], dtype=float)


class TimeFailureTruth(NamedTuple):
    """The exact P(fail within T) in time: what :meth:`SimulatedHistories.true_time_failure_probabilities` returns.

    Unpacks as ``probabilities, standard_errors, origins``.

    Attributes
    ----------
    probabilities : DataFrame
        One row per origin, one column per duration of ``within`` (labelled as given).
    standard_errors : DataFrame
        The Monte Carlo standard error of each entry (zeros with ``method="expm"``).
    origins : DataFrame
        Per row: ``handler_class``, ``state`` (its last state), ``age`` (Timedelta) and ``rate_factor``
        (and ``last_time`` for handlers).
    """

    probabilities: pd.DataFrame
    standard_errors: pd.DataFrame
    origins: pd.DataFrame


def simulate_histories(
    n_handlers: int = 50,
    n_steps: int = 1000,
    *,
    system: OrderServiceSystem | None = None,
    flaky_fraction: float = 0.2,
    start: str | pd.Timestamp = "2026-01-01",
    step_interval: str | pd.Timedelta = "1min",
    jitter: float = 0.5,
    clock: str = "drift",
    random_state: _RandomStateLike = None,
    with_metrics: bool = True,
    with_event_ids: bool = True,
    duplicate_rate: float = 0.0,
    shuffle: bool = False,
    memory_window: int = 0,
    memory_boost: float = 3.0,
    mix_shifts: list[MixShift] | None = None,
    outages: int = 0,
    outage_length: int = 60,
    outage_boost: Mapping[str, float] | None = None,
    n_groups: int = 0,
    group_outage_rate: float = 0.005,
    group_outage_length: float = 20.0,
    group_outage_boost: float = 10.0,
    finish_rate: float | Mapping[str, float] = 0.0,
    finish_status: str | None = "finished",
    start_spread: int = 0,
    idle_after: str | pd.Timedelta | None = None,
    idle_boost: float = 3.0,
    truth_columns: bool = False,
    return_result: bool = False,
    sojourns: Mapping[str, object] | str | None = None,
    rate_spread: float = 0.0,
) -> pd.DataFrame | SimulatedHistories:
    """Simulate the status histories of order-service handlers.

    Every handler starts in a state drawn from the system's initial
    distribution, then takes ``n_steps`` steps; each step is one row: the
    event that arrived (drawn from ``Q[state]``) and the status the handler
    ended in (drawn from ``P[event, state]``). The simulation is vectorised
    across handlers: one numpy step moves all handlers at once.

    Steps are steps of the run, shared by all handlers: step ``n`` is row
    ``n`` of a handler that started at step 0. With ``start_spread`` handlers
    start later, with ``finish_rate`` they may finish early, so histories
    have different lengths.

    Parameters
    ----------
    n_handlers : int, default=50
        Number of handlers (entities), named ``orders-worker-01``, ...
    n_steps : int, default=1000
        Steps of the run: the rows of a handler that starts at step 0 and
        does not finish.
    system : OrderServiceSystem, default=None
        The truth; ``OrderServiceSystem.default()`` when None. It must have
        handler classes ``"normal"`` and, if ``flaky_fraction > 0``,
        ``"flaky"``.
    flaky_fraction : float, default=0.2
        Fraction of handlers that are flaky; ``round(flaky_fraction *
        n_handlers)`` handlers, chosen at random.
    start : str or Timestamp, default="2026-01-01"
        Earliest time; naive values are taken as UTC.
    step_interval : str or Timedelta, default="1min"
        Mean time between two steps of a handler.
    jitter : float, default=0.5
        Each interval is ``step_interval * U(1 - jitter, 1 + jitter)``,
        rounded to whole milliseconds (at least 1 ms), so time strictly
        increases per handler. Each handler's first step falls at a random
        offset within one ``step_interval`` of ``start``. In [0, 1).
    clock : {'drift', 'aligned'}, default='drift'
        ``'drift'``: the jittered intervals add up, so handlers drift apart in
        time. ``'aligned'``: step ``n`` of every handler falls within
        ``jitter`` intervals after ``start + n * step_interval``, so a mix
        shift (indexed by step) happens at the same wall time for all
        handlers, as a real outage would.
    random_state : int, RandomState, Generator or None, default=None
        Seed or random generator. Never touches the global numpy state.
    with_metrics : bool, default=True
        Add ``latency_ms`` and ``error_rate`` drawn from state-dependent
        distributions: ok ~ 50 ms, slow ~ 800 ms, error ~ 120 ms with error
        rate ~ 0.7, timeout >= 5000 ms, down ~ 2 ms with error rate 1.0; NaN
        on the row of a finished handler.
    with_event_ids : bool, default=True
        Add ``event_id``, a unique string per step.
    duplicate_rate : float, default=0.0
        Probability that a row is delivered twice (at-least-once delivery):
        the duplicate is an identical copy, with the same ``event_id``,
        placed right after the original. In [0, 1).
    shuffle : bool, default=False
        Shuffle the rows (to test sorting downstream). Otherwise rows are
        sorted by handler, then time.
    memory_window : int, default=0
        Failure memory ``W``: a handler's memory ``d`` is 0 on the step right
        after a failure state, grows by one per step and is capped at ``W``
        (also its value on the first step). While ``d < W`` the probability
        of moving from a non-failure state into a failure state is
        multiplied by ``memory_boost`` (rows renormalised); see
        :meth:`OrderServiceSystem.memory_event_matrices`. 0: no memory.
    memory_boost : float, default=3.0
        The factor of the failure memory, > 0.
    mix_shifts : list of (int, int, dict), default=None
        Event-mix shifts ``(start_step, end_step, {event: multiplier})``: at
        steps ``start_step <= n < end_step`` the event arrives from
        ``Q[s, e] * multiplier[e]``, rows renormalised. Overlapping shifts
        multiply.
    outages : int, default=0
        Add this many random, non-overlapping shifts of ``outage_length``
        steps within the run (drawn from ``random_state``).
    outage_length : int, default=60
        Steps per outage.
    outage_boost : dict of str to float, default=None
        The multipliers of an outage; ``{"payment_failed": 10.0}`` when None.
    n_groups : int, default=0
        Split the handlers into this many groups of consecutive handlers
        (sizes differ by at most one), named ``payments-db-1``, ... Each group
        shares a hidden dependency that is up or down, a two-state Markov
        chain over the steps, independent between groups and stationary from
        step 0. While it is down, its members' probabilities of moving from a
        non-failure into a failure state are multiplied by
        ``group_outage_boost`` (rows renormalised; on top of the failure
        memory), so members fail together. 0: no groups. At most
        ``n_handlers``.
    group_outage_rate : float, default=0.005
        Per-step probability that an up dependency goes down, in [0, 1].
    group_outage_length : float, default=20.0
        Mean steps an outage lasts: a down dependency recovers with
        probability ``1 / group_outage_length`` per step, >= 1. The share of
        steps down is ``rate / (rate + 1 / length)`` (about 9% by default).
    group_outage_boost : float, default=10.0
        The factor on the failure probabilities during an outage, > 0. By
        default a normal handler in ``ok`` fails on the next step with
        probability 0.22 instead of 0.033, a flaky one 0.40 instead of 0.084;
        in a simulated group of ten, a healthy handler fails on the next step
        about 4 times as often when half of its neighbours are failing as
        when none are.
    finish_rate : float or dict of str to float, default=0.0
        Per-step probability that a handler finishes, in [0, 1]: one number,
        or one per state name (the state the step starts from; states not
        named never finish). Finishing replaces the step's transition (the
        event still arrives), is absorbing and is not a failure. 0: handlers
        never finish.
    finish_status : str or None, default="finished"
        The status of the row of the step on which a handler finishes, its
        last row; not one of the system's states. None: the history just
        stops (a handler that finishes on its first step has no row).
    start_spread : int, default=0
        Each handler's first step is drawn uniformly from ``0 ..
        start_spread`` (so histories hold handlers of different ages); less
        than ``n_steps``. Its time follows the clock, as if it had been
        stepping since ``start``. 0: all start at step 0.
    idle_after : str or Timedelta, default=None
        A row that comes more than this long after the handler's previous
        row is *idle*, and so is a handler's first row (nothing precedes it).
        After an idle row, the probabilities of moving from a non-failure into
        a failure state at the handler's next step are multiplied by
        ``idle_boost`` (rows renormalised; on top of the failure memory): a
        handler back from a long silence (a stale connection, a cold cache)
        fails more on its next step. The gaps are drawn as without it, before
        the steps, independently of everything else, so a row's risk depends
        on whether it is idle and the next rows are idle with the known
        probability :attr:`SimulatedHistories.idle_share`. Needs
        ``clock='drift'`` and no groups. None: off.
    idle_boost : float, default=3.0
        The factor of an idle row on the failure probabilities of the next
        step, > 0.
    truth_columns : bool, default=False
        Add ``step`` (the row's step of the run; its index within its handler
        unless ``start_spread``), ``memory`` (``d``) and ``regime`` (0 = no
        shift, else the id of the combination of shifts in force), all int64,
        with groups ``dependency_down`` (bool: the step was drawn while the
        group's dependency was down) and with ``idle_after`` ``idle`` (bool:
        the row is idle), at the end.
    return_result : bool, default=False
        Return a :class:`SimulatedHistories` (the frame, the truth and the
        schedule) instead of the frame; its ``true_failure_probabilities``
        gives every row's exact risk.
    sojourns : dict of str to frozen scipy.stats distribution, or 'exponential', default=None
        State-dependent times between steps (a Markov renewal process): after a step that ends in
        state ``s`` the handler waits ``W ~ sojourns[s]`` (in units of ``step_interval``: 1.0 is one
        interval) divided by its rate factor ``c``, then takes its next step. States left out of
        the dict, and every state with ``'exponential'``, wait ``expon(scale=1)``. Each handler's
        first step still falls within one interval of ``start`` (with ``start_spread``, the steps
        before its first row wait as its initial state does); ``jitter`` is not used. Times are
        whole milliseconds (at least 1 ms), so use an interval of seconds or more. The states,
        events and all other draws of the run are those of ``sojourns=None`` with the same seed:
        only the clock (and the ids and metrics drawn after it) differ. Needs ``clock='drift'`` and
        no ``idle_after``. Memory, shifts (indexed by step), groups and finishing are simulated as
        without it, but :meth:`SimulatedHistories.true_time_failure_probabilities` refuses them.
        None: the jittered clock.
    rate_spread : float, default=0.0
        With ``sojourns``: each handler's rate factor is ``c = exp(rate_spread * z)``, ``z ~ N(0, 1)``
        (a handler with ``c = 2`` waits half as long in every state); 0: ``c = 1``. >= 0.

    Returns
    -------
    histories : DataFrame
        Columns ``handler`` (str), ``timestamp`` (datetime64[ns, UTC]),
        ``event_type`` (str), ``status`` (str), ``event_id`` (str, if
        ``with_event_ids``), ``latency_ms`` and ``error_rate`` (float64, if
        ``with_metrics``), ``handler_class`` (str, ``"normal"`` or
        ``"flaky"``) and ``group`` (str, if ``n_groups``), then ``step``,
        ``memory``, ``regime`` and ``dependency_down`` (if ``n_groups``) if
        ``truth_columns``, with a fresh RangeIndex. A
        :class:`SimulatedHistories` if ``return_result``.

    Raises
    ------
    ConfigError
        If a parameter of the groups, of finishing or ``start_spread`` is out
        of range (a ValueError); if ``sojourns`` names an unknown state, holds
        something other than a frozen continuous ``scipy.stats`` distribution
        on ``[0, inf)`` with a finite mean, or comes with ``clock='aligned'``
        or ``idle_after``; if ``rate_spread`` is negative or given without
        ``sojourns``.
    ValueError
        If another parameter is out of range or the system lacks a handler
        class.
    TypeError
        If a parameter has the wrong type.

    Examples
    --------
    >>> from markovfault.simulate import simulate_histories
    >>> df = simulate_histories(n_handlers=3, n_steps=4, random_state=0)
    >>> df.shape
    (12, 8)
    >>> df.columns.tolist()  # doctest: +NORMALIZE_WHITESPACE
    ['handler', 'timestamp', 'event_type', 'status', 'event_id',
     'latency_ms', 'error_rate', 'handler_class']
    >>> df["handler"].unique().tolist()
    ['orders-worker-01', 'orders-worker-02', 'orders-worker-03']
    >>> str(df["timestamp"].dtype)
    'datetime64[ns, UTC]'
    >>> df["event_id"].is_unique
    True

    Groups that fail together, and handlers that finish:

    >>> sim = simulate_histories(
    ...     6, 300, n_groups=2, finish_rate=0.01, truth_columns=True,
    ...     with_metrics=False, random_state=1, return_result=True,
    ... )
    >>> sim.frame.groupby("group")["handler"].unique().map(len).to_dict()
    {'payments-db-1': 3, 'payments-db-2': 3}
    >>> sim.frame.columns.tolist()[-6:]
    ['handler_class', 'group', 'step', 'memory', 'regime', 'dependency_down']
    >>> last = sim.frame.groupby("handler").tail(1)
    >>> finished = sim.handlers["finish_step"].notna()
    >>> bool((last["status"].eq("finished").to_numpy() == finished.to_numpy()).all())
    True
    >>> sim.true_failure_probabilities(5).shape == (len(sim.frame), 5)
    True

    A clock that depends on the state: Weibull waits in ``ok``, exponential ones (mean one
    interval) elsewhere, handlers faster or slower by their rate factors:

    >>> from scipy import stats
    >>> timed = simulate_histories(
    ...     20, 200, sojourns={"ok": stats.weibull_min(3, scale=2.0)}, rate_spread=0.3,
    ...     random_state=0, return_result=True,
    ... )
    >>> bool(timed.sojourns["ok"].mean() > timed.sojourns["down"].mean())
    True
    >>> timed.rate_factors.index.equals(timed.handlers.index)
    True
    >>> truth = timed.true_time_failure_probabilities(["5min", "15min"], n_paths=2000)
    >>> truth.probabilities.shape, bool((truth.probabilities["15min"] >= truth.probabilities["5min"]).all())
    ((20, 2), True)
    """
    n_handlers = check_scalar(n_handlers, "n_handlers", (int, np.integer), min_val=1)
    n_steps = check_scalar(n_steps, "n_steps", (int, np.integer), min_val=1)
    flaky_fraction = check_scalar(
        flaky_fraction, "flaky_fraction", (int, float), min_val=0.0, max_val=1.0
    )
    if clock not in ("drift", "aligned"):
        raise ValueError(f"clock = {clock!r}; use 'drift' or 'aligned'.")
    jitter = check_scalar(
        jitter, "jitter", (int, float), min_val=0.0, max_val=1.0, include_boundaries="left"
    )
    duplicate_rate = check_scalar(
        duplicate_rate,
        "duplicate_rate",
        (int, float),
        min_val=0.0,
        max_val=1.0,
        include_boundaries="left",
    )
    if system is None:
        system = OrderServiceSystem.default()
    elif not isinstance(system, OrderServiceSystem):
        raise TypeError(
            f"system must be an OrderServiceSystem or None, got {type(system).__name__}."
        )
    interval = pd.Timedelta(step_interval)
    if interval <= pd.Timedelta(0):
        raise ValueError(f"step_interval must be positive, got {step_interval!r}.")
    t0 = pd.Timestamp(start)
    t0 = t0.tz_localize("UTC") if t0.tzinfo is None else t0.tz_convert("UTC")
    memory_window, memory_boost = _check_memory(memory_window, memory_boost)
    shifts = _resolve_shifts(system.event_names, mix_shifts)
    outages = check_scalar(outages, "outages", (int, np.integer), min_val=0)
    outage_length = check_scalar(outage_length, "outage_length", (int, np.integer), min_val=1)
    if outage_boost is None:
        outage_boost = {"payment_failed": 10.0}
    if outages:
        _resolve_shifts(system.event_names, [(0, 1, outage_boost)])
    n_groups = int(check_scalar(n_groups, "n_groups", (int, np.integer), min_val=0))
    if n_groups > n_handlers:
        raise ConfigError(
            f"n_groups == {n_groups} exceeds n_handlers == {n_handlers}; every group "
            "needs a handler: use n_groups <= n_handlers (0: no groups)."
        )
    group_rate, group_length, group_boost = _check_groups(
        group_outage_rate, group_outage_length, group_outage_boost
    )
    phi, finish_status = _check_finish(finish_rate, finish_status, system.state_names)
    idle_ms, idle_boost = _check_idle(idle_after, idle_boost, clock, n_groups)
    start_spread = int(check_scalar(start_spread, "start_spread", (int, np.integer), min_val=0))
    if start_spread >= n_steps:
        raise ConfigError(
            f"start_spread == {start_spread} must be less than n_steps == {n_steps}, "
            "so that every handler starts within the run."
        )
    rate_spread = _check_number(
        rate_spread, "rate_spread", low=0.0,
        meaning="the spread of the handlers' log rate factors (0: every handler has rate factor 1)",
    )
    if sojourns is None:
        resolved = None
        if rate_spread:
            raise ConfigError(
                f"rate_spread == {rate_spread:g} needs sojourns: rate factors scale the state-dependent "
                "waits; pass sojourns='exponential' or a dict of distributions, or rate_spread=0."
            )
    else:
        resolved = _resolve_sojourns(sojourns, system.state_names)
        if clock != "drift":
            raise ConfigError(
                "sojourns needs clock='drift': with sojourns the time between steps is the state's "
                "wait, so steps cannot be aligned to a grid; drop clock='aligned' or sojourns."
            )
        if idle_ms is not None:
            raise ConfigError(
                "sojourns cannot be combined with idle_after: idle gaps are defined on the jittered "
                "clock; use one or the other."
            )
    rng = _check_rng(random_state)

    n_flaky = int(round(flaky_fraction * n_handlers))
    all_classes = ("normal", "flaky")
    used = [c for c, n in zip(all_classes, (n_handlers - n_flaky, n_flaky)) if n]
    for name in used:
        if name not in system.event_matrices:
            raise ValueError(
                f"system has no handler class {name!r} (it has "
                f"{system.handler_classes}); set flaky_fraction accordingly."
            )
    is_flaky = np.zeros(n_handlers, dtype=bool)
    is_flaky[rng.permutation(n_handlers)[:n_flaky]] = True
    cls = is_flaky.astype(np.intp)  # index into all_classes
    # Every draw an option adds happens only when it is on: with the options
    # off the random stream, and so the frame, is that of the plain chain.
    if outages:
        shifts = shifts + tuple(
            _draw_outages(rng, int(n_steps), int(outages), int(outage_length), outage_boost)
        )
    schedule = _Schedule.build(system.event_names, shifts)
    step_regime = schedule.regime_of(np.arange(n_steps))
    first_step = np.zeros(n_handlers, dtype=np.int64)
    if start_spread:
        first_step = np.floor(rng.random(n_handlers) * (start_spread + 1)).astype(np.int64)
    group_of = np.zeros(n_handlers, dtype=np.intp)
    dependency_path = np.zeros((n_groups, n_steps), dtype=bool)
    if n_groups:
        group_of = (np.arange(n_handlers) * n_groups) // n_handlers
        dependency_path = _draw_dependency(rng, n_groups, int(n_steps), group_rate, group_length)

    # Cumulative tables stacked by class: (K, S, E), (K, E, S, S), (K, S). A
    # class the system lacks is never indexed; any valid array fills its slot.
    def table(mapping: Mapping[str, np.ndarray]) -> np.ndarray:
        fill = mapping[used[0]]
        return np.stack([mapping.get(c, fill) for c in all_classes])

    # With memory, groups and shifts: (K, R, S, E) per regime and
    # (K, U, W + 1, E, S, S) per dependency state and memory value. Regime 0
    # is Q and (up, memory W) is P, bit for bit, so without these options the
    # draws are those of the plain chain.
    fail = system.failure_mask
    Q_table = table(system.event_probs)
    cum_Q = _cumulative(np.stack([
        np.stack([_shifted_probs(Q_table[k], m) for m in schedule.multipliers])
        for k in range(len(all_classes))
    ]))
    P_table = table(system.event_matrices)
    # the first slot axis: the dependency (up, down) with groups, the idle flag with idle_after
    slot_boost = group_boost if n_groups else (idle_boost if idle_ms is not None else None)
    cum_P = _cumulative(np.stack([
        _dependency_matrices(P_table[k], fail, memory_window, memory_boost, slot_boost)
        for k in range(len(all_classes))
    ]))
    step_ms = interval.value / 1e6
    if idle_ms is not None:  # the gaps first: each step is drawn under the flag of the row before it
        gaps = _draw_gaps(rng, step_ms, jitter, n_handlers, n_steps)
        idle = (gaps > idle_ms) | (np.arange(n_steps)[None, :] <= first_step[:, None])
        idle_before = np.concatenate([np.ones((n_handlers, 1), bool), idle[:, :-1]], axis=1)
    cum_0 = _cumulative(table(system.initial_probs))

    n_states = len(system.state_names)
    states = np.empty((n_handlers, n_steps), dtype=np.intp)  # n_states: finished
    events = np.empty((n_handlers, n_steps), dtype=np.intp)
    memory = np.empty((n_handlers, n_steps), dtype=np.int64)
    held = np.empty((n_handlers, n_steps), dtype=np.intp)  # the state after each step (sojourns)
    finish_step = np.full(n_handlers, -1, dtype=np.int64)
    s = _sample_categorical(rng, cum_0[cls])
    d = np.full(n_handlers, memory_window, dtype=np.int64)  # before the first row
    for n in range(n_steps):
        down = dependency_path[group_of, n].astype(np.intp) if n_groups else 0
        if idle_ms is not None:
            down = idle_before[:, n].astype(np.intp)
        e = _sample_categorical(rng, cum_Q[cls, step_regime[n], s])
        s_next = _sample_categorical(rng, cum_P[cls, down, d, e, s])
        recorded = s_next
        if phi is not None:  # finishing from the state the step starts in
            ends = (rng.random(n_handlers) < phi[s]) & (finish_step < 0) & (first_step <= n)
            finish_step[ends] = n
            recorded = np.where(ends, n_states, s_next)
        # the first row's memory is W: only recorded rows count
        d = np.where(n > first_step, np.where(fail[s], 0, np.minimum(d + 1, memory_window)), d)
        s = np.where(n >= first_step, s_next, s)
        events[:, n] = e
        states[:, n] = recorded
        memory[:, n] = d
        held[:, n] = s

    # Times: whole milliseconds, strictly increasing per handler.
    rate_factors = np.ones(n_handlers)
    if resolved is not None:  # the Markov renewal clock: each wait from the state it follows
        rate_factors = np.exp(rate_spread * rng.standard_normal(n_handlers))
        gaps = _draw_sojourn_gaps(rng, step_ms, held, list(resolved.values()), rate_factors)
    elif idle_ms is None:
        gaps = _draw_gaps(rng, step_ms, jitter, n_handlers, n_steps)
    offsets_ms = np.cumsum(gaps.astype(np.int64), axis=1)
    if clock == "aligned":
        # step n of every handler falls in [n, n + jitter) intervals after start, so steps
        # (and the regimes of mix shifts, which are indexed by step) line up in wall time
        frac = (gaps - step_ms * (1.0 - jitter)) / (2.0 * step_ms) if jitter else 0.0 * gaps
        offsets_ms = np.rint(step_ms * (np.arange(n_steps)[None, :] + jitter * frac)).astype(np.int64)
        offsets_ms = np.maximum(offsets_ms, np.arange(n_steps)[None, :])

    # The cells of the (handler, step) grid that are rows: from the first
    # step to the finish (its row included when it has a status).
    grid_steps = np.arange(n_steps, dtype=np.int64)
    last_step = np.full(n_handlers, n_steps - 1, dtype=np.int64)
    finished = finish_step >= 0
    last_step[finished] = finish_step[finished] - (finish_status is None)
    alive = (grid_steps[None, :] >= first_step[:, None]) & (grid_steps[None, :] <= last_step[:, None])
    keep = None if alive.all() else np.flatnonzero(alive.ravel())

    def cells(grid: np.ndarray) -> np.ndarray:
        flat = grid.ravel()
        return flat if keep is None else flat[keep]

    state_codes = cells(states)
    n_rows = state_codes.shape[0]
    times_ns = t0.value + cells(offsets_ms) * 1_000_000
    names = _handler_names(n_handlers)
    status_names = system.state_names + ((finish_status,) if finish_status is not None else ())
    columns: dict[str, object] = {
        "handler": cells(np.repeat(names[:, None], n_steps, axis=1)),
        "timestamp": pd.to_datetime(times_ns, utc=True).as_unit("ns"),
        "event_type": np.asarray(system.event_names, dtype=object)[cells(events)],
        "status": np.asarray(status_names, dtype=object)[state_codes],
    }
    if with_event_ids:
        width = len(str(n_rows - 1))
        ids = np.strings.zfill(rng.permutation(n_rows).astype(str), width)
        columns["event_id"] = np.strings.add("evt-", ids)
    if with_metrics:
        columns["latency_ms"], columns["error_rate"] = _metrics(
            rng, system.state_names, state_codes
        )
    handler_classes = np.asarray(all_classes, dtype=object)[cls]
    class_names = cells(np.repeat(handler_classes[:, None], n_steps, axis=1))
    columns["handler_class"] = class_names
    group_names = _group_names(n_groups)
    if n_groups:
        columns["group"] = cells(np.repeat(group_names[group_of][:, None], n_steps, axis=1))
    step = cells(np.broadcast_to(grid_steps, (n_handlers, n_steps)))
    regime = step_regime.astype(np.int64)[step]
    dependency_down = cells(dependency_path[group_of]) if n_groups else np.zeros(n_rows, bool)
    if truth_columns:
        columns["step"] = step
        columns["memory"] = cells(memory)
        columns["regime"] = regime
        if n_groups:
            columns["dependency_down"] = dependency_down
        if idle_ms is not None:
            columns["idle"] = cells(idle)
    frame = pd.DataFrame(columns)

    taken = np.arange(n_rows)
    if duplicate_rate > 0.0:
        copies = 1 + (rng.random(n_rows) < duplicate_rate)
        taken = np.repeat(np.arange(n_rows), copies)
        frame = frame.take(taken)
    if shuffle:
        order = rng.permutation(len(frame))
        taken = taken[order]
        frame = frame.take(order)
    frame = frame.reset_index(drop=True)
    if not return_result:
        return frame
    handlers = pd.DataFrame({"handler_class": handler_classes}, index=pd.Index(names, name="handler"))
    if n_groups:
        handlers["group"] = group_names[group_of]
    handlers["start_step"] = first_step
    handlers["finish_step"] = pd.arrays.IntegerArray(finish_step, ~finished)
    return SimulatedHistories(
        frame=frame,
        system=system,
        memory_window=memory_window,
        memory_boost=memory_boost,
        mix_shifts=shifts,
        step=step[taken],
        memory=cells(memory)[taken],
        regime=regime[taken],
        _states=state_codes[taken],
        _classes=class_names[taken],
        dependency_down=dependency_down[taken],
        n_groups=n_groups,
        group_outage_rate=group_rate,
        group_outage_length=group_length,
        group_outage_boost=group_boost,
        finish_rate=np.zeros(n_states) if phi is None else phi,
        finish_status=finish_status,
        handlers=handlers,
        dependency_path=dependency_path,
        idle=None if idle_ms is None else cells(idle)[taken],
        idle_boost=idle_boost,
        idle_share=None if idle_ms is None else _idle_share(step_ms, jitter, idle_ms),
        sojourns=resolved,
        rate_factors=pd.Series(rate_factors, index=handlers.index, name="rate_factor"),
        step_interval=interval,
    )


@dataclass(frozen=True, eq=False)
class SimulatedHistories:
    """A simulated history together with everything its exact truth needs.

    Returned by ``simulate_histories(..., return_result=True)``.

    Attributes
    ----------
    frame : DataFrame
        The histories, exactly what ``simulate_histories`` returns with the
        same arguments and ``return_result=False``.
    system : OrderServiceSystem
        The truth.
    memory_window, memory_boost
        The failure memory (see :meth:`OrderServiceSystem.memory_event_matrices`).
    mix_shifts : tuple of (int, int, dict)
        Every shift in force, ``(start_step, end_step, {event: multiplier})``
        over steps ``start_step <= n < end_step``: the ``mix_shifts`` passed
        and then the drawn outages.
    step, memory, regime : ndarray of int64, one per row of ``frame``
        The row's step of the run, its memory ``d`` and the regime its event
        was drawn under (0 = no shift; see :attr:`regime_multipliers`). The
        same as the columns of ``truth_columns=True``.
    dependency_down : ndarray of bool, one per row of ``frame``
        Whether the row's step was drawn while its group's dependency was
        down (all False without groups).
    n_groups, group_outage_rate, group_outage_length, group_outage_boost
        The groups and their dependencies, as passed.
    finish_rate : ndarray of shape (n_states,)
        P(finish) per step from each state (zeros: handlers never finish).
    finish_status : str or None
        The status of a finished handler's last row; None: no such row.
    handlers : DataFrame
        One row per handler (index ``handler``, all of them, also one that
        finished before its first row): ``handler_class``, ``group`` (with
        groups), ``start_step`` (its first step) and ``finish_step`` (the
        step on which it finished, Int64, NA if it never did).
    dependency_path : ndarray of bool of shape (n_groups, n_steps)
        Each group's dependency per step (True: down), groups in the order
        of their names.
    idle : ndarray of bool, one per row of ``frame``, or None
        With ``idle_after``: whether the row is idle (see
        :func:`simulate_histories`); None without it.
    idle_boost : float
        The factor of an idle row on the next step's failure probabilities.
    idle_share : float or None
        With ``idle_after``: the exact probability that a row after the
        first is idle (``P(gap > idle_after)`` of the jittered, rounded
        gaps); None without it.
    sojourns : dict of str to frozen scipy.stats distribution, or None
        With ``sojourns``: every state's wait after a step ending in it, in units of
        ``step_interval`` for a handler of rate factor 1 (the resolved mapping, all states);
        None with the jittered clock.
    rate_factors : Series
        Each handler's rate factor ``c`` (index ``handler``): its waits are the sojourns divided by
        ``c``; all 1 without ``sojourns`` or with ``rate_spread=0``.
    step_interval : Timedelta
        The unit of the sojourns.
    """

    frame: pd.DataFrame
    system: OrderServiceSystem
    memory_window: int
    memory_boost: float
    mix_shifts: tuple
    step: np.ndarray
    memory: np.ndarray
    regime: np.ndarray
    _states: np.ndarray = field(repr=False)
    _classes: np.ndarray = field(repr=False)
    dependency_down: np.ndarray | None = field(default=None, repr=False)
    n_groups: int = 0
    group_outage_rate: float = 0.005
    group_outage_length: float = 20.0
    group_outage_boost: float = 10.0
    finish_rate: np.ndarray | None = field(default=None, repr=False)
    finish_status: str | None = "finished"
    handlers: pd.DataFrame | None = field(default=None, repr=False)
    dependency_path: np.ndarray | None = field(default=None, repr=False)
    idle: np.ndarray | None = field(default=None, repr=False)
    idle_boost: float = 3.0
    idle_share: float | None = None
    sojourns: dict | None = field(default=None, repr=False)
    rate_factors: pd.Series | None = field(default=None, repr=False)
    step_interval: pd.Timedelta | None = None

    @property
    def regime_multipliers(self) -> pd.DataFrame:
        """Event multipliers per regime: index regime id, columns event names."""
        schedule = _Schedule.build(self.system.event_names, self.mix_shifts)
        frame = pd.DataFrame(schedule.multipliers, columns=list(self.system.event_names))
        frame.index.name = "regime"
        return frame

    def true_failure_probabilities(self, horizon: int) -> np.ndarray:
        """The exact P(fail within 1..horizon) of every row; see :func:`true_failure_probabilities`."""
        return true_failure_probabilities(self, horizon)

    def _time_process(self) -> tuple[list, np.ndarray, tuple[str, ...]]:
        """The sojourns (in state order), the marginal chains per class and the classes, or ConfigError."""
        if self.sojourns is None:
            raise ConfigError(
                "the truth in time needs state-dependent times: simulate with sojourns='exponential' "
                "or a dict of sojourn distributions (the jittered clock has no exact truth in time)."
            )
        refused = [
            ("memory_window > 0", self.memory_window > 0),
            ("mix_shifts or outages", bool(self.mix_shifts)),
            ("n_groups > 0", self.n_groups > 0),
            ("finish_rate > 0", self.finish_rate is not None and bool(np.any(self.finish_rate > 0))),
        ]
        on = [name for name, used in refused if used]
        if on:
            raise ConfigError(
                f"the truth in time is exact only for the plain Markov renewal process, but this run has "
                f"{', '.join(on)}; simulate with sojourns and without them (memory, step-indexed shifts, "
                "groups and finishing change the process in ways the truth in time does not follow)."
            )
        classes = self.system.handler_classes
        chains = np.stack([self.system.transition_matrix(name) for name in classes])
        return [self.sojourns[s] for s in self.system.state_names], chains, classes

    def _exponential_means(self, dists: list) -> np.ndarray:
        for name, dist in zip(self.system.state_names, dists):
            if dist.dist.name != "expon" or dist.support()[0] != 0.0:
                raise ConfigError(
                    f"method='expm' needs every sojourn exponential from 0, but sojourns[{name!r}] is "
                    f"{dist.dist.name} on [{dist.support()[0]:g}, ...); use method='mc'."
                )
        return np.array([float(dist.mean()) for dist in dists])

    def true_time_failure_probabilities(
        self,
        within,
        at: str | pd.Timestamp | None = None,
        *,
        method: str = "mc",
        n_paths: int = 20000,
        random_state: _RandomStateLike = 0,
    ) -> TimeFailureTruth:
        """The exact P(fail within T) at time ``at`` of every handler, from its last step at or before it.

        For a handler whose last step at or before ``tau = at`` ended in state ``s`` at ``t_last``
        (age ``a = tau - t_last``), of class ``k`` and rate factor ``c``: the probability that one of
        its steps in ``(tau, tau + T]`` ends in a failure state. Its current state does not count (as
        in the step forecasts), also when it is a failure. The next step comes after the residual
        wait ``R``, ``P(R > u) = S_s(c (a + u)) / S_s(c a)``, and ends in ``j`` with probability
        ``T_k[s, j]``; later steps follow the Markov renewal process from age 0. Computed only from
        the simulator's own ``Q``, ``P`` and sojourns, no predictor.

        ``method="mc"``: ``p = sum_{j in F} T[s, j] F_R(T) + sum_{j not in F} T[s, j] E[F_R(T - H_j / c)]``,
        exact in ``R`` and ``j``; ``H_j``, the time to the first failure step from ``j`` entered at age
        0 for rate factor 1, is drawn as a pool of ``n_paths`` paths per (class, state) (a vectorised
        loop over the paths' steps, cut at ``c_max T_max``) shared by all handlers, so the standard
        error is the pool's, ``sqrt(sum_j T[s, j]^2 var(F_R(T - H_j / c)) / n_paths)``. The errors of
        different handlers and durations are correlated (one pool). ``method="expm"`` (every sojourn
        exponential): the closed form ``expm(c T G_k)[s, FAIL]`` of the generator with failures
        absorbing, ``diag(1 / mean) (T_k - I)`` on the non-failure states, where a handler in a failure
        state takes its first jump with the true ``T_k``; its standard errors are 0.

        Exact for the process with continuous waits; the frame's times are rounded to whole
        milliseconds. Refuses (ConfigError) runs without ``sojourns``, and with memory, shifts or
        outages, groups or finishing. Handlers with no step at or before ``at`` are left out.

        Parameters
        ----------
        within : str, Timedelta or list of them
            The durations ``T``, such as ``["2min", "30min"]``.
        at : str or Timestamp, default=None
            The time ``tau`` (naive values are UTC); the latest time in the frame when None.
        method : {'mc', 'expm'}, default='mc'
        n_paths : int, default=20000
            Pool paths per (class, state), with ``method="mc"``.
        random_state : int, Generator or None, default=0
            The pool's random numbers.

        Returns
        -------
        TimeFailureTruth
            ``(probabilities, standard_errors, origins)``, each indexed by handler; one column per
            duration (labelled as given) in the first two; ``origins`` holds each handler's
            ``handler_class``, ``state``, ``last_time``, ``age`` and ``rate_factor``.

        Examples
        --------
        >>> import numpy as np
        >>> from markovfault.simulate import simulate_histories
        >>> sim = simulate_histories(8, 100, sojourns="exponential", rate_spread=0.3,
        ...                          random_state=0, return_result=True)
        >>> mc = sim.true_time_failure_probabilities(["2min", "10min"], n_paths=4000)
        >>> exact = sim.true_time_failure_probabilities(["2min", "10min"], method="expm")
        >>> mc.probabilities.shape
        (8, 2)
        >>> bool((np.abs(mc.probabilities - exact.probabilities) < 5 * mc.standard_errors + 1e-9).all().all())
        True
        """
        dists, chains, classes = self._time_process()
        labels, within_ns = _durations(within)
        if method not in ("mc", "expm"):
            raise ConfigError(f"method = {method!r}; use 'mc' (Monte Carlo) or 'expm' (exponential sojourns).")
        frame = self.frame
        times = frame["timestamp"]
        tau = times.max() if at is None else pd.Timestamp(at)
        tau = tau.tz_localize("UTC") if tau.tzinfo is None else tau.tz_convert("UTC")
        seen = pd.DataFrame({
            "handler": frame["handler"].to_numpy(dtype=object), "time": pd.DatetimeIndex(times).asi8,
            "code": np.asarray(self._states, dtype=np.intp),
        })[(times <= tau).to_numpy()]  # time: ns since the epoch
        last = seen.sort_values("time", kind="stable").groupby("handler", sort=True).tail(1)
        last = last.set_index("handler").sort_index()
        names = last.index
        klass_names = self.handlers["handler_class"].reindex(names).to_numpy(dtype=object)
        klass = pd.Index(classes).get_indexer(klass_names)
        state = last["code"].to_numpy(dtype=np.intp)
        unit = float(self.step_interval.value)
        age_ns = (tau.value - last["time"].to_numpy(dtype=np.int64)).astype(float)
        rate = self.rate_factors.reindex(names).to_numpy(dtype=float)
        if method == "expm":
            p = _time_truth_expm(self._exponential_means(dists), chains, self.system.failure_mask,
                                 klass, state, rate, within_ns / unit)
            se = np.zeros_like(p)
        else:
            n_paths = int(check_scalar(n_paths, "n_paths", (int, np.integer), min_val=2))
            p, se = _time_truth_mc(dists, chains, self.system.failure_mask, klass, state, age_ns / unit,
                                   rate, within_ns / unit, n_paths, _generator(random_state))
        index = pd.Index(names, name="handler")
        origins = pd.DataFrame({
            "handler_class": klass_names,
            "state": np.asarray(self.system.state_names, dtype=object)[state],
            "last_time": pd.to_datetime(last["time"].to_numpy(dtype=np.int64), utc=True).as_unit("ns"),
            "age": pd.to_timedelta(age_ns.astype(np.int64), unit="ns"),
            "rate_factor": rate,
        }, index=index)
        return TimeFailureTruth(
            pd.DataFrame(p, index=index, columns=labels),
            pd.DataFrame(se, index=index, columns=labels),
            origins,
        )

    def true_time_failure_table(
        self,
        within,
        *,
        rate_factor: float = 1.0,
        method: str = "mc",
        n_paths: int = 20000,
        random_state: _RandomStateLike = 0,
    ) -> TimeFailureTruth:
        """P(fail within T | the handler just entered state s, age 0) per (handler class, state).

        The truth of a backtest origin at a step: the probability that one of the next steps within
        ``T`` of it ends in a failure (the step's own state does not count), for a handler of rate
        factor ``rate_factor``. The rule for a handler of factor ``c``: its curve is the rate-1 curve
        at ``c T`` (every wait divided by ``c``), so ``table(T, rate_factor=c) == table(c T)``;
        :attr:`rate_factors` holds each handler's ``c``. Computed as
        :meth:`true_time_failure_probabilities` (same method, pool and refusals) at age 0.

        Returns
        -------
        TimeFailureTruth
            Indexed by (``handler_class``, ``state``), one column per duration (labelled as given).

        Examples
        --------
        >>> from markovfault.simulate import simulate_histories
        >>> sim = simulate_histories(4, 50, sojourns="exponential", random_state=0, return_result=True)
        >>> table = sim.true_time_failure_table(["1min", "5min"], method="expm").probabilities
        >>> table.shape
        (10, 2)
        >>> bool((table["5min"] > table["1min"]).all())
        True
        """
        dists, chains, classes = self._time_process()
        labels, within_ns = _durations(within)
        if method not in ("mc", "expm"):
            raise ConfigError(f"method = {method!r}; use 'mc' (Monte Carlo) or 'expm' (exponential sojourns).")
        rate_factor = _check_number(rate_factor, "rate_factor", low=0.0, low_open=True,
                                    meaning="the handler's rate factor c")
        S = len(self.system.state_names)
        klass = np.repeat(np.arange(len(classes)), S)
        state = np.tile(np.arange(S), len(classes))
        rate = np.full(klass.size, rate_factor)
        within_u = within_ns / float(self.step_interval.value)
        if method == "expm":
            p = _time_truth_expm(self._exponential_means(dists), chains, self.system.failure_mask,
                                 klass, state, rate, within_u)
            se = np.zeros_like(p)
        else:
            n_paths = int(check_scalar(n_paths, "n_paths", (int, np.integer), min_val=2))
            p, se = _time_truth_mc(dists, chains, self.system.failure_mask, klass, state,
                                   np.zeros(klass.size), rate, within_u, n_paths, _generator(random_state))
        index = pd.MultiIndex.from_arrays(
            [np.asarray(classes, dtype=object)[klass], np.asarray(self.system.state_names, dtype=object)[state]],
            names=["handler_class", "state"],
        )
        origins = pd.DataFrame({"age": pd.to_timedelta(np.zeros(klass.size, np.int64)), "rate_factor": rate},
                               index=index)
        return TimeFailureTruth(
            pd.DataFrame(p, index=index, columns=labels), pd.DataFrame(se, index=index, columns=labels), origins
        )

    def filtered_failure_probabilities(self, horizon: int) -> np.ndarray:
        """The best forecast of every row from what can be seen: the exact risk, mixed over the exact
        filter of the row's hidden group dependency.

        :meth:`true_failure_probabilities` knows whether the row's dependency is down; no forecaster
        does. The filter follows each group's dependency (its two-state chain) through the
        transitions of all its members, each step drawn under the dependency from the simulator's
        own matrices (the event's arrival does not depend on it, nor does finishing). A row's
        forecast uses the group's steps before its own step, and its own transition; the other
        members' same step is left out (with a jittered clock it may come after the row). Then
        ``P(down) * risk(down) + P(up) * risk(up)``. This, not the truth, is the ceiling of any
        forecaster of the histories. Without groups it is the truth.

        Examples
        --------
        >>> sim = simulate_histories(30, 300, n_groups=3, flaky_fraction=0.0, random_state=1,
        ...                          return_result=True)
        >>> truth, seen = sim.true_failure_probabilities(3), sim.filtered_failure_probabilities(3)
        >>> bool(np.all((seen >= truth.min(axis=0)) & (seen <= 1)))
        True
        """
        horizon = int(check_scalar(horizon, "horizon", (int, np.integer), min_val=1))
        if not self.n_groups:
            return self.true_failure_probabilities(horizon)
        down = self._dependency_posterior()[:, None]
        n_rows = len(down)
        risk_up = true_failure_probabilities(replace(self, dependency_down=np.zeros(n_rows, bool)), horizon)
        risk_down = true_failure_probabilities(replace(self, dependency_down=np.ones(n_rows, bool)), horizon)
        return (1.0 - down) * risk_up + down * risk_down

    def _dependency_posterior(self) -> np.ndarray:
        """P(the row's dependency is down | its group's steps before the row's step, and its own
        transition), per row (see :meth:`filtered_failure_probabilities`)."""
        system, W = self.system, self.memory_window
        S = len(system.state_names)
        states = np.asarray(self._states, dtype=np.int64)
        events = pd.Index(system.event_names).get_indexer(self.frame["event_type"].to_numpy(dtype=object))
        handler = pd.factorize(self.frame["handler"])[0]
        group = pd.factorize(self.frame["group"])[0]
        step = np.asarray(self.step, dtype=np.int64)
        order = np.lexsort((step, handler))
        prev = np.full(len(states), -1, dtype=np.int64)
        after = (handler[order][1:] == handler[order][:-1]) & (step[order][1:] > step[order][:-1])
        prev[order[1:][after]] = order[:-1][after]  # duplicates (the same step again) have none
        r = np.flatnonzero(prev >= 0)
        r = r[(states[r] < S) & (states[prev[r]] < S)]  # into or out of the end: as likely either way
        ll = np.zeros((len(states), 2))
        for name in np.unique(self._classes[r]):  # a loop over handler classes (one or two)
            rows = r[self._classes[r] == name]
            M = system.group_event_matrices(name, W, self.memory_boost, self.group_outage_boost)
            ll[rows] = np.log(np.stack([
                M[u, self.memory[prev[rows]], events[rows], states[prev[rows]], states[rows]]
                for u in (0, 1)], axis=1))
        L = np.zeros((group.max() + 1, step.max() + 1, 2))
        np.add.at(L, (group, step), ll)
        A, stationary = _dependency_chain(self.group_outage_rate, self.group_outage_length)
        before = np.empty_like(L)  # P(U_n | the group's steps before n)
        p = np.tile([1.0 - stationary, stationary], (L.shape[0], 1))
        for n in range(L.shape[1]):  # a loop over steps, vectorised over groups
            before[:, n] = p @ A if n else p
            w = np.log(before[:, n]) + L[:, n]
            w = np.exp(w - w.max(axis=1, keepdims=True))
            p = w / w.sum(axis=1, keepdims=True)
        w = np.log(before[group, step]) + ll  # the row's own step, not the others'
        w = np.exp(w - w.max(axis=1, keepdims=True))
        return (w / w.sum(axis=1, keepdims=True))[:, 1]


def true_failure_probabilities(
    data: SimulatedHistories | pd.DataFrame,
    horizon: int,
    *,
    system: OrderServiceSystem | None = None,
    memory_window: int | None = None,
    memory_boost: float | None = None,
    mix_shifts=None,
    n_groups: int | None = None,
    group_outage_rate: float | None = None,
    group_outage_length: float | None = None,
    group_outage_boost: float | None = None,
    finish_rate: float | Mapping[str, float] | None = None,
    finish_status: str | None = None,
) -> np.ndarray:
    """The exact probability that each row's handler fails within 1..horizon steps.

    For the row of step ``t`` of a handler of class ``c`` in state ``s`` with
    memory ``d`` whose group's dependency is in state ``u`` (up or down):
    ``P(one of S_{t+1}..S_{t+h} is a failure | U_t = u, S_t = s, D_t = d)``
    for ``h = 1..horizon``, given the known schedule of event-mix regimes at
    steps ``t+1..t+h``; a handler that finishes within the horizon before
    failing has not failed, and a finished row's risk is 0. The process is a
    first-order chain over (dependency, state, memory) and an absorbing END
    (see :meth:`OrderServiceSystem.joint_transition_matrix`) whose matrix at
    step ``k`` uses the event mix ``Q`` of the regime of step ``k``; with
    ``T_k`` those matrices the recursion is ``f = 1_F`` at step ``t+h``,
    ``f = 1_F + 1_{not F} (T_k f)`` back to step ``t+1``, and the answer
    ``(T_{t+1} f)(u, s, d)``. Rows that share a class and a regime pattern
    over their next ``horizon`` steps share one computation, then each row
    is a lookup. Steps past the end of the simulation follow the same
    schedule (no shift unless a window extends there).

    The risk is exact given the row's hidden dependency state; the other
    members of its group carry no further information, because they are
    independent of the handler given their dependency.

    With idle gaps (``idle_after``; a :class:`SimulatedHistories` only) the
    first index is the row's idle flag: the next step is drawn under it and
    each later row is idle with probability ``idle_share``, independently of
    everything else (see :func:`_joint_matrix`).

    Parameters
    ----------
    data : SimulatedHistories or DataFrame
        A result of ``simulate_histories(..., return_result=True)``, which
        carries everything; or a frame with columns ``status`` and
        ``handler_class``, plus ``memory`` when ``memory_window > 0``,
        ``step`` when there are shifts and ``dependency_down`` with groups
        (``truth_columns=True`` adds them).
    horizon : int
        The largest number of steps ahead, >= 1.
    system, memory_window, memory_boost, mix_shifts
        Only with a frame: the simulation's arguments (defaults: the default
        system, no memory, boost 3.0, no shifts). For drawn outages, pass the
        result's ``mix_shifts``.
    n_groups, group_outage_rate, group_outage_length, group_outage_boost, finish_rate
        Only with a frame: the simulation's arguments (defaults: no groups,
        0.005, 20.0, 10.0, no finishing). Only whether ``n_groups > 0``
        matters.
    finish_status : str, default=None
        Only with a frame: the status of finished rows, ``"finished"`` when
        None; used only with a ``finish_rate``.

    Returns
    -------
    probs : ndarray of shape (n_rows, horizon)
        Aligned with the rows of the frame (duplicates and shuffles included).

    Examples
    --------
    >>> import numpy as np
    >>> from markovfault.simulate import simulate_histories, true_failure_probabilities
    >>> sim = simulate_histories(
    ...     5, 200, memory_window=10, mix_shifts=[(50, 110, {"payment_failed": 10})],
    ...     random_state=0, return_result=True,
    ... )
    >>> truth = sim.true_failure_probabilities(5)
    >>> truth.shape
    (1000, 5)
    >>> bool(np.all(np.diff(truth, axis=1) >= 0))
    True
    >>> plain = simulate_histories(3, 20, flaky_fraction=0.0, random_state=0)
    >>> p = true_failure_probabilities(plain, 3)  # no memory, no shifts
    >>> system = OrderServiceSystem.default()
    >>> first = system.state_names.index(plain["status"][0])
    >>> bool(np.allclose(p[0], system.failure_probabilities(3, "normal")[first]))
    True

    With groups, the risk of a row whose dependency is down is higher:

    >>> grouped = simulate_histories(
    ...     40, 400, n_groups=4, flaky_fraction=0.0, truth_columns=True, random_state=0)
    >>> risk = true_failure_probabilities(grouped, 1, n_groups=4)[:, 0]
    >>> ok = (grouped["status"] == "ok").to_numpy()
    >>> down = grouped["dependency_down"].to_numpy()
    >>> bool(risk[ok & down].mean() > 3 * risk[ok & ~down].mean())
    True
    """
    horizon = int(check_scalar(horizon, "horizon", (int, np.integer), min_val=1))
    if isinstance(data, SimulatedHistories):
        given = [
            system, memory_window, memory_boost, mix_shifts, n_groups, group_outage_rate,
            group_outage_length, group_outage_boost, finish_rate, finish_status,
        ]
        if any(value is not None for value in given):
            raise TypeError(
                "system, memory_window, memory_boost, mix_shifts and the parameters of "
                "groups and finishing come from the SimulatedHistories; pass them only "
                "with a DataFrame."
            )
        system, W, boost = data.system, data.memory_window, data.memory_boost
        shifts = data.mix_shifts
        states, classes = data._states, data._classes
        memory, steps = data.memory, data.step
        grouped = data.n_groups > 0
        rate, length, group_boost = (
            data.group_outage_rate, data.group_outage_length, data.group_outage_boost
        )
        dependency = data.dependency_down
        if dependency is None:
            dependency = np.zeros(states.shape[0], dtype=bool)
        phi = data.finish_rate
        if phi is not None and not np.any(phi > 0):
            phi = None
        idle_share, idle_boost = data.idle_share, data.idle_boost
        if idle_share is not None:  # the idle flag takes the dependency's place (no groups with it)
            dependency = np.asarray(data.idle, dtype=bool)
    elif isinstance(data, pd.DataFrame):
        idle_share = idle_boost = None
        if system is None:
            system = OrderServiceSystem.default()
        elif not isinstance(system, OrderServiceSystem):
            raise TypeError(
                f"system must be an OrderServiceSystem or None, got {type(system).__name__}."
            )
        W, boost = _check_memory(
            0 if memory_window is None else memory_window,
            3.0 if memory_boost is None else memory_boost,
        )
        shifts = _resolve_shifts(system.event_names, mix_shifts)
        n_groups = 0 if n_groups is None else n_groups
        grouped = check_scalar(n_groups, "n_groups", (int, np.integer), min_val=0) > 0
        rate, length, group_boost = _check_groups(
            0.005 if group_outage_rate is None else group_outage_rate,
            20.0 if group_outage_length is None else group_outage_length,
            10.0 if group_outage_boost is None else group_outage_boost,
        )
        phi, finish_status = _check_finish(
            0.0 if finish_rate is None else finish_rate,
            "finished" if finish_status is None else finish_status,
            system.state_names,
        )
        need = (
            ["status", "handler_class"] + ["memory"] * (W > 0) + ["step"] * bool(shifts)
            + ["dependency_down"] * grouped
        )
        missing = [c for c in need if c not in data.columns]
        if missing:
            raise ValueError(
                f"the frame lacks columns {missing}; simulate with truth_columns=True "
                "or pass the SimulatedHistories."
            )
        status = data["status"].to_numpy(dtype=object)
        labels = system.state_names + ((finish_status,) if phi is not None else ())
        codes = pd.Index(labels).get_indexer(status)
        if np.any(codes < 0):
            hint = (
                "; rows of finished handlers need their finish_rate (and finish_status)"
                if phi is None else ""
            )
            raise ValueError(
                f"status holds values outside {labels}: "
                f"{sorted(set(status[codes < 0]))[:5]}{hint}."
            )
        states, classes = codes.astype(np.intp), data["handler_class"].to_numpy(dtype=object)
        unknown = sorted(set(classes) - set(system.handler_classes))
        if unknown:
            raise ValueError(f"handler_class holds unknown classes {unknown}.")
        memory = data["memory"].to_numpy(dtype=np.int64) if W else np.zeros(len(data), np.int64)
        if np.any((memory < 0) | (memory > W)):
            raise ValueError(f"memory must lie in [0, memory_window={W}].")
        steps = data["step"].to_numpy(dtype=np.int64) if shifts else np.zeros(len(data), np.int64)
        dependency = (
            data["dependency_down"].to_numpy(dtype=bool) if grouped
            else np.zeros(len(data), dtype=bool)
        )
    else:
        raise TypeError(
            f"data must be a SimulatedHistories or a DataFrame, got {type(data).__name__}."
        )

    schedule = _Schedule.build(system.event_names, shifts)
    n_memory, n_dependency = W + 1, 2 if grouped or idle_share is not None else 1
    n_states = len(system.state_names)
    fail = _joint_failure_mask(system.failure_mask, n_memory, n_dependency, phi is not None)
    chain = _dependency_chain(rate, length)[0] if grouped else None
    out = np.empty((states.shape[0], horizon))
    if out.shape[0] == 0:
        return out
    unique_steps, step_of_row = np.unique(steps, return_inverse=True)
    future = schedule.regime_of(unique_steps[:, None] + np.arange(1, horizon + 1))
    patterns, pattern_of_step = np.unique(future, axis=0, return_inverse=True)
    pattern_of_row = pattern_of_step.reshape(-1)[step_of_row.reshape(-1)]
    finished = states == n_states  # their index is END, the last
    joint_index = np.where(
        finished, fail.shape[0] - 1,
        (dependency.astype(np.intp) * n_states + states) * n_memory + memory,
    )
    for name in pd.unique(classes):
        Pm = _dependency_matrices(
            system.event_matrices[name], system.failure_mask, W, boost,
            group_boost if grouped else idle_boost,
        )
        matrices = np.stack([
            _joint_matrix(
                Pm, _shifted_probs(system.event_probs[name], m), system.failure_mask, chain, phi,
                idle_share,
            )
            for m in schedule.multipliers
        ])
        table = _fail_within_schedule(matrices, fail, patterns)  # (patterns, A, H)
        rows = np.flatnonzero(classes == name)
        out[rows] = table[pattern_of_row[rows], joint_index[rows]]
    return out
