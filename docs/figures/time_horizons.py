"""Draw docs/figures/time_horizons.png, the README's figure of forecasts in time.

A simulated order service whose handlers wait in ``slow`` a Weibull time (shape 3: the wait wears out) and
elsewhere an exponential one: P(fail within T) against T from a step just taken in ``ok`` and in ``slow``,
by the semi-Markov chain and the continuous-time chain fitted on it, with the simulator's truth (Monte Carlo).
Run ``python docs/figures/time_horizons.py`` from the repository's root.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from markovfault import FaultPredictor  # noqa: E402
from markovfault.simulate import simulate_histories  # noqa: E402

sim = simulate_histories(300, 400, flaky_fraction=0.0, random_state=3, return_result=True,
                         sojourns={"slow": stats.weibull_min(3.0, scale=5.0)})
hist = sim.frame.rename(columns={"handler": "entity", "timestamp": "time", "event_type": "event"})
# an export's window: every handler watched until the same end (its last wait is open there)
hist = hist[hist["time"] <= hist.groupby("entity")["time"].max().min()]
minutes = np.r_[0.5, np.arange(1, 31)]
within = [f"{m}min" for m in minutes]
models = {kind: FaultPredictor(states={"failure": ["error", "timeout", "down"]}, time_model=kind).fit(hist)
          for kind in ("semi_markov", "ctmc")}
truth = sim.true_time_failure_table(within[::3], n_paths=40000).probabilities.loc["normal"]
fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True, constrained_layout=True)
for ax, state in zip(axes, ("ok", "slow")):
    for kind, style in (("semi_markov", "-"), ("ctmc", "--")):
        curve = models[kind].time_failure_probabilities(within).loc[state]
        ax.plot(minutes, curve.to_numpy(), style, label=f"{kind} (fitted)")
    ax.plot(minutes[::3], truth.loc[state].to_numpy(), "o", color="black", ms=4, label="truth (Monte Carlo)")
    ax.set_title(f"from a step that ended in '{state}'")
    ax.set_xlabel("T (minutes)")
    ax.grid(alpha=0.3)
axes[0].set_ylabel("P(fail within T)")
axes[1].legend(loc="lower right")
fig.savefig(Path(__file__).with_suffix(".png"), dpi=110)
