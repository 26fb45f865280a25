"""History-aware states: the chain over (state, recent history) with back-off.

A first-order chain over raw statuses forgets what predicts failure: a
handler that failed two steps ago looks like any other ``ok`` handler. The
augmented state carries the history that matters:

* ``order``: the previous ``m`` base states (an order-m chain, fitted as a
  first-order chain on tuples);
* ``failure_window``: steps since the last failure, capped at ``W`` (``W``
  means "no failure in the last W steps"): failure memory;
* ``failure_count``: failures since the last recovery, capped at ``C``
  (buckets 0, 1, ..., ``C`` or more), where a recovery is ``W`` steps in a
  row without failure (needs ``failure_window``);
* ``entering_event``: the event that entered the state.

Every component moves deterministically once the next base state ``j`` and
the next event ``e`` are known, so the augmented chain needs only
``P(j | a, e)`` and ``P(e | a)``: its sufficient statistics are the counts
``N[e, a, j]``. Sparse augmented rows back off to the base chain by
hierarchical shrinkage (n-gram style)::

    P(j | a, e) = (N[e, a, j] + gamma * P_base[e, base(a), j]) / (N[e, a, .] + gamma)
    Q(e | a)    = (M[a, e]    + gamma * Q_base[base(a), e])    / (M[a, .]    + gamma)

so an augmented state with no data forecasts exactly like its base state,
and adding history never makes a small data set much worse. Forecasts stay
exact: the k-step recursion runs over augmented states (sparse matrices), and
failure is defined on the base state.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from .._priors import check_prior
from ..exceptions import ConfigError
from ..trajectories import Trajectories

__all__ = ["HistorySpec", "HistoryLayout", "augment", "count_augmented", "candidate_specs",
           "MAX_AUGMENTED_STATES"]

MAX_AUGMENTED_STATES = 200_000


@dataclass(frozen=True)
class HistorySpec:
    """Which history an augmented state carries.

    Parameters
    ----------
    order : int, default=1
        ``1`` is the plain first-order chain; ``m > 1`` adds the previous
        ``m - 1`` base states.
    failure_window : int, default=0
        ``W > 0`` adds the steps since the last failure, capped at ``W``.
    entering_event : bool, default=False
        Add the event that entered the state.
    failure_count : int, default=0
        ``C > 0`` adds the number of failures since the last recovery
        (``failure_window`` steps in a row without failure), capped at ``C``.
    backoff : float, default=5.0
        Pseudo-counts ``gamma`` pulling each augmented row toward its base row.

    Examples
    --------
    >>> HistorySpec.from_config({"order": 2, "failure_window": 3})
    HistorySpec(order=2, failure_window=3, entering_event=False, backoff=5.0, failure_count=0)
    """

    order: int = 1
    failure_window: int = 0
    entering_event: bool = False
    backoff: float = 5.0
    failure_count: int = 0

    def __post_init__(self):
        for name in ("order", "failure_window", "failure_count"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ConfigError(f"history {name} = {v!r} must be an integer")
        if self.order < 1:
            raise ConfigError(f"history order = {self.order}, must be >= 1")
        if self.failure_window < 0:
            raise ConfigError(f"history failure_window = {self.failure_window}, must be >= 0")
        if self.failure_count < 0:
            raise ConfigError(f"history failure_count = {self.failure_count}, must be >= 0")
        if self.failure_count and not self.failure_window:
            raise ConfigError(
                "history failure_count needs a failure_window: a recovery is failure_window "
                "steps in a row without failure")
        if not isinstance(self.entering_event, (bool, np.bool_)):
            raise ConfigError(f"history entering_event = {self.entering_event!r} must be true or false")
        check_prior("history backoff", self.backoff)

    @classmethod
    def from_config(cls, table) -> "HistorySpec":
        """From a ``[states.history]`` table (a spec is returned as it is); unknown keys are errors.

        Examples
        --------
        >>> HistorySpec.from_config({"order": 2}) == HistorySpec.from_config(HistorySpec(order=2))
        True
        """
        if isinstance(table, HistorySpec):
            return table
        known = {"order", "failure_window", "failure_count", "entering_event", "backoff"}
        unknown = sorted(set(table) - known)
        if unknown:
            raise ConfigError(
                f"unknown key(s) {unknown} in [states.history]; the keys are {sorted(known)}."
            )
        return cls(**dict(table))

    def to_config(self) -> dict:
        return {"order": int(self.order), "failure_window": int(self.failure_window),
                "failure_count": int(self.failure_count),
                "entering_event": bool(self.entering_event), "backoff": float(self.backoff)}

    @property
    def is_plain(self) -> bool:
        return self.order == 1 and self.failure_window == 0 and not self.entering_event

    @property
    def tail(self) -> int:
        """How many past steps determine the augmented state of the next one."""
        return max(self.order - 1, self.failure_window * (self.failure_count + 1), 1)


class HistoryLayout:
    """Mixed-radix codes of augmented states: base, lags, since-failure, entering event."""

    def __init__(self, spec: HistorySpec, n_states: int, n_events: int):
        self.spec, self.S, self.E = spec, n_states, n_events
        radices = [n_states] + [n_states + 1] * (spec.order - 1)
        if spec.failure_window:
            radices.append(spec.failure_window + 1)
        if spec.failure_count:
            radices.append(spec.failure_count + 1)
        if spec.entering_event:
            radices.append(n_events + 1)
        self.radices = np.array(radices, dtype=np.int64)
        self.strides = np.concatenate([[1], np.cumprod(self.radices)[:-1]]).astype(np.int64)
        self.A = int(np.prod(self.radices))
        if self.A > MAX_AUGMENTED_STATES:
            raise ConfigError(
                f"{self.A} augmented states (radices {radices}) is too many; lower the order, "
                "the failure window or drop the entering event."
            )

    def components(self, codes: np.ndarray) -> np.ndarray:
        """(n_components, n) array of component values."""
        return (codes[None, :] // self.strides[:, None]) % self.radices[:, None]

    def base(self, codes: np.ndarray) -> np.ndarray:
        return codes % self.S

    def names(self, state_names, event_names) -> list:
        sp_ = self.spec
        states = list(state_names) + ["-"]
        events = list(event_names) + ["-"]
        comps = self.components(np.arange(self.A))
        out = []
        for col in comps.T:  # a loop over the state space (vocabulary), not over rows
            k = 1
            parts = [states[col[0]]]
            if sp_.order > 1:
                lags = [states[col[k + i]] for i in range(sp_.order - 1)]
                parts.append("prev=" + ",".join(lags))
                k += sp_.order - 1
            if sp_.failure_window:
                v = col[k]
                parts.append(f"since_fail={'>=' if v == sp_.failure_window else ''}{v}")
                k += 1
            if sp_.failure_count:
                v = col[k]
                parts.append(f"fails={'>=' if v == sp_.failure_count else ''}{v}")
                k += 1
            if sp_.entering_event:
                parts.append(f"in={events[col[k]]}")
            out.append("|".join(parts))
        return out

    def successor(self, fail: np.ndarray) -> np.ndarray:
        """f[a, e, j]: the augmented state after base state j entered by event e, from a."""
        sp_, S, E = self.spec, self.S, self.E
        comps = self.components(np.arange(self.A))  # (C, A)
        j = np.arange(S)[None, None, :]
        e = np.arange(E)[None, :, None]
        code = np.broadcast_to(j, (self.A, E, S)).astype(np.int64)
        k = 1
        if sp_.order > 1:
            # new lag 1 = current base; new lag i = old lag i-1
            code = code + comps[0][:, None, None] * self.strides[1]
            for i in range(2, sp_.order):
                code = code + comps[i - 1][:, None, None] * self.strides[i]
            k += sp_.order - 1
        if sp_.failure_window:
            d = comps[k][:, None, None]
            nd = np.where(fail[None, None, :], 0, np.minimum(d + 1, sp_.failure_window))
            code = code + nd * self.strides[k]
            k += 1
            if sp_.failure_count:
                c = comps[k][:, None, None]
                nc = np.where(fail[None, None, :], np.minimum(c + 1, sp_.failure_count),
                              np.where(nd == sp_.failure_window, 0, c))
                code = code + nc * self.strides[k]
                k += 1
        if sp_.entering_event:
            code = code + np.broadcast_to(e, (self.A, E, S)) * self.strides[k]
        return code


def augment(traj: Trajectories, spec: HistorySpec, n_events: int | None = None) -> np.ndarray:
    """Augmented state code of every step of ``traj`` (vectorised within runs).

    ``n_events`` is the model's number of events when ``traj`` holds events
    the model never saw (codes ``>= n_events``): those enter as "unknown".

    Examples
    --------
    >>> traj = Trajectories.from_codes([0, 1, 1, 0], state_names=["ok", "down"],
    ...                                failure=["down"])
    >>> layout = HistoryLayout(HistorySpec(order=2), 2, 1)
    >>> [layout.names(["ok", "down"], ["step"])[a] for a in augment(traj, HistorySpec(order=2))]
    ['ok|prev=-', 'down|prev=ok', 'down|prev=down', 'ok|prev=down']
    """
    E = traj.n_events if n_events is None else n_events
    layout = HistoryLayout(spec, traj.n_states, E)
    n = traj.n_steps
    idx = np.arange(n)
    run_id = np.zeros(n, dtype=np.int64)
    if n:
        run_id[traj.run_starts[1:]] = 1
        run_id = np.cumsum(run_id)
    start = traj.run_starts[run_id] if n else np.zeros(0, np.int64)
    pos = idx - start
    code = traj.state.astype(np.int64).copy()
    k = 1
    for lag in range(1, spec.order):
        prev = np.where(pos >= lag, traj.state[np.maximum(idx - lag, 0)], layout.S)
        code += prev * layout.strides[k]
        k += 1
    if spec.failure_window:
        fail = traj.is_failure[traj.state]
        last = np.maximum.accumulate(np.where(fail, idx, -1)) if n else idx
        d = np.where(last >= start, np.minimum(idx - last, spec.failure_window),
                     spec.failure_window)
        code += d * layout.strides[k]
        k += 1
        if spec.failure_count:
            # failures since the last recovered step (d == W), or since the run began
            cum = np.cumsum(fail)
            rec = np.maximum.accumulate(np.where(d == spec.failure_window, idx, -1)) if n else idx
            base_rec = np.where(rec >= start, rec, start - 1)
            before = np.where(base_rec >= 0, cum[np.maximum(base_rec, 0)], 0)
            c = np.minimum(cum - before, spec.failure_count)
            code += c * layout.strides[k]
            k += 1
    if spec.entering_event:
        code += np.minimum(traj.event, E) * layout.strides[k]
    return code


def count_augmented(aug: np.ndarray, traj: Trajectories, n_aug: int,
                    bins: np.ndarray | None = None, n_bins: int = 1) -> np.ndarray:
    """Counts ``N[(bin,) e, a, j]`` of base next states ``j`` by event and augmented state."""
    n = traj.n_steps
    E, S = traj.n_events, traj.n_states
    size = E * n_aug * S
    shape = (E, n_aug, S) if bins is None else (n_bins, E, n_aug, S)
    if n < 2:
        return np.zeros(shape, dtype=np.int64)
    idx = traj.event[1:].astype(np.int64)
    if bins is not None:
        idx = idx + bins[1:].astype(np.int64) * E
    idx = (idx * n_aug + aug[:-1]) * S + traj.state[1:]
    total = size * (1 if bins is None else n_bins)
    starts = traj.run_starts
    idx[starts[starts > 0] - 1] = total
    return np.bincount(idx, minlength=total + 1)[:total].reshape(shape).astype(np.int64)


def candidate_specs(orders=(1, 2), failure_windows=(0, 3), entering_event=(False,),
                    backoff=5.0, failure_counts=(0,)) -> list:
    """Every valid combination, as :class:`HistorySpec` (a grid for :func:`select_states`)."""
    return [HistorySpec(order=o, failure_window=w, entering_event=bool(e), backoff=backoff,
                        failure_count=c)
            for o, w, c, e in itertools.product(orders, failure_windows, failure_counts,
                                                entering_event)
            if not (c and not w)]
