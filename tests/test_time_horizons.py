"""Forecasts in time: P(fail within T) from the continuous-time and the semi-Markov chain.

References: scipy.linalg.expm of the generator (exponential waits), Monte Carlo of the true Markov renewal
process (Weibull waits, silences, rate factors), sojourns counted by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import linalg, stats

from markovfault import FaultPredictor, load_model
from markovfault.exceptions import ConfigError, NotFittedError
from markovfault.predictor._time import RATE_PRIOR, fitted_time

STATES = ("ok", "degraded", "down")
FAIL = np.array([False, False, True])
# the true chain: degraded exits fail 40% of the time; down recovers
T_TRUE = np.array([[0.7, 0.3, 0.0], [0.6, 0.0, 0.4], [1.0, 0.0, 0.0]])
WEIBULL_SCALE = 5.0 / math.gamma(1 + 1 / 3)  # Weibull(shape 3) of mean 5 minutes
WAITS_WEIBULL = (stats.expon(scale=10.0), stats.weibull_min(3.0, scale=WEIBULL_SCALE), stats.expon(scale=2.0))
WAITS_EXPON = (stats.expon(scale=10.0), stats.expon(scale=3.0), stats.expon(scale=2.0))
START = pd.Timestamp("2026-03-01", tz="UTC")


def renewal_frame(waits, n_entities, n_steps, seed, speed=None, transitions=T_TRUE):
    """A Markov renewal process: after each step in state s, a wait from ``waits[s]`` (minutes, divided by
    the entity's ``speed``), then the next state from ``transitions[s]``. Vectorised over entities."""
    rng = np.random.default_rng(seed)
    speed = np.ones(n_entities) if speed is None else np.asarray(speed, float)
    state = np.zeros((n_entities, n_steps), np.int64)
    t = np.zeros((n_entities, n_steps))
    state[:, 0] = rng.integers(0, 2, n_entities)
    t[:, 0] = rng.random(n_entities)
    cum = np.cumsum(transitions, axis=1)
    for n in range(1, n_steps):
        prev = state[:, n - 1]
        w = np.empty(n_entities)
        for s, dist in enumerate(waits):
            sel = prev == s
            w[sel] = dist.rvs(size=int(sel.sum()), random_state=rng)
        t[:, n] = t[:, n - 1] + w / speed
        state[:, n] = (rng.random(n_entities)[:, None] > cum[prev]).sum(axis=1)
    # every handler is watched until the same end (an export's end): its last sojourn is open there
    seen = t.reshape(-1) <= t[:, -1].min()
    return pd.DataFrame({
        "entity": np.repeat([f"h{k:04d}" for k in range(n_entities)], n_steps)[seen],
        "time": START + pd.to_timedelta(np.round(t.reshape(-1)[seen] * 60e3), unit="ms"),
        "status": np.asarray(STATES, dtype=object)[state.reshape(-1)[seen]],
    })


def hitting_times(start, age, n_paths, seed, waits=WAITS_WEIBULL, speed=1.0, t_max=60.0):
    """Monte Carlo of the true process: the first time (minutes) a step ends in ``down``, from ``start``
    whose sojourn has lasted ``age`` minutes; ``inf`` past ``t_max``. The current state does not count."""
    rng = np.random.default_rng(seed)
    state = np.full(n_paths, start)
    clock = np.zeros(n_paths)
    hit = np.full(n_paths, np.inf)
    alive = np.ones(n_paths, bool)
    first = True
    cum = np.cumsum(T_TRUE, axis=1)
    while alive.any():
        idx = np.flatnonzero(alive)
        w = np.empty(len(idx))
        for s, dist in enumerate(waits):
            sel = state[idx] == s
            k = int(sel.sum())
            if first:  # the residual wait of a sojourn aged `age`: P(R > u) = S(a + u) / S(a)
                a = age * speed
                w[sel] = (dist.isf(rng.random(k) * dist.sf(a)) - a) / speed
            else:
                w[sel] = dist.rvs(size=k, random_state=rng) / speed
        first = False
        clock[idx] += w
        nxt = (rng.random(len(idx))[:, None] > cum[state[idx]]).sum(axis=1)
        state[idx] = nxt
        failed = FAIL[nxt] & (clock[idx] <= t_max)
        hit[idx[failed]] = clock[idx[failed]]
        alive[idx[failed | (clock[idx] > t_max)]] = False
    return hit


def monte_carlo(start, age, minutes, n_paths=200_000, seed=1, **kw):
    hit = hitting_times(start, age, n_paths, seed, t_max=max(minutes), **kw)
    p = np.array([(hit <= m).mean() for m in minutes])
    return p, np.sqrt(p * (1 - p) / n_paths)


@pytest.fixture(scope="module")
def weibull_frame():
    return renewal_frame(WAITS_WEIBULL, 1500, 120, seed=7)


@pytest.fixture(scope="module")
def weibull_models(weibull_frame):
    kw = {"states": {"failure": ["down"]}, "alpha": 0.0, "beta": 0.0}
    return {kind: FaultPredictor(time_model=kind, **kw).fit(weibull_frame) for kind in ("semi_markov", "ctmc")}


# ------------------------------------------------------------------ counting
def test_sojourns_and_rates_hand_counted():
    # a: ok 2 min, ok 3 min, slow 7 min, then ok open for 4 min at the data end (b's last step)
    # b: slow 1 min, then a 50-minute silence past max_gap (censored), then ok open for 0
    minute = pd.Timedelta("1min")
    frame = pd.DataFrame({
        "entity": ["a"] * 4 + ["b"] * 3,
        "time": [START + k * minute for k in (0, 2, 5, 12)] + [START + k * minute for k in (0, 1, 16)],
        "status": ["ok", "ok", "slow", "ok", "slow", "ok", "down"],
    })
    frame.loc[6, "time"] = START + 51 * minute
    frame = frame.sort_values(["entity", "time"])
    model = FaultPredictor(states={"failure": ["down"]}, max_gap="30min", time_model="ctmc").fit(frame)
    timing = fitted_time(model)
    names = list(model.states_.state_names_)
    done = dict(zip(names, timing.counts.done.sum(axis=1)))
    cens = dict(zip(names, timing.counts.cens.sum(axis=1)))
    risk = dict(zip(names, (timing.counts.done_sum + timing.counts.cens_sum) / 60))
    assert done == {"down": 0, "ok": 2, "slow": 2}
    # ok: a's open 39 minutes (12 -> 51) and b's 50-minute silence, each watched for max_gap = 30 minutes;
    # slow: none; down: b's open 0
    assert cens == {"down": 1, "ok": 2, "slow": 0}
    assert risk["ok"] == pytest.approx(2 + 3 + 30 + 30)
    assert risk["slow"] == pytest.approx(7 + 1)
    overall = 4 / (65 + 8) / 60  # per second
    expected = {"ok": (2 + 1) / (65 * 60 + 1 / overall), "slow": (2 + 1) / (8 * 60 + 1 / overall),
                "down": 1 / (0 + 1 / overall)}
    assert dict(zip(names, timing.rates)) == pytest.approx(expected, rel=1e-12)


def test_sojourns_add_across_batches(weibull_frame):
    weibull_frame = weibull_frame[weibull_frame["entity"] < "h0300"]
    kw = {"states": {"failure": ["down"]}}
    whole = FaultPredictor(**kw).fit(weibull_frame)
    cut = weibull_frame["time"].quantile(0.6)
    parts = FaultPredictor(**kw).fit(weibull_frame[weibull_frame["time"] < cut])
    before = parts.time_failure_probabilities(["3min", "20min"])  # the time model of the first batch
    parts.partial_fit(weibull_frame[weibull_frame["time"] >= cut])
    assert not parts.time_failure_probabilities(["3min", "20min"]).equals(before)
    streamed = FaultPredictor(**kw).fit(weibull_frame, chunksize=12_000)
    for other in (parts, streamed):
        a, b = whole.sojourn_counts_, other.sojourn_counts_
        assert np.array_equal(a.done, b.done) and np.array_equal(a.cens, b.cens)
        assert np.allclose(a.done_sum, b.done_sum, rtol=1e-12)
    # the same sojourns: the same fit (to the optimiser's tolerance: the sums were added in another order)
    pd.testing.assert_frame_equal(parts.time_failure_probabilities(["3min", "20min"]),
                                  whole.time_failure_probabilities(["3min", "20min"]), rtol=1e-6)


# ------------------------------------------------------------------ continuous-time chain
def expm_reference(T, rates, mask, start, t):
    """P(some jump within t lands in a failure state | start), by expm of the generator with a copy of the
    start state in front (the current state does not count), failure states absorbing."""
    n = len(rates)
    q = np.zeros((n + 1, n + 1))
    q[:n, :n] = np.diag(rates) @ (T - np.eye(n))
    q[np.flatnonzero(mask)] = 0.0
    q[n, :n] = rates[start] * T[start]
    q[n, n] = -rates[start]
    return float(linalg.expm(t * q)[n, :n][mask].sum())


@pytest.mark.parametrize("history", [None, {"order": 2}], ids=["plain", "order-2"])
def test_ctmc_equals_expm_of_the_generator(history):
    frame = renewal_frame(WAITS_EXPON, 60, 40, seed=3)
    model = FaultPredictor(states={"failure": ["down"]}, history=history, time_model="ctmc").fit(frame)
    chain = model.chain_
    T = chain.transition_matrix()
    T = T.toarray() if hasattr(T, "toarray") else np.asarray(T)
    # the rates by hand: completed sojourns / time at risk, open last sojourns censored at the data end
    ordered = frame.sort_values(["entity", "time"])
    t = (ordered["time"] - START).dt.total_seconds().to_numpy()
    nxt = (ordered.groupby("entity")["time"].shift(-1) - START).dt.total_seconds().to_numpy()
    last = np.isnan(nxt)
    wait = np.where(last, t.max() - t, nxt - t)
    names = list(model.states_.state_names_)
    code = ordered["status"].map({s: k for k, s in enumerate(names)}).to_numpy()
    n = np.bincount(code[~last], minlength=3)
    risk = np.bincount(code, wait, minlength=3)
    rate = (n + 1) / (risk + risk.sum() / n.sum())
    rates = rate[chain.base_state_]
    mask = np.asarray(chain.is_failure_)
    minutes = [0.5, 3, 10, 45]
    table = model.time_failure_probabilities([f"{m}min" for m in minutes])
    for i in range(len(rates)):
        ref = [expm_reference(T, rates, mask, i, 60 * m) for m in minutes]
        np.testing.assert_allclose(table.iloc[i].to_numpy(), ref, rtol=0, atol=1e-9)
    # an event mix moves T, not the rates
    mixed = model.time_failure_probabilities(["10min"], event_mix={"step": 1.0})
    np.testing.assert_allclose(mixed.to_numpy()[:, 0], table["10min"].to_numpy(), atol=1e-12)


# ------------------------------------------------------------------ semi-Markov chain
def test_semi_markov_matches_monte_carlo_where_ctmc_does_not(weibull_models):
    minutes = [2, 5, 10, 30]
    within = [f"{m}min" for m in minutes]
    truth, se = monte_carlo(1, 0.0, minutes)
    semi = weibull_models["semi_markov"]
    assert semi.time_model_.loc["degraded", "family"] == "weibull_min"
    assert semi.time_model_.loc["degraded", "shape"] == pytest.approx(3.0, rel=0.05)
    p_semi = semi.time_failure_probabilities(within).loc["degraded"].to_numpy()
    p_ctmc = weibull_models["ctmc"].time_failure_probabilities(within).loc["degraded"].to_numpy()
    z_semi, z_ctmc = (p_semi - truth) / se, (p_ctmc - truth) / se
    assert np.all(np.abs(z_semi) < 3), z_semi
    assert abs(z_ctmc[0]) > 20  # exponential waits overstate the 2-minute risk several times over
    assert p_ctmc[0] > 4 * truth[0]


def test_age_conditioning_matches_monte_carlo(weibull_models, weibull_frame):
    # three handlers whose last step entered `degraded`, silent for 0, 4 and 7 minutes at the forecast time
    model = weibull_models["semi_markov"]
    at = START + pd.Timedelta("10D")
    ages = [0.0, 4.0, 7.0]
    frame = pd.DataFrame({"entity": ["x", "x", "y", "y", "z", "z"],
                          "time": [at - pd.Timedelta(minutes=age + d) for age in ages for d in (5, 0)],
                          "status": ["ok", "degraded"] * 3})
    minutes = [2, 5, 10]
    out = model.predict(frame, within=[f"{m}min" for m in minutes], at=at, rate_factors=False,
                        layout="wide")
    np.testing.assert_allclose(out["silent_for"].dt.total_seconds() / 60, ages)
    for k, age in enumerate(ages):
        truth, se = monte_carlo(1, age, minutes, n_paths=100_000, seed=10 + k)
        p = out.loc[k, [f"p_fail_{m}min" for m in minutes]].to_numpy(float)
        # the model's own error (fitted on 130,000 steps) is small beside three standard errors
        assert np.all(np.abs(p - truth) < 3 * se + 0.004), (age, p, truth)
    assert out.loc[2, "p_fail_2min"] > 10 * out.loc[0, "p_fail_2min"]  # a worn-out wait is about to end


def test_rate_factor_is_the_state_curve_at_c_times_t(weibull_models):
    # a handler twice as fast as its states: 300 sojourns, all at half the usual length
    model = weibull_models["semi_markov"]
    fast = renewal_frame(WAITS_WEIBULL, 1, 301, seed=11, speed=[2.0])
    at = fast["time"].max()
    out = model.predict(fast, within=["5min"], at=at)
    c = float(out["rate_factor"].iloc[0])
    assert 1.7 < c < 2.3
    state = out["state"].iloc[0]
    curve = model.time_failure_probabilities([f"{5 * c}min"]).loc[state].iloc[0]
    assert out["p_fail"].iloc[0] == pytest.approx(curve, abs=2e-4)  # the curve at c * T (grid error)
    # ... and matches the true process of a handler at speed 2 (Monte Carlo), the factor's noise allowed
    start = STATES.index(state)
    truth, se = monte_carlo(start, 0.0, [5.0], n_paths=100_000, seed=5, speed=2.0)
    assert abs(out["p_fail"].iloc[0] - truth[0]) < 0.05
    slow = model.predict(fast, within=["5min"], at=at, rate_factors=False)
    assert (out["p_fail"].iloc[0] - slow["p_fail"].iloc[0]) * (truth[0] - slow["p_fail"].iloc[0]) > 0


def test_estimated_rate_factor_by_hand():
    frame = renewal_frame(WAITS_EXPON, 4, 30, seed=2, speed=[1.0, 1.0, 3.0, 0.5])
    model = FaultPredictor(states={"failure": ["down"]}, time_model="ctmc").fit(frame)
    out = model.predict(frame, within=["1h"], layout="wide")
    timing = fitted_time(model)
    names = list(model.states_.state_names_)
    ordered = frame.sort_values(["entity", "time"])
    wait = ordered.groupby("entity")["time"].diff().shift(-1).dt.total_seconds()
    mean = pd.Series([d.mean for d in timing.dists], index=names)
    scaled = (wait / ordered["status"].map(mean)).groupby(ordered["entity"]).sum()
    n = wait.notna().groupby(ordered["entity"]).sum()
    c = (n + RATE_PRIOR) / (scaled + RATE_PRIOR)
    expected = 1.01 ** np.rint(np.log(c.to_numpy()) / math.log(1.01))
    np.testing.assert_allclose(out["rate_factor"].to_numpy(), expected, rtol=1e-12)
    assert c.iloc[2] > 2 and c.iloc[3] < 0.7


# ------------------------------------------------------------------ silence, output, errors
def test_silence_fails_flags_a_missing_heartbeat(weibull_models):
    model = weibull_models["semi_markov"]
    at = START + pd.Timedelta("3D")
    frame = pd.DataFrame({"entity": ["quiet", "quiet", "busy", "busy"],
                          "time": [at - pd.Timedelta("2h"), at - pd.Timedelta("95min"),
                                   at - pd.Timedelta("6min"), at - pd.Timedelta("1min")],
                          "status": ["ok", "ok", "ok", "ok"]})
    out = model.predict(frame, within=["5min", "1h"], at=at, silence_fails="90min", layout="wide")
    out = out.set_index("entity")
    assert out.loc["quiet", "silent"] and not out.loc["busy", "silent"]
    assert (out.loc["quiet", ["p_fail_5min", "p_fail_1h"]] == 1.0).all()
    assert (out.loc["busy", ["p_fail_5min", "p_fail_1h"]] < 1.0).all()
    plain = model.predict(frame, within=["5min", "1h"], at=at, layout="wide").set_index("entity")
    assert plain.loc["busy", "p_fail_1h"] == out.loc["busy", "p_fail_1h"]
    assert "silent" not in plain


def test_output_layouts_and_mixed_horizons(weibull_models, weibull_frame):
    model = weibull_models["semi_markov"]
    recent = weibull_frame[weibull_frame["entity"].isin(["h0001", "h0002"])]
    tidy = model.predict(recent, horizon=2, within=["5min", "1h"])
    assert list(tidy.columns) == ["entity", "as_of", "state", "horizon", "kind", "p_fail", "silent_for",
                                  "rate_factor", "n_support"]
    support = model.predict(recent, horizon=1, interval=0.9, n_draws=20)["n_support"].to_numpy()
    np.testing.assert_array_equal(tidy["n_support"].to_numpy()[::4], support)
    assert list(tidy["horizon"].cat.categories) == ["1", "2", "5min", "1h"]
    assert tidy["kind"].tolist() == ["steps", "steps", "time", "time"] * 2
    steps = model.predict(recent, horizon=2)
    np.testing.assert_allclose(tidy.loc[tidy["kind"] == "steps", "p_fail"], steps["p_fail"])
    wide = model.predict(recent, horizon=2, within=["5min", "1h"], layout="wide")
    assert [c for c in wide.columns if c.startswith("p_fail")] == ["p_fail_1", "p_fail_2", "p_fail_5min",
                                                                   "p_fail_1h"]
    np.testing.assert_allclose(wide[["p_fail_1", "p_fail_2", "p_fail_5min", "p_fail_1h"]].to_numpy().reshape(-1),
                               tidy["p_fail"])
    # from the remembered last steps; the default forecast time is the latest step
    remembered = model.predict(None, within="5min")
    assert len(remembered) == 1500 and remembered["silent_for"].min() == pd.Timedelta(0)


def test_model_file_keeps_the_time_model(weibull_models, weibull_frame, tmp_path):
    model = weibull_models["semi_markov"]
    model.save(tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz")
    assert loaded.time_model == "semi_markov"
    recent = weibull_frame[weibull_frame["entity"] < "h0010"]
    pd.testing.assert_frame_equal(loaded.predict(recent, within=["5min", "1h"]),
                                  model.predict(recent, within=["5min", "1h"]))


def test_integer_time_takes_numbers():
    frame = pd.DataFrame({"entity": ["a"] * 5, "time": [0, 3, 4, 10, 12],
                          "status": ["ok", "ok", "down", "ok", "ok"]})
    model = FaultPredictor(states={"failure": ["down"]}, time_model="ctmc").fit(frame)
    out = model.predict(frame, within=[1, 5])
    assert out["horizon"].tolist() == ["1", "5"] and out["silent_for"].tolist() == [0.0, 0.0]
    with pytest.raises(ConfigError, match="integer sequence"):
        model.predict(frame, within=["5min"])


@pytest.mark.parametrize("kwargs, match", [
    ({"within": "5 parsecs"}, "not a duration"),
    ({"within": 5}, "bare number"),
    ({"within": []}, "at least one"),
    ({"within": ["-5min"]}, "positive"),
    ({"within": ["5min", "5min"]}, "twice"),
    ({"within": ["5min"], "scenario": ["step"]}, "event mix"),
    ({"within": ["5min"], "interval": 0.9}, "step horizons only"),
    ({"within": ["5min"], "silence_fails": 3}, "silence_fails"),
])
def test_bad_time_horizons_are_config_errors(weibull_models, weibull_frame, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        weibull_models["ctmc"].predict(weibull_frame.head(50), **kwargs)


def test_bad_time_settings_and_old_models(weibull_frame):
    with pytest.raises(ConfigError, match="time_model"):
        FaultPredictor(states={"failure": ["down"]}, time_model="markov").fit(weibull_frame.head(50))
    with pytest.raises(ConfigError, match="sojourn"):
        FaultPredictor(states={"failure": ["down"]}, sojourn="normal").fit(weibull_frame.head(50))
    model = FaultPredictor(states={"failure": ["down"]}).fit(weibull_frame.head(50))
    model.sojourn_counts_ = None  # as a model file written before time horizons
    with pytest.raises(NotFittedError, match="fit it again"):
        model.predict(weibull_frame.head(50), within="5min")


def test_the_fft_renewal_equals_the_forward_steps():
    # a dense chain solves the renewal equations by FFT, a sparse one steps forward: the same numbers
    from scipy import sparse

    from markovfault._sojourns import Parametric
    from markovfault._timehorizons import semi_markov_failure

    rng = np.random.default_rng(4)
    T = rng.random((6, 6)) ** 2
    T /= T.sum(axis=1, keepdims=True)
    mask = np.array([False, False, False, False, True, True])
    dists = [Parametric("weibull_min", 2.5, 3.0), Parametric("lognorm", 0.7, 1.3), Parametric("gamma", 0.6, 4.0),
             Parametric("expon", None, 2.2), Parametric("expon", None, 1.0), Parametric("weibull_min", 1.5, 0.8)]
    rows = np.repeat(np.arange(6), 3)
    ages, times = rng.uniform(0, 6, 18), rng.uniform(0.5, 20, (18, 2))
    dense = semi_markov_failure(T, mask, np.arange(6), dists, rows, ages, times, grid=800)
    steps = semi_markov_failure(sparse.csr_matrix(T), mask, np.arange(6), dists, rows, ages, times, grid=800)
    np.testing.assert_allclose(dense, steps, rtol=0, atol=1e-9)


def test_sojourn_bins_read_from_the_bits_equal_a_search_of_the_edges():
    from markovfault._sojourns import EDGES, N_BINS, _bin

    rng = np.random.default_rng(8)
    d = np.r_[0.0, 1e-6, EDGES[1:], np.nextafter(EDGES[1:], 0), rng.lognormal(2, 4, 50_000), 1e15]
    expected = np.clip(np.searchsorted(EDGES, d, side="right") - 1, 0, N_BINS - 1)
    np.testing.assert_array_equal(_bin(d), expected)
