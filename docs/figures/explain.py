"""Draw docs/figures/explain.png, the README's figure of an explanation.

The bundled sample (data/orders_sample.csv.gz with data/orders.toml): the handler at the largest risk of
failing within 10 steps, its failure flux as a layered graph (left) and the Shapley values of the events to
its risk (right). Run ``python docs/figures/explain.py`` from the repository's root.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from markovfault import FaultPredictor  # noqa: E402
from markovfault.config import load_config  # noqa: E402
from markovfault.explain import explain  # noqa: E402
from markovfault.plotting import plot_attribution, plot_flux  # noqa: E402

root = Path(__file__).resolve().parents[2]
sample = root / "data" / "orders_sample.csv.gz"
model = FaultPredictor.from_config(load_config(root / "data" / "orders.toml")).fit(sample)
why = explain(model, sample, horizon=10)
fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.6), gridspec_kw={"width_ratios": [1.35, 1]})
plot_flux(why.flux, min_share=0.02, ax=left)
plot_attribution(why.events, ax=right)
left.set_title(f"{why.flux.start}: failure flux within 10 steps (width = flux)", fontsize="medium")
fig.tight_layout()
fig.savefig(Path(__file__).with_suffix(".png"), dpi=110)
print(why.to_text(top=3))
