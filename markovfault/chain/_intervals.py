"""Posterior intervals of the chain's forecasts: the draws of :mod:`markovfault._posterior` pushed through
the closed forms, for either chain of :mod:`markovfault.chain` (both answer ``posterior_draws``,
``draw_matrix``, ``floats_per_draw`` and ``is_failure_``)."""

from __future__ import annotations

import numpy as np

from .._posterior import (DEFAULT_DRAWS, Bounds, bounds_of, check_draws, check_interval, draw_chunks,
                          rng_of)
from .._recursion import check_horizon, hitting_probabilities, scenario_hitting_probabilities

__all__ = ["scenario_codes", "failure_table", "chain_forecast", "failure_draws", "failure_bounds", "steps_bounds"]


def scenario_codes(chain, scenario, horizon) -> np.ndarray:
    """Event codes of the first ``horizon`` events of a what-if ``scenario`` (names, or one
    comma-separated string), -1 for events never seen (with a warning)."""
    if isinstance(scenario, str):
        scenario = [s.strip() for s in scenario.split(",") if s.strip()]
    scenario = list(scenario)
    horizon = len(scenario) if horizon is None else check_horizon(horizon)
    if horizon > len(scenario):
        raise ValueError(
            f"horizon = {horizon} exceeds the scenario's {len(scenario)} events; "
            "give at least as many events as steps."
        )
    return chain.base_.event_codes(scenario[:horizon])



def failure_table(chain, horizon: int, codes: np.ndarray | None = None, event_probs=None) -> np.ndarray:
    """The fitted chain's P(fail within h) of every chain state (n_states, horizon): the marginal chain
    (under ``event_probs``, if given), or the scenario of event ``codes`` (-1: an event never seen)."""
    if codes is None:
        return hitting_probabilities(chain.transition_matrix(event_probs), chain.is_failure_,
                                     check_horizon(horizon))
    mats = {c: chain.event_matrix(c) for c in set(np.asarray(codes).tolist())}
    return scenario_hitting_probabilities([mats[c] for c in np.asarray(codes).tolist()], chain.is_failure_)


def chain_forecast(chain, horizon: int, scenario=None, event_probs=None, interval: float | None = None,
                   n_draws: int = DEFAULT_DRAWS, random_state=None):
    """``failure_probabilities`` of either chain: the table of every chain state, or with ``interval`` its
    :class:`~markovfault._posterior.Bounds`; the scenario's event names resolved once."""
    codes = None if scenario is None else scenario_codes(chain, scenario, horizon)
    table = failure_table(chain, horizon, codes, event_probs)
    if interval is None:
        return table
    return failure_bounds(chain, table, codes, event_probs, interval, n_draws, random_state)


def failure_draws(chain, horizon: int, codes: np.ndarray | None = None, event_probs=None,
                  n_draws: int = DEFAULT_DRAWS, random_state=None, rows: np.ndarray | None = None) -> np.ndarray:
    """Posterior draws of P(fail within h), h = 1..horizon: (n_draws, n_rows, horizon).

    ``codes`` are the event codes of a what-if scenario (one per step, -1 for an event never seen; its
    length is the horizon), ``event_probs`` given arrival probabilities of the marginal chain (not
    drawn), ``rows`` the chain states wanted (default: all). Draws are made in chunks
    (:func:`~markovfault._posterior.draw_chunks`); each chunk's recursion is one batched product per
    step over all its draws.
    """
    rng = rng_of(random_state)
    mask = np.asarray(chain.is_failure_, dtype=bool)
    A = len(mask)
    parts = []
    for n in draw_chunks(check_draws(n_draws), chain.floats_per_draw()):
        draws = chain.posterior_draws(n, rng)
        fail = np.tile(mask, n)
        if codes is None:
            table = hitting_probabilities(chain.draw_matrix(draws, event_probs), fail, horizon)
        else:
            mats = {c: chain.draw_matrix(draws, event=c) for c in set(np.asarray(codes).tolist())}
            table = scenario_hitting_probabilities([mats[c] for c in np.asarray(codes).tolist()], fail)
        table = table.reshape(n, A, -1)
        parts.append(table if rows is None else table[:, rows])
    return np.concatenate(parts)


def failure_bounds(chain, table: np.ndarray, codes=None, event_probs=None, interval: float = 0.9,
                   n_draws: int = DEFAULT_DRAWS, random_state=None, rows: np.ndarray | None = None) -> Bounds:
    """``table`` (the fitted chain's P(fail within h) of every chain state) with its posterior bounds, at
    the ``rows`` wanted (default: all)."""
    interval = check_interval(interval)
    draws = failure_draws(chain, table.shape[1], codes, event_probs, n_draws, random_state, rows)
    lo, hi = bounds_of(draws, interval)
    return Bounds(table if rows is None else table[rows], lo, hi)


def steps_bounds(chain, steps: np.ndarray, interval: float = 0.9, n_draws: int = DEFAULT_DRAWS,
                 random_state=None) -> Bounds:
    """Expected steps to failure of a plain chain (``steps``, the fitted chain's) with posterior bounds.

    For every draw of the marginal chain, ``(I - T_NN) m = 1`` on the non-failure states ``N`` from which
    the fitted chain fails for certain (batched over draws), and ``m_F = 1 + T_FN m_N`` on the failure
    states; states with infinite ``steps`` keep infinite bounds.
    """
    interval = check_interval(interval)
    rng = rng_of(random_state)
    mask = np.asarray(chain.is_failure_, dtype=bool)
    finite = np.isfinite(steps)
    good, fail = ~mask & finite, mask & finite
    k = int(good.sum())
    parts = []
    for n in draw_chunks(check_draws(n_draws), chain.floats_per_draw()):
        T = chain.draw_matrix(chain.posterior_draws(n, rng)).matrices
        m = np.full((n, len(mask)), np.inf)
        inner = np.eye(k)[None] - T[:, good][:, :, good]
        mg = np.linalg.solve(inner, np.ones((n, k, 1)))[..., 0] if k else np.zeros((n, 0))
        m[:, good] = mg
        m[:, fail] = 1.0 + np.einsum("dfj,dj->df", T[:, fail][:, :, good], mg)
        parts.append(m)
    lo, hi = bounds_of(np.concatenate(parts), interval)
    return Bounds(steps, np.where(finite, lo, np.inf), np.where(finite, hi, np.inf))
