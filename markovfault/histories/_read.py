"""Read exported status histories and validate them against the input contract.

An exported history is a long table, one row per step of one event handler
(see the README, "Input"). :func:`read_histories` reads it
from CSV, Parquet or JSON-lines files, a directory, a glob pattern or a pandas
DataFrame, checks every column once, drops what cannot be used (and counts
it), and returns the canonical history frame that state extraction reads
(described under Returns of :func:`read_histories`).

Everything here is vectorised: files and columns are looped over, rows and
entities never are.
"""

from __future__ import annotations

import dataclasses
import glob
import gzip
import io
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import pandas as pd

from .exceptions import (
    ConfigError,
    EmptyHistoryError,
    HistoryError,
    MetricTypeError,
    MissingColumnError,
    MixedTimezoneError,
    TimeParseError,
)

__all__ = ["IMPLICIT_EVENT", "ColumnMap", "ReadReport", "read_histories"]

logger = logging.getLogger("markovfault.histories")

#: The event every row gets when the input has no event column.
IMPLICIT_EVENT = "step"

# Canonical column names of the frame that read_histories returns.
_CANONICAL = ("entity", "time", "event", "status", "event_id")
_ROW = "_row"

# File suffix -> format. ".gz" is stripped first (CSV and JSON lines only).
_SUFFIXES = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
_FORMAT_ALIASES = {
    "csv": "csv",
    "parquet": "parquet",
    "pq": "parquet",
    "jsonl": "jsonl",
    "ndjson": "jsonl",
    "json": "jsonl",
}

# A time of day followed by a UTC offset: "...10:00Z", "...10:00:00.5+02:00",
# "...10:00:00-0500", "...10:00+02", "...10:00:00 UTC".
# [0-9] and [ \t] rather than \d and \s keep pandas on pyarrow's fast regex engine.
_AWARE_PATTERN = (
    r"[0-9]:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?[ \t]*"
    r"(?:[Zz]|UTC|GMT|[+-][0-9]{2}(?::?[0-9]{2})?)$"
)
_INTEGER_PATTERN = r"[+-]?[0-9]+"
_NA_TOKENS = ("", "nan", "na", "n/a", "null", "none", "<na>")


# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnMap:
    """Which columns of an export hold the fields of the input contract.

    Parameters
    ----------
    entity : str, default="entity"
        The column naming the handler (service, consumer) of each row.
    time : str, default="time"
        The column holding timestamps or an integer sequence.
    event : str or None, default="event"
        The column holding the event type. ``None`` (or ``""``) means there
        is none and every row gets :data:`IMPLICIT_EVENT`. When left at the
        default and the column is absent, the same happens.
    status : str or None, default="status"
        The column holding the status label. ``None`` (or ``""``) when states
        come from ``metrics`` only. When left at the default, the column may
        be absent if ``metrics`` are given.
    event_id : str or None, default="event_id"
        The column holding a unique id per step, used to drop duplicates.
        Optional when left at the default.
    metrics : tuple of str, default=()
        Numeric columns that state extraction reads (``latency_ms``, ...).
        Always required when listed.

    Raises
    ------
    ConfigError
        If ``entity`` or ``time`` is empty, a name is not a string, two fields
        name the same column, a metric is named like a canonical column, or
        there is neither a status column nor a metric.

    Notes
    -----
    A field counts as *explicit* when it differs from its default. An
    explicit column that is absent from the input is an error; a default one
    may be absent where the input contract allows it.

    Examples
    --------
    >>> ColumnMap.from_config({"entity": "handler", "event": "", "metrics": ["latency_ms"]})
    ColumnMap(entity='handler', time='time', event=None, status='status', event_id='event_id', metrics=('latency_ms',))
    """

    entity: str = "entity"
    time: str = "time"
    event: str | None = "event"
    status: str | None = "status"
    event_id: str | None = "event_id"
    metrics: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("entity", "time"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ConfigError(
                    f"[columns] {name} = {value!r}: must be a non-empty column name. "
                    f"Fix: set [columns] {name} = \"<column>\"."
                )
        for name in ("event", "status", "event_id"):
            value = getattr(self, name)
            if value == "":
                object.__setattr__(self, name, None)
            elif value is not None and not isinstance(value, str):
                raise ConfigError(
                    f"[columns] {name} = {value!r}: must be a column name or \"\" for none."
                )
        metrics = self.metrics
        if isinstance(metrics, str):
            metrics = (metrics,)
        try:
            metrics = tuple(metrics)
        except TypeError:
            raise ConfigError(
                f"[columns] metrics = {self.metrics!r}: must be a list of column names."
            ) from None
        bad = [m for m in metrics if not isinstance(m, str) or not m]
        if bad:
            raise ConfigError(
                f"[columns] metrics = {list(metrics)!r}: {bad[0]!r} is not a column name."
            )
        object.__setattr__(self, "metrics", metrics)
        clash = sorted(set(metrics) & set(_CANONICAL + (_ROW,)))
        if clash:
            raise ConfigError(
                f"[columns] metrics: {clash[0]!r} is a canonical column name and cannot be a "
                "metric. Fix: rename that column before reading."
            )
        used: dict[str, str] = {}
        pairs = [(name, getattr(self, name)) for name in _CANONICAL]
        pairs += [(f"metrics[{i}]", m) for i, m in enumerate(metrics)]
        for name, value in pairs:
            if value is None:
                continue
            if value in used:
                raise ConfigError(
                    f"[columns] {used[value]} and {name} both name the column {value!r}. "
                    f"Fix: give each field its own column, or set an unused optional field "
                    f"to \"\" (none)."
                )
            used[value] = name
        if self.status is None and not metrics:
            raise ConfigError(
                "[columns] status is \"\" and no metrics are listed: nothing to read states "
                "from. Fix: set [columns] status = \"<column>\" or metrics = [\"<column>\", ...]."
            )

    @classmethod
    def from_config(cls, table: Mapping[str, Any] | None) -> ColumnMap:
        """Build a column map from the ``[columns]`` table of a TOML config.

        Parameters
        ----------
        table : mapping or None
            Keys among ``entity``, ``time``, ``event``, ``status``,
            ``event_id`` and ``metrics``; missing keys keep their defaults and
            ``""`` means "no such column".

        Returns
        -------
        ColumnMap

        Raises
        ------
        ConfigError
            If a key is unknown or a value has the wrong type.
        """
        if table is None:
            return cls()
        if isinstance(table, ColumnMap):
            return table
        if not isinstance(table, Mapping):
            raise ConfigError(
                f"[columns] must be a table (mapping), got {type(table).__name__}."
            )
        known = [f.name for f in dataclasses.fields(cls)]
        for key in table:
            if key not in known:
                raise ConfigError(
                    f"[columns] has an unknown key {key!r}. Known keys: {', '.join(known)}."
                )
        return cls(**dict(table))

    def is_explicit(self, name: str) -> bool:
        """Whether field ``name`` differs from its default (set by the user)."""
        return getattr(self, name) != getattr(_DEFAULT_COLUMNS, name)


_DEFAULT_COLUMNS = ColumnMap()


# --------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------


@dataclass
class ReadReport:
    """What :func:`read_histories` read, kept, dropped and filled.

    Attributes
    ----------
    n_sources : int
        Number of files and frames read.
    n_rows_read : int
        Rows in all sources together.
    n_rows_kept : int
        Rows in the returned frame; ``n_rows_read == n_rows_kept + n_dropped``.
    n_entities : int
        Distinct entities in the returned frame.
    dropped : dict of str to int
        Rows dropped, by reason: ``"missing_entity"``, ``"duplicate_event_id"``,
        ``"missing_status"``. Reasons with no drops are left out.
    filled : dict of str to int
        Values filled in kept rows, by reason: ``"missing_event_filled"``
        (a missing event became :data:`IMPLICIT_EVENT`).
    single_row_entities : int
        Entities with one row only. They are kept but have no transition.
    time_kind : {"datetime", "integer"} or None
        Whether ``time`` holds UTC timestamps or an integer sequence.
    per_source : list of (str, int)
        Each source's name and number of rows, in read order.
    """

    n_sources: int = 0
    n_rows_read: int = 0
    n_rows_kept: int = 0
    n_entities: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    filled: dict[str, int] = field(default_factory=dict)
    single_row_entities: int = 0
    time_kind: Literal["datetime", "integer"] | None = None
    per_source: list[tuple[str, int]] = field(default_factory=list)

    @property
    def n_dropped(self) -> int:
        """Total number of rows dropped, for every reason."""
        return int(sum(self.dropped.values()))

    def summary(self) -> str:
        """One line: what was read and kept."""
        return (
            f"read {self.n_rows_read} rows from {self.n_sources} source(s); kept "
            f"{self.n_rows_kept} rows of {self.n_entities} entities "
            f"({self.single_row_entities} with a single row), time: {self.time_kind}"
        )

    def __str__(self) -> str:
        lines = ["ReadReport: " + self.summary()]
        if self.dropped:
            lines.append(f"  dropped {self.n_dropped}: " + _format_counts(self.dropped))
        else:
            lines.append("  dropped 0")
        if self.filled:
            lines.append("  filled: " + _format_counts(self.filled))
        shown = self.per_source[:10]
        more = len(self.per_source) - len(shown)
        sources = ", ".join(f"{name} ({rows} rows)" for name, rows in shown)
        lines.append("  sources: " + sources + (f", ... and {more} more" if more else ""))
        return "\n".join(lines)


def _format_counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in counts.items())


