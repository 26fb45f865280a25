"""History-aware states stored as the states that occur, backed off one level at a time.

References: hand counts with uneven numbers (the working in comments); each level re-counted directly with
``augment`` at that level's spec; a slow dense chain over the whole product space (the layout before the
seen-state one, kept here as the reference); the variable-order rule (longest suffix with data) written with
tuples; Monte Carlo of the fitted chain; a simulated order-2 truth; a fit on everything.
"""

import warnings

import numpy as np
import pandas as pd
import pytest

from conftest import assert_same_counts

from markovfault import FaultPredictor, load_model
from markovfault._priors import STRENGTH_GRID
from markovfault.chain import EventMarkovChain, HistoryChain, counts_from_arrays, merge_counts
from markovfault.exceptions import ConfigError
from markovfault.forecast import monte_carlo_failure_probabilities
from markovfault.persistence import read_header
from markovfault.states import HistoryCounts, HistorySpec
from markovfault.states import _history
from markovfault.states._history import HistoryLayout, augment, count_augmented
from markovfault.trajectories import Trajectories

quiet = pytest.mark.filterwarnings("ignore::markovfault.exceptions.DataWarning")

OK_DOWN = ["ok", "down"]


def fit_chain(traj, spec, alpha=0.0, beta=0.0):
    chain = HistoryChain(spec, alpha=alpha, beta=beta)
    return chain.fit_from_counts(chain.count(traj), traj.state_names, traj.event_names, traj.is_failure)


def row(chain, name):
    return chain.state_names_.index(name)


def random_traj(rng, n, lengths, n_states=3, n_events=2, p_fail=None):
    """Random steps over states s0.. (the last one a failure) and events x, y, ..."""
    p = None if p_fail is None else np.r_[np.full(n_states - 1, (1 - p_fail) / (n_states - 1)), p_fail]
    return Trajectories.from_codes(rng.choice(n_states, size=n, p=p), rng.randint(0, n_events, n),
                                   lengths=lengths, state_names=[f"s{k}" for k in range(n_states)],
                                   event_names=["x", "y", "z"][:n_events], failure=[f"s{n_states - 1}"])


# ------------------------------------------------------------------ the hierarchy by hand
def test_order_three_rows_by_hand():
    # ok ok down ok ok ok down down ok; the events entering steps 1..8 are x y x x y x y x
    traj = Trajectories.from_codes([0, 0, 1, 0, 0, 0, 1, 1, 0], [0, 0, 1, 0, 0, 1, 0, 1, 0],
                                   state_names=OK_DOWN, event_names=["x", "y"], failure=["down"])
    chain = fit_chain(traj, HistorySpec(order=3, backoff=2.0))
    assert [label for label, _ in chain.levels_] == ["base", "order=2", "order=3"]
    assert chain.backoff_["next"].to_dict() == {"order=2": 2.0, "order=3": 2.0}
    assert chain.backoff_["arrivals"].to_dict() == {"order=2": 2.0, "order=3": 2.0}
    assert chain.backoff_[["failure", "exogenous"]].isna().all(axis=None)  # whole rows, no group context
    x, y = 0, 1
    # base (alpha = beta = 0): from ok, x led to ok, ok, down and y to down, ok; arrivals x 3, y 2
    base = row(chain, "ok|prev=*,*")
    np.testing.assert_allclose(chain.next_probs_[x, base], [2 / 3, 1 / 3])
    np.testing.assert_allclose(chain.event_probs_[base], [0.6, 0.4])
    # level 1, (ok, prev ok): y -> down, y -> ok, x -> down
    #   P[x] = ([0, 1] + 2 [2/3, 1/3]) / 3 = [4/9, 5/9];  P[y] = ([1, 1] + 2 [.5, .5]) / 4 = [.5, .5]
    #   Q    = ([1, 2] + 2 [.6, .4]) / 5 = [.44, .56]
    one = row(chain, "ok|prev=ok,*")
    np.testing.assert_allclose(chain.next_probs_[x, one], [4 / 9, 5 / 9])
    np.testing.assert_allclose(chain.next_probs_[y, one], [0.5, 0.5])
    np.testing.assert_allclose(chain.event_probs_[one], [0.44, 0.56])
    # level 2, (ok, ok, ok): x -> down once
    #   P[x] = ([0, 1] + 2 [4/9, 5/9]) / 3 = [8/27, 19/27];  Q = ([1, 0] + 2 [.44, .56]) / 3
    two = row(chain, "ok|prev=ok,ok")
    np.testing.assert_allclose(chain.next_probs_[x, two], [8 / 27, 19 / 27])
    np.testing.assert_allclose(chain.event_probs_[two], [1.88 / 3, 1.12 / 3])
    # no y from (ok, ok, ok): exactly its parent's row
    np.testing.assert_array_equal(chain.next_probs_[y, two], chain.next_probs_[y, one])
    # (ok, ok, -): y -> down once: ([0, 1] + 2 [.5, .5]) / 3
    np.testing.assert_allclose(chain.next_probs_[y, row(chain, "ok|prev=ok,-")], [1 / 3, 2 / 3])
    assert chain.state_support()[[base, one, two]].tolist() == [5, 3, 1]


