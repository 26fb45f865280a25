"""Backtest figures: each Axes holds what the result says, and the PNG files get written."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from markovfault import FaultPredictor  # noqa: E402
from markovfault.backtest import BacktestResult, backtest  # noqa: E402
from markovfault.plotting import (  # noqa: E402
    plot_lead_times,
    plot_precision_recall,
    plot_reliability,
    plot_roc,
    plot_skill_by_horizon,
    save_backtest_figures,
)
from markovfault.simulate import simulate_histories  # noqa: E402

BASELINES = ["climatology", "state_frequency", "no_events"]
MODELS = ["markov", *BASELINES]


@pytest.fixture(scope="module")
def result():
    hist = simulate_histories(20, 300, random_state=0, with_metrics=False)
    model = FaultPredictor(states={"failure": ["error", "timeout", "down"]},
                           columns={"entity": "handler", "time": "timestamp",
                                    "event": "event_type"})
    return backtest(hist, model, horizon=3, cutoffs=3, origins="every_step", baselines=BASELINES,
                    threshold=0.2)  # low enough that some failure onsets are caught


@pytest.fixture
def ax():
    ax = Figure().subplots()
    yield ax
    ax.figure.clear()


def one_class_result(y_value=0, threshold=0.5):
    """A hand-made result whose pooled forecasts hold one class: curves empty, AUC/AP NaN."""
    # entity 0, origins at steps 0..3, p = .1 .2 .3 .4; with y_value=1 every origin fails
    # one step later (steps_to_failure 1), and no p reaches threshold .5: no failure caught
    pred = pd.DataFrame({
        "fold": 0, "cutoff": 10, "entity": "h0", "entity_code": 0,
        "origin_step": np.arange(4), "origin_time": np.arange(4), "horizon": 1,
        "model": "markov", "p": [0.1, 0.2, 0.3, 0.4], "y": y_value,
        "steps_to_failure": 1 if y_value else 2, "base_rate": 0.25,
    })
    metrics = pd.DataFrame({
        "fold": ["0", "mean"], "horizon": 1, "model": "markov", "n": 4, "n_pos": 4 * y_value,
        "base_rate": 0.25, "brier": 0.1, "bss": np.nan, "roc_auc": np.nan,
        "average_precision": np.nan, "ece": 0.1, "precision": np.nan, "recall": np.nan,
        "f1": np.nan, "n_failures": 4 * y_value, "n_caught": 0, "mean_lead_time": np.nan,
        "note": "one class",
    })
    folds = pd.DataFrame({"fold": [0], "cutoff": [10], "horizon": [1]})
    return BacktestResult(metrics=metrics, predictions=pred, folds=folds,
                          params={"horizon": 1, "threshold": threshold})


def legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def pooled(result, model, horizon, metric):
    m = result.metrics
    row = m[(m["fold"] == "mean") & (m["model"] == model) & (m["horizon"] == horizon)]
    return row[metric].item()


def model_lines(ax):
    """The lines of the models: the reference lines are drawn first, dotted grey."""
    return [ln for ln in ax.get_lines() if ln.get_color() != "0.55"]


def check_distinguishable(lines):
    markers = [ln.get_marker() for ln in lines]
    assert len(set(markers)) == len(lines), markers
    assert all(m not in ("None", "", " ", None) for m in markers)
    # hollow markers keep overlapping models visible
    assert all(ln.get_markerfacecolor() == "none" for ln in lines)


def check_unit_square(ax):
    assert ax.get_xlim() == (0.0, 1.0)
    assert ax.get_ylim() == (0.0, 1.0)


# ------------------------------------------------------------------ import
def test_import_does_not_import_matplotlib():
    code = "import sys, markovfault.plotting; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_missing_matplotlib_gives_clear_import_error(result, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        plot_reliability(result)


# ------------------------------------------------------------------ reliability
def test_reliability_axes(result, ax):
    out = plot_reliability(result, horizon=3, ax=ax)
    assert out is ax
    assert ax.get_title() == "reliability, horizon h = 3"
    assert ax.get_xlabel() == "forecast P(fail within h)"
    assert ax.get_ylabel() == "observed failure frequency"
    assert len(ax.get_lines()) == len(MODELS) + 1  # + the diagonal
    assert legend_texts(ax) == ["perfectly calibrated", *MODELS]
    lines = model_lines(ax)
    check_distinguishable(lines)
    assert len({ln.get_linestyle() for ln in lines}) == len(MODELS)
    check_unit_square(ax)
    # the points are the result's own reliability table
    for line, model in zip(lines, MODELS):
        table = result.calibration(model, 3, n_bins=10)
        np.testing.assert_allclose(line.get_xdata(), table["mean_p"])
        np.testing.assert_allclose(line.get_ydata(), table["frac_pos"])


def test_reliability_subset_keeps_each_models_style(result, ax):
    full = Figure().subplots()
    plot_reliability(result, ax=full)
    plot_reliability(result, models=["no_events", "markov"], n_bins=5, ax=ax)
    assert legend_texts(ax)[1:] == ["no_events", "markov"]
    style = {ln.get_label(): (ln.get_marker(), ln.get_linestyle()) for ln in model_lines(full)}
    for ln in model_lines(ax):
        assert (ln.get_marker(), ln.get_linestyle()) == style[ln.get_label()]
    assert len(model_lines(ax)[0].get_xdata()) <= 5


def test_unknown_model_or_horizon_is_a_value_error(result, ax):
    with pytest.raises(ValueError, match="'lstm'.*models: \\['markov'"):
        plot_reliability(result, models=["lstm"], ax=ax)
    with pytest.raises(ValueError, match="horizon = 7 was not scored; horizons: \\[1, 2, 3\\]"):
        plot_roc(result, horizon=7, ax=ax)


def test_new_figure_when_no_axes(result):
    before = set(plt.get_fignums())
    ax = plot_reliability(result)
    try:
        assert ax.figure.number not in before
    finally:
        plt.close(ax.figure)


# ------------------------------------------------------------------ ROC and PR
def test_roc_axes(result, ax):
    plot_roc(result, horizon=2, ax=ax)
    assert ax.get_title() == "ROC, horizon h = 2"
    assert ax.get_xlabel() == "false positive rate"
    assert len(ax.get_lines()) == len(MODELS) + 1
    texts = legend_texts(ax)
    assert texts[0] == "no skill"
    for text, model in zip(texts[1:], MODELS):
        assert text == f"{model} (AUC {pooled(result, model, 2, 'roc_auc'):.3f})"
    lines = model_lines(ax)
    check_distinguishable(lines)
    check_unit_square(ax)
    curve = result.curves("markov", 2)
    np.testing.assert_allclose(lines[0].get_xdata(), curve["fpr"])
    np.testing.assert_allclose(lines[0].get_ydata(), curve["tpr"])


def test_precision_recall_axes(result, ax):
    plot_precision_recall(result, horizon=1, ax=ax)
    assert ax.get_title() == "precision-recall, horizon h = 1"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("recall", "precision")
    assert len(ax.get_lines()) == len(MODELS) + 1  # + the no-skill line
    # no skill = the failure rate of the scored origins, n_pos / n of the mean row
    rate = pooled(result, "markov", 1, "n_pos") / pooled(result, "markov", 1, "n")
    assert ax.get_lines()[0].get_ydata()[0] == pytest.approx(rate)
    texts = legend_texts(ax)
    assert texts[0] == f"no skill (failure rate {rate:.3f})"
    for text, model in zip(texts[1:], MODELS):
        assert text == f"{model} (AP {pooled(result, model, 1, 'average_precision'):.3f})"
    check_distinguishable(model_lines(ax))
    check_unit_square(ax)


def test_one_class_curves_are_empty_and_say_undefined(ax):
    res = one_class_result(y_value=0)
    plot_roc(res, ax=ax)
    assert legend_texts(ax) == ["no skill", "markov (AUC undefined)"]
    assert len(model_lines(ax)[0].get_xdata()) == 0
    ax2 = plot_precision_recall(res, ax=Figure().subplots())
    assert legend_texts(ax2)[-1] == "markov (AP undefined)"


# ------------------------------------------------------------------ skill by horizon
def test_skill_by_horizon_axes(result, ax):
    plot_skill_by_horizon(result, ax=ax)
    assert ax.get_title() == "bss by horizon, mean over folds"
    assert ax.get_xlabel() == "horizon h (steps)"
    assert "Brier skill score" in ax.get_ylabel()
    assert len(ax.get_lines()) == len(MODELS) + 1  # + the zero line
    assert legend_texts(ax)[1:] == MODELS
    lines = model_lines(ax)
    check_distinguishable(lines)
    for line, model in zip(lines, MODELS):
        np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3])
        np.testing.assert_allclose(line.get_ydata(),
                                   [pooled(result, model, h, "bss") for h in (1, 2, 3)])


def test_skill_other_metric_has_no_zero_line(result, ax):
    plot_skill_by_horizon(result, metric="roc_auc", models=["markov", "climatology"], ax=ax)
    assert len(ax.get_lines()) == 2
    assert ax.get_ylabel() == "ROC AUC"
    with pytest.raises(ValueError, match="metric = 'note'"):
        plot_skill_by_horizon(result, metric="note", ax=Figure().subplots())


def test_skill_all_undefined_shows_a_note(ax):
    plot_skill_by_horizon(one_class_result(), ax=ax)  # bss NaN: one class
    assert [t.get_text() for t in ax.texts] == [
        "bss is undefined for every model and horizon\n(see result.metrics['note'])"]
    assert ax.get_xlim() == (0.75, 1.25)  # the one scored horizon, not a range around 0


# ------------------------------------------------------------------ lead times
def test_lead_times_histogram(result, ax):
    plot_lead_times(result, ax=ax)
    table = result.lead_times("markov", 3)
    n_caught = int(table["caught"].sum())
    assert n_caught > 0
    assert f"caught {n_caught} of {len(table)} failures" in ax.get_title()
    assert "h = 3" in ax.get_title()
    heights = [p.get_height() for p in ax.patches]
    assert sum(heights) == n_caught
    # integer bins: one bar per lead time 1..3, centred on the integer
    assert [p.get_x() + p.get_width() / 2 for p in ax.patches] == [1.0, 2.0, 3.0]
    assert heights == [int((table["lead_time"] == k).sum()) for k in (1, 2, 3)]
    assert ax.get_xlabel().startswith("lead time")


@pytest.mark.parametrize("y_value, note", [(1, "no failure caught at threshold 0.5"),
                                           (0, "no failure to forecast")])
def test_lead_times_without_caught_failures_shows_a_note(ax, y_value, note):
    res = one_class_result(y_value=y_value)
    plot_lead_times(res, ax=ax)
    assert len(ax.patches) == 0
    assert [t.get_text() for t in ax.texts] == [note]
    assert f"caught 0 of {4 * y_value} failures" in ax.get_title()


# ------------------------------------------------------------------ files
def test_save_backtest_figures_writes_pngs(result, tmp_path):
    backend = matplotlib.get_backend()
    figs_before = plt.get_fignums()
    paths = save_backtest_figures(result, tmp_path / "figs")
    assert [p.name for p in paths] == ["reliability_h1.png", "reliability_h3.png", "roc.png",
                                       "pr.png", "skill.png", "lead_times.png"]
    for p in paths:
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", p
        assert len(data) > 10_000, p
    # pyplot untouched: same backend, no figure left open
    assert matplotlib.get_backend() == backend
    assert plt.get_fignums() == figs_before


def test_save_backtest_figures_single_horizon(tmp_path):
    paths = save_backtest_figures(one_class_result(y_value=1), tmp_path)
    assert [p.name for p in paths] == ["reliability_h1.png", "roc.png", "pr.png", "skill.png",
                                       "lead_times.png"]
    assert all(p.stat().st_size > 0 for p in paths)


def test_to_dir_links_the_figures(result, tmp_path):
    out = result.to_dir(tmp_path / "bt")
    report = (out / "report.md").read_text()
    for name in ("reliability_h1.png", "roc.png", "lead_times.png"):
        assert (out / name).is_file()
        assert f"![{name}]({name})" in report


# ================================================================== model figures
from matplotlib.patches import Circle, FancyArrowPatch, Rectangle  # noqa: E402

from markovfault import EventMarkovChain  # noqa: E402
from markovfault.exceptions import NotFittedError  # noqa: E402
from markovfault.plotting import (  # noqa: E402
    plot_entity_risk,
    plot_failure_curve,
    plot_riskiest,
    plot_state_diagram,
    plot_transitions,
)

FAILURES = ["down", "error", "timeout"]


@pytest.fixture(scope="module")
def fitted():
    """A model of 12 simulated handlers x 200 steps, and its forecast of every handler, h = 1..4."""
    hist = simulate_histories(12, 200, random_state=0, with_metrics=False)
    model = FaultPredictor(states={"failure": FAILURES},
                           columns={"entity": "handler", "time": "timestamp", "event": "event_type"})
    model.fit(hist)
    return model, model.predict(hist, horizon=4)


@pytest.fixture(scope="module")
def tiny():
    """ok, down, ok, ok, down, ok without smoothing. From ok: down, ok, down -> P(ok->down) = 2/3,
    P(ok->ok) = 1/3; from down: ok twice -> P(down->ok) = 1; P(down->down) = 0."""
    hist = pd.DataFrame({"entity": ["a"] * 6, "time": range(6),
                         "status": ["ok", "down", "ok", "ok", "down", "ok"]})
    return FaultPredictor(states={"failure": ["down"]}, alpha=0, beta=0).fit(hist)


def tick_texts(labels):
    return [t.get_text() for t in labels]


def marked(names):
    return [f"{s} (F)" if s in FAILURES else s for s in names]


def edges(ax):
    return {p.get_gid() for p in ax.patches if str(p.get_gid()).startswith("edge:")}


# ------------------------------------------------------------------ transitions
def test_transitions_marginal(fitted, ax):
    model, _ = fitted
    chain = model.chain_
    assert plot_transitions(model, ax=ax) is ax
    assert ax.get_title() == "transitions, marginal chain T (next event unknown)"
    assert ax.get_xlabel().startswith("next state") and "(F) = failure state" in ax.get_xlabel()
    assert ax.get_ylabel() == "current state"
    names = chain.state_names_  # down, error, ok, slow, timeout
    assert tick_texts(ax.get_yticklabels()) == marked(names)
    assert tick_texts(ax.get_xticklabels()) == marked(names)
    # failure states in bold too, so they stand out without the suffix being read
    weights = [t.get_fontweight() for t in ax.get_yticklabels()]
    assert weights == ["bold" if s in FAILURES else "normal" for s in names]
    np.testing.assert_array_equal(ax.images[0].get_array(), chain.transition_matrix_)
    # one annotation per cell, row by row, the value rounded
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == len(names) ** 2
    assert texts[:len(names)] == [f"{v:.0e}" if 0 < v < 0.005 else f"{v:.2f}"
                                  for v in chain.transition_matrix_[0]]


def test_transitions_of_one_event(fitted, ax):
    model, _ = fitted
    k = model.chain_.event_names_.index("payment_failed")
    plot_transitions(model.chain_, event="payment_failed", ax=ax)  # the chain itself works too
    assert ax.get_title() == "transitions, next event 'payment_failed'"
    np.testing.assert_array_equal(ax.images[0].get_array(), model.chain_.event_matrices_[k])
    with pytest.raises(ValueError, match="event = 'reboot' was not seen in training; events: "
                                         "\\['order_created'"):
        plot_transitions(model, event="reboot", ax=Figure().subplots())


def test_transitions_small_values_do_not_read_zero(ax):
    # from "a": 999 stays and 1 step to "b" -> 0.999 and 0.001; "b" always goes back to "a"
    chain = EventMarkovChain(alpha=0, beta=0).set_counts(
        np.array([[[999, 1], [5, 0]]]), ["a", "b"], ["tick"], [False, True])
    plot_transitions(chain, ax=ax)
    assert [t.get_text() for t in ax.texts] == ["1.00", "1e-03", "1.00", "0.00"]


def test_transitions_many_states_get_a_colour_bar_instead_of_numbers():
    rng = np.random.RandomState(42)
    names = [f"s{k:02d}" for k in range(16)]
    chain = EventMarkovChain().set_counts(rng.randint(0, 5, size=(1, 16, 16)), names, ["tick"],
                                          [k >= 14 for k in range(16)])
    fig = Figure()
    ax = plot_transitions(chain, ax=fig.subplots())
    assert list(ax.texts) == []
    assert len(fig.axes) == 2 and fig.axes[1].get_ylabel() == "probability"
    assert tick_texts(ax.get_yticklabels())[-2:] == ["s14 (F)", "s15 (F)"]


def test_unfitted_model_is_refused(ax):
    with pytest.raises(NotFittedError, match="not fitted"):
        plot_transitions(FaultPredictor(states={"failure": ["down"]}), ax=ax)
    with pytest.raises(TypeError, match="expected a fitted FaultPredictor or EventMarkovChain"):
        plot_state_diagram(np.eye(2), ax=ax)


# ------------------------------------------------------------------ state diagram
def test_state_diagram_by_hand(tiny, ax):
    assert plot_state_diagram(tiny, ax=ax) is ax
    assert ax.get_title() == "state diagram, marginal chain T (next event unknown)"
    # P(down->down) = 0 is not drawn; the loop ok->ok is
    assert edges(ax) == {"edge:ok->down", "edge:down->ok", "edge:ok->ok"}
    width = {p.get_gid(): p.get_linewidth() for p in ax.patches if isinstance(p, FancyArrowPatch)}
    assert width["edge:down->ok"] > width["edge:ok->down"] > width["edge:ok->ok"]  # 1 > 2/3 > 1/3
    # the failure state is a hatched square, the other a plain circle
    node = {p.get_gid(): p for p in ax.patches if str(p.get_gid()).startswith("state:")}
    assert isinstance(node["state:down"], Rectangle) and node["state:down"].get_hatch() == "///"
    assert isinstance(node["state:ok"], Circle) and not node["state:ok"].get_hatch()
    texts = [t.get_text() for t in ax.texts]
    assert "down (F)" in texts and "ok\nstays 0.33" in texts
    assert "0.67" in texts and "1.00" in texts  # probabilities on the arrows
    assert legend_texts(ax) == ["state", "failure state (F)"]
    assert "below 0.02 not drawn" in ax.get_legend().get_title().get_text()
    assert not ax.axison


def test_state_diagram_threshold_and_event(fitted, ax):
    model, _ = fitted
    chain = model.chain_
    k = chain.event_names_.index("payment_failed")
    P = chain.event_matrices_[k]
    plot_state_diagram(model, event="payment_failed", threshold=0.1, ax=ax)
    names = chain.state_names_
    expected = {f"edge:{names[i]}->{names[j]}" for i, j in zip(*np.nonzero(P >= 0.1))}
    assert edges(ax) == expected and 0 < len(expected) < len(names) ** 2
    assert ax.get_title() == "state diagram, next event 'payment_failed'"
    assert sum(isinstance(p, Rectangle) for p in ax.patches) == len(FAILURES)
    assert sum(isinstance(p, Circle) for p in ax.patches) == len(names) - len(FAILURES)
    with pytest.raises(ValueError, match="threshold = 2"):
        plot_state_diagram(model, threshold=2, ax=Figure().subplots())


# ------------------------------------------------------------------ failure curves
def test_failure_curve(fitted, ax):
    model, _ = fitted
    assert plot_failure_curve(model, 6, ax=ax) is ax
    table = model.failure_probabilities(6)
    assert len(ax.get_lines()) == len(table)
    for line, (state, row) in zip(ax.get_lines(), table.iterrows()):
        np.testing.assert_array_equal(line.get_xdata(), np.arange(1, 7))
        np.testing.assert_allclose(line.get_ydata(), row.to_numpy())
    assert legend_texts(ax) == marked(table.index)
    assert [t.get_fontweight() for t in ax.get_legend().get_texts()] == [
        "bold" if s in FAILURES else "normal" for s in table.index]
    assert ax.get_title() == "P(fail within h) by current state"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("horizon h (steps)", "P(fail within h)")
    assert ax.get_ylim() == (0.0, 1.0)
    check_distinguishable(ax.get_lines())


def test_failure_curve_what_if(fitted, ax):
    model, _ = fitted
    scenario = ["payment_failed"] * 3 + ["order_created"]
    plot_failure_curve(model, 4, states=["ok", "down"], scenario=scenario, ax=ax)
    assert legend_texts(ax) == ["ok", "down (F)"]
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(),
                               model.failure_probabilities(4, scenario).loc["ok"])
    assert ax.get_title().endswith("what-if: next events payment_failed ×3, order_created")
    # a state keeps its style whichever states are drawn
    full = plot_failure_curve(model, 4, ax=Figure().subplots())
    style = {ln.get_label(): (ln.get_marker(), ln.get_linestyle()) for ln in full.get_lines()}
    assert all(style[ln.get_label()] == (ln.get_marker(), ln.get_linestyle()) for ln in ax.get_lines())
    with pytest.raises(ValueError, match="states \\['degraded'\\] are not states of the model"):
        plot_failure_curve(model, 4, states=["degraded"], ax=Figure().subplots())


# ------------------------------------------------------------------ entities
def test_entity_risk_defaults_to_the_riskiest(fitted, ax):
    model, forecast = fitted
    assert plot_entity_risk(forecast, ax=ax) is ax
    last = forecast[forecast["horizon"] == 4].assign(e=forecast["entity"].astype(str))
    top = last.sort_values(["p_fail", "e"], ascending=[False, True]).head(8)
    assert legend_texts(ax) == [f"{e} ({s})" for e, s in zip(top["e"], top["state"])]
    for line, p in zip(ax.get_lines(), top["p_fail"]):
        np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3, 4])
        assert line.get_ydata()[-1] == p
    assert ax.get_title() == "P(fail within h) by entity, the 8 riskiest at h = 4"
    check_distinguishable(ax.get_lines())


def test_entity_risk_draws_the_posterior_band_of_each_curve(fitted, ax):
    model, forecast = fitted
    banded = model.predict(horizon=4, interval=0.9, random_state=1)
    entity = str(banded["entity"].iloc[0])
    plot_entity_risk(banded, entities=[entity], ax=ax)
    (band,) = ax.collections
    rows = banded[banded["entity"].astype(str) == entity].sort_values("horizon")
    path = band.get_paths()[0].vertices  # the lower edge then the upper edge, back
    np.testing.assert_allclose(path[1:5, 1], rows["p_fail_lo"])
    np.testing.assert_allclose(sorted(path[:, 1])[-1], rows["p_fail_hi"].max())
    assert ax.get_title().endswith("with posterior intervals")
    plain = plot_entity_risk(forecast, entities=[str(forecast["entity"].iloc[0])], ax=Figure().subplots())
    assert not plain.collections  # no band without an interval


def test_entity_risk_chosen_entities(fitted, ax):
    _, forecast = fitted
    plot_entity_risk(forecast, entities="handler-03" if "handler-03" in set(forecast["entity"])
                     else str(forecast["entity"].iloc[0]), ax=ax)
    assert len(ax.get_lines()) == 1
    assert ax.get_title() == "P(fail within h) by entity, 1 entities"
    with pytest.raises(ValueError, match="entities \\['nobody'\\] are not in the forecast"):
        plot_entity_risk(forecast, entities=["nobody"], ax=Figure().subplots())
    with pytest.raises(ValueError, match="forecast lacks columns \\['p_fail'\\]"):
        plot_entity_risk(forecast.drop(columns="p_fail"), ax=Figure().subplots())


def test_riskiest_bars(fitted, ax):
    _, forecast = fitted
    assert plot_riskiest(forecast, horizon=2, top=5, ax=ax) is ax
    rows = forecast[forecast["horizon"] == 2].assign(e=forecast["entity"].astype(str))
    top = rows.sort_values(["p_fail", "e"], ascending=[False, True]).head(5)
    assert len(ax.patches) == 5
    bars = sorted(ax.patches, key=lambda b: -b.get_y())  # top to bottom
    np.testing.assert_allclose([b.get_width() for b in bars], top["p_fail"])
    # the riskiest on top, its tick label naming entity and state (tick labels run bottom to top)
    assert [t.get_position()[1] for t in ax.get_yticklabels()] == [0, 1, 2, 3, 4]
    labels = tick_texts(ax.get_yticklabels())[::-1]
    assert labels == [f"{e} ({s})" for e, s in zip(top["e"], top["state"])]
    # each bar's value at its end
    assert [t.get_text() for t in ax.texts][::-1] == [f"{p:.2f}" for p in top["p_fail"]]
    assert ax.get_xlabel() == "P(fail within h = 2)"
    assert ax.get_title() == f"riskiest entities: top 5 of {forecast['entity'].nunique()}"
    plot_riskiest(forecast, ax=Figure().subplots())  # default: the largest horizon, top 15
    with pytest.raises(ValueError, match="horizon = 9 is not in the forecast; horizons: 1..4"):
        plot_riskiest(forecast, horizon=9, ax=Figure().subplots())


def test_riskiest_zooms_in_on_rare_failures(ax):
    forecast = pd.DataFrame({"entity": ["a", "b", "c"], "state": ["ok", "ok", "worn"],
                             "horizon": 1, "p_fail": [0.001, 0.002, 0.04]})
    plot_riskiest(forecast, ax=ax)
    assert ax.get_xlim() == pytest.approx((0.0, 0.052))
    assert [t.get_text() for t in ax.texts] == ["0.001", "0.002", "0.04"]  # bottom to top
    assert tick_texts(ax.get_yticklabels()) == ["a (ok)", "b (ok)", "c (worn)"]


def test_model_figures_on_a_new_figure(fitted):
    model, forecast = fitted
    for draw in (lambda: plot_transitions(model), lambda: plot_state_diagram(model),
                 lambda: plot_failure_curve(model, 3), lambda: plot_entity_risk(forecast),
                 lambda: plot_riskiest(forecast)):
        ax = draw()
        try:
            assert ax.figure.number in plt.get_fignums()
        finally:
            plt.close(ax.figure)


# ------------------------------------------------------------------ summaries in notebooks
def test_fault_predictor_html_table(fitted):
    model, _ = fitted
    html = model._repr_html_()
    assert "fitted on {:,} transitions".format(model.n_transitions_) in html
    assert "5 states (3 failure, ✕)" in html
    for name in model.state_names_ + model.event_names_ + ["P(fail within 10)", "transitions out"]:
        assert name in html
    assert html.count("<td>✕</td>") == 3
    # Jupyter prefers the mime bundle: it carries the same table, and the sklearn text repr
    bundle = model._repr_mimebundle_()
    assert bundle["text/html"] == html and bundle["text/plain"] == repr(model)
    unfitted = FaultPredictor(states={"failure": ["down"]})
    assert "FaultPredictor" in unfitted._repr_html_() and "fitted on" not in unfitted._repr_html_()


def test_backtest_result_html(result):
    html = result._repr_html_()
    assert html.count("<li>") == 2 * len(BASELINES)  # verdict on bss and on roc_auc
    assert "markov beats climatology" in html
    assert "horizons 1 and 3" in html
    assert html.count("<tr>") == 2 * len(MODELS)  # body rows: the models at h = 1 and h = 3
