"""Whole-process timings of the command line, as a user waits for them.

Run ``python benchmarks/startup.py`` (``--rows 1000000`` for a smaller file).
Every figure is the median of ``--repeat`` runs of a fresh process, interpreter
start-up and imports included, after one untimed warm-up run of each command;
the commands take turns, and the ratios matter, not the seconds, since shared
machines are noisy. Compare train with the reader on a quiet machine: pyarrow
reads on a thread pool, so other load slows the reader more than training and
the ratio then flatters training (3.1x quiet, 1.4x-2x loaded, on 2 cores).

What it measures
----------------
* ``markovfault --help`` and ``markovfault train --help`` (target: under 0.3 s
  each), against a bare ``python -c pass``;
* the imports ``markovfault train`` needs before it reads a row, alone (their
  share of the training process);
* ``markovfault train FILE --config CFG --out model.npz`` on a Parquet file of
  ``--rows`` rows (default 10 million), against a process that reads the same
  file with pyarrow and converts it to pandas
  (``python -c "import pyarrow.parquet as pq; pq.read_table(F).to_pandas()"``),
  the least a Python process that trains on the file has to do (target: train
  within 2x of it).

The input is generated here with numpy and pyarrow into ``--dir`` (default: a
temporary directory): ``--entities`` handlers (default 2,000) written in time
order with an integer time column, four events and the statuses ok, slow,
error and down (error and down are failures).

The commands run as ``python -m markovfault.cli`` with this interpreter (or, with
``--console-script``, as the ``markovfault`` found on PATH) and the caller's
environment, so ``PYTHONPATH=/path/to/checkout`` times that checkout.
Their byte code is cached under the work directory (``PYTHONPYCACHEPREFIX``),
as an installed package has it; ``--no-pycache`` runs them with
``PYTHONDONTWRITEBYTECODE=1`` instead, compiling markovfault's sources at every
start when no ``__pycache__`` is there. ``--json`` prints the results as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG = """
[columns]
entity = "entity"
time = "time"
event = "event"
status = "status"

[states]
kind = "categorical"
failure = ["error", "down"]
"""

READER = "import sys, pyarrow.parquet as pq; pq.read_table(sys.argv[1]).to_pandas()"
# what `markovfault train` imports before it reads a row
TRAIN_IMPORTS = ("import markovfault.cli, markovfault.config, markovfault.predictor, "
                 "markovfault.persistence, markovfault.histories._fast, pyarrow.parquet, pyarrow.dataset")


def make_parquet(path: Path, n_rows: int, n_entities: int = 2_000, seed: int = 0) -> Path:
    """``n_rows`` rows of ``n_entities`` handlers in time order, as one Parquet file."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    steps = -(-n_rows // n_entities)
    names = pa.array([f"handler-{k:05d}" for k in range(n_entities)])
    events = pa.array(["order", "payment", "refund", "tick"])
    statuses = pa.array(["ok", "slow", "error", "down"])
    entity = np.tile(np.arange(n_entities, dtype=np.int32), steps)[:n_rows]
    status = rng.choice(4, n_rows, p=[0.85, 0.09, 0.05, 0.01]).astype(np.int8)

    def labels(codes, dictionary):
        return pa.DictionaryArray.from_arrays(pa.array(codes), dictionary).cast(pa.string())

    table = pa.table({
        "entity": labels(entity, names),
        "time": pa.array(np.repeat(np.arange(steps, dtype=np.int64), n_entities)[:n_rows]),
        "event": labels(rng.integers(0, 4, n_rows, dtype=np.int8), events),
        "status": labels(status, statuses),
    })
    pq.write_table(table, path, row_group_size=1_000_000)
    return path


