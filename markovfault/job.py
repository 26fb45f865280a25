"""The scheduled forecasting job: ``markovfault forecast --config JOB.toml``.

Run it every hour from cron, a systemd timer or a Kubernetes CronJob. Each
run takes a lock, reads only the history rows that are new since the last
successful run, adds them to the model's counts (``partial_fit``; or fits
from scratch with ``refit``), writes a new model version and one forecast
partition, and only then commits the *watermark* that says what has been
counted. A run killed at any instant leaves the previous state intact, and
the next run writes exactly what an uninterrupted run would have.

On disk (``[job] output = "out"``, ``[job] model`` left at its default)::

    out/
      .lock                          the lock (flock); holds the holder's pid while held
      watermark.json                 the commit record: cutoff, model version, files read, runs
      latest -> runs/20260101T020000Z
      runs/20260101T020000Z/forecast.parquet   one partition per run, named by its --as-of
      runs/20260101T020000Z/forecast.csv
      model.npz -> model.20260101T020000Z.npz  the pointer to the current model version
      model.20260101T020000Z.npz               one model version per run

What is new
-----------
The watermark is in *event time*: a run with ``as_of = T`` counts exactly the
rows with ``previous cutoff <= time < T`` and moves the cutoff to ``T``. Each
row is therefore counted at most once, whatever happens to the files. The
list of files (path relative to the input directory, size, mtime, SHA-256,
and the earliest row not yet counted) only decides which files must be parsed
again: new files, files whose size or mtime changed (unless their content
hash is unchanged), and files holding rows at or after the previous cutoff.

* Rows older than the previous cutoff that show up later (a late file, or a
  file that changed after it was read) are not counted, and the log says how
  many; ``--refit`` counts them. Exporters should write each file under a
  hidden or temporary name and rename it when complete.
* A file that cannot be parsed is logged and skipped (not recorded, so it is
  tried again next run); the run still forecasts from the rest and exits 65.

On a Dask cluster
-----------------
With ``[compute] scheduler = "tcp://host:8786"`` (``markovfault[dask]``), a run
that has files to read connects to that scheduler: each due file is hashed,
read and cut to its new rows by a worker (the input must be readable from the
workers), only what happened to each file travels back for the log and the
watermark, and the rows are counted where they lie (``fit``/``partial_fit`` on
a dask DataFrame, one partition per file in file order). The partitions, model
versions and watermark are those of a run without a scheduler; the forecast
itself, from the model's remembered last steps, runs in the job's process. A
run with nothing new contacts no cluster; an unreachable scheduler exits 74.

Exit codes (sysexits): 0 ok (also "nothing new"), 64 bad command line,
65 bad data (some input skipped, or a damaged model or watermark), 66 no
input, 70 internal error, 73 output cannot be written, 74 other I/O error,
75 another run holds the lock (try again later), 78 bad config or a model of
a newer format.

For tests only, two environment variables stop a run at a named point:
``MARKOVFAULT_JOB_CRASH_AT=<point>`` makes the process SIGKILL itself there,
``MARKOVFAULT_JOB_PAUSE_AT=<point>:<dir>`` touches ``<dir>/paused.<pid>`` and
waits (at most a minute) until ``<dir>/release`` exists. The points are
``locked``, ``reading`` (after the first file is read), ``fitted``,
``model_written``, ``output`` (half of the partition written),
``outputs_written`` and ``committed``.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as _dt
import fcntl
import glob
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import sys
import time
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ._version import __version__
from .exceptions import (ConfigError, HistoryError, JobLockedError, MarkovFaultError, ModelFileError,
                         NewerFormatError, NoInputError, OutputError, UsageError)

__all__ = [
    "JobConfig",
    "JobResult",
    "JobLockedError",
    "OutputError",
    "NoInputError",
    "UsageError",
    "NewerFormatError",
    "JsonFormatter",
    "load_job_config",
    "run_job",
    "parse_as_of",
    "format_run_id",
    "describe_model",
    "format_model_report",
    "forecast_command",
]

logger = logging.getLogger("markovfault.job")

EX_OK, EX_USAGE, EX_DATAERR, EX_NOINPUT, EX_SOFTWARE = 0, 64, 65, 66, 70
EX_CANTCREAT, EX_IOERR, EX_TEMPFAIL, EX_CONFIG = 73, 74, 75, 78

WATERMARK = "watermark.json"
LOCK = ".lock"
RUNS = "runs"
LATEST = "latest"
WATERMARK_FORMAT = "markovfault-job-watermark"
WATERMARK_VERSION = 1
OUTPUT_COLUMNS = ["run_id", "issued_at", "data_cutoff", "entity", "state", "horizon", "p_fail",
                  "alert", "threshold", "n_support", "model_version", "last_seen"]

_RUN_ID = r"(?:\d{8}T\d{6}Z|seq-?\d+)"
_RUN_ID_RE = re.compile(rf"^{_RUN_ID}$")
_CRASH_ENV = "MARKOVFAULT_JOB_CRASH_AT"
_PAUSE_ENV = "MARKOVFAULT_JOB_PAUSE_AT"
_current_run: contextvars.ContextVar[str | None] = contextvars.ContextVar("run_id", default=None)


# ----------------------------------------------------------------------- config
@dataclass(frozen=True)
class JobConfig:
    """The ``[job]`` table of a config, resolved, plus the whole config.

    Relative paths are taken relative to the directory of the config file.

    Parameters
    ----------
    input : str
        A directory (its CSV, Parquet and JSON-lines files, not recursive,
        hidden files skipped) or a glob pattern (``**`` allowed).
    output : Path
        The output directory (watermark, lock, ``runs/``).
    model : Path
        The model pointer, a ``.npz`` path; versions are written next to it
        as ``<stem>.<run_id>.npz``. Default ``<output>/model.npz``.
    horizons : tuple of int, default=(1, 5, 10)
    threshold : float, default=0.5
        ``alert = p_fail >= threshold``.
    retention : int, default=168
        Runs (partitions) to keep; a week of hourly runs.
    keep_models : int, default=24
        Model versions to keep (those of the newest runs).
    max_silence : str or int, default=None
        Leave out of the forecast the entities whose last step is older than
        this before the cutoff (``"7d"``; an integer for integer time).
    config : dict
        The whole config: ``[columns]``, ``[states]``, ``[model]``.

    Examples
    --------
    >>> job = JobConfig.from_config(
    ...     {"states": {"kind": "categorical", "failure": ["down"]},
    ...      "job": {"input": "exports/*.csv", "output": "out", "horizons": [1, 6]}},
    ...     base_dir="/srv/job")
    >>> job.input, str(job.model), job.horizons, job.threshold
    ('/srv/job/exports/*.csv', '/srv/job/out/model.npz', (1, 6), 0.5)
    """

    input: str
    output: Path
    model: Path
    horizons: tuple = (1, 5, 10)
    threshold: float = 0.5
    retention: int = 168
    keep_models: int = 24
    max_silence: object = None
    config: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_config(cls, config: Mapping, base_dir=".", source: str = "config") -> "JobConfig":
        """Check the ``[job]`` table of a parsed config and resolve its paths."""
        from .config import check_config

        config = check_config(config, source=source)
        if "job" not in config:
            raise ConfigError(
                f"{source}: a [job] table is needed for `markovfault forecast` "
                "(input, output, horizons, threshold, retention)."
            )
        if "states" not in config:
            raise ConfigError(f"{source}: a [states] table is needed (kind, failure)")
        table = config["job"]
        base = Path(base_dir)

        def path(key, required=True):
            value = table.get(key)
            if value is None and not required:
                return None
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{source}: [job] {key} must be a path (a non-empty string), "
                                  f"got {value!r}.")
            return os.path.join(base, os.path.expanduser(value))

        def integer(key, default, low=1):
            value = table.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{source}: [job] {key} = {value!r} must be an integer >= {low}.")
            return value

        output = Path(os.path.abspath(path("output")))
        model = path("model", required=False)
        model = Path(os.path.abspath(model)) if model else output / "model.npz"
        if model.suffix != ".npz":
            raise ConfigError(f"{source}: [job] model = {table.get('model')!r} must end in .npz "
                              "(it is the pointer to the current model version).")
        horizons = table.get("horizons", [1, 5, 10])
        if isinstance(horizons, int) and not isinstance(horizons, bool):
            horizons = [horizons]
        if (not isinstance(horizons, list) or not horizons
                or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in horizons)):
            raise ConfigError(f"{source}: [job] horizons = {horizons!r} must be a list of "
                              "integers >= 1, e.g. [1, 5, 10].")
        threshold = table.get("threshold", 0.5)
        if (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                or not 0 <= threshold <= 1):
            raise ConfigError(f"{source}: [job] threshold = {threshold!r} must be a number "
                              "in [0, 1].")
        silence = table.get("max_silence")
        if silence is not None:
            if isinstance(silence, str):
                try:
                    pd.Timedelta(silence)
                except ValueError:
                    raise ConfigError(f"{source}: [job] max_silence = {silence!r} is not a "
                                      "duration; use e.g. \"7d\" or \"12h\".") from None
            elif isinstance(silence, bool) or not isinstance(silence, int) or silence < 0:
                raise ConfigError(f"{source}: [job] max_silence = {silence!r} must be a "
                                  "duration such as \"7d\" (or an integer for integer time).")
        # check [columns] and [states] now: a bad config fails before any work
        from .histories import ColumnMap
        from .states import extractor_from_config

        ColumnMap.from_config(config.get("columns"))
        extractor_from_config({k: v for k, v in config["states"].items() if k != "history"})
        return cls(
            input=path("input"),
            output=output,
            model=model,
            horizons=tuple(sorted(set(horizons))),
            threshold=float(threshold),
            retention=integer("retention", 168),
            keep_models=integer("keep_models", 24),
            max_silence=silence,
            config=config,
        )

    @property
    def model_dir(self) -> Path:
        return self.model.parent

    def version_name(self, run_id: str) -> str:
        """The file name of the model version a run writes."""
        return f"{self.model.stem}.{run_id}.npz"


def load_job_config(path) -> JobConfig:
    """Read a job config file (TOML); relative paths are relative to its directory."""
    from .config import load_config

    path = Path(path)
    return JobConfig.from_config(load_config(path), base_dir=path.resolve().parent,
                                 source=str(path))


# ------------------------------------------------------------------------ as-of
def parse_as_of(value):
    """Parse ``--as-of``: an ISO 8601 time (naive = UTC) or an integer sequence number.

    Rows at or after the as-of are not used. Times must be whole seconds.

    Examples
    --------
    >>> parse_as_of("2026-01-01T02:00:00+01:00")
    Timestamp('2026-01-01 01:00:00+0000', tz='UTC')
    >>> parse_as_of("2026-01-01 02:00")
    Timestamp('2026-01-01 02:00:00+0000', tz='UTC')
    >>> parse_as_of("1500")
    1500
    >>> parse_as_of("yesterday")
    Traceback (most recent call last):
    ...
    markovfault.exceptions.UsageError: --as-of 'yesterday' is neither an ISO 8601 time (2026-01-01T10:00:00Z) nor an integer.
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (pd.Timestamp, _dt.datetime)):
        ts = pd.Timestamp(value)
    else:
        text = str(value).strip()
        if re.fullmatch(r"[+-]?[0-9]+", text):
            return int(text)
        try:
            ts = pd.Timestamp(re.sub(r"\s*(UTC|GMT)$", "Z", text))
        except (ValueError, TypeError):
            ts = pd.NaT
        if ts is pd.NaT:
            raise UsageError(f"--as-of {text!r} is neither an ISO 8601 time "
                             "(2026-01-01T10:00:00Z) nor an integer.")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    if ts != ts.floor("s"):
        raise UsageError(f"--as-of {value!s} has a fraction of a second; give whole seconds.")
    return ts.as_unit("ns")


