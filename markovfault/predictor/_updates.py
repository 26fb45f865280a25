"""Counting histories into a predictor's chain (internal API): the first fit, later batches, streams.

Every path ends in the chain interface (:mod:`markovfault.chain`): ``chain.count(traj)`` gives the counts of a
batch on its own vocabularies, ``chain.add_counts`` merges them and ``chain.fit_from_counts`` estimates. Each
entity's remembered last steps (``last_seen_``) are put before its new steps, so the transition into its first
new step is counted and history-aware states know their history; the transitions among those carried steps
were counted already and are subtracted. With ``recent_strength="auto"`` the arrivals by time bin
(:class:`~markovfault._eventmix.ArrivalBins`) are kept and merged the same way, and the strength is chosen
again from them after every batch.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .._eventmix import arrival_bins, choose_recent_strength, merge_bins, relayout_bins
from .._priors import AUTO, check_prior_setting
from .._timecodec import parse_max_gap, time_kind_of
from ..chain import make_chain
from ..exceptions import ConfigError, HistoryError
from ..histories._read import iter_frames
from ..states._history import resolve_gap_edges
from ..trajectories import Trajectories, encode_frame, mark_ends, run_starts_of
from ._groups import (check_groups_kept, check_in_order, contexts_of, group_spec, new_failures, remember,
                      with_memory)
from ._settings import check_failure_states, column_map_of, history_spec_of, is_canonical, new_extractor
from ._time import add_sojourns, check_time_settings, forget_time, sojourns_of
from ._tails import Tails, last_steps, older_error, prepend_tail, sorted_batch, warn_late

__all__ = ["fit_frame", "fit_stream", "add_frame", "add_codes", "add_frames", "encode_with", "install_fit",
           "check_priors", "recent_bins_of", "set_recent", "batch_bins", "merge_recent", "add_recent",
           "with_ends"]

logger = logging.getLogger("markovfault.predictor")


def encode_with(model, frame: pd.DataFrame, codes: np.ndarray, event_names=None) -> Trajectories:
    """``frame`` and its state codes encoded with the fitted extractor's states and ``model.max_gap``."""
    extractor = model.states_
    return encode_frame(frame, codes, extractor.state_names_, extractor.is_failure_, event_names,
                        model.max_gap)


def with_ends(traj: Trajectories, extractor, data_end: int | None = None) -> Trajectories:
    """``traj`` with the extractor's end states marked and, with ``end_after``, an end step after
    every history that stopped at least that long before ``data_end`` (default: its last time)."""
    after = getattr(extractor, "end_after", None)
    try:
        width = None if after is None else parse_max_gap(after, traj.time_kind)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("max_gap", "end_after")) from exc
    if width is not None:
        logger.debug("histories silent for %s before the data end have ended", after)
    return mark_ends(traj, extractor.is_end_, width, data_end)


def install_fit(model, extractor, chain, time_kind: str, report, last_seen: pd.DataFrame,
                recent_bins=None, group_failures: pd.DataFrame | None = None, sojourns=None) -> None:
    """Set a predictor's fitted attributes (every fit path ends here); ``recent_bins``: the arrival bins
    ``recent_strength="auto"`` is chosen from (see :func:`set_recent`); ``group_failures``: the failures
    the group context remembers (:mod:`markovfault.predictor._groups`), None without one; ``sojourns``: the
    sojourn times counted (:mod:`markovfault.predictor._time`)."""
    model.states_ = extractor
    model.chain_ = chain
    model.time_kind_ = time_kind
    model.read_report_ = report
    model.last_seen_ = last_seen
    model.group_failures_ = group_failures
    model.sojourn_counts_ = sojourns
    forget_time(model)
    set_recent(model, recent_bins)


def check_priors(model) -> None:
    """A predictor's priors, each a number >= 0 or "auto" (:class:`ConfigError` otherwise), before any work."""
    for name in ("alpha", "beta", "recent_strength"):
        check_prior_setting(name, getattr(model, name))


def _bins_of(traj: Trajectories):
    return arrival_bins(traj.state, traj.event, traj.time, traj.is_run_start(), traj.n_states,
                        traj.n_events)


def recent_bins_of(model, traj: Trajectories, events):
    """The arrival bins of ``traj`` on the events ``events`` when ``recent_strength="auto"`` (else None)."""
    if check_prior_setting("recent_strength", model.recent_strength) != AUTO:
        return None
    return relayout_bins(_bins_of(traj), traj.event_names, events)


