"""Backtests of time horizons (internal API): ``backtest(..., within=["5min", "30min"])``.

Per fold (cutoff ``c``) a clone of the predictor is fitted on the training window's rows (everything
before ``c``, or ``window_size`` before it), then forecasts P(a step within T after the origin ends in a
failure state) with its own time model (``"markov"``) and with the other one (``"markov_ctmc"`` or
``"markov_semi_markov"``), side by side with the baselines, on the same origins:

* ``origins="cutoff"``: every entity with a step before ``c`` whose last such step is no end step, from
  its chain state at that step and its age ``c - last step``;
* ``origins="every_step"``: every step between this cutoff and the next (not an end step), age 0.

Outcome for horizon T from an origin at τ (:func:`time_outcomes`): 1 if a step with time in (τ, τ + T]
ends in a failure state (from a cutoff origin the steps at ``c`` itself count too: they were not
trained on); 0 if none did and the histories are observed through τ + T (their latest time is at
least τ + T) or the entity reached an end state by τ + T; censored (excluded, counted per fold and
horizon) otherwise. Training labels (of the baselines, and the climatology base rate Brier skill is
measured against) follow the same rule from every training step, with the observation ending just
before the cutoff. Every outcome is found by ``searchsorted`` over the sorted failure (and end) times
of each entity: no Python loop over rows, origins or entities.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .._constants import MODEL
from .._estimator import clone
from .._eventmix import RECENT
from .._sojourns import time_unit
from .._timecodec import time_int, time_kind_of
from .._timehorizons import TimeHorizons
from .._priors import pseudo_origin_rates
from ..exceptions import ConfigError, HistoryError, UnknownStatusError
from ..predictor._forecasts import forecast_probs
from ..predictor._time import entity_time, fitted_time, time_forecasts
from ..predictor._updates import encode_with, with_ends
from ..trajectories import end_mask
from . import _bootstrap
from ._result import BacktestResult
from ._run import Progress, fmt_time

__all__ = ["run_in_time", "time_outcomes", "next_time_after", "time_features", "OTHER_TIME_MODEL"]

logger = logging.getLogger("markovfault.backtest")

#: the other time model each one is compared with
OTHER_TIME_MODEL = {"semi_markov": "ctmc", "ctmc": "semi_markov"}
_NEVER = np.iinfo(np.int64).max


def next_time_after(entity: np.ndarray, time: np.ndarray, mask: np.ndarray, q_entity: np.ndarray,
                    q_after: np.ndarray) -> np.ndarray:
    """Per query, the time of the entity's first step in ``mask`` with time > ``q_after`` (int64 max
    where none).

    ``entity``, ``time``: every step, sorted by (entity, time); one ``searchsorted`` over the masked
    steps' keys (entity, rank of the time), so no loop over queries or entities.

    >>> ent, t = np.array([0, 0, 0, 1, 1]), np.array([1, 3, 5, 2, 4])
    >>> next_time_after(ent, t, np.array([False, True, True, False, True]), np.array([0, 0, 1, 1]),
    ...                 np.array([0, 3, 0, 4])).tolist() == [3, 5, 4, np.iinfo(np.int64).max]
    True
    """
    uniq = np.unique(time)
    width = len(uniq) + 1
    key = entity[mask].astype(np.int64) * width + np.searchsorted(uniq, time[mask])
    q_entity = np.asarray(q_entity, np.int64)
    q_key = q_entity * width + np.searchsorted(uniq, q_after, side="right")  # first rank with time > q
    if not len(key):
        return np.full(len(q_key), _NEVER, dtype=np.int64)
    j = np.searchsorted(key, q_key, side="left")
    jj = np.minimum(j, len(key) - 1)
    found = (j < len(key)) & (entity[mask][jj] == q_entity)
    return np.where(found, time[mask][jj], _NEVER)


def time_outcomes(entity: np.ndarray, time: np.ndarray, fail: np.ndarray, end: np.ndarray,
                  q_entity: np.ndarray, q_start: np.ndarray, q_after: np.ndarray, widths: np.ndarray,
                  known_until: int) -> np.ndarray:
    """Outcomes (n_queries, n_horizons), int8: 1 a failure step with time in (``q_after``,
    ``q_start + width``], 0 none and observed (``q_start + width <= known_until``, or the entity's next end
    step after ``q_after`` is at or before both ``q_start + width`` and ``known_until``), -1 censored.

    Steps are known through ``known_until`` only (a later failure does not count): the data's latest
    time for test origins, the time just before the cutoff for training origins. ``widths``: the
    horizons in int64 time units (nanoseconds for timestamps).

    >>> ent, t = np.zeros(4, np.int64), np.array([0, 10, 20, 30])
    >>> fail = np.array([False, False, True, False])
    >>> time_outcomes(ent, t, fail, np.zeros(4, bool), np.array([0, 0]), np.array([0, 20]),
    ...               np.array([0, 20]), np.array([5, 25]), 30).tolist()
    [[0, 1], [0, -1]]
    """
    q_start = np.asarray(q_start, np.int64)
    widths = np.asarray(widths, np.int64)
    t_fail = next_time_after(entity, time, fail, q_entity, q_after)[:, None]
    t_end = next_time_after(entity, time, end, q_entity, q_after)[:, None]
    stop = q_start[:, None] + widths[None, :]
    failed = (t_fail <= stop) & (t_fail <= known_until)
    seen = (stop <= known_until) | ((t_end <= stop) & (t_end <= known_until))
    return np.where(failed, 1, np.where(seen, 0, -1)).astype(np.int8)


def time_features(entity: np.ndarray, time: np.ndarray, state: np.ndarray, fail: np.ndarray,
                  steps: np.ndarray, at: np.ndarray, window: int, unit: float) -> np.ndarray:
    """The gradient-boosting baseline's features of origins at steps ``steps`` and times ``at``
    (float, (n, 5)): the state, the age ``at - time[step]``, the time since the entity's previous step
    (NaN at its first), and its failures and steps in the ``window`` before ``at`` (times in ``unit``s)."""
    steps = np.asarray(steps, np.int64)
    at = np.asarray(at, np.int64)
    prev_ok = (steps > 0) & (entity[np.maximum(steps - 1, 0)] == entity[steps])
    gap = np.where(prev_ok, (time[steps] - time[np.maximum(steps - 1, 0)]) * unit, np.nan)
    uniq = np.unique(time)
    width = len(uniq) + 1
    key = entity.astype(np.int64) * width + np.searchsorted(uniq, time)
    ent = entity[steps].astype(np.int64)
    hi = ent * width + np.searchsorted(uniq, at, side="right")
    lo = ent * width + np.searchsorted(uniq, at - window, side="right")
    fkey = key[fail]
    n_fail = np.searchsorted(fkey, hi) - np.searchsorted(fkey, lo)
    n_steps = np.searchsorted(key, hi) - np.searchsorted(key, lo)
    return np.column_stack([state[steps], (at - time[steps]) * unit, gap, n_fail, n_steps]
                           ).astype(np.float64)


def _gb_forecast(spec, X_train, y_train, w_train, X_test, base) -> np.ndarray:
    """One binary histogram gradient-boosting classifier per horizon on the training origins it
    observed; a horizon with one class only forecasts the training base rate."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    out = np.empty((len(X_test), y_train.shape[1]))
    rng = np.random.default_rng(getattr(spec, "random_state", 0))
    max_train = int(getattr(spec, "max_train", 20_000))
    for h in range(y_train.shape[1]):
        keep = np.flatnonzero(y_train[:, h] >= 0)
        if len(keep) > max_train:
            keep = np.sort(rng.choice(keep, max_train, replace=False))
        yk = y_train[keep, h]
        if len(keep) == 0 or yk.min() == yk.max():
            out[:, h] = np.nan_to_num(base[h], nan=0.0) if len(keep) == 0 else float(yk[0])
            continue
        clf = HistGradientBoostingClassifier(
            max_iter=spec.max_iter, learning_rate=spec.learning_rate, max_leaf_nodes=spec.max_leaf_nodes,
            l2_regularization=spec.l2_regularization, categorical_features=[0], random_state=0)
        clf.fit(X_train[keep], yk, sample_weight=w_train[keep])
        out[:, h] = clf.predict_proba(X_test)[:, 1]
    return out


