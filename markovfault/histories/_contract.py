"""The input contract: which columns hold what (:class:`ColumnMap`), what a read did (:class:`ReadReport`),
and the vectorised checks and casts that both readers apply to every column.

Part of the internal API of :mod:`markovfault.histories` (see its ``__init__``). The dictionary-encoded reader
(``_fast``) and the row-by-row reader (``_read``) resolve columns with :func:`resolve_columns` and clean them with
:func:`as_str`, :func:`parse_time` and :func:`parse_metric`, so that both give the same frames and the same errors.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from ..exceptions import (
    ConfigError,
    DataWarning,
    MetricTypeError,
    MissingColumnError,
    MixedTimezoneError,
    TimeParseError,
)

if TYPE_CHECKING:  # annotations only
    from ._sources import Source

logger = logging.getLogger("markovfault.histories")

#: The event every row gets when the input has no event column.
from .._constants import IMPLICIT_EVENT  # noqa: E402  (one spelling for the whole package)

# Canonical column names of the frame that read_histories returns.
_CANONICAL = ("entity", "time", "event", "status", "event_id")
ROW = "_row"  # the source row of each row, kept by the internal readers (read_frame) only

#: Where :func:`read_histories` attaches the :class:`ReadReport` of the frame it returns.
REPORT_ATTR = "read_report"

#: Where the internal readers (``read_frame``, ``iter_frames``) note which rows came from which source, as
#: ``[(name, first _row, n rows), ...]``, so that later layers name a row by its source (:func:`describe_row`).
SOURCES_ATTR = "markovfault_sources"


def describe_row(frame: pd.DataFrame, position: int) -> str:
    """Name the row at ``position`` of ``frame`` for a message: ``row 6 of 'a.csv'`` (1-based, in its source).

    Uses the ``_row`` column and the sources the readers noted in ``attrs``; a frame that lost them says
    ``row 6 of the input (1-based, in read order)``, a frame without ``_row`` names its position and index.
    """
    if ROW not in frame.columns:
        label = frame.index[position]
        label = label.item() if isinstance(label, np.generic) else label
        return f"row {position + 1} of the frame (index label {label!r})"
    row = int(frame[ROW].iloc[position])
    for name, start, n in frame.attrs.get(SOURCES_ATTR, ()):
        if start <= row < start + n:
            shown = name if str(name).startswith("<") else f"'{name}'"
            return f"row {row - start + 1} of {shown}"
    return f"row {row + 1} of the input (1-based, in read order)"

# A time of day followed by a UTC offset: "...10:00Z", "...10:00:00.5+02:00",
# "...10:00:00-0500", "...10:00+02", "...10:00:00 UTC".
# [0-9] and [ \t] rather than \d and \s keep pandas on pyarrow's fast regex engine.
_AWARE_PATTERN = (
    r"[0-9]:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?[ \t]*"
    r"(?:[Zz]|UTC|GMT|[+-][0-9]{2}(?::?[0-9]{2})?)$"
)
_INTEGER_PATTERN = r"[+-]?[0-9]+"
_NA_TOKENS = ("", "nan", "na", "n/a", "null", "none", "<na>")

#: ``ColumnMap.time_unit`` values: nanoseconds per unit of an integer epoch time, or ``"step"`` (a sequence).
_NS_PER_UNIT = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
TIME_UNITS = (*_NS_PER_UNIT, "step")
# The integer ranges that look like Unix epoch times (2001-09-09 .. 2096-10-02) in each unit.
_EPOCH_RANGES = {unit: (10**9 * 10**(3 * k), 4 * 10**9 * 10**(3 * k))
                 for k, unit in enumerate(("s", "ms", "us", "ns"))}


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
    group : str or None, default=None
        The column naming what each entity belongs to (a service, a consumer
        group), for the group context of history-aware states. Read only
        when named, and then required, with a value in every row.
    trace : str or None, default=None
        The column holding a trace or correlation id (a W3C trace id, an
        order id, a CloudEvents ``subject``) that links steps of different
        handlers into one path; the canonical frame calls it ``trace``
        (str). Read only when named, and then required; a missing or blank
        value is a step outside any trace (kept, as missing).
    keep_duplicates : bool, default=False
        Keep exact duplicate rows. By default a row without an event id that
        repeats an earlier row in every field read (entity, time, event,
        status, every metric, and group and trace when read) is dropped as
        ``duplicate_row`` and counted in the report: an export that writes a
        step twice would otherwise count its transition twice. Set it (TOML
        ``[columns] keep_duplicates = true``) when identical steps are real.
    time_unit : {"s", "ms", "us", "ns", "step"} or None, default=None
        How to read an integer time column. ``None``: as step numbers (a
        sequence), with a :class:`~markovfault.exceptions.DataWarning` when
        every value lies in a range that looks like Unix epoch time (seconds
        1e9..4e9, milliseconds 1e12..4e12, microseconds 1e15..4e15,
        nanoseconds 1e18..4e18: 2001 to 2096). ``"s"``, ``"ms"``, ``"us"``,
        ``"ns"``: integers are Unix epoch times in that unit and become UTC
        timestamps. ``"step"``: step numbers, without the warning. Timestamp
        columns are read as timestamps whatever it says. TOML: ``[columns]
        time_unit = "s"``.

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

    **Nested fields (JSON lines).** Nested objects of JSON-lines records are
    flattened on read into columns named by their dotted path: the record
    ``{"subject": "on_order_created", "data": {"status": "ok",
    "latency_ms": 12.5}}`` has the columns ``subject``, ``data.status`` and
    ``data.latency_ms`` (deeper objects too: ``data.a.b``). Any field may name
    such a column: ``status="data.status"``, in TOML ``[columns] status =
    "data.status"``. The canonical frame names its columns as always
    (``status``; a metric by the name listed, so ``metrics=["data.latency_ms"]``
    gives a column ``data.latency_ms``). In JSON-lines sources (and sources with
    a ``specversion`` column) a status or metric named without a path is also
    found under ``data.``: ``metrics=["latency_ms"]`` reads ``data.latency_ms``
    into a column ``latency_ms``. Parquet struct columns are flattened the
    same way (those files are then read row by row); DataFrames are not.
    :data:`markovfault.instrument.CLOUDEVENTS_COLUMNS` is the map of the
    recorder's lines, which uses both.

    Examples
    --------
    >>> ColumnMap.from_config({"entity": "handler", "event": "", "metrics": ["latency_ms"]})
    ColumnMap(entity='handler', time='time', event=None, status='status', event_id='event_id', metrics=('latency_ms',), group=None, trace=None, keep_duplicates=False, time_unit=None)
    >>> ColumnMap.from_config({"entity": "subject", "event": "type", "status": "data.status", "event_id": "id",
    ...                        "trace": "traceid"}).status
    'data.status'
    """

    entity: str = "entity"
    time: str = "time"
    event: str | None = "event"
    status: str | None = "status"
    event_id: str | None = "event_id"
    metrics: tuple[str, ...] = ()
    group: str | None = None
    trace: str | None = None
    keep_duplicates: bool = False
    time_unit: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.keep_duplicates, (bool, np.bool_)):
            raise ConfigError(
                f"[columns] keep_duplicates = {self.keep_duplicates!r}: must be true or false."
            )
        object.__setattr__(self, "keep_duplicates", bool(self.keep_duplicates))
        if self.time_unit == "":
            object.__setattr__(self, "time_unit", None)
        if self.time_unit is not None and self.time_unit not in TIME_UNITS:
            raise ConfigError(
                f"[columns] time_unit = {self.time_unit!r}: must be one of "
                f"{', '.join(repr(u) for u in TIME_UNITS)} (integer times in that Unix epoch unit, "
                "or \"step\" for step numbers), or left out."
            )
        for name in ("entity", "time"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ConfigError(
                    f"[columns] {name} = {value!r}: must be a non-empty column name. "
                    f"Fix: set [columns] {name} = \"<column>\"."
                )
        for name in ("event", "status", "event_id", "group", "trace"):
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
        clash = sorted(set(metrics) & set(_CANONICAL + (ROW,) + (("trace",) if self.trace else ())))
        if clash:
            raise ConfigError(
                f"[columns] metrics: {clash[0]!r} is a canonical column name and cannot be a "
                "metric. Fix: rename that column before reading."
            )
        used: dict[str, str] = {}
        pairs = [(name, getattr(self, name)) for name in _CANONICAL + ("group", "trace")]
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
            ``event_id``, ``metrics``, ``group``, ``trace``, ``keep_duplicates`` and
            ``time_unit``; missing keys keep their defaults and
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
        ``"missing_status"``, ``"missing_metric"``, ``"duplicate_row"``. Reasons with no drops are
        left out.
    filled : dict of str to int
        Values filled in kept rows, by reason: ``"missing_event_filled"``
        (a missing event became :data:`IMPLICIT_EVENT`).
    single_row_entities : int
        Entities with one row only. They are kept but have no transition.
    time_kind : {"datetime", "integer"} or None
        Whether ``time`` holds UTC timestamps or an integer sequence.
    per_source : list of (str, int)
        Each source's name and number of rows, in read order.
    missing_metrics : dict of str to int
        The rows dropped as ``"missing_metric"``, by metric column: how many of
        them had no number there (blank, ``n/a``, ``NaN``, ...). A row missing
        several metrics counts under each of them.

    Notes
    -----
    :func:`read_histories` attaches the report to the frame it returns, as
    ``frame.attrs["read_report"]``; :func:`iter_histories` yields it next to
    each batch (and attaches it there too).
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
    missing_metrics: dict[str, int] = field(default_factory=dict)

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
            lines.append(f"  dropped {self.n_dropped}: " + format_counts(self.dropped))
            if self.missing_metrics:
                lines.append("  missing metric values by column: " + format_counts(self.missing_metrics))
        else:
            lines.append("  dropped 0")
        if self.filled:
            lines.append("  filled: " + format_counts(self.filled))
        shown = self.per_source[:10]
        more = len(self.per_source) - len(shown)
        sources = ", ".join(f"{name} ({rows} rows)" for name, rows in shown)
        lines.append("  sources: " + sources + (f", ... and {more} more" if more else ""))
        return "\n".join(lines)


def format_counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in counts.items())


