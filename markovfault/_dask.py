"""Dask back end: fit, partial_fit, forecast and backtest on a ``dask.dataframe.DataFrame``.

Imported only when a dask collection is passed (the core never imports dask).
Install with ``pip install "markovfault[dask]"``.

Design (exact: counts and forecasts equal the in-memory ones):

1. **Read order.** Every row gets its global read position (partition number,
   then position in the partition), so ties and ``event_id`` duplicates are
   resolved exactly as :func:`~markovfault.read_histories` does on the
   concatenated frame.
2. **Split entities: shuffle by entity.** Rows are shuffled on the entity
   (normalised as the reader does it: str, stripped), so all of an entity's
   rows sit in one partition: partition ``b`` holds the entities whose name
   hashes to bucket ``b`` (``set_index`` on the bucket with known
   divisions), so the client can route per-entity state to the right
   partition without asking. Each partition is then read and validated
   where it lies with :func:`~markovfault.read_histories`. With the group
   context (which counts the failures of the other members of a group) the
   rows are shuffled by group instead: every partition holds whole groups,
   and the client checks that no entity turns up in two of them.
3. **Global extractor fit.** The event vocabulary (sorted union) and the
   state extractor are fitted on the client from a small pass over the
   partitions: the distinct values of the extractor's columns for
   ``categorical`` and ``thresholds`` (their fit only depends on the set of
   values), the whole extractor columns for ``quantiles`` and ``clusters``
   (one float column per metric travels; put in the in-memory row order, so
   even k-means gives the same centres).
4. **Counts.** Each partition is encoded and counted with the numpy kernels;
   only the count tensors and each entity's last steps (the tail kept for
   ``partial_fit``/``predict``) travel back and are summed.
5. **partial_fit.** Each partition receives the remembered tails
   (``last_seen_``: a few steps per entity) of its own bucket's entities
   only, prepends them, applies the older-than-seen rule and counts there,
   on one event vocabulary (the model's events, then the new ones sorted,
   found in a first small pass). With the group context the tails go to the
   partition of their group, and the failures the model remembers of its
   groups (``group_failures_``, small) travel with the model. The count increments and the new tails
   travel back; the client merges them as the in-memory ``partial_fit``
   does, and logs the entities whose steps started a new run.
6. **Forecasts.** ``predict`` computes the forecast table once, forecasts each
   partition where it lies and collects the tidy pieces (small) to pandas.
   ``event_mix="recent"`` needs the trailing window of system-wide events:
   each partition sends its largest time; the client fixes the window; each
   partition then counts the arrivals in it by (state, event) and the (S, E)
   counts are summed.
7. **Backtest.** One counting pass per partition gives the fold counts (by
   time bin, cumulated), the training rates per (state, horizon) and each
   fold's origins with their outcomes (entity, position in the entity, time,
   state, history code, labels, steps to failure); the client sums the
   tensors, maps the origins to the global step numbers of the in-memory
   trajectory (from each entity's name and length) and scores as in memory.
   Integer ``cutoffs`` (quantiles of every step time) are found exactly by a
   few rounds of per-partition histograms of the sorted step times, then the
   few candidate times; the state extractor is fitted on the steps before the
   first cutoff as in 3. The ``recent`` mix adds one round of arrival counts
   per (fold, time slice).

What still collects, and why:

- the ``gradient_boosting`` baseline of ``backtest`` trains one classifier per
  fold on the features of every training step (lagged states and events,
  failures in a window), which needs the steps in one place: with it in
  ``baselines`` the *encoded* steps (entity, time, event and state codes, and
  run starts; not the frame) are collected to the client. The other
  baselines and the Markov models do not.
- ``quantiles`` and ``clusters`` states fit on the whole extractor columns
  (one float column per metric), as in 3.
- :func:`~markovfault.selection.select_states` collects the dask frame to
  pandas (``ddf.compute()``, :func:`compute_frame`): exact, but the histories
  must fit in the client's memory.
- Entity names and step counts (one per entity) travel for the backtest, to
  number the steps as the in-memory trajectory does.
"""

from __future__ import annotations

import logging
import uuid

import numpy as np
import pandas as pd

from ._eventmix import (RECENT, arrival_bins, check_event_mix, check_event_mixes, choose_recent_strength,
                        merge_bins, recent_strength_for)
from ._estimator import clone
from ._priors import AUTO, DEFAULT_RECENT_STRENGTH
from ._timecodec import parse_max_gap, time_int
from .backtest._backtest import cutoffs_from, resolve_window, transform_states
from .backtest._run import Run, recent_slices
from .chain import make_chain, merge_counts
from .exceptions import ConfigError, EmptyHistoryError, HistoryError, MissingColumnError, TimeParseError
from .histories import ReadReport
from .histories._read import read_frame
from .predictor._forecasts import forecast_table
from .predictor._groups import (check_groups_kept, check_in_order, contexts_of, group_spec, new_failures,
                                remember, with_memory)
from .predictor._output import forecast_frame
from .predictor._settings import (check_failure_states, column_map_of, history_spec_of, new_extractor,
                                  read_input)
from .predictor._tails import last_steps, merge_last_seen, prepend_tail
from .predictor._time import forget_time, sojourns_of
from .predictor._updates import batch_bins, encode_with, install_fit, merge_recent, recent_bins_of, with_ends
from .states import CategoricalStates, ThresholdStates
from .states._history import gap_counts, with_gap_edges
from .states._extractors import END_EVENT
from .trajectories import Trajectories, encode_frame, mark_ends

__all__ = ["is_dask_frame", "fit", "partial_fit", "predict", "backtest_run", "compute_frame",
           "read_paths"]

logger = logging.getLogger("markovfault.dask")

_POS = "_mf_pos"
_KEY = "_mf_key"
_BUCKET = "_mf_bucket"
_PART_SHIFT = 40  # up to 2**40 rows per partition


