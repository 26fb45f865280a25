"""``explain``: every explanation of one forecast in one report (what ``markovfault explain`` prints)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from ..exceptions import ConfigError
from ._api import (DEFAULT_HORIZON, Attribution, FailureFlux, LikelyPaths, attribute_events, attribute_states,
                   event_mix_gradient, failure_flux, is_predictor, json_value, likely_paths)

__all__ = ["explain", "Explanation"]


@dataclass(repr=False)
class Explanation:
    """Why one handler (or state) is at risk: the flux, the most likely paths and the attributions of one
    forecast (see :func:`explain`).

    Attributes
    ----------
    flux : FailureFlux
    paths : LikelyPaths
    events : Attribution
        Shapley values of the event types (``None`` under a scenario, whose events are given).
    states : Attribution
        Shapley values of the entered states (``None`` under a scenario).
    gradient : DataFrame or None
        The derivative of the risk as the event mix moves toward each event.
    """

    flux: FailureFlux
    paths: LikelyPaths
    events: Attribution | None
    states: Attribution | None
    gradient: pd.DataFrame | None

    @property
    def p_fail(self) -> float:
        return self.flux.p_fail

    @property
    def horizon(self) -> int:
        return self.flux.horizon

    def event_table(self) -> pd.DataFrame:
        """Per event: the Shapley value, the removal effect, the mix gradient, and the flux shares."""
        out = self.flux.by_event.copy()
        if self.events is not None:
            start = self.events.values.index[0]
            out.insert(0, "removal_effect", self.events.removal_effects.loc[start])
            out.insert(0, "shapley", self.events.values.loc[start])
            out["mix_gradient"] = self.gradient.loc[start]
            out = out.sort_values("shapley", ascending=False, kind="stable")
        return out

    def state_table(self) -> pd.DataFrame | None:
        if self.states is None:
            return None
        start = self.states.values.index[0]
        out = pd.DataFrame({"shapley": self.states.values.loc[start],
                            "removal_effect": self.states.removal_effects.loc[start]})
        out["visits"] = self.flux.by_state.reindex(out.index)
        return out.sort_values("shapley", ascending=False, kind="stable")

    def __repr__(self) -> str:
        top = self.paths.table["path"].iloc[0] if len(self.paths.table) else "none"
        return (f"Explanation(start={self.flux.start!r}, state={self.flux.start_state!r}, horizon={self.horizon}, "
                f"p_fail={self.p_fail:.4g}, most likely path: {top})")

    def to_text(self, top: int = 5) -> str:
        """A readable report."""
        f = self.flux
        how = f"under the scenario {', '.join(f.scenario)}" if f.scenario else "with the expected event mix"
        lines = [f"{f.start} (now {f.start_state}): P(fail within {f.horizon} steps) = {f.p_fail:.4f}, {how}", ""]
        if f.p_fail <= 0:
            return "\n".join(lines + [f"No path reaches a failure state within {f.horizon} steps: nothing to explain."])
        lines.append(f"Most likely paths into failure (the {len(self.paths.table)} listed cover "
                     f"{self.paths.coverage:.1%} of the risk):")
        for rank, row in self.paths.table.head(top).iterrows():
            lines.append(f"  {rank:>2}. {row.path}   p = {row.probability:.4f} ({row.share:.1%})")
        lines += ["", "Where failing paths enter failure (share of the risk):"]
        for row in f.into_failure.head(top).itertuples():
            lines.append(f"  {row.state} -({row.event})-> {row.next_state}: {row.share:.1%}")
        lines += ["", "When (first failure at step):  " +
                  "  ".join(f"{k}: {v:.0%}" for k, v in f.by_step.items())]
        table = self.event_table()
        lines += ["", "Events:" if self.events is None else
                  f"Events (Shapley value: what each adds to P(fail), neutral = {self.events.neutral}; "
                  "they add up to the risk minus the risk with every event neutral):"]
        lines += ["  " + s for s in _fmt(table).splitlines()]
        states = self.state_table()
        if states is not None:
            lines += ["", "Entered states (Shapley value; removing a state sends its entries to a safe place):"]
            lines += ["  " + s for s in _fmt(states).splitlines()]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """The report as JSON-able data."""
        out = {"flux": self.flux.to_dict(), "paths": self.paths.to_dict()}
        out["events"] = None if self.events is None else self.events.to_dict()
        out["states"] = None if self.states is None else self.states.to_dict()
        if self.gradient is not None:
            start = self.gradient.index[0]
            out["mix_gradient"] = {str(k): json_value(v) for k, v in self.gradient.loc[start].items()}
        return out


def _fmt(frame: pd.DataFrame) -> str:
    return frame.to_string(float_format=lambda v: f"{v:.4f}")


def explain(model, histories=None, *, entity: str | None = None, state: str | None = None,
            horizon: int | None = None, n_paths: int = 10, scenario: Sequence[str] | str | None = None,
            neutral: str = "absent", event_mix=None, recent_window=None) -> Explanation:
    """Why one handler is at risk: every explanation of its forecast.

    Without ``entity`` or ``state``, the entity of ``histories`` (or of the model's remembered steps) with
    the largest P(fail within ``horizon``) among those not in a failure state now is explained (the one
    about to fail; all entities when every one is in a failure state). Parameters as in :func:`failure_flux`,
    :func:`likely_paths` and :func:`attribute_events`.

    Examples
    --------
    >>> import markovfault as mf
    >>> from markovfault.simulate import simulate_histories
    >>> history = simulate_histories(n_handlers=6, n_steps=200, random_state=1)
    >>> model = mf.FaultPredictor(
    ...     columns={"entity": "handler", "time": "timestamp", "event": "event_type", "status": "status"},
    ...     states={"kind": "categorical", "failure": ["error", "timeout", "down"]}).fit(history)
    >>> why = explain(model, history, horizon=5)
    >>> bool(why.p_fail == why.events.value.iloc[0])
    True
    >>> print(why.to_text().splitlines()[0])  # doctest: +ELLIPSIS
    orders-worker-0... (now ...): P(fail within 5 steps) = 0...
    """
    if isinstance(scenario, str):
        scenario = [s.strip() for s in scenario.split(",") if s.strip()]
    k = (len(scenario) if scenario is not None else DEFAULT_HORIZON) if horizon is None else horizon
    if entity is None and state is None:
        if not is_predictor(model):
            raise ConfigError("say where to start: entity='name' or state='name'")
        forecast = model.predict(histories, horizon=k, layout="wide", scenario=scenario, event_mix=event_mix,
                                 recent_window=recent_window)
        col = [c for c in forecast.columns if str(c).startswith("p_fail_")][-1]
        base = model.chain_.base_
        failed = {n for n, f in zip(base.state_names_, base.is_failure_) if f}
        up = ~forecast["state"].astype(str).isin(failed).to_numpy()
        pool = forecast[up] if up.any() else forecast  # a handler about to fail, not one already down
        entity = str(pool["entity"].iloc[int(pool[col].to_numpy().argmax())])
    where = dict(entity=entity, state=state, histories=histories, event_mix=event_mix, recent_window=recent_window)
    flux = failure_flux(model, horizon, scenario=scenario, **where)
    paths = likely_paths(model, horizon, n_paths=n_paths, scenario=scenario, **where)
    if scenario is not None:
        return Explanation(flux, paths, None, None, None)
    events = attribute_events(model, flux.horizon, neutral=neutral, **where)
    states = attribute_states(model, flux.horizon, **where)
    gradient = event_mix_gradient(model, flux.horizon, **where)
    return Explanation(flux, paths, events, states, gradient)
