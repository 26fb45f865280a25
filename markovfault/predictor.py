"""The high-level object: histories in, P(failure within h) per entity out.

:class:`FaultPredictor` strings the layers together: read and validate the
histories, extract states, encode :class:`~markovfault.trajectories.Trajectories`,
fit an :class:`~markovfault.chain.EventMarkovChain`, and forecast from each
entity's last observed state.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone

from .chain import EventMarkovChain
from .exceptions import ConfigError, HistoryError, NotFittedError
from .histories import ColumnMap, ReadReport, read_histories
from .states import CategoricalStates, StateExtractor, extractor_from_config
from .trajectories import Trajectories, parse_max_gap

__all__ = ["FaultPredictor"]

logger = logging.getLogger("markovfault.predictor")


class FaultPredictor(BaseEstimator):
    """Fit an event-conditioned chain on histories and forecast failures.

    Parameters
    ----------
    states : StateExtractor or dict, default=None
        How statuses or metrics become states: an extractor from
        :mod:`markovfault.states`, or a ``[states]`` config table such as
        ``{"kind": "categorical", "failure": ["down"]}``. ``None`` maps each
        status label to a state of its own, with no failure states (which
        :meth:`fit` refuses: name them).
    alpha : float, default=1.0
        Dirichlet prior mass on each pooled transition row.
    beta : float, default=1.0
        Shrinkage of event-conditioned rows toward the pooled row.
    columns : ColumnMap or dict, default=None
        Column names of the exported histories (see
        :class:`~markovfault.histories.ColumnMap`); ``None`` uses the names of
        the input contract (entity, time, event, status, event_id).
    max_gap : None, int or duration string, default=None
        Split an entity's history where two steps are further apart than this
        (``"30min"`` for timestamps, an integer for sequence numbers).

    Attributes
    ----------
    states_ : StateExtractor
        The fitted state extractor.
    chain_ : EventMarkovChain
        The fitted chain.
    read_report_ : ReadReport
        What the last ``fit``/``partial_fit`` read and dropped.
    state_names_, event_names_ : list of str
    failure_states_ : list of str
    n_transitions_ : int

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

    def __init__(
        self,
        *,
        states: StateExtractor | Mapping | None = None,
        alpha: float = 1.0,
        beta: float = 1.0,
        columns: ColumnMap | Mapping | None = None,
        max_gap=None,
    ):
        self.states = states
        self.alpha = alpha
        self.beta = beta
        self.columns = columns
        self.max_gap = max_gap

    # ------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, config: Mapping) -> "FaultPredictor":
        """Build an unfitted predictor from a parsed config (see :mod:`markovfault.config`).

        Examples
        --------
        >>> FaultPredictor.from_config({"states": {"kind": "categorical", "failure": ["down"]},
        ...                             "model": {"alpha": 0.5}}).get_params()["alpha"]
        0.5
        """
        model = dict(config.get("model", {}))
        return cls(
            states=dict(config["states"]) if "states" in config else None,
            alpha=model.get("alpha", 1.0),
            beta=model.get("beta", 1.0),
            columns=dict(config["columns"]) if "columns" in config else None,
            max_gap=model.get("max_gap"),
        )

    def _make_extractor(self) -> StateExtractor:
        if self.states is None:
            return CategoricalStates()
        if isinstance(self.states, Mapping):
            return extractor_from_config(dict(self.states))
        if isinstance(self.states, StateExtractor):
            return clone(self.states)
        raise ConfigError(
            f"states must be a markovfault.states extractor or a [states] config table, "
            f"got {type(self.states).__name__}."
        )

    def _column_map(self) -> ColumnMap:
        if self.columns is None:
            return ColumnMap()
        if isinstance(self.columns, ColumnMap):
            return self.columns
        if isinstance(self.columns, Mapping):
            return ColumnMap.from_config(self.columns)
        raise ConfigError(
            f"columns must be a ColumnMap or a [columns] table, got {type(self.columns).__name__}."
        )

    def _read(self, histories) -> tuple[pd.DataFrame, ReadReport]:
        return read_histories(histories, columns=self._column_map(), return_report=True)

    # ------------------------------------------------------------------ fitting
    def fit(self, histories, y=None) -> "FaultPredictor":
        """Read ``histories``, fit the state extractor and the chain.

        Parameters
        ----------
        histories : DataFrame, path, or list of them
            Exported histories in the input contract (CSV, Parquet, JSON lines
            files or a directory of them; see :func:`markovfault.read_histories`).
        y : ignored

        Returns
        -------
        self
        """
        frame, report = self._read(histories)
        extractor = self._make_extractor()
        codes = extractor.fit_transform(frame)
        if not np.any(extractor.is_failure_):
            raise ConfigError(
                f"no failure states are declared; the states are {list(extractor.state_names_)}. "
                "Name them, e.g. states={'kind': 'categorical', 'failure': ['down']} or "
                "failure = [\"down\"] in the [states] table of the config."
            )
        parse_max_gap(self.max_gap, "datetime" if _is_datetime(frame) else "integer")
        traj = self._encode(frame, codes, extractor, event_names=None)
        self.states_ = extractor
        self.chain_ = EventMarkovChain(alpha=self.alpha, beta=self.beta).fit(traj)
        self.read_report_ = report
        self._remember_last(traj)
        logger.info(
            "fitted on %d transitions of %d entities (%d states, %d events)",
            self.chain_.n_transitions_, traj.n_entities, traj.n_states, traj.n_events,
        )
        return self

    def partial_fit(self, histories, y=None) -> "FaultPredictor":
        """Add new histories to the counts (the state extractor stays as fitted).

        Each entity's last step seen so far is carried over, so the
        transition into its first new step is counted: fitting on A and then
        ``partial_fit`` on B equals fitting on A and B together whenever B
        holds only steps later than A's (chronological batches), and whenever
        A and B hold different entities. Steps of an entity older than what
        was already seen start a new run (with a warning): they cannot be
        spliced into history that was already counted.

        Returns
        -------
        self
        """
        if not hasattr(self, "chain_"):
            return self.fit(histories)
        frame, report = self._read(histories)
        codes = self.states_.transform(frame)
        frame, codes = self._prepend_last(frame, codes)
        traj = self._encode(frame, codes, self.states_, event_names=self.chain_.event_names_)
        self.chain_.partial_fit(traj)
        self.read_report_ = report
        self._remember_last(traj)
        return self

    def _encode(self, frame, codes, extractor, event_names) -> Trajectories:
        return Trajectories.from_frame(
            frame,
            codes,
            extractor.state_names_,
            np.asarray(extractor.is_failure_, dtype=bool),
            event_names=event_names,
            max_gap=self.max_gap,
        )

    def _remember_last(self, traj: Trajectories) -> None:
        """Keep each entity's last (time, state): the carry-over for partial_fit."""
        last = traj.last_index()
        names = np.asarray(traj.entity_names, dtype=str)
        new = pd.DataFrame(
            {"time": traj.time[last], "state": traj.state[last]},
            index=pd.Index(names[traj.entity[last]], name="entity"),
        )
        old = getattr(self, "last_seen_", None)
        if old is not None and len(old):
            new = pd.concat([old[~old.index.isin(new.index)], new]).sort_index()
        self.last_seen_ = new
        self.time_kind_ = traj.time_kind

    def _prepend_last(self, frame: pd.DataFrame, codes: np.ndarray):
        seen = self.last_seen_
        ents = frame["entity"].astype(str)
        carried = seen[seen.index.isin(ents.unique())]
        if not len(carried):
            return frame, codes
        first_time = _time_int(frame).groupby(ents.to_numpy()).min()
        late = first_time.reindex(carried.index) <= carried["time"]
        if late.any():
            logger.warning(
                "%d entities have steps no later than their last step already counted "
                "(e.g. %s); those steps start a new run and the transition into them is "
                "not counted.",
                int(late.sum()), list(carried.index[late.to_numpy()][:3]),
            )
            carried = carried[~late.to_numpy()]
        if self.time_kind_ == "datetime":
            times = pd.to_datetime(carried["time"].to_numpy(), utc=True)
        else:
            times = carried["time"].to_numpy()
        boundary = pd.DataFrame(
            {
                "entity": carried.index.to_numpy(),
                "time": times,
                "event": self.chain_.event_names_[0],
                "_row": -1,
            }
        )
        both = pd.concat([boundary, frame[["entity", "time", "event", "_row"]]], ignore_index=True)
        return both, np.concatenate([carried["state"].to_numpy(np.int64), codes])

    # ----------------------------------------------------------------- forecast
    def _check_fitted(self) -> None:
        if not hasattr(self, "chain_"):
            raise NotFittedError(
                "This FaultPredictor is not fitted yet; call fit(histories) or load a model "
                "with markovfault.load_model(path)."
            )

    def failure_probabilities(
        self, horizon: int, scenario: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """P(fail within h) for every state, as a DataFrame (states x horizons).

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
        table = self.chain_.failure_probabilities(horizon, scenario)
        return pd.DataFrame(
            table,
            index=pd.Index(self.chain_.state_names_, name="state"),
            columns=pd.Index(np.arange(1, table.shape[1] + 1), name="horizon"),
        )

    def predict(
        self,
        histories=None,
        horizon: int = 10,
        scenario: Sequence[str] | str | None = None,
    ) -> pd.DataFrame:
        """Forecast P(fail within h), h = 1..horizon, from each entity's last state.

        Parameters
        ----------
        histories : DataFrame, path, list of them, or None
            Recent histories; only each entity's last observed step is used.
            ``None`` forecasts every entity the model has seen, from its last
            step counted by ``fit``/``partial_fit`` (what a scheduled job
            that updates the model incrementally wants).
        horizon : int, default=10
        scenario : sequence of str or comma-separated str, optional
            The next events, in order (a what-if). Events never seen in
            training use the pooled transitions, with a warning.

        Returns
        -------
        DataFrame
            Columns ``entity, as_of, state, horizon, p_fail``: one row per
            entity and horizon, sorted by entity then horizon.
        """
        self._check_fitted()
        if isinstance(scenario, str):
            scenario = [s.strip() for s in scenario.split(",") if s.strip()]
        table = self.chain_.failure_probabilities(horizon, scenario)
        if histories is None:
            seen = self.last_seen_
            time = seen["time"].to_numpy()
            frame = pd.DataFrame({
                "entity": seen.index.to_numpy(),
                "time": pd.to_datetime(time, utc=True) if self.time_kind_ == "datetime" else time,
            })
            codes = seen["state"].to_numpy()
        else:
            frame, _ = self._read(histories)
            codes = self.states_.transform(frame)
        return _forecast_frame(frame, codes, table, self.chain_.state_names_)

    # -------------------------------------------------------------- accessors
    @property
    def state_names_(self) -> list:
        self._check_fitted()
        return list(self.chain_.state_names_)

    @property
    def event_names_(self) -> list:
        self._check_fitted()
        return list(self.chain_.event_names_)

    @property
    def failure_states_(self) -> list:
        self._check_fitted()
        return [s for s, f in zip(self.chain_.state_names_, self.chain_.is_failure_) if f]

    @property
    def n_transitions_(self) -> int:
        self._check_fitted()
        return self.chain_.n_transitions_

    def save(self, path) -> None:
        """Write the fitted model to ``path`` (a safe ``.npz`` file; see
        :func:`markovfault.load_model`)."""
        from .persistence import save_model

        save_model(self, path)

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "chain_")


def _is_datetime(frame: pd.DataFrame) -> bool:
    return isinstance(frame["time"].dtype, pd.DatetimeTZDtype) or np.issubdtype(
        np.asarray(frame["time"]).dtype, np.datetime64
    )


def _time_int(frame: pd.DataFrame) -> pd.Series:
    """The time column as int64 (ns since the epoch for timestamps)."""
    t = frame["time"]
    if _is_datetime(frame):
        if isinstance(t.dtype, pd.DatetimeTZDtype):
            t = t.dt.tz_convert("UTC").dt.tz_localize(None)
        return pd.Series(t.to_numpy(dtype="datetime64[ns]").view(np.int64), index=frame.index)
    return t.astype(np.int64)


def _forecast_frame(frame: pd.DataFrame, codes: np.ndarray, table: np.ndarray, state_names) -> pd.DataFrame:
    """One row per (entity, horizon) from each entity's last step; vectorised.

    ``entity`` and ``state`` are categorical columns: a million entities times
    fifty horizons stay cheap to build and to write.
    """
    if len(frame) == 0:
        raise HistoryError("no rows to forecast from")
    ent_codes, ent_names = pd.factorize(frame["entity"].astype(str), sort=True)
    t = _time_int(frame).to_numpy()
    order = np.lexsort((t, ent_codes))
    sorted_codes = ent_codes[order]
    last = np.append(np.flatnonzero(sorted_codes[1:] != sorted_codes[:-1]), len(order) - 1)
    rows = order[last]
    n_ent, horizon = len(rows), table.shape[1]
    state = codes[rows]
    as_of = np.repeat(t[rows], horizon)
    out = pd.DataFrame(
        {
            "entity": pd.Categorical.from_codes(
                np.repeat(ent_codes[rows], horizon), categories=pd.Index(ent_names, dtype=object)
            ),
            "as_of": pd.to_datetime(as_of, utc=True) if _is_datetime(frame) else as_of,
            "state": pd.Categorical.from_codes(
                np.repeat(state, horizon), categories=pd.Index(list(state_names), dtype=object)
            ),
            "horizon": np.tile(np.arange(1, horizon + 1, dtype=np.int64), n_ent),
            "p_fail": table[state].ravel(),
        }
    )
    return out
