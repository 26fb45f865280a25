"""Speed of the time horizons: forecasts for a million handlers, and what counting sojourns adds to a fit.

    python benchmarks/time_horizons.py            # both parts
    python benchmarks/time_horizons.py forecast   # 1,000,000 handlers x 4 time horizons, after fitting
    python benchmarks/time_horizons.py fit        # a 10M-step fit with and without the sojourn counts

Figures are ratios and times measured in one run (the machines are shared and noisy): the forecast part
times the computation after fitting (chain state, silence and rate factor of every handler given), for
both time models, with every rate factor 1 and with factors spread as estimated ones are (log-normal,
sigma 0.1); the fit part alternates fits with and without counting sojourns and reports the median of the pairs'
ratios.
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import pandas as pd
from scipy import stats

from markovfault import FaultPredictor
from markovfault._timehorizons import parse_within
from markovfault.predictor import _updates
from markovfault.predictor._time import fitted_time, time_forecasts
from markovfault.simulate import simulate_histories

FAILURES = ["error", "timeout", "down"]


def _frame(n_handlers: int, n_steps: int, seed: int = 0) -> pd.DataFrame:
    sim = simulate_histories(n_handlers, n_steps, random_state=seed, with_metrics=False, with_event_ids=False,
                             sojourns={"slow": stats.weibull_min(3, scale=2.0)}, rate_spread=0.3)
    return sim.rename(columns={"handler": "entity", "timestamp": "time", "event_type": "event"})


def forecast(n: int = 1_000_000) -> None:
    hist = _frame(200, 500)
    horizons = parse_within(["5min", "15min", "1h", "4h"], "datetime")
    rng = np.random.default_rng(0)
    print(f"{n:,} handlers x {len(horizons)} time horizons ({', '.join(horizons.labels)}), after fitting")
    for kind in ("semi_markov", "ctmc"):
        model = FaultPredictor(states={"failure": FAILURES}, time_model=kind).fit(hist)
        fitted_time(model)  # the time model is fitted once, on first use
        matrix = model.chain_.transition_matrix()
        rows = rng.integers(0, len(model.chain_.state_names_), n)
        ages = rng.exponential(60.0, n)
        for name, factors in (("rate factors 1", np.ones(n)),
                              ("rate factors spread", np.exp(rng.normal(0.0, 0.1, n)))):
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                p, _ = time_forecasts(model, matrix, rows, ages, factors, horizons)
                times.append(time.perf_counter() - t0)
            print(f"  {kind:12s} {name:20s} {min(times):6.3f} s (best of 3)  mean p {p.mean():.4f}")


def fit(n_handlers: int = 10_000, n_steps: int = 1_000, pairs: int = 5) -> None:
    hist = _frame(n_handlers, n_steps, seed=1)
    print(f"fit on {len(hist):,} steps of {n_handlers:,} handlers, with and without counting sojourns")
    real = _updates.sojourns_of
    timings = {"with": [], "without": []}
    for _ in range(pairs):  # alternating, so that a slow spell of the machine hits both
        for key in ("without", "with"):
            _updates.sojourns_of = real if key == "with" else (lambda *args: None)
            t0 = time.perf_counter()
            FaultPredictor(states={"failure": FAILURES}).fit(hist)
            timings[key].append(time.perf_counter() - t0)
    _updates.sojourns_of = real
    with_, without = statistics.median(timings["with"]), statistics.median(timings["without"])
    ratio = statistics.median(w / wo for w, wo in zip(timings["with"], timings["without"]))
    print(f"  median of {pairs} pairs: without {without:.2f} s, with {with_:.2f} s; the sojourns add "
          f"{100 * (ratio - 1):.1f}% (median of the pairs' ratios)")

if __name__ == "__main__":
    parts = sys.argv[1:] or ["forecast", "fit"]
    for part in parts:
        {"forecast": forecast, "fit": fit}[part]()
