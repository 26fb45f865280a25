"""What a fitted model remembers of each entity (internal API): its last steps.

``last_seen_`` (a frame indexed by entity) holds each entity's last ``tail_length`` steps: the carry-over that
lets ``partial_fit`` count the transition into an entity's first new step, and the history that ``predict`` and
history-aware states continue. :class:`Tails` is the same as integer arrays, what streamed fits work on.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .._sorting import group_order
from .._timecodec import time_int, time_values
from ..exceptions import HistoryError
from ..trajectories import CARRIED, Trajectories, entity_blocks, entity_codes, factorize_sorted

__all__ = ["Tails", "SortedBatch", "last_steps", "merge_last_seen", "prepend_tail", "sorted_batch",
           "union_sorted", "older_error", "warn_late", "next_true"]

logger = logging.getLogger("markovfault.predictor")


def last_steps(traj: Trajectories, length: int, old: pd.DataFrame | None = None,
               contexts: np.ndarray | None = None) -> pd.DataFrame:
    """Each entity's last ``length`` steps (time, event, state), indexed by entity and sorted: the carry-over
    for ``partial_fit`` and the history that ``predict`` continues (a model's ``last_seen_``). The entities of
    ``old`` that ``traj`` does not hold keep their rows. With ``contexts`` (the group context of every step,
    for states that carry it), also each step's ``group`` and ``group_failures`` (its context)."""
    n = traj.n_steps
    # the last tail_length rows of each entity: n_entities x tail_length, not n
    ends = np.flatnonzero(np.r_[traj.entity[1:] != traj.entity[:-1], True]) if n \
        else np.zeros(0, np.int64)
    starts = np.r_[0, ends[:-1] + 1] if n else ends
    rows = ends[:, None] - np.arange(length - 1, -1, -1)[None, :]
    keep = rows[rows >= starts[:, None]]  # ascending: entity, then time
    names = np.asarray(traj.entity_names, dtype=object)
    events = np.asarray(traj.event_names, dtype=object)
    new = pd.DataFrame(
        {"time": traj.time[keep], "event": events[traj.event[keep]],
         "state": traj.state[keep]},
        index=pd.Index(names[traj.entity[keep]], name="entity"),
    )
    if contexts is not None:
        new["group"] = np.asarray(traj.group_names, dtype=object)[traj.group[keep]]
        new["group_failures"] = np.asarray(contexts, dtype=np.int64)[keep]
    return merge_last_seen(old, new)


def merge_last_seen(old: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    """``new``'s rows replace those of the same entities in ``old``; sorted by entity (stable)."""
    if old is not None and len(old):
        new = pd.concat([old[~old.index.isin(new.index)], new])
    return new.sort_index(kind="stable")


def prepend_tail(seen: pd.DataFrame, time_kind: str, frame: pd.DataFrame, codes: np.ndarray,
                 warn: bool, stream: bool = False, interleave: bool = False):
    """The remembered tail rows (``seen``, a model's ``last_seen_``) of the entities in ``frame``, then
    ``frame``; with the state codes of both and the number of tail rows.

    Entities are matched on integer codes: the names in ``frame`` are
    factorized once (read in linear time when ``frame`` is grouped by
    entity, as read_histories returns it), then looked up and grouped as
    codes. With ``interleave``, each entity's tail rows are placed just
    before its own rows instead of all first: the same rows, sorted by
    (entity, time) when ``frame`` is, so encoding them needs no sort
    (``predict``); the returned number of tail rows then is no prefix.
    """
    ent_codes, names = entity_codes(frame["entity"])
    # hash lookups on object arrays: isin with arrow strings falls back to a Python loop
    pos = pd.Index(names, dtype=object).get_indexer(seen.index.to_numpy(dtype=object))
    hit = pos >= 0
    if not hit.any():
        return frame, codes, 0
    carried, pos = seen[hit], pos[hit]
    n_names = len(names)
    first_time = np.full(n_names, np.iinfo(np.int64).max)
    np.minimum.at(first_time, ent_codes, time_int(frame))
    last_time = np.full(n_names, np.iinfo(np.int64).min)
    np.maximum.at(last_time, pos, carried["time"].to_numpy(np.int64))
    has_tail = np.zeros(n_names, dtype=bool)
    has_tail[pos] = True
    late = has_tail & (first_time <= last_time)
    if stream:  # fit(..., chunksize=N): ties keep read order; older rows are an error
        older = has_tail & (first_time < last_time)
        if older.any():
            raise older_error(names, older)
        late = older
    if late.any():
        if warn:
            warn_late(names, late)
        keep = ~late[pos]
        carried, pos = carried[keep], pos[keep]
    if time_kind == "datetime":
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
    # the group context: each carried step keeps its group and the context it was counted with
    groups = "group" in seen.columns and "group" in frame.columns
    if groups:
        boundary["group"] = carried["group"].to_numpy(dtype=object)
        boundary[CARRIED] = carried["group_failures"].to_numpy(np.int64)
    both = pd.concat([boundary, frame[["entity", "time", "event", "_row"] + (["group"] if groups else [])]],
                     ignore_index=True)
    if groups:
        both[CARRIED] = both[CARRIED].fillna(-1).astype(np.int64)
    both_codes = np.concatenate([carried["state"].to_numpy(np.int64), codes])
    if interleave and len(boundary):
        # the remembered tails are sorted by entity, and so is frame when grouped:
        # two sorted runs, merged in linear time by the stable sort
        order = np.argsort(np.concatenate([pos, ent_codes]), kind="stable")
        both, both_codes = both.take(order).reset_index(drop=True), both_codes[order]
    return both, both_codes, len(boundary)


def older_error(names: np.ndarray, older: np.ndarray) -> HistoryError:
    """fit(..., chunksize=N) met a step older than the entity's last one counted."""
    return HistoryError(
        f"entity {names[np.flatnonzero(older)[0]]!r}: a batch holds a step older than its "
        f"last step in an earlier batch ({int(older.sum())} entities affected); fit(..., "
        "chunksize=N) needs each entity's rows in time order across batches. "
        "Fix: sort the export by time (or by entity and time), or fit in memory "
        "without chunksize.")


def warn_late(names: np.ndarray, late: np.ndarray) -> None:
    """partial_fit met steps no later than the entity's last one counted."""
    logger.warning(
        "%d entities have steps no later than their last step already counted "
        "(e.g. %s); those steps start a new run and the transition into them is "
        "not counted.",
        int(late.sum()), list(names[late][:3]),
    )


class SortedBatch:
    """The rows of a canonical batch as int64 arrays sorted stably by (entity, time):
    entity codes ``ent`` into ``names`` (ascending, unique, all used; object array
    of str), block ``starts``, ``time`` (UTC nanoseconds for timestamps), event codes
    ``ev`` into ``ev_names`` (ascending), state codes ``state`` and ``row`` (``_row``)."""

    __slots__ = ("ent", "names", "starts", "time", "time_kind", "ev", "ev_names", "state",
                 "row")


def sorted_batch(frame: pd.DataFrame, state, n_states: int) -> SortedBatch | None:
    """A canonical batch and its state codes as :class:`SortedBatch`, encoded as
    :meth:`Trajectories.from_frame` encodes them (entity and event labels
    factorized as text in sorted order, rows sorted stably by (entity, time)),
    from the categorical codes when the columns are categorical. ``None`` for
    anything else (no rows, other dtypes, missing labels, invalid states): the
    caller then takes the general path, which words the errors."""
    if not {"entity", "time", "event", "_row"} <= set(frame.columns):
        return None
    n = len(frame)
    state = np.asarray(state)
    if n == 0 or state.shape != (n,) or state.dtype.kind not in "iu" \
            or state.min() < 0 or state.max() >= n_states:
        return None
    timed = time_values(frame)
    if timed is None:
        return None
    out = SortedBatch()
    out.time, out.time_kind = timed
    blocks = entity_blocks(frame["entity"])
    if blocks is not None:  # grouped by entity (read_histories' batches): no hashing
        out.starts, out.names = blocks
        ent = np.repeat(np.arange(len(out.names), dtype=np.int64),
                        np.diff(np.r_[out.starts, n]))
    else:
        ent, names = factorize_sorted(frame["entity"])
        ent = np.asarray(ent, dtype=np.int64)
        if ent.min() < 0:
            return None
        out.names = np.array(names, dtype=object)  # str: factorized as text
    ev, ev_names = factorize_sorted(frame["event"])
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


def union_sorted(old: np.ndarray, new: np.ndarray):
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


class Tails:
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
    def from_frame(cls, seen, length: int) -> "Tails | None":
        """From ``last_seen_`` (``None`` when it is not the frame that fit makes, or when its steps carry the
        group context, which the general path continues)."""
        if not isinstance(seen, pd.DataFrame) or not {"time", "event", "state"} <= set(seen) \
                or "group" in seen:
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
        union, pos_old, pos_new = union_sorted(self.names, names)
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


def next_true(mask: np.ndarray) -> np.ndarray:
    """For each position, the index of the first True at or after it (mask ends True)."""
    n = len(mask)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    pos = np.where(mask, np.arange(n), n)
    return np.minimum.accumulate(pos[::-1])[::-1]