# --------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------


@dataclass
class _Source:
    """One file or frame to read."""

    name: str
    kind: str  # "csv" | "parquet" | "jsonl" | "frame"
    path: str | None = None
    frame: pd.DataFrame | None = None

    def where(self, raw: pd.DataFrame, pos: int) -> str:
        """Name row ``pos`` (0-based position in ``raw``) for a message."""
        if self.kind == "frame":
            label = raw.index[pos]
            label = label.item() if isinstance(label, np.generic) else label
            return f"index label {label!r} (row {pos + 1}) of {self.name}"
        if self.kind == "csv":
            return f"row {pos + 1} of '{self.name}' (1-based, header not counted)"
        if self.kind == "jsonl":
            line = _jsonl_line_number(self.path, pos)
            if line is None:  # one JSON array, not JSON lines
                return f"record {pos + 1} of '{self.name}'"
            return f"line {line} of '{self.name}'"
        return f"row {pos + 1} of '{self.name}'"


def _jsonl_line_number(path: str | None, pos: int) -> int | None:
    """1-based line of the ``pos``-th record (blank lines are skipped by the reader).

    Called only to word an error message, so reading the file again is fine.
    """
    try:
        text = _read_text(path)
        if text.lstrip().startswith("["):
            return None
        lines = pd.Series(text.splitlines(), dtype=object)
        nonblank = np.flatnonzero(lines.str.strip().str.len().to_numpy() > 0)
        return int(nonblank[pos]) + 1
    except Exception:  # only used to word a message; never hide the real error
        return pos + 1


def _read_text(path: str | None) -> str:
    assert path is not None  # internal: jsonl sources always have a path
    if path.endswith(".gz"):
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            return handle.read()
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def _format_from_suffix(path: str) -> str | None:
    name = path.lower()
    if name.endswith(".gz"):
        name = name[:-3]
        fmt = _SUFFIXES.get(os.path.splitext(name)[1])
        return fmt if fmt in ("csv", "jsonl") else None
    return _SUFFIXES.get(os.path.splitext(name)[1])


def _normalise_format(format: str | None) -> str | None:
    if format is None:
        return None
    fmt = _FORMAT_ALIASES.get(str(format).lower())
    if fmt is None:
        raise ConfigError(
            f"format={format!r} is not supported. Fix: pass format='csv', 'parquet' or 'jsonl'."
        )
    return fmt


