"""Fault localization across handlers (markovfault.explain._localize) and its simulator (markovfault._callgraph).

References are independent of the code under test: scipy's G² (``chi2_contingency(lambda_="log-likelihood")``)
on strata counted row by row in plain Python, Wilson intervals from ``scipy.stats.binomtest``, lifts counted by
hand, the Mantel-Haenszel odds ratio reduced to one stratum (``ad / bc`` with Woolf's variance), and the
simulator's known root causes and propagation edges.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from markovfault.exceptions import ConfigError, MissingColumnError
from markovfault.explain._localize import (
    OWN_BINS,
    LocalizationReport,
    PropagationResult,
    _bh,
    _mantel_haenszel,
    failure_paths,
    localize,
    propagation_test,
    rank_root_causes,
    robust_zscore_ranking,
    root_cause_accuracy,
    trace_paths,
)
from markovfault.simulate import CallGraphSimulation, simulate_call_graph

FAIL = ["error", "down"]


# ------------------------------------------------------------------ the simulator
def test_simulator_is_seeded_and_its_truth_is_consistent():
    a = simulate_call_graph(4, rate=0.1, random_state=3)
    b = simulate_call_graph(4, rate=0.1, random_state=3)
    pd.testing.assert_frame_equal(a.histories, b.histories)
    assert isinstance(a, CallGraphSimulation) and "4 episodes" in repr(a)
    h = a.histories
    assert list(h.columns) == ["entity", "time", "event", "status", "trace", "latency_ms"]
    assert str(h["time"].dtype) == "datetime64[ns, UTC]"
    assert h.groupby("entity")["time"].is_monotonic_increasing.all()
    ep = a.episodes
    assert (ep["start"] < ep["end"]).all() and (ep["start"].iloc[1:].to_numpy() > ep["end"].iloc[:-1].to_numpy()).all()
    # the transitive closure: database reaches delivery through shipping, delivery reaches nothing
    assert ("database", "delivery") in a.reachable_edges() and not any(s == "delivery" for s, _ in a.reachable_edges())
    assert a.true_edges() <= a.reachable_edges()


def test_simulated_root_causes_fail_more_in_their_episodes():
    sim = simulate_call_graph(30, random_state=5)
    h = sim.histories
    failed = h["status"].isin(FAIL)
    rates = []
    for ep in sim.episodes.itertuples():
        own = h["entity"] == ep.root_cause
        inside = own & (h["time"] >= ep.start + pd.Timedelta("2min")) & (h["time"] < ep.end)
        before = own & (h["time"] >= ep.start - pd.Timedelta("20min")) & (h["time"] < ep.start)
        rates.append((failed[inside].mean(), failed[before].mean()))
    inside, before = np.array(rates).T
    assert (inside > before).mean() > 0.95 and np.median(inside) > 0.3 and np.median(before) < 0.1


# ------------------------------------------------------------------ paths and patterns
TRACES = pd.DataFrame({
    # 7 traces, 3 of which fail; "api:req:slow" opens 4 traces, 3 of them failed
    "entity": ["api", "pay"] * 7,
    "time": np.arange(14),
    "event": ["req", "order"] * 7,
    "status": ["slow", "error", "slow", "error", "slow", "ok", "slow", "down", "ok", "ok", "ok", "ok", "ok", "ok"],
    "trace": np.repeat([f"t{k}" for k in range(7)], 2),
})


def test_trace_paths_in_time_order_with_their_first_failure():
    shuffled = TRACES.sample(frac=1.0, random_state=0)
    out = trace_paths(shuffled, failure=FAIL)
    assert out["trace"].tolist() == [f"t{k}" for k in range(7)]
    assert out["handlers"].eq("api > pay").all() and out["n_steps"].eq(2).all()
    assert out["failed"].tolist() == [True, True, False, True, False, False, False]
    assert out.loc[0, "steps"] == "api:req:slow > pay:order:error"
    assert out.loc[3, "failed_handler"] == "pay" and out.loc[3, "failed_step"] == 2
    # steps without a trace are left out
    partial = TRACES.assign(trace=TRACES["trace"].where(TRACES.index != 0))
    assert trace_paths(partial, failure=FAIL).loc[0, "n_steps"] == 1


def test_failure_path_lift_counted_by_hand():
    out = failure_paths(TRACES, failure=FAIL, n=2, min_support=1).set_index("pattern")
    base = 3 / 7
    assert out.attrs["base_rate"] == pytest.approx(base) and out.attrs["n_traces"] == 7
    slow = out.loc["api:req:slow"]
    assert (slow["support"], slow["failures"]) == (4, 3)
    assert slow["lift"] == pytest.approx((3 / 4) / base)  # 1.75
    ci = stats.binomtest(3, 4).proportion_ci(0.95, method="wilson")
    assert slow["p_lower"] == pytest.approx(ci.low) and slow["lift_upper"] == pytest.approx(ci.high / base)
    # steps after (and at) the first failure never count: "pay:order:error" precedes nothing
    assert "pay:order:error" not in out.index and "api:req:slow > pay:order:error" not in out.index
    ok = out.loc["api:req:ok > pay:order:ok"]  # 3 traces, none failed
    assert (ok["support"], ok["failures"], ok["lift"]) == (3, 0, 0.0)
    assert out.loc["api > pay", "lift"] == pytest.approx(1.0) and out.loc["api > pay", "kind"] == "path"
    # sorted by the lower bound of the lift
    assert out["lift_lower"].is_monotonic_decreasing
    assert "api:req:slow" not in failure_paths(TRACES, failure=FAIL, min_support=5)["pattern"].tolist()


def test_missing_trace_column_names_the_fix():
    with pytest.raises(MissingColumnError, match=r"no 'trace' column.*columns=\{'trace'"):
        trace_paths(TRACES.drop(columns="trace"), failure=FAIL)
    with pytest.raises(ConfigError, match="failure"):
        failure_paths(TRACES, failure=None)
    with pytest.raises(ConfigError, match="n = 0"):
        failure_paths(TRACES, failure=FAIL, n=0)


# ------------------------------------------------------------------ the propagation test
def _small_pair(seed: int, effect: float, n: int = 300) -> pd.DataFrame:
    """Two handlers with integer times: A fails at random; B fails with probability .05, or ``.05 + effect``
    when A failed within the last 3 time units."""
    rng = np.random.default_rng(seed)
    ta = np.sort(rng.choice(np.arange(4 * n), n, replace=False))
    tb = np.sort(rng.choice(np.arange(4 * n), n, replace=False))
    fa = rng.random(n) < 0.15
    a_fail = ta[fa]
    recent = (np.searchsorted(a_fail, tb, side="left") - np.searchsorted(a_fail, tb - 3, side="right")) > 0
    fb = rng.random(n) < np.where(recent, 0.05 + effect, 0.05)
    statuses = np.array(["ok", "slow"])[rng.integers(0, 2, 2 * n)]
    frame = pd.DataFrame({"entity": ["A"] * n + ["B"] * n, "time": np.concatenate([ta, tb]),
                          "status": np.where(np.concatenate([fa, fb]), "error", statuses)})
    return frame


def _reference_g2(frame: pd.DataFrame, source: str, target: str, window: int, own_history: bool):
    """G² and df summed over the target's strata, counted row by row and scored by scipy."""
    fails = {e: sorted(g.loc[g["status"].isin(FAIL), "time"]) for e, g in frame.groupby("entity")}
    rows = frame[frame["entity"] == target].sort_values("time", kind="stable")
    times, status = rows["time"].tolist(), rows["status"].tolist()
    cells: dict = {}
    for n in range(len(times) - 1):  # plain Python on purpose: an independent count
        tau = times[n + 1]
        exposed = any(tau - window < f < tau for f in fails.get(source, []))
        own = sum(tau - window < f < tau for f in fails.get(target, []))
        stratum = (status[n], int(np.searchsorted(OWN_BINS, own, side="right")) if own_history else 0)
        failed = status[n + 1] in FAIL
        table = cells.setdefault(stratum, np.zeros((2, 2)))
        table[int(exposed), int(failed)] += 1
    g2, df = 0.0, 0
    for table in cells.values():
        table = table[table.sum(1) > 0][:, table.sum(0) > 0]
        if min(table.shape) < 2:
            continue
        stat, _, dof, _ = stats.chi2_contingency(table, correction=False, lambda_="log-likelihood")
        g2, df = g2 + stat, df + dof
    return g2, df


