"""Forecasts of a fitted predictor (internal API): the table of P(fail within h) per chain state under a
scenario or an event mix, and the frame of each entity's forecast from its last steps."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._posterior import DEFAULT_DRAWS, check_draws, check_interval
from .._eventmix import RECENT, check_event_mix, event_probs_for, recent_arrivals
from .._timecodec import parse_max_gap
from ..chain import failure_bounds, failure_table, scenario_codes
from ..exceptions import ConfigError
from ..trajectories import CARRIED, sorted_steps
from ._groups import with_memory
from ._output import entity_forecasts, forecast_frame, forecast_output, interval_columns
from ._settings import read_input, recent_strength_in_use
from ._tails import prepend_tail
from ._updates import encode_with

__all__ = ["forecast_probs", "forecast_input", "table_frame", "bounds_frame", "forecast_table", "recent_counts", "last_seen_frame", "predict_in_memory", "entity_states"]


def table_frame(chain, table: np.ndarray) -> pd.DataFrame:
    """A table of P(fail within h) as a frame: the chain's states by horizon."""
    return pd.DataFrame(table, index=pd.Index(chain.state_names_, name="state"),
                        columns=pd.Index(np.arange(1, table.shape[1] + 1), name="horizon"))


def recent_counts(model, frame: pd.DataFrame, width: int) -> np.ndarray:
    """Arrivals (S, E) per base state in the trailing ``width`` of ``frame`` (time units)."""
    base = model.chain_.base_
    traj = encode_with(model, frame, model.states_.transform(frame), base.event_names_)
    t = traj.time
    if not len(t):
        return np.zeros((traj.n_states, base.n_events_))
    return recent_arrivals(traj.state, traj.event, t, traj.is_run_start(), traj.n_states, base.n_events_,
                           t.max() - width, t.max() + 1)


def forecast_probs(model, event_mix=None, recent_window=None, frame: pd.DataFrame | None = None,
                   counts: np.ndarray | None = None):
    """The event mix of a forecast (None: the fitted arrivals), as :func:`forecast_table` resolves it."""
    chain = model.chain_
    if isinstance(event_mix, str) and event_mix == RECENT and frame is None and counts is None:
        raise ConfigError("event_mix='recent' needs the recent histories: use predict(histories, ...)")
    mix, width = check_event_mix(event_mix, chain.base_.event_names_, model.time_kind_, recent_window)
    if mix == RECENT and counts is None:
        counts = recent_counts(model, frame, width)
    return event_probs_for(chain, mix, counts, strength=recent_strength_in_use(model), warn=True)


def forecast_table(model, horizon: int, scenario=None, event_mix=None, recent_window=None,
                   frame: pd.DataFrame | None = None, counts: np.ndarray | None = None, *,
                   interval: float | None = None, n_draws: int = DEFAULT_DRAWS, random_state=0):
    """P(fail within h) for every state of the chain, (n_chain_states, horizon).

    ``"recent"`` takes the arrivals of the trailing ``recent_window`` of ``frame`` (or the given ``counts``,
    summed over partitions by the Dask back end). With ``interval``: a function of the chain states of
    the entities to forecast that returns their forecasts and interval columns
    (:func:`~markovfault.predictor._output.entity_forecasts`): the bounds are drawn for the states that
    occur only, the same draws whichever states (the same seed, the same bounds in every partition).
    """
    chain = model.chain_
    probs = forecast_probs(model, event_mix, recent_window, frame, counts)
    if interval is None:
        return chain.failure_probabilities(horizon, scenario, event_probs=probs)
    interval, n_draws = check_interval(interval), check_draws(n_draws)
    codes = None if scenario is None else scenario_codes(chain, scenario, horizon)
    table = failure_table(chain, horizon, codes, probs)

    def at(rows: np.ndarray):
        bounds = failure_bounds(chain, table, codes, probs, interval, n_draws, random_state, np.unique(rows))
        return interval_columns(bounds, chain.state_support(), rows)

    at.table = table
    return at


