"""The chain interface and the one k-step recursion.

- Both chains (plain and history-aware) answer the same interface, so callers never ask which one they hold.
- The history-aware chain's what-if forecasts equal a Monte Carlo run of that chain (its augmented states,
  event arrivals and successor map, simulated step by step) within the sampling error.
- The block fold of a scenario equals one independent backward fold per horizon, on dense and sparse matrices.
"""

import numpy as np
import pytest
import scipy.sparse as sp

from markovfault import FaultPredictor
from markovfault._recursion import hitting_probabilities, scenario_hitting_probabilities
from markovfault.chain import EventMarkovChain, HistoryChain, make_chain
from markovfault.simulate import simulate_histories
from markovfault.states import HistorySpec

COLUMNS = {"entity": "handler", "time": "timestamp", "event": "event_type"}
STATES = {"kind": "categorical", "states": ["ok", "slow", "error", "timeout", "down"],
          "failure": ["error", "timeout", "down"]}
INTERFACE = ("count", "fit_from_counts", "add_counts", "encode", "failure_probabilities",
             "transition_matrix", "event_matrix", "tail_length", "base_", "base_state_", "spec",
             "state_names_", "is_failure_", "event_probs_", "counts_", "n_transitions_")

quiet = pytest.mark.filterwarnings("ignore::markovfault.exceptions.DataWarning")


@pytest.fixture(scope="module")
def history():
    return simulate_histories(16, 250, random_state=11, with_metrics=False)


@quiet
@pytest.mark.parametrize("spec", [None, HistorySpec(order=2, failure_window=3)], ids=["plain", "history"])
def test_both_chains_answer_one_interface(history, spec):
    model = FaultPredictor(columns=COLUMNS, states=STATES, history=spec, alpha=0.7, beta=1.3).fit(history)
    chain = model.chain_
    assert isinstance(chain, EventMarkovChain if spec is None else HistoryChain)
    for name in INTERFACE:
        assert hasattr(chain, name), name
    assert chain.spec == spec
    assert np.array_equal(chain.base_state_ % len(model.state_names_), chain.base_state_)
    # fit_from_counts on the chain's own counts gives the same chain
    again = make_chain(spec, alpha=0.7, beta=1.3).fit_from_counts(
        chain.counts_, chain.base_.state_names_, chain.base_.event_names_, chain.base_.is_failure_)
    np.testing.assert_allclose(again.failure_probabilities(4), chain.failure_probabilities(4))


def _simulate_augmented(chain, start, scenario, n_paths, rng):
    """Paths of the history-aware chain from augmented state ``start`` under given next events:
    the next base state from P(j | a, e), then the augmented state from the successor map."""
    a = np.full(n_paths, start, dtype=np.int64)
    failed = np.zeros(n_paths, dtype=bool)
    out = []
    cum = np.cumsum(chain.next_probs_, axis=2)  # (E, A, S)
    for e in scenario:
        u = rng.random_sample(n_paths)
        j = np.minimum((u[:, None] >= cum[e, a]).sum(axis=1), cum.shape[2] - 1)
        failed |= chain.base_.is_failure_[j]
        out.append(failed.mean())
        a = chain.successor_[a, e, j]
    return np.array(out)


@quiet
def test_history_aware_what_if_equals_monte_carlo(history):
    model = FaultPredictor(columns=COLUMNS, states=STATES, alpha=0.5, beta=2.0,
                           history={"order": 2, "failure_window": 3, "entering_event": True}).fit(history)
    chain = model.chain_
    events = list(model.event_names_)
    rng = np.random.RandomState(20261201)
    scenario = [events[k] for k in rng.randint(0, len(events), size=6)]
    exact = model.failure_probabilities(6, scenario=scenario).to_numpy()
    codes = [events.index(e) for e in scenario]
    support = chain.counts_.sum(axis=(0, 2))
    starts = np.argsort(support)[-4:]  # the four busiest augmented states
    n = 40_000
    for a in starts:
        mc = _simulate_augmented(chain, a, codes, n, rng)
        se = np.sqrt(np.maximum(mc * (1 - mc), 1e-4) / n)
        assert np.all(np.abs(mc - exact[a]) < 5 * se), (a, mc, exact[a])
    # and the marginal forecast (events drawn from Q) equals the scenario average... of its first step
    marginal = model.failure_probabilities(1).to_numpy()[:, 0]
    by_event = np.stack([model.failure_probabilities(1, scenario=[e]).to_numpy()[:, 0] for e in events], 1)
    np.testing.assert_allclose(marginal, (chain.event_probs_ * by_event).sum(axis=1), atol=1e-12)