def format_run_id(as_of) -> str:
    """The run id (and partition name) of an as-of: fixed width, sortable.

    Examples
    --------
    >>> format_run_id(parse_as_of("2026-01-01T02:00:00Z"))
    '20260101T020000Z'
    >>> format_run_id(1500)
    'seq1500'
    """
    if isinstance(as_of, int):
        return f"seq{as_of}"
    return as_of.strftime("%Y%m%dT%H%M%SZ")


def _tick(as_of) -> int:
    """The as-of in the unit of the time column: ns since the epoch, or the integer."""
    return as_of if isinstance(as_of, int) else int(as_of.value)


def _show_tick(tick: int, kind: str) -> str:
    if kind == "integer":
        return str(tick)
    return pd.Timestamp(tick, tz="UTC").isoformat().replace("+00:00", "Z")


def _now():
    return pd.Timestamp.now(tz="UTC").floor("s").as_unit("ns")


# ------------------------------------------------------------------- test hooks
def _checkpoint(point: str) -> None:
    """Crash or pause here when a test asks for it (see the module docstring)."""
    if os.environ.get(_CRASH_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)
    pause = os.environ.get(_PAUSE_ENV, "")
    if pause.partition(":")[0] == point:
        where = Path(pause.partition(":")[2])
        (where / f"paused.{os.getpid()}").touch()
        deadline = time.monotonic() + 60
        while not (where / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.02)


