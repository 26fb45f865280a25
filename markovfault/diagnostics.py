"""Statistical tests of the model's assumptions, from counts (asymptotic G² tests).

Every test is a likelihood-ratio (G²) test on contingency tables of transition counts, over the observed
cells: rows and columns of a table whose totals are zero are dropped, and the degrees of freedom are
``(r - 1)(c - 1)`` of the table that remains, summed where tables are summed. The p-value is the upper tail of
the chi-square distribution (asymptotic; small samples may reject a true null more often than nominal). Each
result is a labelled DataFrame with an effect size next to the p-value.

- :func:`event_dependence`: per state, does the next state depend on the event?
- :func:`markov_order`: order m against order m + 1 of the state sequence.
- :func:`drift`: do the counts of two periods follow the same chain?

Examples
--------
>>> import numpy as np
>>> counts = np.array([[[8, 2], [1, 9]],      # event 0: from state 0, from state 1
...                    [[2, 8], [1, 9]]])     # event 1
>>> event_dependence(counts)[["g2", "df", "n"]].round(3)  # doctest: +NORMALIZE_WHITESPACE
         g2  df   n
state
0      7.71   1  20
1      0.00   1  20
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from .exceptions import ConfigError, CountsError, HistoryError, MissingColumnError, NotFittedError
from .states import HistoryCounts
from .trajectories import Trajectories

__all__ = ["event_dependence", "markov_order", "drift"]


# ---------------------------------------------------------------- the kernel
def g2_tables(tables: np.ndarray) -> dict[str, np.ndarray]:
    """G², Pearson's X², degrees of freedom and totals of tables of shape (..., R, C), over observed cells.

    Vectorised over the leading axes. A table with fewer than two observed rows or columns has ``df == 0``
    and ``g2 == x2 == 0``.

    Examples
    --------
    >>> out = g2_tables(np.array([[10, 10, 20], [20, 20, 20]]))
    >>> round(float(out["g2"]), 6), int(out["df"])
    (2.768859, 2)
    """
    t = np.asarray(tables, dtype=np.float64)
    row = t.sum(axis=-1)
    col = t.sum(axis=-2)
    n = row.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = row[..., :, None] * col[..., None, :] / n[..., None, None]
        g2 = 2.0 * np.where(t > 0, t * np.log(t / expected), 0.0).sum(axis=(-2, -1))
        x2 = np.where(expected > 0, (t - expected) ** 2 / expected, 0.0).sum(axis=(-2, -1))
    r = (row > 0).sum(axis=-1)
    c = (col > 0).sum(axis=-1)
    df = np.where((r > 0) & (c > 0), (r - 1) * (c - 1), 0).astype(np.int64)
    g2 = np.where(df > 0, np.maximum(g2, 0.0), 0.0)
    x2 = np.where(df > 0, x2, 0.0)
    return {"g2": g2, "x2": x2, "df": df, "n": n, "r": r, "c": c}


def _p_values(g2: np.ndarray, df: np.ndarray) -> np.ndarray:
    from scipy.stats import chi2

    g2 = np.asarray(g2, dtype=np.float64)
    df = np.asarray(df)
    return np.where(df > 0, chi2.sf(g2, np.maximum(df, 1)), np.nan)


# ------------------------------------------------------------------- inputs
def _counts_of(model_or_counts: Any, name: str = "model_or_counts") -> tuple[np.ndarray, list, np.ndarray | None]:
    """(counts (E, A, S), the labels of the A rows, history codes or None) of a model, a chain or counts."""
    obj = model_or_counts
    if hasattr(obj, "fit") and hasattr(obj, "columns") and not hasattr(obj, "counts_"):  # a FaultPredictor
        if not hasattr(obj, "chain_"):
            raise NotFittedError(f"{name}: this {type(obj).__name__} is not fitted yet; call fit(histories) "
                                 "or load a model with markovfault.load_model(path).")
        obj = obj.chain_
    if hasattr(obj, "fit_from_counts"):  # a chain
        if not hasattr(obj, "counts_"):
            raise NotFittedError(f"{name}: this {type(obj).__name__} is not fitted yet; call fit first.")
        counts = obj.counts_
        names = list(obj.state_names_)
        if isinstance(counts, HistoryCounts):
            return _check_counts(counts.counts, name), names[: len(counts.codes)], counts.codes
        arr = _check_counts(counts, name)
        return arr, names[: arr.shape[1]], None
    if isinstance(obj, HistoryCounts):
        arr = _check_counts(obj.counts, name)
        return arr, [int(c) for c in obj.codes], obj.codes
    if isinstance(obj, (np.ndarray, list, tuple)):
        arr = _check_counts(obj, name)
        return arr, list(range(arr.shape[1])), None
    raise TypeError(f"{name} must be a fitted FaultPredictor, a chain, counts of shape (E, S, S) or "
                    f"HistoryCounts, got {type(obj).__name__}")


def _check_counts(counts: Any, name: str) -> np.ndarray:
    arr = np.asarray(counts)
    if arr.ndim != 3:
        raise CountsError(f"{name}: counts must have shape (n_events, n_states, n_next_states), got shape "
                         f"{arr.shape}; sum a leading bin axis first (counts.sum(axis=0))")
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{name}: counts must be numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise CountsError(f"{name}: counts contain NaN or infinite values")
    if (arr < 0).any():
        raise CountsError(f"{name}: counts must be >= 0, found {arr.min():g}")
    return arr


# -------------------------------------------------------------------- tests
def event_dependence(model_or_counts: Any) -> pd.DataFrame:
    """Per state, test whether the next state depends on the event (G² test of independence).

    For each state i the table ``counts[:, i, :]`` (event x next state) is tested for independence,
    over its observed rows and columns.

    Parameters
    ----------
    model_or_counts : FaultPredictor, EventMarkovChain, HistoryChain, ndarray of shape (E, S, S) or HistoryCounts
        A fitted model (its chain's counts), or counts ``counts[e, i, j]``: transitions from state i under
        event e to state j.

    Returns
    -------
    DataFrame indexed by state (the chain's state names; for history-aware chains the seen states), with
    columns ``g2`` (the statistic), ``df``, ``p_value`` (chi-square; NaN where ``df == 0``), ``x2``
    (Pearson's statistic), ``cramers_v`` (sqrt(X² / (n (min(r, c) - 1)))), ``mutual_info`` (between
    event and next state, in nats: G² / 2n), ``n`` (transitions out of the state), ``n_events`` and
    ``n_next`` (the observed rows and columns).

    Raises
    ------
    NotFittedError
        If the model is not fitted.
    CountsError
        If the counts do not have shape (E, S, S), are negative or not finite, or hold fewer than two
        events (a table with one row tests nothing); a ``ValueError``.
    TypeError
        If ``model_or_counts`` is none of these.

    Examples
    --------
    >>> import numpy as np
    >>> counts = np.array([[[30, 10], [5, 5]], [[10, 30], [6, 4]]])
    >>> out = event_dependence(counts)
    >>> out.loc[0, ["g2", "df"]].round(4).tolist()
    [20.9299, 1.0]
    >>> bool(out.loc[0, "p_value"] < 0.001)
    True
    """
    counts, labels, _ = _counts_of(model_or_counts)
    if counts.shape[0] < 2:
        raise CountsError(f"event_dependence needs at least two events, the counts have {counts.shape[0]}: "
                         "with one event (a table with one row) the next state cannot depend on it")
    out = g2_tables(np.moveaxis(counts, 0, 1))  # (A, E, S)
    k = np.minimum(out["r"], out["c"]) - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(out["df"] > 0, np.sqrt(out["x2"] / (out["n"] * k)), np.nan)
        mi = np.where(out["n"] > 0, out["g2"] / (2 * out["n"]), np.nan)
    return pd.DataFrame({
        "g2": out["g2"], "df": out["df"], "p_value": _p_values(out["g2"], out["df"]), "x2": out["x2"],
        "cramers_v": v, "mutual_info": mi, "n": out["n"].astype(np.int64), "n_events": out["r"],
        "n_next": out["c"],
    }, index=pd.Index(labels, name="state"))


def _sequences(data: Any, entity: str = "entity", state: str = "state",
               time: str | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """(state codes of all steps, run id of each step, number of states) of trajectories or sequences."""
    if isinstance(data, pd.DataFrame):
        missing = [c for c in (entity, state, time) if c is not None and c not in data.columns]
        if missing:
            raise MissingColumnError(f"histories: the frame has no column {missing[0]!r}; name the columns with "
                             f"entity=, state= and time= (it has {list(data.columns)[:8]})")
        if data[state].isna().any():
            raise HistoryError(f"histories: column {state!r} contains missing states")
        frame = data.sort_values([entity, time], kind="stable") if time is not None else data
        run = pd.factorize(frame[entity])[0].astype(np.int64)
        codes = pd.factorize(frame[state], sort=True)[0].astype(np.int64)
        step = np.diff(run)
        if ((step != 0) & (step != 1)).any():  # codes in order of appearance: contiguous rows step by 0 or 1
            raise HistoryError("histories: the rows of an entity are not contiguous; pass time= to sort them")
        return codes, run, int(codes.max()) + 1 if codes.size else 1
    if isinstance(data, Trajectories):
        run = np.cumsum(data.is_run_start()) - 1
        return data.state.astype(np.int64), run.astype(np.int64), max(data.n_states, 1)
    if isinstance(data, (str, bytes)) or not isinstance(data, Sequence) and not isinstance(data, np.ndarray):
        raise TypeError("histories must be Trajectories, a DataFrame or a list of state sequences, got "
                        f"{type(data).__name__}")
    seqs = [np.asarray(s).reshape(-1) for s in data]
    if not seqs:
        raise HistoryError("histories: no sequence given")
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    flat = np.concatenate(seqs)
    if np.issubdtype(flat.dtype, np.integer):
        if flat.size and flat.min() < 0:
            raise HistoryError("histories: state codes must be >= 0")
        _, codes = np.unique(flat, return_inverse=True)  # only the states that occur
    else:
        _, codes = np.unique(flat.astype(str), return_inverse=True)
    run = np.repeat(np.arange(len(seqs), dtype=np.int64), lengths)
    n_states = int(codes.max()) + 1 if codes.size else 1
    return codes.astype(np.int64), run, n_states


def markov_order(histories: Any, max_order: int = 1, *, entity: str = "entity", state: str = "state",
                 time: str | None = None) -> pd.DataFrame:
    """Test Markov order m against order m + 1, for m = 0, ..., max_order - 1 (G² test).

    From every window of m + 2 consecutive states within one run, ``(s_{n-m-1}, ..., s_n, s_{n+1})``, the
    test of order m against m + 1 asks whether ``s_{n+1}`` depends on ``s_{n-m-1}`` given the m states in
    between: for every observed context ``(s_{n-m}, ..., s_n)`` the table (oldest state x next state) is
    tested for independence, and the statistics and degrees of freedom (over observed cells) are summed
    over contexts. Both orders are fitted on the same windows.

    Parameters
    ----------
    histories : Trajectories, DataFrame or sequence of 1-d array-likes
        Encoded trajectories (transitions counted within runs), a frame with one row per step (an entity
        and a state column, such as the ``status`` of exported histories), or one state sequence (codes
        or labels) per history.
    max_order : int, default=1
        The highest order of the alternatives: the rows test 0 vs 1, ..., max_order - 1 vs max_order.
    entity, state : str, default="entity", "state"
        The frame's columns of the entity and of its state.
    time : str, optional
        The frame's time column: rows are sorted stably by (entity, time). None: the rows of each entity
        are contiguous and in time order.

    Returns
    -------
    DataFrame indexed by ``order`` (m, the null) with columns ``alternative`` (m + 1), ``g2``, ``df``,
    ``p_value``, ``mutual_info`` (the conditional mutual information of the oldest and the next state
    given the context, in nats: G² / 2n), ``n`` (windows) and ``n_contexts`` (observed contexts).

    Raises
    ------
    ConfigError
        If ``max_order < 1``, or the state space is too large to code windows of length max_order + 1.
    MissingColumnError, HistoryError
        If the frame lacks a named column, has missing states or an entity's rows are not contiguous
        (without ``time``); if no sequence is given or a state code is negative.
    TypeError
        If ``histories`` is none of these.

    Examples
    --------
    >>> seqs = [[0, 1, 0, 1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 0], [1, 0, 1, 0, 0, 0, 1, 1, 0]]
    >>> out = markov_order(seqs, max_order=2)
    >>> out[["alternative", "df", "n", "n_contexts"]]
           alternative  df   n  n_contexts
    order
    0                1   1  22           1
    1                2   2  20           2
    """
    if isinstance(max_order, bool) or not isinstance(max_order, (int, np.integer)) or max_order < 1:
        raise ConfigError(f"max_order == {max_order!r}, must be an integer >= 1")
    codes, run, s = _sequences(histories, entity, state, time)
    if s ** max_order >= 2 ** 62 // max(s * s, 1):
        raise ConfigError(f"max_order == {max_order} is too large for {s} states: windows cannot be coded")
    rows = []
    for m in range(max_order):
        length = m + 2
        q = np.arange(length - 1, codes.shape[0])
        q = q[run[q] == run[q - length + 1]]  # windows inside one run
        oldest = codes[q - m - 1]
        nxt = codes[q]
        ctx = np.zeros(q.shape[0], dtype=np.int64)
        for lag in range(m, 0, -1):  # a loop over lags, not rows
            ctx = ctx * s + codes[q - lag]
        ctx_u, inv = np.unique(ctx, return_inverse=True)
        flat = (inv.reshape(-1) * s + oldest) * s + nxt
        tables = np.bincount(flat, minlength=len(ctx_u) * s * s).reshape(len(ctx_u), s, s)
        out = g2_tables(tables)
        g2, df, n = float(out["g2"].sum()), int(out["df"].sum()), int(q.shape[0])
        rows.append({"order": m, "alternative": m + 1, "g2": g2, "df": df,
                     "p_value": float(_p_values(g2, df)), "mutual_info": g2 / (2 * n) if n else np.nan,
                     "n": n, "n_contexts": int(len(ctx_u))})
    return pd.DataFrame(rows).set_index("order")


def _align_history(before: HistoryCounts, after: HistoryCounts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    codes = np.union1d(before.codes, after.codes)
    out = []
    for hc in (before, after):
        arr = np.zeros(hc.counts.shape[:-2] + (len(codes), hc.counts.shape[-1]))
        arr[..., np.searchsorted(codes, hc.codes), :] = hc.counts
        out.append(arr)
    return out[0], out[1], codes


def drift(model_or_counts_before: Any, counts_after: Any) -> pd.DataFrame:
    """Per state, test whether the transitions of two periods follow the same chain (G² of homogeneity).

    For each state i and event e the table (period x next state) of ``before[e, i, :]`` and
    ``after[e, i, :]`` is tested for homogeneity over its observed cells; per state the statistics and
    degrees of freedom are summed over events, so the test compares the event-conditioned rows
    P(j | i, e) of the two periods.

    Parameters
    ----------
    model_or_counts_before : FaultPredictor, chain, ndarray of shape (E, S, S) or HistoryCounts
        The counts of the first period (a fitted model: the counts it was trained on).
    counts_after : ndarray of shape (E, S, S) or HistoryCounts
        The counts of the second period, laid out on the same events and states (for history-aware
        counts, on the same events; the states are aligned by their codes).

    Returns
    -------
    DataFrame indexed by state with columns ``g2``, ``df``, ``p_value``, ``mutual_info`` (between the
    period and the next state given the event, in nats: G² / 2n), ``n_before`` and ``n_after``.

    Raises
    ------
    NotFittedError
        If the model is not fitted.
    CountsError
        If the two counts do not have the same layout, or either is not usable as counts.

    Examples
    --------
    >>> import numpy as np
    >>> before = np.array([[[40, 10], [10, 40]]])
    >>> after = np.array([[[20, 30], [11, 39]]])
    >>> drift(before, after)[["g2", "df", "n_before", "n_after"]].round(3)  # doctest: +NORMALIZE_WHITESPACE
               g2  df  n_before  n_after
    state
    0      17.261   1        50       50
    1       0.060   1        50       50
    """
    before, labels, codes = _counts_of(model_or_counts_before, "model_or_counts_before")
    if codes is not None or isinstance(counts_after, HistoryCounts):
        if codes is None or not isinstance(counts_after, HistoryCounts):
            raise CountsError("drift: history-aware counts must be compared with HistoryCounts of the same layout")
        if counts_after.counts.ndim != 3:
            raise CountsError("counts_after: sum a leading bin axis first (counts.sum(axis=0))")
        b_hc = HistoryCounts(codes, before.astype(np.int64))
        before, after, union = _align_history(b_hc, counts_after)
        after = _check_counts(after, "counts_after")
        known = dict(zip(codes.tolist(), labels))
        labels = [known.get(int(c), int(c)) for c in union]
    else:
        after = _check_counts(counts_after, "counts_after")
    if before.shape != after.shape:
        raise CountsError(f"drift: counts before have shape {before.shape}, counts after {after.shape}; "
                         "count both periods on the same events and states")
    tables = np.stack([before, after], axis=-2)  # (E, A, 2, S)
    out = g2_tables(tables)
    g2 = out["g2"].sum(axis=0)
    df = out["df"].sum(axis=0)
    n = out["n"].sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mi = np.where(n > 0, g2 / (2 * n), np.nan)
    return pd.DataFrame({
        "g2": g2, "df": df, "p_value": _p_values(g2, df), "mutual_info": mi,
        "n_before": before.sum(axis=(0, 2)).astype(np.int64), "n_after": after.sum(axis=(0, 2)).astype(np.int64),
    }, index=pd.Index(labels, name="state"))