def is_dask_frame(obj) -> bool:
    """A dask DataFrame, detected without importing dask."""
    return (type(obj).__module__ or "").startswith("dask") and hasattr(obj, "map_partitions")


def _require():
    try:
        import dask  # noqa: F401
        import dask.dataframe  # noqa: F401
    except ImportError as exc:  # pragma: no cover - only without the extra
        raise ImportError('dask input needs the extra: pip install "markovfault[dask]"') from exc


# ------------------------------------------------------------ preparation
def _bucket_of(keys, n_buckets: int) -> np.ndarray:
    """The partition (0..n_buckets-1) an entity's rows are routed to, from its name."""
    keys = pd.Series(np.asarray(keys, dtype=object), dtype=object)
    if not len(keys):
        return np.zeros(0, dtype=np.int64)
    h = pd.util.hash_pandas_object(keys, index=False).to_numpy()
    return (h % np.uint64(max(n_buckets, 1))).astype(np.int64)


def _add_pos(df: pd.DataFrame, route: str, n_buckets: int = 1,
             partition_info=None) -> pd.DataFrame:
    from .histories._contract import as_str as _as_str  # the reader's own normalisation of the names

    number = 0 if partition_info is None else int(partition_info["number"])
    out = df.copy()
    out[_POS] = (np.int64(number) << _PART_SHIFT) + np.arange(len(df), dtype=np.int64)
    key = _as_str(df[route]).astype(object)
    out[_KEY] = key
    out[_BUCKET] = _bucket_of(key.to_numpy(), n_buckets)
    return out


def _shuffled(ddf, cmap, by_group: bool = False):
    """The frame shuffled by entity (``by_group``: by group), each row carrying its global read position.

    Partition ``b`` holds exactly the entities (groups) of bucket ``b`` (:func:`_bucket_of`), so
    the client can send each partition what it keeps per entity (the tails of
    ``partial_fit``) without asking which entities it holds. The group context counts the failures
    of the other members of a group: with it, every partition holds whole groups.
    """
    route, what = (cmap.group, "group") if by_group else (cmap.entity, "entity")
    if route is None or route not in ddf.columns:
        raise MissingColumnError(
            f"the {what} column {route!r} is missing; the columns are "
            f"{list(map(str, ddf.columns))} (set {what} in the [columns] table)")
    n = max(ddf.npartitions, 1)
    meta = _add_pos(ddf._meta, route, n)
    tagged = ddf.map_partitions(_add_pos, route, n, meta=meta)
    # known divisions 0, 1, ..., n: partition b receives the rows of bucket b
    return tagged.set_index(_BUCKET, divisions=list(range(n + 1)), sort=True)


def _read_part(df: pd.DataFrame, cmap, bucket: int | None = None):
    """Read and validate one partition (all rows of its entities), in read order."""
    if df is None or len(df) == 0:
        return None
    if bucket is not None and not (np.asarray(df.index) == bucket).all():
        raise RuntimeError(f"dask placed rows of other buckets in partition {bucket}")
    df = df.sort_values(_POS, kind="stable").drop(columns=[_POS, _KEY]).reset_index(drop=True)
    return read_frame(df, columns=cmap)


def _canonical_parts(ddf, cmap, by_group: bool = False):
    """Delayed (frame, report) per partition (partition b: the entities, or with ``by_group`` the
    groups, of bucket b), persisted where they lie."""
    import dask

    parts = _shuffled(ddf, cmap, by_group).to_delayed()
    read = [dask.delayed(_read_part)(p, cmap, b) for b, p in enumerate(parts)]
    return list(dask.persist(*read))


def _merge_reports(reports, n_partitions):
    reports = [r for r in reports if r is not None]
    dropped, filled, missing = {}, {}, {}
    for r in reports:
        for total, counts in ((dropped, r.dropped), (filled, r.filled), (missing, r.missing_metrics)):
            for k, v in counts.items():
                total[k] = total.get(k, 0) + int(v)
    kinds = {r.time_kind for r in reports if r.time_kind is not None}
    if len(kinds) > 1:
        raise TimeParseError(
            "partitions disagree on the kind of time (timestamps in some, integers in others); "
            "give the time column one type in every file")
    n_read = sum(r.n_rows_read for r in reports)
    return ReadReport(
        n_sources=1, n_rows_read=n_read, n_rows_kept=sum(r.n_rows_kept for r in reports),
        n_entities=sum(r.n_entities for r in reports), dropped=dropped, filled=filled,
        single_row_entities=sum(r.single_row_entities for r in reports),
        time_kind=kinds.pop() if kinds else None,
        per_source=[(f"<dask dataframe, {n_partitions} partitions>", n_read)], missing_metrics=missing)


# ------------------------------------------------------------------ fitting
def _summary(part, columns, distinct):
    """What the client needs from one partition: report, events, extractor input."""
    if part is None:
        return None
    frame, report = part
    events = sorted(set(frame["event"].astype(str))) if "event" in frame.columns else ["step"]
    cols = [c for c in columns if c in frame.columns]
    sub = frame[["entity"] + [c for c in cols if c != "entity"]]
    if distinct:
        sub = sub.drop_duplicates(subset=cols or None)
    return report, events, sub


def _count_part(part, chain, extractor, events, max_gap, model=None):
    """The counts of one partition (on the global event vocabulary), its entities' last steps, with
    ``recent_strength="auto"`` its arrival bins (they add up across partitions like the counts) and, with
    the group context, the failures it counts (the partitions hold whole groups)."""
    if part is None:
        return None
    frame, _ = part
    traj = encode_frame(frame, extractor.transform(frame), extractor.state_names_, extractor.is_failure_,
                        events, max_gap)
    traj = mark_ends(traj, extractor.is_end_)
    bins = None if model is None else recent_bins_of(model, traj, events)
    spec = _group_of(chain.spec)
    sojourns = None if model is None else sojourns_of(model, traj, extractor)
    return (chain.count(traj), last_steps(traj, chain.tail_length, contexts=contexts_of(spec, traj)), bins,
            new_failures(spec, traj), sojourns)


