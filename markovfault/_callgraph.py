"""A simulated system of handlers that call each other through events, with injected failure episodes and
their known root causes: the truth that fault localization (:mod:`markovfault.explain._localize`) is measured
against.

Each request is a trace (``trace`` id) that enters ``order_api`` and passes through the other handlers by
follow-on events with random delays (:data:`CALLS`: ``order_api`` emits ``order_placed`` to ``payment`` and
``notification``, ``payment`` queries the shared ``database`` and emits ``payment_captured`` to ``shipping``,
which queries the ``database`` too and emits ``shipment_created`` to ``delivery`` and ``notification``). Every
handler, the shared database included, is an entity of the histories: one row per step (entity, time, event,
status, trace, latency_ms).

Statuses (``ok``, ``slow``, ``error``, ``down``; the last two are failures) follow a sticky chain per handler:
at each step the handler keeps its previous status with probability ``stickiness``, and otherwise draws a fresh
one whose failure probability combines, as a noisy-or, its own background rate, its own failure episode (when
it is the injected root cause) and the health of the handlers it depends on (:data:`INFLUENCES`): the
failure fraction of each parent's steps in ``(t - lag - window, t - lag]``, times the edge's strength. So a
failure starts at the root cause at a known time and reaches its descendants with lags. A handler whose parents
fail also turns ``slow`` (it waits on retries and timeouts), and slow steps take ``slow_factor`` times the
usual latency, while failures fail fast: in a cascade the downstream latency explodes and the root cause's own
latency hardly moves, which is what makes the largest-z-score baseline hard to rely on.

The chain is simulated without a loop over steps: a fresh status is drawn at every step, and each step takes
the fresh status of its last refresh (``np.maximum.accumulate`` over the refresh positions), which is exactly the
sticky chain. The only loops are over the handlers (in topological order of the influences) and over episodes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .exceptions import ConfigError

__all__ = ["CallGraphSimulation", "simulate_call_graph", "HANDLERS", "CALLS", "INFLUENCES", "STATUSES"]

logger = logging.getLogger(__name__)

#: the entities, in the topological order of :data:`INFLUENCES`
HANDLERS: tuple[str, ...] = ("order_api", "database", "payment", "shipping", "delivery", "notification")
#: the statuses; ``error`` and ``down`` are failures
STATUSES: tuple[str, ...] = ("ok", "slow", "error", "down")
FAILURES: tuple[str, ...] = ("error", "down")
#: how a trace passes through the handlers: (caller, callee, event, mean delay in seconds), in call order; the
#: entry step is ``order_api`` handling ``order_requested``
CALLS: tuple[tuple[str, str, str, float], ...] = (
    ("order_api", "notification", "order_placed", 1.0),
    ("order_api", "payment", "order_placed", 2.0),
    ("payment", "database", "query", 0.05),
    ("payment", "shipping", "payment_captured", 3.0),
    ("shipping", "database", "query", 0.05),
    ("shipping", "delivery", "shipment_created", 5.0),
    ("shipping", "notification", "shipment_created", 1.0),
)
#: the propagation mechanism, (parent, child, strength): the child's failure probability rises with the
#: parent's recent failure fraction; the shared database is a dependency of payment and shipping
INFLUENCES: tuple[tuple[str, str, float], ...] = (
    ("order_api", "payment", 0.9),
    ("database", "payment", 0.9),
    ("order_api", "notification", 0.8),
    ("payment", "shipping", 0.9),
    ("database", "shipping", 0.8),
    ("shipping", "delivery", 0.9),
    ("shipping", "notification", 0.8),
)
#: background failure probability of a fresh draw, and the usual latency (ms), per handler
BASE_FAIL = {"order_api": 0.01, "database": 0.005, "payment": 0.015, "shipping": 0.01, "delivery": 0.02,
             "notification": 0.03}
BASE_LATENCY = {"order_api": 40.0, "database": 5.0, "payment": 120.0, "shipping": 80.0, "delivery": 60.0,
                "notification": 25.0}
# ok, slow (replaced by slow_factor), error (fails fast), down (a timeout)
_LATENCY_FACTOR = np.array([1.0, 1.0, 0.7, 10.0])


@dataclass
class CallGraphSimulation:
    """What :func:`simulate_call_graph` made: the histories and their truth.

    Attributes
    ----------
    histories : DataFrame
        The canonical frame, sorted by (entity, time): ``entity``, ``time`` (datetime64[ns, UTC]), ``event``,
        ``status``, ``trace`` (str) and ``latency_ms``.
    episodes : DataFrame
        One row per injected episode: ``episode``, ``root_cause``, ``start``, ``end`` (UTC timestamps) and
        ``severity`` (the root cause's failure probability of a fresh draw while it lasts).
    edges : DataFrame
        The true direct propagation edges (``source``, ``target``, ``strength``, ``lag_s``): the source's
        failure raises the target's failure probability.
    failure : tuple of str
        The failure statuses.
    """

    histories: pd.DataFrame
    episodes: pd.DataFrame
    edges: pd.DataFrame
    failure: tuple[str, ...] = FAILURES

    def true_edges(self) -> set[tuple[str, str]]:
        """The direct edges (source, target) of the propagation mechanism."""
        return set(zip(self.edges["source"], self.edges["target"]))

    def reachable_edges(self) -> set[tuple[str, str]]:
        """Every (A, B) with a directed path of propagation edges from A to B: A's failure raises B's failure
        probability, directly or through the handlers between them (the transitive closure)."""
        out = set(self.true_edges())
        while True:
            more = {(a, d) for a, b in out for c, d in out if b == c and a != d} - out
            if not more:
                return out
            out |= more

    def __repr__(self) -> str:
        return (f"CallGraphSimulation({len(self.histories)} steps of {self.histories['entity'].nunique()} "
                f"handlers in {self.histories['trace'].nunique()} traces, {len(self.episodes)} episodes, "
                f"{len(self.edges)} propagation edges)")


def _seconds(value, name: str) -> float:
    try:
        out = pd.Timedelta(value).total_seconds() if isinstance(value, str) else float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} = {value!r}: give a duration such as \"30s\" or a number of seconds") from exc
    if not np.isfinite(out) or out < 0:
        raise ConfigError(f"{name} = {value!r} must be a duration >= 0")
    return out


def simulate_call_graph(n_episodes: int = 50, *, rate: float = 0.2, episode_minutes: tuple[float, float] = (5, 15),
                        gap_minutes: tuple[float, float] = (20, 40), severity: tuple[float, float] = (0.3, 0.7),
                        ramp: str | float = "2min", lag: str | float = "5s", window: str | float = "60s",
                        stickiness: float = 0.5,
                        slow_boost: float = 0.6, slow_factor: float = 12.0, roots: tuple[str, ...] | None = None,
                        start: str = "2024-05-01T00:00:00Z", random_state: int | np.random.Generator | None = None
                        ) -> CallGraphSimulation:
    """Simulate handlers that call each other through events, with injected failure episodes.

    Parameters
    ----------
    n_episodes : int, default=50
        Failure episodes, one after the other, each after a normal gap.
    rate : float, default=0.2
        Requests (traces) per second entering ``order_api``.
    episode_minutes, gap_minutes : (float, float), default=(5, 15) and (20, 40)
        Uniform ranges of each episode's length and of the normal time before it.
    severity : (float, float), default=(0.3, 0.7)
        Uniform range of the root cause's failure probability (of a fresh draw) during its episode.
    ramp : duration or seconds, default="2min"
        The root cause degrades gradually: its failure probability rises linearly from 0 to the episode's
        severity over the first ``ramp`` of the episode.
    lag, window : duration or seconds, default="5s" and "60s"
        A child reads its parents' failure fraction over ``(t - lag - window, t - lag]``.
    stickiness : float, default=0.5
        Probability that a step keeps the handler's previous status.
    slow_boost, slow_factor : float, default=0.6 and 12.0
        How much a parent's failure fraction raises the probability of ``slow``, and how much slower a slow
        step is than the handler's usual latency.
    roots : tuple of str, optional
        The handlers that may be root causes (drawn uniformly per episode); default: every handler.
    start : str, default="2024-05-01T00:00:00Z"
        The time of the first request.
    random_state : int or numpy Generator, optional
        The seed.

    Returns
    -------
    CallGraphSimulation

    Examples
    --------
    >>> sim = simulate_call_graph(3, rate=0.1, random_state=0)
    >>> sorted(sim.histories.columns)
    ['entity', 'event', 'latency_ms', 'status', 'time', 'trace']
    >>> len(sim.episodes), sorted(sim.true_edges())[:2]
    (3, [('database', 'payment'), ('database', 'shipping')])
    >>> bool(sim.histories.groupby("trace").size().eq(8).all())  # every request passes 8 steps
    True
    """
    if isinstance(n_episodes, bool) or not isinstance(n_episodes, (int, np.integer)) or n_episodes < 1:
        raise ConfigError(f"n_episodes = {n_episodes!r} must be an integer >= 1")
    if not (isinstance(rate, (int, float)) and rate > 0):
        raise ConfigError(f"rate = {rate!r} must be a number of requests per second > 0")
    if not 0 <= stickiness < 1:
        raise ConfigError(f"stickiness = {stickiness!r} must be in [0, 1)")
    roots = HANDLERS if roots is None else tuple(roots)
    unknown = sorted(set(roots) - set(HANDLERS))
    if unknown or not roots:
        raise ConfigError(f"roots = {list(roots)!r}: each must be one of {list(HANDLERS)}")
    lag_s, window_s, ramp_s = _seconds(lag, "lag"), _seconds(window, "window"), _seconds(ramp, "ramp")
    rng = np.random.default_rng(random_state)
    code = {h: k for k, h in enumerate(HANDLERS)}

    # episodes, one after the other (seconds from the start)
    gaps = rng.uniform(*gap_minutes, size=n_episodes) * 60.0
    lengths = rng.uniform(*episode_minutes, size=n_episodes) * 60.0
    ep_end = np.cumsum(gaps + lengths)
    ep_start = ep_end - lengths
    ep_root = rng.choice(np.array([code[h] for h in roots]), size=n_episodes)
    ep_sev = rng.uniform(*severity, size=n_episodes)
    horizon = float(ep_end[-1] + gaps.mean() / 2)

    # traces: Poisson arrivals, then every call with an exponential delay (vectorised over traces)
    n_traces = int(rng.poisson(rate * horizon))
    t0 = np.sort(rng.uniform(0.0, horizon, size=n_traces))
    events = ["order_requested"] + sorted({c[2] for c in CALLS})
    ev_code = {e: k for k, e in enumerate(events)}
    step_time = {"order_api": t0}  # the time each handler handled the trace, by its call's callee
    ent, tim, evt, trc = [np.full(n_traces, code["order_api"])], [t0], [np.zeros(n_traces, int)], [np.arange(n_traces)]
    for caller, callee, event, delay in CALLS:  # a loop over the graph's calls
        t = step_time[caller] + rng.exponential(delay, size=n_traces) + 0.001
        if callee != "database" and callee not in step_time:
            step_time[callee] = t
        ent.append(np.full(n_traces, code[callee]))
        tim.append(t)
        evt.append(np.full(n_traces, ev_code[event]))
        trc.append(np.arange(n_traces))
    ent, tim, evt, trc = (np.concatenate(a) for a in (ent, tim, evt, trc))
    order = np.lexsort((tim, ent))
    ent, tim, evt, trc = ent[order], tim[order], evt[order], trc[order]
    bounds = np.searchsorted(ent, np.arange(len(HANDLERS) + 1))

    status = np.zeros(len(ent), dtype=np.int64)
    parents: dict[str, list[tuple[str, float]]] = {h: [] for h in HANDLERS}
    for parent, child, strength in INFLUENCES:
        parents[child].append((parent, strength))
    fail_cum: dict[str, np.ndarray] = {}
    for h in HANDLERS:  # topological order: every parent is simulated before its children
        lo, hi = bounds[code[h]], bounds[code[h] + 1]
        t = tim[lo:hi]
        n = hi - lo
        own = np.zeros(n)
        mine = np.flatnonzero(ep_root == code[h])  # a loop over this handler's episodes only
        for k in mine:
            rise = np.clip((t - ep_start[k]) / ramp_s, 0.0, 1.0) if ramp_s > 0 else 1.0
            own = np.where((t >= ep_start[k]) & (t < ep_end[k]), ep_sev[k] * rise, own)
        survive = (1.0 - BASE_FAIL[h]) * (1.0 - own)
        frac_max = np.zeros(n)
        for parent, strength in parents[h]:
            pt = tim[bounds[code[parent]]:bounds[code[parent] + 1]]
            cum = fail_cum[parent]
            a = np.searchsorted(pt, t - lag_s - window_s, side="right")
            b = np.searchsorted(pt, t - lag_s, side="right")
            with np.errstate(invalid="ignore", divide="ignore"):
                frac = np.where(b > a, (cum[b] - cum[a]) / np.maximum(b - a, 1), 0.0)
            survive = survive * (1.0 - strength * frac)
            frac_max = np.maximum(frac_max, frac)
        p_fail = 1.0 - survive
        p_slow = np.minimum(0.05 + slow_boost * frac_max, 1.0) * (1.0 - p_fail)
        probs = np.stack([1.0 - p_fail - p_slow, p_slow, 0.75 * p_fail, 0.25 * p_fail], axis=1)
        fresh = (rng.random(n)[:, None] >= np.cumsum(probs, axis=1)[:, :-1]).sum(axis=1)
        refresh = rng.random(n) >= stickiness
        refresh[0] = True
        last = np.maximum.accumulate(np.where(refresh, np.arange(n), 0))
        status[lo:hi] = fresh[last]
        failed = status[lo:hi] >= 2
        fail_cum[h] = np.concatenate([[0], np.cumsum(failed)])

    factor = np.where(status == 1, slow_factor, _LATENCY_FACTOR[status])
    base = np.array([BASE_LATENCY[h] for h in HANDLERS])[ent]
    latency = base * factor * rng.lognormal(0.0, 0.35, size=len(ent))

    t_start = pd.Timestamp(start)
    t_start = t_start.tz_localize("UTC") if t_start.tzinfo is None else t_start.tz_convert("UTC")
    as_time = (lambda s: t_start + pd.to_timedelta(np.round(np.asarray(s) * 1e9).astype(np.int64), unit="ns"))
    width = len(str(max(n_traces - 1, 1)))
    histories = pd.DataFrame({
        "entity": pd.array(np.asarray(HANDLERS, dtype=object)[ent], dtype="str"),
        "time": as_time(tim),
        "event": pd.array(np.asarray(events, dtype=object)[evt], dtype="str"),
        "status": pd.array(np.asarray(STATUSES, dtype=object)[status], dtype="str"),
        "trace": pd.array(np.char.add("t", np.char.zfill(trc.astype(str), width)).astype(object), dtype="str"),
        "latency_ms": latency,
    })
    episodes = pd.DataFrame({"episode": np.arange(n_episodes), "root_cause": np.asarray(HANDLERS)[ep_root],
                             "start": as_time(ep_start), "end": as_time(ep_end), "severity": ep_sev})
    edges = pd.DataFrame([(p, c, s, lag_s) for p, c, s in INFLUENCES],
                         columns=["source", "target", "strength", "lag_s"])
    logger.debug("simulated %d steps of %d traces with %d episodes", len(histories), n_traces, n_episodes)
    return CallGraphSimulation(histories=histories, episodes=episodes, edges=edges)
