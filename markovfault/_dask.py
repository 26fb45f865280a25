"""Dask back end: fit and forecast on a ``dask.dataframe.DataFrame``.

Imported only when a dask collection is passed (the core never imports dask).
Install with ``pip install "markovfault[dask]"``.

Design (exact: counts and forecasts equal the in-memory ones):

1. **Read order.** Every row gets its global read position (partition number,
   then position in the partition), so ties and ``event_id`` duplicates are
   resolved exactly as :func:`~markovfault.read_histories` does on the
   concatenated frame.
2. **Split entities: shuffle by entity.** Rows are shuffled on the entity
   (cast to str and stripped, as the reader normalises it), so all of an
   entity's rows sit in one partition. Each partition is then read and
   validated where it lies with :func:`~markovfault.read_histories`.
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
5. **Forecasts.** ``predict`` computes the forecast table once, forecasts each
   partition where it lies and collects the tidy pieces (small) to pandas.

``partial_fit``, ``backtest`` and ``predict(event_mix="recent")`` collect the
dask frame to pandas first (``ddf.compute()``): exact, but it must fit in
the client's memory.
"""

from __future__ import annotations

import logging
import uuid

import numpy as np
import pandas as pd

__all__ = ["is_dask_frame", "fit_dask", "predict_dask", "compute_frame", "read_paths"]

logger = logging.getLogger("markovfault.dask")

_POS = "_mf_pos"
_KEY = "_mf_key"
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
def _add_pos(df: pd.DataFrame, entity: str, partition_info=None) -> pd.DataFrame:
    number = 0 if partition_info is None else int(partition_info["number"])
    out = df.copy()
    out[_POS] = (np.int64(number) << _PART_SHIFT) + np.arange(len(df), dtype=np.int64)
    out[_KEY] = df[entity].astype(str).str.strip().astype(object)
    return out


def _shuffled(ddf, cmap):
    """The frame shuffled by entity, each row carrying its global read position."""
    from .exceptions import MissingColumnError

    if cmap.entity not in ddf.columns:
        raise MissingColumnError(
            f"the entity column {cmap.entity!r} is missing; the columns are "
            f"{list(map(str, ddf.columns))} (set entity in the [columns] table)")
    meta = _add_pos(ddf._meta, cmap.entity)
    tagged = ddf.map_partitions(_add_pos, cmap.entity, meta=meta)
    return tagged.shuffle(on=_KEY, npartitions=max(ddf.npartitions, 1))


def _read_part(df: pd.DataFrame, cmap):
    """Read and validate one partition (all rows of its entities), in read order."""
    from .histories import read_histories

    if df is None or len(df) == 0:
        return None
    df = df.sort_values(_POS, kind="stable").drop(columns=[_POS, _KEY]).reset_index(drop=True)
    return read_histories(df, columns=cmap, return_report=True)


def _canonical_parts(ddf, cmap):
    """Delayed (frame, report) per partition, persisted where they lie."""
    import dask

    parts = _shuffled(ddf, cmap).to_delayed()
    read = [dask.delayed(_read_part)(p, cmap) for p in parts]
    return list(dask.persist(*read))


def _merge_reports(reports, n_partitions):
    from .histories import ReadReport

    reports = [r for r in reports if r is not None]
    dropped, filled = {}, {}
    for r in reports:
        for k, v in r.dropped.items():
            dropped[k] = dropped.get(k, 0) + int(v)
        for k, v in r.filled.items():
            filled[k] = filled.get(k, 0) + int(v)
    kinds = {r.time_kind for r in reports if r.time_kind is not None}
    if len(kinds) > 1:
        from .exceptions import TimeParseError

        raise TimeParseError(
            "partitions disagree on the kind of time (timestamps in some, integers in others); "
            "give the time column one type in every file")
    n_read = sum(r.n_rows_read for r in reports)
    return ReadReport(
        n_sources=1, n_rows_read=n_read, n_rows_kept=sum(r.n_rows_kept for r in reports),
        n_entities=sum(r.n_entities for r in reports), dropped=dropped, filled=filled,
        single_row_entities=sum(r.single_row_entities for r in reports),
        time_kind=kinds.pop() if kinds else None,
        per_source=[(f"<dask dataframe, {n_partitions} partitions>", n_read)])


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


def _tail(traj, tail_length: int) -> pd.DataFrame:
    """Each entity's last steps (as ``FaultPredictor._remember_tail``)."""
    from .predictor import _next_true

    n = traj.n_steps
    idx = np.arange(n)
    ends = np.r_[traj.entity[1:] != traj.entity[:-1], True] if n else np.zeros(0, bool)
    keep = _next_true(ends) - idx < tail_length
    names = np.asarray(traj.entity_names, dtype=object)
    events = np.asarray(traj.event_names, dtype=object)
    return pd.DataFrame(
        {"time": traj.time[keep], "event": events[traj.event[keep]], "state": traj.state[keep]},
        index=pd.Index(names[traj.entity[keep]], name="entity"))


def _count_part(part, model, extractor, events, spec, tail_length):
    from ._history import _Layout, augment, count_augmented
    from .counts import count_transitions

    if part is None:
        return None
    frame, _ = part
    traj = model._encode(frame, extractor.transform(frame), extractor, event_names=events)
    if spec is None:
        counts = count_transitions(traj)
    else:
        n_aug = _Layout(spec, traj.n_states, traj.n_events).A
        counts = count_augmented(augment(traj, spec), traj, n_aug)
    return counts, _tail(traj, tail_length)