def _group_of(spec):
    """``spec`` when it carries the group context, else None."""
    return spec if spec is not None and spec.has_group else None


def _one_group_each(pieces: list) -> None:
    """The partitions of a run by group hold disjoint entities (``pieces``: the last steps of each),
    unless an entity is in two groups."""
    names = pd.Index(np.concatenate([p.index.unique().to_numpy(dtype=object) for p in pieces]))
    twice = names.duplicated()
    if twice.any():
        who = names[twice][0]
        groups = sorted({str(g) for p in pieces if who in p.index for g in p.loc[[who], "group"]})
        raise HistoryError(
            f"entity {who!r} is in more than one group ({', '.join(map(repr, groups))}): the group "
            "context counts the failures of an entity's group, so an entity must stay in one group. "
            "Fix: give each entity one group (or name the entity by its group, e.g. entity@group).")


def _gaps_part(part, extractor, events, max_gap, before=None, data_end=None):
    """The distinct gaps of one partition and their counts (:func:`gap_counts`; steps before ``before``)."""
    if part is None or not len(part[0]):
        return None
    frame, _ = part
    codes = extractor.transform(frame) if before is None else transform_states(extractor, frame)
    traj = encode_frame(frame, codes, extractor.state_names_, extractor.is_failure_, events, max_gap)
    return gap_counts(with_ends(traj, extractor, data_end), before)


def _resolved_gaps(spec, parts, extractor, events, max_gap, time_kind, before=None, data_end=None):
    """``spec`` with gap edges chosen from the gaps of every partition (one more pass over them, only for
    gap bins chosen from the data): the distinct gaps and their counts travel, summed on the client."""
    if spec is None or spec.is_resolved:
        return spec
    import dask

    pieces = [g for g in dask.compute(*[dask.delayed(_gaps_part)(p, extractor, events, max_gap, before,
                                                                 data_end)
                                        for p in parts]) if g is not None]
    values = np.concatenate([v for v, _ in pieces]) if pieces else np.zeros(0, dtype=np.int64)
    weights = np.concatenate([c for _, c in pieces]) if pieces else np.zeros(0, dtype=np.int64)
    distinct, inverse = np.unique(values, return_inverse=True)
    counts = np.bincount(inverse.reshape(-1), weights=weights, minlength=len(distinct)).astype(np.int64)
    return with_gap_edges(spec, distinct, counts, time_kind)


def _summed(pieces):
    """The sum of the partitions' sojourn counts (they add like the transition counts)."""
    pieces = [p for p in pieces if p is not None]
    if not pieces:
        return None
    total = pieces[0]
    for p in pieces[1:]:
        total = total + p
    return total


def _merged_bins(pieces):
    """The arrival bins of all partitions (None when none were counted)."""
    pieces = [b for b in pieces if b is not None]
    if not pieces:
        return None
    out = pieces[0]
    for b in pieces[1:]:
        out = merge_bins(out, b)
    return out


def _fit_extractor(extractor, pieces, columns, distinct: bool) -> None:
    """Fit the state extractor on the partitions' extractor columns (or their distinct
    values), put in the in-memory row order: entity, then (within each partition) time
    and read order."""
    fit_frame = pd.concat(pieces, ignore_index=True)
    if distinct:
        fit_frame = fit_frame.drop_duplicates(subset=[c for c in columns if c in fit_frame]
                                              or None)
    extractor.fit(fit_frame.sort_values("entity", kind="stable").reset_index(drop=True))


def _no_end_after(extractor) -> None:
    if getattr(extractor, "end_after", None) is not None:
        raise ConfigError(
            "end_after (histories that stop count as ended) needs every entity's last time and the "
            "data end in one place: it is not supported on a dask DataFrame; use end statuses "
            "([states] end), or compute() the frame first.")


def fit(model, ddf):
    """``FaultPredictor.fit`` on a dask DataFrame (see the module docstring)."""
    _require()
    import dask

    cmap = column_map_of(model.columns)
    spec = _group_of(history_spec_of(model.history))
    parts = _canonical_parts(ddf, cmap, by_group=spec is not None)
    extractor = new_extractor(model.states)
    _no_end_after(extractor)
    distinct = isinstance(extractor, (CategoricalStates, ThresholdStates))
    columns = list(extractor.required_columns)
    summaries = [s for s in dask.compute(*[dask.delayed(_summary)(p, columns, distinct)
                                           for p in parts]) if s is not None]
    if not summaries:
        raise EmptyHistoryError("the dask DataFrame holds no rows")
    report = _merge_reports([s[0] for s in summaries], ddf.npartitions)
    events = sorted(set().union(*[s[1] for s in summaries]))
    _fit_extractor(extractor, [s[2] for s in summaries], columns, distinct)
    check_failure_states(extractor)
    parse_max_gap(model.max_gap, report.time_kind or "integer")
    spec = _resolved_gaps(history_spec_of(model.history), parts, extractor, events, model.max_gap,
                          report.time_kind or "integer")
    chain = make_chain(spec, alpha=model.alpha, beta=model.beta)
    results = [r for r in dask.compute(*[
        dask.delayed(_count_part)(p, chain, extractor, events, model.max_gap, model)
        for p in parts]) if r is not None]
    if spec is not None:
        _one_group_each([r[1] for r in results])
    last_seen = pd.concat([r[1] for r in results]).sort_index(kind="stable")
    counts, _ = merge_counts([r[0] for r in results])
    chain.fit_from_counts(counts, extractor.state_names_, events, extractor.is_failure_, warn=True,
                          is_end=extractor.is_end_)
    install_fit(model, extractor, chain, report.time_kind, report, last_seen,
                _merged_bins([r[2] for r in results]),
                remember(spec, report.time_kind, [r[3] for r in results], last_seen),
                _summed([r[4] for r in results]))
    logger.info("fitted on %d transitions of %d entities over %d dask partitions",
                chain.n_transitions_, report.n_entities, ddf.npartitions)
    return model


