import os

# one OpenMP thread per process: the gradient-boosting baseline otherwise oversubscribes
# the cores when joblib runs folds in parallel (must be set before scikit-learn loads)
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path

from hypothesis import settings

# property tests draw the same examples in every CI run (CI=true); locally they explore, and what they find
# is pinned with @example next to the test
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

import numpy as np
import pandas as pd
import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def random_chain(rng, n_states, n_events, sparsity=0.0):
    """A random event-conditioned chain: P (E,S,S) and Q (S,E), rows summing to 1."""
    P = rng.gamma(0.7, size=(n_events, n_states, n_states))
    if sparsity:
        P *= rng.random_sample(P.shape) > sparsity
        P[..., 0] += 1e-3
    P /= P.sum(axis=2, keepdims=True)
    Q = rng.gamma(1.0, size=(n_states, n_events))
    Q /= Q.sum(axis=1, keepdims=True)
    return P, Q


def frame_from_paths(states, events, entity_prefix="h"):
    """A canonical history frame from simulated (n_paths, n_steps) arrays."""
    n_paths, n_steps = states.shape
    return pd.DataFrame(
        {
            "entity": np.repeat([f"{entity_prefix}{k:04d}" for k in range(n_paths)], n_steps),
            "time": np.tile(np.arange(n_steps, dtype=np.int64), n_paths),
            "event": np.asarray([f"e{k}" for k in range(events.max() + 1)])[events.ravel()],
            "state": states.ravel(),
        }
    )


@pytest.fixture
def rng():
    return np.random.RandomState(42)


def assert_same_counts(a, b):
    """Two chains' (or models') counts are equal: arrays, or history-aware counts over the same states
    (with their exogenous counts); two models' sojourn times too."""
    soj = [getattr(x, "sojourn_counts_", None) for x in (a, b)]
    if soj[0] is not None or soj[1] is not None:
        np.testing.assert_array_equal(soj[0].done, soj[1].done)
        np.testing.assert_array_equal(soj[0].cens, soj[1].cens)
        np.testing.assert_allclose(soj[0].done_sum, soj[1].done_sum, rtol=1e-12)
        np.testing.assert_allclose(soj[0].cens_sum, soj[1].cens_sum, rtol=1e-12)
    a, b = (getattr(getattr(x, "chain_", x), "counts_", x) for x in (a, b))
    if hasattr(a, "codes"):
        np.testing.assert_array_equal(a.codes, b.codes)
        assert (a.exo is None) == (b.exo is None)  # the exogenous counts (group context, gap) too
        if a.exo is not None:
            np.testing.assert_array_equal(a.exo, b.exo)
        a, b = a.counts, b.counts
    np.testing.assert_array_equal(a, b)
    assert a.dtype == b.dtype == np.int64


def monte_carlo_of_exogenous_chain(chain, horizon: int = 5, n_paths: int = 40000, seed: int = 11):
    """P(fail within 1..horizon) from about 8 of ``chain``'s states, by simulating the fitted
    history-aware chain with exogenous components (event, next state, next exogenous value, successor),
    every path at once; returns (the states, the estimates, their standard errors)."""
    rng = np.random.default_rng(seed)
    starts = np.arange(0, chain.n_aug_, max(1, chain.n_aug_ // 8))
    a = np.repeat(starts, n_paths)
    failed = np.zeros((len(a), horizon), dtype=bool)
    hit = np.zeros(len(a), dtype=bool)
    Q, P, R, f = chain.event_probs_, chain.next_probs_, chain.exo_probs_, chain.successor_

    def draw(p):  # one categorical draw per row of p
        return (rng.random(len(p))[:, None] > np.cumsum(p, axis=1)).sum(axis=1).clip(0, p.shape[1] - 1)

    for h in range(horizon):  # a loop over steps; every path moves at once
        e = draw(Q[a])
        j = draw(P[e, a])
        x = draw(R[a])
        a = f[a, e, j, x]
        hit |= chain.is_failure_[a]
        failed[:, h] = hit
    mc = failed.reshape(len(starts), n_paths, horizon).mean(axis=1)
    return starts, mc, np.sqrt(mc * (1 - mc) / n_paths) + 1e-4


# ------------------------------------------------------------------ the command line as a real process
#: The config of `markovfault simulate`'s histories (the command-line tests train and explain with it).
SIMULATED_CONFIG = """
[columns]
entity = "handler"
time = "timestamp"
event = "event_type"
status = "status"
event_id = "event_id"

[states]
kind = "categorical"
failure = ["error", "timeout", "down"]
"""


def run_cli(*argv, cwd):
    """`python -m markovfault.cli ARGV` in ``cwd``, this checkout first on the path; the finished process."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([sys.executable, "-m", "markovfault.cli", *map(str, argv)], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=300)
