"""Issue-level accuracy claims, on simulated truth (same origins, same backtest).

These run the gradient-boosting baseline, so they are the slowest tests of the suite.
"""

import pytest

from markovfault import FaultPredictor, backtest
from markovfault.simulate import simulate_histories

COLUMNS = {"entity": "handler", "time": "timestamp", "event": "event_type"}
STATES = {"kind": "categorical", "states": ["ok", "slow", "error", "timeout", "down"],
          "failure": ["error", "timeout", "down"]}
quiet = pytest.mark.filterwarnings("ignore::markovfault.exceptions.DataWarning")


@quiet
def test_history_aware_recent_mix_chain_matches_gradient_boosting_under_memory_and_outages():
    # failures raise the risk of the next 5 steps threefold; payment failures are ten
    # times as common during 6 outages of 60 steps
    hist = simulate_histories(100, 600, random_state=11, with_metrics=False, flaky_fraction=0.0,
                              memory_window=5, memory_boost=3.0, outages=6, outage_length=60,
                              clock="aligned")
    model = FaultPredictor(states=STATES, columns=COLUMNS, history={"failure_window": 6})
    res = backtest(hist, model, horizon=10, cutoffs=3, origins="every_step",
                   baselines=["gradient_boosting"], event_mix=["long_run", "recent"],
                   recent_window="2min", progress=False)
    s = res.summary().set_index(["model", "horizon"])
    ours, gb = s.loc["markov_recent"], s.loc["gradient_boosting"]
    for metric in ("roc_auc", "bss"):
        assert (ours[metric] >= gb[metric]).all(), (metric, ours[metric] - gb[metric])
    assert (ours["ece"] < gb["ece"]).all(), ours["ece"] - gb["ece"]


@quiet
def test_history_aware_states_do_no_worse_without_memory():
    hist = simulate_histories(100, 500, random_state=12, with_metrics=False, flaky_fraction=0.0)
    kw = dict(horizon=10, cutoffs=3, origins="every_step", baselines=[], progress=False)
    plain = backtest(hist, FaultPredictor(states=STATES, columns=COLUMNS), **kw).summary()
    aware = backtest(hist, FaultPredictor(states=STATES, columns=COLUMNS,
                                          history={"order": 2, "failure_window": 6}),
                     **kw).summary()
    # the back-off keeps the extra states from costing skill: within sampling noise
    # (0.003 of Brier skill on about 40,000 origins per horizon) of the plain chain
    assert (aware["bss"].to_numpy() >= plain["bss"].to_numpy() - 0.003).all(), (
        aware["bss"].to_numpy() - plain["bss"].to_numpy())
