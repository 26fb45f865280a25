"""Across handlers: event tracing and fault localization.

Histories with a ``trace`` column (a trace or correlation id, read with ``ColumnMap(trace=...)``) link the steps
of different handlers into paths:

- :func:`trace_paths`: each trace's path across handlers in time order, and whether it ended in a failure;
- :func:`failure_paths`: which handler paths and event n-grams precede failures more often than expected
  (support, P(failure | pattern), lift over the base rate, Wilson intervals);
- :func:`propagation_test`: for each ordered pair of handlers (A, B), does B's next-step failure probability,
  given B's own state, rise after A fails? A stratified G² test with asymptotic and parametric-bootstrap
  p-values, a Mantel-Haenszel odds ratio with its interval, and the directed graph of the significant edges
  (Benjamini-Hochberg across pairs); it needs no trace column;
- :func:`rank_root_causes`: a ranking of likely root causes of a failure episode, by a personalised PageRank on
  the reversed propagation graph, seeded by how anomalous each handler is and how early its failures began;
- :func:`robust_zscore_ranking`: the BARO baseline, the largest robust z-score (x - median) / IQR of a metric
  over the anomaly window against a normal window before it;
- :func:`root_cause_accuracy`: AC@k and Avg@k of rankings against known root causes;
- :func:`localize`: all of it for a list of episodes, as one :class:`LocalizationReport`.

Every function reads the canonical frame of :func:`markovfault.read_histories` (``entity``, ``time``, ``status``,
and ``event``, ``trace`` or a metric where it needs them) and returns labelled DataFrames.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .._nullsim import rng_of
from .._timecodec import time_int, time_kind_of, to_time_int
from ..diagnostics import g2_tables
from ..exceptions import ConfigError, HistoryError, MissingColumnError

__all__ = ["trace_paths", "failure_paths", "propagation_test", "PropagationResult", "rank_root_causes",
           "robust_zscore_ranking", "root_cause_accuracy", "localize", "LocalizationReport", "model_states"]

logger = logging.getLogger(__name__)

#: the bins of B's own failures within the window that stratify the propagation test (0, 1, 2-3, 4-7, 8+)
OWN_BINS = np.array([1, 2, 4, 8])

_READ_FIX = ("read the histories with markovfault.read_histories(path, columns={...}), or rename the column "
             "of your frame")


# ------------------------------------------------------------------ inputs
@dataclass
class _Steps:
    """The steps of histories sorted by (entity, time), as codes."""

    frame: pd.DataFrame          # the rows in that order (fresh RangeIndex)
    entity: np.ndarray           # int64 codes into names
    names: np.ndarray            # entity names (sorted)
    time: np.ndarray             # int64 (UTC ns or a sequence)
    kind: str                    # "datetime" or "integer"
    status: np.ndarray           # int64 codes into status_names
    status_names: np.ndarray
    failed: np.ndarray           # bool
    bounds: np.ndarray           # entity k's steps are bounds[k]:bounds[k + 1]


def _check_failure(failure: Any) -> tuple[str, ...]:
    if failure is None or isinstance(failure, (bytes, int, float)):
        raise ConfigError(f"failure = {failure!r}: give the failure statuses, e.g. failure=['error', 'down']")
    labels = (failure,) if isinstance(failure, str) else tuple(failure)
    if not labels or not all(isinstance(f, str) and f for f in labels):
        raise ConfigError(f"failure = {failure!r}: give a non-empty list of status labels, e.g. "
                          "failure=['error', 'down']")
    return labels


def _frame_of(histories: Any, columns: Any, needed: Sequence[str], why: str = "") -> pd.DataFrame:
    if not isinstance(histories, pd.DataFrame) or (columns is not None):
        from ..histories import read_histories

        histories = read_histories(histories, columns=columns)
    for name in needed:
        if name not in histories.columns:
            hint = (" Fix: name the trace column when reading, read_histories(path, columns={'trace': "
                    "'<column>'}) or [columns] trace = \"<column>\" in the config"
                    if name == "trace" else f" Fix: {_READ_FIX}")
            raise MissingColumnError(f"histories have no {name!r} column{why}; columns there: "
                                     f"{[str(c) for c in histories.columns][:20]}.{hint}.")
    return histories


def _steps(histories: Any, failure: Any, columns: Any = None, needed: Sequence[str] = ()) -> _Steps:
    labels = () if failure is None and needed else _check_failure(failure)
    frame = _frame_of(histories, columns, ("entity", "time", "status", *needed))
    if len(frame) == 0:
        raise HistoryError("histories hold no rows")
    if frame["entity"].isna().any() or frame["status"].isna().any():
        col = "entity" if frame["entity"].isna().any() else "status"
        k = int(np.flatnonzero(frame[col].isna().to_numpy())[0])
        raise HistoryError(f"histories: row {k + 1} has no {col}. Fix: drop such rows, or read the histories with "
                           "markovfault.read_histories, which drops and counts them")
    kind = time_kind_of(frame["time"])
    t = time_int(frame)
    codes, names = pd.factorize(frame["entity"].astype(str), sort=True)
    order = np.lexsort((t, codes))
    frame = frame.iloc[order].reset_index(drop=True)
    codes, t = codes[order].astype(np.int64), t[order]
    s_codes, s_names = pd.factorize(frame["status"].astype(str), sort=True)
    failed = np.isin(np.asarray(s_names, dtype=object), labels)[s_codes]
    unknown = sorted(set(labels) - set(s_names))
    if unknown and labels:
        logger.warning("failure statuses %s never occur in the histories (statuses there: %s)", unknown,
                       list(s_names)[:10])
    bounds = np.searchsorted(codes, np.arange(len(names) + 1))
    return _Steps(frame=frame, entity=codes, names=np.asarray(names, dtype=object), time=t, kind=kind,
                  status=s_codes.astype(np.int64), status_names=np.asarray(s_names, dtype=object),
                  failed=failed, bounds=bounds)


def _duration(value: Any, kind: str, name: str) -> int:
    """A duration in the units of the time column (ns for timestamps)."""
    if kind == "datetime":
        if isinstance(value, bool) or isinstance(value, (int, float, np.integer, np.floating)):
            raise ConfigError(f"{name} = {value!r} is a bare number but the time column holds timestamps; give "
                              f"a duration such as \"60s\" or \"5min\"")
        try:
            out = int(pd.Timedelta(value).value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{name} = {value!r} is not a duration; give one such as \"60s\"") from exc
    else:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ConfigError(f"{name} = {value!r}: the time column holds sequence numbers; give an integer "
                              "number of time units")
        out = int(value)
    if out <= 0:
        raise ConfigError(f"{name} = {value!r} must be a positive duration")
    return out


def _episode_times(start: Any, end: Any, kind: str) -> tuple[int, int]:
    lo, hi = to_time_int([start, end], kind, what="episode_start, episode_end")
    if hi <= lo:
        raise ConfigError(f"episode_end ({end!r}) must come after episode_start ({start!r})")
    return int(lo), int(hi)


# ------------------------------------------------------------------ paths
def _trace_order(histories: Any, failure: Any, columns: Any, needed: Sequence[str] = ()):
    """Steps with a trace, sorted by (trace, time): (frame, trace codes, trace names, failed, time)."""
    labels = _check_failure(failure)
    frame = _frame_of(histories, columns, ("entity", "time", "status", "trace", *needed),
                      " (a trace or correlation id that links the steps of different handlers)")
    has = frame["trace"].notna().to_numpy()
    if not has.all():
        logger.info("%d of %d steps have no trace and are left out of the paths", int((~has).sum()), len(frame))
        frame = frame.loc[has]
    if len(frame) == 0:
        raise HistoryError("no step has a trace: the 'trace' column is empty. Fix: name the column that holds "
                           "the trace or correlation id, read_histories(path, columns={'trace': '<column>'})")
    t = time_int(frame)
    codes, names = pd.factorize(frame["trace"].astype(str))
    order = np.lexsort((t, codes))
    frame = frame.iloc[order].reset_index(drop=True)
    failed = frame["status"].astype(str).isin(labels).to_numpy()
    return frame, codes[order].astype(np.int64), np.asarray(names, dtype=object), failed, t[order]


def trace_paths(histories: Any, *, failure: Sequence[str], columns: Any = None) -> pd.DataFrame:
    """Each trace's path across handlers in time order, and whether it ended in a failure.

    Parameters
    ----------
    histories : DataFrame, path or list of paths
        The canonical frame of :func:`markovfault.read_histories` with a ``trace`` column (read with
        ``columns={"trace": "<column>"}``), or what ``read_histories(histories, columns=columns)`` reads.
    failure : list of str
        The failure statuses.
    columns : ColumnMap or mapping, optional
        Read ``histories`` with these columns first.

    Returns
    -------
    DataFrame
        One row per trace, by start time: ``trace``, ``start``, ``end``, ``n_steps``, ``handlers`` (the handlers
        in time order, ``" > "``-joined), ``steps`` (each step as ``handler:event:status``), ``failed`` (a step
        ended in a failure status), ``failed_handler``, ``failed_event`` and ``failed_step`` (the first
        failure's handler, event and 1-based position; empty and 0 without a failure). Steps without a trace
        are left out.

    Raises
    ------
    MissingColumnError
        The histories have no ``trace`` column (with the fix).
    ConfigError
        ``failure`` is not a list of statuses.

    Examples
    --------
    >>> h = pd.DataFrame({"entity": ["api", "pay", "api", "pay"], "time": [1, 2, 3, 4],
    ...                   "event": ["req", "order", "req", "order"], "status": ["ok", "error", "ok", "ok"],
    ...                   "trace": ["t1", "t1", "t2", "t2"]})
    >>> trace_paths(h, failure=["error"])[["trace", "handlers", "failed", "failed_handler", "failed_step"]]
      trace    handlers  failed failed_handler  failed_step
    0    t1  api > pay    True            pay            2
    1    t2  api > pay   False                           0
    """
    frame, codes, names, failed, _ = _trace_order(histories, failure, columns)
    event = frame["event"].astype(str) if "event" in frame else pd.Series("", index=frame.index)
    entity = frame["entity"].astype(str)
    label = entity + ":" + event + ":" + frame["status"].astype(str)
    n_tr = len(names)
    starts = np.searchsorted(codes, np.arange(n_tr))
    n_steps = np.diff(np.append(starts, len(codes)))
    pos = np.arange(len(codes)) - starts[codes]
    first = np.full(n_tr, -1, dtype=np.int64)
    hit = np.flatnonzero(failed)
    first_hit = hit[np.unique(codes[hit], return_index=True)[1]]  # the first failure of each failed trace
    first[codes[first_hit]] = first_hit
    any_failed = first >= 0
    idx = np.where(any_failed, first, 0)
    out = pd.DataFrame({
        "trace": pd.array(names, dtype="str"),
        "start": frame["time"].iloc[starts].reset_index(drop=True),
        "end": frame["time"].iloc[starts + n_steps - 1].reset_index(drop=True),
        "n_steps": n_steps.astype(np.int64),
        "handlers": _joined(entity.to_numpy(dtype=object), starts),
        "steps": _joined(label.to_numpy(dtype=object), starts),
        "failed": any_failed,
        "failed_handler": np.where(any_failed, entity.to_numpy()[idx], ""),
        "failed_event": np.where(any_failed, event.to_numpy()[idx], ""),
        "failed_step": np.where(any_failed, pos[idx] + 1, 0).astype(np.int64),
    })
    return out.sort_values(["start", "trace"], kind="stable").reset_index(drop=True)


def _joined(labels: np.ndarray, starts: np.ndarray, sep: str = " > ") -> np.ndarray:
    """The labels of each run (``starts`` of runs in order) joined by ``sep``: one ``np.add.reduceat`` over
    the labels, each but its run's last followed by ``sep``."""
    last = np.zeros(len(labels), dtype=bool)
    last[np.append(starts[1:], len(labels)) - 1] = True
    parts = np.where(last, labels, labels + sep)
    return np.add.reduceat(parts, starts)


def _wilson(k: np.ndarray, n: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a proportion k / n."""
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + level / 2))
    n = np.asarray(n, dtype=np.float64)
    p = np.asarray(k, dtype=np.float64) / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def _check_level(level: Any) -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ConfigError(f"level = {level!r} must be a probability in (0, 1), e.g. 0.95")
    return float(level)


def failure_paths(histories: Any, *, failure: Sequence[str], n: int = 2, min_support: int = 5,
                  with_status: bool = True, level: float = 0.95, columns: Any = None) -> pd.DataFrame:
    """Which handler paths and event n-grams precede failures more often than expected.

    A trace *fails* when one of its steps ends in a failure status. Two kinds of pattern are counted once per
    trace:

    - ``"path"``: the trace's whole route, its handlers in time order;
    - ``"ngram"``: 1 to ``n`` consecutive steps (tokens ``handler:event``, with ``:status`` when
      ``with_status``) among the steps *before* the trace's first failure (all its steps when it did not fail).

    For a pattern seen in ``support`` traces of which ``failures`` failed, ``p_fail = failures / support`` with
    its Wilson interval, and ``lift = p_fail / base_rate`` (the share of failed traces among all traces; its
    interval is the Wilson interval over the base rate, which is estimated from many more traces).

    Parameters
    ----------
    histories : DataFrame, path or list of paths
        Canonical histories with a ``trace`` column (see :func:`trace_paths`).
    failure : list of str
        The failure statuses.
    n : int, default=2
        The longest n-gram.
    min_support : int, default=5
        Patterns seen in fewer traces are left out.
    with_status : bool, default=True
        Tokens carry the step's status (``payment:order_placed:slow``), so that degraded steps before a
        failure show; without it, only the route (which, in a system whose routes never vary, predicts
        nothing).
    level : float, default=0.95
        The level of the intervals.
    columns : ColumnMap or mapping, optional
        Read ``histories`` with these columns first.

    Returns
    -------
    DataFrame
        One row per pattern: ``kind``, ``pattern``, ``length``, ``support``, ``failures``, ``p_fail``,
        ``p_lower``, ``p_upper``, ``lift``, ``lift_lower``, ``lift_upper``; sorted by ``lift_lower``, then
        ``support``, descending. ``attrs["base_rate"]`` and ``attrs["n_traces"]`` hold the base rate and the
        number of traces.

    Notes
    -----
    Steps after a trace's first failure never count, and a trace that fails early has fewer steps before its
    failure: patterns late in a route have a lift below 1 for that reason alone.

    Examples
    --------
    >>> h = pd.DataFrame({"entity": ["api", "pay"] * 3, "time": range(6),
    ...                   "event": ["req", "order"] * 3,
    ...                   "status": ["slow", "error", "ok", "ok", "slow", "ok"],
    ...                   "trace": ["a", "a", "b", "b", "c", "c"]})
    >>> out = failure_paths(h, failure=["error"], n=1, min_support=1)
    >>> out[["kind", "pattern", "support", "failures", "lift"]].round(2)
        kind         pattern  support  failures  lift
    0  ngram   api:req:slow        2         1   1.5
    1   path       api > pay        3         1   1.0
    2  ngram  pay:order:ok        2         0   0.0
    3  ngram     api:req:ok        1         0   0.0
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"n = {n!r} must be an integer >= 1: the longest n-gram")
    if isinstance(min_support, bool) or not isinstance(min_support, (int, np.integer)) or min_support < 1:
        raise ConfigError(f"min_support = {min_support!r} must be an integer >= 1")
    level = _check_level(level)
    needed = ("event",)
    frame, codes, _, failed, _ = _trace_order(histories, failure, columns, needed)
    n_tr = int(codes.max()) + 1
    starts = np.searchsorted(codes, np.arange(n_tr))
    trace_failed = np.zeros(n_tr, dtype=bool)
    trace_failed[codes[failed]] = True
    base = float(trace_failed.mean())
    rows = []

    # the whole route of each trace
    entity = frame["entity"].astype(str).to_numpy(dtype=object)
    r_codes, r_names = pd.factorize(_joined(entity, starts))
    support = np.bincount(r_codes, minlength=len(r_names))
    fails = np.bincount(r_codes, weights=trace_failed.astype(float), minlength=len(r_names))
    rows.append(pd.DataFrame({"kind": "path", "pattern": np.asarray(r_names, dtype=object),
                              "length": np.char.count(np.asarray(r_names, dtype=str), " > ") + 1,
                              "support": support, "failures": fails.astype(np.int64)}))

    # n-grams of the steps before the first failure (a step after a failure does not count)
    seen_failure = np.cumsum(failed) - np.concatenate([[0], np.cumsum(failed)])[starts][codes]
    before = seen_failure == 0
    tokens = entity + ":" + frame["event"].astype(str).to_numpy()
    if with_status:
        tokens = tokens + ":" + frame["status"].astype(str).to_numpy()
    tok, tok_names = pd.factorize(tokens)
    tok_names = np.asarray(tok_names, dtype=object)
    key = tok.astype(np.int64)  # the code of the n-gram starting at each step, relabelled at each length
    valid = before.copy()
    for length in range(1, n + 1):  # a loop over n-gram lengths
        if length > 1:
            nxt = np.arange(len(codes)) + length - 1
            ok = nxt < len(codes)
            nxt = np.minimum(nxt, len(codes) - 1)
            valid = valid & ok & (codes[nxt] == codes) & before[nxt]
            key = key * (len(tok_names) + 1) + tok[nxt]
            _, key = np.unique(key, return_inverse=True)  # keep the codes small
        at = np.flatnonzero(valid)
        if not len(at):
            break
        pair = np.unique(codes[at] * (int(key.max()) + 1) + key[at])  # (trace, n-gram) once per trace
        k_of, tr_of = pair % (int(key.max()) + 1), pair // (int(key.max()) + 1)
        used, inverse = np.unique(k_of, return_inverse=True)
        support = np.bincount(inverse, minlength=len(used))
        fails = np.bincount(inverse, weights=trace_failed[tr_of].astype(float), minlength=len(used))
        keep = support >= min_support
        first_at = at[np.unique(key[at], return_index=True)[1]]  # a step where each n-gram starts
        first_at = first_at[keep]
        labels = [" > ".join(tok_names[tok[i:i + length]]) for i in first_at]  # a loop over patterns kept
        rows.append(pd.DataFrame({"kind": "ngram", "pattern": np.asarray(labels, dtype=object),
                                  "length": length, "support": support[keep],
                                  "failures": fails[keep].astype(np.int64)}))
    out = pd.concat(rows, ignore_index=True)
    out = out[out["support"] >= min_support].reset_index(drop=True)
    out["p_fail"] = out["failures"] / out["support"]
    lo, hi = _wilson(out["failures"].to_numpy(), out["support"].to_numpy(), level)
    out["p_lower"], out["p_upper"] = lo, hi
    with np.errstate(divide="ignore", invalid="ignore"):
        out["lift"] = out["p_fail"] / base
        out["lift_lower"], out["lift_upper"] = lo / base, hi / base
    out = out.sort_values(["lift_lower", "support"], ascending=False, kind="stable").reset_index(drop=True)
    out.attrs["base_rate"] = base
    out.attrs["n_traces"] = n_tr
    return out


# ------------------------------------------------------------------ propagation
@dataclass
class PropagationResult:
    """What :func:`propagation_test` found.

    Attributes
    ----------
    table : DataFrame
        One row per ordered pair (``source`` A, ``target`` B): ``n`` (B's transitions), ``n_after`` (those
        whose next step came within the window after a failure of A), ``fail_after`` and ``fail_otherwise``
        (B's next-step failure rates with and without), ``g2``, ``df``, ``p_value``, ``p_boot``, ``odds_ratio``,
        ``or_lower``, ``or_upper`` (Mantel-Haenszel over B's states), ``q_value`` (Benjamini-Hochberg) and
        ``significant``.
    edges : DataFrame
        The significant pairs (``source``, ``target``, ``odds_ratio``, ``q_value``): the propagation graph.
    window : Any
        The window as given.
    alpha : float
        The false-discovery rate of the edges.
    bootstrap : int
        The number of replicates behind ``p_boot`` (0: none, the edges from ``p_value``).
    """

    table: pd.DataFrame
    edges: pd.DataFrame
    window: Any
    alpha: float
    bootstrap: int

    def graph(self) -> dict[str, list[str]]:
        """Each source's targets: the directed graph of the significant edges."""
        out: dict[str, list[str]] = {}
        for a, b in zip(self.edges["source"], self.edges["target"]):
            out.setdefault(str(a), []).append(str(b))
        return out

    def to_dict(self) -> dict:
        """A JSON-able summary: the settings and the edges."""
        return {"window": str(self.window), "alpha": self.alpha, "bootstrap": self.bootstrap,
                "n_pairs": int(len(self.table)),
                "edges": [{"source": str(a), "target": str(b), "odds_ratio": _num(o), "q_value": _num(q)}
                          for a, b, o, q in self.edges[["source", "target", "odds_ratio", "q_value"]]
                          .itertuples(index=False)]}

    def __repr__(self) -> str:
        shown = ", ".join(f"{a}->{b}" for a, b in zip(self.edges["source"], self.edges["target"]))
        return (f"PropagationResult({len(self.edges)} significant of {len(self.table)} pairs at FDR "
                f"{self.alpha:g}, window={self.window!r}: {shown or 'none'})")


def _num(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (NaN stays NaN)."""
    q = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if not len(ok):
        return q
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    adj = p[order] * m / np.arange(1, m + 1)
    q[order] = np.minimum(np.minimum.accumulate(adj[::-1])[::-1], 1.0)
    return q


def _mantel_haenszel(a, b, c, d, level: float):
    """The Mantel-Haenszel odds ratio over strata (last axis) and its Robins-Breslow-Greenland interval."""
    from scipy.stats import norm

    n = a + b + c + d
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(n > 0, 1.0 / n, 0.0)
        R, S = a * d * w, b * c * w
        P, Q = (a + d) * w, (b + c) * w
        sr, ss = R.sum(-1), S.sum(-1)
        odds = sr / ss
        var = ((P * R).sum(-1) / (2 * sr ** 2) + (P * S + Q * R).sum(-1) / (2 * sr * ss)
               + (Q * S).sum(-1) / (2 * ss ** 2))
        z = float(norm.ppf(0.5 + level / 2))
        half = z * np.sqrt(var)
        lo, hi = np.exp(np.log(odds) - half), np.exp(np.log(odds) + half)
    bad = ~((sr > 0) & (ss > 0))
    return odds, np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)


def _transitions(st: _Steps, window: int, own_history: bool):
    """B's transitions (from step n to n + 1 of one entity): their entity, stratum, outcome and the time of the
    next step, and the failure flags of every entity within the window before it, shape (n_entities, T)."""
    n_ent = len(st.names)
    nxt = np.arange(1, len(st.time))
    nxt = nxt[st.entity[nxt] == st.entity[nxt - 1]]
    prev = nxt - 1
    tau = st.time[nxt]
    ent = st.entity[nxt]
    y = st.failed[nxt]
    n_status = len(st.status_names)
    stratum = st.status[prev]
    flags = np.zeros((n_ent, len(nxt)), dtype=bool)
    own = np.zeros(len(nxt), dtype=np.int64)
    for k in range(n_ent):  # a loop over entities: each one's failure times, searched for every transition
        lo, hi = st.bounds[k], st.bounds[k + 1]
        f_times = st.time[lo:hi][st.failed[lo:hi]]
        a = np.searchsorted(f_times, tau - window, side="right")
        b = np.searchsorted(f_times, tau, side="left")
        flags[k] = b > a
        mine = ent == k
        own[mine] = (b - a)[mine]
    if own_history:  # B's own failures within the window: 0, 1, 2-3, 4-7, 8 or more
        n_bins = len(OWN_BINS) + 1
        stratum = stratum * n_bins + np.searchsorted(OWN_BINS, own, side="right")
        n_status *= n_bins
    return ent, stratum.astype(np.int64), y, flags, n_status


def propagation_test(histories: Any, *, failure: Sequence[str], window: Any = "60s", own_history: bool = True,
                     orient: bool = True, bootstrap: int | None = 0, alpha: float = 0.05, level: float = 0.95,
                     random_state: Any = None, columns: Any = None) -> PropagationResult:
    """Does handler B's next-step failure probability, given B's own state, rise after handler A fails?

    For every step of B that follows another step of B (a transition from B's state at step n to its status at
    step n + 1), the outcome is whether step n + 1 ends in a failure, the stratum is B's state at step n (its
    status, and with ``own_history`` how often B itself failed within ``window`` before step n + 1), and the
    exposure is whether A had a failure step within ``window`` before step n + 1. Per ordered pair (A, B) the
    test is G² of exposure x outcome summed over B's strata (each stratum over its observed cells, df summed),
    with the asymptotic chi-square p-value and, with ``bootstrap=B``, a parametric-bootstrap p-value:
    outcomes simulated under the null P(fail | B's stratum), every stratum and exposure kept as observed,
    ``p_boot = (1 + #{G²_b >= G²}) / (1 + B)``. The effect is the Mantel-Haenszel odds ratio over B's strata
    with its Robins-Breslow-Greenland interval. Benjamini-Hochberg over all pairs (on ``p_boot`` with a
    bootstrap, else on ``p_value``) at ``alpha`` gives the edges A -> B whose odds ratio is above 1.

    Parameters
    ----------
    histories : DataFrame, path or list of paths
        Canonical histories (``entity``, ``time``, ``status``); no trace is needed.
    failure : list of str
        The failure statuses.
    window : duration or int, default="60s"
        How long after a failure of A counts as "A recently failed" (an integer for sequence times).
    own_history : bool, default=True
        Stratify by B's own failures within the window too (0, 1, 2-3, 4-7, 8 or more: :data:`OWN_BINS`).
        Without it, a root cause's failures during its episode look "caused" by its descendants' failures
        (which only mark that the episode is on); with it, that signal is mostly absorbed by B's own history.
    orient : bool, default=True
        When A -> B and B -> A are both significant, keep only the one with the larger odds ratio as an edge
        (both stay in the table with their tests). A downstream handler's failures also mark that its
        upstream's episode is on, so reverse edges come out significant with data enough; the true direction
        has the larger effect. Set it to False where handlers truly feed back on each other.
    bootstrap : int, default=0
        Parametric-bootstrap replicates (e.g. 199); 0 or None for asymptotic p-values only.
    alpha : float, default=0.05
        The false-discovery rate of the edges.
    level : float, default=0.95
        The level of the odds ratios' intervals.
    random_state : int or numpy Generator, optional
        The seed of the bootstrap.
    columns : ColumnMap or mapping, optional
        Read ``histories`` with these columns first.

    Returns
    -------
    PropagationResult

    Raises
    ------
    ConfigError
        A bad ``window``, ``bootstrap``, ``alpha`` or ``failure``.
    MissingColumnError
        A column is missing.

    Notes
    -----
    The test is of pairs, given B's state only: a failure that reaches C through B raises C's failure
    probability after A fails too (A -> C is then an edge, and truly so: A's failure does raise it), and two
    handlers with a common upstream can look linked. Vectorised over pairs: one boolean failure-flag matrix
    (entities x transitions, a byte per cell) and, for the bootstrap, one matrix product per (B, stratum) over
    blocks of replicates.

    Examples
    --------
    >>> from markovfault.simulate import simulate_call_graph
    >>> sim = simulate_call_graph(12, rate=0.1, random_state=0)
    >>> result = propagation_test(sim.histories, failure=["error", "down"], window="60s")
    >>> ("payment", "shipping") in set(zip(result.edges["source"], result.edges["target"]))
    True
    >>> list(result.table.columns[:6])
    ['source', 'target', 'n', 'n_after', 'fail_after', 'fail_otherwise']
    """
    n_rep = _check_bootstrap(bootstrap)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ConfigError(f"alpha = {alpha!r} must be a false-discovery rate in (0, 1), e.g. 0.05")
    level = _check_level(level)
    st = _steps(histories, failure, columns)
    w = _duration(window, st.kind, "window")
    ent, stratum, y, flags, n_strata = _transitions(st, w, own_history)
    n_ent = len(st.names)
    group = ent * n_strata + stratum
    G = n_ent * n_strata
    order = np.argsort(group, kind="stable")
    group, y, flags = group[order], y[order], flags[:, order]
    bounds = np.searchsorted(group, np.arange(G + 1))
    n_g = np.diff(bounds).astype(np.float64)
    yf = y.astype(np.float64)
    used = np.flatnonzero(n_g > 0)
    x_g = np.zeros((n_ent, G))                                  # (A, G): exposed transitions
    xy_g = np.zeros((n_ent, G))                                 # (A, G): exposed and failed
    y_g = np.zeros(G)                                           # (G,): failed
    if len(used):  # sums over the (non-empty) groups of the sorted transitions
        at = bounds[used]
        x_g[:, used] = np.add.reduceat(flags.view(np.uint8), at, axis=1, dtype=np.int64)
        xy_g[:, used] = np.add.reduceat((flags & y).view(np.uint8), at, axis=1, dtype=np.int64)
        y_g[used] = np.add.reduceat(yf, at)

    def stat(xy, yy):  # xy (A, G, ...), yy (G, ...) -> G² (A, B, ...) and df
        a = xy
        b = x_g.reshape(x_g.shape + (1,) * (xy.ndim - 2)) - a
        c = yy[None] - a
        d = n_g.reshape((1, G) + (1,) * (xy.ndim - 2)) - x_g.reshape(x_g.shape + (1,) * (xy.ndim - 2)) - yy[None] + a
        tables = np.stack([np.stack([d, c], -1), np.stack([b, a], -1)], -2)   # rows: exposed; columns: failed
        out = g2_tables(tables)
        shape = (n_ent, n_ent, n_strata) + xy.shape[2:]
        return out["g2"].reshape(shape).sum(axis=2), out["df"].reshape(shape).sum(axis=2), (a, b, c, d)

    g2, df, (a, b, c, d) = stat(xy_g, y_g)
    from scipy.stats import chi2

    p_value = np.where(df > 0, chi2.sf(g2, np.maximum(df, 1)), np.nan)
    p_boot = np.full(g2.shape, np.nan)
    if n_rep:
        rng = rng_of(random_state)
        p_null = np.where(n_g > 0, y_g / np.maximum(n_g, 1), 0.0)
        exceed = np.zeros(g2.shape)
        block = max(1, min(n_rep, int(2e7 // max(len(y), 1))))
        for r0 in range(0, n_rep, block):  # blocks of replicates (bounded memory)
            r = min(block, n_rep - r0)
            sim = (rng.random((len(y), r)) < p_null[group][:, None]).astype(np.float64)
            xy_b = np.zeros((n_ent, G, r))
            y_b = np.zeros((G, r))
            for g in used:  # a loop over (B, stratum) cells: one matrix product each
                lo, hi = bounds[g], bounds[g + 1]
                xy_b[:, g] = flags[:, lo:hi].astype(np.float64) @ sim[lo:hi]
                y_b[g] = sim[lo:hi].sum(axis=0)
            g2_b, _, _ = stat(xy_b, y_b)
            tol = 1e-9 * (1.0 + np.abs(g2))
            exceed += (g2_b >= (g2 - tol)[..., None]).sum(axis=-1)
        p_boot = np.where(df > 0, (1.0 + exceed) / (1.0 + n_rep), np.nan)

    shape = (n_ent, n_ent, n_strata)
    odds, lo_or, hi_or = _mantel_haenszel(*(m.reshape(shape) for m in (a, b, c, d)), level)
    exposed = x_g.reshape(shape).sum(-1)
    n_b = np.broadcast_to(n_g.reshape(n_ent, n_strata).sum(-1)[None, :], (n_ent, n_ent))
    fail_exp = xy_g.reshape(shape).sum(-1)
    fail_all = np.broadcast_to(y_g.reshape(n_ent, n_strata).sum(-1)[None, :], (n_ent, n_ent))
    src, tgt = np.nonzero(~np.eye(n_ent, dtype=bool))
    with np.errstate(divide="ignore", invalid="ignore"):
        table = pd.DataFrame({
            "source": pd.array(st.names[src], dtype="str"), "target": pd.array(st.names[tgt], dtype="str"),
            "n": n_b[src, tgt].astype(np.int64), "n_after": exposed[src, tgt].astype(np.int64),
            "fail_after": fail_exp[src, tgt] / exposed[src, tgt],
            "fail_otherwise": (fail_all - fail_exp)[src, tgt] / (n_b - exposed)[src, tgt],
            "g2": g2[src, tgt], "df": df[src, tgt].astype(np.int64), "p_value": p_value[src, tgt],
            "p_boot": p_boot[src, tgt], "odds_ratio": odds[src, tgt], "or_lower": lo_or[src, tgt],
            "or_upper": hi_or[src, tgt]})
    table["q_value"] = _bh((table["p_boot"] if n_rep else table["p_value"]).to_numpy())
    significant = ((table["q_value"] <= alpha) & (table["odds_ratio"] > 1)).to_numpy().copy()
    if orient:  # of two opposite significant edges keep the one with the larger odds ratio
        sig = np.zeros((n_ent, n_ent), dtype=bool)
        sig[src, tgt] = significant
        strength = np.full((n_ent, n_ent), -np.inf)
        with np.errstate(divide="ignore"):
            strength[src, tgt] = np.log(np.where(np.isfinite(table["odds_ratio"]), table["odds_ratio"], 1e300))
        weaker = sig & sig.T & (strength < strength.T)
        significant &= ~weaker[src, tgt]
    table["significant"] = significant
    edges = table.loc[table["significant"], ["source", "target", "odds_ratio", "q_value"]]
    edges = edges.sort_values(["q_value", "odds_ratio"], ascending=[True, False]).reset_index(drop=True)
    logger.info("propagation_test: %d of %d pairs significant (window %s)", len(edges), len(table), window)
    return PropagationResult(table=table, edges=edges, window=window, alpha=float(alpha), bootstrap=n_rep)


def _check_bootstrap(bootstrap: Any) -> int:
    if bootstrap is None:
        return 0
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, (int, np.integer)) or bootstrap < 0:
        raise ConfigError(f"bootstrap = {bootstrap!r} must be an integer >= 0: the number of simulated "
                          "replicates (0 or None: asymptotic p-values only), e.g. bootstrap=199")
    return int(bootstrap)


# ------------------------------------------------------------------ root causes
def _edge_frame(propagation: Any) -> pd.DataFrame:
    if propagation is None:
        return pd.DataFrame({"source": [], "target": [], "odds_ratio": []})
    edges = propagation.edges if isinstance(propagation, PropagationResult) else propagation
    if not isinstance(edges, pd.DataFrame) or not {"source", "target"} <= set(edges.columns):
        raise ConfigError("propagation must be a PropagationResult or a DataFrame of edges with 'source' and "
                          f"'target' columns, got {type(propagation).__name__}")
    if "odds_ratio" not in edges:
        edges = edges.assign(odds_ratio=np.e)
    return edges


def rank_root_causes(histories: Any, episode_start: Any, episode_end: Any, *, failure: Sequence[str],
                     propagation: Any = "auto", window: Any = "60s", before: Any = "1h", onset_failures: int = 2,
                     damping: float = 0.85, columns: Any = None) -> pd.DataFrame:
    """Rank the likely root causes (handlers, and shared dependencies that appear as entities) of a failure
    episode.

    Three things point at a root cause: its failures rose in the episode (``anomaly``: the binomial
    log-likelihood ratio of its failure rate in ``[episode_start, episode_end)`` against the ``before``
    window, 0 when it did not rise), they began early (``onset``: the first failure followed by
    ``onset_failures - 1`` more within ``window``; ``earliness = exp(-(onset - first onset) / window)``), and
    the others' failures propagate from it. The score is a personalised PageRank on the *reversed* propagation
    graph: a walker starts at a handler drawn in proportion to ``anomaly x earliness``, and at each step moves
    with probability ``damping`` from a handler to one that propagates failures to it (weighted by the edge's
    log odds ratio and the upstream handler's own ``anomaly x earliness``, so that it never walks to a healthy
    or a late one), or restarts. A handler with no anomalous upstream keeps the walker (a self-loop), so the
    mass collects where the propagation starts.

    Why this and not onset alone: a root cause's own failures may begin a little after a child's (a fresh
    draw of a sticky chain, a quiet moment of traffic), and the earliest failing handler of a cascade is
    often a child of the true root that happened to fail first; the graph then hands its mass upstream.
    ``benchmarks/localization.py`` measures both, and the robust z-score baseline, on the same episodes.

    Parameters
    ----------
    histories : DataFrame, path or list of paths
        Canonical histories (``entity``, ``time``, ``status``).
    episode_start, episode_end : timestamp, str or int
        The anomaly window (integers for sequence times).
    failure : list of str
        The failure statuses.
    propagation : PropagationResult, DataFrame of edges, "auto" or None, default="auto"
        The propagation graph: ``"auto"`` runs :func:`propagation_test` on the histories before the episode
        (asymptotic p-values); None ranks by ``anomaly x earliness`` alone.
    window : duration or int, default="60s"
        The onset's window and the earliness' scale (and the window of the ``"auto"`` propagation test).
    before : duration or int, default="1h"
        The normal window before the episode.
    onset_failures : int, default=2
        Failures within ``window`` that mark an onset.
    damping : float, default=0.85
        The probability of following an edge rather than restarting.
    columns : ColumnMap or mapping, optional
        Read ``histories`` with these columns first.

    Returns
    -------
    DataFrame
        One row per entity, best first: ``entity``, ``rank`` (1 is the likeliest root cause), ``score``,
        ``onset``, ``failures``, ``steps``, ``fail_rate``, ``fail_rate_before``, ``anomaly``, ``earliness``.

    Examples
    --------
    >>> from markovfault.simulate import simulate_call_graph
    >>> sim = simulate_call_graph(12, rate=0.1, random_state=0)
    >>> graph = propagation_test(sim.histories, failure=sim.failure)
    >>> ep = sim.episodes.iloc[-1]
    >>> ranked = rank_root_causes(sim.histories, ep.start, ep.end, failure=sim.failure, propagation=graph)
    >>> ranked.loc[0, "entity"] == ep.root_cause
    True
    """
    if isinstance(onset_failures, bool) or not isinstance(onset_failures, (int, np.integer)) or onset_failures < 1:
        raise ConfigError(f"onset_failures = {onset_failures!r} must be an integer >= 1")
    if not isinstance(damping, (int, float)) or not 0 <= damping < 1:
        raise ConfigError(f"damping = {damping!r} must be in [0, 1), e.g. 0.85")
    st = _steps(histories, failure, columns)
    lo, hi = _episode_times(episode_start, episode_end, st.kind)
    w = _duration(window, st.kind, "window")
    pre = _duration(before, st.kind, "before")
    if isinstance(propagation, str):
        if propagation != "auto":
            raise ConfigError(f"propagation = {propagation!r}: give 'auto', None, a PropagationResult or edges")
        prior = st.time < lo
        if prior.sum() < 2:
            raise HistoryError("propagation='auto' needs histories before episode_start to learn the "
                               "propagation graph from; pass propagation=None or a PropagationResult")
        propagation = propagation_test(st.frame.loc[prior], failure=failure, window=window)
    edges = _edge_frame(propagation)
    n_ent = len(st.names)
    ent, t, f = st.entity, st.time, st.failed
    in_ep = (t >= lo) & (t < hi)
    in_pre = (t >= lo - pre) & (t < lo)
    n1 = np.bincount(ent[in_ep], minlength=n_ent).astype(float)
    f1 = np.bincount(ent[in_ep & f], minlength=n_ent).astype(float)
    n0 = np.bincount(ent[in_pre], minlength=n_ent).astype(float)
    f0 = np.bincount(ent[in_pre & f], minlength=n_ent).astype(float)
    p1 = f1 / np.maximum(n1, 1)
    p0 = (f0 + 0.5) / (n0 + 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = (np.where(f1 > 0, f1 * np.log(p1 / p0), 0.0)
              + np.where(n1 - f1 > 0, (n1 - f1) * np.log((1 - p1) / (1 - p0)), 0.0))
    anomaly = np.where(p1 > p0, np.maximum(kl, 0.0), 0.0)

    # onsets: the first failure in the episode followed by onset_failures - 1 more within the window
    onset = np.full(n_ent, np.nan)
    fail_idx = np.flatnonzero(in_ep & f)
    fe, ft = ent[fail_idx], t[fail_idx]
    m = onset_failures - 1
    if len(fe):
        j = np.arange(len(fe))
        later = np.minimum(j + m, len(fe) - 1)
        sustained = (fe[later] == fe) & (ft[later] - ft <= w) & (j + m < len(fe))
        cand = np.flatnonzero(sustained)
        first = cand[np.unique(fe[cand], return_index=True)[1]]
        onset[fe[first]] = ft[first]
    has_onset = np.isfinite(onset)
    earliness = np.zeros(n_ent)
    if has_onset.any():
        earliness[has_onset] = np.exp(-(onset[has_onset] - np.nanmin(onset)) / w)
    seed = anomaly * earliness
    if seed.sum() <= 0:
        seed = anomaly if anomaly.sum() > 0 else np.ones(n_ent)
    v = seed / seed.sum()

    # the reversed propagation graph: from B to each A with A -> B, weighted by log OR and A's seed
    code = {name: k for k, name in enumerate(st.names)}
    W = np.zeros((n_ent, n_ent))
    for (a_name, b_name, o) in edges[["source", "target", "odds_ratio"]].itertuples(index=False):
        a_k, b_k = code.get(str(a_name)), code.get(str(b_name))
        if a_k is not None and b_k is not None and a_k != b_k:
            W[b_k, a_k] = max(float(np.log(o)) if np.isfinite(o) and o > 0 else 1.0, 1e-3)
    W = W * v[None, :] + np.diag(v)  # to an upstream handler by its seed and the edge; to stay, by one's own
    out_w = W.sum(axis=1)
    P = np.where(out_w[:, None] > 0, W / np.where(out_w > 0, out_w, 1.0)[:, None], np.eye(n_ent))
    score = v.copy()
    for _ in range(200):  # power iteration of the personalised PageRank
        new = (1 - damping) * v + damping * (score @ P)
        if np.abs(new - score).sum() < 1e-12:
            score = new
            break
        score = new
    times = pd.to_datetime(onset, utc=True) if st.kind == "datetime" else onset
    out = pd.DataFrame({"entity": pd.array(st.names, dtype="str"), "score": score, "onset": times,
                        "failures": f1.astype(np.int64), "steps": n1.astype(np.int64), "fail_rate": p1,
                        "fail_rate_before": f0 / np.maximum(n0, 1), "anomaly": anomaly, "earliness": earliness})
    out = out.sort_values(["score", "anomaly"], ascending=False, kind="stable").reset_index(drop=True)
    out.insert(1, "rank", np.arange(1, len(out) + 1))
    return out


def robust_zscore_ranking(histories: Any, episode_start: Any, episode_end: Any, *, metric: str = "latency_ms",
                          failure: Sequence[str] | None = None, before: Any = "1h", bucket: Any = "1min",
                          columns: Any = None) -> pd.DataFrame:
    """The BARO baseline: per handler, the largest robust z-score of a metric over the anomaly window.

    The metric is averaged per handler in time buckets of width ``bucket``; each handler's buckets in the
    normal window ``[episode_start - before, episode_start)`` give its median and interquartile range (an IQR
    of 0 counts as 1, as scikit-learn's ``RobustScaler`` does), and its score is the largest
    ``(x - median) / IQR`` over its buckets in ``[episode_start, episode_end)``.

    Parameters
    ----------
    histories : DataFrame, path or list of paths
        Canonical histories with the metric column.
    episode_start, episode_end : timestamp, str or int
        The anomaly window.
    metric : str, default="latency_ms"
        A numeric column, or ``"failure"`` for the failure indicator (each bucket's failure rate; needs
        ``failure``).
    failure : list of str, optional
        The failure statuses (for ``metric="failure"``).
    before : duration or int, default="1h"
        The normal window.
    bucket : duration or int, default="1min"
        The width of the time buckets.
    columns : ColumnMap or mapping, optional
        Read ``histories`` with these columns first.

    Returns
    -------
    DataFrame
        One row per entity, best first: ``entity``, ``rank``, ``score`` (NaN, ranked last, for a handler
        without a step in either window), ``median``, ``iqr``.

    Examples
    --------
    >>> h = pd.DataFrame({"entity": ["a"] * 4 + ["b"] * 4, "time": [0, 1, 2, 3] * 2, "status": "ok",
    ...                   "latency_ms": [10., 12., 11., 30., 5., 6., 5., 8.]})
    >>> robust_zscore_ranking(h, 2, 4, before=2, bucket=1)[["entity", "rank", "score"]]
      entity  rank  score
    0      a     1   19.0
    1      b     2    5.0
    """
    if not isinstance(metric, str) or not metric:
        raise ConfigError(f"metric = {metric!r} must be a column name or 'failure'")
    if metric == "failure":
        st = _steps(histories, failure, columns)
        values = st.failed.astype(np.float64)
    else:
        st = _steps(histories, failure, columns, needed=(metric,))
        values = pd.to_numeric(st.frame[metric], errors="coerce").to_numpy(dtype=np.float64)
    lo, hi = _episode_times(episode_start, episode_end, st.kind)
    width = _duration(bucket, st.kind, "bucket")
    pre = _duration(before, st.kind, "before")
    n_ent = len(st.names)
    n_pre = -(-pre // width)
    n_ep = -(-(hi - lo) // width)
    t = st.time
    keep = (t >= lo - n_pre * width) & (t < hi) & np.isfinite(values)
    bins = (t[keep] - lo) // width + n_pre  # bucket 0 .. n_pre + n_ep - 1
    n_bins = n_pre + n_ep
    key = st.entity[keep] * n_bins + bins
    sums = np.bincount(key, weights=values[keep], minlength=n_ent * n_bins).reshape(n_ent, n_bins)
    counts = np.bincount(key, minlength=n_ent * n_bins).reshape(n_ent, n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        grid = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    normal, anomal = grid[:, :n_pre], grid[:, n_pre:]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a handler without buckets: NaN
        q25, med, q75 = np.nanpercentile(normal, [25, 50, 75], axis=1)
        iqr = q75 - q25
        scale = np.where(iqr > 0, iqr, 1.0)
        score = np.nanmax((anomal - med[:, None]) / scale[:, None], axis=1)
    out = pd.DataFrame({"entity": pd.array(st.names, dtype="str"), "score": score, "median": med, "iqr": iqr})
    out = out.sort_values("score", ascending=False, na_position="last", kind="stable").reset_index(drop=True)
    out.insert(1, "rank", np.arange(1, len(out) + 1))
    return out


def root_cause_accuracy(rankings: pd.DataFrame, truth: Any, k: int = 5) -> pd.Series:
    """AC@1..AC@k and Avg@k of root-cause rankings against the known root causes.

    AC@j is the share of episodes whose root cause is among the first j of the ranking; Avg@k is the mean of
    AC@1..AC@k (the convention of RCAEval and PyRCA).

    Parameters
    ----------
    rankings : DataFrame
        Columns ``episode``, ``entity`` and ``rank`` (1 is first), one row per ranked entity.
    truth : mapping or Series
        The root cause of each episode.
    k : int, default=5

    Returns
    -------
    Series
        ``AC@1`` .. ``AC@k``, ``Avg@k`` and ``n_episodes``.

    Examples
    --------
    >>> r = pd.DataFrame({"episode": [0, 0, 1, 1], "entity": ["a", "b", "a", "b"], "rank": [1, 2, 1, 2]})
    >>> root_cause_accuracy(r, {0: "a", 1: "b"}, k=2).tolist()
    [0.5, 1.0, 0.75, 2.0]
    """
    truth = pd.Series(truth)
    hit = rankings.assign(root=rankings["episode"].map(truth))
    hit = hit[hit["entity"].astype(str) == hit["root"].astype(str)].groupby("episode")["rank"].min()
    rank_of = hit.reindex(truth.index).to_numpy(dtype=float)  # NaN: the root cause was not ranked
    out = {f"AC@{j}": float(np.mean(rank_of <= j)) for j in range(1, k + 1)}
    out[f"Avg@{k}"] = float(np.mean(list(out.values())))
    out["n_episodes"] = float(len(truth))
    return pd.Series(out)


# ------------------------------------------------------------------ report
@dataclass
class LocalizationReport:
    """Fault localization of failure episodes: the propagation graph and each episode's ranking.

    Attributes
    ----------
    propagation : PropagationResult
        The propagation test of the histories.
    episodes : DataFrame
        ``episode``, ``start``, ``end`` of each episode ranked.
    rankings : DataFrame
        Long: ``episode``, ``method`` (``"propagation"`` or ``"robust_zscore"``), ``entity``, ``rank``,
        ``score``.
    top : int
        How many entities per episode the text shows.
    """

    propagation: PropagationResult
    episodes: pd.DataFrame
    rankings: pd.DataFrame
    top: int = 5
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """A JSON-able dict: settings, the propagation edges and each episode's top entities per method."""
        eps = []
        for ep in self.episodes.itertuples(index=False):
            rows = self.rankings[self.rankings["episode"] == ep.episode]
            eps.append({"episode": _jsonable(ep.episode), "start": str(ep.start), "end": str(ep.end),
                        "rankings": {m: [{"entity": str(e), "rank": int(r), "score": _num(s)}
                                         for e, r, s in g.nsmallest(self.top, "rank")[["entity", "rank", "score"]]
                                         .itertuples(index=False)]
                                     for m, g in rows.groupby("method", sort=True)}})
        return {"settings": {k: _jsonable(v) for k, v in self.settings.items()},
                "propagation": self.propagation.to_dict(), "episodes": eps}

    def to_text(self) -> str:
        """A readable report: the propagation edges, then each episode's likeliest root causes."""
        lines = [f"Propagation graph (window {self.propagation.window}, FDR {self.propagation.alpha:g}): "
                 f"{len(self.propagation.edges)} edges"]
        for e in self.propagation.edges.itertuples(index=False):
            lines.append(f"  {e.source} -> {e.target}  odds ratio {e.odds_ratio:.2f}  q {e.q_value:.2g}")
        for ep in self.episodes.itertuples(index=False):
            lines.append(f"Episode {ep.episode}: {ep.start} .. {ep.end}")
            rows = self.rankings[self.rankings["episode"] == ep.episode]
            for m, g in rows.groupby("method", sort=True):
                best = g.nsmallest(self.top, "rank")
                lines.append(f"  {m:<14}" + "  ".join(f"{r}. {e} ({s:.3g})" for e, r, s in
                                                      best[["entity", "rank", "score"]].itertuples(index=False)))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"LocalizationReport({len(self.episodes)} episodes, {len(self.propagation.edges)} propagation "
                f"edges, methods {sorted(self.rankings['method'].unique())})")


def _jsonable(x: Any) -> Any:
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return _num(x)
    if isinstance(x, (str, int, bool)) or x is None:
        return x
    return str(x)


def model_states(model: Any, histories: Any) -> tuple[pd.DataFrame, list]:
    """The histories as a fitted predictor sees them: read with its columns, each step's ``status`` replaced
    by the name of the state its extractor gives it (so metric-based states localize too), and the model's
    failure states."""
    from ..predictor._settings import read_input

    frame, _ = read_input(histories, model.columns, categorical=False)
    names = np.asarray(model.states_.state_names_, dtype=object)
    states = names[np.asarray(model.states_.transform(frame), dtype=np.int64)]
    base = model.chain_.base_
    failure = [n for n, f in zip(base.state_names_, base.is_failure_) if f]
    return frame.assign(status=states), failure


def localize(histories: Any, episodes: Any, *, failure: Sequence[str] | None = None, window: Any = "60s",
             bootstrap: int | None = 0, metric: str | None = "latency_ms", before: Any = "1h",
             bucket: Any = "1min", random_state: Any = None, top: int = 5, columns: Any = None,
             model: Any = None) -> LocalizationReport:
    """Localize the root causes of failure episodes: the propagation test once, then every episode ranked by
    :func:`rank_root_causes` and, when the metric is there, by the :func:`robust_zscore_ranking` baseline.

    Parameters
    ----------
    histories : DataFrame, path or list of paths
        Canonical histories.
    episodes : DataFrame or list of (start, end)
        The anomaly windows: a frame with ``start`` and ``end`` (and optionally ``episode``) columns.
    failure : list of str
        The failure statuses.
    window, bootstrap, random_state
        Of :func:`propagation_test` (run on all the histories given).
    metric : str or None, default="latency_ms"
        The baseline's metric (None: no baseline; a column that is absent: no baseline either, logged).
    before, bucket
        The normal window and buckets of the rankings.
    top : int, default=5
        Entities per episode and method in the text.
    columns : ColumnMap or mapping, optional
        Read ``histories`` with these columns first.
    model : FaultPredictor, optional
        A fitted predictor: the histories are read with its columns and each step's status is the state its
        extractor gives (:func:`model_states`); ``failure`` defaults to its failure states.

    Returns
    -------
    LocalizationReport

    Examples
    --------
    >>> from markovfault.simulate import simulate_call_graph
    >>> sim = simulate_call_graph(6, rate=0.1, random_state=0)
    >>> report = localize(sim.histories, sim.episodes.tail(2), failure=sim.failure, top=3)
    >>> report  # doctest: +ELLIPSIS
    LocalizationReport(2 episodes, ... propagation edges, methods ['propagation', 'robust_zscore'])
    >>> sorted(report.to_dict())
    ['episodes', 'propagation', 'settings']
    """
    if model is not None:
        histories, states_failure = model_states(model, histories)
        failure = states_failure if failure is None else failure
    if failure is None:
        raise ConfigError("say which statuses are failures: failure=[...] (or give model=)")
    frame = _frame_of(histories, columns, ("entity", "time", "status"))
    if isinstance(episodes, pd.DataFrame):
        if not {"start", "end"} <= set(episodes.columns):
            raise ConfigError(f"episodes need 'start' and 'end' columns, got {list(episodes.columns)}")
        eps = episodes.reset_index(drop=True)
        if "episode" not in eps:
            eps = eps.assign(episode=np.arange(len(eps)))
        eps = eps[["episode", "start", "end"]]
    else:
        pairs = list(episodes)
        if not pairs or not all(isinstance(p, (tuple, list)) and len(p) == 2 for p in pairs):
            raise ConfigError("episodes must be a DataFrame with 'start' and 'end' or a list of (start, end)")
        eps = pd.DataFrame({"episode": np.arange(len(pairs)), "start": [p[0] for p in pairs],
                            "end": [p[1] for p in pairs]})
    propagation = propagation_test(frame, failure=failure, window=window, bootstrap=bootstrap,
                                   random_state=random_state)
    use_metric = metric is not None and (metric == "failure" or metric in frame.columns)
    if metric is not None and not use_metric:
        logger.info("localize: no %r column, so no robust z-score baseline", metric)
    parts = []
    kind, t = time_kind_of(frame["time"]), time_int(frame)
    reach = _duration(before, kind, "before") + (_duration(bucket, kind, "bucket") if use_metric else 0)
    for ep in eps.itertuples(index=False):  # a loop over episodes, each on the rows near it
        lo, hi = _episode_times(ep.start, ep.end, kind)
        near = frame.loc[(t >= lo - reach) & (t < hi)]
        if len(near) == 0:
            raise HistoryError(f"episode {ep.episode} ({ep.start} .. {ep.end}) holds no step of the histories")
        ranked = rank_root_causes(near, ep.start, ep.end, failure=failure, propagation=propagation,
                                  window=window, before=before)
        parts.append(ranked[["entity", "rank", "score"]].assign(episode=ep.episode, method="propagation"))
        if use_metric:
            base = robust_zscore_ranking(near, ep.start, ep.end, metric=metric, failure=failure,
                                         before=before, bucket=bucket)
            parts.append(base[["entity", "rank", "score"]].assign(episode=ep.episode, method="robust_zscore"))
    rankings = pd.concat(parts, ignore_index=True)[["episode", "method", "entity", "rank", "score"]]
    settings = {"failure": ",".join(_check_failure(failure)), "window": str(window), "bootstrap": int(bootstrap or 0),
                "metric": metric, "before": str(before), "bucket": str(bucket)}
    return LocalizationReport(propagation=propagation, episodes=eps, rankings=rankings, top=top, settings=settings)
