"""The backtest harness: hand-counted outcomes, no leakage, incremental counts, known truth."""

import numpy as np
import pandas as pd
import pytest

from markovfault import FaultPredictor
from markovfault.backtest import backtest
from markovfault.backtest._run import Run as _Run
from markovfault.predictor._settings import new_extractor, read_input
from markovfault.exceptions import ConfigError, HistoryError
from markovfault.simulate import OrderServiceSystem, simulate_histories

COLUMNS = {"entity": "handler", "time": "timestamp", "event": "event_type"}
FAIL = ["error", "timeout", "down"]
quiet = pytest.mark.filterwarnings("ignore::markovfault.exceptions.DataWarning")


def hand_history():
    rows = [("a", t, s) for t, s in enumerate(["ok", "ok", "ok", "down", "ok", "ok", "ok"], 1)]
    rows += [("b", t, "ok") for t in range(1, 6)]
    rows += [("c", t, s) for t, s in enumerate(["ok", "ok", "down"], 1)]
    return pd.DataFrame(rows, columns=["entity", "time", "status"])


@quiet
def test_hand_counted_outcomes_censoring_and_base_rates():
    model = FaultPredictor(states={"failure": ["down"]}, alpha=0.0, beta=0.0)
    res = backtest(hand_history(), model, horizon=2, cutoffs=[4],
                   baselines=["climatology", "state_frequency"])
    folds = res.folds.set_index("horizon")
    # origins at the cutoff: a@3 (ok; next: down, ok), b@3 (ok; next ok, ok), c@3 (no future)
    assert folds["n_origins"].tolist() == [3, 3]
    assert folds["n_scored"].tolist() == [2, 2]
    assert folds["n_censored"].tolist() == [1, 1]
    # training origins labelled like test origins, from what lies before the cutoff:
    # h=1: a@1, a@2, b@1, b@2, c@1, c@2 scored -> only c@2 (next: down) fails: 1/6
    # h=2: a@1, b@1, c@1 (two steps seen) and c@2 (its failure at 3 is seen before the
    #      cutoff, although its second step is not) -> c@1 and c@2 fail: 2/4. a@2 fails at 4,
    #      after the cutoff: censored, as a test origin with one step left would be.
    assert folds.loc[1, "train_base_rate"] == pytest.approx(1 / 6)
    assert folds.loc[2, "train_base_rate"] == pytest.approx(2 / 4)
    pred = res.predictions.set_index(["model", "entity", "horizon"])
    assert pred.loc[("markov", "a", 1), "y"] == 1 and pred.loc[("markov", "a", 2), "y"] == 1
    assert pred.loc[("markov", "b", 2), "y"] == 0
    assert ("markov", "c", 1) not in pred.index
    # transitions before the cutoff: ok->ok five times, ok->down once
    assert pred.loc[("markov", "a", 1), "p"] == pytest.approx(1 / 6)
    assert pred.loc[("markov", "a", 2), "p"] == pytest.approx(1 / 6 + 5 / 6 * 1 / 6)
    assert pred.loc[("climatology", "b", 2), "p"] == pytest.approx(2 / 4)
    # state frequency, one pseudo-origin at the base rate: h=2, 4 ok origins, 2 failed
    assert pred.loc[("state_frequency", "b", 2), "p"] == pytest.approx((2 + 2 / 4) / 5)
    # one failure ahead (a's down at 4); markov's 1/6 stays under the 0.5 threshold
    row = res.metrics.set_index(["fold", "horizon", "model"]).loc[("0", 1, "markov")]
    assert (row["n_failures"], row["n_caught"], row["n"], row["n_pos"]) == (1, 0, 2, 1)
    low = backtest(hand_history(), model, horizon=2, cutoffs=[4], baselines=[], threshold=0.1)
    row = low.metrics.set_index(["fold", "horizon", "model"]).loc[("0", 2, "markov")]
    assert (row["n_caught"], row["mean_lead_time"]) == (1, 1.0)  # a@3 warned, 1 step ahead


