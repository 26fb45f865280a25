"""The high-level object: histories in, P(failure within h) per entity out.

:class:`FaultPredictor` strings the layers together: read and validate the
histories, extract states, encode :class:`~markovfault.trajectories.Trajectories`,
fit an :class:`~markovfault.chain.EventMarkovChain`, and forecast from each
entity's last observed state.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone

from ._history import HistoryChain, HistorySpec, _Layout, augment, count_augmented
from .chain import EventMarkovChain
from .exceptions import ConfigError, HistoryError, NotFittedError
from .histories import ColumnMap, ReadReport, read_histories
from .states import CategoricalStates, StateExtractor, extractor_from_config
from .trajectories import Trajectories, _run_starts, parse_max_gap

__all__ = ["FaultPredictor"]

logger = logging.getLogger("markovfault.predictor")


class FaultPredictor(BaseEstimator):
    """Fit an event-conditioned chain on histories and forecast failures.

    Parameters
    ----------
    states : StateExtractor or dict, default=None
        How statuses or metrics become states: an extractor from
        :mod:`markovfault.states`, or a ``[states]`` config table such as
        ``{"kind": "categorical", "failure": ["down"]}``. ``None`` maps each
        status label to a state of its own, with no failure states (which
        :meth:`fit` refuses: name them).
    alpha : float, default=1.0
        Dirichlet prior mass on each pooled transition row.
    beta : float, default=1.0
        Shrinkage of event-conditioned rows toward the pooled row.
    columns : ColumnMap or dict, default=None
        Column names of the exported histories (see
        :class:`~markovfault.histories.ColumnMap`); ``None`` uses the names of
        the input contract (entity, time, event, status, event_id).
    max_gap : None, int or duration string, default=None
        Split an entity's history where two steps are further apart than this
        (``"30min"`` for timestamps, an integer for sequence numbers).
    history : HistorySpec or dict, default=None
        History-aware states (the ``[states.history]`` table): ``order``
        (previous states), ``failure_window`` (steps since the last failure,
        capped), ``entering_event`` and ``backoff`` (pseudo-counts toward the
        base chain). ``None`` is the plain first-order chain. See
        :mod:`markovfault._history`.

    Attributes
    ----------
    states_ : StateExtractor
        The fitted state extractor.
    chain_ : EventMarkovChain
        The fitted chain.
    read_report_ : ReadReport
        What the last ``fit``/``partial_fit`` read and dropped.
    state_names_, event_names_ : list of str
    failure_states_ : list of str
    n_transitions_ : int

    Examples
    --------
    >>> import pandas as pd
    >>> hist = pd.DataFrame({
    ...     "entity": ["a"] * 4 + ["b"] * 4,
    ...     "time": [1, 2, 3, 4] * 2,
    ...     "event": ["tick", "spike", "tick", "spike"] * 2,
    ...     "status": ["ok", "down", "ok", "down", "ok", "ok", "ok", "ok"]})
    >>> model = FaultPredictor(states={"kind": "categorical", "failure": ["down"]},
    ...                        alpha=0.0, beta=0.0).fit(hist)
    >>> model.state_names_, model.event_names_, model.n_transitions_
    (['down', 'ok'], ['spike', 'tick'], 6)

    From ``ok``, 2 of 5 steps went ``down``, so within two steps:
    0.4 + 0.6 * 0.4 = 0.64. Handler ``a`` is down now and always recovered.

    >>> model.predict(hist, horizon=2)
      entity  as_of state  horizon  p_fail
    0      a      4  down        1    0.00
    1      a      4  down        2    0.40
    2      b      4    ok        1    0.40
    3      b      4    ok        2    0.64

    What if the next two events are spikes? From ``ok``, half the spikes
    led to ``down``: 0.5, then 0.5 + 0.5 * 0.5.

    >>> model.predict(hist, horizon=2, scenario=["spike", "spike"])["p_fail"].tolist()
    [0.0, 0.5, 0.5, 0.75]
    """

    def __init__(
        self,
        *,
        states: StateExtractor | Mapping | None = None,
        alpha: float = 1.0,
        beta: float = 1.0,
        columns: ColumnMap | Mapping | None = None,
        max_gap=None,
        history: HistorySpec | Mapping | None = None,
    ):
        self.states = states
        self.alpha = alpha
        self.beta = beta
        self.columns = columns
        self.max_gap = max_gap
        self.history = history

    # ------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, config: Mapping) -> "FaultPredictor":
        """Build an unfitted predictor from a parsed config (see :mod:`markovfault.config`).

        Examples
        --------
        >>> FaultPredictor.from_config({"states": {"kind": "categorical", "failure": ["down"]},
        ...                             "model": {"alpha": 0.5}}).get_params()["alpha"]
        0.5
        """
        model = dict(config.get("model", {}))
        states = dict(config["states"]) if "states" in config else None
        history = states.pop("history", None) if states else None
        return cls(
            states=states,
            alpha=model.get("alpha", 1.0),
            beta=model.get("beta", 1.0),
            columns=dict(config["columns"]) if "columns" in config else None,
            max_gap=model.get("max_gap"),
            history=dict(history) if history is not None else None,
        )

    def _make_extractor(self) -> StateExtractor:
        if self.states is None:
            return CategoricalStates()
        if isinstance(self.states, Mapping):
            return extractor_from_config(dict(self.states))
        if isinstance(self.states, StateExtractor):
            return clone(self.states)
        raise ConfigError(
            f"states must be a markovfault.states extractor or a [states] config table, "
            f"got {type(self.states).__name__}."
        )

    def _column_map(self) -> ColumnMap:
        if self.columns is None:
            return ColumnMap()
        if isinstance(self.columns, ColumnMap):
            return self.columns
        if isinstance(self.columns, Mapping):
            return ColumnMap.from_config(self.columns)
        raise ConfigError(
            f"columns must be a ColumnMap or a [columns] table, got {type(self.columns).__name__}."
        )

    def _read(self, histories, categorical: bool = False) -> tuple[pd.DataFrame, ReadReport]:
        if _is_dask(histories):  # select_states only: collected to pandas (markovfault._dask)
            from ._dask import compute_frame

            return compute_frame(self, histories)
        if _is_canonical(histories):
            # already read by read_histories (its columns carry the canonical names)
            return histories, ReadReport(
                n_sources=1, n_rows_read=len(histories), n_rows_kept=len(histories),
                n_entities=int(histories["entity"].nunique()), dropped={}, filled={},
                single_row_entities=int((histories["entity"].value_counts() == 1).sum()),
                time_kind="datetime" if _is_datetime(histories) else "integer",
                per_source=[("<canonical frame>", len(histories))])
        return read_histories(histories, columns=self._column_map(), return_report=True,
                              categorical=categorical)

    # ------------------------------------------------------------------ fitting
    def _history_spec(self) -> HistorySpec | None:
        if self.history is None:
            return None
        spec = self.history if isinstance(self.history, HistorySpec) else \
            HistorySpec.from_config(dict(self.history))
        return None if spec.is_plain else spec

    def fit(self, histories, y=None, *, chunksize: int | None = None) -> "FaultPredictor":
        """Read ``histories``, fit the state extractor and the chain.

        Parameters
        ----------
        histories : DataFrame, path, or list of them
            Exported histories in the input contract (CSV, Parquet, JSON lines
            files or a directory of them; see :func:`markovfault.read_histories`).
        y : ignored
        chunksize : int, optional
            Stream the histories in batches of at most this many rows
            (``read_histories(..., chunksize=N)``) instead of reading them
            whole: memory stays bounded by the batch, the entities and the
            counts. The counts equal the in-memory fit's exactly provided
            that each entity's rows arrive in time order across batches (as
            in exports written in time order; within a batch, order does not
            matter). A batch row older than that entity's last step already
            counted raises :class:`~markovfault.exceptions.HistoryError`.
            The state extractor is fitted on the *first batch* only: list the
            states (``[states] states = [...]``) or make the first batch
            representative when quantile or cluster states are used.

        Returns
        -------
        self
        """
        if chunksize is not None:
            return self._fit_stream(histories, chunksize)
        if _is_dask(histories):  # counted partition by partition (markovfault._dask)
            from ._dask import fit_dask

            return fit_dask(self, histories)
        frame, report = self._read(histories, categorical=True)
        extractor = self._make_extractor()
        codes = extractor.fit_transform(frame)
        if not np.any(extractor.is_failure_):
            raise ConfigError(
                f"no failure states are declared; the states are {list(extractor.state_names_)}. "
                "Name them, e.g. states={'kind': 'categorical', 'failure': ['down']} or "
                "failure = [\"down\"] in the [states] table of the config."
            )
        parse_max_gap(self.max_gap, "datetime" if _is_datetime(frame) else "integer")
        spec = self._history_spec()
        traj = self._encode(frame, codes, extractor, event_names=None)
        self.states_ = extractor
        self.time_kind_ = traj.time_kind
        if spec is None:
            self.chain_ = EventMarkovChain(alpha=self.alpha, beta=self.beta).fit(traj)
        else:
            layout_chain = HistoryChain(spec, self.alpha, self.beta)
            n_aug = _Layout(spec, traj.n_states, traj.n_events).A
            counts = count_augmented(augment(traj, spec), traj, n_aug)
            self.chain_ = layout_chain.set_counts(counts, traj.state_names, traj.event_names,
                                                  traj.is_failure)
        self.read_report_ = report
        self.last_seen_ = None
        self._remember_tail(traj)
        logger.info(
            "fitted on %d transitions of %d entities (%d states, %d events)",
            self.chain_.n_transitions_, traj.n_entities, traj.n_states, traj.n_events,
        )
        return self

    def partial_fit(self, histories, y=None) -> "FaultPredictor":
        """Add new histories to the counts (the state extractor stays as fitted).

        Each entity's last steps seen so far are carried over, so the
        transition into its first new step is counted (and, with
        history-aware states, its history is known): fitting on A and then
        ``partial_fit`` on B equals fitting on A and B together whenever B
        holds only steps later than A's (chronological batches), and whenever
        A and B hold different entities. Steps of an entity older than what
        was already seen start a new run (with a warning): they cannot be
        spliced into history that was already counted.

        Returns
        -------
        self
        """
        if not hasattr(self, "chain_"):
            return self.fit(histories)
        if _is_dask(histories):  # counted partition by partition (markovfault._dask)
            from ._dask import partial_fit_dask

            return partial_fit_dask(self, histories)
        # files: read as codes (categorical), as fit reads them; a frame is read as text
        # (no faster as codes for the few rows per entity of an incremental batch)
        frame, report = self._read(histories,
                                   categorical=not isinstance(histories, pd.DataFrame))
        codes = self.states_.transform(frame)
        tails = _Tails.from_frame(getattr(self, "last_seen_", None), self._tail_length)
        if tails is not None and self._add_codes(frame, codes, tails, warn=True, stream=False):
            self.last_seen_ = tails.to_frame()
        else:
            self._add_frames(frame, codes, warn=True, stream=False)
        self.read_report_ = report
        return self

    def _fit_stream(self, histories, chunksize: int) -> "FaultPredictor":
        """``fit(histories, chunksize=N)``: fit on the first batch, then add the
        others with each entity's last steps carried across batch boundaries."""
        if _is_canonical(histories):
            n = len(histories)
            batches = ((histories.iloc[k:k + chunksize], None) for k in range(0, n, chunksize))
        else:
            batches = read_histories(histories, columns=self._column_map(), chunksize=chunksize,
                                     return_report=True, categorical=True)
        total = None
        tails = None  # the remembered last steps, as codes between batches (_Tails)
        try:
            for frame, report in batches:
                if not len(frame):
                    continue
                if total is None:
                    self.fit(frame)
                    total = self.read_report_ if report is None else report
                    tails = _Tails.from_frame(self.last_seen_, self._tail_length)
                    continue
                codes = self.states_.transform(frame)
                if tails is None or not self._add_codes(frame, codes, tails, warn=False,
                                                        stream=True):
                    if tails is not None:
                        self.last_seen_ = tails.to_frame()
                    self._add_frames(frame, codes, warn=False, stream=True)
                    tails = _Tails.from_frame(self.last_seen_, self._tail_length)
                if report is not None:
                    for key in ("n_sources", "n_rows_read", "n_rows_kept"):
                        setattr(total, key, getattr(total, key) + getattr(report, key))
                    for name in ("dropped", "filled"):
                        for k, v in getattr(report, name).items():
                            getattr(total, name)[k] = getattr(total, name).get(k, 0) + v
                    total.per_source = total.per_source + report.per_source
        finally:
            if tails is not None:
                self.last_seen_ = tails.to_frame()
        if total is None:
            raise HistoryError("the histories hold no usable row to fit on")
        total.n_entities = int(self.last_seen_.index.nunique())
        self.read_report_ = total
        return self

    def _add_frames(self, frame, codes, warn: bool, stream: bool) -> None:
        """Count one batch the general way: the remembered tails prepended as rows of
        a frame, encoded with it (any frame; see :meth:`_add_codes` for the usual one)."""
        both, both_codes, n_tail = self._prepend_tail(frame, codes, warn=warn, stream=stream)
        traj = self._encode(both, both_codes, self.states_,
                            event_names=self.base_chain_.event_names_)
        if isinstance(self.chain_, EventMarkovChain):
            self.chain_.partial_fit(traj)  # tails of plain chains are one step: nothing to undo
        else:
            self._partial_fit_history(traj, both.iloc[:n_tail], both_codes[:n_tail])
        self._remember_tail(traj)

    def _add_codes(self, frame, codes, tails: _Tails, warn: bool, stream: bool) -> bool:
        """Count one batch on integer codes: what :meth:`_add_frames` counts, without
        building a frame of tails and batch or a string per row.

        The batch's entities are found among the remembered ones (``tails``) by
        merging the two sorted name lists; each entity's carried tail rows go
        right before its own rows (the batch is sorted by (entity, time), and a
        carried tail is never later than the entity's first new step), so the
        trajectories are assembled by scattering codes. ``tails`` is updated in
        place. ``False`` (nothing changed) when ``frame`` is not a canonical batch
        of the model's time kind: the caller then counts it with :meth:`_add_frames`.
        """
        batch = _sorted_batch(frame, codes, len(self.states_.state_names_))
        if batch is None or batch.time_kind != self.time_kind_:
            return False
        vocab = [str(e) for e in self.base_chain_.event_names_]
        v_index = {e: k for k, e in enumerate(vocab)}
        if any(e not in v_index for e in tails.events):  # tails of events the model lacks
            return False
        for e in batch.ev_names:  # as _encode_events: new events follow, sorted
            if e not in v_index:
                v_index[e] = len(vocab)
                vocab.append(e)
        gap = parse_max_gap(self.max_gap, batch.time_kind)
        names, starts, n = batch.names, batch.starts, len(batch.ent)
        row = tails.lookup(names)
        have = tails.count[row]
        first_time = batch.time[starts]
        last_time = tails.time[row, np.maximum(have - 1, 0)]
        if stream:  # fit(..., chunksize=N): ties keep read order; older rows are an error
            older = (have > 0) & (first_time < last_time)
            if older.any():
                raise _older_error(names, older)
            late = older
        else:
            late = (have > 0) & (first_time <= last_time)
        if late.any() and warn:
            _warn_late(names, late)
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
            run_starts=_run_starts(entity, time, gap),
            state_names=tuple(str(s) for s in self.states_.state_names_),
            event_names=tuple(vocab), entity_names=tuple(names.tolist()),
            is_failure=np.asarray(self.states_.is_failure_, dtype=bool).copy(),
            time_kind=batch.time_kind, source_row=source_row,
        )
        if isinstance(self.chain_, EventMarkovChain):
            self.chain_.partial_fit(traj)
        else:  # the transitions among the carried tail rows were counted already
            spec = self.chain_.spec
            n_aug = _Layout(spec, traj.n_states, traj.n_events).A
            new = count_augmented(augment(traj, spec), traj, n_aug)
            if n_carry:
                tail = Trajectories(
                    entity=entity[at_tail], time=time[at_tail], event=event[at_tail],
                    state=state[at_tail], run_starts=_run_starts(entity[at_tail],
                                                                 time[at_tail], gap),
                    state_names=traj.state_names, event_names=traj.event_names,
                    entity_names=traj.entity_names, is_failure=traj.is_failure,
                    time_kind=traj.time_kind, source_row=source_row[at_tail])
                new = new - count_augmented(augment(tail, spec), tail, n_aug)
            self._add_history_counts(new, vocab, traj.state_names, traj.is_failure)
        # each entity's last steps (tails included) replace what was remembered
        t_index = {e: k for k, e in enumerate(tails.events)}
        for e in vocab:
            if e not in t_index:
                t_index[e] = len(tails.events)
                tails.events.append(e)
        v2t = np.array([t_index[e] for e in vocab], dtype=np.int64)
        keep = np.minimum(length, self._tail_length)
        k = np.repeat(row, keep)
        r = np.arange(int(keep.sum())) - np.repeat(np.cumsum(keep) - keep, keep)
        src = np.repeat(block + length - keep, keep) + r
        tails.time[k, r] = time[src]
        tails.event[k, r] = v2t[event[src]]
        tails.state[k, r] = state[src]
        tails.count[row] = keep
        return True

    def _partial_fit_history(self, traj, tail_frame, tail_codes) -> None:
        """Add the new transitions of ``traj`` (carried tail rows excluded) to the counts."""
        self._add_history_counts(self._history_increment(traj, tail_frame, tail_codes),
                                 list(traj.event_names), traj.state_names, traj.is_failure)

    def _history_increment(self, traj, tail_frame, tail_codes) -> np.ndarray:
        """Counts N[e, a, j] of the new transitions of ``traj`` (carried tail rows
        excluded), on the events of ``traj`` (the model's first, new ones after). Additive:
        the dask back end sums them over partitions."""
        spec = self.chain_.spec
        names = list(traj.event_names)
        n_aug = _Layout(spec, traj.n_states, traj.n_events).A
        new = count_augmented(augment(traj, spec), traj, n_aug)
        if len(tail_frame):
            tail = self._encode(tail_frame, tail_codes, self.states_, event_names=names)
            new = new - count_augmented(augment(tail, spec), tail, n_aug)
        return new

    def _add_history_counts(self, new, names, state_names, is_failure) -> None:
        """Merge new counts (on the events ``names``: the model's first) into the chain."""
        spec, chain = self.chain_.spec, self.chain_
        names, n_states = list(names), len(state_names)
        old = _relayout(chain.counts_, spec, chain.base_.event_names_, names, n_states)
        order = np.argsort(np.asarray(names, dtype=object), kind="stable")
        merged = _relayout(old + new, spec, names, [names[k] for k in order], n_states)
        self.chain_ = HistoryChain(spec, self.alpha, self.beta).set_counts(
            merged, state_names, [names[k] for k in order], is_failure)

    def _encode(self, frame, codes, extractor, event_names) -> Trajectories:
        # frames sorted by (entity, time) with text entities (read_histories', the
        # remembered tails) are encoded without factorizing the names again
        traj = _encode_sorted(frame, codes, extractor.state_names_,
                              np.asarray(extractor.is_failure_, dtype=bool), event_names,
                              self.max_gap)
        if traj is not None:
            return traj
        return Trajectories.from_frame(
            frame,
            codes,
            extractor.state_names_,
            np.asarray(extractor.is_failure_, dtype=bool),
            event_names=event_names,
            max_gap=self.max_gap,
        )

    @property
    def _tail_length(self) -> int:
        spec = getattr(self.chain_, "spec", None)
        return 1 if spec is None else spec.tail + 1

    def _remember_tail(self, traj: Trajectories) -> None:
        """Keep each entity's last steps (time, event, state): the carry-over for
        ``partial_fit`` and the history that ``predict`` continues."""
        n = traj.n_steps
        # the last tail_length rows of each entity: n_entities x tail_length, not n
        ends = np.flatnonzero(np.r_[traj.entity[1:] != traj.entity[:-1], True]) if n \
            else np.zeros(0, np.int64)
        starts = np.r_[0, ends[:-1] + 1] if n else ends
        rows = ends[:, None] - np.arange(self._tail_length - 1, -1, -1)[None, :]
        keep = rows[rows >= starts[:, None]]  # ascending: entity, then time
        names = np.asarray(traj.entity_names, dtype=object)
        events = np.asarray(traj.event_names, dtype=object)
        new = pd.DataFrame(
            {"time": traj.time[keep], "event": events[traj.event[keep]],
             "state": traj.state[keep]},
            index=pd.Index(names[traj.entity[keep]], name="entity"),
        )
        old = getattr(self, "last_seen_", None)
        if old is not None and len(old):
            new = pd.concat([old[~old.index.isin(new.index)], new])
        self.last_seen_ = new.sort_index(kind="stable")

    def _prepend_tail(self, frame: pd.DataFrame, codes: np.ndarray, warn: bool,
                      stream: bool = False, interleave: bool = False):
        """The remembered tail rows of the entities in ``frame``, then ``frame``.

        Entities are matched on integer codes: the names in ``frame`` are
        factorized once (read in linear time when ``frame`` is grouped by
        entity, as read_histories returns it), then looked up and grouped as
        codes. With ``interleave``, each entity's tail rows are placed just
        before its own rows instead of all first: the same rows, sorted by
        (entity, time) when ``frame`` is, so encoding them needs no sort
        (``predict``); the returned number of tail rows then is no prefix.
        """
        seen = self.last_seen_
        ent_codes, names = _entity_codes(frame["entity"])
        # hash lookups on object arrays: isin with arrow strings falls back to a Python loop
        pos = pd.Index(names, dtype=object).get_indexer(seen.index.to_numpy(dtype=object))
        hit = pos >= 0
        if not hit.any():
            return frame, codes, 0
        carried, pos = seen[hit], pos[hit]
        n_names = len(names)
        first_time = np.full(n_names, np.iinfo(np.int64).max)
        np.minimum.at(first_time, ent_codes, _time_int(frame).to_numpy(np.int64))
        last_time = np.full(n_names, np.iinfo(np.int64).min)
        np.maximum.at(last_time, pos, carried["time"].to_numpy(np.int64))
        has_tail = np.zeros(n_names, dtype=bool)
        has_tail[pos] = True
        late = has_tail & (first_time <= last_time)
        if stream:  # fit(..., chunksize=N): ties keep read order; older rows are an error
            older = has_tail & (first_time < last_time)
            if older.any():
                raise _older_error(names, older)
            late = older
        if late.any():
            if warn:
                _warn_late(names, late)
            keep = ~late[pos]
            carried, pos = carried[keep], pos[keep]
        if self.time_kind_ == "datetime":
            times = pd.to_datetime(carried["time"].to_numpy(), utc=True)
        else:
            times = carried["time"].to_numpy()
        boundary = pd.DataFrame(
            {
                "entity": carried.index.to_numpy(),
                "time": times,
                "event": carried["event"].to_numpy(),
                "_row": -1,
            }
        )
        both = pd.concat([boundary, frame[["entity", "time", "event", "_row"]]], ignore_index=True)
        both_codes = np.concatenate([carried["state"].to_numpy(np.int64), codes])
        if interleave and len(boundary):
            # the remembered tails are sorted by entity, and so is frame when grouped:
            # two sorted runs, merged in linear time by the stable sort
            order = np.argsort(np.concatenate([pos, ent_codes]), kind="stable")
            both, both_codes = both.take(order).reset_index(drop=True), both_codes[order]
        return both, both_codes, len(boundary)

    # ----------------------------------------------------------------- forecast
    def _check_fitted(self) -> None:
        if not hasattr(self, "chain_"):
            raise NotFittedError(
                "This FaultPredictor is not fitted yet; call fit(histories) or load a model "
                "with markovfault.load_model(path)."
            )

    @property
    def base_chain_(self) -> EventMarkovChain:
        """The chain over base states (the model itself without history-aware states)."""
        self._check_fitted()
        return self.chain_ if isinstance(self.chain_, EventMarkovChain) else self.chain_.base_

    def _table(self, horizon, scenario=None, event_probs=None) -> np.ndarray:
        """P(fail within h) for every (augmented) state, (n_states, horizon)."""
        if isinstance(scenario, str):
            scenario = [s.strip() for s in scenario.split(",") if s.strip()]
        if isinstance(self.chain_, EventMarkovChain):
            return self.chain_.failure_probabilities(horizon, scenario, event_probs=event_probs)
        codes = None
        if scenario is not None:
            scenario = list(scenario)
            if horizon > len(scenario):
                raise ValueError(
                    f"horizon = {horizon} exceeds the scenario's {len(scenario)} events; "
                    "give at least as many events as steps.")
            codes = self.base_chain_.event_codes(scenario[:horizon])
        return self.chain_.failure_probabilities(horizon, codes, event_probs=event_probs)

    def _event_probs(self, event_mix, frame=None, recent_window=None):
        """Event-arrival probabilities for an expected event mix (None: the fitted ones)."""
        if event_mix is None or (isinstance(event_mix, str) and event_mix == "long_run"):
            return None
        Q = self.chain_.event_probs_
        names = list(self.base_chain_.event_names_)
        if isinstance(event_mix, str) and event_mix == "recent":
            if frame is None:
                raise ValueError("event_mix='recent' needs the recent histories to predict from")
            return self._recent_event_probs(frame, recent_window)
        elif isinstance(event_mix, Mapping):
            unknown = sorted(set(map(str, event_mix)) - set(names))
            if unknown:
                raise ConfigError(f"event_mix names unknown events {unknown}; the events are {names}")
            shares = np.array([float(event_mix.get(e, 0.0)) for e in names])
            if (shares < 0).any() or shares.sum() <= 0:
                raise ConfigError("event_mix shares must be >= 0 and not all zero")
            return np.broadcast_to(shares / shares.sum(), Q.shape).copy()
        else:
            raise ConfigError(
                f"event_mix = {event_mix!r}; use 'long_run', 'recent' or {{event: share}}.")
        counts = self.base_chain_.counts_.sum(axis=(1, 2)).astype(float)
        return mix_event_probs(Q, counts / counts.sum(), shares)

    def _recent_event_probs(self, frame, recent_window):
        """Arrival probabilities shifted toward the mix of the trailing window of ``frame``."""
        base = self.base_chain_
        traj = self._encode(frame, self.states_.transform(frame), self.states_,
                            event_names=base.event_names_)
        t = traj.time
        if recent_window is None:
            lo = np.sort(t)[max(len(t) - 1000, 0)] if len(t) else 0
        else:
            lo = t.max() - parse_max_gap(recent_window, traj.time_kind)
        counts = recent_arrivals(traj.state, traj.event, t, traj.is_run_start(),
                                 traj.n_states, base.n_events_, lo, t.max() + 1)
        return self._shifted_event_probs(counts)

    def _shifted_event_probs(self, counts):
        """Arrival probabilities shifted toward recent arrival counts (S, E) (the dask back
        end sums these counts over partitions)."""
        base = self.base_chain_
        if counts.sum() == 0:
            raise HistoryError("the recent window holds no transition to estimate the event mix")
        base_of = (self.chain_.base_state_ if not isinstance(self.chain_, EventMarkovChain)
                   else np.arange(base.n_states_))
        return shift_event_probs(self.chain_.event_probs_, base_of, base.event_probs_, counts)

    def failure_probabilities(
        self, horizon: int, scenario: Sequence[str] | None = None, *, event_mix=None
    ) -> pd.DataFrame:
        """P(fail within h) for every state, as a DataFrame (states x horizons).

        With history-aware states the rows are the augmented states.

        Examples
        --------
        >>> import pandas as pd
        >>> hist = pd.DataFrame({"entity": ["a"] * 3, "time": [1, 2, 3],
        ...                      "status": ["ok", "down", "ok"]})
        >>> FaultPredictor(states={"kind": "categorical", "failure": ["down"]},
        ...                alpha=0, beta=0).fit(hist).failure_probabilities(2)
        horizon    1    2
        state
        down     0.0  1.0
        ok       1.0  1.0
        """
        self._check_fitted()
        if isinstance(event_mix, str) and event_mix == "recent":
            raise ValueError("event_mix='recent' needs histories: use predict(histories, ...)")
        table = self._table(horizon, scenario, self._event_probs(event_mix))
        return pd.DataFrame(
            table,
            index=pd.Index(self.chain_.state_names_, name="state"),
            columns=pd.Index(np.arange(1, table.shape[1] + 1), name="horizon"),
        )

    def predict(
        self,
        histories=None,
        horizon: int = 10,
        scenario: Sequence[str] | str | None = None,
        *,
        event_mix="long_run",
        recent_window=None,
        layout: str = "tidy",
    ) -> pd.DataFrame:
        """Forecast P(fail within h), h = 1..horizon, from each entity's last state.

        Parameters
        ----------
        histories : DataFrame, path, list of them, or None
            Recent histories. Each entity's last step gives its state; with
            history-aware states its earlier steps (and the steps remembered
            from training) give its history. ``None`` forecasts every entity
            the model has seen, from the last steps counted by
            ``fit``/``partial_fit`` (what a scheduled job that updates the
            model incrementally wants).
        horizon : int, default=10
        scenario : sequence of str or comma-separated str, optional
            The next events, in order (a what-if). Events never seen in
            training use the pooled transitions, with a warning.
        event_mix : {'long_run', 'recent'} or dict, default='long_run'
            What the coming events will look like: the fitted arrival
            probabilities; the mix of the last ``recent_window`` of
            ``histories`` (each state's fitted mix reweighted by how much more
            or less often each event arrives lately); or given shares
            ``{event: share}`` for every state.
        recent_window : duration string or int, optional
            The trailing window of ``event_mix='recent'``: a duration for
            timestamps (``"1h"``), a number of time units for integer time.
            Default: the last 1000 steps.
        layout : {'tidy', 'wide'}, default='tidy'
            ``'tidy'``: one row per entity and horizon (below). ``'wide'``: one
            row per entity, columns ``entity, as_of, state, p_fail_1, ...,
            p_fail_<horizon>``; the same numbers as the tidy frame pivoted, in
            a fraction of the memory and time (the probabilities are one
            float64 block, entities x horizons, built without copies).

        Returns
        -------
        DataFrame
            Columns ``entity, as_of, state, horizon, p_fail``: one row per
            entity and horizon, sorted by entity then horizon. ``state`` is
            the base state. Types: ``entity`` categorical (the entities as
            categories, in ascending order), ``state`` categorical (the
            model's states as categories), ``as_of`` datetime64[ns, UTC] (or
            int64 for integer time), ``horizon`` int64, ``p_fail`` float64.
            The columns are not consolidated into 2-D blocks (which would copy
            them); pandas does that later if an operation needs it.

        Examples
        --------
        >>> import pandas as pd
        >>> hist = pd.DataFrame({"entity": ["a"] * 4 + ["b"] * 4, "time": [1, 2, 3, 4] * 2,
        ...                      "status": ["ok", "down", "ok", "ok", "ok", "ok", "ok", "down"]})
        >>> model = FaultPredictor(states={"failure": ["down"]}, alpha=0, beta=0).fit(hist)
        >>> model.predict(hist, horizon=2, layout="wide")
          entity  as_of state  p_fail_1  p_fail_2
        0      a      4    ok       0.4      0.64
        1      b      4  down       0.0      0.40
        """
        self._check_fitted()
        layout = _check_layout(layout)
        if _is_dask(histories):  # forecast partition by partition (markovfault._dask)
            from ._dask import predict_dask

            out = predict_dask(self, histories, horizon, scenario, event_mix, recent_window)
            return out if layout == "tidy" else _tidy_to_wide(out)
        plain = isinstance(self.chain_, EventMarkovChain)
        if histories is None:
            frame = None
            both = self.last_seen_.reset_index()
            both["time"] = (pd.to_datetime(both["time"].to_numpy(), utc=True)
                            if self.time_kind_ == "datetime" else both["time"])
            codes = both.pop("state").to_numpy(np.int64)
            both["_row"] = -1
        else:
            # files: read as codes (categorical); a frame of last steps is read faster
            # as text (about one row per entity: nothing to gain from codes)
            frame, _ = self._read(histories,
                                  categorical=not isinstance(histories, pd.DataFrame))
            codes = self.states_.transform(frame)
            if plain:
                # a plain chain forecasts from the last step alone, and a remembered tail
                # row is never an entity's last: it is carried only when older than all
                # of that entity's steps in frame
                both = frame
            else:
                both, codes, _ = self._prepend_tail(frame, codes, warn=False, interleave=True)
        table = self._table(horizon, scenario, self._event_probs(event_mix, frame, recent_window))
        if plain:
            steps = _sorted_steps(both)
            if steps is not None:  # sorted by (entity, time): the last row of each block
                starts, names, time, time_kind = steps
                parse_max_gap(self.max_gap, time_kind)  # the check encoding makes
                last = np.append(starts[1:] - 1, len(both) - 1)
                base = np.asarray(codes, dtype=np.int64)[last]
                return _forecast_output(names, time[last], time_kind, base,
                                        self.states_.state_names_, table[base], layout)
        traj = self._encode(both, codes, self.states_, event_names=self.base_chain_.event_names_)
        if plain:
            state = traj.state
        else:
            state = augment(traj, self.chain_.spec, n_events=len(self.base_chain_.event_names_))
        return _forecast_frame(traj, state, table, layout)

    # -------------------------------------------------------------- accessors
    @property
    def state_names_(self) -> list:
        """The base states (without history)."""
        return list(self.base_chain_.state_names_)

    @property
    def event_names_(self) -> list:
        return list(self.base_chain_.event_names_)

    @property
    def failure_states_(self) -> list:
        base = self.base_chain_
        return [s for s, f in zip(base.state_names_, base.is_failure_) if f]

    @property
    def n_transitions_(self) -> int:
        self._check_fitted()
        return self.chain_.n_transitions_

    def save(self, path) -> None:
        """Write the fitted model to ``path`` (a safe ``.npz`` file; see
        :func:`markovfault.load_model`)."""
        from .persistence import save_model

        save_model(self, path)

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "chain_")

    def _repr_html_(self) -> str:
        """A table for notebooks: per state, failure mark, transitions seen and
        P(fail within 1, 5, 10); with the events and the number of transitions.
        Unfitted, scikit-learn's estimator diagram."""
        from html import escape

        from sklearn.utils import estimator_html_repr

        if not hasattr(self, "chain_"):
            return estimator_html_repr(self)
        chain = self.chain_
        table = self.failure_probabilities(10)[[1, 5, 10]].round(3)
        table.columns = [f"P(fail within {h})" for h in (1, 5, 10)]
        table.insert(0, "failure", np.where(chain.is_failure_, "✕", ""))
        table.insert(1, "transitions out", np.asarray(chain.counts_).sum(axis=(0, 2)))
        more = f"<p>... and {len(table) - 30} more states</p>" if len(table) > 30 else ""
        return (f"<p><b>FaultPredictor</b>, fitted on {self.n_transitions_:,} transitions; "
                f"{len(table)} states ({int(np.sum(chain.is_failure_))} failure, ✕); "
                f"events: {escape(', '.join(map(str, self.event_names_)))}</p>"
                + table.head(30).to_html() + more)

    def _repr_mimebundle_(self, **kwargs) -> dict:
        """What Jupyter shows: scikit-learn's bundle, with the table of
        :meth:`_repr_html_` once fitted."""
        bundle = super()._repr_mimebundle_(**kwargs)
        if hasattr(self, "chain_"):
            bundle["text/html"] = self._repr_html_()
        return bundle


