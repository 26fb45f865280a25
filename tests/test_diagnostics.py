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