def _fold_each_horizon(mats, fail):
    """One backward fold per horizon: the reference the block fold must equal."""
    keep = 1.0 - fail
    out = np.empty((len(fail), len(mats)))
    for h in range(1, len(mats) + 1):
        f = fail
        for m in range(h - 1, -1, -1):
            g = np.asarray(mats[m] @ f).ravel()
            f = fail + keep * g if m else g
        out[:, h - 1] = f
    return out


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_block_fold_equals_one_fold_per_horizon(sparse):
    rng = np.random.RandomState(7)
    S, k = 9, 7
    fail = np.zeros(S)
    fail[[2, 7]] = 1.0
    mats = []
    for _ in range(k):
        m = rng.gamma(0.3, size=(S, S)) * (rng.random_sample((S, S)) < 0.5)
        m[np.arange(S), rng.randint(0, S, S)] += 0.1
        m /= m.sum(axis=1, keepdims=True)
        mats.append(sp.csr_matrix(m) if sparse else m)
    got = scenario_hitting_probabilities(mats, fail.astype(bool))
    np.testing.assert_allclose(got, _fold_each_horizon(mats, fail), atol=1e-13)
    # a scenario of one repeated matrix is the homogeneous recursion
    same = scenario_hitting_probabilities([mats[0]] * k, fail.astype(bool))
    np.testing.assert_allclose(same, hitting_probabilities(mats[0], fail.astype(bool), k), atol=1e-13)


def test_hand_counted_two_step_scenario():
    # from ok: the first event fails with .3, the second with .6 from ok and .5 from slow
    P1 = np.array([[0.5, 0.2, 0.3], [0.1, 0.6, 0.3], [0.0, 0.0, 1.0]])
    P2 = np.array([[0.3, 0.1, 0.6], [0.2, 0.3, 0.5], [0.0, 0.0, 1.0]])
    got = scenario_hitting_probabilities([P1, P2], np.array([False, False, True]))
    # P(fail within 2 | ok) = .3 + .5 * .6 + .2 * .5 = .7
    np.testing.assert_allclose(got[0], [0.3, 0.7])


def test_estimators_keep_scikit_learns_conventions_without_deriving_from_it():
    """clone, get_params/set_params, the repr and check_is_fitted work as on a scikit-learn estimator."""
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError as SkNotFitted
    from sklearn.utils.validation import check_is_fitted

    model = FaultPredictor(states={"kind": "categorical", "failure": ["down"]}, alpha=0.25)
    twin = clone(model)
    assert twin is not model and twin.get_params() == model.get_params()
    assert twin.get_params()["states"] is not model.get_params()["states"]  # parameters cloned too
    assert repr(model) == "FaultPredictor(alpha=0.25, states={'kind': 'categorical', 'failure': ['down']})"
    assert repr(twin.set_params(alpha=1.0)) == "FaultPredictor(states={'kind': 'categorical', 'failure': ['down']})"
    with pytest.raises(ValueError, match="Invalid parameter 'gamma'"):
        model.set_params(gamma=1)
    with pytest.raises(SkNotFitted):
        check_is_fitted(model)
    chain = make_chain(HistorySpec(order=2), alpha=0.5)
    assert clone(chain).get_params(deep=False) == {"alpha": 0.5, "beta": 1.0, "spec": HistorySpec(order=2)}