def fit_dask(model, ddf):
    """``FaultPredictor.fit`` on a dask DataFrame (see the module docstring)."""
    _require()
    import dask

    from ._history import HistoryChain
    from .chain import EventMarkovChain
    from .exceptions import ConfigError, EmptyHistoryError
    from .states import CategoricalStates, ThresholdStates
    from .trajectories import parse_max_gap

    cmap = model._column_map()
    parts = _canonical_parts(ddf, cmap)
    extractor = model._make_extractor()
    distinct = isinstance(extractor, (CategoricalStates, ThresholdStates))
    columns = list(extractor.required_columns)
    summaries = [s for s in dask.compute(*[dask.delayed(_summary)(p, columns, distinct)
                                           for p in parts]) if s is not None]
    if not summaries:
        raise EmptyHistoryError("the dask DataFrame holds no rows")
    report = _merge_reports([s[0] for s in summaries], ddf.npartitions)
    events = sorted(set().union(*[s[1] for s in summaries]))
    fit_frame = pd.concat([s[2] for s in summaries], ignore_index=True)
    if distinct:
        fit_frame = fit_frame.drop_duplicates(subset=[c for c in columns if c in fit_frame]
                                              or None)
    # the in-memory row order: entity, then (within each partition) time and read order
    fit_frame = fit_frame.sort_values("entity", kind="stable").reset_index(drop=True)
    extractor.fit(fit_frame)
    if not np.any(extractor.is_failure_):
        raise ConfigError(
            f"no failure states are declared; the states are {list(extractor.state_names_)}. "
            "Name them, e.g. states={'kind': 'categorical', 'failure': ['down']} or "
            "failure = [\"down\"] in the [states] table of the config."
        )
    parse_max_gap(model.max_gap, report.time_kind or "integer")
    spec = model._history_spec()
    tail_length = 1 if spec is None else spec.tail + 1
    results = [r for r in dask.compute(*[
        dask.delayed(_count_part)(p, model, extractor, events, spec, tail_length)
        for p in parts]) if r is not None]
    counts = np.sum([r[0] for r in results], axis=0).astype(np.int64)
    state_names = tuple(str(s) for s in extractor.state_names_)
    is_failure = np.asarray(extractor.is_failure_, dtype=bool)
    if spec is None:  # as EventMarkovChain.fit, from the summed counts
        chain = EventMarkovChain(alpha=model.alpha, beta=model.beta)
        chain._check_params()
        chain.state_names_ = list(state_names)
        chain.is_failure_ = is_failure.copy()
        chain.event_names_, chain.counts_ = list(events), counts
        chain._estimate()
    else:
        chain = HistoryChain(spec, model.alpha, model.beta).set_counts(
            counts, state_names, events, is_failure)
    model.states_ = extractor
    model.time_kind_ = report.time_kind
    model.chain_ = chain
    model.read_report_ = report
    model.last_seen_ = pd.concat([r[1] for r in results]).sort_index(kind="stable")
    logger.info("fitted on %d transitions of %d entities over %d dask partitions",
                chain.n_transitions_, report.n_entities, ddf.npartitions)
    return model


# ----------------------------------------------------------------- forecast
def _predict_part(part, model, table):
    from ._history import augment
    from .chain import EventMarkovChain
    from .predictor import _forecast_frame

    if part is None:
        return None
    frame, _ = part
    codes = model.states_.transform(frame)
    both, codes, _ = model._prepend_tail(frame, codes, warn=False)
    events = model.base_chain_.event_names_
    traj = model._encode(both, codes, model.states_, event_names=events)
    if isinstance(model.chain_, EventMarkovChain):
        state = traj.state
    else:
        state = augment(traj, model.chain_.spec, n_events=len(events))
    out = _forecast_frame(traj, state, table)
    out["entity"] = out["entity"].astype(object)
    out["state"] = out["state"].astype(object)
    return out


def predict_dask(model, ddf, horizon, scenario, event_mix, recent_window):
    """``FaultPredictor.predict`` on a dask DataFrame: per partition, collected to pandas."""
    _require()
    import dask

    from .exceptions import HistoryError

    if isinstance(event_mix, str) and event_mix == "recent":
        frame, _ = model._read(ddf)  # the trailing window is global: collect (documented)
        return model.predict(frame, horizon, scenario, event_mix=event_mix,
                             recent_window=recent_window)
    table = model._table(horizon, scenario, model._event_probs(event_mix))
    parts = _canonical_parts(ddf, model._column_map())
    shared = dask.delayed(model, name=f"markovfault-model-{uuid.uuid4().hex}")
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


# ---------------------------------------------------------------- helpers
def compute_frame(model, ddf):
    """Collect a dask frame to pandas and read it (partial_fit, backtest): exact."""
    _require()
    from .histories import read_histories

    return read_histories(ddf.compute(), columns=model._column_map(), return_report=True)


def read_paths(paths):
    """A dask DataFrame over files, directories or globs (Parquet and CSV)."""
    _require()
    import glob
    import os

    import dask.dataframe as dd

    from .exceptions import ConfigError

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
