"""``markovfault report``: the job's output directory as one self-contained static HTML page
(:func:`build_report`, :func:`write_report`): the riskiest handlers of the latest run, each top handler's risk
over the kept runs (inline SVG), why (``explain`` on the latest run's model version, from the steps it
remembers) and a backtest's summary. No script, no external file: it renders with JavaScript off and offline.

Stable hooks for tests and scrapers: ``id="summary"``, ``id="riskiest"`` (rows ``tr.handler`` with
``data-entity``, ``data-p-fail``, ``data-p-fail-lo``, ``data-p-fail-hi``, ``data-alert``; the shown value in
``td.p-fail``), ``id="history"`` (``figure.risk-history[data-entity]``), ``id="why"``
(``div.explanation[data-entity]``, its paths in ``td.path``), ``id="backtest"``.
"""

from __future__ import annotations

import html
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..exceptions import MarkovFaultError, NoInputError, UsageError
from ._constants import RUNS, WATERMARK
from ._storage import write_bytes_atomic
from ._watermark import read_watermark_at

if TYPE_CHECKING:
    from ._config import JobConfig

logger = logging.getLogger("markovfault.job")

#: the report's file name in the output directory, when no ``--out`` is given
REPORT_FILE = "report.html"
_STEPS_DEFAULT = 10  # explanations are in steps: without a step horizon, this many


@dataclass
class _Runs:
    """What the report reads from an output directory."""

    output: Path
    model_dir: Path
    watermark: dict
    runs: list  # the kept runs with a partition on disk, oldest first
    frames: dict  # run_id -> partition


def _read_runs(output: Path, model_dir: Path | None = None) -> _Runs:
    output = Path(output)
    if not output.is_dir():
        raise NoInputError(f"the job's output directory {output} does not exist; run `markovfault forecast` first.")
    wm = read_watermark_at(output)
    if wm is None or not wm["runs"]:
        raise NoInputError(f"{output} holds no run yet (no {WATERMARK}); run `markovfault forecast` first.")
    runs, frames = [], {}
    for run in sorted(wm["runs"], key=lambda r: r["as_of"]):
        path = output / RUNS / run["run_id"] / "forecast.parquet"
        if path.exists():
            runs.append(run)
            frames[run["run_id"]] = pd.read_parquet(path)
    if not runs:
        raise NoInputError(f"{output}: the watermark lists runs but none of their partitions is on disk.")
    return _Runs(output, Path(model_dir) if model_dir is not None else output, wm, runs, frames)


def _headline(frame: pd.DataFrame, horizon=None) -> str:
    """The horizon the page ranks by: ``horizon`` if given, else the largest in steps, else the last."""
    labels = list(dict.fromkeys(frame["horizon"].astype(str)))
    if not labels:  # every handler left out (max_silence): nothing to rank
        return "" if horizon is None else str(horizon)
    if horizon is not None:
        if str(horizon) not in labels:
            raise UsageError(f"--horizon {horizon}: the latest partition has the horizons {', '.join(labels)}.")
        return str(horizon)
    kind = frame["kind"].astype(str) if "kind" in frame else pd.Series("steps", index=frame.index)
    steps = sorted({int(h) for h, k in zip(frame["horizon"].astype(str), kind) if k == "steps"})
    return str(steps[-1]) if steps else labels[-1]


def _fmt(p) -> str:
    return "–" if p is None or (isinstance(p, float) and math.isnan(p)) else f"{float(p):.3f}"


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _horizon_text(label: str) -> str:
    return (f"{label} step" + ("" if label == "1" else "s")) if label.isdigit() else label


