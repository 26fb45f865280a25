"""Fault localization on the simulated call graph: root-cause accuracy and recovered propagation edges.

Learns the propagation graph (``propagation_test``) on one simulation of the call graph
(``simulate_call_graph``: order_api -> payment -> shipping -> delivery, a notification handler, a shared
database; every handler or the database made the injected root cause of failure episodes) and ranks the root
causes of every episode of a second simulation of the same design with another seed:

- ``rank_root_causes`` with the learned graph, and without it (``onset``: anomaly x earliness alone);
- the BARO baseline ``robust_zscore_ranking`` on ``latency_ms`` and on the failure indicator.

AC@1..AC@5 and Avg@5 per method, for the anomaly window starting at the true start of each episode and, with
``--delays``, starting later (an alert that fires after the root cause began: the onsets are then cut at the
window's start and who failed first says less). Then the propagation edges' precision and recall against the
handlers each one reaches (the transitive closure: A's failure raises B's failure probability, directly or
through others) and against the direct edges, oriented and not, and the bootstrap's runtime.

Run ``python benchmarks/localization.py`` (``--episodes N``, ``--bootstrap B``, ``--delays 0s,2min``).
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from markovfault.explain._localize import (
    propagation_test,
    rank_root_causes,
    robust_zscore_ranking,
    root_cause_accuracy,
)
from markovfault.simulate import simulate_call_graph


def rankings(sim, method, delay, **kw):
    h, parts = sim.histories, []
    for ep in sim.episodes.itertuples():  # a loop over episodes
        start = ep.start + delay
        near = h[(h["time"] >= start - pd.Timedelta("1h")) & (h["time"] < ep.end)]
        parts.append(method(near, start, ep.end, **kw).assign(episode=ep.episode))
    return pd.concat(parts, ignore_index=True)


def edge_scores(found, truth):
    hit = len(found & truth)
    return hit / max(len(found), 1), hit / len(truth)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--bootstrap", type=int, default=199)
    parser.add_argument("--delays", default="0s,2min")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--severity", default="0.3,0.7",
                        help="the range of the root causes' failure probability in their episodes")
    args = parser.parse_args(argv)
    t_all = time.perf_counter()

    t0 = time.perf_counter()
    severity = tuple(float(x) for x in args.severity.split(","))
    train = simulate_call_graph(args.episodes, severity=severity, random_state=args.seed + 1)
    test = simulate_call_graph(args.episodes, severity=severity, random_state=args.seed + 2)
    print(f"severity {severity}: simulated {len(train.histories)} + {len(test.histories)} steps, "
          f"{args.episodes} + {args.episodes} episodes in {time.perf_counter() - t0:.2f} s")

    t0 = time.perf_counter()
    graph = propagation_test(train.histories, failure=train.failure, window="60s")
    t_prop = time.perf_counter() - t0
    reach, direct = train.reachable_edges(), train.true_edges()
    print(f"\npropagation test, {len(graph.table)} pairs, asymptotic: {t_prop:.2f} s")
    for orient in (True, False):
        res = graph if orient else propagation_test(train.histories, failure=train.failure, window="60s",
                                                    orient=False)
        found = set(zip(res.edges["source"], res.edges["target"]))
        p_r, r_r = edge_scores(found, reach)
        p_d, r_d = edge_scores(found, direct)
        print(f"  orient={orient!s:<5}  {len(found):2d} edges  precision {p_r:.2f} recall {r_r:.2f} (of "
              f"{len(reach)} reachable)   precision {p_d:.2f} recall {r_d:.2f} (of {len(direct)} direct)")
        if orient:
            print(f"    false edges: {sorted(found - reach)}; missed: {sorted(reach - found)}")
    if args.bootstrap:
        t0 = time.perf_counter()
        boot = propagation_test(train.histories, failure=train.failure, window="60s", bootstrap=args.bootstrap,
                                random_state=0)
        found = set(zip(boot.edges["source"], boot.edges["target"]))
        p_r, r_r = edge_scores(found, reach)
        print(f"  bootstrap B={args.bootstrap}: {time.perf_counter() - t0:.2f} s, {len(found)} edges, precision "
              f"{p_r:.2f} recall {r_r:.2f} (reachable)")

    truth = test.episodes.set_index("episode")["root_cause"]
    methods = {
        "rank_root_causes": (rank_root_causes, {"failure": test.failure, "propagation": graph}),
        "onset alone": (rank_root_causes, {"failure": test.failure, "propagation": None}),
        "z-score latency_ms": (robust_zscore_ranking, {"metric": "latency_ms"}),
        "z-score failure": (robust_zscore_ranking, {"metric": "failure", "failure": test.failure}),
    }
    for delay in args.delays.split(","):
        shift = pd.Timedelta(delay)
        print(f"\nroot causes of {len(truth)} episodes, the window starting {delay} after the true start")
        print(f"  {'method':<20} {'AC@1':>5} {'AC@2':>5} {'AC@3':>5} {'AC@5':>5} {'Avg@5':>6}   time")
        for name, (fn, kw) in methods.items():
            t0 = time.perf_counter()
            acc = root_cause_accuracy(rankings(test, fn, shift, **kw), truth)
            took = time.perf_counter() - t0
            print(f"  {name:<20} {acc['AC@1']:5.2f} {acc['AC@2']:5.2f} {acc['AC@3']:5.2f} {acc['AC@5']:5.2f} "
                  f"{acc['Avg@5']:6.3f}   {took:.2f} s")
    by_root = test.episodes["root_cause"].value_counts().sort_index()
    print("\nroot causes drawn: " + ", ".join(f"{k} {v}" for k, v in by_root.items()))
    print(f"total runtime {time.perf_counter() - t_all:.1f} s")


if __name__ == "__main__":
    main()
