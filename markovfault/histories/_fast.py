"""Dictionary-encoded reading of Parquet and CSV files and of frames (the fast path of read_histories).

Exported histories repeat a few thousand entity names and a handful of event
and status labels millions of times. Reading them as one Python string per
row, cleaning every string and then turning the strings into codes is what
used to dominate a fit from files. This module reads the text columns
dictionary-encoded instead (Parquet stores them so; pyarrow's CSV reader
builds the dictionaries while parsing), cleans only the *distinct* values with
the very function the row-by-row reader uses (``_contract.as_str``), and works on
integer codes from there on: dropping, de-duplicating and sorting are array
operations on codes.

The result is the same canonical frame as the general reader, with the text
columns as pandas ``Categorical`` (``read_histories(..., categorical=True)``)
or as strings. Whatever this path does not handle exactly as the general
reader does (JSON lines, frames, CloudEvents entity fallbacks, time written as
text, unparseable values, columns missing from some files, ...) raises
:class:`Fallback`, and the general reader runs instead and raises its usual
errors. Tests check the two paths give identical frames and reports.

Part of the internal API of :mod:`markovfault.histories` (see its ``__init__``); the stable sort by entity and
time it uses lives in :mod:`markovfault._sorting`, which the model layers use too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ._contract import (
    IMPLICIT_EVENT,
    SOURCES_ATTR,
    ReadReport,
    as_str,
    drop_message,
    exact_repeats,
    epoch_times,
    warn_epoch_like,
    needed_columns,
    parse_metric,
    parse_time,
    resolve_columns,
)
from ..exceptions import TimeParseError
from .._sorting import group_order
from ._sources import open_source

logger = logging.getLogger("markovfault.histories")

_TEXT = ("entity", "event", "status", "event_id")
_ENCODED = _TEXT + ("trace",)  # the trace id is read encoded too, and returned as str

# pandas.read_csv's default missing-value tokens: what the general reader
# (read_csv(dtype=str)) turns into NaN, so the fast CSV reader must too.
_PANDAS_NA = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan",
              "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a",
              "nan", "null"]


class Fallback(Exception):
    """The fast path does not apply; read with the general reader."""


@dataclass
class _Text:
    """A text column: ``codes`` index ``names`` (cleaned strings); -1 is missing."""

    codes: np.ndarray
    names: np.ndarray


@dataclass
class _Part:
    """One source, encoded."""

    n: int
    kind: str
    time: np.ndarray
    text: dict
    metrics: dict
    name: str


# ----------------------------------------------------------------- columns
def _text(column) -> _Text:
    """Codes and cleaned distinct values of a pyarrow (chunked) column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)
    column = column.unify_dictionaries()
    if column.num_chunks == 0:
        raise Fallback("empty column")
    dictionary = column.chunk(0).dictionary
    if len(dictionary) >= 2**31 - 1:
        raise Fallback("dictionary too large")
    parts = [(pc.fill_null(chunk.indices, -1) if chunk.null_count else chunk.indices)
             .to_numpy().astype(np.int32, copy=False) for chunk in column.chunks]
    raw = parts[0] if len(parts) == 1 else np.concatenate(parts)
    # the general reader's cleaning, applied to each distinct value once
    cleaned = as_str(dictionary.to_pandas())
    local, names = pd.factorize(cleaned)  # missing (NaN) -> -1
    names = np.asarray(names, dtype=object)
    if np.array_equal(local, np.arange(len(local))):  # nothing merged or blanked
        return _Text(codes=raw, names=names)
    table = np.append(local.astype(np.int32), np.int32(-1))  # raw -1 (null) -> -1
    return _Text(codes=table[raw], names=names)


