"""The encoded, sorted representation every kernel reads.

:class:`Trajectories` holds the histories after state extraction as flat
numpy arrays sorted by (entity, time), plus the vocabularies that give the
integer codes their names. Nothing below it knows about pandas or files;
nothing above it loops over rows in Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import pandas as pd

from ._constants import IMPLICIT_EVENT
from ._sorting import group_order
from ._timecodec import parse_max_gap, time_values
from .exceptions import ConfigError, HistoryError

__all__ = ["Trajectories", "parse_max_gap", "group_codes", "CARRIED"]

#: The column of a frame of remembered last steps that holds the group context they were counted with
#: (:attr:`Trajectories.group_carried`; -1 on the rows whose context is counted from the histories).
CARRIED = "_group_failures"


@dataclass(eq=False)
class Trajectories:
    """Encoded histories, sorted by (entity, time), as numpy arrays.

    A *run* is a stretch of one entity's history without a gap larger than
    ``max_gap``; transitions are counted only inside runs. Without gaps each
    entity is one run.

    Parameters
    ----------
    entity : ndarray of shape (n_steps,), int64
        Entity code of each step (index into ``entity_names``).
    time : ndarray of shape (n_steps,), int64
        Time of each step: nanoseconds since the epoch (UTC) when
        ``time_kind == 'datetime'``, the sequence number otherwise.
    event : ndarray of shape (n_steps,), int64
        Code of the event that triggered each step (index into ``event_names``).
    state : ndarray of shape (n_steps,), int64
        State the entity ended in at each step (index into ``state_names``).
    run_starts : ndarray of shape (n_runs,), int64
        Positions where each run begins; ``run_starts[0] == 0``.
    state_names, event_names, entity_names : tuple of str
        The vocabularies.
    is_failure : ndarray of shape (n_states,), bool
        Which states are failures.
    time_kind : {'datetime', 'integer'}
    source_row : ndarray of shape (n_steps,), int64, optional
        The row of the input each step came from (-1 for a step added by
        :func:`mark_ends`).
    is_end : ndarray of shape (n_states,), bool, optional
        Which states are end states (see :func:`mark_ends`).
    group : ndarray of shape (n_steps,), int64, optional
        The group of each step's entity (the input's ``group`` column, in sorted order of the
        group names; see :func:`group_codes`).
    group_names : tuple of str, optional
        The names of the group codes.
    group_carried : ndarray of shape (n_steps,), int64, optional
        The group context of the steps counted before (the remembered last steps a later batch
        continues, from the input's ``_group_failures`` column), -1 for the steps whose context is
        counted here.
    group_memory : ndarray of shape (3, n_failures), int64, optional
        Failures of group members remembered from earlier batches that are not steps here: their
        group code, entity code (-1 for an entity without steps here) and time. The group context
        counts them with the failures among the steps.

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"entity": ["a", "a", "a", "b", "b"],
    ...                       "time": [1, 2, 3, 1, 2],
    ...                       "event": ["x", "y", "x", "x", "x"]})
    >>> traj = Trajectories.from_frame(frame, state=[0, 1, 0, 0, 0],
    ...                                state_names=["ok", "down"], failure=["down"])
    >>> traj
    Trajectories(n_steps=5, n_entities=2, n_runs=2, n_transitions=3, n_states=2, n_events=2)
    >>> traj.run_starts
    array([0, 3])
    """

    entity: np.ndarray
    time: np.ndarray
    event: np.ndarray
    state: np.ndarray
    run_starts: np.ndarray
    state_names: tuple
    event_names: tuple
    entity_names: tuple
    is_failure: np.ndarray
    time_kind: str = "integer"
    source_row: np.ndarray | None = field(default=None, repr=False)
    #: which states are end states (absorbing, never failures); None: no end states
    is_end: np.ndarray | None = field(default=None, repr=False)
    #: the group code of each step (one group per entity, see :func:`group_codes`); None: no groups
    group: np.ndarray | None = field(default=None, repr=False)
    #: the names of the group codes
    group_names: tuple | None = field(default=None, repr=False)
    #: the group context of steps counted before (remembered tails), -1 elsewhere; None: none
    group_carried: np.ndarray | None = field(default=None, repr=False)
    #: remembered failures of group members that are not steps here: (group, entity, time) x n
    group_memory: np.ndarray | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ build
    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        state: Sequence[int] | np.ndarray,
        state_names: Sequence[str],
        failure: Sequence[str] | np.ndarray = (),
        *,
        event_names: Sequence[str] | None = None,
        max_gap=None,
    ) -> "Trajectories":
        """Encode a canonical history frame whose states are already extracted.

        Parameters
        ----------
        frame : DataFrame
            Canonical frame (columns ``entity``, ``time``, ``event``), as
            returned by :func:`markovfault.read_histories`. Rows need not be
            sorted: they are sorted stably by (entity, time) here.
        state : array-like of int of shape (n_rows,)
            State code of each row, in the row order of ``frame``.
        state_names : sequence of str
            Names of the state codes.
        failure : sequence of str or bool array, default=()
            Failure states, by name or as a mask over ``state_names``.
        event_names : sequence of str, optional
            A fixed event vocabulary (a fitted model's). Events outside it are
            appended at the end, so codes of known events never change.
        max_gap : None, int or duration, default=None
            Split an entity's history where two consecutive steps are further
            apart than this (see :func:`parse_max_gap`).
        """
        for col in ("entity", "time"):
            if col not in frame.columns:
                raise HistoryError(
                    f"the history frame has no {col!r} column; read it with "
                    "markovfault.read_histories, which names the columns of the contract."
                )
        n = len(frame)
        state = np.asarray(state)
        if state.shape != (n,):
            raise ValueError(f"state has shape {state.shape}, expected ({n},) (one per row)")
        state_names = tuple(str(s) for s in state_names)
        n_states = len(state_names)
        if n and (state.min() < 0 or state.max() >= n_states):
            raise ValueError(f"state codes must lie in 0..{n_states - 1}")
        is_failure = failure_mask(failure, state_names)

        timed = time_values(frame)
        if timed is None:
            time, time_kind = np.asarray(frame["time"], dtype=np.int64), "integer"
        else:
            time, time_kind = timed

        ent_codes, ent_names = factorize_sorted(frame["entity"])
        if "event" in frame.columns:
            ev = frame["event"]
        else:
            ev = np.full(n, IMPLICIT_EVENT, dtype=object)
        ev_codes, ev_vocab = encode_events(ev, event_names)

        order = group_order(ent_codes, time, len(ent_names))  # stable: entity, then time
        if order is None:  # already sorted (as read_histories returns frames)
            order = slice(None)
        entity = ent_codes[order].astype(np.int64)
        time = time[order]
        if "_row" in frame.columns:
            source_row = np.asarray(frame["_row"], dtype=np.int64)[order]
        elif isinstance(order, slice):
            source_row = np.arange(n, dtype=np.int64)
        else:
            source_row = order.astype(np.int64)
        traj = cls(
            entity=entity,
            time=time,
            event=ev_codes[order].astype(np.int64),
            state=state[order].astype(np.int64, copy=False),
            run_starts=np.zeros(0, dtype=np.int64),
            state_names=state_names,
            event_names=tuple(ev_vocab),
            entity_names=tuple(ent_names.astype(object).tolist()),
            is_failure=is_failure,
            time_kind=time_kind,
            source_row=source_row,
        )
        traj.run_starts = run_starts_of(entity, time, parse_max_gap(max_gap, time_kind))
        if "group" in frame.columns:
            grp = np.asarray(frame["group"], dtype=object)
            traj.group, traj.group_names = group_codes(
                grp if isinstance(order, slice) else grp[order], entity, traj.entity_names,
                return_names=True)
        if CARRIED in frame.columns:
            traj.group_carried = np.asarray(frame[CARRIED], dtype=np.int64)[order]
        return traj

    @classmethod
    def from_codes(
        cls,
        state,
        event=None,
        lengths=None,
        *,
        state_names: Sequence[str] | None = None,
        event_names: Sequence[str] | None = None,
        failure: Sequence[str] | np.ndarray = (),
    ) -> "Trajectories":
        """Wrap integer codes that are already sorted, one run after another.

        The array-level entry point (like hmmlearn's ``fit(X, lengths)``):
        no copying beyond the casts to int64, no sorting.

        Parameters
        ----------
        state : array-like of int of shape (n_steps,)
        event : array-like of int of shape (n_steps,), optional
            Event codes; ``None`` means one implicit event.
        lengths : array-like of int, optional
            Length of each consecutive history; must sum to ``n_steps``.
            ``None`` means one history.
        state_names, event_names : sequence of str, optional
            Default ``"0"``, ``"1"``, ... up to the largest code.
        failure : sequence of str or bool array, default=()

        Examples
        --------
        >>> traj = Trajectories.from_codes([0, 1, 1, 0, 0], lengths=[3, 2],
        ...                                state_names=["ok", "down"], failure=["down"])
        >>> traj.run_starts, traj.n_transitions
        (array([0, 3]), 3)
        """
        state = np.asarray(state, dtype=np.int64)
        n = state.shape[0]
        event = np.zeros(n, dtype=np.int64) if event is None else np.asarray(event, dtype=np.int64)
        if event.shape != (n,):
            raise ValueError(f"event has shape {event.shape}, expected ({n},)")
        if lengths is None:
            lengths = np.array([n], dtype=np.int64) if n else np.zeros(0, dtype=np.int64)
        lengths = np.asarray(lengths, dtype=np.int64)
        if (lengths < 1).any() or lengths.sum() != n:
            raise ValueError(
                f"lengths {lengths[:5].tolist()}... must be positive and sum to {n} steps"
            )
        if state_names is None:
            state_names = [str(k) for k in range(int(state.max()) + 1 if n else 1)]
        if event_names is None:
            event_names = (
                [IMPLICIT_EVENT] if not n or event.max() == 0
                else [str(k) for k in range(int(event.max()) + 1)]
            )
        state_names = tuple(str(s) for s in state_names)
        if n and (state.min() < 0 or state.max() >= len(state_names)):
            raise ValueError(f"state codes must lie in 0..{len(state_names) - 1}")
        if n and (event.min() < 0 or event.max() >= len(event_names)):
            raise ValueError(f"event codes must lie in 0..{len(event_names) - 1}")
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        entity = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
        return cls(
            entity=entity,
            time=np.arange(n, dtype=np.int64) - np.repeat(starts, lengths),
            event=event,
            state=state,
            run_starts=starts if n else np.zeros(0, dtype=np.int64),
            state_names=state_names,
            event_names=tuple(str(e) for e in event_names),
            entity_names=tuple(str(k) for k in range(len(lengths))),
            is_failure=failure_mask(failure, state_names),
            time_kind="integer",
        )

    # ------------------------------------------------------------ properties
    @property
    def n_steps(self) -> int:
        return int(self.state.shape[0])

    @property
    def n_states(self) -> int:
        return len(self.state_names)

    @property
    def n_events(self) -> int:
        return len(self.event_names)

    @property
    def n_entities(self) -> int:
        return len(self.entity_names)

    @property
    def n_runs(self) -> int:
        return int(self.run_starts.shape[0])

    @property
    def n_transitions(self) -> int:
        return self.n_steps - self.n_runs

    def is_run_start(self) -> np.ndarray:
        """Boolean mask of shape (n_steps,): True where a run begins."""
        mask = np.zeros(self.n_steps, dtype=bool)
        mask[self.run_starts] = True
        return mask

    def last_index(self) -> np.ndarray:
        """Position of each entity's last step, shape (n_entities,)."""
        if self.n_steps == 0:
            return np.zeros(0, dtype=np.int64)
        ends = np.flatnonzero(np.diff(self.entity)) if self.n_steps > 1 else np.zeros(0, np.int64)
        return np.append(ends, self.n_steps - 1).astype(np.int64)

    def __repr__(self) -> str:
        return (
            f"Trajectories(n_steps={self.n_steps}, n_entities={self.n_entities}, "
            f"n_runs={self.n_runs}, n_transitions={self.n_transitions}, "
            f"n_states={self.n_states}, n_events={self.n_events})"
        )


def failure_mask(failure, state_names: tuple) -> np.ndarray:
    arr = np.asarray(failure)
    if arr.dtype == bool:
        if arr.shape != (len(state_names),):
            raise ValueError("a boolean failure mask needs one entry per state")
        return arr.copy()
    names = [str(f) for f in failure]
    unknown = [f for f in names if f not in state_names]
    if unknown:
        raise ConfigError(
            f"failure states {unknown} are not states; the states are {list(state_names)}."
        )
    return np.isin(np.asarray(state_names, dtype=object), names)


def factorize_sorted(values) -> tuple[np.ndarray, np.ndarray]:
    """``pd.factorize(values.astype(str), sort=True)``, without building strings
    for categorical columns (what ``read_histories(..., categorical=True)`` returns)."""
    if isinstance(getattr(values, "dtype", None), pd.CategoricalDtype):
        cats = values.cat.categories
        codes = values.cat.codes.to_numpy()
        if (pd.api.types.is_string_dtype(cats.dtype) or cats.dtype == object) \
                and not (codes < 0).any():
            names = np.asarray(cats.astype(str), dtype=object)
            used = np.bincount(codes, minlength=len(names)) > 0
            present = names[used]
            order = np.argsort(present, kind="stable") if len(present) > 1 else np.arange(
                len(present))
            if used.all() and np.array_equal(order, np.arange(len(names))):
                return codes, present  # sorted categories, all used (read_histories')
            remap = np.full(len(names), -1, dtype=np.int64)
            remap[np.flatnonzero(used)[order]] = np.arange(len(present))
            return remap[codes], present[order]
    if isinstance(values, np.ndarray):
        values = pd.Series(values, dtype=object)
    return pd.factorize(values.astype(str), sort=True)  # fast on arrow strings


def encode_events(ev, event_names) -> tuple[np.ndarray, list]:
    """Codes for event labels; a fixed vocabulary keeps its codes, new labels follow."""
    codes, uniques = factorize_sorted(ev)
    uniques = [str(u) for u in uniques]
    if event_names is None:
        return codes, uniques
    vocab = [str(e) for e in event_names]
    index = {name: k for k, name in enumerate(vocab)}
    new = [u for u in uniques if u not in index]
    for name in new:
        index[name] = len(vocab)
        vocab.append(name)
    remap = np.array([index[u] for u in uniques], dtype=np.int64)  # one entry per distinct label
    return (remap[codes] if len(codes) else codes), vocab


def run_starts_of(entity: np.ndarray, time: np.ndarray, max_gap: int | None) -> np.ndarray:
    n = entity.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    new = np.empty(n, dtype=bool)
    new[0] = True
    new[1:] = entity[1:] != entity[:-1]
    if max_gap is not None:
        new[1:] |= (time[1:] - time[:-1]) > max_gap
    return np.flatnonzero(new).astype(np.int64)


# ------------------------------------------------------- the one frame encoder
def entity_blocks(entity: pd.Series):
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


def sorted_steps(frame: pd.DataFrame):
    """``(starts, names, time, time_kind)`` when ``frame`` is sorted by (entity, time)
    with a text entity column (what read_histories returns), else ``None``.

    Sorting such a frame stably by (entity, time) leaves it as it is, so
    entity codes, run boundaries and each entity's last step (the last row
    of its block) follow from ``starts`` without factorizing or sorting.
    """
    if not {"entity", "time"} <= set(frame.columns) or not len(frame):
        return None
    blocks = entity_blocks(frame["entity"])
    if blocks is None:
        return None
    timed = time_values(frame)
    if timed is None:
        return None
    (starts, names), (time, time_kind) = blocks, timed
    back = np.flatnonzero(time[1:] < time[:-1]) + 1  # time goes back: only where a block starts
    if len(back) and not np.isin(back, starts).all():
        return None
    return starts, names, time, time_kind


def encode_sorted(frame: pd.DataFrame, state, state_names, is_failure, event_names,
                   max_gap) -> Trajectories | None:
    """:meth:`Trajectories.from_frame` for a frame already sorted by (entity, time) with
    a text entity column (read_histories' frames, the remembered tails): the same
    trajectories without factorizing the entity names again. ``None`` for any
    other frame (and for invalid input, which from_frame reports)."""
    n = len(frame)
    state = np.asarray(state)
    if state.shape != (n,) or "event" not in frame.columns:
        return None
    state_names = tuple(str(s) for s in state_names)
    if n and (state.min() < 0 or state.max() >= len(state_names)):
        return None
    steps = sorted_steps(frame)
    if steps is None:
        return None
    starts, names, time, time_kind = steps
    failure = failure_mask(is_failure, state_names)
    gap = parse_max_gap(max_gap, time_kind)
    entity = np.repeat(np.arange(len(starts), dtype=np.int64), np.diff(np.r_[starts, n]))
    ev = frame["event"]
    if not isinstance(ev.dtype, pd.CategoricalDtype):
        ev = ev.astype(str)
    ev_codes, ev_vocab = encode_events(ev, event_names)
    time = np.asarray(time, dtype=np.int64)  # (trajectories never write to their arrays)
    group, group_names = (group_codes(np.asarray(frame["group"], dtype=object), entity,
                                      tuple(names.tolist()), return_names=True)
                          if "group" in frame.columns else (None, None))
    return Trajectories(
        entity=entity,
        time=time,
        event=np.asarray(ev_codes).astype(np.int64),
        state=state.astype(np.int64),
        run_starts=run_starts_of(entity, time, gap),
        state_names=state_names,
        event_names=tuple(ev_vocab),
        entity_names=tuple(names.tolist()),
        is_failure=failure,
        time_kind=time_kind,
        source_row=(np.asarray(frame["_row"], dtype=np.int64) if "_row" in frame.columns
                    else np.arange(n, dtype=np.int64)),
        group=group,
        group_names=group_names,
        group_carried=(np.asarray(frame[CARRIED], dtype=np.int64) if CARRIED in frame.columns
                       else None),
    )


def group_codes(group, entity: np.ndarray, entity_names, return_names: bool = False):
    """The code of each step's group (over the sorted group names), checking that every entity
    stays in one group; with ``return_names``, the names too.

    Raises
    ------
    HistoryError
        A missing group, or an entity in more than one group (naming the entity and its groups).

    Examples
    --------
    >>> group_codes(np.array(["b", "b", "a"], dtype=object), np.array([0, 0, 1]), ("x", "y")).tolist()
    [1, 1, 0]
    """
    group = pd.Series(np.asarray(group, dtype=object))
    missing = group.isna().to_numpy()
    if missing.any():
        who = entity_names[int(entity[np.flatnonzero(missing)[0]])]
        raise HistoryError(f"entity {who!r} has a row without a group: every row needs one in the "
                           "group column. Fix: fill the group of every row, or leave [columns] group "
                           "unset.")
    codes, vocab = pd.factorize(group.astype(str), sort=True)
    codes = codes.astype(np.int64)
    entity = np.asarray(entity, dtype=np.int64)
    if len(codes):
        n_ent = int(entity.max()) + 1
        lo = np.full(n_ent, np.iinfo(np.int64).max)
        hi = np.full(n_ent, -1)
        np.minimum.at(lo, entity, codes)
        np.maximum.at(hi, entity, codes)
        bad = np.flatnonzero((hi >= 0) & (lo != hi))
        if len(bad):
            k = int(bad[0])
            names = sorted(set(group.astype(str)[entity == k]))
            raise HistoryError(
                f"entity {entity_names[k]!r} is in more than one group ({', '.join(map(repr, names))}"
                f"{'' if len(bad) == 1 else f'; {len(bad) - 1} more entities too'}): the group context "
                "counts the failures of an entity's group, so an entity must stay in one group. Fix: "
                "give each entity one group (or name the entity by its group, e.g. entity@group).")
    return (codes, tuple(str(g) for g in vocab)) if return_names else codes


def entity_codes(entity: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Code of each row and the ascending names they index (object array of str):
    ``pd.factorize(entity.astype(str), sort=True)``, without hashing for grouped rows."""
    blocks = entity_blocks(entity)
    if blocks is not None:
        starts, names = blocks
        lengths = np.diff(np.r_[starts, len(entity)])
        return np.repeat(np.arange(len(names), dtype=np.int64), lengths), names
    codes, names = pd.factorize(entity.astype(str), sort=True)
    return codes.astype(np.int64, copy=False), np.asarray(names, dtype=object)


def encode_frame(frame: pd.DataFrame, state, state_names, is_failure, event_names=None,
                 max_gap=None) -> "Trajectories":
    """A canonical history frame and its state codes as :class:`Trajectories`: the one encoder that
    fit, partial_fit, predict, the backtest and the Dask back end use.

    Frames sorted by (entity, time) with a text entity column (what read_histories returns, the
    remembered tails) are encoded without factorizing the names again; any other frame goes through
    :meth:`Trajectories.from_frame`, which sorts it and words the errors. Both give the same arrays.
    """
    traj = encode_sorted(frame, state, state_names, np.asarray(is_failure, dtype=bool), event_names,
                          max_gap)
    if traj is not None:
        return traj
    return Trajectories.from_frame(frame, state, state_names, np.asarray(is_failure, dtype=bool),
                                   event_names=event_names, max_gap=max_gap)


def end_mask(traj: "Trajectories") -> np.ndarray:
    """Which states of ``traj`` are end states (all False without any)."""
    if traj.is_end is None:
        return np.zeros(traj.n_states, dtype=bool)
    return np.asarray(traj.is_end, dtype=bool)


def mark_ends(traj: "Trajectories", is_end, end_after: int | None = None,
              data_end: int | None = None, end_state: str = "<end>",
              end_event: str = "<end>") -> "Trajectories":
    """``traj`` with its end states marked and, with ``end_after``, the ends of silent histories added.

    An entity whose last step lies at least ``end_after`` (in the units of the time column) before
    ``data_end`` (default: the last time of ``traj``) gets one more step, at its last time plus
    ``end_after``, into ``end_state`` by ``end_event`` (appended to the event vocabulary when
    absent), in its last run; an entity already in an end state gets none. ``end_state`` must be
    one of the states.

    Examples
    --------
    >>> traj = Trajectories.from_codes([0, 0, 1, 0], lengths=[3, 1], state_names=["ok", "down"],
    ...                                failure=["down"])
    >>> traj = Trajectories(**{**traj.__dict__, "state_names": ("ok", "down", "<end>"),
    ...                        "time": np.array([0, 1, 9, 2])})
    >>> ended = mark_ends(traj, [False, False, True], end_after=5)
    >>> ended.state.tolist(), ended.time.tolist(), ended.event_names
    ([0, 0, 1, 0, 2], [0, 1, 9, 2, 7], ('step', '<end>'))
    """
    is_end = np.asarray(is_end, dtype=bool)
    if is_end.shape != (traj.n_states,):
        raise ValueError(f"is_end has shape {is_end.shape}, expected ({traj.n_states},)")
    if end_after is None or traj.n_steps == 0:
        return replace(traj, is_end=is_end)
    names = list(traj.state_names)
    if end_state not in names:
        raise ValueError(f"end_after needs the state {end_state!r} among the states")
    end_code = names.index(end_state)
    last = traj.last_index()
    horizon_end = int(traj.time.max()) if data_end is None else int(data_end)
    add = (traj.time[last] + int(end_after) <= horizon_end) & ~is_end[traj.state[last]]
    at = last[add] + 1  # insert after these positions
    events = list(traj.event_names)
    if end_event not in events:
        events.append(end_event)
    ev_code = events.index(end_event)
    n_add = len(at)
    # positions of the old steps in the new arrays: each shifts by the insertions before it
    shift = np.searchsorted(at, np.arange(traj.n_steps), side="right")
    new_pos = np.arange(traj.n_steps) + shift
    n = traj.n_steps + n_add
    new_at = at + np.arange(n_add)  # where the added steps land

    def spread(old, fill):
        out = np.empty(n, dtype=np.asarray(old).dtype)
        out[new_pos] = old
        out[new_at] = fill
        return out

    entity = spread(traj.entity, traj.entity[last[add]])
    time = spread(traj.time, traj.time[last[add]] + int(end_after))
    event = spread(traj.event, ev_code)
    state = spread(traj.state, end_code)
    rows = traj.source_row if traj.source_row is not None else np.arange(traj.n_steps)
    source_row = spread(np.asarray(rows, dtype=np.int64), -1)
    group = None if traj.group is None else spread(np.asarray(traj.group), traj.group[last[add]])
    carried = None if traj.group_carried is None else spread(traj.group_carried, -1)
    run_starts = new_pos[traj.run_starts] if traj.n_runs else traj.run_starts
    return replace(traj, entity=entity, time=time, event=event, state=state,
                   run_starts=np.asarray(run_starts, dtype=np.int64), event_names=tuple(events),
                   source_row=source_row, is_end=is_end, group=group, group_carried=carried)