@pytest.mark.parametrize("own_history", [True, False])
def test_g2_equals_scipy_summed_over_strata(own_history):
    frame = _small_pair(1, effect=0.3)
    result = propagation_test(frame, failure=FAIL, window=3, own_history=own_history)
    table = result.table.set_index(["source", "target"])
    for pair in [("A", "B"), ("B", "A")]:
        g2, df = _reference_g2(frame, *pair, window=3, own_history=own_history)
        assert table.loc[pair, "g2"] == pytest.approx(g2, rel=1e-9, abs=1e-9)
        assert table.loc[pair, "df"] == df
        assert table.loc[pair, "p_value"] == pytest.approx(stats.chi2.sf(g2, df))
    assert table.loc[("A", "B"), "g2"] > 10  # the planted effect


def test_mantel_haenszel_reduces_to_one_table_and_sums_strata():
    a, b, c, d = (np.array([[12.0]]), np.array([[5.0]]), np.array([[7.0]]), np.array([[31.0]]))
    odds, lo, hi = _mantel_haenszel(a, b, c, d, 0.95)
    assert odds[0] == pytest.approx(12 * 31 / (5 * 7))
    half = 1.959963984540054 * np.sqrt(1 / 12 + 1 / 5 + 1 / 7 + 1 / 31)  # Woolf's variance
    assert lo[0] == pytest.approx(odds[0] * np.exp(-half)) and hi[0] == pytest.approx(odds[0] * np.exp(half))
    # two strata: sum(a d / n) / sum(b c / n) = (3*10/20 + 8*4/30) / (2*5/20 + 6*12/30)
    two = _mantel_haenszel(np.array([[3.0, 8.0]]), np.array([[2.0, 6.0]]), np.array([[5.0, 12.0]]),
                           np.array([[10.0, 4.0]]), 0.95)[0]
    assert two[0] == pytest.approx((30 / 20 + 32 / 30) / (10 / 20 + 72 / 30))


