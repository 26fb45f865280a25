"""Backtest markovfault on HDFS_v1 block sessions (log-key sequences).

Data: the HDFS_v1 logs of Xu et al. (SOSP 2009) as parsed into log keys by the DeepLog authors
(github.com/wuyifan18/DeepLog, MIT), template text from loghub (github.com/logpai/loghub), read at run time
from ``../shared/data/hdfs`` (relative to the repository root); never copied here.

Conversion (vectorised, one row per log line of a block):

* entity = ``block`` (``train-<i>`` for the 4,855 normal sessions of ``hdfs_train``, ``abn-<i>`` for the
  16,838 anomalous sessions of ``hdfs_test_abnormal``);
* ``event`` and ``key`` = the log key ``E<n>`` of the line: the key is the state, and the seven exception
  templates (``ERROR_KEYS``) are the failure states (see ``config.toml``);
* ``clock``: the logs carry no timestamps, so the sessions are laid end to end on one integer clock in a
  seeded random order (``SEED``), one tick per line. A rolling origin on that clock trains on the sessions
  before the cutoff and forecasts every step of the sessions after it: a held-out-sessions backtest in which
  normal and anomalous sessions are mixed in every fold (the files themselves are sorted by label);
* ``session_anomalous``: the expert label of the session (kept for reference, not used by the model).

Models: the plain chain over the log keys (``markov``), the same chain with the history-aware states of
``config.toml``'s ``[states.history]`` under the long-run event mix (``markov+history``) and under the mix of
the last ``RECENT_WINDOW`` lines (``markov+history+recent``), and every baseline, on the same origins. The
history-aware states were chosen by ``--select`` (see ``select``).

All 21,693 sessions are used; the run takes about 70 seconds on 2 cores.

    python examples/hdfs/run.py [--data DIR] [--out DIR] [--select]
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
DEFAULT_DATA = REPO.parent / "shared" / "data" / "hdfs"
CONFIG = HERE / "config.toml"
FILES = {"hdfs_train": ("train", False), "hdfs_test_abnormal": ("abn", True)}
#: Exception templates (their steps are failures), as in ../shared/data/hdfs/LOAD.md.
ERROR_KEYS = ("E7", "E8", "E10", "E12", "E14", "E17", "E20")
SEED = 0
HORIZON = 10  # log lines
#: Cutoffs at these fractions of the clock; every step after the first is an origin.
CUTOFF_FRACTIONS = (0.6, 0.7, 0.8, 0.9)
#: History-aware state maps compared by ``--select``: orders 1-4 (up to the 3 previous keys) x the lines
#: since the last exception (none, capped at 3); the chain stores only the states the sessions visit.
CANDIDATES = [{"order": o, "failure_window": w} for o in (1, 2, 3, 4) for w in (0, 3)]
#: The trailing window of the recent event mix, in lines of the synthetic clock (about 1,100 sessions).
RECENT_WINDOW = 20_000


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


def _read_sessions(path: Path, tag: str) -> pd.DataFrame:
    """One row per (session, key) of a DeepLog file: a session per line, space-separated integer keys."""
    lines = pd.Series(path.read_text().splitlines(), dtype="str")
    lines = lines[lines.str.strip() != ""].reset_index(drop=True)
    keys = lines.str.split().explode()
    session = keys.index.to_numpy()
    return pd.DataFrame({
        "block": tag + "-" + pd.Series(session).astype("str"),
        "step": pd.Series(session).groupby(session).cumcount().to_numpy(),
        "key": "E" + keys.to_numpy(dtype="str"),
    })


def load(data_dir, *, max_sessions: int | None = None, seed: int = SEED) -> pd.DataFrame:
    """Read both DeepLog files and return one row per log line in the input contract.

    Columns: ``block`` (entity), ``clock`` (integer time), ``event`` and ``key`` (the log key),
    ``step`` (position within the session) and ``session_anomalous``.

    Sessions are put in a random order drawn with ``seed`` and laid end to end on ``clock``.
    ``max_sessions``: keep only the first that many sessions of that order (a deterministic uniform
    subsample); ``None`` keeps all.
    """
    data_dir = Path(data_dir)
    parts = []
    for name, (tag, anomalous) in FILES.items():
        part = _read_sessions(data_dir / name, tag)
        part["session_anomalous"] = anomalous
        parts.append(part)
    df = pd.concat(parts, ignore_index=True)

    blocks = pd.unique(df["block"])
    rank = pd.Series(np.random.default_rng(seed).permutation(len(blocks)), index=blocks)
    df["order"] = rank.reindex(df["block"]).to_numpy()
    if max_sessions is not None:
        df = df[df["order"] < max_sessions]
    df = df.sort_values(["order", "step"], kind="stable").reset_index(drop=True)
    df["clock"] = np.arange(len(df), dtype=np.int64)
    df["event"] = df["key"]
    return df[["block", "clock", "event", "key", "step", "session_anomalous"]]


def cutoffs(frame: pd.DataFrame, fractions=CUTOFF_FRACTIONS) -> list[int]:
    """Cutoffs at fractions of the clock."""
    return [int(f * len(frame)) for f in fractions]


def predictor(config=CONFIG, *, history: bool = True):
    """The ``FaultPredictor`` of ``config``; ``history=False`` drops its ``[states.history]``."""
    import markovfault as mf
    from markovfault.config import load_config

    model = mf.FaultPredictor.from_config(load_config(config))
    return model if history else model.set_params(history=None)


def select(data_dir, candidates=CANDIDATES):
    """Compare history-aware state maps on the sessions before the first cutoff (held-out
    log-likelihood of the next key, ``common.select`` without events: the event *is* the next key);
    returns the table and the chosen ``[states.history]`` settings."""
    import markovfault as mf

    frame = load(data_dir)
    model = predictor()
    hist = mf.read_histories(frame, columns=model.columns)
    return _common().select(hist, model, candidates, cutoffs(frame)[0], events=False)


def run(data_dir, out, *, max_sessions=None, horizon=HORIZON, n_jobs=2, recent_window=RECENT_WINDOW):
    import markovfault as mf

    t0 = time.perf_counter()
    frame = load(data_dir, max_sessions=max_sessions)
    model = predictor()
    hist = mf.read_histories(frame, columns=model.columns)
    print(hist.attrs["read_report"])
    print("failure steps:", int(hist["status"].isin(ERROR_KEYS).sum()))
    print("history-aware states:", mf.HistorySpec.from_config(model.history))
    t1 = time.perf_counter()
    # the plain chain with every baseline, then the history-aware chain (long-run and recent event
    # mix), on the same origins
    result = _common().backtest_both(hist, model, horizon=horizon, cutoffs=cutoffs(frame), n_jobs=n_jobs,
                                     event_mix=("long_run", "recent"), recent_window=recent_window)
    t2 = time.perf_counter()
    result.to_dir(out)
    t3 = time.perf_counter()
    print(f"\nload {t1 - t0:.1f}s, backtest {t2 - t1:.1f}s, write {t3 - t2:.1f}s -> {out}")
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="folder holding hdfs_train and hdfs_test_abnormal (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=HERE / "out", help="output folder (default: %(default)s)")
    parser.add_argument("--max-sessions", type=int, default=None,
                        help="deterministic uniform subsample of sessions (default: all)")
    parser.add_argument("--select", action="store_true",
                        help="compare the history-aware state maps of CANDIDATES and stop")
    args = parser.parse_args(argv)
    missing = [f for f in FILES if not (args.data / f).is_file()]
    if missing:
        print(f"error: {', '.join(str(args.data / f) for f in missing)} not found; pass --data DIR, the "
              "folder holding the DeepLog HDFS files (see ../shared/data/hdfs/LOAD.md)", file=sys.stderr)
        return 66
    if args.select:
        _common().print_selection(*select(args.data))
        return 0
    # gradient boosting fits its folds in n_jobs processes: OpenMP threads inside each would only fight
    # for the same cores
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _common().print_result(run(args.data, args.out, max_sessions=args.max_sessions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
