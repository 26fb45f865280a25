"""The estimator users fit: :class:`FaultPredictor` (see :mod:`markovfault.predictor`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Sequence

import numpy as np
import pandas as pd

from .._backends import backend_for
from .._estimator import Estimator
from .._eventmix import DEFAULT_RECENT_STRENGTH
from .._posterior import DEFAULT_DRAWS
from ..histories import ColumnMap
from ..states import HistorySpec, StateExtractor
from ._forecasts import bounds_frame, forecast_table, predict_in_memory, table_frame
from ._access import FittedAccess
from ._timeforecast import TimeForecastsMixin, predict_in_time
from ._output import check_layout, tidy_to_wide
from ._settings import params_from_config, read_input
from ._updates import add_frame, fit_frame, fit_stream

__all__ = ["FaultPredictor"]


class FaultPredictor(TimeForecastsMixin, FittedAccess, Estimator):
    """Fit an event-conditioned chain on histories and forecast failures.

    Parameters
    ----------
    states : StateExtractor or dict, default=None
        How statuses or metrics become states: an extractor from
        :mod:`markovfault.states`, or a ``[states]`` config table such as
        ``{"kind": "categorical", "failure": ["down"]}``. ``None`` maps each
        status label to a state of its own, with no failure states (which
        :meth:`fit` refuses: name them).
    alpha : float or "auto", default=1.0
        Dirichlet prior mass on each pooled transition row.
    beta : float or "auto", default=1.0
        Shrinkage of event-conditioned rows toward the pooled row.
    columns : ColumnMap or dict, default=None
        Column names of the exported histories (see
        :class:`~markovfault.histories.ColumnMap`); ``None`` uses the names of
        the input contract (entity, time, event, status, event_id).
    max_gap : None, int or duration string, default=None
        Split an entity's history where two steps are further apart than this
        (``"30min"`` for timestamps, an integer for sequence numbers).
    history : HistorySpec or dict, default=None
        History-aware states (the ``[states.history]`` table, see
        :class:`markovfault.states.HistorySpec`); ``None`` is the plain
        first-order chain.
    recent_strength : float or "auto", default=500.0
        Pseudo-counts of the prior that pulls the recent event mix of
        ``event_mix='recent'`` toward each state's long-run mix (a prior like
        ``alpha`` and ``beta``): states seldom visited lately keep a sensible mix.
    time_model : {'semi_markov', 'ctmc'}, default='semi_markov'
        How the waits between steps are modelled for time horizons (``predict(within=...)``): a sojourn
        distribution per state, conditioned on the current silence, or exponential waits (see README).
    sojourn : {'auto', 'empirical', 'expon', 'weibull_min', 'gamma', 'lognorm'}, default='auto'
        The semi-Markov sojourn distributions: the scipy.stats family with the best AIC per state, one
        family, or the life table.

    Attributes
    ----------
    states_ : StateExtractor
        The fitted state extractor.
    chain_ : EventMarkovChain or HistoryChain
        The fitted chain (over history-aware states when ``history`` is set);
        both answer the same interface (see :mod:`markovfault.chain`).
    read_report_ : ReadReport
        What the last ``fit``/``partial_fit`` read and dropped.
    state_names_, event_names_, failure_states_ : list of str
    n_transitions_ : int
    priors_ : DataFrame
        The priors in use: ``value`` and ``source`` ("given", or "chosen" from the data for "auto").
    group_failures_ : DataFrame or None
        With the group context: the failures its window still reaches (entity, group, time).

    Examples
    --------
    >>> import pandas as pd
    >>> hist = pd.DataFrame({
    ...     "entity": ["a"] * 4 + ["b"] * 4,
    ...     "time": [1, 2, 3, 4] * 2,
    ...     "event": ["tick", "spike", "tick", "spike"] * 2,
    ...     "status": ["ok", "down", "ok", "down", "ok", "ok", "ok", "ok"]})
    >>> model = FaultPredictor(states={"kind": "categorical", "failure": ["down"]},
    ...                        alpha=0.0, beta=0.0).fit(hist)
    >>> model.state_names_, model.event_names_, model.n_transitions_
    (['down', 'ok'], ['spike', 'tick'], 6)

    From ``ok``, 2 of 5 steps went ``down``, so within two steps:
    0.4 + 0.6 * 0.4 = 0.64. Handler ``a`` is down now and always recovered.

    >>> model.predict(hist, horizon=2)
      entity  as_of state  horizon  p_fail
    0      a      4  down        1    0.00
    1      a      4  down        2    0.40
    2      b      4    ok        1    0.40
    3      b      4    ok        2    0.64

    What if the next two events are spikes? From ``ok``, half the spikes
    led to ``down``: 0.5, then 0.5 + 0.5 * 0.5.

    >>> model.predict(hist, horizon=2, scenario=["spike", "spike"])["p_fail"].tolist()
    [0.0, 0.5, 0.5, 0.75]
    """

    def __init__(self, *, states: StateExtractor | Mapping | None = None, alpha: float | str = 1.0,
                 beta: float | str = 1.0, columns: ColumnMap | Mapping | None = None, max_gap=None,
                 history: HistorySpec | Mapping | None = None,
                 recent_strength: float | str = DEFAULT_RECENT_STRENGTH, time_model: str = "semi_markov",
                 sojourn: str = "auto"):
        self.states = states
        self.alpha = alpha
        self.beta = beta
        self.columns = columns
        self.max_gap = max_gap
        self.history = history
        self.recent_strength = recent_strength
        self.time_model = time_model
        self.sojourn = sojourn

    @classmethod
    def from_config(cls, config: Mapping) -> "FaultPredictor":
        """Build an unfitted predictor from a parsed config (see :mod:`markovfault.config`).

        Examples
        --------
        >>> FaultPredictor.from_config({"states": {"kind": "categorical", "failure": ["down"]},
        ...                             "model": {"alpha": 0.5}}).get_params()["alpha"]
        0.5
        """
        return cls(**params_from_config(config))

    # ------------------------------------------------------------------ fitting
    def fit(self, histories, y=None, *, chunksize: int | None = None) -> "FaultPredictor":
        """Read ``histories``, fit the state extractor and the chain.

        Parameters
        ----------
        histories : DataFrame, path, or list of them
            Exported histories in the input contract (CSV, Parquet, JSON lines
            files or a directory of them; see :func:`markovfault.read_histories`).
        y : ignored
        chunksize : int, optional
            Stream the histories in batches of at most this many rows
            (:func:`markovfault.histories.iter_histories`): memory stays bounded
            by the batch, the entities and the counts, and the counts equal the
            in-memory fit's when each entity's rows arrive in time order across
            batches (an older row raises
            :class:`~markovfault.exceptions.HistoryError`). The state extractor
            is fitted on the first batch: list the states for quantile or
            cluster states.

        Returns
        -------
        self
        """
        if chunksize is not None:
            return fit_stream(self, histories, chunksize)
        backend = backend_for(histories)
        if backend is not None:  # counted partition by partition where the data lie
            return backend.fit(self, histories)
        frame, report = read_input(histories, self.columns, categorical=True)
        fit_frame(self, frame, report)
        return self

    def partial_fit(self, histories, y=None) -> "FaultPredictor":
        """Add new histories to the counts (the state extractor stays as fitted).

        Each entity's last steps are carried over, so fitting on A and then
        ``partial_fit`` on B equals fitting on A and B together when B holds
        only later steps than A, or other entities (of other groups, with the group
        context). Older steps start a new run, with a warning (with the group context, an error).

        Returns
        -------
        self
        """
        if not hasattr(self, "chain_"):
            return self.fit(histories)
        backend = backend_for(histories)
        if backend is not None:
            return backend.partial_fit(self, histories)
        # files: read as codes (categorical), as fit reads them; a frame is read as text
        # (no faster as codes for the few rows per entity of an incremental batch)
        frame, report = read_input(histories, self.columns,
                                   categorical=not isinstance(histories, pd.DataFrame))
        add_frame(self, frame, self.states_.transform(frame), warn=True, stream=False)
        self.read_report_ = report
        return self

    # ----------------------------------------------------------------- forecast
    def failure_probabilities(
        self, horizon: int, scenario: Sequence[str] | None = None, *, event_mix=None,
        interval: float | None = None, n_draws: int = DEFAULT_DRAWS, random_state=0,
    ) -> pd.DataFrame:
        """P(fail within h) for every state, as a DataFrame (states x horizons).

        With history-aware states the rows are the augmented states. With ``interval`` (see
        :meth:`predict`) the columns are (``p_fail`` | ``p_fail_lo`` | ``p_fail_hi``, horizon).

        Examples
        --------
        >>> import pandas as pd
        >>> hist = pd.DataFrame({"entity": ["a"] * 3, "time": [1, 2, 3],
        ...                      "status": ["ok", "down", "ok"]})
        >>> FaultPredictor(states={"kind": "categorical", "failure": ["down"]},
        ...                alpha=0, beta=0).fit(hist).failure_probabilities(2)
        horizon    1    2
        state
        down     0.0  1.0
        ok       1.0  1.0
        """
        self._check_fitted()
        table = forecast_table(self, horizon, scenario, event_mix, interval=interval, n_draws=n_draws,
                               random_state=random_state)
        if interval is None:
            return table_frame(self.chain_, table)
        p, extra = table(np.arange(len(self.chain_.state_names_)))
        return bounds_frame(self.chain_, (p, extra["p_fail_lo"], extra["p_fail_hi"]))

    def predict(
        self,
        histories=None,
        horizon: int | None = None,
        scenario: Sequence[str] | str | None = None,
        *,
        event_mix="long_run",
        recent_window=None,
        layout: str = "tidy",
        interval: float | None = None,
        n_draws: int = DEFAULT_DRAWS,
        random_state=0,
        within=None,
        at=None,
        silence_fails=None,
        rate_factors: bool = True,
    ) -> pd.DataFrame:
        """Forecast P(fail within h), h = 1..horizon, from each entity's last state.

        Parameters
        ----------
        histories : DataFrame, path, list of them, or None
            Recent histories. Each entity's last step gives its state; with
            history-aware states its earlier steps (and the steps remembered
            from training) give its history. ``None`` forecasts every entity
            the model has seen, from the last steps counted by
            ``fit``/``partial_fit`` (what a scheduled job that updates the
            model incrementally wants).
        horizon : int, default=10 (none with ``within``)
        scenario : sequence of str or comma-separated str, optional
            The next events, in order (a what-if). Events never seen in
            training use the pooled transitions, with a warning.
        event_mix : {'long_run', 'recent'} or dict, default='long_run'
            What the coming events will look like: the fitted arrival
            probabilities; the mix of the last ``recent_window`` of
            ``histories`` (each state's fitted mix reweighted by how much more
            or less often each event arrives lately); or given shares
            ``{event: share}`` for every state.
        recent_window : duration string or int, optional
            The trailing window of ``event_mix='recent'`` (required with it):
            a duration for timestamps (``"1h"``), a number of time units for
            integer time. A window without transitions leaves the long-run mix,
            with a warning.
        layout : {'tidy', 'wide'}, default='tidy'
            ``'tidy'``: one row per entity and horizon (below). ``'wide'``: one
            row per entity, columns ``entity, as_of, state, p_fail_1, ...,
            p_fail_<horizon>``: the tidy frame pivoted, in a fraction of the
            memory and time.
        interval : float, optional
            Add a posterior interval: 0.9 adds ``p_fail_lo`` and ``p_fail_hi`` (the 5% and 95%
            quantiles of P(fail within h) over ``n_draws`` draws of the model's rows from their
            Dirichlet posteriors, with the scenario or the event mix) and ``n_support`` (the
            transitions counted out of the entity's chain state: what the interval rests on).
        n_draws : int, default=200
        random_state : int, Generator or None, default=0
            Seed of the draws: the same model and seed give the same bounds.
        within : duration or list of them, optional
            Time horizons (``["15min", "1h"]``; numbers for integer time), after the step horizons of an
            explicit ``horizon``. The frame then has ``horizon`` (labels, ordered), ``kind`` ("steps" |
            "time"), ``silent_for`` (time since the last step at ``at``), ``rate_factor`` and ``n_support``.
        at : timestamp or int, optional
            The forecast time of time horizons; default: the latest step in ``histories``.
        silence_fails : duration, optional
            An entity silent this long at ``at`` has failed (a missing heartbeat): p_fail 1 on time
            horizons, column ``silent`` True.
        rate_factors : bool, default=True
            Scale each entity's waits by how fast it stepped in ``histories`` (README, "Forecasts in time").

        Returns
        -------
        DataFrame
            Columns ``entity`` (categorical, ascending), ``as_of``
            (datetime64[ns, UTC], or int64 for integer time), ``state`` (the
            base state, categorical), ``horizon`` (int64), ``p_fail``
            (float64): one row per entity and horizon, sorted by entity then
            horizon.

        Examples
        --------
        >>> import pandas as pd
        >>> hist = pd.DataFrame({"entity": ["a"] * 4 + ["b"] * 4, "time": [1, 2, 3, 4] * 2,
        ...                      "status": ["ok", "down", "ok", "ok", "ok", "ok", "ok", "down"]})
        >>> model = FaultPredictor(states={"failure": ["down"]}, alpha=0, beta=0).fit(hist)
        >>> model.predict(hist, horizon=2, layout="wide")
          entity  as_of state  p_fail_1  p_fail_2
        0      a      4    ok       0.4      0.64
        1      b      4  down       0.0      0.40
        """
        self._check_fitted()
        layout = check_layout(layout)
        backend = backend_for(histories)
        bounds = {"interval": interval, "n_draws": n_draws, "random_state": random_state}
        if within is not None:
            time = {"at": at, "silence_fails": silence_fails, "rate_factors": rate_factors}
            return predict_in_time(self, histories, horizon, scenario, within, event_mix, recent_window,
                                   layout, backend, **bounds, **time)
        horizon = 10 if horizon is None else horizon
        if backend is not None:  # forecast partition by partition
            out = backend.predict(self, histories, horizon, scenario, event_mix, recent_window, **bounds)
            return out if layout == "tidy" else tidy_to_wide(out)
        return predict_in_memory(self, histories, horizon, scenario, event_mix, recent_window, layout, **bounds)