# ------------------------------------------------------------- partial_fit
def _events_part(part):
    """The event labels of one partition (new ones extend the vocabulary globally)."""
    if part is None:
        return None
    frame, _ = part
    return set(frame["event"].astype(str)) if "event" in frame.columns else {"step"}


def _partial_part(part, model, tails, events):
    """``partial_fit`` of one partition: its entities' remembered tails prepended, the new
    counts (on the global event vocabulary ``events``) and the new tails."""
    if part is None:
        return None
    frame, report = part
    chain = model.chain_
    spec = group_spec(model)
    if spec is not None and "group" in frame.columns:  # the tails of this partition's groups
        check_in_order(tails, model.time_kind_, frame, stream=False)
    codes = model.states_.transform(frame)
    both, both_codes, n_tail = prepend_tail(tails, model.time_kind_, frame, codes, warn=False)
    # entities with a tail that prepend_tail did not carry: steps no later than the
    # last step already counted (they start a new run; the client logs them)
    present = pd.Index(pd.unique(frame["entity"].astype(str).to_numpy(dtype=object)))
    with_tail = present.intersection(pd.Index(tails.index.unique()))
    carried = pd.Index(pd.unique(both["entity"].iloc[:n_tail].astype(str).to_numpy(dtype=object)))
    late = with_tail.difference(carried)  # sorted
    traj = with_memory(model, encode_with(model, both, both_codes, events), supersede=False)
    counts = chain.count(traj)
    tail = None
    if n_tail:  # the transitions among the carried tail rows were counted already
        tail = encode_with(model, both.iloc[:n_tail], both_codes[:n_tail], events)
        counts = counts - chain.count(tail)
    sojourns = None
    if getattr(model, "sojourn_counts_", None) is not None:
        sojourns = sojourns_of(model, traj, model.states_)
        if tail is not None:
            sojourns = sojourns - sojourns_of(model, tail, model.states_)
    return (counts, last_steps(traj, chain.tail_length, contexts=contexts_of(spec, traj)), report,
            len(late), list(late[:3]), batch_bins(model, traj, tail), new_failures(spec, traj), sojourns)


def _split_by_bucket(frame: pd.DataFrame, n_buckets: int, by_group: bool = False) -> list:
    """Rows of an entity-indexed frame per bucket of their entity (``by_group``: of their group; each
    keeps its order)."""
    keys = frame["group"] if by_group else frame.index
    bucket = _bucket_of(keys.to_numpy(dtype=object), n_buckets)
    order = np.argsort(bucket, kind="stable")
    bounds = np.searchsorted(bucket[order], np.arange(n_buckets + 1))
    return [frame.iloc[order[bounds[b]:bounds[b + 1]]] for b in range(n_buckets)]


def partial_fit(model, ddf):
    """``FaultPredictor.partial_fit`` on a dask DataFrame, partition by partition.

    The rows are shuffled by entity; each partition receives the remembered tails
    (``last_seen_``) of the entities of its bucket only, prepends them and counts
    there, as the in-memory ``partial_fit`` does on the whole frame. The count
    increments (on one event vocabulary: the model's events, then the new ones
    sorted) and the new tails travel back and are merged on the client.
    """
    _require()
    import dask

    spec = group_spec(model)
    parts = _canonical_parts(ddf, column_map_of(model.columns), by_group=spec is not None)
    seen = [e for e in dask.compute(*[dask.delayed(_events_part)(p) for p in parts])
            if e is not None]
    if not seen:
        raise EmptyHistoryError("the dask DataFrame holds no rows")
    known = list(model.base_chain_.event_names_)
    events = known + sorted(set().union(*seen) - set(known))
    tails = _split_by_bucket(model.last_seen_, len(parts), by_group=spec is not None)
    shared = _copy_without_tails(model)
    shared = dask.delayed(shared, name=f"markovfault-model-{uuid.uuid4().hex}")
    results = [r for r in dask.compute(*[
        dask.delayed(_partial_part)(p, shared, t, events)
        for p, t in zip(parts, tails)]) if r is not None]
    n_late = sum(r[3] for r in results)
    if n_late:  # as prepend_tail(warn=True) says it in memory
        logger.warning(
            "%d entities have steps no later than their last step already counted "
            "(e.g. %s); those steps start a new run and the transition into them is "
            "not counted.", n_late, sorted(e for r in results for e in r[4])[:3])
    new_seen = pd.concat([r[1] for r in results])
    if spec is not None:  # before anything changes: each entity in the one group it was counted in
        _one_group_each([r[1] for r in results])
        check_groups_kept(model.last_seen_, new_seen.index.to_numpy(dtype=object), new_seen["group"])
    new, _ = merge_counts([r[0] for r in results])
    model.chain_ = model.chain_.add_counts(new, events, warn=True)
    merge_recent(model, known, _merged_bins([r[5] for r in results]), events)
    added = _summed([r[7] for r in results])
    forget_time(model)
    if added is not None:
        model.sojourn_counts_ = model.sojourn_counts_ + added
    model.read_report_ = _merge_reports([r[2] for r in results], ddf.npartitions)
    model.last_seen_ = merge_last_seen(model.last_seen_, new_seen)
    if spec is not None:
        model.group_failures_ = remember(spec, model.time_kind_,
                                         [model.group_failures_] + [r[6] for r in results],
                                         model.last_seen_)
    logger.info("added %d rows of %d entities over %d dask partitions",
                model.read_report_.n_rows_kept, model.read_report_.n_entities, ddf.npartitions)
    return model


