"""The public explanations of one fitted model: failure flux, most likely paths, attributions."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .._eventmix import check_event_mix, event_probs_for
from .._posterior import rng_of
from .._recursion import check_horizon
from ..chain import scenario_codes
from ..exceptions import ConfigError, DataWarning, NotFittedError
from ._attribution import (MAX_EXACT, NEUTRALS, all_coalitions, coalition_values, mix_gradient,
                           sampled_shapley, shapley_from_values, state_players)
from ._flux import flux_frame, forward_flux, step_sets
from ._paths import MAX_EXPANSIONS, best_paths
from ._view import ANY_EVENT, ChainView, view_of

__all__ = ["failure_flux", "likely_paths", "attribute_events", "attribute_states", "event_mix_gradient",
           "FailureFlux", "LikelyPaths", "Attribution", "DEFAULT_HORIZON", "is_predictor", "json_value"]

logger = logging.getLogger(__name__)

DEFAULT_HORIZON = 10


# ------------------------------------------------------------------ resolving the model and the start
def is_predictor(model) -> bool:
    return hasattr(model, "states_") and hasattr(model, "chain_")


def _chain_of(model):
    if is_predictor(model):
        if not hasattr(model, "chain_") or getattr(model, "chain_", None) is None:
            raise NotFittedError("the predictor is not fitted yet; call fit first")
        return model.chain_
    if hasattr(model, "event_matrix") and hasattr(model, "base_"):
        return model
    if hasattr(model, "fit") and hasattr(model, "predict"):
        raise NotFittedError(f"this {type(model).__name__} is not fitted yet; call fit first")
    raise TypeError(f"explanations need a fitted FaultPredictor or chain, not {type(model).__name__}")


def _view(model, event_mix, recent_window, frame) -> ChainView:
    chain = _chain_of(model)
    if event_mix is None:
        return view_of(chain)
    if is_predictor(model):
        from ..predictor._forecasts import forecast_probs

        probs = forecast_probs(model, event_mix, recent_window, frame)
    else:
        mix, _ = check_event_mix(event_mix, chain.base_.event_names_)
        if not isinstance(mix, Mapping):
            raise ConfigError("a chain takes event_mix as shares of events only; 'recent' needs a "
                              "FaultPredictor and its histories")
        probs = event_probs_for(chain, mix)
    return view_of(chain, probs)


@dataclass
class _Start:
    view: ChainView
    rows: np.ndarray        # chain states
    labels: list            # entity names, or state names
    kind: str               # "entity" | "state"
    states: list            # the base state of each start


def _starts(model, *, entity=None, state=None, histories=None, event_mix=None, recent_window=None,
            every_state: bool = False) -> _Start:
    """The chain states to explain from: an entity's last step (from ``histories`` or the model's
    remembered last steps), a named state, or (``every_state``) every base state."""
    if entity is not None and state is not None:
        raise ConfigError("give entity= or state=, not both")
    if entity is not None:
        if not is_predictor(model):
            raise ConfigError("entity= needs a FaultPredictor (a chain knows no entities); give state=")
        _chain_of(model)
        from ..predictor._forecasts import entity_states

        frame, names, rows, _ = entity_states(model, histories)
        wanted = [entity] if isinstance(entity, str) else [str(e) for e in entity]
        index = {str(n): i for i, n in enumerate(names)}
        missing = [e for e in wanted if e not in index]
        if missing:
            shown = ", ".join(map(str, names[:8])) + (", ..." if len(names) > 8 else "")
            raise ConfigError(f"entity {missing[0]!r} has no steps in the histories given; the entities "
                              f"are {shown}")
        view = _view(model, event_mix, recent_window, frame)
        chosen = np.array([rows[index[e]] for e in wanted], dtype=np.int64)
        return _Start(view, chosen, wanted, "entity", [view.base_names[view.base_of[r]] for r in chosen])
    frame = None
    if histories is not None and is_predictor(model):
        from ..predictor._settings import read_input

        frame, _ = read_input(histories, model.columns, categorical=False)
    view = _view(model, event_mix, recent_window, frame)
    if state is not None:
        wanted = [state] if isinstance(state, str) else [str(s) for s in state]
        rows = np.array([view.start_row(s) for s in wanted], dtype=np.int64)
        return _Start(view, rows, wanted, "state", [view.base_names[view.base_of[r]] for r in rows])
    if not every_state:
        raise ConfigError("say where to start: entity='name' (its last step) or state='name'")
    rows = np.array([view.start_row(s) for s in view.base_names], dtype=np.int64)
    return _Start(view, rows, list(view.base_names), "state", list(view.base_names))


def _scenario(view: ChainView, scenario, horizon):
    if scenario is None:
        return check_horizon(DEFAULT_HORIZON if horizon is None else horizon), None, None
    names = [s.strip() for s in scenario.split(",") if s.strip()] if isinstance(scenario, str) else \
        [str(s) for s in scenario]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        codes = scenario_codes(view.chain, names, horizon)
    for w in caught:
        warnings.warn(w.message, w.category, stacklevel=4)
    return len(codes), codes, names[:len(codes)]


def _one(start: _Start, what: str) -> int:
    if len(start.rows) != 1:
        raise ConfigError(f"{what} explains one start at a time; give one entity or one state")
    return int(start.rows[0])


def _share(x, total: float):
    return x / total if total > 0 else x * np.nan


# ------------------------------------------------------------------ failure flux
@dataclass(repr=False)
class FailureFlux:
    """The failure flux of one forecast (see :func:`failure_flux`).

    Attributes
    ----------
    p_fail : float
        P(fail within ``horizon``) from the start.
    edges : DataFrame
        Every edge with flux at every step: ``step`` (1-based), ``state``, ``event``, ``next_state``,
        ``flux`` (the probability that a failing path takes this edge at this step, before its first
        failure) and ``share`` (flux / p_fail).
    by_edge : DataFrame
        The same summed over steps; ``share`` is then the expected number of times a failing path takes
        the edge (for edges into a failure state: the share of the failure probability that enters failure
        through it; those add up to 1).
    into_failure : DataFrame
        The rows of ``by_edge`` that enter a failure state, largest first.
    by_event : DataFrame
        Per event: ``entering``, the share of the failure probability whose failing step was this event
        (adds up to 1), and ``traffic``, the expected number of steps with this event on a failing path.
    by_step : Series
        The share of the failure probability whose first failure is at each step (adds up to 1).
    by_state : Series
        The expected number of steps a failing path takes from each state before it fails.
    """

    p_fail: float
    horizon: int
    start: str
    start_state: str
    scenario: list | None
    edges: pd.DataFrame
    failure_states: list = field(default_factory=list)

    def __post_init__(self):
        e = self.edges
        e["share"] = _share(e["flux"].to_numpy(), self.p_fail)
        keys = ["state", "event", "next_state"]
        by = e.groupby(keys, observed=True, as_index=False)[["flux", "share"]].sum()
        self.by_edge = by.sort_values("flux", ascending=False, kind="stable").reset_index(drop=True)
        into = self.by_edge["next_state"].astype(str).isin(self.failure_states).to_numpy()
        self.into_failure = self.by_edge[into].reset_index(drop=True)
        fail_edges = e[e["next_state"].astype(str).isin(self.failure_states).to_numpy()]
        entering = fail_edges.groupby("event", observed=False)["flux"].sum()
        traffic = e.groupby("event", observed=False)["flux"].sum()
        self.by_event = pd.DataFrame({"entering": _share(entering, self.p_fail),
                                      "traffic": _share(traffic, self.p_fail)})
        self.by_event.index.name = "event"
        steps = fail_edges.groupby("step")["flux"].sum().reindex(range(1, self.horizon + 1), fill_value=0.0)
        self.by_step = pd.Series(_share(steps.to_numpy(), self.p_fail), index=pd.Index(steps.index, name="step"),
                                 name="share")
        self.by_state = (e.groupby("state", observed=False)["flux"].sum() / self.p_fail
                         if self.p_fail > 0 else e.groupby("state", observed=False)["flux"].sum() * np.nan)
        self.by_state.name = "visits"

    def __repr__(self) -> str:
        how = f"scenario of {len(self.scenario)} events" if self.scenario else "marginal"
        return (f"FailureFlux(start={self.start!r}, state={self.start_state!r}, horizon={self.horizon}, "
                f"p_fail={self.p_fail:.4g}, {how}, {len(self.by_edge)} edges)")

    def to_dict(self) -> dict:
        """The flux as JSON-able data."""
        return {"start": self.start, "state": self.start_state, "horizon": self.horizon,
                "p_fail": self.p_fail, "scenario": self.scenario,
                "into_failure": _records(self.into_failure),
                "by_event": _records(self.by_event.reset_index()),
                "by_step": [{"step": int(k), "share": json_value(v)} for k, v in self.by_step.items()],
                "by_edge": _records(self.by_edge)}


def json_value(v):
    """A value as JSON holds it: numbers as int or float (NaN and infinities as None), the rest as str."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if np.isfinite(v) else None
    return None if v is None else str(v)