# -------------------------------------------------------------- files and locks
@contextmanager
def _writing(what):
    """Turn an OSError while writing ``what`` into an OutputError (exit 73)."""
    try:
        yield
    except OSError as exc:
        raise OutputError(f"cannot write {what}: {exc.strerror or exc}"
                          + (f" ({exc.filename})" if exc.filename else "")) from exc


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot fsync a directory
        pass
    finally:
        os.close(fd)


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with _writing(path):
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        _fsync_dir(path.parent)


def _point(link: Path, target: str) -> None:
    """Make ``link`` a relative symlink to ``target``, atomically."""
    if link.is_symlink() and os.readlink(link) == target:
        return
    if link.exists() and not link.is_symlink():
        logger.warning("%s is not a symlink; not pointing it at %s", link, target,
                       extra={"event": "pointer_not_updated"})
        return
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    with _writing(link):
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(target, tmp)
        os.replace(tmp, link)
        _fsync_dir(link.parent)


class _Lock:
    """An exclusive ``flock`` on ``path``, held for the whole run.

    The kernel releases it when the process ends, however it ends, so a lock
    left by a killed run is free; the holder's details written into the file
    tell the next run that it took over from a run that did not finish.
    """

    def __init__(self, path: Path, as_of: str):
        self.path, self.as_of, self.fd = path, as_of, None

    def __enter__(self) -> "_Lock":
        with _writing(self.path):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_fd(fd)
            os.close(fd)
            raise JobLockedError(
                f"another run holds the lock {self.path} ({holder or 'no details'}); this run "
                "exits without writing anything. Try again later."
            ) from None
        self.fd = fd
        previous = _read_fd(fd)
        if previous:
            logger.warning(
                "took over the lock from a run that did not finish (%s); its leftovers are "
                "cleaned up and its work is done again", previous,
                extra={"event": "stale_lock", "previous_holder": previous},
            )
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                           "started_at": _utcnow_iso(), "as_of": self.as_of})
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)
        return self

    def __exit__(self, *exc) -> None:
        try:
            os.ftruncate(self.fd, 0)
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)


def _read_fd(fd: int) -> str:
    try:
        return os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _utcnow_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def _remove_temporaries(job: JobConfig) -> None:
    """Delete the temporary files and directories of runs that were killed."""
    places = [(job.output, ""), (job.output / RUNS, ""), (job.model_dir, job.model.stem)]
    for place, stem in places:
        if not place.is_dir():
            continue
        for entry in place.iterdir():
            name = entry.name
            if name.startswith(f".{stem}") and name.endswith(".tmp"):
                logger.info("removing %s, left by a run that did not finish", entry,
                            extra={"event": "leftover_removed"})
                with _writing(entry):
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()


