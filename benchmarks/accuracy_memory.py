"""History-aware states and the recent event mix against gradient boosting, on simulated truth.

Simulates an order service whose handlers remember failures (a failure raises the risk of
the next 5 steps threefold) and whose event mix shifts during outages (payment failures ten
times as frequent for 60 steps), then backtests, on the same origins, the plain chain, the
chain with history-aware states under the long-run and the recent event mix, and
scikit-learn's HistGradientBoostingClassifier on recent history. The exact per-row truth
is scored too, as the ceiling. Every score is a per-fold mean weighted by scored origins.

    python benchmarks/accuracy_memory.py      # about 3 minutes on 2 cores
"""

import warnings

import numpy as np
import pandas as pd

from markovfault import FaultPredictor, backtest
from markovfault.simulate import simulate_histories

warnings.simplefilter("ignore")
pd.set_option("display.width", 200)

import sys
seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
sim = simulate_histories(150, 800, random_state=seed, with_metrics=False, flaky_fraction=0.0,
                         memory_window=5, memory_boost=3.0, outages=8, outage_length=60,
                         clock="aligned", return_result=True)
columns = {"entity": "handler", "time": "timestamp", "event": "event_type"}
states = {"kind": "categorical", "states": ["ok", "slow", "error", "timeout", "down"],
          "failure": ["error", "timeout", "down"]}
kw = dict(horizon=10, cutoffs=3, origins="every_step", progress=False)
plain = backtest(sim.frame, FaultPredictor(states=states, columns=columns), baselines=[], **kw)
aware = backtest(sim.frame, FaultPredictor(states=states, columns=columns,
                                           history={"failure_window": 6}),
                 baselines=["gradient_boosting"], event_mix=["long_run", "recent"],
                 recent_window="2min", **kw)
# the exact truth scored as one more model on the same origins, folds and entities
pred = aware.predictions
truth_rows = pred[pred["model"] == "markov"].copy()
truth_rows["p"] = sim.true_failure_probabilities(10)[truth_rows["origin_step"].to_numpy(),
                                                     truth_rows["horizon"].to_numpy() - 1]
names = [*pred["model"].cat.categories, "truth"]
both = pd.concat([pred.assign(model=pd.Categorical(pred["model"], categories=names)),
                  truth_rows.assign(model=pd.Categorical(["truth"] * len(truth_rows),
                                                         categories=names))],
                 ignore_index=True)
from markovfault import BacktestResult

scored = BacktestResult(metrics=aware.metrics, predictions=both, folds=aware.folds,
                        params=aware.params).rescore(n_boot=0)
rows = []
for label, res, model in [("plain chain", plain, "markov"),
                          ("history-aware, long-run mix", scored, "markov"),
                          ("history-aware, recent mix", scored, "markov_recent"),
                          ("gradient boosting", scored, "gradient_boosting"),
                          ("truth (ceiling)", scored, "truth")]:
    s = res.summary()
    s = s[s["model"] == model].set_index("horizon")
    rows.append(pd.DataFrame({"model": label, "horizon": s.index, "roc_auc": s["roc_auc"],
                              "bss": s["bss"], "ece": s["ece"]}))
table = pd.concat(rows, ignore_index=True)
for metric in ("roc_auc", "bss", "ece"):
    print(f"\n{metric}")
    print(table.pivot(index="horizon", columns="model", values=metric).round(4).to_string())
