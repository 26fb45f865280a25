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

Two options make the truth richer and keep it exact. *Failure memory*: a
handler that failed in the last ``memory_window`` steps has its probabilities
of moving into a failure state multiplied by ``memory_boost`` (rows
renormalised), so the true process is a first-order chain over (state,
memory). *Event-mix shifts*: outages multiply
the arrival probability of some events (say ``payment_failed`` x10) for a
window of steps, so the chain varies in time along a known schedule.
:func:`true_failure_probabilities` gives every simulated row its exact risk.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.utils import check_random_state, check_scalar

__all__ = [
    "OrderServiceSystem",
    "SimulatedHistories",
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
        boosted = P.copy()
        healthy = ~failure_mask
        boosted[:, healthy[:, None] & failure_mask[None, :]] *= boost
        rows = boosted[:, healthy, :]
        boosted[:, healthy, :] = rows / rows.sum(axis=-1, keepdims=True)
        out[:window] = boosted
    return out


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
    latency = np.empty(states.shape[0])
    error_rate = np.empty(states.shape[0])
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
    truth_columns: bool = False,
    return_result: bool = False,
) -> pd.DataFrame | SimulatedHistories:
    """Simulate the status histories of order-service handlers.

    Every handler starts in a state drawn from the system's initial
    distribution, then takes ``n_steps`` steps; each step is one row: the
    event that arrived (drawn from ``Q[state]``) and the status the handler
    ended in (drawn from ``P[event, state]``). The simulation is vectorised
    across handlers: one numpy step moves all handlers at once.

    Parameters
    ----------
    n_handlers : int, default=50
        Number of handlers (entities), named ``orders-worker-01``, ...
    n_steps : int, default=1000
        Steps (rows) per handler.
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
        rate ~ 0.7, timeout >= 5000 ms, down ~ 2 ms with error rate 1.0.
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
        steps ``start_step <= n < end_step`` (row ``n`` of every handler) the
        event arrives from ``Q[s, e] * multiplier[e]``, rows renormalised.
        Overlapping shifts multiply.
    outages : int, default=0
        Add this many random, non-overlapping shifts of ``outage_length``
        steps within the run (drawn from ``random_state``).
    outage_length : int, default=60
        Steps per outage.
    outage_boost : dict of str to float, default=None
        The multipliers of an outage; ``{"payment_failed": 10.0}`` when None.
    truth_columns : bool, default=False
        Add ``step`` (the row's step index within its handler), ``memory``
        (``d``) and ``regime`` (0 = no shift, else the id of the combination
        of shifts in force), all int64, after ``handler_class``.
    return_result : bool, default=False
        Return a :class:`SimulatedHistories` (the frame, the truth and the
        schedule) instead of the frame; its ``true_failure_probabilities``
        gives every row's exact risk.

    Returns
    -------
    histories : DataFrame
        Columns ``handler`` (str), ``timestamp`` (datetime64[ns, UTC]),
        ``event_type`` (str), ``status`` (str), ``event_id`` (str, if
        ``with_event_ids``), ``latency_ms`` and ``error_rate`` (float64, if
        ``with_metrics``) and ``handler_class`` (str, ``"normal"`` or
        ``"flaky"``), then ``step``, ``memory`` and ``regime`` if
        ``truth_columns``, with a fresh RangeIndex. A
        :class:`SimulatedHistories` if ``return_result``.

    Raises
    ------
    ValueError
        If a parameter is out of range or the system lacks a handler class.
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
    if outages:  # draws only then: the default stream is unchanged
        shifts = shifts + tuple(
            _draw_outages(rng, int(n_steps), int(outages), int(outage_length), outage_boost)
        )
    schedule = _Schedule.build(system.event_names, shifts)
    step_regime = schedule.regime_of(np.arange(n_steps))

    # Cumulative tables stacked by class: (K, S, E), (K, E, S, S), (K, S). A
    # class the system lacks is never indexed; any valid array fills its slot.
    def table(mapping: Mapping[str, np.ndarray]) -> np.ndarray:
        fill = mapping[used[0]]
        return np.stack([mapping.get(c, fill) for c in all_classes])

    # With memory and shifts: (K, R, S, E) per regime and (K, W + 1, E, S, S)
    # per memory value. Regime 0 is Q and memory W is P, bit for bit, so
    # without memory or shifts the draws are those of the plain chain.
    fail = system.failure_mask
    Q_table = table(system.event_probs)
    cum_Q = _cumulative(np.stack([
        np.stack([_shifted_probs(Q_table[k], m) for m in schedule.multipliers])
        for k in range(len(all_classes))
    ]))
    P_table = table(system.event_matrices)
    cum_P = _cumulative(np.stack([
        _memory_matrices(P_table[k], fail, memory_window, memory_boost)
        for k in range(len(all_classes))
    ]))
    cum_0 = _cumulative(table(system.initial_probs))

    states = np.empty((n_handlers, n_steps), dtype=np.intp)
    events = np.empty((n_handlers, n_steps), dtype=np.intp)
    memory = np.empty((n_handlers, n_steps), dtype=np.int64)
    s = _sample_categorical(rng, cum_0[cls])
    d = np.full(n_handlers, memory_window, dtype=np.int64)  # before the first row
    for n in range(n_steps):
        e = _sample_categorical(rng, cum_Q[cls, step_regime[n], s])
        s_next = _sample_categorical(rng, cum_P[cls, d, e, s])
        if n:  # the first row's memory is W: only recorded rows count
            d = np.where(fail[s], 0, np.minimum(d + 1, memory_window))
        s = s_next
        events[:, n] = e
        states[:, n] = s
        memory[:, n] = d

    # Times: whole milliseconds, strictly increasing per handler.
    step_ms = interval.value / 1e6
    gaps = np.rint(step_ms * rng.uniform(1.0 - jitter, 1.0 + jitter, (n_handlers, n_steps)))
    gaps[:, 0] = np.floor(step_ms * rng.random(n_handlers))
    gaps[:, 1:] = np.maximum(gaps[:, 1:], 1.0)
    offsets_ms = np.cumsum(gaps.astype(np.int64), axis=1)
    if clock == "aligned":
        # step n of every handler falls in [n, n + jitter) intervals after start, so steps
        # (and the regimes of mix shifts, which are indexed by step) line up in wall time
        frac = (gaps - step_ms * (1.0 - jitter)) / (2.0 * step_ms) if jitter else 0.0 * gaps
        offsets_ms = np.rint(step_ms * (np.arange(n_steps)[None, :] + jitter * frac)).astype(np.int64)
        offsets_ms = np.maximum(offsets_ms, np.arange(n_steps)[None, :])
    times_ns = t0.value + offsets_ms.ravel() * 1_000_000

    n_rows = n_handlers * n_steps
    state_codes = states.ravel()
    columns: dict[str, object] = {
        "handler": np.repeat(_handler_names(n_handlers), n_steps),
        "timestamp": pd.to_datetime(times_ns, utc=True).as_unit("ns"),
        "event_type": np.asarray(system.event_names, dtype=object)[events.ravel()],
        "status": np.asarray(system.state_names, dtype=object)[state_codes],
    }
    if with_event_ids:
        width = len(str(n_rows - 1))
        ids = np.strings.zfill(rng.permutation(n_rows).astype(str), width)
        columns["event_id"] = np.strings.add("evt-", ids)
    if with_metrics:
        columns["latency_ms"], columns["error_rate"] = _metrics(
            rng, system.state_names, state_codes
        )
    class_names = np.repeat(np.asarray(all_classes, dtype=object)[cls], n_steps)
    columns["handler_class"] = class_names
    step = np.tile(np.arange(n_steps, dtype=np.int64), n_handlers)
    regime = step_regime.astype(np.int64)[step]
    if truth_columns:
        columns["step"] = step
        columns["memory"] = memory.ravel()
        columns["regime"] = regime
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
    return SimulatedHistories(
        frame=frame,
        system=system,
        memory_window=memory_window,
        memory_boost=memory_boost,
        mix_shifts=shifts,
        step=step[taken],
        memory=memory.ravel()[taken],
        regime=regime[taken],
        _states=state_codes[taken],
        _classes=class_names[taken],
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
        The row's step index within its handler, its memory ``d`` and the
        regime its event was drawn under (0 = no shift; see
        :attr:`regime_multipliers`). The same as the columns of
        ``truth_columns=True``.
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


def true_failure_probabilities(
    data: SimulatedHistories | pd.DataFrame,
    horizon: int,
    *,
    system: OrderServiceSystem | None = None,
    memory_window: int | None = None,
    memory_boost: float | None = None,
    mix_shifts=None,
) -> np.ndarray:
    """The exact probability that each row's handler fails within 1..horizon steps.

    For the row of step ``t`` of a handler of class ``c`` in state ``s`` with
    memory ``d``: ``P(one of S_{t+1}..S_{t+h} is a failure | S_t = s, D_t = d)``
    for ``h = 1..horizon``, given the known schedule of event-mix regimes at
    steps ``t+1..t+h``. The process is a first-order chain over (state,
    memory) whose matrix at step ``k`` uses the event mix ``Q`` of the regime
    of step ``k`` (see :meth:`OrderServiceSystem.augmented_transition_matrix`);
    with ``T_k`` those matrices the recursion is ``f = 1_F`` at step
    ``t+h``, ``f = 1_F + 1_{not F} (T_k f)`` back to step ``t+1``, and the
    answer ``(T_{t+1} f)(s, d)``. Rows that share a class and a regime
    pattern over their next ``horizon`` steps share one computation. Steps
    past the end of the simulation follow the same schedule (no shift unless
    a window extends there).

    Parameters
    ----------
    data : SimulatedHistories or DataFrame
        A result of ``simulate_histories(..., return_result=True)``, which
        carries everything; or a frame with columns ``status`` and
        ``handler_class``, plus ``memory`` when ``memory_window > 0`` and
        ``step`` when there are shifts (``truth_columns=True`` adds both).
    horizon : int
        The largest number of steps ahead, >= 1.
    system, memory_window, memory_boost, mix_shifts
        Only with a frame: the simulation's arguments (defaults: the default
        system, no memory, boost 3.0, no shifts). For drawn outages, pass the
        result's ``mix_shifts``.

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
    """
    horizon = int(check_scalar(horizon, "horizon", (int, np.integer), min_val=1))
    if isinstance(data, SimulatedHistories):
        given = [system, memory_window, memory_boost, mix_shifts]
        if any(value is not None for value in given):
            raise TypeError(
                "system, memory_window, memory_boost and mix_shifts come from the "
                "SimulatedHistories; pass them only with a DataFrame."
            )
        system, W, boost = data.system, data.memory_window, data.memory_boost
        shifts = data.mix_shifts
        states, classes = data._states, data._classes
        memory, steps = data.memory, data.step
    elif isinstance(data, pd.DataFrame):
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
        need = ["status", "handler_class"] + ["memory"] * (W > 0) + ["step"] * bool(shifts)
        missing = [c for c in need if c not in data.columns]
        if missing:
            raise ValueError(
                f"the frame lacks columns {missing}; simulate with truth_columns=True "
                "or pass the SimulatedHistories."
            )
        status = data["status"].to_numpy(dtype=object)
        codes = pd.Index(system.state_names).get_indexer(status)
        if np.any(codes < 0):
            raise ValueError(
                f"status holds values outside {system.state_names}: "
                f"{sorted(set(status[codes < 0]))[:5]}."
            )
        states, classes = codes.astype(np.intp), data["handler_class"].to_numpy(dtype=object)
        unknown = sorted(set(classes) - set(system.handler_classes))
        if unknown:
            raise ValueError(f"handler_class holds unknown classes {unknown}.")
        memory = data["memory"].to_numpy(dtype=np.int64) if W else np.zeros(len(data), np.int64)
        if np.any((memory < 0) | (memory > W)):
            raise ValueError(f"memory must lie in [0, memory_window={W}].")
        steps = data["step"].to_numpy(dtype=np.int64) if shifts else np.zeros(len(data), np.int64)
    else:
        raise TypeError(
            f"data must be a SimulatedHistories or a DataFrame, got {type(data).__name__}."
        )

    schedule = _Schedule.build(system.event_names, shifts)
    n_memory = W + 1
    fail = np.repeat(system.failure_mask, n_memory)
    out = np.empty((states.shape[0], horizon))
    if out.shape[0] == 0:
        return out
    unique_steps, step_of_row = np.unique(steps, return_inverse=True)
    future = schedule.regime_of(unique_steps[:, None] + np.arange(1, horizon + 1))
    patterns, pattern_of_step = np.unique(future, axis=0, return_inverse=True)
    pattern_of_row = pattern_of_step.reshape(-1)[step_of_row.reshape(-1)]
    aug_index = states * n_memory + memory
    for name in pd.unique(classes):
        Pm = _memory_matrices(system.event_matrices[name], system.failure_mask, W, boost)
        matrices = np.stack([
            _augmented_matrix(Pm, _shifted_probs(system.event_probs[name], m), system.failure_mask)
            for m in schedule.multipliers
        ])
        table = _fail_within_schedule(matrices, fail, patterns)  # (patterns, A, H)
        rows = np.flatnonzero(classes == name)
        out[rows] = table[pattern_of_row[rows], aug_index[rows]]
    return out