def _records(frame: pd.DataFrame) -> list:
    return [{k: json_value(v) for k, v in zip(frame.columns, row)} for row in frame.itertuples(index=False)]


def failure_flux(model, horizon: int | None = None, *, entity: str | None = None, state: str | None = None,
                 histories=None, scenario: Sequence[str] | str | None = None, event_mix=None,
                 recent_window=None, by: str = "base") -> FailureFlux:
    """The exact failure flux within ``horizon`` steps: which edges, events and steps failing paths take.

    Parameters
    ----------
    model : FaultPredictor or chain
        A fitted predictor (plain or history-aware states), or a fitted chain.
    horizon : int, default=10
        The number of steps ahead (with a ``scenario``: at most its length; default its length).
    entity : str, optional
        Explain this entity's forecast from its last step in ``histories`` (or, without histories, in the
        steps the model remembers).
    state : str, optional
        Explain the forecast from this state (a base state's name, or a chain state's name).
    histories : frame or path, optional
    scenario : sequence of str, optional
        The next events, in order (a what-if forecast); without one, the coming events follow the model's
        arrival probabilities (``event_mix`` changes them as in :meth:`FaultPredictor.predict`).
    by : {"base", "chain"}, default="base"
        Edges between base states (the chain states of a history-aware model summed by base state), or
        between the chain's own states.

    Returns
    -------
    FailureFlux

    Examples
    --------
    >>> import numpy as np
    >>> from markovfault.chain import EventMarkovChain
    >>> counts = np.array([[[60, 30, 10], [50, 30, 20], [70, 0, 30]],    # event "a"
    ...                    [[20, 10, 30], [10, 20, 30], [40, 0, 60]]])   # event "b"
    >>> chain = EventMarkovChain(alpha=0, beta=0).fit_from_counts(
    ...     counts, ["ok", "slow", "down"], ["a", "b"], [False, False, True])
    >>> flux = failure_flux(chain, 3, state="ok")
    >>> round(flux.p_fail, 4), round(float(flux.by_step.sum()), 6)
    (0.6025, 1.0)
    >>> flux.into_failure.round(4)          # the edges into failure, and their share of p_fail
      state event next_state    flux   share
    0    ok     b       down  0.3457  0.5737
    1    ok     a       down  0.1152  0.1912
    2  slow     b       down  0.0850  0.1410
    3  slow     a       down  0.0566  0.0940
    """
    if by not in ("base", "chain"):
        raise ConfigError(f"by = {by!r}: give 'base' or 'chain'")
    start = _starts(model, entity=entity, state=state, histories=histories, event_mix=event_mix,
                    recent_window=recent_window)
    row = _one(start, "failure_flux")
    view = start.view
    k, codes, names = _scenario(view, scenario, horizon)
    steps = step_sets(view, k, codes, names)
    a0 = np.zeros(view.n_states)
    a0[row] = 1.0
    p_fail, records, labels = forward_flux(view, a0, steps)
    edges = flux_frame(view, records, labels, by)
    fail_names = sorted({(view.base_names if by == "base" else view.state_names)[i]
                         for i in (np.unique(view.base_of[view.mask]) if by == "base"
                                   else np.flatnonzero(view.mask))})
    return FailureFlux(p_fail=p_fail, horizon=k, start=start.labels[0], start_state=start.states[0],
                       scenario=names, edges=edges, failure_states=fail_names)


