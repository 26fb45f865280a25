"""Speed benchmarks of markovfault, measured as ratios within one run.

Run ``python benchmarks/run.py`` (or ``--quick`` for a smaller size). Every
figure is the best of ``--repeat`` runs; the ratios matter, not the seconds,
since shared machines are noisy.

What it measures
----------------
* fit from in-memory codes (10M steps, 8 states, 5 events) against a plain
  ``np.bincount(prev * S + next)`` over the same codes, for one long history
  and for 100k histories of 100 steps;
* the array-level forecast for 1M entities x 50 horizons
  (``EventMarkovChain.predict_proba``);
* ``FaultPredictor.predict`` end to end from a frame of 1M entities' last
  steps (reading, validating, state extraction, the lookup, the tidy frame).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import pandas as pd

from markovfault import EventMarkovChain, FaultPredictor, Trajectories


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def make_codes(n_steps, n_states, n_events, seed=0):
    rng = np.random.default_rng(seed)
    state = rng.integers(0, n_states, n_steps, dtype=np.int64)
    event = rng.integers(0, n_events, n_steps, dtype=np.int64)
    return state, event


def bench_fit(n_steps, n_histories, n_states, n_events, repeat):
    state, event = make_codes(n_steps, n_states, n_events)
    lengths = np.full(n_histories, n_steps // n_histories)
    traj = Trajectories.from_codes(
        state, event, lengths,
        state_names=[f"s{k}" for k in range(n_states)],
        event_names=[f"e{k}" for k in range(n_events)],
        failure=[f"s{n_states - 1}"],
    )

    def baseline():
        np.bincount(state[:-1] * n_states + state[1:], minlength=n_states * n_states)

    def fit():
        EventMarkovChain().fit(traj)

    t_base = best_of(baseline, repeat)
    t_fit = best_of(fit, repeat)
    return t_base, t_fit


def bench_predict_arrays(n_entities, horizon, n_states, repeat):
    state, event = make_codes(200_000, n_states, 5)
    traj = Trajectories.from_codes(
        state, event, state_names=[f"s{k}" for k in range(n_states)],
        event_names=[f"e{k}" for k in range(5)], failure=[f"s{n_states - 1}"],
    )
    chain = EventMarkovChain().fit(traj)
    current = np.random.default_rng(1).integers(0, n_states, n_entities)
    return best_of(lambda: chain.predict_proba(current, horizon), repeat)


def bench_predict_frame(n_entities, horizon, repeat):
    rng = np.random.default_rng(2)
    labels = np.array(["ok", "slow", "error", "timeout", "down"], dtype=object)
    train = pd.DataFrame({
        "entity": np.repeat([f"h{k}" for k in range(1000)], 100),
        "time": np.tile(np.arange(100), 1000),
        "event": rng.choice(["a", "b", "c"], 100_000),
        "status": labels[rng.integers(0, 5, 100_000)],
    })
    model = FaultPredictor(states={"kind": "categorical", "failure": ["error", "timeout", "down"]})
    model.fit(train)
    recent = pd.DataFrame({
        "entity": [f"h{k}" for k in range(n_entities)],
        "time": rng.integers(0, 1000, n_entities),
        "event": "a",
        "status": labels[rng.integers(0, 5, n_entities)],
    })
    return best_of(lambda: model.predict(recent, horizon=horizon), repeat)


def bench_backtest(n_steps, n_folds, repeat):
    from markovfault import backtest
    from markovfault.simulate import simulate_histories

    n_handlers = 1000
    hist = simulate_histories(n_handlers, n_steps // n_handlers, random_state=0,
                              with_metrics=False, with_event_ids=False)
    model = FaultPredictor(
        states={"kind": "categorical", "failure": ["error", "timeout", "down"]},
        columns={"entity": "handler", "time": "timestamp", "event": "event_type"},
    )
    t_fit = best_of(lambda: model.fit(hist), repeat)
    t_bt = best_of(lambda: backtest(hist, model, horizon=10, cutoffs=n_folds, baselines=[],
                                    progress=False), repeat)
    t_bt_every = best_of(lambda: backtest(hist, model, horizon=10, cutoffs=n_folds, baselines=[],
                                          origins="every_step", progress=False), 1)
    return t_fit, t_bt, t_bt_every


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1M steps instead of 10M")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    n = 1_000_000 if args.quick else 10_000_000
    S, E = 8, 5
    print(f"markovfault benchmarks on {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, numpy {np.__version__}, best of {args.repeat}\n")

    rows = []
    for label, n_hist in [(f"one history of {n:,} steps", 1),
                          (f"{n // 100:,} histories x 100 steps", n // 100)]:
        t_base, t_fit = bench_fit(n, n_hist, S, E, args.repeat)
        rows.append((f"fit {label} (E={E}, S={S})", t_fit, t_base, n / t_fit))
    print(f"{'benchmark':<52} {'seconds':>9} {'np.bincount':>12} {'ratio':>7} {'steps/s':>12}")
    for label, t, base, rate in rows:
        print(f"{label:<52} {t:9.3f} {base:12.3f} {t / base:7.2f} {rate:12.3g}")

    n_ent = 100_000 if args.quick else 1_000_000
    t = bench_predict_arrays(n_ent, 50, S, args.repeat)
    print(f"\n{'predict_proba: ' + f'{n_ent:,} entities x 50 horizons':<52} {t:9.3f}")
    t = bench_predict_frame(n_ent, 50, args.repeat)
    print(f"{'FaultPredictor.predict: ' + f'{n_ent:,} entities x 50 horizons':<52} {t:9.3f}"
          f"   ({n_ent * 50:,} rows, end to end from a DataFrame)")
    return args




def _backtest_section(args):
    n = 100_000 if args.quick else 1_000_000
    t_fit, t_bt, t_every = bench_backtest(n, 20, args.repeat)
    print(f"\n{'one FaultPredictor.fit on ' + f'{n:,} steps (from a DataFrame)':<52} {t_fit:9.3f}")
    print(f"{'backtest, 20 folds, origins at the cutoffs':<52} {t_bt:9.3f} {'':12} {t_bt / t_fit:7.2f}x fit")
    print(f"{'backtest, 20 folds, every step an origin':<52} {t_every:9.3f} {'':12} {t_every / t_fit:7.2f}x fit")


if __name__ == "__main__":
    _args = main()
    _backtest_section(_args)
