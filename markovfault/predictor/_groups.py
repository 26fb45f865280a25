"""The group context across batches (internal API): what a fitted model remembers of its groups.

A step's group context counts the failures of the other members of its group in the trailing
``group_window`` (:func:`~markovfault.states._history.group_failures`), so a batch counted after others
(``partial_fit``, the next batch of ``fit(..., chunksize=N)``, a forecast from new rows, a Dask partition)
needs what came before it. A fitted model with the group context remembers

* in ``last_seen_``, each remembered step's ``group`` and the context it was counted with
  (``group_failures``): the last step of an entity keeps its state when the entity goes on in a later
  batch, and ``predict()`` forecasts from it as the fit saw it;
* in ``group_failures_`` (entity, group, time), the failures the context counts in the window before
  each group's latest counted step: the context of a later step reaches back into them.

With both, histories fitted in pieces in time order count what one fit on everything counts. A batch
with a step of a group before the latest step already counted in that group would change the context
of steps counted already (their window would hold failures that were not there when they were
counted); :func:`check_in_order` refuses it. Batches of new groups may hold any times.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from .._timecodec import from_time_int, time_int
from ..exceptions import HistoryError
from ..states._history import counted_failures, group_failures, window_in_units
from ..trajectories import Trajectories

__all__ = ["group_spec", "contexts_of", "new_failures", "remember", "with_memory", "check_in_order",
           "check_groups_kept", "no_failures"]


def group_spec(model):
    """The history spec of a fitted model's chain when its states carry the group context, else None."""
    spec = getattr(model.chain_, "spec", None)
    return spec if spec is not None and spec.has_group else None


def contexts_of(spec, traj: Trajectories) -> np.ndarray | None:
    """The group context of every step of ``traj`` (the raw count, before bucketing), or None without
    a group context."""
    if spec is None or not spec.has_group:
        return None
    return group_failures(traj, spec.group_window, spec.group_count)


def no_failures() -> pd.DataFrame:
    """An empty ``group_failures_``."""
    return pd.DataFrame({"entity": pd.Series([], dtype=object), "group": pd.Series([], dtype=object),
                         "time": pd.Series([], dtype=np.int64)})


def new_failures(spec, traj: Trajectories) -> pd.DataFrame | None:
    """The failures the group context counts among the steps of ``traj`` counted now (not the
    remembered steps it starts with), as rows of ``group_failures_``; None without a group context."""
    if spec is None or not spec.has_group:
        return None
    fail = counted_failures(traj, spec.group_count)
    if traj.group_carried is not None:
        fail = fail & (traj.group_carried < 0)
    return pd.DataFrame({
        "entity": np.asarray(traj.entity_names, dtype=object)[traj.entity[fail]],
        "group": np.asarray(traj.group_names, dtype=object)[traj.group[fail]],
        "time": np.asarray(traj.time, dtype=np.int64)[fail],
    })


def remember(spec, time_kind: str, parts, last_seen: pd.DataFrame) -> pd.DataFrame | None:
    """``group_failures_`` from the failures ``parts`` (frames of :func:`new_failures`, the earlier ones
    too): those in the window before the latest step of their group in ``last_seen``, sorted by entity
    and time. None without a group context."""
    if spec is None or not spec.has_group:
        return None
    parts = [p for p in parts if p is not None and len(p)]
    if not parts:
        return no_failures()
    out = pd.concat(parts, ignore_index=True)
    latest = last_seen.groupby("group", sort=True)["time"].max()
    at = pd.Index(latest.index).get_indexer(out["group"].to_numpy(dtype=object))
    edge = latest.to_numpy(np.int64)[np.maximum(at, 0)] - window_in_units(spec.group_window, time_kind)
    keep = (at >= 0) & (out["time"].to_numpy(np.int64) >= edge)
    return out[keep].sort_values(["entity", "time"], kind="stable").reset_index(drop=True)