def _file_source(path: str, format: str | None) -> _Source:
    fmt = format or _format_from_suffix(path)
    if fmt is None:
        raise ConfigError(
            f"cannot tell the format of '{path}' from its name. Supported: .csv, .csv.gz, "
            ".parquet, .pq, .jsonl, .ndjson, .json (optionally .gz). "
            "Fix: pass format='csv', 'parquet' or 'jsonl'."
        )
    return _Source(name=path, kind=fmt, path=path)


def _expand(source: Any, format: str | None, n_frames: list[int]) -> list[_Source]:
    """Turn ``source`` into the ordered list of files and frames to read."""
    if isinstance(source, pd.DataFrame):
        n_frames[0] += 1
        return [_Source(name=f"<DataFrame #{n_frames[0]}>", kind="frame", frame=source)]
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if os.path.isdir(path):
            files = sorted(
                (p for p in Path(path).iterdir()
                 if p.is_file() and not p.name.startswith(".")
                 and _format_from_suffix(p.name) is not None),
                key=lambda p: p.name,
            )
            if not files:
                raise FileNotFoundError(
                    f"directory '{path}' holds no supported file (.csv, .csv.gz, .parquet, "
                    ".pq, .jsonl, .ndjson, .json). Fix: point to the export files, or use a "
                    "glob pattern with format=... for other names."
                )
            return [_file_source(str(p), format) for p in files]
        if os.path.isfile(path):
            return [_file_source(path, format)]
        if glob.has_magic(path):
            matches = sorted(p for p in glob.glob(path, recursive=True) if os.path.isfile(p))
            if not matches:
                raise FileNotFoundError(f"the pattern '{path}' matches no file.")
            return [_file_source(p, format) for p in matches]
        raise FileNotFoundError(f"no such file or directory: '{path}'.")
    if isinstance(source, (list, tuple)):
        if not source:
            raise EmptyHistoryError(
                "read_histories got an empty list of sources. Fix: pass at least one file, "
                "directory or DataFrame."
            )
        out: list[_Source] = []
        for item in source:
            out.extend(_expand(item, format, n_frames))
        return out
    raise TypeError(
        f"read_histories cannot read a {type(source).__name__}. Pass a path (str or "
        "PathLike) to a file or directory, a glob pattern, a pandas DataFrame, or a list of these."
    )


def _unreadable(src: _Source, exc: Exception) -> HistoryError:
    return HistoryError(
        f"could not read '{src.name}' as {src.kind}: {exc}. Fix: check that the file is "
        f"complete, or pass format=... if it is not {src.kind}."
    )


def _empty_error(src: _Source, detail: str) -> EmptyHistoryError:
    return EmptyHistoryError(
        f"'{src.name}' holds no rows ({detail}). Fix: remove it from the input, or check "
        "that the export finished writing."
    )


def _open(src: _Source) -> tuple[list[Any], Callable[[list[Any]], pd.DataFrame]]:
    """Column names of ``src`` and a loader that reads the given columns."""
    if src.kind == "frame":
        frame = src.frame
        assert frame is not None
        return list(frame.columns), lambda cols: frame.loc[:, cols]
    path = src.path
    assert path is not None
    if os.path.getsize(path) == 0:
        raise _empty_error(src, "zero-byte file")
    try:
        if src.kind == "csv":
            try:
                header = pd.read_csv(path, nrows=0, dtype=str)
            except pd.errors.EmptyDataError:
                raise _empty_error(src, "no header and no rows") from None
            return list(header.columns), lambda cols: pd.read_csv(
                path, dtype=str, usecols=cols
            )
        if src.kind == "parquet":
            import pyarrow.parquet as pq

            names = list(pq.read_schema(path).names)
            return names, lambda cols: pd.read_parquet(path, engine="pyarrow", columns=cols)
        raw = _read_jsonl(path)
        if len(raw) == 0:
            raise _empty_error(src, "no JSON records")
        return list(raw.columns), lambda cols: raw.loc[:, cols]
    except (EmptyHistoryError, OSError):
        raise
    except Exception as exc:  # parser errors of pandas / pyarrow
        raise _unreadable(src, exc) from exc


def _read_jsonl(path: str) -> pd.DataFrame:
    """Read JSON lines (or one JSON array) and flatten nested objects."""
    text = _read_text(path)
    stripped = text.lstrip()
    if not stripped:
        return pd.DataFrame()
    lines = not stripped.startswith("[")
    raw = pd.read_json(io.StringIO(text), lines=lines, orient="records", dtype=False)
    if len(raw) == 0:
        return raw
    # Nested objects show up as dicts in object columns; look at one value each.
    nested = [c for c in raw.columns
              if raw[c].dtype == object and isinstance(_first_valid(raw[c]), dict)]
    if nested:
        # CloudEvents keep the payload in "data": flatten it to "data.status", ...
        raw = pd.json_normalize(raw.to_dict(orient="records"), sep=".")
    return raw


def _first_valid(values: pd.Series) -> Any:
    idx = values.first_valid_index()
    return None if idx is None else values.loc[idx]


# --------------------------------------------------------------------------
# Column resolution
# --------------------------------------------------------------------------


def _missing_column(src: _Source, field_name: str, column: str, names: list[Any],
                    why: str = "") -> MissingColumnError:
    shown = [str(n) for n in names[:20]]
    more = f", ... and {len(names) - 20} more" if len(names) > 20 else ""
    return MissingColumnError(
        f"column {column!r} ({field_name}) is not in '{src.name}'{why}. Columns there: "
        f"{shown}{more}. Fix: set [columns] {field_name} = \"<column>\" in the config, "
        f"or pass columns={{'{field_name}': '<column>'}} to read_histories."
    )


