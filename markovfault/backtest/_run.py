"""One backtest's arrays, computed once and shared by the folds (internal API: the Dask back end answers
the same questions from per-partition results, see ``markovfault._dask``)."""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from .._estimator import clone
from .._eventmix import RECENT, event_probs_for, mix_name, recent_arrivals, recent_strength_for
from .._priors import pseudo_origin_rates
from ..chain import EventMarkovChain, make_chain
from ..exceptions import HistoryError
from ..predictor._settings import history_spec_of
from ..states._history import resolve_gap_edges
from ..trajectories import end_mask
from . import _bootstrap
from ._baselines import GradientBoostingBaseline
from ._result import BacktestResult

__all__ = ["Run", "Progress", "recent_slices", "fit_predict_gb", "fmt_time"]


def fmt_time(t, time_kind):
    return str(pd.Timestamp(int(t), tz="UTC")) if time_kind == "datetime" else str(int(t))


class Progress:
    """The backtest's progress line on stderr (when it is a terminal, or when asked): what is running, how many
    of how many are done, and an estimate of the time left from the mean time per step so far."""

    def __init__(self, total: int, enabled: bool | None, what: str = "fold"):
        self.total, self.done, self.what = total, 0, what
        self.enabled = sys.stderr.isatty() if enabled is None else bool(enabled)
        self.start, self.width = time.monotonic(), 0
        if self.enabled and total:
            self._write(f"backtest: {what} 0/{total}, estimating the time left")

    def _write(self, line: str) -> None:
        sys.stderr.write("\r" + line.ljust(self.width))  # the padding erases a longer previous line
        self.width = len(line)
        sys.stderr.flush()

    def step(self, what: str | None = None) -> None:
        self.done += 1
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.start
        what = what or self.what
        if self.done >= self.total:
            self._write(f"backtest: {what} {self.done}/{self.total}, done in {_clock(elapsed)}")
            sys.stderr.write("\n")
            sys.stderr.flush()
            return
        left = elapsed / self.done * (self.total - self.done)
        self._write(f"backtest: {what} {self.done}/{self.total}, {_clock(elapsed)} so far, about {_clock(left)} left")


