"""The time since the previous step: a history component in bins, drawn from R(x' | a) with the group context."""

import os
import warnings

import numpy as np
import pandas as pd
import pytest

from conftest import monte_carlo_of_exogenous_chain

from markovfault import FaultPredictor, backtest, load_model
from markovfault.chain import HistoryChain
from markovfault.exceptions import ConfigError, DataWarning, HistoryError
from markovfault.states import HistorySpec
from markovfault.states._history import (HistoryLayout, augment, gap_bin, gap_counts, gap_edges_from_counts,
                                         group_failures, resolve_gap_edges)
from markovfault.trajectories import Trajectories

# three entities of uneven length, integer times; "down" is the failure
ROWS = [  # entity, time, status
    ("a", 0, "ok"), ("a", 1, "ok"), ("a", 4, "down"), ("a", 5, "ok"), ("a", 12, "ok"), ("a", 13, "down"),
    ("b", 2, "ok"), ("b", 5, "down"), ("b", 6, "ok"), ("b", 14, "ok"),
    ("c", 3, "ok"),
]
# the gaps, by hand: a: -, 1, 3, 1, 7, 1; b: -, 3, 1, 8; c: -
# bins of the edges [2, 5] (bin 0: gap < 2, bin 1: 2 <= gap < 5, bin 2: gap >= 5; a run's first step: bin 2)
HAND_BINS = [2, 0, 1, 0, 2, 0, 2, 1, 0, 2, 2]


def _traj(rows=ROWS, max_gap=None, shuffle=False):
    frame = pd.DataFrame(rows, columns=["entity", "time", "status"])
    if shuffle:
        frame = frame.sample(frac=1.0, random_state=3).reset_index(drop=True)
    state = frame["status"].map({"ok": 0, "down": 1}).to_numpy()
    return Trajectories.from_frame(frame, state, ["ok", "down"], ["down"], max_gap=max_gap)


def _fit(traj, spec, **kw):
    chain = HistoryChain(spec, **kw)
    return chain.fit_from_counts(chain.count(traj), traj.state_names, traj.event_names, traj.is_failure)


# ------------------------------------------------------------------ bins and edges
@pytest.mark.parametrize("shuffle", [False, True])
def test_gap_bins_match_a_hand_count(shuffle):
    traj = _traj(shuffle=shuffle)
    assert gap_bin(traj, HistorySpec(gap_edges=[2, 5])).tolist() == HAND_BINS
    # an edge is the lower bound of its bin: with edges [3, 7] the gaps 3 and 7 move up a bin
    # a: -, 1, 3, 1, 7, 1 -> 2, 0, 1, 0, 2, 0; b: -, 3, 1, 8 -> 2, 1, 0, 2; c: 2
    assert gap_bin(traj, HistorySpec(gap_edges=[3, 7])).tolist() == [2, 0, 1, 0, 2, 0, 2, 1, 0, 2, 2]
    # with edges [4, 8], 3 and 7 fall in the bin below: a: 2, 0, 0, 0, 1, 0; b: 2, 0, 0, 2; c: 2
    assert gap_bin(traj, HistorySpec(gap_edges=[4, 8])).tolist() == [2, 0, 0, 0, 1, 0, 2, 0, 0, 2, 2]


def test_a_break_longer_than_max_gap_starts_a_run_in_the_last_bin():
    # max_gap = 6 splits a at 5 -> 12 and b at 6 -> 14: those steps start runs, in the last bin (as they were)
    traj = _traj(max_gap=6)
    assert traj.n_runs == 5
    assert gap_bin(traj, HistorySpec(gap_edges=[2, 5])).tolist() == HAND_BINS
    # ... and their gaps leave the training gaps: a: 1, 3, 1, 1; b: 3, 1
    values, counts = gap_counts(traj)
    assert (values.tolist(), counts.tolist()) == ([1, 3], [4, 2])
    values, counts = gap_counts(_traj())  # without max_gap: 1 four times, 3 twice, 7 and 8 once
    assert (values.tolist(), counts.tolist()) == ([1, 3, 7, 8], [4, 2, 1, 1])
    # steps before 5 only: a's gaps at 1 and 4, b's at... none (b's first gap enters at 5)
    values, counts = gap_counts(_traj(), before=5)
    assert (values.tolist(), counts.tolist()) == ([1, 3], [1, 1])