def _resolve(src: _Source, names: list[Any], cols: ColumnMap) -> dict[str, Any]:
    """Map each canonical field to the column(s) of ``src`` that hold it.

    Values are a column name, a tuple ``(subject, source)`` for the
    CloudEvents entity, or ``None`` (absent).
    """
    have = set(names)
    cloud = src.kind == "jsonl" or "specversion" in have

    def find(name: str) -> str | None:
        if name in have:
            return name
        if cloud and f"data.{name}" in have:
            return f"data.{name}"
        return None

    out: dict[str, Any] = {}
    # entity
    if cols.entity in have:
        out["entity"] = cols.entity
    elif cloud and not cols.is_explicit("entity") and ({"subject", "source"} & have):
        out["entity"] = ("subject" if "subject" in have else None,
                         "source" if "source" in have else None)
    else:
        raise _missing_column(src, "entity", cols.entity, names)
    # time
    if cols.time in have:
        out["time"] = cols.time
    else:
        raise _missing_column(src, "time", cols.time, names)
    # event
    out["event"] = None
    if cols.event is not None:
        if cols.event in have:
            out["event"] = cols.event
        elif cols.is_explicit("event"):
            raise _missing_column(src, "event", cols.event, names)
        elif cloud and "type" in have:
            out["event"] = "type"
    # status
    out["status"] = None
    if cols.status is not None:
        found = find(cols.status)
        if found is not None:
            out["status"] = found
        elif cols.is_explicit("status") or not cols.metrics:
            why = "" if cols.is_explicit("status") else " and no metrics are configured"
            raise _missing_column(src, "status", cols.status, names, why)
    # event_id
    out["event_id"] = None
    if cols.event_id is not None:
        if cols.event_id in have:
            out["event_id"] = cols.event_id
        elif cols.is_explicit("event_id"):
            raise _missing_column(src, "event_id", cols.event_id, names)
        elif cloud and "id" in have:
            out["event_id"] = "id"
    # metrics
    for metric in cols.metrics:
        found = find(metric)
        if found is None:
            raise _missing_column(src, "metrics", metric, names)
        out[metric] = found
    return out


# --------------------------------------------------------------------------
# Column parsers (vectorised)
# --------------------------------------------------------------------------


def _first(mask: Any) -> int:
    return int(np.flatnonzero(np.asarray(mask, dtype=bool))[0])


def _is_textual(values: pd.Series) -> bool:
    return values.dtype == object or isinstance(values.dtype, pd.StringDtype)


def _as_str(values: pd.Series) -> pd.Series:
    """Cast to str, strip whitespace; empty and missing become NaN."""
    if pd.api.types.is_float_dtype(values.dtype):
        finite = values.dropna()
        if len(finite) and np.all(np.mod(finite.to_numpy(dtype="float64"), 1) == 0):
            values = values.astype("Int64")  # 7.0 -> "7", not "7.0"
    out = values.astype("str").str.strip()
    return out.mask(out == "")


def _parse_time(values: pd.Series, column: str, src: _Source,
                raw: pd.DataFrame) -> tuple[pd.Series, Literal["datetime", "integer"]]:
    """Validate the time column: int64 sequence or datetime64[ns, UTC]."""
    fix = ("Fix: write timestamps in ISO 8601 (e.g. 2024-05-01T12:00:00Z) or integers, "
           "or parse the column yourself and pass a DataFrame.")
    textual = _is_textual(values)
    text = values.astype("str").str.strip() if textual else None
    missing = values.isna().to_numpy()
    if text is not None:
        missing = missing | (text == "").to_numpy(dtype=bool)
    if missing.any():
        pos = _first(missing)
        raise TimeParseError(
            f"time column {column!r} has no value at {src.where(raw, pos)}. Time orders each "
            f"handler's steps, so it cannot be missing. Fix: fill or remove those rows."
        )
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype):
        raise TimeParseError(
            f"time column {column!r} holds booleans (first at {src.where(raw, 0)}). {fix}"
        )
    if pd.api.types.is_integer_dtype(dtype):
        return values.astype("int64"), "integer"
    if pd.api.types.is_float_dtype(dtype):
        arr = values.to_numpy(dtype="float64")
        bad = ~np.isfinite(arr) | (np.mod(arr, 1) != 0)
        if bad.any():
            pos = _first(bad)
            raise TimeParseError(
                f"time column {column!r} holds the non-integer number {arr[pos]!r} at "
                f"{src.where(raw, pos)}. {fix}"
            )
        return values.astype("int64"), "integer"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        if isinstance(dtype, pd.DatetimeTZDtype):
            parsed = values.dt.tz_convert("UTC")
        else:
            parsed = values.dt.tz_localize("UTC")
        return _to_ns(parsed, values, column, src, raw, fix), "datetime"

    # Text or Python objects: look at their string form.
    if text is None:
        text = values.astype("str").str.strip()
    is_int = text.str.fullmatch(_INTEGER_PATTERN).to_numpy(dtype=bool)
    if is_int.all():
        try:
            return text.astype("int64"), "integer"
        except (OverflowError, ValueError):
            raise TimeParseError(
                f"time column {column!r} holds integers that do not fit in int64. {fix}"
            ) from None
    if is_int.any():
        pos = _first(is_int != is_int[0])
        raise TimeParseError(
            f"time column {column!r} mixes integers and timestamps: {src.where(raw, pos)} has "
            f"{text.iloc[pos]!r} but {src.where(raw, 0)} has {text.iloc[0]!r}; a time column "
            f"holds either integers or timestamps. {fix}"
        )
    iso = text.str.replace(r"[ \t]*(?:UTC|GMT)$", "Z", regex=True)
    parsed = pd.to_datetime(iso, utc=True, format="ISO8601", errors="coerce")
    bad = parsed.isna().to_numpy()
    if bad.any():
        pos = _first(bad)
        raise TimeParseError(
            f"time column {column!r} has a value that is not a timestamp at "
            f"{src.where(raw, pos)}: {text.iloc[pos]!r}. {fix}"
        )
    # Parsing succeeded; now refuse to guess between naive and aware values.
    aware = text.str.contains(_AWARE_PATTERN, regex=True).to_numpy(dtype=bool)
    if aware.any() and not aware.all():
        pos = _first(aware != aware[0])
        state = ("has no UTC offset", "has one") if aware[0] else ("has a UTC offset", "has none")
        raise MixedTimezoneError(
            f"time column {column!r} mixes time-zone-aware and naive timestamps: "
            f"{src.where(raw, pos)} ({text.iloc[pos]!r}) {state[0]} while "
            f"{src.where(raw, 0)} ({text.iloc[0]!r}) {state[1]}. Fix: give every timestamp an "
            f"offset, e.g. 2024-05-01T12:00:00Z or ...+02:00, or none (naive is taken as UTC)."
        )
    return _to_ns(parsed, values, column, src, raw, fix), "datetime"