def pandas_reference_counts(frame, codes, events, lo, hi):
    """Transitions whose arriving step has lo <= time < hi, counted with groupby/shift."""
    df = pd.DataFrame({"entity": frame["entity"], "time": frame["time"], "event": events,
                       "state": codes}).sort_values(["entity", "time"], kind="stable")
    prev = df.groupby("entity")["state"].shift(1)
    ok = prev.notna() & (df["time"] >= lo) & (df["time"] < hi)
    return (df.loc[ok].assign(prev=prev[ok].astype(int))
            .value_counts(["event", "prev", "state"]).to_dict())


@pytest.mark.parametrize("window", ["expanding", "sliding"])
def test_fold_counts_equal_counts_before_each_cutoff(window):
    hist = simulate_histories(15, 200, random_state=3, with_metrics=False)
    model = FaultPredictor(states={"failure": FAIL}, columns=COLUMNS)
    frame, _ = read_input(hist, model.columns)
    ext = new_extractor(model.states).fit(frame)
    codes = ext.transform(frame)
    from markovfault.trajectories import Trajectories
    traj = Trajectories.from_frame(frame, codes, ext.state_names_, ext.is_failure_)
    t = frame["time"]
    tns = t.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]").view(np.int64)
    cuts = np.sort(np.random.RandomState(1).choice(tns, 4, replace=False))
    width = pd.Timedelta("40min").value if window == "sliding" else None
    run = _Run(traj, cuts, width, 3, 0.5, model, [], "cutoff", None, False)
    counts = run.fold_counts()
    ev_codes = pd.Index(traj.event_names).get_indexer(frame["event"])
    for k, c in enumerate(cuts):
        lo = -np.inf if width is None else c - width
        ref = pandas_reference_counts(pd.DataFrame({"entity": frame["entity"], "time": tns}),
                                      codes, ev_codes, lo, c)
        got = {tuple(ix): v for ix, v in np.ndenumerate(counts[k]) if v}
        assert got == {tuple(map(int, key)): v for key, v in ref.items()}


def poison_after(hist, cutoff, seed):
    rng = np.random.RandomState(seed)
    out = hist.copy()
    late = out["timestamp"] >= cutoff
    n = int(late.sum())
    out.loc[late, "status"] = rng.choice(["ok", "slow", "error", "timeout", "down"], n)
    out.loc[late, "event_type"] = rng.choice(["order_created", "payment_failed"], n)
    out.loc[late, "latency_ms"] = rng.uniform(0, 1e5, n)
    return out


@quiet
@pytest.mark.parametrize("states", [
    {"failure": FAIL},
    {"kind": "quantiles", "columns": ["latency_ms"], "n_bins": 3, "failure_top": "latency_ms"},
])
def test_nothing_after_the_cutoff_reaches_the_forecasts(states):
    hist = simulate_histories(25, 240, random_state=5)
    cutoff = hist["timestamp"].quantile(0.6)
    columns = dict(COLUMNS, metrics=["latency_ms"])
    model = FaultPredictor(states=states, columns=columns)
    kw = dict(horizon=4, cutoffs=[cutoff], baselines=["climatology", "state_frequency",
              "no_events", "gradient_boosting"], n_jobs=1)
    clean = backtest(hist, model, **kw)
    dirty = backtest(poison_after(hist, cutoff, 0), model, **kw)
    cols = ["model", "entity", "horizon", "p"]
    a = clean.predictions.sort_values(cols[:3])[cols].reset_index(drop=True)
    b = dirty.predictions.sort_values(cols[:3])[cols].reset_index(drop=True)
    # the same (entity, horizon) pairs may be scored or censored differently, since the
    # outcomes change; every forecast made for a pair scored in both must be equal
    m = a.merge(b, on=cols[:3], suffixes=("_clean", "_dirty"))
    assert len(m) > 0.5 * len(a)
    np.testing.assert_array_equal(m["p_clean"].to_numpy(), m["p_dirty"].to_numpy())
    pd.testing.assert_series_equal(clean.folds["train_base_rate"], dirty.folds["train_base_rate"])
    # and the poison does reach the outcomes, so the check above had teeth
    assert not clean.predictions["y"].equals(dirty.predictions["y"])


@pytest.fixture(scope="module")
def truth_backtest():
    system = OrderServiceSystem.default()
    hist = simulate_histories(200, 1000, system=system, flaky_fraction=0.0, random_state=11,
                              with_metrics=False)
    model = FaultPredictor(states={"failure": FAIL}, columns=COLUMNS)
    res = backtest(hist, model, horizon=10, cutoffs=4, origins="every_step", baselines=[])
    return system, res, hist


