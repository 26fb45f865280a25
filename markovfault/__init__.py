"""markovfault: predict faults in event-driven systems.

Read exported handler histories, turn statuses or metrics into states, fit an
event-conditioned Markov chain P(S_n | S_{n-1}, E_n), and forecast for every
handler the probability of reaching a failure state within the next k steps.

>>> import markovfault
>>> "FaultPredictor" in markovfault.__all__ and "backtest" in markovfault.__all__
True
"""

from ._version import __version__
from .backtest import BacktestResult, backtest
from .chain import EventMarkovChain
from .histories import ColumnMap, ReadReport, read_histories
from .persistence import load_model
from .predictor import FaultPredictor
from .states import CategoricalStates, ClusterStates, QuantileStates, ThresholdStates
from .trajectories import Trajectories

__all__ = [
    "__version__",
    "BacktestResult",
    "CategoricalStates",
    "ClusterStates",
    "ColumnMap",
    "EventMarkovChain",
    "FaultPredictor",
    "QuantileStates",
    "ReadReport",
    "ThresholdStates",
    "Trajectories",
    "backtest",
    "load_model",
    "read_histories",
]