def _copy_without_tails(model):
    """A shallow copy of a fitted model without its tails (sent once to the workers)."""
    import copy

    out = copy.copy(model)
    out.last_seen_ = None
    return out


# ----------------------------------------------------------------- forecast
def _predict_part(part, model, table):
    if part is None:
        return None
    frame, _ = part
    codes = model.states_.transform(frame)
    both, codes, _ = prepend_tail(model.last_seen_, model.time_kind_, frame, codes, warn=False)
    events = model.base_chain_.event_names_
    traj = with_memory(model, encode_with(model, both, codes, events), supersede=True)
    out = forecast_frame(traj, model.chain_.encode(traj, n_events=len(events)), table)
    out["entity"] = out["entity"].astype(object)
    out["state"] = out["state"].astype(object)
    return out


def predict(model, ddf, horizon, scenario, event_mix, recent_window, **interval):
    """``FaultPredictor.predict`` on a dask DataFrame: per partition, collected to pandas (``interval``:
    the keywords of ``forecast_table``; each partition draws the same posterior draws, so a state's
    bounds are the same in every partition)."""
    _require()
    import dask

    mix, _ = check_event_mix(event_mix, model.base_chain_.event_names_, model.time_kind_, recent_window)
    parts = _canonical_parts(ddf, column_map_of(model.columns), by_group=group_spec(model) is not None)
    shared = dask.delayed(model, name=f"markovfault-model-{uuid.uuid4().hex}")
    counts = _recent_counts(model, parts, shared, recent_window) if mix == RECENT else None
    table = forecast_table(model, horizon, scenario, event_mix, recent_window, counts=counts, **interval)
    pieces = [p for p in dask.compute(*[dask.delayed(_predict_part)(p, shared, table)
                                        for p in parts]) if p is not None]
    if not pieces:
        raise HistoryError("no rows to forecast from")
    out = pd.concat(pieces, ignore_index=True).sort_values("entity", kind="stable")
    out = out.reset_index(drop=True)
    out["entity"] = pd.Categorical(out["entity"], categories=pd.Index(
        sorted(pd.unique(out["entity"])), dtype=object))
    out["state"] = pd.Categorical(out["state"], categories=pd.Index(
        [str(s) for s in model.states_.state_names_], dtype=object))
    return out


def _arrivals_part(part, model):
    """One partition's event arrivals (previous base state, event, time) and step times,
    as ``FaultPredictor._recent_event_probs`` encodes the whole frame."""
    if part is None:
        return None
    frame, _ = part
    base = model.base_chain_
    traj = encode_with(model, frame, model.states_.transform(frame), base.event_names_)
    prev = np.r_[0, traj.state[:-1]]
    ok = ~traj.is_run_start() & (traj.event < base.n_events_)
    return traj.time_kind, traj.time, prev[ok], traj.event[ok], traj.time[ok]


def _arrivals_summary(arr):
    if arr is None or not len(arr[1]):
        return None
    kind, t = arr[0], arr[1]
    return kind, len(t), int(t.max())


def _arrivals_count(arr, lo, hi, n_states, n_events):
    """Arrival counts (S, E) with ``lo <= time < hi``, as ``recent_arrivals``."""
    if arr is None:
        return np.zeros((n_states, n_events), dtype=np.int64)
    _, _, prev, event, time = arr
    ok = (time >= lo) & (time < hi)
    return np.bincount(prev[ok] * n_events + event[ok],
                       minlength=n_states * n_events).reshape(n_states, n_events)


def _recent_counts(model, parts, shared, recent_window):
    """``event_mix="recent"`` over partitions: the global last time from each partition's
    largest time, then the arrival counts (S, E) of the trailing window per partition,
    summed. Only (S, E) counts and a few numbers per partition travel."""
    import dask

    arrivals = dask.persist(*[dask.delayed(_arrivals_part)(p, shared) for p in parts])
    summaries = [x for x in dask.compute(*[dask.delayed(_arrivals_summary)(a)
                                           for a in arrivals]) if x is not None]
    if not summaries:
        raise HistoryError("no rows to forecast from")
    kinds = {x[0] for x in summaries}
    if len(kinds) > 1:
        raise TimeParseError(
            "partitions disagree on the kind of time (timestamps in some, integers in "
            "others); give the time column one type in every file")
    t_max = max(x[2] for x in summaries)
    lo = t_max - parse_max_gap(recent_window, kinds.pop())
    base = model.base_chain_
    return np.sum(dask.compute(*[
        dask.delayed(_arrivals_count)(a, lo, t_max + 1, base.n_states_, base.n_events_)
        for a in arrivals]), axis=0)


# ----------------------------------------------------------------- backtest
_HIST_BINS = 1024  # bins per round of the exact quantile search
_FETCH_VALUES = 1 << 16  # fetch the candidate times once this few remain


def _scan_part(part):
    """Report, event labels, number of steps and time range of one partition."""
    if part is None:
        return None
    frame, report = part
    t = time_int(frame)
    events = set(frame["event"].astype(str)) if "event" in frame.columns else {"step"}
    if not len(t):
        return report, set(), 0, None, None
    return report, events, len(t), int(t.min()), int(t.max())


def _sorted_times(part):
    if part is None:
        return np.zeros(0, dtype=np.int64)
    return np.sort(time_int(part[0]))


def _rank_answers(times, asks):
    """Per ask: the times in [lo, hi], or how many lie in [lo, upper] for each upper."""
    out = []
    for lo, hi, uppers in asks:
        a = np.searchsorted(times, lo, side="left")
        if uppers is None:
            out.append(times[a:np.searchsorted(times, hi, side="right")])
        else:
            out.append(np.searchsorted(times, uppers, side="right") - a)
    return out


