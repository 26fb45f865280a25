"""Per-fold means and entity-bootstrap intervals of the backtest's scores."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from markovfault import FaultPredictor, backtest
from markovfault.backtest import _bootstrap
from markovfault.backtest._metrics import score_groups
from markovfault.simulate import simulate_histories

COLUMNS = {"entity": "handler", "time": "timestamp", "event": "event_type"}
FAIL = ["error", "timeout", "down"]
quiet = pytest.mark.filterwarnings("ignore::markovfault.exceptions.DataWarning")


def random_scores(seed=0, n=3000, n_ent=40, G=6):
    rng = np.random.default_rng(seed)
    ent = rng.integers(0, n_ent, n) * 7 + 3  # entity codes need not be 0..E-1
    g = rng.integers(0, G, n)
    p = np.round(rng.beta(1, 4, n), 2)  # rounded: many ties
    y = (rng.random(n) < p * 1.3).astype(np.float64)
    b = rng.choice([0.1, 0.25], n)
    return g, p, y, b, ent


def test_unit_weights_give_the_scores_of_score_groups():
    g, p, y, b, ent = random_scores()
    sc = _bootstrap._Scorer(g, p, y, b, ent, 6, 0.3, 10)
    got = sc.scores(np.ones((1, sc.n_ent)))
    ref = score_groups(g, p, y, base_rate=b, threshold=0.3, n_groups=6)
    for m in _bootstrap.INTERVAL_METRICS:
        np.testing.assert_allclose(got[m][0], ref[m].to_numpy(), rtol=1e-10, err_msg=m)


def test_replicate_weights_give_sklearns_weighted_scores():
    g, p, y, b, ent = random_scores(seed=4)
    sc = _bootstrap._Scorer(g, p, y, b, ent, 6, 0.3, 10)
    rng = np.random.default_rng(1)
    W = rng.multinomial(sc.n_ent, np.full(sc.n_ent, 1 / sc.n_ent), size=3).astype(float)
    got = sc.scores(W)
    _, ent_idx = np.unique(ent, return_inverse=True)
    for r in range(3):
        w = W[r, ent_idx]
        for grp in range(6):
            sel = (g == grp) & (w > 0)
            ws = w[sel]
            assert got["brier"][r, grp] == pytest.approx(
                brier_score_loss(y[sel], p[sel], sample_weight=ws))
            assert got["roc_auc"][r, grp] == pytest.approx(
                roc_auc_score(y[sel], p[sel], sample_weight=ws))
            assert got["average_precision"][r, grp] == pytest.approx(
                average_precision_score(y[sel], p[sel], sample_weight=ws))
            ref = np.average((b[sel] - y[sel]) ** 2, weights=ws)
            assert got["bss"][r, grp] == pytest.approx(
                1 - brier_score_loss(y[sel], p[sel], sample_weight=ws) / ref)


def test_fold_means_are_weighted_by_scored_origins_and_skip_undefined_folds():
    # two folds, one (horizon, model): fold 0 has 3 rows, AUC 1; fold 1 has 5 rows, one class
    g = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    p = np.array([0.9, 0.2, 0.1, 0.3, 0.3, 0.4, 0.1, 0.2])
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0], float)
    est, reps = _bootstrap.fold_means(g, p, y, np.full(8, 0.2), np.arange(8), n_folds=2,
                                      n_rest=1, threshold=0.5, n_boot=0)
    brier0 = np.mean((p[:3] - y[:3]) ** 2)
    brier1 = np.mean((p[3:] - y[3:]) ** 2)
    assert est["brier"][0] == pytest.approx((3 * brier0 + 5 * brier1) / 8)
    assert est["roc_auc"][0] == pytest.approx(1.0)  # fold 1 has no AUC: left out
    assert reps["brier"].shape == (0, 1)


@quiet
def test_backtest_intervals_differences_and_climatology():
    hist = simulate_histories(30, 300, random_state=5, with_metrics=False, memory_window=3)
    model = FaultPredictor(states={"failure": FAIL}, columns=COLUMNS)
    res = backtest(hist, model, horizon=3, cutoffs=3, baselines=["climatology", "no_events"],
                   n_boot=150, random_state=3)
    iv = res.intervals.set_index(["model", "horizon", "metric"])
    mean = res.metrics[res.metrics["fold"] == "mean"].set_index(["model", "horizon"])
    per_fold = res.metrics[~res.metrics["fold"].isin(["mean"])]
    for (m, h), row in mean.iterrows():
        f = per_fold[(per_fold["model"] == m) & (per_fold["horizon"] == h)]
        ok = f["bss"].notna()
        assert row["bss"] == pytest.approx(np.average(f["bss"][ok], weights=f["n"][ok]))
        lo, hi = iv.loc[(m, h, "bss"), ["lo", "hi"]]
        assert lo <= row["bss"] <= hi
        # climatology forecasts the base rate the skill is measured against: 0, exactly
        assert (lo == hi == 0.0) if m == "climatology" else (lo < hi)
    # a constant forecast ranks nothing: 0.5 in every fold, so its per-fold mean is 0.5,
    # while pooling folds of different base rates moves it away from 0.5
    clim = mean.loc[("climatology", 3)]
    assert clim["roc_auc"] == pytest.approx(0.5)
    pooled = res.pooled().set_index(["model", "horizon"])
    assert abs(pooled.loc[("climatology", 3), "roc_auc"] - 0.5) > 0.01
    # differences are taken within a replicate: their interval is not the difference of
    # the two intervals, and it decides the verdict
    comp = res.comparisons.set_index(["model", "other", "horizon", "metric"])
    d = comp.loc[("markov", "no_events", 1, "bss")]
    assert d["difference"] == pytest.approx(mean.loc[("markov", 1), "bss"]
                                            - mean.loc[("no_events", 1), "bss"])
    expected = "beats" if d["lo"] > 0 else ("loses" if d["hi"] < 0 else "ties")
    assert d["verdict"] == expected
    same = backtest(hist, model, horizon=3, cutoffs=3, baselines=["climatology", "no_events"],
                    n_boot=150, random_state=3)
    pd.testing.assert_frame_equal(same.intervals, res.intervals)


def test_a_model_against_an_identical_model_ties():
    g, p, y, b, ent = random_scores(seed=9, G=2)
    # rest = 2 models x 1 horizon; model 1 is model 0's forecasts again
    g2 = np.r_[g * 2, g * 2 + 1]
    est, reps = _bootstrap.fold_means(g2, np.r_[p, p], np.r_[y, y], np.r_[b, b],
                                      np.r_[ent, ent], n_folds=2, n_rest=2, threshold=0.3,
                                      n_boot=50)
    comp = _bootstrap.comparisons_frame(est, reps, ["markov", "copy"], 1, 0.95, ["markov"])
    assert (comp["verdict"] == "ties").all()
    assert (comp[["difference", "lo", "hi"]].abs().max() < 1e-12).all()


@quiet
def test_rescore_reproduces_the_backtest():
    hist = simulate_histories(15, 200, random_state=6, with_metrics=False)
    model = FaultPredictor(states={"failure": FAIL}, columns=COLUMNS)
    res = backtest(hist, model, horizon=2, cutoffs=2, baselines=["state_frequency"],
                   n_boot=40, random_state=2, threshold=0.2)
    again = res.rescore(random_state=2)
    pd.testing.assert_frame_equal(again.metrics, res.metrics)
    pd.testing.assert_frame_equal(again.intervals, res.intervals)
    pd.testing.assert_frame_equal(again.comparisons, res.comparisons)
