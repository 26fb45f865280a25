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
  steps (reading, validating, state extraction, the lookup, the tidy frame);
* the peers deeptime (``TransitionCountEstimator``) and pydtmc
  (``MarkovChain.fit_sequence("mle", ...)``) on the same codes, where installed
  (``pip install markovfault[bench]``); missing ones are skipped and named;
* ``FaultPredictor.fit`` end to end from a Parquet file and from a CSV file
  of 10M rows (in memory, and streamed with ``chunksize``) against the time
  ``pyarrow.parquet.read_table`` / ``pyarrow.csv.read_csv`` alone take
  (best of ``--repeat`` like the reads; the streamed CSV fit, which reads
  pandas chunks, once);
* a 20-fold backtest against one fit;
* the peak memory of each step, measured in a fresh subprocess (the peak RSS,
  VmHWM reset just before the step, less the RSS before it), against
  the encoded arrays (entity, time, event, state: 32 bytes per step).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
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


def bench_predict_frame(n_entities, horizon, repeat, layout="tidy"):
    """Seconds of ``FaultPredictor.predict`` from a DataFrame of each entity's last step
    (``layout='tidy'``: n_entities x horizon rows; ``'wide'``: one row per entity)."""
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
    return best_of(lambda: model.predict(recent, horizon=horizon, layout=layout), repeat)


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


# ------------------------------------------------------------------ peers
def bench_peers(n_steps, n_histories, n_states, n_events, repeat):
    """Seconds of each installed peer on the same codes ({name: seconds or reason})."""
    state, _ = make_codes(n_steps, n_states, n_events)
    runs = np.split(state, n_histories) if n_histories > 1 else [state]
    out = {}
    try:
        from deeptime.markov import TransitionCountEstimator

        est = TransitionCountEstimator(lagtime=1, count_mode="sliding")
        out["deeptime"] = best_of(lambda: est.fit(runs if n_histories > 1 else state), repeat)
    except ImportError:
        out["deeptime"] = "not installed"
    try:
        from pydtmc import MarkovChain

        names = [str(k) for k in range(n_states)]
        if n_histories > 1:
            # pydtmc fits one sequence: one fit per history, timed on a sample of 1000
            k = min(1000, n_histories)
            walks = [r.tolist() for r in runs[:k]]
            t = best_of(lambda: [MarkovChain.fit_sequence("mle", names, w) for w in walks], 1)
            out["pydtmc"] = t * n_histories / k
        else:
            walk = state[: min(n_steps, 1_000_000)].tolist()
            t = best_of(lambda: MarkovChain.fit_sequence("mle", names, walk), 1)
            out["pydtmc"] = t * n_steps / len(walk)
    except ImportError:
        out["pydtmc"] = "not installed"
    return out


# ------------------------------------------------------------------ files
STATES = {"kind": "categorical", "failure": ["error", "timeout", "down"]}


