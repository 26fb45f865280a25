"""The model file format (internal API): numpy arrays in a ``.npz`` archive plus a JSON header.

Written atomically and read without pickle (``allow_pickle=False``; the header is JSON with the format
version, the package version and a SHA-256 digest of every array and of the header itself), so loading a file
can fail with :class:`~markovfault.exceptions.ModelFileError` but never run code. What goes into the header
and the arrays is the predictor's business (``markovfault.predictor._io``, :func:`markovfault.load_model`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tokenize
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from ._version import __version__
from .exceptions import ModelFileError

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "digest", "header_digest", "jsonable", "write_model_file",
           "open_model_file", "read_header"]

logger = logging.getLogger("markovfault.persistence")

FORMAT_NAME = "markovfault-model"
FORMAT_VERSION = 1
_HEADER_KEY = "header.json"
_HEADER_DIGEST = "header_sha256"


def digest(arr: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(str(arr.dtype.str).encode())
    h.update(str(arr.shape).encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def header_digest(header: dict) -> str:
    """SHA-256 of the header's canonical JSON, without its own digest field."""
    body = {k: v for k, v in header.items() if k != _HEADER_DIGEST}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()


def jsonable(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, pd.Timedelta):
        return str(value)
    return value


def write_model_file(path, header: dict, arrays: dict) -> Path:
    """Write ``arrays`` and ``header`` (completed with the format, versions and digests) to ``path``,
    atomically: a temporary name in the same directory, then a rename, so a reader never sees half a file."""
    for name, arr in arrays.items():
        if arr.dtype.hasobject:
            raise TypeError(f"array {name!r} holds Python objects and cannot be saved safely")
    header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "markovfault_version": __version__,
              **header}
    header["arrays"] = {
        name: {"dtype": arr.dtype.str, "shape": list(arr.shape), "sha256": digest(arr)}
        for name, arr in arrays.items()
    }
    header[_HEADER_DIGEST] = header_digest(header)
    payload = np.frombuffer(json.dumps(header, sort_keys=True).encode("utf-8"), dtype=np.uint8)

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **{_HEADER_KEY: payload}, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    logger.info("saved model to %s", path)
    return path




_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first entry, or an empty zip


def _check_zip(path: Path) -> None:
    """Refuse a file that is not a zip archive before numpy reads it (numpy would take it for a pickle and
    suggest ``allow_pickle``): name the file, what it looks like, and what a model file is."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except IsADirectoryError:
        head = None
    if head is not None and (head.startswith(_ZIP_MAGIC) or (head and b"PK\x03\x04".startswith(head))):
        return  # a zip, or the first bytes of one: numpy says what is wrong with it
    if head is None:
        what = "a directory"
    elif not head:
        what = "empty (truncated?)"
    elif head.startswith(b"\x93NUMPY"):
        what = "a single NumPy array (.npy)"
    elif head[:1] == b"\x80":
        what = "a Python pickle"
    elif head.startswith(b"PAR1"):
        what = "a Parquet file"
    elif head.startswith(b"\x1f\x8b"):
        what = "gzip-compressed"
    else:
        what = "text or another format (not a zip archive)"
    raise ModelFileError(
        f"{path} is {what}, not a model file: a markovfault model file is the .npz archive that "
        "`markovfault train` or FaultPredictor.save writes; give that file instead"
    )


def open_model_file(path) -> tuple[dict, dict]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist")
    _check_zip(path)
    try:
        # our own handle: np.load(path) leaves its file open when the zip is bad
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as npz:
            if _HEADER_KEY not in npz.files:
                raise ModelFileError(
                    f"{path} is not a markovfault model file (no {_HEADER_KEY}); "
                    "write models with FaultPredictor.save or `markovfault train`."
                )
            raw = npz[_HEADER_KEY]
            arrays = {k: npz[k] for k in npz.files if k != _HEADER_KEY}
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError,
            NotImplementedError, RuntimeError,  # zipfile: bad method, "encrypted"
            SyntaxError, tokenize.TokenError) as exc:  # numpy: a damaged array header's text
        raise ModelFileError(
            f"{path} cannot be read as a markovfault model file ({type(exc).__name__}: {exc}); "
            "it may be truncated or not a model file. Re-copy it or retrain."
        ) from exc
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: the header is not valid JSON ({exc})") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{path} is not a markovfault model file (format field missing)")
    version = header.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelFileError(f"{path}: format_version {version!r} is not an integer")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} has model format {version}, newer than this markovfault "
            f"({__version__}) reads (format {FORMAT_VERSION}); written by markovfault "
            f"{header.get('markovfault_version')!r}. Upgrade markovfault to load it."
        )
    if header.get(_HEADER_DIGEST) != header_digest(header):
        raise ModelFileError(
            f"{path}: the header does not match its checksum; the file was tampered "
            "with or damaged."
        )
    expected = header.get("arrays")
    if not isinstance(expected, dict) or set(expected) != set(arrays):
        raise ModelFileError(
            f"{path}: the arrays in the file do not match its header; the file was "
            "tampered with or damaged."
        )
    for name, arr in arrays.items():
        if digest(arr) != expected[name].get("sha256"):
            raise ModelFileError(
                f"{path}: array {name!r} does not match its checksum; the file was "
                "tampered with or damaged."
            )
    if header.get("markovfault_version") != __version__:
        logger.info(
            "model written by markovfault %s, loaded by %s",
            header.get("markovfault_version"), __version__,
        )
    return header, arrays


def read_header(path) -> dict:
    """The JSON header of a model file (after the integrity checks).

    Useful to inspect a model without building it.
    """
    header, _ = open_model_file(path)
    return header
