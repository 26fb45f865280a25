"""Scores of probability forecasts of failure, for the backtest.

Pure functions over flat arrays: ``p`` is a forecast P(failure within h
steps) and ``y`` the observed outcome (1 failed within h, 0 observed h steps
without a failure; censored origins are dropped before they get here). Each
public function checks its input once at the edge, then computes with numpy,
pandas and :mod:`sklearn.metrics`, without a Python loop over rows.

A metric that the data cannot define (no origins, only one class, no
forecast above the threshold) is NaN, never an exception or a scikit-learn
``UndefinedMetricWarning``; :func:`score_forecasts` says why in ``note``.

Binning follows :func:`sklearn.calibration.calibration_curve` with
``strategy="uniform"``: ``n_bins`` equal-width bins on [0, 1], a forecast on
an inner edge belongs to the bin below it (bins are ``[0, e_1]``, then
``(e_{b-1}, e_b]``), so ``p == 0`` is in the first bin and ``p == 1`` in the
last.
"""

from __future__ import annotations

import numbers

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)

__all__ = [
    "score_groups",
    "expected_calibration_error",
    "calibration_table",
    "score_forecasts",
    "lead_times",
    "SCORE_KEYS",
]

_LOG_LOSS_EPS = 1e-15

#: keys of :func:`score_forecasts`, in order
SCORE_KEYS = (
    "n",
    "n_pos",
    "mean_p",
    "brier",
    "log_loss",
    "roc_auc",
    "average_precision",
    "brier_ref",
    "bss",
    "ece",
    "precision",
    "recall",
    "f1",
    "note",
)


# ---------------------------------------------------------------- validation
def _as_1d(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    return a


def _as_float_1d(x, name: str) -> np.ndarray:
    a = _as_1d(x, name)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric, got dtype {a.dtype}")
    return a.astype(np.float64, copy=False)


def _check_probabilities(p, name: str = "p") -> np.ndarray:
    a = _as_float_1d(p, name)
    bad = ~(np.isfinite(a) & (a >= 0.0) & (a <= 1.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} must be finite and in [0, 1]; {name}[{i}] = {a[i]:g} "
            f"({int(bad.sum())} bad value(s) in all)"
        )
    return a


def _check_outcomes(y, name: str = "y") -> np.ndarray:
    a = _as_float_1d(y, name)
    bad = (a != 0.0) & (a != 1.0)  # NaN compares unequal to both
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} must contain only 0 and 1 (failed within the horizon or not); "
            f"{name}[{i}] = {a[i]:g}"
        )
    return a.astype(np.int64)


def _check_pair(p, y) -> tuple[np.ndarray, np.ndarray]:
    p_ = _as_1d(p, "p")
    y_ = _as_1d(y, "y")
    if len(p_) != len(y_):
        raise ValueError(f"p and y have different lengths: len(p) = {len(p_)}, len(y) = {len(y_)}")
    return _check_probabilities(p_, "p"), _check_outcomes(y_, "y")


def _check_unit(x, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"{name} = {x!r} must be a real number in [0, 1].")
    if not (0.0 <= float(x) <= 1.0):  # also rejects NaN
        raise ValueError(f"{name} = {float(x):g}, must be in [0, 1].")
    return float(x)


def _check_n_bins(n_bins) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)):
        raise TypeError(f"n_bins = {n_bins!r} must be an integer >= 1.")
    if n_bins < 1:
        raise ValueError(f"n_bins = {n_bins}, must be >= 1.")
    return int(n_bins)