# ------------------------------------------------------------------ most likely paths
@dataclass(repr=False)
class LikelyPaths:
    """The most likely paths into failure of one forecast (see :func:`likely_paths`).

    Attributes
    ----------
    table : DataFrame
        One row per path, most likely first (index ``rank`` from 1): ``path`` (readable), ``probability``,
        ``share`` (of ``p_fail``), ``steps``, and the path's ``states`` (base states, from the start) and
        ``events`` as tuples; ``chain_states`` for a history-aware model.
    p_fail : float
    coverage : float
        The share of ``p_fail`` the listed paths cover.
    complete : bool
        False when the search stopped at its limit of partial paths before listing all paths asked for.
    """

    table: pd.DataFrame
    p_fail: float
    horizon: int
    start: str
    complete: bool = True

    @property
    def coverage(self) -> float:
        return float(self.table["share"].sum()) if len(self.table) else 0.0

    def __repr__(self) -> str:
        top = self.table["path"].iloc[0] if len(self.table) else "none"
        return (f"LikelyPaths(start={self.start!r}, horizon={self.horizon}, p_fail={self.p_fail:.4g}, "
                f"{len(self.table)} paths covering {self.coverage:.1%}; most likely: {top})")

    def to_dict(self) -> dict:
        return {"start": self.start, "horizon": self.horizon, "p_fail": self.p_fail,
                "coverage": self.coverage, "complete": self.complete,
                "paths": [{"rank": int(r), "path": p.path, "probability": float(p.probability),
                           "share": json_value(p.share), "states": list(p.states), "events": list(p.events)}
                          for r, p in zip(self.table.index, self.table.itertuples())]}


