"""Backtest markovfault on the Numenta Anomaly Benchmark (realKnownCause + realAWSCloudwatch).

Data: NAB, github.com/numenta/NAB (MIT), read at run time from ``../shared/data/nab`` (relative to the
repository root); never copied here.

Conversion (vectorised over rows; the only loops are over the 24 files and the 49 labelled windows):

* entity = ``series``, the file's path under ``data/`` without ``.csv`` (e.g. ``realKnownCause/nyc_taxi``);
* ``tick``: the series cover different months (2013-2015), so a calendar cutoff would split them into
  "all training" and "all test". Instead each series runs on a common clock of its own progress,
  ``tick = row * 1,000,000 // rows``, and a cutoff at 30% trains on the first 30% of *every* series.
  Row order is the file's (three files repeat timestamps, one goes back an hour);
* ``z``: (value - mean) / std of the previous ``WINDOW`` samples of the series, from the past only; the
  first ``MIN_PERIODS`` rows of each series have no z and are dropped by ``read_histories`` (counted in its
  report); a value after a perfectly flat stretch gets z = +-10 (capped);
* ``anomaly`` = 1 from each labelled anomaly point (combined_labels.json; the nearest row) to the end of its
  window (combined_windows.json): the failure state. ``in_window`` (the whole NAB window) is kept for
  reference.

Models: the plain chain over the z-score states (``markov``), the same chain with the history-aware states
of ``config.toml``'s ``[states.history]`` (``markov+history``; chosen by ``--select``, see ``select``), and
every baseline, on the same origins. No recent event mix: the series have no events.

No subsampling: all 24 series, 137,301 rows; the run takes under a minute on 2 cores.

    python examples/nab/run.py [--data DIR] [--out DIR] [--select]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "nab"
CONFIG = HERE / "config.toml"
CATEGORIES = ("realKnownCause", "realAWSCloudwatch")
WINDOW = 288  # samples of trailing history for the z-score (one day at 5-minute sampling)
MIN_PERIODS = 12
TICKS = 1_000_000
HORIZON = 10  # samples
#: Cutoffs at these fractions of every series; every step after the first is an origin.
CUTOFF_FRACTIONS = (0.3, 0.45, 0.6, 0.75)
#: History-aware state maps compared by ``--select``: orders 1-4 (up to the 3 previous states) x the steps
#: since the last anomaly (none, capped at 3 or at 10).
CANDIDATES = [{"order": o, "failure_window": w} for o in (1, 2, 3, 4) for w in (0, 3, 10)]


def _common():
    """examples/common.py, shared by the examples (loaded by path: examples/ is not a package)."""
    import importlib.util

    name = "markovfault_examples_common"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE.parent / "common.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def load(data_dir, *, categories=CATEGORIES, window: int = WINDOW) -> pd.DataFrame:
    """Read the NAB series and labels and return one row per sample in the input contract.

    Columns: ``series`` (entity), ``tick`` (integer time), ``z`` and ``anomaly`` (metrics), and for
    reference ``timestamp``, ``value``, ``in_window`` (inside a NAB window) and ``label_point`` (the
    labelled row).
    """
    data_dir = Path(data_dir)
    windows = json.loads((data_dir / "labels" / "combined_windows.json").read_text())
    points = json.loads((data_dir / "labels" / "combined_labels.json").read_text())
    frames = []
    for category in categories:
        for path in sorted((data_dir / "data" / category).glob("*.csv")):  # a loop over files
            s = pd.read_csv(path)
            s["timestamp"] = pd.to_datetime(s["timestamp"])
            key = f"{category}/{path.name}"
            n = len(s)
            s.insert(0, "series", key[: -len(".csv")])
            s.insert(1, "tick", np.arange(n, dtype=np.int64) * TICKS // n)
            s["in_window"] = False
            s["label_point"] = False
            s["anomaly"] = 0
            ts = s["timestamp"].to_numpy()
            marks = np.array([np.abs(ts - np.datetime64(pd.Timestamp(p))).argmin()
                              for p in points.get(key, [])], dtype=np.int64)
            s.loc[marks, "label_point"] = True
            for a, b in windows.get(key, []):  # a loop over labelled windows
                inside = ((ts >= np.datetime64(pd.Timestamp(a))) & (ts <= np.datetime64(pd.Timestamp(b))))
                s.loc[inside, "in_window"] = True
                onset = marks[inside[marks]]
                if len(onset):
                    rows = np.flatnonzero(inside)
                    s.loc[rows[rows >= onset.min()], "anomaly"] = 1
            frames.append(s)
    df = pd.concat(frames, ignore_index=True)

    past = df.groupby("series")["value"].shift(1)  # the window ends at the previous sample: no peeking
    roll = past.groupby(df["series"]).rolling(window, min_periods=MIN_PERIODS)
    # groupby-rolling returns the rows grouped by series: back to the frame's order before any numpy
    mean = roll.mean().droplevel(0).reindex(df.index).to_numpy()
    std = roll.std().droplevel(0).reindex(df.index).to_numpy()
    dev = df["value"].to_numpy() - mean
    with np.errstate(divide="ignore", invalid="ignore"):
        flat = np.where(dev == 0, 0.0, np.sign(dev) * np.inf)  # after a perfectly flat stretch
        z = np.where(std > 0, dev / std, flat)
    df["z"] = np.clip(z, -10.0, 10.0)  # NaN (too little history) stays NaN
    return df[["series", "tick", "z", "anomaly", "timestamp", "value", "in_window", "label_point"]]


def cutoffs(fractions=CUTOFF_FRACTIONS) -> list[int]:
    return [int(f * TICKS) for f in fractions]


def predictor(config=CONFIG, *, history: bool = True):
    """The ``FaultPredictor`` of ``config``; ``history=False`` drops its ``[states.history]``."""
    import markovfault as mf
    from markovfault.config import load_config

    model = mf.FaultPredictor.from_config(load_config(config))
    return model if history else model.set_params(history=None)


def onset_scores(result, horizon: int) -> pd.DataFrame:
    """ROC AUC and average precision per model on origins *not already in* the failure state:
    can the model see an anomaly coming, rather than that one is going on?"""
    from sklearn.metrics import average_precision_score, roc_auc_score

    pred = result.predictions
    sel = pred[(pred["horizon"] == horizon) & (pred["state"] != "anomaly")]
    rows = []
    for model, g in sel.groupby("model", observed=True):  # in the order of the models
        y, p = g["y"].to_numpy(), g["p"].to_numpy()
        both = 0 < y.sum() < len(y)
        rows.append({"model": model, "horizon": horizon, "n": len(y), "n_pos": int(y.sum()),
                     "roc_auc": roc_auc_score(y, p) if both else np.nan,
                     "average_precision": average_precision_score(y, p) if both else np.nan})
    return pd.DataFrame(rows)


def select(data_dir, candidates=CANDIDATES):
    """Compare history-aware state maps on the steps before the first cutoff (held-out log-likelihood,
    ``common.select``); returns the table and the chosen ``[states.history]`` settings."""
    import markovfault as mf

    model = predictor()
    hist = mf.read_histories(load(data_dir), columns=model.columns)
    return _common().select(hist, model, candidates, cutoffs()[0])


def run(data_dir, out, *, horizon=HORIZON, n_jobs=2):
    import markovfault as mf

    t0 = time.perf_counter()
    frame = load(data_dir)
    model = predictor()
    hist = mf.read_histories(frame, columns=model.columns)
    print(hist.attrs["read_report"])
    print("label points:", int(frame["label_point"].sum()), "| rows in windows:", int(frame["in_window"].sum()),
          "| anomaly rows:", int(frame["anomaly"].sum()))
    print("history-aware states:", mf.HistorySpec.from_config(model.history))
    t1 = time.perf_counter()
    # the plain chain with every baseline, then the history-aware chain, on the same origins
    result = _common().backtest_both(hist, model, horizon=horizon, cutoffs=cutoffs(), n_jobs=n_jobs)
    t2 = time.perf_counter()
    result.to_dir(out)
    t3 = time.perf_counter()
    print(f"\nload {t1 - t0:.1f}s, backtest {t2 - t1:.1f}s, write {t3 - t2:.1f}s -> {out}")
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="folder holding NAB's data/ and labels/ (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=HERE / "out", help="output folder (default: %(default)s)")
    parser.add_argument("--select", action="store_true",
                        help="compare the history-aware state maps of CANDIDATES and stop")
    args = parser.parse_args(argv)
    needed = [args.data / "labels" / "combined_windows.json", args.data / "labels" / "combined_labels.json",
              *(args.data / "data" / c for c in CATEGORIES)]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        print(f"error: {', '.join(missing)} not found; pass --data DIR, the folder holding NAB's data/ and "
              "labels/ (see ../shared/data/nab/LOAD.md)", file=sys.stderr)
        return 66
    if args.select:
        _common().print_selection(*select(args.data))
        return 0
    # gradient boosting fits its folds in n_jobs processes: OpenMP threads inside each would only fight
    # for the same cores
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    result = run(args.data, args.out)
    _common().print_result(result)
    print("\nonset only (origins not already in an anomaly):")
    for h in (1, HORIZON):
        print(onset_scores(result, h).round(4).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