def test_brier_within_5_percent_of_truth_and_calibrated(truth_backtest):
    system, res, hist = truth_backtest
    true_table = system.failure_probabilities(10, "normal")
    order = [system.state_names.index(s) for s in res.predictions["state"].cat.categories]
    pred = res.predictions
    # the outcomes rebuilt from the raw frame by pandas shifts, not the backtest's own labels
    frame, y_all = _pandas_labels(hist, 10, FAIL)
    row_of = pd.Series(np.arange(len(frame)), index=pd.MultiIndex.from_arrays(
        [frame["handler"].to_numpy(), pd.to_datetime(frame["timestamp"], utc=True)]))
    pos = row_of.reindex(pd.MultiIndex.from_arrays(
        [pred["entity"].astype(str).to_numpy(), pd.to_datetime(pred["origin_time"], utc=True)])).to_numpy()
    assert not np.isnan(pos).any()
    y = y_all[pos.astype(np.int64), pred["horizon"].to_numpy() - 1]
    assert (y >= 0).all()  # every scored origin sees its whole horizon (or a failure) in the raw frame
    np.testing.assert_array_equal(pred["y"].to_numpy(), y)
    p_true = true_table[np.asarray(order)[pred["state"].cat.codes.to_numpy()],
                        pred["horizon"].to_numpy() - 1]
    pooled = res.pooled()  # pooled on purpose: the truth's Brier below is pooled too
    pooled = pooled[pooled["model"] == "markov"]
    markov = (pred["model"] == "markov").to_numpy()
    for h in range(1, 11):
        sel = (pred["horizon"] == h).to_numpy() & markov
        brier_true = np.mean((p_true[sel] - y[sel]) ** 2)
        brier = np.mean((pred["p"].to_numpy()[sel] - y[sel]) ** 2)
        row = pooled[pooled["horizon"] == h].iloc[0]
        assert row["brier"] == pytest.approx(brier, rel=1e-9)
        assert brier <= 1.05 * brier_true, (h, brier, brier_true)
        assert row["ece"] < 0.02, (h, row["ece"])


def test_every_step_origins_use_the_latest_cutoff(truth_backtest):
    _, res, _ = truth_backtest
    pred = res.predictions[res.predictions["model"] == "markov"]
    cuts = np.sort(res.predictions["cutoff"].unique())
    assert (pred["origin_time"] >= pred["cutoff"]).all()
    latest = cuts[np.searchsorted(cuts, pred["origin_time"].to_numpy(), side="right") - 1]
    assert (pred["cutoff"].to_numpy() == latest).all()


@quiet
def test_baselines_scored_on_the_same_origins_and_parallel_is_identical():
    hist = simulate_histories(20, 200, random_state=2, with_metrics=False)
    model = FaultPredictor(states={"failure": FAIL}, columns=COLUMNS)
    one = backtest(hist, model, horizon=3, cutoffs=2, n_jobs=1)
    two = backtest(hist, model, horizon=3, cutoffs=2, n_jobs=2)
    pd.testing.assert_frame_equal(one.metrics, two.metrics)
    sizes = one.predictions.groupby("model", observed=True).size()
    assert set(sizes.index) == {"markov", "climatology", "state_frequency", "no_events",
                                "gradient_boosting"}
    assert sizes.nunique() == 1
    text = one.verdict()
    for base in ("climatology", "state_frequency", "no_events", "gradient_boosting"):
        assert base in text


@quiet
def test_no_failures_gives_nan_with_reasons():
    hist = pd.DataFrame({"entity": np.repeat(["a", "b"], 20), "time": np.tile(np.arange(20), 2),
                         "status": "ok"})
    model = FaultPredictor(states={"states": ["ok", "down"], "failure": ["down"]})
    res = backtest(hist, model, horizon=2, cutoffs=2, baselines=["climatology"])
    per_fold = res.metrics[res.metrics["fold"] != "mean"]
    assert per_fold["roc_auc"].isna().all()
    assert per_fold["note"].str.contains("no failures").all()
    assert res.metrics.loc[res.metrics["fold"] == "mean", "roc_auc"].isna().all()
    assert res.intervals.loc[res.intervals["metric"] == "roc_auc", ["lo", "hi"]].isna().all().all()
    assert "undefined at every horizon" in res.verdict("roc_auc")


