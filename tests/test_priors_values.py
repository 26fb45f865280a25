"""The priors of estimate_tensors against hand counts with uneven numbers, and rows that sum to one
whatever the prior's mass (denormal ones included)."""

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from markovfault._priors import back_off, estimate_tensors


def uneven_counts():
    """3 states, 2 events; state 2 is never left. Arrivals: state 0 saw e0 six times and e1 never, state 1
    saw e0 never and e1 twice: the global mix is (6/8, 2/8) = (0.75, 0.25), not even."""
    C = np.zeros((2, 3, 3), dtype=np.int64)
    C[0, 0, 0], C[0, 0, 1] = 4, 2   # state 0 under e0: 4 stay, 2 to state 1
    C[1, 1, 0], C[1, 1, 2] = 1, 1   # state 1 under e1: 1 back to 0, 1 to state 2
    return C


def test_arrival_rows_shrink_toward_the_uneven_global_mix():
    est = estimate_tensors(uneven_counts(), alpha=1.0, beta=2.0)
    Q = est["event_probs"]
    # by hand: Q[i, e] = (N[i, e] + beta * g[e]) / (N[i, .] + beta), g = (0.75, 0.25)
    np.testing.assert_allclose(Q[0], [(6 + 2 * 0.75) / 8, (0 + 2 * 0.25) / 8], rtol=1e-14)  # 0.9375, 0.0625
    np.testing.assert_allclose(Q[1], [(0 + 2 * 0.75) / 4, (2 + 2 * 0.25) / 4], rtol=1e-14)  # 0.375, 0.625
    np.testing.assert_allclose(Q[2], [0.75, 0.25], rtol=1e-14)  # never left: the global mix itself
    # toward uniform would have given (7/8, 1/8), (1/4, 3/4) and (1/2, 1/2)


def test_arrival_rows_use_their_own_strength():
    est = estimate_tensors(uneven_counts(), alpha=1.0, beta=2.0, beta_arrivals=8.0)
    np.testing.assert_allclose(est["event_probs"][0], [(6 + 8 * 0.75) / 14, (8 * 0.25) / 14], rtol=1e-14)
    np.testing.assert_allclose(est["event_probs"][1], [(8 * 0.75) / 10, (2 + 8 * 0.25) / 10], rtol=1e-14)


def test_pooled_and_event_rows_by_hand():
    est = estimate_tensors(uneven_counts(), alpha=1.5, beta=2.0)
    # pooled: (sum_e C + alpha / S) / (n + alpha); state 0 left 6 times, state 1 twice, state 2 never
    P0 = np.array([4.5, 2.5, 0.5]) / 7.5
    P1 = np.array([1.5, 0.5, 1.5]) / 3.5
    np.testing.assert_allclose(est["pooled"][0], P0, rtol=1e-14)
    np.testing.assert_allclose(est["pooled"][1], P1, rtol=1e-14)
    np.testing.assert_allclose(est["pooled"][2], [1 / 3] * 3, rtol=1e-14)
    # event rows: (C + beta * pooled) / (n + beta); e1 never arrived in state 0: its row is (0 + 2 P0) / 2
    np.testing.assert_allclose(est["event_matrices"][0, 0], (np.array([4, 2, 0]) + 2 * P0) / 8, rtol=1e-14)
    np.testing.assert_allclose(est["event_matrices"][1, 0], P0, rtol=1e-14)
    np.testing.assert_allclose(est["event_matrices"][1, 1], (np.array([1, 0, 1]) + 2 * P1) / 4, rtol=1e-14)


def _rows_sum_to_one(est):
    for key in ("pooled", "transition_matrix", "event_probs"):
        np.testing.assert_allclose(est[key].sum(axis=1), 1.0, atol=1e-12, err_msg=key)
    np.testing.assert_allclose(est["event_matrices"].sum(axis=2), 1.0, atol=1e-12, err_msg="event_matrices")


priors = st.one_of(st.floats(0, 5), st.sampled_from([0.0, 5e-324, 1e-310, 2.2250738585072014e-308]))


@settings(max_examples=60, deadline=None)
@given(arrays(np.int64, st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4)).map(
    lambda t: (t[0], t[1], t[1])), elements=st.integers(0, 3)), priors, priors)
# found by Hypothesis: alpha = 0, beta = 5e-324 on a never-left state (beta * pooled underflows)
@example(np.array([[[1, 1], [0, 0]]]), 0.0, 5e-324)
@example(np.array([[[1, 0], [0, 0]], [[0, 0], [0, 0]]]), 5e-324, 5e-324)
def test_rows_sum_to_one_whatever_the_prior_mass(counts, alpha, beta):
    _rows_sum_to_one(estimate_tensors(counts, alpha, beta))


def test_a_row_whose_total_is_subnormal_is_empty():
    # counts need not be integers (weighted or merged counts): a total that is subnormal gives terms that
    # underflow (5e-324 / 2 is 0), so the row would sum to 1/2; it is empty instead: its prior's target
    C = np.array([[[5e-324, 0.0], [0.0, 0.0]]])
    est = estimate_tensors(C, alpha=5e-324, beta=5e-324)
    _rows_sum_to_one(est)
    np.testing.assert_array_equal(est["pooled"][0], [0.5, 0.5])


def test_arrival_and_back_off_rows_with_subnormal_totals_are_empty():
    # found by a search over subnormal counts: rounding in the subnormal range left rows summing to 8/9
    C = np.array([[[1e-323, 3e-323], [1e-310, 1.0]], [[0.0, 0.0], [1e-310, 1.0]]])
    est = estimate_tensors(C, 1.0, 1.0, beta_arrivals=5e-324)
    _rows_sum_to_one(est)
    np.testing.assert_allclose(est["event_probs"][0], C.sum(axis=(1, 2)) / C.sum())  # empty: the global mix
    base_next, base_arrivals = np.full((2, 1, 2), 0.5), np.array([[0.3, 0.7]])
    P, Q = back_off(np.array([[[0.0, 1e-323]], [[5e-324, 3e-323]]]), base_next, base_arrivals, 5e-324)
    np.testing.assert_allclose(P.sum(axis=2), 1.0, atol=1e-12)
    np.testing.assert_array_equal(P, base_next)
    np.testing.assert_array_equal(Q, base_arrivals)


def test_back_off_with_a_denormal_strength_keeps_rows_summing_to_one():
    P, Q = back_off(np.array([[[0, 0]], [[2, 1]]]), np.array([[[0.3, 0.7]], [[0.6, 0.4]]]),
                    np.array([[0.25, 0.75]]), 5e-324)
    np.testing.assert_allclose(P.sum(axis=2), 1.0, atol=1e-12)
    np.testing.assert_allclose(Q.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(P[0, 0], [0.3, 0.7])  # no data under e0: the base row


def test_property_tests_are_derandomised_in_ci():
    import os

    ci = settings.get_profile("ci")
    assert ci.derandomize and ci.database is None and ci.print_blob
    if os.environ.get("CI"):
        assert settings.default.derandomize and settings.default.database is None
