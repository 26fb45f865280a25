"""A predictor's settings resolved into the objects the layers below take (internal API).

:class:`~markovfault.predictor.FaultPredictor` stores its constructor arguments as given (a dict from a config
file, an extractor, a :class:`~markovfault.states.HistorySpec`); these functions turn them into a fresh state
extractor, a column map and a history spec, the same way for the in-memory fit, the streamed fit, the backtest,
model files and the Dask back end.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from .._estimator import clone

from .._priors import AUTO, DEFAULT_RECENT_STRENGTH
from .._timecodec import time_kind_of
from ..exceptions import ConfigError
from ..histories import ColumnMap, ReadReport
from ..histories._read import read_frame
from ..states import CategoricalStates, HistorySpec, StateExtractor, extractor_from_config

__all__ = ["params_from_config", "new_extractor", "column_map_of", "history_spec_of", "read_input", "is_canonical",
           "check_failure_states", "recent_strength_in_use"]


def params_from_config(config: Mapping) -> dict:
    """The constructor arguments of a predictor from a parsed config (see :mod:`markovfault.config`)."""
    model = dict(config.get("model", {}))
    states = dict(config["states"]) if "states" in config else None
    history = states.pop("history", None) if states else None
    return {
        "states": states,
        "alpha": model.get("alpha", 1.0),
        "beta": model.get("beta", 1.0),
        "columns": dict(config["columns"]) if "columns" in config else None,
        "max_gap": model.get("max_gap"),
        "history": dict(history) if history is not None else None,
        "recent_strength": model.get("recent_strength", DEFAULT_RECENT_STRENGTH),
        "time_model": model.get("time_model", "semi_markov"),
        "sojourn": model.get("sojourn", "auto"),
    }


def new_extractor(states) -> StateExtractor:
    """An unfitted state extractor from a predictor's ``states`` setting."""
    if states is None:
        return CategoricalStates()
    if isinstance(states, Mapping):
        return extractor_from_config(dict(states))
    if isinstance(states, StateExtractor):
        return clone(states)
    raise ConfigError(
        f"states must be a markovfault.states extractor or a [states] config table, "
        f"got {type(states).__name__}."
    )


def column_map_of(columns) -> ColumnMap:
    """The :class:`ColumnMap` of a predictor's ``columns`` setting."""
    if columns is None:
        return ColumnMap()
    if isinstance(columns, ColumnMap):
        return columns
    if isinstance(columns, Mapping):
        return ColumnMap.from_config(columns)
    raise ConfigError(
        f"columns must be a ColumnMap or a [columns] table, got {type(columns).__name__}."
    )


def history_spec_of(history) -> HistorySpec | None:
    """The :class:`HistorySpec` of a predictor's ``history`` setting; ``None`` for plain states."""
    if history is None:
        return None
    spec = history if isinstance(history, HistorySpec) else HistorySpec.from_config(dict(history))
    return None if spec.is_plain else spec


def check_failure_states(extractor, hint: bool = True) -> None:
    """A fitted extractor must declare failure states: there is nothing to forecast otherwise."""
    if not np.any(extractor.is_failure_):
        raise ConfigError(
            f"no failure states are declared; the states are {list(extractor.state_names_)}. "
            + ("Name them, e.g. states={'kind': 'categorical', 'failure': ['down']} or "
               "failure = [\"down\"] in the [states] table of the config." if hint else "")
        )


def is_canonical(obj) -> bool:
    """A frame as the reader returns it to the model layers: canonical columns and ``_row``."""
    return (isinstance(obj, pd.DataFrame) and "_row" in obj.columns
            and {"entity", "time", "event"} <= set(obj.columns))


def read_input(histories, columns, categorical: bool = False) -> tuple[pd.DataFrame, ReadReport]:
    """The canonical frame (with ``_row``) and report of whatever a user passed to fit or predict."""
    if is_canonical(histories):
        # already read (its columns carry the canonical names)
        return histories, ReadReport(
            n_sources=1, n_rows_read=len(histories), n_rows_kept=len(histories),
            n_entities=int(histories["entity"].nunique()), dropped={}, filled={},
            single_row_entities=int((histories["entity"].value_counts() == 1).sum()),
            time_kind=time_kind_of(histories),
            per_source=[("<canonical frame>", len(histories))])
    return read_frame(histories, column_map_of(columns), categorical=categorical)


def recent_strength_in_use(model):
    """The strength of a fitted predictor's recent mix: ``recent_strength`` when it is a number (as given,
    also when set after the fit), the one chosen at the fit (``recent_strength_``) for ``"auto"``."""
    setting = model.recent_strength
    if isinstance(setting, str) and setting == AUTO:
        return model.recent_strength_
    return setting