# -------------------------------------------------------------------- watermark
def _read_watermark(job: JobConfig) -> dict | None:
    path = job.output / WATERMARK
    if not path.exists():
        return None
    try:
        wm = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(
            f"{path} is damaged ({exc}); the job cannot tell what has been counted. "
            "Run once with --refit to rebuild the model and the watermark from the input."
        ) from exc
    if not isinstance(wm, dict) or wm.get("format") != WATERMARK_FORMAT:
        raise ModelFileError(f"{path} is not a markovfault watermark; run with --refit.")
    version = wm.get("format_version")
    if isinstance(version, int) and version > WATERMARK_VERSION:
        raise NewerFormatError(
            f"{path} has watermark format {version}, newer than this markovfault "
            f"({__version__}) reads ({WATERMARK_VERSION}); written by markovfault "
            f"{wm.get('markovfault_version')!r}. Upgrade markovfault."
        )
    try:
        int(wm["cutoff"]), str(wm["model"]), dict(wm["files"]), list(wm["runs"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path} lacks {exc}; run with --refit.") from None
    return wm


def _load_version(job: JobConfig, name: str):
    from .persistence import FORMAT_VERSION, load_model

    path = job.model_dir / name
    if not path.exists():
        raise NoInputError(
            f"the watermark names the model version {path}, which does not exist. Restore it, "
            "or run once with --refit to rebuild the model from the input."
        )
    try:
        return load_model(path)
    except ModelFileError as exc:
        version = _format_version(path)
        if version is not None and version > FORMAT_VERSION:
            raise NewerFormatError(str(exc)) from exc
        raise ModelFileError(
            f"{exc} The previous versions are kept next to it; --refit rebuilds the model "
            "from the input."
        ) from exc


def _format_version(path: Path):
    """The format version a model file claims, read without any other check."""
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as npz:
            header = json.loads(npz["header.json"].tobytes().decode("utf-8"))
        version = header.get("format_version")
        return version if isinstance(version, int) else None
    except Exception:  # only to choose an exit code; the real error is reported
        return None


def _repair_pointers(job: JobConfig, wm: dict) -> None:
    """Point ``model`` at the watermark's version and ``latest`` at the newest run."""
    _point(job.model, wm["model"])
    if wm["runs"]:
        newest = max(wm["runs"], key=lambda r: r["as_of"])
        if (job.output / RUNS / newest["run_id"]).is_dir():
            _point(job.output / LATEST, f"{RUNS}/{newest['run_id']}")


def _apply_retention(job: JobConfig, wm: dict) -> None:
    """Delete partitions of runs no longer listed and model versions no longer needed."""
    runs = sorted(wm["runs"], key=lambda r: r["as_of"])
    keep_runs = {r["run_id"] for r in runs}
    keep_models = {r["model"] for r in runs[-job.keep_models:]} | {wm["model"]}
    for entry in sorted((job.output / RUNS).iterdir()):
        if _RUN_ID_RE.match(entry.name) and entry.name not in keep_runs:
            with _writing(entry):
                shutil.rmtree(entry)
            logger.info("deleted partition %s (retention = %d runs)", entry.name, job.retention,
                        extra={"event": "partition_deleted"})
    pattern = re.compile(rf"^{re.escape(job.model.stem)}\.{_RUN_ID}\.npz$")
    for entry in sorted(job.model_dir.iterdir()):
        if pattern.match(entry.name) and entry.name not in keep_models:
            with _writing(entry):
                entry.unlink()
            logger.info("deleted model version %s (keep_models = %d)", entry.name,
                        job.keep_models, extra={"event": "model_deleted"})


# ------------------------------------------------------------------------ input
def _input_root(pattern: str) -> Path:
    """The directory that file keys in the watermark are relative to."""
    if os.path.isdir(pattern):
        return Path(pattern)
    fixed = []
    for part in Path(pattern).parts[:-1]:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _list_inputs(pattern: str) -> list[tuple[str, Path, os.stat_result]]:
    """(key, path, stat) of every input file, sorted by key."""
    from .histories import _format_from_suffix  # the suffixes read_histories reads

    if os.path.isdir(pattern):
        paths = [p for p in Path(pattern).iterdir()
                 if not p.name.startswith(".") and _format_from_suffix(p.name) is not None]
    elif glob.has_magic(pattern):
        paths = [Path(p) for p in glob.glob(pattern, recursive=True)]
    elif os.path.exists(pattern):
        paths = [Path(pattern)]
    else:
        raise NoInputError(f"[job] input {pattern!r} does not exist.")
    root = _input_root(pattern)
    out = []
    for p in paths:
        try:
            st = p.stat()
        except OSError:  # vanished since the listing
            continue
        if not p.is_file() or _format_from_suffix(p.name) is None:
            continue
        out.append((os.path.relpath(p, root), p, st))
    if not out:
        raise NoInputError(
            f"[job] input {pattern!r} holds no history file (.csv, .csv.gz, .parquet, .pq, "
            ".jsonl, .ndjson, .json; hidden files are skipped)."
        )
    return sorted(out, key=lambda t: t[0])


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _export_frame(frame: pd.DataFrame, cols) -> pd.DataFrame:
    """A canonical frame back in the configured column names (what ``fit`` reads)."""
    names = {"entity": cols.entity, "time": cols.time, "event": cols.event,
             "status": cols.status, "event_id": cols.event_id}
    keep = {c: names.get(c, c) for c in frame.columns if c != "_row" and names.get(c, c)}
    return frame[list(keep)].rename(columns=keep)


# ---------------------------------------------------------------------- results
@dataclass
class JobResult:
    """What a run did.

    ``status`` is ``"ok"`` (a new partition), ``"rerun"`` (a committed
    as-of again: its partition rewritten from its model version) or
    ``"nothing_new"``; ``exit_code`` is 65 when input files were skipped.
    ``timings`` holds seconds per phase (``read`` covers listing, hashing and
    parsing the files read).
    """

    status: str
    exit_code: int = EX_OK
    run_id: str | None = None
    partition: Path | None = None
    model_version: str | None = None
    n_entities: int = 0
    n_alerts: int = 0
    rows_counted: int = 0
    files_read: list = field(default_factory=list)
    files_skipped: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)


class _Timer(dict):
    @contextmanager
    def __call__(self, name):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self[name] = self.get(name, 0.0) + time.perf_counter() - t0


# -------------------------------------------------------------------------- run
def run_job(job: JobConfig, *, as_of=None, refit: bool = False) -> JobResult:
    """Run the job once (see the module docstring).

    Parameters
    ----------
    job : JobConfig
    as_of : str, Timestamp, int or None
        The data cutoff: rows at or after it are not used. Default: now, to
        the second. Running again with the as-of of a committed run rewrites
        that run's partition with identical content.
    refit : bool, default=False
        Fit from scratch on every input row before ``as_of`` (new state
        vocabulary, late rows counted), instead of adding the new rows.

    Returns
    -------
    JobResult

    Raises
    ------
    JobLockedError, OutputError, NoInputError, UsageError, NewerFormatError,
    ConfigError, ModelFileError, HistoryError
        Mapped to exit codes by :func:`forecast_command`.
    """
    as_of = _now() if as_of is None else parse_as_of(as_of)
    run_id = format_run_id(as_of)
    token = _current_run.set(run_id)
    try:
        return _run(job, as_of, run_id, refit)
    finally:
        _current_run.reset(token)