def _is_dask(obj) -> bool:
    """A dask DataFrame, detected without importing dask."""
    return (type(obj).__module__ or "").startswith("dask") and hasattr(obj, "map_partitions")


def _is_canonical(obj) -> bool:
    """A frame returned by read_histories: canonical columns and the ``_row`` bookkeeping."""
    return (isinstance(obj, pd.DataFrame) and "_row" in obj.columns
            and {"entity", "time", "event"} <= set(obj.columns))


def _is_datetime(frame: pd.DataFrame) -> bool:
    return isinstance(frame["time"].dtype, pd.DatetimeTZDtype) or np.issubdtype(
        np.asarray(frame["time"]).dtype, np.datetime64
    )


def _time_int(frame: pd.DataFrame) -> pd.Series:
    """The time column as int64 (ns since the epoch for timestamps)."""
    t = frame["time"]
    if _is_datetime(frame):
        if isinstance(t.dtype, pd.DatetimeTZDtype):
            t = t.dt.tz_convert("UTC").dt.tz_localize(None)
        return pd.Series(t.to_numpy(dtype="datetime64[ns]").view(np.int64), index=frame.index)
    return t.astype(np.int64)


def _forecast_frame(traj: Trajectories, state: np.ndarray, table: np.ndarray,
                    layout: str = "tidy") -> pd.DataFrame:
    """One row per (entity, horizon) from each entity's last step; vectorised.

    ``state`` indexes the rows of ``table`` (augmented codes with history);
    the ``state`` column shows the base state. ``entity`` and ``state`` are
    categorical: a million entities times fifty horizons stay cheap. See
    :func:`_forecast_output` for the layouts.
    """
    if traj.n_steps == 0:
        raise HistoryError("no rows to forecast from")
    rows = traj.last_index()
    return _forecast_output(np.array(traj.entity_names, dtype=object), traj.time[rows],
                            traj.time_kind, traj.state[rows], traj.state_names,
                            table[state[rows]], layout=layout, entity=traj.entity[rows])


