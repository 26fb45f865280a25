"""Rolling-origin backtests: how far can the failure probabilities be trusted?

At each cutoff ``c`` the model is fitted on what happened before ``c`` only
(all of it, or a sliding window), forecasts P(fail within h) for every
entity from its state at ``c`` (or from every step until the next cutoff),
and is scored against what happened next, side by side with baselines on the
same origins.

Counts are additive, so the folds cost one counting pass: every transition is
labelled with the time slice it arrives in, the slices are counted at once,
and a cumulative sum gives the counts before each cutoff.

Outcomes, for an origin at step ``o`` and horizon ``h``: ``y = 1`` if any of
the next ``h`` steps of the entity is a failure; ``y = 0`` if ``h`` steps
were observed and none failed; *censored* (excluded and counted) otherwise.
Base rates and baseline training labels use only origins whose whole
``h``-step window lies before the cutoff.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from . import _metrics
from ._constants import BASELINES, MODEL
from ._baselines import GradientBoostingBaseline
from ._history import HistoryChain, _Layout, augment, count_augmented
from .chain import EventMarkovChain
from .counts import count_codes_by_bin
from .exceptions import ConfigError, HistoryError, UnknownStatusError
from .forecast import _check_horizon
from .trajectories import Trajectories

__all__ = ["backtest", "BacktestResult", "BASELINES", "GradientBoostingBaseline"]

logger = logging.getLogger("markovfault.backtest")

#: The baselines that ``backtest`` knows by name.


# --------------------------------------------------------------------- result
@dataclass
class BacktestResult:
    """What a backtest measured.

    Attributes
    ----------
    metrics : DataFrame
        One row per (fold, horizon, model), plus pooled rows with
        ``fold == "all"``: n, n_pos, base_rate, brier, log_loss, roc_auc,
        average_precision, bss, ece, precision, recall, f1, n_failures,
        n_caught, mean_lead_time, and ``note`` (why a metric is NaN).
    predictions : DataFrame
        One row per scored forecast: fold, cutoff, entity, origin_time, the
        origin's state, horizon, model, p, y (and the bookkeeping columns
        entity_code, origin_step, steps_to_failure, base_rate).
    folds : DataFrame
        One row per (fold, horizon): cutoff, n_train_transitions,
        train_base_rate, n_origins, n_scored, n_censored.
    params : dict
        The settings of the run.
    """

    metrics: pd.DataFrame
    predictions: pd.DataFrame
    folds: pd.DataFrame
    params: dict = field(default_factory=dict)

    @property
    def models(self) -> list:
        return list(dict.fromkeys(self.metrics["model"]))

    def summary(self) -> pd.DataFrame:
        """Pooled metrics, one row per (model, horizon).

        Examples
        --------
        >>> from markovfault.simulate import simulate_histories
        >>> from markovfault import FaultPredictor
        >>> hist = simulate_histories(8, 150, random_state=0, with_metrics=False)
        >>> model = FaultPredictor(states={"failure": ["error", "timeout", "down"]},
        ...     columns={"entity": "handler", "time": "timestamp", "event": "event_type"})
        >>> result = backtest(hist, model, horizon=3, cutoffs=3, baselines=["climatology"])
        >>> result.summary()[["model", "horizon"]].drop_duplicates().shape
        (6, 2)
        """
        pooled = self.metrics[self.metrics["fold"] == "all"]
        cols = ["model", "horizon", "n", "n_pos", "brier", "bss", "roc_auc",
                "average_precision", "ece", "log_loss", "precision", "recall", "f1",
                "mean_lead_time", "note"]
        return pooled[cols].reset_index(drop=True)

    def verdict(self, metric: str = "bss", tol: float = 1e-3, model: str | None = None) -> str:
        """A plain sentence per baseline: does the Markov model beat it?

        Compares the pooled ``metric`` (higher is better for ``bss``,
        ``roc_auc``, ``average_precision``, ``precision``, ``recall`` and
        ``f1``; lower for ``brier``, ``ece`` and ``log_loss``) at every
        horizon. Differences smaller than ``tol`` count as ties. ``model``
        defaults to the first Markov model scored.
        """
        higher = metric in ("bss", "roc_auc", "average_precision", "f1", "precision", "recall")
        pooled = self.metrics[self.metrics["fold"] == "all"].pivot(
            index="horizon", columns="model", values=metric
        )
        if model is None:
            model = next((m for m in self.models if m.startswith(MODEL)), None)
        if model is None or model not in pooled:
            return "the Markov model was not scored"
        lines = []
        for base in pooled.columns:
            if base == model:
                continue
            diff = (pooled[model] - pooled[base]).dropna()
            if not higher:
                diff = -diff
            if diff.empty:
                lines.append(f"{model} vs {base}: {metric} undefined at every horizon")
                continue
            parts = []
            for word, sel in (("beats", diff >= tol), ("ties with", diff.abs() < tol),
                              ("loses to", diff <= -tol)):
                if sel.any():
                    hs = diff.index[sel]
                    where = ("at every horizon" if sel.all() else
                             f"at horizon{'s' if len(hs) > 1 else ''} {_ranges(hs)}")
                    parts.append(f"{word} {base} {where}")
            lines.append(f"{model} " + "; ".join(parts) + f" on {metric}")
        return "\n".join(lines)

    def calibration(self, model: str = MODEL, horizon: int = 1, n_bins: int = 10) -> pd.DataFrame:
        """Reliability table of one model at one horizon, pooled over folds."""
        sel = self._select(model, horizon)
        return _metrics.calibration_table(sel["p"].to_numpy(), sel["y"].to_numpy(), n_bins=n_bins)

    def curves(self, model: str = MODEL, horizon: int = 1) -> dict:
        """ROC and precision-recall curves (scikit-learn) of one model at one horizon.

        Returns a dict with ``fpr, tpr`` and ``precision, recall`` arrays,
        empty when the pooled forecasts hold only one class.
        """
        from sklearn.metrics import precision_recall_curve, roc_curve

        sel = self._select(model, horizon)
        y, p = sel["y"].to_numpy(), sel["p"].to_numpy()
        if len(np.unique(y)) < 2:
            empty = np.zeros(0)
            return {"fpr": empty, "tpr": empty, "precision": empty, "recall": empty}
        fpr, tpr, _ = roc_curve(y, p)
        precision, recall, _ = precision_recall_curve(y, p)
        return {"fpr": fpr, "tpr": tpr, "precision": precision, "recall": recall}

    def lead_times(self, model: str = MODEL, horizon: int | None = None) -> pd.DataFrame:
        """One row per failure that the forecasts at ``horizon`` could see:
        whether the probability crossed the threshold before it, and how many
        steps ahead (see :func:`markovfault._metrics.lead_times`)."""
        horizon = self.params["horizon"] if horizon is None else horizon
        sel = self._select(model, horizon)
        failing = (sel["state"].isin(self.params.get("failure_states", [])).to_numpy()
                   if "state" in sel else np.zeros(len(sel), dtype=bool))
        sel = sel[(sel["y"] == 1).to_numpy() & ~failing]
        return _metrics.lead_times(
            sel["entity_code"].to_numpy(), sel["origin_step"].to_numpy(),
            sel["steps_to_failure"].to_numpy(), sel["p"].to_numpy(), self.params["threshold"],
            horizon=horizon,
        )

    def _select(self, model, horizon) -> pd.DataFrame:
        pred = self.predictions
        sel = pred[(pred["model"] == model) & (pred["horizon"] == horizon)]
        if sel.empty and model not in set(pred["model"]):
            raise ValueError(f"model {model!r} is not in this result; models: {self.models}")
        return sel

    def to_dir(self, path) -> Path:
        """Write metrics.csv, folds.csv, predictions.parquet, report.md and PNG figures."""
        from . import plotting

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.metrics.to_csv(path / "metrics.csv", index=False)
        self.folds.to_csv(path / "folds.csv", index=False)
        self.predictions.to_parquet(path / "predictions.parquet", index=False)
        figures = plotting.save_backtest_figures(self, path)
        (path / "report.md").write_text(self.report(figures=[f.name for f in figures]))
        return path

    def report(self, figures: Sequence[str] = ()) -> str:
        """A Markdown report: settings, the verdict, the pooled table, the folds."""
        p = self.params
        lines = [
            "# markovfault backtest",
            "",
            f"- horizon 1..{p['horizon']}, {p['n_folds']} folds ({p['window']} window"
            + (f" of {p['window_size']}" if p.get("window_size") is not None else "")
            + f"), origins: {p['origins']}, alert threshold {p['threshold']}",
            f"- models: {', '.join(self.models)}",
            f"- censored origins (fewer than h steps observed, none failed): "
            f"{int(self.folds['n_censored'].sum())} of "
            f"{int(self.folds['n_origins'].sum())} (origin, horizon) pairs",
            "",
            "## Verdict",
            "",
            *[f"- {line}" for line in self.verdict().splitlines()],
            *[f"- {line}" for line in self.verdict("roc_auc").splitlines()],
            "",
            "## Pooled metrics",
            "",
            _markdown(self.summary().drop(columns=["note"])),
            "",
            "## Folds",
            "",
            _markdown(self.folds),
        ]
        if figures:
            lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in figures]
        return "\n".join(lines) + "\n"

    def __repr__(self) -> str:
        p = self.params
        return (f"BacktestResult(models={self.models}, horizon={p.get('horizon')}, "
                f"n_folds={p.get('n_folds')}, n_predictions={len(self.predictions)})")

    def _repr_html_(self) -> str:
        """For notebooks: the verdict (Brier skill and ROC AUC) and the pooled metrics at
        the first and the largest horizon (all horizons: :meth:`summary`)."""
        from html import escape

        table = self.summary()
        ends = sorted({int(table["horizon"].min()), int(table["horizon"].max())})
        table = table[table["horizon"].isin(ends)].drop(columns=["note"]).round(4)
        lines = self.verdict().splitlines() + self.verdict("roc_auc").splitlines()
        return (f"<p><b>{escape(repr(self))}</b></p><ul>"
                + "".join(f"<li>{escape(line)}</li>" for line in lines)
                + f"</ul><p>pooled over folds, horizons {' and '.join(map(str, ends))} "
                "(all horizons: <code>result.summary()</code>)</p>"
                + table.to_html(index=False, na_rep=""))


def _ranges(values) -> str:
    values = sorted(int(v) for v in values)
    out, start, prev = [], None, None
    for v in values:
        if start is None:
            start = prev = v
        elif v == prev + 1:
            prev = v
        else:
            out.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = v
    if start is not None:
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ", ".join(out)


def _markdown(frame: pd.DataFrame) -> str:
    def fmt(v):
        if isinstance(v, (float, np.floating)):
            return "" if np.isnan(v) else f"{v:.4g}"
        return str(v)

    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    sep = "|" + "---|" * len(frame.columns)
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, sep, *body])


# ------------------------------------------------------------------ the run
def backtest(
    histories,
    predictor,
    *,
    horizon: int = 10,
    cutoffs: int | Sequence = 5,
    window: str = "expanding",
    window_size=None,
    origins: str = "cutoff",
    baselines: Sequence = BASELINES,
    threshold: float = 0.5,
    n_jobs: int | None = None,
    progress: bool | None = None,
    event_mix="long_run",
    recent_window=None,
) -> BacktestResult:
    """Rolling-origin backtest of a :class:`~markovfault.FaultPredictor` against baselines.

    Parameters
    ----------
    histories : DataFrame, path, or list of them
        Exported histories, read as by :func:`markovfault.read_histories`
        with the predictor's columns.
    predictor : FaultPredictor
        Unfitted (or fitted: only its settings are used): states, alpha,
        beta, columns, max_gap.
    horizon : int, default=10
        Forecasts and outcomes for h = 1..horizon.
    cutoffs : int or sequence of times, default=5
        ``N`` cutoffs at the ``k/(N+1)`` quantiles of the step times, or the
        cutoff times themselves (timestamps or integers, as the time column).
    window : {'expanding', 'sliding'}, default='expanding'
        Train on everything before the cutoff, or on ``window_size`` before it.
    window_size : duration or int, optional
        Length of the sliding window (``"7D"`` for timestamps, an integer for
        sequence numbers). Required with ``window='sliding'``.
    origins : {'cutoff', 'every_step'}, default='cutoff'
        Forecast from each entity's state at the cutoff, or from every step
        between this cutoff and the next (with the model of this fold).
    baselines : sequence, default=all of :data:`BASELINES`
        Names from :data:`BASELINES`, or a :class:`GradientBoostingBaseline`
        instance (scored as ``"gradient_boosting"``).
    threshold : float, default=0.5
        Alert threshold for precision, recall, F1 and lead time.
    n_jobs : int, optional
        Folds of the gradient-boosting baseline in parallel (joblib).
    progress : bool, optional
        Show a progress line on stderr; default: when stderr is a terminal.
    event_mix : str, dict, or a list of them, default='long_run'
        The Markov model's expected event mix (see
        :meth:`FaultPredictor.predict`); a list scores one model per mix:
        ``markov`` (long run), ``markov_recent`` (the mix of the
        ``recent_window`` before each origin), ``markov_mix`` (given shares).
    recent_window : duration or int, optional
        The trailing window of ``'recent'``.

    Returns
    -------
    BacktestResult

    Notes
    -----
    The state extractor is fitted on the steps before the *first* cutoff and
    used for every fold, so no fold's states depend on its future.

    ``histories`` may be a ``dask.dataframe.DataFrame`` (``markovfault[dask]``):
    the result is the same, exactly. Each partition (all the rows of its
    entities) is read, encoded and counted where it lies; only the fold count
    tensors, the per-state training rates, each entity's name and number of
    steps, and the origins' rows (state, history code, time, outcome per
    horizon) travel to the client. Integer ``cutoffs`` are exact quantiles
    found by a few rounds of per-partition histograms of the step times. The
    ``gradient_boosting`` baseline is the exception: it trains one classifier
    per fold on the features of every training step, so with it the *encoded*
    steps (entity, time, event and state codes; not the frame) are collected
    to the client. Leave it out of ``baselines`` (it is in the default) to keep
    the data where it lies.
    """
    from .predictor import FaultPredictor, _is_dask, _time_int

    if not isinstance(predictor, FaultPredictor):
        raise TypeError(f"predictor must be a FaultPredictor, got {type(predictor).__name__}")
    horizon = _check_horizon(horizon)
    if window not in ("expanding", "sliding"):
        raise ConfigError(f"window = {window!r}; use 'expanding' or 'sliding'.")
    if origins not in ("cutoff", "every_step"):
        raise ConfigError(f"origins = {origins!r}; use 'cutoff' or 'every_step'.")
    if not (0.0 <= float(threshold) <= 1.0):
        raise ConfigError(f"threshold = {threshold!r} must lie in [0, 1].")
    base_specs = _check_baselines(baselines)

    if _is_dask(histories):  # counted partition by partition (markovfault._dask)
        from ._dask import backtest_run

        run, report = backtest_run(
            histories, predictor, horizon=horizon, cutoffs=cutoffs, window=window,
            window_size=window_size, origins=origins, base_specs=base_specs,
            threshold=float(threshold), n_jobs=n_jobs, progress=progress,
            event_mix=event_mix, recent_window=recent_window)
    else:
        frame, report = predictor._read(histories, categorical=True)
        times = _time_int(frame).to_numpy()
        time_kind = ("datetime" if isinstance(frame["time"].dtype, pd.DatetimeTZDtype)
                     else "integer")
        cuts = _resolve_cutoffs(cutoffs, times, time_kind)
        width = _resolve_window(window, window_size, time_kind)

        # states learned from the first training window only
        extractor = predictor._make_extractor()
        first = times < cuts[0]
        extractor.fit(frame.loc[first])
        codes = _transform_states(extractor, frame)
        _check_failure_states(extractor)
        traj = Trajectories.from_frame(frame, codes, extractor.state_names_,
                                       np.asarray(extractor.is_failure_, dtype=bool),
                                       max_gap=predictor.max_gap)
        mixes, recent_width = _check_mixes(event_mix, time_kind, recent_window)
        run = _Run(traj, cuts, width, horizon, float(threshold), predictor, base_specs, origins,
                   n_jobs, progress, mixes, recent_width)
    result = run.execute()
    tr = run.traj
    result.params.update(
        horizon=horizon, n_folds=len(run.cuts), window=window, window_size=window_size,
        origins=origins, threshold=float(threshold), time_kind=tr.time_kind,
        cutoffs=list(run.cuts), rows_read=report.n_rows_read, rows_dropped=report.n_dropped,
        failure_states=[n for n, f in zip(tr.state_names, tr.is_failure) if f],
    )
    return result


def _transform_states(extractor, frame) -> np.ndarray:
    """State codes of ``frame`` with the extractor fitted before the first cutoff."""
    try:
        return extractor.transform(frame)
    except UnknownStatusError as exc:
        raise UnknownStatusError(
            f"{exc} (the states are learned from the steps before the first cutoff; list every "
            "state in [states].states, or set [states].unknown, when labels first appear later)"
        ) from exc


def _check_failure_states(extractor) -> None:
    if not np.any(extractor.is_failure_):
        raise ConfigError(
            f"no failure states are declared; the states are {list(extractor.state_names_)}."
        )


def _mix_name(mix) -> str:
    if isinstance(mix, str):
        return MODEL if mix == "long_run" else f"{MODEL}_{mix}"
    return f"{MODEL}_mix"


def _check_mixes(event_mixes, time_kind, recent_window):
    mixes = [event_mixes] if isinstance(event_mixes, (str, dict)) else list(event_mixes)
    if not mixes:
        raise ConfigError("event_mix needs at least one mix")
    width = None
    for m in mixes:
        if isinstance(m, str) and m not in ("long_run", "recent"):
            raise ConfigError(f"event_mix {m!r}; use 'long_run', 'recent' or {{event: share}}.")
        if isinstance(m, str) and m == "recent":
            from .trajectories import parse_max_gap

            if recent_window is None:
                raise ConfigError("event_mix 'recent' needs a recent_window (e.g. \"1h\" or 60)")
            width = parse_max_gap(recent_window, time_kind)
        elif not isinstance(m, (str, dict)):
            raise ConfigError(f"event_mix {m!r}; use 'long_run', 'recent' or {{event: share}}.")
    if len({_mix_name(m) for m in mixes}) != len(mixes):
        raise ConfigError("event_mix names one kind of mix twice")
    return mixes, width


def _check_baselines(baselines) -> list:
    specs = []
    for b in baselines:
        if isinstance(b, GradientBoostingBaseline):
            specs.append(("gradient_boosting", b))
        elif isinstance(b, str) and b in BASELINES:
            specs.append((b, GradientBoostingBaseline() if b == "gradient_boosting" else None))
        else:
            raise ConfigError(f"unknown baseline {b!r}; the baselines are {list(BASELINES)}.")
    names = [n for n, _ in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"baselines {names} name one baseline twice")
    return specs


def _to_time_int(values, time_kind: str) -> np.ndarray:
    if time_kind == "datetime":
        try:
            ts = pd.to_datetime(pd.Series(list(values)), utc=True)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"cutoffs {list(values)[:3]}... are not timestamps: {exc}") from exc
        return ts.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]").view(np.int64)
    arr = np.asarray(list(values))
    if not np.issubdtype(arr.dtype, np.integer):
        raise ConfigError(f"cutoffs {arr[:3].tolist()} must be integers: the time column is a sequence")
    return arr.astype(np.int64)


def _higher_ranks(n: int, q: np.ndarray) -> np.ndarray:
    """0-based ranks of the ``'higher'`` quantiles ``q`` of ``n`` values (as numpy 2 does)."""
    return np.clip(np.ceil((n - 1) * np.asarray(q, dtype=np.float64)), 0, n - 1).astype(np.int64)


def _resolve_cutoffs(cutoffs, times: np.ndarray, time_kind: str) -> np.ndarray:
    times = np.asarray(times, dtype=np.int64)

    def kth(ranks):  # the values at these ranks of the sorted times
        return np.partition(times, ranks)[ranks]

    return _cutoffs(cutoffs, time_kind, len(times), times.min(), times.max(), kth)


def _cutoffs(cutoffs, time_kind: str, n: int, t_min, t_max, kth) -> np.ndarray:
    """The cutoff times; ``kth(ranks)`` gives the sorted step times at (unique, sorted)
    0-based ranks, so quantile cutoffs need no sorted copy of every time in one place."""
    if isinstance(cutoffs, (int, np.integer)) and not isinstance(cutoffs, bool):
        if cutoffs < 1:
            raise ConfigError(f"cutoffs = {cutoffs}, must be >= 1.")
        q = np.arange(1, cutoffs + 1) / (cutoffs + 1)
        ranks = np.unique(_higher_ranks(n, q))
        cuts = np.unique(np.asarray(kth(ranks)).astype(np.int64))
        cuts = cuts[cuts > t_min]
        if len(cuts) < cutoffs:
            raise HistoryError(
                f"the histories have too few distinct times for {cutoffs} cutoffs "
                f"(found {len(cuts)} usable); ask for fewer."
            )
        return cuts
    cuts = np.sort(_to_time_int(cutoffs, time_kind))
    if len(cuts) == 0:
        raise ConfigError("cutoffs is empty")
    if cuts[0] <= t_min:
        raise HistoryError(
            f"cutoff {_fmt_time(cuts[0], time_kind)} leaves no training data: the first step is at "
            f"{_fmt_time(t_min, time_kind)}; choose cutoffs after it."
        )
    if cuts[-1] > t_max:
        raise HistoryError(
            f"cutoff {_fmt_time(cuts[-1], time_kind)} lies after the last step "
            f"({_fmt_time(t_max, time_kind)}): nothing to forecast; choose cutoffs inside the data."
        )
    if len(np.unique(cuts)) != len(cuts):
        raise ConfigError("cutoffs must be distinct")
    return cuts


def _resolve_window(window, window_size, time_kind):
    if window == "expanding":
        if window_size is not None:
            raise ConfigError("window_size is only used with window='sliding'")
        return None
    if window_size is None:
        raise ConfigError("window='sliding' needs a window_size (e.g. \"7D\" or 1000)")
    from .trajectories import parse_max_gap

    try:
        return parse_max_gap(window_size, time_kind)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("max_gap", "window_size")) from exc


def _fmt_time(t, time_kind):
    return str(pd.Timestamp(int(t), tz="UTC")) if time_kind == "datetime" else str(int(t))


class _Progress:
    def __init__(self, total: int, enabled: bool | None):
        self.total, self.done = total, 0
        self.enabled = sys.stderr.isatty() if enabled is None else bool(enabled)

    def step(self, what: str) -> None:
        self.done += 1
        if self.enabled:
            sys.stderr.write(f"\rbacktest: {what} {self.done}/{self.total}")
            if self.done == self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


class _Run:
    """The arrays of one backtest, computed once and shared by the folds."""

    def __init__(self, traj, cuts, width, horizon, threshold, predictor, base_specs, origins,
                 n_jobs, progress, event_mixes=("long_run",), recent_width=None):
        self.traj, self.cuts, self.width, self.H = traj, cuts, width, horizon
        self.threshold, self.predictor, self.base_specs = threshold, predictor, base_specs
        self.origins, self.n_jobs, self.progress = origins, n_jobs, progress
        self.spec = predictor._history_spec()
        if self.spec is not None:
            self.aug = augment(traj, self.spec)  # each step's history-aware state (past only)
            self.n_aug = _Layout(self.spec, traj.n_states, traj.n_events).A
        self.event_mixes = list(event_mixes)
        self.recent_width = recent_width
        n = traj.n_steps
        ent = traj.entity
        starts = np.flatnonzero(np.r_[True, ent[1:] != ent[:-1]]) if n else np.zeros(0, np.int64)
        self.ent_start = starts
        self.ent_end = np.r_[starts[1:], n]
        lens = self.ent_end - self.ent_start
        self.end_of = np.repeat(self.ent_end, lens)  # exclusive end of each step's entity
        fail = traj.is_failure[traj.state]
        self.fail = fail
        fail_pos = np.flatnonzero(fail)
        j = np.searchsorted(fail_pos, np.arange(n) + 1)  # first failure strictly after n
        padded = np.r_[fail_pos, n + horizon + 1]  # "none" past the last failure
        nxt = padded[j]
        d = nxt - np.arange(n)
        d[nxt >= self.end_of] = horizon + 1  # the entity's next failure, if any, is beyond
        self.d = np.minimum(d, horizon + 1)  # steps to the next failure, capped at H+1
        self.observed = self.end_of - 1 - np.arange(n)  # steps observed after each step
        # lead times count failure onsets: from an origin that is failing already, the next
        # failure step may just be the same failure going on, so it is no target
        self.d_onset = np.where(fail, horizon + 1, self.d)

    # ---------------------------------------------------------------- counts
    def fold_counts(self) -> np.ndarray:
        """Training counts of every fold, (K, E, S, S) or, with history-aware states,
        (K, E, A, S), from one counting pass."""
        tr = self.traj
        bounds = self.cuts if self.width is None else np.unique(
            np.r_[self.cuts, self.cuts - self.width])
        bins = np.searchsorted(bounds, tr.time, side="right")  # = #bounds <= t
        if self.spec is None:
            per_bin = count_codes_by_bin(tr.state, tr.event, tr.run_starts, bins,
                                         len(bounds) + 1, tr.n_states, tr.n_events)
        else:
            per_bin = count_augmented(self.aug, tr, self.n_aug, bins, len(bounds) + 1)
        cum = np.cumsum(per_bin, axis=0)  # cum[j] = counts of times < bounds[j]
        upto = cum[np.searchsorted(bounds, self.cuts)]
        if self.width is None:
            return upto
        return upto - cum[np.searchsorted(bounds, self.cuts - self.width)]

    # ------------------------------------------------------------ origins
    def _n_before(self, c) -> np.ndarray:
        """Per entity, how many of its steps lie before ``c``."""
        if not hasattr(self, "_before_cum"):
            # one pass for every cutoff: steps per (entity, number of cutoffs <= t)
            K = len(self.cuts)
            b = np.searchsorted(self.cuts, self.traj.time, side="right")
            cell = self.traj.entity * (K + 1) + b
            per = np.bincount(cell, minlength=len(self.ent_start) * (K + 1))
            self._before_cum = np.cumsum(per.reshape(-1, K + 1), axis=1)
        k = np.searchsorted(self.cuts, c)
        if k < len(self.cuts) and self.cuts[k] == c:
            return self._before_cum[:, k]  # steps with time < cuts[k]: bins 0..k
        return np.bincount(self.traj.entity, weights=self.traj.time < c,
                           minlength=len(self.ent_start)).astype(np.int64)

    def last_before(self, c) -> np.ndarray:
        """Per entity, the index of its last step before ``c`` (-1 where none)."""
        before = self._n_before(c)
        return np.where(before > 0, self.ent_start + before - 1, -1)

    def first_at_or_after(self, c) -> np.ndarray:
        """Per entity, the index of its first step at or after ``c`` (= end where none)."""
        return self.ent_start + self._n_before(c)

    def test_origins(self, k: int) -> np.ndarray:
        if self.origins == "cutoff":
            last = self.last_before(self.cuts[k])
            return last[last >= 0]
        fold_of = np.searchsorted(self.cuts, self.traj.time, side="right") - 1
        return np.flatnonzero(fold_of == k)

    def labels(self, idx: np.ndarray) -> np.ndarray:
        """Outcomes (n, H): 1 fail within h, 0 h steps seen without failure, -1 censored."""
        h = np.arange(1, self.H + 1)[None, :]
        d, obs = self.d[idx][:, None], self.observed[idx][:, None]
        return np.where(d <= h, 1, np.where(obs >= h, 0, -1)).astype(np.int8)

    def train_window(self, k: int):
        """Training origins of fold k and how many steps of each lie before the cutoff."""
        c = self.cuts[k]
        last = self.last_before(c)
        lo = self.ent_start if self.width is None else self.first_at_or_after(c - self.width)
        ent = self.traj.entity
        steps = np.arange(self.traj.n_steps)
        mask = (steps <= last[ent]) & (steps >= lo[ent])
        idx = np.flatnonzero(mask)
        gap = last[ent[idx]] - idx  # future steps of the origin that lie before c
        return idx, gap

    # ----------------------------------------------- what each fold reads
    # (the dask back end, markovfault._dask._GatheredRun, answers these from per-partition
    # results instead of one trajectory)
    def fold_train(self, k: int):
        """Training (positives, origins) per (state, horizon) of fold k, and what the
        gradient-boosting baseline needs to build its training set (``None``: built
        on demand by :meth:`gb_inputs`)."""
        if self.width is None:
            return (*self.fold_rates(k), None)
        tidx, gap = self.train_window(k)
        n_pos, n_orig = self.state_rates(tidx, gap)
        return n_pos, n_orig, (tidx, gap)

    def fold_rates(self, k: int):
        """``state_rates(*train_window(k))`` without a pass over every step per fold.

        Expanding windows only. An origin whose whole h-window (h <= H) lies
        before the cutoff ("far": its step H later is before the cutoff)
        counts the same in every fold from the one where it becomes far, so
        far origins are counted once, binned by that fold, and summed
        cumulatively; only the last H origins of each entity before the
        cutoff are counted per fold.
        """
        if self.width is not None:
            return self.state_rates(*self.train_window(k))
        tr, H = self.traj, self.H
        S = tr.n_states
        if not hasattr(self, "_far_cum"):
            n, K = tr.n_steps, len(self.cuts)
            later = np.arange(n) + H
            has = later < self.end_of
            t_far = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
            t_far[has] = tr.time[later[has]]
            fold_of = np.searchsorted(self.cuts, t_far, side="right")  # far from this fold on
            cell = (fold_of * S + tr.state) * (H + 2) + self.d
            per = np.bincount(cell, minlength=(K + 1) * S * (H + 2)).reshape(K + 1, S, H + 2)
            self._far_cum = np.cumsum(per, axis=0)
        far = self._far_cum[k]  # far origins by (state, steps to the next failure)
        last = self.last_before(self.cuts[k])
        rows = last[:, None] - np.arange(H)[None, :]  # the near origins: gap 0..H-1
        near = (last[:, None] >= 0) & (rows >= self.ent_start[:, None])
        n_pos, n_orig = self.state_rates(rows[near], (last[:, None] - rows)[near])
        n_pos = n_pos + np.cumsum(far, axis=1)[:, 1:H + 1]  # positive for h >= d
        n_orig = n_orig + far.sum(axis=1)[:, None]  # an origin for every h
        return n_pos, n_orig

    def fold_origins(self, k: int):
        """Fold k's origins (step indices), their outcomes (n, H), base states and,
        with history-aware states, augmented states."""
        origins = self.test_origins(k)
        aug = self.aug[origins] if self.spec is not None else None
        return origins, self.labels(origins), self.traj.state[origins], aug

    def gb_inputs(self, k: int, train):
        """(trajectories, training origins, training labels) of the classifier of fold k."""
        tidx, gap = self.train_window(k) if train is None else train
        return self.traj, tidx, self.train_labels(tidx, gap)

    def origin_times(self, k: int, origins: np.ndarray) -> np.ndarray:
        return self.traj.time[origins]

    def recent_windows(self, k: int, starts: np.ndarray) -> list:
        """Arrival counts (S, E) in ``[start - recent_window, start)`` for each start."""
        from .predictor import recent_arrivals

        tr = self.traj
        is_start = tr.is_run_start()
        return [recent_arrivals(tr.state, tr.event, tr.time, is_start, tr.n_states, tr.n_events,
                                start - self.recent_width, start) for start in starts]

    def step_attrs(self, step: np.ndarray):
        """Entity code, time, state, steps to the next failure and to the next failure
        onset of the (scored) steps ``step``."""
        tr = self.traj
        return tr.entity[step], tr.time[step], tr.state[step], self.d[step], self.d_onset[step]

    def train_labels(self, idx, gap) -> np.ndarray:
        """Training labels (n, H): only origins whose whole h-window lies before the cutoff;
        -1 elsewhere, even when the origin failed early (that would inflate the rate)."""
        h = np.arange(1, self.H + 1)[None, :]
        y = np.where(self.d[idx][:, None] <= h, 1, 0).astype(np.int8)
        y[gap[:, None] < h] = -1
        return y

    def state_rates(self, idx, gap):
        """Training (positives, origins) per (state, horizon) by difference arrays."""
        S, H = self.traj.n_states, self.H
        st = self.traj.state[idx]
        g = np.minimum(gap, H)  # origin counts for h = 1..g
        n_sh = np.bincount(st * (H + 2) + g, minlength=S * (H + 2)).reshape(S, H + 2)
        # origins with gap >= h: reverse cumulative over g
        n_orig = np.cumsum(n_sh[:, ::-1], axis=1)[:, ::-1][:, 1:H + 1]
        d = self.d[idx]
        pos = d <= g  # positive for h in [d, g]
        add = np.bincount(st[pos] * (H + 2) + d[pos], minlength=S * (H + 2)).reshape(S, H + 2)
        sub = np.bincount(st[pos] * (H + 2) + g[pos] + 1, minlength=S * (H + 2)).reshape(S, H + 2)
        n_pos = np.cumsum(add - sub, axis=1)[:, 1:H + 1]
        return n_pos, n_orig

    # ------------------------------------------------------------- the folds
    def execute(self) -> BacktestResult:
        tr, H, K = self.traj, self.H, len(self.cuts)
        counts = self.fold_counts()
        pred = self.predictor
        progress = _Progress(K, self.progress)
        names = [_mix_name(m) for m in self.event_mixes] + [n for n, _ in self.base_specs]
        fold_rows, pieces, gb_jobs = [], [], []
        for k in range(K):
            n_train = int(counts[k].sum())
            if n_train == 0:
                raise HistoryError(
                    f"fold {k} (cutoff {_fmt_time(self.cuts[k], tr.time_kind)}) has no training "
                    "transitions in its window; move the cutoff later or widen the window."
                )
            n_pos, n_orig, train = self.fold_train(k)
            with np.errstate(invalid="ignore", divide="ignore"):
                base = n_pos.sum(axis=0) / n_orig.sum(axis=0)  # (H,)
            base = np.where(np.isfinite(base), base, np.nan)
            origins, y, st, aug_row = self.fold_origins(k)
            probs = {}
            if self.spec is None:
                chain = EventMarkovChain(alpha=pred.alpha, beta=pred.beta).set_counts(
                    counts[k], tr.state_names, tr.event_names, tr.is_failure)
                base_counts, row = counts[k], st
            else:
                chain = HistoryChain(self.spec, pred.alpha, pred.beta).set_counts(
                    counts[k], tr.state_names, tr.event_names, tr.is_failure)
                base_counts, row = chain.base_.counts_, aug_row
            for mix in self.event_mixes:
                probs[_mix_name(mix)] = self._mix_forecast(chain, base_counts, mix, origins, row,
                                                           k)
            for name, spec in self.base_specs:
                if name == "climatology":
                    probs[name] = np.broadcast_to(np.nan_to_num(base, nan=0.0), (len(origins), H))
                elif name == "state_frequency":
                    # one pseudo-origin at the training base rate keeps rare states sane
                    b = np.nan_to_num(base, nan=0.0)[None, :]
                    probs[name] = ((n_pos + b) / (n_orig + 1.0))[st]
                elif name == "no_events":
                    flat = base_counts.sum(axis=0, keepdims=True)
                    plain = EventMarkovChain(alpha=pred.alpha, beta=pred.beta).set_counts(
                        flat, tr.state_names, ["step"], tr.is_failure)
                    probs[name] = plain.failure_probabilities(H)[st]
                elif name == "gradient_boosting":
                    gb_jobs.append((k, spec, *self.gb_inputs(k, train), origins))
            for h in range(H):
                fold_rows.append({
                    "fold": k, "cutoff": self.cuts[k], "horizon": h + 1,
                    "n_train_transitions": n_train, "train_base_rate": base[h],
                    "n_origins": len(origins), "n_scored": int((y[:, h] >= 0).sum()),
                    "n_censored": int((y[:, h] < 0).sum()),
                })
            pieces.append((k, origins, y, probs, base))
            progress.step("fold")
        if gb_jobs:
            fitted = Parallel(n_jobs=self.n_jobs)(
                delayed(_fit_predict_gb)(spec, gtr, tidx, ytr, org)
                for (k, spec, gtr, tidx, ytr, org) in gb_jobs
            )
            for (k, *_), p in zip(gb_jobs, fitted):
                # a horizon with no complete training window has no classifier:
                # it forecasts the fold's training base rate (0 when that is undefined too)
                base = np.nan_to_num(pieces[k][4], nan=0.0)
                pieces[k][3]["gradient_boosting"] = np.where(np.isnan(p), base[None, :], p)
        return self._assemble(pieces, fold_rows, names)

    def _mix_forecast(self, chain, base_counts, mix, origins, row, k=0) -> np.ndarray:
        """P(fail within h) at the origins under one expected event mix.

        ``"recent"`` shifts each state's fitted arrival probabilities toward
        the events that arrived in that state during the ``recent_window``
        before each origin (see :func:`markovfault.predictor.shift_event_probs`;
        origins are grouped into slices of half a window, so a fold needs one
        forecast table per slice, not per origin).
        """
        H = self.H
        if isinstance(mix, str) and mix == "long_run":
            return chain.failure_probabilities(H)[row]
        Q = chain.event_probs_
        if not isinstance(mix, str):
            names = list(self.traj.event_names)
            shares = np.array([float(mix.get(e, 0.0)) for e in names])
            Qm = np.broadcast_to(shares / shares.sum(), Q.shape)
            return chain.failure_probabilities(H, event_probs=Qm)[row]
        from .predictor import shift_event_probs

        tr = self.traj
        starts, which = _recent_slices(self.origin_times(k, origins), self.recent_width)
        # events that arrived in [start - width, start): known when the slice begins
        windows = self.recent_windows(k, starts)
        base = chain if isinstance(chain, EventMarkovChain) else chain.base_
        base_of = np.arange(tr.n_states) if isinstance(chain, EventMarkovChain) else chain.base_state_
        out = np.empty((len(origins), H))
        for s_idx, w in enumerate(windows):  # one table per time slice, not per origin
            sel = which == s_idx
            if w.sum() > 0:
                Qm = shift_event_probs(chain.event_probs_, base_of, base.event_probs_, w)
                table = chain.failure_probabilities(H, event_probs=Qm)
            else:
                table = chain.failure_probabilities(H)
            out[sel] = table[row[sel]]
        return out

    def _assemble(self, pieces, fold_rows, names) -> BacktestResult:
        """Stack every fold's scored forecasts into flat arrays, then one frame."""
        tr, H = self.traj, self.H
        cols: dict[str, list] = {c: [] for c in (
            "fold", "origin_step", "horizon", "model", "p", "y", "base_rate")}
        for k, origins, y, probs, base in pieces:
            keep = (y >= 0).ravel()
            step = np.repeat(origins, H)[keep]
            hor = np.tile(np.arange(1, H + 1), len(origins))[keep]
            yk = y.ravel()[keep].astype(np.int64)
            bk = np.tile(base, len(origins))[keep]
            for m, name in enumerate(names):
                cols["fold"].append(np.full(len(step), k, dtype=np.int64))
                cols["origin_step"].append(step)
                cols["horizon"].append(hor)
                cols["model"].append(np.full(len(step), m, dtype=np.int64))
                cols["p"].append(np.clip(np.asarray(probs[name], np.float64).ravel()[keep], 0, 1))
                cols["y"].append(yk)
                cols["base_rate"].append(bk)
        a = {c: np.concatenate(v) if v else np.zeros(0) for c, v in cols.items()}
        step = a["origin_step"].astype(np.int64)
        fold, hor, model = a["fold"].astype(np.int64), a["horizon"].astype(np.int64), \
            a["model"].astype(np.int64)
        ent, time, state, d, d_onset = self.step_attrs(step)
        metrics = self._metrics(a, step, fold, hor, model, names, ent, d_onset)
        cut = self.cuts[fold]
        if tr.time_kind == "datetime":
            time, cut = pd.to_datetime(time, utc=True), pd.to_datetime(cut, utc=True)
        pred = pd.DataFrame({
            "fold": fold,
            "cutoff": cut,
            "entity": pd.Categorical.from_codes(
                ent, categories=pd.Index(list(tr.entity_names), dtype=object)),
            "origin_time": time,
            "state": pd.Categorical.from_codes(
                state, categories=pd.Index(list(tr.state_names), dtype=object)),
            "horizon": hor,
            "model": pd.Categorical.from_codes(model, categories=pd.Index(names, dtype=object)),
            "p": a["p"],
            "y": a["y"].astype(np.int64),
            "entity_code": ent,
            "origin_step": step,
            "steps_to_failure": d,
            "base_rate": a["base_rate"],
        })
        folds = pd.DataFrame(fold_rows)
        if tr.time_kind == "datetime":
            folds["cutoff"] = pd.to_datetime(folds["cutoff"].to_numpy(), utc=True)
        return BacktestResult(metrics=metrics, predictions=pred, folds=folds, params={})

    def _metrics(self, a, step, fold, hor, model, names, ent, d_onset) -> pd.DataFrame:
        """Scores per (fold, horizon, model) and pooled per (horizon, model), vectorised."""
        H, M, K = self.H, len(names), len(self.cuts)
        tables = []
        for per_fold in (True, False):
            # group codes by arithmetic: fold-major, then horizon, then model
            code = (hor - 1) * M + model
            if per_fold:
                code = fold * (H * M) + code
            n_groups = (K if per_fold else 1) * H * M
            scores = _metrics.score_groups(
                code, a["p"], a["y"], base_rate=np.nan_to_num(a["base_rate"], nan=0.0),
                threshold=self.threshold, entity_code=ent, origin_step=step,
                steps_to_failure=d_onset, horizon=hor, n_groups=n_groups,
            )
            with np.errstate(invalid="ignore"):
                base = np.bincount(code, weights=a["base_rate"], minlength=n_groups) / \
                    np.bincount(code, minlength=n_groups)
            g = np.arange(n_groups)
            head = pd.DataFrame({
                "fold": (g // (H * M)).astype(str) if per_fold else "all",
                "horizon": (g // M) % H + 1,
                "model": np.asarray(names, dtype=object)[g % M],
                "base_rate": base,
            })
            table = pd.concat([head, scores.reset_index(drop=True)], axis=1)
            tables.append(table[table["n"] > 0])  # a model scored nowhere in a fold: no row
        out = pd.concat(tables, ignore_index=True)
        cols = ["fold", "horizon", "model", "base_rate", *_metrics.SCORE_KEYS,
                "n_failures", "n_caught", "mean_lead_time"]
        return out[cols]


def _recent_slices(t: np.ndarray, width: int):
    """Origins grouped into slices of half a recent window: (slice starts, slice of each)."""
    if len(t) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    half = max(width // 2, 1)
    slice_of = (t - t.min()) // half
    starts = t.min() + np.unique(slice_of) * half
    return starts, np.searchsorted(starts, t.min() + slice_of * half)


def _fit_predict_gb(spec: GradientBoostingBaseline, traj, tidx, ytr, origins) -> np.ndarray:
    from sklearn.base import clone

    model = clone(spec) if hasattr(spec, "get_params") else spec
    return model.fit(traj, tidx, ytr).predict_proba(traj, origins)
