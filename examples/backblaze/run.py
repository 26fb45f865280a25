"""Backtest markovfault on Backblaze drive stats (40 daily snapshots, 2013).

Data: Backblaze "Hard Drive Data and Stats" (https://www.backblaze.com/cloud-storage/resources/hard-drive-test-data),
read at run time from ``../shared/data/backblaze`` (relative to the repository root); never copied here.

Conversion (vectorised, one row per drive-day):

* entity = ``serial_number``, time = ``date`` (one step = one daily snapshot);
* ``bad_sectors`` = SMART 5 (reallocated) + SMART 197 (pending) raw counts: the states, cut at decades
  (see ``config.toml``);
* ``failure`` = Backblaze's label (1 on the drive's last operational day): the failure state, by a rule;
* ``event`` = which SMART error counters (5, 187, 197, 198) rose since the drive's previous snapshot,
  joined by "+" (e.g. ``"realloc+pending"``), or ``"none"``. 187 and 198 are empty in this 2013 subset.

Models: the plain chain over the bad-sector states (``markov``), the same chain with the history-aware states
of ``config.toml``'s ``[states.history]`` under the long-run event mix (``markov+history``) and under the mix
of the last ``RECENT_WINDOW`` (``markov+history+recent``), and every baseline, on the same origins. The
history-aware states were chosen by ``--select`` (see ``select``).

Every drive is used (no subsampling): the whole run takes about a minute on 2 cores.

    python examples/backblaze/run.py [--data DIR] [--out DIR] [--select]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "backblaze"
CONFIG = HERE / "config.toml"
FILE = "drive_stats_2013-04-10_2013-05-19_subset.csv.gz"

#: SMART error counters whose rise is an event, and the event name of each.
COUNTERS = {
    "smart_5_raw": "realloc",
    "smart_187_raw": "uncorrectable",
    "smart_197_raw": "pending",
    "smart_198_raw": "offline_unc",
}
HORIZON = 7  # days
#: Weekly cutoffs after 16 days of history; every drive-day after the first cutoff is an origin.
CUTOFFS = ["2013-04-26", "2013-05-03", "2013-05-10"]
#: History-aware state maps compared by ``--select``: orders 1-3 (up to the 2 previous days' states). No
#: failure window: a failure is a drive's last record, so no step ever follows one.
CANDIDATES = [{"order": o} for o in (1, 2, 3)]
#: The trailing window of the recent event mix: a week, the spacing of the cutoffs.
RECENT_WINDOW = "7D"


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


def load(data_dir, *, max_drives: int | None = None, seed: int = 0) -> pd.DataFrame:
    """Read the Backblaze subset and return one row per drive-day in the input contract.

    Columns: ``serial_number`` (entity), ``date`` (time), ``event``, ``bad_sectors``, ``failure``
    (metrics) and ``model`` (the drive model, not used by the predictor).

    ``max_drives``: keep that many drives, drawn uniformly without replacement with ``seed``
    (deterministic); ``None`` keeps all.
    """
    path = Path(data_dir) / FILE
    usecols = ["date", "serial_number", "model", "failure", *COUNTERS]
    df = pd.read_csv(path, usecols=usecols, parse_dates=["date"])
    if max_drives is not None:
        drives = np.sort(df["serial_number"].unique())
        if max_drives < len(drives):
            keep = np.random.default_rng(seed).choice(drives, max_drives, replace=False)
            df = df[df["serial_number"].isin(keep)]
    df = df.sort_values(["serial_number", "date"], kind="stable").reset_index(drop=True)

    counters = df[list(COUNTERS)]
    rose = counters.groupby(df["serial_number"]).diff().gt(0).to_numpy()  # NaN (first day, empty) -> False
    code = rose @ (1 << np.arange(len(COUNTERS)))
    names = np.array([
        "+".join(n for k, n in enumerate(COUNTERS.values()) if c >> k & 1) or "none"
        for c in range(1 << len(COUNTERS))
    ], dtype=object)

    return pd.DataFrame({
        "serial_number": df["serial_number"],
        "date": df["date"],
        "event": names[code],
        "bad_sectors": df["smart_5_raw"].fillna(0) + df["smart_197_raw"].fillna(0),
        "failure": df["failure"].astype(np.int64),
        "model": df["model"],
    })


def predictor(config=CONFIG, *, history: bool = True):
    """The ``FaultPredictor`` of ``config``; ``history=False`` drops its ``[states.history]``."""
    import markovfault as mf
    from markovfault.config import load_config

    model = mf.FaultPredictor.from_config(load_config(config))
    return model if history else model.set_params(history=None)


def select(data_dir, candidates=CANDIDATES):
    """Compare history-aware state maps on the days before the first cutoff (held-out log-likelihood
    of the next state, ``common.select`` without events: the event, which counters rose, nearly names
    the next state); returns the table and the chosen ``[states.history]`` settings."""
    import markovfault as mf

    model = predictor()
    hist = mf.read_histories(load(data_dir), columns=model.columns)
    return _common().select(hist, model, candidates, pd.Timestamp(CUTOFFS[0], tz="UTC"), events=False)


def run(data_dir, out, *, max_drives=None, horizon=HORIZON, cutoffs=CUTOFFS, n_jobs=2,
        recent_window=RECENT_WINDOW):
    import markovfault as mf

    t0 = time.perf_counter()
    frame = load(data_dir, max_drives=max_drives)
    model = predictor()
    hist = mf.read_histories(frame, columns=model.columns)
    print(hist.attrs["read_report"])
    print("failures:", int(hist["failure"].sum()), "| events:",
          hist["event"].value_counts().to_dict())
    print("history-aware states:", mf.HistorySpec.from_config(model.history))
    t1 = time.perf_counter()
    # the plain chain with every baseline, then the history-aware chain (long-run and recent event
    # mix), on the same origins
    result = _common().backtest_both(hist, model, horizon=horizon, cutoffs=cutoffs, n_jobs=n_jobs,
                                     event_mix=("long_run", "recent"), recent_window=recent_window)
    t2 = time.perf_counter()
    result.to_dir(out)
    t3 = time.perf_counter()
    print(f"\nload {t1 - t0:.1f}s, backtest {t2 - t1:.1f}s, write {t3 - t2:.1f}s -> {out}")
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help=f"folder holding {FILE} (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=HERE / "out", help="output folder (default: %(default)s)")
    parser.add_argument("--max-drives", type=int, default=None,
                        help="deterministic uniform subsample of drives (default: all)")
    parser.add_argument("--select", action="store_true",
                        help="compare the history-aware state maps of CANDIDATES and stop")
    args = parser.parse_args(argv)
    if not (args.data / FILE).is_file():
        print(f"error: {args.data / FILE} not found; pass --data DIR, the folder holding the Backblaze "
              "subset (see ../shared/data/backblaze/LOAD.md)", file=sys.stderr)
        return 66
    if args.select:
        _common().print_selection(*select(args.data))
        return 0
    # gradient boosting fits its folds in n_jobs processes: OpenMP threads inside each would only fight
    # for the same cores
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _common().print_result(run(args.data, args.out, max_drives=args.max_drives))
    return 0


if __name__ == "__main__":
    sys.exit(main())
