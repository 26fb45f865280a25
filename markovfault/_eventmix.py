"""The expected event mix of a forecast (internal API): one resolver for predict, backtest and Dask.

A forecast without a what-if scenario assumes the coming events follow some mix. What a user may ask for:

- ``"long_run"`` (or ``None``): the fitted arrival probabilities ``Q[a, e]``;
- ``"recent"``: each state's fitted mix shifted toward the events that arrived during the trailing
  ``recent_window`` (a duration for timestamps, a number of time units for integer time; required);
- ``{event: share}``: the given shares in every state (events the model does not know are an error).

:func:`check_event_mix` validates a mix once, with one set of errors (:class:`ConfigError`) whoever asks;
:func:`event_probs_for` turns a checked mix into arrival probabilities for a fitted chain. The recent mix is
estimated with ``recent_strength`` pseudo-counts (a prior, like ``alpha``/``beta``; see
:mod:`markovfault._priors`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from ._priors import DEFAULT_RECENT_STRENGTH, check_prior, shift_event_probs
from ._timecodec import parse_max_gap
from .exceptions import ConfigError

__all__ = ["LONG_RUN", "RECENT", "DEFAULT_RECENT_STRENGTH", "mix_name", "check_event_mix",
           "check_event_mixes", "event_probs_for", "given_event_probs", "mix_event_probs",
           "shift_event_probs", "recent_arrivals"]

logger = logging.getLogger("markovfault.eventmix")

LONG_RUN, RECENT = "long_run", "recent"
_USE = "use 'long_run', 'recent' (with recent_window) or {event: share}"


def mix_name(mix, model: str = "markov") -> str:
    """The model name a backtest reports for a mix: ``markov``, ``markov_recent``, ``markov_mix``."""
    if mix is None or (isinstance(mix, str) and mix == LONG_RUN):
        return model
    if isinstance(mix, str):
        return f"{model}_{mix}"
    return f"{model}_mix"


def check_event_mix(mix, event_names, time_kind: str | None = None, recent_window=None):
    """A validated mix: ``None`` (long run), ``"recent"`` or a dict of shares over ``event_names``.

    Returns ``(mix, recent_width)`` with ``recent_width`` the window in time units (int) for ``"recent"``
    (``None`` when ``time_kind`` is not known yet; it is checked again once it is).

    Examples
    --------
    >>> check_event_mix({"b": 3, "a": 1}, ["a", "b"])
    ({'a': 0.25, 'b': 0.75}, None)
    >>> check_event_mix({"z": 1}, ["a", "b"])
    Traceback (most recent call last):
    ...
    markovfault.exceptions.ConfigError: event_mix names unknown events ['z']; the events are ['a', 'b']
    """
    names = [str(e) for e in event_names]
    if mix is None or (isinstance(mix, str) and mix == LONG_RUN):
        return None, None
    if isinstance(mix, str) and mix == RECENT:
        if recent_window is None:
            raise ConfigError("event_mix='recent' needs recent_window, the trailing window to take the mix "
                              "from: a duration such as \"1h\" for timestamps, a number of time units for "
                              "integer time.")
        width = parse_max_gap(recent_window, time_kind) if time_kind is not None else None
        return RECENT, width
    if isinstance(mix, Mapping):
        unknown = sorted(set(map(str, mix)) - set(names))
        if unknown:
            raise ConfigError(f"event_mix names unknown events {unknown}; the events are {names}")
        try:
            shares = np.array([float(mix.get(e, 0.0)) for e in names])
        except (TypeError, ValueError):
            raise ConfigError(f"event_mix shares must be numbers, got {dict(mix)!r}") from None
        if not np.isfinite(shares).all() or (shares < 0).any() or shares.sum() <= 0:
            raise ConfigError("event_mix shares must be finite, >= 0 and not all zero")
        shares = shares / shares.sum()
        return {e: float(s) for e, s in zip(names, shares)}, None
    raise ConfigError(f"event_mix = {mix!r}; {_USE}.")


def check_event_mixes(mixes, event_names, time_kind, recent_window):
    """A list of mixes (a backtest scores one model per mix): each checked, no kind twice."""
    mixes = [mixes] if mixes is None or isinstance(mixes, (str, Mapping)) else list(mixes)
    if not mixes:
        raise ConfigError("event_mix needs at least one mix")
    checked, width = [], None
    for m in mixes:
        mix, w = check_event_mix(m, event_names, time_kind, recent_window)
        checked.append(mix)
        width = w if w is not None else width
    if len({mix_name(m) for m in checked}) != len(checked):
        raise ConfigError("event_mix names one kind of mix twice")
    return checked, width


def given_event_probs(shares: Mapping, event_names, n_rows: int) -> np.ndarray:
    """Arrival probabilities (n_rows, E) with the given shares in every row."""
    row = np.array([shares[str(e)] for e in event_names], dtype=np.float64)
    return np.broadcast_to(row, (n_rows, len(row))).copy()


def event_probs_for(chain, mix, recent_counts=None, *, strength: float = DEFAULT_RECENT_STRENGTH,
                    warn: bool = False):
    """Arrival probabilities of ``chain`` (any chain of :mod:`markovfault.chain`) under a checked mix.

    ``None`` means the fitted ones. For ``"recent"``, ``recent_counts`` (S_base, E) are the arrivals in each
    base state during the window; an empty window leaves the fitted mix (with a warning when ``warn``).
    """
    if mix is None:
        return None
    if isinstance(mix, Mapping):
        return given_event_probs(mix, chain.base_.event_names_, chain.event_probs_.shape[0])
    counts = np.asarray(recent_counts, dtype=np.float64)
    if counts.sum() == 0:
        if warn:
            logger.warning("the recent window holds no transition; the long-run event mix is used")
        return None
    return shift_event_probs(chain.event_probs_, chain.base_state_, chain.base_.event_probs_, counts,
                             check_prior("recent_strength", strength))


def mix_event_probs(event_probs: np.ndarray, long_run: np.ndarray, recent: np.ndarray) -> np.ndarray:
    """Reweight each state's event-arrival row by how the event mix has shifted.

    ``Q'[i, e] ∝ Q[i, e] * recent[e] / long_run[e]``: with the long-run mix
    itself, ``Q' = Q``.

    Examples
    --------
    >>> Q = np.array([[0.5, 0.5], [0.9, 0.1]])
    >>> mix_event_probs(Q, np.array([0.7, 0.3]), np.array([0.7, 0.3])).tolist() == Q.tolist()
    True
    >>> mix_event_probs(Q, np.array([0.5, 0.5]), np.array([0.25, 0.75]))[0].tolist()
    [0.25, 0.75]
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(long_run > 0, recent / long_run, 0.0)
    w = event_probs * ratio[None, :]
    sums = w.sum(axis=1, keepdims=True)
    return np.where(sums > 0, w / np.where(sums > 0, sums, 1.0), event_probs)


def recent_arrivals(state: np.ndarray, event: np.ndarray, time: np.ndarray, is_start: np.ndarray,
                    n_states: int, n_events: int, lo, hi) -> np.ndarray:
    """Counts (S, E) of events arriving in each base state with ``lo <= time < hi``."""
    prev = np.r_[0, state[:-1]]
    ok = ~is_start & (time >= lo) & (time < hi) & (event < n_events)
    return np.bincount(prev[ok] * n_events + event[ok],
                       minlength=n_states * n_events).reshape(n_states, n_events)
