"""Figures of a backtest: they draw what a :class:`~markovfault.backtest.BacktestResult` holds.

Every ``plot_*`` function takes the result and an optional matplotlib
``ax``, draws on it (on a new figure when ``ax`` is None) and returns the
Axes. Nothing is computed here that the result does not already expose:
the reliability tables come from :meth:`BacktestResult.calibration`, the
curves from :meth:`BacktestResult.curves`, the lead times from
:meth:`BacktestResult.lead_times`, and the pooled scores from the rows of
:attr:`BacktestResult.metrics` with ``fold == "all"``.

matplotlib is imported inside each function, so ``import
markovfault.plotting`` works without it; a plot without it raises an
ImportError that says what to install.

Each model keeps one marker and one line style in every figure (taken from
its position in ``result.models``), with hollow markers, so the models can
be told apart in grey scale and where their lines overlap.

Examples
--------
>>> from matplotlib.figure import Figure
>>> from markovfault import FaultPredictor
>>> from markovfault.backtest import backtest
>>> from markovfault.simulate import simulate_histories
>>> hist = simulate_histories(8, 150, random_state=0, with_metrics=False)
>>> model = FaultPredictor(states={"failure": ["error", "timeout", "down"]},
...     columns={"entity": "handler", "time": "timestamp", "event": "event_type"})
>>> result = backtest(hist, model, horizon=3, cutoffs=3, baselines=["climatology"])
>>> ax = plot_reliability(result, horizon=1, ax=Figure().subplots())
>>> ax.get_title()
'reliability, horizon h = 1'
>>> [t.get_text() for t in ax.get_legend().get_texts()]
['perfectly calibrated', 'markov', 'climatology']
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "plot_reliability",
    "plot_roc",
    "plot_precision_recall",
    "plot_skill_by_horizon",
    "plot_lead_times",
    "save_backtest_figures",
]

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_LINESTYLES = ("-", "--", "-.", ":")
_REFERENCE = {"color": "0.55", "linestyle": ":", "linewidth": 1.0, "zorder": 1}

_METRIC_LABELS = {
    "bss": "Brier skill score (vs training base rate)",
    "brier": "Brier score (lower is better)",
    "roc_auc": "ROC AUC",
    "average_precision": "average precision",
    "ece": "expected calibration error (lower is better)",
    "log_loss": "log loss (lower is better)",
    "precision": "precision at the alert threshold",
    "recall": "recall at the alert threshold",
    "f1": "F1 at the alert threshold",
    "mean_lead_time": "mean lead time (steps)",
}


# ------------------------------------------------------------------ helpers
def _matplotlib():
    """Import matplotlib.pyplot, or say how to get it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "markovfault.plotting needs matplotlib; install it with "
            "`pip install matplotlib`."
        ) from exc
    return plt


def _axes(ax):
    """The Axes to draw on: ``ax``, or one on a new pyplot figure."""
    plt = _matplotlib()
    if ax is None:
        _, ax = plt.subplots()
    return ax


def _check_models(result, models) -> list:
    known = list(result.models)
    if models is None:
        return known
    if isinstance(models, str):
        models = [models]
    models = list(models)
    unknown = [m for m in models if m not in known]
    if unknown:
        raise ValueError(f"models {unknown} are not in this result; models: {known}")
    if not models:
        raise ValueError(f"models is empty; choose from {known}")
    return models


def _check_horizon(result, horizon) -> int:
    pooled = _pooled(result)
    horizons = sorted(int(h) for h in pooled["horizon"].unique())
    if isinstance(horizon, bool) or not hasattr(horizon, "__index__"):
        raise TypeError(f"horizon = {horizon!r} must be an integer; horizons: {horizons}")
    if int(horizon) not in horizons:
        raise ValueError(f"horizon = {horizon} was not scored; horizons: {horizons}")
    return int(horizon)


