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
    return backtest(hist, model, horizon=3, cutoffs=3, origins="every_step", baselines=BASELINES)


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
        "fold": ["0", "all"], "horizon": 1, "model": "markov", "n": 4, "n_pos": 4 * y_value,
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
    row = m[(m["fold"] == "all") & (m["model"] == model) & (m["horizon"] == horizon)]
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
    # no skill = the failure rate of the scored origins, n_pos / n of the pooled row
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
    assert ax.get_title() == "bss by horizon, pooled over folds"
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
