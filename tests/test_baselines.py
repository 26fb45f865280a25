"""Tests of the gradient-boosting baseline and its history features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import brier_score_loss, roc_auc_score

from markovfault.backtest._baselines import GradientBoostingBaseline, history_features
from markovfault.exceptions import DataWarning, NotFittedError
from markovfault.trajectories import Trajectories

NAN = np.nan


# ---------------------------------------------------------------- helpers
def tiny_frame(time):
    """Entity a: 5 steps, entity b: 3 steps; state 1 ("down") is the failure."""
    return pd.DataFrame(
        {
            "entity": list("aaaaabbb"),
            "time": time,
            "event": ["e0", "e1", "e0", "e0", "e1", "e1", "e1", "e0"],
        }
    )


TINY_STATE = [0, 1, 1, 0, 0, 1, 0, 0]
TINY_INT_TIME = [10, 12, 15, 16, 20, 3, 4, 7]


def tiny_traj(time=TINY_INT_TIME):
    return Trajectories.from_frame(
        tiny_frame(time), TINY_STATE, ["ok", "down"], failure=["down"]
    )


def random_traj(rng, n_entities=12, max_len=30, n_states=4, n_events=3, datetime=False):
    lengths = rng.randint(1, max_len, size=n_entities)
    n = int(lengths.sum())
    state = rng.randint(0, n_states, size=n)
    event = rng.randint(0, n_events, size=n)
    traj = Trajectories.from_codes(
        state, event, lengths, state_names=[f"s{k}" for k in range(n_states)],
        event_names=[f"e{k}" for k in range(n_events)], failure=["s1", "s3"],
    )
    steps = rng.randint(1, 50, size=n).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    time = np.cumsum(steps)
    time -= np.repeat(time[starts], lengths)  # each entity's clock starts at 0
    if datetime:
        traj.time = time * 1_000_000_000 + 1_700_000_000_000_000_000
        traj.time_kind = "datetime"
    else:
        traj.time = time
    return traj


def naive_features(traj, idx, n_lags, window):
    """Row-by-row reference for history_features."""
    fail = traj.is_failure[traj.state]
    scale = 1e9 if traj.time_kind == "datetime" else 1.0
    rows = []
    for i in idx:
        s = i
        while s > 0 and traj.entity[s - 1] == traj.entity[i]:
            s -= 1
        lag = lambda arr, k: float(arr[i - k]) if i - k >= s else NAN  # noqa: E731
        states = [lag(traj.state, k) for k in range(n_lags + 1)]
        events = [lag(traj.event, k) for k in range(n_lags + 1)]
        n_fail = sum(fail[j] for j in range(max(s, i - window + 1), i + 1))
        since = window
        for j in range(i, s - 1, -1):
            if fail[j]:
                since = min(i - j, window)
                break
        dt = (traj.time[i] - traj.time[i - 1]) / scale if i > s else NAN
        rows.append(states + events + [n_fail, since, dt])
    return np.array(rows, dtype=float).reshape(len(idx), 2 * (n_lags + 1) + 3)


def burst_data(rng, n_entities, n_steps, horizons=(1, 3)):
    """Failures with memory: after a failure at t, t+1..t+3 fail with prob. 0.5.

    Base failure rate 0.02; events are noise. Returns the trajectories, every
    origin and its labels (-1: censored, fewer than h steps left, none failed).
    """
    state = np.zeros((n_entities, n_steps), dtype=np.int64)
    p = np.full(n_entities, 0.02)
    recent = np.zeros(n_entities, dtype=np.int64)  # steps left in the "after failure" regime
    for t in range(n_steps):
        fail = rng.random_sample(n_entities) < np.where(recent > 0, 0.5, p)
        state[:, t] = fail
        recent = np.where(fail, 3, np.maximum(recent - 1, 0))
    event = rng.randint(0, 3, size=state.shape)
    traj = Trajectories.from_codes(
        state.ravel(), event.ravel(), np.full(n_entities, n_steps),
        state_names=["ok", "down"], event_names=["a", "b", "c"], failure=["down"],
    )
    y = np.full((n_entities, n_steps, len(horizons)), -1, dtype=np.int64)
    for c, h in enumerate(horizons):
        for t in range(n_steps):
            ahead = state[:, t + 1 : t + 1 + h]
            any_fail = ahead.any(axis=1)
            full = ahead.shape[1] == h
            y[:, t, c] = np.where(any_fail, 1, np.where(full, 0, -1))
    return traj, np.arange(traj.n_steps), y.reshape(-1, len(horizons))


# --------------------------------------------------------------- features
EXPECTED_TINY = np.array(
    # state lag1 lag2 | event lag1 lag2 | n_fail since dt        (window=3, n_lags=2)
    [
        [0, NAN, NAN, 0, NAN, NAN, 0, 3, NAN],  # a0: no history, no failure -> since = window
        [1, 0, NAN, 1, 0, NAN, 1, 0, 2],  # a1: fails now -> since 0; 12 - 10
        [1, 1, 0, 0, 1, 0, 2, 0, 3],  # a2: steps 0..2 hold 2 failures
        [0, 1, 1, 0, 0, 1, 2, 1, 1],  # a3: steps 1..3 -> 2 failures; last at a2
        [0, 0, 1, 1, 0, 0, 1, 2, 4],  # a4: steps 2..4 -> 1 failure; last at a2
        [1, NAN, NAN, 1, NAN, NAN, 1, 0, NAN],  # b0: lags must not reach into a
        [0, 1, NAN, 1, 1, NAN, 1, 1, 1],  # b1
        [0, 0, 1, 0, 1, 1, 1, 2, 3],  # b2
    ]
)


def test_tiny_hand_checked_integer_time():
    traj = tiny_traj()
    X, mask, names = history_features(traj, np.arange(8), n_lags=2, window=3)
    assert names == [
        "state", "state_lag1", "state_lag2", "event", "event_lag1", "event_lag2",
        "n_failures_window", "steps_since_failure", "time_since_previous",
    ]
    np.testing.assert_array_equal(mask, [True] * 6 + [False] * 3)
    assert X.dtype == np.float64
    np.testing.assert_array_equal(X, EXPECTED_TINY)


def test_tiny_datetime_time_in_seconds():
    base = {"a": pd.Timestamp("2024-03-01 12:00"), "b": pd.Timestamp("1999-12-31 23:59")}
    time = [base[e] + pd.Timedelta(seconds=t) for e, t in zip("aaaaabbb", TINY_INT_TIME)]
    traj = tiny_traj(pd.to_datetime(time))
    assert traj.time_kind == "datetime"
    X, _, _ = history_features(traj, np.arange(8), n_lags=2, window=3)
    np.testing.assert_array_equal(X, EXPECTED_TINY)


def test_tiny_window_caps_failure_features():
    traj = tiny_traj()
    X, _, _ = history_features(traj, np.arange(8), n_lags=0, window=2)
    # window 2: a: steps {0}, {0,1}, {1,2}, {2,3}, {3,4}; b: {5}, {5,6}, {6,7}
    np.testing.assert_array_equal(X[:, 2], [0, 1, 2, 1, 0, 1, 1, 0])
    # a4 and b2 are 2 steps after a failure = the cap; a0 has none -> window
    np.testing.assert_array_equal(X[:, 3], [2, 0, 0, 1, 2, 0, 1, 2])
    X1, _, _ = history_features(traj, np.arange(8), n_lags=0, window=1)
    np.testing.assert_array_equal(X1[:, 3], [1, 0, 0, 1, 1, 0, 1, 1])
    np.testing.assert_array_equal(X1[:, 2], np.asarray(TINY_STATE))


def test_origin_subset_and_order():
    traj = tiny_traj()
    X, _, _ = history_features(traj, np.array([7, 0, 5, 5]), n_lags=2, window=3)
    np.testing.assert_array_equal(X, EXPECTED_TINY[[7, 0, 5, 5]])
    X0, _, _ = history_features(traj, np.zeros(0, dtype=int))
    assert X0.shape == (0, 11)


@pytest.mark.parametrize("datetime", [False, True])
@pytest.mark.parametrize("n_lags, window", [(0, 1), (3, 10), (5, 4)])
def test_vectorised_matches_naive_loop(datetime, n_lags, window):
    rng = np.random.RandomState(42)
    traj = random_traj(rng, datetime=datetime)
    idx = rng.randint(0, traj.n_steps, size=150)
    X, _, _ = history_features(traj, idx, n_lags=n_lags, window=window)
    np.testing.assert_array_equal(X, naive_features(traj, idx, n_lags, window))


def test_no_feature_depends_on_absolute_time_or_position():
    """The same local window gives the same features wherever and whenever it lies."""
    rng = np.random.RandomState(42)
    n_lags, window = 3, 6
    reach = max(n_lags, window - 1)  # features look back at most this many steps
    core_state = rng.randint(0, 4, size=40)
    core_event = rng.randint(0, 3, size=40)
    core_time = np.cumsum(rng.randint(1, 9, size=40))

    def build(prefix_len, other_len, t0):
        pre_s, pre_e = rng.randint(0, 4, size=prefix_len), rng.randint(0, 3, size=prefix_len)
        oth_s, oth_e = rng.randint(0, 4, size=other_len), rng.randint(0, 3, size=other_len)
        state = np.concatenate([oth_s, pre_s, core_state])
        event = np.concatenate([oth_e, pre_e, core_event])
        lengths = [n for n in (other_len, prefix_len + 40) if n]
        traj = Trajectories.from_codes(
            state, event, lengths, state_names=list("0123"), event_names=list("abc"),
            failure=["1", "3"],
        )
        pre_t = core_time[0] - np.arange(prefix_len, 0, -1) * 5
        traj.time = np.concatenate([np.arange(other_len), pre_t, core_time]) + t0
        return traj, other_len + prefix_len  # position of the core's first step

    traj1, off1 = build(0, 0, 0)
    traj2, off2 = build(25, 17, 10**12)
    traj3, off3 = build(300, 0, -(10**9))
    inner = np.arange(reach, 40)  # core steps whose look-back stays in the core
    X1, _, _ = history_features(traj1, inner + off1, n_lags=n_lags, window=window)
    for traj, off in ((traj2, off2), (traj3, off3)):
        X, _, _ = history_features(traj, inner + off, n_lags=n_lags, window=window)
        np.testing.assert_array_equal(X, X1)

    # shifting every clock by a constant changes nothing, boundaries included
    traj4, _ = build(0, 0, 123_456_789)
    every = np.arange(40)
    np.testing.assert_array_equal(
        history_features(traj4, every, n_lags=n_lags, window=window)[0],
        history_features(traj1, every, n_lags=n_lags, window=window)[0],
    )


def test_feature_errors():
    traj = tiny_traj()
    with pytest.raises(ValueError, match="idx\\[1\\] = 8 is not a step"):
        history_features(traj, np.array([0, 8]))
    with pytest.raises(ValueError, match="is not a step"):
        history_features(traj, np.array([-1]))
    with pytest.raises(ValueError, match="integer step indices"):
        history_features(traj, np.array([0.5]))
    with pytest.raises(ValueError, match="n_lags == -1, must be >= 0"):
        history_features(traj, np.array([0]), n_lags=-1)
    with pytest.raises(ValueError, match="window == 0, must be >= 1"):
        history_features(traj, np.array([0]), window=0)
    with pytest.raises(TypeError, match="Trajectories"):
        history_features(np.zeros(3), np.array([0]))


# --------------------------------------------------------------- baseline
def test_learns_failure_memory():
    rng = np.random.RandomState(42)
    traj, idx, y = burst_data(rng, n_entities=80, n_steps=100)
    train = traj.entity < 50
    test = ~train
    model = GradientBoostingBaseline(max_iter=50).fit(traj, idx[train], y[train])
    assert model.n_horizons_ == 2 and model.models_[0] is not None
    p = model.predict_proba(traj, idx[test])
    assert p.shape == (test.sum(), 2)
    assert ((p >= 0) & (p <= 1)).all()
    for h in range(2):
        ok = y[test, h] >= 0
        auc = roc_auc_score(y[test, h][ok], p[ok, h])
        assert auc > 0.7, (h, auc)
        base_rate = y[train, h][y[train, h] >= 0].mean()
        brier = brier_score_loss(y[test, h][ok], p[ok, h])
        brier_const = brier_score_loss(y[test, h][ok], np.full(ok.sum(), base_rate))
        assert brier < 0.9 * brier_const, (h, brier, brier_const)


def test_single_class_horizon_gives_class_rate():
    rng = np.random.RandomState(42)
    traj, idx, y = burst_data(rng, n_entities=20, n_steps=50, horizons=(1,))
    y3 = np.column_stack([y[:, 0], np.where(y[:, 0] >= 0, 0, -1), np.where(y[:, 0] >= 0, 1, -1)])
    model = GradientBoostingBaseline(max_iter=10).fit(traj, idx, y3)
    assert model.models_[0] is not None
    assert model.models_[1] is None and model.models_[2] is None
    assert set(model.notes_) == {1, 2}
    assert "constant forecast 0.0" in model.notes_[1]
    p = model.predict_proba(traj, idx[:30])
    np.testing.assert_array_equal(p[:, 1], 0.0)
    np.testing.assert_array_equal(p[:, 2], 1.0)
    np.testing.assert_array_equal(model.constants_[1:], [0.0, 1.0])


def test_all_censored_horizon_warns_and_gives_nan():
    traj = tiny_traj()
    y = np.array([[1, -1], [0, -1], [1, -1], [0, -1], [0, -1], [1, -1], [0, -1], [0, -1]])
    with pytest.warns(DataWarning, match="column 1: every training label is censored"):
        model = GradientBoostingBaseline(max_iter=5).fit(traj, np.arange(8), y)
    p = model.predict_proba(traj, np.arange(8))
    assert np.isnan(p[:, 1]).all() and np.isfinite(p[:, 0]).all()


def test_censored_labels_are_excluded():
    rng = np.random.RandomState(42)
    traj, idx, y = burst_data(rng, n_entities=30, n_steps=60)
    ref = GradientBoostingBaseline(max_iter=20).fit(traj, idx, y)
    p_ref = ref.predict_proba(traj, idx)

    # rows censored at every horizon, pointing at arbitrary steps: no effect
    junk = rng.randint(0, traj.n_steps, size=500)
    idx2 = np.concatenate([idx[:900], junk, idx[900:]])
    y2 = np.concatenate([y[:900], np.full((500, 2), -1), y[900:]])
    model = GradientBoostingBaseline(max_iter=20).fit(traj, idx2, y2)
    np.testing.assert_array_equal(model.predict_proba(traj, idx), p_ref)

    # censored at horizon 2 only: horizon 2 fits as if those rows were absent
    drop = rng.random_sample(idx.shape[0]) < 0.3
    y3 = y.copy()
    y3[drop, 1] = -1
    both = GradientBoostingBaseline(max_iter=20).fit(traj, idx, y3)
    without = GradientBoostingBaseline(max_iter=20).fit(traj, idx[~drop], y[~drop])
    np.testing.assert_array_equal(
        both.predict_proba(traj, idx)[:, 1], without.predict_proba(traj, idx)[:, 1]
    )
    np.testing.assert_array_equal(both.predict_proba(traj, idx)[:, 0], p_ref[:, 0])


def test_deterministic_with_random_state_and_subsample():
    rng = np.random.RandomState(42)
    traj, idx, y = burst_data(rng, n_entities=30, n_steps=60)
    fits = [
        GradientBoostingBaseline(max_iter=20, max_train=700, random_state=s).fit(traj, idx, y)
        for s in (3, 3, 4)
    ]
    assert fits[0].n_train_ == 700
    p = [f.predict_proba(traj, idx) for f in fits]
    np.testing.assert_array_equal(p[0], p[1])
    assert not np.array_equal(p[0], p[2])  # another subsample


def test_many_state_codes_are_bucketed():
    rng = np.random.RandomState(42)
    n = 3000
    state = rng.randint(0, 300, size=n)
    state[: 300] = np.arange(300)  # every code occurs
    traj = Trajectories.from_codes(
        state, lengths=[1500, 1500], state_names=[f"s{k}" for k in range(300)],
        failure=[f"s{k}" for k in range(0, 300, 7)],
    )
    fail = traj.is_failure[state]
    y = np.append(fail[1:], False).astype(int)[:, None]
    y[[1499, 2999]] = -1
    model = GradientBoostingBaseline(max_iter=10).fit(traj, np.arange(n), y)
    lut = model.category_maps_["state"]
    assert lut.shape == (300,) and lut.max() == 254
    assert np.unique(lut).size == 255
    assert "300 state codes" in model.notes_["categories"]
    assert model.predict_proba(traj, np.arange(n)).shape == (n, 1)


def test_baseline_errors():
    traj = tiny_traj()
    idx = np.arange(8)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        GradientBoostingBaseline().predict_proba(traj, idx)
    with pytest.raises(ValueError, match="y has shape \\(7, 1\\), expected \\(8, n_horizons\\)"):
        GradientBoostingBaseline().fit(traj, idx, np.zeros((7, 1), dtype=int))
    with pytest.raises(ValueError, match="got values \\[2\\]"):
        GradientBoostingBaseline().fit(traj, idx, np.full(8, 2))
    with pytest.raises(ValueError, match="max_train == 0"):
        GradientBoostingBaseline(max_train=0).fit(traj, idx, np.zeros(8, dtype=int))
    model = GradientBoostingBaseline(max_iter=5).fit(traj, idx, np.array(TINY_STATE))
    model.set_params(n_lags=1)
    with pytest.raises(ValueError, match="fit again"):
        model.predict_proba(traj, idx)
