"""Forecasts in time for a fitted predictor (internal API): the time model of its sojourns, each entity's age
and rate factor, and P(fail within T) from them (the frames: :mod:`markovfault.predictor._timeforecast`) (the math: :mod:`markovfault._timehorizons`).

The model keeps the sojourns it counted (``sojourn_counts_``: completed ones, and the waits across a silence
past ``max_gap``, censored); the open last sojourn of every entity it remembers (``last_seen_``) is censored at
the latest time it has seen. The time model is fitted from both when a forecast first needs it and kept until
the counts change.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._sojourns import (Parametric, SojournCounts, check_sojourn, count_sojourns, fit_sojourns, open_sojourns,
                         state_rates, time_unit)
from .._timecodec import parse_max_gap, to_time_int
from .._timehorizons import (DEFAULT_TOL, FACTOR_SPAN, TimeHorizons, check_time_model, ctmc_failure,
                             factor_steps, quantize_factors, semi_markov_failure)
from ..exceptions import ConfigError, NotFittedError
from ..trajectories import Trajectories

__all__ = ["FittedTime", "fitted_time", "add_sojourns", "sojourns_of", "watched", "entity_time", "time_forecasts",
           "RATE_PRIOR", "check_time_settings", "resolve_at", "silence_of", "forget_time"]

logger = logging.getLogger("markovfault.forecast")

#: pseudo-sojourns at factor 1 in each entity's rate factor: (n + RATE_PRIOR) / (sum d / mean + RATE_PRIOR)
RATE_PRIOR = 5.0


@dataclass
class FittedTime:
    """The time model of a fitted predictor: per base state, its sojourn distribution (``dists``, in time
    units), its rate (``rates``, per time unit) and its completed and censored sojourns (``counts``)."""

    kind: str
    sojourn: str
    dists: list
    rates: np.ndarray
    counts: SojournCounts
    unit: float
    data_end: int

    def frame(self, state_names) -> pd.DataFrame:
        """One row per base state: the distribution chosen, its parameters, mean, rate and data."""
        rows = []
        for name, d, rate, done, cens in zip(state_names, self.dists, self.rates, self.counts.done.sum(1),
                                              self.counts.cens.sum(1)):
            rows.append({"state": str(name), "family": d.name, "mean": d.mean, "rate": rate,
                         "shape": d.params.get("shape", np.nan), "scale": d.params.get("scale", np.nan),
                         "n_sojourns": int(done), "n_censored": int(cens)})
        return pd.DataFrame(rows).set_index("state")


def check_time_settings(model) -> None:
    check_time_model(model.time_model)
    check_sojourn(model.sojourn)


def watched(model, time_kind: str) -> float | None:
    """The longest silence a sojourn is watched for: ``max_gap`` in time units (None: no limit). A longer
    silence (a run break, or an open last sojourn) is censored there."""
    gap = parse_max_gap(model.max_gap, time_kind)
    return None if gap is None else gap * time_unit(time_kind)


def sojourns_of(model, traj: Trajectories, extractor) -> SojournCounts:
    """The sojourns of ``traj`` (end states have none)."""
    ends = getattr(traj, "is_end", None)
    if ends is None:
        ends = getattr(extractor, "is_end_", None)
    return count_sojourns(traj, exclude=ends, cap=watched(model, traj.time_kind))


def forget_time(model) -> None:
    """Drop the fitted time model (refitted on first use): the sojourns or the remembered steps changed."""
    model._time_cache = None


def add_sojourns(model, traj: Trajectories, tail: Trajectories | None) -> None:
    """Add a batch's sojourns (``traj`` less its carried ``tail``, counted already) to ``sojourn_counts_``."""
    forget_time(model)
    if getattr(model, "sojourn_counts_", None) is None:
        return
    new = sojourns_of(model, traj, model.states_)
    if tail is not None and tail.n_steps:
        new = new - sojourns_of(model, tail, model.states_)
    model.sojourn_counts_ = model.sojourn_counts_ + new


def _last_rows(seen: pd.DataFrame) -> pd.DataFrame:
    last = ~seen.index.duplicated(keep="last")
    return seen[last]


