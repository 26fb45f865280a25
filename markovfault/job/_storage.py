"""Writing the output directory safely: OSErrors as :class:`~markovfault.exceptions.OutputError`, fsync,
atomic file writes and symlink pointers, and the clean-up a run does (temporaries of killed runs, pointers
repaired to match the watermark, retention of partitions and model versions)."""

from __future__ import annotations

import logging
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from .._fsync import fsync_dir
from ..exceptions import OutputError
from ._asof import RUN_ID_PATTERN, RUN_ID_RE
from ._constants import LATEST, RUNS

if TYPE_CHECKING:
    from ._config import JobConfig

logger = logging.getLogger("markovfault.job")


@contextmanager
def writing(what):
    """Turn an OSError while writing ``what`` into an OutputError (exit 73)."""
    try:
        yield
    except OSError as exc:
        raise OutputError(f"cannot write {what}: {exc.strerror or exc}"
                          + (f" ({exc.filename})" if exc.filename else "")) from exc


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` atomically: a hidden temporary, fsynced, renamed over it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with writing(path):
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        fsync_dir(path.parent)


def point(link: Path, target: str) -> None:
    """Make ``link`` a relative symlink to ``target``, atomically."""
    if link.is_symlink() and os.readlink(link) == target:
        return
    if link.exists() and not link.is_symlink():
        logger.warning("%s is not a symlink; not pointing it at %s", link, target,
                       extra={"event": "pointer_not_updated"})
        return
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    with writing(link):
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(target, tmp)
        os.replace(tmp, link)
        fsync_dir(link.parent)


def remove_temporaries(job: JobConfig) -> None:
    """Delete the temporary files and directories of runs that were killed."""
    places = [(job.output, ""), (job.output / RUNS, ""), (job.model_dir, job.model.stem),
              (job.prometheus.parent, job.prometheus.name)]
    runs = job.output / RUNS
    if runs.is_dir():  # a file replaced inside a partition (forecast.prom) by a run that was killed
        places += [(entry, "") for entry in runs.iterdir() if RUN_ID_RE.match(entry.name)]
    for place, stem in places:
        if not place.is_dir():
            continue
        for entry in place.iterdir():
            name = entry.name
            if name.startswith(f".{stem}") and name.endswith(".tmp"):
                logger.info("removing %s, left by a run that did not finish", entry,
                            extra={"event": "leftover_removed"})
                with writing(entry):
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()


def repair_pointers(job: JobConfig, wm: dict) -> None:
    """Point ``model`` at the watermark's version and ``latest`` at the newest run."""
    point(job.model, wm["model"])
    if wm["runs"]:
        newest = max(wm["runs"], key=lambda r: r["as_of"])
        if (job.output / RUNS / newest["run_id"]).is_dir():
            point(job.output / LATEST, f"{RUNS}/{newest['run_id']}")


def apply_retention(job: JobConfig, wm: dict) -> None:
    """Delete partitions of runs no longer listed and model versions no longer needed."""
    runs = sorted(wm["runs"], key=lambda r: r["as_of"])
    keep_runs = {r["run_id"] for r in runs}
    keep_models = {r["model"] for r in runs[-job.keep_models:]} | {wm["model"]}
    for entry in sorted((job.output / RUNS).iterdir()):
        if RUN_ID_RE.match(entry.name) and entry.name not in keep_runs:
            with writing(entry):
                shutil.rmtree(entry)
            logger.info("deleted partition %s (retention = %d runs)", entry.name, job.retention,
                        extra={"event": "partition_deleted"})
    pattern = re.compile(rf"^{re.escape(job.model.stem)}\.{RUN_ID_PATTERN}(?:\.\d+)?\.npz$")
    for entry in sorted(job.model_dir.iterdir()):
        if pattern.match(entry.name) and entry.name not in keep_models:
            with writing(entry):
                entry.unlink()
            logger.info("deleted model version %s (keep_models = %d)", entry.name,
                        job.keep_models, extra={"event": "model_deleted"})