def _run(job: JobConfig, as_of, run_id: str, refit: bool) -> JobResult:
    from .histories import ColumnMap

    timer = _Timer()
    t0 = time.perf_counter()
    kind = "integer" if isinstance(as_of, int) else "datetime"
    tick = _tick(as_of)
    shown = _show_tick(tick, kind)
    for where in (job.output, job.output / RUNS, job.model_dir):
        with _writing(where):
            where.mkdir(parents=True, exist_ok=True)
    logger.info("run started: as-of %s%s", shown, " (refit)" if refit else "",
                extra={"event": "run_started", "as_of": shown, "refit": refit,
                       "input": job.input, "output": str(job.output), "pid": os.getpid()})
    with _Lock(job.output / LOCK, shown), contextlib.ExitStack() as stack:
        _checkpoint("locked")
        _remove_temporaries(job)
        wm = _read_watermark(job)
        if wm is not None:
            if wm.get("time_kind", "datetime") != kind:
                raise UsageError(
                    f"the watermark's times are {wm.get('time_kind')} but --as-of {shown} is "
                    f"{'an integer' if kind == 'integer' else 'a timestamp'}."
                )
            _repair_pointers(job, wm)
        elif not refit and os.path.lexists(job.model):
            raise ConfigError(
                f"[job] model {job.model} exists but {job.output} has no {WATERMARK}, so the job "
                "cannot tell which rows that model has counted. Remove it (the first run trains "
                "a model from every input file), point [job] model elsewhere, or run with --refit."
            )
        if wm is not None and not refit and tick <= int(wm["cutoff"]):
            return _rerun(job, wm, as_of, tick, run_id, timer, t0)

        with timer("load_model"):
            model = _load_version(job, wm["model"]) if wm is not None and not refit else None
        prev = int(wm["cutoff"]) if model is not None else None
        known = wm["files"] if model is not None else {}
        cols = ColumnMap.from_config(job.config.get("columns"))
        with timer("read"):
            listing = _list_inputs(job.input)
            due = []
            for key, path, st in listing:
                rec = known.get(key)
                if rec is None:
                    due.append((key, path, st, "new"))
                elif (rec["size"], rec["mtime_ns"]) != (st.st_size, st.st_mtime_ns):
                    due.append((key, path, st, "changed"))
                elif rec.get("next_time") is not None and rec["next_time"] < tick:
                    due.append((key, path, st, "pending"))
            records = {key: known[key] for key, _, _ in listing if key in known}
            if not due:
                logger.info(
                    "nothing new since the cutoff %s: no new or changed file and no row left "
                    "before %s; nothing written", _show_tick(prev, kind), shown,
                    extra={"event": "nothing_new", "files": len(listing),
                           "duration_s": round(time.perf_counter() - t0, 3)})
                return JobResult("nothing_new", timings=dict(timer))
            cluster = stack.enter_context(_compute(job))  # [compute] scheduler, or None
            if cluster is None:
                pieces, read, skipped, stats = _read_files(due, known, records, cols, kind,
                                                           model, prev, tick)
                window = pd.concat(pieces, ignore_index=True) if pieces else None
                n_window = 0 if window is None else len(window)
            else:  # the rows stay on the workers: a dask DataFrame in the configured names
                window, n_window, read, skipped, stats = _read_files_dask(
                    due, known, records, cols, kind, model, prev, tick)
        code = EX_DATAERR if skipped else EX_OK
        if not n_window:
            if model is None:
                if skipped and not read:
                    raise HistoryError(f"every input file was skipped ({len(skipped)}); see "
                                       "the errors above. Nothing to train on.")
                raise NoInputError(f"no input row lies before --as-of {shown}; nothing to "
                                   "train on yet.")
            logger.info("no row to count before %s in the files read; nothing written", shown,
                        extra={"event": "nothing_new", "files_read": read,
                               "files_skipped": skipped})
            return JobResult("nothing_new", code, files_read=read, files_skipped=skipped,
                             timings=dict(timer))

        from .predictor import FaultPredictor

        with timer("fit"):  # on the cluster, partition by partition, with a dask window
            frame = _export_frame(window, cols) if cluster is None else window
            if model is None:
                model = FaultPredictor.from_config(job.config).fit(frame)
                logger.info("trained a new model on %d transitions", model.n_transitions_,
                            extra={"event": "model_trained", "refit": refit})
            else:
                model.partial_fit(frame)
        cross = getattr(model, "read_report_", None)
        for reason, n in (cross.dropped.items() if cross is not None else ()):
            stats["dropped"][reason] = stats["dropped"].get(reason, 0) + n
        _checkpoint("fitted")
        version = job.version_name(run_id)
        with timer("save_model"), _writing(job.model_dir / version):
            model.save(job.model_dir / version)
        _checkpoint("model_written")
        with timer("forecast"):
            table = _forecast_table(model, job, as_of, run_id, version)
        with timer("write"):
            partition = _write_partition(job, run_id, table)
        _checkpoint("outputs_written")

        n_alerts = int(table.loc[table["alert"], "entity"].nunique())
        n_entities = int(table["entity"].nunique())
        for key, rec in stats["records"].items():
            records[key] = rec
        run = {"run_id": run_id, "as_of": tick, "data_cutoff": shown, "model": version,
               "refit": refit, "rows_counted": int(n_window), "entities": n_entities,
               "alerts": n_alerts, "started_at": _iso_from_perf(t0),
               "finished_at": _utcnow_iso()}
        runs = [r for r in (wm["runs"] if wm else []) if r["as_of"] < tick]
        runs = sorted(runs + [run], key=lambda r: r["as_of"])[-job.retention:]
        new_wm = {"format": WATERMARK_FORMAT, "format_version": WATERMARK_VERSION,
                  "markovfault_version": __version__, "time_kind": kind, "cutoff": tick,
                  "data_cutoff": shown, "model": version, "input": job.input,
                  "files": dict(sorted(records.items())), "runs": runs}
        with timer("commit"):
            _write_bytes_atomic(job.output / WATERMARK,
                                json.dumps(new_wm, indent=1, sort_keys=True).encode())
        _checkpoint("committed")
        _repair_pointers(job, new_wm)
        _apply_retention(job, new_wm)
        duration = time.perf_counter() - t0
        level = logging.WARNING if skipped else logging.INFO
        logger.log(
            level, "run finished: %d rows counted from %d files, %d entities forecast, %d "
            "alerting, %d files skipped", n_window, len(read), n_entities, n_alerts,
            len(skipped),
            extra={"event": "run_finished", "exit_code": code, "data_cutoff": shown,
                   "files_read": read, "files_skipped": skipped,
                   "rows_read": stats["rows_read"], "rows_counted": int(n_window),
                   "rows_dropped": stats["dropped"], "rows_late": stats["late"],
                   "rows_after_cutoff": stats["after"], "entities": n_entities,
                   "alerts": n_alerts, "alerts_by_horizon": {
                       int(h): int(n) for h, n in table.groupby("horizon")["alert"].sum().items()},
                   "model_version": version, "partition": str(partition),
                   "duration_s": round(duration, 3),
                   "timings_s": {k: round(v, 4) for k, v in timer.items()}})
        return JobResult("ok", code, run_id, partition, version, n_entities, n_alerts,
                         int(n_window), read, skipped, dict(timer))


