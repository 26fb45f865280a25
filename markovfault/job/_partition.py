"""What a run writes for its as-of: the forecast table (one row per entity and configured horizon, with the
alert, the support of the state and the model version) and its partition ``runs/<run_id>/forecast.{parquet,csv}``,
never half written."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ._checkpoint import checkpoint
from ._config import as_timedelta
from ._constants import RUNS
from ._storage import fsync_dir, writing

if TYPE_CHECKING:
    from ._config import JobConfig

OUTPUT_COLUMNS = ["run_id", "issued_at", "data_cutoff", "entity", "state", "horizon", "p_fail",
                  "p_fail_lo", "p_fail_hi", "alert", "threshold", "n_support", "model_version", "last_seen"]
#: with time horizons: ``horizon`` holds labels ("5", "15min") and ``kind`` says which ("steps" | "time")
TIME_COLUMNS = ["kind", "silent_for"]


def _predictions(model, job: JobConfig, as_of) -> pd.DataFrame:
    """Every entity's forecast at the configured horizons: steps (with their bounds), then time horizons
    (from each entity's silence at ``as_of``; no bounds)."""
    steps = job.step_horizons
    pred = None
    if steps:
        pred = model.predict(None, horizon=max(steps), interval=job.interval, random_state=0)
        pred = pred[pred["horizon"].isin(steps)]
    if not job.time_horizons:
        return pred
    timed = model.predict(None, within=list(job.time_horizons), at=as_of, silence_fails=job.silence_fails)
    timed["p_fail_lo"] = np.nan
    timed["p_fail_hi"] = np.nan
    if pred is None:
        return timed
    pred = pred.assign(horizon=pred["horizon"].astype(str), kind="steps")
    pred = pred.merge(timed[["entity", "silent_for"]].drop_duplicates("entity"), on="entity", how="left")
    both = pd.concat([pred, timed.assign(horizon=timed["horizon"].astype(str))], ignore_index=True)
    order = {str(h): k for k, h in enumerate(job.horizons)}
    both["_k"] = both["horizon"].map(order)
    return both.sort_values(["entity", "_k"], kind="stable").drop(columns="_k").reset_index(drop=True)


def forecast_table(model, job: JobConfig, as_of, run_id: str, version: str,
                   left_out: list | None = None) -> pd.DataFrame:
    """The partition: one row per entity and configured horizon, with the posterior bounds of ``p_fail``
    (``job.interval``, seed 0: a rerun writes the same bounds) and the transitions counted out of each
    entity's chain state (``n_support``); ``alert`` compares ``job.alert_on`` with the threshold.

    Entities silent at ``as_of`` for longer than ``job.silence_limit(...)`` are left out; their names,
    sorted, are appended to ``left_out`` when it is given."""
    pred = _predictions(model, job, as_of)
    timed = bool(job.time_horizons)
    limit = job.silence_limit(isinstance(as_of, int))
    if limit is not None:
        last = pred["as_of"]
        if isinstance(as_of, int):
            keep = last.to_numpy() >= as_of - int(limit)
        else:
            keep = (last >= as_of - as_timedelta(limit)).to_numpy()
        if left_out is not None:
            left_out.extend(sorted(pred.loc[~keep, "entity"].astype(str).unique()))
        pred = pred[keep]
    last = pred["as_of"]
    state = pred["state"].astype(str).to_numpy()
    p = pred["p_fail"].to_numpy(np.float64)
    n = len(pred)
    if isinstance(as_of, int):
        issued, last = np.full(n, as_of, dtype=np.int64), last.to_numpy(np.int64)
    else:
        issued, last = pd.Series([as_of] * n, dtype="datetime64[ns, UTC]"), last.dt.as_unit("ns")
    out = pd.DataFrame({
        "run_id": np.full(n, run_id, dtype=object),
        "issued_at": np.asarray(issued) if isinstance(as_of, int) else issued.array,
        "data_cutoff": None,
        "entity": pred["entity"].astype(str).to_numpy(dtype=object),
        "state": state.astype(object),
        "horizon": (pred["horizon"].astype(str).to_numpy(dtype=object) if timed
                    else pred["horizon"].to_numpy(np.int64)),
        "p_fail": p,
        "p_fail_lo": pred["p_fail_lo"].to_numpy(np.float64),
        "p_fail_hi": pred["p_fail_hi"].to_numpy(np.float64),
        "alert": pred[job.alert_on].to_numpy(np.float64) >= job.threshold,
        "threshold": np.full(n, job.threshold),
        "n_support": pred["n_support"].to_numpy(np.int64),
        "model_version": np.full(n, version, dtype=object),
        "last_seen": last if isinstance(as_of, int) else last.array,
    })
    out["data_cutoff"] = out["issued_at"]
    names = ["run_id", "entity", "state", "model_version"]
    columns = OUTPUT_COLUMNS
    if timed:
        out["kind"] = pred["kind"].astype(str).to_numpy(dtype=object)
        out["silent_for"] = pred["silent_for"].to_numpy()
        names, columns = names + ["horizon", "kind"], OUTPUT_COLUMNS + TIME_COLUMNS
    for name in names:
        out[name] = out[name].astype("str")
    return out.reset_index(drop=True)[columns]


def write_partition(job: JobConfig, run_id: str, table: pd.DataFrame) -> Path:
    """Write ``runs/<run_id>/forecast.{parquet,csv}``; never half a partition.

    A new partition is written in a hidden directory, then renamed into
    place. An existing one (the same as-of again) is replaced file by file,
    each file atomically.
    """
    runs = job.output / RUNS
    final = runs / run_id
    tmp = runs / f".{run_id}.{os.getpid()}.tmp"
    with writing(final):
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        with open(tmp / "forecast.parquet", "wb") as fh:
            table.to_parquet(fh, index=False)
            fh.flush()
            os.fsync(fh.fileno())
        checkpoint("output")
        with open(tmp / "forecast.csv", "w", newline="") as fh:
            table.to_csv(fh, index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ")
            fh.flush()
            os.fsync(fh.fileno())
        fsync_dir(tmp)
        if final.is_dir():
            for name in ("forecast.parquet", "forecast.csv"):
                os.replace(tmp / name, final / name)
            tmp.rmdir()
            fsync_dir(final)
        else:
            os.rename(tmp, final)
        fsync_dir(runs)
    return final