LAYOUTS = ("tidy", "wide")


def _check_layout(layout) -> str:
    if not (isinstance(layout, str) and layout in LAYOUTS):
        raise ValueError(f"layout = {layout!r}; use 'tidy' (one row per entity and horizon) "
                         "or 'wide' (one row per entity, one p_fail column per horizon).")
    return layout


def _forecast_output(names: np.ndarray, as_of: np.ndarray, time_kind: str, base: np.ndarray,
                     state_names, p: np.ndarray, layout: str = "tidy",
                     entity: np.ndarray | None = None) -> pd.DataFrame:
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
    if layout == "wide":
        out = pd.DataFrame(p, columns=[f"p_fail_{h}" for h in range(1, horizon + 1)],
                           copy=False)
        out.insert(0, "entity", _from_codes(entity.copy(), entity_dtype))
        out.insert(1, "as_of", as_of.copy())
        out.insert(2, "state", _from_codes(base.copy(), state_dtype))
        return out
    return pd.DataFrame(
        {
            "entity": _from_codes(np.repeat(entity, horizon), entity_dtype),
            "as_of": as_of.repeat(horizon),
            "state": _from_codes(np.repeat(base, horizon), state_dtype),
            "horizon": np.tile(np.arange(1, horizon + 1, dtype=np.int64), n_ent),
            "p_fail": p.reshape(-1),
        },
        copy=False,
    )