@quiet
def test_bad_input_errors():
    hist = hand_history()
    model = FaultPredictor(states={"failure": ["down"]})
    with pytest.raises(ValueError, match="horizon = 0"):
        backtest(hist, model, horizon=0, cutoffs=[4])
    with pytest.raises(HistoryError, match="after the last step"):
        backtest(hist, model, horizon=2, cutoffs=[99])
    with pytest.raises(HistoryError, match="no training data"):
        backtest(hist, model, horizon=2, cutoffs=[1])
    gappy = pd.DataFrame({"entity": "a", "time": [1, 2, 3, 10, 11, 12],
                          "status": ["ok", "down", "ok", "ok", "down", "ok"]})
    with pytest.raises(HistoryError, match="no training transitions"):  # nothing in [7, 10)
        backtest(gappy, model, horizon=2, cutoffs=[10], window="sliding", window_size=3)
    with pytest.raises(ConfigError, match="window_size"):
        backtest(hist, model, horizon=2, cutoffs=[4], window="sliding")
    with pytest.raises(ConfigError, match="unknown baseline"):
        backtest(hist, model, horizon=2, cutoffs=[4], baselines=["prophet"])
    with pytest.raises(ConfigError, match="origins"):
        backtest(hist, model, horizon=2, cutoffs=[4], origins="sometimes")


def test_verdict_reads_the_intervals_of_the_differences():
    from markovfault.backtest import BacktestResult

    # markov vs a: interval above zero at h=1, covering zero at h=2; vs b: below zero at h=1
    comp = pd.DataFrame({
        "horizon": [1, 2, 1, 2, 1, 2, 1, 2], "model": "markov",
        "other": ["a", "a", "b", "b", "a", "a", "b", "b"],
        "metric": ["bss"] * 4 + ["ece"] * 4,
        "difference": [0.1, 0.02, -0.2, -0.1, -0.01, 0.03, 0.0, 0.0],
        "lo": [0.03, -0.01, -0.3, -0.2, -0.02, 0.01, -0.01, -0.01],
        "hi": [0.2, 0.05, -0.1, -0.01, -0.005, 0.05, 0.01, 0.01],
    })
    comp["verdict"] = np.where(comp["lo"] > 0, "beats", np.where(comp["hi"] < 0, "loses",
                                                                  "ties"))
    comp.loc[comp["metric"] == "ece", "verdict"] = ["beats", "loses", "ties", "ties"]
    m = pd.DataFrame({"fold": ["mean"] * 3, "horizon": 1, "model": ["markov", "a", "b"]})
    res = BacktestResult(metrics=m, predictions=pd.DataFrame(), folds=pd.DataFrame(),
                         params={"confidence": 0.9}, comparisons=comp)
    assert res.verdict().splitlines() == [
        "markov beats a at horizon 1; ties with a at horizon 2 on bss (per-fold means, 90% "
        "interval of the difference)",
        "markov loses to b at every horizon on bss (per-fold means, 90% interval of the "
        "difference)",
    ]
    assert res.verdict("ece").splitlines()[0].startswith(
        "markov beats a at horizon 1; loses to a at horizon 2 on ece")
    with pytest.raises(ValueError, match="no comparisons"):
        res.verdict("nonsense")


@quiet
def test_lead_times_count_failure_onsets_only():
    # a: ok ok ok ok down down ok ok; from t=4 on every step is an origin. The failure that
    # starts at t=5 is one onset; t=5 -> t=6 is the same failure going on, not a new one.
    seq = ["ok", "ok", "ok", "ok", "down", "down", "ok", "ok"]
    hist = pd.DataFrame({"entity": ["a"] * 8 + ["b"] * 8, "time": list(range(1, 9)) * 2,
                         "status": seq + ["ok", "down"] + ["ok"] * 6})
    model = FaultPredictor(states={"failure": ["down"]})
    res = backtest(hist, model, horizon=1, cutoffs=[4], origins="every_step", baselines=[],
                   threshold=0.0)
    row = res.metrics.set_index(["fold", "horizon", "model"]).loc[("mean", 1, "markov")]
    assert row["n_pos"] == 2  # a@4 and a@5 both see a failure next
    assert (row["n_failures"], row["n_caught"], row["mean_lead_time"]) == (1, 1, 1.0)
    lt = res.lead_times("markov", 1)
    assert lt["target_step"].tolist() == [4]  # the global step index of a's t=5


