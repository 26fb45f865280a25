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
        >>> from markovfault import FaultPredictor, backtest
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
        steps ahead (see :func:`markovfault.backtest._metrics.lead_times`)."""
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
        from .. import plotting

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