def _path_text(states: list, events: list) -> str:
    out = [states[0]]
    for e, s in zip(events, states[1:]):
        out.append(f" -> {s}" if e == ANY_EVENT else f" -({e})-> {s}")
    return "".join(out)


def likely_paths(model, horizon: int | None = None, *, n_paths: int = 10, entity: str | None = None,
                 state: str | None = None, histories=None, scenario=None, event_mix=None, recent_window=None,
                 events: bool = True, max_expansions: int = MAX_EXPANSIONS) -> LikelyPaths:
    """The ``n_paths`` most likely paths into failure within ``horizon`` steps, exact, most likely first.

    A path runs from the start through each step's event and state to its first failure state. The search
    is best-first with an exact bound (the probability of the best failing completion, a max-product
    recursion over the steps left), so the paths come out in order of probability and the search opens no
    partial path less likely than the last path listed. ``events=False`` sums over the events of each step
    (paths of states). Parameters as in :func:`failure_flux`.

    Examples
    --------
    >>> import numpy as np
    >>> from markovfault.chain import EventMarkovChain
    >>> counts = np.array([[[60, 30, 10], [50, 30, 20], [70, 0, 30]],
    ...                    [[20, 10, 30], [10, 20, 30], [40, 0, 60]]])
    >>> chain = EventMarkovChain(alpha=0, beta=0).fit_from_counts(
    ...     counts, ["ok", "slow", "down"], ["a", "b"], [False, False, True])
    >>> paths = likely_paths(chain, 3, state="ok", n_paths=2)
    >>> paths.table[["path", "probability"]].round(4)
                          path  probability
    rank
    1               ok -(b)-> down       0.1875
    2     ok -(a)-> ok -(b)-> down       0.0703

    From ``ok``, 3 of 8 steps are event ``b`` and half of those go ``down``: 0.375 x 0.5 = 0.1875; the
    second path, 0.625 x 0.6 x 0.1875, is more likely than ``ok -(a)-> down`` (0.625 x 0.1 = 0.0625).
    """
    if isinstance(n_paths, bool) or not isinstance(n_paths, (int, np.integer)) or n_paths < 1:
        raise ConfigError(f"n_paths = {n_paths!r}: give an integer >= 1")
    start = _starts(model, entity=entity, state=state, histories=histories, event_mix=event_mix,
                    recent_window=recent_window)
    row = _one(start, "likely_paths")
    view = start.view
    k, codes, names = _scenario(view, scenario, horizon)
    steps = step_sets(view, k, codes, names, events=events)
    a0 = np.zeros(view.n_states)
    a0[row] = 1.0
    from ._flux import backward

    p_fail = float(backward(view, steps)[0][row])
    found, complete = best_paths(view, row, steps, int(n_paths), max_expansions)
    base = [[view.base_names[view.base_of[s]] for s in states] for _, states, _ in found]
    table = pd.DataFrame({
        "path": [_path_text(b, ev) for b, (_, _, ev) in zip(base, found)],
        "probability": [p for p, _, _ in found],
        "share": [_share(p, p_fail) for p, _, _ in found],
        "steps": [len(ev) for _, _, ev in found],
        "states": [tuple(b) for b in base],
        "events": [tuple(ev) for _, _, ev in found],
    }, index=pd.RangeIndex(1, len(found) + 1, name="rank"))
    if view.sparse:
        table["chain_states"] = [tuple(view.state_names[s] for s in states) for _, states, _ in found]
    return LikelyPaths(table=table, p_fail=p_fail, horizon=k, start=start.labels[0], complete=complete)


