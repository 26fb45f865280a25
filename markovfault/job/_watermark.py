"""The committed state: reading and checking the watermark (what has been counted, which model version, which
files, which runs), writing a new one atomically (the commit), and loading the model version it names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._version import __version__
from ..exceptions import ModelFileError, NewerFormatError, NoInputError
from ._constants import WATERMARK
from ._storage import write_bytes_atomic

if TYPE_CHECKING:
    from ._config import JobConfig

WATERMARK_FORMAT = "markovfault-job-watermark"
WATERMARK_VERSION = 1


def read_watermark(job: JobConfig) -> dict | None:
    """The committed watermark, checked; None before the first run."""
    return read_watermark_at(job.output)


def read_watermark_at(output: Path) -> dict | None:
    """The committed watermark of the output directory ``output``, checked; None before the first run."""
    path = Path(output) / WATERMARK
    if not path.exists():
        return None
    try:
        wm = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(
            f"{path} is damaged ({exc}); the job cannot tell what has been counted. "
            "Run once with --refit to rebuild the model and the watermark from the input."
        ) from exc
    if not isinstance(wm, dict) or wm.get("format") != WATERMARK_FORMAT:
        raise ModelFileError(f"{path} is not a markovfault watermark; run with --refit.")
    version = wm.get("format_version")
    if isinstance(version, int) and version > WATERMARK_VERSION:
        raise NewerFormatError(
            f"{path} has watermark format {version}, newer than this markovfault "
            f"({__version__}) reads ({WATERMARK_VERSION}); written by markovfault "
            f"{wm.get('markovfault_version')!r}. Upgrade markovfault."
        )
    try:
        int(wm["cutoff"]), str(wm["model"]), dict(wm["files"]), list(wm["runs"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path} lacks {exc}; run with --refit.") from None
    return wm


def load_version(job: JobConfig, name: str):
    """Load the model version ``name`` (next to the model pointer), with the job's advice if it fails."""
    from ..persistence import FORMAT_VERSION, load_model

    path = job.model_dir / name
    if not path.exists():
        raise NoInputError(
            f"the watermark names the model version {path}, which does not exist. Restore it, "
            "or run once with --refit to rebuild the model from the input."
        )
    try:
        return load_model(path)
    except ModelFileError as exc:
        version = _format_version(path)
        if version is not None and version > FORMAT_VERSION:
            raise NewerFormatError(str(exc)) from exc
        raise ModelFileError(
            f"{exc} The previous versions are kept next to it; --refit rebuilds the model "
            "from the input."
        ) from exc


def _format_version(path: Path):
    """The format version a model file claims, read without any other check."""
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as npz:
            header = json.loads(npz["header.json"].tobytes().decode("utf-8"))
        version = header.get("format_version")
        return version if isinstance(version, int) else None
    except Exception:  # only to choose an exit code; the real error is reported
        return None


def new_watermark(job: JobConfig, *, kind: str, tick: int, shown: str, version: str, records: dict,
                  runs: list) -> dict:
    """The watermark of a run that counted the rows before ``tick`` into the model ``version``."""
    return {"format": WATERMARK_FORMAT, "format_version": WATERMARK_VERSION,
            "markovfault_version": __version__, "time_kind": kind, "cutoff": tick,
            "data_cutoff": shown, "model": version, "input": job.input,
            "files": dict(sorted(records.items())), "runs": runs}


def write_watermark(job: JobConfig, wm: dict) -> None:
    """Commit: replace the watermark atomically."""
    write_bytes_atomic(job.output / WATERMARK, json.dumps(wm, indent=1, sort_keys=True).encode())