# --------------------------------------------------------------------------
# Column resolution
# --------------------------------------------------------------------------


def _missing_column(src: Source, field_name: str, column: str, names: list[Any],
                    why: str = "", fix: str | None = None) -> MissingColumnError:
    shown = [str(n) for n in names[:20]]
    more = f", ... and {len(names) - 20} more" if len(names) > 20 else ""
    if fix is None:
        fix = (f"Fix: set [columns] {field_name} = \"<column>\" in the config, "
               f"or pass columns={{'{field_name}': '<column>'}} to read_histories.")
    return MissingColumnError(
        f"column {column!r} ({field_name}) is not in '{src.name}'{why}. Columns there: "
        f"{shown}{more}. {fix}"
    )


_NO_STATUS_FIX = (
    "Fix: if the states are made from numeric columns ([states] kind = \"thresholds\", \"quantiles\" or "
    "\"clusters\"), list those columns in [columns] metrics = [\"<column>\", ...] (columns={'metrics': "
    "[...]}): numeric columns are read only when listed there. If the export has a status label under "
    "another name, set [columns] status = \"<column>\"."
)


def resolve_columns(src: Source, names: list[Any], cols: ColumnMap) -> dict[str, Any]:
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
            if cols.is_explicit("status"):
                raise _missing_column(src, "status", cols.status, names)
            raise _missing_column(src, "status", cols.status, names, " and no metrics are configured",
                                  fix=_NO_STATUS_FIX)
    # event_id
    out["event_id"] = None
    if cols.event_id is not None:
        if cols.event_id in have:
            out["event_id"] = cols.event_id
        elif cols.is_explicit("event_id"):
            raise _missing_column(src, "event_id", cols.event_id, names)
        elif cloud and "id" in have:
            out["event_id"] = "id"
    # group (off by default: read only when named)
    if cols.group is not None:
        if cols.group not in have:
            raise _missing_column(src, "group", cols.group, names)
        out["group"] = cols.group
    # trace (off by default: read only when named)
    if cols.trace is not None:
        if cols.trace not in have:
            raise _missing_column(src, "trace", cols.trace, names)
        out["trace"] = cols.trace
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