def test_failure_count_and_window_back_off_a_notch_at_a_time():
    # W = 2, C = 2 over ok down ok down ok ok ok down (a recovery is 2 steps without failure)
    traj = Trajectories.from_codes([0, 1, 0, 1, 0, 0, 0, 1], state_names=OK_DOWN, failure=["down"])
    chain = fit_chain(traj, HistorySpec(failure_window=2, failure_count=2, backoff=1.0))
    assert [label for label, _ in chain.levels_] == [
        "base", "failure_window=1", "failure_window=2", "failure_count=1", "failure_count=2"]
    p = {name: chain.next_probs_[0, row(chain, name)] for name in chain.state_names_}
    # from ok: down, down, ok, ok, down (steps 0, 2, 4, 5, 6): base [.4, .6]
    np.testing.assert_allclose(p["ok|since_fail=*|fails=*"], [0.4, 0.6])
    # W <= 1: the same five steps ("since_fail >= 1"): ([2, 3] + [.4, .6]) / 6 = [.4, .6]
    np.testing.assert_allclose(p["ok|since_fail=>=1|fails=*"], [0.4, 0.6])
    # W <= 2, since_fail 1 (steps 2, 4: down, ok): ([1, 1] + [.4, .6]) / 3 = [7/15, 8/15]
    np.testing.assert_allclose(p["ok|since_fail=1|fails=*"], [7 / 15, 8 / 15])
    # ... since_fail >= 2 (steps 0, 5, 6: down, ok, down): ([1, 2] + [.4, .6]) / 4
    np.testing.assert_allclose(p["ok|since_fail=>=2|fails=*"], [0.35, 0.65])
    # C <= 1, fails >= 1 (the same steps 2, 4): ([1, 1] + [7/15, 8/15]) / 3 = [22/45, 23/45]
    np.testing.assert_allclose(p["ok|since_fail=1|fails=>=1"], [22 / 45, 23 / 45])
    # C <= 2: step 2 had one failure (-> down), step 4 two (-> ok)
    np.testing.assert_allclose(p["ok|since_fail=1|fails=1"], [11 / 45, 34 / 45])
    np.testing.assert_allclose(p["ok|since_fail=1|fails=>=2"], [67 / 90, 23 / 90])