def _style(result, model) -> dict:
    """Marker, line style and colour of a model, fixed by its place in ``result.models``."""
    models = list(result.models)
    i = models.index(model) if model in models else len(models)
    return {
        "marker": _MARKERS[i % len(_MARKERS)],
        "linestyle": _LINESTYLES[i % len(_LINESTYLES)],
        "color": f"C{i % 10}",
        "markerfacecolor": "none",
        "markeredgewidth": 1.3,
        "markersize": 7,
        "linewidth": 1.6,
    }


def _pooled(result):
    metrics = result.metrics
    return metrics[metrics["fold"].astype(str) == "all"]


def _pooled_value(result, model, horizon, metric) -> float:
    pooled = _pooled(result)
    row = pooled[(pooled["model"] == model) & (pooled["horizon"] == horizon)]
    return float(row[metric].iloc[0]) if len(row) else float("nan")


def _fmt(value: float, digits: int = 3) -> str:
    return "undefined" if value != value else f"{value:.{digits}f}"


def _unit_square(ax) -> None:
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_aspect("equal")
    ax.grid(True, linewidth=0.4, alpha=0.5)


def _stagger(i: int, n: int) -> tuple:
    """``markevery`` for curve ``i`` of ``n``: markers every 0.1 axes-widths, offset per model."""
    return (0.1 * (i + 0.5) / max(n, 1), 0.1)


# ------------------------------------------------------------------ figures
def plot_reliability(result, horizon: int = 1, models=None, n_bins: int = 10, ax=None):
    """Reliability diagram: observed failure frequency against the forecast.

    One line per model through the non-empty bins of
    :meth:`BacktestResult.calibration` (mean forecast against fraction of
    failures), over the diagonal of perfect calibration.

    Parameters
    ----------
    result : BacktestResult
        The backtest to draw.
    horizon : int, default=1
        The horizon ``h`` of the forecasts P(fail within h).
    models : str or list of str, optional
        Models to draw, default all of ``result.models``.
    n_bins : int, default=10
        Equal-width bins on [0, 1].
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.

    Returns
    -------
    matplotlib Axes

    Raises
    ------
    ValueError
        If a model or the horizon is not in the result.
    ImportError
        If matplotlib is not installed.
    """
    ax = _axes(ax)
    models = _check_models(result, models)
    horizon = _check_horizon(result, horizon)
    ax.plot([0, 1], [0, 1], label="perfectly calibrated", **_REFERENCE)
    for model in models:
        table = result.calibration(model, horizon, n_bins=n_bins)
        ax.plot(table["mean_p"], table["frac_pos"], label=str(model), clip_on=False,
                **_style(result, model))
    _unit_square(ax)
    ax.set_xlabel("forecast P(fail within h)")
    ax.set_ylabel("observed failure frequency")
    ax.set_title(f"reliability, horizon h = {horizon}")
    ax.legend(loc="upper left", fontsize="small")
    return ax


def plot_roc(result, horizon: int = 1, models=None, ax=None):
    """ROC curves, one per model, with the pooled AUC in the legend.

    Parameters
    ----------
    result : BacktestResult
        The backtest to draw.
    horizon : int, default=1
        The horizon of the forecasts.
    models : str or list of str, optional
        Models to draw, default all of ``result.models``.
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.

    Returns
    -------
    matplotlib Axes

    Notes
    -----
    The curves come from :meth:`BacktestResult.curves` and the AUC from the
    pooled row (``fold == "all"``) of ``result.metrics``. When the pooled
    forecasts hold only one class the curve is empty and the AUC reads
    "undefined".
    """
    ax = _axes(ax)
    models = _check_models(result, models)
    horizon = _check_horizon(result, horizon)
    ax.plot([0, 1], [0, 1], label="no skill", **_REFERENCE)
    for i, model in enumerate(models):
        curve = result.curves(model, horizon)
        auc = _pooled_value(result, model, horizon, "roc_auc")
        ax.plot(curve["fpr"], curve["tpr"], label=f"{model} (AUC {_fmt(auc)})",
                markevery=_stagger(i, len(models)), clip_on=False, **_style(result, model))
    _unit_square(ax)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate (recall)")
    ax.set_title(f"ROC, horizon h = {horizon}")
    ax.legend(loc="lower right", fontsize="small")
    return ax


