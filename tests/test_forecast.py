"""Closed forms against Monte Carlo of the same chain, and against hand-derived values."""

import numpy as np
import pytest

from markovfault.forecast import (
    check_transition_matrix,
    expected_steps_to_failure,
    failure_probabilities,
    monte_carlo_failure_probabilities,
    scenario_failure_probabilities,
    simulate_chain,
)
from conftest import random_chain


def test_two_state_geometric():
    # fail with probability p per step from ok: P(fail within h) = 1 - (1-p)^h
    p = 0.13
    T = np.array([[1 - p, p], [0.4, 0.6]])
    got = failure_probabilities(T, [False, True], 20)
    np.testing.assert_allclose(got[0], 1 - (1 - p) ** np.arange(1, 21), rtol=1e-12)
    # from down: the next state is down w.p. 0.6, else ok then geometric
    h = np.arange(1, 21)
    np.testing.assert_allclose(got[1], 0.6 + 0.4 * (1 - (1 - p) ** (h - 1)), rtol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_failure_probabilities_match_monte_carlo(seed):
    rng = np.random.RandomState(seed)
    P, Q = random_chain(rng, n_states=5, n_events=3)
    fail = np.array([False, False, False, True, True])
    T = np.einsum("ie,eij->ij", Q, P)
    exact = failure_probabilities(T, fail, 8)
    mc, se = monte_carlo_failure_probabilities(P, Q, fail, 8, n_paths=20_000, random_state=seed)
    # 4.5 standard errors: a false alarm in 40 cells is rare (~1e-4)
    assert np.all(np.abs(mc - exact) <= 4.5 * np.maximum(se, 1e-3))


def test_scenario_matches_monte_carlo(rng):
    P, Q = random_chain(rng, n_states=4, n_events=3)
    fail = np.array([False, False, True, False])
    scenario = [2, 2, 0, 1, 2, 2]
    exact = scenario_failure_probabilities(P[scenario], fail)
    mc, se = monte_carlo_failure_probabilities(
        P, Q, fail, len(scenario), n_paths=20_000, scenario=scenario, random_state=1
    )
    assert np.all(np.abs(mc - exact) <= 4.5 * np.maximum(se, 1e-3))


def test_scenario_with_constant_matrix_equals_marginal(rng):
    P, _ = random_chain(rng, n_states=6, n_events=2)
    fail = np.array([0, 0, 1, 0, 0, 1], dtype=bool)
    np.testing.assert_allclose(
        scenario_failure_probabilities(np.repeat(P[1][None], 12, axis=0), fail),
        failure_probabilities(P[1], fail, 12),
        atol=1e-12,
    )


def test_probabilities_bounded_and_monotone(rng):
    P, Q = random_chain(rng, n_states=7, n_events=3, sparsity=0.6)
    T = np.einsum("ie,eij->ij", Q, P)
    fail = np.isin(np.arange(7), [0, 6])
    p = failure_probabilities(T, fail, 30)
    assert p.min() >= 0 and p.max() <= 1
    assert np.all(np.diff(p, axis=1) >= -1e-12)
    np.testing.assert_allclose(p[:, 0], T[:, [0, 6]].sum(axis=1))


def test_expected_steps_closed_form_and_monte_carlo(rng):
    P, Q = random_chain(rng, n_states=4, n_events=2)
    fail = np.array([False, True, False, False])
    T = np.einsum("ie,eij->ij", Q, P)
    m = expected_steps_to_failure(T, fail)
    # independent closed form: the fundamental matrix of the chain with F made absorbing
    N = np.linalg.inv(np.eye(3) - T[np.ix_(~fail, ~fail)])
    np.testing.assert_allclose(m[~fail], N.sum(axis=1))
    # Monte Carlo: first n >= 1 with S_n in F, from every state
    n_paths, n_steps = 4000, 400
    start = np.repeat(np.arange(4), n_paths)
    states, _ = simulate_chain(P, Q, start, n_steps, random_state=3)
    hit = fail[states]
    assert hit.any(axis=1).all()  # 400 steps are plenty here
    first = hit.argmax(axis=1) + 1
    mean = first.reshape(4, n_paths).mean(axis=1)
    sd = first.reshape(4, n_paths).std(axis=1) / np.sqrt(n_paths)
    assert np.all(np.abs(mean - m) <= 4.5 * sd)


def test_expected_steps_infinite_where_failure_is_not_certain():
    # 0 -> 1 (fail) or 2 (absorbing, never fails); 3 -> 3 or 1
    T = np.array([[0.0, 0.5, 0.5, 0.0],
                  [1.0, 0.0, 0.0, 0.0],
                  [0.0, 0.0, 1.0, 0.0],
                  [0.0, 0.5, 0.0, 0.5]])
    m = expected_steps_to_failure(T, [False, True, False, False])
    assert np.isinf(m[0]) and np.isinf(m[1]) and np.isinf(m[2])
    assert m[3] == pytest.approx(2.0)  # geometric with p = 1/2


def test_no_failure_state_gives_zero_and_inf():
    T = np.full((3, 3), 1 / 3)
    assert np.all(failure_probabilities(T, [False] * 3, 4) == 0)
    assert np.all(np.isinf(expected_steps_to_failure(T, [False] * 3)))


def test_invalid_inputs_have_clear_errors():
    with pytest.raises(ValueError, match="row 1 sums to 0.9"):
        check_transition_matrix([[1.0, 0.0], [0.5, 0.4]])
    with pytest.raises(ValueError, match="square"):
        failure_probabilities(np.ones((2, 3)) / 3, [True, False], 2)
    with pytest.raises(ValueError, match="horizon = 0"):
        failure_probabilities(np.eye(2), [True, False], 0)
    with pytest.raises(TypeError, match="horizon"):
        failure_probabilities(np.eye(2), [True, False], 2.5)
    with pytest.raises(ValueError, match="shape"):
        failure_probabilities(np.eye(2), [True, False, False], 2)
    with pytest.raises(TypeError, match="boolean mask"):
        failure_probabilities(np.eye(2), [0, 1], 2)
    with pytest.raises(ValueError, match="negative"):
        failure_probabilities([[1.5, -0.5], [0, 1]], [True, False], 2)