def bounds_frame(chain, bounds) -> pd.DataFrame:
    """A table of P(fail within h) with its bounds: the chain's states by (``p_fail`` | ``p_fail_lo`` |
    ``p_fail_hi``, horizon)."""
    frames = {name: table_frame(chain, values) for name, values in
              zip(("p_fail", "p_fail_lo", "p_fail_hi"), bounds)}
    return pd.concat(frames, axis=1, names=["value"])


def last_seen_frame(model) -> tuple[pd.DataFrame, np.ndarray]:
    """The remembered last steps as a canonical frame and their state codes (``predict()`` without data)."""
    both = model.last_seen_.reset_index()
    both["time"] = (pd.to_datetime(both["time"].to_numpy(), utc=True)
                    if model.time_kind_ == "datetime" else both["time"])
    codes = both.pop("state").to_numpy(np.int64)
    both["_row"] = -1
    if "group_failures" in both:  # each step as it was counted, its group context too
        both = both.rename(columns={"group_failures": CARRIED})
    return both, codes


def forecast_input(model, histories, carry: bool = True):
    """What a forecast reads: ``(frame, both, codes)``, the given histories (None without), the rows to
    encode (with ``carry``, each entity's remembered last steps put before its own) and their state codes;
    without histories, the remembered last steps."""
    if histories is None:
        both, codes = last_seen_frame(model)
        return None, both, codes
    # files: read as codes (categorical); a frame of last steps is read faster as text
    frame, _ = read_input(histories, model.columns, categorical=not isinstance(histories, pd.DataFrame))
    codes = model.states_.transform(frame)
    if not carry:
        return frame, frame, codes
    both, codes, _ = prepend_tail(model.last_seen_, model.time_kind_, frame, codes, warn=False,
                                  interleave=True)
    return frame, both, codes


def predict_in_memory(model, histories, horizon, scenario, event_mix, recent_window, layout, **interval):
    """``FaultPredictor.predict`` on in-memory input (a frame, files, or the remembered steps);
    ``interval``: the keywords ``interval``, ``n_draws``, ``random_state`` of :func:`forecast_table`."""
    chain = model.chain_
    # a chain that needs only the last step: a remembered tail row is never an entity's last
    # (it is carried only when older than all of that entity's steps in frame)
    frame, both, codes = forecast_input(model, histories, carry=chain.tail_length > 1)
    table = forecast_table(model, horizon, scenario, event_mix, recent_window, frame, **interval)
    if chain.tail_length == 1:
        steps = sorted_steps(both)
        if steps is not None:  # sorted by (entity, time): the last row of each block
            starts, names, time, time_kind = steps
            parse_max_gap(model.max_gap, time_kind)  # the check encoding makes
            last = np.append(starts[1:] - 1, len(both) - 1)
            base = np.asarray(codes, dtype=np.int64)[last]
            p, extra = entity_forecasts(table, base)
            return forecast_output(names, time[last], time_kind, base, model.states_.state_names_,
                                   p, layout, extra=extra)
    events = chain.base_.event_names_
    traj = with_memory(model, encode_with(model, both, codes, events), supersede=True)
    return forecast_frame(traj, chain.encode(traj, n_events=len(events)), table, layout)


def entity_states(model, histories=None):
    """Each entity's chain state at its last step: ``(frame, names, rows, as_of)``, the given histories
    (None without), the entities (ascending), the rows of the chain's tables and the time of each entity's
    last step; without histories, from the remembered last steps."""
    chain = model.chain_
    frame, both, codes = forecast_input(model, histories, carry=chain.tail_length > 1)
    events = chain.base_.event_names_
    traj = with_memory(model, encode_with(model, both, codes, events), supersede=True)
    last = traj.last_index()
    rows = chain.encode(traj, n_events=len(events))[last]
    names = np.array(traj.entity_names, dtype=object)[traj.entity[last]]
    return frame, names, rows, traj.time[last]
