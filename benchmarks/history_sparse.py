"""History-aware states stored as the states that occur: the HDFS sessions at order 4 (ratios in one run).

Order 4 over the 30 HDFS log keys has 893,730 product states, which the dense layout could not hold (its
cap was 200,000); the seen-state chain stores the states the sessions visit. For orders 1 (the plain chain)
to 4 this prints the seen states, the chain's states (seen ones, then coarser ones with data and the base
states), the fit time and the time of a rolling-origin backtest over the four cutoffs of
``examples/hdfs/run.py`` (every step after a cutoff an origin, no baselines), as ratios to the plain chain,
and the peak memory each adds (``tracemalloc``: numpy's allocations), with ``backoff`` a number and
``"auto"``.

As measured (2 shared cores, times noisy by +-30%): order 4 keeps 2,240 seen states (3,507 chain states with
its coarser levels); its fit took 3.3x the plain chain's (310 MiB at peak) and its backtest 2.0x (550 MiB against
the plain chain's 419 MiB). ``"auto"`` (strengths by held-out transitions, remeasured after they replaced the
evidence) doubles the fit at order 4 (2.1 s against 1.0 s) and adds 30% to the backtest (10.9 s against 8.4 s);
it chooses 0.01 for the next-state rows of every level (a session's next key follows its last keys: nothing
to pull toward the coarser rows) and 4.3 to 5.4 for the arrivals, and its HDFS backtest scores as
``backoff = 5.0`` does (Brier skill 0.1515 against 0.1511 at h = 1, 0.1285 against 0.1284 at h = 10). The dense layout before could not fit order 4; at
order 3 it took 5.6x the plain fit (776 MiB) and 15.6x the plain backtest (2.7 GiB), the seen-state chain
1.4x-2x (123 MiB) and 0.8x-1.1x (472 MiB).

Run ``python benchmarks/history_sparse.py [--data DIR]`` (needs ``../shared/data/hdfs``).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _hdfs():
    spec = importlib.util.spec_from_file_location("hdfs_example", REPO / "examples" / "hdfs" / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["hdfs_example"] = module
    spec.loader.exec_module(module)
    return module


def measure(fn):
    """(seconds, peak MiB of new allocations, result) of ``fn()``."""
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 2 ** 20
    tracemalloc.stop()
    return seconds, peak, out


def main(argv=None) -> int:
    hdfs = _hdfs()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=hdfs.DEFAULT_DATA)
    parser.add_argument("--orders", default="1,2,3,4")
    args = parser.parse_args(argv)
    import markovfault as mf
    from markovfault._estimator import clone

    logging.getLogger("markovfault").setLevel(logging.ERROR)  # the rare keys' warnings, once per fold

    frame = hdfs.load(args.data)
    hist = mf.read_histories(frame, columns=hdfs.predictor().columns)
    cuts = hdfs.cutoffs(frame)
    with warnings.catch_warnings():  # a warm-up: imports and first calls out of the timings
        warnings.simplefilter("ignore")
        mf.backtest(hist.iloc[:20_000], hdfs.predictor(history=False), horizon=2, cutoffs=1,
                    baselines=[], progress=False)
    rows = []
    for backoff in (5.0, "auto"):
        for order in [int(o) for o in args.orders.split(",")]:
            if order == 1 and backoff == "auto":
                continue
            history = None if order == 1 else {"order": order, "backoff": backoff}
            model = clone(hdfs.predictor()).set_params(history=history)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t_fit, m_fit, fitted = measure(lambda: clone(model).fit(hist))
                t_bt, m_bt, _ = measure(lambda: mf.backtest(hist, model, horizon=hdfs.HORIZON,
                                                            cutoffs=cuts, origins="every_step",
                                                            baselines=[], progress=False))
            chain = fitted.chain_
            n = len(chain.state_names_)
            rows.append((order, backoff, getattr(chain, "n_seen_", n), n, t_fit, m_fit, t_bt, m_bt,
                         getattr(chain, "backoff_", None)))
    base_fit, base_bt = rows[0][4], rows[0][6]
    print(f"HDFS: {len(frame):,} steps, {frame['block'].nunique():,} sessions, {len(cuts)} cutoffs")
    print(f"{'order':>5} {'backoff':>7} {'seen':>6} {'states':>6} {'fit s':>6} {'x plain':>7} "
          f"{'fit MiB':>7} {'backtest s':>10} {'x plain':>7} {'bt MiB':>7}")
    for order, backoff, seen, states, t_fit, m_fit, t_bt, m_bt, strengths in rows:
        print(f"{order:>5} {str(backoff):>7} {seen:>6} {states:>6} {t_fit:6.2f} {t_fit / base_fit:7.1f} "
              f"{m_fit:7.0f} {t_bt:10.2f} {t_bt / base_bt:7.1f} {m_bt:7.0f}")
        if strengths is not None:  # the back-off strengths by level (failure, next, arrivals, exogenous)
            print(strengths.round(3).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
