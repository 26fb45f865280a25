"""The readers behind :func:`read_histories` and :func:`iter_histories`: one or many sources to the canonical frame.

Part of the internal API of :mod:`markovfault.histories` (see its ``__init__``). :func:`read_frame` and
:func:`iter_frames` are what the model layers read with: the canonical frame *with* its ``_row`` column (the
position of each row across all sources in read order, which error messages and trajectories use), and the
:class:`ReadReport`. Parquet and CSV files (and frames) are read dictionary-encoded by ``_fast`` where it
applies; everything else, and whatever that path declines, is read here row by row (combined, de-duplicated
and sorted by :func:`_finish`), with the same frames, reports and errors.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..exceptions import ConfigError, EmptyHistoryError, HistoryError, MissingColumnError, TimeParseError
from . import _fast
from ._contract import (
    IMPLICIT_EVENT,
    REPORT_ATTR,
    ROW,
    SOURCES_ATTR,
    ColumnMap,
    ReadReport,
    as_str,
    drop_message,
    exact_repeats,
    epoch_times,
    warn_epoch_like,
    logger,
    needed_columns,
    parse_metric,
    parse_time,
    resolve_columns,
)
from ._sources import (
    Source,
    empty_error,
    expand_sources,
    flatten_table,
    normalise_format,
    open_source,
    parquet_columns,
    unreadable,
)

# --------------------------------------------------------------------------
# One source -> one canonical piece
# --------------------------------------------------------------------------


@dataclass
class _Piece:
    """One source (or one batch of one) as canonical columns, before combining."""

    frame: pd.DataFrame
    kind: Literal["datetime", "integer"]
    source: Source
    n_read: int = 0


def _read_source(src: Source, cols: ColumnMap, offset: int) -> _Piece:
    names, load = open_source(src)
    where = resolve_columns(src, names, cols)
    needed = needed_columns(where)
    try:
        raw = load(needed)
    except EmptyHistoryError:
        raise
    except Exception as exc:
        raise unreadable(src, exc) from exc
    if len(raw) == 0:
        raise empty_error(src, "header only" if src.kind == "csv" else "zero rows")
    return _convert(raw, where, src, cols, offset)


def _iter_source_chunks(src: Source, cols: ColumnMap, offset: int, chunksize: int,
                        skip: int = 0):
    """Read ``src`` in batches of at most ``chunksize`` rows, as canonical pieces.

    This is the row-by-row reader (see ``_iter_source_batches`` for the
    encoded one). CSV files are read with ``pandas.read_csv(chunksize=...)``,
    Parquet files with ``pyarrow.parquet.ParquetFile.iter_batches``; JSON lines and frames
    (which are in memory anyway) are sliced. The first ``skip`` rows (whole
    batches, already read another way) are passed over.
    """
    names, load = open_source(src)
    where = resolve_columns(src, names, cols)
    needed = needed_columns(where)
    try:
        if src.kind == "csv":
            raws = pd.read_csv(src.path, dtype=str, usecols=needed, chunksize=chunksize)
        elif src.kind == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(src.path)
            top = parquet_columns(pf.schema_arrow, needed)  # struct columns for dotted paths
            raws = (flatten_table(pa.Table.from_batches([b]), needed).to_pandas()
                    for b in pf.iter_batches(batch_size=chunksize, columns=top))
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
        raise unreadable(src, exc) from exc
    if n_total == 0:
        raise empty_error(src, "header only" if src.kind == "csv" else "zero rows")


def _convert(raw: pd.DataFrame, where: dict[str, Any], src: Source, cols: ColumnMap,
             offset: int) -> _Piece:
    """Validate and cast the raw columns of one source (or one batch of it)."""
    n = len(raw)
    out: dict[str, Any] = {}
    ent = where["entity"]
    if isinstance(ent, tuple):  # CloudEvents: subject if the row has one, else source
        subject, source_col = ent
        entity = as_str(raw[subject]) if subject is not None else None
        if source_col is not None:
            fallback = as_str(raw[source_col])
            entity = fallback if entity is None else entity.fillna(fallback)
        out["entity"] = entity.array
    else:
        out["entity"] = as_str(raw[ent]).array
    time, kind = parse_time(raw[where["time"]], where["time"], src, raw)
    if kind == "integer" and cols.time_unit not in (None, "step"):  # epoch integers: UTC timestamps
        ns = epoch_times(time.to_numpy(), cols.time_unit, where["time"], src, raw)
        time = pd.Series(pd.DatetimeIndex(ns.view("datetime64[ns]")).tz_localize("UTC"))
        kind = "datetime"
    out["time"] = time.to_numpy() if kind == "integer" else time.array
    if where["event"] is not None:
        out["event"] = as_str(raw[where["event"]]).array
    if where["status"] is not None:
        out["status"] = as_str(raw[where["status"]]).array
    if where["event_id"] is not None:
        out["event_id"] = as_str(raw[where["event_id"]]).array
    if where.get("group") is not None:
        group = as_str(raw[where["group"]])
        missing = group.isna().to_numpy()
        if missing.any():
            k = int(np.flatnonzero(missing)[0])
            raise HistoryError(
                f"{src.name}: row {offset + k} (entity {out['entity'][k]!r}) has no group in the "
                f"column {where['group']!r}. Fix: fill the group of every row, or leave "
                "[columns] group unset.")
        out["group"] = group.array
    if where.get("trace") is not None:  # missing values allowed: steps outside any trace
        out["trace"] = as_str(raw[where["trace"]]).array
    for metric in cols.metrics:
        out[metric] = parse_metric(raw[where[metric]], where[metric], src, raw)
    out[ROW] = np.arange(offset, offset + n, dtype="int64")
    frame = pd.DataFrame(out, index=pd.RangeIndex(n))
    logger.debug("read %d rows from %s; columns %s", n, src.name, where)
    return _Piece(frame=frame, kind=kind, source=src)


# --------------------------------------------------------------------------
# The internal API: frames with their source rows
# --------------------------------------------------------------------------


def read_frame(
    source: Any,
    columns: ColumnMap | Mapping[str, Any] | None = None,
    categorical: bool = False,
    format: str | None = None,
) -> tuple[pd.DataFrame, ReadReport]:
    """The canonical frame of ``source`` with its ``_row`` column, and the report.

    What ``read_histories(source, columns=..., format=..., categorical=...,
    return_report=True)`` returned before that shape was deprecated: the
    frame that :func:`read_histories` returns plus ``_row`` (int64, the
    0-based position of each row across all sources in read order), as the
    last column; its ``attrs`` hold only which rows came from which source
    (for :func:`~markovfault.histories._contract.describe_row`). For the model
    layers, which name source rows in their errors.

    A frame that :func:`read_histories` returned (it carries
    ``attrs["read_report"]`` and has ``entity`` and ``time`` columns) is
    read by the canonical column names, whatever ``columns`` names (its
    ``metrics`` still say which metric columns to keep): what was read once
    reads again to the same frame.

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
    >>> frame, report = read_frame(raw, columns={"entity": "handler"})
    >>> frame[["entity", "time", "event", "status", "_row"]]
      entity                      time event status  _row
    0      a 2024-05-01 10:00:00+00:00  step     ok     2
    1      a 2024-05-01 10:01:00+00:00  step   slow     1
    2      b 2024-05-01 10:02:00+00:00  step     ok     0
    >>> report.dropped
    {'duplicate_event_id': 1, 'missing_status': 1}
    """
    cols, sources = _prepare(source, columns, format)
    if all(src.kind in ("parquet", "csv", "frame") for src in sources):
        # Parquet and CSV files (and frames) are read dictionary-encoded: distinct
        # values are cleaned once, rows are handled as codes (same frame, same report).
        try:
            return _fast.read_encoded(sources, cols, categorical)
        except _fast.Fallback as why:
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
    return frame, report


def iter_frames(
    source: Any,
    chunksize: int,
    columns: ColumnMap | Mapping[str, Any] | None = None,
    categorical: bool = False,
    format: str | None = None,
) -> Iterator[tuple[pd.DataFrame, ReadReport]]:
    """``(frame, report)`` per batch of at most ``chunksize`` rows, frames with their ``_row`` column.

    What ``read_histories(source, chunksize=N, return_report=True, ...)``
    returned before that shape was deprecated (the batches of
    :func:`iter_histories` plus ``_row``, which counts across all batches
    and sources). Sources are found and ``chunksize`` is checked at the
    call, batches are read as they are taken.
    """
    cols, sources = _prepare(source, columns, format)
    if isinstance(chunksize, bool) or not isinstance(chunksize, (int, np.integer)) \
            or chunksize < 1:
        raise ConfigError(f"chunksize = {chunksize!r} must be a positive integer.")
    return _iter_chunks(sources, cols, int(chunksize), categorical)


def _prepare(source: Any, columns, format: str | None) -> tuple[ColumnMap, list[Source]]:
    """The column map and the sources to read, in read order."""
    cols = ColumnMap.from_config(columns) if not isinstance(columns, ColumnMap) else columns
    fmt = normalise_format(format)
    sources = expand_sources(source, fmt, [0])
    if len(sources) == 1 and sources[0].kind == "frame":
        sources[0].name = "<DataFrame>"
    if all(_is_own_output(src) for src in sources):
        # read_histories' own frames carry the canonical names, whatever the user's columns say
        # (a trace column read once is read again)
        trace = "trace" if cols.trace is not None and "trace" in sources[0].frame.columns else None
        cols = ColumnMap(metrics=cols.metrics, trace=trace, keep_duplicates=cols.keep_duplicates)
    return cols, sources


def _is_own_output(src: Source) -> bool:
    """A frame that read_histories (or iter_histories) returned: its report in ``attrs``, its
    columns under the canonical names."""
    frame = src.frame
    return (src.kind == "frame" and frame is not None
            and isinstance(frame.attrs.get(REPORT_ATTR), ReadReport)
            and "entity" in frame.columns and "time" in frame.columns)


# --------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------


def _iter_chunks(sources, cols: ColumnMap, chunksize: int, categorical: bool = False):
    """The generator behind :func:`iter_frames`."""
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
            yield frame, report


def _as_categories(frame: pd.DataFrame) -> pd.DataFrame:
    for name in ("entity", "event", "status", "event_id"):
        if name in frame:
            frame[name] = frame[name].astype("category")
    return frame


def _iter_source_batches(src: Source, cols: ColumnMap, offset: int, chunksize: int,
                         categorical: bool):
    """Pieces of one source, batch by batch, each with a function that finishes it.

    Parquet and CSV batches are read dictionary-encoded and finished by
    ``_fast.finish`` (``done``); a batch the fast path declines, and
    every batch of other sources, is converted row by row (``done`` is None:
    ``_finish`` it). Both give the same frames and reports.
    """
    plan = None
    if src.kind in ("parquet", "csv"):
        try:
            plan = _fast.plan(src, cols)
        except _fast.Fallback:
            plan = None
    if plan is None:
        for piece in _iter_source_chunks(src, cols, offset, chunksize):
            piece.n_read = len(piece.frame)
            yield piece, None
        return
    where, needed, text_columns = plan
    n_total = 0
    if src.kind == "parquet":
        tables = _fast.parquet_batches(src, needed, text_columns, chunksize)
    else:  # the batches pandas.read_csv(chunksize=...) reads, every column as text
        tables = _fast.csv_batches(src, needed, chunksize)
    try:
        try:
            for table in tables:
                n = table.num_rows
                if n == 0:
                    continue
                try:
                    part = _fast.encode_table(table, where, cols, src.name)
                    stub = pd.DataFrame(columns=["status"] if "status" in part.text else [])
                    piece = _Piece(frame=stub, kind=part.kind, source=src)
                    # (the fast path may still decline the batch, e.g. when every row is
                    # dropped)
                    result = _fast.finish([part], cols, categorical, n_sources=1,
                                              offset=offset + n_total)
                    done = (lambda result=result: result)
                except _fast.Fallback:
                    plain = table.cast(pa_plain_schema(table.schema))
                    piece = _convert(plain.to_pandas(), where, src, cols, offset + n_total)
                    done = None
                piece.n_read = n
                n_total += n
                yield piece, done
        except _fast.Fallback:  # pyarrow stopped within the file: pandas reads the rest
            for piece in _iter_source_chunks(src, cols, offset, chunksize, skip=n_total):
                piece.n_read = len(piece.frame)
                n_total += piece.n_read
                yield piece, None
    except (HistoryError, ConfigError):
        raise
    except Exception as exc:
        raise unreadable(src, exc) from exc
    if n_total == 0:
        raise empty_error(src, "header only" if src.kind == "csv" else "zero rows")


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
    _count(dropped, "missing_status", keep & unusable)
    keep = keep & ~unusable
    missing_metrics: dict[str, int] = {}
    if cols.metrics:
        nan = np.isnan(frame[list(cols.metrics)].to_numpy(dtype="float64"))
        bad = nan.any(axis=1) & keep
        _count(dropped, "missing_metric", bad)
        if bad.any():
            missing_metrics = {m: int(nan[bad, k].sum()) for k, m in enumerate(cols.metrics)
                               if nan[bad, k].any()}
        keep = keep & ~bad
    frame = frame.loc[keep]

    filled: dict[str, int] = {}
    n_event_missing = int(frame["event"].isna().sum())
    if n_event_missing:
        filled["missing_event_filled"] = n_event_missing
        frame = frame.assign(event=frame["event"].fillna(IMPLICIT_EVENT))

    # Stable sort by (entity, time): ties keep read order.
    codes, uniques = pd.factorize(frame["entity"], sort=True)
    time_key = frame["time"].astype("int64").to_numpy()
    order = _fast.group_order(codes, time_key, len(uniques))  # np.lexsort((time_key, codes))
    counts = np.bincount(codes, minlength=len(uniques))
    if not cols.keep_duplicates:  # exact repeats without an event id, found in the sorted runs
        keys = (frame, [name for name in ("event", "status", *cols.metrics, "group", "trace")
                        if name in frame])
        ids = frame["event_id"].isna().to_numpy() if "event_id" in frame else None
        repeats = exact_repeats(order, codes, time_key, keys, ids)
        if len(repeats):
            dropped["duplicate_row"] = len(repeats)
            left = np.ones(len(frame), dtype=bool)
            left[repeats] = False
            order = np.flatnonzero(left) if order is None else order[left]
            counts = counts - np.bincount(np.sort(codes)[repeats], minlength=len(uniques))
    frame = frame.reset_index(drop=True) if order is None else \
        frame.iloc[order].reset_index(drop=True)

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
        missing_metrics=missing_metrics,
    )
    frame.attrs[SOURCES_ATTR] = [(p.source.name, int(p.frame[ROW].iloc[0]), len(p.frame))
                                 for p in pieces if len(p.frame)]
    message = drop_message(report)
    if message:
        logger.warning("read_histories %s", message)
    if report.time_kind == "integer":
        warn_epoch_like(frame["time"].to_numpy(), cols)
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
            f"{[c for c in lacking.frame.columns if c != ROW]} (canonical names). Fix: export "
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
    order += list(cols.metrics) + (["group"] if cols.group is not None else [])
    order += (["trace"] if cols.trace is not None else []) + [ROW]
    frame = pd.concat([f[order] for f in frames], ignore_index=True)
    for name in ("entity", "event", "status", "event_id", "trace"):
        if name in frame and frame[name].dtype != "str":
            frame[name] = frame[name].astype("str")
    return frame