def _clock(seconds: float) -> str:
    """A duration as 42s, 3m05s or 1h02m."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Run:
    """The arrays of one backtest, computed once and shared by the folds."""

    def __init__(self, traj, cuts, width, horizon, threshold, predictor, base_specs, origins,
                 n_jobs, progress, event_mixes=("long_run",), recent_width=None):
        self.traj, self.cuts, self.width, self.H = traj, cuts, width, horizon
        self.threshold, self.predictor, self.base_specs = threshold, predictor, base_specs
        self.origins, self.n_jobs, self.progress = origins, n_jobs, progress
        # an unfitted chain of the predictor's kind: it counts and encodes (the plain or the
        # history-aware chain, through one interface); gap bins chosen from the data take their
        # edges from the steps before the first cutoff, shared by every fold like the states
        spec = resolve_gap_edges(history_spec_of(predictor.history), traj, before=cuts[0])
        self.chain = make_chain(spec, alpha=predictor.alpha, beta=predictor.beta)
        self.code = self.chain.encode(traj)  # each step's chain state (with history: the past only)
        self.event_mixes = list(event_mixes)
        self.recent_width = recent_width
        n = traj.n_steps
        ent = traj.entity
        starts = np.flatnonzero(np.r_[True, ent[1:] != ent[:-1]]) if n else np.zeros(0, np.int64)
        self.ent_start = starts
        self.ent_end = np.r_[starts[1:], n]
        lens = self.ent_end - self.ent_start
        self.end_of = np.repeat(self.ent_end, lens)  # exclusive end of each step's entity
        fail = traj.is_failure[traj.state]
        self.fail = fail
        fail_pos = np.flatnonzero(fail)
        j = np.searchsorted(fail_pos, np.arange(n) + 1)  # first failure strictly after n
        padded = np.r_[fail_pos, n + horizon + 1]  # "none" past the last failure
        nxt = padded[j]
        d = nxt - np.arange(n)
        d[nxt >= self.end_of] = horizon + 1  # the entity's next failure, if any, is beyond
        self.d = np.minimum(d, horizon + 1)  # steps to the next failure, capped at H+1
        # end states (a finished order, a closed session): an entity that reached one has
        # ended without failure, so after its end every horizon is observed. END steps are no
        # origins (nothing can happen from them).
        self.is_end_step = end_mask(traj)[traj.state]
        pos = np.where(self.is_end_step, np.arange(n), n)
        first_end = np.minimum.reduceat(pos, starts) if n else np.zeros(0, np.int64)
        self.ended = first_end < self.ent_end  # per entity: it reaches an end state
        self.end_time = np.where(self.ended, traj.time[np.minimum(first_end, max(n - 1, 0))],
                                 np.iinfo(np.int64).max) if n else np.zeros(0, np.int64)
        before_end = self.ended[ent] & (np.arange(n) < first_end[ent]) if n else \
            np.zeros(0, bool)
        self.first_end = first_end
        self.observed = np.where(before_end, horizon + 1, self.end_of - 1 - np.arange(n))
        # lead times count failure onsets: from an origin that is failing already, the next
        # failure step may just be the same failure going on, so it is no target
        self.d_onset = np.where(fail, horizon + 1, self.d)

    # ---------------------------------------------------------------- counts
    def fold_counts(self) -> np.ndarray:
        """Training counts of every fold, (K, E, S, S) or, with history-aware states,
        (K, E, A, S), from one counting pass."""
        tr = self.traj
        bounds = self.cuts if self.width is None else np.unique(
            np.r_[self.cuts, self.cuts - self.width])
        bins = np.searchsorted(bounds, tr.time, side="right")  # = #bounds <= t
        per_bin = self.chain.count(tr, bins, len(bounds) + 1)
        cum = np.cumsum(per_bin, axis=0)  # cum[j] = counts of times < bounds[j]
        upto = cum[np.searchsorted(bounds, self.cuts)]
        if self.width is None:
            return upto
        return upto - cum[np.searchsorted(bounds, self.cuts - self.width)]

    # ------------------------------------------------------------ origins
    def _n_before(self, c) -> np.ndarray:
        """Per entity, how many of its steps lie before ``c``."""
        if not hasattr(self, "_before_cum"):
            # one pass for every cutoff: steps per (entity, number of cutoffs <= t)
            K = len(self.cuts)
            b = np.searchsorted(self.cuts, self.traj.time, side="right")
            cell = self.traj.entity * (K + 1) + b
            per = np.bincount(cell, minlength=len(self.ent_start) * (K + 1))
            self._before_cum = np.cumsum(per.reshape(-1, K + 1), axis=1)
        k = np.searchsorted(self.cuts, c)
        if k < len(self.cuts) and self.cuts[k] == c:
            return self._before_cum[:, k]  # steps with time < cuts[k]: bins 0..k
        return np.bincount(self.traj.entity, weights=self.traj.time < c,
                           minlength=len(self.ent_start)).astype(np.int64)

    def last_before(self, c) -> np.ndarray:
        """Per entity, the index of its last step before ``c`` (-1 where none)."""
        before = self._n_before(c)
        return np.where(before > 0, self.ent_start + before - 1, -1)

    def first_at_or_after(self, c) -> np.ndarray:
        """Per entity, the index of its first step at or after ``c`` (= end where none)."""
        return self.ent_start + self._n_before(c)

    def test_origins(self, k: int) -> np.ndarray:
        if self.origins == "cutoff":
            last = self.last_before(self.cuts[k])
            last = last[last >= 0]
            return last[~self.is_end_step[last]]
        fold_of = np.searchsorted(self.cuts, self.traj.time, side="right") - 1
        return np.flatnonzero((fold_of == k) & ~self.is_end_step)

    def labels(self, idx: np.ndarray) -> np.ndarray:
        """Outcomes (n, H): 1 fail within h, 0 h steps seen without failure, -1 censored."""
        h = np.arange(1, self.H + 1)[None, :]
        d, obs = self.d[idx][:, None], self.observed[idx][:, None]
        return np.where(d <= h, 1, np.where(obs >= h, 0, -1)).astype(np.int8)

    def train_window(self, k: int):
        """Training origins of fold k and how many steps of each lie before the cutoff."""
        c = self.cuts[k]
        last = self.last_before(c)
        lo = self.ent_start if self.width is None else self.first_at_or_after(c - self.width)
        ent = self.traj.entity
        steps = np.arange(self.traj.n_steps)
        mask = (steps <= last[ent]) & (steps >= lo[ent]) & ~self.is_end_step
        idx = np.flatnonzero(mask)
        gap = last[ent[idx]] - idx  # future steps of the origin that lie before c
        return idx, self.ended_gap(idx, gap, c)

    def ended_gap(self, idx, gap, c):
        """``gap`` where an origin's entity ended (reached an end state) before ``c``: every
        horizon is seen, so the gap is the full horizon."""
        done = (self.end_time[self.traj.entity[idx]] < c) & (idx < self.first_end[
            self.traj.entity[idx]])
        return np.where(done, np.maximum(gap, self.H), gap)

    # ----------------------------------------------- what each fold reads
    # (the dask back end, markovfault._dask._GatheredRun, answers these from per-partition
    # results instead of one trajectory)
    def fold_train(self, k: int):
        """Training (positives, origins) per (state, horizon) of fold k, and what the
        gradient-boosting baseline needs to build its training set (``None``: built
        on demand by :meth:`gb_inputs`)."""
        if self.width is None:
            return (*self.fold_rates(k), None)
        tidx, gap = self.train_window(k)
        n_pos, n_orig = self.state_rates(tidx, gap)
        return n_pos, n_orig, (tidx, gap)

    def fold_rates(self, k: int):
        """``state_rates(*train_window(k))`` without a pass over every step per fold.

        Expanding windows only. An origin whose whole h-window (h <= H) lies
        before the cutoff ("far": its step H later is before the cutoff)
        counts the same in every fold from the one where it becomes far, so
        far origins are counted once, binned by that fold, and summed
        cumulatively; only the last H origins of each entity before the
        cutoff are counted per fold.
        """
        if self.width is not None:
            return self.state_rates(*self.train_window(k))
        tr, H = self.traj, self.H
        S = tr.n_states
        if not hasattr(self, "_far_cum"):
            n, K = tr.n_steps, len(self.cuts)
            later = np.arange(n) + H
            has = later < self.end_of
            t_far = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
            t_far[has] = tr.time[later[has]]
            # before an entity's end, every horizon is seen from the fold its end is seen in
            ent = tr.entity
            pre_end = self.ended[ent] & (np.arange(n) < self.first_end[ent])
            t_far = np.where(pre_end, np.minimum(t_far, self.end_time[ent]), t_far)
            t_far[self.is_end_step] = np.iinfo(np.int64).max  # no origins
            fold_of = np.searchsorted(self.cuts, t_far, side="right")  # far from this fold on
            cell = (fold_of * S + tr.state) * (H + 2) + self.d
            per = np.bincount(cell, minlength=(K + 1) * S * (H + 2)).reshape(K + 1, S, H + 2)
            self._far_cum = np.cumsum(per, axis=0)
        far = self._far_cum[k]  # far origins by (state, steps to the next failure)
        last = self.last_before(self.cuts[k])
        rows = last[:, None] - np.arange(H)[None, :]  # the near origins: gap 0..H-1
        near = (last[:, None] >= 0) & (rows >= self.ent_start[:, None])
        near_rows = np.where(near, rows, 0)
        far_already = (self.end_time[:, None] < self.cuts[k]) & \
            (near_rows < self.first_end[:, None])  # counted with the far origins
        near &= ~self.is_end_step[near_rows] & ~far_already
        n_pos, n_orig = self.state_rates(rows[near], (last[:, None] - rows)[near])
        n_pos = n_pos + np.cumsum(far, axis=1)[:, 1:H + 1]  # positive for h >= d
        n_orig = n_orig + far.sum(axis=1)[:, None]  # an origin for every h
        return n_pos, n_orig

    def fold_origins(self, k: int):
        """Fold k's origins (step indices), their outcomes (n, H), base states and chain states
        (the history-aware states, or the base states again)."""
        origins = self.test_origins(k)
        return origins, self.labels(origins), self.traj.state[origins], self.code[origins]

    def gb_inputs(self, k: int, train):
        """(trajectories, training origins, training labels) of the classifier of fold k."""
        tidx, gap = self.train_window(k) if train is None else train
        return self.traj, tidx, self.train_labels(tidx, gap)

    def origin_times(self, k: int, origins: np.ndarray) -> np.ndarray:
        return self.traj.time[origins]

    def recent_windows(self, k: int, starts: np.ndarray) -> list:
        """Arrival counts (S, E) in ``[start - recent_window, start)`` for each start."""
        tr = self.traj
        is_start = tr.is_run_start()
        return [recent_arrivals(tr.state, tr.event, tr.time, is_start, tr.n_states, tr.n_events,
                                start - self.recent_width, start) for start in starts]

    def fold_recent_strength(self, k: int, chain) -> float:
        """The predictor's ``recent_strength``; with ``"auto"`` chosen from fold ``k``'s training arrivals."""
        cut = self.cuts[k]
        return recent_strength_for(self.predictor.recent_strength, chain.base_, self.traj,
                                   None if self.width is None else cut - self.width, cut)

    def step_attrs(self, step: np.ndarray):
        """Entity code, time, state, steps to the next failure and to the next failure
        onset of the (scored) steps ``step``."""
        tr = self.traj
        return tr.entity[step], tr.time[step], tr.state[step], self.d[step], self.d_onset[step]

    def train_labels(self, idx, gap) -> np.ndarray:
        """Training labels (n, H), built exactly like test labels but from what lies before the
        cutoff: 1 when a failure is seen within h steps before the cutoff, 0 when h steps
        without failure are seen before it, -1 (censored) otherwise. ``gap`` counts the
        origin's later steps that lie before the cutoff."""
        h = np.arange(1, self.H + 1)[None, :]
        d, g = self.d[idx][:, None], gap[:, None]
        return np.where((d <= h) & (d <= g), 1, np.where(g >= h, 0, -1)).astype(np.int8)

    def state_rates(self, idx, gap):
        """Training (positives, origins) per (state, horizon), labelled as :meth:`train_labels`
        labels them, by difference arrays.

        With ``g = min(gap, H)``: an origin whose next failure lies before the cutoff
        (``d <= g``) is scored at every horizon and positive from ``h = d`` on; any other
        origin is a negative for ``h <= g`` and censored beyond.
        """
        S, H = self.traj.n_states, self.H
        st = self.traj.state[idx]
        g = np.minimum(gap, H)
        d = self.d[idx]
        pos = d <= g
        # origins scored for h = 1..last, last = H for the positives, g for the others
        last = np.where(pos, H, g)
        n_sh = np.bincount(st * (H + 2) + last, minlength=S * (H + 2)).reshape(S, H + 2)
        n_orig = np.cumsum(n_sh[:, ::-1], axis=1)[:, ::-1][:, 1:H + 1]  # origins with last >= h
        add = np.bincount(st[pos] * (H + 2) + d[pos], minlength=S * (H + 2)).reshape(S, H + 2)
        n_pos = np.cumsum(add, axis=1)[:, 1:H + 1]  # positive for h >= d
        return n_pos, n_orig

    # ------------------------------------------------------------- the folds
    def execute(self, *, n_boot: int = 200, confidence: float = 0.95,
                random_state=0) -> BacktestResult:
        self.n_boot, self.confidence, self.random_state = n_boot, confidence, random_state
        tr, H, K = self.traj, self.H, len(self.cuts)
        counts = self.fold_counts()
        pred = self.predictor
        progress = Progress(K, self.progress)
        names = [mix_name(m) for m in self.event_mixes] + [n for n, _ in self.base_specs]
        fold_rows, pieces, gb_jobs = [], [], []
        for k in range(K):
            n_train = int(counts[k].sum())
            if n_train == 0:
                raise HistoryError(
                    f"fold {k} (cutoff {fmt_time(self.cuts[k], tr.time_kind)}) has no training "
                    "transitions in its window; move the cutoff later or widen the window."
                )
            n_pos, n_orig, train = self.fold_train(k)
            with np.errstate(invalid="ignore", divide="ignore"):
                base = n_pos.sum(axis=0) / n_orig.sum(axis=0)  # (H,)
            base = np.where(np.isfinite(base), base, np.nan)
            origins, y, st, row = self.fold_origins(k)
            probs = {}
            chain = clone(self.chain).fit_from_counts(counts[k], tr.state_names, tr.event_names,
                                                      tr.is_failure, is_end=tr.is_end)
            base_counts = chain.base_.counts_
            for mix in self.event_mixes:
                probs[mix_name(mix)] = self._mix_forecast(chain, base_counts, mix, origins, row,
                                                           k)
            for name, spec in self.base_specs:
                if name == "climatology":
                    probs[name] = np.broadcast_to(np.nan_to_num(base, nan=0.0), (len(origins), H))
                elif name == "state_frequency":
                    probs[name] = pseudo_origin_rates(n_pos, n_orig, base)[st]
                elif name == "no_events":
                    flat = base_counts.sum(axis=0, keepdims=True)
                    plain = EventMarkovChain(alpha=pred.alpha, beta=pred.beta).fit_from_counts(
                        flat, tr.state_names, ["step"], tr.is_failure, is_end=tr.is_end)
                    probs[name] = plain.failure_probabilities(H)[st]
                elif name == "gradient_boosting":
                    gb_jobs.append((k, spec, *self.gb_inputs(k, train), origins))
            for h in range(H):
                fold_rows.append({
                    "fold": k, "cutoff": self.cuts[k], "horizon": h + 1,
                    "n_train_transitions": n_train, "train_base_rate": base[h],
                    "n_origins": len(origins), "n_scored": int((y[:, h] >= 0).sum()),
                    "n_censored": int((y[:, h] < 0).sum()),
                })
            pieces.append((k, origins, y, probs, base))
            progress.step("fold")
        if gb_jobs:
            fitted = Parallel(n_jobs=self.n_jobs)(
                delayed(fit_predict_gb)(spec, gtr, tidx, ytr, org)
                for (k, spec, gtr, tidx, ytr, org) in gb_jobs
            )
            for (k, *_), p in zip(gb_jobs, fitted):
                # a fold without usable training origins has no classifier (NaN): it
                # forecasts the fold's training base rate (0 when that is undefined too)
                base = np.nan_to_num(pieces[k][4], nan=0.0)
                pieces[k][3]["gradient_boosting"] = np.where(np.isnan(p), base[None, :], p)
        return self._assemble(pieces, fold_rows, names)

    def _mix_forecast(self, chain, base_counts, mix, origins, row, k=0) -> np.ndarray:
        """P(fail within h) at the origins under one (checked) expected event mix.

        ``"recent"`` shifts each state's fitted arrival probabilities toward
        the events that arrived in that state during the ``recent_window``
        before each origin (see :func:`markovfault._eventmix.shift_event_probs`;
        origins are grouped into slices of half a window, so a fold needs one
        forecast table per slice, not per origin).
        """
        H = self.H
        if mix != RECENT:
            return chain.failure_probabilities(H, event_probs=event_probs_for(chain, mix))[row]
        starts, which = recent_slices(self.origin_times(k, origins), self.recent_width)
        # events that arrived in [start - width, start): known when the slice begins
        windows = self.recent_windows(k, starts)
        strength = self.fold_recent_strength(k, chain)
        out = np.empty((len(origins), H))
        for s_idx, w in enumerate(windows):  # one table per time slice, not per origin
            sel = which == s_idx
            probs = event_probs_for(chain, RECENT, w, strength=strength)
            out[sel] = chain.failure_probabilities(H, event_probs=probs)[row[sel]]
        return out

    def _assemble(self, pieces, fold_rows, names) -> BacktestResult:
        """Stack every fold's scored forecasts into flat arrays, then one frame."""
        tr, H = self.traj, self.H
        cols: dict[str, list] = {c: [] for c in (
            "fold", "origin_step", "horizon", "model", "p", "y", "base_rate")}
        for k, origins, y, probs, base in pieces:
            keep = (y >= 0).ravel()
            step = np.repeat(origins, H)[keep]
            hor = np.tile(np.arange(1, H + 1), len(origins))[keep]
            yk = y.ravel()[keep].astype(np.int64)
            bk = np.tile(base, len(origins))[keep]
            for m, name in enumerate(names):
                cols["fold"].append(np.full(len(step), k, dtype=np.int64))
                cols["origin_step"].append(step)
                cols["horizon"].append(hor)
                cols["model"].append(np.full(len(step), m, dtype=np.int64))
                cols["p"].append(np.clip(np.asarray(probs[name], np.float64).ravel()[keep], 0, 1))
                cols["y"].append(yk)
                cols["base_rate"].append(bk)
        a = {c: np.concatenate(v) if v else np.zeros(0) for c, v in cols.items()}
        step = a["origin_step"].astype(np.int64)
        fold, hor, model = a["fold"].astype(np.int64), a["horizon"].astype(np.int64), \
            a["model"].astype(np.int64)
        ent, time, state, d, d_onset = self.step_attrs(step)
        metrics, intervals, comparisons = self._metrics(a, step, fold, hor, model, names, ent,
                                                        d_onset)
        cut = self.cuts[fold]
        if tr.time_kind == "datetime":
            time, cut = pd.to_datetime(time, utc=True), pd.to_datetime(cut, utc=True)
        pred = pd.DataFrame({
            "fold": fold,
            "cutoff": cut,
            "entity": pd.Categorical.from_codes(
                ent, categories=pd.Index(list(tr.entity_names), dtype=object)),
            "origin_time": time,
            "state": pd.Categorical.from_codes(
                state, categories=pd.Index(list(tr.state_names), dtype=object)),
            "horizon": hor,
            "model": pd.Categorical.from_codes(model, categories=pd.Index(names, dtype=object)),
            "p": a["p"],
            "y": a["y"].astype(np.int64),
            "entity_code": ent,
            "origin_step": step,
            "steps_to_failure": d,
            "base_rate": a["base_rate"],
        })
        folds = pd.DataFrame(fold_rows)
        if tr.time_kind == "datetime":
            folds["cutoff"] = pd.to_datetime(folds["cutoff"].to_numpy(), utc=True)
        return BacktestResult(metrics=metrics, predictions=pred, folds=folds, params={},
                              intervals=intervals, comparisons=comparisons)

    def _metrics(self, a, step, fold, hor, model, names, ent, d_onset):
        """Scores per fold, per-fold means with intervals, and model-vs-model differences."""
        return _bootstrap.score_predictions(
            fold, hor, model, a["p"], a["y"], a["base_rate"], ent, step, d_onset, names,
            n_folds=len(self.cuts), horizon=self.H, threshold=self.threshold,
            n_boot=self.n_boot, confidence=self.confidence, random_state=self.random_state)


def recent_slices(t: np.ndarray, width: int):
    """Origins grouped into slices of half a recent window: (slice starts, slice of each)."""
    if len(t) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    half = max(width // 2, 1)
    slice_of = (t - t.min()) // half
    starts = t.min() + np.unique(slice_of) * half
    return starts, np.searchsorted(starts, t.min() + slice_of * half)


def fit_predict_gb(spec: GradientBoostingBaseline, traj, tidx, ytr, origins) -> np.ndarray:
    model = clone(spec) if hasattr(spec, "get_params") else spec
    return model.fit(traj, tidx, ytr).predict_proba(traj, origins)
