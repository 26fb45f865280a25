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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.utils import check_random_state, check_scalar

__all__ = ["OrderServiceSystem", "simulate_histories"]

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


def simulate_histories(
    n_handlers: int = 50,
    n_steps: int = 1000,
    *,
    system: OrderServiceSystem | None = None,
    flaky_fraction: float = 0.2,
    start: str | pd.Timestamp = "2026-01-01",
    step_interval: str | pd.Timedelta = "1min",
    jitter: float = 0.5,
    random_state: _RandomStateLike = None,
    with_metrics: bool = True,
    with_event_ids: bool = True,
    duplicate_rate: float = 0.0,
    shuffle: bool = False,
) -> pd.DataFrame:
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

    Returns
    -------
    histories : DataFrame
        Columns ``handler`` (str), ``timestamp`` (datetime64[ns, UTC]),
        ``event_type`` (str), ``status`` (str), ``event_id`` (str, if
        ``with_event_ids``), ``latency_ms`` and ``error_rate`` (float64, if
        ``with_metrics``) and ``handler_class`` (str, ``"normal"`` or
        ``"flaky"``), with a fresh RangeIndex.

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

    # Cumulative tables stacked by class: (K, S, E), (K, E, S, S), (K, S). A
    # class the system lacks is never indexed; any valid array fills its slot.
    def table(mapping: Mapping[str, np.ndarray]) -> np.ndarray:
        fill = mapping[used[0]]
        return np.stack([mapping.get(c, fill) for c in all_classes])

    cum_Q = _cumulative(table(system.event_probs))
    cum_P = _cumulative(table(system.event_matrices))
    cum_0 = _cumulative(table(system.initial_probs))

    states = np.empty((n_handlers, n_steps), dtype=np.intp)
    events = np.empty((n_handlers, n_steps), dtype=np.intp)
    s = _sample_categorical(rng, cum_0[cls])
    for n in range(n_steps):
        e = _sample_categorical(rng, cum_Q[cls, s])
        s = _sample_categorical(rng, cum_P[cls, e, s])
        events[:, n] = e
        states[:, n] = s

    # Times: whole milliseconds, strictly increasing per handler.
    step_ms = interval.value / 1e6
    gaps = np.rint(step_ms * rng.uniform(1.0 - jitter, 1.0 + jitter, (n_handlers, n_steps)))
    gaps[:, 0] = np.floor(step_ms * rng.random(n_handlers))
    gaps[:, 1:] = np.maximum(gaps[:, 1:], 1.0)
    offsets_ms = np.cumsum(gaps.astype(np.int64), axis=1)
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
    columns["handler_class"] = np.repeat(
        np.asarray(all_classes, dtype=object)[cls], n_steps
    )
    frame = pd.DataFrame(columns)

    if duplicate_rate > 0.0:
        copies = 1 + (rng.random(n_rows) < duplicate_rate)
        frame = frame.take(np.repeat(np.arange(n_rows), copies))
    if shuffle:
        frame = frame.take(rng.permutation(len(frame)))
    return frame.reset_index(drop=True)