def as_str(values: pd.Series) -> pd.Series:
    """Cast to str, strip whitespace; empty and missing become NaN."""
    if pd.api.types.is_float_dtype(values.dtype):
        finite = values.dropna()
        if len(finite) and np.all(np.mod(finite.to_numpy(dtype="float64"), 1) == 0):
            values = values.astype("Int64")  # 7.0 -> "7", not "7.0"
    out = values.astype("str").str.strip()
    return out.mask(out == "")


def parse_time(values: pd.Series, column: str, src: Source,
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


def _to_ns(parsed: pd.Series, values: pd.Series, column: str, src: Source,
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


def parse_metric(values: pd.Series, column: str, src: Source,
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


def epoch_times(values: np.ndarray, unit: str, column: str, src: Source,
                raw: pd.DataFrame) -> np.ndarray:
    """Integer Unix epoch times in ``unit`` as int64 UTC nanoseconds (``ColumnMap.time_unit``)."""
    values = np.asarray(values, dtype=np.int64)
    scale = _NS_PER_UNIT[unit]
    limit = np.iinfo(np.int64).max // scale
    bad = (values > limit) | (values < -limit)
    if bad.any():
        pos = _first(bad)
        at = src.where(raw, pos) if src is not None else f"position {pos}"
        raise TimeParseError(
            f"time column {column!r} holds {int(values[pos])} at {at}, which is outside "
            f"1677-2262 as epoch time in {unit!r} ([columns] time_unit). Fix: set the time_unit the "
            "export uses, or leave it out to read the integers as step numbers."
        )
    return values * scale


def warn_epoch_like(time: np.ndarray, cols: ColumnMap) -> None:
    """Warn when integer times read as step numbers look like Unix epoch times (``time_unit`` not set)."""
    if cols.time_unit is not None or len(time) == 0:
        return
    lo, hi = int(np.min(time)), int(np.max(time))
    for unit, (start, stop) in _EPOCH_RANGES.items():
        if start <= lo and hi <= stop:
            first = pd.Timestamp(lo * _NS_PER_UNIT[unit], tz="UTC")
            last = pd.Timestamp(hi * _NS_PER_UNIT[unit], tz="UTC")
            message = (
                f"time column {cols.time!r} holds integers from {lo} to {hi}, which look like Unix epoch "
                f"times in {unit!r} ({first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC) but are read as "
                f"step numbers: durations (max_gap, within=..., end_after) would be meaningless. Fix: set "
                f"[columns] time_unit = \"{unit}\" (ColumnMap(time_unit=\"{unit}\")) to read them as UTC "
                "timestamps, or time_unit = \"step\" to keep them as step numbers without this warning."
            )
            logger.warning("read_histories: %s", message)
            warnings.warn(message, DataWarning, stacklevel=2)
            return


def drop_message(report: ReadReport) -> str | None:
    """The warning line of what a read dropped and filled (``None``: nothing)."""
    parts = []
    if report.dropped:
        text = f"dropped {report.n_dropped} of {report.n_rows_read} rows: " + format_counts(report.dropped)
        if report.missing_metrics:
            text += " (no number in metric column " + format_counts(report.missing_metrics) + ")"
        if "duplicate_row" in report.dropped:
            text += ("; duplicate_row: exact repeats of an earlier row without an event id (set "
                     "[columns] keep_duplicates = true to keep them)")
        parts.append(text)
    if report.filled:
        parts.append("filled: " + format_counts(report.filled))
    return "; ".join(parts) or None


def exact_repeats(order: np.ndarray | None, entity: np.ndarray, time: np.ndarray,
                  keys: Mapping[str, np.ndarray] | tuple[pd.DataFrame, list[str]], candidates: np.ndarray | None) -> np.ndarray:
    """Positions in the sorted order of rows that repeat an earlier row in every key (``duplicate_row``).

    ``order`` is the stable sort by (entity, time) of the rows (``None``: they are sorted), ``entity``
    and ``time`` their codes and int64 times, ``keys`` the other columns compared (codes, metrics),
    ``candidates`` the rows that may be repeats (without an event id; ``None``: all), all in read order.
    Repeats share their entity and time, so after the sort they sit in runs of equal (entity, time):
    one vectorised pass over the sorted arrays finds those runs (few in real exports), and only their
    rows are compared column by column. Within a run the sort keeps read order, so the first
    occurrence in read order stays. Returns sorted positions (into ``order``), ascending.
    """
    e = entity if order is None else entity[order]
    t = time if order is None else time[order]
    tie = (e[1:] == e[:-1]) & (t[1:] == t[:-1])
    if not tie.any():
        return np.zeros(0, dtype=np.int64)
    in_run = np.zeros(len(e), dtype=bool)
    in_run[1:] |= tie
    in_run[:-1] |= tie
    pos = np.flatnonzero(in_run)
    rows = pos if order is None else np.asarray(order)[pos]
    if candidates is not None:
        ok = candidates[rows]
        pos, rows = pos[ok], rows[ok]
    if len(pos) < 2:
        return np.zeros(0, dtype=np.int64)
    if isinstance(keys, tuple):  # (frame, column names): the columns taken at the runs' rows only
        frame = keys[0].iloc[rows][list(keys[1])].reset_index(drop=True)
    else:
        frame = pd.DataFrame({f"k{i}": np.asarray(v)[rows] for i, v in enumerate(keys.values())})
    frame = frame.assign(_entity=e[pos], _time=t[pos])
    return pos[frame.duplicated(keep="first").to_numpy()]


def needed_columns(where: dict[str, Any]) -> list[Any]:
    """The columns to load for ``where`` (what :func:`resolve_columns` found), each once, in field order."""
    needed: list[Any] = []
    for value in where.values():
        for name in (value if isinstance(value, tuple) else (value,)):
            if name is not None and name not in needed:
                needed.append(name)
    return needed
