"""Asymptotic G² diagnostics (markovfault.diagnostics) against independent references.

References: scipy.stats.chi2_contingency(..., correction=False, lambda_="log-likelihood") (scipy 1.17),
scipy.stats.contingency.association(method="cramer"), tables counted by hand, window counts made with pandas
groupby/shift, and simulated chains of known order.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2, chi2_contingency
from scipy.stats.contingency import association

from markovfault import FaultPredictor, Trajectories
from markovfault.diagnostics import drift, event_dependence, g2_tables, markov_order
from markovfault.exceptions import ConfigError, CountsError, HistoryError, MissingColumnError, NotFittedError
from markovfault.simulate import simulate_histories
from markovfault.states import HistoryCounts

COLUMNS = {"entity": "handler", "time": "timestamp", "event": "event_type", "status": "status",
           "event_id": "event_id"}
STATES = {"kind": "categorical", "failure": ["error", "timeout", "down"]}


def scipy_g2(table):
    """G² and dof of scipy on the observed rows and columns of a table."""
    t = np.asarray(table, dtype=float)
    t = t[t.sum(1) > 0][:, t.sum(0) > 0]
    if t.shape[0] < 2 or t.shape[1] < 2:
        return 0.0, 0
    res = chi2_contingency(t, correction=False, lambda_="log-likelihood")
    return res.statistic, res.dof


def uneven_counts():
    # 3 events x 4 states x 4 next states; state 2 never entered under event 1 (a zero row), next state 3
    # never reached from state 0 (a zero column), state 3 never left (no data)
    return np.array([
        [[17, 3, 0, 0], [4, 11, 2, 1], [5, 0, 7, 2], [0, 0, 0, 0]],
        [[9, 8, 1, 0], [1, 1, 13, 3], [0, 0, 0, 0], [0, 0, 0, 0]],
        [[2, 12, 5, 0], [6, 2, 2, 9], [1, 4, 3, 8], [0, 0, 0, 0]],
    ])


# --------------------------------------------------------------- the kernel
def test_hand_counted_table():
    # [[10, 0], [5, 5]]: n = 20, rows 10, 10, columns 15, 5; expected [[7.5, 2.5], [7.5, 2.5]]
    # G² = 2 (10 ln(10/7.5) + 5 ln(5/7.5) + 5 ln(5/2.5)) = 2 (2.876821 - 2.027326 + 3.465736) = 8.630462
    out = g2_tables(np.array([[10, 0], [5, 5]]))
    assert out["g2"] == pytest.approx(8.630462, abs=1e-6)
    assert out["df"] == 1
    # X² = 2.5²/7.5 * 2 + 2.5²/2.5 * 2 = 1.666667 + 5 = 6.666667
    assert out["x2"] == pytest.approx(20 / 3)


# ---------------------------------------------------------- event dependence
def test_event_dependence_equals_scipy_state_by_state():
    counts = uneven_counts()
    out = event_dependence(counts)
    assert list(out.index) == [0, 1, 2, 3]
    for i in range(4):
        g2, dof = scipy_g2(counts[:, i, :])
        assert out.loc[i, "g2"] == pytest.approx(g2, rel=1e-12, abs=1e-12)
        assert out.loc[i, "df"] == dof
        if dof:
            assert out.loc[i, "p_value"] == pytest.approx(chi2.sf(g2, dof), rel=1e-10)
            t = counts[:, i, :]
            t = t[t.sum(1) > 0][:, t.sum(0) > 0]
            assert out.loc[i, "cramers_v"] == pytest.approx(association(t, method="cramer"), rel=1e-10)
            assert out.loc[i, "x2"] == pytest.approx(chi2_contingency(t, correction=False).statistic, rel=1e-10)
            assert out.loc[i, "mutual_info"] == pytest.approx(g2 / (2 * t.sum()), rel=1e-12)
    # state 2: the event-1 row is empty, so the table is 2 x 4: df 3, not 6; state 0: 3 x 3 (no next state 3)
    assert out.loc[2, "df"] == 3 and out.loc[0, "df"] == 4
    assert out.loc[3, "df"] == 0 and np.isnan(out.loc[3, "p_value"]) and out.loc[3, "n"] == 0
    assert out["n"].tolist() == [57, 55, 30, 0]  # 20+18+19, 18+18+19, 14+0+16


def test_event_dependence_of_fitted_models_labels_states():
    history = simulate_histories(n_handlers=10, n_steps=300, random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = FaultPredictor(columns=COLUMNS, states=STATES).fit(history)
    out = event_dependence(model)
    assert list(out.index) == list(model.chain_.state_names_)
    counts = np.asarray(model.chain_.counts_)
    g2, dof = scipy_g2(counts[:, list(out.index).index("ok"), :])
    assert out.loc["ok", "g2"] == pytest.approx(g2) and out.loc["ok", "df"] == dof
    # the default order service's transitions depend on the event: the well-visited ok state rejects
    assert out.loc["ok", "p_value"] < 1e-6
    pd.testing.assert_frame_equal(event_dependence(model.chain_), out)


def test_event_dependence_of_history_counts():
    counts = uneven_counts()[:, :3, :]
    hc = HistoryCounts([4, 9, 30], counts)
    out = event_dependence(hc)
    assert list(out.index) == [4, 9, 30]
    np.testing.assert_allclose(out["g2"], event_dependence(counts)["g2"])


def test_event_dependence_type_one_error_on_event_free_chain():
    # every event moves the chain alike: the p-values of the true null are roughly uniform
    rng = np.random.RandomState(3)
    P = np.array([[0.7, 0.2, 0.1], [0.3, 0.5, 0.2], [0.2, 0.3, 0.5]])
    n_rep, n = 300, 400
    # counts of n transitions per state and event: multinomial draws, vectorised over replications
    counts = np.stack([rng.multinomial(n, P[i], size=(n_rep, 3)) for i in range(3)], axis=2)  # (rep, E, S, S)
    p = np.concatenate([event_dependence(c)["p_value"].to_numpy() for c in counts])
    assert 0.02 <= (p < 0.05).mean() <= 0.08
    # and under a dependence on the event the test has power
    Q = P[[1, 2, 0]]
    alt = counts.copy()
    alt[:, 1] = np.stack([rng.multinomial(n, Q[i], size=n_rep) for i in range(3)], axis=1)
    p_alt = np.concatenate([event_dependence(c)["p_value"].to_numpy() for c in alt])
    assert (p_alt < 0.05).mean() > 0.99


def test_event_dependence_errors():
    with pytest.raises(NotFittedError, match="not fitted"):
        event_dependence(FaultPredictor(columns=COLUMNS, states=STATES))
    with pytest.raises(CountsError, match="at least two events"):
        event_dependence(np.ones((1, 3, 3)))
    with pytest.raises(CountsError, match="shape"):
        event_dependence(np.ones((3, 3)))
    with pytest.raises(CountsError, match=">= 0"):
        event_dependence(-np.ones((2, 2, 2)))
    with pytest.raises(CountsError, match="NaN"):
        event_dependence(np.full((2, 2, 2), np.nan))
    with pytest.raises(TypeError, match="must be a fitted FaultPredictor"):
        event_dependence("counts.npz")


def test_kullback_kupperman_ku_counts_and_published_value():
    """The issue's Kullback, Kupperman and Ku (1962) example is a goodness-of-fit test of the counts
    [[51, 11, 8], [12, 31, 9], [6, 11, 10]] against a given matrix, not a test of independence; its
    published G² = 6.551795 (R markovchain's verifyEmpiricalToTheoretical test, before 0.11.1) takes the
    expected counts from the column totals, the corrected value from the row totals is 6.518384. The G²
    kernel reproduces both with the matching expected counts (a 2 x 3 x 3 table whose rows are the observed
    and the expected transitions, G² of the observed cells only)."""
    n = np.array([[51, 11, 8], [12, 31, 9], [6, 11, 10]], dtype=float)
    P = np.array([[5 / 8, 1 / 4, 1 / 8], [1 / 4, 1 / 2, 1 / 4], [1 / 4, 3 / 8, 3 / 8]])
    for totals, g2_ref, p_ref in [(n.sum(0), 6.551795, 0.3642899), (n.sum(1), 6.518384, None)]:
        g2 = 2 * (n * np.log(n / (totals[:, None] * P))).sum()
        assert g2 == pytest.approx(g2_ref, abs=1e-6)
        if p_ref is not None:
            assert chi2.sf(g2, 6) == pytest.approx(p_ref, abs=1e-7)


# ------------------------------------------------------------ Markov order
def reference_order_test(seqs, m):
    """G² of order m vs m + 1 with pandas groupby/shift windows and scipy per context."""
    frame = pd.DataFrame({"entity": np.repeat(np.arange(len(seqs)), [len(s) for s in seqs]),
                          "s": np.concatenate(seqs)})
    g = frame.groupby("entity")["s"]
    cols = {f"lag{k}": g.shift(k) for k in range(m + 2)}  # lag0 is the next state
    win = pd.DataFrame(cols).dropna().astype(int)
    g2 = dof = 0
    ctx_cols = [f"lag{k}" for k in range(1, m + 1)]
    groups = win.groupby(ctx_cols) if ctx_cols else [(None, win)]
    for _, part in groups:
        table = pd.crosstab(part[f"lag{m + 1}"], part["lag0"]).to_numpy()
        a, b = scipy_g2(table)
        g2 += a
        dof += b
    return g2, dof, len(win)


def first_order_sequences(rng, n_seq, length, P):
    s = np.zeros((n_seq, length), dtype=np.int64)
    s[:, 0] = rng.randint(len(P), size=n_seq)
    cum = P.cumsum(1)
    for t in range(1, length):  # a loop over time steps, vectorised over sequences
        s[:, t] = (rng.rand(n_seq, 1) > cum[s[:, t - 1]]).sum(1)
    return s


def second_order_sequences(rng, n_seq, length, P2):
    s = np.zeros((n_seq, length), dtype=np.int64)
    s[:, :2] = rng.randint(P2.shape[0], size=(n_seq, 2))
    cum = P2.cumsum(2)
    for t in range(2, length):
        s[:, t] = (rng.rand(n_seq, 1) > cum[s[:, t - 2], s[:, t - 1]]).sum(1)
    return s


P1 = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.3, 0.3, 0.4]])


def test_markov_order_equals_pandas_and_scipy_reference():
    rng = np.random.RandomState(0)
    seqs = [s[: n] for s, n in zip(first_order_sequences(rng, 7, 60, P1), [60, 3, 17, 41, 2, 60, 25])]
    out = markov_order(seqs, max_order=3)
    assert out.index.tolist() == [0, 1, 2] and out["alternative"].tolist() == [1, 2, 3]
    for m in range(3):
        g2, dof, n = reference_order_test(seqs, m)
        assert out.loc[m, "g2"] == pytest.approx(g2, rel=1e-10)
        assert out.loc[m, "df"] == dof
        assert out.loc[m, "n"] == n
        assert out.loc[m, "p_value"] == pytest.approx(chi2.sf(g2, dof), rel=1e-10)


def test_markov_order_hand_counted():
    # 0 0 1 0 1 1: transitions 00, 01, 10, 01, 11 -> table [[1, 2], [1, 1]] (order 0 vs 1)
    # expected [[1.2, 1.8], [0.8, 1.2]]; G² = 2 (ln(1/1.2) + 2 ln(2/1.8) + ln(1/0.8) + ln(1/1.2))
    out = markov_order([[0, 0, 1, 0, 1, 1]], max_order=1)
    g2 = 2 * (np.log(1 / 1.2) + 2 * np.log(2 / 1.8) + np.log(1 / 0.8) + np.log(1 / 1.2))
    assert out.loc[0, "g2"] == pytest.approx(g2, abs=1e-12)
    assert out.loc[0, "df"] == 1 and out.loc[0, "n"] == 5


def test_markov_order_labels_and_trajectories_agree():
    rng = np.random.RandomState(5)
    s = first_order_sequences(rng, 4, 30, P1)
    names = np.array(["ok", "slow", "down"])
    by_codes = markov_order(list(s), max_order=2)
    by_labels = markov_order([names[r] for r in s], max_order=2)
    traj = Trajectories.from_codes(s.reshape(-1), lengths=[30] * 4, state_names=list(names))
    by_traj = markov_order(traj, max_order=2)
    pd.testing.assert_frame_equal(by_codes, by_labels)
    pd.testing.assert_frame_equal(by_codes, by_traj)
    # runs split by a gap: no window crosses a run boundary
    split = Trajectories.from_codes(s.reshape(-1), lengths=[15] * 8, state_names=list(names))
    assert markov_order(split, max_order=1).loc[0, "n"] == 8 * 14


def test_markov_order_size_and_power_on_simulated_truth():
    rng = np.random.RandomState(11)
    n_rep = 200
    p_null = np.array([markov_order(list(first_order_sequences(rng, 20, 60, P1)), max_order=2).loc[1, "p_value"]
                       for _ in range(n_rep)])
    # a true first-order chain does not reject order 1 against 2 at a high rate (asymptotic test)
    assert (p_null < 0.05).mean() <= 0.10
    # a second-order chain: the next state depends on the state two steps back
    P2 = np.empty((3, 3, 3))
    P2[0] = [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]]
    P2[1] = [[0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.8, 0.1, 0.1]]
    P2[2] = [[0.1, 0.1, 0.8], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1]]
    p_alt = np.array([markov_order(list(second_order_sequences(rng, 20, 60, P2)), max_order=2).loc[1, "p_value"]
                      for _ in range(50)])
    assert (p_alt < 0.05).mean() > 0.95


def test_markov_order_errors():
    with pytest.raises(ConfigError, match="max_order"):
        markov_order([[0, 1, 0]], max_order=0)
    with pytest.raises(TypeError, match="Trajectories, a DataFrame or a list"):
        markov_order("0101", max_order=1)
    with pytest.raises(HistoryError, match="no sequence"):
        markov_order([], max_order=1)
    with pytest.raises(HistoryError, match=">= 0"):
        markov_order([[0, -1, 0]], max_order=1)


# ------------------------------------------------------------------- drift
def test_drift_equals_scipy_summed_over_events():
    before = uneven_counts()
    after = np.roll(uneven_counts(), 1, axis=0) + np.arange(4)[None, None, :]
    after[:, 3] = 0
    out = drift(before, after)
    for i in range(4):
        refs = [scipy_g2(np.stack([before[e, i], after[e, i]])) for e in range(3)]
        assert out.loc[i, "g2"] == pytest.approx(sum(r[0] for r in refs), rel=1e-12, abs=1e-12)
        assert out.loc[i, "df"] == sum(r[1] for r in refs)
    assert out["n_before"].tolist() == before.sum(axis=(0, 2)).tolist()
    assert out["n_after"].tolist() == after.sum(axis=(0, 2)).tolist()


def test_drift_size_and_power():
    rng = np.random.RandomState(7)
    P = np.array([[0.7, 0.2, 0.1], [0.3, 0.5, 0.2], [0.2, 0.3, 0.5]])

    def draw(Pm):
        return np.stack([rng.multinomial(200, Pm[i], size=2) for i in range(3)], axis=1)  # (E=2, S, S)

    p_null = np.concatenate([drift(draw(P), draw(P))["p_value"].to_numpy() for _ in range(200)])
    assert 0.02 <= (p_null < 0.05).mean() <= 0.08
    shifted = P.copy()
    shifted[0] = [0.55, 0.3, 0.15]
    p_alt = np.array([drift(draw(P), draw(shifted)).loc[0, "p_value"] for _ in range(100)])
    assert (p_alt < 0.05).mean() > 0.9


def test_drift_history_counts_align_codes():
    a = HistoryCounts([3, 7], np.array([[[10, 2], [3, 9]]]))
    b = HistoryCounts([7, 9], np.array([[[1, 11], [5, 5]]]))
    out = drift(a, b)
    assert out.index.tolist() == [3, 7, 9]
    assert out.loc[7, "g2"] == pytest.approx(scipy_g2([[3, 9], [1, 11]])[0])
    assert out.loc[3, "df"] == 0 and out.loc[9, "df"] == 0


def test_drift_errors():
    with pytest.raises(CountsError, match="same events and states"):
        drift(np.ones((2, 3, 3)), np.ones((2, 4, 4)))
    with pytest.raises(CountsError, match="HistoryCounts"):
        drift(np.ones((1, 2, 2)), HistoryCounts([1, 2], np.ones((1, 2, 2), dtype=np.int64)))
    with pytest.raises(NotFittedError):
        drift(FaultPredictor(columns=COLUMNS, states=STATES), np.ones((2, 2, 2)))


def test_markov_order_of_history_frames():
    history = simulate_histories(n_handlers=6, n_steps=80, flaky_fraction=0, with_metrics=False,
                                 with_event_ids=False, random_state=2)
    by_frame = markov_order(history, max_order=2, entity="handler", state="status")
    seqs = [part["status"].to_numpy() for _, part in history.groupby("handler", sort=False)]
    pd.testing.assert_frame_equal(by_frame, markov_order(seqs, max_order=2))
    shuffled = history.sample(frac=1.0, random_state=0)
    pd.testing.assert_frame_equal(
        markov_order(shuffled, max_order=2, entity="handler", state="status", time="timestamp"), by_frame)
    with pytest.raises(HistoryError, match="not contiguous"):
        markov_order(shuffled, max_order=1, entity="handler", state="status")
    with pytest.raises(MissingColumnError, match="no column 'entity'"):
        markov_order(history, max_order=1)


def test_markov_order_detects_the_simulators_failure_memory():
    # with a failure memory the chance of failing depends on steps since the last failure: not first order
    p = [markov_order(simulate_histories(n_handlers=20, n_steps=300, flaky_fraction=0, memory_window=5,
                                         memory_boost=5, with_metrics=False, with_event_ids=False,
                                         random_state=seed),
                      max_order=2, entity="handler", state="status", time="timestamp").loc[1, "p_value"]
         for seed in range(5)]
    assert max(p) < 0.05


# ================================================= parametric bootstrap
from markovfault.diagnostics import (  # noqa: E402
    DiagnosticsReport, batch_event_dependence, batch_markov_order, diagnose, heterogeneity, history_components)
from markovfault.states import HistorySpec  # noqa: E402

N_REP = 1000  # data sets per type-I check: the binomial sd of a 5% rate is 0.007 (0.005 over two states)


def simulate_sets(rng, n_sets, lengths, P, n_events=2):
    """n_sets data sets of runs of the given lengths from the event-free chain P, events drawn uniformly:
    (states, events) of shape (n_sets, sum(lengths)); vectorised over data sets and runs."""
    n, S = sum(lengths), len(P)
    lengths = np.asarray(lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    st = np.zeros((n_sets, n), dtype=np.int64)
    st[:, starts] = rng.integers(0, S, size=(n_sets, len(lengths)))
    cum = np.cumsum(P, axis=-1)
    ev = rng.integers(0, n_events, size=(n_sets, n))
    for t in range(1, lengths.max()):
        pos = starts[lengths > t] + t
        rows = cum[st[:, pos - 1]] if cum.ndim == 2 else cum[ev[:, pos], st[:, pos - 1]]
        st[:, pos] = (rng.random((n_sets, len(pos)))[..., None] > rows).sum(-1)
    return st, ev


def test_bootstrap_type_one_error_of_event_dependence_at_100_transitions():
    rng = np.random.default_rng(20240613)
    lengths = [26] * 4  # 100 transitions
    P = np.array([[0.7, 0.3], [0.4, 0.6]])
    st, ev = simulate_sets(rng, N_REP, lengths, P)
    out = batch_event_dependence(st, ev, lengths, 2, 2, bootstrap=199, random_state=1)
    boot, asym = np.nanmean(out["p_boot"] < 0.05), np.nanmean(out["p_value"] < 0.05)
    msg = f"type-I error at n = 100 (event dependence): bootstrap {boot:.3f}, asymptotic {asym:.3f}"
    print(msg)
    assert not np.isnan(out["p_boot"]).any()
    assert abs(boot - 0.05) <= 0.02, msg
    # the kernel of many data sets gives, for one of them, what the public function gives on its trajectories
    traj = Trajectories.from_codes(st[7], ev[7], lengths=lengths)
    one = event_dependence(traj, bootstrap=199, random_state=5)
    ref = batch_event_dependence(st[7:8], ev[7:8], lengths, 2, 2, bootstrap=199, random_state=5)
    np.testing.assert_allclose(one["p_boot"], ref["p_boot"][0])
    np.testing.assert_allclose(one["g2"], out["g2"][7])


def test_bootstrap_type_one_error_of_order_one_against_two_at_100_transitions():
    rng = np.random.default_rng(77)
    lengths = [26] * 4
    st, _ = simulate_sets(rng, N_REP, lengths, P1)
    out = batch_markov_order(st, lengths, 3, 1, bootstrap=199, random_state=2)
    boot, asym = np.mean(out["p_boot"] < 0.05), np.mean(out["p_value"] < 0.05)
    msg = f"type-I error at n = 100 (order 1 vs 2): bootstrap {boot:.3f}, asymptotic {asym:.3f}"
    print(msg)
    assert abs(boot - 0.05) <= 0.02, msg
    # the public function on one of the data sets: the same statistic
    seqs = [st[3, i * 26:(i + 1) * 26] for i in range(4)]
    assert markov_order(seqs, max_order=2).loc[1, "g2"] == pytest.approx(out["g2"][3])


def test_bootstrap_power_of_event_dependence_and_order():
    rng = np.random.default_rng(5)
    lengths = [26] * 4
    # an event that changes the next state: under event 1 the chain leaves both states more often
    P_e = np.array([[[0.8, 0.2], [0.2, 0.8]], [[0.3, 0.7], [0.7, 0.3]]])
    st, ev = simulate_sets(rng, 200, lengths, P_e)
    out = batch_event_dependence(st, ev, lengths, 2, 2, bootstrap=99, random_state=3)
    power = np.mean(out["p_boot"] < 0.05)
    print(f"power (event dependence, n = 100): {power:.3f}")
    assert power > 0.8
    P2 = np.empty((3, 3, 3))
    P2[0] = [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]]
    P2[1] = [[0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.8, 0.1, 0.1]]
    P2[2] = [[0.1, 0.1, 0.8], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1]]
    r = np.random.RandomState(9)
    codes = np.stack([second_order_sequences(r, 4, 26, P2).reshape(-1) for _ in range(100)])
    out = batch_markov_order(codes, lengths, 3, 1, bootstrap=99, random_state=4)
    power = np.mean(out["p_boot"] < 0.05)
    print(f"power (order 1 vs 2, n = 100): {power:.3f}")
    assert power > 0.8


def test_bootstrap_is_seeded():
    rng = np.random.default_rng(0)
    st, ev = simulate_sets(rng, 1, [30, 20, 25], P1, n_events=3)
    traj = Trajectories.from_codes(st[0], ev[0], lengths=[30, 20, 25])
    a = event_dependence(traj, bootstrap=99, random_state=11)
    pd.testing.assert_frame_equal(a, event_dependence(traj, bootstrap=99, random_state=11))
    b = event_dependence(traj, bootstrap=99, random_state=12)
    assert not np.allclose(a["p_boot"], b["p_boot"])
    pd.testing.assert_frame_equal(a.drop(columns="p_boot"), b.drop(columns="p_boot"))
    assert a["p_boot"].isna().sum() == 0 and event_dependence(traj)["p_boot"].isna().all()
    # p = (1 + #{G²_b >= G²}) / (1 + B): a multiple of 1 / (B + 1) in [1 / (B + 1), 1]
    k = a["p_boot"].to_numpy() * 100
    np.testing.assert_allclose(k, np.rint(k))
    assert (k >= 1).all() and (k <= 100).all()
    m1 = markov_order(traj, max_order=2, bootstrap=49, random_state=3)
    pd.testing.assert_frame_equal(m1, markov_order(traj, max_order=2, bootstrap=49, random_state=3))


def test_bootstrap_from_counts_agrees_with_chi_square_when_n_is_large():
    # 2 events x 1 state x 3 next states with 600 transitions: G² is close to chi-square, so the bootstrap
    # p-value (rows kept, next states from the pooled row) is close to the asymptotic one
    counts = np.array([[[112, 95, 93]], [[89, 105, 106]]])
    out = event_dependence(counts, bootstrap=3999, random_state=0)
    assert 0.05 < out.loc[0, "p_value"] < 0.5
    assert out.loc[0, "p_boot"] == pytest.approx(out.loc[0, "p_value"], abs=0.025)
    d = drift(counts[:1], counts[1:], bootstrap=3999, random_state=0)
    assert d.loc[0, "p_boot"] == pytest.approx(d.loc[0, "p_value"], abs=0.025)


def test_bootstrap_errors():
    for bad in (-1, 2.5, True, "199"):
        with pytest.raises(ConfigError, match="bootstrap"):
            event_dependence(uneven_counts(), bootstrap=bad)
    with pytest.raises(ConfigError, match="bootstrap"):
        markov_order([[0, 1, 0]], bootstrap=-3)


# ------------------------------------------------------- drift of trajectories
def two_period_trajectories(rng, n_entities, length, split, P_before, P_after):
    st = np.zeros((n_entities, length), dtype=np.int64)
    cb, ca = np.cumsum(P_before, 1), np.cumsum(P_after, 1)
    for t in range(1, length):
        cum = cb if t < split else ca
        st[:, t] = (rng.random((n_entities, 1)) > cum[st[:, t - 1]]).sum(1)
    return Trajectories.from_codes(st.reshape(-1), lengths=[length] * n_entities, state_names=["ok", "slow", "down"])


def test_drift_of_trajectories_equals_counts_split_at_the_time():
    rng = np.random.default_rng(8)
    traj = two_period_trajectories(rng, 6, 40, 17, P1, P1)
    out = drift(traj, split_time=17)
    # the reference: transitions counted by hand on each side of the split (the step entered decides)
    before = np.zeros((1, 3, 3))
    after = np.zeros((1, 3, 3))
    s = traj.state.reshape(6, 40)
    for row in s:
        for t in range(1, 40):
            (before if t < 17 else after)[0, row[t - 1], row[t]] += 1
    ref = drift(before, after)
    np.testing.assert_allclose(out["g2"], ref["g2"].to_numpy(), rtol=1e-12)
    assert out["df"].tolist() == ref["df"].tolist()
    assert out["n_before"].tolist() == ref["n_before"].tolist() and out.index.tolist() == ["ok", "slow", "down"]
    with pytest.raises(ConfigError, match="split_time"):
        drift(traj)
    with pytest.raises(HistoryError, match="inside the histories"):
        drift(traj, split_time=1000)


def test_drift_bootstrap_power_when_the_chain_changes_at_the_split():
    rng = np.random.default_rng(21)
    after = np.array([[0.3, 0.4, 0.3], [0.2, 0.5, 0.3], [0.3, 0.3, 0.4]])  # only the ok row changes
    p_alt = [drift(two_period_trajectories(rng, 10, 40, 20, P1, after), split_time=20, bootstrap=99,
                   random_state=k).loc["ok", "p_boot"] for k in range(20)]
    p_null = [drift(two_period_trajectories(rng, 10, 40, 20, P1, P1), split_time=20, bootstrap=99,
                    random_state=k).loc["ok", "p_boot"] for k in range(20)]
    power = np.mean(np.array(p_alt) < 0.05)
    print(f"power (drift of the ok row, 390 transitions): {power:.2f}; null rejections {np.mean(np.array(p_null) < 0.05):.2f}")
    assert power >= 0.8
    assert np.mean(np.array(p_null) < 0.05) <= 0.2


# ---------------------------------------------------------- heterogeneity
def entity_trajectories(rng, n_entities, length, flaky, P, P_flaky, n_events=2):
    st = np.zeros((n_entities, length), dtype=np.int64)
    ev = rng.integers(0, n_events, size=(n_entities, length))
    cums = np.where(np.isin(np.arange(n_entities), flaky)[:, None, None], np.cumsum(P_flaky, 1)[None],
                    np.cumsum(P, 1)[None])
    for t in range(1, length):
        st[:, t] = (rng.random((n_entities, 1)) > cums[np.arange(n_entities), st[:, t - 1]]).sum(1)
    names = [f"h{k:02d}" for k in range(n_entities)]
    frame = pd.DataFrame({"entity": np.repeat(names, length), "time": np.tile(np.arange(length), n_entities),
                          "event": np.array(["tick", "burst"])[ev.reshape(-1)]})
    return Trajectories.from_frame(frame, state=st.reshape(-1), state_names=["ok", "slow", "down"],
                                   failure=["down"])


def test_heterogeneity_equals_scipy_and_splits_by_entity():
    rng = np.random.default_rng(4)
    traj = entity_trajectories(rng, 7, 23, [2], P1, P1[[2, 0, 1]])
    res = heterogeneity(traj)
    s = traj.state
    t = np.flatnonzero(~traj.is_run_start())
    frame = pd.DataFrame({"entity": traj.entity[t], "event": traj.event[t], "prev": s[t - 1], "next": s[t]})
    total_df = 0
    for i, name in enumerate(traj.state_names):
        g2 = dof = 0
        for e in range(traj.n_events):
            part = frame[(frame.prev == i) & (frame.event == e)]
            if len(part):
                a, b = scipy_g2(pd.crosstab(part.entity, part.next).to_numpy())
                g2, dof = g2 + a, dof + b
        assert res.states.loc[name, "g2"] == pytest.approx(g2, rel=1e-10, abs=1e-12)
        assert res.states.loc[name, "df"] == dof
        total_df += dof
    assert res.df == total_df and res.g2 == pytest.approx(res.states["g2"].sum())
    assert res.p_value == pytest.approx(chi2.sf(res.g2, res.df))
    # each entity's share: 2 n KL of its rows from the pooled rows of each (event, state) table, summed
    ent = res.entities
    assert ent["g2"].sum() == pytest.approx(res.g2) and ent["share"].sum() == pytest.approx(1.0)
    k = traj.entity_names.index("h02")
    mine = frame[frame.entity == k]
    by_hand = 0.0
    for (e, i), part in mine.groupby(["event", "prev"]):
        pooled = frame[(frame.event == e) & (frame.prev == i)]["next"].value_counts(normalize=True)
        own = part["next"].value_counts(normalize=True)
        by_hand += 2 * len(part) * sum(q * np.log(q / pooled[j]) for j, q in own.items())
    assert ent.loc["h02", "g2"] == pytest.approx(by_hand, rel=1e-10)
    assert ent.loc["h02", "kl"] == pytest.approx(by_hand / (2 * len(mine)), rel=1e-10)
    assert ent["g2"].is_monotonic_decreasing  # the most deviating first


def test_heterogeneity_power_names_the_flaky_entities_first():
    rng = np.random.default_rng(13)
    P_flaky = np.array([[0.3, 0.2, 0.5], [0.2, 0.2, 0.6], [0.6, 0.2, 0.2]])  # goes down far more often
    hits = named = null_hits = 0
    n_rep = 20
    for k in range(n_rep):
        flaky = rng.choice(20, size=2, replace=False)
        traj = entity_trajectories(rng, 20, 150, flaky, P1, P_flaky)
        res = heterogeneity(traj, bootstrap=99, random_state=k)
        hits += res.p_boot < 0.05
        named += set(res.entities.index[:2]) == {f"h{f:02d}" for f in flaky}
        null = heterogeneity(entity_trajectories(rng, 20, 150, [], P1, P1), bootstrap=99, random_state=k)
        null_hits += null.p_boot < 0.05
    print(f"power (heterogeneity, 2 flaky of 20): {hits / n_rep:.2f}; flaky named first: {named / n_rep:.2f}; "
          f"null rejections: {null_hits / n_rep:.2f}")
    assert hits / n_rep >= 0.9 and named / n_rep >= 0.9 and null_hits / n_rep <= 0.2


def test_heterogeneity_errors():
    with pytest.raises(TypeError, match="Trajectories"):
        heterogeneity(np.ones((2, 2, 2)))
    with pytest.raises(HistoryError, match="two entities"):
        heterogeneity(Trajectories.from_codes([0, 1, 0, 1]))
    with pytest.raises(HistoryError, match="no transition"):
        heterogeneity(Trajectories.from_codes([0, 1], lengths=[1, 1]))


# ----------------------------------------------------- history components
def reference_order_two_lr(traj):
    """G² and df of (state, previous state or none) against the state, per (event, state), with pandas and scipy."""
    t = np.flatnonzero(~traj.is_run_start())
    start = traj.is_run_start()
    prev2 = np.where(start[t - 1], -1, traj.state[np.maximum(t - 2, 0)])
    frame = pd.DataFrame({"event": traj.event[t], "i": traj.state[t - 1], "lag": prev2, "next": traj.state[t]})
    out = {}
    for i, part in frame.groupby("i"):
        g2 = dof = 0
        for _, sub in part.groupby("event"):
            a, b = scipy_g2(pd.crosstab(sub.lag, sub.next).to_numpy())
            g2, dof = g2 + a, dof + b
        out[traj.state_names[i]] = (g2, dof)
    return out


def test_history_components_equal_the_table_tests_and_the_model_counts():
    rng = np.random.default_rng(6)
    st, ev = simulate_sets(rng, 1, [31, 17, 40, 9], P1, n_events=2)
    traj = Trajectories.from_codes(st[0], ev[0], lengths=[31, 17, 40, 9], state_names=["ok", "slow", "down"])
    out = history_components(HistorySpec(order=2), traj)
    ref = reference_order_two_lr(traj)
    for name, (g2, dof) in ref.items():
        assert out.loc[name, "g2"] == pytest.approx(g2, rel=1e-10, abs=1e-12)
        assert out.loc[name, "df"] == dof
    assert out.loc["all", "g2"] == pytest.approx(sum(g for g, _ in ref.values()))
    assert out.loc["all", "p_value"] == pytest.approx(chi2.sf(out.loc["all", "g2"], out.loc["all", "df"]))
    assert out.loc["all", "n"] == traj.n_transitions
    # on a fitted model: its own counts give what its training histories give
    history = simulate_histories(n_handlers=8, n_steps=200, random_state=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = FaultPredictor(columns=COLUMNS, states=STATES, history={"order": 2, "failure_window": 3}).fit(history)
    from markovfault.diagnostics import trajectories_of
    by_counts = history_components(model)
    by_traj = history_components(model, trajectories_of(model, history))
    np.testing.assert_allclose(by_counts["g2"], by_traj["g2"], rtol=1e-9)
    assert by_counts["df"].tolist() == by_traj["df"].tolist()


def test_history_components_bootstrap_size_and_power():
    rng = np.random.default_rng(31)
    r = np.random.RandomState(2)
    P2 = np.empty((3, 3, 3))
    P2[0] = [[0.6, 0.2, 0.2], [0.2, 0.6, 0.2], [0.2, 0.2, 0.6]]
    P2[1] = [[0.2, 0.6, 0.2], [0.2, 0.2, 0.6], [0.6, 0.2, 0.2]]
    P2[2] = [[0.2, 0.2, 0.6], [0.6, 0.2, 0.2], [0.2, 0.6, 0.2]]
    p_null, p_alt = [], []
    for k in range(30):
        st, _ = simulate_sets(rng, 1, [50] * 4, P1, n_events=1)
        p_null.append(history_components(HistorySpec(order=2), Trajectories.from_codes(st[0], lengths=[50] * 4),
                                         bootstrap=99, random_state=k).loc["all", "p_boot"])
        alt = second_order_sequences(r, 4, 50, P2).reshape(-1)
        p_alt.append(history_components(HistorySpec(order=2), Trajectories.from_codes(alt, lengths=[50] * 4),
                                        bootstrap=99, random_state=k).loc["all", "p_boot"])
    size, power = np.mean(np.array(p_null) < 0.05), np.mean(np.array(p_alt) < 0.05)
    print(f"history components (order 2 vs plain, 196 transitions): power {power:.2f}, null rejections {size:.2f}")
    assert power >= 0.9 and size <= 0.2


def test_history_components_errors():
    traj = Trajectories.from_codes([0, 1, 0, 1])
    with pytest.raises(ConfigError, match="no history-aware states"):
        history_components(HistorySpec(order=1), traj)
    with pytest.raises(ConfigError, match="give them"):
        history_components(HistorySpec(order=2), bootstrap=9)
    with pytest.raises(TypeError, match="HistorySpec"):
        history_components("model.npz", traj)


# ----------------------------------------------------------------- report
def test_diagnose_report_text_json_and_findings():
    rng = np.random.default_rng(2)
    P_e = np.array([[[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.3, 0.3, 0.4]],
                    [[0.2, 0.7, 0.1], [0.3, 0.6, 0.1], [0.3, 0.3, 0.4]]])  # the event matters in ok only
    st, ev = simulate_sets(rng, 1, [100] * 6, P_e)
    frame = pd.DataFrame({"entity": np.repeat([f"h{k}" for k in range(6)], 100), "time": np.tile(np.arange(100), 6),
                          "event": np.array(["tick", "burst"])[ev[0]]})
    traj = Trajectories.from_frame(frame, state=st[0], state_names=["ok", "slow", "down"], failure=["down"])
    report = diagnose(None, traj, bootstrap=49, random_state=0, max_order=2, split_time=50)
    assert isinstance(report, DiagnosticsReport)
    assert list(report.tests) == ["event_dependence", "markov_order", "drift", "heterogeneity"]
    findings = report.findings()
    assert findings["event_dependence"] == "the next state depends on the event in states: ok"
    assert findings["markov_order"].startswith("order 0 is not enough") and "order 1 is enough" in findings["markov_order"]
    text = report.to_text()
    assert "-> the next state depends on the event in states: ok" in text and "p_boot" in text
    import json
    doc = json.loads(json.dumps(report.to_dict()))
    assert doc["tests"]["event_dependence"][0]["state"] == "ok" and doc["bootstrap"] == 49
    summary = report.summary()
    assert set(summary["test"]) == set(report.tests)
    assert summary.loc[summary["test"] == "markov_order", "label"].tolist() == ["order 0 vs 1", "order 1 vs 2"]
    again = diagnose(None, traj, bootstrap=49, random_state=0, max_order=2, split_time=50)
    pd.testing.assert_frame_equal(report.summary(), again.summary())


def test_plot_diagnostics_draws_every_row_with_its_labels():
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from markovfault.plotting import plot_diagnostics

    rng = np.random.default_rng(3)
    st, ev = simulate_sets(rng, 1, [40] * 3, P1)
    traj = Trajectories.from_codes(st[0], ev[0], lengths=[40] * 3, state_names=["ok", "slow", "down"])
    report = diagnose(None, traj, bootstrap=19, random_state=0, max_order=2)
    ax = plot_diagnostics(report)
    summary = report.summary()
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == len(summary)
    assert labels[0].startswith("event_dependence: ok  (cramers_v = ")
    assert f"{summary.loc[0, 'effect']:.3f}" in labels[0]
    assert "markov_order: order 1 vs 2" in " ".join(labels)
    # two bars per row (asymptotic and bootstrap), of length -log10 p
    widths = sorted(round(p.get_width(), 9) for p in ax.patches)
    expect = sorted(round(float(-np.log10(v)), 9) for v in np.concatenate([summary["p_value"], summary["p_boot"]]))
    assert widths == expect
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["p = 0.05", "asymptotic", "bootstrap"]
    plt.close(ax.figure)
