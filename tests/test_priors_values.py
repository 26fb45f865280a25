"""The priors of estimate_tensors against hand counts with uneven numbers."""

import numpy as np
from markovfault._priors import estimate_tensors


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
