"""How the what-if forecast of the history-aware chain grows with the horizon (ratios in one run).

Fits a history-aware chain (order 3, failure window 4, entering event: a few thousand augmented states over
sparse matrices) and times ``FaultPredictor.failure_probabilities(k, scenario=...)`` end to end (building the
event matrices included) and its kernel for k = 8, 16, 32, 64, against one backward fold per horizon (what
the history-aware chain did before: k(k+1)/2 sparse mat-vecs) on the same matrices. The block fold makes k passes over the matrices, one matrix-block product per step; the
arithmetic still grows with the k(k+1)/2 columns in all, so its time per step grows with k too, more slowly
than the per-horizon fold's (as measured: about even at k = 8, 1.2x faster at 16, 1.2-2x at 32 and 64).

Run ``python benchmarks/scenario.py`` (``--repeat N``, best of N).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from markovfault import FaultPredictor
from markovfault._recursion import scenario_hitting_probabilities
from markovfault.simulate import simulate_histories


def best_of(fn, repeat):
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return min(out)


def fold_each_horizon(mats, fail):
    """The old scenario forecast: one backward fold per horizon."""
    keep = 1.0 - fail
    out = np.empty((len(fail), len(mats)))
    for h in range(1, len(mats) + 1):
        f = fail
        for m in range(h - 1, -1, -1):
            g = mats[m] @ f
            f = fail + keep * g if m else g
        out[:, h - 1] = f
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    hist = simulate_histories(60, 1500, random_state=0, with_metrics=False)
    model = FaultPredictor(
        columns={"entity": "handler", "time": "timestamp", "event": "event_type"},
        states={"kind": "categorical", "failure": ["error", "timeout", "down"]},
        history={"order": 3, "failure_window": 4, "entering_event": True})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(hist)
    chain = model.chain_
    events = list(model.event_names_)
    rng = np.random.default_rng(1)
    print(f"history-aware chain: {chain.n_aug_} augmented states, {len(events)} events")
    print(f"{'k':>4} {'forecast s':>11} {'block fold s':>13} {'per step ms':>12} {'per-horizon fold s':>19}"
          f" {'ratio':>7}")
    fail = chain.is_failure_.astype(np.float64)
    for k in (8, 16, 32, 64):
        scenario = [events[i] for i in rng.integers(0, len(events), k)]
        codes = chain.base_.event_codes(scenario)
        mats = [chain.event_matrix(c) for c in codes]
        t_all = best_of(lambda: model.failure_probabilities(k, scenario=scenario), args.repeat)
        t_new = best_of(lambda: scenario_hitting_probabilities(mats, chain.is_failure_), args.repeat)
        t_old = best_of(lambda: fold_each_horizon(mats, fail), args.repeat)
        np.testing.assert_allclose(model.failure_probabilities(k, scenario=scenario).to_numpy(),
                                   np.clip(fold_each_horizon(mats, fail), 0, 1), atol=1e-10)
        print(f"{k:>4} {t_all:>11.4f} {t_new:>13.4f} {1000 * t_new / k:>12.3f} {t_old:>19.4f}"
              f" {t_old / t_new:>7.1f}")


if __name__ == "__main__":
    main()
