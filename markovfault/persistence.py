"""Safe model files: numpy arrays in a ``.npz`` archive plus a JSON header.

A model file is something an operator downloads, copies between machines and
feeds to a scheduled job, so loading one must never run code. The archive is
read with ``allow_pickle=False``; the header is plain JSON (stored in the
archive as UTF-8 bytes) with the format version, the package version, the
vocabularies, the parameters, the state-extraction settings, a SHA-256
digest of every array and one of the header itself (``header_sha256``). A
truncated, tampered-with or newer-format file fails with
:class:`~markovfault.exceptions.ModelFileError`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from ._version import __version__
from ._history import HistoryChain
from .chain import EventMarkovChain
from .exceptions import ConfigError, ModelFileError
from .states import extractor_from_config

__all__ = ["save_model", "load_model", "read_header", "FORMAT_NAME", "FORMAT_VERSION"]

logger = logging.getLogger("markovfault.persistence")

FORMAT_NAME = "markovfault-model"
FORMAT_VERSION = 1
_HEADER_KEY = "header.json"
_HEADER_DIGEST = "header_sha256"


def _digest(arr: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(str(arr.dtype.str).encode())
    h.update(str(arr.shape).encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def _header_digest(header: dict) -> str:
    """SHA-256 of the header's canonical JSON, without its own digest field."""
    body = {k: v for k, v in header.items() if k != _HEADER_DIGEST}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()


def _jsonable(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, pd.Timedelta):
        return str(value)
    return value


def save_model(model, path) -> Path:
    """Write a fitted :class:`~markovfault.FaultPredictor` to ``path``.

    The file is written to a temporary name in the same directory and then
    renamed, so a reader never sees half a file.

    Parameters
    ----------
    model : FaultPredictor
        A fitted predictor.
    path : str or PathLike
        Destination; ``.npz`` is the customary suffix.

    Returns
    -------
    Path
        The path written.
    """
    model._check_fitted()
    chain = model.base_chain_
    history = getattr(model.chain_, "spec", None)
    state_params, state_arrays = model.states_.get_config()
    cols = model._column_map()
    arrays: dict[str, np.ndarray] = {"counts": np.asarray(model.chain_.counts_, dtype=np.int64)}
    for name, arr in state_arrays.items():
        arr = np.asarray(arr)
        if arr.dtype == object:
            arr = arr.astype(str)
        arrays[f"states/{name}"] = arr
    seen = model.last_seen_
    arrays["last_seen/entity"] = np.asarray(seen.index.astype(str), dtype=str)
    arrays["last_seen/time"] = seen["time"].to_numpy(np.int64)
    arrays["last_seen/state"] = seen["state"].to_numpy(np.int64)
    arrays["last_seen/event"] = np.asarray(seen["event"].astype(str), dtype=str)
    for name, arr in arrays.items():
        if arr.dtype.hasobject:
            raise TypeError(f"array {name!r} holds Python objects and cannot be saved safely")

    header = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "markovfault_version": __version__,
        "model": {
            "alpha": float(chain.alpha),
            "beta": float(chain.beta),
            "max_gap": _jsonable(model.max_gap),
            "history": None if history is None else history.to_config(),
        },
        "columns": _jsonable(cols.to_config() if hasattr(cols, "to_config") else vars(cols)),
        "states": _jsonable(state_params),
        "vocabulary": {
            "states": list(chain.state_names_),
            "events": list(chain.event_names_),
            "failure_states": [s for s, f in zip(chain.state_names_, chain.is_failure_) if f],
        },
        "time_kind": model.time_kind_,
        "n_transitions": int(chain.n_transitions_),
        "arrays": {
            name: {"dtype": arr.dtype.str, "shape": list(arr.shape), "sha256": _digest(arr)}
            for name, arr in arrays.items()
        },
    }
    header[_HEADER_DIGEST] = _header_digest(header)
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


def _open(path) -> tuple[dict, dict]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist")
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
            NotImplementedError, RuntimeError) as exc:  # zipfile: bad method, "encrypted"
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
    if header.get(_HEADER_DIGEST) != _header_digest(header):
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
        if _digest(arr) != expected[name].get("sha256"):
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
    header, _ = _open(path)
    return header


def load_model(path):
    """Load a model written by :meth:`FaultPredictor.save`.

    Loading never runs code from the file: arrays are read with
    ``allow_pickle=False`` and the header is JSON.

    Parameters
    ----------
    path : str or PathLike

    Returns
    -------
    FaultPredictor
        Fitted, ready to ``predict`` or ``partial_fit``.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ModelFileError
        If the file is truncated, damaged, tampered with, or of a newer format.

    Examples
    --------
    >>> import pandas as pd, tempfile, os
    >>> from markovfault import FaultPredictor
    >>> hist = pd.DataFrame({"entity": ["a"] * 4, "time": [1, 2, 3, 4],
    ...                      "status": ["ok", "down", "ok", "ok"]})
    >>> model = FaultPredictor(states={"kind": "categorical", "failure": ["down"]}).fit(hist)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.npz")
    >>> model.save(path)
    >>> same = load_model(path)
    >>> same.predict(hist, horizon=3).equals(model.predict(hist, horizon=3))
    True
    """
    from .predictor import FaultPredictor

    header, arrays = _open(path)
    try:
        vocab = header["vocabulary"]
        params = header["model"]
        state_arrays = {
            k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("states/")
        }
        extractor = extractor_from_config(dict(header["states"]), state_arrays)
        model = FaultPredictor(
            states=dict(header["states"]),
            alpha=params["alpha"],
            beta=params["beta"],
            columns=dict(header["columns"]),
            max_gap=params.get("max_gap"),
            history=params.get("history"),
        )
        if list(extractor.state_names_) != list(vocab["states"]):
            raise ModelFileError(
                f"{path}: the state extractor's states {list(extractor.state_names_)} differ "
                f"from the model's {vocab['states']}"
            )
        is_failure = np.isin(np.asarray(vocab["states"], dtype=object), vocab["failure_states"])
        spec = model._history_spec()
        if spec is None:
            chain = EventMarkovChain(alpha=params["alpha"], beta=params["beta"])
        else:
            chain = HistoryChain(spec, alpha=params["alpha"], beta=params["beta"])
        chain.set_counts(arrays["counts"], vocab["states"], vocab["events"], is_failure)
        model.states_ = extractor
        model.chain_ = chain
        model.read_report_ = None
        model.time_kind_ = header["time_kind"]
        model.last_seen_ = pd.DataFrame(
            {"time": arrays["last_seen/time"],
             "event": arrays["last_seen/event"].astype(str).astype(object),
             "state": arrays["last_seen/state"]},
            index=pd.Index(arrays["last_seen/entity"].astype(str).astype(object), name="entity"),
        )
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise ModelFileError(
            f"{path}: the header or arrays are inconsistent ({type(exc).__name__}: {exc}); "
            "the file was damaged or written by an incompatible version."
        ) from exc
    return model
