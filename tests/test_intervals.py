"""Posterior intervals: draws of every row from its Dirichlet posterior, pushed through the k-step recursion.

References: the fitted rows (the draws' means), the dense recursion of one draw at a time
(:func:`markovfault.forecast.failure_probabilities` on a matrix built here from the draws), the true
P(fail within h) of simulated chains (coverage), and 1/sqrt(n) (the width as the history grows).
"""

import warnings

import numpy as np
import pandas as pd
import pytest

from markovfault import FaultPredictor
from markovfault.chain import EventMarkovChain, HistoryChain, failure_draws
from markovfault.forecast import (expected_steps_to_failure, failure_probabilities, scenario_failure_probabilities,
                                  simulate_chain)
from markovfault.states import HistorySpec
from markovfault.trajectories import Trajectories

NAMES = ["ok", "slow", "down"]
FAIL = np.array([False, False, True])
# a true event-driven chain with uneven rows: P[e, i, j], arrivals Q[i, e]
P_TRUE = np.array([[[.86, .10, .04], [.50, .38, .12], [.55, .15, .30]],
                   [[.70, .17, .13], [.30, .45, .25], [.35, .20, .45]]])
Q_TRUE = np.array([[.8, .2], [.55, .45], [.6, .4]])
SCENARIO = ["b", "b", "a", "b", "a"]
H = 5


def _plain_counts(n_rep, n_ent, n_steps, seed):
    """Transition counts (n_rep, E, S, S) of n_rep independent histories of n_ent entities, simulated all
    at once from the true chain."""
    rng = np.random.default_rng(seed)
    start = rng.choice(3, size=n_rep * n_ent, p=[.7, .2, .1])
    states, events = simulate_chain(P_TRUE, Q_TRUE, start, n_steps, random_state=seed)
    prev = np.concatenate([start[:, None], states[:, :-1]], axis=1)
    rep = np.repeat(np.arange(n_rep), n_ent)[:, None]
    idx = ((rep * 2 + events) * 3 + prev) * 3 + states
    return np.bincount(idx.ravel(), minlength=n_rep * 18).reshape(n_rep, 2, 3, 3)


def _covered(bounds, truth, rows=slice(None)):
    """Whether the bounds of the chain states ``rows`` hold ``truth``."""
    return (bounds.lower[rows] <= truth) & (truth <= bounds.upper[rows])


# ---------------------------------------------------------------------------- the draws
def test_the_draws_of_the_plain_chain_average_to_its_fitted_rows():
    counts = np.array([[[31, 7, 3], [9, 5, 2], [4, 1, 0]], [[6, 2, 5], [1, 0, 0], [0, 0, 0]]])
    chain = EventMarkovChain(alpha=1.0, beta=3.0).fit_from_counts(counts, NAMES, ["a", "b"], FAIL)
    draws = chain.posterior_draws(40000, np.random.default_rng(5))
    for key, fitted in (("pooled", chain.pooled_matrix_), ("event_matrices", chain.event_matrices_),
                        ("event_probs", chain.event_probs_)):
        mean, se = draws[key].mean(axis=0), draws[key].std(axis=0) / np.sqrt(40000)
        assert np.all(np.abs(mean - fitted) <= 5 * se + 1e-12), key
    # a row without data is its prior: state down under event b is the pooled draw itself
    assert np.array_equal(draws["event_matrices"][:, 1, 2], draws["pooled"][:, 2])
    # and the posterior is not the prior: the well-counted row is tight, the thin one wide
    sd = draws["event_matrices"].std(axis=0)
    assert sd[0, 0, 2] < 0.5 * sd[1, 0, 2]


@pytest.mark.parametrize("spec", [HistorySpec(order=2, backoff=4.0), HistorySpec(order=2, failure_window=3, backoff="auto")],
                         ids=["numeric", "auto"])
def test_the_draws_of_the_history_chain_average_to_its_fitted_rows(spec):
    traj = _history_traj(n_ent=30, n_steps=40, seed=2)
    chain = HistoryChain(spec, alpha=1.0, beta=1.0)
    chain = chain.fit_from_counts(chain.count(traj), NAMES, ["a", "b"], FAIL)
    n = 20000
    draws = chain.posterior_draws(n, np.random.default_rng(3))
    for key, fitted in (("next_probs", chain.next_probs_), ("event_probs", chain.event_probs_)):
        mean, se = draws[key].mean(axis=0), draws[key].std(axis=0) / np.sqrt(n)
        assert np.all(np.abs(mean - fitted) <= 5 * se + 1e-9), key


