"""The result of a backtest: metrics, predictions and folds, with summaries, curves and a report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .._constants import MODEL
from . import _metrics

__all__ = ["BacktestResult"]


@dataclass
class BacktestResult:
    """What a backtest measured.

    Attributes
    ----------
    metrics : DataFrame
        One row per (fold, horizon, model), plus per (horizon, model) a row
        with ``fold == "mean"``: the mean of the folds' scores weighted by
        their scored origins (counts summed). Columns n, n_pos, base_rate,
        brier, log_loss, roc_auc, average_precision, bss, ece, precision,
        recall, f1, n_failures, n_caught, mean_lead_time, and ``note`` (why a
        metric is NaN).
    predictions : DataFrame
        One row per scored forecast: fold, cutoff, entity, origin_time, the
        origin's state, horizon, model, p, y (and the bookkeeping columns
        entity_code, origin_step, steps_to_failure, base_rate).
    folds : DataFrame
        One row per (fold, horizon): cutoff, n_train_transitions,
        train_base_rate, n_origins, n_scored, n_censored.
    params : dict
        The settings of the run.
    intervals : DataFrame
        Per (horizon, model, metric): the per-fold mean (``estimate``) and
        its bootstrap interval ``lo``..``hi`` (entities resampled).
    comparisons : DataFrame
        Per (horizon, model, other, metric): the difference of the per-fold
        means (model minus other), its bootstrap interval, and the verdict:
        ``beats`` or ``loses`` when the interval excludes zero, ``ties`` when
        it covers zero.
    """

    metrics: pd.DataFrame
    predictions: pd.DataFrame
    folds: pd.DataFrame
    params: dict = field(default_factory=dict)
    intervals: pd.DataFrame = field(default_factory=pd.DataFrame)
    comparisons: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def models(self) -> list:
        return list(dict.fromkeys(self.metrics["model"]))

    def summary(self, intervals: bool = True) -> pd.DataFrame:
        """Per-fold means, one row per (model, horizon), with the intervals of Brier skill and
        ROC AUC (``bss_lo``, ``bss_hi``, ``roc_auc_lo``, ``roc_auc_hi``).

        Examples
        --------
        >>> from markovfault.simulate import simulate_histories
        >>> from markovfault import FaultPredictor, backtest
        >>> hist = simulate_histories(8, 150, random_state=0, with_metrics=False)
        >>> model = FaultPredictor(states={"failure": ["error", "timeout", "down"]},
        ...     columns={"entity": "handler", "time": "timestamp", "event": "event_type"})
        >>> result = backtest(hist, model, horizon=3, cutoffs=3, baselines=["climatology"])
        >>> table = result.summary()
        >>> table[["model", "horizon"]].drop_duplicates().shape
        (6, 2)
        >>> bool((table["bss_lo"] <= table["bss"]).all() and (table["bss"] <= table["bss_hi"]).all())
        True
        """
        mean = self.metrics[self.metrics["fold"] == "mean"]
        cols = ["model", "horizon", "n", "n_pos", "brier", "bss", "roc_auc",
                "average_precision", "ece", "log_loss", "precision", "recall", "f1",
                "mean_lead_time", "note"]
        table = mean[cols].reset_index(drop=True)
        if intervals and len(self.intervals):
            iv = self.intervals[self.intervals["metric"].isin(["bss", "roc_auc"])]
            wide = iv.pivot_table(index=["model", "horizon"], columns="metric",
                                  values=["lo", "hi"], dropna=False)
            wide.columns = [f"{m}_{b}" for b, m in wide.columns]
            wide = wide[[c for c in ("bss_lo", "bss_hi", "roc_auc_lo", "roc_auc_hi") if c in wide]]
            table = table.merge(wide.reset_index(), on=["model", "horizon"], how="left")
            table = table[[c for c in table.columns if c != "note"] + ["note"]]
        return table

    def rescore(self, *, n_boot: int | None = None, confidence: float | None = None,
                random_state=0) -> "BacktestResult":
        """A result scored again from :attr:`predictions` (after concatenating the
        predictions of runs on the same origins, say), with new bootstrap settings.

        The metrics, intervals and comparisons are recomputed; the predictions,
        folds and params are kept (``n_boot`` and ``confidence`` updated).
        """
        from ._bootstrap import score_predictions

        p = self.params
        n_boot = int(p.get("n_boot", 200) if n_boot is None else n_boot)
        confidence = float(p.get("confidence", 0.95) if confidence is None else confidence)
        pred = self.predictions
        if p.get("within") is not None:
            from ._bootstrap import rescore_in_time

            metrics, intervals, comparisons = rescore_in_time(pred, p, n_boot, confidence, random_state)
            return BacktestResult(metrics=metrics, predictions=pred, folds=self.folds,
                                  params={**p, "n_boot": n_boot, "confidence": confidence},
                                  intervals=intervals, comparisons=comparisons)
        H = int(p["horizon"])
        failing = pred["state"].isin(p.get("failure_states", [])).to_numpy()
        d_onset = np.where(failing, H + 1, pred["steps_to_failure"].to_numpy())
        names = [str(m) for m in pred["model"].cat.categories]
        metrics, intervals, comparisons = score_predictions(
            pred["fold"].to_numpy(np.int64), pred["horizon"].to_numpy(np.int64),
            pred["model"].cat.codes.to_numpy().astype(np.int64), pred["p"].to_numpy(),
            pred["y"].to_numpy(), pred["base_rate"].to_numpy(), pred["entity_code"].to_numpy(),
            pred["origin_step"].to_numpy(np.int64), d_onset, names,
            n_folds=int(p["n_folds"]), horizon=H, threshold=float(p["threshold"]),
            n_boot=n_boot, confidence=confidence, random_state=random_state)
        return BacktestResult(metrics=metrics, predictions=pred, folds=self.folds,
                              params={**p, "n_boot": n_boot, "confidence": confidence},
                              intervals=intervals, comparisons=comparisons)

    def pooled(self) -> pd.DataFrame:
        """Scores of every fold's forecasts pooled into one set, per (model, horizon).

        Pooling mixes folds with different base rates, so ranking scores
        mislead: a constant forecast (climatology) has a pooled ROC AUC below
        0.5 wherever the base rate falls over time, although its AUC is 0.5 in
        every fold. Use :meth:`summary` (per-fold means) to compare models.
        """
        pred = self.predictions
        names = self.models
        H = int(self.params["horizon"])
        code = (pred["horizon"].to_numpy() - 1) * len(names) + \
            pred["model"].cat.codes.to_numpy().astype(np.int64)
        scores = _metrics.score_groups(
            code, pred["p"].to_numpy(), pred["y"].to_numpy(),
            base_rate=np.nan_to_num(pred["base_rate"].to_numpy(), nan=0.0),
            threshold=self.params["threshold"], n_groups=H * len(names))
        g = np.arange(H * len(names))
        head = pd.DataFrame({"model": np.asarray(list(pred["model"].cat.categories),
                                                 dtype=object)[g % len(names)],
                             "horizon": g // len(names) + 1})
        out = pd.concat([head, scores.reset_index(drop=True)], axis=1)
        return out[out["n"] > 0].reset_index(drop=True)

    def verdict(self, metric: str = "bss", model: str | None = None) -> str:
        """A plain sentence per baseline: does the Markov model beat it?

        Compares the per-fold means of ``metric`` at every horizon through the
        bootstrap interval of their difference (:attr:`comparisons`): the
        model *beats* (or *loses to*) a baseline where the interval lies on
        one side of zero, and *ties with* it where the interval covers zero.
        Higher is better for ``bss``, ``roc_auc``, ``average_precision``,
        ``precision``, ``recall`` and ``f1``; lower for ``brier``, ``ece`` and
        ``log_loss``. ``model`` defaults to the first Markov model scored.
        """
        comp = self.comparisons
        if model is None:
            model = next((m for m in self.models if m.startswith(MODEL)), None)
        if model is None or comp.empty or model not in set(comp["model"]):
            return "the Markov model was not scored"
        if metric not in set(comp["metric"]):
            raise ValueError(f"metric {metric!r} has no comparisons; the metrics are "
                             f"{sorted(set(comp['metric']))}")
        level = int(round(100 * self.params.get("confidence", 0.95)))
        lines = []
        sel = comp[(comp["model"] == model) & (comp["metric"] == metric)]
        for base, rows in sel.groupby("other", sort=False):
            defined = rows[rows["verdict"] != "undefined"]
            if defined.empty:
                lines.append(f"{model} vs {base}: {metric} undefined at every horizon")
                continue
            parts = []
            for word, key in (("beats", "beats"), ("ties with", "ties"),
                              ("loses to", "loses")):
                hs = defined["horizon"][defined["verdict"] == key]
                if len(hs):
                    where = ("at every horizon" if len(hs) == len(rows) else
                             f"at horizon{'s' if len(hs) > 1 else ''} {_ranges(hs)}")
                    parts.append(f"{word} {base} {where}")
            lines.append(f"{model} " + "; ".join(parts) + f" on {metric} (per-fold means, "
                         f"{level}% interval of the difference)")
        return "\n".join(lines)

    def calibration(self, model: str = MODEL, horizon: int = 1, n_bins: int = 10) -> pd.DataFrame:
        """Reliability table of one model at one horizon, over the forecasts of every fold."""
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
        steps ahead (see :func:`markovfault.backtest._metrics.lead_times`)."""
        if self.params.get("within") is not None:
            raise ValueError("lead times count steps: a backtest of time horizons has none "
                             "(backtest(..., horizon=H) for step horizons)")
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
        within = self.params.get("within")
        if within is not None and horizon not in within:
            raise ValueError(f"horizon {horizon!r} was not scored; the time horizons are {list(within)}")
        sel = pred[(pred["model"] == model) & (pred["horizon"] == horizon)]
        if sel.empty and model not in set(pred["model"]):
            raise ValueError(f"model {model!r} is not in this result; models: {self.models}")
        return sel

    def to_dir(self, path) -> Path:
        """Write metrics.csv, intervals.csv, comparisons.csv, folds.csv, predictions.parquet,
        report.md and PNG figures (not for time horizons: the figures are drawn per step horizon)."""
        from .. import plotting

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.metrics.to_csv(path / "metrics.csv", index=False)
        self.intervals.to_csv(path / "intervals.csv", index=False)
        self.comparisons.to_csv(path / "comparisons.csv", index=False)
        self.folds.to_csv(path / "folds.csv", index=False)
        self.predictions.to_parquet(path / "predictions.parquet", index=False)
        # the figures are drawn per step horizon; a backtest of time horizons writes its tables only
        figures = [] if self.params.get("within") is not None else \
            plotting.save_backtest_figures(self, path)
        (path / "report.md").write_text(self.report(figures=[f.name for f in figures]))
        return path

    def report(self, figures: Sequence[str] = ()) -> str:
        """A Markdown report: settings, the verdict, the pooled table, the folds."""
        p = self.params
        lines = [
            "# markovfault backtest",
            "",
            (f"- time horizons {', '.join(map(str, p['within']))} ({p.get('time_model')} against "
             f"{', '.join(m for m in p.get('time_models', {}).values() if m != p.get('time_model'))})"
             if p.get("within") is not None else f"- horizon 1..{p['horizon']}")
            + f", {p['n_folds']} folds ({p['window']} window"
            + (f" of {p['window_size']}" if p.get("window_size") is not None else "")
            + f"), origins: {p['origins']}, alert threshold {p['threshold']}",
            f"- models: {', '.join(self.models)}",
            ("- censored origins (the histories end before the horizon, none failed): "
             if p.get("within") is not None else
             "- censored origins (fewer than h steps observed, none failed): ")
            + f"{int(self.folds['n_censored'].sum())} of "
            f"{int(self.folds['n_origins'].sum())} (origin, horizon) pairs",
            "",
            "## Verdict",
            "",
            *[f"- {line}" for line in self.verdict().splitlines()],
            *[f"- {line}" for line in self.verdict("roc_auc").splitlines()],
            "",
            "## Per-fold means (weighted by scored origins; 95% bootstrap intervals over entities)"
            .replace("95", str(int(round(100 * p.get("confidence", 0.95))))),
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
        if self.params.get("within") is not None:  # time horizons: the first and the last label
            labels = list(self.params["within"])
            ends = list(dict.fromkeys([labels[0], labels[-1]]))
        else:
            ends = sorted({int(table["horizon"].min()), int(table["horizon"].max())})
        table = table[table["horizon"].isin(ends)].drop(columns=["note"]).round(4)
        lines = self.verdict().splitlines() + self.verdict("roc_auc").splitlines()
        return (f"<p><b>{escape(repr(self))}</b></p><ul>"
                + "".join(f"<li>{escape(line)}</li>" for line in lines)
                + f"</ul><p>per-fold means, horizons {' and '.join(map(str, ends))} "
                "(all horizons: <code>result.summary()</code>)</p>"
                + table.to_html(index=False, na_rep=""))


def _ranges(values) -> str:
    if not all(isinstance(v, (int, np.integer)) for v in values):  # time horizons: their labels
        return ", ".join(str(v) for v in values)
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
