"""How long an hourly run of the scheduled job takes on top of a big model.

Run ``python benchmarks/job.py`` (``--quick`` for 1 million steps). It simulates
``--handlers`` handlers x ``--steps`` steps (one step a minute), writes them as
daily Parquet exports, lets the job's first run train the model on all of them,
then exports ``--hours`` more hours one file at a time and runs the job after
each, in-process (``markovfault.job.run_job``), so that interpreter start-up
and imports are not counted. It prints each hourly run's time split into
reading the new file (listing, hashing, parsing, validating) and everything
else (loading the current model version, ``partial_fit``, saving the new
version, forecasting every handler, writing the Parquet and CSV partition,
committing the watermark, pointers and retention), and, for comparison, one
more hourly run as a real ``markovfault forecast`` process.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from markovfault.job import load_job_config, run_job
from markovfault.simulate import simulate_histories

CONFIG = """
[columns]
entity = "handler"
time = "timestamp"
event = "event_type"
status = "status"

[states]
kind = "categorical"
states = ["ok", "slow", "error", "timeout", "down"]
failure = ["error", "timeout", "down"]

[job]
input = "in"
output = "out"
horizons = [1, 5, 10, 30]
threshold = 0.5
"""
START = pd.Timestamp("2026-01-01", tz="UTC")


def export_history(inp: Path, n_handlers: int, n_steps: int) -> tuple[pd.Timestamp, int]:
    hist = simulate_histories(n_handlers=n_handlers, n_steps=n_steps, start=START, jitter=0.0,
                              with_metrics=False, with_event_ids=False, random_state=0)
    hist = hist.drop(columns="handler_class")
    day = hist["timestamp"].dt.floor("D")
    n_files = 0
    for d, part in hist.groupby(day, sort=True):
        part.to_parquet(inp / f"orders-{d:%Y%m%d}.parquet", index=False)
        n_files += 1
    return hist["timestamp"].max().ceil("h"), n_files


def export_hour(inp: Path, start: pd.Timestamp, n_handlers: int, seed: int) -> Path:
    hour = simulate_histories(n_handlers=n_handlers, n_steps=60, start=start, jitter=0.0,
                              with_metrics=False, with_event_ids=False, random_state=seed)
    path = inp / f"orders-{start:%Y%m%d%H}.csv"
    hour.drop(columns="handler_class").to_csv(path, index=False)
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--handlers", type=int, default=100)
    parser.add_argument("--steps", type=int, default=10_000_000, help="training steps in total")
    parser.add_argument("--hours", type=int, default=3, help="hourly runs to time")
    parser.add_argument("--quick", action="store_true", help="1,000,000 training steps")
    parser.add_argument("--dir", default=None, help="work directory (default: a temporary one)")
    args = parser.parse_args(argv)
    steps = 1_000_000 if args.quick else args.steps
    per_handler = steps // args.handlers

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        (root / "in").mkdir()
        (root / "job.toml").write_text(CONFIG)
        job = load_job_config(root / "job.toml")
        print(f"markovfault job benchmark; {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores, python {platform.python_version()}, "
              f"numpy {np.__version__}, pandas {pd.__version__}")

        t0 = time.perf_counter()
        end, n_files = export_history(root / "in", args.handlers, per_handler)
        print(f"simulated and exported {args.handlers * per_handler:,} steps of {args.handlers} "
              f"handlers in {n_files} daily Parquet files ({time.perf_counter() - t0:.1f} s)")
        t0 = time.perf_counter()
        first = run_job(job, as_of=end)
        print(f"first run (trains the model on {first.rows_counted:,} rows): "
              f"{time.perf_counter() - t0:.1f} s")
        print()
        print(f"{'hourly run':>10} {'new rows':>9} {'total s':>8} {'reading s':>10} "
              f"{'beyond reading s':>17}   breakdown of the rest (s)")
        beyond = []
        for k in range(args.hours):
            export_hour(root / "in", end, args.handlers, seed=100 + k)
            end = end + pd.Timedelta("1h")
            t0 = time.perf_counter()
            result = run_job(job, as_of=end)
            total = time.perf_counter() - t0
            assert result.status == "ok" and result.n_entities == args.handlers, result
            rest = total - result.timings["read"]
            beyond.append(rest)
            parts = ", ".join(f"{name} {sec:.3f}" for name, sec in result.timings.items()
                              if name != "read")
            print(f"{k + 1:>10} {result.rows_counted:>9,} {total:>8.3f} "
                  f"{result.timings['read']:>10.3f} {rest:>17.3f}   {parts}")
        print(f"\nwork beyond reading the new file: best {min(beyond):.3f} s, worst "
              f"{max(beyond):.3f} s per hourly run, on a model trained on "
              f"{first.rows_counted:,} steps")

        export_hour(root / "in", end, args.handlers, seed=999)
        end = end + pd.Timedelta("1h")
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "markovfault.cli", "forecast", "--config",
             str(root / "job.toml"), "--as-of", end.isoformat()],
            capture_output=True, text=True)
        wall = time.perf_counter() - t0
        print(f"the same as a `markovfault forecast` process (start-up and imports included): "
              f"{wall:.2f} s, exit {proc.returncode}")


if __name__ == "__main__":
    main()
