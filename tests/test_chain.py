import numpy as np
import pandas as pd
import pytest

from markovfault.chain import EventMarkovChain, estimate_tensors
from markovfault.exceptions import ConfigError, DataWarning, NotFittedError
from markovfault.forecast import failure_probabilities, simulate_chain
from markovfault.trajectories import Trajectories
from conftest import frame_from_paths, random_chain


def make_traj(frame, n_states, failure=(), event_names=None):
    names = [f"s{k}" for k in range(n_states)]
    return Trajectories.from_frame(frame, frame["state"].to_numpy(), names,
                                   [names[k] for k in failure], event_names=event_names)


def test_formulas_hand_checked():
    # C[e=0] = [[3,1],[0,0]], C[e=1] = [[0,0],[2,2]]
    C = np.array([[[3, 1], [0, 0]], [[0, 0], [2, 2]]])
    est = estimate_tensors(C, alpha=2.0, beta=4.0)
    # pooled row 0: (3 + 1, 1 + 1) / (4 + 2)
    np.testing.assert_allclose(est["pooled"][0], [4 / 6, 2 / 6])
    # P[0, 0] = (C + 4 * pooled) / (4 + 4)
    np.testing.assert_allclose(est["event_matrices"][0, 0], [(3 + 4 * 4 / 6) / 8, (1 + 4 * 2 / 6) / 8])
    # P[0, 1]: no data for (event 0, state 1): pooled row 1 = (2+1, 2+1)/(4+2)
    np.testing.assert_allclose(est["event_matrices"][0, 1], [0.5, 0.5])
    # Q row 0: arrivals [4, 0], global freqs [0.5, 0.5]: (4 + 4*0.5, 0 + 4*0.5) / 8
    np.testing.assert_allclose(est["event_probs"][0], [6 / 8, 2 / 8])
    for key in ("pooled", "transition_matrix", "event_probs"):
        np.testing.assert_allclose(est[key].sum(axis=-1), 1.0)
    np.testing.assert_allclose(est["event_matrices"].sum(axis=-1), 1.0)


def test_unsmoothed_marginal_is_pooled(rng):
    C = rng.randint(1, 50, size=(4, 5, 5))
    est = estimate_tensors(C, alpha=0.0, beta=0.0)
    np.testing.assert_allclose(est["transition_matrix"], est["pooled"], atol=1e-12)
    np.testing.assert_allclose(est["pooled"], C.sum(0) / C.sum((0, 2))[:, None])


def test_recovers_known_chain(rng):
    P, Q = random_chain(rng, n_states=4, n_events=3)
    states, events = simulate_chain(P, Q, rng.randint(0, 4, 400), 500, random_state=1)
    chain = EventMarkovChain(alpha=1.0, beta=1.0).fit(make_traj(frame_from_paths(states, events), 4, [3]))
    # 200k transitions; where a (event, state) row has >= 2500 counts the binomial
    # standard error is <= 0.01, so 0.02 is a 2-sigma-or-better check per row
    rows = chain.counts_.sum(axis=2)
    plentiful = rows >= 2500
    assert plentiful.sum() >= 9  # most of the 12 rows
    np.testing.assert_allclose(chain.event_matrices_[plentiful], P[plentiful], atol=0.02)
    np.testing.assert_allclose(chain.event_probs_, Q, atol=0.02)
    T = np.einsum("ie,eij->ij", Q, P)
    np.testing.assert_allclose(chain.failure_probabilities(10),
                               failure_probabilities(T, np.array([0, 0, 0, 1], bool), 10), atol=0.02)


def test_partial_fit_equals_fit_on_union_any_event_order(rng):
    P, Q = random_chain(rng, n_states=3, n_events=4)
    states, events = simulate_chain(P, Q, rng.randint(0, 3, 30), 50, random_state=2)
    frame = frame_from_paths(states, events)
    a = frame[frame["entity"] < "h0012"]
    b = frame[frame["entity"] >= "h0012"]
    b = b[b["event"] != "e0"]  # B lacks an event, so vocabularies differ
    a = a[a["event"] != "e3"]  # and A lacks another
    whole = EventMarkovChain().fit(make_traj(pd.concat([a, b]), 3, [2]))
    inc = EventMarkovChain().fit(make_traj(a, 3, [2])).partial_fit(make_traj(b, 3, [2]))
    assert inc.event_names_ == whole.event_names_ == ["e0", "e1", "e2", "e3"]
    np.testing.assert_array_equal(inc.counts_, whole.counts_)
    np.testing.assert_allclose(inc.transition_matrix_, whole.transition_matrix_)