def _transform(model, frame):
    try:
        return model.states_.transform(frame)
    except UnknownStatusError as exc:
        raise UnknownStatusError(
            f"{exc} (each fold learns its states from its training window; list every state in "
            "[states].states, or set [states].unknown, when labels first appear later)") from exc


class _Fold:
    """One fold's fitted model, the whole histories encoded with it, and its origins."""

    def __init__(self, frame, times, predictor, c, c_next, width, origins):
        lo = -np.inf if width is None else c - width
        train_mask = (times < c) & (times >= lo)
        if not train_mask.any():
            raise HistoryError(f"no training rows before the cutoff {fmt_time(c, time_kind_of(frame))}"
                               " in its window; move the cutoff later or widen the window.")
        train = frame.loc[train_mask]
        model = clone(predictor)
        try:
            model.fit(train)
        except HistoryError as exc:
            raise HistoryError(f"fold with cutoff {fmt_time(c, time_kind_of(frame))}: {exc}") from exc
        if model.chain_.n_transitions_ == 0:
            raise HistoryError(f"the fold with cutoff {fmt_time(c, time_kind_of(frame))} has no "
                               "training transitions in its window; move the cutoff later or widen it.")
        events = model.chain_.base_.event_names_
        traj = with_ends(encode_with(model, frame, _transform(model, frame), events), model.states_)
        self.model, self.traj, self.train = model, traj, train
        self.rows = model.chain_.encode(traj, n_events=len(events))
        self.fail = traj.is_failure[traj.state]
        self.end = end_mask(traj)[traj.state]
        ent = traj.entity
        idx = np.arange(traj.n_steps)
        in_window = (traj.time < c) & (traj.time >= lo)
        self.train_steps = np.flatnonzero(in_window & ~self.end)
        if origins == "cutoff":
            before = np.flatnonzero(traj.time < c)
            # the last step before c of every entity with one
            last = before[np.r_[ent[before][1:] != ent[before][:-1], True]] if len(before) else before
            self.steps = last[~self.end[last]]
            self.at = np.full(len(self.steps), c, dtype=np.int64)
            self.after = self.at - 1  # steps at the cutoff itself are ahead of the origin
        else:
            self.steps = idx[(traj.time >= c) & (traj.time < c_next) & ~self.end]
            self.at = traj.time[self.steps]
            self.after = self.at
        self.c = c

    def factors(self, rate_factors: bool) -> np.ndarray:
        """Per entity code of the whole histories, its rate factor from the training rows (1 unseen)."""
        traj = self.traj
        out = np.ones(traj.n_entities)
        if not rate_factors:
            return out
        model = self.model
        events = model.chain_.base_.event_names_
        tr = encode_with(model, self.train, _transform(model, self.train), events)
        _, fac = entity_time(tr, fitted_time(model), self.c, True)
        names = np.asarray(tr.entity_names, dtype=object)[tr.entity[tr.last_index()]]
        out[pd.Index(list(traj.entity_names), dtype=object).get_indexer(names)] = fac
        return out