def test_benjamini_hochberg_by_hand():
    p = np.array([0.01, 0.04, 0.03, np.nan, 0.5])
    # sorted .01 .03 .04 .5 (m = 4): .04, .06, .16/3, .5 -> monotone from the top: .04, .0533, .0533, .5
    np.testing.assert_allclose(_bh(p), [0.04, 0.16 / 3, 0.16 / 3, np.nan, 0.5])


def test_bootstrap_p_values_are_uniform_under_the_null_and_reject_a_planted_effect():
    p_null = []
    for seed in range(40):
        table = propagation_test(_small_pair(100 + seed, effect=0.0), failure=FAIL, window=3, bootstrap=49,
                                 random_state=seed).table
        p_null.append(table.loc[(table["source"] == "A") & (table["target"] == "B"), "p_boot"].item())
    p_null = np.array(p_null)
    assert 0.35 < p_null.mean() < 0.65 and (p_null <= 0.05).mean() <= 0.15
    assert stats.kstest(p_null, "uniform").pvalue > 0.01
    planted = propagation_test(_small_pair(7, effect=0.4), failure=FAIL, window=3, bootstrap=99, random_state=0)
    row = planted.table.set_index(["source", "target"]).loc[("A", "B")]
    assert row["p_boot"] == pytest.approx(1 / 100) and row["significant"] and row["odds_ratio"] > 2
    assert isinstance(planted, PropagationResult) and ("A", "B") in set(zip(planted.edges.source,
                                                                            planted.edges.target))