def _tidy_to_wide(tidy: pd.DataFrame) -> pd.DataFrame:
    """The wide layout of a tidy forecast frame (sorted by entity, then horizon 1..H)."""
    horizon = int(tidy["horizon"].max())
    p = tidy["p_fail"].to_numpy(dtype=np.float64).reshape(-1, horizon)
    out = pd.DataFrame(p.copy(), columns=[f"p_fail_{h}" for h in range(1, horizon + 1)])
    first = tidy.iloc[::horizon].reset_index(drop=True)
    for k, name in enumerate(("entity", "as_of", "state")):
        out.insert(k, name, first[name])
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


def _entity_blocks(entity: pd.Series):
    """``(starts, names)`` when the rows are grouped by entity in ascending order.

    ``starts`` (int64) are the positions where each entity's rows begin and
    ``names`` (a fresh object array of str) their labels: the uniques of
    ``pd.factorize(entity.astype(str), sort=True)``, found by comparing each
    row with the next (linear; no hashing, no sorting). Taken only for text
    columns without missing values (what read_histories returns); ``None``
    otherwise, and the caller encodes in general.
    """
    if isinstance(entity.dtype, pd.CategoricalDtype):  # read_histories(categorical=True)
        cats = entity.cat.categories
        codes = entity.cat.codes.to_numpy()
        n = len(codes)
        if not n or codes.min() < 0 or np.any(codes[1:] < codes[:-1]) \
                or not cats.is_monotonic_increasing \
                or pd.api.types.infer_dtype(cats, skipna=False) != "string":
            return None
        names = np.asarray(cats, dtype=object)
        starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
        if len(starts) != len(names):  # unused categories
            return None
        return starts, names.copy()
    if isinstance(entity.dtype, pd.StringDtype):
        values = entity.array
    elif entity.dtype == object and pd.api.types.infer_dtype(entity, skipna=False) == "string":
        values = entity.to_numpy()
    else:
        return None
    n = len(values)
    if n == 0:
        return None
    if n == 1:
        starts = np.zeros(1, dtype=np.int64)
    else:
        left, right = values[:-1], values[1:]
        try:
            if not np.asarray(left <= right, dtype=bool).all():
                return None
            change = np.asarray(left != right, dtype=bool)
        except (TypeError, ValueError):  # missing values (pd.NA), odd storage
            return None
        starts = np.flatnonzero(np.r_[True, change])
    names = values if len(starts) == n else values.take(starts)
    return starts, np.array(names, dtype=object)  # a copy: categories never alias the input


