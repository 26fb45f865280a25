"""The input: listing the export files, choosing the ones a run must read (new, changed, or holding rows not yet
counted), and reading them, one by one in this process or on the workers of a dask cluster, each hashed, parsed
and cut to its rows between the previous cutoff and the as-of, with one log line per file."""

from __future__ import annotations

import glob
import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..exceptions import HistoryError, MarkovFaultError, NoInputError
from ._asof import show_tick
from ._checkpoint import checkpoint

logger = logging.getLogger("markovfault.job")


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


def list_inputs(pattern: str) -> list[tuple[str, Path, os.stat_result]]:
    """(key, path, stat) of every input file, sorted by key."""
    from ..histories._sources import format_from_suffix  # the suffixes read_histories reads

    if os.path.isdir(pattern):
        paths = [p for p in Path(pattern).iterdir()
                 if not p.name.startswith(".") and format_from_suffix(p.name) is not None]
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
        if not p.is_file() or format_from_suffix(p.name) is None:
            continue
        out.append((os.path.relpath(p, root), p, st))
    if not out:
        raise NoInputError(
            f"[job] input {pattern!r} holds no history file (.csv, .csv.gz, .parquet, .pq, "
            ".jsonl, .ndjson, .json; hidden files are skipped)."
        )
    return sorted(out, key=lambda t: t[0])


def due_files(listing, known: dict, tick: int) -> list:
    """(key, path, stat, reason) of the listed files to read: ``new``, ``changed`` (size or mtime), or
    ``pending`` (holding rows before ``tick`` that are not counted yet)."""
    due = []
    for key, path, st in listing:
        rec = known.get(key)
        if rec is None:
            due.append((key, path, st, "new"))
        elif (rec["size"], rec["mtime_ns"]) != (st.st_size, st.st_mtime_ns):
            due.append((key, path, st, "changed"))
        elif rec.get("next_time") is not None and rec["next_time"] < tick:
            due.append((key, path, st, "pending"))
    return due


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def export_frame(frame: pd.DataFrame, cols) -> pd.DataFrame:
    """A canonical frame back in the configured column names (what ``fit`` reads)."""
    names = {"entity": cols.entity, "time": cols.time, "event": cols.event,
             "status": cols.status, "event_id": cols.event_id, "group": cols.group, "trace": cols.trace}
    keep = {c: names.get(c, c) for c in frame.columns if c != "_row" and names.get(c, c)}
    return frame[list(keep)].rename(columns=keep)


def read_files(due, known, records, cols, kind, model, prev, tick):
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
            checkpoint("reading")
    return pieces, read, skipped, stats


def _read_one(key, path, st, reason, old, cols, kind, states, prev, tick):
    """Read one due file (here, or on a dask worker): (its rows to count or None, what
    happened, for :func:`_note_file` to log and record)."""
    from ..histories._read import read_frame

    # the rows of the version read last that lay before its as-of (all counted): a file that grew since holds
    # its other rows before the previous cutoff, never counted (None: a watermark of before this was recorded)
    info = {"key": key, "reason": reason, "touched": None,
            "rows_before_then": old.get("rows_before") if old is not None else None}
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
        frame, report = read_frame(path, columns=cols)
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
                "rows": int(report.n_rows_read), "rows_before": int(len(t) - after.sum()),
                "max_time": int(t.max()),
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
            show_tick(prev, kind), extra={"event": "late_rows", "file": key,
                                           "rows": n_before})
    elif n_before and reason == "changed":
        stats["late"] += n_before
        then = info.get("rows_before_then")
        lost = None if then is None else max(0, n_before - int(then))
        if lost is None:
            what = ("some of them may not have been in the file when it was read: those are never counted "
                    "(run once with --refit to count every row)")
        elif lost:
            what = (f"{lost} of them were not in the file when it was read and are lost to the model (never "
                    "counted; run once with --refit to count them), the others are not counted again")
        else:
            what = "they were counted when it was read and are not counted again"
        logger.warning(
            "%s changed after it was read: %d of its rows lie before the previous cutoff %s; %s. Its rows "
            "after the cutoff are counted", key, n_before, show_tick(prev, kind), what,
            extra={"event": "file_changed", "file": key, "rows": n_before, "rows_lost": lost})
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
        rows = export_frame(rows, cols)
        info["meta"] = rows.iloc[:0]
    return info, rows


def read_files_dask(due, known, records, cols, kind, model, prev, tick):
    """:func:`read_files` on the dask cluster of ``[compute] scheduler``.

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
            checkpoint("reading")
        if info.get("meta") is not None:
            parts.append(task[1])
            meta = info["meta"] if meta is None else meta
            n_rows += info["n_kept"]
    if not parts:
        return None, 0, read, skipped, stats
    return dd.from_delayed(parts, meta=meta, verify_meta=False), n_rows, read, skipped, stats