def set_recent(model, bins) -> None:
    """``recent_strength_`` of a fitted model: the given number, or with ``"auto"`` chosen from the arrival
    bins ``bins`` (kept as ``recent_bins_`` and merged with later batches; on the chain's base events)."""
    setting = check_prior_setting("recent_strength", model.recent_strength)
    if setting != AUTO:
        model.recent_strength_, model.recent_bins_ = setting, None
        return
    if bins is None:
        raise ValueError("recent_strength='auto' needs the arrival bins of the training histories")
    model.recent_bins_ = bins
    model.recent_strength_ = choose_recent_strength(bins, model.chain_.base_.event_probs_)


def batch_bins(model, traj: Trajectories, tail: Trajectories | None):
    """The arrival bins of a batch (``traj`` less its carried ``tail``, on ``traj``'s events) when the model
    keeps them (``recent_strength="auto"``), else None."""
    if getattr(model, "recent_bins_", None) is None:
        return None
    new = _bins_of(traj)
    if tail is not None:  # the arrivals among the carried tail rows were counted already
        new = merge_bins(new, _bins_of(tail), sign=-1)
    return new


def merge_recent(model, old_events, new, new_events, choose: bool = True) -> None:
    """Merge a batch's arrival bins ``new`` (on ``new_events``) into ``recent_bins_`` (on ``old_events``, the
    chain's events before the batch) and choose ``recent_strength_`` again (unless ``choose`` is False: a
    stream chooses once, after its last batch); nothing when ``new`` is None."""
    if new is None or getattr(model, "recent_bins_", None) is None:
        return
    events = model.chain_.base_.event_names_
    bins = merge_bins(relayout_bins(model.recent_bins_, old_events, events),
                      relayout_bins(new, new_events, events))
    if choose:
        set_recent(model, bins)
    else:
        model.recent_bins_ = bins


def add_recent(model, old_events, traj: Trajectories, tail: Trajectories | None,
               choose: bool = True) -> None:
    """:func:`merge_recent` of the batch ``traj`` (less its carried ``tail``)."""
    merge_recent(model, old_events, batch_bins(model, traj, tail), traj.event_names, choose)


def fit_frame(model, frame: pd.DataFrame, report) -> None:
    """Fit the extractor and the chain on one canonical frame."""
    check_priors(model)
    check_time_settings(model)
    extractor = new_extractor(model.states)
    codes = extractor.fit_transform(frame)
    check_failure_states(extractor)
    parse_max_gap(model.max_gap, time_kind_of(frame))
    traj = encode_frame(frame, codes, extractor.state_names_, extractor.is_failure_, None, model.max_gap)
    traj = with_ends(traj, extractor)
    # the gap bins' edges (if chosen from the data) from the training histories, kept on chain_.spec
    spec = resolve_gap_edges(history_spec_of(model.history), traj)
    chain = make_chain(spec, alpha=model.alpha, beta=model.beta)
    chain.fit_from_counts(chain.count(traj), traj.state_names, traj.event_names, traj.is_failure,
                          warn=True, is_end=traj.is_end)
    spec = chain.spec if chain.spec is not None and chain.spec.has_group else None
    last_seen = last_steps(traj, chain.tail_length, contexts=contexts_of(spec, traj))
    install_fit(model, extractor, chain, traj.time_kind, report, last_seen,
                recent_bins_of(model, traj, chain.base_.event_names_),
                remember(spec, traj.time_kind, [new_failures(spec, traj)], last_seen),
                sojourns_of(model, traj, extractor))
    logger.info("fitted on %d transitions of %d entities (%d states, %d events)",
                chain.n_transitions_, traj.n_entities, traj.n_states, traj.n_events)


def no_end_after(extractor, what: str) -> None:
    """A :class:`ConfigError` for ``what`` (a batch-wise path) when histories end by silence: whether
    one stopped is only known with all of it."""
    if getattr(extractor, "end_after", None) is not None:
        raise ConfigError(
            f"{what} cannot use end_after (a history that stops for end_after has ended): whether a "
            "history stopped is only known with all of it. Fit on the whole history, or mark ends "
            "by status ([states] end).")


def add_frame(model, frame: pd.DataFrame, codes: np.ndarray, warn: bool, stream: bool) -> None:
    """Count one batch into a fitted model: on integer codes when ``frame`` is a canonical batch of the
    model's time kind (the usual case), else the general way through a frame of tails and batch."""
    no_end_after(model.states_, "partial_fit")
    tails = Tails.from_frame(model.last_seen_, model.chain_.tail_length)
    if tails is not None and add_codes(model, frame, codes, tails, warn, stream):
        model.last_seen_ = tails.to_frame()
    else:
        add_frames(model, frame, codes, warn, stream)