def _model_forecasts(fold: _Fold, horizons: TimeHorizons, time_model: str, event_mix, rate_factors):
    """P(fail within each horizon) at the fold's origins under ``time_model``."""
    model = fold.model
    kept = model.time_model
    model.time_model = time_model
    try:
        timing = fitted_time(model)
        probs = forecast_probs(model, event_mix)
        matrix = model.chain_.transition_matrix(probs)
        tr = fold.traj
        ages = (fold.at - tr.time[fold.steps]).astype(np.float64) * timing.unit
        factors = fold.factors(rate_factors)[tr.entity[fold.steps]]
        p, _ = time_forecasts(model, matrix, fold.rows[fold.steps], ages, factors, horizons)
    finally:
        model.time_model = kept
    return p


def run_in_time(frame: pd.DataFrame, report, predictor, horizons: TimeHorizons, cuts: np.ndarray, width,
                origins: str, base_specs: list, threshold: float, progress, event_mix, rate_factors: bool,
                n_boot: int, confidence: float, random_state) -> BacktestResult:
    """The backtest of time horizons (see the module): every fold, then the scores."""
    if isinstance(event_mix, (list, tuple)):
        raise ConfigError("a backtest of time horizons scores one event mix: event_mix='long_run' or "
                          "{event: share}.")
    if isinstance(event_mix, str) and event_mix == RECENT:
        raise ConfigError("event_mix='recent' is scored on step horizons only; backtest(..., horizon=H, "
                          "event_mix='recent') without within.")
    times = time_int(frame)
    time_kind = time_kind_of(frame)
    unit = time_unit(time_kind)
    widths = np.rint(horizons.values / unit).astype(np.int64)
    data_end = int(times.max())
    own = predictor.time_model
    other = OTHER_TIME_MODEL[own]
    names = [MODEL, f"{MODEL}_{other}"] + [n for n, _ in base_specs if n != "no_events"]
    if any(n == "no_events" for n, _ in base_specs):
        logger.info("the no_events baseline is scored on step horizons only; skipped")
    H, K = len(horizons), len(cuts)
    bar = Progress(K, progress)
    pieces, fold_rows = [], []
    for k, c in enumerate(cuts):
        c_next = cuts[k + 1] if k + 1 < K else _NEVER
        fold = _Fold(frame, times, predictor, int(c), c_next, width, origins)
        tr = fold.traj
        y = time_outcomes(tr.entity, tr.time, fold.fail, fold.end, tr.entity[fold.steps], fold.at,
                          fold.after, widths, data_end)
        ts = fold.train_steps
        t_ts = tr.time[ts]
        y_tr = time_outcomes(tr.entity, tr.time, fold.fail, fold.end, tr.entity[ts], t_ts, t_ts, widths,
                             int(c) - 1)
        scored = y_tr >= 0
        with np.errstate(invalid="ignore", divide="ignore"):
            base = (y_tr == 1).sum(axis=0) / scored.sum(axis=0)
        base = np.where(np.isfinite(base), base, np.nan)
        st = tr.state[fold.steps]
        probs = {MODEL: _model_forecasts(fold, horizons, own, event_mix, rate_factors),
                 f"{MODEL}_{other}": _model_forecasts(fold, horizons, other, event_mix, rate_factors)}
        for name, spec in base_specs:
            if name == "climatology":
                probs[name] = np.broadcast_to(np.nan_to_num(base, nan=0.0), (len(fold.steps), H))
            elif name == "state_frequency":
                S = tr.n_states
                cell = tr.state[ts]
                n_pos = np.stack([np.bincount(cell, weights=y_tr[:, h] == 1, minlength=S)
                                  for h in range(H)], axis=1)
                n_orig = np.stack([np.bincount(cell, weights=scored[:, h], minlength=S)
                                   for h in range(H)], axis=1)
                probs[name] = pseudo_origin_rates(n_pos, n_orig, base)[st]
            elif name == "gradient_boosting":
                probs[name] = _gb_fold(fold, spec, widths, int(c), unit, origins, base)
        for h in range(H):
            fold_rows.append({
                "fold": k, "cutoff": int(c), "horizon": horizons.labels[h],
                "n_train_transitions": int(fold.model.chain_.n_transitions_),
                "train_base_rate": base[h], "n_origins": len(fold.steps),
                "n_scored": int((y[:, h] >= 0).sum()), "n_censored": int((y[:, h] < 0).sum())})
        # lead times count failure onsets: from an origin failing already, the next failure may be the
        # same failure going on
        t_next = next_time_after(tr.entity, tr.time, fold.fail, tr.entity[fold.steps], fold.after)
        seen = (t_next != _NEVER) & ~fold.fail[fold.steps]
        lead = np.where(seen, np.maximum(np.where(seen, t_next, fold.at) - fold.at, 1), 0)
        pieces.append((k, fold, y, probs, base, lead))
        bar.step("fold")
    result = _assemble(pieces, fold_rows, names, horizons, widths, unit, time_kind, K, threshold, n_boot,
                       confidence, random_state)
    result.params.update(
        horizon=list(horizons.labels), within=list(horizons.labels), within_units=widths.tolist(),
        time_model=own, time_models={MODEL: own, f"{MODEL}_{other}": other},
        n_folds=K, origins=origins, threshold=float(threshold), time_kind=time_kind, cutoffs=list(cuts),
        rows_read=report.n_rows_read, rows_dropped=report.n_dropped, n_boot=int(n_boot),
        confidence=float(confidence), rate_factors=bool(rate_factors),
        failure_states=[n for n, f in zip(pieces[-1][1].traj.state_names, pieces[-1][1].traj.is_failure)
                        if f])
    return result