@pytest.mark.filterwarnings("ignore::markovfault.exceptions.DataWarning")
def test_partial_fit_rejects_other_states():
    frame = pd.DataFrame({"entity": ["a", "a"], "time": [1, 2], "event": ["x", "x"], "state": [0, 1]})
    chain = EventMarkovChain().fit(make_traj(frame, 2, [1]))
    with pytest.raises(ValueError, match="fitted state extractor"):
        chain.partial_fit(make_traj(frame, 3, [1]))


def test_unseen_event_falls_back_to_pooled_row_with_warning():
    frame = pd.DataFrame({"entity": ["a"] * 4, "time": [1, 2, 3, 4], "event": ["x", "y", "x", "y"],
                          "state": [0, 1, 0, 1]})
    chain = EventMarkovChain(alpha=1.0, beta=1.0).fit(make_traj(frame, 2, [1]))
    with pytest.warns(DataWarning, match="never seen in training"):
        mats = chain.scenario_matrices(["x", "brand_new"])
    np.testing.assert_allclose(mats[1], chain.pooled_matrix_)
    np.testing.assert_allclose(mats[0], chain.event_matrices_[0])


def test_state_never_left_gets_prior_with_warning():
    frame = pd.DataFrame({"entity": ["a"] * 3, "time": [1, 2, 3], "event": ["x"] * 3, "state": [0, 0, 1]})
    with pytest.warns(DataWarning, match=r"'s1', 's2'\] were never left"):
        chain = EventMarkovChain(alpha=2.0).fit(make_traj(frame, 3, [1]))
    np.testing.assert_allclose(chain.pooled_matrix_[1], [1 / 3] * 3)
    np.testing.assert_allclose(chain.transition_matrix_[1], [1 / 3] * 3)


def test_log_likelihood_matches_direct_sum(rng):
    P, Q = random_chain(rng, n_states=3, n_events=2)
    states, events = simulate_chain(P, Q, rng.randint(0, 3, 20), 30, random_state=5)
    train = make_traj(frame_from_paths(states, events), 3, [2])
    states2, events2 = simulate_chain(P, Q, rng.randint(0, 3, 5), 10, random_state=6)
    test_frame = frame_from_paths(states2, events2)
    chain = EventMarkovChain(alpha=0.5, beta=2.0).fit(train)
    ll = chain.log_likelihood(make_traj(test_frame, 3, [2], event_names=chain.event_names_))
    ll_q = chain.log_likelihood(make_traj(test_frame, 3, [2], event_names=chain.event_names_),
                                include_events=True)
    want = want_q = 0.0
    for k in range(states2.shape[0]):  # direct loop over the test paths
        for t in range(1, states2.shape[1]):
            i, e, j = states2[k, t - 1], events2[k, t], states2[k, t]
            want += np.log(chain.event_matrices_[e, i, j])
            want_q += np.log(chain.event_probs_[i, e])
    assert ll == pytest.approx(want)
    assert ll_q == pytest.approx(want + want_q)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), "1", True])
def test_bad_parameters(bad):
    frame = pd.DataFrame({"entity": ["a", "a"], "time": [1, 2], "event": ["x", "x"], "state": [0, 1]})
    with pytest.raises(ConfigError, match="alpha"):
        EventMarkovChain(alpha=bad).fit(make_traj(frame, 2, [1]))


def test_not_fitted_and_wrong_input():
    with pytest.raises(NotFittedError, match="not fitted"):
        EventMarkovChain().failure_probabilities(3)
    with pytest.raises(TypeError, match="Trajectories"):
        EventMarkovChain().fit(np.zeros(3))


def test_sklearn_conventions():
    from sklearn.base import clone

    chain = EventMarkovChain(alpha=0.3, beta=7.0)
    assert clone(chain).get_params() == {"alpha": 0.3, "beta": 7.0}
    assert repr(chain) == "EventMarkovChain(alpha=0.3, beta=7.0)"
