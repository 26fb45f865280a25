"""Speed of the explanations.

    python benchmarks/explain.py

- Shapley attribution over 12 events for every state of a 50-state chain at k = 10 (2^12 = 4,096
  coalitions, each chain through the recursion, batched), beside one forecast of the same chain;
- the failure flux and the 10 most likely paths of one entity of a fitted predictor (the bundled sample's
  size of model), beside its `predict`.

Times are the median of repeated runs in one process (the machines are shared and noisy).
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from markovfault import FaultPredictor
from markovfault.chain import EventMarkovChain
from markovfault.explain import attribute_events, failure_flux, likely_paths
from markovfault.simulate import simulate_histories


def _median(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def shapley(n_states: int = 50, n_events: int = 12, k: int = 10) -> None:
    rng = np.random.default_rng(0)
    counts = rng.poisson(3.0, size=(n_events, n_states, n_states))
    fail = np.zeros(n_states, dtype=bool)
    fail[-5:] = True
    chain = EventMarkovChain(alpha=1.0, beta=1.0).fit_from_counts(
        counts, [f"s{i}" for i in range(n_states)], [f"e{j}" for j in range(n_events)], fail)
    t_att = _median(lambda: attribute_events(chain, k), repeat=3)
    t_one = _median(lambda: chain.failure_probabilities(k), repeat=20)
    att = attribute_events(chain, k)
    err = float(np.abs(att.values.sum(axis=1) - (att.value - att.baseline)).max())
    print(f"Shapley, {n_events} events x {n_states} states, k = {k}: {t_att:.3f} s "
          f"({2 ** n_events} coalitions; one forecast {t_one * 1e3:.2f} ms, ratio {t_att / t_one:.0f}); "
          f"largest error of the sums {err:.1e}")


def entity() -> None:
    history = simulate_histories(n_handlers=40, n_steps=1500, random_state=0)
    model = FaultPredictor(columns={"entity": "handler", "time": "timestamp", "event": "event_type",
                                    "status": "status", "event_id": "event_id"},
                           states={"kind": "categorical", "failure": ["error", "timeout", "down"]}).fit(history)
    name = model.predict(horizon=10, layout="wide")["entity"].iloc[0]
    t_flux = _median(lambda: failure_flux(model, 10, entity=name), repeat=20)
    t_paths = _median(lambda: likely_paths(model, 10, entity=name, n_paths=10), repeat=20)
    t_pred = _median(lambda: model.predict(horizon=10), repeat=20)
    print(f"one entity, k = 10: flux {t_flux * 1e3:.1f} ms, 10 most likely paths {t_paths * 1e3:.1f} ms; "
          f"predict() of all {model.predict(horizon=1).shape[0]} handlers {t_pred * 1e3:.1f} ms")


if __name__ == "__main__":
    shapley()
    entity()
