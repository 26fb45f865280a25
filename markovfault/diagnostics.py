"""Statistical tests of the model's assumptions: G² tests with asymptotic and parametric-bootstrap p-values.

Every test is a likelihood-ratio (G²) test on contingency tables of transition counts, over the observed
cells: rows and columns of a table whose totals are zero are dropped, and the degrees of freedom are
``(r - 1)(c - 1)`` of the table that remains, summed where tables are summed. The p-value is the upper tail of
the chi-square distribution (asymptotic; small samples may reject a true null more often than nominal) and, with
``bootstrap=B``, a parametric-bootstrap p-value ``p_boot = (1 + #{G²_b >= G²}) / (1 + B)``: B data sets are
simulated from the fitted *null* model, keeping every run's length, first state(s) and every step's event,
and the statistic is recomputed on each (:mod:`markovfault._nullsim`, vectorised over replicates and runs).
Each result is a labelled DataFrame with an effect size next to the p-values.

- :func:`event_dependence`: per state, does the next state depend on the event?
- :func:`markov_order`: order m against order m + 1 of the state sequence.
- :func:`history_components`: do a model's history-aware states explain the next state better than the plain
  chain?
- :func:`drift`: do the counts of two periods follow the same chain?
- :func:`heterogeneity`: do some entities follow a different chain than the pooled one?
- :func:`diagnose`: all of them on a model and its histories, as one :class:`DiagnosticsReport`.

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

import dataclasses
import logging
import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ._nullsim import cumulative_rows, replicate_blocks, rng_of, simulate_event_chain, simulate_order_chain
from ._timecodec import to_time_int
from .exceptions import ConfigError, CountsError, HistoryError, MissingColumnError, NotFittedError
from .states import HistoryCounts, HistorySpec
from .states._history import HistoryLayout, augment, resolve_gap_edges
from .trajectories import Trajectories

__all__ = ["event_dependence", "markov_order", "history_components", "drift", "heterogeneity",
           "HeterogeneityResult", "diagnose", "DiagnosticsReport", "trajectories_of"]

logger = logging.getLogger(__name__)


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


# ---------------------------------------------------------------- bootstrap
def _check_bootstrap(bootstrap: Any) -> int:
    if bootstrap is None:
        return 0
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, (int, np.integer)) or bootstrap < 0:
        raise ConfigError(f"bootstrap == {bootstrap!r}, must be an integer >= 0: the number of simulated "
                          "replicates (0 or None: asymptotic p-values only), e.g. bootstrap=199")
    return int(bootstrap)


def _exceed(stat: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """#{replicates b: stat[k, b, m] >= obs[k, m]} (up to rounding), shape (K, M)."""
    tol = 1e-9 * (1.0 + np.abs(obs))
    return (stat >= (obs - tol)[:, None, :]).sum(axis=1)


def _p_boot(exceed: np.ndarray, n_rep: int, df: np.ndarray) -> np.ndarray:
    """(1 + exceed) / (1 + B) where the test has degrees of freedom, NaN elsewhere or without a bootstrap."""
    if not n_rep:
        return np.full(np.shape(df), np.nan)
    return np.where(np.asarray(df) > 0, (1.0 + exceed) / (1.0 + n_rep), np.nan)


def _row_g2(tables: np.ndarray) -> np.ndarray:
    """Each row's share of the G² of tables (..., R, C): 2 sum_j n_rj log(n_rj n / (n_r n_j)), shape (..., R)
    (their sum over rows is :func:`g2_tables`' G²; a row's share is 2 n_r times the Kullback-Leibler divergence
    of its row from the pooled row of the table)."""
    t = np.asarray(tables, dtype=np.float64)
    row = t.sum(axis=-1)
    col = t.sum(axis=-2)
    n = row.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = t * n[..., None, None] / (row[..., :, None] * col[..., None, :])
        return 2.0 * np.where(t > 0, t * np.log(np.where(t > 0, ratio, 1.0)), 0.0).sum(axis=-1)


def _count_tables(group: np.ndarray, row: np.ndarray, nxt: np.ndarray, G: int, R: int, C: int) -> np.ndarray:
    """Counts (K, G, R, C) of the transitions of K data sets (arrays of shape (K, T), or (T,) shared)."""
    K = nxt.shape[0]
    key = ((np.arange(K, dtype=np.int64)[:, None] * G + group) * R + row) * C + nxt
    return np.bincount(key.reshape(-1), minlength=K * G * R * C).reshape(K, G, R, C)


class _Layout:
    """Where the runs of trajectories start, how long they are and which steps are transitions."""

    def __init__(self, run_starts: np.ndarray, n_steps: int):
        self.starts = np.asarray(run_starts, dtype=np.int64)
        self.lengths = np.diff(np.append(self.starts, n_steps)).astype(np.int64)
        mask = np.ones(n_steps, dtype=bool)
        mask[self.starts] = False
        self.t = np.flatnonzero(mask)  # steps entered by a transition
        self.n = int(n_steps)

    @classmethod
    def of_lengths(cls, lengths) -> "_Layout":
        lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
        if lengths.size == 0 or (lengths < 1).any():
            raise HistoryError(f"lengths {lengths[:5].tolist()}: give at least one run, every length >= 1")
        return cls(np.concatenate([[0], np.cumsum(lengths)[:-1]]), int(lengths.sum()))


def _bootstrap_chain(state: np.ndarray, event: np.ndarray, lay: _Layout, null_counts: np.ndarray, stat_fn,
                     obs: np.ndarray, n_rep: int, rng: np.random.Generator, cells: int = 0) -> np.ndarray:
    """How often the statistics of ``n_rep`` simulations of each of K data sets from their null chains reach the
    observed ones: ``stat_fn(states (K', n), events (K', n)) -> (K', M)``; ``null_counts`` (K, E, S, S) are
    the counts the null rows are normalised from. Returns (K, M) counts of exceedances."""
    K = state.shape[0]
    cum = cumulative_rows(null_counts)
    exceed = np.zeros(obs.shape, dtype=np.int64)
    for b in replicate_blocks(n_rep, lay.n, K, cells):  # blocks of replicates bound the memory
        sim = simulate_event_chain(cum, state, event, lay.starts, lay.lengths, b, rng)
        stat = stat_fn(sim.reshape(K * b, lay.n), np.repeat(event, b, axis=0))
        exceed += _exceed(stat.reshape(K, b, -1), obs)
    return exceed


# ---------------------------------------------------- event dependence kernel
def _dependence_stat(state: np.ndarray, event: np.ndarray, lay: _Layout, S: int, E: int) -> dict:
    t = lay.t
    tables = _count_tables(state[:, t - 1], event[:, t], state[:, t], S, E, S)  # (K, S, E, S)
    return g2_tables(tables)


