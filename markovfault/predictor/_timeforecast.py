"""Time horizons of a fitted predictor (internal API): ``predict(..., within=...)`` and the table of
P(fail within T) per state; the model and the math: :mod:`markovfault.predictor._time`."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .._timehorizons import parse_within, quantize_factors
from ..exceptions import ConfigError, HistoryError
from ._forecasts import forecast_input, forecast_probs
from ._groups import with_memory
from ._output import forecast_output
from ._time import entity_time, fitted_time, resolve_at, silence_of, time_forecasts
from ._updates import encode_with

__all__ = ["TimeForecastsMixin", "predict_in_time"]

logger = logging.getLogger("markovfault.forecast")


class TimeForecastsMixin:
    """What a fitted predictor answers about time (a mixin of :class:`FaultPredictor`)."""

    @property
    def time_model_(self) -> pd.DataFrame:
        """The fitted time model: per base state the sojourn family chosen, its parameters, mean, rate and
        the sojourns it rests on (completed, censored)."""
        self._check_fitted()
        return fitted_time(self).frame(self.states_.state_names_)

    def time_failure_probabilities(self, within, *, age=0, event_mix="long_run") -> pd.DataFrame:
        """P(fail within T) for every state of the chain, from a step just taken (``age=0``) or a silence
        of ``age`` (a duration), at rate factor 1: a DataFrame (states x horizons).

        Examples
        --------
        >>> import pandas as pd
        >>> from markovfault import FaultPredictor
        >>> hist = pd.DataFrame({"entity": ["a"] * 6, "status": ["ok", "ok", "down", "ok", "ok", "down"],
        ...                      "time": pd.to_datetime([0, 60, 120, 180, 240, 300], unit="s", utc=True)})
        >>> model = FaultPredictor(states={"failure": ["down"]}, time_model="ctmc").fit(hist)
        >>> model.time_failure_probabilities(["1min", "10min"]).round(3)
        within   1min  10min
        state
        down    0.214  0.988
        ok      0.393  0.993
        """
        self._check_fitted()
        chain = self.chain_
        horizons = parse_within(within, self.time_kind_)
        probs = forecast_probs(self, event_mix)
        timing = fitted_time(self)
        a = 0.0 if not age else silence_of(age, self.time_kind_, timing.unit)
        n = len(chain.state_names_)
        p, _ = time_forecasts(self, chain.transition_matrix(probs), np.arange(n), np.full(n, a), np.ones(n),
                              horizons)
        return pd.DataFrame(p, index=pd.Index(chain.state_names_, name="state"),
                            columns=pd.Index(list(horizons.labels), name="within"))


def predict_in_time(model, histories, horizon, scenario, within, event_mix, recent_window, layout, backend,
                    *, interval=None, n_draws=None, random_state=None, at=None, silence_fails=None,
                    rate_factors=True) -> pd.DataFrame:
    """``FaultPredictor.predict(..., within=...)``: the step horizons 1..``horizon`` (if given), then the time
    horizons, from each entity's last step, its silence at ``at`` and its rate factor."""
    if scenario is not None:
        raise ConfigError("a scenario fixes the next events step by step; time horizons take an event mix "
                          "instead (event_mix={event: share} or 'recent'), or use step horizons.")
    if interval is not None:
        raise ConfigError("intervals are drawn for step horizons only: predict(..., horizon=H, interval=0.9) "
                          "without within.")
    if backend is not None:
        raise ConfigError("time horizons are forecast in memory: predict(ddf.compute(), within=...) or "
                          "the job's horizons.")
    chain = model.chain_
    events = chain.base_.event_names_
    frame, both, codes = forecast_input(model, histories)
    horizons = parse_within(within, model.time_kind_)
    traj = with_memory(model, encode_with(model, both, codes, events), supersede=True)
    if traj.n_steps == 0:
        raise HistoryError("no rows to forecast from")
    rows = chain.encode(traj, n_events=len(events))[traj.last_index()]
    probs = forecast_probs(model, event_mix, recent_window, frame)
    timing = fitted_time(model)
    at_int = resolve_at(at, traj.time_kind, traj.time.max())
    ages, factors = entity_time(traj, timing, at_int, rate_factors)
    p, bound = time_forecasts(model, chain.transition_matrix(probs), rows, ages, factors, horizons)
    if bound > 0:
        logger.debug("time horizons: truncation error at most %.3g", bound)
    extra = {"silent_for": (pd.to_timedelta(ages, unit="s").to_numpy() if traj.time_kind == "datetime"
                            else ages),
             "rate_factor": quantize_factors(factors),
             "n_support": np.asarray(chain.state_support(), dtype=np.int64)[rows]}
    silence = silence_of(silence_fails, traj.time_kind, timing.unit)
    if silence is not None:
        silent = ages >= silence
        p[silent] = 1.0
        extra["silent"] = silent
        if silent.any():
            logger.warning("%d entities silent for at least %s: reported as failed", int(silent.sum()),
                           silence_fails)
    labels, kinds = list(horizons.labels), ["time"] * len(horizons)
    if horizon is not None:
        steps = chain.failure_probabilities(horizon, None, event_probs=probs)[rows]
        p = np.hstack([steps, p])
        labels, kinds = [str(h) for h in range(1, horizon + 1)] + labels, ["steps"] * horizon + kinds
    last = traj.last_index()
    return forecast_output(np.array(traj.entity_names, dtype=object), traj.time[last], traj.time_kind,
                           traj.state[last], traj.state_names, np.ascontiguousarray(p), layout=layout,
                           entity=traj.entity[last], extra=extra, horizons=(labels, kinds))