def _to_ns(parsed: pd.Series, values: pd.Series, column: str, src: _Source,
           raw: pd.DataFrame, fix: str) -> pd.Series:
    try:
        return parsed.dt.as_unit("ns")
    except (pd.errors.OutOfBoundsDatetime, OverflowError, ValueError):
        lo = pd.Timestamp.min.tz_localize("UTC")
        hi = pd.Timestamp.max.tz_localize("UTC")
        bad = ((parsed < lo) | (parsed > hi)).to_numpy(dtype=bool)
        pos = _first(bad) if bad.any() else 0
        raise TimeParseError(
            f"time column {column!r} has a timestamp outside 1677-2262 at "
            f"{src.where(raw, pos)}: {values.iloc[pos]!r}. {fix}"
        ) from None


def _parse_metric(values: pd.Series, column: str, src: _Source,
                  raw: pd.DataFrame) -> np.ndarray:
    """Validate a metric column as float64 (missing -> NaN)."""
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
        return values.to_numpy(dtype="float64", na_value=np.nan)
    number = pd.to_numeric(values, errors="coerce")
    number = number.to_numpy(dtype="float64", na_value=np.nan)
    text = values.astype("str").str.strip().str.lower()
    blank = values.isna().to_numpy() | text.isin(_NA_TOKENS).to_numpy(dtype=bool)
    bad = np.isnan(number) & ~blank
    if bad.any():
        pos = _first(bad)
        raise MetricTypeError(
            f"metric column {column!r} holds {values.iloc[pos]!r} at {src.where(raw, pos)}, "
            f"which is not a number. Fix: clean that column so it holds only numbers (empty "
            f"for missing), or remove it from [columns] metrics."
        )
    return number


# --------------------------------------------------------------------------
# One source -> one canonical piece
# --------------------------------------------------------------------------


@dataclass
class _Piece:
    frame: pd.DataFrame
    kind: Literal["datetime", "integer"]
    source: _Source
    n_read: int = 0


def _needed_columns(where: dict[str, Any]) -> list[Any]:
    needed: list[Any] = []
    for value in where.values():
        for name in (value if isinstance(value, tuple) else (value,)):
            if name is not None and name not in needed:
                needed.append(name)
    return needed


def _read_source(src: _Source, cols: ColumnMap, offset: int) -> _Piece:
    names, load = _open(src)
    where = _resolve(src, names, cols)
    needed = _needed_columns(where)
    try:
        raw = load(needed)
    except EmptyHistoryError:
        raise
    except Exception as exc:
        raise _unreadable(src, exc) from exc
    if len(raw) == 0:
        raise _empty_error(src, "header only" if src.kind == "csv" else "zero rows")
    return _convert(raw, where, src, cols, offset)


def _iter_source_chunks(src: _Source, cols: ColumnMap, offset: int, chunksize: int,
                        skip: int = 0):
    """Read ``src`` in batches of at most ``chunksize`` rows, as canonical pieces.

    This is the row-by-row reader (see ``_iter_source_batches`` for the
    encoded one). CSV files are read with ``pandas.read_csv(chunksize=...)``,
    Parquet files with ``pyarrow.parquet.ParquetFile.iter_batches``; JSON lines and frames
    (which are in memory anyway) are sliced. The first ``skip`` rows (whole
    batches, already read another way) are passed over.
    """
    names, load = _open(src)
    where = _resolve(src, names, cols)
    needed = _needed_columns(where)
    try:
        if src.kind == "csv":
            raws = pd.read_csv(src.path, dtype=str, usecols=needed, chunksize=chunksize)
        elif src.kind == "parquet":
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(src.path)
            raws = (b.to_pandas() for b in pf.iter_batches(batch_size=chunksize, columns=needed))
        else:
            whole = load(needed)
            raws = (whole.iloc[k:k + chunksize].reset_index(drop=True)
                    for k in range(0, len(whole), chunksize))
        n_total = 0
        for raw in raws:
            if len(raw) == 0:
                continue
            if n_total < skip:
                n_total += len(raw)
                continue
            piece = _convert(raw, where, src, cols, offset + n_total)
            n_total += len(raw)
            yield piece
    except (HistoryError, ConfigError):
        raise
    except Exception as exc:
        raise _unreadable(src, exc) from exc
    if n_total == 0:
        raise _empty_error(src, "header only" if src.kind == "csv" else "zero rows")


def _convert(raw: pd.DataFrame, where: dict[str, Any], src: _Source, cols: ColumnMap,
             offset: int) -> _Piece:
    """Validate and cast the raw columns of one source (or one batch of it)."""
    n = len(raw)
    out: dict[str, Any] = {}
    ent = where["entity"]
    if isinstance(ent, tuple):  # CloudEvents: subject if the row has one, else source
        subject, source_col = ent
        entity = _as_str(raw[subject]) if subject is not None else None
        if source_col is not None:
            fallback = _as_str(raw[source_col])
            entity = fallback if entity is None else entity.fillna(fallback)
        out["entity"] = entity.array
    else:
        out["entity"] = _as_str(raw[ent]).array
    time, kind = _parse_time(raw[where["time"]], where["time"], src, raw)
    out["time"] = time.to_numpy() if kind == "integer" else time.array
    if where["event"] is not None:
        out["event"] = _as_str(raw[where["event"]]).array
    if where["status"] is not None:
        out["status"] = _as_str(raw[where["status"]]).array
    if where["event_id"] is not None:
        out["event_id"] = _as_str(raw[where["event_id"]]).array
    for metric in cols.metrics:
        out[metric] = _parse_metric(raw[where[metric]], where[metric], src, raw)
    out[_ROW] = np.arange(offset, offset + n, dtype="int64")
    frame = pd.DataFrame(out, index=pd.RangeIndex(n))
    logger.debug("read %d rows from %s; columns %s", n, src.name, where)
    return _Piece(frame=frame, kind=kind, source=src)


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------