def fitted_time(model) -> FittedTime:
    """The model's time model, fitted on first use and kept until its counts or remembered steps change."""
    counts = getattr(model, "sojourn_counts_", None)
    if counts is None:
        raise NotFittedError("this model holds no sojourn times (fitted before time horizons existed, or on "
                             "a back end that does not count them): fit it again to forecast in time.")
    # kept until the counts change (every fit and batch calls forget_time) or the settings do
    settings = (model.time_model, model.sojourn)
    cache = getattr(model, "_time_cache", None)
    if cache is not None and cache[0] == settings:
        return cache[1]
    check_time_settings(model)
    unit = time_unit(model.time_kind_)
    last = _last_rows(model.last_seen_)
    t = last["time"].to_numpy(np.int64)
    state = last["state"].to_numpy(np.int64)
    data_end = int(t.max()) if len(t) else 0
    n_states = len(model.states_.state_names_)
    ends = np.asarray(getattr(model.states_, "is_end_", np.zeros(n_states, bool)), bool)
    live = ~ends[state] if len(ends) == n_states else np.ones(len(state), bool)
    ages = (data_end - t[live]) * unit
    cap = watched(model, model.time_kind_)
    total = counts.padded(n_states) + open_sojourns(state[live], ages if cap is None else np.minimum(ages, cap),
                                                    n_states)
    rates = state_rates(total)
    if model.time_model == "ctmc":  # the exponential of each state's rate
        dists = [Parametric("expon", None, 1.0 / r) for r in rates]
    else:
        dists = fit_sojourns(total, model.sojourn)
    out = FittedTime(model.time_model, model.sojourn, dists, rates, total, unit, data_end)
    model._time_cache = (settings, out)
    logger.info("time model %s: %s", model.time_model,
                ", ".join(f"{s}: {d.name} (mean {d.mean:.4g})" for s, d in
                          zip(model.states_.state_names_, dists)))
    return out


def resolve_at(at, time_kind: str, latest: int) -> int:
    """The forecast time as int64: ``at`` (a timestamp, or an integer for integer time), default ``latest``."""
    if at is None:
        return int(latest)
    return int(to_time_int([at], time_kind, what="at")[0])


def entity_time(traj: Trajectories, timing: FittedTime, at: int, rate_factors: bool = True):
    """Each entity's age at ``at`` (time units since its last step) and rate factor.

    The rate factor of an entity with n completed sojourns d_k in base states b_k is
    (n + RATE_PRIOR) / (sum_k d_k / mean_{b_k} + RATE_PRIOR): how much faster than its states it steps,
    pulled toward 1 by :data:`RATE_PRIOR` pseudo-sojourns (1 without ``rate_factors``).
    """
    last = traj.last_index()
    age = (at - traj.time[last]).astype(np.float64) * timing.unit
    if np.any(age < 0):
        n = int(np.sum(age < 0))
        logger.warning("%d entities have steps after the forecast time; their age is taken as 0", n)
        age = np.maximum(age, 0.0)
    n_ent = len(last)
    if not rate_factors or traj.n_steps < 2:
        return age, np.ones(n_ent)
    inside = ~traj.is_run_start()[1:]
    d = (traj.time[1:] - traj.time[:-1]).astype(np.float64) * timing.unit
    means = np.array([dist.mean for dist in timing.dists])
    b = traj.state[:-1]
    ent = traj.entity[1:]
    ent_code = np.searchsorted(traj.entity[last], ent)  # entity codes may skip: index by last-step order
    n = np.bincount(ent_code[inside], minlength=n_ent)
    scaled = np.bincount(ent_code[inside], d[inside] / means[b[inside]], minlength=n_ent)
    return age, (n + RATE_PRIOR) / (scaled + RATE_PRIOR)


def time_forecasts(model, matrix, rows: np.ndarray, ages: np.ndarray, factors: np.ndarray,
                   horizons: TimeHorizons, grid: int | None = None) -> tuple[np.ndarray, float]:
    """P(fail within each horizon) of entities in chain states ``rows`` with ``ages`` and rate ``factors``:
    (n_entities, n_horizons), and the bound on the truncation error (0 for the semi-Markov grid)."""
    timing = fitted_time(model)
    chain = model.chain_
    rows = np.asarray(rows, np.int64)
    c = quantize_factors(factors)
    times = c[:, None] * horizons.values[None, :]
    mask = np.asarray(chain.is_failure_, bool)
    base = np.asarray(chain.base_state_, np.int64)
    if timing.kind == "semi_markov":
        return semi_markov_failure(matrix, mask, base, timing.dists, rows, c * ages, times, grid), 0.0
    # memoryless: one forecast per (chain state, rate factor) pair, looked up for every entity
    key = rows * (2 * FACTOR_SPAN + 1) + factor_steps(c) + FACTOR_SPAN
    pairs, inverse = np.unique(key, return_inverse=True)
    first = np.zeros(len(pairs), np.int64)
    first[inverse.reshape(-1)] = np.arange(len(rows))
    p, bound = ctmc_failure(matrix, mask, timing.rates[base], np.repeat(rows[first], len(horizons)),
                            times[first].reshape(-1), DEFAULT_TOL)
    return p.reshape(len(pairs), -1)[inverse.reshape(-1)], bound


def silence_of(silence_fails, time_kind: str, unit: float) -> float | None:
    """``silence_fails`` in time units (None: off)."""
    if silence_fails is None:
        return None
    try:
        width = parse_max_gap(silence_fails, time_kind)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("max_gap", "silence_fails")) from exc
    return float(width) * unit
