"""The public readers: :func:`read_histories` (one frame, its report in ``attrs``) and :func:`iter_histories`
(``(frame, report)`` batches).

Both return the canonical frame without the internal ``_row`` column; the model layers read with
:func:`~markovfault.histories._read.read_frame` and :func:`~markovfault.histories._read.iter_frames`, which keep it.
The shapes ``read_histories(..., return_report=True)`` and ``read_histories(..., chunksize=N)`` still work,
unchanged, with a :class:`DeprecationWarning`.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import pandas as pd

from ._contract import REPORT_ATTR, ROW, SOURCES_ATTR, ColumnMap, ReadReport
from ._read import iter_frames, read_frame

_RETURN_REPORT_DEPRECATED = (
    "read_histories(..., return_report=True) is deprecated and will be removed: the report is attached to "
    "the frame, read it as frame.attrs['read_report']."
)
_CHUNKSIZE_DEPRECATED = (
    "read_histories(..., chunksize=N) is deprecated and will be removed: use iter_histories(source, "
    "chunksize=N), which yields (frame, report) batches."
)


def read_histories(
    source: Any,
    *,
    columns: ColumnMap | Mapping[str, Any] | None = None,
    format: str | None = None,
    return_report: bool = False,
    chunksize: int | None = None,
    categorical: bool = False,
    keep_duplicates: bool | None = None,
) -> pd.DataFrame:
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
        Deprecated: the report is ``frame.attrs["read_report"]``. When true,
        return ``(frame, report)`` exactly as before, with a
        :class:`DeprecationWarning` (the frame then also holds the internal
        ``_row`` column, the 0-based position of each row across all inputs
        in read order, and carries no ``attrs``).
    chunksize : int, optional
        Deprecated: use :func:`iter_histories`. When given, return an
        iterator of batches exactly as before, with a
        :class:`DeprecationWarning`: frames (with the internal ``_row``
        column, counting across batches) or, with ``return_report``,
        ``(frame, report)`` pairs.
    categorical : bool, default=False
        Return ``entity``, ``event``, ``status`` and ``event_id`` as pandas
        ``Categorical`` columns (sorted categories) instead of strings: the
        same values in a fraction of the memory, and what
        :meth:`FaultPredictor.fit <markovfault.FaultPredictor.fit>` reads.
    keep_duplicates : bool, default=None
        Keep exact duplicate rows (see "What is dropped" below) instead of
        dropping them. ``None`` takes ``columns``' setting
        (:class:`ColumnMap` ``keep_duplicates``, TOML ``[columns]
        keep_duplicates = true``; ``FaultPredictor(columns={"keep_duplicates":
        True})``), which is false unless set.

    Returns
    -------
    frame : DataFrame
        Sorted stably by (entity, time), with a fresh RangeIndex and columns
        ``entity`` (str), ``time`` (datetime64[ns, UTC] or int64), ``event``
        (str), ``status`` (str, when a status column was read), ``event_id``
        (str, when read) and one float64 column per metric. Its
        :class:`ReadReport` (what was read, dropped and filled) is attached
        as ``frame.attrs["read_report"]``; pandas carries ``attrs`` along
        through many operations, but rely on it only right after reading.

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
    iter_histories : the same, batch by batch, for histories larger than memory.
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
    each handler's steps and no value can be guessed. Integers that look like
    Unix epoch times (seconds 1e9..4e9, milliseconds 1e12..4e12, and so on:
    2001 to 2096) are still step numbers, with a
    :class:`~markovfault.exceptions.DataWarning` (and a log record) that says
    to set :class:`ColumnMap` ``time_unit`` (``[columns] time_unit = "s"``)
    to read them as UTC timestamps, or ``"step"`` to keep them as steps.

    **What is dropped, in this order, and counted in the report:**

    1. ``missing_entity``: rows with no entity (they belong to no history).
    2. ``duplicate_event_id``: a repeated (entity, event_id) pair; the first
       occurrence in read order is kept. Rows without an event_id are never
       duplicates.
    3. ``missing_status``: rows whose status (when a status column is read)
       is missing or blank.
    4. ``missing_metric``: rows with a status but no number in a listed metric
       column (blank, ``n/a``, ``NaN``, ...); ``report.missing_metrics``
       counts them by column, and the warning names the columns.
    5. ``duplicate_row``: exact repeats, unless ``keep_duplicates``: a row
       without an event id whose entity, time, event, status, metrics (and
       group and trace, when read) all equal those of an earlier row without
       an event id; the first in read order is kept. An export that writes a
       step twice would otherwise count its transition twice. Found by
       hashing the rows (vectorised; a few percent of a read).

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

    **CloudEvents.** In JSON-lines sources nested objects are flattened into
    columns named by their dotted path, so ``data.status`` and
    ``data.latency_ms`` become columns that ``columns`` may name (see
    :class:`ColumnMap`, "Nested fields"); in these sources (and any source
    with a ``specversion`` column) status and metrics are also found as
    ``data.<name>``. The recorder's files
    (:class:`markovfault.instrument.HistoryRecorder`) read with
    ``columns=markovfault.instrument.CLOUDEVENTS_COLUMNS``. When the entity, event or event_id
    columns are left at their defaults and are absent, the CloudEvents
    attributes stand in: entity is ``subject`` where a row has one, else
    ``source`` (the handler is usually the subject when a monitor reports on
    it, and the source when it reports on itself; set ``entity = "source"``
    to always use the source); event is ``type``; event_id is ``id``; time
    is ``time`` already. De-duplication uses (entity, event_id), which for
    CloudEvents is at least as fine as the (source, id) uniqueness that the
    specification requires.


    **Its own output.** A frame that ``read_histories`` returned (it carries
    ``attrs["read_report"]``) reads again to the same frame: its columns are
    read by their canonical names, whatever ``columns`` names (its
    ``metrics`` still say which metric columns to keep). So
    ``FaultPredictor(columns=...).fit(read_histories(source, columns=...))``
    works as ``fit(source)`` does.

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
    >>> frame = read_histories(raw, columns={"entity": "handler"})
    >>> frame
      entity                      time event status event_id
    0      a 2024-05-01 10:00:00+00:00  step     ok       e1
    1      a 2024-05-01 10:01:00+00:00  step   slow       e2
    2      b 2024-05-01 10:02:00+00:00  step     ok       e5
    >>> report = frame.attrs["read_report"]
    >>> report.dropped
    {'duplicate_event_id': 1, 'missing_status': 1}
    >>> report.n_rows_read == report.n_rows_kept + report.n_dropped
    True
    >>> report.single_row_entities
    1
    """
    columns = _with_duplicates(columns, keep_duplicates)
    if chunksize is not None:
        warnings.warn(_CHUNKSIZE_DEPRECATED, DeprecationWarning, stacklevel=2)
        batches = (_bare(frame, report) for frame, report in
                   iter_frames(source, chunksize, columns=columns, categorical=categorical, format=format))
        return batches if return_report else (frame for frame, _ in batches)
    if return_report:
        warnings.warn(_RETURN_REPORT_DEPRECATED, DeprecationWarning, stacklevel=2)
        return _bare(*read_frame(source, columns=columns, categorical=categorical, format=format))
    frame, report = read_frame(source, columns=columns, categorical=categorical, format=format)
    return _public(frame, report)


