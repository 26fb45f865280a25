"""Tests of the Markov renewal clock of markovfault.simulate (``sojourns``, ``rate_spread``) and of its
exact truth in time, each against a computation that does not share its code: the jittered clock, the
distributions' own CDFs, the closed form of the exponential case and numerical convolution."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, signal, stats

from markovfault.exceptions import ConfigError
from markovfault.simulate import OrderServiceSystem, simulate_histories

SOJOURNS = {
    "ok": stats.weibull_min(3, scale=1.5),
    "slow": stats.gamma(2.0, scale=0.4),
    "error": stats.expon(scale=0.5),
}


def _toy_system() -> OrderServiceSystem:
    """ok -> error with probability .4, ok -> ok otherwise; error -> ok always; one event."""
    P = np.array([[[0.6, 0.4], [1.0, 0.0]]])
    return OrderServiceSystem(
        state_names=("ok", "error"), event_names=("tick",), failure_states=("error",),
        event_matrices={"normal": P}, event_probs={"normal": np.ones((2, 1))},
    )


def _waits(sim):
    """(previous state, wait in units of step_interval times the handler's rate factor) per step after the first."""
    f = sim.frame.sort_values(["handler", "timestamp"], kind="stable")
    gap = f.groupby("handler")["timestamp"].diff() / sim.step_interval
    prev = f.groupby("handler")["status"].shift()
    scaled = gap * f["handler"].map(sim.rate_factors)
    keep = prev.notna()
    return prev[keep].to_numpy(), scaled[keep].to_numpy(dtype=float), gap[keep].to_numpy(dtype=float), \
        f["handler"][keep].to_numpy()


# sha256 of the CSV of simulate_histories(12, 150, random_state=4, with_metrics=False, **options), taken
# with the code before sojourns existed (metrics left out: their decimals are the platform's)
BEFORE_SOJOURNS = [
    ({}, "9128e2940a994a49ee4928a4b503e6c93fc96f2352ffb87a9549caf22b4c3698"),
    ({"memory_window": 5, "outages": 1, "outage_length": 20},
     "8c50c30cf2bdf0c5853dabc965528f04c9db05ebf4fb2e71bf4e1f15c0bb62db"),
    ({"n_groups": 2, "finish_rate": 0.01, "start_spread": 10},
     "da78bb3db8c7743e9ed847bcb70bddb5943c7cb68d9d224b3366e09bc5770bd6"),
]


@pytest.mark.parametrize("options, digest", BEFORE_SOJOURNS)
def test_sojourns_none_is_the_jittered_clock(options, digest):
    before = simulate_histories(12, 150, random_state=4, **options)
    after = simulate_histories(12, 150, random_state=4, sojourns=None, rate_spread=0.0, **options)
    pd.testing.assert_frame_equal(before, after)
    plain = simulate_histories(12, 150, random_state=4, with_metrics=False, sojourns=None, **options)
    assert hashlib.sha256(plain.to_csv(index=False).encode()).hexdigest() == digest
    sim = simulate_histories(3, 20, random_state=0, return_result=True)
    assert sim.sojourns is None and (sim.rate_factors == 1.0).all()


def test_sojourns_change_only_the_clock():
    plain = simulate_histories(20, 200, random_state=9, with_metrics=False, with_event_ids=False)
    timed = simulate_histories(20, 200, random_state=9, with_metrics=False, with_event_ids=False,
                               sojourns=SOJOURNS, rate_spread=0.5)
    for column in ("handler", "event_type", "status", "handler_class"):
        assert timed[column].equals(plain[column])
    assert not timed["timestamp"].equals(plain["timestamp"])
    assert (timed.groupby("handler")["timestamp"].diff().dropna() > pd.Timedelta(0)).all()
    first = timed.groupby("handler")["timestamp"].min()
    assert (first < pd.Timestamp("2026-01-01 00:01", tz="UTC")).all()


def test_waits_follow_their_distribution_and_rate_factors_scale_them():
    sim = simulate_histories(150, 400, random_state=3, sojourns=SOJOURNS, rate_spread=0.5,
                             with_metrics=False, with_event_ids=False, return_result=True)
    assert set(sim.sojourns) == set(sim.system.state_names)
    assert sim.sojourns["timeout"].dist.name == "expon" and sim.sojourns["timeout"].mean() == 1.0
    prev, scaled, raw, handler = _waits(sim)
    for state, dist in sim.sojourns.items():
        x = scaled[prev == state]
        assert x.size > 300, state
        # the times are whole milliseconds of a one-minute interval: far below the KS resolution
        assert stats.kstest(x, dist.cdf).pvalue > 1e-3, state
    # the raw waits of the ok state are not Weibull(3, 1.5): the rate factors matter
    assert stats.kstest(raw[prev == "ok"], SOJOURNS["ok"].cdf).pvalue < 1e-6
    # each handler's mean ok wait is mean / c: log mean on log c has slope -1
    ok = pd.DataFrame({"h": handler[prev == "ok"], "w": raw[prev == "ok"]}).groupby("h")["w"].mean()
    c = sim.rate_factors.reindex(ok.index)
    slope, intercept = np.polyfit(np.log(c), np.log(ok), 1)
    assert abs(slope + 1.0) < 0.05
    assert abs(np.exp(intercept) - SOJOURNS["ok"].mean()) < 0.03
    assert abs(np.std(np.log(sim.rate_factors)) - 0.5) < 0.1


def test_monte_carlo_truth_equals_the_expm_closed_form():
    means = {"ok": 2.0, "slow": 0.7, "error": 0.5, "timeout": 1.5, "down": 3.0}
    sim = simulate_histories(60, 200, random_state=5, rate_spread=0.5, with_metrics=False,
                             sojourns={s: stats.expon(scale=m) for s, m in means.items()}, return_result=True)
    within = ["30s", "3min", "12min", "45min"]
    worst = 0.0
    for at in ("2026-01-01 03:00", "2026-01-01 05:17:30", None):  # different ages, failure states among them
        mc = sim.true_time_failure_probabilities(within, at, n_paths=20000, random_state=1)
        exact = sim.true_time_failure_probabilities(within, at, method="expm")
        assert mc.probabilities.index.equals(exact.probabilities.index)
        assert (mc.standard_errors.to_numpy() > 0).all()
        z = (mc.probabilities - exact.probabilities).abs() / mc.standard_errors
        worst = max(worst, float(z.max().max()))
        assert mc.origins["state"].isin(["error", "timeout", "down"]).any()
        assert mc.origins["age"].nunique() == len(mc.origins)
    assert worst < 4.0
    # the age-0 table: the same closed form
    mc = sim.true_time_failure_table(within, n_paths=20000, random_state=2)
    exact = sim.true_time_failure_table(within, method="expm")
    assert float(((mc.probabilities - exact.probabilities).abs() / mc.standard_errors).max().max()) < 4.0


def test_expm_from_a_failure_state_counts_only_the_next_steps():
    # toy with exponential waits: from error (mean 0.5) the next step goes to ok (mean 1.5) for sure,
    # so P(fail within T | error) = int_0^T lam_e exp(-lam_e u) P(fail within T - u | ok) du,
    # P(fail within t | ok) = 1 - exp(-0.4 t / 1.5) (thinning)
    sim = simulate_histories(4, 30, system=_toy_system(), flaky_fraction=0.0, with_metrics=False,
                             sojourns={"ok": stats.expon(scale=1.5), "error": stats.expon(scale=0.5)},
                             random_state=0, return_result=True)
    table = sim.true_time_failure_table(["1min", "4min"], method="expm").probabilities
    ok = lambda t: 1.0 - np.exp(-0.4 * t / 1.5)  # noqa: E731
    for label, T in (("1min", 1.0), ("4min", 4.0)):
        want = integrate.quad(lambda u: 2.0 * np.exp(-2.0 * u) * ok(T - u), 0.0, T)[0]
        assert table.loc[("normal", "error"), label] == pytest.approx(want, abs=1e-9)
        assert table.loc[("normal", "ok"), label] == pytest.approx(ok(T), abs=1e-9)


def _fail_cdf_by_convolution(age: float, t: float, dist, dx: float = 5e-4) -> float:
    """P(fail within t | ok at age `age`) of the toy, rate factor 1, by numerical convolution.

    The first step comes after the residual R (density f(age + u) / S(age)), the later ones after
    fresh waits; each step fails with probability .4: F = sum_n .6^(n-1) .4 P(R + W_2 + .. + W_n <= t).
    Masses per cell from the exact CDFs, placed at the cell middles (error about 2e-5 at dx = 5e-4).
    """
    n = int(np.ceil(t / dx)) + 1
    edges = np.arange(n + 1) * dx
    fresh = np.diff(dist.cdf(edges))
    residual = np.diff(-np.expm1(dist.logsf(age + edges) - dist.logsf(age)))
    total, mass, k = 0.0, residual, 1
    while True:
        # a sum of k cell-middle variables sits at (index + k / 2) dx
        cells = np.arange(mass.size) + k / 2.0
        within = mass[cells * dx <= t].sum()
        total += 0.6 ** (k - 1) * 0.4 * within
        if 0.6 ** (k - 1) * within < 1e-7:
            return total
        mass = signal.fftconvolve(mass, fresh)[:n]
        k += 1


def test_weibull_toy_matches_numerical_convolution_at_age_zero():
    weibull = stats.weibull_min(3, scale=1.0)
    sim = simulate_histories(4, 30, system=_toy_system(), flaky_fraction=0.0, with_metrics=False,
                             sojourns={"ok": weibull}, random_state=0, return_result=True)
    within = ["30s", "1min", "2min", "4min"]
    table = sim.true_time_failure_table(within, n_paths=20000, random_state=3)
    for label, T in zip(within, (0.5, 1.0, 2.0, 4.0)):
        want = _fail_cdf_by_convolution(0.0, T, weibull)
        got, se = table.probabilities.loc[("normal", "ok"), label], table.standard_errors.loc[("normal", "ok"), label]
        assert abs(got - want) < 4 * se + 2e-4, (label, got, want, se)
    # the rule for a rate factor c: the rate-1 curve at c T
    fast = sim.true_time_failure_table(["1min"], rate_factor=2.0, n_paths=20000, random_state=3)
    slow = sim.true_time_failure_table(["2min"], n_paths=20000, random_state=3)
    assert fast.probabilities.to_numpy() == pytest.approx(slow.probabilities.to_numpy(), abs=1e-12)


def test_weibull_toy_age_conditioning_matches_numerical_convolution():
    weibull = stats.weibull_min(3, scale=1.0)
    sim = simulate_histories(40, 40, system=_toy_system(), flaky_fraction=0.0, with_metrics=False,
                             sojourns={"ok": weibull}, rate_spread=0.3, random_state=2, return_result=True)
    truth = sim.true_time_failure_probabilities(["1min", "3min"], "2026-01-01 00:20", n_paths=20000,
                                                random_state=4)
    ok = truth.origins[truth.origins["state"] == "ok"]
    assert len(ok) >= 15
    ages = ok["age"] / pd.Timedelta("1min")
    assert ages.max() > 0.8 and ages.min() < 0.3  # old ages are much riskier for a Weibull(3) wait
    for handler, row in ok.iterrows():
        c, a = row["rate_factor"], ages[handler]
        for label, T in (("1min", 1.0), ("3min", 3.0)):
            want = _fail_cdf_by_convolution(c * a, c * T, weibull)
            got = truth.probabilities.loc[handler, label]
            se = truth.standard_errors.loc[handler, label]
            assert abs(got - want) < 4 * se + 2e-4, (handler, label, got, want, se)
    # the age matters: the oldest ok handler's risk is far from that of its state entered afresh
    old = ages.idxmax()
    c = ok.loc[old, "rate_factor"]
    fresh = _fail_cdf_by_convolution(0.0, c * 1.0, weibull)
    assert truth.probabilities.loc[old, "1min"] > fresh + 0.1


def test_the_truth_in_time_refuses_what_it_cannot_make_exact():
    with pytest.raises(ConfigError, match="sojourns"):
        simulate_histories(3, 20, random_state=0, return_result=True).true_time_failure_probabilities("1min")
    for options in ({"memory_window": 3}, {"n_groups": 2}, {"finish_rate": 0.01},
                    {"mix_shifts": [(0, 5, {"payment_failed": 3.0})]}):
        sim = simulate_histories(4, 30, random_state=0, sojourns="exponential", return_result=True, **options)
        with pytest.raises(ConfigError, match="exact only"):
            sim.true_time_failure_probabilities("1min")
    weibull = simulate_histories(4, 30, random_state=0, sojourns=SOJOURNS, return_result=True)
    with pytest.raises(ConfigError, match="method='mc'"):
        weibull.true_time_failure_probabilities("1min", method="expm")
    with pytest.raises(ConfigError, match="within"):
        weibull.true_time_failure_probabilities(["-1min"])
    early = weibull.true_time_failure_probabilities("1min", "2025-12-31", n_paths=100)
    assert early.probabilities.empty  # no handler has a step yet


@pytest.mark.parametrize("options, match", [
    ({"sojourns": {"stuck": stats.expon()}}, "not among"),
    ({"sojourns": {"ok": stats.norm(1.0, 1.0)}}, "negative times"),
    ({"sojourns": {"ok": stats.weibull_min}}, "not a frozen"),
    ({"sojourns": {"ok": 1.5}}, "not a frozen"),
    ({"sojourns": {"ok": stats.poisson(2.0)}}, "continuous"),
    ({"sojourns": "weibull"}, "only name"),
    ({"sojourns": "exponential", "clock": "aligned"}, "clock='drift'"),
    ({"sojourns": "exponential", "idle_after": "80s"}, "idle_after"),
    ({"rate_spread": 0.5}, "needs sojourns"),
    ({"sojourns": "exponential", "rate_spread": -1.0}, "rate_spread"),
])
def test_sojourn_options_are_checked(options, match):
    with pytest.raises(ConfigError, match=match):
        simulate_histories(3, 10, random_state=0, **options)


def test_origins_are_each_handlers_last_step_before_the_time():
    sim = simulate_histories(15, 60, random_state=6, sojourns=SOJOURNS, rate_spread=0.4, start_spread=30,
                             duplicate_rate=0.1, shuffle=True, with_metrics=False, return_result=True)
    at = pd.Timestamp("2026-01-01 00:40", tz="UTC")
    truth = sim.true_time_failure_probabilities(["5min"], at, n_paths=500)
    f = sim.frame[sim.frame["timestamp"] <= at].sort_values("timestamp")
    last = f.groupby("handler").tail(1).set_index("handler").sort_index()
    assert truth.origins.index.equals(last.index)  # handlers that start later are left out
    assert len(last) < 15
    assert (truth.origins["state"] == last["status"]).all()
    assert (truth.origins["age"] == at - last["timestamp"]).all()
    assert (truth.origins["rate_factor"] == sim.rate_factors[last.index]).all()