def _iso_from_perf(t0: float) -> str:
    start = _dt.datetime.now(_dt.timezone.utc) - _dt.timedelta(seconds=time.perf_counter() - t0)
    return start.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _read_files(due, known, records, cols, kind, model, prev, tick):
    """Read the due files one by one; a file that fails is logged and skipped."""
    pieces, read, skipped = [], [], []
    stats = {"rows_read": 0, "dropped": {}, "late": 0, "after": 0, "records": {}}
    states = model.states_ if model is not None else None
    for key, path, st, reason in due:
        rows, info = _read_one(key, path, st, reason, known.get(key), cols, kind, states,
                               prev, tick)
        if rows is not None:
            pieces.append(rows)
        if _note_file(info, stats, read, skipped, prev, kind) and len(read) == 1:
            _checkpoint("reading")
    return pieces, read, skipped, stats


def _read_one(key, path, st, reason, old, cols, kind, states, prev, tick):
    """Read one due file (here, or on a dask worker): (its rows to count or None, what
    happened, for :func:`_note_file` to log and record)."""
    from .histories import read_histories

    info = {"key": key, "reason": reason, "touched": None}
    try:
        digest = _sha256(path)
        if reason == "changed" and old is not None and old.get("sha256") == digest:
            # touched, same bytes: keep the record with the new stat
            rec = dict(old, size=st.st_size, mtime_ns=st.st_mtime_ns)
            info["touched"] = rec
            if rec.get("next_time") is None or rec["next_time"] >= tick:
                info["outcome"] = "touched"
                return None, info
            reason = info["reason"] = "pending"
        frame, report = read_histories(path, columns=cols, return_report=True)
        if report.time_kind != kind:
            raise HistoryError(
                f"its time column holds {report.time_kind} values but the job's as-of is "
                f"{'an integer' if kind == 'integer' else 'a timestamp'}"
                + (" (pass --as-of N for sequence-numbered exports)"
                   if kind == "datetime" else "")
            )
        if states is not None:
            states.transform(frame)  # e.g. a status the model has no state for
    except (MarkovFaultError, ValueError, OSError) as exc:
        info.update(outcome="skipped", error=type(exc).__name__, message=str(exc))
        return None, info
    t = frame["time"].astype("int64").to_numpy()
    before = t < prev if prev is not None else np.zeros(len(t), bool)
    after = t >= tick
    keep = ~before & ~after
    info.update(
        outcome="read", n_before=int(before.sum()), n_after=int(after.sum()),
        n_kept=int(keep.sum()), rows_read=int(report.n_rows_read),
        n_dropped=int(report.n_dropped), dropped=dict(report.dropped),
        record={"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest,
                "rows": int(report.n_rows_read), "max_time": int(t.max()),
                "next_time": int(t[after].min()) if after.any() else None})
    return (frame.loc[keep] if keep.any() else None), info


def _note_file(info, stats, read, skipped, prev, kind) -> bool:
    """Log and record what :func:`_read_one` did with one file; True if it was read."""
    key, reason = info["key"], info["reason"]
    if info["touched"] is not None:
        stats["records"][key] = info["touched"]
    if info["outcome"] == "touched":
        return False
    if info["outcome"] == "skipped":
        logger.error("skipped input file %s: %s", key, info["message"],
                     extra={"event": "file_skipped", "file": key, "error": info["error"]})
        skipped.append(key)
        return False
    n_before = info["n_before"]
    if n_before and reason == "new":
        stats["late"] += n_before
        logger.warning(
            "%d rows of the new file %s are older than the previous cutoff %s (late data); "
            "they are not counted (--refit counts them)", n_before, key,
            _show_tick(prev, kind), extra={"event": "late_rows", "file": key,
                                           "rows": n_before})
    elif n_before and reason == "changed":
        stats["late"] += n_before
        logger.warning(
            "%s changed after it was read; its %d rows before the previous cutoff %s are "
            "not counted again, its rows after it are (--refit recounts everything)",
            key, n_before, _show_tick(prev, kind),
            extra={"event": "file_changed", "file": key, "rows": n_before})
    stats["rows_read"] += info["rows_read"]
    stats["after"] += info["n_after"]
    for r, n in info["dropped"].items():
        stats["dropped"][r] = stats["dropped"].get(r, 0) + n
    stats["records"][key] = info["record"]
    read.append(key)
    logger.info(
        "read %s (%s): %d rows, %d counted now, %d dropped, %d after the cutoff", key, reason,
        info["rows_read"], info["n_kept"], info["n_dropped"], info["n_after"],
        extra={"event": "file_read", "file": key, "reason": reason,
               "rows": info["rows_read"], "rows_counted": info["n_kept"],
               "rows_dropped": info["dropped"], "rows_after_cutoff": info["n_after"]})
    return True


def _read_export(key, path, st, reason, old, cols, kind, states, prev, tick):
    """:func:`_read_one` on a dask worker: what happened, and the rows to count in the
    configured column names (what ``fit`` reads)."""
    rows, info = _read_one(key, path, st, reason, old, cols, kind, states, prev, tick)
    if rows is not None:
        rows = _export_frame(rows, cols)
        info["meta"] = rows.iloc[:0]
    return info, rows


def _read_files_dask(due, known, records, cols, kind, model, prev, tick):
    """:func:`_read_files` on the dask cluster of ``[compute] scheduler``.

    Each due file is hashed, read and cut to its new rows by a worker (the files
    must be readable there, e.g. on a shared volume); only what happened travels
    back, and the rows to count stay on the workers as the partitions (one per
    file, in file order, so the read order is the in-process one) of a dask
    DataFrame, which ``fit``/``partial_fit`` count where they lie.

    Returns (the rows to count as a dask DataFrame or None, their number, read,
    skipped, stats).
    """
    import dask
    import dask.dataframe as dd

    read, skipped = [], []
    stats = {"rows_read": 0, "dropped": {}, "late": 0, "after": 0, "records": {}}
    states = model.states_ if model is not None else None
    tasks = dask.persist(*[dask.delayed(_read_export)(key, path, st, reason, known.get(key),
                                                      cols, kind, states, prev, tick)
                           for key, path, st, reason in due])
    infos = dask.compute(*[task[0] for task in tasks])
    parts, meta, n_rows = [], None, 0
    for task, info in zip(tasks, infos):
        if _note_file(info, stats, read, skipped, prev, kind) and len(read) == 1:
            _checkpoint("reading")
        if info.get("meta") is not None:
            parts.append(task[1])
            meta = info["meta"] if meta is None else meta
            n_rows += info["n_kept"]
    if not parts:
        return None, 0, read, skipped, stats
    return dd.from_delayed(parts, meta=meta, verify_meta=False), n_rows, read, skipped, stats