def test_steps_into_an_end_state_leave_the_training_gaps():
    # an end added for silence has a made-up time (end_after after the last step): its gap is no evidence
    from markovfault.trajectories import mark_ends

    traj = Trajectories.from_codes([0, 0, 1, 0], state_names=["ok", "down", "<end>"], failure=["down"])
    traj = Trajectories(**{**traj.__dict__, "time": np.array([0, 2, 3, 7])})
    ended = mark_ends(traj, [False, False, True], end_after=50, data_end=100)
    assert ended.time.tolist() == [0, 2, 3, 7, 57]
    values, counts = gap_counts(ended)  # 2, 1, 4; not the 50 into the end
    assert (values.tolist(), counts.tolist()) == ([1, 2, 4], [1, 1, 1])


def test_quantile_edges_by_hand_and_with_ties():
    # the sorted training gaps 1, 1, 1, 1, 3, 3, 7, 8 (n = 8)
    values, counts = np.array([1, 3, 7, 8]), np.array([4, 2, 1, 1])
    # K = 4: positions floor(8k/4) = 2, 4, 6 -> 1, 3, 7; the edge 1 is the smallest gap (bin 0 empty): dropped
    assert gap_edges_from_counts(values, counts, 4).tolist() == [3, 7]
    # K = 3: positions floor(8/3) = 2 and floor(16/3) = 5 -> 1 and 3 -> one edge, two bins
    assert gap_edges_from_counts(values, counts, 3).tolist() == [3]
    # K = 2: position 4 -> 3
    assert gap_edges_from_counts(values, counts, 2).tolist() == [3]
    # eleven distinct gaps, K = 4: positions floor(11k/4) = 2, 5, 8 of 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233
    fib = np.array([2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233])
    assert gap_edges_from_counts(fib, np.ones(11, dtype=int), 4).tolist() == [5, 21, 89]


