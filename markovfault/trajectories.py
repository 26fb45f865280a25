"""The encoded, sorted representation every kernel reads.

:class:`Trajectories` holds the histories after state extraction as flat
numpy arrays sorted by (entity, time), plus the vocabularies that give the
integer codes their names. Nothing below it knows about pandas or files;
nothing above it loops over rows in Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from .exceptions import ConfigError, HistoryError

__all__ = ["Trajectories", "parse_max_gap"]


def parse_max_gap(max_gap, time_kind: str) -> int | None:
    """Convert a ``max_gap`` setting to the integer unit of the time column.

    Parameters
    ----------
    max_gap : None, int, str or pandas.Timedelta
        The largest allowed distance between two consecutive steps of one
        entity. ``None`` keeps every history whole. Strings are parsed by
        :class:`pandas.Timedelta` (``"30min"``, ``"2h"``).
    time_kind : {'datetime', 'integer'}
        What the time column holds.

    Returns
    -------
    int or None
        Nanoseconds for datetime time, sequence units for integer time.

    Examples
    --------
    >>> parse_max_gap("1min", "datetime")
    60000000000
    >>> parse_max_gap(5, "integer")
    5
    """
    if max_gap is None:
        return None
    if time_kind == "datetime":
        if isinstance(max_gap, (int, np.integer)) and not isinstance(max_gap, bool):
            raise ConfigError(
                f"max_gap = {max_gap!r} is a bare number but the time column holds "
                "timestamps; give a duration such as \"30min\" or \"2h\"."
            )
        try:
            gap = pd.Timedelta(max_gap)
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"max_gap = {max_gap!r} is not a duration; use e.g. \"30min\" or \"2h\"."
            ) from exc
        value = int(gap.value)
    else:
        if isinstance(max_gap, bool) or not isinstance(max_gap, (int, np.integer)):
            raise ConfigError(
                f"max_gap = {max_gap!r} must be an integer when the time column is an "
                "integer sequence."
            )
        value = int(max_gap)
    if value <= 0:
        raise ConfigError(f"max_gap = {max_gap!r} must be positive.")
    return value


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
        is_failure = _failure_mask(failure, state_names)

        time_col = frame["time"]
        if isinstance(time_col.dtype, pd.DatetimeTZDtype) or np.issubdtype(
            np.asarray(time_col).dtype, np.datetime64
        ):
            time_kind = "datetime"
            if isinstance(time_col.dtype, pd.DatetimeTZDtype):
                time_col = time_col.dt.tz_convert("UTC").dt.tz_localize(None)
            time = time_col.to_numpy(dtype="datetime64[ns]").view(np.int64)
        else:
            time_kind = "integer"
            time = np.asarray(time_col, dtype=np.int64)

        ent_codes, ent_names = _factorize_sorted(frame["entity"])
        if "event" in frame.columns:
            ev = frame["event"]
        else:
            from .histories import IMPLICIT_EVENT

            ev = np.full(n, IMPLICIT_EVENT, dtype=object)
        ev_codes, ev_vocab = _encode_events(ev, event_names)

        from .histories._fast import group_order

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
        traj.run_starts = _run_starts(entity, time, parse_max_gap(max_gap, time_kind))
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
            from .histories import IMPLICIT_EVENT

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
            is_failure=_failure_mask(failure, state_names),
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


def _failure_mask(failure, state_names: tuple) -> np.ndarray:
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


def _factorize_sorted(values) -> tuple[np.ndarray, np.ndarray]:
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


def _encode_events(ev, event_names) -> tuple[np.ndarray, list]:
    """Codes for event labels; a fixed vocabulary keeps its codes, new labels follow."""
    codes, uniques = _factorize_sorted(ev)
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


def _run_starts(entity: np.ndarray, time: np.ndarray, max_gap: int | None) -> np.ndarray:
    n = entity.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    new = np.empty(n, dtype=bool)
    new[0] = True
    new[1:] = entity[1:] != entity[:-1]
    if max_gap is not None:
        new[1:] |= (time[1:] - time[:-1]) > max_gap
    return np.flatnonzero(new).astype(np.int64)