@contextmanager
def _compute(job: JobConfig):
    """A ``distributed.Client`` on ``[compute] scheduler`` (reading and counting then run
    on that cluster), or None: everything in this process."""
    address = job.config.get("compute", {}).get("scheduler")
    if not address:
        yield None
        return
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError('[compute] scheduler needs the dask extra: '
                          'pip install "markovfault[dask]"') from None
    with Client(address, timeout="20s") as client:
        logger.info("reading and counting on the dask cluster at %s", address,
                    extra={"event": "cluster", "scheduler": address,
                           "workers": len(client.scheduler_info().get("workers", {}))})
        yield client


def _rerun(job, wm, as_of, tick, run_id, timer, t0) -> JobResult:
    """A committed as-of again: rewrite its partition from its own model version."""
    run = next((r for r in wm["runs"] if r["as_of"] == tick), None)
    kind = wm.get("time_kind", "datetime")
    if run is None:
        raise UsageError(
            f"--as-of {_show_tick(tick, kind)} is not after the last cutoff "
            f"{wm['data_cutoff']} and no kept run has that as-of. Give a later --as-of, or "
            "--refit to rebuild the model as of then (runs after it are dropped)."
        )
    if not (job.model_dir / run["model"]).exists():
        raise UsageError(
            f"the model version {run['model']} of run {run_id} is no longer kept "
            f"(keep_models = {job.keep_models}); its partition cannot be rebuilt as it was. "
            "--refit rebuilds the model as of then (runs after it are dropped)."
        )
    with timer("load_model"):
        model = _load_version(job, run["model"])
    with timer("forecast"):
        table = _forecast_table(model, job, as_of, run_id, run["model"])
    with timer("write"):
        partition = _write_partition(job, run_id, table)
    logger.info("as-of %s was already committed: rewrote its partition from model version %s",
                run["data_cutoff"], run["model"],
                extra={"event": "rerun", "partition": str(partition),
                       "duration_s": round(time.perf_counter() - t0, 3)})
    return JobResult("rerun", EX_OK, run_id, partition, run["model"],
                     int(table["entity"].nunique()), int(table.loc[table["alert"], "entity"].nunique()),
                     timings=dict(timer))


# --------------------------------------------------------------------- forecast
def _forecast_table(model, job: JobConfig, as_of, run_id: str, version: str) -> pd.DataFrame:
    """The partition: one row per entity and configured horizon."""
    pred = model.predict(None, horizon=max(job.horizons))
    pred = pred[pred["horizon"].isin(job.horizons)]
    last = pred["as_of"]
    if job.max_silence is not None:
        if isinstance(as_of, int):
            pred = pred[last.to_numpy() >= as_of - int(job.max_silence)]
        else:
            pred = pred[last >= as_of - pd.Timedelta(job.max_silence)]
    base = getattr(model, "base_chain_", model.chain_)
    support = dict(zip(base.state_names_, np.asarray(base.state_support(), dtype=np.int64)))
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
        "alert": p >= job.threshold,
        "threshold": np.full(n, job.threshold),
        "n_support": np.array([support.get(s, 0) for s in state], dtype=np.int64),
        "model_version": np.full(n, version, dtype=object),
        "last_seen": last if isinstance(as_of, int) else last.array,
    })
    out["data_cutoff"] = out["issued_at"]
    for name in ("run_id", "entity", "state", "model_version"):
        out[name] = out[name].astype("str")
    return out.reset_index(drop=True)[OUTPUT_COLUMNS]