@pytest.mark.parametrize("seed, K", [(0, 3), (1, 5), (2, 7), (3, 10)])
def test_quantile_edges_against_a_pandas_recount(seed, K):
    rng = np.random.RandomState(seed)
    gaps = pd.Series(rng.geometric(0.15, size=rng.randint(50, 400)))  # many ties
    vc = gaps.value_counts().sort_index()
    edges = gap_edges_from_counts(vc.index.to_numpy(), vc.to_numpy(), K)
    n = len(gaps)
    ordered = gaps.sort_values().reset_index(drop=True)
    # the reference: the gap at 0-based position floor(k n / K) of the sorted gaps, once each, above the minimum
    want = sorted({int(ordered.iloc[(k * n) // K]) for k in range(1, K)} - {int(ordered.min())})
    assert edges.tolist() == want
    for e in edges:  # each edge is the value at its position: fewer gaps below it than the position, more at or below
        positions = [(k * n) // K for k in range(1, K) if ordered.iloc[(k * n) // K] == e]
        assert (gaps < e).sum() <= min(positions) and (gaps <= e).sum() > max(positions)
    # without ties the bins are balanced: n = 10 distinct gaps in K = 3 bins hold 3, 3 and 4
    distinct = np.arange(10, 20)
    e3 = gap_edges_from_counts(distinct, np.ones(10, dtype=int), 3)
    assert pd.cut(distinct, [-np.inf, *e3, np.inf], right=False).value_counts().tolist() == [3, 3, 4]


def test_resolution_warns_about_ties_and_refuses_one_value():
    traj = _traj()
    with pytest.warns(DataWarning, match=r"gap_bins = 3: the training gaps have ties, so .* only 2 distinct bins"):
        spec = resolve_gap_edges(HistorySpec(gap_bins=3), traj)
    assert (spec.gap_bins, spec.gap_edges) == (2, (3,))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_gap_edges(HistorySpec(gap_bins=2), traj).gap_edges == (3,)
    given = HistorySpec(gap_edges=[2, 5])
    assert resolve_gap_edges(given, traj) is given  # given edges stay
    assert resolve_gap_edges(None, traj) is None
    steady = Trajectories.from_codes([0, 1, 0, 0, 1], state_names=["ok", "down"], failure=["down"])
    with pytest.raises(HistoryError, match=r"every training gap is 1 .*give the edges \(gap_edges"):
        resolve_gap_edges(HistorySpec(gap_bins=3), steady)
    single = Trajectories.from_codes([0, 1], lengths=[1, 1], state_names=["ok", "down"], failure=["down"])
    with pytest.raises(HistoryError, match="no step of the training data follows another"):
        resolve_gap_edges(HistorySpec(gap_bins=3), single)


def test_timestamps_take_durations_and_chosen_edges_are_exact_durations():
    frame = pd.DataFrame({"entity": ["x"] * 6,
                          "time": pd.to_datetime([0, 30, 95, 125, 425, 430], unit="s", utc=True),
                          "status": ["ok"] * 6})
    traj = Trajectories.from_frame(frame, np.zeros(6, dtype=np.int64), ["ok"], [])
    # gaps 30 s, 65 s, 30 s, 300 s, 5 s; edges 30 s and 5 min: bins -, 1, 1, 1, 2, 0
    assert gap_bin(traj, HistorySpec(gap_edges=["30s", "5min"])).tolist() == [2, 1, 1, 1, 2, 0]
    # sorted 5, 30, 30, 65, 300 s; K = 3: positions 1 and 3 -> 30 s and 65 s, written exactly
    assert resolve_gap_edges(HistorySpec(gap_bins=3), traj).gap_edges == ("30s", "65s")
    ms = frame.assign(time=frame["time"] + pd.to_timedelta(np.arange(6) * 7, unit="ms"))
    traj_ms = Trajectories.from_frame(ms, np.zeros(6, dtype=np.int64), ["ok"], [])
    assert resolve_gap_edges(HistorySpec(gap_bins=3), traj_ms).gap_edges == ("30007ms", "65007ms")
    with pytest.raises(ConfigError, match=r"bare numbers but the time column holds timestamps"):
        gap_bin(traj, HistorySpec(gap_edges=[30, 300]))
    with pytest.raises(ConfigError, match=r"durations but the time column holds sequence numbers"):
        gap_bin(_traj(), HistorySpec(gap_edges=["30s"]))


def test_encoding_with_edges_not_chosen_yet_is_refused_with_the_fix():
    with pytest.raises(HistoryError, match=r"resolve_gap_edges\(spec, traj\), or give gap_edges"):
        HistoryChain(HistorySpec(gap_bins=3)).count(_traj())


# ------------------------------------------------------------------ the component in the chain
def test_exogenous_counts_and_rows_match_hand_counts():
    traj = _traj()
    spec = HistorySpec(gap_edges=[2, 5], backoff=2.0)
    layout = HistoryLayout(spec, 2, 1)
    assert [n for n, _ in layout.exo] == ["gap"] and layout.n_exo == 3
    code = {(s, g): s + 2 * g for s in (0, 1) for g in range(3)}  # base fastest, then the gap bin
    assert augment(traj, spec).tolist() == [code[(s, g)] for s, g in zip(traj.state, HAND_BINS)]
    counts = HistoryChain(spec).count(traj)
    # the next step's bin x' of each transition, by hand from HAND_BINS:
    # (ok, 2): a@0 -> 0, a@12 -> 0, b@2 -> 1; (ok, 0): a@1 -> 1, a@5 -> 2, b@6 -> 2; (down, 1): a@4 -> 0, b@5 -> 0
    hand = {(0, 2): [2, 1, 0], (0, 0): [0, 1, 2], (1, 1): [2, 0, 0]}
    got = {k: counts.exo[np.searchsorted(counts.codes, c)].tolist() for k, c in code.items() if c in counts.codes}
    assert got == hand
    # N[e, a, j]: (ok, 2) -> ok once (a@0), down twice (a@12, b@2); (ok, 0) -> down (a@1), ok twice
    assert counts.counts[0, np.searchsorted(counts.codes, [0 + 4, 0, 1 + 2])].tolist() == [[1, 2], [2, 1], [2, 0]]
    chain = HistoryChain(spec, alpha=1.0, beta=1.5).fit_from_counts(counts, ["ok", "down"], ["step"],
                                                                      [False, True])
    # R by hand: the overall mix of x' (4, 2, 2 of 8, smoothed with alpha = 1 over 3 values), the base rows
    # (beta = 1.5), the level with two bins (ok|gap>=2: the counts of (ok, 1) and (ok, 2)), the full level
    overall = (np.array([4.0, 2.0, 2.0]) + 1.0 / 3) / (8 + 1.0)
    r0_ok = (np.array([2, 2, 2]) + 1.5 * overall) / (6 + 1.5)
    r1_ok_hi = (np.array([2, 1, 0]) + 2.0 * r0_ok) / (3 + 2.0)
    r1_ok_lo = (np.array([0, 1, 2]) + 2.0 * r0_ok) / (3 + 2.0)
    rows = chain.state_index(np.array([code[(0, 2)], code[(0, 0)]]))
    np.testing.assert_allclose(chain.exo_probs_[rows[0]], (np.array([2, 1, 0]) + 2.0 * r1_ok_hi) / 5.0, rtol=1e-12)
    np.testing.assert_allclose(chain.exo_probs_[rows[1]], (np.array([0, 1, 2]) + 2.0 * r1_ok_lo) / 5.0, rtol=1e-12)
    np.testing.assert_allclose(chain.exo_probs_.sum(axis=1), 1.0)
    assert [label for label, _ in chain.levels_] == ["base", "gap_bins=2", "gap_bins=3"]
    assert list(chain.backoff_.columns) == ["failure", "next", "arrivals", "exogenous"]
    names = chain.state_names_
    assert {names[rows[0]], names[rows[1]]} == {"ok|gap>=5", "ok|gap<2"}
    coarse = [n for n, level in zip(names, chain.state_levels_) if level == 1]
    assert sorted(coarse) == ["down|gap>=2", "ok|gap<2", "ok|gap>=2"]


def test_three_bins_name_their_ranges():
    layout = HistoryLayout(HistorySpec(gap_edges=["30s", "5min"]), 1, 1)
    assert layout.names(["ok"], ["step"]) == ["ok|gap<30s", "ok|gap=[30s,5min)", "ok|gap>=5min"]


def test_the_hierarchy_puts_the_gap_right_above_the_group_context():
    spec = HistorySpec(order=2, failure_window=2, group_window=3, group_levels=2, gap_edges=[2, 5, 9],
                       failure_count=1)
    levels = spec.levels()
    assert [label for label, _ in levels] == [
        "base", "failure_window=1", "failure_window=2", "group_levels=2", "gap_bins=2", "gap_bins=3",
        "gap_bins=4", "order=2", "failure_count=1"]
    assert [s.gap_edges for _, s in levels[4:7]] == [(2,), (2, 5), (2, 5, 9)]
    assert all(s.gap_edges == (2, 5, 9) for _, s in levels[7:])
    assert levels[-1][1] == spec
    # without a gap nothing changes
    assert [label for label, _ in HistorySpec(failure_window=1, group_window=3, group_levels=2).levels()] == [
        "base", "failure_window=1", "group_levels=2"]


def test_every_level_commutes_with_coarsening():
    # the successor of a coarsened state is the coarsened successor, for every (e, j, x'), at every level:
    # each level is a closed chain of its own (the group level and the gap bin of x' capped alike)
    spec = HistorySpec(order=2, failure_window=2, failure_count=1, entering_event=True, group_window=3,
                       group_levels=3, gap_edges=[2, 5, 9])
    S, E = 3, 2
    fail = np.array([False, False, True])
    lays = [HistoryLayout(s, S, E) for _, s in spec.levels()]
    full = lays[-1]
    assert [n for n, _ in full.exo] == ["group", "gap"] and full.n_exo == 3 * 4
    codes = np.random.RandomState(0).randint(0, full.A, 400)
    after = full.successor(fail, codes, exo=full)  # (n, E, S, X)
    for lay in lays[:-1]:
        coarse_after = lay.successor(fail, full.coarsen(codes, lay), exo=full)
        np.testing.assert_array_equal(full.coarsen(after, lay), coarse_after)


def test_the_joint_exogenous_value_against_a_pandas_recount():
    # the group context and the gap together: x' = group level + G * gap bin of the state each transition enters
    rows = [("a1", "A", 0, "down"), ("a1", "A", 2, "ok"), ("a1", "A", 5, "down"), ("a1", "A", 6, "ok"),
            ("a2", "A", 1, "ok"), ("a2", "A", 3, "down"), ("a2", "A", 4, "ok"), ("a2", "A", 8, "ok"),
            ("b1", "B", 0, "ok"), ("b1", "B", 1, "down"), ("b1", "B", 2, "down"), ("b1", "B", 4, "ok"),
            ("b2", "B", 3, "ok"), ("b2", "B", 5, "ok")]
    frame = pd.DataFrame(rows, columns=["entity", "group", "time", "status"])
    state = frame["status"].map({"ok": 0, "down": 1}).to_numpy()
    traj = Trajectories.from_frame(frame, state, ["ok", "down"], ["down"])
    G, K = 2, 3
    spec = HistorySpec(group_window=3, group_levels=G, gap_edges=[2, 3])
    chain = HistoryChain(spec)
    counts = chain.count(traj)
    # the reference: the gaps by pandas, the group levels from group_failures (tested on their own)
    f = frame.assign(state=state, level=np.minimum(group_failures(traj, 3), G - 1))
    f["gap"] = f.groupby("entity")["time"].diff()
    f["bin"] = np.where(f["gap"].isna(), K - 1, np.searchsorted([2, 3], f["gap"].fillna(0), side="right"))
    f["code"] = f["state"] + 2 * f["level"] + 2 * G * f["bin"]  # base, then group, then gap (mixed radix)
    assert augment(traj, spec).tolist() == f["code"].tolist()
    f["x_next"] = (f["level"] + G * f["bin"]).groupby(f["entity"]).shift(-1)
    pairs = f.dropna(subset=["x_next"]).groupby(["code", "x_next"]).size()
    want = np.zeros((len(counts.codes), G * K), dtype=np.int64)
    for (c, x), n in pairs.items():
        want[np.searchsorted(counts.codes, c), int(x)] = n
    np.testing.assert_array_equal(counts.exo, want)
    # the successor map's x' axis sets both components of the next state
    layout = HistoryLayout(spec, 2, 1)
    succ = layout.successor(np.array([False, True]), counts.codes, exo=layout)  # (n, E, S, X)
    comps = layout.components(succ.reshape(-1)).reshape((3,) + succ.shape)
    x = np.arange(G * K)
    assert (comps[1] == x % G).all() and (comps[2] == x // G).all() and (comps[0] == np.arange(2)[:, None]).all()


def test_forecast_matches_monte_carlo_of_the_fitted_chain_with_group_and_gap():
    rng = np.random.default_rng(4)
    n_ent, n = 6, 80
    state = rng.choice(3, size=n_ent * n, p=[0.7, 0.2, 0.1])
    traj = Trajectories.from_codes(state, rng.integers(0, 2, n_ent * n), lengths=[n] * n_ent,
                                   state_names=["ok", "slow", "down"], failure=["down"])
    traj.time = np.cumsum(rng.integers(1, 6, n_ent * n))  # gaps of 1 to 5 units
    traj.group = np.repeat([0, 0, 0, 1, 1, 1], n)
    spec = HistorySpec(failure_window=2, group_window=6, group_levels=2, gap_edges=[2, 4], backoff=3.0)
    chain = _fit(traj, spec)
    assert chain.exo_probs_.shape[1] == 6 and chain.successor_.shape[-1] == 6
    starts, mc, se = monte_carlo_of_exogenous_chain(chain)
    exact = chain.failure_probabilities(5)
    assert (np.abs(mc - exact[starts]) < 5 * se).all()


# ------------------------------------------------------------------ simulated idle gaps and their truth
COLUMNS = {"entity": "handler", "time": "timestamp", "event": "event_type"}
STATES = {"kind": "categorical", "states": ["ok", "slow", "error", "timeout", "down"],
          "failure": ["error", "timeout", "down"]}


@pytest.fixture(scope="module")
def idle():
    from markovfault.simulate import simulate_histories

    return simulate_histories(150, 600, random_state=5, with_metrics=False, flaky_fraction=0.0,
                              memory_window=3, idle_after="80s", idle_boost=4.0, truth_columns=True,
                              return_result=True)


def test_simulated_idle_share_is_exact_and_the_truth_matches_the_frequencies(idle):
    from markovfault.simulate import simulate_histories

    # gaps of 60 s * U(0.5, 1.5), rounded to ms: idle (> 80 s) when 60000 U >= 80000.5 ms
    assert idle.idle_share == pytest.approx((90000 - 80000.5) / 60000, abs=1e-12)
    f = idle.frame
    first = ~f["handler"].duplicated().to_numpy()
    later = f["idle"].to_numpy()[~first]
    assert abs(later.mean() - idle.idle_share) < 4 * np.sqrt(idle.idle_share * (1 - idle.idle_share) / len(later))
    assert f["idle"].to_numpy()[first].all()  # a first row follows no step
    gaps = f.groupby("handler")["timestamp"].diff().dt.total_seconds().to_numpy()
    np.testing.assert_array_equal(f["idle"].to_numpy()[~first], gaps[~first] > 80)
    # the exact risk of (ok, memory 3 = no recent failure, idle or not) against what followed such rows
    truth = idle.true_failure_probabilities(3)
    fail = f["status"].isin(STATES["failure"]).to_numpy()
    handler = f["handler"].to_numpy()
    n = len(f)
    risk = {}
    for flag in (False, True):
        sel = np.flatnonzero((f["status"] == "ok").to_numpy() & (f["memory"] == 3).to_numpy()
                             & (f["idle"].to_numpy() == flag))
        sel = sel[sel + 3 < n]
        sel = sel[handler[sel + 3] == handler[sel]]
        assert np.ptp(truth[sel], axis=0).max() < 1e-12  # exact given (state, memory, idle)
        seen = np.cumsum(np.stack([fail[sel + k] for k in (1, 2, 3)], axis=1), axis=1) > 0
        p = truth[sel[0]]
        assert (np.abs(seen.mean(axis=0) - p) < 4 * np.sqrt(p * (1 - p) / len(sel))).all(), (flag, p)
        risk[flag] = p
    assert risk[True][0] > 2.5 * risk[False][0]  # a step after an idle one fails about 3 to 4 times as often
    # without idle_after the frame is the one of before (the option adds no draw), boost or not
    pd.testing.assert_frame_equal(simulate_histories(4, 30, random_state=2),
                                  simulate_histories(4, 30, random_state=2, idle_boost=7.0))


@pytest.mark.parametrize("kwargs, match", [
    ({"idle_after": "80s", "clock": "aligned"}, "needs clock='drift'"),
    ({"idle_after": "80s", "n_groups": 2}, "cannot be combined with n_groups"),
    ({"idle_after": "-5s"}, "positive duration"),
    ({"idle_after": "soon"}, "positive duration"),
    ({"idle_after": "80s", "idle_boost": 0.0}, "idle_boost"),
])
def test_bad_idle_settings(kwargs, match):
    from markovfault.simulate import simulate_histories

    with pytest.raises(ConfigError, match=match):
        simulate_histories(4, 10, **kwargs)


def test_the_fitted_gap_recovers_the_simulated_risk_after_idle_steps(idle):
    # fitted with the simulator's own edge, the one-step risk of ok with no recent failure is the truth's,
    # idle or not; the next-gap rows R are the idle share
    model = FaultPredictor(states=STATES, columns=COLUMNS, alpha=0.1, beta=0.1,
                           history={"failure_window": 4, "gap_edges": ["80s"], "backoff": 1.0}).fit(idle.frame)
    chain = model.chain_
    names, support = chain.state_names_, chain.state_support()
    truth = idle.true_failure_probabilities(1)[:, 0]
    f = idle.frame
    risk = chain.failure_probabilities(1)[:, 0]
    for flag, label in ((False, "ok|since_fail=>=4|gap<80s"), (True, "ok|since_fail=>=4|gap>=80s")):
        row = names.index(label)
        want = truth[(f["status"] == "ok").to_numpy() & (f["memory"] == 3).to_numpy()
                     & (f["idle"].to_numpy() == flag)][0]
        se = np.sqrt(want * (1 - want) / support[row])
        assert abs(risk[row] - want) < 4 * se + 0.002, (label, risk[row], want)
        r = chain.exo_probs_[row]
        assert abs(r[1] - idle.idle_share) < 4 * np.sqrt(idle.idle_share / support[row]) + 0.002


# ------------------------------------------------------------------ where the edges are chosen
def _frame(seed=0, n_ent=8, n=60, late_gap=False):
    """Integer-time histories: gaps of 1..4 units; with ``late_gap`` (and 100 steps) gaps of 10..19 from
    time 150 on."""
    rng = np.random.RandomState(seed)
    rows = []
    n = 100 if late_gap else n
    for k in range(n_ent):  # a loop over entities to build the fixture
        g = rng.randint(1, 5, n)
        late = (np.cumsum(g) >= 150) if late_gap else np.zeros(n, dtype=bool)
        t = np.cumsum(np.where(late, rng.randint(10, 20, n), g))
        status = rng.choice(["ok", "ok", "ok", "slow", "down"], n)
        rows.append(pd.DataFrame({"entity": f"e{k}", "time": t, "status": status}))
    return pd.concat(rows, ignore_index=True)


def _pandas_edges(frame, K, before=None):
    gaps = frame.sort_values(["entity", "time"], kind="stable").groupby("entity")["time"].diff()
    if before is not None:
        gaps = gaps[frame["time"] < before]
    s = gaps.dropna().sort_values().reset_index(drop=True)
    n = len(s)
    return sorted({int(s.iloc[(k * n) // K]) for k in range(1, K)} - {int(s.min())})


CAT = {"kind": "categorical", "failure": ["down"]}


def test_fit_chooses_the_edges_from_its_training_gaps_and_keeps_them():
    frame = _frame()
    model = FaultPredictor(states=CAT, history={"failure_window": 2, "gap_bins": 3}).fit(frame)
    assert list(model.chain_.spec.gap_edges) == _pandas_edges(frame, 3) == [2, 3]
    assert model.history == {"failure_window": 2, "gap_bins": 3}  # the setting stays as given
    later = _frame(seed=1)
    later["time"] += 1000
    updated = model.partial_fit(later)
    assert updated.chain_.spec.gap_edges == (2, 3)  # fixed at the fit
    late = _frame(late_gap=True)
    streamed = FaultPredictor(states=CAT, history={"failure_window": 2, "gap_bins": 3}).fit(late, chunksize=150)
    first = late.iloc[:150]  # the first batch (one entity and a half): its edges, as the state extractor's
    assert list(streamed.chain_.spec.gap_edges) == _pandas_edges(first, 3) != _pandas_edges(late, 3)


def test_the_backtest_chooses_the_edges_before_its_first_cutoff():
    frame = _frame(late_gap=True)
    model = FaultPredictor(states=CAT, history={"failure_window": 2, "gap_bins": 3})
    res = backtest(frame, model, horizon=2, cutoffs=[200, 300], baselines=[], progress=False, n_boot=0)
    want = _pandas_edges(frame, 3, before=200)
    assert res.params["history"]["gap_edges"] == want
    assert want != _pandas_edges(frame, 3)  # the later, longer gaps would have moved them
    # every fold forecasts from one encoding with those edges: the first fold equals a model fitted on the
    # steps before the first cutoff with the edges given
    given = FaultPredictor(states=CAT, history={"failure_window": 2, "gap_edges": want})
    again = backtest(frame, given, horizon=2, cutoffs=[200, 300], baselines=[], progress=False, n_boot=0)
    pd.testing.assert_frame_equal(res.predictions, again.predictions)


def test_partial_fit_and_predict_carry_the_previous_step_across_batches():
    frame = _frame(n=40)
    history = {"failure_window": 2, "gap_edges": [2, 4]}
    a, b = frame[frame["time"] < 60], frame[frame["time"] >= 60]
    whole = FaultPredictor(states=CAT, history=history).fit(frame)
    parts = FaultPredictor(states=CAT, history=history).fit(a).partial_fit(b)
    np.testing.assert_array_equal(parts.chain_.counts_.codes, whole.chain_.counts_.codes)
    np.testing.assert_array_equal(parts.chain_.counts_.counts, whole.chain_.counts_.counts)
    np.testing.assert_array_equal(parts.chain_.counts_.exo, whole.chain_.counts_.exo)
    pd.testing.assert_frame_equal(parts.predict(horizon=3), whole.predict(horizon=3))
    # a batch of one row per entity: its gap comes from the remembered last step
    fitted = FaultPredictor(states=CAT, history=history).fit(a)
    one = b.groupby("entity").head(1)
    pd.testing.assert_frame_equal(fitted.predict(one, horizon=3),
                                  fitted.predict(pd.concat([a, one]), horizon=3))


def test_select_states_compares_gap_candidates():
    from markovfault.selection import select_states

    frame = _frame(n=80)
    res = select_states(frame, FaultPredictor(states=CAT), candidates=[
        {"failure_window": 2}, {"failure_window": 2, "gap_bins": 3}], horizon=None)
    assert len(res.table) == 2 and res.table["heldout_loglik"].notna().all()
    assert res.table["gap_bins"].fillna(0).tolist().count(3) == 1
    # the winner's table is TOML that reads back as the same spec, durations and edges included
    import tomllib

    from markovfault.selection import SelectionResult

    spec = HistorySpec(failure_window=2, backoff="auto", group_window="5min", group_levels=2,
                       gap_edges=["30s", "5min"])
    toml = SelectionResult(res.table, spec, "heldout_loglik").best_config()
    assert HistorySpec.from_config(tomllib.loads(toml)["states"]["history"]) == spec


# ------------------------------------------------------------------ model files and configuration
def test_model_files_keep_the_chosen_edges(tmp_path, idle):
    from markovfault.persistence import read_header

    frame = idle.frame.iloc[:20000]
    model = FaultPredictor(states=STATES, columns=COLUMNS,
                           history={"failure_window": 3, "gap_bins": 4, "backoff": "auto"}).fit(frame)
    path = os.path.join(tmp_path, "m.npz")
    model.save(path)
    header = read_header(path)
    assert header["history_fitted"]["gap_edges"] == list(model.chain_.spec.gap_edges)
    assert "gap_edges" not in header["model"]["history"]
    loaded = load_model(path)
    assert loaded.chain_.spec == model.chain_.spec
    assert loaded.history["gap_bins"] == 4 and "gap_edges" not in loaded.history
    pd.testing.assert_frame_equal(loaded.predict(frame, horizon=5), model.predict(frame, horizon=5))
    pd.testing.assert_frame_equal(loaded.predict(horizon=5), model.predict(horizon=5))
    np.testing.assert_array_equal(loaded.chain_.exo_probs_, model.chain_.exo_probs_)
    # a refit of the loaded model chooses the edges again, from its own data
    other = FaultPredictor(**loaded.get_params()).fit(frame.assign(timestamp=frame["timestamp"].where(
        frame.index % 2 == 0, frame["timestamp"] + pd.Timedelta("3s"))))
    assert other.chain_.spec.gap_edges != model.chain_.spec.gap_edges


TOML = """
[columns]
entity = "handler"
time = "timestamp"
event = "event_type"

[states]
kind = "categorical"
failure = ["error", "timeout", "down"]

[states.history]
failure_window = 3
{keys}
"""


@pytest.mark.parametrize("keys, want", [
    ("gap_bins = 3", (3, None)),
    ('gap_edges = ["30s", "80s", "5min"]', (4, ("30s", "80s", "5min"))),
    ('gap_bins = 2\ngap_edges = ["80s"]', (2, ("80s",))),
])
def test_toml_keys_round_trip(tmp_path, keys, want):
    from markovfault.config import load_config

    path = tmp_path / "c.toml"
    path.write_text(TOML.format(keys=keys))
    model = FaultPredictor.from_config(load_config(path))
    spec = HistorySpec.from_config(model.history)
    assert (spec.gap_bins, spec.gap_edges) == want
    assert HistorySpec.from_config(spec.to_config()) == spec
    assert spec.has_gap and not spec.is_plain


@pytest.mark.parametrize("table, match", [
    ({"gap_bins": 1}, r"gap_bins = 1, must be 0 \(no gap\) or >= 2"),
    ({"gap_bins": "3"}, r"gap_bins = '3' must be an integer"),
    ({"gap_bins": True}, r"gap_bins = True must be an integer"),
    ({"gap_edges": "30s"}, r"gap_edges = '30s' must be a list"),
    ({"gap_edges": []}, r"gap_edges = \[\] holds no edge"),
    ({"gap_edges": ["5min", "30s"]}, r"must increase strictly"),
    ({"gap_edges": [3, 3]}, r"must increase strictly"),
    ({"gap_edges": ["30s", 60]}, r"all durations .* or all numbers"),
    ({"gap_edges": ["-30s"]}, r"must be positive durations"),
    ({"gap_edges": ["soon"]}, r"must be positive durations"),
    ({"gap_edges": [0, 2]}, r"must be positive numbers"),
    ({"gap_edges": [2, float("inf")]}, r"must be positive numbers"),
    ({"gap_bins": 4, "gap_edges": ["30s"]}, r"gap_bins = 4 but gap_edges has 1 edge\(s\).*gap_bins = 2"),
    ({"gap_bin": 3}, r"unknown key\(s\) \['gap_bin'\] in \[states.history\]"),
])
def test_bad_gap_settings_name_the_key_and_the_fix(table, match):
    with pytest.raises(ConfigError, match=match):
        HistorySpec.from_config(table)
    with pytest.raises(ConfigError, match=match):  # also where a predictor fits
        FaultPredictor(states=CAT, history=table).fit(_frame(n=10))