# ---------------------------------------------------------------- kernels
def _bin_sums(
    p: np.ndarray, y: np.ndarray, n_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Edges and per-bin count, sum of p and sum of y (the binning of calibration_curve)."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], p)  # side="left": an inner edge belongs to the bin below
    n = np.bincount(ids, minlength=n_bins)
    sum_p = np.bincount(ids, weights=p, minlength=n_bins)
    sum_y = np.bincount(ids, weights=y, minlength=n_bins)
    return edges, n, sum_p, sum_y


def _ece(p: np.ndarray, y: np.ndarray, n_bins: int) -> float:
    if len(p) == 0:
        return float("nan")
    _, _, sum_p, sum_y = _bin_sums(p, y, n_bins)
    # sum_b (n_b / n) |mean(y_b) - mean(p_b)| = sum_b |sum(y_b) - sum(p_b)| / n
    return float(np.abs(sum_y - sum_p).sum() / len(p))


# ---------------------------------------------------------------- public API
def expected_calibration_error(p: npt.ArrayLike, y: npt.ArrayLike, n_bins: int = 10) -> float:
    """Expected calibration error over equal-width probability bins.

    Parameters
    ----------
    p : array-like of shape (n,)
        Forecast probabilities of failure, finite and in [0, 1].
    y : array-like of shape (n,)
        Outcomes, 0 or 1.
    n_bins : int, default=10
        Number of equal-width bins on [0, 1].

    Returns
    -------
    float
        NaN when the input is empty.

    Raises
    ------
    ValueError
        If ``p`` and ``y`` differ in length, ``p`` leaves [0, 1] or is not
        finite, ``y`` holds a value other than 0 and 1, or ``n_bins < 1``.

    See Also
    --------
    calibration_table : The bins themselves.

    Notes
    -----
    .. math:: \\mathrm{ECE} = \\sum_b \\frac{n_b}{n} \\left| \\bar y_b - \\bar p_b \\right|

    over the non-empty bins ``b``, binned as
    :func:`sklearn.calibration.calibration_curve` does with
    ``strategy="uniform"`` (a forecast on an inner edge goes to the bin
    below; ``p == 1`` is in the last bin).

    Examples
    --------
    Bins [0, 0.5] and (0.5, 1]: |0 - 0.15| * 2/4 + |0.5 - 0.8| * 2/4 = 0.225.

    >>> round(expected_calibration_error([0.1, 0.2, 0.7, 0.9], [0, 0, 0, 1], n_bins=2), 6)
    0.225
    >>> expected_calibration_error([], [])
    nan
    """
    n_bins = _check_n_bins(n_bins)
    p_, y_ = _check_pair(p, y)
    return _ece(p_, y_, n_bins)


def calibration_table(p: npt.ArrayLike, y: npt.ArrayLike, n_bins: int = 10) -> pd.DataFrame:
    """Reliability table: one row per non-empty equal-width bin.

    Parameters
    ----------
    p : array-like of shape (n,)
        Forecast probabilities of failure, finite and in [0, 1].
    y : array-like of shape (n,)
        Outcomes, 0 or 1.
    n_bins : int, default=10
        Number of equal-width bins on [0, 1].

    Returns
    -------
    DataFrame
        Columns ``bin_lo``, ``bin_hi`` (float, the bin's edges), ``n``
        (int64, forecasts in the bin), ``mean_p`` (mean forecast) and
        ``frac_pos`` (fraction of outcomes equal to 1), in increasing order
        of ``bin_lo``. Empty bins are left out, so ``mean_p`` and
        ``frac_pos`` equal ``prob_pred`` and ``prob_true`` of
        :func:`sklearn.calibration.calibration_curve` with
        ``strategy="uniform"``. No rows for an empty input.

    Raises
    ------
    ValueError
        As :func:`expected_calibration_error`.

    See Also
    --------
    expected_calibration_error : The table summarised in one number.

    Examples
    --------
    >>> calibration_table([0.1, 0.2, 0.7, 0.9], [0, 0, 0, 1], n_bins=4)
       bin_lo  bin_hi  n  mean_p  frac_pos
    0    0.00    0.25  2    0.15       0.0
    1    0.50    0.75  1    0.70       0.0
    2    0.75    1.00  1    0.90       1.0
    """
    n_bins = _check_n_bins(n_bins)
    p_, y_ = _check_pair(p, y)
    edges, n, sum_p, sum_y = _bin_sums(p_, y_, n_bins)
    keep = n > 0
    n_k = n[keep]
    return pd.DataFrame(
        {
            "bin_lo": edges[:-1][keep],
            "bin_hi": edges[1:][keep],
            "n": n_k.astype(np.int64),
            "mean_p": sum_p[keep] / n_k,
            "frac_pos": sum_y[keep] / n_k,
        }
    )


def score_forecasts(
    p: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    base_rate: float | npt.ArrayLike,
    threshold: float = 0.5,
    n_bins: int = 10,
) -> dict:
    """All scores of one set of forecasts, as a flat dict (one backtest row).

    Parameters
    ----------
    p : array-like of shape (n,)
        Forecast probabilities of failure within the horizon, finite and in [0, 1].
    y : array-like of shape (n,)
        Outcomes, 0 or 1 (censored origins already removed).
    base_rate : float or array-like of shape (n,)
        Failure rate of the *training* window, in [0, 1]: the constant
        reference forecast of the Brier skill score. Never the test set's
        own rate, which the forecaster could not have known. An array gives
        each forecast its own reference (forecasts pooled over folds, each
        with its fold's training rate).
    threshold : float, default=0.5
        A forecast ``p >= threshold`` counts as an alarm for precision,
        recall and F1.
    n_bins : int, default=10
        Bins of the expected calibration error.

    Returns
    -------
    dict
        ``n`` (int), ``n_pos`` (int, outcomes equal to 1), ``mean_p``,
        ``brier`` (:func:`sklearn.metrics.brier_score_loss`), ``log_loss``
        (:func:`sklearn.metrics.log_loss`, ``p`` clipped to
        [1e-15, 1 - 1e-15]), ``roc_auc``, ``average_precision``,
        ``brier_ref`` (Brier score of the constant forecast ``base_rate``
        on these ``y``), ``bss`` (``1 - brier / brier_ref``), ``ece``
        (:func:`expected_calibration_error`), ``precision``, ``recall``,
        ``f1`` (floats) and ``note`` (str): the reasons why metrics are
        NaN, joined by ``"; "``, ``""`` when every metric is defined.

    Raises
    ------
    ValueError
        As :func:`expected_calibration_error`, or if ``base_rate`` or
        ``threshold`` is outside [0, 1].
    TypeError
        If ``base_rate`` or ``threshold`` is not a real number or
        ``n_bins`` not an integer.

    Notes
    -----
    Reasons in ``note`` and the metrics they make NaN:

    ``"no origins"``
        empty input: every metric but ``n`` and ``n_pos`` (both 0).
    ``"no failures"``
        every ``y`` is 0: ``roc_auc``, ``average_precision``, ``recall``, ``f1``.
    ``"no non-failures"``
        every ``y`` is 1: ``roc_auc``, ``average_precision``.
    ``"no forecast >= threshold"``
        no alarm: ``precision``. ``recall`` is then 0 and ``f1`` is 0
        when there are failures.
    ``"brier_ref == 0"``
        ``base_rate`` is 0 and no failure, or 1 and only failures: ``bss``.

    Examples
    --------
    >>> s = score_forecasts([0.1, 0.2, 0.7, 0.9], [0, 0, 0, 1], base_rate=0.5)
    >>> round(s["brier"], 4), round(s["brier_ref"], 4), round(s["bss"], 4)
    (0.1375, 0.25, 0.45)
    >>> s["roc_auc"], s["precision"], s["recall"], s["note"]
    (1.0, 0.5, 1.0, '')
    >>> score_forecasts([0.1, 0.2], [0, 0], base_rate=0.1)["note"]
    'no failures; no forecast >= threshold'
    """
    threshold = _check_unit(threshold, "threshold")
    n_bins = _check_n_bins(n_bins)
    p_, y_ = _check_pair(p, y)
    if np.ndim(base_rate) == 0:
        base_rate = _check_unit(base_rate, "base_rate")
    else:
        base_rate = np.asarray(base_rate, dtype=np.float64)
        if base_rate.shape != p_.shape:
            raise ValueError(
                f"base_rate has shape {base_rate.shape}; give one rate or one per forecast {p_.shape}."
            )
        if not np.all((base_rate >= 0) & (base_rate <= 1)):
            bad = int(np.flatnonzero(~((base_rate >= 0) & (base_rate <= 1)))[0])
            raise ValueError(f"base_rate[{bad}] = {base_rate[bad]:g}, must be in [0, 1].")

    nan = float("nan")
    n = int(len(y_))
    n_pos = int(y_.sum())
    out: dict = dict.fromkeys(SCORE_KEYS, nan)
    out.update(n=n, n_pos=n_pos, note="no origins")
    if n == 0:
        return out

    notes: list[str] = []
    out["mean_p"] = float(p_.mean())
    out["brier"] = float(brier_score_loss(y_, p_, pos_label=1))
    out["log_loss"] = float(
        log_loss(y_, np.clip(p_, _LOG_LOSS_EPS, 1.0 - _LOG_LOSS_EPS), labels=[0, 1])
    )
    both = 0 < n_pos < n
    if both:
        out["roc_auc"] = float(roc_auc_score(y_, p_))
        out["average_precision"] = float(average_precision_score(y_, p_, pos_label=1))
    elif n_pos == 0:
        notes.append("no failures")
    else:
        notes.append("no non-failures")

    out["brier_ref"] = float(brier_score_loss(y_, np.broadcast_to(base_rate, (n,)), pos_label=1))
    if out["brier_ref"] > 0.0:
        out["bss"] = 1.0 - out["brier"] / out["brier_ref"]
    out["ece"] = _ece(p_, y_, n_bins)

    alarm = (p_ >= threshold).astype(np.int64)
    # zero_division=0.0 keeps sklearn quiet; the undefined cases become NaN here
    prec, rec, f1, _ = precision_recall_fscore_support(
        y_, alarm, average="binary", pos_label=1, zero_division=0.0
    )
    has_alarm = bool(alarm.any())
    out["precision"] = float(prec) if has_alarm else nan
    out["recall"] = float(rec) if n_pos > 0 else nan
    out["f1"] = float(f1) if n_pos > 0 else nan
    if not has_alarm:
        notes.append("no forecast >= threshold")
    if not out["brier_ref"] > 0.0:
        notes.append("brier_ref == 0")
    out["note"] = "; ".join(notes)
    return out


def lead_times(
    entity_code: npt.ArrayLike,
    origin_step: npt.ArrayLike,
    steps_to_failure: npt.ArrayLike,
    p: npt.ArrayLike,
    threshold: float,
    *,
    horizon: int | None = None,
) -> pd.DataFrame:
    """Which failures were forecast in time, and how many steps ahead.

    The input holds the forecasts of one horizon ``h``, one row per origin.
    Each row with ``1 <= steps_to_failure <= h`` (outcome 1) targets the
    failure at global step ``origin_step + steps_to_failure`` of its
    entity; several origins target the same failure. A failure is *caught*
    when at least one origin targeting it has ``p >= threshold``; its lead
    time is the largest ``steps_to_failure`` among those origins, i.e. how
    many steps before the failure the earliest alarm was raised.

    Parameters
    ----------
    entity_code : array-like of shape (n,)
        Entity of each origin (any hashable codes).
    origin_step : array-like of int of shape (n,)
        Global step index of each origin.
    steps_to_failure : array-like of shape (n,)
        Steps from the origin to the entity's next failure step (1-based).
        A value below 1 (e.g. -1), NaN, +inf, or above ``horizon`` means no
        failure within the horizon.
    p : array-like of shape (n,)
        Forecast P(failure within h steps), finite and in [0, 1].
    threshold : float
        Alarm threshold in [0, 1].
    horizon : int, optional
        The horizon ``h``. Rows with ``steps_to_failure > horizon`` are
        ignored. Without it every row with ``steps_to_failure >= 1`` counts
        as targeting a failure, so encode "none within h" as -1 or NaN, not
        as a large number.

    Returns
    -------
    DataFrame
        One row per failure target, sorted by ``entity`` then
        ``target_step``: ``entity``, ``target_step`` (int64), ``caught``
        (bool) and ``lead_time`` (float, NaN when not caught). No rows when
        no origin targets a failure.

    Raises
    ------
    ValueError
        If the arrays differ in length, ``p`` or ``threshold`` leaves
        [0, 1], or a ``steps_to_failure`` that targets a failure is not an
        integer.
    TypeError
        If ``origin_step`` is not integer or ``steps_to_failure`` not numeric.

    Notes
    -----
    Only the earliest alarm counts: an alarm that drops below the threshold
    again before the failure still catches it.

    Examples
    --------
    Entity 0 fails at step 5, seen from origins 2, 3, 4 (d = 3, 2, 1); the
    alarm first rises at origin 3, so lead time 2. Entity 1 fails at step 4
    and no origin raises the alarm. The last row has no failure within h.

    >>> lead_times(
    ...     entity_code=[0, 0, 0, 1, 1, 1],
    ...     origin_step=[2, 3, 4, 2, 3, 0],
    ...     steps_to_failure=[3, 2, 1, 2, 1, -1],
    ...     p=[0.1, 0.6, 0.9, 0.2, 0.3, 0.95],
    ...     threshold=0.5,
    ... )
       entity  target_step  caught  lead_time
    0       0            5    True        2.0
    1       1            4   False        NaN
    """
    threshold = _check_unit(threshold, "threshold")
    if horizon is not None:
        if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)):
            raise TypeError(f"horizon = {horizon!r} must be an integer >= 1 or None.")
        if horizon < 1:
            raise ValueError(f"horizon = {horizon}, must be >= 1.")
    arrays = {
        "entity_code": _as_1d(entity_code, "entity_code"),
        "origin_step": _as_1d(origin_step, "origin_step"),
        "steps_to_failure": _as_1d(steps_to_failure, "steps_to_failure"),
        "p": _as_1d(p, "p"),
    }
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(
            "entity_code, origin_step, steps_to_failure and p must have the same length, got "
            + ", ".join(f"len({k}) = {v}" for k, v in lengths.items())
        )
    entity = arrays["entity_code"]
    origin = arrays["origin_step"]
    if origin.dtype.kind not in "iu":
        raise TypeError(f"origin_step must hold integers, got dtype {origin.dtype}")
    d = arrays["steps_to_failure"]
    if d.dtype.kind not in "iuf":
        raise TypeError(f"steps_to_failure must be numeric, got dtype {d.dtype}")
    p_ = _check_probabilities(arrays["p"], "p")

    with np.errstate(invalid="ignore"):
        targets = d >= 1  # NaN -> False
        if horizon is not None:
            targets &= d <= horizon
        if d.dtype.kind == "f":
            targets &= np.isfinite(d)
            bad = targets & (d != np.floor(d))
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(
                    f"steps_to_failure must be whole numbers of steps; steps_to_failure[{i}] = {d[i]:g}"
                )
    d_t = d[targets].astype(np.int64)  # selected first: a huge sentinel never enters the sum
    rows = pd.DataFrame(
        {
            "entity": entity[targets],
            "target_step": origin[targets].astype(np.int64) + d_t,
            # the lead of an alarming origin, NaN for a quiet one; max skips NaN
            "lead_time": np.where(p_[targets] >= threshold, d_t.astype(np.float64), np.nan),
        }
    )
    out = (
        rows.groupby(["entity", "target_step"], sort=True, dropna=False)["lead_time"]
        .max()
        .reset_index()
    )
    out.insert(2, "caught", out["lead_time"].notna().to_numpy(dtype=bool))
    return out