# ----------------------------------------------------------------------------- sections
def _riskiest(frame: pd.DataFrame, label: str, top: int) -> tuple[str, pd.DataFrame]:
    at = frame[frame["horizon"].astype(str) == label]
    at = at.sort_values(["p_fail", "entity"], ascending=[False, True], kind="stable").head(top)
    others = [h for h in dict.fromkeys(frame["horizon"].astype(str)) if h != label]
    wide = frame.assign(_h=frame["horizon"].astype(str)).pivot_table(
        index="entity", columns="_h", values="p_fail", aggfunc="first")
    alerts = frame.groupby("entity")["alert"].any()
    head = ("<tr><th>#</th><th>handler</th><th>state</th>"
            f"<th>P(fail within {_e(_horizon_text(label))})</th><th>interval</th>"
            + "".join(f"<th>{_e(_horizon_text(h))}</th>" for h in others)
            + "<th>alert</th><th>support</th><th>last seen</th></tr>")
    rows = []
    for rank, r in enumerate(at.itertuples(index=False), start=1):
        lo, hi = float(r.p_fail_lo), float(r.p_fail_hi)
        has = not (math.isnan(lo) or math.isnan(hi))
        alert = bool(r.alert)
        cls = "handler alert" if alert else "handler"
        width = max(0.0, min(1.0, float(r.p_fail))) * 100
        rows.append(
            f'<tr class="{cls}" data-entity="{_e(r.entity)}" data-p-fail="{float(r.p_fail)!r}"'
            + (f' data-p-fail-lo="{lo!r}" data-p-fail-hi="{hi!r}"' if has else "")
            + f' data-alert="{str(alert).lower()}" data-any-alert="{str(bool(alerts.get(r.entity))).lower()}">'
            f"<td>{rank}</td><td class=\"entity\">{_e(r.entity)}</td><td class=\"state\">{_e(r.state)}</td>"
            f'<td class="p-fail"><span class="bar" style="width:{width:.1f}px"></span>{_fmt(r.p_fail)}</td>'
            f'<td class="interval">{f"{_fmt(lo)}–{_fmt(hi)}" if has else "–"}</td>'
            + "".join(f"<td>{_fmt(wide.loc[r.entity, h]) if h in wide.columns else '–'}</td>" for h in others)
            + f'<td class="alert-cell">{"ALERT" if alert else ""}</td>'
            f"<td>{int(r.n_support)}</td><td>{_e(_when(r.last_seen))}</td></tr>")
    body = "\n".join(rows) if rows else '<tr><td colspan="9">no handler forecast</td></tr>'
    return (f'<section id="riskiest"><h2>The riskiest handlers now</h2>'
            f"<p>Ranked by P(fail within {_e(_horizon_text(label))}) from each handler's last counted state; "
            "the interval is the partition's posterior interval where it has one.</p>"
            f'<table class="risk"><thead>{head}</thead><tbody>\n{body}\n</tbody></table></section>'), at


def _when(value) -> str:
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _sparkline(points: list, threshold: float, width: int = 360, height: int = 110) -> str:
    """An inline SVG of one handler's p_fail over the runs: the line, its interval band, the threshold."""
    pad_l, pad_r, pad_t, pad_b = 34, 8, 8, 20
    w, h = width - pad_l - pad_r, height - pad_t - pad_b
    n = len(points)

    def x(i):
        return pad_l + (w * i / (n - 1) if n > 1 else w / 2)

    def y(p):
        return pad_t + h * (1 - max(0.0, min(1.0, p)))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img">',
             f'<rect x="{pad_l}" y="{pad_t}" width="{w}" height="{h}" class="plot"/>']
    for tick in (0, 0.5, 1):
        parts.append(f'<line x1="{pad_l}" x2="{pad_l + w}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" class="grid"/>'
                     f'<text x="{pad_l - 4}" y="{y(tick) + 4:.1f}" class="axis" text-anchor="end">{tick:g}</text>')
    band = [(i, lo, hi) for i, (_, _, lo, hi) in enumerate(points) if not (math.isnan(lo) or math.isnan(hi))]
    if len(band) > 1:
        upper = " ".join(f"{x(i):.1f},{y(hi):.1f}" for i, _, hi in band)
        lower = " ".join(f"{x(i):.1f},{y(lo):.1f}" for i, lo, _ in reversed(band))
        parts.append(f'<polygon points="{upper} {lower}" class="band"/>')
    parts.append(f'<line x1="{pad_l}" x2="{pad_l + w}" y1="{y(threshold):.1f}" y2="{y(threshold):.1f}" '
                 'class="threshold"/>')
    line = [(i, p) for i, (_, p, _, _) in enumerate(points) if not math.isnan(p)]
    if len(line) > 1:
        parts.append('<polyline class="risk" points="'
                     + " ".join(f"{x(i):.1f},{y(p):.1f}" for i, p in line) + '"/>')
    for i, p in line:
        run = points[i][0]
        parts.append(f'<circle cx="{x(i):.1f}" cy="{y(p):.1f}" r="2.5" class="point">'
                     f"<title>{_e(run)}: {_fmt(p)}</title></circle>")
    if n:
        parts.append(f'<text x="{pad_l}" y="{height - 5}" class="axis">{_e(points[0][0])}</text>')
        if n > 1:
            parts.append(f'<text x="{pad_l + w}" y="{height - 5}" class="axis" text-anchor="end">'
                         f"{_e(points[-1][0])}</text>")
    parts.append("</svg>")
    return "".join(parts)


