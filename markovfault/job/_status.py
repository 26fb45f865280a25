"""``markovfault status``: what the job's output directory says about its last run (:func:`job_status`: the run,
its age, its alerts, the handlers it left out) and that as a readable table (:func:`format_status`)."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import pandas as pd

from ..exceptions import NoInputError
from ._config import JobConfig, load_job_config
from ._constants import RUNS, WATERMARK
from ._watermark import read_watermark


def job_status(config, *, now=None) -> dict:
    """The job's last committed run, read from its output directory (nothing is written).

    Parameters
    ----------
    config : JobConfig, str or Path
        The job, or its TOML config file.
    now : datetime, optional
        The wall clock the ages are measured at (default: now).

    Returns
    -------
    dict
        ``output``; ``last_run`` (``run_id``, ``data_cutoff``, ``finished_at``, ``model``, ``refit``,
        ``rows_counted``, ``entities``, ``alerts``); ``age_s`` (seconds since it finished) and
        ``data_age_s`` (since its data cutoff; None for integer time); ``runs_kept``; ``alerts``, one dict
        per alerting handler and horizon of its partition (``entity``, ``horizon``, ``state``, ``p_fail``,
        ``p_fail_lo``, ``p_fail_hi``), riskiest first; ``left_out`` (``count``, ``max_silence``,
        ``entities``; ``count`` None when the run did not record it).

    Raises
    ------
    NoInputError
        No run has been committed yet.
    ModelFileError
        The watermark is damaged.
    """
    job = config if isinstance(config, JobConfig) else load_job_config(config)
    wm = read_watermark(job)
    if wm is None or not wm["runs"]:
        raise NoInputError(f"{job.output} holds no committed run yet (no {WATERMARK}); run "
                           "`markovfault forecast --config JOB` first.")
    now = _dt.datetime.now(_dt.timezone.utc) if now is None else pd.Timestamp(now).to_pydatetime()
    run = max(wm["runs"], key=lambda r: r["as_of"])
    integer = wm.get("time_kind") == "integer"
    finished = pd.Timestamp(run["finished_at"]) if run.get("finished_at") else None
    age = None if finished is None else round((pd.Timestamp(now) - finished).total_seconds(), 3)
    data_age = None if integer else round(
        (pd.Timestamp(now) - pd.Timestamp(int(run["as_of"]), tz="UTC")).total_seconds(), 3)
    limit = job.silence_limit(integer)
    return {
        "output": str(job.output),
        "last_run": {k: run.get(k) for k in ("run_id", "data_cutoff", "finished_at", "model", "refit",
                                             "rows_counted", "entities", "alerts")},
        "age_s": age,
        "data_age_s": data_age,
        "runs_kept": len(wm["runs"]),
        "alerts": _alerts(job.output / RUNS / run["run_id"] / "forecast.parquet"),
        "left_out": {"count": run.get("left_out"), "max_silence": limit,
                     "entities": list(run.get("left_out_entities", []))},
    }


def _alerts(path: Path) -> list:
    """The alerting rows of a partition, riskiest first (an empty list when it is gone)."""
    try:
        table = pd.read_parquet(path, columns=["entity", "horizon", "state", "p_fail", "p_fail_lo",
                                               "p_fail_hi", "alert"])
    except (OSError, ValueError):
        return []
    table = table[table["alert"]].drop(columns="alert")
    table = table.sort_values(["p_fail", "entity"], ascending=[False, True], kind="stable")
    out = []
    for row in table.itertuples(index=False):
        out.append({"entity": str(row.entity),
                    "horizon": row.horizon if isinstance(row.horizon, str) else int(row.horizon),
                    "state": str(row.state), "p_fail": float(row.p_fail),
                    "p_fail_lo": None if pd.isna(row.p_fail_lo) else float(row.p_fail_lo),
                    "p_fail_hi": None if pd.isna(row.p_fail_hi) else float(row.p_fail_hi)})
    return out


def _age(seconds) -> str:
    if seconds is None:
        return "unknown"
    s = int(abs(seconds))
    d, h, m = s // 86400, s % 86400 // 3600, s % 3600 // 60
    text = f"{d}d {h}h" if d else f"{h}h {m}min" if h else f"{m}min {s % 60}s"
    return text + (" ago" if seconds >= 0 else " ahead")


def format_status(status: dict, top: int = 20) -> str:
    """:func:`job_status` as the table ``markovfault status`` prints."""
    run = status["last_run"]
    lines = [
        f"output      {status['output']}",
        f"last run    {run['run_id']}{' (refit)' if run.get('refit') else ''}, data cutoff {run['data_cutoff']}",
        f"finished    {run.get('finished_at') or 'unknown'} ({_age(status['age_s'])})"
        + ("" if status["data_age_s"] is None else f"; its data cutoff {_age(status['data_age_s'])}"),
        f"model       {run['model']}: {run.get('rows_counted')} rows counted, {run.get('entities')} handlers "
        f"forecast; {status['runs_kept']} runs kept",
    ]
    alerts = status["alerts"]
    n_alerting = len({a["entity"] for a in alerts})
    lines.append(f"alerts      {n_alerting} handler{'s' if n_alerting != 1 else ''}"
                 + (f" ({len(alerts)} handler-horizons)" if alerts else ""))
    if alerts:
        table = pd.DataFrame(alerts[:top])
        lines += ["  " + line for line in table.to_string(index=False, float_format="{:.3f}".format).splitlines()]
        if len(alerts) > top:
            lines.append(f"  ... and {len(alerts) - top} more (--json lists them all)")
    left = status["left_out"]
    if left["count"] is None:
        lines.append("left out    not recorded by this run")
    else:
        why = (f"silent for longer than max_silence = {left['max_silence']}" if left["max_silence"] is not None
               else "no max_silence")
        names = ", ".join(left["entities"][:top])
        more = left["count"] - min(len(left["entities"]), top)
        lines.append(f"left out    {left['count']} handler{'s' if left['count'] != 1 else ''} ({why})"
                     + (f": {names}" if names else "") + (f" and {more} more" if more > 0 and names else ""))
    return "\n".join(lines)
