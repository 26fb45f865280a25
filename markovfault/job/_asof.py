"""The as-of of a run and the clock: parsing ``--as-of``, the run id it gives (and the pattern of run ids), the
as-of as a tick in the unit of the time column and back as text, and wall-clock time stamps."""

from __future__ import annotations

import datetime as _dt
import re

import numpy as np
import pandas as pd

from ..exceptions import UsageError

RUN_ID_PATTERN = r"(?:\d{8}T\d{6}Z|seq-?\d+)"
RUN_ID_RE = re.compile(rf"^{RUN_ID_PATTERN}$")


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


def to_tick(as_of) -> int:
    """The as-of in the unit of the time column: ns since the epoch, or the integer."""
    return as_of if isinstance(as_of, int) else int(as_of.value)


def show_tick(tick: int, kind: str) -> str:
    """A tick as the log and the watermark show it: the integer, or an ISO 8601 UTC time."""
    if kind == "integer":
        return str(tick)
    return pd.Timestamp(tick, tz="UTC").isoformat().replace("+00:00", "Z")


def now_as_of():
    """The default as-of: now, to the second."""
    return pd.Timestamp.now(tz="UTC").floor("s").as_unit("ns")


def utcnow_iso() -> str:
    """The wall-clock time now, ISO 8601 UTC to the millisecond."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")
