"""Priors chosen from data: the Dirichlet-multinomial evidence and the strength that maximises it."""

import numpy as np
import pytest
from scipy.stats import dirichlet_multinomial

from markovfault._priors import dirichlet_log_evidence, dirichlet_strength


def test_evidence_matches_scipy_up_to_a_constant():
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(4), size=5)
    n = rng.integers(0, 9, size=(5, 4))
    n[2] = 0  # a row without data contributes nothing
    strengths = np.array([0.3, 2.0, 17.0, 250.0])
    ours = dirichlet_log_evidence(n, p, strengths)
    ref = np.array([sum(dirichlet_multinomial.logpmf(n[r], s * p[r], n[r].sum())
                        for r in range(5) if n[r].sum()) for s in strengths])
    # scipy includes the multinomial coefficients, the same for every strength
    np.testing.assert_allclose(ours - ours[0], ref - ref[0], rtol=1e-10, atol=1e-9)


def test_strength_is_the_maximum_of_the_evidence():
    rng = np.random.default_rng(5)
    p = np.array([[0.7, 0.2, 0.1]] * 40)
    n = np.stack([rng.multinomial(23, rng.dirichlet(11.0 * p[0])) for _ in range(40)])
    best = dirichlet_strength(n, p)
    dense = np.exp(np.linspace(np.log(0.01), np.log(1e5), 20001))
    ev = dirichlet_log_evidence(n, p, dense)
    assert dirichlet_log_evidence(n, p, [best])[0] >= ev.max() - 1e-9
    assert best == pytest.approx(dense[np.argmax(ev)], rel=2e-3)


def test_strength_recovers_a_simulated_prior():
    rng = np.random.default_rng(11)
    mean = np.array([0.55, 0.3, 0.1, 0.05])
    true_strength = 37.0
    rows = rng.dirichlet(true_strength * mean, size=3000)
    n = np.stack([rng.multinomial(40, r) for r in rows])
    est = dirichlet_strength(n, np.broadcast_to(mean, n.shape))
    assert est == pytest.approx(true_strength, rel=0.15)


def test_no_counts_gives_the_middle_of_the_grid():
    assert dirichlet_strength(np.zeros((2, 3)), np.full((2, 3), 1 / 3)) == pytest.approx(
        np.sqrt(0.01 * 1e5))
