"""The high-level object: histories in, P(failure within h) per entity out.

:class:`FaultPredictor` strings the layers together: read and validate the
histories, extract states, encode :class:`~markovfault.trajectories.Trajectories`,
fit a chain (:mod:`markovfault.chain`), and forecast from each entity's
last observed steps.

The estimator itself is thin: its methods hand the work to the private
modules of this package (the internal API, see ``docs/architecture.md``):
``_settings`` (its parameters resolved), ``_updates`` (counting histories
into the chain), ``_tails`` (each entity's remembered last steps),
``_forecasts`` and ``_output`` (forecast tables and frames) and ``_io``
(writing model files).
"""

from ._predictor import FaultPredictor

__all__ = ["FaultPredictor"]