def test_classifier_training_labels_are_built_like_test_labels():
    # hand history, cutoff 4: c@2 fails at c@3, before the cutoff, so it is a positive at
    # h = 2 although its second step is not seen (a test origin would be a positive too);
    # a@2 fails at a@4, after the cutoff: censored at h = 2
    model = FaultPredictor(states={"failure": ["down"]})
    frame, _ = read_input(hand_history(), model.columns)
    ext = new_extractor(model.states).fit(frame)
    from markovfault.trajectories import Trajectories
    traj = Trajectories.from_frame(frame, ext.transform(frame), ext.state_names_, ext.is_failure_)
    run = _Run(traj, np.array([4]), None, 2, 0.5, model, [], "cutoff", None, False)
    idx, gap = run.train_window(0)
    y = run.train_labels(idx, gap)
    names = np.asarray(traj.entity_names)[traj.entity[idx]]
    times = traj.time[idx]
    got = {(e, int(t)): tuple(r) for e, t, r in zip(names, times, y.tolist())}
    assert got[("c", 2)] == (1, 1)
    assert got[("c", 1)] == (0, 1)
    assert got[("a", 2)] == (0, -1)
    assert got[("a", 3)] == (-1, -1)  # its next step lies after the cutoff
    assert got[("b", 1)] == (0, 0)


@pytest.mark.parametrize("horizon", [1, 4, 12])
def test_fold_rates_equal_the_rates_counted_origin_by_origin(horizon):
    """The once-binned training rates of expanding windows equal state_rates over
    every training origin of each fold (the direct count)."""
    from markovfault import FaultPredictor, Trajectories
    from markovfault.backtest._run import Run as _Run

    rng = np.random.default_rng(horizon)
    lengths = rng.integers(1, 60, 40)
    n = int(lengths.sum())
    traj = Trajectories.from_codes(rng.choice(3, n, p=[0.7, 0.2, 0.1]), rng.integers(0, 2, n),
                                   lengths, state_names=["ok", "slow", "down"],
                                   event_names=["a", "b"], failure=["down"])
    traj.time = rng.integers(0, 5, n).cumsum() - np.repeat(  # uneven times per entity
        np.r_[0, np.cumsum(rng.integers(0, 5, n))[np.cumsum(lengths)[:-1] - 1]], lengths)
    cuts = np.unique(rng.integers(traj.time.min(), traj.time.max() + 1, 7))
    model = FaultPredictor(states={"failure": ["down"]})
    run = _Run(traj, cuts, None, horizon, 0.5, model, [], "cutoff", 1, False)
    for k in range(len(cuts)):
        fast = run.fold_rates(k)
        direct = run.state_rates(*run.train_window(k))
        np.testing.assert_array_equal(fast[0], direct[0])
        np.testing.assert_array_equal(fast[1], direct[1])
        assert direct[1].sum() > 0


def _pandas_labels(frame, horizon, failing, end=()):
    """Outcomes (n, H) of every row of ``frame`` from the rows that follow it, by pandas shifts;
    after a row with an ``end`` status nothing can fail, so every later horizon is seen."""
    frame = frame.sort_values(["handler", "timestamp"], kind="stable")
    g = frame.groupby("handler", sort=False)["status"]
    ends_later = frame["status"].isin(end)[::-1].groupby(frame["handler"][::-1]).cummax()[::-1]
    ended = (ends_later & ~frame["status"].isin(end)).to_numpy()
    out, seen_fail = [], np.zeros(len(frame), dtype=bool)
    for h in range(1, horizon + 1):
        nxt = g.shift(-h)
        seen_fail |= nxt.isin(failing).to_numpy()
        seen = nxt.notna().to_numpy() | ended
        out.append(np.where(seen_fail, 1, np.where(seen, 0, -1)))
    return frame, np.stack(out, axis=1)