def _history(runs: _Runs, entities: list, label: str, threshold: float) -> str:
    figures = []
    for entity in entities:
        points = []
        for run in runs.runs:
            f = runs.frames[run["run_id"]]
            row = f[(f["entity"].astype(str) == entity) & (f["horizon"].astype(str) == label)]
            if len(row):
                r = row.iloc[0]
                points.append((run["run_id"], float(r["p_fail"]), float(r["p_fail_lo"]), float(r["p_fail_hi"])))
            else:
                points.append((run["run_id"], math.nan, math.nan, math.nan))
        figures.append(f'<figure class="risk-history" data-entity="{_e(entity)}">{_sparkline(points, threshold)}'
                       f"<figcaption>{_e(entity)}</figcaption></figure>")
    return ('<section id="history"><h2>Risk over the kept runs</h2>'
            f"<p>P(fail within {_e(_horizon_text(label))}) at each of the {len(runs.runs)} kept runs (oldest left); "
            "the shaded band is the posterior interval, the dashed line the alert threshold.</p>"
            f'<div class="charts">{"".join(figures)}</div></section>')


def _explanations(runs: _Runs, entities: list, label: str, frame: pd.DataFrame, n_paths: int = 5) -> str:
    latest = runs.runs[-1]
    path = runs.model_dir / latest["model"]
    intro = '<section id="why"><h2>Why</h2>'
    if not entities:
        return intro + '<p class="none">No handler to explain.</p></section>'
    if not path.exists():
        return intro + (f'<p class="none">The model version {_e(latest["model"])} of the latest run is no longer '
                        "kept: no explanation.</p></section>")
    from ..explain import explain
    from ..persistence import load_model

    model = load_model(path)
    steps = sorted({int(h) for h in frame["horizon"].astype(str) if h.isdigit()}
                   if "kind" not in frame else
                   {int(h) for h, k in zip(frame["horizon"].astype(str), frame["kind"]) if k == "steps"})
    k = int(label) if label.isdigit() else (steps[-1] if steps else _STEPS_DEFAULT)
    blocks = [f"<p>The most likely paths into failure within {k} steps and the events that add most to the "
              f"risk (Shapley values), from each handler's last step, on the model version {_e(latest['model'])}"
              " (<code>markovfault explain</code> says more).</p>"]
    for entity in entities:
        try:
            why = explain(model, entity=entity, horizon=k, n_paths=n_paths)
        except (MarkovFaultError, ValueError, KeyError) as exc:
            logger.info("no explanation of %s: %s", entity, exc, extra={"event": "report_no_explanation"})
            blocks.append(f'<div class="explanation" data-entity="{_e(entity)}"><h3>{_e(entity)}</h3>'
                          f'<p class="none">No explanation: {_e(exc)}</p></div>')
            continue
        table = why.paths.table.head(n_paths)
        rows = "".join(f'<tr><td>{rank}</td><td class="path">{_e(r.path)}</td><td>{r.probability:.4f}</td>'
                       f"<td>{r.share:.1%}</td></tr>" for rank, r in table.iterrows())
        paths = (f'<table class="paths"><thead><tr><th>#</th><th>path</th><th>p</th><th>share</th></tr></thead>'
                 f"<tbody>{rows}</tbody></table>" if rows else
                 f'<p class="none">No path reaches a failure state within {k} steps.</p>')
        events = why.event_table()
        if "shapley" in events:
            events = events.head(5)
            erows = "".join(f'<tr><td class="event">{_e(name)}</td><td>{r.shapley:+.4f}</td></tr>'
                            for name, r in events.iterrows())
            events_html = (f'<table class="events"><thead><tr><th>event</th><th>adds to P(fail)</th></tr></thead>'
                           f"<tbody>{erows}</tbody></table>")
        else:
            events_html = ""
        blocks.append(f'<div class="explanation" data-entity="{_e(entity)}" data-p-fail="{float(why.p_fail)!r}">'
                      f"<h3>{_e(entity)} <small>now {_e(why.flux.start_state)}, P(fail within {k} steps) = "
                      f'{why.p_fail:.3f}</small></h3><div class="tables">{paths}{events_html}</div></div>')
    return intro + "".join(blocks) + "</section>"


