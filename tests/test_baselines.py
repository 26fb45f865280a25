"""Tests of the gradient-boosting baseline and its history features."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import brier_score_loss, roc_auc_score

from markovfault.backtest import _baselines
from markovfault.backtest._baselines import (
    NO_FAILURE,
    GradientBoostingBaseline,
    first_failure_classes,
    history_features,
)
from markovfault.exceptions import ConfigError, DataWarning, NotFittedError
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


def burst_data(rng, n_entities, n_steps, horizon=3):
    """Failures with memory: after a failure at t, t+1..t+3 fail with prob. 0.5.

    Base failure rate 0.02; events are noise. Returns the trajectories, every
    origin, its labels for h = 1..horizon (-1: censored, fewer than h steps
    left, none failed) and the regime after each step (``recent``: steps left
    in the "after failure" regime, 0..3), which fixes the true probabilities
    (:func:`burst_truth`).
    """
    state = np.zeros((n_entities, n_steps), dtype=np.int64)
    regime = np.zeros((n_entities, n_steps), dtype=np.int64)
    recent = np.zeros(n_entities, dtype=np.int64)  # steps left in the "after failure" regime
    for t in range(n_steps):
        fail = rng.random_sample(n_entities) < np.where(recent > 0, 0.5, 0.02)
        state[:, t] = fail
        recent = np.where(fail, 3, np.maximum(recent - 1, 0))
        regime[:, t] = recent
    event = rng.randint(0, 3, size=state.shape)
    traj = Trajectories.from_codes(
        state.ravel(), event.ravel(), np.full(n_entities, n_steps),
        state_names=["ok", "down"], event_names=["a", "b", "c"], failure=["down"],
    )
    y = np.full((n_entities, n_steps, horizon), -1, dtype=np.int64)
    for h in range(1, horizon + 1):
        for t in range(n_steps):
            ahead = state[:, t + 1 : t + 1 + h]
            full = ahead.shape[1] == h
            y[:, t, h - 1] = np.where(ahead.any(axis=1), 1, 0 if full else -1)
    return traj, np.arange(traj.n_steps), y.reshape(-1, horizon), regime.ravel()


def burst_truth(horizon):
    """P(fail within h | regime r) of burst_data, (4, horizon), by the recursion
    f_h(r) = p(r) + (1 - p(r)) f_{h-1}(max(r - 1, 0)), f_0 = 0, p(r) = 0.5 if r > 0 else 0.02."""
    p = np.array([0.02, 0.5, 0.5, 0.5])
    f = np.zeros((4, horizon + 1))
    for h in range(1, horizon + 1):
        f[:, h] = p + (1 - p) * f[np.maximum(np.arange(4) - 1, 0), h - 1]
    return f[:, 1:]


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


# ----------------------------------------------------------- the classes
# H = 4. Each row, the class a hand reads off it, and how often it occurs (uneven counts).
HAND_ROWS = [
    ([0, 0, 1, 1], 3, 3),  # first failure seen at h = 3
    ([1, 1, 1, 1], 1, 1),  # at the first step
    ([0, 0, 0, 0], NO_FAILURE, 2),  # 4 steps seen, none failed
    ([0, 0, 0, 1], 4, 4),  # at the last step of the horizon
    ([0, 1, -1, -1], 2, 1),  # failed at 2, fewer than 3 steps before the cutoff: still class 2
    ([0, 0, -1, -1], -1, 5),  # 2 steps seen, no failure: censored at H
    ([-1, -1, -1, -1], -1, 2),
    ([0, 0, 0, -1], -1, 1),  # 3 steps seen: nothing known of step 4
]


def hand_labels():
    rows = np.concatenate([np.tile(r, (n, 1)) for r, _, n in HAND_ROWS])
    classes = np.concatenate([np.full(n, c) for _, c, n in HAND_ROWS])
    return rows, classes


def test_first_failure_classes_hand_made():
    y, expected = hand_labels()
    np.testing.assert_array_equal(first_failure_classes(y), expected)
    # shuffled rows: row by row
    order = np.random.RandomState(42).permutation(len(y))
    np.testing.assert_array_equal(first_failure_classes(y[order]), expected[order])
    # one horizon (1-D y): the class is the label itself, -1 stays censored
    np.testing.assert_array_equal(first_failure_classes([1, 0, -1, 1]), [1, 0, -1, 1])
    assert first_failure_classes(np.zeros((0, 3), dtype=int)).shape == (0,)


def test_fit_counts_classes_censored_and_candidates():
    y, _ = hand_labels()  # 19 rows: 11 with a class, 8 censored at H
    rng = np.random.RandomState(42)
    traj = random_traj(rng, n_entities=4, max_len=40)
    idx = rng.choice(traj.n_steps, size=len(y), replace=False)
    model = GradientBoostingBaseline(max_iter=5).fit(traj, idx, y)
    # classes 0..4 occur 2, 1, 1, 3, 4 times
    np.testing.assert_array_equal(model.class_counts_, [2, 1, 1, 3, 4])
    np.testing.assert_array_equal(model.classes_, [0, 1, 2, 3, 4])
    assert (model.n_candidates_, model.n_censored_, model.n_train_) == (11, 8, 11)
    assert "8 of 19 origins are censored at h = 4" in model.notes_["censored"]
    kept = np.concatenate([np.full(n, c >= 0) for _, c, n in HAND_ROWS])
    np.testing.assert_array_equal(model.train_idx_, idx[kept])
    assert model.n_horizons_ == 4 and "sample" not in model.notes_


@pytest.mark.parametrize("row", [[1, 0, 0], [0, 1, 0], [-1, 0, 0], [-1, 1, 1], [0, -1, 1]])
def test_labels_not_monotone_in_h_are_refused(row):
    y = np.array([[0, 0, 0], row, [0, 0, 1]])
    with pytest.raises(ValueError, match=r"y\[1\] = .* is not monotone in the horizon"):
        first_failure_classes(y)
    with pytest.raises(ValueError, match="not monotone"):
        GradientBoostingBaseline().fit(tiny_traj(), [0, 1, 2], y)


# ------------------------------------------------------------- forecasts
@pytest.fixture(scope="module")
def burst_fit():
    rng = np.random.RandomState(42)
    traj, idx, y, regime = burst_data(rng, n_entities=200, n_steps=150, horizon=5)
    train = traj.entity < 150
    model = GradientBoostingBaseline().fit(traj, idx[train], y[train])
    return traj, idx[~train], y[~train], regime[~train], model


def test_cumulative_forecast_is_the_sum_of_the_classifiers_class_probabilities(burst_fit):
    traj, idx, _, _, model = burst_fit
    clf = model.classifier_
    # the classifier's own class probabilities on the features (identity category maps:
    # 2 states and 3 events)
    X, _, _ = history_features(traj, idx, n_lags=model.n_lags, window=model.window)
    P = clf.predict_proba(X)
    p = model.predict_proba(traj, idx)
    assert p.shape == (len(idx), 5)
    for h in range(1, 6):
        expected = P[:, (clf.classes_ >= 1) & (clf.classes_ <= h)].sum(axis=1)
        np.testing.assert_allclose(p[:, h - 1], expected, rtol=1e-12, atol=1e-15)
    assert (np.diff(p, axis=1) >= 0).all()
    np.testing.assert_allclose(p[:, -1], 1 - P[:, list(clf.classes_).index(NO_FAILURE)],
                               rtol=1e-12, atol=1e-15)
    full = model.predict_class_proba(traj, idx)
    np.testing.assert_allclose(full.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(full[:, clf.classes_], P)


def test_learns_the_known_probabilities_of_failure_bursts(burst_fit):
    traj, idx, y, regime, model = burst_fit
    truth = burst_truth(5)[regime]  # (n, 5): exact P(fail within h) per origin
    p = model.predict_proba(traj, idx)
    # each regime's mean forecast recovers its exact probability (regime 0, the calm one,
    # is 3/4 of the origins; the burst regimes a few hundred each)
    for r in range(4):
        sel = regime == r
        np.testing.assert_allclose(p[sel].mean(axis=0), truth[sel][0], atol=0.03, err_msg=f"r={r}")
    assert np.abs(p - truth).mean() < 0.012
    for h in range(5):
        ok = y[:, h] >= 0
        brier = brier_score_loss(y[ok, h], p[ok, h])
        brier_truth = brier_score_loss(y[ok, h], truth[ok, h])
        base = y[ok, h].mean()
        assert brier < 1.01 * brier_truth, (h, brier, brier_truth)
        assert brier < 0.8 * brier_score_loss(y[ok, h], np.full(ok.sum(), base))
        assert roc_auc_score(y[ok, h], p[ok, h]) > 0.99 * roc_auc_score(y[ok, h], truth[ok, h])


def test_the_sample_caps_training_origins_reproducibly(caplog):
    rng = np.random.RandomState(42)
    traj, idx, y, _ = burst_data(rng, n_entities=30, n_steps=60)
    known = first_failure_classes(y) >= 0
    n_cand = int(known.sum())
    assert n_cand > 700
    with caplog.at_level(logging.INFO, logger="markovfault.backtest._baselines"):
        fits = [GradientBoostingBaseline(max_iter=20, max_train=700, random_state=s)
                .fit(traj, idx, y) for s in (3, 3, 4)]
    assert all(f.n_train_ == 700 and f.n_candidates_ == n_cand for f in fits)
    assert f"sample of 700 of {n_cand} origins" in caplog.text
    assert fits[0].notes_["sample"] == f"700 of {n_cand} training origins sampled"
    # the sample: 700 of the candidates drawn by numpy with the seed, order kept
    draw = np.sort(np.random.RandomState(3).choice(n_cand, 700, replace=False))
    np.testing.assert_array_equal(fits[0].train_idx_, idx[known][draw])
    np.testing.assert_array_equal(fits[1].train_idx_, fits[0].train_idx_)
    assert not np.array_equal(fits[2].train_idx_, fits[0].train_idx_)
    p = [f.predict_proba(traj, idx) for f in fits]
    np.testing.assert_array_equal(p[0], p[1])
    assert not np.array_equal(p[0], p[2])
    # under the cap: every candidate, no note, no log line
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="markovfault.backtest._baselines"):
        whole = GradientBoostingBaseline(max_iter=5, max_train=n_cand).fit(traj, idx, y)
    assert whole.n_train_ == n_cand and "sample" not in whole.notes_ and not caplog.text
    np.testing.assert_array_equal(whole.train_idx_, idx[known])


def test_censored_origins_change_nothing():
    rng = np.random.RandomState(42)
    traj, idx, y, _ = burst_data(rng, n_entities=30, n_steps=60)
    ref = GradientBoostingBaseline(max_iter=20, max_train=1000).fit(traj, idx, y)
    # rows censored at H, pointing at arbitrary steps: neither the sample nor the fit moves
    junk = rng.randint(0, traj.n_steps, size=500)
    idx2 = np.concatenate([idx[:900], junk, idx[900:]])
    y2 = np.concatenate([y[:900], np.full((500, 3), -1), y[900:]])
    model = GradientBoostingBaseline(max_iter=20, max_train=1000).fit(traj, idx2, y2)
    assert model.n_censored_ == ref.n_censored_ + 500
    np.testing.assert_array_equal(model.train_idx_, ref.train_idx_)
    np.testing.assert_array_equal(model.predict_proba(traj, idx), ref.predict_proba(traj, idx))


# --------------------------------------------------------- missing classes
def test_classes_absent_from_training_get_probability_zero():
    rng = np.random.RandomState(42)
    traj, idx, y, _ = burst_data(rng, n_entities=40, n_steps=80, horizon=4)
    cls = first_failure_classes(y)
    keep = (cls != 2) & (cls != 4)  # no origin fails first at step 2 or 4
    model = GradientBoostingBaseline(max_iter=20).fit(traj, idx[keep], y[keep])
    np.testing.assert_array_equal(model.classes_, [0, 1, 3])
    np.testing.assert_array_equal(model.class_counts_[[2, 4]], [0, 0])
    full = model.predict_class_proba(traj, idx)
    np.testing.assert_array_equal(full[:, [2, 4]], 0.0)
    p = model.predict_proba(traj, idx)
    np.testing.assert_array_equal(p[:, 1], p[:, 0])  # nothing added at h = 2
    np.testing.assert_array_equal(p[:, 3], p[:, 2])
    assert (p[:, 2] > p[:, 1]).all()  # class 3 has a probability


def test_rare_class_of_one_origin_fits_with_early_stopping():
    rng = np.random.RandomState(42)
    traj, idx, y, _ = burst_data(rng, n_entities=40, n_steps=80, horizon=4)
    cls = first_failure_classes(y)
    keep = (cls != 4) | (np.arange(len(cls)) == np.flatnonzero(cls == 4)[0])  # one class-4 origin
    model = GradientBoostingBaseline(max_iter=100).fit(traj, idx[keep], y[keep])
    assert model.class_counts_[4] == 1
    assert model.classifier_.n_iter_ < 100  # stopped early on the validation split
    assert 4 in model.classifier_.classes_
    assert (model.predict_class_proba(traj, idx)[:, 4] > 0).all()


def test_validation_split_keeps_every_class_in_training():
    # 40 classes of one origin and a large class 0: a tenth of the rows is drawn, then
    # every drawn origin whose class is nowhere else goes back to training
    cls = np.concatenate([np.zeros(960, dtype=int), np.arange(1, 41)])
    for seed in range(5):
        val = _baselines._validation_rows(cls, np.random.RandomState(seed))
        drawn = np.zeros(len(cls), dtype=bool)
        drawn[np.random.RandomState(seed).choice(len(cls), 100, replace=False)] = True
        np.testing.assert_array_equal(val, drawn & (cls == 0))
        assert set(cls[~val]) == set(cls)
    two = np.repeat([0, 1], [1, 1])  # too few to hold anything out: nothing drawn stays drawn
    assert not _baselines._validation_rows(two, np.random.RandomState(0)).any()


def test_without_validation_data_in_fit_a_singleton_class_stops_nothing(monkeypatch):
    """scikit-learn < 1.7 draws its own stratified split, which needs two of every class."""
    monkeypatch.setattr(_baselines, "_accepts_validation_data", lambda: False)
    rng = np.random.RandomState(42)
    traj, idx, y, _ = burst_data(rng, n_entities=40, n_steps=80, horizon=4)
    cls = first_failure_classes(y)
    one = (cls != 4) | (np.arange(len(cls)) == np.flatnonzero(cls == 4)[0])
    single = GradientBoostingBaseline(max_iter=30).fit(traj, idx[one], y[one])
    assert single.classifier_.n_iter_ == 30 and not single.classifier_.do_early_stopping_
    several = GradientBoostingBaseline(max_iter=100).fit(traj, idx, y)
    assert several.classifier_.do_early_stopping_ and several.classifier_.n_iter_ < 100


@pytest.mark.parametrize("cls, expected", [
    (NO_FAILURE, [0.0, 0.0, 0.0]),
    (2, [0.0, 1.0, 1.0]),
    (1, [1.0, 1.0, 1.0]),
])
def test_one_class_gives_its_constant_forecast(cls, expected):
    traj = tiny_traj()
    row = {NO_FAILURE: [0, 0, 0], 2: [0, 1, 1], 1: [1, 1, 1]}[cls]
    y = np.array([row] * 5 + [[0, -1, -1]] * 3)
    model = GradientBoostingBaseline().fit(traj, np.arange(8), y)
    assert model.classifier_ is None and model.classes_.tolist() == [cls]
    assert "the forecast is constant" in model.notes_["classes"]
    np.testing.assert_array_equal(model.predict_proba(traj, np.arange(8)), [expected] * 8)


def test_no_class_warns_and_gives_nan():
    traj = tiny_traj()
    y = np.array([[0, -1], [-1, -1], [0, -1], [0, -1], [0, -1], [0, -1], [0, -1], [-1, -1]])
    with pytest.warns(DataWarning, match="none of the 8 training origins has a class"):
        model = GradientBoostingBaseline().fit(traj, np.arange(8), y)
    assert model.classifier_ is None and model.n_train_ == 0
    assert np.isnan(model.predict_proba(traj, np.arange(8))).all()
    with pytest.warns(DataWarning, match="none of the 0"):
        empty = GradientBoostingBaseline().fit(traj, np.zeros(0, dtype=int), np.zeros((0, 2)))
    assert empty.predict_proba(traj, np.arange(3)).shape == (3, 2)


# ------------------------------------------------------------------ misc
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


def test_scikit_learn_only_when_fitting():
    import ast

    tree = ast.parse(open(_baselines.__file__).read())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = [a.name for n in top for a in n.names] + [n.module or "" for n in top
                                                      if isinstance(n, ast.ImportFrom)]
    assert not [m for m in names if m.split(".")[0] == "sklearn"], names
    code = ("import sys\n"
            "import numpy as np\n"
            "from markovfault.backtest._baselines import GradientBoostingBaseline\n"
            "from markovfault.trajectories import Trajectories\n"
            "from markovfault._estimator import clone\n"
            "m = clone(GradientBoostingBaseline(max_train=5)).set_params(window=4)\n"
            "assert repr(m) == 'GradientBoostingBaseline(max_train=5, window=4)', repr(m)\n"
            "assert 'sklearn.ensemble' not in sys.modules\n"
            "traj = Trajectories.from_codes([0, 1, 0, 0, 1, 0], failure=['1'])\n"
            "m.fit(traj, np.arange(5), [1, 0, 0, 1, 0])\n"
            "assert 'sklearn.ensemble' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_sklearn_clone_keeps_parameters():
    from sklearn.base import clone

    model = GradientBoostingBaseline(max_train=123, learning_rate=0.05, early_stopping="auto")
    assert clone(model).get_params() == model.get_params()


def test_baseline_errors():
    traj = tiny_traj()
    idx = np.arange(8)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        GradientBoostingBaseline().predict_proba(traj, idx)
    with pytest.raises(ValueError, match="y has shape \\(7, 1\\), expected \\(8, n_horizons\\)"):
        GradientBoostingBaseline().fit(traj, idx, np.zeros((7, 1), dtype=int))
    with pytest.raises(ValueError, match="n_horizons >= 1"):
        GradientBoostingBaseline().fit(traj, idx, np.zeros((8, 0), dtype=int))
    with pytest.raises(ValueError, match="got values \\[2\\]"):
        GradientBoostingBaseline().fit(traj, idx, np.full(8, 2))
    bad = [({"max_train": 0}, "max_train == 0, must be >= 1"),
           ({"max_iter": 1.5}, "max_iter must be an integer"),
           ({"max_leaf_nodes": 1}, "max_leaf_nodes == 1, must be >= 2"),
           ({"n_threads": 0}, "n_threads == 0"),
           ({"n_iter_no_change": 0}, "n_iter_no_change == 0, must be >= 1"),
           ({"learning_rate": 0.0}, "learning_rate = 0.0, must be a finite number > 0"),
           ({"l2_regularization": -1.0}, "l2_regularization = -1.0"),
           ({"early_stopping": "yes"}, "early_stopping = 'yes'; use True, False or 'auto'"),
           ({"random_state": "x"}, "random_state = 'x'")]
    for params, msg in bad:
        with pytest.raises(ConfigError, match=msg):
            GradientBoostingBaseline(**params).fit(traj, idx, np.zeros(8, dtype=int))
    with pytest.raises(TypeError, match="Trajectories"):
        GradientBoostingBaseline().fit(np.zeros(3), idx, np.zeros(8, dtype=int))
    model = GradientBoostingBaseline(max_iter=5).fit(traj, idx, np.array(TINY_STATE))
    model.set_params(n_lags=1)
    with pytest.raises(ValueError, match="fit again"):
        model.predict_proba(traj, idx)
