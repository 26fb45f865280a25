"""Tests of markovfault.simulate: the truth is consistent and the simulated
histories follow it."""

from __future__ import annotations

import gzip
import importlib.util
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from markovfault.simulate import OrderServiceSystem, simulate_histories

DATA = Path(__file__).resolve().parents[1] / "data"
FAILURES = ["error", "timeout", "down"]


@pytest.fixture(scope="module")
def system():
    return OrderServiceSystem.default()


@pytest.fixture(scope="module")
def big_frame():
    # 300 handlers x 2000 steps: enough visits to every (state, event) pair.
    return simulate_histories(
        n_handlers=300, n_steps=2000, flaky_fraction=0.5, random_state=7
    )


# --- the truth ---------------------------------------------------------------


def test_default_vocabularies(system):
    assert system.state_names == ("ok", "slow", "error", "timeout", "down")
    assert system.event_names == (
        "order_created",
        "payment_succeeded",
        "payment_failed",
        "order_shipped",
        "order_delivered",
    )
    assert system.failure_states == ("error", "timeout", "down")
    assert system.handler_classes == ("normal", "flaky")
    np.testing.assert_array_equal(
        system.failure_mask, [False, False, True, True, True]
    )


@pytest.mark.parametrize("handler_class", ["normal", "flaky"])
def test_matrices_are_stochastic(system, handler_class):
    P = system.event_matrices[handler_class]
    Q = system.event_probs[handler_class]
    T = system.transition_matrix(handler_class)
    assert P.shape == (5, 5, 5) and Q.shape == (5, 5) and T.shape == (5, 5)
    for array in (P, Q, T, system.initial_probs[handler_class]):
        assert np.all(array >= 0)
        np.testing.assert_allclose(array.sum(axis=-1), 1.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("handler_class", ["normal", "flaky"])
def test_transition_matrix_is_event_mixture(system, handler_class):
    P = system.event_matrices[handler_class]
    Q = system.event_probs[handler_class]
    # T[i, j] = sum_e Q[i, e] P[e, i, j], written as an explicit sum
    expected = sum(Q[:, e, None] * P[e] for e in range(P.shape[0]))
    np.testing.assert_allclose(
        system.transition_matrix(handler_class), expected, rtol=0, atol=1e-14
    )


def test_truth_has_the_intended_shape(system):
    P = system.event_matrices["normal"]
    Q = system.event_probs["normal"]
    ok, error, timeout, down = 0, 2, 3, 4
    failed = system.event_names.index("payment_failed")
    # payment_failed pushes toward error, more than any other event
    others = np.delete(P[:, ok, error], failed)
    assert P[failed, ok, error] > 5 * others.max()
    # retries: payment_failed is more frequent in error/timeout than in ok
    assert Q[error, failed] > 3 * Q[ok, failed]
    assert Q[timeout, failed] > 3 * Q[ok, failed]
    # down is sticky but recovers, mostly to ok
    T = system.transition_matrix("normal")
    assert 0.5 < T[down, down] < 0.9
    assert T[down, ok] == T[down, :down].max()
    # arrays of the truth cannot be changed by accident
    with pytest.raises(ValueError):
        P[0, 0, 0] = 1.0


def test_flaky_handlers_have_higher_failure_propensity(system):
    normal = system.failure_probabilities(10, "normal")
    flaky = system.failure_probabilities(10, "flaky")
    assert np.all(flaky > normal)


def _closed_form_reference(T, failure_mask, horizon):
    # Independent formulation: make failure states absorbing and read the
    # probability of being absorbed after h steps (first step from S0 = i).
    S = T.shape[0]
    A = T.copy()
    A[failure_mask] = np.eye(S)[failure_mask]
    out = np.empty((S, horizon))
    dist = T.copy()  # rows: distribution of S_1 from each S_0
    for h in range(horizon):
        out[:, h] = dist[:, failure_mask].sum(axis=1)
        dist = dist @ A
    return out


@pytest.mark.parametrize("handler_class", ["normal", "flaky"])
def test_failure_probabilities_closed_form(system, handler_class):
    T = system.transition_matrix(handler_class)
    got = system.failure_probabilities(12, handler_class)
    want = _closed_form_reference(T, system.failure_mask, 12)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    # h = 1 is the one-step probability of landing in F
    np.testing.assert_allclose(got[:, 0], T[:, system.failure_mask].sum(axis=1))
    assert np.all(np.diff(got, axis=1) >= -1e-15)


def _monte_carlo_fail_within(P, Q, failure_mask, start, horizon, rng):
    """Direct simulation of the event-driven chain: event from Q, then state
    from P[event]. Returns the fraction of paths failed within 1..horizon."""
    cum_Q = np.cumsum(Q, axis=1)
    cum_P = np.cumsum(P, axis=2)
    s = start.copy()
    failed = np.zeros(s.size, dtype=bool)
    out = np.empty(horizon)
    for h in range(horizon):
        e = np.minimum((rng.random(s.size)[:, None] > cum_Q[s]).sum(1), Q.shape[1] - 1)
        s = np.minimum((rng.random(s.size)[:, None] > cum_P[e, s]).sum(1), P.shape[1] - 1)
        failed |= failure_mask[s]
        out[h] = failed.mean()
    return out


@pytest.mark.parametrize("handler_class", ["normal", "flaky"])
def test_failure_probabilities_match_monte_carlo(system, handler_class):
    rng = np.random.RandomState(42)
    horizon, n_paths = 8, 40_000  # per start state: 200k paths in all
    P = system.event_matrices[handler_class]
    Q = system.event_probs[handler_class]
    exact = system.failure_probabilities(horizon, handler_class)
    for i in range(len(system.state_names)):
        start = np.full(n_paths, i)
        mc = _monte_carlo_fail_within(P, Q, system.failure_mask, start, horizon, rng)
        se = np.sqrt(exact[i] * (1 - exact[i]) / n_paths)
        assert np.all(np.abs(mc - exact[i]) <= 4 * se + 1e-12), (i, mc, exact[i])


def test_failure_states_are_configurable():
    only_down = OrderServiceSystem.default(failure_states=["down"])
    assert only_down.failure_states == ("down",)
    full = OrderServiceSystem.default()
    # same matrices, smaller failure set, lower risk
    np.testing.assert_array_equal(
        only_down.transition_matrix(), full.transition_matrix()
    )
    assert np.all(only_down.failure_probabilities(5) <= full.failure_probabilities(5))
    np.testing.assert_allclose(
        only_down.failure_probabilities(1)[:, 0], full.transition_matrix()[:, 4]
    )


def test_invalid_system_is_refused(system):
    P = np.array(system.event_matrices["normal"])
    Q = np.array(system.event_probs["normal"])
    kwargs = dict(
        state_names=system.state_names,
        event_names=system.event_names,
        failure_states=system.failure_states,
    )
    bad = P.copy()
    bad[1, 2, 3] += 0.1
    with pytest.raises(ValueError, match=r"event_matrices\['normal'\] is not stochastic"):
        OrderServiceSystem(**kwargs, event_matrices={"normal": bad}, event_probs={"normal": Q})
    with pytest.raises(ValueError, match="expected \\(n_states, n_events\\)"):
        OrderServiceSystem(**kwargs, event_matrices={"normal": P}, event_probs={"normal": Q[:4]})
    with pytest.raises(ValueError, match="are not among state_names"):
        OrderServiceSystem.default(failure_states=["broken"])
    with pytest.raises(ValueError, match="handler_class='weird' is unknown"):
        system.transition_matrix("weird")
    with pytest.raises(ValueError, match="horizon == 0, must be >= 1"):
        system.failure_probabilities(0)


# --- the simulated histories -------------------------------------------------


def test_frame_follows_the_input_contract():
    df = simulate_histories(n_handlers=12, n_steps=50, random_state=0)
    assert df.columns.tolist() == [
        "handler",
        "timestamp",
        "event_type",
        "status",
        "event_id",
        "latency_ms",
        "error_rate",
        "handler_class",
    ]
    assert len(df) == 12 * 50
    assert isinstance(df.index, pd.RangeIndex)
    assert str(df["timestamp"].dtype) == "datetime64[ns, UTC]"
    for col in ["handler", "event_type", "status", "event_id", "handler_class"]:
        assert pd.api.types.is_string_dtype(df[col]), col
    assert df["latency_ms"].dtype == np.float64
    assert df["error_rate"].dtype == np.float64
    assert df["handler"].nunique() == 12
    assert df["handler"].iloc[0] == "orders-worker-01"
    assert df.groupby("handler").size().eq(50).all()
    assert set(df["status"]) <= {"ok", "slow", "error", "timeout", "down"}
    # sorted by handler, then time
    assert df["handler"].is_monotonic_increasing
    # exactly round(0.2 * 12) = 2 flaky handlers
    assert df.groupby("handler")["handler_class"].first().eq("flaky").sum() == 2

    bare = simulate_histories(
        n_handlers=3, n_steps=5, with_metrics=False, with_event_ids=False, random_state=0
    )
    assert bare.columns.tolist() == [
        "handler", "timestamp", "event_type", "status", "handler_class"
    ]


def test_timestamps_increase_per_handler_and_are_utc():
    df = simulate_histories(
        n_handlers=20, n_steps=300, start="2026-03-01 12:00", step_interval="30s",
        jitter=0.9, random_state=3,
    )
    assert str(df["timestamp"].dt.tz) == "UTC"
    gaps = df.groupby("handler")["timestamp"].diff().dropna()
    assert (gaps > pd.Timedelta(0)).all()
    assert gaps.min() >= pd.Timedelta("3s")  # 30s * (1 - 0.9)
    assert gaps.max() <= pd.Timedelta("57s")  # 30s * (1 + 0.9)
    assert abs(gaps.mean() - pd.Timedelta("30s")) < pd.Timedelta("1s")
    assert df["timestamp"].min() >= pd.Timestamp("2026-03-01 12:00", tz="UTC")
    # jitter: not a regular grid
    assert gaps.nunique() > 100
    # a tz-aware start is converted to UTC
    other = simulate_histories(
        n_handlers=2, n_steps=3, start="2026-03-01 13:00+01:00", random_state=0
    )
    assert other["timestamp"].min() >= pd.Timestamp("2026-03-01 12:00", tz="UTC")


def test_same_seed_same_frame_other_seed_other_frame():
    a = simulate_histories(n_handlers=10, n_steps=100, duplicate_rate=0.05, random_state=11)
    b = simulate_histories(n_handlers=10, n_steps=100, duplicate_rate=0.05, random_state=11)
    c = simulate_histories(n_handlers=10, n_steps=100, duplicate_rate=0.05, random_state=12)
    pd.testing.assert_frame_equal(a, b)
    assert not a["status"].equals(c["status"])
    g1 = simulate_histories(n_handlers=4, n_steps=20, random_state=np.random.default_rng(5))
    g2 = simulate_histories(n_handlers=4, n_steps=20, random_state=np.random.default_rng(5))
    pd.testing.assert_frame_equal(g1, g2)


def test_global_random_state_is_untouched():
    before = np.random.get_state()[1].copy()
    simulate_histories(n_handlers=3, n_steps=10, random_state=0)
    np.testing.assert_array_equal(np.random.get_state()[1], before)


def test_shuffle_permutes_the_same_rows():
    kwargs = dict(n_handlers=8, n_steps=40, duplicate_rate=0.1, random_state=4)
    ordered = simulate_histories(**kwargs)
    shuffled = simulate_histories(**kwargs, shuffle=True)
    assert isinstance(shuffled.index, pd.RangeIndex)
    assert not shuffled["handler"].is_monotonic_increasing
    resorted = shuffled.sort_values(["handler", "timestamp", "event_id"], kind="stable")
    ordered = ordered.sort_values(["handler", "timestamp", "event_id"], kind="stable")
    pd.testing.assert_frame_equal(
        resorted.reset_index(drop=True), ordered.reset_index(drop=True)
    )


def test_event_ids_unique_without_duplicates():
    df = simulate_histories(n_handlers=30, n_steps=200, random_state=1)
    assert df["event_id"].is_unique
    assert df["event_id"].str.startswith("evt-").all()


def test_duplicates_at_the_requested_rate():
    rate, n = 0.1, 40 * 500
    df = simulate_histories(n_handlers=40, n_steps=500, duplicate_rate=rate, random_state=2)
    n_extra = len(df) - n
    assert abs(n_extra - rate * n) <= 4 * np.sqrt(n * rate * (1 - rate))
    assert df["event_id"].nunique() == n
    counts = df["event_id"].value_counts()
    assert counts.max() == 2 and (counts == 2).sum() == n_extra
    # a duplicate is an identical copy of its row
    assert len(df.drop_duplicates()) == n
    # time never goes backwards within a handler
    assert (df.groupby("handler")["timestamp"].diff().dropna() >= pd.Timedelta(0)).all()


def _previous_status(df):
    prev = df.groupby("handler", sort=False)["status"].shift()
    keep = prev.notna()
    return df.loc[keep].assign(prev=prev[keep])


def _z_scores(freq, prob, n):
    # |frequency - probability| in standard errors, with a continuity
    # correction of 1/n (cells with p ~ 0.003 and n ~ 1000 are far from
    # normal). 250 cells per class: 4.5 leaves room; 40 seeds never passed 3.6.
    return np.maximum(np.abs(freq - prob) - 1.0 / n, 0.0) / np.sqrt(prob * (1 - prob) / n)


@pytest.mark.parametrize("handler_class", ["normal", "flaky"])
def test_empirical_transitions_match_the_truth(big_frame, system, handler_class):
    steps = _previous_status(big_frame[big_frame["handler_class"] == handler_class])
    states, events = list(system.state_names), list(system.event_names)
    P = system.event_matrices[handler_class]
    Q = system.event_probs[handler_class]

    # Q[i, e] from counts of (previous status, event)
    n_ie = (
        steps.groupby(["prev", "event_type"]).size()
        .unstack(fill_value=0).reindex(index=states, columns=events, fill_value=0)
        .to_numpy()
    )
    n_i = n_ie.sum(axis=1, keepdims=True)
    assert n_i.min() > 1000
    z = _z_scores(n_ie / n_i, Q, n_i)
    assert z.max() <= 4.5, z

    # P[e, i, j] from counts of (event, previous status, status)
    n_eij = (
        steps.groupby(["event_type", "prev", "status"]).size()
        .reindex(pd.MultiIndex.from_product([events, states, states]), fill_value=0)
        .to_numpy().reshape(len(events), len(states), len(states))
    )
    n_ei = n_eij.sum(axis=2, keepdims=True)
    assert n_ei.min() > 100
    z = _z_scores(n_eij / n_ei, P, n_ei)
    assert z.max() <= 4.5, z.max()


def test_flaky_handlers_fail_more_often(big_frame):
    failed = big_frame["status"].isin(FAILURES)
    by_class = failed.groupby(big_frame["handler_class"]).mean()
    assert by_class["flaky"] > 2 * by_class["normal"]
    # per handler, too: every flaky handler fails more than the median normal one
    per_handler = failed.groupby([big_frame["handler_class"], big_frame["handler"]]).mean()
    assert per_handler["flaky"].min() > per_handler["normal"].median()


def test_first_states_mostly_ok(system):
    df = simulate_histories(n_handlers=2000, n_steps=1, flaky_fraction=0.0, random_state=9)
    # one step from the initial distribution: p0 @ T
    want = system.initial_probs["normal"] @ system.transition_matrix("normal")
    got = df["status"].value_counts(normalize=True).reindex(system.state_names, fill_value=0)
    se = np.sqrt(want * (1 - want) / 2000)
    assert np.all(np.abs(got.to_numpy() - want) <= 4 * se)
    assert got["ok"] > 0.75


def test_metrics_let_extractors_recover_the_states(big_frame):
    df = big_frame
    down = df["status"] == "down"
    assert (df.loc[down, "error_rate"] == 1.0).all()
    assert (df.loc[df["status"] == "timeout", "latency_ms"] >= 5000).all()
    assert df["error_rate"].between(0, 1).all() and (df["latency_ms"] > 0).all()
    medians = df.groupby("status")["latency_ms"].median()
    assert 40 < medians["ok"] < 60 and 700 < medians["slow"] < 900
    # a simple rule set (the kind the threshold extractor expresses) recovers
    # almost every state
    guess = np.select(
        [
            df["error_rate"] >= 0.999,
            df["latency_ms"] >= 5000,
            df["error_rate"] >= 0.4,
            df["latency_ms"] >= 250,
        ],
        ["down", "timeout", "error", "slow"],
        default="ok",
    )
    assert (guess == df["status"].to_numpy()).mean() > 0.97


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_handlers": 0}, ValueError, "n_handlers == 0, must be >= 1"),
        ({"n_steps": 2.5}, TypeError, "n_steps must be an instance of"),
        ({"flaky_fraction": 1.5}, ValueError, "flaky_fraction == 1.5, must be <= 1.0"),
        ({"jitter": 1.0}, ValueError, "jitter == 1.0, must be < 1.0"),
        ({"duplicate_rate": -0.1}, ValueError, "duplicate_rate == -0.1, must be >= 0.0"),
        ({"step_interval": "-1min"}, ValueError, "step_interval must be positive"),
        ({"system": "default"}, TypeError, "system must be an OrderServiceSystem"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        simulate_histories(**{"n_handlers": 2, "n_steps": 3, **kwargs})


def test_system_without_flaky_class(system):
    normal_only = OrderServiceSystem(
        state_names=system.state_names,
        event_names=system.event_names,
        failure_states=system.failure_states,
        event_matrices={"normal": system.event_matrices["normal"]},
        event_probs={"normal": system.event_probs["normal"]},
    )
    df = simulate_histories(3, 5, system=normal_only, flaky_fraction=0.0, random_state=0)
    assert (df["handler_class"] == "normal").all()
    with pytest.raises(ValueError, match="no handler class 'flaky'"):
        simulate_histories(3, 5, system=normal_only, flaky_fraction=0.5)


# --- the bundled sample ------------------------------------------------------


@pytest.fixture(scope="module")
def make_sample():
    spec = importlib.util.spec_from_file_location("make_sample", DATA / "make_sample.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bundled_sample_exists_and_is_small():
    path = DATA / "orders_sample.csv.gz"
    assert path.is_file()
    assert path.stat().st_size < 3 * 1024**2
    assert (DATA / "orders.toml").is_file() and (DATA / "README.md").is_file()
    df = pd.read_csv(path)
    assert len(df) == 40 * 1500
    assert df["handler"].nunique() == 40
    assert df["event_id"].is_unique
    assert set(df["status"]) == {"ok", "slow", "error", "timeout", "down"}
    ts = pd.to_datetime(df["timestamp"], utc=True)
    assert (ts.groupby(df["handler"]).diff().dropna() > pd.Timedelta(0)).all()


def test_demo_config_matches_the_sample():
    import tomllib

    config = tomllib.loads((DATA / "orders.toml").read_text())
    header = gzip.decompress((DATA / "orders_sample.csv.gz").read_bytes()).split(b"\n")[0]
    columns = header.decode().split(",")
    c = config["columns"]
    for key in ["entity", "time", "event", "status", "event_id"]:
        assert c[key] in columns
    assert set(c["metrics"]) <= set(columns)
    assert config["states"] == {"kind": "categorical", "failure": FAILURES}
    assert config["model"] == {"alpha": 1.0, "beta": 1.0}


def test_bundled_sample_is_reproduced_byte_for_byte(make_sample, tmp_path):
    committed = (DATA / make_sample.FILENAME).read_bytes()
    first = make_sample.write_sample(tmp_path / make_sample.FILENAME).read_bytes()
    second = make_sample.write_sample(tmp_path / "again.csv.gz").read_bytes()
    # the writer is deterministic: no mtime, no file name in the gzip header
    assert first == second
    assert first[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    # the CSV inside is the same, byte for byte
    assert gzip.decompress(first) == gzip.decompress(committed)
    if first != committed:  # same CSV, other deflate stream: another zlib build
        pytest.skip(
            "the CSV matches but the gzip stream differs, as it does with a "
            f"different zlib build (this one: {zlib.ZLIB_RUNTIME_VERSION})"
        )
    assert first == committed


# --- failure memory and event-mix shifts ---------------------------------------

from markovfault.simulate import SimulatedHistories, true_failure_probabilities  # noqa: E402

W, BOOST = 8, 3.0
SHIFTS = [(30, 40, {"payment_failed": 10.0}), (35, 50, {"order_shipped": 3.0})]


def test_new_options_at_their_defaults_change_nothing():
    kwargs = dict(n_handlers=6, n_steps=50, duplicate_rate=0.1, shuffle=True, random_state=3)
    base = simulate_histories(**kwargs)
    same = simulate_histories(
        **kwargs, memory_window=0, memory_boost=5.0, mix_shifts=[], outages=0,
        outage_boost={"order_created": 2.0},
    )
    pd.testing.assert_frame_equal(base, same)
    sim = simulate_histories(**kwargs, truth_columns=True, return_result=True)
    assert isinstance(sim, SimulatedHistories)
    pd.testing.assert_frame_equal(sim.frame[base.columns], base)
    assert sim.frame.columns.tolist()[-3:] == ["step", "memory", "regime"]
    assert (sim.frame["memory"] == 0).all() and (sim.frame["regime"] == 0).all()
    # the result's per-row arrays follow the duplicated, shuffled rows
    np.testing.assert_array_equal(sim.step, sim.frame["step"])
    np.testing.assert_array_equal(sim.memory, sim.frame["memory"])
    ordered = simulate_histories(6, 50, random_state=3, truth_columns=True)
    np.testing.assert_array_equal(ordered["step"], ordered.groupby("handler").cumcount())


def test_truth_without_memory_or_shifts_is_the_plain_chain(system):
    df = simulate_histories(
        n_handlers=20, n_steps=100, flaky_fraction=0.5, duplicate_rate=0.05, shuffle=True,
        random_state=8,
    )
    got = true_failure_probabilities(df, 7)
    codes = pd.Index(system.state_names).get_indexer(df["status"])
    for name in system.handler_classes:
        rows = (df["handler_class"] == name).to_numpy()
        want = system.failure_probabilities(7, name)[codes[rows]]
        np.testing.assert_allclose(got[rows], want, rtol=1e-12, atol=1e-14)
    # also from the result object, and through the augmented chain with W = 0
    sim = simulate_histories(20, 100, flaky_fraction=0.5, random_state=8, return_result=True)
    np.testing.assert_allclose(
        sim.true_failure_probabilities(7),
        true_failure_probabilities(sim.frame, 7), rtol=0, atol=0,
    )
    p = system.memory_failure_probabilities(7, "flaky", memory_window=0)
    np.testing.assert_allclose(p[:, 0, :], system.failure_probabilities(7, "flaky"))


def test_memory_matrices_and_augmented_chain(system):
    fail = system.failure_mask
    Pm = system.memory_event_matrices("flaky", W, BOOST)
    P = system.event_matrices["flaky"]
    assert Pm.shape == (W + 1, 5, 5, 5)
    np.testing.assert_array_equal(Pm[W], P)
    for d in range(W):
        np.testing.assert_array_equal(Pm[d][:, fail], P[:, fail])  # failure rows as they are
        np.testing.assert_allclose(Pm[d].sum(axis=-1), 1.0)
        # within a healthy row: failure entries x BOOST relative to the others
        ratio = (Pm[d][:, ~fail][..., fail] / Pm[d][:, ~fail][..., [0]]) / (
            P[:, ~fail][..., fail] / P[:, ~fail][..., [0]]
        )
        np.testing.assert_allclose(ratio, BOOST)
    T = system.augmented_transition_matrix("flaky", W, BOOST, {"payment_failed": 10})
    np.testing.assert_allclose(T.sum(axis=1), 1.0)
    # each (s, d) leads to one memory value only: 0 after a failure, else d + 1 capped
    blocks = T.reshape(5, W + 1, 5, W + 1).sum(axis=2)
    for s in range(5):
        for d in range(W + 1):
            nxt = 0 if fail[s] else min(d + 1, W)
            assert blocks[s, d, nxt] == pytest.approx(1.0)
    # one step from d = W is the plain chain's step
    p = system.memory_failure_probabilities(1, "normal", W, BOOST)
    np.testing.assert_allclose(p[:, W, 0], system.failure_probabilities(1, "normal")[:, 0])
    assert np.all(p[~fail, :W, 0] > 2 * p[~fail, W:, 0])


def _memory_from_statuses(failure, window):
    """d per row, recomputed from the failure flags of (n_handlers, n_steps)."""
    d = np.empty(failure.shape, dtype=np.int64)
    d[:, 0] = window
    for n in range(1, failure.shape[1]):
        d[:, n] = np.where(failure[:, n - 1], 0, np.minimum(d[:, n - 1] + 1, window))
    return d


def test_failure_memory_in_the_simulation(system):
    sim = simulate_histories(
        n_handlers=400, n_steps=1000, flaky_fraction=0.0, memory_window=W,
        memory_boost=BOOST, truth_columns=True, random_state=21, return_result=True,
    )
    df = sim.frame
    failure = df["status"].isin(FAILURES).to_numpy().reshape(400, 1000)
    memory = df["memory"].to_numpy().reshape(400, 1000)
    np.testing.assert_array_equal(memory, _memory_from_statuses(failure, W))

    # next step a failure, from a healthy state, with and without recent failures
    p1 = sim.true_failure_probabilities(1)[:, 0].reshape(400, 1000)[:, :-1]
    nxt = failure[:, 1:]
    healthy = ~failure[:, :-1]
    rates = {}
    for name, group in {"recent": memory[:, :-1] < W, "none": memory[:, :-1] == W}.items():
        sel = healthy & group
        n = sel.sum()
        assert n > 5000
        emp, want = nxt[sel].mean(), p1[sel].mean()
        se = np.sqrt((p1[sel] * (1 - p1[sel])).sum()) / n
        assert abs(emp - want) <= 4 * se, (name, emp, want, se)
        rates[name] = (emp, want, se)
    (ea, ta, sa), (eb, tb, sb) = rates["recent"], rates["none"]
    true_ratio, emp_ratio = ta / tb, ea / eb
    assert true_ratio > 2.0
    se_ratio = emp_ratio * np.sqrt((sa / ea) ** 2 + (sb / eb) ** 2)
    assert abs(emp_ratio - true_ratio) <= 4 * se_ratio, (emp_ratio, true_ratio)


def _monte_carlo(system, handler_class, state, memory, step, horizon, n_paths, seed):
    """Re-simulate n_paths from (state, memory) at `step` under SHIFTS, written
    from the spec and not from the module: P(failure among the next h) for h = 1..horizon."""
    rng = np.random.default_rng(seed)
    names = list(system.event_names)
    fail = system.failure_mask
    P = system.event_matrices[handler_class]
    Q = system.event_probs[handler_class]
    s = np.full(n_paths, system.state_names.index(state))
    d = np.full(n_paths, memory)
    failed = np.zeros(n_paths, dtype=bool)
    out = []
    for k in range(1, horizon + 1):
        m = np.ones(len(names))
        for start, end, mult in SHIFTS:
            if start <= step + k < end:
                for event, factor in mult.items():
                    m[names.index(event)] *= factor
        q = Q[s] * m
        q /= q.sum(axis=1, keepdims=True)
        e = (rng.random(n_paths)[:, None] >= np.cumsum(q, axis=1)).sum(axis=1)
        e = np.minimum(e, len(names) - 1)
        rows = P[e, s].copy()
        boosted = (~fail[s]) & (d < W)
        rows[np.ix_(boosted, fail)] *= BOOST
        rows /= rows.sum(axis=1, keepdims=True)
        s_next = (rng.random(n_paths)[:, None] >= np.cumsum(rows, axis=1)).sum(axis=1)
        s_next = np.minimum(s_next, len(fail) - 1)
        d = np.where(fail[s], 0, np.minimum(d + 1, W))
        s = s_next
        failed |= fail[s]
        out.append(failed.mean())
    return np.array(out)


@pytest.mark.parametrize(
    ("handler_class", "state", "memory", "step"),
    [
        ("normal", "ok", W, 0),  # no shift within the horizon
        ("normal", "ok", W, 27),  # the outage starts 3 steps ahead
        ("flaky", "ok", 2, 33),  # inside both shifts, recent failure
        ("flaky", "slow", 0, 38),
        ("normal", "error", 5, 45),
    ],
)
def test_row_truth_matches_monte_carlo(system, handler_class, state, memory, step):
    H, n_paths = 10, 40_000
    row = pd.DataFrame({
        "status": [state], "handler_class": [handler_class], "memory": [memory], "step": [step],
    })
    truth = true_failure_probabilities(
        row, H, memory_window=W, memory_boost=BOOST, mix_shifts=SHIFTS
    )[0]
    assert np.all(np.diff(truth) >= 0) and 0 < truth[0] and truth[-1] < 1
    mc = _monte_carlo(system, handler_class, state, memory, step, H, n_paths, seed=step)
    se = np.sqrt(truth * (1 - truth) / n_paths)
    assert np.all(np.abs(mc - truth) <= 4 * se), (mc, truth)


def test_risk_rises_before_the_outage_and_status(system):
    rows = pd.DataFrame({
        "status": ["ok"] * 3, "handler_class": ["normal"] * 3,
        "memory": [W] * 3, "step": [0, 27, 31],
    })
    p = true_failure_probabilities(rows, 5, memory_window=W, mix_shifts=SHIFTS)
    assert p[0, 1] == pytest.approx(p[1, 1])  # steps 28, 29: no shift yet
    assert p[1, 4] > 1.3 * p[0, 4]  # steps 30, 31, 32 are in the outage
    assert p[2, 0] > 2 * p[0, 0]


def test_mix_shift_changes_the_event_shares_in_its_window(system):
    shift = {"payment_failed": 10.0}
    df = simulate_histories(
        n_handlers=300, n_steps=200, flaky_fraction=0.5, mix_shifts=[(80, 140, shift)],
        truth_columns=True, random_state=5,
    )
    assert set(df.loc[df["step"].between(80, 139), "regime"]) == {1}
    assert set(df.loc[~df["step"].between(80, 139), "regime"]) == {0}
    steps = _previous_status(df)
    codes = pd.Index(system.state_names).get_indexer(steps["prev"])
    events = list(system.event_names)
    inside = steps["step"].between(80, 139).to_numpy()
    shares = {}
    for where, mult in [(inside, shift), (~inside, None)]:
        # E[count of e] = sum over rows of Q_regime[class][previous state, e]
        q = np.empty((where.sum(), len(events)))
        for name in system.handler_classes:
            rows = (steps["handler_class"].to_numpy()[where] == name)
            q[rows] = system.shifted_event_probs(name, mult)[codes[where][rows]]
        got = pd.get_dummies(steps["event_type"][where]).reindex(
            columns=events, fill_value=0).to_numpy().sum(axis=0)
        want = q.sum(axis=0)
        se = np.sqrt((q * (1 - q)).sum(axis=0))
        assert np.all(np.abs(got - want) <= 4 * se), (got, want, se)
        shares[mult is None] = got / where.sum()
    assert shares[False][2] > 3 * shares[True][2]  # payment_failed, in vs out


def test_outages_are_drawn_reproducibly():
    kwargs = dict(n_handlers=3, n_steps=500, outages=4, outage_length=30,
                  truth_columns=True, return_result=True)
    a = simulate_histories(**kwargs, random_state=1)
    b = simulate_histories(**kwargs, random_state=1)
    assert a.mix_shifts == b.mix_shifts and len(a.mix_shifts) == 4
    pd.testing.assert_frame_equal(a.frame, b.frame)
    windows = sorted((s, e) for s, e, _ in a.mix_shifts)
    assert all(e - s == 30 and 0 <= s and e <= 500 for s, e in windows)
    assert all(e1 <= s2 for (_, e1), (s2, _) in zip(windows, windows[1:]))
    assert all(m == {"payment_failed": 10.0} for *_, m in a.mix_shifts)
    in_outage = (a.frame["regime"] == 1).groupby(a.frame["handler"]).sum()
    assert (in_outage == 120).all()
    assert a.regime_multipliers.loc[1, "payment_failed"] == 10.0
    # the frame path with the drawn shifts gives the same truth
    np.testing.assert_array_equal(
        a.true_failure_probabilities(4),
        true_failure_probabilities(a.frame, 4, mix_shifts=a.mix_shifts),
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"memory_window": -1}, ValueError, "memory_window == -1, must be >= 0"),
        ({"memory_boost": 0.0}, ValueError, "memory_boost == 0.0, must be > 0"),
        ({"mix_shifts": [(5, 5, {})]}, ValueError, "need 0 <= start < end"),
        ({"mix_shifts": [(0, 5, {"nope": 2})]}, ValueError, "not among"),
        ({"mix_shifts": [(0, 5, {"payment_failed": -1})]}, ValueError, "must be a finite"),
        ({"mix_shifts": [(0, 5)]}, TypeError, "must be a .start_step"),
        ({"outages": 2, "outage_length": 3}, ValueError, "do not fit"),
    ],
)
def test_bad_memory_and_shift_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        simulate_histories(**{"n_handlers": 2, "n_steps": 5, **kwargs})


def test_frame_truth_needs_the_columns():
    df = simulate_histories(2, 10, random_state=0)
    with pytest.raises(ValueError, match=r"lacks columns \['memory'\]"):
        true_failure_probabilities(df, 3, memory_window=2)
    with pytest.raises(ValueError, match=r"lacks columns \['step'\]"):
        true_failure_probabilities(df, 3, mix_shifts=SHIFTS)
    sim = simulate_histories(2, 10, random_state=0, return_result=True)
    with pytest.raises(TypeError, match="pass them only with a DataFrame"):
        true_failure_probabilities(sim, 3, memory_window=2)


# --- groups with a shared dependency, handlers that finish ------------------------

from markovfault.exceptions import ConfigError  # noqa: E402

GROUPS = dict(group_outage_rate=0.1, group_outage_length=4.0, group_outage_boost=5.0)
FINISH = {"ok": 0.05, "slow": 0.1}


def _fail_grid(frame, n_steps):
    """Failure flags on the (handler, step) grid; cells without a row are False."""
    codes, names = pd.factorize(frame["handler"], sort=True)
    grid = np.zeros((len(names), n_steps), dtype=bool)
    grid[codes, frame["step"].to_numpy()] = frame["status"].isin(FAILURES).to_numpy()
    return codes, grid


def test_groups_and_finishing_off_change_nothing():
    kwargs = dict(n_handlers=6, n_steps=50, duplicate_rate=0.1, shuffle=True, memory_window=3,
                  outages=1, outage_length=10, random_state=3)
    base = simulate_histories(**kwargs)
    for off in [
        dict(n_groups=0, group_outage_rate=0.3, group_outage_length=2.0, group_outage_boost=50.0),
        dict(finish_rate=0.0, finish_status=None),
        dict(finish_rate={"ok": 0.0, "down": 0.0}, start_spread=0),
    ]:
        pd.testing.assert_frame_equal(simulate_histories(**kwargs, **off), base)
    sim = simulate_histories(**kwargs, truth_columns=True, return_result=True)
    assert sim.frame.columns.tolist()[-4:] == ["handler_class", "step", "memory", "regime"]
    assert not sim.dependency_down.any() and not sim.finish_rate.any()
    assert sim.handlers["start_step"].eq(0).all() and sim.handlers["finish_step"].isna().all()
    # the truth through the joint chain is the truth of the memory chain
    np.testing.assert_array_equal(
        sim.true_failure_probabilities(4),
        true_failure_probabilities(sim.frame, 4, memory_window=3, mix_shifts=sim.mix_shifts,
                                   n_groups=0, finish_rate=0.0),
    )


def _tiny_system():
    # three states, two events, uneven numbers; "error" is the failure state
    P = np.array([
        [[0.6, 0.3, 0.1], [0.5, 0.3, 0.2], [0.4, 0.1, 0.5]],  # event a
        [[0.7, 0.25, 0.05], [0.2, 0.5, 0.3], [0.3, 0.3, 0.4]],  # event b
    ])
    Q = np.array([[0.8, 0.2], [0.3, 0.7], [0.5, 0.5]])
    return OrderServiceSystem(
        state_names=("ok", "slow", "error"), event_names=("a", "b"), failure_states=("error",),
        event_matrices={"normal": P}, event_probs={"normal": Q},
        initial_probs={"normal": np.array([0.9, 0.1, 0.0])},
    )


def test_boosted_rows_and_joint_chain_by_hand():
    tiny = _tiny_system()
    # memory window 2, memory boost 2.5, group boost 4: factor 4 while down, 10 with memory
    Pm = tiny.group_event_matrices("normal", memory_window=2, memory_boost=2.5,
                                   group_outage_boost=4.0)
    assert Pm.shape == (2, 3, 2, 3, 3)
    np.testing.assert_array_equal(Pm[0, 2], tiny.event_matrices["normal"])
    np.testing.assert_allclose(Pm[0, 0, 0, 0], np.array([0.6, 0.3, 0.25]) / 1.15)
    np.testing.assert_allclose(Pm[1, 2, 0, 0], np.array([0.6, 0.3, 0.4]) / 1.3)
    np.testing.assert_allclose(Pm[1, 2, 1, 0], np.array([0.7, 0.25, 0.2]) / 1.15)
    np.testing.assert_allclose(Pm[1, 1, 0, 0], np.array([0.6, 0.3, 1.0]) / 1.9)
    np.testing.assert_allclose(Pm[1, 0, 1, 1], np.array([0.2, 0.5, 3.0]) / 3.7)
    np.testing.assert_array_equal(Pm[1, :, :, 2], Pm[0, :, :, 2])  # failure rows as they are

    # up -> down with 0.1, down -> up with 1 / 4; finishing from ok 0.2, from error 0.1
    chain = dict(memory_window=2, memory_boost=2.5, dependency=True, group_outage_rate=0.1,
                 group_outage_length=4.0, group_outage_boost=4.0,
                 finish_rate={"ok": 0.2, "error": 0.1})
    T = tiny.joint_transition_matrix("normal", **chain)
    assert T.shape == (2 * 3 * 3 + 1,) * 2  # index (u * 3 + s) * 3 + d, END last
    np.testing.assert_allclose(T.sum(axis=1), 1.0, rtol=0, atol=1e-14)

    def at(u, s, d):
        return (u * 3 + s) * 3 + d

    ok, slow, error = 0, 1, 2
    # (up, ok, d=2) -> (down, error, 2): dependency goes down, no finish, a or b into error
    want = 0.1 * (1 - 0.2) * (0.8 * 0.4 / 1.3 + 0.2 * 0.2 / 1.15)
    assert T[at(0, ok, 2), at(1, error, 2)] == pytest.approx(want, rel=1e-12)
    # (down, slow, d=0) -> (down, error, 1): stays down, memory and group boost (x10)
    want = 0.75 * (0.3 * 2.0 / 2.8 + 0.7 * 3.0 / 3.7)
    assert T[at(1, slow, 0), at(1, error, 1)] == pytest.approx(want, rel=1e-12)
    # (down, error, d=1) -> (up, ok, 0): recovers; failure rows are not boosted
    want = 0.25 * (1 - 0.1) * (0.5 * 0.4 + 0.5 * 0.3)
    assert T[at(1, error, 1), at(0, ok, 0)] == pytest.approx(want, rel=1e-12)
    # memory moves as before: from a healthy state d + 1 capped at 2, after a failure 0
    assert T[at(0, ok, 0), at(0, ok, 0)] == 0 and T[at(0, ok, 0), at(0, ok, 1)] > 0
    np.testing.assert_allclose(T[:-1, -1], np.tile(np.repeat([0.2, 0.0, 0.1], 3), 2))
    assert T[-1, -1] == 1.0

    # one step ahead from (down, ok, d=2), by hand, through both public paths
    want = (1 - 0.2) * (0.25 * (0.8 * 0.1 + 0.2 * 0.05)
                        + 0.75 * (0.8 * 0.4 / 1.3 + 0.2 * 0.2 / 1.15))
    p = tiny.joint_failure_probabilities(2, "normal", **chain)
    assert p.shape == (2, 3, 3, 2)
    assert p[1, ok, 2, 0] == pytest.approx(want, rel=1e-12)
    row = pd.DataFrame({"status": ["ok", "finished"], "handler_class": "normal",
                        "memory": [2, 0], "dependency_down": [True, False]})
    got = true_failure_probabilities(
        row, 2, system=tiny, memory_window=2, memory_boost=2.5, n_groups=1,
        group_outage_rate=0.1, group_outage_length=4.0, group_outage_boost=4.0,
        finish_rate={"ok": 0.2, "error": 0.1},
    )
    np.testing.assert_allclose(got[0], p[1, ok, 2], rtol=1e-12)
    np.testing.assert_array_equal(got[1], [0.0, 0.0])  # finished: never fails

    # without a dependency or finishing, the joint chain is the memory chain
    np.testing.assert_array_equal(
        tiny.joint_transition_matrix("normal", memory_window=2, memory_boost=2.5),
        tiny.augmented_transition_matrix("normal", 2, 2.5),
    )
    # a dependency with boost 1 changes nothing: summed over u' it is the memory chain
    flat = tiny.joint_transition_matrix("normal", memory_window=2, dependency=True,
                                        group_outage_boost=1.0)
    marginal = flat.reshape(2, 9, 2, 9).sum(axis=2)
    for u in range(2):
        np.testing.assert_allclose(marginal[u], tiny.augmented_transition_matrix("normal", 2))


def test_dependency_is_a_two_state_chain():
    a, length = 0.01, 12.5  # recovers with b = 0.08; stationary P(down) = a / (a + b) = 1/9
    b = 1 / length
    G, n = 30, 4000
    sim = simulate_histories(
        60, n, n_groups=G, group_outage_rate=a, group_outage_length=length,
        with_metrics=False, truth_columns=True, random_state=13, return_result=True,
    )
    path = sim.dependency_path
    assert path.shape == (G, n)
    pi = a / (a + b)
    # the mean of a stationary two-state chain: variance pi (1 - pi) / n * (1 + rho) / (1 - rho),
    # rho = 1 - a - b its lag-1 autocorrelation; groups are independent
    rho = 1 - a - b
    se = np.sqrt(pi * (1 - pi) / (G * n) * (1 + rho) / (1 - rho))
    assert abs(path.mean() - pi) <= 4 * se, (path.mean(), pi, se)
    # per-step moves: up -> down with a, down -> up with b (binomial given the previous state)
    prev, nxt = path[:, :-1].ravel(), path[:, 1:].ravel()
    for state, rate in [(False, a), (True, b)]:
        moved = (nxt[prev == state] != state)
        m = moved.size
        assert abs(moved.mean() - rate) <= 4 * np.sqrt(rate * (1 - rate) / m), (state, moved.mean())
    # the frame: names, consecutive blocks of sizes 2, and the shared dependency per row
    df = sim.frame
    groups = sim.handlers["group"]
    assert groups.iloc[0] == "payments-db-01" and groups.iloc[-1] == "payments-db-30"
    assert groups.is_monotonic_increasing and groups.value_counts().eq(2).all()
    assert df.columns.tolist()[-5:] == ["group", "step", "memory", "regime", "dependency_down"]
    assert df["dependency_down"].dtype == bool
    group_code = pd.Index(sorted(set(groups))).get_indexer(df["group"])
    np.testing.assert_array_equal(df["dependency_down"], path[group_code, df["step"]])


def test_group_sizes_differ_by_at_most_one():
    df = simulate_histories(10, 3, n_groups=3, random_state=0)
    sizes = df.groupby("group")["handler"].nunique()
    assert sizes.to_dict() == {"payments-db-1": 4, "payments-db-2": 3, "payments-db-3": 3}
    assert df.groupby("handler")["group"].nunique().eq(1).all()


@pytest.mark.parametrize("finish_status", [None, "finished"])
def test_row_truth_matches_monte_carlo_of_the_simulator(finish_status):
    # One handler per group, so handlers are independent replications. Every
    # option at once; at step t0 each handler's row is compared with what the
    # simulator did over the next H steps (a row missing after a finish is no failure).
    H, t0, N = 5, 6, 40_000
    sim = simulate_histories(
        N, t0 + H + 1, n_groups=N, flaky_fraction=0.5, memory_window=4, memory_boost=2.0,
        **GROUPS, finish_rate={**FINISH, "error": 0.05}, finish_status=finish_status,
        start_spread=3, mix_shifts=[(8, 11, {"payment_failed": 6.0})],
        with_metrics=False, with_event_ids=False, truth_columns=True, random_state=5,
        return_result=True,
    )
    df = sim.frame
    # 40 000 independent dependencies, stationary from step 0: P(down) = a / (a + b) at every step
    a, b = GROUPS["group_outage_rate"], 1 / GROUPS["group_outage_length"]
    pi = a / (a + b)
    for n in (0, t0 + H):
        assert abs(sim.dependency_path[:, n].mean() - pi) <= 4 * np.sqrt(pi * (1 - pi) / N)
    codes, grid = _fail_grid(df, t0 + H + 1)
    at = np.flatnonzero(df["step"].to_numpy() == t0)
    failed = np.cumsum(grid[codes[at], t0 + 1:], axis=1) > 0
    truth = sim.true_failure_probabilities(H)[at]
    down = df["dependency_down"].to_numpy()[at]
    status = df["status"].to_numpy()[at]
    healthy = np.isin(status, ["ok", "slow"])
    strata = {"down, healthy": down & healthy, "up, healthy": ~down & healthy,
              "down, failed": down & ~healthy, "up, failed": ~down & ~healthy}
    if finish_status:
        strata["up, failed"] &= status != finish_status
        finished = status == finish_status
        assert finished.sum() > 500 and not failed[finished].any()
        assert np.all(truth[finished] == 0)
    for name, sel in strata.items():
        n = sel.sum()
        assert n > 1500, name
        p = truth[sel]
        se = np.sqrt((p * (1 - p)).sum(axis=0)) / n
        assert np.all(np.abs(failed[sel].mean(axis=0) - p.mean(axis=0)) <= 4 * se), name
    # the dependency matters: a healthy row's risk is much higher while it is down
    assert truth[strata["down, healthy"], 0].mean() > 2 * truth[strata["up, healthy"], 0].mean()


def _monte_carlo_joint(system, handler_class, state, memory, down, step, horizon, n_paths, seed):
    """Re-simulate n_paths from (dependency, state, memory) at `step`, written from the
    spec: the dependency moves, then the handler finishes or steps under SHIFTS, the
    memory boost and the group boost. P(failure among the next h) for h = 1..horizon."""
    rng = np.random.default_rng(seed)
    names, fail = list(system.event_names), system.failure_mask
    P, Q = system.event_matrices[handler_class], system.event_probs[handler_class]
    a, b = GROUPS["group_outage_rate"], 1 / GROUPS["group_outage_length"]
    phi = np.array([FINISH.get(s, 0.0) for s in system.state_names])
    s = np.full(n_paths, system.state_names.index(state))
    d, u = np.full(n_paths, memory), np.full(n_paths, down)
    alive, failed, out = np.ones(n_paths, bool), np.zeros(n_paths, bool), []
    for k in range(1, horizon + 1):
        r = rng.random(n_paths)
        u = np.where(u, r >= b, r < a)
        alive &= rng.random(n_paths) >= phi[s]
        m = np.ones(len(names))
        for start, end, mult in SHIFTS:
            if start <= step + k < end:
                for event, factor in mult.items():
                    m[names.index(event)] *= factor
        q = Q[s] * m
        q /= q.sum(axis=1, keepdims=True)
        e = (rng.random(n_paths)[:, None] >= np.cumsum(q, axis=1)).sum(axis=1)
        e = np.minimum(e, len(names) - 1)
        rows = P[e, s].copy()
        factor = np.where(d < W, BOOST, 1.0) * np.where(u, GROUPS["group_outage_boost"], 1.0)
        rows[:, fail] *= np.where(fail[s], 1.0, factor)[:, None]
        rows /= rows.sum(axis=1, keepdims=True)
        s_next = (rng.random(n_paths)[:, None] >= np.cumsum(rows, axis=1)).sum(axis=1)
        s_next = np.minimum(s_next, len(fail) - 1)
        d = np.where(fail[s], 0, np.minimum(d + 1, W))
        s = s_next
        failed |= alive & fail[s]
        out.append(failed.mean())
    return np.array(out)


@pytest.mark.parametrize(
    ("handler_class", "state", "memory", "down", "step"),
    [
        ("normal", "ok", W, True, 27),  # outage of the event mix 3 steps ahead
        ("flaky", "slow", 2, False, 33),
        ("normal", "ok", 0, False, 0),
        ("flaky", "error", W, True, 45),
    ],
)
def test_joint_truth_matches_a_monte_carlo_from_the_spec(system, handler_class, state, memory,
                                                         down, step):
    H, n_paths = 10, 40_000
    row = pd.DataFrame({"status": [state], "handler_class": [handler_class], "memory": [memory],
                        "step": [step], "dependency_down": [down]})
    truth = true_failure_probabilities(
        row, H, memory_window=W, memory_boost=BOOST, mix_shifts=SHIFTS, n_groups=1, **GROUPS,
        finish_rate=FINISH,
    )[0]
    assert np.all(np.diff(truth) >= 0) and 0 < truth[0] and truth[-1] < 1
    mc = _monte_carlo_joint(system, handler_class, state, memory, down, step, H, n_paths, seed=step)
    se = np.sqrt(truth * (1 - truth) / n_paths)
    assert np.all(np.abs(mc - truth) <= 4 * se), (mc, truth)


def test_members_of_a_group_fail_together():
    G, N, n = 5, 50, 3000

    def failures(**groups):
        sim = simulate_histories(N, n, with_metrics=False, with_event_ids=False,
                                 truth_columns=True, random_state=17, return_result=True, **groups)
        return _fail_grid(sim.frame, n)[1]

    block = np.arange(N) * G // N  # the groups of n_groups=G
    same = (block[:, None] == block[None, :]) & ~np.eye(N, dtype=bool)
    across = block[:, None] != block[None, :]
    fail = failures(n_groups=G)
    corr = np.corrcoef(fail)
    control = np.corrcoef(failures())  # the same blocks of handlers without groups
    assert corr[same].mean() > 0.04
    assert abs(corr[across].mean()) < 0.005 and abs(control[same].mean()) < 0.005
    assert corr[same].mean() > 10 * max(abs(corr[across].mean()), abs(control[same].mean()))
    # a healthy member fails on the next step far more often when half of its
    # neighbours are failing than when none of them is
    next_fail = {"none": [], "half": []}
    for g in range(G):
        F = fail[block == g]
        share = (F.sum(axis=0) - F) / (F.shape[0] - 1)
        healthy = ~F[:, :-1]
        next_fail["none"].append(F[:, 1:][healthy & (share[:, :-1] == 0)])
        next_fail["half"].append(F[:, 1:][healthy & (share[:, :-1] >= 0.5)])
    none, half = (np.concatenate(next_fail[k]) for k in ("none", "half"))
    assert none.size > 10_000 and half.size > 1000
    assert half.mean() > 3 * none.mean(), (half.mean(), none.mean())


@pytest.mark.parametrize("finish_status", ["finished", None])
def test_finished_handlers_have_no_rows_after_their_finish(finish_status):
    phi, n, T = 0.004, 400, 300
    kwargs = dict(finish_rate=phi, start_spread=100, memory_window=3, with_metrics=False,
                  with_event_ids=False, truth_columns=True, clock="aligned", jitter=0.2,
                  random_state=23)
    sim = simulate_histories(n, T, **kwargs, finish_status=finish_status, return_result=True)
    df, handlers = sim.frame, sim.handlers
    assert len(handlers) == n and handlers["start_step"].between(0, 100).all()
    assert handlers["start_step"].nunique() > 50  # handlers of different ages
    finished = handlers["finish_step"].notna()
    first_step = handlers["start_step"].to_numpy()
    last_step = np.where(finished, handlers["finish_step"].fillna(0).to_numpy(), T - 1)
    if finish_status is None:
        last_step = last_step - finished.to_numpy()
    # each handler's rows are its steps start..last, one each, in order
    per = df.groupby("handler")["step"].agg(["min", "max", "size"])
    per = per.reindex(handlers.index)
    present = (last_step >= first_step)
    assert per["size"].notna().to_numpy().tolist() == present.tolist()
    np.testing.assert_array_equal(per["min"].dropna(), first_step[present])
    np.testing.assert_array_equal(per["max"].dropna(), last_step[present])
    np.testing.assert_array_equal(per["size"].dropna(), (last_step - first_step + 1)[present])
    is_finish_row = df["status"] == "finished"
    if finish_status:
        last = df.groupby("handler").tail(1).set_index("handler")
        np.testing.assert_array_equal(last["status"] == "finished", finished[last.index])
        assert is_finish_row.sum() == finished.sum()
    else:
        assert not is_finish_row.any()
        # the same histories as with a finish status, without those rows
        full = simulate_histories(n, T, **kwargs)
        pd.testing.assert_frame_equal(
            df, full[full["status"] != "finished"].reset_index(drop=True))
    # a late starter begins with memory W at its own step, at the wall time of that step
    firsts = df.groupby("handler").head(1)
    assert (firsts["memory"] == 3).all()
    offset = (firsts["timestamp"] - pd.Timestamp("2026-01-01", tz="UTC")) / pd.Timedelta("1min")
    assert ((offset >= firsts["step"]) & (offset <= firsts["step"] + 0.2)).all()
    # finishing is geometric in a handler's own steps: P(finished within m steps) = 1 - (1 - phi)^m
    p = 1 - (1 - phi) ** (T - first_step)
    assert abs(finished.sum() - p.sum()) <= 4 * np.sqrt((p * (1 - p)).sum())


def test_finishing_from_named_states_only():
    sim = simulate_histories(300, 400, finish_rate={"slow": 0.2}, with_metrics=True,
                             with_event_ids=False, truth_columns=True, random_state=29,
                             return_result=True)
    df = sim.frame
    prev = df.groupby("handler")["status"].shift()
    finish_rows = df["status"] == "finished"
    # every finish row that is not a handler's first follows a slow row
    assert (prev[finish_rows].dropna() == "slow").all()
    assert df.loc[finish_rows, ["latency_ms", "error_rate"]].isna().all().all()
    assert df.loc[~finish_rows, ["latency_ms", "error_rate"]].notna().all().all()
    # slow rows followed by a step of the run: each finishes next with probability 0.2
    slow_then = (prev == "slow") & (df["step"] > 0)
    n = slow_then.sum()
    rate = finish_rows[slow_then].mean()
    assert n > 1000 and abs(rate - 0.2) <= 4 * np.sqrt(0.2 * 0.8 / n), (rate, n)


def test_constant_finishing_weights_first_failures_by_survival(system):
    # With the same finish rate phi in every state, failing first at step k needs
    # k steps without finishing: P(fail within h) = sum_{k <= h} (1 - phi)^k g_k,
    # with g_k the plain chain's probability of a first failure at step k.
    phi, H = 0.15, 8
    plain = system.failure_probabilities(H, "flaky")
    g = np.diff(plain, axis=1, prepend=0.0)
    want = np.cumsum(g * (1 - phi) ** np.arange(1, H + 1), axis=1)
    rows = pd.DataFrame({"status": list(system.state_names) + ["gone"],
                         "handler_class": "flaky"})
    got = true_failure_probabilities(rows, H, finish_rate=phi, finish_status="gone")
    np.testing.assert_allclose(got[:5], want, rtol=1e-12)
    np.testing.assert_array_equal(got[5], np.zeros(H))


def test_frame_truth_with_groups_and_finishing_matches_the_result():
    kwargs = dict(n_groups=4, memory_window=3, finish_rate=0.01, start_spread=20,
                  mix_shifts=[(50, 70, {"payment_failed": 4.0})], duplicate_rate=0.05,
                  shuffle=True)
    sim = simulate_histories(24, 200, **kwargs, truth_columns=True, random_state=31,
                             return_result=True)
    from_frame = true_failure_probabilities(
        sim.frame, 6, memory_window=3, mix_shifts=sim.mix_shifts, n_groups=4, finish_rate=0.01)
    np.testing.assert_array_equal(sim.true_failure_probabilities(6), from_frame)
    np.testing.assert_array_equal(sim.dependency_down, sim.frame["dependency_down"])
    # a boost of 1 makes the dependency irrelevant: the truth without groups
    flat = simulate_histories(24, 200, **kwargs, group_outage_boost=1.0, truth_columns=True,
                              random_state=31)
    np.testing.assert_allclose(
        true_failure_probabilities(flat, 6, memory_window=3, mix_shifts=sim.mix_shifts,
                                   n_groups=4, group_outage_boost=1.0, finish_rate=0.01),
        true_failure_probabilities(flat, 6, memory_window=3, mix_shifts=sim.mix_shifts,
                                   finish_rate=0.01),
        rtol=1e-12, atol=1e-15,
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_groups": 3}, ConfigError,
         r"n_groups == 3 exceeds n_handlers == 2.*n_groups <= n_handlers"),
        ({"n_groups": -1}, ValueError, "n_groups == -1, must be >= 0"),
        ({"group_outage_rate": 1.5}, ConfigError,
         r"group_outage_rate == 1.5, must be a finite number in \[0, 1\]"),
        ({"group_outage_length": 0.5}, ConfigError,
         r"group_outage_length == 0.5.*\[1, inf\).*mean number of steps"),
        ({"group_outage_boost": 0}, ConfigError, r"group_outage_boost == 0, must be .* in \(0, inf\)"),
        ({"group_outage_boost": float("inf")}, ConfigError, "group_outage_boost == inf"),
        ({"group_outage_rate": "often"}, TypeError, "group_outage_rate must be a number"),
        ({"finish_rate": -0.1}, ConfigError,
         r"finish_rate == -0.1, must be a finite number in \[0, 1\]"),
        ({"finish_rate": {"ok": 2.0}}, ConfigError, r"finish_rate\['ok'\] == 2"),
        ({"finish_rate": {"done": 0.1}}, ConfigError, "finish_rate names state 'done'"),
        ({"finish_rate": "0.1"}, TypeError, "finish_rate must be a number or a dict"),
        ({"finish_status": "ok"}, ConfigError, "finish_status='ok' is one of the states"),
        ({"finish_status": 7}, TypeError, "finish_status must be a non-empty str or None"),
        ({"start_spread": 5}, ConfigError, "start_spread == 5 must be less than n_steps == 5"),
    ],
)
def test_bad_group_and_finish_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        simulate_histories(**{"n_handlers": 2, "n_steps": 5, **kwargs})


