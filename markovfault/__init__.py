"""markovfault: predict faults in event-driven systems.

Read exported handler histories, turn statuses or metrics into states, fit an
event-conditioned Markov chain P(S_n | S_{n-1}, E_n), and forecast for every
handler the probability of reaching a failure state within the next k steps.

>>> import markovfault
>>> sorted(n for n in markovfault.__all__ if n[0].isupper())[:3]
['CategoricalStates', 'ClusterStates', 'ColumnMap']
"""

from ._version import __version__
from .chain import EventMarkovChain
from .histories import ColumnMap, ReadReport, read_histories
from .persistence import load_model
from .predictor import FaultPredictor
from .states import CategoricalStates, ClusterStates, QuantileStates, ThresholdStates
from .trajectories import Trajectories

__all__ = [
    "__version__",
    "CategoricalStates",
    "ClusterStates",
    "ColumnMap",
    "EventMarkovChain",
    "FaultPredictor",
    "QuantileStates",
    "ReadReport",
    "ThresholdStates",
    "Trajectories",
    "load_model",
    "read_histories",
]