def plot_precision_recall(result, horizon: int = 1, models=None, ax=None):
    """Precision-recall curves, one per model, with the pooled average precision.

    A horizontal line marks the precision of a forecast without skill: the
    fraction of failures among the scored origins (``n_pos / n`` of the
    pooled metrics row, the same origins for every model).

    Parameters
    ----------
    result : BacktestResult
        The backtest to draw.
    horizon : int, default=1
        The horizon of the forecasts.
    models : str or list of str, optional
        Models to draw, default all of ``result.models``.
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.

    Returns
    -------
    matplotlib Axes
    """
    ax = _axes(ax)
    models = _check_models(result, models)
    horizon = _check_horizon(result, horizon)
    n = _pooled_value(result, models[0], horizon, "n")
    n_pos = _pooled_value(result, models[0], horizon, "n_pos")
    if n > 0:
        prevalence = n_pos / n
        ax.axhline(prevalence, label=f"no skill (failure rate {prevalence:.3f})", **_REFERENCE)
    for i, model in enumerate(models):
        curve = result.curves(model, horizon)
        ap = _pooled_value(result, model, horizon, "average_precision")
        ax.plot(curve["recall"], curve["precision"], drawstyle="steps-post",
                label=f"{model} (AP {_fmt(ap)})", markevery=_stagger(i, len(models)),
                clip_on=False, **_style(result, model))
    _unit_square(ax)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"precision-recall, horizon h = {horizon}")
    ax.legend(loc="best", fontsize="small")
    return ax


def plot_skill_by_horizon(result, metric: str = "bss", models=None, ax=None):
    """A pooled score against the horizon, one line per model.

    Parameters
    ----------
    result : BacktestResult
        The backtest to draw.
    metric : str, default='bss'
        A numeric column of ``result.metrics`` (``bss``, ``brier``,
        ``roc_auc``, ``average_precision``, ``ece``, ...). For ``bss`` a
        line at zero marks the skill of the training base rate.
    models : str or list of str, optional
        Models to draw, default all of ``result.models``.
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.

    Returns
    -------
    matplotlib Axes

    Raises
    ------
    ValueError
        If ``metric`` is not a numeric column of ``result.metrics``.
    """
    ax = _axes(ax)
    from matplotlib.ticker import MaxNLocator

    models = _check_models(result, models)
    pooled = _pooled(result)
    numeric = [c for c in pooled.columns
               if c not in ("fold", "horizon", "model") and pooled[c].dtype.kind in "biuf"]
    if metric not in numeric:
        raise ValueError(f"metric = {metric!r} is not a numeric column of result.metrics; "
                         f"choose from {numeric}")
    if metric == "bss":
        ax.axhline(0.0, label="training base rate (bss = 0)", **_REFERENCE)
    for model in models:
        rows = pooled[pooled["model"] == model].sort_values("horizon")
        ax.plot(rows["horizon"], rows[metric], label=str(model), **_style(result, model))
    horizons = sorted(int(h) for h in pooled["horizon"].unique())
    ax.set_xlim(horizons[0] - 0.25, horizons[-1] + 0.25)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if pooled.loc[pooled["model"].isin(models), metric].isna().all():
        ax.text(0.5, 0.5, f"{metric} is undefined for every model and horizon\n"
                "(see result.metrics['note'])", transform=ax.transAxes, ha="center",
                va="center")
    ax.grid(True, linewidth=0.4, alpha=0.5)
    ax.set_xlabel("horizon h (steps)")
    ax.set_ylabel(_METRIC_LABELS.get(metric, metric))
    ax.set_title(f"{metric} by horizon, pooled over folds")
    ax.legend(fontsize="small")
    return ax