# ------------------------------------------------------------------ attributions
@dataclass(repr=False)
class Attribution:
    """Shapley values of the players (events or states) to P(fail within ``horizon``), one row per start
    (see :func:`attribute_events`).

    Attributes
    ----------
    values : DataFrame
        Shapley values, starts by players; each row adds up to ``value - baseline``.
    removal_effects : DataFrame
        ``(value - value without the player) / value``, marketing attribution's convention (not additive).
    value, baseline : Series
        P(fail within horizon) of the chain as fitted, and with every player neutral.
    standard_errors : DataFrame or None
        For sampled Shapley values (beyond ``max_exact`` players), their standard errors.
    """

    values: pd.DataFrame
    removal_effects: pd.DataFrame
    value: pd.Series
    baseline: pd.Series
    players: str
    neutral: str
    horizon: int
    exact: bool = True
    standard_errors: pd.DataFrame | None = None

    def __repr__(self) -> str:
        how = "exact" if self.exact else "sampled"
        neutral = f", neutral={self.neutral!r}" if self.players == "events" else ""
        return (f"Attribution({self.players}{neutral}, horizon={self.horizon}, {how}, "
                f"{self.values.shape[0]} starts x {self.values.shape[1]} players)")

    def to_dict(self) -> dict:
        return {"players": self.players, "neutral": self.neutral, "horizon": self.horizon,
                "exact": self.exact,
                "starts": [{"start": str(s), "value": float(self.value[s]), "baseline": float(self.baseline[s]),
                            "shapley": {str(k): json_value(v) for k, v in self.values.loc[s].items()},
                            "removal_effect": {str(k): json_value(v)
                                               for k, v in self.removal_effects.loc[s].items()}}
                           for s in self.values.index]}


def _attribute(model, horizon, players: str, neutral: str, entity, state, histories, event_mix,
               recent_window, max_exact, n_permutations, random_state) -> Attribution:
    if neutral not in NEUTRALS:
        raise ConfigError(f"neutral = {neutral!r}: give one of {list(NEUTRALS)}")
    k = check_horizon(DEFAULT_HORIZON if horizon is None else horizon)
    start = _starts(model, entity=entity, state=state, histories=histories, event_mix=event_mix,
                    recent_window=recent_window, every_state=True)
    view = start.view
    if players == "events":
        names = list(view.event_names)
    else:
        names = [view.base_names[b] for b in state_players(view)]
    n = len(names)

    def value_of(masks):
        return coalition_values(view, masks, k, players, neutral)[:, start.rows]

    full = value_of(np.ones((1, n), dtype=bool))[0]
    empty = value_of(np.zeros((1, n), dtype=bool))[0]
    index = pd.Index(start.labels, name=start.kind)
    se = None
    if n <= max_exact:
        values = value_of(all_coalitions(n))
        phi = shapley_from_values(values, n)
        without = values[(2 ** n - 1) ^ (1 << np.arange(n))]  # every player but one
        exact = True
    else:
        mean, err = sampled_shapley(value_of, n, int(n_permutations), rng_of(random_state))
        phi = mean
        se = pd.DataFrame(err.T, index=index, columns=pd.Index(names, name=players[:-1]))
        without = value_of(~np.eye(n, dtype=bool))
        exact = False
        logger.info("%d players: Shapley values sampled from %d permutations", n, n_permutations)
    cols = pd.Index(names, name=players[:-1])
    removal = (full[None, :] - without) / np.where(full > 0, full, np.nan)[None, :]
    return Attribution(values=pd.DataFrame(phi.T, index=index, columns=cols),
                       removal_effects=pd.DataFrame(removal.T, index=index, columns=cols),
                       value=pd.Series(full, index=index, name="p_fail"),
                       baseline=pd.Series(empty, index=index, name="baseline"),
                       players=players, neutral=neutral if players == "events" else "removed", horizon=k,
                       exact=exact, standard_errors=se)


