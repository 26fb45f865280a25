"""History-aware states: the chain over (state, recent history), stored as the states that occur.

A first-order chain over raw statuses forgets what predicts failure: a
handler that failed two steps ago looks like any other ``ok`` handler. The
augmented state carries the history that matters:

* ``order``: the previous ``m`` base states (an order-m chain, fitted as a
  first-order chain on tuples);
* ``failure_window``: steps since the last failure, capped at ``W`` (``W``
  means "no failure in the last W steps"): failure memory;
* ``failure_count``: failures since the last recovery, capped at ``C``
  (buckets 0, 1, ..., ``C`` or more), where a recovery is ``W`` steps in a
  row without failure (needs ``failure_window``);
* ``entering_event``: the event that entered the state;
* ``group_window``, ``group_levels`` (the *group context*, needs a ``group``
  column): the failure steps of the *other* members of the entity's group at
  times in ``[t - W, t)`` before the step (``W`` in the time column's units: a
  duration such as ``"10min"`` for timestamps, an int for sequence numbers),
  bucketed into ``L`` levels ``0, 1, ..., L-1 or more`` (fixed buckets, not
  edges from the data: the levels mean the same in every fold and model
  file). Computed vectorised (:func:`group_failures`: failures sorted by
  group and by entity, two ``searchsorted`` each).
* ``gap_bins``, ``gap_edges`` (the *gap*): which of ``K`` bins the time since
  the entity's previous step falls in (bin ``k``: ``edges[k-1] <= gap <
  edges[k]``; :func:`gap_bin`). The first step of a run is in the last bin:
  nothing recent precedes it (the start of the history, or a break longer
  than ``max_gap``, which is longer than every gap inside a run), and no
  value is needed that no transition ever enters (the next step of a run
  always has a previous one). The edges are given (``gap_edges``, durations
  or numbers) or chosen from the training data (``gap_bins`` alone): the
  ``K``-quantile edges of the gaps of every step that follows another step
  of its run, fewer when ties leave fewer distinct edges
  (:func:`gap_edges_from_counts`). They are chosen before anything is
  counted, from training data only, and kept on the spec, so that
  :func:`augment` is a function of the spec: :func:`resolve_gap_edges` runs
  in the fit (a streamed fit: on its first batch, like the state extractor;
  Dask: from the gap counts of every partition), in the backtest on the steps
  before the first cutoff (which every fold shares, as it shares the state
  extractor, so one encoding serves every fold), and in
  :func:`~markovfault.selection.select_states` on the steps before the
  hold-out. A fitted chain's ``spec`` has them, and so has a model file.

The endogenous components move deterministically once the next base state
``j`` and the next event ``e`` are known. The group context and the gap are
*exogenous* (:data:`EXOGENOUS`): their next value ``x'`` is drawn from
``R(x' | a)``, independently of ``(e, j)`` given ``a``, so the augmented chain is
``T[a, f(a, e, j, x')] += Q(e | a) P(j | a, e) R(x' | a)``. With both on,
``x'`` is their joint value (mixed radix, the group level fastest,
:meth:`HistoryLayout.exo_values`) and ``R`` is one row over it: the next gap
and the next group level may depend on each other. The sufficient
statistics are the counts ``N[e, a, j]`` and, with an exogenous component,
``M[a, x']`` (:attr:`HistoryCounts.exo`, the value of the state each
transition enters).

Codes and seen states
---------------------
An augmented state is identified by its int64 mixed-radix code over the
product of its components (:class:`HistoryLayout`), but only the states
that occur are stored: :func:`count_augmented` returns
:class:`HistoryCounts`, the sorted codes that occur in the counted steps and
the counts ``(..., E, A_seen, S)`` over them. The product space is never
materialised (order 4 over 30 states has 893,730 product states, of which
the HDFS sessions visit about 2,300); only the dense counts of the seen
states are bounded (:data:`MAX_COUNT_CELLS`).

The back-off hierarchy
----------------------
:meth:`HistorySpec.levels` lists the coarser specs a state backs off
through, one notch of one component at a time, from the full spec down to
the base state. Going *down* (dropping history), the order is:

1. the entering event is dropped;
2. the failure count's cap is lowered, ``C -> C-1 -> ... -> 0``;
3. the oldest lag is dropped, ``order m -> m-1 -> ... -> 1``;
4. the gap's bins are merged from the top, ``K -> K-1 -> ... -> 2 -> dropped``;
5. the group context's cap is lowered, ``L-1 -> ... -> 1 -> dropped``;
6. the failure window's cap is lowered, ``W -> W-1 -> ... -> 0``: the base state.

The group context sits right above the failure window: the failure memory
is then learned from every step of the state, whatever the group is doing,
and each group level refines it. The other way round (the group right above
the base state) learns the memory separately within every group level, from
a fraction of the steps each, so the memory is backed off toward rows
without it: on the simulated order service with failure memory and group
outages (``benchmarks/accuracy_groups.py``) the one-step risk right after a
failure came out 13 to 26% low, and the ranking worse at every horizon (AUC
0.830 against 0.834 at h = 1, 0.700 against 0.708 at h = 10). Because the
group context is exogenous, a state that backs off below it regains it at
its next step (drawn from that state's ``R``), so where it sits costs
nothing in closure. Lowering its cap merges the largest counts first, where
the data is thinnest.

The gap sits right above the group context (right above the failure window
without one), for the same reason: the failure memory is learned from every
step whatever the gap, and each gap bin refines it. On the simulated order
service whose failures follow idle gaps (``benchmarks/accuracy_gap.py``, six
quantile bins) the gap right above the base state instead learns the memory
within each gap bin: as good at h = 1, worse from h = 2 on and worse than no
gap at all from h = 3 (Brier skill 0.160 against 0.168 with the gap above the
failure window and 0.165 without a gap, at h = 5); where the gap carries
nothing, the gap above the failure window scores as no gap (within 0.0001 of
Brier skill) and the gap below it 0.004 to 0.009 worse. It goes before the
group context (a state backs off to the group level before it loses the
group) because it is the less direct evidence of failure (how long the
handler was quiet, against how many of its neighbours just failed) and it
fragments the data as much; that order is argued, not measured (the simulator
has no groups and idle gaps together). A level with ``k`` bins keeps the
first ``k - 1`` edges, so lowering the cap merges the longest gaps (and the
first steps of runs, in the last bin) first; the successor map commutes with
it, because the next bin is drawn (``x'``) and capped the same way at every
level.

Why this order: each level must itself be a valid history whose successor
map commutes with coarsening (lowering a cap, dropping the oldest lag or the
entering event all do), so that every level is a closed chain of its own and
a state can fall back on its ancestor without losing the exactness of the
k-step recursion. Within that constraint, the components that fragment the
data most and carry the least direct failure memory go first: the entering
event multiplies the states by ``E + 1`` and mostly repeats what the
event-conditioned rows and the current state already say; the failure count
refines the failure window and must go before the window shrinks (a recovery
is defined by the window); lags go oldest first (the n-gram convention: the
nearer past predicts better); the steps since the last failure go last,
because they are the failure memory that history-aware states exist for, and
lowering their cap merges the distinctions furthest from a failure first.

Adding a component means giving it a place in :class:`HistoryLayout` (its
radix and, for a capped count, its cap), its update in :func:`augment` and
:meth:`HistoryLayout.successor` (an exogenous component: its name in
:data:`EXOGENOUS`, and the successor map takes its next value from ``x'``),
and its notches in :meth:`HistorySpec.levels`; coarsening and lifting between
levels are generic over "kept" and "capped" components.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from .._priors import AUTO, check_prior
from ..exceptions import ConfigError, DataWarning, HistoryError
from ..trajectories import Trajectories

__all__ = ["HistorySpec", "HistoryLayout", "HistoryCounts", "augment", "count_augmented",
           "candidate_specs", "group_failures", "counted_failures", "window_in_units", "MAX_COUNT_CELLS",
           "EXOGENOUS", "GROUP_COUNTS", "gap_bin", "gap_counts", "gap_edges_from_counts", "with_gap_edges",
           "resolve_gap_edges", "gap_edges_in_units"]

#: The largest dense count array of seen states, ``n_bins * E * A_seen * S`` cells (2 GiB of int64).
MAX_COUNT_CELLS = 2 ** 28
_MAX_CODE = 2 ** 62  # mixed-radix codes must fit in int64 with room to spare
#: components whose next value is random (drawn from R(x' | a)), not a function of (a, e, j)
EXOGENOUS = ("group", "gap")
#: What the group context may count (:attr:`HistorySpec.group_count`).
GROUP_COUNTS = ("onsets", "steps")


@dataclass(frozen=True)
class HistorySpec:
    """Which history an augmented state carries.

    Parameters
    ----------
    order : int, default=1
        ``1`` is the plain first-order chain; ``m > 1`` adds the previous
        ``m - 1`` base states.
    failure_window : int, default=0
        ``W > 0`` adds the steps since the last failure, capped at ``W``.
    entering_event : bool, default=False
        Add the event that entered the state.
    backoff : float or "auto", default=5.0
        Pseudo-counts pulling each level's rows toward its parent level's
        rows (:meth:`levels`): one number for every level, or ``"auto"``:
        strengths chosen from the data for each level, by the leave-one-out
        likelihood of its transitions (see :mod:`markovfault.chain._history`).
    failure_count : int, default=0
        ``C > 0`` adds the number of failures since the last recovery
        (``failure_window`` steps in a row without failure), capped at ``C``.
    group_window : int or str, default=None
        The group context's trailing window: a duration such as ``"10min"``
        (timestamps) or a number of sequence units. Needs a ``group`` column.
    group_levels : int, default=0
        ``L >= 2`` adds the group context: the other members' failures in
        the window, counted ``0, 1, ..., L - 1 or more``.
    group_count : {"onsets", "steps"}, default="onsets"
        What the group context counts: ``"onsets"``, the other members'
        failures (steps that enter a failure state, so an outage of one
        member that lasts five steps is one failure); ``"steps"``, their steps
        in a failure state. A member that stays down keeps ``"steps"`` high
        while nothing new happens; on the simulated groups
        (``benchmarks/accuracy_groups.py``) onsets separate a shared outage
        from the usual background better (Brier skill 0.299 against 0.290
        at h = 2, 0.156 against 0.151 at h = 10).
    gap_bins : int, default=0
        ``K >= 2`` adds the time since the entity's previous step, as one of
        ``K`` bins: quantile bins of the training data's gaps (steps that
        follow another step of the same run), chosen when a model is fitted
        (see :func:`resolve_gap_edges`); fewer when ties leave fewer distinct
        edges. The first step of a run is in the last bin. 0: off.
    gap_edges : sequence of str or numbers, optional
        The bins' edges themselves, increasing: durations such as
        ``["30s", "5min"]`` for timestamps, numbers for sequence numbers.
        Bin ``k`` holds the gaps ``g`` with ``edges[k-1] <= g < edges[k]``, so
        ``len(gap_edges) + 1`` bins (``gap_bins``, when given, must agree). A
        fitted model's spec carries the edges it chose, so that
        :func:`augment` is a function of the spec alone.

    Examples
    --------
    >>> HistorySpec.from_config({"order": 2, "failure_window": 3})  # doctest: +NORMALIZE_WHITESPACE
    HistorySpec(order=2, failure_window=3, entering_event=False, backoff=5.0, failure_count=0,
                group_window=None, group_levels=0, group_count='onsets', gap_bins=0, gap_edges=None)
    >>> HistorySpec(gap_edges=["30s", "5min"]).gap_bins
    3
    """

    order: int = 1
    failure_window: int = 0
    entering_event: bool = False
    backoff: float | str = 5.0
    failure_count: int = 0
    group_window: int | str | None = None
    group_levels: int = 0
    group_count: str = "onsets"
    gap_bins: int = 0
    gap_edges: tuple | None = None

    def __post_init__(self):
        for name in ("order", "failure_window", "failure_count"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ConfigError(f"history {name} = {v!r} must be an integer")
        if self.order < 1:
            raise ConfigError(f"history order = {self.order}, must be >= 1")
        if self.failure_window < 0:
            raise ConfigError(f"history failure_window = {self.failure_window}, must be >= 0")
        if self.failure_count < 0:
            raise ConfigError(f"history failure_count = {self.failure_count}, must be >= 0")
        if self.failure_count and not self.failure_window:
            raise ConfigError(
                "history failure_count needs a failure_window: a recovery is failure_window "
                "steps in a row without failure")
        gl = self.group_levels
        if isinstance(gl, bool) or not isinstance(gl, (int, np.integer)):
            raise ConfigError(f"history group_levels = {gl!r} must be an integer")
        if gl == 1 or gl < 0:
            raise ConfigError(f"history group_levels = {gl}, must be 0 (no group context) or >= 2 "
                              "(levels 0, 1, ..., group_levels - 1 or more)")
        gw = self.group_window
        if gl and gw is None:
            raise ConfigError("history group_levels needs a group_window: the trailing window "
                              "(\"10min\" for timestamps, an int for sequence numbers) in which the "
                              "failures of the other members of the group are counted")
        if gw is not None:
            if not gl:
                raise ConfigError("history group_window needs group_levels >= 2 (how many levels "
                                  "the group's failure count is bucketed into)")
            if isinstance(gw, bool) or not isinstance(gw, (int, np.integer, str)) or \
                    (not isinstance(gw, str) and gw <= 0):
                raise ConfigError(f"history group_window = {gw!r} must be a positive integer "
                                  "(sequence numbers) or a duration such as \"10min\" (timestamps)")
            if isinstance(gw, str):
                try:
                    ok = pd.Timedelta(gw) > pd.Timedelta(0)
                except ValueError:
                    ok = False
                if not ok:
                    raise ConfigError(f"history group_window = {gw!r} is not a positive duration; "
                                      "use one such as \"10min\" or \"2h\"")
        if self.group_count not in GROUP_COUNTS:
            raise ConfigError(f"history group_count = {self.group_count!r} must be one of "
                              f"{list(GROUP_COUNTS)}: \"onsets\" counts the other members' failures "
                              "(entries into a failure state), \"steps\" their steps in one")
        self._check_gap()
        if not isinstance(self.entering_event, (bool, np.bool_)):
            raise ConfigError(f"history entering_event = {self.entering_event!r} must be true or false")
        if isinstance(self.backoff, str):
            if self.backoff != AUTO:
                raise ConfigError(f"history backoff = {self.backoff!r} must be a number >= 0 or "
                                  f"{AUTO!r} (chosen from the data, level by level).")
        else:
            check_prior("history backoff", self.backoff)

    def _check_gap(self) -> None:
        """``gap_bins`` and ``gap_edges``: edges kept as a tuple, ``gap_bins`` set from them."""
        K, edges = self.gap_bins, self.gap_edges
        if isinstance(K, bool) or not isinstance(K, (int, np.integer)):
            raise ConfigError(f"history gap_bins = {K!r} must be an integer")
        if K == 1 or K < 0:
            raise ConfigError(f"history gap_bins = {K}, must be 0 (no gap) or >= 2 (how many bins the "
                              "time since the previous step falls in)")
        if edges is None:
            return
        if isinstance(edges, (str, bytes)) or not isinstance(edges, (list, tuple, np.ndarray)):
            raise ConfigError(f"history gap_edges = {edges!r} must be a list of the bins' edges: "
                              "durations such as [\"30s\", \"5min\"] (timestamps) or numbers (sequence "
                              "numbers)")
        edges = tuple(e.item() if isinstance(e, np.generic) else e for e in edges)
        if not edges:
            raise ConfigError("history gap_edges = [] holds no edge; give at least one (two bins), or "
                              "gap_bins = K alone to choose K bins from the training data")
        if all(isinstance(e, str) for e in edges):
            try:
                values = [pd.Timedelta(e) for e in edges]
            except ValueError:
                values = None
            if values is None or not all(v > pd.Timedelta(0) for v in values):
                raise ConfigError(f"history gap_edges = {list(edges)!r} must be positive durations such "
                                  "as \"30s\" or \"5min\"")
            values = [v.value for v in values]
        elif all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in edges):
            values = list(edges)
            if not all(np.isfinite(v) and v > 0 for v in values):
                raise ConfigError(f"history gap_edges = {list(edges)!r} must be positive numbers (time "
                                  "units of sequence numbers) or durations such as \"30s\"")
        else:
            raise ConfigError(f"history gap_edges = {list(edges)!r} must be all durations (timestamps, "
                              "e.g. [\"30s\", \"5min\"]) or all numbers (sequence numbers), not a mix")
        if len(values) > 1 and not (np.diff(np.asarray(values, dtype=np.float64)) > 0).all():
            raise ConfigError(f"history gap_edges = {list(edges)!r} must increase strictly (bin k holds "
                              "the gaps from edge k-1 up to edge k)")
        object.__setattr__(self, "gap_edges", edges)
        if K == 0:
            object.__setattr__(self, "gap_bins", len(edges) + 1)
        elif K != len(edges) + 1:
            raise ConfigError(f"history gap_bins = {K} but gap_edges has {len(edges)} edge(s), which make "
                              f"{len(edges) + 1} bins; give gap_edges alone, or gap_bins = "
                              f"{len(edges) + 1}")

    @classmethod
    def from_config(cls, table) -> "HistorySpec":
        """From a ``[states.history]`` table (a spec is returned as it is); unknown keys are errors.

        Examples
        --------
        >>> HistorySpec.from_config({"order": 2}) == HistorySpec.from_config(HistorySpec(order=2))
        True
        """
        if isinstance(table, HistorySpec):
            return table
        known = {"order", "failure_window", "failure_count", "entering_event", "backoff",
                 "group_window", "group_levels", "group_count", "gap_bins", "gap_edges"}
        unknown = sorted(set(table) - known)
        if unknown:
            raise ConfigError(
                f"unknown key(s) {unknown} in [states.history]; the keys are {sorted(known)}."
            )
        return cls(**dict(table))

    def to_config(self) -> dict:
        backoff = self.backoff if isinstance(self.backoff, str) else float(self.backoff)
        out = {"order": int(self.order), "failure_window": int(self.failure_window),
               "failure_count": int(self.failure_count),
               "entering_event": bool(self.entering_event), "backoff": backoff}
        if self.group_levels:
            gw = self.group_window
            out["group_window"] = gw if isinstance(gw, str) else int(gw)
            out["group_levels"] = int(self.group_levels)
            out["group_count"] = str(self.group_count)
        if self.gap_bins:
            out["gap_bins"] = int(self.gap_bins)
            if self.gap_edges is not None:
                out["gap_edges"] = list(self.gap_edges)
        return out

    @property
    def has_group(self) -> bool:
        """Whether the states carry the group context (an exogenous component)."""
        return bool(self.group_levels)

    @property
    def has_gap(self) -> bool:
        """Whether the states carry the time since the previous step (an exogenous component)."""
        return bool(self.gap_bins)

    @property
    def is_resolved(self) -> bool:
        """Whether :func:`augment` can encode with this spec: no gap, or gap edges known."""
        return not self.gap_bins or self.gap_edges is not None

    @property
    def is_plain(self) -> bool:
        return (self.order == 1 and self.failure_window == 0 and not self.entering_event
                and not self.group_levels and not self.gap_bins)

    @property
    def tail(self) -> int:
        """How many past steps determine the augmented state of the next one."""
        return max(self.order - 1, self.failure_window * (self.failure_count + 1), 1)

    def levels(self) -> list:
        """The back-off hierarchy: ``(label, spec)`` from the base state (level 0) up to this spec.

        Each level refines its parent by one notch of one component (see the module docstring for
        the order and why); ``label`` names that notch.

        Examples
        --------
        >>> [label for label, _ in HistorySpec(order=3, failure_window=2, entering_event=True).levels()]
        ['base', 'failure_window=1', 'failure_window=2', 'order=2', 'order=3', 'entering_event']
        >>> [(label, s.gap_edges) for label, s in HistorySpec(gap_edges=[2, 5, 9]).levels()]
        [('base', None), ('gap_bins=2', (2,)), ('gap_bins=3', (2, 5)), ('gap_bins=4', (2, 5, 9))]
        """
        W, C, m = int(self.failure_window), int(self.failure_count), int(self.order)
        G, K = int(self.group_levels), int(self.gap_bins)
        gw = self.group_window
        grp = {"group_window": gw, "group_levels": G, "group_count": self.group_count} if G else {}
        gap = {"gap_bins": K, "gap_edges": self.gap_edges} if K else {}
        out = [("base", HistorySpec(backoff=self.backoff))]
        out += [(f"failure_window={w}", HistorySpec(failure_window=w, backoff=self.backoff))
                for w in range(1, W + 1)]
        out += [(f"group_levels={g}", HistorySpec(failure_window=W, group_window=gw, group_levels=g,
                                                  group_count=self.group_count,
                                                  backoff=self.backoff))
                for g in range(2, G + 1)]
        # the gap's cap lowered merges its top bins: k bins keep the first k - 1 edges
        out += [(f"gap_bins={k}", HistorySpec(failure_window=W, backoff=self.backoff, **grp, gap_bins=k,
                                              gap_edges=None if self.gap_edges is None
                                              else self.gap_edges[:k - 1]))
                for k in range(2, K + 1)]
        out += [(f"order={o}", HistorySpec(order=o, failure_window=W, backoff=self.backoff, **grp, **gap))
                for o in range(2, m + 1)]
        out += [(f"failure_count={c}", HistorySpec(order=m, failure_window=W, failure_count=c,
                                                   backoff=self.backoff, **grp, **gap))
                for c in range(1, C + 1)]
        if self.entering_event:
            out.append(("entering_event", self))
        return out


class HistoryLayout:
    """Mixed-radix codes of augmented states: base, lags, since-failure, failure count, entering event,
    group context, gap.

    Components are "kept" (the base state, each lag, the entering event: coarsening keeps or
    drops them) or "capped" (steps since failure, failure count, group level, gap bin: coarsening
    lowers the cap).
    The product space has :attr:`A` codes; nothing here allocates it.
    """

    def __init__(self, spec: HistorySpec, n_states: int, n_events: int):
        self.spec, self.S, self.E = spec, int(n_states), int(n_events)
        parts = [("base", self.S, None)]
        parts += [(f"lag{i}", self.S + 1, None) for i in range(1, spec.order)]
        if spec.failure_window:
            parts.append(("since_fail", spec.failure_window + 1, spec.failure_window))
        if spec.failure_count:
            parts.append(("fails", spec.failure_count + 1, spec.failure_count))
        if spec.entering_event:
            parts.append(("in", self.E + 1, None))
        if spec.group_levels:
            parts.append(("group", spec.group_levels, spec.group_levels - 1))
        if spec.gap_bins:
            parts.append(("gap", spec.gap_bins, spec.gap_bins - 1))
        self.parts = parts
        self.index = {name: k for k, (name, _, _) in enumerate(parts)}
        radices = [r for _, r, _ in parts]
        size = 1
        for r in radices:
            size *= r  # Python ints: no overflow
        if size > _MAX_CODE:
            raise ConfigError(
                f"history codes of {size} product states (radices {radices}) do not fit in int64; "
                "lower the order or the failure window.")
        self.A = size
        self.radices = np.array(radices, dtype=np.int64)
        self.strides = np.concatenate([[1], np.cumprod(self.radices)[:-1]]).astype(np.int64)
        #: the exogenous components (name, radix): their next value is drawn from R(x' | a)
        self.exo = [(name, r) for name, r, _ in parts if name in EXOGENOUS]
        self.n_exo = int(np.prod([r for _, r in self.exo])) if self.exo else 1

    def exo_values(self, codes: np.ndarray) -> np.ndarray:
        """The joint value of the exogenous components of ``codes`` (mixed radix over :attr:`exo`,
        the first component fastest); 0 for a layout without them."""
        codes = np.asarray(codes, dtype=np.int64)
        out = np.zeros(codes.shape, dtype=np.int64)
        mult = 1
        for name, r in self.exo:
            k = self.index[name]
            out += (codes // self.strides[k]) % r * mult
            mult *= r
        return out

    def components(self, codes: np.ndarray) -> np.ndarray:
        """(n_components, n) array of component values."""
        codes = np.asarray(codes, dtype=np.int64)
        return (codes[None, :] // self.strides[:, None]) % self.radices[:, None]

    def compose(self, comps: np.ndarray) -> np.ndarray:
        """Codes from component values (the inverse of :meth:`components`)."""
        return (np.asarray(comps, dtype=np.int64) * self.strides[:, None]).sum(axis=0)

    def base(self, codes: np.ndarray) -> np.ndarray:
        return np.asarray(codes, dtype=np.int64) % self.S

    def coarsen(self, codes: np.ndarray, coarse: "HistoryLayout") -> np.ndarray:
        """The codes of ``coarse`` (an ancestor level, :meth:`HistorySpec.levels`) of ``codes``:
        components it lacks dropped, capped ones capped at its caps."""
        codes = np.asarray(codes, dtype=np.int64)
        shape = codes.shape
        comps = self.components(codes.ravel())
        out = np.zeros(comps.shape[1], dtype=np.int64)
        for (name, _, cap), stride in zip(coarse.parts, coarse.strides):
            v = comps[self.index[name]]
            out += (v if cap is None else np.minimum(v, cap)) * stride
        return out.reshape(shape)

    def lift(self, codes: np.ndarray, fine: "HistoryLayout", high: bool) -> np.ndarray:
        """Codes of the finer level ``fine`` consistent with ``codes``: the lowest (``high=False``) or
        highest value of what this level does not know (a dropped component: its whole range; a
        capped value at this level's cap: from the cap up to the finer cap)."""
        comps = self.components(np.asarray(codes, dtype=np.int64).ravel())
        out = np.zeros(comps.shape[1], dtype=np.int64)
        for (name, radix, cap), stride in zip(fine.parts, fine.strides):
            if name in self.index:
                v = comps[self.index[name]]
                own_cap = self.parts[self.index[name]][2]
                if cap is not None and high:
                    v = np.where(v == own_cap, cap, v)
            else:
                v = np.full(comps.shape[1], (radix - 1) if high else 0, dtype=np.int64)
            out += v * stride
        return out.reshape(np.shape(codes))

    def names(self, state_names, event_names, codes=None, full: "HistoryLayout | None" = None) -> list:
        """Names of the states ``codes`` (default: the whole product space, for small layouts).

        With ``full`` (the layout of the full spec), what this level does not know is shown as ``*``
        (``prev=a,*``, ``in=*``), so every level's names differ.
        """
        full = self if full is None else full
        codes = np.arange(self.A) if codes is None else np.asarray(codes, dtype=np.int64)
        states = list(state_names) + ["-"]
        events = list(event_names) + ["-"]
        comps = self.components(codes)
        has = self.index
        fs = full.spec
        out = []
        for col in comps.T:  # a loop over the state vocabulary, not over rows
            parts = [states[col[0]]]
            if fs.order > 1:
                lags = [states[col[has[f"lag{i}"]]] if f"lag{i}" in has else "*"
                        for i in range(1, fs.order)]
                parts.append("prev=" + ",".join(lags))
            for name, label in (("since_fail", "since_fail"), ("fails", "fails")):
                if name not in full.index:
                    continue
                if name not in has:
                    parts.append(f"{label}=*")
                    continue
                v, cap = col[has[name]], self.parts[has[name]][2]
                parts.append(f"{label}={'>=' if v == cap else ''}{v}")
            if fs.entering_event:
                parts.append(f"in={events[col[has['in']]] if 'in' in has else '*'}")
            if fs.group_levels:
                if "group" in has:
                    v, cap = col[has["group"]], self.parts[has["group"]][2]
                    parts.append(f"group={'>=' if v == cap else ''}{v}")
                else:
                    parts.append("group=*")
            if fs.gap_bins:
                parts.append(_gap_name(col[has["gap"]], self.parts[has["gap"]][2], self.spec.gap_edges)
                             if "gap" in has else "gap=*")
            out.append("|".join(parts))
        return out

    def successor(self, fail: np.ndarray, codes: np.ndarray | None = None,
                  exo: "HistoryLayout | None" = None) -> np.ndarray:
        """f[a, e, j]: the state after base state j entered by event e, from each of ``codes``
        (default: the whole product space, for small layouts); shape (n, E, S).

        With ``exo`` (the full level's layout, when it has exogenous components): f[a, e, j, x'],
        shape (n, E, S, X), the next exogenous values ``x'`` on ``exo``'s joint values (capped at
        this level's caps; a level without the component ignores ``x'``).
        """
        code = self._successor(fail, codes)
        if exo is None or not exo.exo:
            return code
        code = np.repeat(code[..., None], exo.n_exo, axis=-1)
        xs = np.arange(exo.n_exo, dtype=np.int64)
        mult = 1
        for name, r in exo.exo:
            v = (xs // mult) % r
            mult *= r
            if name in self.index:
                k = self.index[name]
                code += np.minimum(v, self.parts[k][2]) * self.strides[k]
        return code

    def _successor(self, fail, codes):
        sp_, S, E = self.spec, self.S, self.E
        codes = np.arange(self.A) if codes is None else np.asarray(codes, dtype=np.int64)
        n = len(codes)
        comps = self.components(codes)
        fail = np.asarray(fail, dtype=bool)
        code = np.broadcast_to(np.arange(S, dtype=np.int64)[None, None, :], (n, E, S)).copy()
        ix, st = self.index, self.strides
        if sp_.order > 1:
            # new lag 1 = current base; new lag i = old lag i-1
            code += comps[0][:, None, None] * st[ix["lag1"]]
            for i in range(2, sp_.order):
                code += comps[ix[f"lag{i - 1}"]][:, None, None] * st[ix[f"lag{i}"]]
        if sp_.failure_window:
            W = sp_.failure_window
            d = comps[ix["since_fail"]][:, None, None]
            nd = np.where(fail[None, None, :], 0, np.minimum(d + 1, W))
            code += nd * st[ix["since_fail"]]
            if sp_.failure_count:
                c = comps[ix["fails"]][:, None, None]
                nc = np.where(fail[None, None, :], np.minimum(c + 1, sp_.failure_count),
                              np.where(nd == W, 0, c))
                code += nc * st[ix["fails"]]
        if sp_.entering_event:
            code += np.arange(E, dtype=np.int64)[None, :, None] * st[ix["in"]]
        return code


class HistoryCounts:
    """Counts ``N[..., e, a, j]`` over the seen augmented states ``codes``.

    ``codes`` are the sorted, distinct mixed-radix codes (:class:`HistoryLayout`) of the states that
    occur in the counted steps; ``counts`` has shape ``(..., E, len(codes), S)`` (leading axes: time
    bins). A state that occurs without a counted transition out of it (an entity's last step, or a
    bin before it was first seen) has a zero row. ``exo`` (states with exogenous components, such
    as the group context): ``M[..., a, x']``, shape ``(..., len(codes), X)``, the joint exogenous
    value of the state each transition enters; None without them.

    Counts add like arrays: ``+`` and ``-`` align two vocabularies on the union of their codes;
    indexing, ``sum()`` and ``cumsum(axis=0)`` (also through ``np.cumsum``) act on the leading bin
    axes and keep the vocabulary. Converting to a dense array is refused (two vocabularies would
    add silently wrong): use :attr:`counts` with :attr:`codes`.

    Examples
    --------
    >>> a = HistoryCounts([3, 7], np.ones((1, 2, 2), dtype=np.int64))
    >>> b = HistoryCounts([7, 9], np.full((1, 2, 2), 2, dtype=np.int64))
    >>> (a + b).codes.tolist(), (a + b).counts[0, :, 0].tolist()
    ([3, 7, 9], [1, 3, 2])
    """

    __slots__ = ("codes", "counts", "exo")
    __array_ufunc__ = None  # numpy defers ``ndarray + counts`` to this class

    def __init__(self, codes, counts, exo=None):
        codes = np.asarray(codes, dtype=np.int64).reshape(-1)
        counts = np.asarray(counts)
        if counts.ndim < 3 or counts.shape[-2] != len(codes):
            raise ValueError(f"counts of shape {counts.shape} do not match {len(codes)} codes: "
                             "expected (..., E, n_codes, S)")
        if len(codes) > 1 and not (np.diff(codes) > 0).all():
            raise ValueError("history codes must be sorted and distinct")
        if not np.issubdtype(counts.dtype, np.integer):
            raise ValueError(f"counts must be integers, got {counts.dtype}")
        if exo is not None:
            exo = np.asarray(exo)
            if exo.shape[:-1] != counts.shape[:-3] + (len(codes),) or \
                    not np.issubdtype(exo.dtype, np.integer):
                raise ValueError(f"exogenous counts of shape {exo.shape} do not match counts of shape "
                                 f"{counts.shape}: expected integers of shape (..., n_codes, X)")
            exo = exo.astype(np.int64, copy=False)
        self.codes, self.counts, self.exo = codes, counts.astype(np.int64, copy=False), exo

    # ---------------------------------------------------------- as an array
    @property
    def shape(self) -> tuple:
        return self.counts.shape

    @property
    def ndim(self) -> int:
        return self.counts.ndim

    def __repr__(self) -> str:
        return f"HistoryCounts({len(self.codes)} states, shape={self.counts.shape})"

    def __array__(self, *args, **kwargs):
        raise TypeError("HistoryCounts is not a dense array: use .counts (over the states .codes), "
                        "or markovfault.chain.merge_counts to add counts of several parts.")

    def __getitem__(self, key) -> "HistoryCounts":
        if self.counts.ndim == 3:
            raise TypeError("index HistoryCounts by bin only (counts of one bin have no bin axis); "
                            "use .counts for the (E, A, S) array")
        out = self.counts[key]
        if out.ndim < 3 or out.shape[-3:] != self.counts.shape[-3:]:
            raise TypeError("index HistoryCounts by its leading bin axes only")
        return HistoryCounts(self.codes, out, None if self.exo is None else self.exo[key])

    def __iter__(self):
        return (self[k] for k in range(self.counts.shape[0]))

    def sum(self, axis=None, **kwargs):
        return self.counts.sum(axis=axis, **kwargs)

    def cumsum(self, axis=0, dtype=None, out=None) -> "HistoryCounts":
        if axis is None or axis % self.counts.ndim >= self.counts.ndim - 3 or out is not None:
            raise TypeError("HistoryCounts.cumsum runs over a leading bin axis only")
        exo = None if self.exo is None else np.cumsum(self.exo, axis=axis % self.counts.ndim,
                                                       dtype=dtype)
        return HistoryCounts(self.codes, np.cumsum(self.counts, axis=axis, dtype=dtype), exo)

    def _aligned(self, other) -> tuple:
        if not isinstance(other, HistoryCounts):
            raise TypeError(f"cannot combine HistoryCounts with {type(other).__name__}")
        if self.counts.shape[:-2] != other.counts.shape[:-2] or \
                self.counts.shape[-1] != other.counts.shape[-1]:
            raise ValueError(f"counts of shapes {self.counts.shape} and {other.counts.shape} "
                             "are on different events, states or bins")
        if (self.exo is None) != (other.exo is None) or \
                (self.exo is not None and self.exo.shape[-1] != other.exo.shape[-1]):
            raise ValueError("counts with and without (or with different) exogenous components "
                             "cannot be combined")
        if np.array_equal(self.codes, other.codes):
            return self.codes, self, other
        codes = np.union1d(self.codes, other.codes)
        return codes, self.on(codes), other.on(codes)

    def _combine(self, other, sign: int) -> "HistoryCounts":
        codes, a, b = self._aligned(other)
        exo = None if a.exo is None else a.exo + sign * b.exo
        return HistoryCounts(codes, a.counts + sign * b.counts, exo)

    def __add__(self, other) -> "HistoryCounts":
        if isinstance(other, (int, np.integer)) and other == 0:  # sum() starts at 0
            return self
        return self._combine(other, 1)

    __radd__ = __add__

    def __sub__(self, other) -> "HistoryCounts":
        return self._combine(other, -1)

    def on(self, codes) -> "HistoryCounts":
        """The same counts over a larger vocabulary ``codes`` (sorted, containing :attr:`codes`)."""
        codes = np.asarray(codes, dtype=np.int64)
        pos = np.searchsorted(codes, self.codes)
        if len(self.codes) and (pos.max() >= len(codes) or (codes[pos] != self.codes).any()):
            raise ValueError("the new vocabulary must contain every code of the counts")
        out = np.zeros(self.counts.shape[:-2] + (len(codes), self.counts.shape[-1]), dtype=np.int64)
        out[..., pos, :] = self.counts
        exo = None
        if self.exo is not None:
            exo = np.zeros(self.exo.shape[:-2] + (len(codes), self.exo.shape[-1]), dtype=np.int64)
            exo[..., pos, :] = self.exo
        return HistoryCounts(codes, out, exo)

    def pruned(self) -> "HistoryCounts":
        """Only the states with a counted transition out of them (in any bin)."""
        axes = tuple(a for a in range(self.counts.ndim) if a != self.counts.ndim - 2)
        keep = (self.counts != 0).any(axis=axes)
        exo = None if self.exo is None else self.exo[..., keep, :]
        return HistoryCounts(self.codes[keep], self.counts[..., keep, :], exo)


def augment(traj: Trajectories, spec: HistorySpec, n_events: int | None = None) -> np.ndarray:
    """Augmented state code of every step of ``traj`` (vectorised within runs).

    ``n_events`` is the model's number of events when ``traj`` holds events
    the model never saw (codes ``>= n_events``): those enter as "unknown".

    Examples
    --------
    >>> traj = Trajectories.from_codes([0, 1, 1, 0], state_names=["ok", "down"],
    ...                                failure=["down"])
    >>> layout = HistoryLayout(HistorySpec(order=2), 2, 1)
    >>> [layout.names(["ok", "down"], ["step"])[a] for a in augment(traj, HistorySpec(order=2))]
    ['ok|prev=-', 'down|prev=ok', 'down|prev=down', 'ok|prev=down']
    """
    E = traj.n_events if n_events is None else n_events
    layout = HistoryLayout(spec, traj.n_states, E)
    n = traj.n_steps
    idx = np.arange(n)
    run_id = np.zeros(n, dtype=np.int64)
    if n:
        run_id[traj.run_starts[1:]] = 1
        run_id = np.cumsum(run_id)
    start = traj.run_starts[run_id] if n else np.zeros(0, np.int64)
    pos = idx - start
    code = traj.state.astype(np.int64).copy()
    ix, st = layout.index, layout.strides
    for lag in range(1, spec.order):
        prev = np.where(pos >= lag, traj.state[np.maximum(idx - lag, 0)], layout.S)
        code += prev * st[ix[f"lag{lag}"]]
    if spec.failure_window:
        fail = traj.is_failure[traj.state]
        last = np.maximum.accumulate(np.where(fail, idx, -1)) if n else idx
        d = np.where(last >= start, np.minimum(idx - last, spec.failure_window),
                     spec.failure_window)
        code += d * st[ix["since_fail"]]
        if spec.failure_count:
            # failures since the last recovered step (d == W), or since the run began
            cum = np.cumsum(fail)
            rec = np.maximum.accumulate(np.where(d == spec.failure_window, idx, -1)) if n else idx
            base_rec = np.where(rec >= start, rec, start - 1)
            before = np.where(base_rec >= 0, cum[np.maximum(base_rec, 0)], 0)
            c = np.minimum(cum - before, spec.failure_count)
            code += c * st[ix["fails"]]
    if spec.entering_event:
        code += np.minimum(traj.event, E) * st[ix["in"]]
    if spec.group_levels:
        level = np.minimum(group_failures(traj, spec.group_window, spec.group_count),
                           spec.group_levels - 1)
        code += level * st[ix["group"]]
    if spec.gap_bins:
        code += gap_bin(traj, spec) * st[ix["gap"]]
    return code


# ------------------------------------------------------------------ the time since the previous step
def _duration_text(ns: int) -> str:
    """A whole number of nanoseconds as the shortest exact duration text (``"90s"``, ``"5min"``)."""
    ns = int(ns)
    for unit, size in (("d", 86_400 * 10 ** 9), ("h", 3_600 * 10 ** 9), ("min", 60 * 10 ** 9),
                       ("s", 10 ** 9), ("ms", 10 ** 6), ("us", 10 ** 3)):
        if ns % size == 0:
            return f"{ns // size}{unit}"
    return f"{ns}ns"


def _gap_name(v: int, cap: int, edges) -> str:
    """The name of gap bin ``v`` of a level whose last bin is ``cap``: ``gap<30s``, ``gap=[30s,5min)``,
    ``gap>=5min`` (bin numbers when the edges are not chosen yet)."""
    if edges is None:
        return f"gap={'>=' if v == cap else ''}{v}"
    if v == 0:
        return f"gap<{edges[0]}"
    if v == cap:
        return f"gap>={edges[v - 1]}"
    return f"gap=[{edges[v - 1]},{edges[v]})"


def gap_edges_in_units(edges, time_kind: str) -> np.ndarray:
    """``gap_edges`` in the units of the time column (nanoseconds for timestamps).

    Examples
    --------
    >>> gap_edges_in_units(("30s", "5min"), "datetime").tolist(), gap_edges_in_units((2, 5), "integer").tolist()
    ([30000000000, 300000000000], [2, 5])
    """
    durations = all(isinstance(e, str) for e in edges)
    if time_kind == "datetime":
        if not durations:
            raise ConfigError(f"history gap_edges = {list(edges)!r} are bare numbers but the time column "
                              "holds timestamps; give durations such as [\"30s\", \"5min\"].")
        return np.array([pd.Timedelta(e).value for e in edges], dtype=np.int64)
    if durations:
        raise ConfigError(f"history gap_edges = {list(edges)!r} are durations but the time column holds "
                          "sequence numbers; give numbers of time units, such as [2, 5].")
    return np.asarray(edges)


def _step_gaps(traj: Trajectories) -> np.ndarray:
    """Each step's time minus the time of the step before it (meaningless at run starts)."""
    time = np.asarray(traj.time, dtype=np.int64)
    return time - np.r_[time[:1], time[:-1]]


def gap_bin(traj: Trajectories, spec: HistorySpec) -> np.ndarray:
    """The gap bin of every step of ``traj`` (0..``gap_bins - 1``): the bin of the time since the previous
    step of its run (bin ``k``: ``edges[k-1] <= gap < edges[k]``), the last bin at the first step of a
    run (nothing recent precedes it: the start of the history, or a break longer than ``max_gap``).

    Examples
    --------
    >>> traj = Trajectories.from_codes([0, 0, 0, 0, 0], lengths=[4, 1], state_names=["ok"])
    >>> traj = Trajectories(**{**traj.__dict__, "time": np.array([0, 1, 4, 12, 3])})
    >>> gap_bin(traj, HistorySpec(gap_edges=[2, 5])).tolist()  # gaps -, 1, 3, 8 and a new entity
    [2, 0, 1, 2, 2]
    """
    if spec.gap_edges is None:
        raise HistoryError(
            f"history gap_bins = {spec.gap_bins}: the bins' edges are chosen from the training data "
            "when a model is fitted (FaultPredictor.fit, backtest, select_states); to encode histories "
            "directly, choose them first with resolve_gap_edges(spec, traj), or give gap_edges.")
    edges = gap_edges_in_units(spec.gap_edges, traj.time_kind)
    out = np.searchsorted(edges, _step_gaps(traj), side="right").astype(np.int64)
    out[traj.is_run_start()] = spec.gap_bins - 1
    return out


def gap_counts(traj: Trajectories, before: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The distinct gaps of ``traj`` and how often each occurs: the time since the previous step of
    every step that follows another step of its run (and lies before ``before``, when given); steps
    into an end state are left out (an end added for silence has a made-up time). Summed over parts
    (``np.unique`` of the concatenated values, weighted), they are the gaps of the whole.

    Examples
    --------
    >>> traj = Trajectories.from_codes([0] * 5, lengths=[4, 1], state_names=["ok"])
    >>> traj = Trajectories(**{**traj.__dict__, "time": np.array([0, 1, 4, 5, 3])})
    >>> [v.tolist() for v in gap_counts(traj)]
    [[1, 3], [2, 1]]
    """
    keep = ~traj.is_run_start()
    if traj.is_end is not None:
        keep &= ~np.asarray(traj.is_end, dtype=bool)[traj.state]
    if before is not None:
        keep &= np.asarray(traj.time, dtype=np.int64) < before
    return np.unique(_step_gaps(traj)[keep], return_counts=True)


def gap_edges_from_counts(values: np.ndarray, counts: np.ndarray, n_bins: int) -> np.ndarray:
    """Quantile edges of ``n_bins`` gap bins from the distinct gaps ``values`` (sorted) seen ``counts``
    times: edge ``k`` (k = 1..n_bins-1) is the gap at position ``floor(k n / n_bins)`` (0-based) of the
    ``n`` sorted gaps, so without ties bin ``k`` holds the gaps from that position up to the next edge's.
    Ties can make edges equal (kept once) or equal to the smallest gap (dropped: its bin 0 would be
    empty), so fewer bins may come out. Exact on integers (no interpolation).

    Examples
    --------
    >>> gap_edges_from_counts(np.arange(1, 10), np.ones(9, dtype=int), 3).tolist()  # 1..9: 3 + 3 + 3
    [4, 7]
    >>> gap_edges_from_counts(np.array([1, 2, 3]), np.array([6, 1, 2]), 3).tolist()  # six 1s: one edge
    [2]
    """
    cum = np.cumsum(counts)
    pos = (np.arange(1, n_bins, dtype=np.int64) * int(cum[-1])) // n_bins
    edges = np.unique(np.asarray(values)[np.searchsorted(cum, pos, side="right")])
    return edges[edges > values[0]]


def with_gap_edges(spec: HistorySpec, values: np.ndarray, counts: np.ndarray, time_kind: str) -> HistorySpec:
    """``spec`` with its gap edges chosen from the training gaps ``values`` (seen ``counts`` times; see
    :func:`gap_counts`), written as durations for timestamps (exact, e.g. ``"90s"``) and as integers for
    sequence numbers; ``gap_bins`` becomes their number plus one. A :class:`DataWarning` when ties leave
    fewer bins than asked for; a :class:`HistoryError` when fewer than two are left.
    """
    K = int(spec.gap_bins)

    def text(e):
        return _duration_text(e) if time_kind == "datetime" else int(e)

    if not len(values):
        raise HistoryError(
            f"history gap_bins = {K}: no step of the training data follows another step of its run, so no "
            "gap bins can be chosen from it; give the edges (gap_edges = [...]) or drop gap_bins.")
    edges = gap_edges_from_counts(values, counts, K)
    if not len(edges):
        raise HistoryError(
            f"history gap_bins = {K}: every training gap is {text(values[0])!r} (one value), so no bins can "
            "be chosen from the data; give the edges (gap_edges = [...]) or drop gap_bins.")
    chosen = tuple(text(e) for e in edges)
    if len(edges) + 1 < K:
        warnings.warn(
            f"history gap_bins = {K}: the training gaps have ties, so their quantiles give only "
            f"{len(edges) + 1} distinct bins (edges {list(chosen)}); the model uses those. Give gap_edges "
            "to choose the bins yourself.", DataWarning, stacklevel=3)
    return replace(spec, gap_bins=len(edges) + 1, gap_edges=chosen)


def resolve_gap_edges(spec: HistorySpec | None, traj: Trajectories, before: int | None = None):
    """``spec`` with its gap bins' edges chosen from the gaps of ``traj`` (the steps before ``before``, when
    given: a backtest's first cutoff); ``spec`` itself when it has no gap or its edges are known.

    A fit chooses them from its training histories (a streamed fit: from the first batch, as the state
    extractor), a backtest from the steps before its first cutoff, :func:`~markovfault.selection.select_states`
    from the steps before its hold-out; the fitted chain's ``spec`` keeps them, and so does a model file.

    Examples
    --------
    >>> traj = Trajectories.from_codes([0] * 10, state_names=["ok"])
    >>> traj = Trajectories(**{**traj.__dict__, "time": np.cumsum([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])})
    >>> resolve_gap_edges(HistorySpec(gap_bins=3), traj).gap_edges  # gaps 1..9
    (4, 7)
    """
    if spec is None or spec.is_resolved:
        return spec
    return with_gap_edges(spec, *gap_counts(traj, before), traj.time_kind)


def window_in_units(window, time_kind: str) -> int:
    """A ``group_window`` in the units of the time column (nanoseconds for timestamps).

    Examples
    --------
    >>> window_in_units("10min", "datetime"), window_in_units(5, "integer")
    (600000000000, 5)
    """
    if time_kind == "datetime":
        if not isinstance(window, str):
            raise ConfigError(f"history group_window = {window!r} is a bare number but the time column "
                              "holds timestamps; give a duration such as \"10min\".")
        return int(pd.Timedelta(window).value)
    if isinstance(window, str):
        raise ConfigError(f"history group_window = {window!r} is a duration but the time column holds "
                          "sequence numbers; give an integer number of time units.")
    return int(window)


def _events_before(ev_key: np.ndarray, ev_time: np.ndarray, key: np.ndarray, time: np.ndarray,
                   width: int) -> np.ndarray:
    """For every query ``(key, time)``, the events with the same key at times in ``[time - width, time)``.

    Vectorised: the events sorted by (key, time rank), then two ``searchsorted``. Times are ranked
    over every value looked up, so ``key * n_ranks + rank`` cannot overflow.
    """
    lo = time - width
    ranks = np.unique(np.concatenate([time, lo, ev_time]))
    K = len(ranks)
    key = key.astype(np.int64)
    sorted_ev = np.sort(ev_key.astype(np.int64) * K + np.searchsorted(ranks, ev_time))
    return (np.searchsorted(sorted_ev, key * K + np.searchsorted(ranks, time), side="left")
            - np.searchsorted(sorted_ev, key * K + np.searchsorted(ranks, lo), side="left"))


def counted_failures(traj: Trajectories, count: str = "onsets") -> np.ndarray:
    """Which steps of ``traj`` the group context counts as failures (``count``: see
    :func:`group_failures`); an end state is not a failure.

    Examples
    --------
    >>> traj = Trajectories.from_codes([1, 1, 0, 1], state_names=["ok", "down"], failure=["down"])
    >>> counted_failures(traj).tolist(), counted_failures(traj, "steps").tolist()
    ([True, False, False, True], [True, True, False, True])
    """
    fail = traj.is_failure[traj.state]
    if traj.is_end is not None:
        fail = fail & ~np.asarray(traj.is_end, dtype=bool)[traj.state]
    if count == "onsets":  # a failure step after a failure step of the same run is not a new failure
        fail = fail & ~np.r_[False, fail[:-1] & ~traj.is_run_start()[1:]]
    elif count != "steps":
        raise ValueError(f"count must be one of {list(GROUP_COUNTS)}, got {count!r}")
    return fail


def group_failures(traj: Trajectories, window, count: str = "onsets") -> np.ndarray:
    """The failures of the *other* members of each step's group in the trailing ``window`` before the
    step (times in ``[t - window, t)``; the step's own entity excluded).

    ``count="onsets"`` counts the steps that enter a failure state (the step before, of the same run,
    was not a failure; a run that starts failed counts once); ``"steps"`` every step in a failure
    state. An end state is not a failure.

    A later batch continues what was counted before: the remembered last steps it starts with keep
    the context they were counted with (:attr:`Trajectories.group_carried`, their failures are not
    counted again), and the failures remembered from earlier batches
    (:attr:`Trajectories.group_memory`) are counted with those among the new steps.

    Examples
    --------
    >>> traj = Trajectories.from_codes([1, 1, 0, 1, 0], lengths=[2, 3],
    ...                                state_names=["ok", "down"], failure=["down"])
    >>> traj = Trajectories(**{**traj.__dict__, "time": np.array([0, 1, 1, 2, 4]),
    ...                        "group": np.zeros(5, dtype=np.int64)})
    >>> group_failures(traj, 3, "steps").tolist()  # entity 0 down at 0 and 1, entity 1 at 2
    [0, 0, 1, 2, 1]
    >>> group_failures(traj, 3).tolist()  # entity 0's two steps down are one failure, at time 0
    [0, 0, 1, 1, 0]
    """
    if traj.group is None:
        raise HistoryError("the history's group context (group_window, group_levels) needs a group "
                           "column: set [columns] group = \"<column>\" (ColumnMap(group=...)), or drop "
                           "group_levels from [states.history].")
    width = window_in_units(window, traj.time_kind)
    fail = counted_failures(traj, count)
    carried = traj.group_carried
    if carried is not None:  # remembered steps: counted before (and remembered if recent)
        fail = fail & (carried < 0)
    time = np.asarray(traj.time, dtype=np.int64)
    group, entity = np.asarray(traj.group, dtype=np.int64), np.asarray(traj.entity, dtype=np.int64)
    ev_group, ev_entity, ev_time = group[fail], entity[fail], time[fail]
    if traj.group_memory is not None:
        memory = np.asarray(traj.group_memory, dtype=np.int64).reshape(3, -1)
        ev_group = np.concatenate([ev_group, memory[0]])
        ev_entity = np.concatenate([ev_entity, memory[1]])
        ev_time = np.concatenate([ev_time, memory[2]])
    out = (_events_before(ev_group, ev_time, group, time, width)
           - _events_before(ev_entity, ev_time, entity, time, width))
    return out if carried is None else np.where(carried >= 0, carried, out)


def count_augmented(aug: np.ndarray, traj: Trajectories, bins: np.ndarray | None = None,
                    n_bins: int = 1, layout: HistoryLayout | None = None) -> HistoryCounts:
    """Counts ``N[(bin,) e, a, j]`` of base next states ``j`` by event and augmented state.

    The states are the distinct codes of ``aug`` (every step's, so a state met only at an entity's
    last step has a zero row); a transition is counted in the bin of the step it enters. With a
    ``layout`` that has exogenous components, also ``M[(bin,) a, x']``: the joint exogenous value
    ``x'`` of the state each transition enters (:attr:`HistoryCounts.exo`).

    Examples
    --------
    >>> traj = Trajectories.from_codes([0, 1, 1, 0], state_names=["ok", "down"], failure=["down"])
    >>> c = count_augmented(augment(traj, HistorySpec(order=2)), traj)
    >>> c.codes.tolist(), int(c.sum())  # down|prev=ok, ok|prev=down, down|prev=down, ok|prev=-
    ([1, 2, 3, 4], 3)
    """
    aug = np.asarray(aug, dtype=np.int64)
    codes, local = np.unique(aug, return_inverse=True)
    local = local.reshape(-1)
    n = traj.n_steps
    E, S, A = traj.n_events, traj.n_states, len(codes)
    cells = E * A * S * (1 if bins is None else n_bins)
    if cells > MAX_COUNT_CELLS:
        raise ConfigError(
            f"the counts of {A} seen history states need {cells:,} cells ({E} events x {A} states x "
            f"{S} next states{'' if bins is None else f' x {n_bins} bins'}), over the limit of "
            f"{MAX_COUNT_CELLS:,}; lower the order or the failure window, or drop the entering event.")
    shape = (E, A, S) if bins is None else (n_bins, E, A, S)
    X = layout.n_exo if layout is not None and layout.exo else 0
    xshape = (A, X) if bins is None else (n_bins, A, X)
    if n < 2:
        return HistoryCounts(codes, np.zeros(shape, dtype=np.int64),
                             np.zeros(xshape, dtype=np.int64) if X else None)
    starts = traj.run_starts
    cut = starts[starts > 0] - 1
    b = 0 if bins is None else np.asarray(bins)[1:].astype(np.int64)
    idx = traj.event[1:].astype(np.int64) + b * E
    idx = (idx * A + local[:-1]) * S + traj.state[1:]
    idx[cut] = cells
    exo = None
    if X:
        xi = (b * A + local[:-1]) * X + layout.exo_values(aug[1:])
        xcells = A * X * (1 if bins is None else n_bins)
        xi[cut] = xcells
        exo = np.bincount(xi, minlength=xcells + 1)[:xcells].reshape(xshape)
    return HistoryCounts(codes, np.bincount(idx, minlength=cells + 1)[:cells].reshape(shape), exo)


def candidate_specs(orders=(1, 2), failure_windows=(0, 3), entering_event=(False,),
                    backoff=5.0, failure_counts=(0,), group_levels=(0,), group_window=None,
                    group_count: str = "onsets") -> list:
    """Every valid combination, as :class:`HistorySpec` (a grid for :func:`select_states`).

    ``group_levels``: the group context's levels to try (0: without it), each over ``group_window``
    counting ``group_count`` (see :class:`HistorySpec`).

    Examples
    --------
    >>> [s.to_config().get("group_levels", 0) for s in candidate_specs(
    ...     orders=(1,), failure_windows=(3,), group_levels=(0, 3), group_window="5min")]
    [0, 3]
    """
    if any(g for g in group_levels) and group_window is None:
        raise ConfigError(f"candidates with group_levels {[g for g in group_levels if g]} need a "
                          "group_window: the trailing window (\"10min\" for timestamps, an int for "
                          "sequence numbers) in which the other members' failures are counted")
    out = []
    for o, w, c, e, g in itertools.product(orders, failure_windows, failure_counts, entering_event,
                                           group_levels):
        if c and not w:
            continue
        grp = {"group_window": group_window, "group_levels": g, "group_count": group_count} if g else {}
        out.append(HistorySpec(order=o, failure_window=w, entering_event=bool(e), backoff=backoff,
                               failure_count=c, **grp))
    return out
