"""Per-fold means of the backtest's scores, with bootstrap intervals that resample entities.

Forecasts of one entity are not independent (its origins share a history, and a failure is seen
from several origins), so the intervals resample *entities*, not rows: a replicate draws the
scored entities with replacement, and every forecast of an entity drawn twice counts twice. In
every replicate each (fold, horizon, model) group is scored with those weights, the folds are
combined into a mean weighted by their (replicate) number of scored origins, and differences
between models are taken within the replicate, so the interval of a difference knows that both
models were scored on the same entities.

The weighted scores are the scores of :func:`markovfault.backtest._metrics.score_groups` with
each row counted ``w`` times (with every weight 1 they are those scores exactly; the test
suite checks it). All replicates of a block are computed at once: sums over rows are products
of the (replicates x entities) weight matrix with sparse (entities x cells) matrices of row
quantities, so the cost is one pass over the scored rows per replicate, without a Python loop
over rows, entities or replicates within a block.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .._constants import MODEL
from . import _metrics

__all__ = ["INTERVAL_METRICS", "HIGHER_IS_BETTER", "fold_means", "comparisons_frame",
           "score_predictions", "score_time_horizons", "rescore_in_time"]

#: the scores that get per-fold means and intervals
INTERVAL_METRICS = ("brier", "log_loss", "bss", "roc_auc", "average_precision", "ece",
                    "precision", "recall", "f1")
HIGHER_IS_BETTER = frozenset(("bss", "roc_auc", "average_precision", "precision", "recall", "f1"))
_LOG_LOSS_EPS = 1e-15
_CELLS_PER_BLOCK = 20_000_000  # replicates x cells held at once


def _sparse(rows, cols, vals, shape):
    import scipy.sparse

    return scipy.sparse.csr_matrix((vals, (rows, cols)), shape=shape)


class _Scorer:
    """The row quantities of every group, laid out for weighted sums over entities."""

    def __init__(self, group, p, y, base_rate, entity, n_groups, threshold, n_bins):
        G = n_groups
        self.G, self.n_bins = G, n_bins
        ent_codes, ent = np.unique(entity, return_inverse=True)
        self.n_ent = len(ent_codes)
        E = self.n_ent
        pc = np.clip(p, _LOG_LOSS_EPS, 1.0 - _LOG_LOSS_EPS)
        alarm = (p >= threshold).astype(np.float64)
        quantities = {
            "n": np.ones_like(p), "n_pos": y, "se": (p - y) ** 2,
            "ll": -(y * np.log(pc) + (1 - y) * np.log1p(-pc)), "se_ref": (base_rate - y) ** 2,
            "alarm": alarm, "tp_alarm": alarm * y,
        }
        self.sums = {k: _sparse(ent, group, v, (E, G)) for k, v in quantities.items()}
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        cell = group * n_bins + np.searchsorted(edges[1:-1], p)
        self.bin_p = _sparse(ent, cell, p, (E, G * n_bins))
        self.bin_y = _sparse(ent, cell, y, (E, G * n_bins))
        # tie blocks of the ranking scores: rows sorted by group, then p descending
        order = np.lexsort((-p, group))
        gs, ps = group[order], p[order]
        new = np.r_[True, (gs[1:] != gs[:-1]) | (ps[1:] != ps[:-1])] if len(gs) else \
            np.zeros(0, bool)
        block = np.cumsum(new) - 1
        nb = int(block[-1]) + 1 if len(block) else 0
        self.block_group = gs[new]
        self.group_first_block = np.searchsorted(self.block_group, np.arange(G))
        eo, yo = ent[order], y[order]
        self.blk_pos = _sparse(eo, block, yo, (E, nb))
        self.blk_neg = _sparse(eo, block, 1.0 - yo, (E, nb))
        self.n_blocks = nb

    def scores(self, W: np.ndarray) -> dict:
        """Weighted scores (R, G) of every group for each row of entity weights ``W`` (R, E)."""
        G, R = self.G, W.shape[0]
        s = {k: np.asarray((self.sums[k].T @ W.T).T) for k in self.sums}
        n, n_pos = s["n"], s["n_pos"]
        n_neg = n - n_pos
        nan = np.nan
        with np.errstate(invalid="ignore", divide="ignore"):
            out = {"n": n, "n_pos": n_pos, "brier": s["se"] / n, "log_loss": s["ll"] / n}
            ref = s["se_ref"] / n
            out["bss"] = np.where(ref > 0, 1.0 - out["brier"] / ref, nan)
            sp = np.asarray((self.bin_p.T @ W.T).T).reshape(R, G, self.n_bins)
            sy = np.asarray((self.bin_y.T @ W.T).T).reshape(R, G, self.n_bins)
            out["ece"] = np.abs(sy - sp).sum(axis=2) / n
            out["precision"] = np.where(s["alarm"] > 0, s["tp_alarm"] / s["alarm"], nan)
            out["recall"] = np.where(n_pos > 0, s["tp_alarm"] / n_pos, nan)
            out["f1"] = np.where(n_pos > 0, 2 * s["tp_alarm"] / (s["alarm"] + n_pos), nan)
        out["roc_auc"], out["average_precision"] = self._ranking(W, n_pos, n_neg)
        for k in ("brier", "log_loss", "ece"):
            out[k] = np.where(n > 0, out[k], nan)
        return out

    def _ranking(self, W, n_pos, n_neg):
        G, R = self.G, W.shape[0]
        auc = np.full((R, G), np.nan)
        ap = np.full((R, G), np.nan)
        if self.n_blocks == 0:
            return auc, ap
        tp_blk = np.asarray((self.blk_pos.T @ W.T).T)  # (R, n_blocks)
        fp_blk = np.asarray((self.blk_neg.T @ W.T).T)
        # cumulative within each group: cumulative overall minus the total before the group
        first = self.group_first_block[self.block_group]
        tp_cum = np.cumsum(tp_blk, axis=1)
        fp_cum = np.cumsum(fp_blk, axis=1)
        tp_before = np.where(first > 0, tp_cum[:, np.maximum(first - 1, 0)], 0.0)
        fp_before = np.where(first > 0, fp_cum[:, np.maximum(first - 1, 0)], 0.0)
        tp_cum -= tp_before
        fp_cum -= fp_before
        tp_prev = tp_cum - tp_blk
        present = np.unique(self.block_group)
        starts = self.group_first_block[present]
        with np.errstate(invalid="ignore", divide="ignore"):
            auc_sum = np.add.reduceat(fp_blk * tp_prev + 0.5 * fp_blk * tp_blk, starts, axis=1)
            prec = tp_cum / (tp_cum + fp_cum)
            ap_sum = np.add.reduceat(np.nan_to_num(tp_blk * prec), starts, axis=1)
            both = (n_pos[:, present] > 0) & (n_neg[:, present] > 0)
            auc[:, present] = np.where(both, auc_sum / (n_pos * n_neg)[:, present], np.nan)
            ap[:, present] = np.where(both, ap_sum / n_pos[:, present], np.nan)
        return auc, ap


def _combine(scores: dict, K: int, rest: int) -> dict:
    """Per-fold scores (R, K * rest) to means over folds weighted by scored origins (R, rest);
    a fold where a score is undefined is left out of that score's mean."""
    n = scores["n"].reshape(-1, K, rest)
    out = {"n": n.sum(axis=1), "n_pos": scores["n_pos"].reshape(-1, K, rest).sum(axis=1)}
    for m in INTERVAL_METRICS:
        v = scores[m].reshape(-1, K, rest)
        ok = np.isfinite(v) & (n > 0)
        w = np.where(ok, n, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[m] = np.where(w.sum(axis=1) > 0,
                              (np.where(ok, v, 0.0) * w).sum(axis=1) / w.sum(axis=1), np.nan)
    return out


def fold_means(group, p, y, base_rate, entity, *, n_folds: int, n_rest: int, threshold: float,
               n_boot: int = 200, confidence: float = 0.95, random_state=0, n_bins: int = 10):
    """Per-fold means over ``n_folds`` folds and their bootstrap replicates.

    ``group`` codes are fold-major: ``fold * n_rest + rest`` (``rest`` = horizon and model).
    Returns ``(estimate, replicates)``: dicts of metric to arrays of shape ``(n_rest,)`` and
    ``(n_boot, n_rest)``.
    """
    G = n_folds * n_rest
    group = np.asarray(group, dtype=np.int64)
    p, y = np.asarray(p, np.float64), np.asarray(y, np.float64)
    sc = _Scorer(group, p, y, np.asarray(base_rate, np.float64), np.asarray(entity), G,
                 threshold, n_bins)
    estimate = {k: v[0] for k, v in _combine(sc.scores(np.ones((1, sc.n_ent))), n_folds,
                                             n_rest).items()}
    reps = {k: [] for k in estimate}
    if n_boot and sc.n_ent:
        rng = np.random.default_rng(random_state)
        width = max(sc.n_ent, sc.G * n_bins, sc.n_blocks, 1)
        chunk = int(max(1, min(n_boot, _CELLS_PER_BLOCK // width)))
        for lo in range(0, n_boot, chunk):  # blocks of replicates, each computed at once
            size = min(chunk, n_boot - lo)
            W = rng.multinomial(sc.n_ent, np.full(sc.n_ent, 1.0 / sc.n_ent), size=size)
            for k, v in _combine(sc.scores(W.astype(np.float64)), n_folds, n_rest).items():
                reps[k].append(v)
    reps = {k: (np.concatenate(v) if v else np.zeros((0, n_rest))) for k, v in reps.items()}
    return estimate, reps


def interval(reps: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over replicates (axis 0), ignoring replicates where it is undefined."""
    a = (1.0 - confidence) / 2.0
    if reps.shape[0] == 0:
        nan = np.full(reps.shape[1:], np.nan)
        return nan, nan
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an undefined interval is NaN by design
        lo = np.nanquantile(reps, a, axis=0)
        hi = np.nanquantile(reps, 1.0 - a, axis=0)
    return lo, hi


def comparisons_frame(estimate, reps, names, H: int, confidence: float, first) -> pd.DataFrame:
    """Every model named in ``first`` against every other model, per horizon and metric: the
    difference of per-fold means, its interval, and the verdict (``beats``, ``ties``,
    ``loses``; ``ties`` when the interval covers zero, ``undefined`` without a difference)."""
    M = len(names)
    rows = []
    for m in INTERVAL_METRICS:
        est = estimate[m].reshape(H, M)
        rep = reps[m].reshape(-1, H, M)
        higher = m in HIGHER_IS_BETTER
        for a in first:
            i = names.index(a)
            for j, b in enumerate(names):
                if j == i:
                    continue
                diff = est[:, i] - est[:, j]
                lo, hi = interval(rep[:, :, i] - rep[:, :, j], confidence)
                good, bad = (lo > 0, hi < 0) if higher else (hi < 0, lo > 0)
                verdict = np.where(~np.isfinite(diff), "undefined",
                                   np.where(good, "beats", np.where(bad, "loses", "ties")))
                if not np.isfinite(lo).all():  # no replicates: the sign of the estimate
                    sign = np.where(higher, diff, -diff)
                    verdict = np.where(np.isfinite(lo) | ~np.isfinite(diff), verdict,
                                       np.where(sign > 0, "beats", np.where(sign < 0, "loses",
                                                                           "ties")))
                rows.append(pd.DataFrame({
                    "horizon": np.arange(1, H + 1), "model": a, "other": b, "metric": m,
                    "difference": diff, "lo": lo, "hi": hi, "verdict": verdict}))
    if not rows:
        return pd.DataFrame(columns=["horizon", "model", "other", "metric", "difference", "lo",
                                     "hi", "verdict"])
    return pd.concat(rows, ignore_index=True)


def score_predictions(fold, hor, model, p, y, base_rate, ent, step, d_onset, names, *,
                      n_folds: int, horizon: int, threshold: float, n_boot: int = 200,
                      confidence: float = 0.95, random_state=0, lead_horizon=None):
    """Every score per (fold, horizon, model), the per-fold means per (horizon, model) with
    bootstrap intervals over entities, and the differences of every Markov model (a name
    starting with ``markov``) with every other model: ``(metrics, intervals, comparisons)``.
    ``lead_horizon``: each row's horizon in the units of ``d_onset`` (default ``hor``, steps)."""
    H, M, K = horizon, len(names), n_folds
    rest = (hor - 1) * M + model
    code = fold * (H * M) + rest
    n_groups = K * H * M
    base_rate = np.asarray(base_rate, dtype=np.float64)
    scores = _metrics.score_groups(
        code, p, y, base_rate=np.nan_to_num(base_rate, nan=0.0), threshold=threshold,
        entity_code=ent, origin_step=step, steps_to_failure=d_onset,
        horizon=hor if lead_horizon is None else lead_horizon, n_groups=n_groups,
    )
    with np.errstate(invalid="ignore"):
        base = np.bincount(code, weights=base_rate, minlength=n_groups) / \
            np.bincount(code, minlength=n_groups)
    g = np.arange(n_groups)
    head = pd.DataFrame({"fold": (g // (H * M)).astype(str), "horizon": (g // M) % H + 1,
                         "model": np.asarray(names, dtype=object)[g % M], "base_rate": base})
    per_fold = pd.concat([head, scores.reset_index(drop=True)], axis=1)
    estimate, reps = fold_means(code, p, y, np.nan_to_num(base_rate, nan=0.0), ent,
                                n_folds=K, n_rest=H * M, threshold=threshold, n_boot=n_boot,
                                random_state=random_state)
    mean = _mean_rows(per_fold, estimate, H, M, names)
    intervals = _interval_frame(estimate, reps, H, M, names, confidence)
    first = [n for n in names if str(n).startswith(MODEL)]
    comparisons = comparisons_frame(estimate, reps, list(names), H, confidence, first)
    out = pd.concat([per_fold[per_fold["n"] > 0], mean], ignore_index=True)
    cols = ["fold", "horizon", "model", "base_rate", *_metrics.SCORE_KEYS,
            "n_failures", "n_caught", "mean_lead_time"]
    return out[cols], intervals, comparisons


def _mean_rows(per_fold: pd.DataFrame, estimate: dict, H: int, M: int, names) -> pd.DataFrame:
    """One row per (horizon, model): counts summed over folds, every score the mean of the
    folds' scores weighted by their scored origins (folds where it is undefined left out)."""
    k = np.arange(H * M)
    f = per_fold.assign(_rest=np.tile(k, len(per_fold) // (H * M)))
    w = f["n"].to_numpy(np.float64)
    sums = f.groupby("_rest")[["n", "n_pos", "n_failures", "n_caught"]].sum()

    def weighted(col):
        v = f[col].to_numpy(np.float64)
        ok = np.isfinite(v) & (w > 0)
        num = np.bincount(f["_rest"], weights=np.where(ok, v * w, 0.0), minlength=H * M)
        den = np.bincount(f["_rest"], weights=np.where(ok, w, 0.0), minlength=H * M)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / den, np.nan)

    caught = f["n_caught"].to_numpy(np.float64)
    lead = f["mean_lead_time"].to_numpy(np.float64)
    ok = np.isfinite(lead) & (caught > 0)
    num = np.bincount(f["_rest"], weights=np.where(ok, lead * caught, 0.0), minlength=H * M)
    den = np.bincount(f["_rest"], weights=np.where(ok, caught, 0.0), minlength=H * M)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_lead = np.where(den > 0, num / den, np.nan)
    out = pd.DataFrame({
        "fold": "mean", "horizon": k // M + 1, "model": np.asarray(names, dtype=object)[k % M],
        "base_rate": weighted("base_rate"),
        "n": sums["n"].to_numpy(), "n_pos": sums["n_pos"].to_numpy(),
        "mean_p": weighted("mean_p"), "brier_ref": weighted("brier_ref"),
        "n_failures": sums["n_failures"].to_numpy(), "n_caught": sums["n_caught"].to_numpy(),
        "mean_lead_time": mean_lead,
    })
    for m in INTERVAL_METRICS:
        out[m] = estimate[m]
    out["note"] = np.where(out["n"] > 0, "mean over folds weighted by scored origins",
                           "no origins")
    return out[out["n"] > 0]


def _interval_frame(estimate, reps, H, M, names, confidence) -> pd.DataFrame:
    k = np.arange(H * M)
    parts = []
    for m in INTERVAL_METRICS:
        lo, hi = interval(reps[m], confidence)
        parts.append(pd.DataFrame({
            "horizon": k // M + 1, "model": np.asarray(names, dtype=object)[k % M], "metric": m,
            "estimate": estimate[m], "lo": lo, "hi": hi, "n_boot": reps[m].shape[0],
            "confidence": confidence}))
    return pd.concat(parts, ignore_index=True)


def score_time_horizons(fold, hor, model, p, y, base, ent, lead, t_fail, names, labels, widths, unit, K,
                        threshold, n_boot, confidence, random_state):
    """:func:`score_predictions` of time horizons, on horizon indices 1..H, then the horizon columns
    as labels. ``lead``: the time from each origin to its entity's next failure (int64 time units; 0 where
    the origin is failing already or no failure follows), ``t_fail`` that failure's time (it names the
    failure a lead time belongs to), ``widths`` the horizons in int64 time units; the lead times are
    reported in ``unit`` (seconds for timestamps)."""
    H = len(labels)
    lead = np.asarray(lead, np.int64)
    metrics, intervals, comparisons = score_predictions(
        fold, hor, model, p, y, base, ent, np.where(lead > 0, np.asarray(t_fail, np.int64) - lead, 0), lead,
        list(names), n_folds=K, horizon=H, threshold=threshold, n_boot=n_boot, confidence=confidence,
        random_state=random_state, lead_horizon=np.asarray(widths, np.int64)[hor - 1])
    metrics["mean_lead_time"] = metrics["mean_lead_time"] * unit
    for frame in (metrics, intervals, comparisons):
        if len(frame):
            frame["horizon"] = labels[frame["horizon"].to_numpy(np.int64) - 1]
    return metrics, intervals, comparisons


def rescore_in_time(pred: pd.DataFrame, params: dict, n_boot: int, confidence: float, random_state):
    """``BacktestResult.rescore`` of a time-horizon result: (metrics, intervals, comparisons)."""
    labels = np.asarray(params["within"], dtype=object)
    hor = pd.Index(list(labels)).get_indexer(pred["horizon"].astype(object)) + 1
    names = [str(m) for m in pred["model"].cat.categories]
    lead = pred["time_to_failure"]
    if params["time_kind"] == "datetime":
        lead = lead.to_numpy("timedelta64[ns]").astype(np.int64)
        lead = np.where(pred["time_to_failure"].isna().to_numpy(), 0, lead)
        at = pred["origin_time"].to_numpy("datetime64[ns]").astype(np.int64)
        unit = 1e-9
    else:
        lead = lead.fillna(0).to_numpy(np.int64)
        at = pred["origin_time"].to_numpy(np.int64)
        unit = 1.0
    return score_time_horizons(
        pred["fold"].to_numpy(np.int64), hor.astype(np.int64),
        pred["model"].cat.codes.to_numpy().astype(np.int64), pred["p"].to_numpy(np.float64),
        pred["y"].to_numpy(np.int64), pred["base_rate"].to_numpy(np.float64),
        pred["entity_code"].to_numpy(np.int64), lead, at + lead, names, labels,
        np.asarray(params["within_units"], np.int64), unit, int(params["n_folds"]), float(params["threshold"]),
        n_boot, confidence, random_state)
