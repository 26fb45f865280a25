"""Draw docs/figures/propagation.png, the README's figure of fault localization.

The simulated call graph (order_api -> payment -> shipping -> delivery, a notification handler, a shared
database; ``simulate_call_graph(20, rate=0.2, random_state=3)``): the propagation graph learned from its
histories, with the ranks of the root-cause ranking of its last episode. Run ``python
docs/figures/propagation.py`` from the repository's root.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from markovfault.explain import propagation_test, rank_root_causes  # noqa: E402
from markovfault.plotting import plot_propagation  # noqa: E402
from markovfault.simulate import simulate_call_graph  # noqa: E402

sim = simulate_call_graph(20, rate=0.2, random_state=3)
graph = propagation_test(sim.histories, failure=sim.failure)
last = sim.episodes.iloc[-1]
ranked = rank_root_causes(sim.histories, last.start, last.end, failure=sim.failure, propagation=graph)
fig, ax = plt.subplots(figsize=(7, 5.6))
plot_propagation(graph, ranked, ax=ax)
ax.set_title(f"{ax.get_title()}\nranks: the last episode (its root cause: {last.root_cause})", fontsize="small")
fig.tight_layout()
fig.savefig(Path(__file__).with_suffix(".png"), dpi=100)
