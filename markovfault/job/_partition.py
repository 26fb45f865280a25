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
from ._constants import RUNS
from ._storage import fsync_dir, writing

if TYPE_CHECKING:
    from ._config import JobConfig

OUTPUT_COLUMNS = ["run_id", "issued_at", "data_cutoff", "entity", "state", "horizon", "p_fail",
                  "p_fail_lo", "p_fail_hi", "alert", "threshold", "n_support", "model_version", "last_seen"]


def forecast_table(model, job: JobConfig, as_of, run_id: str, version: str) -> pd.DataFrame:
    """The partition: one row per entity and configured horizon, with the posterior bounds of ``p_fail``
    (``job.interval``, seed 0: a rerun writes the same bounds) and the transitions counted out of each
    entity's chain state (``n_support``); ``alert`` compares ``job.alert_on`` with the threshold."""
    pred = model.predict(None, horizon=max(job.horizons), interval=job.interval, random_state=0)
    pred = pred[pred["horizon"].isin(job.horizons)]
    last = pred["as_of"]
    if job.max_silence is not None:
        if isinstance(as_of, int):
            pred = pred[last.to_numpy() >= as_of - int(job.max_silence)]
        else:
            pred = pred[last >= as_of - pd.Timedelta(job.max_silence)]
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
        "horizon": pred["horizon"].to_numpy(np.int64),
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
    for name in ("run_id", "entity", "state", "model_version"):
        out[name] = out[name].astype("str")
    return out.reset_index(drop=True)[OUTPUT_COLUMNS]


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