def test_propagation_errors_are_clear():
    frame = _small_pair(1, effect=0.3)
    with pytest.raises(ConfigError, match="sequence numbers"):
        propagation_test(frame, failure=FAIL, window="60s")
    with pytest.raises(ConfigError, match="bootstrap"):
        propagation_test(frame, failure=FAIL, window=3, bootstrap=-1)
    with pytest.raises(MissingColumnError, match="'status'"):
        propagation_test(frame.drop(columns="status"), failure=FAIL, window=3)


# ------------------------------------------------------------------ on the simulator
@pytest.fixture(scope="module")
def learned():
    """The propagation graph learned on one simulation and the episodes of another (same design, new seed)."""
    train = simulate_call_graph(50, random_state=11)
    test = simulate_call_graph(50, random_state=12)
    return train, propagation_test(train.histories, failure=train.failure, window="60s"), test


def test_propagation_edges_recovered(learned):
    train, result, _ = learned
    found = set(zip(result.edges["source"], result.edges["target"]))
    truth = train.reachable_edges()  # A's failure raises B's failure probability, directly or through others
    precision, recall = len(found & truth) / len(found), len(found & truth) / len(truth)
    print(f"propagation edges: precision {precision:.2f}, recall {recall:.2f} (of {len(truth)} true)")
    assert precision >= 0.75 and recall >= 0.8
    assert train.true_edges() <= found  # every direct edge
    # both directions stay in the table; orient=False keeps every significant one
    unoriented = propagation_test(train.histories, failure=train.failure, window="60s", orient=False)
    assert set(zip(unoriented.edges["source"], unoriented.edges["target"])) >= found


def _rankings(test, method, **kw):
    h, parts = test.histories, []
    for ep in test.episodes.itertuples():
        near = h[(h["time"] >= ep.start - pd.Timedelta("1h")) & (h["time"] < ep.end)]
        ranked = method(near, ep.start, ep.end, **kw)
        parts.append(ranked.assign(episode=ep.episode))
    return pd.concat(parts, ignore_index=True)


def test_root_cause_ranking_beats_the_robust_zscore_baseline(learned):
    _, graph, test = learned
    truth = test.episodes.set_index("episode")["root_cause"]
    assert len(truth) >= 50
    ours = root_cause_accuracy(_rankings(test, rank_root_causes, failure=test.failure, propagation=graph), truth)
    onset = root_cause_accuracy(_rankings(test, rank_root_causes, failure=test.failure, propagation=None), truth)
    latency = root_cause_accuracy(_rankings(test, robust_zscore_ranking, metric="latency_ms"), truth)
    failures = root_cause_accuracy(_rankings(test, robust_zscore_ranking, metric="failure",
                                             failure=test.failure), truth)
    print(f"AC@1 / Avg@5: ranking {ours['AC@1']:.2f} / {ours['Avg@5']:.2f}, onset alone "
          f"{onset['AC@1']:.2f} / {onset['Avg@5']:.2f}, z-score of latency {latency['AC@1']:.2f} / "
          f"{latency['Avg@5']:.2f}, of failures {failures['AC@1']:.2f} / {failures['Avg@5']:.2f}")
    for base in (latency, failures):
        assert ours["AC@1"] > base["AC@1"] + 0.2 and ours["Avg@5"] > base["Avg@5"]
    assert ours["AC@1"] >= onset["AC@1"]  # the graph adds to who failed first
    assert ours["AC@1"] >= 0.8