def test_frame_truth_with_groups_or_finishing_needs_its_inputs():
    df = simulate_histories(4, 10, n_groups=2, finish_rate=0.2, random_state=0)
    assert (df["status"] == "finished").any()
    with pytest.raises(ValueError, match=r"lacks columns \['dependency_down'\]"):
        true_failure_probabilities(df, 3, n_groups=2, finish_rate=0.2)
    with pytest.raises(ValueError, match="rows of finished handlers need their finish_rate"):
        true_failure_probabilities(df, 3)
    sim = simulate_histories(4, 10, n_groups=2, random_state=0, return_result=True)
    with pytest.raises(TypeError, match="pass them only with a DataFrame"):
        true_failure_probabilities(sim, 3, n_groups=2)


# ------------------------------------------------------------------ the filtered truth
@pytest.mark.parametrize("seed", [3, 5])
def test_dependency_filter_is_the_posterior_of_every_dependency_path(seed):
    # one group of two handlers over 7 steps: enumerate the 2^7 dependency paths, weigh each by its
    # chain probability and by the simulator's own probabilities of the transitions the row may see (every
    # member's steps before the row's, and the row's own), and read off P(down)
    import itertools

    W, rate, length, boost = 2, 0.2, 3.0, 6.0
    sim = simulate_histories(2, 7, n_groups=1, flaky_fraction=0.0, memory_window=W, group_outage_rate=rate,
                             group_outage_length=length, group_outage_boost=boost, with_metrics=False,
                             clock="aligned", random_state=seed, return_result=True)
    assert len(set(sim.memory)) == 3  # failures, so the memory moves
    system = sim.system
    M = system.group_event_matrices("normal", W, sim.memory_boost, boost)
    frame = sim.frame.reset_index(drop=True)
    state = frame["status"].map(system.state_names.index).to_numpy()
    event = frame["event_type"].map(system.event_names.index).to_numpy()
    who, step, memory = pd.factorize(frame["handler"])[0], sim.step, sim.memory
    A = np.array([[1 - rate, rate], [1 / length, 1 - 1 / length]])
    pi = np.array([1 / length, rate]) / (rate + 1 / length)
    got = sim._dependency_posterior()
    for i in range(len(frame)):  # a loop over rows and paths: the slow reference
        num = den = 0.0
        for path in itertools.product((0, 1), repeat=7):
            w = pi[path[0]] * np.prod([A[path[k - 1], path[k]] for k in range(1, 7)])
            for j in range(len(frame)):  # the transitions into row j the posterior of row i sees
                seen = step[j] < step[i] or j == i
                if seen and step[j] > 0:
                    k = j - 1  # the handler's previous row (rows: handler, then step)
                    w *= M[path[step[j]], memory[k], event[j], state[k], state[j]]
            num += w * path[step[i]]
            den += w
        assert got[i] == pytest.approx(num / den, rel=1e-9), i
    assert 0.05 < got.min() and got.max() > 0.5  # the members' failures move it


def test_filtered_risk_lies_between_the_risks_up_and_down_and_is_the_truth_without_groups():
    sim = simulate_histories(20, 200, n_groups=2, flaky_fraction=0.2, memory_window=3, finish_rate=0.01,
                             with_metrics=False, random_state=2, return_result=True)
    seen, truth = sim.filtered_failure_probabilities(4), sim.true_failure_probabilities(4)
    from dataclasses import replace
    up = replace(sim, dependency_down=np.zeros(len(truth), bool)).true_failure_probabilities(4)
    down = replace(sim, dependency_down=np.ones(len(truth), bool)).true_failure_probabilities(4)
    assert np.all((seen >= np.minimum(up, down) - 1e-12) & (seen <= np.maximum(up, down) + 1e-12))
    q = sim._dependency_posterior()[:, None]
    np.testing.assert_allclose(seen, (1 - q) * up + q * down, rtol=1e-12)
    plain = simulate_histories(10, 100, memory_window=3, with_metrics=False, random_state=2, return_result=True)
    np.testing.assert_array_equal(plain.filtered_failure_probabilities(3), plain.true_failure_probabilities(3))