def with_memory(model, traj: Trajectories, supersede: bool) -> Trajectories:
    """``traj`` with the failures the model remembers of its groups (:attr:`Trajectories.group_memory`).

    ``supersede`` (forecasts): the rows given replace what is remembered of an entity from its first
    step among them on, so forecasting from rows that were counted already counts their failures once.
    A batch counted into the model (``partial_fit``) holds new steps only: every remembered failure
    counts.
    """
    memory = getattr(model, "group_failures_", None)
    if memory is None or not len(memory) or traj.group is None:
        return traj
    g = pd.Index(list(traj.group_names)).get_indexer(memory["group"].to_numpy(dtype=object))
    e = pd.Index(list(traj.entity_names)).get_indexer(memory["entity"].to_numpy(dtype=object))
    t = memory["time"].to_numpy(np.int64)
    keep = g >= 0  # failures of groups without steps here change no context
    if supersede:
        new = np.ones(traj.n_steps, dtype=bool) if traj.group_carried is None else traj.group_carried < 0
        first = np.full(traj.n_entities, np.iinfo(np.int64).max)
        np.minimum.at(first, traj.entity[new], np.asarray(traj.time, dtype=np.int64)[new])
        keep &= ~((e >= 0) & (t >= first[np.maximum(e, 0)]))
    return replace(traj, group_memory=np.stack([g[keep], e[keep], t[keep]]).astype(np.int64))


def check_in_order(seen: pd.DataFrame, time_kind: str, frame: pd.DataFrame, stream: bool) -> None:
    """Refuse a batch ``frame`` with a step of a group before the latest step already counted in that
    group (``seen``: remembered steps, ``last_seen_``), with a :class:`HistoryError` naming the group,
    both times and the fix."""
    if "group" not in frame.columns or "group" not in seen.columns or not len(seen) or not len(frame):
        return
    latest = seen.groupby("group", sort=True)["time"].max()
    groups = np.asarray(frame["group"].astype(str), dtype=object)
    first = pd.Series(time_int(frame)).groupby(groups, sort=True).min()
    common = first.index.intersection(latest.index)
    early = first[common].to_numpy() < latest[common].to_numpy()
    if not early.any():
        return
    g = common[np.flatnonzero(early)[0]]
    at, last = from_time_int([first[g], latest[g]], time_kind)
    more = int(early.sum()) - 1
    where = (f"group {g!r} has a step at {at} before the latest step already counted in it ({last})"
             f"{f'; {more} more groups too' if more else ''}")
    if stream:
        raise HistoryError(
            f"fit(..., chunksize=N) with the group context needs the rows in time order within each "
            f"group across batches: {where}, and the group context of the steps counted already "
            "would change. Fix: sort the export by time, or fit in memory without chunksize.")
    raise HistoryError(
        f"partial_fit with the group context needs each batch's steps of a group no earlier than the "
        f"latest step already counted in that group: {where}, and the group context of the steps "
        "counted already would change. Fix: pass the batches in time order (a batch of new groups "
        "may hold any times), or fit on all the histories again.")


def check_groups_kept(seen: pd.DataFrame, entities, groups) -> None:
    """Refuse an entity of a later batch in another group than the one it was counted in."""
    if "group" not in seen.columns or not len(seen):
        return
    entities = np.asarray(entities, dtype=object)
    groups = np.asarray(groups, dtype=object).astype(str)
    known = seen["group"].groupby(level=0, sort=False).first()
    at = pd.Index(known.index).get_indexer(entities)
    hit = at >= 0
    moved = np.flatnonzero(hit)[known.to_numpy(dtype=object)[at[hit]] != groups[hit]]
    if len(moved):
        k = moved[0]
        raise HistoryError(
            f"entity {entities[k]!r} is in more than one group ({known.iloc[at[k]]!r} when it was "
            f"counted, {groups[k]!r} now): the group context counts the failures of an entity's "
            "group, so an entity must stay in one group. Fix: give each entity one group (or name "
            "the entity by its group, e.g. entity@group), or fit on all the histories again.")