def child_env(workdir: Path, pycache: bool) -> dict:
    """The caller's environment (PYTHONPATH included), with a byte-code cache under ``workdir``."""
    env = dict(os.environ)
    if pycache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run(cmd, env, cwd) -> float:
    """Seconds of one process, start to exit; raises if it fails."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stderr}")
    return seconds


def time_all(commands: dict, repeat: int, env, cwd) -> dict:
    """{name: {"seconds": median, "runs": [...]}}; the commands take turns, round after
    round, so that a change of load on a shared machine touches them all alike."""
    for cmd in commands.values():
        run(cmd, env, cwd)  # warm-up: page cache, byte code
    runs = {name: [] for name in commands}
    for _ in range(repeat):
        for name, cmd in commands.items():
            runs[name].append(run(cmd, env, cwd))
    return {name: {"seconds": statistics.median(times), "runs": times} for name, times in runs.items()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows of the training file")
    parser.add_argument("--entities", type=int, default=2_000, help="handlers (default 2,000)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each (default 5)")
    parser.add_argument("--dir", default=None,
                        help="where to write the input (default: a temporary directory); an "
                             "input of the same size already there is reused")
    parser.add_argument("--no-pycache", action="store_true",
                        help="run the commands with PYTHONDONTWRITEBYTECODE=1")
    parser.add_argument("--console-script", action="store_true",
                        help="run the `markovfault` found on PATH instead of python -m markovfault.cli")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        data = Path(args.dir) if args.dir else work
        path = data / f"export-{args.rows}-{args.entities}.parquet"
        t0 = time.perf_counter()
        if not path.exists():
            make_parquet(path, args.rows, args.entities)
        t_make = time.perf_counter() - t0
        config = work / "config.toml"
        config.write_text(CONFIG)
        env = child_env(work, pycache=not args.no_pycache)
        py = sys.executable
        if args.console_script:
            script = shutil.which("markovfault")
            if script is None:
                raise SystemExit("--console-script: no `markovfault` on PATH")
            cli = [script]
        else:
            cli = [py, "-m", "markovfault.cli"]
        commands = {
            "python -c pass": [py, "-c", "pass"],
            "markovfault --help": cli + ["--help"],
            "markovfault train --help": cli + ["train", "--help"],
            "imports of training": [py, "-c", TRAIN_IMPORTS],
            "pyarrow read + to_pandas": [py, "-c", READER, str(path)],
            "markovfault train": cli + ["train", str(path), "--config", str(config),
                                        "--out", str(work / "model.npz")],
        }
        results = time_all(commands, args.repeat, env, work)
        which = subprocess.run([py, "-c", "import markovfault; print(markovfault.__file__)"],
                               env=env, cwd=work, capture_output=True, text=True).stdout.strip()

    base, reader = results["python -c pass"]["seconds"], results["pyarrow read + to_pandas"]["seconds"]
    versus = {
        "markovfault --help": "python -c pass",
        "markovfault train --help": "python -c pass",
        "imports of training": "markovfault train",
        "pyarrow read + to_pandas": "python -c pass",
        "markovfault train": "pyarrow read + to_pandas",
    }
    for name, ref in versus.items():
        results[name]["versus"] = ref
        results[name]["ratio"] = results[name]["seconds"] / results[ref]["seconds"]
    for name in ("markovfault --help", "markovfault train --help"):
        results[name]["target"] = "< 0.3 s"
        results[name]["met"] = results[name]["seconds"] < 0.3
    results["markovfault train"]["target"] = "< 2x the reader"
    results["markovfault train"]["met"] = results["markovfault train"]["ratio"] < 2
    meta = {"rows": args.rows, "entities": args.entities, "repeat": args.repeat,
            "pycache": not args.no_pycache, "markovfault": which, "python": platform.python_version(),
            "cpus": os.cpu_count(), "generate_seconds": t_make}
    if args.json:
        print(json.dumps({"meta": meta, "results": results}, indent=2))
        return results

    print(f"markovfault start-up, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}; median of {args.repeat} processes "
          f"({'byte code cached' if meta['pycache'] else 'PYTHONDONTWRITEBYTECODE=1'})")
    print(f"code: {which}; input: {args.rows:,} rows of {args.entities:,} handlers "
          f"(generated in {t_make:.1f} s)\n")
    print(f"{'process':<28} {'seconds':>8} {'min':>7} {'max':>7}   {'ratio':>6} versus{'':22} target")
    for name, r in results.items():
        ratio = f"{r['ratio']:6.2f}" if "ratio" in r else ""
        met = {True: "(met)", False: "(MISSED)"}.get(r.get("met"), "")
        print(f"{name:<28} {r['seconds']:8.3f} {min(r['runs']):7.3f} {max(r['runs']):7.3f}   "
              f"{ratio:>6} {r.get('versus', ''):<28} {r.get('target', '')} {met}")
    t_train = results["markovfault train"]["seconds"]
    t_imports = results["imports of training"]["seconds"]
    print(f"\ntrain minus the reader: {t_train - reader:.3f} s; train minus its imports: "
          f"{t_train - t_imports:.3f} s; interpreter start-up: {base:.3f} s")
    return results


if __name__ == "__main__":
    main()