def make_export(n_rows, directory, n_entities=10_000, seed=3):
    """An export of ``n_rows`` rows written in time order, as Parquet and CSV."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    steps = n_rows // n_entities
    labels = np.array(["ok", "slow", "error", "timeout", "down"])
    events = np.array(["deploy", "order", "payment", "refund", "tick"])
    ent = pa.DictionaryArray.from_arrays(
        pa.array(np.tile(np.arange(n_entities, dtype=np.int32), steps)),
        pa.array([f"handler-{k:06d}" for k in range(n_entities)])).cast(pa.string())
    table = pa.table({
        "entity": ent,
        "time": pa.array(np.repeat(np.arange(steps, dtype=np.int64), n_entities)),
        "event": pa.array(events[rng.integers(0, 5, n_rows)]),
        "status": pa.array(labels[rng.integers(0, 5, n_rows)]),
    })
    paths = {"parquet": os.path.join(directory, "export.parquet"),
             "csv": os.path.join(directory, "export.csv")}
    pq.write_table(table, paths["parquet"], row_group_size=1_000_000)
    pacsv.write_csv(table, paths["csv"])
    return paths


def bench_files(paths, repeat, chunksize):
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    out = {}
    out["read parquet (pyarrow)"] = best_of(lambda: pq.read_table(paths["parquet"]), repeat)
    out["read csv (pyarrow)"] = best_of(lambda: pacsv.read_csv(paths["csv"]), repeat)
    out["fit parquet"] = best_of(lambda: FaultPredictor(states=STATES).fit(paths["parquet"]),
                                 repeat)
    out["fit parquet streamed"] = best_of(
        lambda: FaultPredictor(states=STATES).fit(paths["parquet"], chunksize=chunksize), repeat)
    out["fit csv"] = best_of(lambda: FaultPredictor(states=STATES).fit(paths["csv"]), repeat)
    out["fit csv streamed"] = best_of(
        lambda: FaultPredictor(states=STATES).fit(paths["csv"], chunksize=chunksize), 1)
    return out


# ------------------------------------------------------------------ memory
def _status(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def _rss_now():
    """Current RSS; the peak (VmHWM) is reset to it where Linux allows (clear_refs 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass
    return _status("VmRSS")


def _measure(step, n, path=None, chunksize=None):
    """Run one step in this (fresh) process; print its peak RSS growth in bytes."""
    S, E = 8, 5
    if step.startswith("fit codes"):
        state, event = make_codes(n, S, E)
        lengths = np.full(1 if step.endswith("one") else n // 100,
                          n if step.endswith("one") else 100)
        traj = Trajectories.from_codes(state, event, lengths,
                                       state_names=[f"s{k}" for k in range(S)],
                                       event_names=[f"e{k}" for k in range(E)],
                                       failure=[f"s{S - 1}"])
        run = lambda: EventMarkovChain().fit(traj)  # noqa: E731
    elif step == "bincount":
        state, _ = make_codes(n, S, E)
        run = lambda: np.bincount(state[:-1] * S + state[1:], minlength=S * S)  # noqa: E731
    elif step == "predict_proba":
        state, event = make_codes(200_000, S, E)
        chain = EventMarkovChain().fit(Trajectories.from_codes(
            state, event, state_names=[f"s{k}" for k in range(S)],
            event_names=[f"e{k}" for k in range(E)], failure=[f"s{S - 1}"]))
        current = np.random.default_rng(1).integers(0, S, n)
        run = lambda: chain.predict_proba(current, 50)  # noqa: E731
    elif step == "read parquet (pyarrow)":
        import pyarrow.parquet as pq
        run = lambda: pq.read_table(path)  # noqa: E731
    elif step == "read csv (pyarrow)":
        import pyarrow.csv as pacsv
        run = lambda: pacsv.read_csv(path)  # noqa: E731
    elif step.startswith("fit "):
        run = lambda: FaultPredictor(states=STATES).fit(path, chunksize=chunksize)  # noqa: E731
    else:
        raise SystemExit(f"unknown step {step!r}")
    before = _rss_now()
    run()
    try:
        peak = _status("VmHWM")
    except (OSError, KeyError):  # not Linux: ru_maxrss (which also counts the setup)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"step": step, "peak_growth": max(peak - before, 0)}))


def peak_memory(step, n, path=None, chunksize=None):
    cmd = [sys.executable, os.path.abspath(__file__), "--measure", step, "--n", str(n)]
    if path:
        cmd += ["--path", path]
    if chunksize:
        cmd += ["--chunksize", str(chunksize)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])["peak_growth"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1M steps instead of 10M")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory table")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # one memory measurement
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--chunksize", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        _measure(args.measure, args.n, args.path, args.chunksize)
        return args
    n = 1_000_000 if args.quick else 10_000_000
    S, E = 8, 5
    print(f"markovfault benchmarks on {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, numpy {np.__version__}, best of {args.repeat}\n")

    rows = []
    shapes = [(f"one history of {n:,} steps", 1), (f"{n // 100:,} histories x 100 steps", n // 100)]
    peers = {}
    for label, n_hist in shapes:
        t_base, t_fit = bench_fit(n, n_hist, S, E, args.repeat)
        rows.append((f"fit {label} (E={E}, S={S})", t_fit, t_base, n / t_fit))
        peers[label] = (t_base, bench_peers(n, n_hist, S, E, args.repeat))
    print(f"{'benchmark':<52} {'seconds':>9} {'np.bincount':>12} {'ratio':>7} {'steps/s':>12}")
    for label, t, base, rate in rows:
        print(f"{label:<52} {t:9.3f} {base:12.3f} {t / base:7.2f} {rate:12.3g}")
    for label, (base, found) in peers.items():
        for name, t in found.items():
            if isinstance(t, str):
                print(f"{'  ' + name + ', ' + label:<52} {'skipped: ' + t}")
            else:
                print(f"{'  ' + name + ', ' + label:<52} {t:9.3f} {base:12.3f} {t / base:7.2f}")

    n_ent = 100_000 if args.quick else 1_000_000
    t = bench_predict_arrays(n_ent, 50, S, args.repeat)
    print(f"\n{'predict_proba: ' + f'{n_ent:,} entities x 50 horizons':<52} {t:9.3f}")
    t = bench_predict_frame(n_ent, 50, args.repeat)
    print(f"{'FaultPredictor.predict: ' + f'{n_ent:,} entities x 50 horizons':<52} {t:9.3f}"
          f"   ({n_ent * 50:,} rows, end to end from a DataFrame)")
    t = bench_predict_frame(n_ent, 50, args.repeat, layout="wide")
    label = "  the same, layout='wide'"
    print(f"{label:<52} {t:9.3f}   ({n_ent:,} rows x 50 p_fail columns)")

    _backtest_section(args)

    chunksize = n // 10
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_export(n, tmp)
        files = bench_files(paths, args.repeat, chunksize)
        print(f"\n{'end to end from files, ' + f'{n:,} rows':<52} {'seconds':>9} "
              f"{'pyarrow read':>12} {'ratio':>7}")
        for kind in ("parquet", "csv"):
            base = files[f"read {kind} (pyarrow)"]
            for key in (f"fit {kind}", f"fit {kind} streamed"):
                if key in files:
                    label = f"FaultPredictor.{key}" + (f" (chunksize={chunksize:,})"
                                                       if "streamed" in key else "")
                    print(f"{label:<52} {files[key]:9.3f} {base:12.3f} {files[key] / base:7.2f}")

        if not args.no_memory:
            print(f"\n{'peak memory (fresh process per step)':<52} {'MB':>9} "
                  f"{'encoded MB':>12} {'ratio':>7}")
            steps = [("bincount", n, None, None), ("fit codes, one", n, None, None),
                     ("fit codes, 100-step histories", n, None, None),
                     ("predict_proba", n_ent, None, None),
                     ("read parquet (pyarrow)", n, paths["parquet"], None),
                     ("fit parquet", n, paths["parquet"], None),
                     ("fit parquet streamed", n, paths["parquet"], chunksize),
                     ("read csv (pyarrow)", n, paths["csv"], None),
                     ("fit csv", n, paths["csv"], None),
                     ("fit csv streamed", n, paths["csv"], chunksize)]
            for step, size, path, chunk in steps:
                peak = peak_memory(step, size, path, chunk)
                ref = 32 * size if step != "predict_proba" else 8 * 50 * size
                note = "" if step != "predict_proba" else "  (vs the float64 output)"
                print(f"{step:<52} {peak / 1e6:9.0f} {ref / 1e6:12.0f} {peak / ref:7.2f}{note}")
    return args


def _backtest_section(args):
    n = 100_000 if args.quick else 1_000_000
    t_fit, t_bt, t_every = bench_backtest(n, 20, args.repeat)
    print(f"\n{'one FaultPredictor.fit on ' + f'{n:,} steps (from a DataFrame)':<52} {t_fit:9.3f}")
    print(f"{'backtest, 20 folds, origins at the cutoffs':<52} {t_bt:9.3f} {'':12} {t_bt / t_fit:7.2f}x fit")
    print(f"{'backtest, 20 folds, every step an origin':<52} {t_every:9.3f} {'':12} {t_every / t_fit:7.2f}x fit")


if __name__ == "__main__":
    main()
