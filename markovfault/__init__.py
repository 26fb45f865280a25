"""markovfault: predict faults in event-driven systems.

Read exported handler histories, turn statuses or metrics into states, fit an
event-conditioned Markov chain P(S_n | S_{n-1}, E_n), and forecast for every
handler the probability of reaching a failure state within the next k steps.

The names below load on first use (PEP 562), so ``import markovfault`` and the
command line start without importing pandas, scikit-learn or matplotlib.

>>> import markovfault
>>> "FaultPredictor" in markovfault.__all__ and "backtest" in markovfault.__all__
True
>>> markovfault.FaultPredictor.__name__
'FaultPredictor'
"""

from __future__ import annotations

import importlib
import logging
import sys
import types
from typing import TYPE_CHECKING

from ._version import __version__

# A library's logger gets a do-nothing handler, so that without a logging configuration the warnings a user
# sees are the ``warnings`` ones, once, not each also printed by Python's last-resort handler; the command
# line and the job configure logging themselves and see every record.
logging.getLogger(__name__).addHandler(logging.NullHandler())

# public name -> the module that defines it
_EXPORTS = {
    "BacktestResult": "backtest",
    "backtest": "backtest",
    "GradientBoostingBaseline": "backtest",
    "EventMarkovChain": "chain",
    "ColumnMap": "histories",
    "ReadReport": "histories",
    "read_histories": "histories",
    "load_model": "persistence",
    "FaultPredictor": "predictor",
    "select_states": "selection",
    "CategoricalStates": "states",
    "ClusterStates": "states",
    "QuantileStates": "states",
    "ThresholdStates": "states",
    "HistorySpec": "states",
    "Trajectories": "trajectories",
}

# submodules reachable as attributes (``markovfault.config.load_config``)
_SUBMODULES = {"backtest", "chain", "config", "counts", "diagnostics", "exceptions", "explain", "forecast", "histories",
               "instrument", "job", "persistence", "plotting", "predictor", "selection", "simulate", "states",
               "trajectories"}

__all__ = ["__version__", *sorted(_EXPORTS)]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .backtest import BacktestResult, GradientBoostingBaseline, backtest
    from .chain import EventMarkovChain
    from .histories import ColumnMap, ReadReport, read_histories
    from .persistence import load_model
    from .predictor import FaultPredictor
    from .selection import select_states
    from .states import CategoricalStates, ClusterStates, HistorySpec, QuantileStates, ThresholdStates
    from .trajectories import Trajectories


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | _SUBMODULES)


class _Package(types.ModuleType):
    """The package's module type: importing the submodule ``markovfault.backtest`` must not replace the
    function ``markovfault.backtest`` (the import system sets the submodule as an attribute of its parent)."""

    def __setattr__(self, name: str, value) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return  # the submodule stays reachable through sys.modules and ``import markovfault.x``
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
