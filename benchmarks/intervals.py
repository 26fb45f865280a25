"""What posterior intervals cost, and how often they hold the truth (ratios and figures from one run).

``speed``: a plain chain fitted on the bundled-size simulated service, then 1,000,000 entities forecast
10 horizons ahead with a 90% interval from 200 posterior draws: the draws are made per chain state and
pushed through the recursion in one batched product per horizon; each entity looks its state up. Timed:
the point forecast (the table and the lookup), the interval (the draws, their quantiles and the lookup),
their ratio, and the peak memory the interval adds (tracemalloc, which numpy reports to). The same for a
history-aware chain (order 2, failure window 3: a few hundred chain states, sparse matrices).

``coverage``: how often 90% intervals hold the true P(fail within h), h = 1..5, over repeated simulated
histories of a known chain (the plain chain, a what-if scenario, and an order-2 truth under the default
back-off and under ``backoff = "auto"``), at several history sizes. The tests assert the 1,200-transition
plain case and the 2,400-transition history case; this prints the rest.

Run ``python benchmarks/intervals.py [speed|coverage]`` (both by default).
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from markovfault.chain import EventMarkovChain, HistoryChain, failure_bounds, failure_table  # noqa: E402
from markovfault.predictor._output import interval_columns  # noqa: E402
from markovfault.states import HistorySpec  # noqa: E402
from markovfault.simulate import simulate_histories  # noqa: E402


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def speed(n_entities: int = 1_000_000, horizon: int = 10, n_draws: int = 200) -> None:
    from markovfault import FaultPredictor

    hist = simulate_histories(60, 1500, random_state=0, with_metrics=False)
    for label, history in (("plain", None), ("order 2, failure window 3", {"order": 2, "failure_window": 3})):
        model = FaultPredictor(columns={"entity": "handler", "time": "timestamp", "event": "event_type"},
                               states={"kind": "categorical", "failure": ["error", "timeout", "down"]},
                               history=history).fit(hist)
        chain = model.chain_
        n_states = len(chain.state_names_)
        rows = np.random.default_rng(0).integers(0, n_states, size=n_entities)

        def point():
            return failure_table(chain, horizon)[rows]

        def interval():
            table = failure_table(chain, horizon)
            bounds = failure_bounds(chain, table, None, None, 0.9, n_draws, 0, np.unique(rows))
            return interval_columns(bounds, chain.state_support(), rows)

        point()
        interval()  # warm up: imports, the sparsity pattern
        _, t_point = timed(point)
        tracemalloc.start()
        _, t_int = timed(interval)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"{label}: {n_states} chain states, {n_entities:,} entities x {horizon} horizons, {n_draws} draws: "
              f"point {t_point:.3f} s, with the 90% interval {t_int:.3f} s ({t_int / t_point:.1f}x), "
              f"peak memory of the interval {peak / 2 ** 20:.0f} MiB "
              f"(the three output arrays alone: {3 * n_entities * horizon * 8 / 2 ** 20:.0f} MiB)")


def coverage() -> None:
    import test_intervals as T

    truth_m = T.failure_probabilities(np.einsum("ie,eij->ij", T.Q_TRUE, T.P_TRUE), T.FAIL, T.H)[:2]
    truth_s = T.scenario_failure_probabilities(T.P_TRUE[[1, 1, 0, 1, 0]], T.FAIL)[:2]
    for n_ent in (10, 20, 40, 80):
        counts = T._plain_counts(1000, n_ent, 30, seed=21)
        hit, hit_s = np.zeros((2, T.H)), np.zeros((2, T.H))
        for r, c in enumerate(counts):
            chain = EventMarkovChain(alpha=1.0, beta=1.0).fit_from_counts(c, T.NAMES, ["a", "b"], T.FAIL)
            hit += T._covered(chain.failure_probabilities(T.H, interval=0.9, random_state=r), truth_m, slice(0, 2))
            hit_s += T._covered(chain.failure_probabilities(T.H, T.SCENARIO, interval=0.9, random_state=r),
                                truth_s, slice(0, 2))
        print(f"plain, {n_ent * 30} transitions, 1000 histories: marginal (ok, slow) "
              f"{(hit / 1000).round(3).tolist()}, scenario {(hit_s / 1000).round(3).tolist()}")
    truth, truth_s = T._pair_truth()
    pairs = [("down", "ok"), ("slow", "slow"), ("ok", "ok")]
    idx = [T.NAMES.index(p) * 3 + T.NAMES.index(c) for p, c in pairs]
    for backoff in (5.0, "auto"):
        for n_ent in (40, 80, 160):
            states, events = T._simulate_order2(400 * n_ent, 30, np.random.default_rng(8))
            hit, hit_s = np.zeros((3, T.H)), np.zeros((3, T.H))
            for r in range(400):
                traj = T._history_traj(0, 0, 0, states[r * n_ent:(r + 1) * n_ent], events[r * n_ent:(r + 1) * n_ent])
                chain = HistoryChain(HistorySpec(order=2, backoff=backoff), alpha=1.0, beta=1.0)
                chain = chain.fit_from_counts(chain.count(traj), T.NAMES, ["a", "b"], T.FAIL)
                rows = [chain.state_names_.index(f"{c}|prev={p}") for p, c in pairs]
                hit += T._covered(chain.failure_probabilities(T.H, interval=0.9, random_state=r), truth[idx], rows)
                hit_s += T._covered(chain.failure_probabilities(T.H, T.SCENARIO, interval=0.9, random_state=r),
                                    truth_s[idx], rows)
            print(f"order 2, backoff {backoff}, {n_ent * 30} transitions, 400 histories: marginal by state "
                  f"(ok after down, slow after slow, ok after ok) {(hit / 400).round(3).tolist()}, "
                  f"scenario {(hit_s / 400).round(3).tolist()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", choices=["speed", "coverage", "all"], default="all")
    args = parser.parse_args()
    if args.what in ("speed", "all"):
        speed()
    if args.what in ("coverage", "all"):
        coverage()
