"""Where histories come from: files, directories, glob patterns and frames, their formats, and opening them.

Part of the internal API of :mod:`markovfault.histories` (see its ``__init__``): the readers in ``_fast`` and
``_read`` turn what :func:`expand_sources` finds into canonical frames. This module knows nothing of the
column contract (``_contract``).
"""

from __future__ import annotations

import glob
import gzip
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..exceptions import ConfigError, EmptyHistoryError, HistoryError

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


@dataclass
class Source:
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


def format_from_suffix(path: str) -> str | None:
    """The format a file's name says (``None`` when it names none that read_histories reads)."""
    name = path.lower()
    if name.endswith(".gz"):
        name = name[:-3]
        fmt = _SUFFIXES.get(os.path.splitext(name)[1])
        return fmt if fmt in ("csv", "jsonl") else None
    return _SUFFIXES.get(os.path.splitext(name)[1])


def normalise_format(format: str | None) -> str | None:
    if format is None:
        return None
    fmt = _FORMAT_ALIASES.get(str(format).lower())
    if fmt is None:
        raise ConfigError(
            f"format={format!r} is not supported. Fix: pass format='csv', 'parquet' or 'jsonl'."
        )
    return fmt


def _file_source(path: str, format: str | None) -> Source:
    fmt = format or format_from_suffix(path)
    if fmt is None:
        raise ConfigError(
            f"cannot tell the format of '{path}' from its name. Supported: .csv, .csv.gz, "
            ".parquet, .pq, .jsonl, .ndjson, .json (optionally .gz). "
            "Fix: pass format='csv', 'parquet' or 'jsonl'."
        )
    return Source(name=path, kind=fmt, path=path)