def _gb_fold(fold: _Fold, spec, widths, c: int, unit: float, origins: str, base) -> np.ndarray:
    """The gradient-boosting baseline of one fold on time features. With cutoff origins (which have an
    age) its training origins sit at a uniform time within each training step's sojourn (up to the next
    step or the cutoff), weighted by the sojourn's length, as a cutoff falls into sojourns."""
    tr = fold.traj
    ts = fold.train_steps
    t = tr.time[ts]
    window = int(widths.max())
    if origins == "cutoff":
        nxt = np.r_[tr.time[1:], _NEVER]
        same = np.r_[tr.entity[1:] == tr.entity[:-1], False]
        stop = np.minimum(np.where(same, nxt, _NEVER), c)[ts]
        span = np.maximum(stop - t, 0)
        rng = np.random.default_rng(getattr(spec, "random_state", 0))
        at = t + np.floor(rng.random(len(ts)) * span).astype(np.int64)
        weight = np.maximum(span.astype(np.float64), 1.0)
        weight /= weight.mean() if len(weight) else 1.0
    else:
        at, weight = t, np.ones(len(ts))
    y = time_outcomes(tr.entity, tr.time, fold.fail, fold.end, tr.entity[ts], at, at, widths, c - 1)
    X = time_features(tr.entity, tr.time, tr.state, fold.fail, ts, at, window, unit)
    X_test = time_features(tr.entity, tr.time, tr.state, fold.fail, fold.steps, fold.at, window, unit)
    return _gb_forecast(spec, X, y, weight, X_test, base)