def test_the_batched_recursion_equals_one_dense_recursion_per_draw_with_exogenous_components():
    """Draws of a chain with the group context and the gap, as one block-diagonal matrix, against each
    draw's dense matrix built here from the successor map: T[a, f(a, e, j, x')] += Q P R."""
    rng = np.random.default_rng(4)
    rows = []
    for g in range(3):
        for k in range(4):
            t = np.cumsum(rng.integers(1, 6, size=25))
            s = rng.choice(3, size=25, p=[.7, .2, .1])
            rows += [(f"e{g}{k}", f"g{g}", int(tt), NAMES[ss]) for tt, ss in zip(t, s)]
    frame = pd.DataFrame(rows, columns=["entity", "group", "time", "status"])
    state = frame["status"].map({n: i for i, n in enumerate(NAMES)}).to_numpy()
    traj = Trajectories.from_frame(frame, state, NAMES, ["down"])
    spec = HistorySpec(order=1, group_levels=3, group_window=6, gap_edges=[2, 4], backoff=2.0)
    chain = HistoryChain(spec).fit_from_counts(HistoryChain(spec).count(traj), NAMES, traj.event_names, FAIL)
    assert chain.exo_probs_ is not None
    got = failure_draws(chain, 4, n_draws=5, random_state=9)
    draws = chain.posterior_draws(5, np.random.default_rng(9))
    A = chain.n_aug_
    succ = chain.successor_  # (A, E, S, X)
    a, e, j, x = np.meshgrid(*[np.arange(n) for n in succ.shape], indexing="ij")
    for d in range(5):
        w = (draws["event_probs"][d][a, e] * draws["next_probs"][d][e, a, j] * draws["exo_probs"][d][a, x])
        T = np.zeros((A, A))
        np.add.at(T, (a.ravel(), succ.ravel()), w.ravel())
        np.testing.assert_allclose(got[d], failure_probabilities(T, chain.is_failure_, 4), atol=1e-12)


def test_expected_steps_bounds_are_quantiles_of_each_draws_closed_form():
    counts = np.array([[[60, 25, 9], [20, 11, 6], [7, 2, 1]]])
    chain = EventMarkovChain(alpha=1.0, beta=1.0).fit_from_counts(counts, NAMES, ["a"], FAIL)
    bounds = chain.expected_steps_to_failure(interval=0.8, n_draws=300, random_state=6)
    draws = chain.posterior_draws(300, np.random.default_rng(6))
    T = np.einsum("dse,desj->dsj", draws["event_probs"], draws["event_matrices"])
    each = np.array([expected_steps_to_failure(t, FAIL) for t in T])
    lo, hi = np.quantile(each, [0.1, 0.9], axis=0)
    np.testing.assert_allclose(bounds.lower, lo, rtol=1e-10)
    np.testing.assert_allclose(bounds.upper, hi, rtol=1e-10)
    np.testing.assert_array_equal(bounds.estimate, chain.expected_steps_to_failure())
    assert np.all(bounds.lower < bounds.estimate) and np.all(bounds.estimate < bounds.upper)


def test_the_same_seed_gives_the_same_bounds_and_another_seed_others():
    chain = EventMarkovChain().fit_from_counts(_plain_counts(1, 10, 20, 1)[0], NAMES, ["a", "b"], FAIL)
    one = chain.failure_probabilities(3, interval=0.9, random_state=12)
    two = chain.failure_probabilities(3, interval=0.9, random_state=12)
    three = chain.failure_probabilities(3, interval=0.9, random_state=13)
    np.testing.assert_array_equal(one.lower, two.lower)
    assert not np.array_equal(one.lower, three.lower)


@pytest.mark.parametrize("bad, match", [({"interval": 90}, "between 0 and 1"), ({"interval": 0.9, "n_draws": 1}, "n_draws"),
                                        ({"interval": True}, "between 0 and 1")])
def test_bad_interval_settings_name_themselves(bad, match):
    chain = EventMarkovChain().fit_from_counts(_plain_counts(1, 5, 10, 1)[0], NAMES, ["a", "b"], FAIL)
    with pytest.raises(ValueError, match=match):
        chain.failure_probabilities(2, **bad)


