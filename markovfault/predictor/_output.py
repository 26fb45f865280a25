"""Forecast frames (internal API): each entity's last step and its P(fail within h), as a DataFrame.

Built from integer codes without a pass over rows in Python; ``entity`` and ``state`` are categorical, so a
million entities times fifty horizons stay cheap.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..exceptions import HistoryError
from ..trajectories import Trajectories
from ._settings import recent_strength_in_use

__all__ = ["LAYOUTS", "check_layout", "forecast_frame", "entity_forecasts", "interval_columns", "forecast_output", "tidy_to_wide", "html_summary",
           "priors_frame"]

LAYOUTS = ("tidy", "wide")


def check_layout(layout) -> str:
    if not (isinstance(layout, str) and layout in LAYOUTS):
        raise ValueError(f"layout = {layout!r}; use 'tidy' (one row per entity and horizon) "
                         "or 'wide' (one row per entity, one p_fail column per horizon).")
    return layout


def forecast_frame(traj: Trajectories, state: np.ndarray, table, layout: str = "tidy") -> pd.DataFrame:
    """One row per (entity, horizon) from each entity's last step; vectorised.

    ``state`` indexes the rows of ``table`` (augmented codes with history);
    the ``state`` column shows the base state. ``table`` is an array, or a function of the chain states
    of the entities' last steps that returns their forecasts (:func:`entity_forecasts`). See
    :func:`forecast_output` for the layouts.
    """
    if traj.n_steps == 0:
        raise HistoryError("no rows to forecast from")
    rows = traj.last_index()
    p, extra = entity_forecasts(table, state[rows])
    return forecast_output(np.array(traj.entity_names, dtype=object), traj.time[rows],
                           traj.time_kind, traj.state[rows], traj.state_names,
                           p, layout=layout, entity=traj.entity[rows], extra=extra)


def entity_forecasts(table, rows: np.ndarray) -> tuple[np.ndarray, dict]:
    """Each entity's forecast from the chain state ``rows`` of its last step: ``table[rows]``, or what a
    function ``table(rows)`` returns (the forecasts and the extra columns, as with an interval)."""
    if callable(table):
        return table(np.asarray(rows, dtype=np.int64))
    return table[rows], {}


def interval_columns(bounds, support: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, dict]:
    """The forecasts and interval columns of entities in chain states ``rows``, from ``bounds`` over the
    distinct states ``np.unique(rows)`` (:class:`~markovfault._posterior.Bounds`) and the transitions
    counted out of every chain state."""
    inverse = np.unique(rows, return_inverse=True)[1].reshape(-1)
    return bounds.estimate[inverse], {"p_fail_lo": bounds.lower[inverse], "p_fail_hi": bounds.upper[inverse],
                                      "n_support": np.asarray(support, dtype=np.int64)[rows]}


def forecast_output(names: np.ndarray, as_of: np.ndarray, time_kind: str, base: np.ndarray,
                    state_names, p: np.ndarray, layout: str = "tidy",
                    entity: np.ndarray | None = None, extra: dict | None = None,
                    horizons: tuple | None = None) -> pd.DataFrame:
    """The forecast frame from each entity's last step.

    ``names`` (object array of str, ascending, unique) are the entities and
    the categories of ``entity``; ``entity`` their codes (default: one row per
    name, in order); ``as_of`` the int64 time of each entity's last step (UTC
    nanoseconds when ``time_kind == 'datetime'``); ``base`` its base state
    code; ``p`` (n_entities, horizon) its P(fail within h), a fresh array the
    frame takes over without copying.

    ``layout='tidy'``: columns ``entity`` (categorical; its codes are built
    directly in the integer type pandas keeps them in, int32 for a million
    entities, so nothing is converted), ``as_of`` (datetime64[ns, UTC] or
    int64), ``state`` (categorical, int8 codes), ``horizon`` (int64),
    ``p_fail`` (float64); one row per entity and horizon, sorted by entity
    then horizon. The columns are left unconsolidated (``DataFrame(...,
    copy=False)``): pandas does not stack ``as_of`` and ``horizon`` into one
    2-D block, which would copy them.

    ``layout='wide'``: columns ``entity``, ``as_of``, ``state`` as above,
    then ``p_fail_1`` ... ``p_fail_<horizon>`` (float64, one 2-D block that is
    ``p`` itself); one row per entity. ``wide`` equals ``tidy`` pivoted.

    ``extra`` (an interval): ``p_fail_lo`` and ``p_fail_hi`` (n_entities, horizon) and ``n_support``
    (n_entities,), after ``p_fail`` (wide: ``p_fail_lo_<h>``, ``p_fail_hi_<h>``, then ``n_support``).

    ``horizons`` (time horizons): ``(labels, kinds)``, one label (``"3"``, ``"15min"``) and kind (``"steps"``
    or ``"time"``) per column of ``p``; ``horizon`` is then a categorical of the labels in that order, after
    it ``kind`` (tidy), and the wide columns are ``p_fail_<label>``.
    """
    n_ent, horizon = p.shape
    if entity is None:
        entity = np.arange(n_ent)
    entity_dtype = _category_dtype(names)
    state_dtype = _category_dtype(np.array([str(s) for s in state_names], dtype=object))
    entity = entity.astype(_code_dtype(len(names)), copy=False)
    base = base.astype(_code_dtype(len(state_names)), copy=False)
    if time_kind == "datetime":
        as_of = pd.to_datetime(np.asarray(as_of, dtype=np.int64), utc=True).array
    else:
        as_of = np.asarray(as_of, dtype=np.int64)
    labels = [str(h) for h in range(1, horizon + 1)] if horizons is None else list(horizons[0])
    if layout == "wide":
        out = pd.DataFrame(p, columns=[f"p_fail_{h}" for h in labels], copy=False)
        out.insert(0, "entity", _from_codes(entity.copy(), entity_dtype))
        out.insert(1, "as_of", as_of.copy())
        out.insert(2, "state", _from_codes(base.copy(), state_dtype))
        for name, values in (extra or {}).items():
            if values.ndim == 1:
                out[name] = values
            else:
                for h in range(horizon):
                    out[f"{name}_{labels[h]}"] = values[:, h]
        return out
    columns = {
        "entity": _from_codes(np.repeat(entity, horizon), entity_dtype),
        "as_of": as_of.repeat(horizon),
        "state": _from_codes(np.repeat(base, horizon), state_dtype),
        "horizon": np.tile(np.arange(1, horizon + 1, dtype=np.int64), n_ent),
        "p_fail": p.reshape(-1),
    }
    if horizons is not None:
        codes = np.tile(np.arange(horizon, dtype=np.int8 if horizon < 127 else np.int32), n_ent)
        columns["horizon"] = pd.Categorical.from_codes(codes, dtype=pd.CategoricalDtype(labels, ordered=True))
        kinds = pd.CategoricalDtype(["steps", "time"])
        columns = {**{k: columns[k] for k in ("entity", "as_of", "state", "horizon")},
                   "kind": pd.Categorical(np.tile(np.asarray(horizons[1], dtype=object), n_ent), dtype=kinds),
                   "p_fail": columns["p_fail"]}
    for name, values in (extra or {}).items():
        columns[name] = values.reshape(-1) if values.ndim == 2 else np.repeat(values, horizon)
    return pd.DataFrame(columns, copy=False)


def tidy_to_wide(tidy: pd.DataFrame) -> pd.DataFrame:
    """The wide layout of a tidy forecast frame (sorted by entity, then horizon 1..H)."""
    horizon = int(tidy["horizon"].max())
    p = tidy["p_fail"].to_numpy(dtype=np.float64).reshape(-1, horizon)
    out = pd.DataFrame(p.copy(), columns=[f"p_fail_{h}" for h in range(1, horizon + 1)])
    first = tidy.iloc[::horizon].reset_index(drop=True)
    for k, name in enumerate(("entity", "as_of", "state")):
        out.insert(k, name, first[name])
    for name in ("p_fail_lo", "p_fail_hi"):
        if name in tidy:
            values = tidy[name].to_numpy(dtype=np.float64).reshape(-1, horizon)
            for h in range(horizon):
                out[f"{name}_{h + 1}"] = values[:, h]
    if "n_support" in tidy:
        out["n_support"] = first["n_support"].to_numpy()
    return out


def _code_dtype(n: int):
    """The integer type pandas keeps the codes of ``n`` categories in."""
    for dtype in (np.int8, np.int16, np.int32):
        if n < np.iinfo(dtype).max:
            return dtype
    return np.int64


def _category_dtype(names: np.ndarray) -> pd.CategoricalDtype:
    """Unordered categories ``names`` (object dtype, unique, no missing value).

    pandas checks categories for missing and duplicate values (two hashing
    passes over a million names, 50 ms); the names here are unique and
    complete by construction, so the checks are skipped through pandas'
    (private) ``CategoricalDtype._from_fastpath`` where it exists.
    """
    index = pd.Index(names, dtype=object, copy=False)
    fast = getattr(pd.CategoricalDtype, "_from_fastpath", None)
    if fast is not None:
        return fast(index, ordered=False)
    return pd.CategoricalDtype(index, ordered=False)


def _from_codes(codes: np.ndarray, dtype: pd.CategoricalDtype) -> pd.Categorical:
    """``Categorical.from_codes`` of codes that are valid by construction."""
    try:
        return pd.Categorical.from_codes(codes, dtype=dtype, validate=False)
    except TypeError:  # pandas < 2.1: no validate argument
        return pd.Categorical.from_codes(codes, dtype=dtype)


def priors_frame(model) -> pd.DataFrame:
    """The priors a fitted predictor uses (``FaultPredictor.priors_``): one row per prior, the value used
    and whether it was ``"given"`` or ``"chosen"`` from the data (``"auto"``).

    The rows: ``alpha``, ``beta`` (the event-conditioned rows), ``beta_arrivals`` (the arrival rows: ``beta``
    when given, a strength of its own when chosen) and ``recent_strength`` (of ``event_mix="recent"``).
    See :func:`markovfault._priors.choose_priors` and :mod:`markovfault._eventmix` for how they are chosen.

    Examples
    --------
    >>> from markovfault import FaultPredictor
    >>> hist = pd.DataFrame({"entity": ["a"] * 6, "time": range(6),
    ...                      "status": ["ok", "ok", "down", "ok", "down", "ok"]})
    >>> model = FaultPredictor(states={"failure": ["down"]}, alpha="auto", beta=0.5).fit(hist)
    >>> model.priors_["source"].tolist()
    ['chosen', 'given', 'given', 'given']
    >>> float(model.priors_.loc["beta_arrivals", "value"])  # beta, since beta was given
    0.5
    """
    base = model.base_chain_  # NotFittedError when the model is not fitted

    def source(setting) -> str:
        return "chosen" if isinstance(setting, str) else "given"

    rows = [("alpha", base.alpha_, source(base.alpha)),
            ("beta", base.beta_, source(base.beta)),
            ("beta_arrivals", base.beta_arrivals_, source(base.beta)),
            ("recent_strength", recent_strength_in_use(model), source(model.recent_strength))]
    return pd.DataFrame({"value": [float(r[1]) for r in rows], "source": [r[2] for r in rows]},
                        index=pd.Index([r[0] for r in rows], name="prior"))


def html_summary(model) -> str:
    """A table for notebooks: per state, failure mark, transitions seen and
    P(fail within 1, 5, 10); with the events and the number of transitions.
    Unfitted, scikit-learn's estimator diagram."""
    from html import escape

    from sklearn.utils import estimator_html_repr

    if not hasattr(model, "chain_"):
        return estimator_html_repr(model)
    chain = model.chain_
    table = model.failure_probabilities(10)[[1, 5, 10]].round(3)
    table.columns = [f"P(fail within {h})" for h in (1, 5, 10)]
    table.insert(0, "failure", np.where(chain.is_failure_, "✕", ""))
    table.insert(1, "transitions out", chain.state_support())
    more = f"<p>... and {len(table) - 30} more states</p>" if len(table) > 30 else ""
    priors = "; ".join(f"{name} {row.value:.4g} ({row.source})"
                       for name, row in priors_frame(model).iterrows())
    return (f"<p><b>FaultPredictor</b>, fitted on {model.n_transitions_:,} transitions; "
            f"{len(table)} states ({int(np.sum(chain.is_failure_))} failure, ✕); "
            f"events: {escape(', '.join(map(str, model.event_names_)))}</p>"
            f"<p>priors: {escape(priors)}</p>"
            + table.head(30).to_html() + more)