def plot_lead_times(result, model: str = "markov", horizon: int | None = None, ax=None):
    """Histogram of how many steps ahead the alarm rose for the caught failures.

    A failure is caught when a forecast at ``horizon`` reached the alert
    threshold (``result.params["threshold"]``) before it; see
    :meth:`BacktestResult.lead_times`. The title gives caught / total.

    Parameters
    ----------
    result : BacktestResult
        The backtest to draw.
    model : str, default='markov'
        The model whose alarms are counted.
    horizon : int, optional
        Horizon of the forecasts, default the largest (``result.params["horizon"]``).
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.

    Returns
    -------
    matplotlib Axes
        With a text note instead of bars when no failure was caught.
    """
    ax = _axes(ax)
    from matplotlib.ticker import MaxNLocator

    (model,) = _check_models(result, [model])
    horizon = int(result.params["horizon"]) if horizon is None else _check_horizon(result, horizon)
    table = result.lead_times(model, horizon)
    caught = table.loc[table["caught"].astype(bool), "lead_time"].to_numpy()
    n_caught, n_total = len(caught), len(table)
    if n_caught:
        edges = [k + 0.5 for k in range(0, int(max(caught.max(), horizon)) + 1)]
        ax.hist(caught, bins=edges, color="0.55", edgecolor="black", hatch="//",
                label=f"{model}: caught failures")
    else:
        why = "no failure to forecast" if n_total == 0 else (
            f"no failure caught at threshold {result.params['threshold']:g}")
        ax.text(0.5, 0.5, why, transform=ax.transAxes, ha="center", va="center")
        ax.set_xlim(0.5, horizon + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlabel("lead time (steps between first alarm and failure)")
    ax.set_ylabel("caught failures")
    ax.set_title(f"lead times, {model}, h = {horizon}: caught {n_caught} of {n_total} failures\n"
                 f"(alert threshold {result.params['threshold']:g})", fontsize="medium")
    return ax


def save_backtest_figures(result, path) -> list[Path]:
    """Write the figures of a backtest as PNG files into a directory.

    The files are ``reliability_h1.png`` and ``reliability_h{H}.png`` (at
    the largest horizon ``H``, when ``H > 1``), ``roc.png`` and ``pr.png``
    (one panel at h = 1 and one at h = H), ``skill.png`` (Brier skill score
    by horizon) and ``lead_times.png`` (of ``markov``, or of the first
    model, at h = H).

    The figures are drawn on :class:`matplotlib.figure.Figure` objects with
    the Agg canvas, outside pyplot: the user's backend and open figures are
    left alone. This is what :meth:`BacktestResult.to_dir` calls.

    Parameters
    ----------
    result : BacktestResult
        The backtest to draw.
    path : str or Path
        Directory to write to; created if missing.

    Returns
    -------
    list of Path
        The files written, in the order above.
    """
    _matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    H = int(result.params["horizon"])
    horizons = [1] if H == 1 else [1, H]
    lead_model = "markov" if "markov" in result.models else result.models[0]

    def draw(name, panels, size=(5.6, 5.2)):
        """One figure, one panel per callable ``panel(ax)``, saved and cleared."""
        fig = Figure(figsize=(size[0] * len(panels), size[1]), layout="constrained")
        FigureCanvasAgg(fig)
        for ax, panel in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
            panel(ax)
        out = path / name
        fig.savefig(out, dpi=110)
        fig.clear()
        return out

    wide = (6.4, 4.4)
    written = [draw(f"reliability_h{h}.png", [lambda ax, h=h: plot_reliability(result, h, ax=ax)])
               for h in horizons]
    written.append(draw("roc.png", [lambda ax, h=h: plot_roc(result, h, ax=ax) for h in horizons]))
    written.append(draw("pr.png", [lambda ax, h=h: plot_precision_recall(result, h, ax=ax)
                                   for h in horizons]))
    written.append(draw("skill.png", [lambda ax: plot_skill_by_horizon(result, "bss", ax=ax)],
                        size=wide))
    written.append(draw("lead_times.png",
                        [lambda ax: plot_lead_times(result, lead_model, H, ax=ax)], size=wide))
    return written