def read_histories(
    source: Any,
    *,
    columns: ColumnMap | Mapping[str, Any] | None = None,
    format: str | None = None,
    return_report: bool = False,
    chunksize: int | None = None,
    categorical: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, ReadReport]:
    """Read exported histories, validate them, and return the canonical frame.

    Parameters
    ----------
    source : str, PathLike, DataFrame, or list/tuple of these
        A CSV (``.csv``, ``.csv.gz``), Parquet (``.parquet``, ``.pq``) or
        JSON-lines (``.jsonl``, ``.ndjson``, ``.json``; optionally ``.gz``)
        file; a directory (every supported file in it, sorted by name, not
        recursive, hidden files skipped); a glob pattern (matches sorted by
        path, ``**`` allowed); a pandas DataFrame; or a list of any of these,
        read in order.
    columns : ColumnMap or mapping, default=None
        Which columns hold entity, time, event, status, event_id and metrics.
        A mapping is the ``[columns]`` table of the config
        (:meth:`ColumnMap.from_config`). ``None`` uses the canonical names.
    format : {"csv", "parquet", "jsonl"}, default=None
        Read every file in this format instead of guessing from its suffix.
    return_report : bool, default=False
        Also return a :class:`ReadReport`.
    chunksize : int, optional
        Read in batches of at most this many rows (histories larger than
        memory) and return an *iterator* of canonical frames, one per batch,
        instead of one frame (of ``(frame, report)`` pairs with
        ``return_report``). CSV files are read in the batches of
        ``pandas.read_csv(chunksize=N)`` (by pyarrow's streaming reader,
        pandas taking over where pyarrow cannot go on), Parquet files batch
        by batch with ``pyarrow.parquet.ParquetFile.iter_batches``, both
        dictionary-encoded where they can be; sources are read in the
        same order as without ``chunksize``, and ``_row`` counts across all of
        them. Each batch is validated, cleaned and sorted by (entity, time) on
        its own: an entity's rows may span batches, and duplicate event ids
        are only dropped *within* a batch. ``FaultPredictor.fit(...,
        chunksize=N)`` consumes this iterator.
    categorical : bool, default=False
        Return ``entity``, ``event``, ``status`` and ``event_id`` as pandas
        ``Categorical`` columns (sorted categories) instead of strings: the
        same values in a fraction of the memory, and what
        :meth:`FaultPredictor.fit <markovfault.FaultPredictor.fit>` reads.

    Returns
    -------
    frame : DataFrame
        Sorted stably by (entity, time), with a fresh RangeIndex and columns
        ``entity`` (str), ``time`` (datetime64[ns, UTC] or int64), ``event``
        (str), ``status`` (str, when a status column was read), ``event_id``
        (str, when read), one float64 column per metric, and ``_row`` (int64,
        0-based position of the row across all inputs in read order).
    report : ReadReport
        Only when ``return_report`` is true.

    Raises
    ------
    MissingColumnError
        A configured column is absent (names the column, lists those present).
    TimeParseError
        A time value is missing, unparseable, or sources disagree on the
        kind of time (timestamps vs integers).
    MixedTimezoneError
        The time column mixes naive and tz-aware timestamps.
    MetricTypeError
        A metric value is not a number.
    EmptyHistoryError
        A file or frame holds no rows.
    HistoryError
        A file cannot be parsed at all.
    ConfigError
        ``columns`` or ``format`` is invalid, or a file's format is unknown.
    FileNotFoundError
        A path, directory or pattern names no readable file.

    See Also
    --------
    ColumnMap : the column configuration.
    ReadReport : what was read, dropped and filled.

    Notes
    -----
    **Time.** An integer column (or text made only of integers) is kept as
    an int64 sequence. Anything else is parsed as ISO 8601 timestamps
    (a trailing ``UTC``/``GMT`` counts as ``Z``): naive values are taken as
    UTC, values with an offset are converted to UTC. Naive and aware values
    may not be mixed within one column, nor integers and timestamps, nor may
    sources disagree. A missing time is an error, not a drop: time orders
    each handler's steps and no value can be guessed.

    **What is dropped, in this order, and counted in the report:**

    1. ``missing_entity``: rows with no entity (they belong to no history).
    2. ``duplicate_event_id``: a repeated (entity, event_id) pair; the first
       occurrence in read order is kept. Rows without an event_id are never
       duplicates.
    3. ``missing_status``: rows with no usable status, meaning the status
       column (when read) is missing or blank, or any listed metric is NaN.

    A missing or blank event becomes :data:`IMPLICIT_EVENT` and is counted
    in ``report.filled["missing_event_filled"]``. Entities with one row are
    kept and counted in ``report.single_row_entities``. Drops and fills are
    logged at WARNING on the ``markovfault.histories`` logger, the summary
    at INFO. Entity, event, status and event_id are cast to str with
    surrounding whitespace stripped.

    **Optional columns.** ``event`` and ``event_id`` left at their defaults
    may be absent (implicit event; no de-duplication). ``status`` left at its
    default may be absent when metrics are listed. A column given another
    name must be present. When several sources are read, a source lacking
    the event (or event_id) column that others have gets missing values
    there; a source lacking a status column that others have is an error.

    **Speed.** Parquet and CSV files are read dictionary-encoded: each
    distinct entity, event and status is cleaned once and rows are handled as
    integer codes, so a file of millions of rows costs little more than
    pyarrow's own read. Anything this path does not handle exactly like the
    row-by-row reader (times pyarrow does not parse as integers or ISO 8601
    timestamps, values that do not parse, files
    that disagree, CloudEvents attributes) is read row by row instead, with
    the same result and the same errors.

    **CloudEvents.** In JSON-lines sources (and any source with a
    ``specversion`` column) nested objects are flattened with
    :func:`pandas.json_normalize`, so ``data.status`` and
    ``data.latency_ms`` become columns, and status and metrics are found
    as ``<name>`` or ``data.<name>``. When the entity, event or event_id
    columns are left at their defaults and are absent, the CloudEvents
    attributes stand in: entity is ``subject`` where a row has one, else
    ``source`` (the handler is usually the subject when a monitor reports on
    it, and the source when it reports on itself; set ``entity = "source"``
    to always use the source); event is ``type``; event_id is ``id``; time
    is ``time`` already. De-duplication uses (entity, event_id), which for
    CloudEvents is at least as fine as the (source, id) uniqueness that the
    specification requires.

    Examples
    --------
    >>> import pandas as pd
    >>> raw = pd.DataFrame({
    ...     "handler": ["b", "a", "a", "a", "b"],
    ...     "time": ["2024-05-01T10:02:00Z", "2024-05-01T10:01:00Z",
    ...              "2024-05-01T10:00:00Z", "2024-05-01T10:01:00Z",
    ...              "2024-05-01T12:00:00+02:00"],
    ...     "status": ["ok", "slow", "ok", "slow", None],
    ...     "event_id": ["e5", "e2", "e1", "e2", "e6"],
    ... })
    >>> frame, report = read_histories(raw, columns={"entity": "handler"},
    ...                                return_report=True)
    >>> frame[["entity", "time", "event", "status", "_row"]]
      entity                      time event status  _row
    0      a 2024-05-01 10:00:00+00:00  step     ok     2
    1      a 2024-05-01 10:01:00+00:00  step   slow     1
    2      b 2024-05-01 10:02:00+00:00  step     ok     0
    >>> report.dropped
    {'duplicate_event_id': 1, 'missing_status': 1}
    >>> report.n_rows_read == report.n_rows_kept + report.n_dropped
    True
    >>> report.single_row_entities
    1
    """
    cols = ColumnMap.from_config(columns) if not isinstance(columns, ColumnMap) else columns
    fmt = _normalise_format(format)
    sources = _expand(source, fmt, [0])
    if len(sources) == 1 and sources[0].kind == "frame":
        sources[0].name = "<DataFrame>"
    if chunksize is not None:
        if isinstance(chunksize, bool) or not isinstance(chunksize, (int, np.integer)) \
                or chunksize < 1:
            raise ConfigError(f"chunksize = {chunksize!r} must be a positive integer.")
        return _iter_chunks(sources, cols, int(chunksize), return_report, categorical)

    if all(src.kind in ("parquet", "csv", "frame") for src in sources):
        # Parquet and CSV files (and frames) are read dictionary-encoded: distinct
        # values are cleaned once, rows are handled as codes (same frame, same report).
        from ._fastread import Fallback, read_encoded

        try:
            frame, report = read_encoded(sources, cols, categorical)
            return (frame, report) if return_report else frame
        except Fallback as why:
            logger.debug("read_histories: the general reader reads these files (%s)", why)

    pieces: list[_Piece] = []
    offset = 0
    for src in sources:  # a loop over files/frames, never over rows
        piece = _read_source(src, cols, offset)
        offset += len(piece.frame)
        pieces.append(piece)

    frame, report = _finish(pieces, cols, len(sources))
    if categorical:
        for name in ("entity", "event", "status", "event_id"):
            if name in frame:
                frame[name] = frame[name].astype("category")
    if return_report:
        return frame, report
    return frame


