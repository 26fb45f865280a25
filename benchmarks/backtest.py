"""Speed of the default backtest on the bundled sample, with and without gradient boosting, against one fit.

Run ``python benchmarks/backtest.py`` (``--repeat N``, ``--json``). On ``data/orders_sample.csv.gz`` (40
handlers x 1,500 steps) with ``data/orders.toml`` it times, in one run:

* whole processes, as a user runs them (median of ``--repeat``; the commands take turns, round after round,
  so that a change of load on a shared machine touches them all alike): ``markovfault train``, and
  ``markovfault backtest`` with its defaults (horizon 10, 5 cutoffs, every baseline), once as it is and
  once with ``--baselines climatology,state_frequency,no_events``; the report and figures are written as
  the command always does;
* in one process (best of ``--repeat``, after a warm-up that pays the imports): ``FaultPredictor.fit``
  and ``backtest`` of the same file and defaults, with and without gradient boosting, and where the
  gradient-boosting baseline's time goes: its features, its fits (features included) and its forecasts,
  summed over the folds, with each fold's candidate and sampled training origins and iterations.

The ratios matter, not the seconds: the machine may be shared (the CPU seconds, of the process or of the
timed call, move less with the load than the wall-clock ones). The target is a whole default backtest
under 15 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "orders_sample.csv.gz"
CONFIG = ROOT / "data" / "orders.toml"
NO_GB = "climatology,state_frequency,no_events"
TARGET = 15.0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(cmd, cwd) -> tuple:
    """(wall seconds, CPU seconds) of one process, start to exit; raises if it fails."""
    cpu0, t0 = _children_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stderr}")
    return seconds, cpu


def whole_processes(repeat: int, work: Path) -> dict:
    cli = [sys.executable, "-m", "markovfault.cli"]
    common = [str(SAMPLE), "--config", str(CONFIG)]
    commands = {
        "markovfault train": cli + ["train", *common, "--out", str(work / "model.npz")],
        "backtest without gradient boosting": cli + ["backtest", *common, "--no-progress",
                                                     "--baselines", NO_GB, "--out", str(work / "a")],
        "backtest, every baseline": cli + ["backtest", *common, "--no-progress", "--out", str(work / "b")],
    }
    for cmd in commands.values():
        run(cmd, work)  # warm-up: page cache, byte code
    runs = {name: [] for name in commands}
    for _ in range(repeat):
        for name, cmd in commands.items():
            runs[name].append(run(cmd, work))
    return {name: {"seconds": statistics.median(w for w, _ in r), "runs": [w for w, _ in r],
                   "cpu": statistics.median(c for _, c in r)} for name, r in runs.items()}


def in_process(repeat: int) -> dict:
    from markovfault import FaultPredictor, backtest
    from markovfault.backtest import GradientBoostingBaseline
    from markovfault.backtest._baselines import history_features
    from markovfault.config import load_config

    gb_times = {"features": 0.0, "fit": 0.0, "predict": 0.0}
    folds: list = []

    class TimedBaseline(GradientBoostingBaseline):
        """The default baseline, timed (``clone`` keeps the class; the folds run in this process)."""

        def fit(self, traj, idx, y):
            t0 = time.perf_counter()
            super().fit(traj, idx, y)
            gb_times["fit"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            history_features(traj, getattr(self, "train_idx_", idx), n_lags=self.n_lags, window=self.window)
            gb_times["features"] += time.perf_counter() - t0
            clf = getattr(self, "classifier_", None)
            folds.append({"n_candidates": getattr(self, "n_candidates_", None),
                          "n_train": getattr(self, "n_train_", None),
                          "n_iter": getattr(clf, "n_iter_", None)})
            return self

        def predict_proba(self, traj, idx):
            t0 = time.perf_counter()
            history_features(traj, idx, n_lags=self.n_lags, window=self.window)
            gb_times["features"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            out = super().predict_proba(traj, idx)
            gb_times["predict"] += time.perf_counter() - t0
            return out

    model = FaultPredictor.from_config(load_config(CONFIG))
    every = ["climatology", "state_frequency", "no_events", TimedBaseline()]
    cases = {
        "FaultPredictor.fit": lambda: FaultPredictor.from_config(load_config(CONFIG)).fit(str(SAMPLE)),
        "backtest without gradient boosting": lambda: backtest(str(SAMPLE), model, baselines=NO_GB.split(","),
                                                               progress=False),
        "backtest, every baseline": lambda: backtest(str(SAMPLE), model, baselines=every, progress=False),
    }
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, fn in cases.items():
            fn()  # warm-up: imports (scikit-learn's ensemble for the last one)
            best, cpu = [], []
            for _ in range(repeat):
                for key in gb_times:
                    gb_times[key] = 0.0
                folds.clear()
                c0, t0 = time.process_time(), time.perf_counter()
                fn()
                best.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
                if name == "backtest, every baseline" and best[-1] == min(best):
                    out["gradient boosting"] = {**gb_times, "folds": list(folds)}
            out[name] = {"seconds": min(best), "runs": best, "cpu": min(cpu)}
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each (default 3)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        procs = whole_processes(args.repeat, Path(tmp))
    inproc = in_process(args.repeat)
    import markovfault

    meta = {"sample": str(SAMPLE.relative_to(ROOT)), "repeat": args.repeat, "cpus": os.cpu_count(),
            "python": platform.python_version(), "markovfault": markovfault.__file__,
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
    meta["load_average"] = os.getloadavg()
    for table, fit in ((procs, "markovfault train"), (inproc, "FaultPredictor.fit")):
        for name in ("backtest without gradient boosting", "backtest, every baseline"):
            table[name]["x_fit"] = table[name]["seconds"] / table[fit]["seconds"]
        every, plain = table["backtest, every baseline"], table["backtest without gradient boosting"]
        every["x_without_gb"] = every["seconds"] / plain["seconds"]
    procs["backtest, every baseline"]["met"] = procs["backtest, every baseline"]["seconds"] < TARGET
    if args.json:
        print(json.dumps({"meta": meta, "processes": procs, "in_process": inproc}, indent=2))
        return {"processes": procs, "in_process": inproc}

    print(f"markovfault backtest on {meta['sample']}: {platform.processor() or platform.machine()}, "
          f"{meta['cpus']} cores, python {meta['python']}, OMP_NUM_THREADS={meta['OMP_NUM_THREADS']}")
    print(f"code: {meta['markovfault']}; load average over 1, 5, 15 minutes at the end: "
          + ", ".join(f"{v:.1f}" for v in meta["load_average"]) + "\n")
    header = f"{'':<38} {'seconds':>8} {'min':>7} {'max':>7} {'cpu s':>7} {'x fit':>7} {'x no GB':>8}"
    for title, table, fit in (("whole process (median of %d)" % args.repeat, procs, "markovfault train"),
                              ("in one process (best of %d)" % args.repeat, inproc, "FaultPredictor.fit")):
        print(f"{title}\n{header}")
        for name in (fit, "backtest without gradient boosting", "backtest, every baseline"):
            r = table[name]
            x_fit = f"{r['x_fit']:7.2f}" if "x_fit" in r else ""
            x_gb = f"{r['x_without_gb']:8.2f}" if "x_without_gb" in r else ""
            met = {True: f"  (target < {TARGET:.0f} s: met)",
                   False: f"  (target < {TARGET:.0f} s: MISSED)"}.get(r.get("met"), "")
            print(f"{name:<38} {r['seconds']:8.3f} {min(r['runs']):7.3f} {max(r['runs']):7.3f} "
                  f"{r['cpu']:7.3f} {x_fit:>7} {x_gb:>8}{met}")
        print()
    gb = inproc.get("gradient boosting")
    if gb:
        total = inproc["backtest, every baseline"]["seconds"]
        plain = inproc["backtest without gradient boosting"]["seconds"]
        print(f"gradient boosting, summed over {len(gb['folds'])} folds (the best run): fit {gb['fit']:.3f} s "
              f"(features included), forecasts {gb['predict']:.3f} s, features alone {gb['features']:.3f} s; "
              f"the backtest's added time {total - plain:.3f} s")
        print("  per fold (candidates / sampled / iterations): "
              + ", ".join(f"{f['n_candidates']} / {f['n_train']} / {f['n_iter']}" for f in gb["folds"]))
    return {"processes": procs, "in_process": inproc}


if __name__ == "__main__":
    main()
