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

``recent_strength="auto"`` is chosen from the training data (:func:`choose_recent_strength`): the arrivals
of each base state are counted in time bins (:class:`ArrivalBins`: at most :data:`MAX_BINS` bins of a
power-of-two width, aligned to multiples of it, so that counts of batches, partitions and later data add up
exactly), and the strength is the one under which the arrivals of every window of every width of the bins'
dyadic ladder (the bins, pairs of them, fours, ... down to two windows) are most likely
(:func:`markovfault._priors.recent_strength_from_windows`). One strength serves every ``recent_window``:
the evidence separates the noise of few arrivals (which the window's width sets) from how far states
stray from the shifted long-run mix (which the strength measures), so a process whose states stray for
longer than the windows compared has one strength at every width.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from ._priors import (AUTO, DEFAULT_RECENT_STRENGTH, check_prior, recent_strength_from_windows,
                      shift_event_probs)
from ._timecodec import parse_max_gap
from .exceptions import ConfigError

__all__ = ["LONG_RUN", "RECENT", "DEFAULT_RECENT_STRENGTH", "mix_name", "check_event_mix",
           "check_event_mixes", "event_probs_for", "given_event_probs", "mix_event_probs",
           "shift_event_probs", "recent_arrivals", "MAX_BINS", "ArrivalBins", "arrival_bins", "merge_bins",
           "relayout_bins", "window_ladder", "choose_recent_strength", "recent_strength_for"]

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


#: The most time bins :class:`ArrivalBins` keeps (the width doubles when more would be occupied).
MAX_BINS = 256


class ArrivalBins(NamedTuple):
    """Arrivals of each base state by time bin: what ``recent_strength="auto"`` is chosen from.

    Bin ``b`` holds the times ``ids[b] * width <= t < (ids[b] + 1) * width`` (time units: UTC ns or
    integers); ``counts[b, s, e]`` events ``e`` arrived there in base state ``s``. Only bins with
    arrivals are kept, at most :data:`MAX_BINS`, with the smallest power-of-two width that allows it:
    the bins of a union of batches are exactly the merged bins of the batches (:func:`merge_bins`).
    """

    width: int
    ids: np.ndarray  # (n_bins,) int64, ascending
    counts: np.ndarray  # (n_bins, S, E) int64


def _collapse(width: int, ids: np.ndarray, counts: np.ndarray) -> ArrivalBins:
    """Bins with equal ids summed, empty bins dropped, the width doubled until at most MAX_BINS remain."""
    while True:
        uniq, inverse = np.unique(ids, return_inverse=True)
        summed = np.zeros((len(uniq),) + counts.shape[1:], dtype=np.int64)
        np.add.at(summed, inverse.ravel(), counts)
        keep = summed.reshape(len(uniq), -1).any(axis=1)
        ids, counts = uniq[keep], summed[keep]
        if len(ids) <= MAX_BINS:
            return ArrivalBins(int(width), ids.astype(np.int64), counts)
        ids, width = ids >> 1, width * 2  # floor division by 2, also for times before the epoch


def arrival_bins(state: np.ndarray, event: np.ndarray, time: np.ndarray, is_start: np.ndarray,
                 n_states: int, n_events: int, lo=None, hi=None) -> ArrivalBins:
    """The arrivals of steps with ``lo <= time < hi`` (all by default) by time bin, as :class:`ArrivalBins`.

    An arrival is a step that is not a run start: event ``event[n]`` arrived in state ``state[n - 1]``
    at ``time[n]`` (as :func:`recent_arrivals` counts them).

    Examples
    --------
    >>> b = arrival_bins(np.array([0, 1, 0, 0]), np.array([0, 1, 0, 1]), np.array([0, 1, 2, 3]),
    ...                  np.array([True, False, False, False]), 2, 2)
    >>> b.width, b.ids.tolist(), b.counts[:, 0].tolist()  # one bin per time unit
    (1, [1, 2, 3], [[0, 1], [0, 0], [0, 1]])
    """
    ok = ~np.asarray(is_start, dtype=bool) & (np.asarray(event) < n_events)
    if lo is not None:
        ok &= time >= lo
    if hi is not None:
        ok &= time < hi
    prev = np.r_[0, state[:-1]]
    t = np.asarray(time, dtype=np.int64)[ok]
    cell = prev[ok] * n_events + np.asarray(event)[ok]
    if not len(t):
        return ArrivalBins(1, np.zeros(0, np.int64), np.zeros((0, n_states, n_events), np.int64))
    # the smallest power-of-two width with at most MAX_BINS occupied bins: from one that spans the
    # times in MAX_BINS widths, up while too many bins are occupied, down while few enough still are
    span = int(t.max()) - int(t.min()) + 1
    width = 1 << max(0, int(np.ceil(np.log2(span / MAX_BINS))))
    occupied = np.unique(t // width)
    while occupied.size > MAX_BINS:  # (at most once or twice: the width spans the times already)
        occupied, width = np.unique(occupied >> 1), width * 2
    while width > 1 and np.unique(t // (width // 2)).size <= MAX_BINS:  # times with long gaps
        width //= 2
    ids = t // width
    uniq, inverse = np.unique(ids, return_inverse=True)
    counts = np.bincount(inverse.ravel() * (n_states * n_events) + cell,
                         minlength=len(uniq) * n_states * n_events)
    return ArrivalBins(int(width), uniq.astype(np.int64),
                       counts.reshape(len(uniq), n_states, n_events).astype(np.int64))


def _at_width(bins: ArrivalBins, width: int) -> tuple[np.ndarray, np.ndarray]:
    shift = int(width).bit_length() - int(bins.width).bit_length()
    return bins.ids >> shift, bins.counts


def merge_bins(a: ArrivalBins, b: ArrivalBins, sign: int = 1) -> ArrivalBins:
    """``a + sign * b`` on the coarser of the two widths (and coarser still if more than
    :data:`MAX_BINS` bins would be occupied). Both must have the same (S, E) layout.

    Examples
    --------
    >>> one = ArrivalBins(1, np.array([0, 3]), np.ones((2, 1, 1), np.int64))
    >>> two = ArrivalBins(2, np.array([1]), np.full((1, 1, 1), 5))
    >>> m = merge_bins(one, two)
    >>> m.width, m.ids.tolist(), m.counts.ravel().tolist()  # time 3 falls in [2, 4), bin 1 of width 2
    (2, [0, 1], [1, 6])
    """
    width = max(a.width, b.width)
    ia, ca = _at_width(a, width)
    ib, cb = _at_width(b, width)
    return _collapse(width, np.r_[ia, ib], np.concatenate([ca, sign * cb]))


def relayout_bins(bins: ArrivalBins, old_events, new_events) -> ArrivalBins:
    """``bins`` with the event axis re-indexed from ``old_events`` to ``new_events`` (by name; every old
    event must be among the new ones)."""
    old_events, new_events = [str(e) for e in old_events], [str(e) for e in new_events]
    if old_events == new_events:
        return bins
    pos = {e: k for k, e in enumerate(new_events)}
    out = np.zeros(bins.counts.shape[:2] + (len(new_events),), dtype=np.int64)
    out[:, :, [pos[e] for e in old_events]] = bins.counts
    return ArrivalBins(bins.width, bins.ids, out)


def window_ladder(bins: ArrivalBins) -> np.ndarray:
    """The arrivals (W, S, E) of every window of the bins' dyadic ladder: each bin, each pair of bins
    (ids // 2), each four, ..., as long as at least two windows hold arrivals (a level that merges no
    window repeats the one before and is skipped: two bins either side of a multiple of a large power
    of two stay apart for many levels).

    Examples
    --------
    >>> b = ArrivalBins(1, np.array([0, 1, 3]), np.array([1, 2, 4]).reshape(3, 1, 1))
    >>> window_ladder(b).ravel().tolist()  # the bins; then [0, 2) and [2, 4)
    [1, 2, 4, 3, 4]
    """
    levels, ids, previous = [], bins.ids, -1
    for _ in range(64):  # 63 halvings take any int64 id to 0 (or -1 before time 0)
        uniq, inverse = np.unique(ids, return_inverse=True)
        if len(uniq) < 2:
            break
        if len(uniq) != previous:
            summed = np.zeros((len(uniq),) + bins.counts.shape[1:], dtype=np.int64)
            np.add.at(summed, inverse.ravel(), bins.counts)
            levels.append(summed)
        previous, ids = len(uniq), ids >> 1
    if not levels:
        return np.zeros((0,) + bins.counts.shape[1:], dtype=np.int64)
    return np.concatenate(levels)


def choose_recent_strength(bins: ArrivalBins, base_event_probs: np.ndarray) -> float:
    """``recent_strength="auto"``: the strength under which the windows of :func:`window_ladder` are most
    likely (:func:`markovfault._priors.recent_strength_from_windows`), against the long-run mix
    ``base_event_probs`` (S, E) of the base chain (the bins' layout). With fewer than two windows holding
    arrivals there is nothing to learn from, and the default (:data:`DEFAULT_RECENT_STRENGTH`) is used."""
    chosen = recent_strength_from_windows(window_ladder(bins), base_event_probs)
    if chosen is None:
        logger.info("recent_strength='auto': fewer than two time windows hold arrivals; "
                    "the default %s is used", DEFAULT_RECENT_STRENGTH)
        return float(DEFAULT_RECENT_STRENGTH)
    return float(chosen)


def recent_strength_for(setting, base_chain, traj=None, lo=None, hi=None) -> float:
    """The ``recent_strength`` a forecast of a chain uses: a number as given; :data:`AUTO` chosen from the
    arrivals of ``traj`` (trajectories on the base chain's states and events) with ``lo <= time < hi``
    (a backtest fold's training window)."""
    if not (isinstance(setting, str) and setting == AUTO):
        return check_prior("recent_strength", setting)
    bins = arrival_bins(traj.state, traj.event, traj.time, traj.is_run_start(), base_chain.n_states_,
                        base_chain.n_events_, lo, hi)
    return choose_recent_strength(bins, base_chain.event_probs_)