def attribute_events(model, horizon: int | None = None, *, entity=None, state=None, histories=None,
                     neutral: str = "absent", event_mix=None, recent_window=None, max_exact: int = MAX_EXACT,
                     n_permutations: int = 2000, random_state=0) -> Attribution:
    """Exact Shapley values of each event type to P(fail within ``horizon``), with removal effects.

    The players are the event types; an event outside a coalition is ``neutral``: ``"absent"`` (it does
    not occur: each state's arrival probabilities renormalised over the other events; a state that
    receives none of them takes no further step; the values then add up to the risk itself) or ``"harmless"`` (it occurs but its transition rows are the pooled
    rows). The values of every coalition come from the closed-form recursion (2^E of them, batched); with
    more than ``max_exact`` events, from ``n_permutations`` sampled orders (``standard_errors`` set). Without
    ``entity`` or ``state``, every base state is a start (one row each).

    Examples
    --------
    >>> import numpy as np
    >>> from markovfault.chain import EventMarkovChain
    >>> counts = np.array([[[60, 30, 10], [50, 30, 20], [70, 0, 30]],
    ...                    [[20, 10, 30], [10, 20, 30], [40, 0, 60]]])
    >>> chain = EventMarkovChain(alpha=0, beta=0).fit_from_counts(
    ...     counts, ["ok", "slow", "down"], ["a", "b"], [False, False, True])
    >>> att = attribute_events(chain, 3, state="ok")
    >>> att.values.round(4)
    event       a       b
    state
    ok     0.0263  0.5763
    >>> bool(np.isclose(att.values.sum(axis=1), att.value - att.baseline).all())
    True
    """
    return _attribute(model, horizon, "events", neutral, entity, state, histories, event_mix, recent_window,
                      max_exact, n_permutations, random_state)


def attribute_states(model, horizon: int | None = None, *, entity=None, state=None, histories=None,
                     event_mix=None, recent_window=None, max_exact: int = MAX_EXACT, n_permutations: int = 2000,
                     random_state=0) -> Attribution:
    """Exact Shapley values of each entered (non-failure base) state to P(fail within ``horizon``).

    A state outside a coalition is removed: a transition into it (after the start) leaves for a safe place
    that never fails, as in the removal effects of Markov attribution models. Each row adds up to
    P(fail within horizon) minus P(the first step fails). Parameters as in :func:`attribute_events`.

    Examples
    --------
    >>> import numpy as np
    >>> from markovfault.chain import EventMarkovChain
    >>> counts = np.array([[[60, 30, 10], [50, 30, 20], [70, 0, 30]],
    ...                    [[20, 10, 30], [10, 20, 30], [40, 0, 60]]])
    >>> chain = EventMarkovChain(alpha=0, beta=0).fit_from_counts(
    ...     counts, ["ok", "slow", "down"], ["a", "b"], [False, False, True])
    >>> attribute_states(chain, 3, state="ok").values.round(4)
    state      ok    slow
    state
    ok     0.2188  0.1338
    """
    return _attribute(model, horizon, "states", "absent", entity, state, histories, event_mix, recent_window,
                      max_exact, n_permutations, random_state)


def event_mix_gradient(model, horizon: int | None = None, *, entity=None, state=None, histories=None,
                       event_mix=None, recent_window=None) -> pd.DataFrame:
    """How P(fail within ``horizon``) changes as the event mix moves toward each event: the derivative in
    eps of the risk when every state's arrival row becomes ``(1 - eps) Q + eps 1_e``, at eps = 0, exact
    (forward-mode differentiation of the recursion). Starts by events; without ``entity`` or ``state``,
    every base state.

    Examples
    --------
    >>> import numpy as np
    >>> from markovfault.chain import EventMarkovChain
    >>> counts = np.array([[[60, 30, 10], [50, 30, 20], [70, 0, 30]],
    ...                    [[20, 10, 30], [10, 20, 30], [40, 0, 60]]])
    >>> chain = EventMarkovChain(alpha=0, beta=0).fit_from_counts(
    ...     counts, ["ok", "slow", "down"], ["a", "b"], [False, False, True])
    >>> event_mix_gradient(chain, 3, state="ok").round(4)
    event       a       b
    state
    ok    -0.2299  0.3831
    """
    k = check_horizon(DEFAULT_HORIZON if horizon is None else horizon)
    start = _starts(model, entity=entity, state=state, histories=histories, event_mix=event_mix,
                    recent_window=recent_window, every_state=True)
    grad = mix_gradient(start.view, k)[:, start.rows]
    return pd.DataFrame(grad.T, index=pd.Index(start.labels, name=start.kind),
                        columns=pd.Index(start.view.event_names, name="event"))
