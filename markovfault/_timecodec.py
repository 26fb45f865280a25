"""The one time codec (internal API): the time column as int64 and back.

Timestamps become UTC nanoseconds since the epoch (``time_kind == "datetime"``); integer sequences stay as they
are (``"integer"``). Every layer that needs times as numbers (encoding, tails, backtest cutoffs, the Dask back
end, the scheduled job) goes through these functions, so the conversion is written once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .exceptions import ConfigError

__all__ = ["TIME_KINDS", "is_datetime", "time_kind_of", "time_values", "time_int", "to_time_int",
           "from_time_int", "parse_max_gap"]

TIME_KINDS = ("datetime", "integer")


def is_datetime(values) -> bool:
    """Whether a time column (Series, or a frame's ``time`` column) holds timestamps."""
    if isinstance(values, pd.DataFrame):
        values = values["time"]
    dtype = getattr(values, "dtype", None)
    return isinstance(dtype, pd.DatetimeTZDtype) or np.issubdtype(np.asarray(values).dtype, np.datetime64)


def time_kind_of(values) -> str:
    """``"datetime"`` or ``"integer"`` for a time column (or a frame with one)."""
    return "datetime" if is_datetime(values) else "integer"


def time_values(frame: pd.DataFrame):
    """``(int64 time, time_kind)`` of ``frame["time"]``, or ``None`` when its dtype is neither timestamps
    nor integers (the caller then takes the general path, which words the error).

    Examples
    --------
    >>> t, kind = time_values(pd.DataFrame({"time": pd.to_datetime(["1970-01-01 00:00:01"], utc=True)}))
    >>> t.tolist(), kind
    ([1000000000], 'datetime')
    """
    t = frame["time"]
    if isinstance(t.dtype, pd.DatetimeTZDtype):
        t = t.dt.tz_convert("UTC").dt.tz_localize(None)
        return t.to_numpy(dtype="datetime64[ns]").view(np.int64), "datetime"
    if isinstance(t.dtype, np.dtype) and t.dtype.kind == "M":
        return t.to_numpy(dtype="datetime64[ns]").view(np.int64), "datetime"
    if isinstance(t.dtype, np.dtype) and t.dtype.kind in "iu":
        return np.asarray(t, dtype=np.int64), "integer"
    return None


def time_int(frame: pd.DataFrame) -> np.ndarray:
    """The time column of ``frame`` as int64 (UTC nanoseconds for timestamps)."""
    out = time_values(frame)
    if out is not None:
        return out[0]
    return np.asarray(frame["time"], dtype=np.int64)


def to_time_int(values, time_kind: str, what: str = "cutoffs") -> np.ndarray:
    """User-given times (timestamps or ISO strings for datetime time, integers otherwise) as int64."""
    if time_kind == "datetime":
        series = pd.Series(list(values))
        try:  # each value on its own: "08:50" and "13:04:26" may come together
            ts = pd.to_datetime(series, utc=True, format="ISO8601")
        except (ValueError, TypeError):
            try:
                ts = pd.to_datetime(series, utc=True, format="mixed")
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"{what} {list(values)[:3]}... are not timestamps: {exc}") from exc
        return ts.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]").view(np.int64)
    arr = np.asarray(list(values))
    if not np.issubdtype(arr.dtype, np.integer):
        raise ConfigError(f"{what} {arr[:3].tolist()} must be integers: the time column is a sequence")
    return arr.astype(np.int64)


def from_time_int(values, time_kind: str):
    """int64 times back to what the time column holds: a UTC DatetimeIndex, or the int64 array itself."""
    values = np.asarray(values, dtype=np.int64)
    if time_kind == "datetime":
        return pd.to_datetime(values, utc=True)
    return values


def parse_max_gap(max_gap, time_kind: str) -> int | None:
    """Convert a ``max_gap`` setting to the integer unit of the time column.

    Parameters
    ----------
    max_gap : None, int, str or pandas.Timedelta
        The largest allowed distance between two consecutive steps of one
        entity. ``None`` keeps every history whole. Strings are parsed by
        :class:`pandas.Timedelta` (``"30min"``, ``"2h"``).
    time_kind : {'datetime', 'integer'}
        What the time column holds.

    Returns
    -------
    int or None
        Nanoseconds for datetime time, sequence units for integer time.

    Examples
    --------
    >>> parse_max_gap("1min", "datetime")
    60000000000
    >>> parse_max_gap(5, "integer")
    5
    """
    if max_gap is None:
        return None
    if time_kind == "datetime":
        if isinstance(max_gap, (int, np.integer)) and not isinstance(max_gap, bool):
            raise ConfigError(
                f"max_gap = {max_gap!r} is a bare number but the time column holds "
                "timestamps; give a duration such as \"30min\" or \"2h\"."
            )
        try:
            gap = pd.Timedelta(max_gap)
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"max_gap = {max_gap!r} is not a duration; use e.g. \"30min\" or \"2h\"."
            ) from exc
        value = int(gap.value)
    else:
        if isinstance(max_gap, bool) or not isinstance(max_gap, (int, np.integer)):
            raise ConfigError(
                f"max_gap = {max_gap!r} must be an integer when the time column is an "
                "integer sequence."
            )
        value = int(max_gap)
    if value <= 0:
        raise ConfigError(f"max_gap = {max_gap!r} must be positive.")
    return value
