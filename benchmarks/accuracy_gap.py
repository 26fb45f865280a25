"""Does the time since the previous step help? The gap component on simulated idle gaps, against the truth.

Simulates handlers with failure memory whose failures also follow idle gaps: a step that comes more than
80 s after the handler's previous step (intervals of 1 min jittered by +-50%, so about 1 in 6 rows) multiplies
the failure probabilities of the handler's next step by 4 (``simulate_histories(idle_after="80s",
idle_boost=4)``, whose exact truth carries the idle flag). Then backtests, on the same origins (every step,
5 cutoffs, horizons 1..10; alpha, beta and back-off "auto"):

- ``markov``: failure window 6, no gap (the reference of the comparisons);
- ``gap3``, ``gap6``: the same with ``gap_bins = 3`` / ``6``, edges the quantiles of the gaps before the
  first cutoff;
- ``gap_80s``: ``gap_edges = ["80s"]``, the simulator's own threshold (what an operator who knows it sets);
- ``gap6_low``: ``gap_bins = 6`` with the gap placed right above the base state (below the failure
  window) in the back-off hierarchy instead of right above the failure window, the alternative the
  module docstring of ``markovfault.states._history`` weighs;

and scores the exact per-row truth on those origins as the ceiling. Prints the per-fold means by horizon
and the bootstrap intervals (entities resampled) of ``markov`` minus each other model.

    python benchmarks/accuracy_gap.py [seed] [n_handlers] [n_steps] [idle_boost]    # 20 s on 2 cores

``idle_boost = 1`` is the null case: the same simulation, where the gap carries nothing.

Measured on seed 7 (120 handlers, 600 steps, idle share 1/6; per-fold means). The quantile edges chosen
before the first cutoff: 50.0 s and 70.2 s for ``gap3``; 39.9, 50.0, 60.0, 70.2 and 80.2 s for ``gap6``.

=========  ======  ======  ======  =======  ========  ======
h          markov  gap3    gap6    gap_80s  gap6_low  truth
=========  ======  ======  ======  =======  ========  ======
BSS h=1    0.2878  0.2913  0.2962  0.2990   0.2953    0.3009
BSS h=2    0.2279  0.2304  0.2337  0.2353   0.2297    0.2367
BSS h=10   0.0940  0.0948  0.0957  0.0959   0.0911    0.0970
AUC h=1    0.8196  0.8325  0.8377  0.8391   0.8373    0.8393
AUC h=10   0.6520  0.6562  0.6566  0.6570   0.6537    0.6571
=========  ======  ======  ======  =======  ========  ======

Every gap variant above the failure window beats ``markov`` at every horizon, on Brier skill and on AUC,
every bootstrap interval of the difference above 0 (``gap6``: +0.0084 [0.0071, 0.0098] of Brier skill at
h=1, +0.0017 [0.0013, 0.0022] at h=10). ``gap6`` closes 64% of the gap to the truth at h=1 (0.0084 of
0.0131), the simulator's own edge 86%; the three quantile bins, whose top bin mixes 70..80 s (no boost)
with 80..90 s, less (27%). Calibration is a little worse at h=1: ECE 0.0068 / 0.0080 / 0.0079 for gap3 /
gap6 / gap_80s against 0.0055 (the truth 0.0060); 0.009 to 0.016 for all four from h=2 on. Seed 11 (the
same settings): Brier skill 0.2837 / 0.2924 / 0.2951 / 0.2972 (markov, gap6, gap_80s, truth) at h=1,
0.0938 / 0.0952 / 0.0952 / 0.0964 at h=10.

The place in the hierarchy: ``gap6_low`` (the gap right above the base state) is as good as ``gap6`` at
h=1 but worse from h=2 on and worse than no gap at all from h=3 (-0.0049 [-0.0066, -0.0031] of Brier
skill at h=5): the failure memory is then learned within each gap bin. The null case (``idle_boost =
1``, seed 7): ``gap3``, ``gap6`` and ``gap_80s`` score as ``markov`` (Brier skill within 0.0001 at every
horizon, AUC within 0.001, every AUC interval covering 0: the chosen back-off strengths merge the gap
bins back), while ``gap6_low`` loses 0.004 to 0.009 of Brier skill.
"""