def test_root_cause_accuracy_by_hand():
    r = pd.DataFrame({"episode": [0, 0, 0, 1, 1, 1, 2, 2], "entity": list("abcbcaab"), "rank": [1, 2, 3] * 2 + [1, 2]})
    acc = root_cause_accuracy(r, {0: "a", 1: "a", 2: "z"}, k=3)  # ranks 1, 3 and never
    assert acc.tolist() == pytest.approx([1 / 3, 1 / 3, 2 / 3, 4 / 9, 3.0])


def test_robust_zscore_against_numpy_percentiles():
    rng = np.random.default_rng(0)
    t = np.arange(200)
    h = pd.DataFrame({"entity": "a", "time": t, "status": "ok", "latency_ms": rng.lognormal(3, 0.5, 200)})
    out = robust_zscore_ranking(h, 150, 200, before=150, bucket=10)
    means = h["latency_ms"].to_numpy().reshape(20, 10).mean(axis=1)
    q25, med, q75 = np.percentile(means[:15], [25, 50, 75])
    assert out.loc[0, "score"] == pytest.approx(((means[15:] - med) / (q75 - q25)).max())


def test_localization_report_prints_and_serialises():
    sim = simulate_call_graph(6, rate=0.1, random_state=0)
    report = localize(sim.histories, sim.episodes.tail(2), failure=sim.failure, top=3)
    assert isinstance(report, LocalizationReport) and "2 episodes" in repr(report)
    text = report.to_text()
    assert "Propagation graph" in text and "propagation" in text and "robust_zscore" in text
    data = json.loads(json.dumps(report.to_dict()))
    assert len(data["episodes"]) == 2 and len(data["episodes"][0]["rankings"]["propagation"]) == 3
    assert {e["source"] for e in data["propagation"]["edges"]} <= set(sim.histories["entity"])


def test_rank_root_causes_learns_the_graph_before_the_episode_and_checks_its_input():
    sim = simulate_call_graph(12, rate=0.1, random_state=4)
    ep = sim.episodes.iloc[-1]
    ranked = rank_root_causes(sim.histories, ep.start, ep.end, failure=sim.failure)  # propagation="auto"
    assert ranked.loc[0, "entity"] == ep.root_cause and ranked["rank"].tolist() == list(range(1, 7))
    assert ranked["score"].is_monotonic_decreasing and ranked["score"].sum() == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="must come after"):
        rank_root_causes(sim.histories, ep.end, ep.start, failure=sim.failure)
    with pytest.raises(ConfigError, match="propagation = 'graph'"):
        rank_root_causes(sim.histories, ep.start, ep.end, failure=sim.failure, propagation="graph")
    with pytest.raises(ConfigError, match="bare number"):
        rank_root_causes(sim.histories, ep.start, ep.end, failure=sim.failure, window=60)
    pairs = list(zip(sim.episodes["start"].tail(2), sim.episodes["end"].tail(2)))
    report = localize(sim.histories, pairs, failure=sim.failure, metric=None)
    assert set(report.rankings["method"]) == {"propagation"} and report.episodes["episode"].tolist() == [0, 1]


def test_paths_and_patterns_on_the_simulator():
    sim = simulate_call_graph(20, random_state=2)
    paths = trace_paths(sim.histories, failure=sim.failure)
    assert len(paths) == sim.histories["trace"].nunique() and paths["n_steps"].eq(8).all()
    assert paths["handlers"].str.startswith("order_api > ").all() and paths["start"].is_monotonic_increasing
    failed = sim.histories["status"].isin(sim.failure).groupby(sim.histories["trace"]).any()
    assert paths.set_index("trace")["failed"].equals(failed.rename("failed").rename_axis("trace"))
    patterns = failure_paths(sim.histories, failure=sim.failure, n=2)
    assert patterns.attrs["base_rate"] == pytest.approx(failed.mean())
    top = patterns.iloc[0]
    assert top["lift_lower"] > 1 and ":slow" in top["pattern"]  # a degraded step upstream precedes failures
