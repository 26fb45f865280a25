"""The recorder's files: periods and their names, the hidden temporary of the open period, and the repair and
rename of a temporary left by a process that died.

Part of :mod:`markovfault.instrument` (see its ``__init__``). Standard library only: a service that records
loads no numerical library. Every period is aligned to the Unix epoch in UTC (an hourly period starts on the
hour) and is a whole number of seconds, so a file's name (its period's start, to the second) names it exactly.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
from pathlib import Path

from .._fsync import fsync_dir
from ..exceptions import ConfigError, RecorderError

try:  # advisory locks: a second process cannot write the same temporary (POSIX only)
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock, one process per directory and prefix
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("markovfault.instrument")

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
STAMP = "%Y%m%dT%H%M%SZ"
_STAMP_RE = r"(\d{8}T\d{6}Z)"
_UNITS = {"s": 1, "sec": 1, "second": 1, "seconds": 1, "m": 60, "min": 60, "minute": 60, "minutes": 60,
          "h": 3600, "hour": 3600, "hours": 3600, "d": 86400, "day": 86400, "days": 86400}
_PERIOD_RE = re.compile(r"^\s*(\d+)\s*([a-z]+)\s*$")
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")


def parse_period(period: str | dt.timedelta) -> int:
    """The length of a period in microseconds: ``"1h"``, ``"15min"``, ``"30s"``, ``"1d"`` or a timedelta, a
    whole number of seconds, at least one."""
    if isinstance(period, dt.timedelta):
        micros = (period.days * 86400 + period.seconds) * 10**6 + period.microseconds
    else:
        match = _PERIOD_RE.match(str(period).lower()) if isinstance(period, str) else None
        if match is None or match.group(2) not in _UNITS:
            raise ConfigError(f"period = {period!r}: not a period. Fix: write a whole number and a unit, "
                              "e.g. \"1h\", \"15min\", \"30s\" or \"1d\", or pass a datetime.timedelta.")
        micros = int(match.group(1)) * _UNITS[match.group(2)] * 10**6
    if micros < 10**6 or micros % 10**6:
        raise ConfigError(f"period = {period!r}: a period is a whole number of seconds, at least 1 "
                          "(the files are named by their start, to the second).")
    return micros


def check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
        raise ConfigError(f"prefix = {prefix!r}: must be a file name stem of letters, digits, '.', '_' and "
                          "'-' that does not start with '.' (hidden files are not read by the job).")
    return prefix


def micros_of(time: dt.datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime, exactly."""
    delta = time - EPOCH
    return (delta.days * 86400 + delta.seconds) * 10**6 + delta.microseconds


def time_of(micros: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=micros)


def period_start(time_micros: int, period: int) -> int:
    """The start (microseconds since the epoch) of the period holding ``time_micros``."""
    return time_micros - time_micros % period


def final_name(prefix: str, start: int) -> str:
    return f"{prefix}-{time_of(start):{STAMP}}.jsonl"


def temporary_name(prefix: str, start: int) -> str:
    return "." + final_name(prefix, start) + ".tmp"


def temporaries(directory: Path, prefix: str) -> dict[int, Path]:
    """The hidden temporaries of ``prefix`` in ``directory``, by their period's start."""
    pattern = re.compile(rf"^\.{re.escape(prefix)}-{_STAMP_RE}\.jsonl\.tmp$")
    found = {}
    for entry in directory.iterdir():
        match = pattern.match(entry.name)
        if match and entry.is_file():
            stamp = dt.datetime.strptime(match.group(1), STAMP).replace(tzinfo=dt.timezone.utc)
            found[micros_of(stamp)] = entry
    return found


def try_lock(fd: int) -> bool:
    """Take an exclusive advisory lock on an open file without waiting; False if another process holds it."""
    if fcntl is None:  # pragma: no cover
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def is_locked(path: Path) -> bool:
    """Whether a live process holds the lock of ``path`` (a temporary it is writing)."""
    try:
        with open(path, "rb") as fh:
            return not try_lock(fh.fileno())  # the lock, if taken, goes with the file's close
    except FileNotFoundError:
        return False


def repair(path: Path) -> tuple[int, int]:
    """Cut a temporary back to its complete lines: a torn last line (no newline, or not JSON, as a write cut
    by a crash or a power loss leaves) is dropped and logged. Returns (lines kept, bytes dropped)."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1  # past the last newline: what follows is a torn line
    lines = data[:end].split(b"\n")[:-1]
    while lines:  # from the end: lines a crash garbled (zeros after a power loss) are not JSON
        try:
            json.loads(lines[-1])
            break
        except ValueError:
            end -= len(lines.pop()) + 1
    dropped = len(data) - end
    if dropped:
        with open(path, "r+b") as fh:
            fh.truncate(end)
            fh.flush()
            os.fsync(fh.fileno())
        logger.warning("%s: dropped %d bytes after its last complete line (%d lines kept), a write cut short "
                       "when the process that wrote it stopped", path, dropped, len(lines),
                       extra={"event": "torn_line_dropped"})
    return len(lines), dropped


def free_path(directory: Path, prefix: str, start: int) -> Path:
    """Where a period's file goes: its name, or ``<name>.<n>.jsonl`` when that exists already (the recorder
    was closed and started again within one period, or a clock went back)."""
    path = directory / final_name(prefix, start)
    n = 0
    while path.exists():
        n += 1
        path = directory / f"{prefix}-{time_of(start):{STAMP}}.{n}.jsonl"
    if n:
        logger.warning("%s exists already; this period's next file is %s", final_name(prefix, start), path.name,
                       extra={"event": "period_file_exists"})
    return path


def publish(tmp: Path, directory: Path, prefix: str, start: int) -> Path:
    """Rename a complete, fsynced temporary to its period's file (atomically), and fsync the directory."""
    path = free_path(directory, prefix, start)
    os.replace(tmp, path)
    fsync_dir(directory)
    return path


def complete_leftover(tmp: Path, directory: Path, prefix: str, start: int) -> Path | None:
    """Repair and publish a temporary that no process writes any more; None if it held no complete line."""
    kept, _ = repair(tmp)
    if kept == 0:
        tmp.unlink()
        fsync_dir(directory)
        logger.info("removed %s: it held no complete line", tmp.name, extra={"event": "leftover_removed"})
        return None
    path = publish(tmp, directory, prefix, start)
    logger.info("completed %s, left by a recorder that stopped: %d lines in %s", tmp.name, kept, path.name,
                extra={"event": "leftover_completed"})
    return path


def busy_error(tmp: Path) -> RecorderError:
    return RecorderError(f"another process is writing {tmp} (it holds the file's lock). Fix: give each process "
                         "its own directory or prefix, e.g. HistoryRecorder(directory, prefix=f\"events-{pid}\").")