# ---------------------------------------------------------------------------- coverage
def test_plain_chain_intervals_cover_the_truth_nine_times_in_ten_marginal_and_under_a_scenario():
    """1,000 histories of 1,200 transitions from a known chain; 90% intervals of P(fail within h | ok) and
    P(fail within h | slow), h = 1..5, marginal and under a what-if scenario."""
    T = np.einsum("ie,eij->ij", Q_TRUE, P_TRUE)
    truth = failure_probabilities(T, FAIL, H)[:2]
    truth_s = scenario_failure_probabilities(P_TRUE[[1, 1, 0, 1, 0]], FAIL)[:2]
    counts = _plain_counts(1000, 40, 30, seed=21)
    hit, hit_s = np.zeros((2, H)), np.zeros((2, H))
    for r, c in enumerate(counts):
        chain = EventMarkovChain(alpha=1.0, beta=1.0).fit_from_counts(c, NAMES, ["a", "b"], FAIL)
        hit += _covered(chain.failure_probabilities(H, interval=0.9, random_state=r), truth, slice(0, 2))
        hit_s += _covered(chain.failure_probabilities(H, SCENARIO, interval=0.9, random_state=r), truth_s,
                          slice(0, 2))
    hit, hit_s = hit / len(counts), hit_s / len(counts)
    print("coverage, marginal:", hit.round(3).tolist(), "scenario:", hit_s.round(3).tolist())
    assert np.all((hit >= 0.87) & (hit <= 0.93)), hit
    assert np.all((hit_s >= 0.87) & (hit_s <= 0.93)), hit_s


def test_interval_width_shrinks_like_one_over_the_square_root_of_the_history():
    widths = []
    for k, n_ent in enumerate((10, 40, 160)):
        w = []
        for c in _plain_counts(60, n_ent, 30, seed=30 + k):
            chain = EventMarkovChain().fit_from_counts(c, NAMES, ["a", "b"], FAIL)
            b = chain.failure_probabilities(H, interval=0.9, random_state=k)
            w.append((b.upper - b.lower)[:2])
        widths.append(np.mean(w, axis=0))
    ratios = np.array([widths[0] / widths[1], widths[1] / widths[2]])  # 4 times the history: half the width
    print("width ratios:", ratios.round(2).tolist())
    assert np.all((ratios > 1.8) & (ratios < 2.2)), ratios


# an order-2 truth: the risk of a handler depends on where it came from
P2 = np.repeat(P_TRUE[:, None], 3, axis=1).copy()  # (E, prev, cur, next)
P2[:, 2, 0] = [[.62, .14, .24], [.45, .20, .35]]   # ok right after down: relapses
P2[:, 1, 1] = [[.40, .35, .25], [.20, .45, .35]]   # slow twice: worse


def _pair_truth():
    M = np.zeros((2, 9, 9))
    for p in range(3):
        for c in range(3):
            M[:, p * 3 + c, c * 3:(c + 1) * 3] = P2[:, p, c]
    T = np.einsum("ie,eij->ij", np.tile(Q_TRUE, (3, 1)), M)
    fail = np.tile(FAIL, 3)
    return failure_probabilities(T, fail, H), scenario_failure_probabilities(M[[1, 1, 0, 1, 0]], fail)


def _simulate_order2(n_ent, n_steps, rng):
    prev, cur = rng.choice(3, size=n_ent, p=[.7, .2, .1]), rng.choice(3, size=n_ent, p=[.7, .2, .1])
    states, events = [prev, cur], [np.zeros(n_ent, int), rng.integers(0, 2, n_ent)]
    for _ in range(n_steps):
        e = (rng.random(n_ent) > Q_TRUE[cur, 0]).astype(int)
        nxt = (rng.random(n_ent)[:, None] > np.cumsum(P2[e, prev, cur], axis=1)).sum(axis=1).clip(0, 2)
        states.append(nxt), events.append(e)
        prev, cur = cur, nxt
    return np.stack(states, 1), np.stack(events, 1)


def _history_traj(n_ent, n_steps, seed, states=None, events=None):
    if states is None:
        states, events = _simulate_order2(n_ent, n_steps, np.random.default_rng(seed))
    L = states.shape[1]
    frame = pd.DataFrame({"entity": np.repeat(np.arange(len(states)), L), "time": np.tile(np.arange(L), len(states)),
                          "event": np.array(["a", "b"])[events.ravel()]})
    return Trajectories.from_frame(frame, states.ravel(), NAMES, failure=["down"])