def score_groups(
    group: npt.ArrayLike,
    p: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    base_rate: npt.ArrayLike,
    threshold: float = 0.5,
    n_bins: int = 10,
    entity_code: npt.ArrayLike | None = None,
    origin_step: npt.ArrayLike | None = None,
    steps_to_failure: npt.ArrayLike | None = None,
    horizon: npt.ArrayLike | None = None,
    n_groups: int | None = None,
) -> pd.DataFrame:
    """The scores of :func:`score_forecasts` for many groups at once, vectorised.

    A backtest scores hundreds of (fold, horizon, model) groups; calling
    scikit-learn once per group spends most of the time validating inputs.
    This computes the same numbers for all groups in a few sorted passes.
    The test suite checks it against :func:`score_forecasts` (which calls
    scikit-learn) group by group.

    Parameters
    ----------
    group : array-like of int of shape (n,)
        Group code of each forecast, in ``0..G-1``.
    p, y : array-like of shape (n,)
        Forecasts in [0, 1] and outcomes 0/1.
    base_rate : array-like of shape (n,)
        The training base rate each forecast's Brier skill is measured against.
    threshold : float, default=0.5
    n_bins : int, default=10
    entity_code, origin_step, steps_to_failure, horizon : array-like of shape (n,), optional
        When given, lead-time columns are added: ``n_failures`` (distinct
        failures that some origin of the group saw coming within its horizon),
        ``n_caught`` and ``mean_lead_time`` (see :func:`lead_times`).
    n_groups : int, optional
        Number of groups ``G`` (default: the largest code + 1); empty groups
        get ``n = 0`` and the note ``"no origins"``.

    Returns
    -------
    DataFrame
        One row per group code ``0..G-1`` (index), columns :data:`SCORE_KEYS`
        (plus the lead-time columns).

    Examples
    --------
    >>> out = score_groups([0, 0, 0, 0, 1, 1], [0.1, 0.2, 0.7, 0.9, 0.3, 0.3],
    ...                    [0, 0, 0, 1, 0, 0], base_rate=[0.5] * 6)
    >>> out.loc[0, ["brier", "bss", "roc_auc"]].round(4).tolist()
    [0.1375, 0.45, 1.0]
    >>> out.loc[1, "note"]
    'no failures; no forecast >= threshold'
    """
    threshold = _check_unit(threshold, "threshold")
    n_bins = _check_n_bins(n_bins)
    p_, y_ = _check_pair(p, y)
    g = np.asarray(group, dtype=np.int64)
    b = np.asarray(base_rate, dtype=np.float64)
    if g.shape != p_.shape or b.shape != p_.shape:
        raise ValueError("group, p, y and base_rate must have the same length")
    G = (int(g.max()) + 1 if g.size else 0) if n_groups is None else int(n_groups)
    if g.size and (g.min() < 0 or g.max() >= G):
        raise ValueError(f"group codes must lie in 0..{G - 1}")
    nan = np.nan

    n = np.bincount(g, minlength=G).astype(np.float64)
    n_pos = np.bincount(g, weights=y_, minlength=G)
    n_neg = n - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(g, weights=p_, minlength=G) / n
        brier = np.bincount(g, weights=(p_ - y_) ** 2, minlength=G) / n
        pc = np.clip(p_, _LOG_LOSS_EPS, 1.0 - _LOG_LOSS_EPS)
        ll = -(y_ * np.log(pc) + (1 - y_) * np.log1p(-pc))
        log_loss_ = np.bincount(g, weights=ll, minlength=G) / n
        brier_ref = np.bincount(g, weights=(b - y_) ** 2, minlength=G) / n
        bss = np.where(brier_ref > 0, 1.0 - brier / brier_ref, nan)

    # ranking metrics: sort by group, then p descending; tie blocks end where p changes.
    # One float sort on 2g + (1 - p) is twice as fast as lexsort; it is exact while the
    # key's spacing (2G * 2**-52) stays far below any gap between distinct forecasts.
    if 2 * G + 1 < 2**20:
        order = np.argsort(2.0 * g + (1.0 - p_), kind="stable")
    else:
        order = np.lexsort((-p_, g))
    gs, ps, ys = g[order], p_[order], y_[order]
    tp = np.cumsum(ys)
    starts = np.searchsorted(gs, np.arange(G))  # first sorted row of each group
    tp_before_group = np.r_[0.0, tp][starts]
    tp = tp - tp_before_group[gs]
    rank = np.arange(len(gs)) - starts[gs]  # 0-based position within the group
    fp = rank + 1 - tp
    last = np.r_[(gs[1:] != gs[:-1]) | (ps[1:] != ps[:-1]), True] if len(gs) else np.zeros(0, bool)
    gl, tpl, fpl = gs[last], tp[last], fp[last]
    first_block = np.r_[True, gl[1:] != gl[:-1]] if len(gl) else np.zeros(0, bool)
    tp_prev = np.where(first_block, 0.0, np.r_[0.0, tpl[:-1]])
    fp_prev = np.where(first_block, 0.0, np.r_[0.0, fpl[:-1]])
    tp_blk, fp_blk = tpl - tp_prev, fpl - fp_prev
    with np.errstate(invalid="ignore", divide="ignore"):
        # ROC AUC (Mann-Whitney, ties count one half), as roc_auc_score
        auc_sum = np.bincount(gl, weights=fp_blk * tp_prev + 0.5 * fp_blk * tp_blk, minlength=G)
        roc_auc = auc_sum / (n_pos * n_neg)
        # average precision: sum over thresholds of (R_k - R_{k-1}) P_k, as sklearn
        prec_blk = tpl / (tpl + fpl)
        rec_step = tp_blk / n_pos[gl]
        average_precision = np.bincount(gl, weights=np.nan_to_num(rec_step * prec_blk),
                                        minlength=G)
    both = (n_pos > 0) & (n_neg > 0)
    roc_auc = np.where(both, roc_auc, nan)
    average_precision = np.where(both, average_precision, nan)

    # expected calibration error: equal-width bins, as calibration_curve
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.searchsorted(edges[1:-1], p_)
    cell = g * n_bins + bins
    s_p = np.bincount(cell, weights=p_, minlength=G * n_bins)
    s_y = np.bincount(cell, weights=y_, minlength=G * n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        ece = np.abs(s_y - s_p).reshape(G, n_bins).sum(axis=1) / n

    alarm = p_ >= threshold
    n_alarm = np.bincount(g, weights=alarm, minlength=G)
    tp_alarm = np.bincount(g, weights=alarm & (y_ == 1), minlength=G)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(n_alarm > 0, tp_alarm / n_alarm, nan)
        recall = np.where(n_pos > 0, tp_alarm / n_pos, nan)
        f1 = np.where(n_pos > 0, 2 * tp_alarm / (n_alarm + n_pos), nan)

    out = pd.DataFrame({
        "n": n.astype(np.int64), "n_pos": n_pos.astype(np.int64), "mean_p": mean_p,
        "brier": brier, "log_loss": log_loss_, "roc_auc": roc_auc,
        "average_precision": average_precision, "brier_ref": brier_ref, "bss": bss,
        "ece": ece, "precision": precision, "recall": recall, "f1": f1,
    })
    empty = n == 0
    notes = np.select(
        [empty, n_pos == 0, n_neg == 0], ["no origins", "no failures", "no non-failures"], "")
    extra = np.where(~empty & (n_alarm == 0), "no forecast >= threshold", "")
    extra2 = np.where(~empty & ~(brier_ref > 0), "brier_ref == 0", "")
    note = pd.Series(notes)
    for part in (extra, extra2):
        part = pd.Series(part)
        note = note.where(part == "", note.where(note == "", note + "; ") + part)
    out["note"] = note.where(~empty, "no origins").to_numpy()
    out = out[list(SCORE_KEYS)]

    if entity_code is not None:
        d = np.asarray(steps_to_failure, dtype=np.float64)
        h = np.asarray(horizon, dtype=np.float64)
        hit = (y_ == 1) & (d >= 1) & (d <= h)
        frame = pd.DataFrame({
            "g": g[hit],
            "entity": np.asarray(entity_code)[hit],
            "target": np.asarray(origin_step, dtype=np.int64)[hit] + d[hit].astype(np.int64),
            "lead": np.where(p_[hit] >= threshold, d[hit], nan),
        })
        per_failure = frame.groupby(["g", "entity", "target"], sort=False)["lead"].max()
        by_group = per_failure.groupby(level="g")
        out["n_failures"] = by_group.size().reindex(range(G), fill_value=0).to_numpy()
        out["n_caught"] = by_group.count().reindex(range(G), fill_value=0).to_numpy()
        out["mean_lead_time"] = by_group.mean().reindex(range(G)).to_numpy()
    return out
