"""Rolling-origin backtests: how far can the failure probabilities be trusted?

At each cutoff ``c`` the model is fitted on what happened before ``c`` only
(all of it, or a sliding window), forecasts P(fail within h) for every
entity from its state at ``c`` (or from every step until the next cutoff),
and is scored against what happened next, side by side with baselines on the
same origins.

Counts are additive, so the folds cost one counting pass: every transition is
labelled with the time slice it arrives in, the slices are counted at once,
and a cumulative sum gives the counts before each cutoff.

Outcomes, for an origin at step ``o`` and horizon ``h``: ``y = 1`` if any of
the next ``h`` steps of the entity is a failure; ``y = 0`` if ``h`` steps
were observed and none failed; *censored* (excluded and counted) otherwise.
Base rates and baseline training labels use only origins whose whole
``h``-step window lies before the cutoff.

Time horizons (``backtest(..., within=["5min", "30min"])``, see
:mod:`markovfault.backtest._timed`): each fold fits a clone of the predictor
on its training rows and scores P(a step within T ends in a failure state)
from each origin's chain state and age, its time model against the other
one, with outcomes observed in time: 1 when a failure step falls in
(origin, origin + T], 0 when none did and the data reach origin + T (or the
entity ended), censored otherwise.
"""

from .._constants import BASELINES
from ._backtest import backtest
from ._baselines import GradientBoostingBaseline
from ._result import BacktestResult

__all__ = ["backtest", "BacktestResult", "BASELINES", "GradientBoostingBaseline"]