def _kth_times(sorted_parts, ranks, t_min: int, t_max: int, n: int) -> np.ndarray:
    """The sorted step times at ``ranks`` (0-based) over every partition, exactly.

    Rounds of per-partition histograms (``_HIST_BINS`` bins) narrow each rank's
    interval of times until at most ``_FETCH_VALUES`` candidates remain, which are
    then fetched: a few rounds of small answers, never the time column itself.
    """
    import dask

    m = len(ranks)
    lo, hi = [int(t_min)] * m, [int(t_max)] * m
    below, inside = [0] * m, [int(n)] * m  # times < lo; times in [lo, hi]
    found: list = [None] * m
    while True:
        for j in range(m):
            if found[j] is None and lo[j] == hi[j]:
                found[j] = lo[j]
        todo = [j for j in range(m) if found[j] is None]
        if not todo:
            return np.array(found, dtype=np.int64)
        asks, ask_of = {}, {}
        for j in todo:
            if inside[j] <= _FETCH_VALUES:
                key = (lo[j], hi[j], None)
            else:
                step = -(-(hi[j] - lo[j] + 1) // _HIST_BINS)
                key = (lo[j], hi[j], tuple(min(lo[j] + step * (i + 1) - 1, hi[j])
                                           for i in range(_HIST_BINS)))
            ask_of[j] = asks.setdefault(key, len(asks))
        keys = sorted(asks, key=asks.get)
        sent = [(a, b, None if u is None else np.array(u, dtype=np.int64)) for a, b, u in keys]
        answers = dask.compute(*[dask.delayed(_rank_answers)(t, sent) for t in sorted_parts])
        for j in todo:
            a = ask_of[j]
            r = int(ranks[j]) - below[j]
            uppers = sent[a][2]
            if uppers is None:
                found[j] = int(np.sort(np.concatenate([ans[a] for ans in answers]))[r])
                continue
            cum = np.sum([ans[a] for ans in answers], axis=0)
            i = int(np.searchsorted(cum, r, side="right"))  # the first bin with cum > r
            before = int(cum[i - 1]) if i else 0
            below[j] += before
            inside[j] = int(cum[i]) - before
            lo[j] = lo[j] if i == 0 else int(uppers[i - 1]) + 1
            hi[j] = int(uppers[i])


def _summary_before(part, columns, distinct, cut):
    """:func:`_summary` of the steps before ``cut`` (the first training window)."""
    if part is None:
        return None
    frame, report = part
    return _summary((frame.loc[time_int(frame) < cut], report), columns, distinct)


def _bt_local(part, extractor, events, predictor, cuts, width, horizon, origins, mixes,
              recent_width, data_end=None):
    """The backtest arrays of one partition (all steps of its entities): a local run."""
    if part is None or not len(part[0]):
        return None
    frame, _ = part
    codes = transform_states(extractor, frame)
    traj = encode_frame(frame, codes, extractor.state_names_, extractor.is_failure_, events,
                        predictor.max_gap)
    traj = with_ends(traj, extractor, data_end)  # the data end of every partition
    return Run(traj, cuts, width, horizon, 0.5, predictor, [], origins, None, False,
                mixes, recent_width)


def _bt_gather(run, n_folds):
    """What the client needs of one partition: fold counts, training rates per state,
    each fold's origins (entity, position in the entity, time, state, history code,
    outcomes, steps to failure) and the entities' names and lengths."""
    if run is None:
        return None
    tr = run.traj
    rates = np.zeros((n_folds, 2, tr.n_states, run.H), dtype=np.int64)
    folds = []
    for k in range(n_folds):  # a loop over folds, each vectorised
        rates[k] = run.fold_rates(k)
        org = run.test_origins(k)
        ent = tr.entity[org]
        folds.append({
            "ent": ent, "pos": org - run.ent_start[ent], "time": tr.time[org],
            "state": tr.state[org], "code": run.code[org],
            "y": run.labels(org), "d": run.d[org], "d_onset": run.d_onset[org]})
    return (run.fold_counts(), rates, folds, np.asarray(tr.entity_names, dtype=object),
            run.ent_end - run.ent_start)


def _bt_recent(run, starts):
    """Arrival counts (S, E) in ``[start - recent_window, start)`` for each start."""
    if run is None:
        return None
    tr = run.traj
    out = run.recent_windows(0, starts)
    return np.array(out) if out else np.zeros((0, tr.n_states, tr.n_events), dtype=np.int64)


def _bt_fold_bins(run, n_folds):
    """The arrival bins of each fold's training window (``recent_strength="auto"``)."""
    if run is None:
        return None
    tr = run.traj
    out = []
    for k in range(n_folds):
        cut = run.cuts[k]
        out.append(arrival_bins(tr.state, tr.event, tr.time, tr.is_run_start(), tr.n_states,
                                tr.n_events, None if run.width is None else cut - run.width, cut))
    return out


def _bt_steps(run):
    """The encoded steps of one partition (for the gradient-boosting baseline only)."""
    if run is None:
        return None
    tr = run.traj
    return tr.entity, tr.time, tr.event, tr.state, tr.is_run_start()


class _GatheredRun(Run):
    """A backtest whose arrays stay in the partitions: every fold reads the summed
    counts and training rates and the gathered origins (see :func:`backtest_run`);
    scoring is then exactly ``Run``'s."""

    def __init__(self, header, cuts, width, horizon, threshold, predictor, base_specs,
                 origins, n_jobs, progress, mixes, recent_width, counts, rates, folds,
                 windows, gb_run, fold_bins=None):
        self.traj, self.cuts, self.width, self.H = header, cuts, width, horizon
        self.threshold, self.predictor, self.base_specs = threshold, predictor, base_specs
        self.origins, self.n_jobs, self.progress = origins, n_jobs, progress
        self.chain = make_chain(history_spec_of(predictor.history), alpha=predictor.alpha,
                                beta=predictor.beta)
        self.event_mixes, self.recent_width = list(mixes), recent_width
        self._counts, self._rates, self._folds = counts, rates, folds
        self._windows, self._gb, self._fold_bins = windows, gb_run, fold_bins
        steps = np.concatenate([f["step"] for f in folds])
        self._steps, first = np.unique(steps, return_index=True)
        self._attrs = tuple(np.concatenate([f[c] for f in folds])[first]
                            for c in ("ent", "time", "state", "d", "d_onset"))

    def fold_counts(self):
        return self._counts

    def fold_train(self, k):
        return self._rates[k, 0], self._rates[k, 1], None

    def fold_origins(self, k):
        f = self._folds[k]
        return f["step"], f["y"], f["state"], f["code"]

    def gb_inputs(self, k, train):
        tidx, gap = self._gb.train_window(k)
        return self._gb.traj, tidx, self._gb.train_labels(tidx, gap)

    def origin_times(self, k, origins):
        return self._folds[k]["time"]

    def recent_windows(self, k, starts):
        return list(self._windows[k])

    def fold_recent_strength(self, k, chain):
        setting = self.predictor.recent_strength
        if not (isinstance(setting, str) and setting == AUTO):
            return recent_strength_for(setting, chain.base_)
        bins = self._fold_bins[k]
        return (float(DEFAULT_RECENT_STRENGTH) if bins is None
                else choose_recent_strength(bins, chain.base_.event_probs_))

    def step_attrs(self, step):
        at = np.searchsorted(self._steps, step)
        return tuple(a[at] for a in self._attrs)


def backtest_run(ddf, predictor, *, horizon, cutoffs, window, window_size, origins,
                 base_specs, threshold, n_jobs, progress, event_mix, recent_window):
    """The run of :func:`markovfault.backtest` on a dask DataFrame, and the read report.

    Per partition (the rows of its entities, after the shuffle): reading, state
    extraction, encoding, the fold counts (one pass, by time bin), the training
    rates per state and horizon, and the origins with their outcomes. On the
    client: the exact quantile cutoffs (rounds of per-partition histograms of the
    step times), the state extractor (fitted on the steps before the first cutoff,
    as :func:`fit_dask` fits on all), the sums, and scoring. The gradient-boosting
    baseline alone collects the encoded steps (it trains on every training step).
    """
    _require()
    import dask

    by_group = _group_of(history_spec_of(predictor.history)) is not None
    parts = _canonical_parts(ddf, column_map_of(predictor.columns), by_group=by_group)
    scans = [x for x in dask.compute(*[dask.delayed(_scan_part)(p) for p in parts])
             if x is not None]
    report = _merge_reports([x[0] for x in scans], ddf.npartitions)
    filled = [x for x in scans if x[2]]
    if not filled:
        raise EmptyHistoryError("the dask DataFrame holds no rows")
    time_kind = report.time_kind or "integer"
    events = sorted(set().union(*[x[1] for x in filled]))
    n = sum(x[2] for x in filled)
    t_min, t_max = min(x[3] for x in filled), max(x[4] for x in filled)

    def kth(ranks):  # exact order statistics of the step times, where they lie
        times = dask.persist(*[dask.delayed(_sorted_times)(p) for p in parts])
        return _kth_times(times, ranks, t_min, t_max, n)

    cuts = cutoffs_from(cutoffs, time_kind, n, t_min, t_max, kth)
    width = resolve_window(window, window_size, time_kind)

    # states learned from the first training window only, as in memory
    extractor = new_extractor(predictor.states)
    distinct = isinstance(extractor, (CategoricalStates, ThresholdStates))
    columns = list(extractor.required_columns)
    subs = [x for x in dask.compute(*[dask.delayed(_summary_before)(p, columns, distinct,
                                                                    cuts[0])
                                      for p in parts]) if x is not None]
    _fit_extractor(extractor, [x[2] for x in subs], columns, distinct)
    check_failure_states(extractor, hint=False)
    if getattr(extractor, "end_after", None) is not None and END_EVENT not in events:
        events = events + [END_EVENT]  # where mark_ends puts it in memory: after the sorted events
    mixes, recent_width = check_event_mixes(event_mix, events, time_kind, recent_window)
    # gap bins chosen from the data: from the steps before the first cutoff, as in memory; the
    # partitions and the folds then share the predictor with those edges
    spec = history_spec_of(predictor.history)
    resolved = _resolved_gaps(spec, parts, extractor, events, predictor.max_gap, time_kind,
                              before=cuts[0], data_end=t_max)
    if resolved is not spec:
        predictor = clone(predictor).set_params(history=resolved)

    K = len(cuts)
    runs = dask.persist(*[dask.delayed(_bt_local)(p, extractor, events, predictor, cuts, width,
                                                  horizon, origins, mixes, recent_width,
                                                  t_max)
                          for p in parts])
    got = [(i, g) for i, g in enumerate(dask.compute(*[dask.delayed(_bt_gather)(r, K)
                                                       for r in runs])) if g is not None]
    # global entity codes (sorted names) and first steps, as one trajectory would have them
    names = np.concatenate([g[3] for _, g in got])
    lengths = np.concatenate([g[4] for _, g in got]).astype(np.int64)
    order = np.argsort(names, kind="stable")
    twice = np.flatnonzero(names[order][1:] == names[order][:-1])
    if len(twice) and by_group:  # the partitions hold whole groups
        raise HistoryError(
            f"entity {names[order][twice[0]]!r} is in more than one group (its rows were read in the "
            "partitions of two groups): the group context counts the failures of an entity's group, "
            "so an entity must stay in one group. Fix: give each entity one group.")
    if len(twice):
        raise HistoryError(
            f"entity {names[order][twice[0]]!r} was read in two partitions: its raw values "
            "differ between files (e.g. 7 in one, 7.0 in another) and were routed apart. "
            "Give the entity column one type in every file.")
    rank = np.empty(len(names), dtype=np.int64)
    rank[order] = np.arange(len(names))
    gstart = np.r_[0, np.cumsum(lengths[order])[:-1]].astype(np.int64)[rank]
    offsets = np.r_[0, np.cumsum([len(g[3]) for _, g in got])[:-1]].astype(np.int64)
    # the fold counts summed, and each partition's chain states (history-aware: its own seen
    # states) as rows of the sum
    counts, state_maps = merge_counts([g[0] for _, g in got])

    folds = []
    for k in range(K):
        pieces = {c: [] for c in ("step", "ent", "time", "state", "code", "y", "d", "d_onset")}
        for (_, g), off, state_map in zip(got, offsets, state_maps):
            f = g[2][k]
            code = off + f["ent"]
            pieces["step"].append(gstart[code] + f["pos"])
            pieces["ent"].append(rank[code])
            pieces["code"].append(state_map[f["code"]])
            for c in ("time", "state", "y", "d", "d_onset"):
                pieces[c].append(f[c])
        step = np.concatenate(pieces["step"]).astype(np.int64)
        by_step = np.argsort(step, kind="stable")
        fold = {c: np.concatenate(v)[by_step] for c, v in pieces.items()}
        folds.append(fold)
    rates = np.sum([g[1] for _, g in got], axis=0)

    windows, fold_bins = [None] * K, None
    if recent_width is not None and any(isinstance(m, str) and m == RECENT for m in mixes):
        starts = [recent_slices(f["time"], recent_width)[0] for f in folds]
        flat = np.concatenate(starts).astype(np.int64)
        per = [w for w in dask.compute(*[dask.delayed(_bt_recent)(r, flat) for r in runs])
               if w is not None]
        windows = np.split(np.sum(per, axis=0), np.cumsum([len(s) for s in starts])[:-1])
        if isinstance(predictor.recent_strength, str) and predictor.recent_strength == AUTO:
            per = [b for b in dask.compute(*[dask.delayed(_bt_fold_bins)(r, K) for r in runs])
                   if b is not None]
            fold_bins = [_merged_bins([b[k] for b in per]) for k in range(K)]

    state_names = tuple(str(s) for s in extractor.state_names_)
    is_failure = np.asarray(extractor.is_failure_, dtype=bool).copy()
    entity_names = tuple(names[order].tolist())
    empty = np.zeros(0, dtype=np.int64)
    header = Trajectories(entity=empty, time=empty, event=empty, state=empty, run_starts=empty,
                          state_names=state_names, event_names=tuple(events),
                          entity_names=entity_names, is_failure=is_failure, time_kind=time_kind,
                          is_end=extractor.is_end_)
    gb_run = None
    if any(name == "gradient_boosting" for name, _ in base_specs):
        # the classifier trains on every training step: the encoded steps are collected
        steps = dask.compute(*[dask.delayed(_bt_steps)(runs[i]) for i, _ in got])
        N = int(lengths.sum())
        arrays = [np.empty(N, dtype=np.int64) for _ in range(4)]
        run_start = np.zeros(N, dtype=bool)
        for (_, g), off, (ent, t, ev, st, rs) in zip(got, offsets, steps):
            local_start = np.r_[0, np.cumsum(g[4])[:-1]]
            gidx = gstart[off + ent] + (np.arange(len(ent)) - local_start[ent])
            for out, v in zip(arrays, (rank[off + ent], t, ev, st)):
                out[gidx] = v
            run_start[gidx] = rs
        full = Trajectories(entity=arrays[0], time=arrays[1], event=arrays[2], state=arrays[3],
                            run_starts=np.flatnonzero(run_start).astype(np.int64),
                            state_names=state_names, event_names=tuple(events),
                            entity_names=entity_names, is_failure=is_failure.copy(),
                            time_kind=time_kind, is_end=extractor.is_end_)
        gb_run = Run(full, cuts, width, horizon, threshold, predictor, [], origins, None, False)
        logger.info("gradient_boosting baseline: collected the %d encoded steps to the client", N)
    run = _GatheredRun(header, cuts, width, horizon, threshold, predictor, base_specs, origins,
                       n_jobs, progress, mixes, recent_width, counts, rates, folds, windows,
                       gb_run, fold_bins)
    logger.info("backtest counted over %d dask partitions: %d folds, %d entities",
                ddf.npartitions, K, len(names))
    return run, report


# ---------------------------------------------------------------- helpers
def compute_frame(model, ddf):
    """Collect a dask frame to pandas and read it (``select_states`` only): exact."""
    _require()
    return read_input(ddf.compute(), model.columns)


def read_paths(paths):
    """A dask DataFrame over files, directories or globs (Parquet and CSV)."""
    _require()
    import glob
    import os

    import dask.dataframe as dd

    files = []
    for p in paths:
        p = str(p)
        if os.path.isdir(p):
            found = sorted(os.path.join(p, f) for f in os.listdir(p) if not f.startswith("."))
        elif any(ch in p for ch in "*?["):
            found = sorted(glob.glob(p, recursive=True))
        else:
            if not os.path.exists(p):
                raise FileNotFoundError(2, "No such file or directory", p)
            found = [p]
        files += [f for f in found if os.path.isfile(f)]
    parquet = [f for f in files if f.endswith((".parquet", ".pq"))]
    csv = [f for f in files if f.endswith((".csv", ".csv.gz"))]
    other = sorted(set(files) - set(parquet) - set(csv))
    if other:
        raise ConfigError(f"with a scheduler, histories must be Parquet or CSV files; got {other[0]!r}")
    if not files:
        raise FileNotFoundError(2, "No Parquet or CSV history files", ", ".join(map(str, paths)))
    frames = []
    if parquet:
        frames.append(dd.read_parquet(parquet))
    if csv:
        frames.append(dd.read_csv(csv, blocksize=None, dtype=str,
                                  compression="infer"))
    return frames[0] if len(frames) == 1 else dd.concat(frames)