def _assemble(pieces, fold_rows, names, horizons, widths, unit, time_kind, K, threshold, n_boot,
              confidence, random_state) -> BacktestResult:
    """Every fold's scored forecasts as flat arrays, scored as the step backtest scores them; the
    horizon columns hold the labels (``"5min"``)."""
    H, M = len(horizons), len(names)
    cols = {c: [] for c in ("fold", "step", "at", "hor", "model", "p", "y", "base", "ent", "state",
                            "age", "lead")}
    for k, fold, y, probs, base, lead in pieces:
        tr = fold.traj
        keep = (y >= 0).ravel()
        step = np.repeat(fold.steps, H)[keep]
        at = np.repeat(fold.at, H)[keep]
        hor = np.tile(np.arange(1, H + 1), len(fold.steps))[keep]
        for m, name in enumerate(names):
            cols["fold"].append(np.full(len(step), k, dtype=np.int64))
            cols["step"].append(step)
            cols["at"].append(at)
            cols["hor"].append(hor)
            cols["model"].append(np.full(len(step), m, dtype=np.int64))
            cols["p"].append(np.clip(np.asarray(probs[name], np.float64).ravel()[keep], 0.0, 1.0))
            cols["y"].append(y.ravel()[keep].astype(np.int64))
            cols["base"].append(np.tile(base, len(fold.steps))[keep])
            cols["ent"].append(tr.entity[step])
            cols["state"].append(tr.state[step])
            cols["age"].append(at - tr.time[step])
            cols["lead"].append(np.repeat(lead, H)[keep])
        entity_names, state_names = list(tr.entity_names), list(tr.state_names)
    a = {c: np.concatenate(v) for c, v in cols.items() if v}
    fold, hor, model = (a[c].astype(np.int64) for c in ("fold", "hor", "model"))
    labels = np.asarray(horizons.labels, dtype=object)
    metrics, intervals, comparisons = _bootstrap.score_time_horizons(
        fold, hor, model, a["p"].astype(np.float64),
        a["y"].astype(np.int64), a["base"].astype(np.float64), a["ent"].astype(np.int64), a["lead"],
        a["at"] + a["lead"], names, labels, widths, unit, K, threshold, n_boot, confidence, random_state)
    cuts = np.asarray([p[1].c for p in pieces], dtype=np.int64)
    at = a["at"].astype(np.int64)
    cut = cuts[fold]
    if time_kind == "datetime":
        at, cut = pd.to_datetime(at, utc=True), pd.to_datetime(cut, utc=True)
        age = pd.to_timedelta(a["age"].astype(np.int64), unit="ns")
        to_fail = pd.to_timedelta(np.where(a["lead"] > 0, a["lead"], np.iinfo(np.int64).min), unit="ns")
    else:
        age = a["age"].astype(np.int64)
        to_fail = np.where(a["lead"] > 0, a["lead"].astype(np.float64), np.nan)
    pred = pd.DataFrame({
        "fold": fold, "cutoff": cut,
        "entity": pd.Categorical.from_codes(a["ent"].astype(np.int64),
                                            categories=pd.Index(entity_names, dtype=object)),
        "origin_time": at,
        "state": pd.Categorical.from_codes(a["state"].astype(np.int64),
                                           categories=pd.Index(state_names, dtype=object)),
        "horizon": labels[hor - 1],
        "model": pd.Categorical.from_codes(model, categories=pd.Index(names, dtype=object)),
        "p": a["p"].astype(np.float64), "y": a["y"].astype(np.int64),
        "entity_code": a["ent"].astype(np.int64), "origin_step": a["step"].astype(np.int64),
        "silent_for": age, "time_to_failure": to_fail, "base_rate": a["base"].astype(np.float64),
    })
    folds = pd.DataFrame(fold_rows)
    if time_kind == "datetime" and len(folds):
        folds["cutoff"] = pd.to_datetime(folds["cutoff"].to_numpy(), utc=True)
    return BacktestResult(metrics=metrics, predictions=pred, folds=folds, params={},
                          intervals=intervals, comparisons=comparisons)

