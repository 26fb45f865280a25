"""The run's numbers for Prometheus: :func:`prometheus_text` renders a partition in the text exposition format
(version 0.0.4, what node_exporter's textfile collector reads) and :func:`write_prometheus` writes it, atomically,
beside the partition (``runs/<run_id>/forecast.prom``) and at ``[job] prometheus`` (the latest run's)."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ._checkpoint import checkpoint
from ._constants import RUNS
from ._storage import fsync_dir, write_bytes_atomic, writing

if TYPE_CHECKING:
    from ._config import JobConfig

logger = logging.getLogger("markovfault.job")

#: the name of the textfile beside each partition
PROM_FILE = "forecast.prom"


def escape_label(value: str) -> str:
    r"""A label value as the text format writes it: backslash, double quote and newline escaped.

    Examples
    --------
    >>> print(escape_label('say "hi"\\now\n'))
    say \"hi\"\\now\n
    """
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value: the shortest text that reads back as the same float; ``NaN``, ``+Inf``, ``-Inf``.

    Examples
    --------
    >>> format_value(0.1), format_value(3), format_value(float("nan")), format_value(float("-inf"))
    ('0.1', '3.0', 'NaN', '-Inf')
    """
    v = float(value)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v)


def _family(lines: list, name: str, help_text: str, samples) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} gauge")
    for labels, value in samples:
        body = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items())
        lines.append(f"{name}{{{body}}} {format_value(value)}" if body else f"{name} {format_value(value)}")


def prometheus_text(table: pd.DataFrame, *, finished_at: float, duration: float, rows_counted: int) -> str:
    """The partition ``table`` (one row per entity and horizon) as Prometheus gauges.

    ``markovfault_p_fail{entity,horizon}`` (and ``_lo``, ``_hi`` for the rows with bounds),
    ``markovfault_alert{entity,horizon}`` (0 or 1), ``markovfault_alerts`` (handlers with an alert at some
    horizon), ``markovfault_entities``, ``markovfault_rows_counted``, ``markovfault_run_duration_seconds`` and
    ``markovfault_last_success_timestamp_seconds`` (``finished_at``, seconds since the epoch); horizons are
    labelled as in the partition (``"10"``, ``"15min"``).

    Examples
    --------
    >>> table = pd.DataFrame({"entity": ['pay"1'], "horizon": [5], "p_fail": [0.25], "p_fail_lo": [0.1],
    ...                       "p_fail_hi": [0.4], "alert": [False]})
    >>> text = prometheus_text(table, finished_at=1767225600.0, duration=1.5, rows_counted=120)
    >>> print("\\n".join(l for l in text.splitlines() if not l.startswith("#")))
    markovfault_p_fail{entity="pay\\"1",horizon="5"} 0.25
    markovfault_p_fail_lo{entity="pay\\"1",horizon="5"} 0.1
    markovfault_p_fail_hi{entity="pay\\"1",horizon="5"} 0.4
    markovfault_alert{entity="pay\\"1",horizon="5"} 0.0
    markovfault_alerts 0.0
    markovfault_entities 1.0
    markovfault_rows_counted 120.0
    markovfault_run_duration_seconds 1.5
    markovfault_last_success_timestamp_seconds 1767225600.0
    """
    entity = table["entity"].astype(str).tolist()
    horizon = table["horizon"].astype(str).tolist()
    keys = [{"entity": e, "horizon": h} for e, h in zip(entity, horizon)]
    lines: list[str] = []
    _family(lines, "markovfault_p_fail", "P(fail within the horizon) of each handler, from its last state.",
            zip(keys, table["p_fail"].to_numpy(np.float64)))
    for col, what in (("p_fail_lo", "lower"), ("p_fail_hi", "upper")):
        if col not in table:
            continue
        values = table[col].to_numpy(np.float64)
        has = ~np.isnan(values)
        if has.any():
            _family(lines, f"markovfault_{col}", f"The {what} bound of the posterior interval of p_fail.",
                    ((k, v) for k, v, h in zip(keys, values, has) if h))
    alert = table["alert"].to_numpy(bool)
    _family(lines, "markovfault_alert", "1 when the handler's forecast at this horizon passes the threshold.",
            zip(keys, alert.astype(np.float64)))
    n_alerts = len(set(e for e, a in zip(entity, alert) if a))
    _family(lines, "markovfault_alerts", "Handlers with an alert at some horizon.", [({}, n_alerts)])
    _family(lines, "markovfault_entities", "Handlers forecast by the run.", [({}, len(set(entity)))])
    _family(lines, "markovfault_rows_counted", "History rows the run counted into the model.",
            [({}, rows_counted)])
    _family(lines, "markovfault_run_duration_seconds", "Wall-clock seconds the run took up to its forecast.",
            [({}, duration)])
    _family(lines, "markovfault_last_success_timestamp_seconds",
            "When the run that wrote this forecast finished it (seconds since the epoch).", [({}, finished_at)])
    return "\n".join(lines) + "\n"


def write_prometheus(job: JobConfig, run_id: str, text: str, *, latest: bool = True) -> Path:
    """Write ``text`` to ``runs/<run_id>/forecast.prom`` and, when ``latest``, to ``job.prometheus``.

    Each file is replaced atomically (a hidden temporary in the same directory, fsynced, renamed over it), so
    node_exporter reads the old file or the new one, never half of one. Returns the run's file.
    """
    data = text.encode("utf-8")
    run_file = job.output / RUNS / run_id / PROM_FILE
    write_bytes_atomic(run_file, data)
    if latest:
        _write_latest(job.prometheus, data)
    return run_file


def _write_latest(path: Path, data: bytes) -> None:
    """As :func:`~._storage.write_bytes_atomic`, with the crash tests' ``prometheus`` point half-way."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(tmp, "wb") as fh:
                fh.write(data[: len(data) // 2])
                fh.flush()
                checkpoint("prometheus")
                fh.write(data[len(data) // 2:])
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        fsync_dir(path.parent)