def _time(column) -> tuple[np.ndarray, str]:
    """int64 time (UTC nanoseconds or a sequence) from integer or timestamp columns,
    or from text that pyarrow parses as integers, or as ISO 8601 timestamps that all
    carry an offset or all carry none (naive and aware mixed: the general reader's error)."""
    import pyarrow as pa

    typ = column.type
    if column.null_count:
        raise Fallback("missing time")  # the general reader names the row
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        for target in (pa.int64(), pa.timestamp("ns", tz="UTC"), pa.timestamp("ns")):
            try:
                column = column.cast(target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
            typ = column.type
            break
        else:
            raise Fallback("time text that pyarrow does not parse")
    if pa.types.is_integer(typ) and (pa.types.is_signed_integer(typ) or typ.bit_width < 64):
        return column.cast(pa.int64()).to_numpy(), "integer"
    if pa.types.is_timestamp(typ):
        try:  # naive timestamps are UTC; aware ones are stored as UTC already
            ns = column.cast(pa.timestamp("ns", tz=typ.tz), safe=True)
        except pa.ArrowInvalid as exc:  # outside 1677-2262
            raise Fallback(str(exc)) from None
        return ns.cast(pa.int64()).to_numpy(), "datetime"
    raise Fallback(f"time of type {typ}")


def _metric(column) -> np.ndarray:
    import pyarrow as pa

    typ = column.type
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):  # streamed CSV: numbers as text
        try:
            column = column.cast(pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise Fallback("metric text that pyarrow does not parse") from None
        typ = column.type
    if not (pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_boolean(typ)):
        raise Fallback(f"metric of type {typ}")
    return column.cast(pa.float64()).to_numpy()


# ----------------------------------------------------------------- sources
def _read_table(src, needed: list, text_columns: list):
    import pyarrow as pa

    if src.kind == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(src.path, columns=needed, read_dictionary=text_columns)
    if src.kind == "csv":
        import pyarrow.csv as pacsv

        # text read as text (pyarrow's multithreaded parse), encoded per column
        # afterwards: faster than dictionary conversion while parsing
        return pacsv.read_csv(
            src.path,
            convert_options=pacsv.ConvertOptions(
                include_columns=needed,
                column_types={c: pa.string() for c in text_columns},
                null_values=_PANDAS_NA,
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
    raise Fallback(f"{src.kind} source")


def plan(src, cols) -> tuple[dict, list, list]:
    """Where each field is in ``src``, the columns to read, and the text columns."""
    if src.kind not in ("parquet", "csv"):
        raise Fallback(f"{src.kind} source")
    names, _ = open_source(src)  # the general reader's errors for empty files
    where = resolve_columns(src, names, cols)  # ... and for missing columns
    if isinstance(where["entity"], tuple):
        raise Fallback("CloudEvents entity")
    if where.get("group") is not None:
        raise Fallback("a group column")
    needed = needed_columns(where)
    if len(set(needed)) != len(needed) or len(set(names)) != len(names):
        raise Fallback("repeated column names")
    if src.kind == "parquet" and any("." in name for name in needed):
        import pyarrow.parquet as pq

        if not set(needed) <= set(pq.read_schema(src.path).names):
            raise Fallback("fields of struct columns")  # the general reader flattens them
    return where, needed, [where[f] for f in _ENCODED if where.get(f) is not None]


def encode_table(table, where: dict, cols, name: str) -> _Part:
    """Encode one pyarrow table (a file, or a batch of one)."""
    n = table.num_rows
    if n == 0:
        raise Fallback("no rows")
    time, kind = _time(table.column(where["time"]))
    if kind == "integer" and cols.time_unit not in (None, "step"):
        try:
            time, kind = epoch_times(time, cols.time_unit, where["time"], None, None), "datetime"
        except TimeParseError:
            raise Fallback("epoch times out of range") from None  # the general reader names the row
    text = {f: _text(table.column(where[f])) for f in _ENCODED if where.get(f) is not None}
    metrics = {m: _metric(table.column(where[m])) for m in cols.metrics}
    return _Part(n=n, kind=kind, time=time, text=text, metrics=metrics, name=name)


def _pandas_text(values: pd.Series) -> _Text:
    """Codes and cleaned distinct values of a text column of a frame.

    Taken for columns whose distinct values clean exactly as their rows do:
    strings (str, string, object of str), categoricals of strings, integers
    and booleans. (An object column mixing 1, 1.0 and True would hash them
    as one value where the rows read "1", "1.0" and "True".)
    """
    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        cats = dtype.categories
        if not (pd.api.types.is_string_dtype(cats.dtype) or cats.dtype == object) or \
                pd.api.types.infer_dtype(cats, skipna=True) != "string":
            raise Fallback("categorical of non-strings")
        raw = values.cat.codes.to_numpy().astype(np.int32, copy=False)
        distinct = pd.Series(np.asarray(cats, dtype=object), dtype=object)
    else:
        textual = isinstance(dtype, pd.StringDtype) or (
            dtype == object and pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"))
        if not (textual or pd.api.types.is_integer_dtype(dtype)
                or pd.api.types.is_bool_dtype(dtype)):
            raise Fallback(f"text column of dtype {dtype}")
        raw, uniques = pd.factorize(values)  # missing -> -1
        raw = raw.astype(np.int32, copy=False)
        distinct = pd.Series(uniques)
    cleaned = as_str(distinct)
    if len(cleaned) > 1000 and cleaned.notna().all() and \
            bool(np.asarray(cleaned.eq(distinct.astype(cleaned.dtype)), dtype=bool).all()):
        # nothing to strip or blank: the distinct values stay distinct (many names)
        return _Text(codes=raw, names=cleaned.to_numpy(dtype=object))
    local, names = pd.factorize(cleaned)
    table = np.append(local.astype(np.int32), np.int32(-1))
    return _Text(codes=table[raw], names=np.asarray(names, dtype=object))


def _frame_part(src, cols) -> _Part:
    """Encode a DataFrame source (its columns are read in place, not copied)."""
    raw = src.frame
    names = list(raw.columns)
    where = resolve_columns(src, names, cols)
    if isinstance(where["entity"], tuple):
        raise Fallback("CloudEvents entity")
    if where.get("group") is not None:
        raise Fallback("a group column")
    needed = needed_columns(where)
    if not raw.columns.is_unique or len(set(needed)) != len(needed):
        raise Fallback("repeated column names")
    n = len(raw)
    if n == 0:
        raise Fallback("no rows")  # the general reader's error
    # About one row per entity (the last steps a forecast starts from): codes save
    # nothing there, and the row-by-row reader is the faster.
    sample = raw[where["entity"]].iloc[
        np.random.default_rng(0).integers(0, n, min(n, 20_000))]
    if n > 20_000 and sample.nunique() > 0.9 * len(sample):
        raise Fallback("nearly one row per entity")
    time, kind = parse_time(raw[where["time"]], where["time"], src, raw)
    if kind == "datetime":
        time = time.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]").view(np.int64)
    else:
        time = time.to_numpy(dtype=np.int64)
        if cols.time_unit not in (None, "step"):
            time, kind = epoch_times(time, cols.time_unit, where["time"], src, raw), "datetime"
    text = {f: _pandas_text(raw[where[f]]) for f in _ENCODED if where.get(f) is not None}
    metrics = {m: parse_metric(raw[where[m]], where[m], src, raw) for m in cols.metrics}
    return _Part(n=n, kind=kind, time=time, text=text, metrics=metrics, name=src.name)


def _read_part(src, cols) -> _Part:
    if src.kind == "frame":
        return _frame_part(src, cols)
    where, needed, text_columns = plan(src, cols)
    try:
        table = _read_table(src, needed, text_columns)
    except Fallback:
        raise
    except Exception as exc:  # noqa: BLE001 - the general reader words the error
        raise Fallback(f"pyarrow could not read {src.name}: {exc}") from None
    return encode_table(table, where, cols, src.name)


def csv_batches(src, needed: list, batch_size: int):
    """Tables of exactly ``batch_size`` rows (the last one: the rest) of a CSV file, every
    column as text: the batches ``pandas.read_csv(chunksize=batch_size)`` reads.

    Raises :class:`Fallback` where pyarrow cannot go on (e.g. a row with fewer fields,
    which pandas fills with missing values); the caller continues with pandas there.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        reader = pacsv.open_csv(src.path, convert_options=pacsv.ConvertOptions(
            include_columns=needed, column_types={c: pa.string() for c in needed},
            null_values=_PANDAS_NA, strings_can_be_null=True, quoted_strings_can_be_null=True))
        pending, n_pending = [], 0
        for batch in reader:
            pending.append(batch)
            n_pending += batch.num_rows
            while n_pending >= batch_size:
                table = pa.Table.from_batches(pending, schema=reader.schema)
                yield table.slice(0, batch_size)
                rest = table.slice(batch_size)
                pending, n_pending = rest.to_batches(), rest.num_rows
        if n_pending:
            yield pa.Table.from_batches(pending, schema=reader.schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise Fallback(f"pyarrow stopped reading {src.name}: {exc}") from None


def parquet_batches(src, needed: list, text_columns: list, batch_size: int):
    """Record batches of a Parquet file, text columns dictionary-encoded, as tables."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(src.path, read_dictionary=text_columns)
    for batch in pf.iter_batches(batch_size=batch_size, columns=needed):
        yield pa.Table.from_batches([batch])


# ------------------------------------------------------------------ combine
def _concat(arrays: Sequence[np.ndarray]) -> np.ndarray:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def _merge_text(parts: Sequence[_Text]) -> _Text:
    """One vocabulary for a column over all sources (first appearance order)."""
    if len(parts) == 1:
        return parts[0]
    all_names = np.concatenate([p.names for p in parts])
    glob_codes, names = pd.factorize(pd.Index(all_names, dtype=object))
    out, start = [], 0
    for p in parts:
        table = np.append(glob_codes[start:start + len(p.names)].astype(np.int32), np.int32(-1))
        out.append(table[p.codes])
        start += len(p.names)
    return _Text(codes=np.concatenate(out), names=np.asarray(names, dtype=object))


def _sorted_vocab(text: _Text, keep: np.ndarray | None,
                  sort: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes of the kept rows into the names that they use (sorted by code point),
    and how many rows each name has."""
    import pyarrow as pa
    import pyarrow.compute as pc

    codes = text.codes if keep is None else text.codes[keep]
    n_names = len(text.names)
    if (codes < 0).any():  # only a missing event_id is left as -1 here
        counts = np.bincount(codes + 1, minlength=n_names + 1)[1:]
    else:
        counts = np.bincount(codes, minlength=n_names)
    used = counts > 0
    present = text.names[used]
    if sort:  # UTF-8 byte order is code point order, as Python sorts str
        order = pc.sort_indices(pa.array(present, type=pa.large_string())).to_numpy()
    else:
        order = np.arange(len(present))
    if used.all() and np.array_equal(order, np.arange(n_names)):
        return codes, present, counts
    # the remap table in the narrowest type: one pass both renumbers and narrows
    remap = np.full(n_names + 1, -1, dtype=_small(np.zeros(0, np.int64), len(order)).dtype)
    remap[np.flatnonzero(used)[order]] = np.arange(len(order))
    return remap[codes], present[order], counts[used][order]


def _small(codes: np.ndarray, n: int) -> np.ndarray:
    """The narrowest signed integer type that holds codes 0..n-1 (and -1)."""
    for dtype in (np.int8, np.int16, np.int32):
        if n < np.iinfo(dtype).max:
            return codes.astype(dtype, copy=False)
    return codes.astype(np.int64, copy=False)


def read_encoded(sources: Sequence[Any], cols, categorical: bool):
    """The canonical frame and report of ``sources``, read dictionary-encoded.

    Raises :class:`Fallback` when the general reader must be used.
    """
    import pyarrow as pa

    parts = [_read_part(src, cols) for src in sources]
    pa.default_memory_pool().release_unused()  # the tables are gone: give their memory back
    return finish(parts, cols, categorical, n_sources=len(sources))


def finish(parts: Sequence[_Part], cols, categorical: bool, n_sources: int,
           offset: int = 0):
    """Drop, fill, sort and report encoded parts, as ``_read._finish`` does.

    ``offset`` is the read position (``_row``) of the first row of ``parts``.
    """
    first = parts[0]
    for p in parts[1:]:  # sources that disagree: the general reader explains
        if p.kind != first.kind or set(p.text) != set(first.text):
            raise Fallback("sources disagree")
    n_read = sum(p.n for p in parts)
    text = {f: _merge_text([p.text[f] for p in parts]) for f in first.text}
    time = _concat([p.time for p in parts])
    metrics = {m: _concat([p.metrics[m] for p in parts]) for m in cols.metrics}

    dropped: dict[str, int] = {}
    keep = text["entity"].codes >= 0
    if not keep.all():
        dropped["missing_entity"] = int((~keep).sum())
    if "event_id" in text:
        ids = text["event_id"].codes
        key = text["entity"].codes.astype(np.int64) * (len(text["event_id"].names) + 1) + ids
        sub = np.flatnonzero(keep)
        dup = np.zeros(n_read, dtype=bool)
        dup[sub] = pd.Series(key[sub]).duplicated(keep="first").to_numpy() & (ids[sub] >= 0)
        if dup.any():
            dropped["duplicate_event_id"] = int(dup.sum())
            keep &= ~dup
    unusable = np.zeros(n_read, dtype=bool)
    if "status" in text:
        unusable |= text["status"].codes < 0
    if (keep & unusable).any():
        dropped["missing_status"] = int((keep & unusable).sum())
    keep &= ~unusable
    missing_metrics: dict[str, int] = {}
    if cols.metrics:
        nan = {m: np.isnan(metrics[m]) for m in cols.metrics}
        bad = np.logical_or.reduce(list(nan.values())) & keep
        if bad.any():
            dropped["missing_metric"] = int(bad.sum())
            missing_metrics = {m: int((v & bad).sum()) for m, v in nan.items() if (v & bad).any()}
            keep &= ~bad
    mask = None if keep.all() else keep
    if mask is not None and not mask.any():
        raise Fallback("no row kept")  # the general reader raises its errors

    filled: dict[str, int] = {}
    if "event" not in text:
        text["event"] = _Text(codes=np.zeros(n_read, dtype=np.int32),
                              names=np.array([IMPLICIT_EVENT], dtype=object))
    else:
        ev = text["event"]
        missing = ev.codes < 0 if mask is None else (ev.codes[mask] < 0)
        n_missing = int(missing.sum())
        if n_missing:
            filled["missing_event_filled"] = n_missing
            hit = np.flatnonzero(ev.names == IMPLICIT_EVENT)
            if len(hit):
                fill = int(hit[0])
            else:
                fill = len(ev.names)
                ev = _Text(codes=ev.codes, names=np.append(ev.names, IMPLICIT_EVENT))
            text["event"] = _Text(codes=np.where(ev.codes < 0, np.int32(fill), ev.codes),
                                  names=ev.names)

    coded = {f: _sorted_vocab(t, mask, sort=f not in ("event_id", "trace")) for f, t in text.items()}
    if mask is not None:
        time = time[mask]
        metrics = {m: v[mask] for m, v in metrics.items()}
        row = np.flatnonzero(mask).astype(np.int64)
    else:
        row = None
    ent_codes, ent_names, counts = coded["entity"]
    n_kept = ent_codes.shape[0]
    order = group_order(ent_codes, time, len(ent_names))
    if not cols.keep_duplicates:  # exact repeats without an event id, found in the sorted runs
        keys = {f: coded[f][0] for f in ("event", "status", "trace") if f in coded}
        keys.update({m: metrics[m] for m in cols.metrics})
        ids = coded["event_id"][0] if "event_id" in coded else None
        repeats = exact_repeats(order, ent_codes, time, keys, None if ids is None else ids < 0)
        if len(repeats):
            dropped["duplicate_row"] = len(repeats)
            left = np.ones(n_kept, dtype=bool)
            left[repeats] = False
            order = np.flatnonzero(left) if order is None else order[left]
            counts = counts - np.bincount(
                np.repeat(np.arange(len(ent_names)), counts)[repeats], minlength=len(ent_names))
            n_kept = len(order)

    def arrange(values):
        return values if order is None else values[order]

    columns: dict[str, Any] = {}
    for f in ("entity", "time", "event", "status", "event_id"):
        if f == "time":
            t = arrange(time)
            if first.kind == "datetime":
                t = pd.DatetimeIndex(t.view("datetime64[ns]")).tz_localize("UTC")
            columns["time"] = t
        elif f in coded:
            codes, names, _ = coded[f]
            if f == "entity":  # grouped by entity: the sorted codes are a repeat
                codes = np.repeat(np.arange(len(names), dtype=np.int32), counts)
                codes = _small(codes, len(names))
            else:  # narrowed first: the gather moves fewer bytes
                codes = arrange(_small(codes, len(names)))
            cat = pd.Categorical.from_codes(codes, categories=pd.Index(names, dtype=object),
                                            validate=False)
            columns[f] = cat  # (as text below, unless categorical)
    for m in cols.metrics:
        columns[m] = arrange(metrics[m])
    if "trace" in coded:  # always str (many distinct ids; missing: a step outside any trace)
        codes, names, _ = coded["trace"]
        columns["trace"] = pd.Categorical.from_codes(
            arrange(_small(codes, len(names))), categories=pd.Index(names, dtype=object),
            validate=False).astype("str")
    if row is None:
        row = np.arange(n_kept, dtype=np.int64) if order is None else \
            order.astype(np.int64, copy=False)
    else:
        row = arrange(row)
    if offset:
        row += offset
    columns["_row"] = row
    frame = pd.DataFrame(columns, index=pd.RangeIndex(n_kept), copy=False)
    if not categorical:
        for f in _TEXT:
            if f in frame:
                frame[f] = frame[f].astype("str")

    report = ReadReport(
        n_sources=n_sources, n_rows_read=n_read, n_rows_kept=n_kept,
        n_entities=len(ent_names), dropped=dropped, filled=filled,
        single_row_entities=int((counts == 1).sum()), time_kind=first.kind,
        per_source=[(p.name, p.n) for p in parts],
        missing_metrics=missing_metrics,
    )
    starts = offset + np.concatenate([[0], np.cumsum([p.n for p in parts])[:-1]])
    frame.attrs[SOURCES_ATTR] = [(p.name, int(start), p.n) for p, start in zip(parts, starts)]
    message = drop_message(report)
    if message:
        logger.warning("read_histories %s", message)
    if first.kind == "integer":
        warn_epoch_like(columns["time"], cols)
    logger.info("read_histories %s", report.summary())
    return frame, report