import sys
import warnings
from contextlib import contextmanager

import numpy as np
import pandas as pd

from markovfault import BacktestResult, FaultPredictor, backtest
from markovfault.simulate import simulate_histories
from markovfault.states import HistorySpec

warnings.simplefilter("ignore")
pd.set_option("display.width", 200)

COLUMNS = {"entity": "handler", "time": "timestamp", "event": "event_type"}
STATES = {"kind": "categorical", "states": ["ok", "slow", "error", "timeout", "down"],
          "failure": ["error", "timeout", "down"]}


@contextmanager
def gap_below_the_failure_window():
    """The back-off hierarchy with the gap right above the base state (for ``gap6_low`` only)."""
    original = HistorySpec.levels

    def levels(spec):
        if not spec.gap_bins or spec.order > 1 or spec.failure_count or spec.group_levels \
                or spec.entering_event:
            return original(spec)
        K, edges, b = spec.gap_bins, spec.gap_edges, spec.backoff
        out = [("base", HistorySpec(backoff=b))]
        out += [(f"gap_bins={k}", HistorySpec(gap_bins=k, gap_edges=None if edges is None else edges[:k - 1],
                                              backoff=b)) for k in range(2, K + 1)]
        out += [(f"failure_window={w}", HistorySpec(failure_window=w, gap_bins=K, gap_edges=edges, backoff=b))
                for w in range(1, spec.failure_window + 1)]
        return out

    HistorySpec.levels = levels
    try:
        yield
    finally:
        HistorySpec.levels = original


def run(seed=7, n_handlers=120, n_steps=600, idle_boost=4.0, n_boot=200):
    sim = simulate_histories(n_handlers, n_steps, random_state=seed, with_metrics=False,
                             flaky_fraction=0.0, memory_window=5, idle_after="80s", idle_boost=idle_boost,
                             return_result=True)
    base = {"failure_window": 6, "backoff": "auto"}
    variants = {"markov": base, "gap3": {**base, "gap_bins": 3}, "gap6": {**base, "gap_bins": 6},
                "gap_80s": {**base, "gap_edges": ["80s"]}, "gap6_low": {**base, "gap_bins": 6}}
    preds, edges = [], {}
    for name, history in variants.items():
        model = FaultPredictor(states=STATES, columns=COLUMNS, alpha="auto", beta="auto", history=history)
        kw = dict(horizon=10, cutoffs=5, origins="every_step", baselines=[], progress=False, n_boot=0)
        if name.endswith("_low"):
            with gap_below_the_failure_window():
                res = backtest(sim.frame, model, **kw)
        else:
            res = backtest(sim.frame, model, **kw)
        edges[name] = res.params["history"].get("gap_edges")
        pred = res.predictions
        preds.append(pred[pred["model"] == "markov"].assign(model=name))
    truth = preds[0].copy()
    truth["p"] = sim.true_failure_probabilities(10)[truth["origin_step"].to_numpy(),
                                                    truth["horizon"].to_numpy() - 1]
    names = list(variants) + ["truth"]
    merged = pd.concat([p.assign(model=pd.Categorical(p["model"], categories=names))
                        for p in preds + [truth.assign(model="truth")]], ignore_index=True)
    scored = BacktestResult(metrics=res.metrics, predictions=merged, folds=res.folds,
                            params=res.params).rescore(n_boot=n_boot)
    return scored, edges, sim


if __name__ == "__main__":
    args = [float(a) if k == 3 else int(a) for k, a in enumerate(sys.argv[1:])]
    scored, edges, sim = run(*args)
    print("edges:", edges, " idle share:", round(sim.idle_share, 4))
    mean = scored.metrics[scored.metrics["fold"] == "mean"]
    for metric in ("roc_auc", "bss", "ece"):
        table = mean.pivot(index="horizon", columns="model", values=metric)
        print(f"\n{metric}\n{table.round(4).to_string()}")
    comp = scored.comparisons
    comp = comp[comp["metric"].isin(["bss", "roc_auc"]) & comp["horizon"].isin([1, 2, 5, 10])]
    print("\ncomparisons (markov minus other)\n", comp.round(4).to_string())
