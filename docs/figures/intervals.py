"""Draw docs/figures/intervals.png, the README's figure of intervals and diagnostics.

The bundled sample: a model fitted with data/orders.toml, the forecast of its six riskiest handlers with 90%
posterior bands, and the diagnostics of the same model (asymptotic and bootstrap p-values). Run
``python docs/figures/intervals.py`` from the repository's root.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from markovfault import FaultPredictor  # noqa: E402
from markovfault.config import load_config  # noqa: E402
from markovfault.diagnostics import diagnose  # noqa: E402
from markovfault.plotting import plot_diagnostics, plot_entity_risk  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "orders_sample.csv.gz"

model = FaultPredictor.from_config(load_config(ROOT / "data" / "orders.toml")).fit(SAMPLE)
forecast = model.predict(SAMPLE, horizon=10, interval=0.9, random_state=0)
last = forecast[forecast["horizon"] == 10].sort_values("p_fail", ascending=False)
fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8), constrained_layout=True)
plot_entity_risk(forecast, entities=list(last["entity"].astype(str).head(6)), ax=left)
plot_diagnostics(diagnose(model, SAMPLE, bootstrap=99, random_state=0, max_order=2), ax=right)
fig.savefig(Path(__file__).with_suffix(".png"), dpi=110)
