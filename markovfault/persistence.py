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

import logging

import numpy as np
import pandas as pd

from ._eventmix import DEFAULT_RECENT_STRENGTH, ArrivalBins
from ._sojourns import SojournCounts
from ._modelfile import FORMAT_NAME, FORMAT_VERSION, open_model_file, read_header
from .chain import counts_from_arrays, make_chain
from .exceptions import ConfigError, ModelFileError
from .predictor import FaultPredictor
from .predictor._io import save_model
from .predictor._settings import history_spec_of
from .predictor._time import check_time_settings
from .predictor._updates import install_fit
from .states import extractor_from_config

__all__ = ["save_model", "load_model", "read_header", "FORMAT_NAME", "FORMAT_VERSION"]

logger = logging.getLogger("markovfault.persistence")


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
    header, arrays = open_model_file(path)
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
            recent_strength=params.get("recent_strength", DEFAULT_RECENT_STRENGTH),
            time_model=params.get("time_model", "semi_markov"),
            sojourn=params.get("sojourn", "auto"),
        )
        check_time_settings(model)
        if list(extractor.state_names_) != list(vocab["states"]):
            raise ModelFileError(
                f"{path}: the state extractor's states {list(extractor.state_names_)} differ "
                f"from the model's {vocab['states']}"
            )
        is_failure = np.isin(np.asarray(vocab["states"], dtype=object), vocab["failure_states"])
        # the spec as fitted (its gap edges); files without one were fitted with the setting itself
        fitted = header.get("history_fitted")
        spec = history_spec_of(model.history if fitted is None else fitted)
        chain = make_chain(spec, alpha=params["alpha"], beta=params["beta"])
        counts = counts_from_arrays(arrays, history=spec is not None)
        chain.fit_from_counts(counts, vocab["states"], vocab["events"], is_failure,
                              is_end=getattr(extractor, "is_end_", None))
        bins = None
        if "recent_bins" in header:  # recent_strength="auto": the arrivals it is chosen from
            bins = ArrivalBins(int(header["recent_bins"]["width"]),
                               arrays["recent_bins/ids"].astype(np.int64),
                               arrays["recent_bins/counts"].astype(np.int64))
        elif model.recent_strength == "auto":
            raise ModelFileError(f"{path}: recent_strength is 'auto' but the file holds no arrival bins; "
                                 "the file was damaged or written by an incompatible version.")
        last_seen = pd.DataFrame(
            {"time": arrays["last_seen/time"],
             "event": arrays["last_seen/event"].astype(str).astype(object),
             "state": arrays["last_seen/state"]},
            index=pd.Index(arrays["last_seen/entity"].astype(str).astype(object), name="entity"),
        )
        failures = None
        if spec is not None and spec.has_group:  # what the group context remembers
            if "group_failures/time" not in arrays:
                raise ModelFileError(
                    f"{path}: the states carry the group context but the file does not hold what it "
                    "remembers of the groups (written by an earlier version); fit the model again.")
            last_seen["group"] = arrays["last_seen/group"].astype(str).astype(object)
            last_seen["group_failures"] = arrays["last_seen/group_failures"].astype(np.int64)
            failures = pd.DataFrame({
                "entity": arrays["group_failures/entity"].astype(str).astype(object),
                "group": arrays["group_failures/group"].astype(str).astype(object),
                "time": arrays["group_failures/time"].astype(np.int64)})
        # files written before time horizons hold no sojourns: predict(within=...) says to fit again
        sojourns = (SojournCounts.from_arrays({k: arrays[f"sojourns/{k}"] for k in SojournCounts.FIELDS})
                    if "sojourns/done" in arrays else None)
        install_fit(model, extractor, chain, header["time_kind"], None, last_seen, bins, failures, sojourns)
        _check_priors(path, model, header)
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise ModelFileError(
            f"{path}: the header or arrays are inconsistent ({type(exc).__name__}: {exc}); "
            "the file was damaged or written by an incompatible version."
        ) from exc
    return model


def _check_priors(path, model, header) -> None:
    """The priors chosen again from the file's counts should be those the file records (older files
    record none); a difference means the file was written by a version that chooses them otherwise."""
    saved = header.get("priors") or {}
    now = model.priors_["value"]
    for name, entry in saved.items():
        if name in now.index and not np.isclose(now[name], float(entry["value"]), rtol=1e-9, atol=0.0):
            logger.warning("%s: %s is %r here, %r when the file was written (markovfault %s); "
                           "its forecasts differ a little from the saved model's", path, name,
                           float(now[name]), float(entry["value"]), header.get("markovfault_version"))