def expand_sources(source: Any, format: str | None, n_frames: list[int]) -> list[Source]:
    """Turn ``source`` into the ordered list of files and frames to read."""
    if isinstance(source, pd.DataFrame):
        n_frames[0] += 1
        return [Source(name=f"<DataFrame #{n_frames[0]}>", kind="frame", frame=source)]
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if os.path.isdir(path):
            files = sorted(
                (p for p in Path(path).iterdir()
                 if p.is_file() and not p.name.startswith(".")
                 and format_from_suffix(p.name) is not None),
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
        out: list[Source] = []
        for item in source:
            out.extend(expand_sources(item, format, n_frames))
        return out
    raise TypeError(
        f"read_histories cannot read a {type(source).__name__}. Pass a path (str or "
        "PathLike) to a file or directory, a glob pattern, a pandas DataFrame, or a list of these."
    )


def unreadable(src: Source, exc: Exception) -> HistoryError:
    return HistoryError(
        f"could not read '{src.name}' as {src.kind}: {exc}. Fix: check that the file is "
        f"complete, or pass format=... if it is not {src.kind}."
    )


def empty_error(src: Source, detail: str) -> EmptyHistoryError:
    return EmptyHistoryError(
        f"'{src.name}' holds no rows ({detail}). Fix: remove it from the input, or check "
        "that the export finished writing."
    )


def open_source(src: Source) -> tuple[list[Any], Callable[[list[Any]], pd.DataFrame]]:
    """Column names of ``src`` and a loader that reads the given columns."""
    if src.kind == "frame":
        frame = src.frame
        assert frame is not None
        return list(frame.columns), lambda cols: frame.loc[:, cols]
    path = src.path
    assert path is not None
    if os.path.getsize(path) == 0:
        raise empty_error(src, "zero-byte file")
    try:
        if src.kind == "csv":
            try:
                header = pd.read_csv(path, nrows=0, dtype=str)
            except pd.errors.EmptyDataError:
                raise empty_error(src, "no header and no rows") from None
            return list(header.columns), lambda cols: pd.read_csv(
                path, dtype=str, usecols=cols
            )
        if src.kind == "parquet":
            import pyarrow.parquet as pq

            schema = pq.read_schema(path)
            names = parquet_names(schema)
            if names == list(schema.names):
                return names, lambda cols: pd.read_parquet(path, engine="pyarrow", columns=cols)
            return names, lambda cols: flatten_table(pq.read_table(path, columns=parquet_columns(schema, cols)),
                                                     cols).to_pandas()
        raw = _read_jsonl(path)
        if len(raw) == 0:
            raise empty_error(src, "no JSON records")
        return list(raw.columns), lambda cols: raw.loc[:, cols]
    except (EmptyHistoryError, OSError):
        raise
    except Exception as exc:  # parser errors of pandas / pyarrow
        raise unreadable(src, exc) from exc


def _read_jsonl(path: str) -> pd.DataFrame:
    """Read JSON lines (or one JSON array) and flatten nested objects."""
    text = _read_text(path)
    stripped = text.lstrip()
    if not stripped:
        return pd.DataFrame()
    lines = not stripped.startswith("[")
    raw = pd.read_json(io.StringIO(text), lines=lines, orient="records", dtype=False,
                       precise_float=True)  # metrics as written: 0.018, not 0.018000000000000002
    if len(raw) == 0:
        return raw
    return flatten_nested(raw)


def flatten_nested(raw: pd.DataFrame, prefix: str = "") -> pd.DataFrame:
    """Nested JSON objects as columns named by their dotted path: CloudEvents keep the payload in ``data``,
    which becomes ``data.status``, ``data.latency_ms``, ... (objects within objects too: ``data.a.b``).

    A column is nested when its first value is an object (a dict). Rows where it holds no object get missing
    values in its fields; rows where it holds something else (a CloudEvent's ``data`` may be a string) keep
    that value in the column under its own name. Column by column, not row by row:
    ``pd.DataFrame(list of dicts)`` builds each object's fields at once.
    """
    nested = [name for name in raw.columns
              if raw[name].dtype == object and isinstance(_first_valid(raw[name]), dict)]
    if not nested:
        return raw.add_prefix(prefix) if prefix else raw
    parts: list[pd.DataFrame | pd.Series] = []
    for name in raw.columns:
        values = raw[name]
        if name not in nested:
            parts.append(values.rename(f"{prefix}{name}"))
            continue
        items = values.tolist()
        is_object = [isinstance(v, dict) for v in items]
        inner = pd.DataFrame([v if ok else {} for v, ok in zip(items, is_object)], index=raw.index)
        if not all(is_object):
            other = values.mask(pd.Series(is_object, index=raw.index))
            if other.notna().any():
                parts.append(other.rename(f"{prefix}{name}"))
        if len(inner.columns):
            parts.append(flatten_nested(inner, prefix=f"{prefix}{name}."))
    return pd.concat(parts, axis=1)


def parquet_names(schema) -> list[str]:
    """The columns of a Parquet schema, struct columns as their fields' dotted paths (``data.status``), as
    JSON lines are flattened."""
    import pyarrow as pa

    def leaves(name: str, type_) -> list[str]:
        if not pa.types.is_struct(type_):
            return [name]
        return [leaf for k in range(type_.num_fields)
                for leaf in leaves(f"{name}.{type_.field(k).name}", type_.field(k).type)]

    return [leaf for field in schema for leaf in leaves(field.name, field.type)]


def parquet_columns(schema, names: list[str]) -> list[str]:
    """The top-level Parquet columns that hold ``names`` (columns or dotted paths into struct columns)."""
    import pyarrow as pa

    top = list(schema.names)
    out: list[str] = []
    for name in names:
        owner = name if name in top else next(
            (t for t in top if name.startswith(t + ".") and pa.types.is_struct(schema.field(t).type)), name)
        if owner not in out:
            out.append(owner)
    return out


def flatten_table(table, names: list[str]):
    """``table`` with its struct columns flattened into dotted paths, ``names`` selected."""
    import pyarrow as pa

    while any(pa.types.is_struct(t) for t in table.schema.types):
        table = table.flatten()
    return table.select(names)


def _first_valid(values: pd.Series) -> Any:
    idx = values.first_valid_index()
    return None if idx is None else values.loc[idx]