def _iter_chunks(sources, cols: ColumnMap, chunksize: int, return_report: bool,
                 categorical: bool = False):
    """The generator behind ``read_histories(..., chunksize=N)``."""
    offset = 0
    first: list[_Piece] = []
    for src in sources:  # a loop over files and batches, never over rows
        for piece, done in _iter_source_batches(src, cols, offset, chunksize, categorical):
            offset += piece.n_read
            if not first:
                first.append(piece)
            else:
                _check_consistent([first[0], piece], cols)
            frame, report = done() if done is not None else _finish([piece], cols, 1)
            if categorical and done is None:
                frame = _as_categories(frame)
            yield (frame, report) if return_report else frame


def _as_categories(frame: pd.DataFrame) -> pd.DataFrame:
    for name in ("entity", "event", "status", "event_id"):
        if name in frame:
            frame[name] = frame[name].astype("category")
    return frame


def _iter_source_batches(src: _Source, cols: ColumnMap, offset: int, chunksize: int,
                         categorical: bool):
    """Pieces of one source, batch by batch, each with a function that finishes it.

    Parquet batches are read dictionary-encoded and finished by
    ``_fastread.finish`` (``done``); a batch the fast path declines, and
    every batch of other sources, is converted row by row (``done`` is None:
    ``_finish`` it). Both give the same frames and reports.
    """
    from . import _fastread

    plan = None
    if src.kind in ("parquet", "csv"):
        try:
            plan = _fastread.plan(src, cols)
        except _fastread.Fallback:
            plan = None
    if plan is None:
        for piece in _iter_source_chunks(src, cols, offset, chunksize):
            piece.n_read = len(piece.frame)
            yield piece, None
        return
    where, needed, text_columns = plan
    n_total = 0
    if src.kind == "parquet":
        tables = _fastread.parquet_batches(src, needed, text_columns, chunksize)
    else:  # the batches pandas.read_csv(chunksize=...) reads, every column as text
        tables = _fastread.csv_batches(src, needed, chunksize)
    try:
        try:
            for table in tables:
                n = table.num_rows
                if n == 0:
                    continue
                try:
                    part = _fastread.encode_table(table, where, cols, src.name)
                    stub = pd.DataFrame(columns=["status"] if "status" in part.text else [])
                    piece = _Piece(frame=stub, kind=part.kind, source=src)
                    # (the fast path may still decline the batch, e.g. when every row is
                    # dropped)
                    result = _fastread.finish([part], cols, categorical, n_sources=1,
                                              offset=offset + n_total)
                    done = (lambda result=result: result)
                except _fastread.Fallback:
                    plain = table.cast(pa_plain_schema(table.schema))
                    piece = _convert(plain.to_pandas(), where, src, cols, offset + n_total)
                    done = None
                piece.n_read = n
                n_total += n
                yield piece, done
        except _fastread.Fallback:  # pyarrow stopped within the file: pandas reads the rest
            for piece in _iter_source_chunks(src, cols, offset, chunksize, skip=n_total):
                piece.n_read = len(piece.frame)
                n_total += piece.n_read
                yield piece, None
    except (HistoryError, ConfigError):
        raise
    except Exception as exc:
        raise _unreadable(src, exc) from exc
    if n_total == 0:
        raise _empty_error(src, "header only" if src.kind == "csv" else "zero rows")