def batch_event_dependence(state: Any, event: Any, lengths: Any, n_states: int, n_events: int,
                           bootstrap: int = 0, random_state: Any = None) -> dict[str, np.ndarray]:
    """The event-dependence test of K data sets of one layout at once (the kernel of :func:`event_dependence`).

    The null model of each data set is its pooled chain P(j | i) (the next state depends on the state only);
    the bootstrap keeps each run's length and first state and every step's event.

    Parameters
    ----------
    state, event : array-like of int of shape (K, n)
        K data sets, runs one after another (``event[k, t]`` moves ``state[k, t - 1]`` to ``state[k, t]``).
    lengths : array-like of int of shape (R,)
        The length of every run, the same in every data set.
    n_states, n_events : int
    bootstrap : int, default=0
    random_state : None, int or Generator

    Returns
    -------
    dict of ``g2``, ``df``, ``p_value``, ``p_boot``, ``n``, arrays of shape (K, n_states)

    Examples
    --------
    >>> out = batch_event_dependence([[0, 1, 0, 0, 1, 1], [0, 0, 0, 1, 1, 0]], [[0, 1, 0, 1, 0, 1]] * 2, [6],
    ...                              2, 2, bootstrap=9, random_state=0)
    >>> out["g2"].shape, out["p_boot"].shape
    ((2, 2), (2, 2))
    """
    state = np.atleast_2d(np.asarray(state, dtype=np.int64))
    event = np.broadcast_to(np.atleast_2d(np.asarray(event, dtype=np.int64)), state.shape)
    lay = _Layout.of_lengths(lengths)
    if state.shape[1] != lay.n:
        raise HistoryError(f"state has {state.shape[1]} steps per data set, the lengths sum to {lay.n}")
    S, E, B = int(n_states), int(n_events), _check_bootstrap(bootstrap)
    obs = _dependence_stat(state, event, lay, S, E)
    exceed = np.zeros(obs["g2"].shape, dtype=np.int64)
    if B:
        t = lay.t
        K = state.shape[0]
        pooled = _count_tables(state[:, t - 1], np.zeros(1, dtype=np.int64), state[:, t], S, 1, S)[:, :, 0]
        null = np.broadcast_to(pooled[:, None], (K, E, S, S))
        exceed = _bootstrap_chain(state, np.ascontiguousarray(event), lay, null,
                                  lambda s, e: _dependence_stat(s, e, lay, S, E)["g2"], obs["g2"], B,
                                  rng_of(random_state), cells=S * E * S)
    return {"g2": obs["g2"], "df": obs["df"], "p_value": _p_values(obs["g2"], obs["df"]),
            "p_boot": _p_boot(exceed, B, obs["df"]), "n": obs["n"]}