@pytest.mark.parametrize("spec", [
    HistorySpec(order=3, failure_window=2, entering_event=True, backoff=3.0),
    HistorySpec(order=2, failure_window=3, failure_count=2, backoff=0.5),
    HistorySpec(order=4, backoff="auto"),
    HistorySpec(failure_window=2, failure_count=1, entering_event=True, backoff="auto"),
])
def test_each_level_is_the_formula_on_its_parent_level_recounted_directly(spec):
    # every level re-counted with augment at that level's own spec (not by coarsening codes), its parents
    # read off the same steps; each row is then (N + g P_parent) / (n + g), rows without data the parent's
    rng = np.random.RandomState(3)
    traj = random_traj(rng, 900, [300, 250, 350], p_fail=0.25)
    chain = HistoryChain(spec, alpha=0.5, beta=2.0)
    chain.fit_from_counts(chain.count(traj), traj.state_names, traj.event_names, traj.is_failure)
    levels = spec.levels()
    E, S = traj.n_events, traj.n_states
    base = EventMarkovChain(alpha=0.5, beta=2.0).fit(traj)
    P_parent, Q_parent, codes_parent = base.event_matrices_, base.event_probs_, np.arange(S)
    for L in range(1, len(levels)):
        label, level_spec = levels[L]
        aug = augment(traj, level_spec)
        counts = count_augmented(aug, traj)  # every state that occurs at this level
        parent_aug = augment(traj, levels[L - 1][1]) if L > 1 else traj.state
        par = np.zeros(len(counts.codes), dtype=np.int64)
        par[np.searchsorted(counts.codes, aug)] = np.searchsorted(codes_parent, parent_aug)
        prior_next, prior_arr = P_parent[:, par, :], Q_parent[par]
        N = counts.counts
        n = N.sum(axis=2, keepdims=True)
        if spec.backoff == "auto":  # the strengths chosen (their choice: the leave-one-out tests below)
            g_f, g, g_a = chain.backoff_.loc[label, ["failure", "next", "arrivals"]]
            # whether the next state is a failure, then which one within its class
            F = traj.is_failure
            nF, pF = N[..., F].sum(axis=2, keepdims=True), prior_next[..., F].sum(axis=2, keepdims=True)
            PF = (nF + g_f * pF) / (n + g_f)
            in_class = np.where(F, nF, n - nF)
            p_class = np.where(F, pF, 1 - pF)
            P = np.where(F, PF, 1 - PF) * (N + g * prior_next / p_class) / (in_class + g)
            P = np.where(n > 0, P, prior_next)
        else:
            g = g_a = spec.backoff
            with np.errstate(invalid="ignore", divide="ignore"):
                P = np.where(n > 0, (N + g * prior_next) / (n + g), prior_next)
        M = N.sum(axis=2).T
        m = M.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            Q = np.where(m > 0, (M + g_a * prior_arr) / (m + g_a), prior_arr)
        # the chain's states of this level (all seen states at the top, those with data below)
        at = np.flatnonzero(chain.state_levels_ == L)
        pos = np.searchsorted(counts.codes, chain.state_codes_[at])
        np.testing.assert_array_equal(counts.codes[pos], chain.state_codes_[at])
        np.testing.assert_allclose(chain.next_probs_[:, at, :], P[:, pos, :], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(chain.event_probs_[at], Q[pos], rtol=1e-12, atol=1e-15)
        P_parent, Q_parent, codes_parent = P, Q, counts.codes


def test_auto_strength_is_large_where_history_adds_nothing_and_small_where_it_matters():
    # order-2 truth: down follows (slow, slow); the order-3 lag adds nothing
    rng = np.random.RandomState(0)
    n_ent, n_steps = 80, 300
    s = np.zeros((n_ent, n_steps), dtype=np.int64)
    for t in range(2, n_steps):  # a loop over steps, vectorised over entities
        p_down = np.where((s[:, t - 1] == 1) & (s[:, t - 2] == 1), 0.7, 0.03)
        u = rng.random_sample(n_ent)
        s[:, t] = np.where(u < p_down, 2, np.where(u < p_down + 0.35, 1, 0))
    traj = Trajectories.from_codes(s.ravel(), lengths=[n_steps] * n_ent,
                                   state_names=["ok", "slow", "down"], failure=["down"])
    chain = fit_chain(traj, HistorySpec(order=3, backoff="auto"), alpha=1.0, beta=1.0)
    g = chain.backoff_["failure"]  # the risk of down is what the second state changes
    assert g["order=2"] < 5 < 100 < g["order=3"]


def refit_loo(traj, spec, strength, alpha, beta):
    """Leave-one-out log-likelihoods of a two-level chain's top rows, each transition taken out of the
    counts and every level (the base chain) refitted without it, once per distinct cell, weighted by its
    count: the reference for ``backoff="auto"``. The next states score as the split rows: whether the
    next state is a failure (``"failure"``), then which within its class (``"next"``), both backed off
    with ``strength`` to the refitted base row; the arrivals and the group rows are read off a chain
    refitted with ``strength``."""
    chain = HistoryChain(spec, alpha=alpha, beta=beta)
    counts = chain.count(traj)
    N, X = counts.counts, counts.exo
    E, _, S = N.shape
    F = traj.is_failure
    base_of = counts.codes % S
    names = (traj.state_names, traj.event_names, traj.is_failure)
    spec_g = HistorySpec(**{**spec.to_config(), "backoff": strength})

    def refit(n, x):
        return HistoryChain(spec_g, alpha=alpha, beta=beta).fit_from_counts(HistoryCounts(counts.codes, n, x),
                                                                            *names)

    out = {"failure": 0.0, "next": 0.0, "arrivals": 0.0, "exogenous": 0.0}
    for e, a, j in zip(*np.nonzero(N)):  # a loop over distinct cells: the slow reference
        n = N.copy()
        n[e, a, j] -= 1
        level0 = np.zeros((E, S, S), dtype=np.int64)
        for k, b in enumerate(base_of):
            level0[:, b] += n[:, k]
        p = EventMarkovChain(alpha=alpha, beta=beta).fit_from_counts(level0, *names).event_matrices_[e, base_of[a]]
        row, cls = n[e, a].astype(float), F if F[j] else ~F
        p_fail = (row[F].sum() + strength * p[F].sum()) / (row.sum() + strength)
        out["failure"] += N[e, a, j] * np.log(p_fail if F[j] else 1 - p_fail)
        out["next"] += N[e, a, j] * np.log((row[j] + strength * p[j] / p[cls].sum()) / (row[cls].sum() + strength))
    M = N.sum(axis=2)  # (E, A) arrivals
    for e, a in zip(*np.nonzero(M)):  # one transition of (a, e), whatever it entered
        n = N.copy()
        n[e, a, np.flatnonzero(N[e, a])[0]] -= 1
        ref = refit(n, X)
        out["arrivals"] += M[e, a] * np.log(ref.event_probs_[ref.state_index(counts.codes[[a]])[0], e])
    if X is not None:
        for a, x in zip(*np.nonzero(X)):
            xx = X.copy()
            xx[a, x] -= 1
            ref = refit(N, xx)
            out["exogenous"] += X[a, x] * np.log(ref.exo_probs_[ref.state_index(counts.codes[[a]])[0], x])
    return out


@pytest.mark.parametrize("make", ["order", "group"])
def test_auto_backoff_maximises_the_likelihood_of_refits_without_each_transition(make):
    # each strength of backoff="auto" is the best one for the held-out transitions of its level, every
    # level and the base chain refitted without each in turn (two levels: base and the spec)
    rng = np.random.RandomState(5)
    n_steps = 160  # two members of one group, one step per time unit; s2 (down) is the failure
    s = np.zeros((2, n_steps), dtype=np.int64)
    ev = rng.randint(0, 2, (2, n_steps))
    for t in range(2, n_steps):  # a loop over steps, vectorised over the two members
        p_down = 0.06 * np.where(s[:, t - 2] == 1, 4.0, 1.0) * np.where(s[::-1, t - 1] == 2, 5.0, 1.0)
        p_slow = np.where(ev[:, t] == 1, 0.45, 0.2)
        u = rng.random_sample(2)
        s[:, t] = np.where(u < p_down, 2, np.where(u < p_down + p_slow, 1, 0))
    traj = Trajectories.from_codes(s.ravel(), ev.ravel(), lengths=[n_steps] * 2,
                                   state_names=["s0", "s1", "s2"], event_names=["x", "y"], failure=["s2"])
    if make == "order":
        spec, label, kinds = HistorySpec(order=2, backoff="auto"), "order=2", ("next", "arrivals")
    else:
        traj = Trajectories(**{**traj.__dict__, "time": np.tile(np.arange(n_steps), 2),
                               "group": np.zeros(2 * n_steps, dtype=np.int64)})
        spec, label = HistorySpec(group_window=1, group_levels=2, backoff="auto"), "group_levels=2"
        kinds = ("next", "arrivals", "exogenous")
    chain = fit_chain(traj, spec, alpha=0.7, beta=1.5)
    chosen = chain.backoff_.loc[label].to_dict()
    kinds = ("failure",) + kinds
    assert len(set(chosen[k] for k in kinds)) == len(kinds)  # a strength of its own each
    for kind in kinds:
        g = chosen[kind]
        best = refit_loo(traj, spec, g, 0.7, 1.5)[kind]
        # the strengths considered end at 0.01 and 1e5: nothing beyond them
        near = (() if g < 1.001 * STRENGTH_GRID[0] else (g / 1.5,)) + \
            (() if g > 0.999 * STRENGTH_GRID[-1] else (g * 1.5,))
        for other in (0.05, 1.0, 20.0, 500.0) + near:
            assert refit_loo(traj, spec, other, 0.7, 1.5)[kind] <= best + 1e-9, (kind, g, other)


def test_auto_backoff_keeps_the_failure_memory_of_the_simulated_service():
    # the truth fails 3x more often from a non-failure state within 5 steps of a failure; the evidence
    # chose strengths of 1e5 for this hierarchy and erased the memory; the held-out strengths keep it
    from markovfault.simulate import simulate_histories

    sim = simulate_histories(60, 500, random_state=11, with_metrics=False, flaky_fraction=0.0,
                             memory_window=5, truth_columns=True, return_result=True)
    frame = sim.frame
    truth = sim.true_failure_probabilities(1)[:, 0]
    model = FaultPredictor(states=STATES, columns=COLUMNS, alpha="auto", beta="auto",
                           history={"failure_window": 6, "backoff": "auto"}).fit(frame)
    chain = model.chain_
    ok = model.state_names_.index("ok")
    risk = chain.failure_probabilities(1)[:, 0]
    for d in (0, 2, 5):  # memory 0 (right after a failure), 2 (within it), 5 (out of it, the cap)
        want = truth[(frame["status"] == "ok").to_numpy() & (frame["memory"] == d).to_numpy()]
        assert np.ptp(want) < 1e-12  # exact given (state, memory)
        # the chain's steps since the last failure are the memory plus one, capped at 6
        code = chain.layout_.compose(np.array([[ok], [d + 1]]))
        assert risk[chain.state_index(code)[0]] == pytest.approx(want[0], rel=0.12), d


# ------------------------------------------------------------------ the dense reference
class DenseReference:
    """The history-aware chain as it was: every product state, one back-off to the base rows."""

    def __init__(self, traj, spec, alpha, beta):
        S, E = traj.n_states, traj.n_events
        self.layout = HistoryLayout(spec, S, E)
        A = self.layout.A
        aug = augment(traj, spec)
        N = np.zeros((E, A, S), dtype=np.int64)
        starts = set(traj.run_starts.tolist())
        for n in range(1, traj.n_steps):  # the slow way: one transition at a time
            if n not in starts:
                N[traj.event[n], aug[n - 1], traj.state[n]] += 1
        base_of = np.arange(A) % S
        base_counts = np.zeros((E, S, S), dtype=np.int64)
        for a in range(A):
            base_counts[:, base_of[a], :] += N[:, a, :]
        base = EventMarkovChain(alpha=alpha, beta=beta).fit_from_counts(
            base_counts, traj.state_names, traj.event_names, traj.is_failure)
        g = float(spec.backoff)
        Pb, Qb = base.event_matrices_[:, base_of, :], base.event_probs_[base_of]
        rows = N.sum(axis=2, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.P = np.where(rows > 0, (N + g * Pb) / (rows + g), Pb)
        M = N.sum(axis=2).T
        mrow = M.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.Q = np.where(mrow > 0, (M + g * Qb) / (mrow + g), Qb)
        self.succ = self.layout.successor(traj.is_failure)
        self.fail = traj.is_failure[base_of]
        self.seen = N.sum(axis=(0, 2)) > 0

    def matrix(self, weights):
        A = len(self.fail)
        T = np.zeros((A, A))
        a = np.broadcast_to(np.arange(A)[:, None, None], self.succ.shape)
        np.add.at(T, (a.ravel(), self.succ.ravel()), weights.ravel())
        return T

    def failure_probabilities(self, horizon, events=None, event_probs=None):
        Q = self.Q if event_probs is None else event_probs
        if events is None:
            mats = [self.matrix(Q[:, :, None] * self.P.transpose(1, 0, 2))] * horizon
        else:
            mats = []
            for e in events:
                w = np.zeros(self.succ.shape)
                w[:, e, :] = self.P[e]
                mats.append(self.matrix(w))
        f, keep = self.fail.astype(float), 1.0 - self.fail
        out = np.empty((len(f), len(mats)))
        for h in range(1, len(mats) + 1):  # one backward fold per horizon
            v = f
            for m in range(h - 1, -1, -1):
                v = mats[m] @ v
                v = f + keep * v if m else v
            out[:, h - 1] = v
        return out


@quiet
@pytest.mark.parametrize("spec, n_possible", [
    (HistorySpec(order=2, backoff=4.0), 12),  # 3 states x (3 lags or none)
    (HistorySpec(failure_window=1, backoff=2.5), 3),  # since_fail 0 exactly on the failure state
    (HistorySpec(entering_event=True, backoff=0.7), 6),  # 3 states x 2 events entering
], ids=["order", "window", "entering"])
@pytest.mark.parametrize("all_seen", [True, False], ids=["every-state-seen", "some-unseen"])
def test_single_level_forecasts_equal_the_dense_product_chain(spec, n_possible, all_seen):
    rng = np.random.RandomState(11)
    if all_seen:  # many short runs: every (state, lag or '-', event) combination occurs with data
        traj = random_traj(rng, 3000, [6] * 500, n_states=3, n_events=2, p_fail=0.3)
    else:
        traj = random_traj(rng, 120, [40, 50, 30], n_states=4, n_events=3, p_fail=0.1)
    dense = DenseReference(traj, spec, alpha=0.8, beta=1.5)
    if all_seen:  # every state that can occur was seen with data
        assert dense.seen.sum() == n_possible
    else:
        assert dense.seen.sum() < dense.layout.A  # product states without data, possible or not
    chain = HistoryChain(spec, alpha=0.8, beta=1.5)
    chain.fit_from_counts(chain.count(traj), traj.state_names, traj.event_names, traj.is_failure)
    rows = chain.state_index(np.arange(dense.layout.A))  # every product state, seen or not
    np.testing.assert_allclose(chain.failure_probabilities(7)[rows], dense.failure_probabilities(7),
                               atol=1e-12)
    scenario = ["y", "x", "x", "y", "x"]
    np.testing.assert_allclose(chain.failure_probabilities(5, scenario=scenario)[rows],
                               dense.failure_probabilities(5, events=[1, 0, 0, 1, 0]), atol=1e-12)
    mix = np.tile(np.r_[0.7, 0.3, np.zeros(traj.n_events - 2)], (chain.n_aug_, 1))
    np.testing.assert_allclose(chain.failure_probabilities(4, event_probs=mix)[rows],
                               dense.failure_probabilities(4, event_probs=mix[:dense.layout.A]),
                               atol=1e-12)


# ------------------------------------------------------------------ closing the chain
def _context(name):
    """The recent states a state name knows, newest first ('ok|prev=a,-,*' -> ('ok', 'a', '-'))."""
    head, _, rest = name.partition("|prev=")
    return tuple([head] + [s for s in rest.split(",") if rest and s != "*"])


def test_successors_are_the_longest_suffix_with_data():
    # the variable-order rule, written with tuples: after j, the context (j, c...) cut to the order, then
    # shortened from its oldest end until it was seen with data (length 1: the base state)
    rng = np.random.RandomState(4)
    traj = random_traj(rng, 400, [150, 100, 150], n_states=3, n_events=2, p_fail=0.2)
    m = 4
    chain = fit_chain(traj, HistorySpec(order=m, backoff=1.0))
    names = [str(s) for s in traj.state_names]
    with_data = set()
    seq = traj.state
    starts = set(traj.run_starts.tolist())
    run_start = 0
    for n in range(traj.n_steps - 1):  # every context that has a transition out of it
        run_start = n if n in starts else run_start
        if n + 1 in starts:
            continue
        ctx = tuple(names[seq[n - k]] if n - k >= run_start else "-" for k in range(m))
        for length in range(1, m + 1):
            with_data.add(ctx[:length])
    support = chain.state_support()
    checked = 0
    for a, name in enumerate(chain.state_names_):
        c = _context(name)
        if support[a] == 0 and len(c) > 1:
            continue  # a seen state without data moves as its ancestor (checked below)
        for j, sj in enumerate(names):
            want = ((sj,) + c)[:min(len(c) + 1, m)]
            while len(want) > 1 and want not in with_data:
                want = want[:-1]
            for e in range(traj.n_events):
                assert _context(chain.state_names_[chain.successor_[a, e, j]]) == want, (name, sj)
                checked += 1
    assert checked > 100
    # a seen state without data: its rows and moves are its nearest ancestor's with data
    for a in np.flatnonzero(support[:len(chain.counts_.codes)] == 0):
        anc = _context(chain.state_names_[a])
        while len(anc) > 1 and anc not in with_data:
            anc = anc[:-1]
        b = [k for k, nm in enumerate(chain.state_names_)
             if _context(nm) == anc and (support[k] > 0 or len(anc) == 1)][0]
        np.testing.assert_array_equal(chain.next_probs_[:, a], chain.next_probs_[:, b])
        np.testing.assert_array_equal(chain.successor_[a], chain.successor_[b])


@pytest.mark.parametrize("spec", [
    HistorySpec(order=2, failure_window=2, failure_count=2, entering_event=True),
    HistorySpec(order=3, failure_window=3, failure_count=1),
])
def test_every_move_keeps_what_the_state_knows_true(spec):
    # soundness, checked on every step of the data with augment at each level's spec (not with the
    # chain's coarsening): from any chain state that agrees with the true history of a step, the move
    # under the step's (event, next state) lands on a chain state that agrees with the next step's history
    rng = np.random.RandomState(8)
    traj = random_traj(rng, 2000, [700, 600, 700], n_states=3, n_events=2, p_fail=0.35)
    chain = fit_chain(traj, spec, alpha=1.0, beta=1.0)
    levels = spec.levels()
    truth = [traj.state.astype(np.int64)] + [augment(traj, s) for _, s in levels[1:]]
    inner = np.flatnonzero(~traj.is_run_start()[1:])  # transitions n -> n + 1 within a run
    moves = 0
    for L in range(len(levels)):  # a loop over levels, vectorised over steps
        at = np.flatnonzero(chain.state_levels_ == L)
        codes = chain.state_codes_[at]
        pos = np.minimum(np.searchsorted(codes, truth[L][inner]), len(codes) - 1)
        ok = codes[pos] == truth[L][inner]
        n = inner[ok]
        dest = chain.successor_[at[pos[ok]], traj.event[n + 1], traj.state[n + 1]]
        lvl, code = chain.state_levels_[dest], chain.state_codes_[dest]
        for M in np.unique(lvl):
            np.testing.assert_array_equal(code[lvl == M], truth[M][n + 1][lvl == M])
        moves += len(n)
        if L < len(levels) - 1:  # and the climb happens where it can: not all moves stay coarse
            assert (lvl > L).any()
    assert moves > 3 * len(inner)


@quiet
def test_forecasts_equal_monte_carlo_of_the_fitted_chain():
    rng = np.random.RandomState(7)
    traj = random_traj(rng, 700, [250, 200, 250], n_states=3, n_events=2, p_fail=0.2)
    spec = HistorySpec(order=3, failure_window=2, entering_event=True, backoff="auto")
    chain = fit_chain(traj, spec, alpha=0.5, beta=1.0)
    H = 6
    exact = chain.failure_probabilities(H)
    P = np.stack([chain.event_matrix(e).toarray() for e in range(traj.n_events)])
    mc, se = monte_carlo_failure_probabilities(P, chain.event_probs_, chain.is_failure_, H, n_paths=4000,
                                               random_state=20261202)
    assert np.all(np.abs(mc - exact) < 5 * np.maximum(se, 1e-3))
    # every row of the chain is a distribution over its states
    np.testing.assert_allclose(P.sum(axis=2), 1.0, atol=1e-12)


def test_order_four_over_many_base_states_recovers_an_order_two_truth():
    # 25 base states: order 4 has 25 * 26**3 = 439,400 product states, more than the old cap of 200,000
    rng = np.random.RandomState(2026)
    S, n_ent, n_steps = 25, 400, 300
    fail = np.zeros(S, dtype=bool)
    fail[[23, 24]] = True
    # P(next | s, prev): each row on 3 likely next states, so that few order-4 histories occur
    truth = np.full((S, S, S), 1e-3)
    likely = rng.randint(0, S, size=(S, S, 3))
    np.put_along_axis(truth, likely, rng.gamma(2.0, size=(S, S, 3)), axis=2)
    truth /= truth.sum(axis=2, keepdims=True)
    s = np.zeros((n_ent, n_steps), dtype=np.int64)
    s[:, :2] = rng.randint(0, S, size=(n_ent, 2))
    for t in range(2, n_steps):  # a loop over steps, vectorised over entities
        cum = np.cumsum(truth[s[:, t - 1], s[:, t - 2]], axis=1)
        s[:, t] = np.minimum((rng.random_sample(n_ent)[:, None] >= cum).sum(axis=1), S - 1)
    traj = Trajectories.from_codes(s.ravel(), lengths=[n_steps] * n_ent,
                                   state_names=[f"s{k}" for k in range(S)],
                                   failure=[f"s{k}" for k in (23, 24)])
    spec = HistorySpec(order=4, backoff="auto")
    assert HistoryLayout(spec, S, 1).A == 439_400
    chain = fit_chain(traj, spec, alpha=1.0, beta=1.0)
    assert 1000 < chain.n_seen_ < 20_000
    # the evidence: the second state matters, the third and fourth add nothing
    g = chain.backoff_["failure"]
    assert g["order=2"] < 10 and min(g["order=3"], g["order=4"]) > 1e3
    H = 4
    got = chain.failure_probabilities(H)
    # the truth from (s, prev): the order-2 chain on pairs (s, prev) -> (j, s), exactly
    T = np.zeros((S * S, S * S))
    pair = np.arange(S * S)
    cur, prev = pair // S, pair % S
    for j in range(S):  # a loop over next states, vectorised over pairs
        T[pair, j * S + cur] += truth[cur, prev, j]
    f, keep = fail[cur].astype(float), 1.0 - fail[cur]
    want = np.empty((S * S, H))
    v = f
    for h in range(H):
        g = T @ v
        want[:, h] = g
        v = f + keep * g
    # every seen order-4 state that knows its previous state, against the truth of its last two states
    comps = chain.layout_.components(chain.counts_.codes)
    known = comps[1] < S
    truth_of = want[comps[0][known] * S + comps[1][known]]
    err = np.abs(got[:len(chain.counts_.codes)][known] - truth_of)
    plain = np.abs(chain.base_.failure_probabilities(H)[comps[0][known]] - truth_of)
    assert err.mean() < 0.02 and plain.mean() > 0.1
    # a history never seen forecasts as its nearest seen ancestor, one level down or more
    codes = set(chain.counts_.codes.tolist())
    unseen = next(c for c in range(10 ** 6) if c not in codes and chain.layout_.components(np.array([c]))[3, 0] < S)
    anc = chain.state_index(np.array([unseen]))[0]
    assert chain.state_levels_[anc] < 3
    np.testing.assert_array_equal(chain.failure_probabilities(H)[anc], got[anc])


# ------------------------------------------------------------------ unseen at predict time, no leakage
@quiet
def test_a_history_never_seen_forecasts_as_its_nearest_seen_ancestor():
    rng = np.random.RandomState(5)
    n_ent, n_steps = 30, 200
    labels = np.array(["ok", "slow", "down"])
    s = rng.choice(3, size=(n_ent, n_steps), p=[0.6, 0.3, 0.1])
    s[:, 1:][s[:, :-1] == 2] = 0  # down is always followed by ok: (x, down, down) never occurs
    hist = pd.DataFrame({"entity": np.repeat([f"e{k:02d}" for k in range(n_ent)], n_steps),
                         "time": np.tile(np.arange(n_steps), n_ent), "status": labels[s.ravel()]})
    model = FaultPredictor(states={"states": list(labels), "failure": ["down"]},
                           history={"order": 3}).fit(hist)
    chain = model.chain_
    names = chain.state_names_
    assert "ok|prev=down,down" not in names and "ok|prev=down,*" in names
    new = pd.DataFrame({"entity": ["z"] * 4, "time": [0, 1, 2, 3], "status": ["ok", "down", "down", "ok"]})
    table = model.failure_probabilities(5)
    got = model.predict(new, horizon=5)["p_fail"].to_numpy()
    np.testing.assert_array_equal(got, table.loc["ok|prev=down,*"].to_numpy())
    # which is not the base state's forecast: the order-2 ancestor knows what came before
    assert np.abs(got - table.loc["ok|prev=*,*"].to_numpy()).max() > 1e-3


@quiet
@pytest.mark.parametrize("spec", [HistorySpec(order=3, failure_window=2, entering_event=True),
                                  HistorySpec(order=2, failure_window=2, failure_count=2, backoff="auto")])
def test_counts_of_an_earlier_bin_on_the_whole_vocabulary_forecast_as_a_fit_on_that_bin_alone(spec):
    # a backtest fold: the counts before the cutoff, laid out on every state of the whole trajectory (zero
    # rows for states met only later), against a chain that never saw the later data
    rng = np.random.RandomState(9)
    n, lengths = 1200, [400, 300, 500]
    cut = np.r_[np.zeros(160), np.ones(240), np.zeros(120), np.ones(180), np.zeros(200), np.ones(300)]
    # failures are rarer before the cutoff: some histories (two failures since recovery) come later only
    state = np.where(cut == 0, rng.choice(4, n, p=[0.5, 0.3, 0.15, 0.05]), rng.choice(4, n))
    traj = Trajectories.from_codes(state, rng.randint(0, 2, n), lengths=lengths,
                                   state_names=["s0", "s1", "s2", "s3"], event_names=["x", "y"],
                                   failure=["s3"])
    counts = HistoryChain(spec).count(traj, cut.astype(np.int64), 2)
    rows = HistoryChain(spec).encode(traj)  # rows of the whole vocabulary, as Run uses them
    fold = HistoryChain(spec, alpha=0.5, beta=1.0).fit_from_counts(
        counts[0], traj.state_names, traj.event_names, traj.is_failure)
    before = Trajectories.from_codes(traj.state[cut == 0], traj.event[cut == 0], lengths=[160, 120, 200],
                                     state_names=traj.state_names, event_names=traj.event_names,
                                     failure=[traj.state_names[-1]])
    alone = fit_chain(before, spec, alpha=0.5, beta=1.0)
    later = fold.counts_.counts.sum(axis=(0, 2)) == 0
    assert later.sum() >= 3  # states met only later: zero rows in the fold
    codes = augment(traj, spec)
    for kw in ({}, {"scenario": ["x", "y", "y", "x"]}):
        h = 4
        np.testing.assert_allclose(fold.failure_probabilities(h, **kw)[rows],
                                   alone.failure_probabilities(h, **kw)[alone.state_index(codes)],
                                   rtol=1e-12, atol=1e-14)
    pd.testing.assert_frame_equal(fold.backoff_, alone.backoff_, rtol=1e-12)


# ------------------------------------------------------------------ predictor paths
COLUMNS = {"entity": "handler", "time": "timestamp", "event": "event_type"}
STATES = {"kind": "categorical", "states": ["ok", "slow", "error", "timeout", "down"],
          "failure": ["error", "timeout", "down"]}


def sim(seed, n_ent=12, n_steps=250):
    from markovfault.simulate import simulate_histories

    return simulate_histories(n_ent, n_steps, random_state=seed, with_metrics=False)


@quiet
def test_partial_fit_with_new_states_and_events_equals_a_fit_on_everything(tmp_path):
    hist = sim(6)
    t = hist["timestamp"]
    early, late = hist[t < t.quantile(0.4)], hist[t >= t.quantile(0.4)]
    early = early[~early["event_type"].isin(["order_delivered", "payment_failed"])]
    history = {"order": 4, "failure_window": 2, "entering_event": True, "backoff": "auto"}
    one = FaultPredictor(states=STATES, columns=COLUMNS, history=history).fit(pd.concat([early, late]))
    inc = FaultPredictor(states=STATES, columns=COLUMNS, history=history).fit(early)
    n_before = len(inc.chain_.counts_.codes)
    assert "payment_failed" not in inc.event_names_
    inc.partial_fit(late)
    assert len(inc.chain_.counts_.codes) > n_before  # new states came with the new batch
    assert inc.event_names_ == one.event_names_
    assert_same_counts(inc, one)
    pd.testing.assert_frame_equal(inc.chain_.backoff_, one.chain_.backoff_)
    pd.testing.assert_frame_equal(inc.predict(horizon=5), one.predict(horizon=5))
    pd.testing.assert_frame_equal(inc.predict(hist, horizon=3, scenario=["payment_failed"] * 3),
                                  one.predict(hist, horizon=3, scenario=["payment_failed"] * 3))


@quiet
def test_model_file_round_trip_keeps_the_seen_states_and_strengths(tmp_path):
    hist = sim(8)
    model = FaultPredictor(states=STATES, columns=COLUMNS,
                           history={"order": 3, "failure_window": 2, "backoff": "auto"}).fit(hist)
    path = tmp_path / "m.npz"
    model.save(path)
    same = load_model(path)
    assert_same_counts(same, model)
    pd.testing.assert_frame_equal(same.chain_.backoff_, model.chain_.backoff_)
    want = model.chain_.backoff_
    written = pd.DataFrame(read_header(path)["history_backoff"]).T.astype(float).loc[want.index, want.columns]
    pd.testing.assert_frame_equal(written, want, check_names=False)
    assert read_header(path)["model"]["history"]["backoff"] == "auto"
    assert same.chain_.state_names_ == model.chain_.state_names_
    pd.testing.assert_frame_equal(same.predict(hist, horizon=4), model.predict(hist, horizon=4))
    pd.testing.assert_frame_equal(same.predict(horizon=4), model.predict(horizon=4))


def test_counts_of_a_file_from_the_dense_layout_are_read_as_their_seen_states():
    rng = np.random.RandomState(1)
    traj = random_traj(rng, 300, [100, 200], n_states=3, n_events=2)
    spec = HistorySpec(order=2, failure_window=2)
    dense = DenseReference(traj, spec, 1.0, 1.0)
    chain = fit_chain(traj, spec, 1.0, 1.0)
    old = np.zeros((2, dense.layout.A, 3), dtype=np.int64)  # the counts array such a file holds
    old[:, chain.counts_.codes] = chain.counts_.counts
    read = counts_from_arrays({"counts": old}, history=True)
    np.testing.assert_array_equal(read.codes, chain.counts_.codes)
    np.testing.assert_array_equal(read.counts, chain.counts_.counts)


# ------------------------------------------------------------------ counts and specs
def test_history_counts_add_over_the_union_of_their_states():
    a = HistoryCounts([2, 9], np.array([[[1, 2], [3, 4]]]))
    b = HistoryCounts([5, 9], np.array([[[10, 0], [0, 7]]]))
    both = a + b
    assert both.codes.tolist() == [2, 5, 9]
    assert both.counts[0].tolist() == [[1, 2], [10, 0], [3, 11]]
    assert (both - b).counts[0].tolist() == [[1, 2], [0, 0], [3, 4]]
    assert (both - b).pruned().codes.tolist() == [2, 9]
    total, maps = merge_counts([a, b])
    assert total.counts.tolist() == both.counts.tolist() and [m.tolist() for m in maps] == [[0, 2], [1, 2]]
    assert sum([a, b]).counts.tolist() == both.counts.tolist()
    with pytest.raises(TypeError, match="not a dense array"):
        np.asarray(a)
    binned = HistoryCounts([4], np.arange(6).reshape(3, 1, 1, 2))
    assert np.cumsum(binned, axis=0).counts[:, 0, 0].tolist() == [[0, 1], [2, 4], [6, 9]]
    assert binned[[2, 0]].counts[:, 0, 0].tolist() == [[4, 5], [0, 1]]
    with pytest.raises(TypeError, match="leading bin axes"):
        binned[:, 0]  # that would index the events
    with pytest.raises(ValueError, match="sorted and distinct"):
        HistoryCounts([3, 1], np.zeros((1, 2, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="integers"):
        HistoryCounts([1, 3], np.zeros((1, 2, 2)))


def test_too_many_seen_states_is_a_clear_error(monkeypatch):
    rng = np.random.RandomState(0)
    traj = random_traj(rng, 500, [500], n_states=3)
    monkeypatch.setattr(_history, "MAX_COUNT_CELLS", 100)
    with pytest.raises(ConfigError, match="seen history states need .* cells .* lower the order"):
        HistoryChain(HistorySpec(order=4)).count(traj)


def test_backoff_may_be_auto_and_nothing_else_but_a_number():
    spec = HistorySpec.from_config({"order": 2, "backoff": "auto"})
    assert spec.to_config()["backoff"] == "auto"
    assert HistorySpec.from_config(spec.to_config()) == spec
    with pytest.raises(ConfigError, match="history backoff = 'often' must be a number >= 0 or 'auto'"):
        HistorySpec(order=2, backoff="often")
    with pytest.raises(ConfigError, match="history backoff = -1"):
        HistorySpec(order=2, backoff=-1)


def test_a_fitted_chain_refuses_counts_that_are_not_its_layout():
    rng = np.random.RandomState(0)
    traj = random_traj(rng, 50, [50])
    chain = HistoryChain(HistorySpec(order=2))
    with pytest.raises(TypeError, match="fitted from HistoryCounts"):
        chain.fit_from_counts(np.zeros((2, 12, 3), dtype=np.int64), traj.state_names, traj.event_names,
                              traj.is_failure)
    with pytest.raises(ValueError, match="outside"):
        chain.fit_from_counts(HistoryCounts([99], np.zeros((2, 1, 3), dtype=np.int64)), traj.state_names,
                              traj.event_names, traj.is_failure)


def test_benchmark_script_parses_its_arguments():
    # benchmarks/history_sparse.py measures the HDFS sessions; here only that it loads
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "history_sparse.py"
    spec = importlib.util.spec_from_file_location("history_sparse_bench", path)
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spec.loader.exec_module(module)
    assert callable(module.main)