def fit_stream(model, histories, chunksize: int):
    """``fit(histories, chunksize=N)``: fit on the first batch, then add the others with each entity's last
    steps carried across batch boundaries (as integer arrays between batches)."""
    no_end_after(new_extractor(model.states), "fit(chunksize=...)")
    if is_canonical(histories):
        n = len(histories)
        batches = ((histories.iloc[k:k + chunksize], None) for k in range(0, n, chunksize))
    else:
        batches = iter_frames(histories, chunksize, column_map_of(model.columns), categorical=True)
    total = None
    tails = None  # the remembered last steps, as codes between batches
    try:
        for frame, report in batches:
            if not len(frame):
                continue
            if total is None:
                model.fit(frame)
                total = model.read_report_ if report is None else report
                tails = Tails.from_frame(model.last_seen_, model.chain_.tail_length)
                continue
            codes = model.states_.transform(frame)
            if tails is None or not add_codes(model, frame, codes, tails, warn=False, stream=True):
                if tails is not None:
                    model.last_seen_ = tails.to_frame()
                add_frames(model, frame, codes, warn=False, stream=True)
                tails = Tails.from_frame(model.last_seen_, model.chain_.tail_length)
            if report is not None:
                _add_report(total, report)
    finally:
        if tails is not None:
            model.last_seen_ = tails.to_frame()
    if total is None:
        raise HistoryError("the histories hold no usable row to fit on")
    if getattr(model, "recent_bins_", None) is not None:  # chosen once, from every batch's arrivals
        set_recent(model, model.recent_bins_)
    total.n_entities = int(model.last_seen_.index.nunique())
    model.read_report_ = total
    return model


def _add_report(total, report) -> None:
    for key in ("n_sources", "n_rows_read", "n_rows_kept"):
        setattr(total, key, getattr(total, key) + getattr(report, key))
    for name in ("dropped", "filled"):
        for k, v in getattr(report, name).items():
            getattr(total, name)[k] = getattr(total, name).get(k, 0) + v
    total.per_source = total.per_source + report.per_source


def add_frames(model, frame, codes, warn: bool, stream: bool) -> None:
    """Count one batch the general way: the remembered tails prepended as rows of a frame, encoded with it
    (any frame; see :func:`add_codes` for the usual one)."""
    chain = model.chain_
    spec = group_spec(model)
    if spec is not None and "group" in frame.columns:  # before anything is counted
        check_groups_kept(model.last_seen_, frame["entity"].astype(str), frame["group"])
        check_in_order(model.last_seen_, model.time_kind_, frame, stream)
    both, both_codes, n_tail = prepend_tail(model.last_seen_, model.time_kind_, frame, codes, warn=warn,
                                            stream=stream)
    old_events = list(chain.base_.event_names_)
    traj = with_memory(model, encode_with(model, both, both_codes, old_events), supersede=False)
    new = chain.count(traj)
    tail = None
    if n_tail:  # the transitions among the carried tail rows were counted already
        tail = encode_with(model, both.iloc[:n_tail], both_codes[:n_tail], list(traj.event_names))
        new = new - chain.count(tail)
    model.chain_ = chain.add_counts(new, traj.event_names, warn=True)
    add_recent(model, old_events, traj, tail, choose=not stream)
    add_sojourns(model, traj, tail)
    model.last_seen_ = last_steps(traj, chain.tail_length, model.last_seen_, contexts_of(spec, traj))
    if spec is not None:
        model.group_failures_ = remember(spec, model.time_kind_, [model.group_failures_,
                                                                  new_failures(spec, traj)],
                                         model.last_seen_)