def _time_values(frame: pd.DataFrame):
    """``(time, time_kind)`` as :meth:`Trajectories.from_frame` encodes the time
    column (int64; UTC nanoseconds for timestamps), or ``None`` for other dtypes."""
    t = frame["time"]
    if isinstance(t.dtype, pd.DatetimeTZDtype):
        t = t.dt.tz_convert("UTC").dt.tz_localize(None)
        return t.to_numpy(dtype="datetime64[ns]").view(np.int64), "datetime"
    if isinstance(t.dtype, np.dtype) and t.dtype.kind == "M":
        return t.to_numpy(dtype="datetime64[ns]").view(np.int64), "datetime"
    if isinstance(t.dtype, np.dtype) and t.dtype.kind in "iu":
        return np.asarray(t, dtype=np.int64), "integer"
    return None


def _sorted_steps(frame: pd.DataFrame):
    """``(starts, names, time, time_kind)`` when ``frame`` is sorted by (entity, time)
    with a text entity column (what read_histories returns), else ``None``.

    Sorting such a frame stably by (entity, time) leaves it as it is, so
    entity codes, run boundaries and each entity's last step (the last row
    of its block) follow from ``starts`` without factorizing or sorting.
    """
    if not {"entity", "time"} <= set(frame.columns) or not len(frame):
        return None
    blocks = _entity_blocks(frame["entity"])
    if blocks is None:
        return None
    timed = _time_values(frame)
    if timed is None:
        return None
    (starts, names), (time, time_kind) = blocks, timed
    back = np.flatnonzero(time[1:] < time[:-1]) + 1  # time goes back: only where a block starts
    if len(back) and not np.isin(back, starts).all():
        return None
    return starts, names, time, time_kind