_BACKTEST_COLUMNS = ["model", "horizon", "n", "n_pos", "brier", "bss", "roc_auc", "average_precision", "ece"]


def _backtest(directory) -> str:
    intro = '<section id="backtest"><h2>Backtest</h2>'
    if directory is None:
        return intro + ('<p class="none">No backtest given (<code>markovfault backtest --out DIR</code>, then '
                        "<code>markovfault report --backtest DIR</code>).</p></section>")
    path = Path(directory) / "metrics.csv"
    if not path.exists():
        raise NoInputError(f"--backtest {directory}: no metrics.csv there (written by `markovfault backtest --out "
                           "DIR`).")
    metrics = pd.read_csv(path)
    cols = [c for c in _BACKTEST_COLUMNS if c in metrics.columns] or list(metrics.columns)
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)

    def cell(v):
        if isinstance(v, (float, np.floating)):
            return "–" if math.isnan(v) else f"{v:.4f}"
        return _e(v)

    rows = "".join(f'<tr data-model="{_e(r["model"]) if "model" in cols else ""}">'
                   + "".join(f"<td>{cell(r[c])}</td>" for c in cols) + "</tr>" for _, r in metrics.iterrows())
    return (intro + f"<p>From {_e(path)}: the pooled scores of each model and horizon (Brier skill score "
            "against climatology, ROC AUC, calibration error).</p>"
            f'<table class="metrics"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></section>')


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1d2330;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 6px;border-bottom:1px solid #dde2ea}
h3{font-size:14px;margin:14px 0 4px}h3 small{font-weight:normal;color:#556}
p{margin:4px 0 8px;color:#3a4150}.none{color:#778}
table{border-collapse:collapse;margin:6px 0}th,td{padding:3px 9px;text-align:left;border-bottom:1px solid #eceff4}
th{background:#f4f6f9;font-weight:600}td.p-fail{font-variant-numeric:tabular-nums;white-space:nowrap}
.bar{display:inline-block;height:9px;background:#e8a33d;margin-right:6px;vertical-align:middle;max-width:100px}
tr.alert td{background:#fde9e7}tr.alert .bar{background:#d2432f}.alert-cell{color:#b3261e;font-weight:700}
#summary{display:flex;gap:14px;flex-wrap:wrap;margin:10px 0}#summary div{background:#f4f6f9;padding:8px 14px;
border-radius:6px}#summary b{display:block;font-size:17px}
.charts{display:flex;flex-wrap:wrap;gap:10px}figure{margin:0;border:1px solid #eceff4;padding:4px}
figcaption{font-size:12px;color:#445;text-align:center}
svg .plot{fill:#fafbfc;stroke:#dde2ea}svg .grid{stroke:#eceff4}svg .axis{font-size:10px;fill:#667}
svg .band{fill:#e8a33d;opacity:.25}svg .risk{fill:none;stroke:#c7661a;stroke-width:1.6}
svg .point{fill:#c7661a}svg .threshold{stroke:#b3261e;stroke-dasharray:4 3}
.explanation{margin-bottom:12px}.explanation .tables{display:flex;gap:22px;align-items:flex-start;flex-wrap:wrap}code{background:#f4f6f9;padding:0 3px}
"""


def build_report(output, *, model_dir=None, backtest=None, horizon=None, top: int = 20, charts: int = 8,
                 explain_top: int = 3) -> str:
    """The HTML page of the job's output directory ``output``.

    Parameters
    ----------
    output : path
        The job's ``[job] output`` directory.
    model_dir : path, optional
        Where the model versions are (``[job] model``'s directory; default ``output``).
    backtest : path, optional
        A directory written by ``markovfault backtest --out DIR`` (its ``metrics.csv``).
    horizon : int or str, optional
        The horizon to rank by (default: the largest in steps, else the longest).
    top, charts, explain_top : int
        Handlers in the table, with a chart, and explained.

    Raises
    ------
    NoInputError
        No such directory, no run yet, no partition on disk, or no ``metrics.csv`` in ``backtest``.
    UsageError
        ``horizon`` is not one of the latest partition's.

    Examples
    --------
    >>> build_report("/nonexistent/out")
    Traceback (most recent call last):
    ...
    markovfault.exceptions.NoInputError: the job's output directory /nonexistent/out does not exist; run `markovfault forecast` first.
    """
    runs = _read_runs(output, model_dir)
    latest = runs.runs[-1]
    frame = runs.frames[latest["run_id"]]
    label = _headline(frame, horizon)
    threshold = float(frame["threshold"].iloc[0]) if len(frame) else 0.5
    table, ranked = _riskiest(frame, label, top)
    entities = [str(e) for e in ranked["entity"]]
    n_alerts = int(frame.loc[frame["alert"].astype(bool), "entity"].nunique())
    summary = (f'<div id="summary"><div>latest run<b id="run-id">{_e(latest["run_id"])}</b></div>'
               f"<div>data cutoff<b>{_e(latest.get('data_cutoff', ''))}</b></div>"
               f'<div>handlers<b id="n-entities">{frame["entity"].nunique()}</b></div>'
               f'<div>alerting<b id="n-alerts">{n_alerts}</b></div>'
               f"<div>threshold<b>{threshold:g}</b></div>"
               f"<div>kept runs<b>{len(runs.runs)}</b></div>"
               f"<div>model<b>{_e(latest['model'])}</b></div></div>")
    sections = [table, _history(runs, entities[:charts], label, threshold),
                _explanations(runs, entities[:explain_top], label, frame), _backtest(backtest)]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>markovfault: {_e(latest['run_id'])}</title>"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<style>{_CSS}</style></head><body>"
            f"<h1>markovfault forecast</h1><p>{_e(runs.output)}: the latest of the job's runs, what it forecasts, "
            "and why.</p>" + summary + "\n".join(sections) + "</body></html>\n")


def write_report(output, out=None, **kwargs) -> Path:
    """Write :func:`build_report` of ``output`` to ``out`` (default ``<output>/report.html``), atomically."""
    page = build_report(output, **kwargs)
    out = Path(out) if out is not None else Path(output) / REPORT_FILE
    write_bytes_atomic(out, page.encode("utf-8"))
    logger.info("report written to %s", out, extra={"event": "report_written", "path": str(out)})
    return out


def report_for_job(job: JobConfig, out=None, **kwargs) -> Path:
    """:func:`write_report` of a job's config: its output directory and its model versions' directory."""
    return write_report(job.output, out, model_dir=job.model_dir, **kwargs)