def add_codes(model, frame, codes, tails: Tails, warn: bool, stream: bool) -> bool:
    """Count one batch on integer codes: what :func:`add_frames` counts, without building a frame of
    tails and batch or a string per row.

    The batch's entities are found among the remembered ones (``tails``) by merging the two sorted name
    lists; each entity's carried tail rows go right before its own rows (the batch is sorted by (entity,
    time), and a carried tail is never later than the entity's first new step), so the trajectories are
    assembled by scattering codes. ``tails`` is updated in place. ``False`` (nothing changed) when ``frame``
    is not a canonical batch of the model's time kind: the caller then counts it with :func:`add_frames`.
    """
    chain = model.chain_
    batch = sorted_batch(frame, codes, len(model.states_.state_names_))
    if batch is None or batch.time_kind != model.time_kind_:
        return False
    vocab = [str(e) for e in chain.base_.event_names_]
    v_index = {e: k for k, e in enumerate(vocab)}
    if any(e not in v_index for e in tails.events):  # tails of events the model lacks
        return False
    for e in batch.ev_names:  # as encode_events: new events follow, sorted
        if e not in v_index:
            v_index[e] = len(vocab)
            vocab.append(e)
    gap = parse_max_gap(model.max_gap, batch.time_kind)
    names, starts, n = batch.names, batch.starts, len(batch.ent)
    row = tails.lookup(names)
    have = tails.count[row]
    first_time = batch.time[starts]
    last_time = tails.time[row, np.maximum(have - 1, 0)]
    if stream:  # fit(..., chunksize=N): ties keep read order; older rows are an error
        older = (have > 0) & (first_time < last_time)
        if older.any():
            raise older_error(names, older)
        late = older
    else:
        late = (have > 0) & (first_time <= last_time)
    if late.any() and warn:
        warn_late(names, late)
    carry = np.where(late, 0, have)
    ev_map = np.array([v_index[e] for e in batch.ev_names], dtype=np.int64)
    event = ev_map[batch.ev]
    length = np.diff(np.r_[starts, n]) + carry  # steps of each entity, tails included
    block = np.cumsum(length) - length  # where each entity's steps begin
    n_carry = int(carry.sum())
    if n_carry:
        total = n + n_carry
        at_batch = np.arange(n) + np.repeat(block + carry - starts, length - carry)
        k = np.repeat(np.arange(len(names)), carry)
        r = np.arange(n_carry) - np.repeat(np.cumsum(carry) - carry, carry)
        at_tail = block[k] + r
        entity = np.repeat(np.arange(len(names), dtype=np.int64), length)
        t2v = np.array([v_index[e] for e in tails.events], dtype=np.int64)
        arrays = []
        for new, old in ((batch.time, tails.time[row[k], r]),
                         (event, t2v[tails.event[row[k], r]]),
                         (batch.state, tails.state[row[k], r]),
                         (batch.row, -1)):
            a = np.empty(total, dtype=np.int64)
            a[at_batch] = new
            a[at_tail] = old
            arrays.append(a)
        time, event, state, source_row = arrays
    else:
        entity, time, state, source_row = batch.ent, batch.time, batch.state, batch.row
    traj = Trajectories(
        entity=entity, time=time, event=event, state=state,
        run_starts=run_starts_of(entity, time, gap),
        state_names=tuple(str(s) for s in model.states_.state_names_),
        event_names=tuple(vocab), entity_names=tuple(names.tolist()),
        is_failure=np.asarray(model.states_.is_failure_, dtype=bool).copy(),
        time_kind=batch.time_kind, source_row=source_row,
    )
    new = chain.count(traj)
    tail = None
    if n_carry:  # the transitions among the carried tail rows were counted already
        tail = Trajectories(
            entity=entity[at_tail], time=time[at_tail], event=event[at_tail],
            state=state[at_tail], run_starts=run_starts_of(entity[at_tail], time[at_tail], gap),
            state_names=traj.state_names, event_names=traj.event_names,
            entity_names=traj.entity_names, is_failure=traj.is_failure,
            time_kind=traj.time_kind, source_row=source_row[at_tail])
        new = new - chain.count(tail)
    old_events = list(chain.base_.event_names_)
    model.chain_ = chain.add_counts(new, vocab, warn=True)
    add_recent(model, old_events, traj, tail, choose=not stream)
    add_sojourns(model, traj, tail)
    # each entity's last steps (tails included) replace what was remembered
    t_index = {e: k for k, e in enumerate(tails.events)}
    for e in vocab:
        if e not in t_index:
            t_index[e] = len(tails.events)
            tails.events.append(e)
    v2t = np.array([t_index[e] for e in vocab], dtype=np.int64)
    keep = np.minimum(length, chain.tail_length)
    k = np.repeat(row, keep)
    r = np.arange(int(keep.sum())) - np.repeat(np.cumsum(keep) - keep, keep)
    src = np.repeat(block + length - keep, keep) + r
    tails.time[k, r] = time[src]
    tails.event[k, r] = v2t[event[src]]
    tails.state[k, r] = state[src]
    tails.count[row] = keep
    return True