def _multinomial_rows(totals: np.ndarray, rows: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` draws of multinomial counts with the given totals (...,) and probability rows (..., S); rows
    of totals 0 give zeros."""
    p = np.asarray(rows, dtype=np.float64)
    s = p.sum(axis=-1, keepdims=True)
    p = np.where(s > 0, p / np.where(s > 0, s, 1.0), 1.0 / p.shape[-1])
    return rng.multinomial(totals.astype(np.int64), p, size=(size,) + totals.shape)


# ------------------------------------------------------------------- inputs
def _trajectory_counts(traj: Trajectories) -> np.ndarray:
    lay = _Layout(traj.run_starts, traj.n_steps)
    t = lay.t
    S, E = max(traj.n_states, 1), max(traj.n_events, 1)
    return _count_tables(traj.event[t][None], traj.state[t - 1][None], traj.state[t][None], E, S, S)[0]


def _check_traj(traj: Trajectories, what: str) -> None:
    if traj.n_transitions == 0:
        raise HistoryError(f"{what}: the histories have no transition (every run has one step); give longer "
                           "histories")


# -------------------------------------------------------------------- tests
def event_dependence(model_or_counts: Any, *, bootstrap: int | None = 0, random_state: Any = None) -> pd.DataFrame:
    """Per state, test whether the next state depends on the event (G² of independence).

    For each state i the table (event x next state) of ``counts[:, i, :]`` is tested for independence over
    its observed cells: events that never arrived in i and next states never reached from i are dropped, and
    the degrees of freedom are ``(r - 1)(c - 1)`` of what is left. The null model is the pooled chain
    P(j | i): the event does not change where the entity goes.

    Parameters
    ----------
    model_or_counts : FaultPredictor, chain, Trajectories, ndarray of shape (E, S, S) or HistoryCounts
        A fitted model (its training counts), a fitted chain, encoded trajectories (counted here), or counts.
    bootstrap : int, default=0
        Replicates of the parametric bootstrap (0 or None: asymptotic p-values only). From trajectories, each
        replicate simulates the pooled chain with every run's length, first state and events as observed;
        from counts (no runs to keep), it draws each (event, state) row's transitions, as many as observed,
        from the pooled row of its state.
    random_state : None, int or numpy Generator
        Seed of the bootstrap: the same seed gives the same p-values.

    Returns
    -------
    DataFrame indexed by state with columns ``g2``, ``df``, ``p_value`` (asymptotic), ``p_boot`` (NaN without
    a bootstrap), ``x2`` (Pearson), ``cramers_v``, ``mutual_info`` (between event and next state, in nats:
    G² / 2n), ``n`` (transitions out of the state), ``n_events`` and ``n_next`` (observed rows and columns).

    Raises
    ------
    NotFittedError
        If the model or chain is not fitted.
    CountsError
        If the counts are not of shape (E, S, S), are negative or not finite, or have fewer than two events.
    ConfigError
        If ``bootstrap`` is not an integer >= 0.
    TypeError
        If ``model_or_counts`` is none of these.

    Examples
    --------
    >>> counts = np.array([[[30, 10], [5, 5]],
    ...                    [[10, 30], [6, 4]]])
    >>> out = event_dependence(counts)
    >>> out.loc[0, ["g2", "df"]].round(4).tolist()
    [20.9299, 1.0]
    >>> bool(out.loc[0, "p_value"] < 0.001)
    True
    >>> boot = event_dependence(counts, bootstrap=99, random_state=0)
    >>> float(boot.loc[0, "p_boot"])  # no replicate reaches G² = 20.9: 1 / (1 + 99)
    0.01
    """
    B = _check_bootstrap(bootstrap)
    traj = model_or_counts if isinstance(model_or_counts, Trajectories) else None
    if traj is not None:
        _check_traj(traj, "event_dependence")
        counts, labels = _trajectory_counts(traj).astype(np.float64), list(traj.state_names)
    else:
        counts, labels, _ = _counts_of(model_or_counts)
    if counts.shape[0] < 2:
        raise CountsError(f"event_dependence needs at least two events, the counts have {counts.shape[0]}: "
                         "with one event (a table with one row) the next state cannot depend on it")
    out = g2_tables(np.moveaxis(counts, 0, 1))  # (A, E, S)
    k = np.minimum(out["r"], out["c"]) - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(out["df"] > 0, np.sqrt(out["x2"] / (out["n"] * k)), np.nan)
        mi = np.where(out["n"] > 0, out["g2"] / (2 * out["n"]), np.nan)
    p_boot = np.full(out["g2"].shape, np.nan)
    if B and traj is not None:
        lay = _Layout(traj.run_starts, traj.n_steps)
        p_boot = batch_event_dependence(traj.state[None], traj.event[None], lay.lengths, counts.shape[1],
                                        counts.shape[0], B, random_state)["p_boot"][0]
    elif B:
        rng = rng_of(random_state)
        totals = counts.sum(axis=2).astype(np.int64)  # (E, A): each row's transitions, kept
        pooled = np.broadcast_to(counts.sum(axis=0), counts.shape)
        exceed = np.zeros(out["g2"].shape, dtype=np.int64)
        for b in replicate_blocks(B, 1, 1, counts.size):
            draws = _multinomial_rows(totals, pooled, b, rng)  # (b, E, A, S)
            g2 = g2_tables(np.moveaxis(draws, 1, 2))["g2"]
            exceed += _exceed(g2[None], out["g2"][None])[0]
        p_boot = _p_boot(exceed, B, out["df"])
    logger.debug("event dependence of %d states (bootstrap %d)", len(labels), B)
    return pd.DataFrame({
        "g2": out["g2"], "df": out["df"], "p_value": _p_values(out["g2"], out["df"]),
        "p_boot": p_boot, "x2": out["x2"],
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


def _windows(run: np.ndarray, m: int) -> np.ndarray:
    """End positions q of the windows of m + 2 states inside one run."""
    length = m + 2
    q = np.arange(length - 1, run.shape[0])
    return q[run[q] == run[q - length + 1]]


def _order_stat(codes: np.ndarray, q: np.ndarray, m: int, s: int) -> dict:
    """G², df and contexts of the order-m-vs-m+1 test of K data sets (codes (K, n)), and the order-m null's
    counts: ``keys`` (data set * s**m + context), ``next_counts`` (U, s) and ``pooled`` (K, s)."""
    K = codes.shape[0]
    oldest = codes[:, q - m - 1]
    nxt = codes[:, q]
    ctx = np.zeros(nxt.shape, dtype=np.int64)
    for lag in range(m, 0, -1):  # a loop over lags, not rows
        ctx = ctx * s + codes[:, q - lag]
    key = np.arange(K, dtype=np.int64)[:, None] * s ** m + ctx
    keys, inv = np.unique(key, return_inverse=True)
    inv = inv.reshape(key.shape)
    tables = np.bincount(((inv * s + oldest) * s + nxt).reshape(-1),
                         minlength=len(keys) * s * s).reshape(len(keys), s, s)
    out = g2_tables(tables)
    k_of = keys // s ** m
    return {"g2": np.bincount(k_of, weights=out["g2"], minlength=K),
            "df": np.bincount(k_of, weights=out["df"], minlength=K).astype(np.int64),
            "n_contexts": np.bincount(k_of, minlength=K), "keys": keys, "next_counts": tables.sum(axis=1),
            "pooled": np.bincount((np.arange(K)[:, None] * s + nxt).reshape(-1), minlength=K * s).reshape(K, s)}


def _cum(rows: np.ndarray) -> np.ndarray:
    r = np.asarray(rows, dtype=np.float64)
    tot = r.sum(axis=-1, keepdims=True)
    out = np.cumsum(r / np.where(tot > 0, tot, 1.0), axis=-1)
    out[..., -1] = 1.0
    return out


def batch_markov_order(codes: Any, lengths: Any, n_states: int, order: int, bootstrap: int = 0,
                       random_state: Any = None) -> dict[str, np.ndarray]:
    """The test of order m against m + 1 of K data sets of one layout at once (the kernel of
    :func:`markov_order`).

    The null model of each data set is the order-m chain fitted on the test's own windows (the next state given
    the last m states); the bootstrap keeps each run's length and first m + 1 states.

    Parameters
    ----------
    codes : array-like of int of shape (K, n)
        State codes (0 .. n_states - 1) of K data sets, runs one after another.
    lengths : array-like of int of shape (R,)
        The length of every run, the same in every data set.
    n_states, order : int
        The number of states and m, the order of the null.
    bootstrap : int, default=0
    random_state : None, int or Generator

    Returns
    -------
    dict of ``g2``, ``df``, ``p_value``, ``p_boot``, ``n_contexts``, arrays of shape (K,), and ``n`` (windows)

    Examples
    --------
    >>> out = batch_markov_order([[0, 1, 0, 1, 1, 0, 1, 0], [0, 0, 1, 1, 0, 0, 1, 1]], [8], 2, 0)
    >>> out["df"].tolist(), int(out["n"])
    ([1, 1], 7)
    """
    codes = np.atleast_2d(np.asarray(codes, dtype=np.int64))
    lay = _Layout.of_lengths(lengths)
    s, m, B = int(n_states), int(order), _check_bootstrap(bootstrap)
    if codes.shape[1] != lay.n:
        raise HistoryError(f"codes have {codes.shape[1]} steps per data set, the lengths sum to {lay.n}")
    run = np.repeat(np.arange(len(lay.lengths)), lay.lengths)
    q = _windows(run, m)
    K = codes.shape[0]
    obs = _order_stat(codes, q, m, s)
    exceed = np.zeros(K, dtype=np.int64)
    if B and q.size:
        rng = rng_of(random_state)
        cum, fallback = _cum(obs["next_counts"]), _cum(obs["pooled"])
        limit = max(1, (2 ** 62 // max(s ** m, 1)) // max(K, 1))  # data set x context codes fit in int64
        for b in replicate_blocks(B, lay.n, K, limit=limit):
            sim = simulate_order_chain(obs["keys"], cum, fallback, m, s, codes, lay.starts, lay.lengths, b, rng)
            g2 = _order_stat(sim.reshape(K * b, lay.n), q, m, s)["g2"]
            exceed += _exceed(g2.reshape(K, b, 1), obs["g2"][:, None])[:, 0]
    return {"g2": obs["g2"], "df": obs["df"], "p_value": _p_values(obs["g2"], obs["df"]),
            "p_boot": _p_boot(exceed, B, obs["df"]), "n_contexts": obs["n_contexts"], "n": int(q.shape[0])}


def markov_order(histories: Any, max_order: int = 1, *, entity: str = "entity", state: str = "state",
                 time: str | None = None, bootstrap: int | None = 0, random_state: Any = None) -> pd.DataFrame:
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
    bootstrap : int, default=0
        Replicates of the parametric bootstrap (0 or None: none): each simulates, for every row, the order-m
        chain fitted on that row's windows, with every run's length and first m + 1 states as observed (a
        context the data never had draws from the pooled next states).
    random_state : None, int or numpy Generator
        Seed of the bootstrap.

    Returns
    -------
    DataFrame indexed by ``order`` (m, the null) with columns ``alternative`` (m + 1), ``g2``, ``df``,
    ``p_value``, ``p_boot`` (NaN without a bootstrap), ``mutual_info`` (the conditional mutual information of
    the oldest and the next state given the context, in nats: G² / 2n), ``n`` (windows) and ``n_contexts``
    (observed contexts).

    Raises
    ------
    ConfigError
        If ``max_order < 1``, the state space is too large to code windows of length max_order + 1, or
        ``bootstrap`` is not an integer >= 0.
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
    >>> boot = markov_order(seqs, max_order=2, bootstrap=199, random_state=1)
    >>> boot["p_boot"].tolist()  # seeded: the same seed, the same p-values
    [0.105, 0.855]
    """
    if isinstance(max_order, bool) or not isinstance(max_order, (int, np.integer)) or max_order < 1:
        raise ConfigError(f"max_order == {max_order!r}, must be an integer >= 1")
    B = _check_bootstrap(bootstrap)
    codes, run, s = _sequences(histories, entity, state, time)
    if s ** max_order >= 2 ** 62 // max(s * s, 1):
        raise ConfigError(f"max_order == {max_order} is too large for {s} states: windows cannot be coded")
    if codes.size == 0:
        raise HistoryError("histories: no step given")
    lengths = np.bincount(run)
    lengths = lengths[lengths > 0]
    rng = rng_of(random_state) if B else None
    rows = []
    for m in range(max_order):
        out = batch_markov_order(codes[None], lengths, s, m, B, rng)
        g2, df, n = float(out["g2"][0]), int(out["df"][0]), out["n"]
        rows.append({"order": m, "alternative": m + 1, "g2": g2, "df": df,
                     "p_value": float(out["p_value"][0]), "p_boot": float(out["p_boot"][0]),
                     "mutual_info": g2 / (2 * n) if n else np.nan, "n": n,
                     "n_contexts": int(out["n_contexts"][0])})
    return pd.DataFrame(rows).set_index("order")


def _align_history(before: HistoryCounts, after: HistoryCounts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    codes = np.union1d(before.codes, after.codes)
    out = []
    for hc in (before, after):
        arr = np.zeros(hc.counts.shape[:-2] + (len(codes), hc.counts.shape[-1]))
        arr[..., np.searchsorted(codes, hc.codes), :] = hc.counts
        out.append(arr)
    return out[0], out[1], codes


def _grouped_stat(state: np.ndarray, event: np.ndarray, lay: _Layout, aux: np.ndarray, R: int, S: int,
                  E: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Per state (summed over events) and per row of ``aux`` (summed over events and states) the G² of the
    tables (aux x next state) of every (event, state): K data sets (K, n) at once. Returns
    ``(g2 by state (K, S), g2 by row (K, R), g2_tables of the (K, E * S) tables)``."""
    t = lay.t
    K = state.shape[0]
    tables = _count_tables(event[:, t] * S + state[:, t - 1], aux[t], state[:, t], E * S, R, S)
    out = g2_tables(tables)
    by_state = out["g2"].reshape(K, E, S).sum(axis=1)
    by_row = _row_g2(tables).sum(axis=1)
    return by_state, by_row, out


def _split_time(traj: Trajectories, split_time: Any) -> int:
    if split_time is None:
        raise ConfigError("drift of trajectories needs split_time=, the time the second period starts at")
    if traj.time_kind == "datetime":
        return int(to_time_int([split_time], "datetime", "split_time")[0])
    if isinstance(split_time, bool) or not isinstance(split_time, (int, np.integer)):
        raise ConfigError(f"split_time == {split_time!r}: the time column holds sequence numbers, give an integer")
    return int(split_time)


def drift(model_or_counts_before: Any, counts_after: Any = None, *, split_time: Any = None,
          bootstrap: int | None = 0, random_state: Any = None) -> pd.DataFrame:
    """Per state, test whether the transitions of two periods follow the same chain (G² of homogeneity).

    For each state i and event e the table (period x next state) of ``before[e, i, :]`` and
    ``after[e, i, :]`` is tested for homogeneity over its observed cells; per state the statistics and
    degrees of freedom are summed over events, so the test compares the event-conditioned rows
    P(j | i, e) of the two periods. The null model is one chain for both periods: the pooled
    event-conditioned rows.

    Parameters
    ----------
    model_or_counts_before : FaultPredictor, chain, ndarray of shape (E, S, S), HistoryCounts or Trajectories
        The counts of the first period (a fitted model: the counts it was trained on), or trajectories whose
        transitions are split at ``split_time``.
    counts_after : ndarray of shape (E, S, S) or HistoryCounts, optional
        The counts of the second period, laid out on the same events and states (for history-aware
        counts, on the same events; the states are aligned by their codes). Not with trajectories.
    split_time : timestamp, ISO string or int, optional
        With trajectories: a transition belongs to the second period when the step it enters is at or after
        this time.
    bootstrap : int, default=0
        Replicates of the parametric bootstrap (0 or None: none). From trajectories, each replicate simulates
        the pooled event-conditioned chain with every run's length, first state, events and times as
        observed; from counts, it draws each (period, event, state) row's transitions, as many as observed,
        from the pooled row.
    random_state : None, int or numpy Generator
        Seed of the bootstrap.

    Returns
    -------
    DataFrame indexed by state with columns ``g2``, ``df``, ``p_value``, ``p_boot`` (NaN without a
    bootstrap), ``mutual_info`` (between the period and the next state given the event, in nats: G² / 2n),
    ``n_before`` and ``n_after``.

    Raises
    ------
    NotFittedError
        If the model is not fitted.
    CountsError
        If the two counts do not have the same layout, or either is not usable as counts.
    ConfigError
        If trajectories come without ``split_time`` (or with counts after), or ``bootstrap`` is not an
        integer >= 0.

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
    >>> drift(before, after, bootstrap=199, random_state=0)["p_boot"].round(3).tolist()
    [0.005, 0.81]
    """
    B = _check_bootstrap(bootstrap)
    if isinstance(model_or_counts_before, Trajectories):
        if counts_after is not None:
            raise ConfigError("drift of trajectories splits them at split_time=; do not give counts_after too")
        return _drift_of_trajectories(model_or_counts_before, _split_time(model_or_counts_before, split_time),
                                      B, random_state)
    if counts_after is None:
        raise ConfigError("drift needs the counts of the second period (counts_after), or trajectories and "
                          "split_time=")
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
    p_boot = np.full(g2.shape, np.nan)
    if B:
        rng = rng_of(random_state)
        totals = tables.sum(axis=-1).astype(np.int64)  # (E, A, 2)
        pooled = np.broadcast_to((before + after)[:, :, None, :], tables.shape)
        exceed = np.zeros(g2.shape, dtype=np.int64)
        for b in replicate_blocks(B, 1, 1, tables.size):
            g2_b = g2_tables(_multinomial_rows(totals, pooled, b, rng))["g2"].sum(axis=1)  # (b, A)
            exceed += _exceed(g2_b[None], g2[None])[0]
        p_boot = _p_boot(exceed, B, df)
    return _drift_frame(g2, df, n, p_boot, before.sum(axis=(0, 2)), after.sum(axis=(0, 2)), labels)


def _drift_frame(g2, df, n, p_boot, n_before, n_after, labels) -> pd.DataFrame:
    with np.errstate(divide="ignore", invalid="ignore"):
        mi = np.where(n > 0, g2 / (2 * n), np.nan)
    return pd.DataFrame({
        "g2": g2, "df": df, "p_value": _p_values(g2, df), "p_boot": p_boot, "mutual_info": mi,
        "n_before": np.asarray(n_before).astype(np.int64), "n_after": np.asarray(n_after).astype(np.int64),
    }, index=pd.Index(labels, name="state"))


def _drift_of_trajectories(traj: Trajectories, split: int, B: int, random_state: Any) -> pd.DataFrame:
    _check_traj(traj, "drift")
    lay = _Layout(traj.run_starts, traj.n_steps)
    S, E = max(traj.n_states, 1), max(traj.n_events, 1)
    period = (traj.time >= split).astype(np.int64)
    after = period[lay.t]
    if after.all() or not after.any():
        raise HistoryError(f"drift: every transition lies {'at or after' if after.all() else 'before'} "
                           f"split_time; choose a time inside the histories")
    state, event = traj.state[None], traj.event[None]
    by_state, _, out = _grouped_stat(state, event, lay, period, 2, S, E)
    g2 = by_state[0]
    df = out["df"].reshape(E, S).sum(axis=0)
    n = out["n"].reshape(E, S).sum(axis=0)
    p_boot = np.full(g2.shape, np.nan)
    if B:
        null = _trajectory_counts(traj)[None]
        exceed = _bootstrap_chain(state, event, lay, null,
                                  lambda s, e: _grouped_stat(s, e, lay, period, 2, S, E)[0], by_state, B,
                                  rng_of(random_state), cells=E * S * 2 * S)
        p_boot = _p_boot(exceed[0], B, df)
    t = lay.t
    n_before = np.bincount(traj.state[t - 1][after == 0], minlength=S)
    n_after = np.bincount(traj.state[t - 1][after == 1], minlength=S)
    logger.debug("drift at %d: %d transitions before, %d after", split, n_before.sum(), n_after.sum())
    return _drift_frame(g2, df, n, p_boot, n_before, n_after, list(traj.state_names))


# ------------------------------------------------------------ heterogeneity
@dataclasses.dataclass
class HeterogeneityResult:
    """What :func:`heterogeneity` found: the test per state, per entity, and over everything.

    Attributes
    ----------
    states : DataFrame
        Indexed by state: ``g2``, ``df``, ``p_value``, ``p_boot``, ``mutual_info`` (between the entity and the
        next state given state and event, in nats), ``n`` (transitions) and ``n_entities`` (entities with a
        transition out of the state).
    entities : DataFrame
        Indexed by entity, the most deviating first: ``g2`` (its share of the statistic), ``share`` (of the
        total G²), ``kl`` (the Kullback-Leibler divergence of its rows from the pooled rows, in nats, averaged
        over its transitions: g2 / 2n), ``df``, ``p_value`` (chi-square with ``df``, an approximation for one
        entity), ``p_boot`` (its share against the shares of the same entity in the replicates) and ``n``.
    g2, df, p_value, p_boot : float, int, float, float
        The test over every state.
    """

    states: pd.DataFrame
    entities: pd.DataFrame
    g2: float
    df: int
    p_value: float
    p_boot: float

    def deviating(self, alpha: float = 0.05) -> list:
        """The entities whose own p-value (bootstrap if computed, else asymptotic) is below ``alpha``, the most
        deviating first."""
        p = self.entities["p_boot"] if self.entities["p_boot"].notna().any() else self.entities["p_value"]
        return list(self.entities.index[(p < alpha).to_numpy()])


def heterogeneity(histories: Trajectories, *, bootstrap: int | None = 0, random_state: Any = None) -> HeterogeneityResult:
    """Test whether some entities follow a different chain than the pooled one (G² of homogeneity).

    For each state i and event e the table (entity x next state) of the transitions out of i under e is
    tested for homogeneity over its observed cells (entities without such a transition and next states never
    reached are dropped); per state the statistics and degrees of freedom are summed over events, and over
    everything they are summed over states. The G² of a table is the sum over its rows of ``2 n_k KL(row_k ||
    pooled row)``, so each entity's share of the statistic says how far its rows stray from the pooled ones:
    the flaky handlers come first. The null model is the pooled event-conditioned chain for every entity.

    Parameters
    ----------
    histories : Trajectories
        Encoded histories (:func:`trajectories_of` encodes history files with a fitted model).
    bootstrap : int, default=0
        Replicates of the parametric bootstrap (0 or None: none): each simulates the pooled chain for every
        entity, with every run's length, first state and events as observed.
    random_state : None, int or numpy Generator
        Seed of the bootstrap.

    Returns
    -------
    HeterogeneityResult

    Raises
    ------
    HistoryError
        If the histories have no transition or fewer than two entities.
    ConfigError
        If ``bootstrap`` is not an integer >= 0.
    TypeError
        If ``histories`` is not Trajectories.

    Examples
    --------
    Four handlers that move between ``ok`` (0) and ``down`` (1); the fourth goes down after every ok step:

    >>> from markovfault import Trajectories
    >>> steady = [0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0]
    >>> flaky = [0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1]
    >>> traj = Trajectories.from_codes(steady * 3 + flaky, lengths=[12] * 4, state_names=["ok", "down"])
    >>> res = heterogeneity(traj, bootstrap=199, random_state=0)
    >>> res.entities.index[0], round(res.g2, 3), res.df
    ('3', 14.658, 3)
    >>> res.entities[["share", "kl", "n"]].round(3)  # doctest: +NORMALIZE_WHITESPACE
            share     kl   n
    entity
    3       0.828  0.552  11
    0       0.057  0.038  11
    1       0.057  0.038  11
    2       0.057  0.038  11
    >>> res.deviating()
    ['3']
    """
    if not isinstance(histories, Trajectories):
        raise TypeError("heterogeneity: histories must be Trajectories (markovfault.diagnostics.trajectories_of "
                        f"encodes history files with a fitted model), got {type(histories).__name__}")
    B = _check_bootstrap(bootstrap)
    traj = histories
    _check_traj(traj, "heterogeneity")
    if traj.n_entities < 2:
        raise HistoryError(f"heterogeneity needs at least two entities, the histories have {traj.n_entities}")
    lay = _Layout(traj.run_starts, traj.n_steps)
    S, E, R = max(traj.n_states, 1), max(traj.n_events, 1), traj.n_entities
    ent = traj.entity.astype(np.int64)
    state, event = traj.state[None], traj.event[None]
    by_state, by_entity, out = _grouped_stat(state, event, lay, ent, R, S, E)
    df_state = out["df"].reshape(E, S).sum(axis=0)
    n_state = out["n"].reshape(E, S).sum(axis=0)
    # an entity's degrees of freedom: the observed next states but one of every table it has a row in
    tables = _count_tables(event[:, lay.t] * S + state[:, lay.t - 1], ent[lay.t], state[:, lay.t], E * S, R, S)[0]
    has_row = tables.sum(axis=-1) > 0  # (E*S, R)
    cols = (tables.sum(axis=1) > 0).sum(axis=-1)  # (E*S,)
    usable = out["df"][0] > 0
    df_entity = ((cols - 1)[:, None] * (has_row & usable[:, None])).sum(axis=0)
    n_entity = np.bincount(ent[lay.t], minlength=R)
    ents_in_state = (tables.reshape(E, S, R, S).sum(axis=(0, 3)) > 0).sum(axis=-1)
    g2_total, df_total = float(by_state[0].sum()), int(df_state.sum())
    obs = np.concatenate([by_state[0], by_entity[0], [g2_total]])[None]
    p_boot = np.full(obs.shape[1], np.nan)
    if B:
        null = _trajectory_counts(traj)[None]

        def stat(s, e):
            a, b, _ = _grouped_stat(s, e, lay, ent, R, S, E)
            return np.concatenate([a, b, a.sum(axis=1, keepdims=True)], axis=1)

        exceed = _bootstrap_chain(state, event, lay, null, stat, obs, B, rng_of(random_state), cells=E * S * R * S)
        p_boot = np.concatenate([_p_boot(exceed[0, :S], B, df_state), _p_boot(exceed[0, S:S + R], B, df_entity),
                                 _p_boot(exceed[0, -1:], B, np.array([df_total]))])
    with np.errstate(divide="ignore", invalid="ignore"):
        states = pd.DataFrame({
            "g2": by_state[0], "df": df_state, "p_value": _p_values(by_state[0], df_state), "p_boot": p_boot[:S],
            "mutual_info": np.where(n_state > 0, by_state[0] / (2 * n_state), np.nan),
            "n": n_state.astype(np.int64), "n_entities": ents_in_state,
        }, index=pd.Index(list(traj.state_names), name="state"))
        entities = pd.DataFrame({
            "g2": by_entity[0], "share": by_entity[0] / g2_total if g2_total > 0 else np.nan,
            "kl": np.where(n_entity > 0, by_entity[0] / (2 * n_entity), np.nan), "df": df_entity,
            "p_value": _p_values(by_entity[0], df_entity), "p_boot": p_boot[S:S + R],
            "n": n_entity.astype(np.int64),
        }, index=pd.Index(list(traj.entity_names), name="entity"))
    order = np.lexsort((np.arange(R), -entities["g2"].to_numpy()))
    logger.debug("heterogeneity of %d entities over %d states", R, S)
    return HeterogeneityResult(states, entities.iloc[order], g2_total, df_total,
                               float(_p_values(g2_total, df_total)), float(p_boot[-1]))


# ------------------------------------------------------- history components
def _spec_of(model: Any) -> tuple[HistorySpec, Any]:
    """(the history spec, the fitted chain or None) of a FaultPredictor, a chain or a HistorySpec."""
    if isinstance(model, HistorySpec):
        spec, chain = model, None
    else:
        obj = model
        if hasattr(obj, "fit") and hasattr(obj, "columns") and not hasattr(obj, "counts_"):  # a FaultPredictor
            if not hasattr(obj, "chain_"):
                raise NotFittedError(f"this {type(obj).__name__} is not fitted yet; call fit(histories) or load "
                                     "a model with markovfault.load_model(path).")
            obj = obj.chain_
        if not hasattr(obj, "fit_from_counts"):
            raise TypeError("history_components: give a fitted FaultPredictor, a chain or a HistorySpec, got "
                            f"{type(model).__name__}")
        spec, chain = getattr(obj, "spec", None), obj
        if chain is not None and not hasattr(chain, "counts_"):
            chain = None
    if spec is None or spec.is_plain:
        raise ConfigError("history_components: the model has no history-aware states (FaultPredictor(history=...) "
                          "or [states.history]); there is nothing to test against the plain chain")
    return spec, chain


def _ll_rows(kk: np.ndarray, ev: np.ndarray, row: np.ndarray, nxt: np.ndarray, n_rows: int, base: np.ndarray,
             S: int, E: int, K: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Of the transitions of K data sets from rows ``row`` (with base states ``base[row]``), per (data set,
    event, base state), flat (K * E * S,): the maximised log-likelihood, the number of observed rows and the
    number of observed next states."""
    key = (((kk * E + ev) * n_rows + row) * S + nxt).reshape(-1)
    cells, cnt = np.unique(key, return_counts=True)
    rows_u, rinv = np.unique(cells // S, return_inverse=True)
    n_row = np.bincount(rinv, weights=cnt)
    ll_cell = cnt * np.log(cnt / n_row[rinv])
    kei = (rows_u // n_rows) * S + base[rows_u % n_rows]
    size = K * E * S
    ll = np.bincount(kei[rinv], weights=ll_cell, minlength=size)
    n_sub = np.bincount(kei, minlength=size)
    nexts = np.unique(((cells // S) // n_rows * S + base[(cells // S) % n_rows]) * S + cells % S)
    n_next = np.bincount(nexts // S, minlength=size)
    return ll, n_sub, n_next


def _history_stat(aug: np.ndarray, state: np.ndarray, event: np.ndarray, lay: _Layout, S: int,
                  E: int) -> tuple[np.ndarray, np.ndarray]:
    """G² = 2 (ll_history - ll_plain) and its degrees of freedom per base state, of K data sets (K, n): per
    (event, base state) the df of the table (history state x next state) over its observed cells."""
    t = lay.t
    K = state.shape[0]
    kk = np.arange(K, dtype=np.int64)[:, None]
    codes, a = np.unique(aug[:, t - 1], return_inverse=True)
    a = a.reshape(K, t.shape[0])
    ev, nxt = np.broadcast_to(event[:, t], a.shape), state[:, t]
    ll_h, rows, _ = _ll_rows(kk, ev, a, nxt, len(codes), codes % S, S, E, K)
    ll_p, _, nexts = _ll_rows(kk, ev, state[:, t - 1], nxt, S, np.arange(S), S, E, K)
    df = np.where((rows > 0) & (nexts > 0), (rows - 1) * (nexts - 1), 0).reshape(K, E, S).sum(axis=1)
    g2 = (2.0 * (ll_h - ll_p)).reshape(K, E, S).sum(axis=1)
    return np.where(df > 0, np.maximum(g2, 0.0), 0.0), df.astype(np.int64)


def _replicated(traj: Trajectories, sim: np.ndarray) -> Trajectories:
    """One Trajectories holding the b simulated copies (b, n) of ``traj`` as separate entities (and groups)."""
    b, n = sim.shape
    off = np.arange(b, dtype=np.int64)[:, None]
    kw = dict(entity=(traj.entity[None] + off * traj.n_entities).reshape(-1), time=np.tile(traj.time, b),
              event=np.tile(traj.event, b), state=sim.reshape(-1),
              run_starts=(traj.run_starts[None] + off * n).reshape(-1),
              entity_names=tuple(f"{r}/{name}" for r in range(b) for name in traj.entity_names),
              source_row=None, group_carried=None, group_memory=None)
    if traj.group is not None:
        n_groups = len(traj.group_names)
        kw["group"] = (traj.group[None] + off * n_groups).reshape(-1)
        kw["group_names"] = tuple(f"{r}/{g}" for r in range(b) for g in traj.group_names)
    return dataclasses.replace(traj, **kw)


def history_components(model: Any, histories: Trajectories | None = None, *, bootstrap: int | None = 0,
                       random_state: Any = None) -> pd.DataFrame:
    """Test a history-aware model against the plain chain on the same transitions (likelihood ratio, G²).

    Every transition is scored twice, from its history-aware state a (``FaultPredictor(history=...)``: the
    previous states, the steps since a failure, the entering event, ...) and from its base state i, each with
    the maximum-likelihood event-conditioned rows: ``G² = 2 (ll_history - ll_plain)``. This is the sum over
    (event e, base state i) of the G² of the table (history state x next state) of the transitions out of i
    under e, so its degrees of freedom are the extra free parameters over observed cells as the other tests
    count them: ``(r - 1)(c - 1)`` per table, r the observed history states, c the observed next states.
    Per base state and over all of them (the row ``"all"``).

    Parameters
    ----------
    model : FaultPredictor, HistoryChain or HistorySpec
        A fitted model with history-aware states (its spec, with the gap edges it chose), or a spec.
    histories : Trajectories, optional
        Encoded histories to test on (:func:`trajectories_of`). None: the fitted model's own counts
        (asymptotic p-values only).
    bootstrap : int, default=0
        Replicates of the parametric bootstrap (0 or None: none): each simulates the plain event-conditioned
        chain with every run's length, first state, events, times and groups as observed, and refits the
        history-aware rows on the replicate.
    random_state : None, int or numpy Generator
        Seed of the bootstrap.

    Returns
    -------
    DataFrame indexed by state (the base states, then ``"all"``) with columns ``g2``, ``df``, ``p_value``,
    ``p_boot``, ``gain`` (the log-likelihood gained per transition, nats: G² / 2n) and ``n`` (transitions).

    Raises
    ------
    ConfigError
        If the model has no history-aware states, or a bootstrap is asked for without histories.
    NotFittedError
        If the model is not fitted and no histories are given.
    TypeError
        If ``model`` or ``histories`` is of another type.

    Examples
    --------
    A chain whose next state is the state two steps back (order 2), against the plain chain:

    >>> from markovfault import Trajectories
    >>> from markovfault.states import HistorySpec
    >>> seq = [0, 0, 1, 1] * 10
    >>> traj = Trajectories.from_codes(seq, lengths=[20, 20], state_names=["ok", "slow"])
    >>> out = history_components(HistorySpec(order=2), traj, bootstrap=99, random_state=0)
    >>> out.loc["all", ["g2", "df", "n"]].round(3).tolist()
    [52.457, 3.0, 38.0]
    >>> float(out.loc["all", "p_boot"])
    0.01
    """
    B = _check_bootstrap(bootstrap)
    spec, chain = _spec_of(model)
    if histories is None:
        if B:
            raise ConfigError("history_components: the bootstrap simulates histories; give them (histories=)")
        if chain is None:
            raise NotFittedError("history_components: give histories, or a fitted model to test on its counts")
        return _history_of_counts(chain)
    if not isinstance(histories, Trajectories):
        raise TypeError(f"history_components: histories must be Trajectories, got {type(histories).__name__}")
    traj = histories
    _check_traj(traj, "history_components")
    spec = resolve_gap_edges(spec, traj)
    lay = _Layout(traj.run_starts, traj.n_steps)
    S, E = max(traj.n_states, 1), max(traj.n_events, 1)
    aug = augment(traj, spec)[None]
    state, event = traj.state[None], traj.event[None]
    g2, df = _history_stat(aug, state, event, lay, S, E)
    obs = np.concatenate([g2, g2.sum(axis=1, keepdims=True)], axis=1)
    dfs = np.concatenate([df[0], [df.sum()]])
    p_boot = np.full(dfs.shape, np.nan)
    if B:
        rng = rng_of(random_state)
        cum = cumulative_rows(_trajectory_counts(traj)[None])
        exceed = np.zeros(obs.shape, dtype=np.int64)
        for b in replicate_blocks(B, lay.n, 1, limit=max(1, 2 ** 40 // max(1, E * S * lay.n * S))):
            sim = simulate_event_chain(cum, state, event, lay.starts, lay.lengths, b, rng)[0]
            aug_b = augment(_replicated(traj, sim), spec).reshape(b, lay.n)
            g2_b, _ = _history_stat(aug_b, sim, np.broadcast_to(event, sim.shape), lay, S, E)
            stat = np.concatenate([g2_b, g2_b.sum(axis=1, keepdims=True)], axis=1)
            exceed += _exceed(stat[None], obs)[0]
        p_boot = _p_boot(exceed[0], B, dfs)
    t = lay.t
    n = np.bincount(traj.state[t - 1], minlength=S)
    return _history_frame(obs[0], dfs, p_boot, np.append(n, n.sum()), list(traj.state_names))


def _history_of_counts(chain: Any) -> pd.DataFrame:
    counts = chain.counts_
    if not isinstance(counts, HistoryCounts):
        raise ConfigError("history_components: the chain is not history-aware")
    N = np.asarray(counts.counts, dtype=np.float64)  # (E, A, S)
    E, A, S = N.shape
    base = HistoryLayout(chain.spec, S, E).base(counts.codes)
    plain = np.zeros((E, S, S))
    np.add.at(plain, (slice(None), base), N)

    with np.errstate(divide="ignore", invalid="ignore"):
        def ll(tab):  # per (event, row): the maximised log-likelihood
            tot = tab.sum(axis=-1, keepdims=True)
            return np.where(tab > 0, tab * np.log(tab / tot), 0.0).sum(axis=-1)

        ll_h = np.zeros((E, S))
        np.add.at(ll_h, (slice(None), base), ll(N))
        g2_es = 2.0 * (ll_h - ll(plain))
    rows = np.zeros((E, S))
    np.add.at(rows, (slice(None), base), (N.sum(axis=-1) > 0).astype(float))
    nexts = (plain > 0).sum(axis=-1)
    df_es = np.where((rows > 0) & (nexts > 0), (rows - 1) * (nexts - 1), 0)
    df = df_es.sum(axis=0).astype(np.int64)
    g2 = np.where(df > 0, np.maximum(np.where(df_es > 0, g2_es, 0.0).sum(axis=0), 0.0), 0.0)
    n = plain.sum(axis=(0, 2))
    names = list(chain.base_.state_names_)[:S]
    return _history_frame(np.append(g2, g2.sum()), np.append(df, df.sum()), np.full(S + 1, np.nan),
                          np.append(n, n.sum()), names)


def _history_frame(g2, df, p_boot, n, names) -> pd.DataFrame:
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = np.where(n > 0, g2 / (2 * n), np.nan)
    return pd.DataFrame({"g2": g2, "df": df, "p_value": _p_values(g2, df), "p_boot": p_boot, "gain": gain,
                         "n": np.asarray(n).astype(np.int64)},
                        index=pd.Index(list(names) + ["all"], name="state"))


# ------------------------------------------------------------------- report
def trajectories_of(model: Any, histories: Any) -> Trajectories:
    """History files (or a frame) encoded with a fitted model's columns, states and events, as the tests read
    them: the model's state extractor and ``max_gap``, its event vocabulary (events it never saw follow).

    Parameters
    ----------
    model : FaultPredictor
        A fitted model (``markovfault.load_model(path)``).
    histories : path, list of paths, directory or DataFrame
        What ``model.predict`` accepts.

    Returns
    -------
    Trajectories

    Raises
    ------
    NotFittedError
        If the model is not fitted.
    """
    from .predictor._settings import read_input
    from .predictor._updates import encode_with

    if not hasattr(model, "chain_") or not hasattr(model, "states_"):
        raise NotFittedError(f"this {type(model).__name__} is not fitted yet; call fit(histories) or load a "
                             "model with markovfault.load_model(path).")
    frame, _ = read_input(histories, model.columns)
    return encode_with(model, frame, model.states_.transform(frame), model.chain_.base_.event_names_)


def _decision(frame: pd.DataFrame) -> pd.Series:
    """The p-value a decision reads: the bootstrap's where there is one, else the asymptotic one."""
    return frame["p_boot"].where(frame["p_boot"].notna(), frame["p_value"])


def _names(labels) -> str:
    return ", ".join(str(v) for v in labels)


@dataclasses.dataclass
class DiagnosticsReport:
    """Every test :func:`diagnose` ran, with what it means.

    Attributes
    ----------
    tests : dict of str to DataFrame
        ``event_dependence``, ``markov_order``, ``history_components``, ``drift``: the frames of the test
        functions; ``heterogeneity``: its per-state frame.
    heterogeneity : HeterogeneityResult or None
    skipped : dict of str to str
        Tests not run, and why.
    bootstrap : int
    alpha : float
        The level of the plain-language findings.
    split_time : str or None
    """

    tests: dict
    heterogeneity: HeterogeneityResult | None = None
    skipped: dict = dataclasses.field(default_factory=dict)
    bootstrap: int = 0
    alpha: float = 0.05
    split_time: str | None = None

    def summary(self) -> pd.DataFrame:
        """One row per test and state (or order): ``test``, ``label``, ``g2``, ``df``, ``p_value``, ``p_boot``,
        ``effect`` and ``effect_name`` (the effect size of that test)."""
        effects = {"event_dependence": "cramers_v", "markov_order": "mutual_info", "history_components": "gain",
                   "drift": "mutual_info", "heterogeneity": "mutual_info"}
        parts = []
        for name, frame in self.tests.items():
            label = [f"order {m} vs {m + 1}" for m in frame.index] if name == "markov_order" else frame.index
            parts.append(pd.DataFrame({
                "test": name, "label": [str(v) for v in label], "g2": frame["g2"].to_numpy(),
                "df": frame["df"].to_numpy(), "p_value": frame["p_value"].to_numpy(),
                "p_boot": frame["p_boot"].to_numpy(), "effect": frame[effects[name]].to_numpy(),
                "effect_name": effects[name]}))
        if not parts:
            return pd.DataFrame(columns=["test", "label", "g2", "df", "p_value", "p_boot", "effect", "effect_name"])
        return pd.concat(parts, ignore_index=True)

    def findings(self) -> dict:
        """One plain-language line per test."""
        a = self.alpha
        out = {}
        for name, frame in self.tests.items():
            tested = frame[frame["df"] > 0]
            p = _decision(tested)
            hit = list(tested.index[(p < a).to_numpy()])
            if name == "event_dependence":
                out[name] = (f"the next state depends on the event in states: {_names(hit)}" if hit else
                             f"no state's next state depends on the event (at {a:g})")
            elif name == "markov_order":
                if not hit:
                    out[name] = f"order {frame.index.min()} is enough: no higher order is needed (at {a:g})"
                else:
                    top = max(hit)
                    ok = [m for m in frame.index if m > top and m not in hit]
                    out[name] = (f"order {top} is not enough: the state {top + 1} steps back changes the next "
                                 f"state (order {top} rejected against {top + 1} at {a:g})"
                                 + (f"; order {ok[0]} is enough" if ok else
                                    "; try history-aware states (order) or a larger --max-order"))
            elif name == "history_components":
                row = frame.loc["all"]
                pa = row["p_boot"] if not np.isnan(row["p_boot"]) else row["p_value"]
                out[name] = (f"the history-aware states explain the next state better than the plain chain "
                             f"(+{row['gain']:.3f} nats per transition, p = {pa:.3g})" if pa < a else
                             f"the history-aware states do not explain the next state better than the plain "
                             f"chain (p = {pa:.3g})")
            elif name == "drift":
                out[name] = (f"the chain changed at {self.split_time} in states: {_names(hit)}" if hit else
                             f"no state's transitions changed at {self.split_time} (at {a:g})")
            elif name == "heterogeneity":
                h = self.heterogeneity
                pa = h.p_boot if not np.isnan(h.p_boot) else h.p_value
                if pa < a:
                    worst = h.deviating(a)[:5] or list(h.entities.index[:3])
                    out[name] = (f"entities follow different chains (p = {pa:.3g}); the most deviating: "
                                 f"{_names(worst)}")
                else:
                    out[name] = f"no evidence that entities follow different chains (p = {pa:.3g})"
        return out

    def to_dict(self) -> dict:
        """The report as plain JSON-ready types (NaN as None)."""
        def records(frame):
            f = frame.reset_index()
            return [{k: (None if isinstance(v, float) and math.isnan(v) else
                         v.item() if isinstance(v, np.generic) else v) for k, v in r.items()}
                    for r in f.to_dict(orient="records")]

        out = {"bootstrap": self.bootstrap, "alpha": self.alpha,
               "tests": {name: records(frame) for name, frame in self.tests.items()},
               "findings": self.findings(), "skipped": dict(self.skipped)}
        if self.heterogeneity is not None:
            h = self.heterogeneity
            out["heterogeneity_total"] = records(pd.DataFrame(
                {"g2": [h.g2], "df": [h.df], "p_value": [h.p_value], "p_boot": [h.p_boot]}, index=["all"]))[0]
            out["heterogeneity_entities"] = records(h.entities)
        return out

    def to_text(self, top: int = 5) -> str:
        """A readable report: each test's table and its plain-language line."""
        lines = [f"markovfault diagnostics ({'asymptotic p-values' if not self.bootstrap else f'asymptotic and bootstrap p-values, {self.bootstrap} replicates'})"]
        if self.bootstrap and 1.0 / (1 + self.bootstrap) >= self.alpha:
            lines.append(f"note: with {self.bootstrap} replicates the smallest bootstrap p-value is "
                         f"{1 / (1 + self.bootstrap):.3g}, not below {self.alpha:g}: no bootstrap test can reject; "
                         "use 199 or more")
        findings = self.findings()
        cols = {"event_dependence": ["g2", "df", "p_value", "p_boot", "cramers_v", "n"],
                "markov_order": ["alternative", "g2", "df", "p_value", "p_boot", "mutual_info", "n"],
                "history_components": ["g2", "df", "p_value", "p_boot", "gain", "n"],
                "drift": ["g2", "df", "p_value", "p_boot", "mutual_info", "n_before", "n_after"],
                "heterogeneity": ["g2", "df", "p_value", "p_boot", "mutual_info", "n", "n_entities"]}
        titles = {"event_dependence": "event dependence: does the next state depend on the event?",
                  "markov_order": "Markov order: order m against m + 1",
                  "history_components": "history-aware states against the plain chain",
                  "drift": f"drift: the same chain before and after {self.split_time}?",
                  "heterogeneity": "heterogeneity: do entities follow the pooled chain?"}
        for name, frame in self.tests.items():
            lines += ["", f"== {titles[name]}", frame[cols[name]].to_string(float_format=lambda v: f"{v:.4g}")]
            if name == "heterogeneity" and self.heterogeneity is not None:
                h = self.heterogeneity
                lines.append(f"all states: G2 = {h.g2:.4g}, df = {h.df}, p = {h.p_value:.4g}"
                             + (f", p_boot = {h.p_boot:.4g}" if not np.isnan(h.p_boot) else ""))
                lines += [f"the {min(top, len(h.entities))} most deviating entities:",
                          h.entities.head(top).to_string(float_format=lambda v: f"{v:.4g}")]
            lines.append(f"-> {findings[name]}")
        for name, why in self.skipped.items():
            lines += ["", f"== {name}: not run ({why})"]
        return "\n".join(lines)


def diagnose(model: Any, histories: Any, *, bootstrap: int | None = 0, random_state: Any = None,
             max_order: int = 2, split_time: Any = None, alpha: float = 0.05) -> DiagnosticsReport:
    """Run every test on a model and histories: event dependence, Markov order, history components (for a
    history-aware model), drift (with ``split_time``) and heterogeneity.

    Parameters
    ----------
    model : FaultPredictor or None
        A fitted model: its states and events encode ``histories``, and its history-aware states (if any)
        are tested against the plain chain. None: ``histories`` are Trajectories already.
    histories : path, list of paths, DataFrame or Trajectories
    bootstrap : int, default=0
        Replicates of every test's parametric bootstrap (0 or None: asymptotic p-values only).
    random_state : None, int or numpy Generator
        One seed for all of them: the same seed gives the same report.
    max_order : int, default=2
        The Markov-order rows test 0 vs 1, ..., max_order - 1 vs max_order.
    split_time : timestamp, ISO string or int, optional
        Test drift: the transitions before this time against those from it on.
    alpha : float, default=0.05
        The level of the report's plain-language findings.

    Returns
    -------
    DiagnosticsReport

    Examples
    --------
    >>> from markovfault import Trajectories
    >>> traj = Trajectories.from_codes([0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 0] * 4, [0, 1] * 24, lengths=[12] * 4,
    ...                                state_names=["ok", "slow"], event_names=["tick", "burst"])
    >>> report = diagnose(None, traj, bootstrap=19, random_state=0, max_order=1, split_time=6)
    >>> sorted(report.tests)
    ['drift', 'event_dependence', 'heterogeneity', 'markov_order']
    >>> report.summary().columns.tolist()
    ['test', 'label', 'g2', 'df', 'p_value', 'p_boot', 'effect', 'effect_name']
    """
    B = _check_bootstrap(bootstrap)
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise ConfigError(f"alpha == {alpha!r}, must be a number between 0 and 1")
    if isinstance(histories, Trajectories):
        traj = histories
    elif model is None:
        raise TypeError("diagnose: without a model, histories must be Trajectories")
    else:
        traj = trajectories_of(model, histories)
    _check_traj(traj, "diagnose")
    rng = rng_of(random_state)
    tests, skipped, het = {}, {}, None
    if traj.n_events >= 2:
        tests["event_dependence"] = event_dependence(traj, bootstrap=B, random_state=rng)
    else:
        skipped["event_dependence"] = "the histories have one event"
    tests["markov_order"] = markov_order(traj, max_order, bootstrap=B, random_state=rng)
    spec = getattr(getattr(model, "chain_", None), "spec", None)
    if spec is not None and not spec.is_plain:
        tests["history_components"] = history_components(model, traj, bootstrap=B, random_state=rng)
    if split_time is not None:
        tests["drift"] = drift(traj, split_time=split_time, bootstrap=B, random_state=rng)
    if traj.n_entities >= 2:
        het = heterogeneity(traj, bootstrap=B, random_state=rng)
        tests["heterogeneity"] = het.states
    else:
        skipped["heterogeneity"] = "the histories have one entity"
    logger.info("diagnostics of %d transitions of %d entities (bootstrap %d)", traj.n_transitions,
                traj.n_entities, B)
    return DiagnosticsReport(tests, het, skipped, B, float(alpha), None if split_time is None else str(split_time))