def _encode_sorted(frame: pd.DataFrame, state, state_names, is_failure, event_names,
                   max_gap) -> Trajectories | None:
    """:meth:`Trajectories.from_frame` for a frame already sorted by (entity, time) with
    a text entity column (read_histories' frames, the remembered tails): the same
    trajectories without factorizing the entity names again. ``None`` for any
    other frame (and for invalid input, which from_frame reports)."""
    from .trajectories import _encode_events, _failure_mask, _run_starts

    n = len(frame)
    state = np.asarray(state)
    if state.shape != (n,) or "event" not in frame.columns:
        return None
    state_names = tuple(str(s) for s in state_names)
    if n and (state.min() < 0 or state.max() >= len(state_names)):
        return None
    steps = _sorted_steps(frame)
    if steps is None:
        return None
    starts, names, time, time_kind = steps
    failure = _failure_mask(is_failure, state_names)
    gap = parse_max_gap(max_gap, time_kind)
    entity = np.repeat(np.arange(len(starts), dtype=np.int64), np.diff(np.r_[starts, n]))
    ev = frame["event"]
    if not isinstance(ev.dtype, pd.CategoricalDtype):
        ev = ev.astype(str)
    ev_codes, ev_vocab = _encode_events(ev, event_names)
    time = np.asarray(time, dtype=np.int64)  # (trajectories never write to their arrays)
    return Trajectories(
        entity=entity,
        time=time,
        event=np.asarray(ev_codes).astype(np.int64),
        state=state.astype(np.int64),
        run_starts=_run_starts(entity, time, gap),
        state_names=state_names,
        event_names=tuple(ev_vocab),
        entity_names=tuple(names.tolist()),
        is_failure=failure,
        time_kind=time_kind,
        source_row=(np.asarray(frame["_row"], dtype=np.int64) if "_row" in frame.columns
                    else np.arange(n, dtype=np.int64)),
    )