def test_history_chain_intervals_cover_the_truth_of_states_whose_risk_depends_on_the_previous_state():
    """400 histories of 2,400 transitions from an order-2 truth; the default back-off (5 pseudo-counts);
    90% intervals of the states ok after down and slow after slow (where the history matters) and ok after
    ok, marginal and under the scenario."""
    truth, truth_s = _pair_truth()
    pairs = [("down", "ok"), ("slow", "slow"), ("ok", "ok")]
    idx = [NAMES.index(p) * 3 + NAMES.index(c) for p, c in pairs]
    states, events = _simulate_order2(400 * 80, 30, np.random.default_rng(8))
    hit, hit_s = np.zeros(H), np.zeros(H)
    for r in range(400):
        traj = _history_traj(0, 0, 0, states[r * 80:(r + 1) * 80], events[r * 80:(r + 1) * 80])
        chain = HistoryChain(HistorySpec(order=2), alpha=1.0, beta=1.0)
        chain = chain.fit_from_counts(chain.count(traj), NAMES, ["a", "b"], FAIL)
        rows = [chain.state_names_.index(f"{c}|prev={p}") for p, c in pairs]
        hit += _covered(chain.failure_probabilities(H, interval=0.9, random_state=r), truth[idx], rows).mean(axis=0)
        hit_s += _covered(chain.failure_probabilities(H, SCENARIO, interval=0.9, random_state=r), truth_s[idx],
                          rows).mean(axis=0)
    hit, hit_s = hit / 400, hit_s / 400
    print("coverage, history marginal:", hit.round(3).tolist(), "scenario:", hit_s.round(3).tolist())
    assert np.all((hit >= 0.87) & (hit <= 0.93)), hit
    assert np.all((hit_s >= 0.87) & (hit_s <= 0.93)), hit_s


# ---------------------------------------------------------------------------- the predictor
def test_predict_with_an_interval_adds_bounds_and_the_support_of_each_entitys_state():
    rng = np.random.default_rng(17)
    states, events = simulate_chain(P_TRUE, Q_TRUE, rng.choice(3, size=12), 40, random_state=17)
    frame = pd.DataFrame({"entity": np.repeat([f"h{k:02d}" for k in range(12)], 40),
                          "time": np.tile(np.arange(40), 12),
                          "event": np.array(["a", "b"])[events.ravel()],
                          "status": np.array(NAMES)[states.ravel()]})
    model = FaultPredictor(states={"kind": "categorical", "failure": ["down"], "states": NAMES}).fit(frame)
    plain = model.predict(frame, horizon=4)
    out = model.predict(frame, horizon=4, interval=0.8)
    assert list(out.columns) == list(plain.columns) + ["p_fail_lo", "p_fail_hi", "n_support"]
    pd.testing.assert_frame_equal(out[plain.columns], plain)
    assert (out["p_fail_lo"] <= out["p_fail"]).all() and (out["p_fail"] <= out["p_fail_hi"]).all()
    # n_support: the transitions counted out of each entity's last state, by hand from the frame
    last = frame.groupby("entity")["status"].last()
    left = frame.groupby("entity").apply(lambda f: f["status"].iloc[:-1]).value_counts()
    want = last.map(left).to_numpy().repeat(4)
    np.testing.assert_array_equal(out["n_support"].to_numpy(), want)
    # the bounds of one state are the chain's, whichever entities are in it
    table = model.failure_probabilities(4, interval=0.8)
    for _, row in out.drop_duplicates(["state", "horizon"]).iterrows():
        assert row["p_fail_lo"] == table[("p_fail_lo", row["horizon"])][row["state"]]
    wide = model.predict(frame, horizon=4, interval=0.8, layout="wide")
    np.testing.assert_array_equal(wide["p_fail_hi_3"].to_numpy(), out.loc[out["horizon"] == 3, "p_fail_hi"].to_numpy())
    scen = model.predict(frame, horizon=3, scenario=["b", "b", "a"], interval=0.8)
    assert (scen["p_fail_lo"] <= scen["p_fail"]).all() and (scen["p_fail"] <= scen["p_fail_hi"]).all()


def test_predict_intervals_of_a_history_aware_model_follow_its_chain_states():
    traj_states, traj_events = _simulate_order2(30, 40, np.random.default_rng(19))
    L = traj_states.shape[1]
    frame = pd.DataFrame({"entity": np.repeat([f"h{k:02d}" for k in range(30)], L), "time": np.tile(np.arange(L), 30),
                          "event": np.array(["a", "b"])[traj_events.ravel()],
                          "status": np.array(NAMES)[traj_states.ravel()]})
    model = FaultPredictor(states={"kind": "categorical", "failure": ["down"], "states": NAMES},
                           history={"order": 2}).fit(frame)
    out = model.predict(frame, horizon=3, interval=0.9, random_state=4)
    table = model.failure_probabilities(3, interval=0.9, random_state=4)
    support = pd.Series(model.chain_.state_support(), index=model.chain_.state_names_)
    last = frame.groupby("entity").tail(2).groupby("entity")["status"].agg(list)
    for entity, (prev, cur) in last.items():
        name = f"{cur}|prev={prev}"
        got = out[(out["entity"] == entity) & (out["horizon"] == 3)].iloc[0]
        assert got["p_fail_hi"] == table[("p_fail_hi", 3)][name]
        assert got["n_support"] == support[name]