def _write_partition(job: JobConfig, run_id: str, table: pd.DataFrame) -> Path:
    """Write ``runs/<run_id>/forecast.{parquet,csv}``; never half a partition.

    A new partition is written in a hidden directory, then renamed into
    place. An existing one (the same as-of again) is replaced file by file,
    each file atomically.
    """
    runs = job.output / RUNS
    final = runs / run_id
    tmp = runs / f".{run_id}.{os.getpid()}.tmp"
    with _writing(final):
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        with open(tmp / "forecast.parquet", "wb") as fh:
            table.to_parquet(fh, index=False)
            fh.flush()
            os.fsync(fh.fileno())
        _checkpoint("output")
        with open(tmp / "forecast.csv", "w", newline="") as fh:
            table.to_csv(fh, index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ")
            fh.flush()
            os.fsync(fh.fileno())
        _fsync_dir(tmp)
        if final.is_dir():
            for name in ("forecast.parquet", "forecast.csv"):
                os.replace(tmp / name, final / name)
            tmp.rmdir()
            _fsync_dir(final)
        else:
            os.rename(tmp, final)
        _fsync_dir(runs)
    return final


# ---------------------------------------------------------------------- inspect
def describe_model(model, horizons=(1, 5, 10)) -> dict:
    """The states and events of a fitted model, as tables.

    Returns
    -------
    dict
        ``states``: one row per (base) state with ``failure``, ``support``
        (transitions out of it), P(fail within h) for each horizon and the
        expected steps to the next failure, riskiest first. ``events``: one
        row per event with ``n`` (transitions it triggered), ``p_fail_next``
        (the chance that the next state is a failure when this event arrives
        in a healthy state, averaged over healthy states by their support)
        and ``lift`` over the same chance with the coming event unknown,
        largest first. ``baseline``: that chance.

    Examples
    --------
    >>> import pandas as pd
    >>> from markovfault import FaultPredictor
    >>> hist = pd.DataFrame({"entity": ["a"] * 6, "time": range(6),
    ...                      "event": ["tick", "spike", "tick", "tick", "spike", "tick"],
    ...                      "status": ["ok", "down", "ok", "ok", "down", "ok"]})
    >>> model = FaultPredictor(states={"kind": "categorical", "failure": ["down"]},
    ...                        alpha=0, beta=0).fit(hist)
    >>> d = describe_model(model, horizons=(1,))
    >>> d["events"][["event", "n", "p_fail_next", "lift"]]
       event  n  p_fail_next      lift
    0  spike  2          1.0  0.333333
    1   tick  3          0.0 -0.666667

    From ``ok``, 2 of 3 steps went ``down`` (the baseline, 2/3); both spikes did.
    """
    base = getattr(model, "base_chain_", model.chain_)
    names = list(base.state_names_)
    fail = np.asarray(base.is_failure_, dtype=bool)
    counts = np.asarray(base.counts_)
    support = counts.sum(axis=(0, 2))
    horizons = sorted(set(int(h) for h in horizons))
    table = base.failure_probabilities(max(horizons))
    states = pd.DataFrame({"state": names, "failure": fail, "support": support})
    for h in horizons:
        states[f"h={h}"] = table[:, h - 1]
    states["expected_steps"] = base.expected_steps_to_failure()
    states = states.sort_values([f"h={max(horizons)}", "state"], ascending=[False, True])
    healthy = ~fail
    w = support[healthy].astype(float)
    P = np.asarray(base.event_matrices_)
    T = np.asarray(base.transition_matrix_)
    if w.sum() > 0:
        to_fail = P[:, healthy][:, :, fail].sum(axis=2)  # (E, healthy)
        p_next = to_fail @ w / w.sum()
        baseline = float(T[healthy][:, fail].sum(axis=1) @ w / w.sum())
    else:
        p_next, baseline = np.full(len(base.event_names_), np.nan), float("nan")
    events = pd.DataFrame({"event": list(base.event_names_), "n": counts.sum(axis=(1, 2)),
                           "p_fail_next": p_next, "lift": p_next - baseline})
    events = events.sort_values(["lift", "event"], ascending=[False, True]).reset_index(drop=True)
    return {"states": states.reset_index(drop=True), "events": events, "baseline": baseline}


def format_model_report(path, horizons=(1, 5, 10)) -> str:
    """The text that ``markovfault inspect MODEL`` prints."""
    from .persistence import load_model, read_header

    path = Path(path)
    header = read_header(path)
    model = load_model(path)
    d = describe_model(model, horizons)
    seen = model.last_seen_
    target = f" -> {os.readlink(path)}" if path.is_symlink() else ""
    last = ""
    if len(seen):
        t = int(seen["time"].max())
        last = f", last step {_show_tick(t, model.time_kind_)}"
    states = d["states"]
    fmt = {c: "{:.3f}".format for c in states.columns if c.startswith("h=")}
    fmt["expected_steps"] = "{:.1f}".format
    lines = [
        f"model     {path}{target}",
        f"format    {header.get('format')} {header.get('format_version')}, written by "
        f"markovfault {header.get('markovfault_version')}",
        f"trained   {model.n_transitions_:,} transitions; "
        f"{seen.index.nunique():,} entities{last}",
        "states    " + ", ".join(s + ("*" if f else "") for s, f in
                                  zip(model.state_names_, np.isin(model.state_names_,
                                                                  model.failure_states_)))
        + "   (* failure)",
        f"events    {', '.join(model.event_names_)}",
        "",
        "Riskiest states: P(fail within h steps), and the expected steps to the next failure",
        states.to_string(index=False, formatters=fmt),
        "",
        "Events that raise the risk most: P(next state is a failure | event arrives in a "
        f"healthy state); with the event unknown: {d['baseline']:.3f}",
        d["events"].to_string(index=False, float_format="{:+.3f}".format,
                              formatters={"p_fail_next": "{:.3f}".format}),
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------- logging
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime",
                                                                         "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per log record: time, level, logger, message, run_id, extras.

    Examples
    --------
    >>> record = logging.LogRecord("markovfault.job", logging.INFO, "", 0, "read %d rows",
    ...                            (3,), None)
    >>> record.created, record.event = 0.0, "file_read"
    >>> JsonFormatter().format(record)
    '{"time": "1970-01-01T00:00:00.000Z", "level": "info", "logger": "markovfault.job", "message": "read 3 rows", "event": "file_read"}'
    """

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": _dt.datetime.fromtimestamp(record.created, _dt.timezone.utc)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class _RunIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        run_id = _current_run.get()
        if run_id is not None and not hasattr(record, "run_id"):
            record.run_id = run_id
        return True


def _install_json_logging(verbose: int) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(_RunIdFilter())
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose >= 2 else logging.INFO)
    # the job logs one line per file; the reader's own summaries only with -v
    logging.getLogger("markovfault.histories").setLevel(
        logging.NOTSET if verbose else logging.WARNING)
    logging.captureWarnings(True)


def forecast_command(config, *, as_of=None, refit: bool = False, verbose: int = 0) -> int:
    """``markovfault forecast``: run the job once, log JSON lines on stderr, return the exit code."""
    _install_json_logging(verbose)
    try:
        job = load_job_config(config)
        return run_job(job, as_of=as_of, refit=refit).exit_code
    except JobLockedError as exc:
        return _failed(exc, EX_TEMPFAIL, logging.WARNING)
    except OutputError as exc:
        return _failed(exc, EX_CANTCREAT)
    except (NoInputError, FileNotFoundError) as exc:
        return _failed(exc, EX_NOINPUT)
    except UsageError as exc:
        return _failed(exc, EX_USAGE)
    except (ConfigError, NewerFormatError) as exc:
        return _failed(exc, EX_CONFIG)
    except (MarkovFaultError, ValueError) as exc:
        return _failed(exc, EX_DATAERR)
    except OSError as exc:
        return _failed(exc, EX_IOERR)
    except Exception as exc:  # a bug: say so, with the traceback, in the same format
        logger.exception("internal error: %s", exc,
                         extra={"event": "run_failed", "exit_code": EX_SOFTWARE,
                                "error": type(exc).__name__})
        return EX_SOFTWARE


def _failed(exc: BaseException, code: int, level: int = logging.ERROR) -> int:
    msg = str(exc)
    if isinstance(exc, FileNotFoundError) and exc.filename:
        msg = f"{exc.strerror}: {exc.filename}"
    logger.log(level, "%s", msg, extra={"event": "run_failed", "exit_code": code,
                                        "error": type(exc).__name__})
    return code