def pa_plain_schema(schema):
    """``schema`` with dictionary columns decoded to their value types."""
    import pyarrow as pa

    return pa.schema([pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type)
                               else f.type) for f in schema])


def _finish(pieces: Sequence[_Piece], cols: ColumnMap,
            n_sources: int) -> tuple[pd.DataFrame, ReadReport]:
    """Combine pieces, drop and fill, sort by (entity, time), and report."""
    _check_consistent(pieces, cols)
    frame = _combine(pieces, cols)
    n_read = len(frame)

    dropped: dict[str, int] = {}
    keep = np.array(frame["entity"].notna(), dtype=bool)  # a writable copy
    _count(dropped, "missing_entity", ~keep)
    if "event_id" in frame:
        # duplicates among the rows still kept; the first in read order stays
        sub = frame.loc[keep]
        dup = np.zeros(len(frame), dtype=bool)
        dup[np.flatnonzero(keep)] = (sub.duplicated(["entity", "event_id"], keep="first")
                                     & sub["event_id"].notna()).to_numpy()
        _count(dropped, "duplicate_event_id", dup)
        keep = keep & ~dup
    unusable = np.zeros(len(frame), dtype=bool)
    if "status" in frame:
        unusable = unusable | frame["status"].isna().to_numpy()
    if cols.metrics:
        unusable = unusable | np.isnan(frame[list(cols.metrics)].to_numpy(dtype="float64")).any(axis=1)
    _count(dropped, "missing_status", keep & unusable)
    keep = keep & ~unusable
    frame = frame.loc[keep]

    filled: dict[str, int] = {}
    n_event_missing = int(frame["event"].isna().sum())
    if n_event_missing:
        filled["missing_event_filled"] = n_event_missing
        frame = frame.assign(event=frame["event"].fillna(IMPLICIT_EVENT))

    # Stable sort by (entity, time): ties keep read order.
    codes, uniques = pd.factorize(frame["entity"], sort=True)
    time_key = frame["time"].astype("int64").to_numpy()
    from ._fastread import group_order

    order = group_order(codes, time_key, len(uniques))  # np.lexsort((time_key, codes))
    frame = frame.reset_index(drop=True) if order is None else \
        frame.iloc[order].reset_index(drop=True)
    counts = np.bincount(codes, minlength=len(uniques))

    report = ReadReport(
        n_sources=n_sources,
        n_rows_read=n_read,
        n_rows_kept=len(frame),
        n_entities=len(uniques),
        dropped=dropped,
        filled=filled,
        single_row_entities=int((counts == 1).sum()),
        time_kind=pieces[0].kind,
        per_source=[(p.source.name, len(p.frame)) for p in pieces],
    )
    if dropped or filled:
        parts = []
        if dropped:
            parts.append(f"dropped {report.n_dropped} of {n_read} rows: "
                         + _format_counts(dropped))
        if filled:
            parts.append("filled: " + _format_counts(filled))
        logger.warning("read_histories %s", "; ".join(parts))
    logger.info("read_histories %s", report.summary())
    return frame, report


def _count(dropped: dict[str, int], reason: str, mask: np.ndarray) -> None:
    n = int(mask.sum())
    if n:
        dropped[reason] = n


def _check_consistent(pieces: Sequence[_Piece], cols: ColumnMap) -> None:
    """Sources must agree on the kind of time and on having a status column."""
    first = pieces[0]
    for piece in pieces[1:]:
        if piece.kind != first.kind:
            raise TimeParseError(
                f"time column {cols.time!r} holds {first.kind} values in "
                f"'{first.source.name}' but {piece.kind} values in '{piece.source.name}'. "
                "Fix: export every file with the same kind of time (timestamps or integers)."
            )
    with_status = [p for p in pieces if "status" in p.frame]
    if with_status and len(with_status) != len(pieces):
        lacking = next(p for p in pieces if "status" not in p.frame)
        raise MissingColumnError(
            f"column {cols.status!r} (status) is not in '{lacking.source.name}' but is in "
            f"'{with_status[0].source.name}'; its rows would have no status. Columns there: "
            f"{[c for c in lacking.frame.columns if c != _ROW]} (canonical names). Fix: export "
            "the status column everywhere, or read these sources separately."
        )


def _combine(pieces: Sequence[_Piece], cols: ColumnMap) -> pd.DataFrame:
    """Concatenate pieces in read order with the canonical column order."""
    has_event = any("event" in p.frame for p in pieces)
    has_id = any("event_id" in p.frame for p in pieces)
    frames = []
    for piece in pieces:
        f = piece.frame
        n = len(f)
        if "event" not in f:
            f = f.assign(event=pd.Series(IMPLICIT_EVENT if not has_event else np.nan,
                                         index=f.index, dtype="str"))
        if has_id and "event_id" not in f:
            f = f.assign(event_id=pd.Series(np.nan, index=pd.RangeIndex(n), dtype="str"))
        frames.append(f)
    order = ["entity", "time", "event"]
    order += [c for c in ("status", "event_id") if c in frames[0]]
    order += list(cols.metrics) + [_ROW]
    frame = pd.concat([f[order] for f in frames], ignore_index=True)
    for name in ("entity", "event", "status", "event_id"):
        if name in frame and frame[name].dtype != "str":
            frame[name] = frame[name].astype("str")
    return frame