def iter_histories(
    source: Any,
    *,
    chunksize: int,
    columns: ColumnMap | Mapping[str, Any] | None = None,
    format: str | None = None,
    categorical: bool = False,
    keep_duplicates: bool | None = None,
) -> Iterator[tuple[pd.DataFrame, ReadReport]]:
    """Read exported histories in batches: ``(frame, report)`` per batch of at most ``chunksize`` rows.

    For histories larger than memory. Each batch is what :func:`read_histories`
    returns for those rows: validated, cleaned and sorted by (entity, time)
    on its own, its :class:`ReadReport` next to it (and attached as
    ``frame.attrs["read_report"]``). An entity's rows may span batches, and
    duplicate event ids are only dropped *within* a batch.

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
    chunksize : int
        The most rows a batch holds. CSV files are read in the batches of
        ``pandas.read_csv(chunksize=N)`` (by pyarrow's streaming reader,
        pandas taking over where pyarrow cannot go on), Parquet files batch
        by batch with ``pyarrow.parquet.ParquetFile.iter_batches``, both
        dictionary-encoded where they can be; JSON lines and frames (in
        memory anyway) are sliced. Sources are read in the same order as by
        :func:`read_histories`; a batch never spans two sources.
    categorical : bool, default=False
        Return ``entity``, ``event``, ``status`` and ``event_id`` as pandas
        ``Categorical`` columns (sorted categories) instead of strings: the
        same values in a fraction of the memory, and what
        :meth:`FaultPredictor.fit <markovfault.FaultPredictor.fit>` reads.
    keep_duplicates : bool, default=None
        As in :func:`read_histories`. Exact duplicate rows are found within
        a batch.

    Returns
    -------
    batches : iterator of (DataFrame, ReadReport)
        The frames have the columns of :func:`read_histories`' frame. The
        sources are found and ``chunksize`` is checked when this function is
        called; the files are read as the batches are taken.

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
        ``columns``, ``format`` or ``chunksize`` is invalid, or a file's format
        is unknown.
    FileNotFoundError
        A path, directory or pattern names no readable file.

    See Also
    --------
    read_histories : everything in one frame.
    FaultPredictor.fit : ``fit(source, chunksize=N)`` fits on these batches.

    Examples
    --------
    >>> import pandas as pd
    >>> raw = pd.DataFrame({"entity": ["a", "b", "a", "b", "a"], "time": [1, 1, 2, 2, 3],
    ...                     "status": ["ok", "ok", "slow", "down", "ok"]})
    >>> for frame, report in iter_histories(raw, chunksize=3):
    ...     print(frame["entity"].tolist(), frame["time"].tolist(), report.per_source)
    ['a', 'a', 'b'] [1, 2, 1] [('<DataFrame>', 3)]
    ['a', 'b'] [3, 2] [('<DataFrame>', 2)]
    """
    columns = _with_duplicates(columns, keep_duplicates)
    return _public_batches(iter_frames(source, chunksize, columns=columns, categorical=categorical,
                                       format=format))


def _with_duplicates(columns, keep_duplicates: bool | None):
    """``columns`` with ``keep_duplicates`` set when it is given."""
    if keep_duplicates is None:
        return columns
    cols = columns if isinstance(columns, ColumnMap) else ColumnMap.from_config(columns)
    return dataclasses.replace(cols, keep_duplicates=keep_duplicates)


def _public_batches(batches: Iterator[tuple[pd.DataFrame, ReadReport]]):
    for frame, report in batches:
        yield _public(frame, report), report


def _bare(frame: pd.DataFrame, report: ReadReport) -> tuple[pd.DataFrame, ReadReport]:
    """The deprecated shapes: the internal frame without ``attrs``, as before."""
    frame.attrs.pop(SOURCES_ATTR, None)
    return frame, report


def _public(frame: pd.DataFrame, report: ReadReport) -> pd.DataFrame:
    """The frame users get: without the internal ``_row`` column, its report in ``attrs``."""
    del frame[ROW]  # in place: the column's block goes, the others stay shared
    frame.attrs.pop(SOURCES_ATTR, None)
    frame.attrs[REPORT_ATTR] = report
    return frame