def _entity_codes(entity: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Code of each row and the ascending names they index (object array of str):
    ``pd.factorize(entity.astype(str), sort=True)``, without hashing for grouped rows."""
    blocks = _entity_blocks(entity)
    if blocks is not None:
        starts, names = blocks
        lengths = np.diff(np.r_[starts, len(entity)])
        return np.repeat(np.arange(len(names), dtype=np.int64), lengths), names
    codes, names = pd.factorize(entity.astype(str), sort=True)
    return codes.astype(np.int64, copy=False), np.asarray(names, dtype=object)


def _older_error(names: np.ndarray, older: np.ndarray) -> HistoryError:
    """fit(..., chunksize=N) met a step older than the entity's last one counted."""
    return HistoryError(
        f"entity {names[np.flatnonzero(older)[0]]!r}: a batch holds a step older than its "
        f"last step in an earlier batch ({int(older.sum())} entities affected); fit(..., "
        "chunksize=N) needs each entity's rows in time order across batches. "
        "Fix: sort the export by time (or by entity and time), or fit in memory "
        "without chunksize.")


def _warn_late(names: np.ndarray, late: np.ndarray) -> None:
    """partial_fit met steps no later than the entity's last one counted."""
    logger.warning(
        "%d entities have steps no later than their last step already counted "
        "(e.g. %s); those steps start a new run and the transition into them is "
        "not counted.",
        int(late.sum()), list(names[late][:3]),
    )


class _Batch:
    """The rows of a canonical batch as int64 arrays sorted stably by (entity, time):
    entity codes ``ent`` into ``names`` (ascending, unique, all used; object array
    of str), block ``starts``, ``time`` (UTC nanoseconds for timestamps), event codes
    ``ev`` into ``ev_names`` (ascending), state codes ``state`` and ``row`` (``_row``)."""

    __slots__ = ("ent", "names", "starts", "time", "time_kind", "ev", "ev_names", "state",
                 "row")


def _sorted_batch(frame: pd.DataFrame, state, n_states: int) -> _Batch | None:
    """A canonical batch and its state codes as :class:`_Batch`, encoded as
    :meth:`Trajectories.from_frame` encodes them (entity and event labels
    factorized as text in sorted order, rows sorted stably by (entity, time)),
    from the categorical codes when the columns are categorical. ``None`` for
    anything else (no rows, other dtypes, missing labels, invalid states): the
    caller then takes the general path, which words the errors."""
    from ._fastread import group_order
    from .trajectories import _factorize_sorted

    if not {"entity", "time", "event", "_row"} <= set(frame.columns):
        return None
    n = len(frame)
    state = np.asarray(state)
    if n == 0 or state.shape != (n,) or state.dtype.kind not in "iu" \
            or state.min() < 0 or state.max() >= n_states:
        return None
    timed = _time_values(frame)
    if timed is None:
        return None
    out = _Batch()
    out.time, out.time_kind = timed
    blocks = _entity_blocks(frame["entity"])
    if blocks is not None:  # grouped by entity (read_histories' batches): no hashing
        out.starts, out.names = blocks
        ent = np.repeat(np.arange(len(out.names), dtype=np.int64),
                        np.diff(np.r_[out.starts, n]))
    else:
        ent, names = _factorize_sorted(frame["entity"])
        ent = np.asarray(ent, dtype=np.int64)
        if ent.min() < 0:
            return None
        out.names = np.array(names, dtype=object)  # str: factorized as text
    ev, ev_names = _factorize_sorted(frame["event"])
    ev = np.asarray(ev)
    if ev.min() < 0:
        return None
    out.ev_names = [str(e) for e in ev_names]
    out.ev = ev
    out.state = state.astype(np.int64, copy=False)
    out.row = np.asarray(frame["_row"], dtype=np.int64)
    order = group_order(ent, out.time, len(out.names))
    if order is not None:  # as from_frame: stable by (entity, time)
        ent, out.time, out.ev = ent[order], out.time[order], out.ev[order]
        out.state, out.row = out.state[order], out.row[order]
        blocks = None
    if blocks is None:
        out.starts = np.flatnonzero(np.r_[True, ent[1:] != ent[:-1]])
    out.ent = ent
    return out


def _union_sorted(old: np.ndarray, new: np.ndarray):
    """``(union, pos_old, pos_new)``: the union of two ascending arrays of unique str
    (object arrays) and where each element of either lands in it.

    Stable-sorting the concatenation of two sorted runs is a linear merge for
    numpy's timsort, and comparing neighbours finds the shared names: cheaper
    than hashing a million Python strings.
    """
    if not len(old):
        return new, np.zeros(0, np.int64), np.arange(len(new), dtype=np.int64)
    both = np.concatenate([old, new])
    order = np.argsort(both, kind="stable")
    merged = both[order]
    first = np.empty(len(merged), dtype=bool)
    first[0] = True
    first[1:] = merged[1:] != merged[:-1]
    pos = np.empty(len(both), dtype=np.int64)
    pos[order] = np.cumsum(first) - 1
    union = old if first.sum() == len(old) else merged[first]
    return union, pos[:len(old)], pos[len(old):]


class _Tails:
    """The remembered last steps of every entity (``last_seen_``) as integer arrays,
    what ``fit(..., chunksize=N)`` carries from batch to batch and ``partial_fit``
    works on.

    ``names`` are the entities (ascending, unique; object array of str); row ``k``
    of ``time``, ``event`` and ``state`` (shape ``(n_entities, width)``) holds the
    last ``count[k]`` steps of entity ``names[k]`` in time order, left-aligned.
    Event codes index ``events``, a list that only grows.
    """

    def __init__(self, names, count, time, event, state, events):
        self.names, self.count = names, count
        self.time, self.event, self.state = time, event, state
        self.events = list(events)

    @classmethod
    def from_frame(cls, seen, length: int) -> "_Tails | None":
        """From ``last_seen_`` (``None`` when it is not the frame that fit makes)."""
        if not isinstance(seen, pd.DataFrame) or not {"time", "event", "state"} <= set(seen):
            return None
        n = len(seen)
        entity = seen.index.to_numpy(dtype=object)
        time = seen["time"].to_numpy()
        event = seen["event"].to_numpy(dtype=object)
        state = seen["state"].to_numpy()
        if time.dtype.kind not in "iu" or state.dtype.kind not in "iu" or (
                n and (pd.api.types.infer_dtype(entity, skipna=False) != "string"
                       or pd.api.types.infer_dtype(event, skipna=False) != "string")):
            return None
        if n > 1 and not (entity[1:] >= entity[:-1]).all():
            order = np.argsort(entity, kind="stable")
            entity, time, event, state = entity[order], time[order], event[order], state[order]
        starts = np.flatnonzero(np.r_[True, entity[1:] != entity[:-1]]) if n \
            else np.zeros(0, np.int64)
        count = np.diff(np.r_[starts, n]).astype(np.int64)
        width = max(length, int(count.max()) if n else 0)
        k = np.repeat(np.arange(len(starts)), count)
        r = np.arange(n) - np.repeat(starts, count)
        ev_codes, ev_names = pd.factorize(event)
        arrays = []
        for values in (time, ev_codes, state):
            a = np.zeros((len(starts), width), dtype=np.int64)
            a[k, r] = values
            arrays.append(a)
        return cls(entity[starts], count, *arrays, [str(e) for e in ev_names])

    @property
    def width(self) -> int:
        return self.time.shape[1]

    def lookup(self, names: np.ndarray) -> np.ndarray:
        """The rows of ``names`` (ascending, unique), adding the new ones (no steps yet)."""
        union, pos_old, pos_new = _union_sorted(self.names, names)
        if len(union) != len(self.names):
            count = np.zeros(len(union), dtype=np.int64)
            count[pos_old] = self.count
            self.count = count
            for attr in ("time", "event", "state"):
                a = np.zeros((len(union), self.width), dtype=np.int64)
                a[pos_old] = getattr(self, attr)
                setattr(self, attr, a)
            self.names = union
        return pos_new

    def to_frame(self) -> pd.DataFrame:
        """``last_seen_``: one row per remembered step, sorted by entity, then time."""
        rows = np.flatnonzero(self.count)
        count = self.count[rows]
        k = np.repeat(rows, count)
        r = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
        events = np.asarray(self.events, dtype=object)
        return pd.DataFrame(
            {"time": self.time[k, r], "event": events[self.event[k, r]],
             "state": self.state[k, r]},
            index=pd.Index(self.names[k], name="entity"),
        )


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


def shift_event_probs(event_probs: np.ndarray, base_of: np.ndarray, base_event_probs: np.ndarray,
                      recent_counts: np.ndarray, strength: float = 500.0) -> np.ndarray:
    """Event-arrival probabilities under the recent event mix, state by state.

    ``recent_counts[s, e]`` counts the events that arrived lately in base
    state ``s``. Each base state's recent mix is estimated with ``strength``
    pseudo-counts toward its long-run mix reweighted by how the overall mix
    has shifted (``base_event_probs[s, e] * r_e``, with ``r_e`` the recent
    over the long-run share of ``e`` among all arrivals), so that states
    seldom visited lately still get a sensible mix. Every (augmented)
    state's arrival row is then reweighted by its base state's ratio of
    recent to long-run mix:

    ``Q'[a, e] ∝ Q[a, e] * recent[s(a), e] / long_run[s(a), e]``.

    When the recent counts follow the long-run mix exactly, ``Q' = Q``.

    Examples
    --------
    >>> Q = np.array([[0.8, 0.2], [0.5, 0.5]])
    >>> same = shift_event_probs(Q, np.array([0, 1]), Q, np.array([[80, 20], [50, 50]]), 0.0)
    >>> bool(np.allclose(same, Q))
    True
    >>> shift_event_probs(Q, np.array([0, 1]), Q, np.array([[50, 50], [50, 50]]), 0.0)[0]
    array([0.5, 0.5])
    """
    Qb = np.asarray(base_event_probs, dtype=np.float64)
    recent_counts = np.asarray(recent_counts, dtype=np.float64)
    rows = recent_counts.sum(axis=1, keepdims=True)
    # the overall shift, measured against what the long-run mix predicts for these visits
    expected = (rows * Qb).sum(axis=0)
    observed = recent_counts.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(expected > 0, observed / expected, 1.0)
        target = Qb * r[None, :]
        target = target / np.where(target.sum(axis=1, keepdims=True) > 0,
                                   target.sum(axis=1, keepdims=True), 1.0)
        recent = (recent_counts + strength * target) / (rows + strength)
        recent = np.where(rows + strength > 0, recent, target)
        ratio = np.where(Qb > 0, recent / Qb, 0.0)
    w = event_probs * ratio[base_of]
    sums = w.sum(axis=1, keepdims=True)
    return np.where(sums > 0, w / np.where(sums > 0, sums, 1.0), event_probs)


def recent_arrivals(state: np.ndarray, event: np.ndarray, time: np.ndarray, is_start: np.ndarray,
                    n_states: int, n_events: int, lo, hi) -> np.ndarray:
    """Counts (S, E) of events arriving in each base state with ``lo <= time < hi``."""
    prev = np.r_[0, state[:-1]]
    ok = ~is_start & (time >= lo) & (time < hi) & (event < n_events)
    return np.bincount(prev[ok] * n_events + event[ok],
                       minlength=n_states * n_events).reshape(n_states, n_events)


def recent_event_shares(frame: pd.DataFrame, event_names, window=None) -> np.ndarray:
    """Shares of each known event among the steps of the trailing ``window``."""
    times = _time_int(frame).to_numpy()
    if len(times) == 0:
        raise HistoryError("no rows to estimate the recent event mix from")
    if window is None:
        keep = np.argsort(times, kind="stable")[-1000:]
    else:
        width = parse_max_gap(window, "datetime" if _is_datetime(frame) else "integer")
        keep = np.flatnonzero(times > times.max() - width)
    codes = pd.Index(list(event_names)).get_indexer(frame["event"].to_numpy()[keep])
    counts = np.bincount(codes[codes >= 0], minlength=len(event_names)).astype(float)
    if counts.sum() == 0:
        raise HistoryError("the recent window holds no known event")
    return counts / counts.sum()


def _next_true(mask: np.ndarray) -> np.ndarray:
    """For each position, the index of the first True at or after it (mask ends True)."""
    n = len(mask)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    pos = np.where(mask, np.arange(n), n)
    return np.minimum.accumulate(pos[::-1])[::-1]


def _relayout(counts: np.ndarray, spec: HistorySpec, old_events, new_events,
              n_states: int) -> np.ndarray:
    """Counts N[e, a, j] re-indexed from one event vocabulary to another.

    Events keep their names; with ``entering_event`` the augmented codes
    change too, and are mapped component by component.
    """
    old_events, new_events = list(old_events), list(new_events)
    if old_events == new_events:
        return counts
    pos = {e: k for k, e in enumerate(new_events)}
    ev_map = np.array([pos[e] for e in old_events], dtype=np.int64)
    old = _Layout(spec, n_states, len(old_events))
    new = _Layout(spec, n_states, len(new_events))
    comps = old.components(np.arange(old.A))
    if spec.entering_event:
        k = len(old.radices) - 1
        v = comps[k]
        comps[k] = np.where(v < len(old_events), ev_map[np.minimum(v, len(ev_map) - 1)],
                            len(new_events))
    a_map = (comps * new.strides[:, None]).sum(axis=0)
    out = np.zeros((len(new_events), new.A, n_states), dtype=np.int64)
    out[np.ix_(ev_map, a_map, np.arange(n_states))] += counts
    return out
