"""Forecast scores: against scikit-learn, against hand-worked examples, and the undefined cases."""

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from markovfault.backtest._metrics import (
    SCORE_KEYS,
    calibration_table,
    expected_calibration_error,
    lead_times,
    score_forecasts,
)

# no warning of any kind may leak (UndefinedMetricWarning, RuntimeWarning, FutureWarning, ...)
pytestmark = pytest.mark.filterwarnings("error")


def strict(fn, *args, **kwargs):
    """Call fn with every warning turned into an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn(*args, **kwargs)


def random_forecasts(seed, n=500):
    rng = np.random.RandomState(seed)
    p = rng.beta(0.6, 2.0, size=n)
    y = (rng.random_sample(n) < p).astype(int)
    return p, y


# ------------------------------------------------------------------ hand-worked examples
P4 = np.array([0.1, 0.2, 0.7, 0.9])
Y4 = np.array([0, 0, 0, 1])


def test_ece_by_hand_two_bins():
    # bins [0, .5] and (.5, 1]
    # bin 0: p {.1, .2} mean .15, y {0, 0} mean 0  -> |0 - .15| * 2/4 = .075
    # bin 1: p {.7, .9} mean .8,  y {0, 1} mean .5 -> |.5 - .8| * 2/4 = .15
    # ECE = .225
    assert strict(expected_calibration_error, P4, Y4, n_bins=2) == pytest.approx(0.225, abs=1e-12)


def test_ece_by_hand_ten_bins():
    # [0, .1]: p .05, y 0          -> .05 * 1/4 = .0125
    # (.1, .2]: p .12, .18 (mean .15), y 1, 0 (mean .5) -> .35 * 2/4 = .175
    # (.9, 1]: p .95, y 1          -> .05 * 1/4 = .0125
    # ECE = .2
    p = [0.05, 0.12, 0.18, 0.95]
    y = [0, 1, 0, 1]
    assert strict(expected_calibration_error, p, y) == pytest.approx(0.2, abs=1e-12)


def test_ece_edges_follow_calibration_curve():
    # 0.5 is the inner edge of 2 bins: it goes to the bin below, as in sklearn; 0 and 1 to the end bins
    # bin 0: p {0, .5} mean .25, y {0, 1} mean .5 -> .25 * 2/3; bin 1: p {1}, y {1} -> 0
    p = [0.0, 0.5, 1.0]
    y = [0, 1, 1]
    assert expected_calibration_error(p, y, n_bins=2) == pytest.approx(0.25 * 2 / 3, abs=1e-12)
    table = calibration_table(p, y, n_bins=2)
    np.testing.assert_array_equal(table["n"], [2, 1])
    frac, mean = calibration_curve(y, p, n_bins=2, strategy="uniform")
    np.testing.assert_allclose(table["mean_p"], mean, rtol=0, atol=1e-15)
    np.testing.assert_allclose(table["frac_pos"], frac, rtol=0, atol=1e-15)


def test_scores_by_hand():
    # p = [.1, .4, .35, .8], y = [0, 0, 1, 1]
    p = np.array([0.1, 0.4, 0.35, 0.8])
    y = np.array([0, 0, 1, 1])
    s = strict(score_forecasts, p, y, base_rate=0.5, threshold=0.3)
    # Brier: (.01 + .16 + .4225 + .04) / 4 = .158125
    assert s["brier"] == pytest.approx(0.158125, abs=1e-12)
    # log loss: -(ln .9 + ln .6 + ln .35 + ln .8) / 4
    assert s["log_loss"] == pytest.approx(-np.log([0.9, 0.6, 0.35, 0.8]).mean(), abs=1e-12)
    # AUC: pairs (pos, neg): (.35,.1) ok, (.35,.4) wrong, (.8,.1) ok, (.8,.4) ok -> 3/4
    assert s["roc_auc"] == pytest.approx(0.75, abs=1e-12)
    # AP: ranked .8(1) .4(0) .35(1) .1(0): recall steps .5 at P=1, .5 at P=2/3 -> 5/6
    assert s["average_precision"] == pytest.approx(5 / 6, abs=1e-12)
    # alarms at p >= .3: .4 (FP), .35 (TP), .8 (TP) -> precision 2/3, recall 1,
    # F1 = 2 TP / (2 TP + FP + FN) = 4/5
    assert s["precision"] == pytest.approx(2 / 3, abs=1e-12)
    assert s["recall"] == pytest.approx(1.0, abs=1e-12)
    assert s["f1"] == pytest.approx(0.8, abs=1e-12)
    assert (s["n"], s["n_pos"], s["mean_p"]) == (4, 2, pytest.approx(0.4125))
    assert s["note"] == ""


def test_bss_uses_the_passed_base_rate():
    # brier = (.01 + .04 + .49 + .01) / 4 = .1375
    # training base rate .1: brier_ref = (3 * .1**2 + .9**2) / 4 = .84 / 4 = .21 -> bss = 1 - .1375 / .21
    # (the test set's own rate .25 would give brier_ref .1875 and bss .2667: not what we want)
    s = strict(score_forecasts, P4, Y4, base_rate=0.1)
    assert s["brier"] == pytest.approx(0.1375, abs=1e-12)
    assert s["brier_ref"] == pytest.approx(0.21, abs=1e-12)
    assert s["bss"] == pytest.approx(1 - 0.1375 / 0.21, abs=1e-12)
    assert s["bss"] != pytest.approx(1 - 0.1375 / 0.1875)


# ------------------------------------------------------------------ against scikit-learn
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_score_forecasts_matches_sklearn(seed):
    p, y = random_forecasts(seed)
    base_rate, threshold = 0.2, 0.35
    s = strict(score_forecasts, p, y, base_rate=base_rate, threshold=threshold)
    assert list(s) == list(SCORE_KEYS)
    alarm = (p >= threshold).astype(int)
    expected = {
        "n": len(y),
        "n_pos": int(y.sum()),
        "mean_p": p.mean(),
        "brier": brier_score_loss(y, p),
        "log_loss": log_loss(y, p),
        "roc_auc": roc_auc_score(y, p),
        "average_precision": average_precision_score(y, p),
        "brier_ref": brier_score_loss(y, np.full(len(y), base_rate)),
        "precision": precision_score(y, alarm),
        "recall": recall_score(y, alarm),
        "f1": f1_score(y, alarm),
    }
    for key, value in expected.items():
        assert s[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key
    assert s["bss"] == pytest.approx(1 - expected["brier"] / expected["brier_ref"], rel=1e-12)
    assert s["ece"] == pytest.approx(expected_calibration_error(p, y), rel=1e-12)
    assert s["note"] == ""


@pytest.mark.parametrize("n_bins", [1, 3, 10, 17])
def test_calibration_table_equals_calibration_curve(n_bins):
    p, y = random_forecasts(3, n=300)
    p[:6] = [0.0, 1.0, 0.5, 0.1, 0.3, np.linspace(0, 1, 11)[3]]  # ends and (near-)edges
    table = strict(calibration_table, p, y, n_bins=n_bins)
    frac, mean = calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
    assert list(table.columns) == ["bin_lo", "bin_hi", "n", "mean_p", "frac_pos"]
    np.testing.assert_allclose(table["mean_p"], mean, rtol=1e-12)
    np.testing.assert_allclose(table["frac_pos"], frac, rtol=1e-12)
    assert table["n"].sum() == len(p)
    np.testing.assert_allclose(table["bin_hi"] - table["bin_lo"], 1.0 / n_bins)
    # ECE is the n-weighted gap of the same table
    ece = (table["n"] / len(p) * (table["frac_pos"] - table["mean_p"]).abs()).sum()
    assert expected_calibration_error(p, y, n_bins) == pytest.approx(ece, rel=1e-12)


def test_ece_matches_reference_loop():
    # continuous forecasts hit no edge, so floor(p * n_bins) is the bin
    p, y = random_forecasts(4, n=400)
    n_bins = 7
    bins = np.minimum(np.floor(p * n_bins).astype(int), n_bins - 1)
    ref = sum(
        (bins == b).mean() * abs(y[bins == b].mean() - p[bins == b].mean())
        for b in range(n_bins)
        if (bins == b).any()
    )
    assert expected_calibration_error(p, y, n_bins) == pytest.approx(ref, rel=1e-12)


# ------------------------------------------------------------------ properties
def test_perfect_forecasts():
    y = np.array([0, 1, 1, 0, 1])
    s = strict(score_forecasts, y.astype(float), y, base_rate=0.3)
    assert s["brier"] == 0.0
    assert s["ece"] == 0.0
    assert s["roc_auc"] == 1.0
    assert s["average_precision"] == 1.0
    assert s["bss"] == 1.0
    assert s["log_loss"] == pytest.approx(0.0, abs=1e-12)  # clipped at 1e-15, so finite
    assert (s["precision"], s["recall"], s["f1"]) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize("base_rate", [0.05, 0.3, 0.5])
def test_constant_forecast_at_base_rate_has_zero_skill(base_rate):
    _, y = random_forecasts(5, n=200)
    s = strict(score_forecasts, np.full(len(y), base_rate), y, base_rate=base_rate)
    assert s["bss"] == pytest.approx(0.0, abs=1e-12)
    assert s["roc_auc"] == pytest.approx(0.5)  # all ties


def test_accepts_bool_and_lists():
    a = score_forecasts([0.2, 0.8], [False, True], base_rate=0.5)
    b = score_forecasts(np.array([0.2, 0.8]), np.array([0, 1]), base_rate=0.5)
    assert a == b


# ------------------------------------------------------------------ undefined metrics: NaN with a reason
def test_empty_input():
    s = strict(score_forecasts, [], [], base_rate=0.1)
    assert (s["n"], s["n_pos"], s["note"]) == (0, 0, "no origins")
    assert all(np.isnan(s[k]) for k in SCORE_KEYS if k not in ("n", "n_pos", "note"))
    assert np.isnan(strict(expected_calibration_error, [], []))
    table = strict(calibration_table, [], [])
    assert len(table) == 0 and list(table.columns) == ["bin_lo", "bin_hi", "n", "mean_p", "frac_pos"]


def test_no_failures():
    s = strict(score_forecasts, [0.1, 0.7, 0.2], [0, 0, 0], base_rate=0.1)
    assert s["note"] == "no failures"
    for key in ("roc_auc", "average_precision", "recall", "f1"):
        assert np.isnan(s[key]), key
    # precision is defined (one alarm, a false one), so are the probabilistic scores
    assert s["precision"] == 0.0
    assert s["brier"] == pytest.approx((0.01 + 0.49 + 0.04) / 3)
    assert s["bss"] == pytest.approx(1 - 0.18 / 0.01)


def test_no_non_failures():
    s = strict(score_forecasts, [0.6, 0.9], [1, 1], base_rate=0.2)
    assert s["note"] == "no non-failures"
    assert np.isnan(s["roc_auc"]) and np.isnan(s["average_precision"])
    assert (s["precision"], s["recall"], s["f1"]) == (1.0, 1.0, 1.0)


def test_no_forecast_above_threshold():
    # failures exist but no alarm: precision undefined, recall 0, F1 = 2*0 / (0 + 0 + 2) = 0
    s = strict(score_forecasts, [0.1, 0.2, 0.3], [0, 1, 1], base_rate=0.2, threshold=0.9)
    assert s["note"] == "no forecast >= threshold"
    assert np.isnan(s["precision"])
    assert (s["recall"], s["f1"]) == (0.0, 0.0)
    assert not np.isnan(s["roc_auc"])


def test_reasons_are_joined():
    s = strict(score_forecasts, [0.0, 0.0], [0, 0], base_rate=0.0)
    assert s["note"] == "no failures; no forecast >= threshold; brier_ref == 0"
    assert np.isnan(s["bss"]) and s["brier_ref"] == 0.0 and s["brier"] == 0.0


def test_threshold_is_inclusive():
    s = strict(score_forecasts, [0.5, 0.2], [1, 0], base_rate=0.5, threshold=0.5)
    assert (s["precision"], s["recall"]) == (1.0, 1.0)


# ------------------------------------------------------------------ lead times
def lead_example():
    # entity "a", h = 4:
    #   failure at step 10, origins 6..9 (d = 4, 3, 2, 1), p = .2 .6 .4 .8 -> alarms at d 3 and 1:
    #     caught, lead 3 (the earliest alarm counts even though p dips at d = 2)
    #   origin 5 has d = 5 > h, p = .9: outside the horizon, must not count
    #   failure at step 13, origins 11, 12 (d = 2, 1), p = .55 .1 -> caught, lead 2
    # entity "b":
    #   failure at step 3, origins 1, 2 (d = 2, 1), p = .1 .3 -> missed
    #   origin 0 with no failure within h (d = -1), p = .99: no target
    return pd.DataFrame(
        {
            "entity": ["a", "a", "a", "a", "a", "a", "a", "b", "b", "b"],
            "origin": [5, 6, 7, 8, 9, 11, 12, 0, 1, 2],
            "d": [5, 4, 3, 2, 1, 2, 1, -1, 2, 1],
            "p": [0.9, 0.2, 0.6, 0.4, 0.8, 0.55, 0.1, 0.99, 0.1, 0.3],
        }
    )


def test_lead_times_by_hand():
    df = lead_example()
    got = strict(lead_times, df["entity"], df["origin"], df["d"], df["p"], 0.5, horizon=4)
    expected = pd.DataFrame(
        {
            "entity": ["a", "a", "b"],
            "target_step": np.array([10, 13, 3], dtype=np.int64),
            "caught": [True, True, False],
            "lead_time": [3.0, 2.0, np.nan],
        }
    )
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert got["caught"].dtype == bool and got["target_step"].dtype == np.int64
    # without the horizon, the d = 5 row targets step 10 too and its alarm gives lead 5
    loose = lead_times(df["entity"], df["origin"], df["d"], df["p"], 0.5)
    assert loose["lead_time"].iloc[0] == 5.0


def test_lead_times_order_free_and_sentinels():
    df = lead_example()
    df = df[df["d"] <= 4]
    shuffled = df.sample(frac=1.0, random_state=np.random.RandomState(0))
    a = lead_times(df["entity"], df["origin"], df["d"], df["p"], 0.5)
    b = lead_times(shuffled["entity"], shuffled["origin"], shuffled["d"], shuffled["p"], 0.5)
    pd.testing.assert_frame_equal(a, b)
    # NaN, a huge sentinel beyond the horizon and a float column give the same answer
    d = df["d"].to_numpy(dtype=float)
    d[d < 1] = np.nan
    pd.testing.assert_frame_equal(lead_times(df["entity"], df["origin"], d, df["p"], 0.5), a)
    big = df["d"].to_numpy().copy()
    big[big < 1] = np.iinfo(np.int64).max
    pd.testing.assert_frame_equal(lead_times(df["entity"], df["origin"], big, df["p"], 0.5, horizon=4), a)


def test_lead_times_empty():
    got = strict(lead_times, ["a"], [3], [-1], [0.9], 0.5)
    assert len(got) == 0
    assert list(got.columns) == ["entity", "target_step", "caught", "lead_time"]


# ------------------------------------------------------------------ input validation
@pytest.mark.parametrize(
    "p, y, match",
    [
        ([0.1, 0.2, 0.3], [0, 1], r"len\(p\) = 3, len\(y\) = 2"),
        ([0.1, 1.5, 0.3], [0, 1, 0], r"p\[1\] = 1\.5"),
        ([0.1, -0.1, 0.3], [0, 1, 0], r"p\[1\] = -0\.1"),
        ([0.1, 0.2, np.nan], [0, 1, 0], r"p\[2\] = nan"),
        ([0.1, 0.2, np.inf], [0, 1, 0], r"finite and in \[0, 1\]"),
        ([0.1, 0.2, 0.3], [0, 2, 0], r"only 0 and 1.*y\[1\] = 2"),
        ([0.1, 0.2, 0.3], [0, np.nan, 0], r"y\[1\] = nan"),
        ([[0.1, 0.2]], [[0, 1]], r"p must be 1-D"),
    ],
)
def test_bad_arrays(p, y, match):
    for fn in (expected_calibration_error, calibration_table):
        with pytest.raises(ValueError, match=match):
            fn(p, y)
    with pytest.raises(ValueError, match=match):
        score_forecasts(p, y, base_rate=0.1)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"base_rate": 1.2}, ValueError, r"base_rate = 1\.2, must be in \[0, 1\]"),
        ({"base_rate": np.nan}, ValueError, r"base_rate = nan"),
        ({"base_rate": 0.1, "threshold": -0.1}, ValueError, r"threshold = -0\.1"),
        ({"base_rate": 0.1, "n_bins": 0}, ValueError, r"n_bins = 0, must be >= 1"),
        ({"base_rate": 0.1, "n_bins": 2.5}, TypeError, r"n_bins = 2\.5 must be an integer"),
        ({"base_rate": "0.1"}, TypeError, r"base_rate = '0\.1' must be a real number"),
    ],
)
def test_bad_parameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        score_forecasts([0.1, 0.9], [0, 1], **kwargs)


def test_score_forecasts_needs_base_rate():
    with pytest.raises(TypeError, match="base_rate"):
        score_forecasts([0.1], [0])


def test_lead_times_bad_input():
    lengths = r"len\(entity_code\) = 2, len\(origin_step\) = 2, len\(steps_to_failure\) = 2, len\(p\) = 1"
    with pytest.raises(ValueError, match=lengths):
        lead_times(["a", "a"], [1, 2], [1, 2], [0.5], 0.5)
    with pytest.raises(ValueError, match=r"p\[0\] = 1\.5"):
        lead_times(["a"], [1], [1], [1.5], 0.5)
    with pytest.raises(ValueError, match=r"threshold = 2"):
        lead_times(["a"], [1], [1], [0.5], 2)
    with pytest.raises(ValueError, match=r"steps_to_failure\[0\] = 1\.5"):
        lead_times(["a"], [1], [1.5], [0.5], 0.5)
    with pytest.raises(TypeError, match="origin_step must hold integers"):
        lead_times(["a"], [1.0], [1], [0.5], 0.5)
    with pytest.raises(ValueError, match=r"horizon = 0, must be >= 1"):
        lead_times(["a"], [1], [1], [0.5], 0.5, horizon=0)


# ------------------------------------------------- many groups at once
def test_score_groups_equals_score_forecasts_group_by_group():
    from markovfault.backtest._metrics import lead_times, score_forecasts, score_groups

    rng = np.random.RandomState(0)
    n, G = 4000, 12
    g = rng.randint(0, G, n)
    p = np.round(rng.beta(1, 3, n), 2)  # rounding makes many ties
    y = (rng.random_sample(n) < p).astype(int)
    y[g == 3] = 0  # a group without failures
    y[g == 4] = 1  # a group with only failures
    p[g == 5] = 0.1  # a group without alarms
    base = rng.uniform(0.05, 0.4, G)[g]
    ent = rng.randint(0, 30, n)
    step = rng.randint(0, 500, n)
    d = np.where(y == 1, rng.randint(1, 4, n), 99)
    h = np.full(n, 3)
    got = score_groups(g, p, y, base_rate=base, threshold=0.4, entity_code=ent,
                       origin_step=step, steps_to_failure=d, horizon=h)
    for k in range(G):
        m = g == k
        want = score_forecasts(p[m], y[m], base_rate=base[m], threshold=0.4)
        for key, value in want.items():
            if key == "note":
                assert got.loc[k, key] == value, k
            else:
                np.testing.assert_allclose(got.loc[k, key], value, rtol=1e-10, atol=1e-12,
                                           err_msg=f"group {k}: {key}")
        lt = lead_times(ent[m], step[m], d[m], p[m], 0.4, horizon=3)
        assert got.loc[k, "n_failures"] == len(lt)
        assert got.loc[k, "n_caught"] == lt["caught"].sum()
        np.testing.assert_allclose(got.loc[k, "mean_lead_time"],
                                   lt["lead_time"].mean() if lt["caught"].any() else np.nan)
