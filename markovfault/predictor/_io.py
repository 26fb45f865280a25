"""Writing a fitted predictor to a model file (internal API; loading is :func:`markovfault.load_model`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._modelfile import jsonable, write_model_file
from ..chain import counts_to_arrays
from ._settings import column_map_of, history_spec_of

__all__ = ["save_model"]


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
    chain = model.base_chain_  # NotFittedError when the model is not fitted
    history = model.chain_.spec  # as fitted: gap bins chosen from the data carry their edges
    setting = history_spec_of(model.history)
    state_params, state_arrays = model.states_.get_config()
    cols = column_map_of(model.columns)
    arrays: dict[str, np.ndarray] = dict(counts_to_arrays(model.chain_.counts_))
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
    if "group" in seen:  # the group context: each remembered step's group and context
        arrays["last_seen/group"] = np.asarray(seen["group"].astype(str), dtype=str)
        arrays["last_seen/group_failures"] = seen["group_failures"].to_numpy(np.int64)
    failures = getattr(model, "group_failures_", None)
    if failures is not None:  # ... and the failures in the window before each group's latest step
        for name in ("entity", "group"):
            arrays[f"group_failures/{name}"] = np.asarray(failures[name].astype(str), dtype=str)
        arrays["group_failures/time"] = failures["time"].to_numpy(np.int64)

    bins = getattr(model, "recent_bins_", None)
    if bins is not None:  # recent_strength="auto": what later batches merge with and choose from
        arrays["recent_bins/ids"] = np.asarray(bins.ids, dtype=np.int64)
        arrays["recent_bins/counts"] = np.asarray(bins.counts, dtype=np.int64)
    sojourns = getattr(model, "sojourn_counts_", None)
    if sojourns is not None:  # the sojourn times of time horizons (open last sojourns: from last_seen)
        arrays.update({f"sojourns/{k}": v for k, v in sojourns.to_arrays().items()})
    priors = model.priors_
    header = {
        "model": {
            "alpha": _setting(chain.alpha),
            "beta": _setting(chain.beta),
            "max_gap": jsonable(model.max_gap),
            # the setting as given (a refit of the loaded model chooses gap edges again)
            "history": None if setting is None else setting.to_config(),
            "recent_strength": _setting(model.recent_strength),
            "time_model": model.time_model,
            "sojourn": model.sojourn,
        },
        # the values in use (chosen from the data for "auto"): loading chooses them again from the
        # counts and the arrival bins, and checks that it finds these
        "priors": {name: {"value": float(row.value), "source": str(row.source)}
                   for name, row in priors.iterrows()},
        "columns": jsonable(cols.to_config() if hasattr(cols, "to_config") else vars(cols)),
        "states": jsonable(state_params),
        "vocabulary": {
            "states": list(chain.state_names_),
            "events": list(chain.event_names_),
            "failure_states": [s for s, f in zip(chain.state_names_, chain.is_failure_) if f],
        },
        "time_kind": model.time_kind_,
        "n_transitions": int(chain.n_transitions_),
    }
    if bins is not None:
        header["recent_bins"] = {"width": int(bins.width)}
    if history is not None:
        # the spec the chain was fitted with, what loading builds it from
        header["history_fitted"] = history.to_config()
        # history-aware chains: the back-off strength of each level (re-derived from the counts on
        # loading; written for read_header and for checking)
        header["history_backoff"] = {
            level: {kind: (None if np.isnan(v) else float(v)) for kind, v in row.items()}
            for level, row in model.chain_.backoff_.to_dict(orient="index").items()}
    return write_model_file(path, header, arrays)


def _setting(value):
    """A prior as given, for the header: "auto" or a float."""
    return value if isinstance(value, str) else float(value)