@quiet
@pytest.mark.parametrize("window", ["expanding", "sliding"])
@pytest.mark.parametrize("ends", [False, True])
@pytest.mark.parametrize("origins", ["cutoff", "every_step"])
def test_labels_and_censoring_rebuilt_from_the_raw_frame(origins, ends, window):
    """Test labels, censoring counts and training base rates equal an independent pandas
    rebuild: test outcomes from every later row, training outcomes from the rows before
    the cutoff only (labelled the same way); with end statuses, rows after which the
    handler finished see every horizon, and finished rows are no origins."""
    H = 4
    hist = simulate_histories(12, 60, random_state=8, with_metrics=False, with_event_ids=False,
                              finish_rate=0.03 if ends else 0.0)
    end = ["finished"] if ends else []
    # entities of uneven lengths, some ending early with a failure
    rng = np.random.default_rng(2)
    keep = np.zeros(len(hist), dtype=bool)
    for name, idx in hist.groupby("handler").indices.items():
        # (finishing handlers have uneven lengths already)
        keep[idx if ends else idx[: rng.integers(5, len(idx) + 1)]] = True
    hist = hist[keep].reset_index(drop=True)
    model = FaultPredictor(states={"failure": FAIL, "states": ["ok", "slow", *FAIL, *end],
                                   "end": end}, columns=COLUMNS)
    width = pd.Timedelta("25min") if window == "sliding" else None
    res = backtest(hist, model, horizon=H, cutoffs=3, origins=origins, baselines=["climatology"],
                   n_boot=0, window=window, window_size=width)
    cuts = np.asarray(res.params["cutoffs"], dtype=np.int64)  # UTC nanoseconds
    frame, y_all = _pandas_labels(hist, H, FAIL, end)
    is_end = frame["status"].isin(end).to_numpy()
    if ends:
        assert is_end.sum() >= 3  # some handlers finish
    t = pd.to_datetime(frame["timestamp"], utc=True).dt.tz_localize(None).to_numpy()
    t = t.astype("datetime64[ns]").astype(np.int64)
    pred = res.predictions[res.predictions["model"] == "markov"]
    for k, c in enumerate(cuts):
        before = t < c
        nxt = cuts[k + 1] if k + 1 < len(cuts) else None
        if origins == "cutoff":
            pos = pd.Series(np.flatnonzero(before)).groupby(
                frame["handler"].to_numpy()[before]).max().to_numpy()
            pos = pos[~is_end[pos]]
        else:
            pos = np.flatnonzero(~before & ((t < nxt) if nxt is not None else True) & ~is_end)
        y = y_all[pos]
        folds = res.folds[res.folds["fold"] == k].set_index("horizon")
        assert folds["n_origins"].tolist() == [len(pos)] * H
        assert folds["n_censored"].tolist() == (y < 0).sum(axis=0).tolist()
        got = pred[pred["fold"] == k]
        expect = pd.DataFrame({"entity": np.repeat(frame["handler"].to_numpy()[pos], H),
                               "origin_time": np.repeat(t[pos], H),
                               "horizon": np.tile(np.arange(1, H + 1), len(pos)),
                               "y": y.ravel()})
        expect = expect[expect["y"] >= 0]
        key = ["entity", "origin_time", "horizon"]
        left = got[key + ["y"]].astype({"entity": str}).sort_values(key).reset_index(drop=True)
        left["origin_time"] = left["origin_time"].dt.tz_localize(None).astype(
            "datetime64[ns]").astype(np.int64)
        right = expect.sort_values(key).reset_index(drop=True)
        pd.testing.assert_frame_equal(left, right, check_dtype=False)
        # training outcomes: the same rule on the rows before the cutoff
        inside = before if width is None else before & (t >= c - width.value)
        sub, y_train = _pandas_labels(frame[inside], H, FAIL, end)
        y_train = y_train[~sub["status"].isin(end).to_numpy()]
        rate = np.array([(y_train[:, h] == 1).sum() / (y_train[:, h] >= 0).sum()
                         for h in range(H)])
        np.testing.assert_allclose(folds["train_base_rate"].to_numpy(), rate, rtol=1e-12)
