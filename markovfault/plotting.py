"""Figures of a fitted model and of a backtest.

The model figures draw what a fitted :class:`~markovfault.FaultPredictor`
(or its :class:`~markovfault.EventMarkovChain`) and its forecasts hold:
:func:`plot_transitions` (a transition matrix as a heatmap, per event type
or marginal), :func:`plot_state_diagram` (the chain as a graph),
:func:`plot_failure_curve` (P(fail within h) by state, also under a what-if
scenario), and, for the DataFrame of :meth:`FaultPredictor.predict`,
:func:`plot_entity_risk` and :func:`plot_riskiest`. Failure states are
marked without colour: "(F)" and bold type in labels, hatched squares in
the state diagram.

Every ``plot_*`` function takes the object it draws and an optional
matplotlib ``ax``, draws on it (on a new figure when ``ax`` is None) and
returns the Axes. Nothing is computed here that the object does not
already expose: the model figures read ``chain_.transition_matrix_``,
``chain_.event_matrices_`` and ``failure_probabilities``; the backtest
figures draw what a :class:`~markovfault.backtest.BacktestResult` holds,
the reliability tables from :meth:`BacktestResult.calibration`, the curves
from :meth:`BacktestResult.curves`, the lead times from
:meth:`BacktestResult.lead_times`, and the scores from the rows of
:attr:`BacktestResult.metrics` with ``fold == "mean"`` (per-fold means).

matplotlib is imported inside each function, so ``import
markovfault.plotting`` works without it; a plot without it raises an
ImportError that says what to install.

In the backtest figures each model keeps one marker and one line style in
every figure (taken from its position in ``result.models``), with hollow
markers, so the models can be told apart in grey scale and where their
lines overlap.

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
    "plot_diagnostics",
    "plot_reliability",
    "plot_roc",
    "plot_precision_recall",
    "plot_skill_by_horizon",
    "plot_lead_times",
    "save_backtest_figures",
    "plot_transitions",
    "plot_state_diagram",
    "plot_failure_curve",
    "plot_entity_risk",
    "plot_riskiest",
    "plot_flux",
    "plot_attribution",
    "plot_propagation",
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
    pooled = _means(result)
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


def _means(result):
    metrics = result.metrics
    return metrics[metrics["fold"].astype(str) == "mean"]


def _mean_value(result, model, horizon, metric) -> float:
    pooled = _means(result)
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
    """ROC curves, one per model, with the per-fold mean AUC in the legend.

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
    The curves come from :meth:`BacktestResult.curves` (the forecasts of
    every fold together) and the AUC in the legend from the per-fold mean row
    (``fold == "mean"``) of ``result.metrics``. When the forecasts hold only
    one class the curve is empty and the AUC reads "undefined".
    """
    ax = _axes(ax)
    models = _check_models(result, models)
    horizon = _check_horizon(result, horizon)
    ax.plot([0, 1], [0, 1], label="no skill", **_REFERENCE)
    for i, model in enumerate(models):
        curve = result.curves(model, horizon)
        auc = _mean_value(result, model, horizon, "roc_auc")
        ax.plot(curve["fpr"], curve["tpr"], label=f"{model} (AUC {_fmt(auc)})",
                markevery=_stagger(i, len(models)), clip_on=False, **_style(result, model))
    _unit_square(ax)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate (recall)")
    ax.set_title(f"ROC, horizon h = {horizon}")
    ax.legend(loc="lower right", fontsize="small")
    return ax


def plot_precision_recall(result, horizon: int = 1, models=None, ax=None):
    """Precision-recall curves, one per model, with the per-fold mean average precision.

    A horizontal line marks the precision of a forecast without skill: the
    fraction of failures among the scored origins (``n_pos / n`` of the
    per-fold mean row, counts summed over folds: the same origins for every model).

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
    n = _mean_value(result, models[0], horizon, "n")
    n_pos = _mean_value(result, models[0], horizon, "n_pos")
    if n > 0:
        prevalence = n_pos / n
        ax.axhline(prevalence, label=f"no skill (failure rate {prevalence:.3f})", **_REFERENCE)
    for i, model in enumerate(models):
        curve = result.curves(model, horizon)
        ap = _mean_value(result, model, horizon, "average_precision")
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
    """A score (its per-fold mean) against the horizon, one line per model.

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
    pooled = _means(result)
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
    ax.set_title(f"{metric} by horizon, mean over folds")
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


# ============================================================ model figures
# What a fitted model holds: its transition matrices (the marginal chain and
# one per event type), P(fail within h) by state, and the forecasts of
# ``FaultPredictor.predict``. Failure states are marked without colour: a
# "(F)" suffix and bold type in tick labels and legends, a hatched square
# (other states: a plain circle) in the state diagram.

_FAILURE_MARK = " (F)"


def _chain(model_or_chain):
    """The fitted :class:`~markovfault.chain.EventMarkovChain` of a model, or the chain itself."""
    from .exceptions import NotFittedError

    chain = getattr(model_or_chain, "chain_", model_or_chain)
    if not hasattr(chain, "event_matrices_") and hasattr(chain, "base_"):
        chain = chain.base_  # history-aware states: the chain over the base states
    if not hasattr(chain, "event_matrices_"):
        if hasattr(model_or_chain, "fit"):
            raise NotFittedError(
                f"This {type(model_or_chain).__name__} is not fitted yet; fit it (or load a model "
                "with markovfault.load_model) before plotting it."
            )
        raise TypeError(
            f"expected a fitted FaultPredictor or EventMarkovChain, got {type(model_or_chain).__name__}"
        )
    return chain


def _state_label(name, failure: bool) -> str:
    return f"{name}{_FAILURE_MARK}" if failure else str(name)


def _bold_failures(labels, is_failure) -> None:
    for label, failure in zip(labels, is_failure):
        if failure:
            label.set_fontweight("bold")


def _matrix(chain, event):
    """The transition matrix to draw and the words that name it."""
    if event is None:
        return chain.transition_matrix_, "marginal chain T (next event unknown)"
    names = list(chain.event_names_)
    if event not in names:
        raise ValueError(f"event = {event!r} was not seen in training; events: {names}")
    return chain.event_matrices_[names.index(event)], f"next event {event!r}"


def _scenario_words(scenario) -> str:
    """``['a', 'a', 'b']`` -> ``'a ×2, b'``: runs of the same event compressed."""
    if isinstance(scenario, str):
        scenario = [s.strip() for s in scenario.split(",") if s.strip()]
    runs: list = []
    for event in scenario:
        if runs and runs[-1][0] == event:
            runs[-1][1] += 1
        else:
            runs.append([event, 1])
    words = [e if n == 1 else f"{e} ×{n}" for e, n in runs]
    if len(words) > 4:
        words = words[:3] + [f"... ({len(scenario)} events)"]
    return ", ".join(words)


def _check_forecast(forecast) -> None:
    need = {"entity", "state", "horizon", "p_fail"}
    missing = sorted(need - set(getattr(forecast, "columns", ())))
    if missing:
        raise ValueError(
            f"forecast lacks columns {missing}; pass the DataFrame that FaultPredictor.predict returns"
        )
    if len(forecast) == 0:
        raise ValueError("forecast is empty: nothing to draw")


def _line_style(i: int) -> dict:
    """Marker, line style and colour of the i-th curve, hollow markers as in the backtest figures."""
    return {
        "marker": _MARKERS[i % len(_MARKERS)],
        "linestyle": _LINESTYLES[i % len(_LINESTYLES)],
        "color": f"C{i % 10}",
        "markerfacecolor": "none",
        "markeredgewidth": 1.3,
        "markersize": 7,
        "linewidth": 1.6,
    }


def _horizon_axis(ax, horizons) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlim(min(horizons) - 0.25, max(horizons) + 0.25)
    ax.set_ylim(0.0, 1.0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.grid(True, linewidth=0.4, alpha=0.5)
    ax.set_xlabel("horizon h (steps)")
    ax.set_ylabel("P(fail within h)")


def plot_transitions(model_or_chain, event: str | None = None, ax=None):
    """Heatmap of a transition matrix: current state (rows) to next state (columns).

    Draws ``chain_.event_matrices_[e]`` for ``event`` (how that event moves
    an entity), or the marginal chain ``chain_.transition_matrix_`` when
    ``event`` is None. Each cell is annotated with its probability when
    there are at most 15 states (a colour bar is added instead otherwise);
    failure states carry "(F)" and bold type in the tick labels.

    Parameters
    ----------
    model_or_chain : FaultPredictor or EventMarkovChain
        A fitted model, or its chain.
    event : str, optional
        An event type of ``chain_.event_names_``; None for the marginal chain.
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.

    Returns
    -------
    matplotlib Axes
        The image is ``ax.images[0]``; rows sum to 1.

    Raises
    ------
    ValueError
        If ``event`` was not seen in training.
    NotFittedError
        If the model is not fitted.

    Examples
    --------
    >>> import pandas as pd
    >>> from matplotlib.figure import Figure
    >>> from markovfault import FaultPredictor
    >>> hist = pd.DataFrame({"entity": ["a"] * 6, "time": range(6),
    ...                      "event": ["tick", "spike"] * 3,
    ...                      "status": ["ok", "down", "ok", "ok", "down", "ok"]})
    >>> model = FaultPredictor(states={"failure": ["down"]}).fit(hist)
    >>> ax = plot_transitions(model, event="spike", ax=Figure().subplots())
    >>> ax.get_title()
    "transitions, next event 'spike'"
    >>> [t.get_text() for t in ax.get_yticklabels()]
    ['down (F)', 'ok']
    """
    ax = _axes(ax)
    chain = _chain(model_or_chain)
    matrix, words = _matrix(chain, event)
    n = matrix.shape[0]
    labels = [_state_label(s, f) for s, f in zip(chain.state_names_, chain.is_failure_)]
    image = ax.imshow(matrix, cmap="Blues", vmin=0.0, vmax=1.0, aspect="equal")
    if n > 15:  # too many cells to write in: a colour bar instead
        ax.figure.colorbar(image, ax=ax, shrink=0.8, label="probability")
    else:
        size = "medium" if n <= 6 else "small" if n <= 10 else "x-small"
        for i in range(n):
            for j in range(n):
                v = matrix[i, j]
                # rare but possible transitions (into failure, say) must not read "0.00"
                text = f"{v:.0e}" if 0 < v < 0.005 else f"{v:.2f}"
                ax.text(j, i, text, ha="center", va="center", fontsize=size,
                        color="white" if v > 0.55 else "black")
    ax.set_xticks(range(n), labels, rotation=40 if max(map(len, labels)) > 6 else 0,
                  ha="right" if max(map(len, labels)) > 6 else "center",
                  rotation_mode="anchor")
    ax.set_yticks(range(n), labels)
    _bold_failures(ax.get_xticklabels(), chain.is_failure_)
    _bold_failures(ax.get_yticklabels(), chain.is_failure_)
    ax.tick_params(length=0)
    ax.set_xlabel("next state    ((F) = failure state)")
    ax.set_ylabel("current state")
    ax.set_title(f"transitions, {words}")
    return ax


def plot_state_diagram(model, event: str | None = None, threshold: float = 0.02, ax=None):
    """The chain as a graph: states on a circle, arrows for transitions.

    An arrow ``i -> j`` is drawn for each probability of at least
    ``threshold`` in the marginal chain ``chain_.transition_matrix_`` (or in
    ``chain_.event_matrices_[e]`` for ``event``), its width growing with the
    probability; a loop outside a state is the probability of staying.
    Probabilities of at least 0.1 (0.3 when more than 30 arrows are drawn)
    are written on their arrows. Failure states are hatched squares with
    "(F)" after their name, the other states plain circles.

    Parameters
    ----------
    model : FaultPredictor or EventMarkovChain
        A fitted model, or its chain.
    event : str, optional
        An event type of ``chain_.event_names_``; None for the marginal chain.
    threshold : float, default=0.02
        Transitions less likely than this are not drawn.
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.

    Returns
    -------
    matplotlib Axes
        Each state's shape has the gid ``"state:<name>"`` and each arrow
        the gid ``"edge:<from>-><to>"``.

    Examples
    --------
    >>> import pandas as pd
    >>> from matplotlib.figure import Figure
    >>> from markovfault import FaultPredictor
    >>> hist = pd.DataFrame({"entity": ["a"] * 6, "time": range(6),
    ...                      "status": ["ok", "down", "ok", "ok", "down", "ok"]})
    >>> model = FaultPredictor(states={"failure": ["down"]}, alpha=0, beta=0).fit(hist)
    >>> ax = plot_state_diagram(model, ax=Figure().subplots())
    >>> sorted(p.get_gid() for p in ax.patches if str(p.get_gid()).startswith("edge:"))
    ['edge:down->ok', 'edge:ok->down', 'edge:ok->ok']
    """
    ax = _axes(ax)
    import numpy as np
    from matplotlib.font_manager import FontProperties
    from matplotlib.lines import Line2D
    from matplotlib.patches import Circle, FancyArrowPatch, Patch, Rectangle
    from matplotlib.path import Path as MplPath

    chain = _chain(model)
    if isinstance(threshold, bool) or not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold = {threshold!r} must lie in [0, 1]")
    matrix, words = _matrix(chain, event)
    names, failure = list(chain.state_names_), np.asarray(chain.is_failure_, dtype=bool)
    n = len(names)
    angle = np.pi / 2 - 2 * np.pi * np.arange(n) / n          # clockwise from the top
    xy = np.column_stack([np.cos(angle), np.sin(angle)])
    out = xy if n > 1 else np.array([[0.0, 1.0]])              # away from the centre
    r = min(0.17, 0.7 * np.sin(np.pi / n)) if n > 1 else 0.17  # node radius
    r_loop = 0.55 * r
    font = "medium" if n <= 6 else "small" if n <= 12 else "x-small"
    edges = [(i, j) for i in range(n) for j in range(n)
             if matrix[i, j] >= threshold and matrix[i, j] > 0]
    label_min = 0.1 if len(edges) <= 30 else 0.3

    nodes = []
    for k in range(n):
        if failure[k]:
            half = 0.9 * r
            node = Rectangle(xy[k] - half, 2 * half, 2 * half, facecolor="0.85",
                             edgecolor="black", hatch="///", linewidth=1.6, zorder=3)
        else:
            node = Circle(xy[k], r, facecolor="white", edgecolor="black", linewidth=1.6, zorder=3)
        node.set_gid(f"state:{names[k]}")
        ax.add_patch(node)
        nodes.append(node)

    # each name outside the circle of states, beyond its self-loop, with P(stay)
    texts = []
    for k in range(n):
        stay = float(matrix[k, k])
        text = _state_label(names[k], failure[k])
        if len(text) > 14:  # a joint state of QuantileStates: one line per column
            text = text.replace("|", "|\n")
        if stay >= max(threshold, label_min) and stay > 0:
            text += f"\nstays {stay:.2f}"
        c, s = out[k]
        texts.append(text)
        ax.text(*(xy[k] + out[k] * (r + 2 * r_loop + 0.03)), text,
                ha="left" if c > 0.3 else "right" if c < -0.3 else "center",
                va="bottom" if s > 0.3 else "top" if s < -0.3 else "center",
                multialignment="center", fontsize=font, linespacing=1.1,
                fontweight="bold" if failure[k] else "normal", zorder=5)

    def label(x, y, p):
        ax.text(x, y, f"{p:.2f}", ha="center", va="center", fontsize="x-small", zorder=6,
                bbox={"boxstyle": "round,pad=0.1", "facecolor": "white", "edgecolor": "0.7",
                      "linewidth": 0.5})

    def loop_path(k):
        """A circle of radius r_loop just outside node k, cut where it enters the node."""
        centre = xy[k] + out[k] * (r + 0.45 * r_loop)
        phi = np.linspace(0.0, 2 * np.pi, 181)
        back = np.arctan2(-out[k][1], -out[k][0])  # the direction towards the node
        pts = centre + r_loop * np.column_stack([np.cos(back + phi), np.sin(back + phi)])
        d = pts - xy[k]
        inside = (np.abs(d).max(axis=1) <= 0.9 * r * 1.04 if failure[k]
                  else np.hypot(d[:, 0], d[:, 1]) <= r * 1.04)
        keep = np.flatnonzero(~inside)
        return MplPath(pts[keep[0]:keep[-1] + 1])

    rad = 0.18
    for i, j in edges:
        p = float(matrix[i, j])
        style = {"arrowstyle": "-|>", "mutation_scale": 10 + 12 * p, "linewidth": 0.5 + 4.0 * p,
                 "color": "0.2", "alpha": 0.75, "zorder": 2, "shrinkA": 0, "shrinkB": 0}
        if i == j:  # a loop outside the node; its probability is in the name's label
            arrow = FancyArrowPatch(path=loop_path(i), **style)
        else:
            arrow = FancyArrowPatch(xy[i], xy[j], patchA=nodes[i], patchB=nodes[j],
                                    connectionstyle=f"arc3,rad={rad}", **style)
            if p >= label_min:
                # the midpoint of the quadratic Bezier curve that arc3 draws
                d = xy[j] - xy[i]
                label(*((xy[i] + xy[j]) / 2 + 0.5 * rad * np.array([d[1], -d[0]])), p)
        arrow.set_gid(f"edge:{names[i]}->{names[j]}")
        ax.add_patch(arrow)

    # Room for the names. Their extent in inches (about 0.6 em a character, 1.2 em a line)
    # becomes data units at the scale k (data units an inch) that the Axes' box gives the
    # limits, both axes at one scale (equal aspect); a few rounds of fixed-point iteration.
    em = FontProperties(size=font).get_size_in_points() / 72
    width = np.array([0.6 * em * max(map(len, t.split("\n"))) for t in texts])
    height = np.array([1.2 * em * (t.count("\n") + 1) for t in texts])
    side = np.abs(out[:, 0]) > 0.3
    top = np.abs(out[:, 1]) > 0.3
    ext_x = np.where(side, width, width / 2)
    ext_y = np.where(top, height, height / 2)
    anchor = np.abs(xy + out * (r + 2 * r_loop + 0.03))
    fig_w, fig_h = ax.figure.get_size_inches()
    box = ax.get_position()
    box_w, box_h = max(0.9 * box.width * fig_w, 1.0), max(0.9 * box.height * fig_h, 1.0)
    base = 1 + r + 2 * r_loop
    reach_x = reach_y = base
    for _ in range(8):
        k = min(max(2 * reach_x / box_w, 2 * reach_y / box_h), 20.0)
        reach_x = max(base, float(np.max(anchor[:, 0] + ext_x * k))) + 0.03
        reach_y = max(base, float(np.max(anchor[:, 1] + ext_y * k))) + 0.03
    ax.set_xlim(-reach_x, reach_x)
    ax.set_ylim(-reach_y, reach_y)
    ax.set_aspect("equal")
    ax.set_axis_off()
    handles = [
        Line2D([], [], marker="o", linestyle="", markersize=11, markerfacecolor="white",
               markeredgecolor="black", label="state"),
        Patch(facecolor="0.85", edgecolor="black", hatch="///", label="failure state (F)"),
    ]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncols=2,
              fontsize="small", frameon=False,
              title=f"arrow width ∝ probability; below {threshold:g} not drawn",
              title_fontsize="small")
    ax.set_title(f"state diagram, {words}")
    return ax


def plot_failure_curve(model, horizon: int, states=None, scenario=None, ax=None):
    """P(fail within h) against the horizon h, one line per current state.

    The values are ``model.failure_probabilities(horizon, scenario)``.

    Parameters
    ----------
    model : FaultPredictor or EventMarkovChain
        A fitted model.
    horizon : int
        The largest horizon.
    states : str or list of str, optional
        The states to draw, default all.
    scenario : sequence of str, optional
        The next events (a what-if), at least ``horizon`` of them; named in
        the title.
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.

    Returns
    -------
    matplotlib Axes

    Examples
    --------
    >>> import pandas as pd
    >>> from matplotlib.figure import Figure
    >>> from markovfault import FaultPredictor
    >>> hist = pd.DataFrame({"entity": ["a"] * 6, "time": range(6),
    ...                      "status": ["ok", "down", "ok", "ok", "down", "ok"]})
    >>> model = FaultPredictor(states={"failure": ["down"]}).fit(hist)
    >>> ax = plot_failure_curve(model, 3, ax=Figure().subplots())
    >>> [t.get_text() for t in ax.get_legend().get_texts()]
    ['down (F)', 'ok']
    """
    ax = _axes(ax)
    import numpy as np

    _chain(model)  # fitted?
    if isinstance(scenario, str):
        scenario = [s.strip() for s in scenario.split(",") if s.strip()]
    table = model.failure_probabilities(horizon, scenario)
    # the rows: the model's states (its history-aware states, if it has them)
    full = getattr(model, "chain_", model)
    names = [str(s) for s in getattr(table, "index", full.state_names_)]
    is_failure = np.asarray(full.is_failure_, dtype=bool)
    table = np.asarray(table)
    if states is None:
        states = names
    elif isinstance(states, str):
        states = [states]
    unknown = [s for s in states if s not in names]
    if unknown or not len(states):
        raise ValueError(f"states {list(unknown or states)} are not states of the model; "
                         f"states: {names}")
    h = np.arange(1, table.shape[1] + 1)
    for s in states:
        k = names.index(s)
        ax.plot(h, table[k], label=_state_label(s, is_failure[k]), clip_on=False,
                **_line_style(k))
    _horizon_axis(ax, h)
    title = "P(fail within h) by current state"
    if scenario is not None:
        title += f"\nwhat-if: next events {_scenario_words(list(scenario)[:len(h)])}"
    ax.set_title(title, fontsize="medium")
    legend = ax.legend(title="current state", fontsize="small", loc="best")
    _bold_failures(legend.get_texts(), [is_failure[names.index(s)] for s in states])
    return ax


def plot_entity_risk(forecast, entities=None, ax=None):
    """P(fail within h) against h for chosen entities of a forecast.

    Parameters
    ----------
    forecast : DataFrame
        What :meth:`FaultPredictor.predict` returns (columns ``entity``,
        ``state``, ``horizon``, ``p_fail``). With ``predict(..., interval=)``
        (columns ``p_fail_lo``, ``p_fail_hi``) each curve gets its band.
    entities : str or list of str, optional
        The entities to draw. Default: the 8 riskiest at the largest
        horizon (ties broken by name).
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.

    Returns
    -------
    matplotlib Axes
        One line per entity, labelled ``"<entity> (<state now>)"``.
        Entities in the same state have the same curve; their hollow
        markers differ, so overlapping lines stay visible.
    """
    ax = _axes(ax)
    _check_forecast(forecast)
    ents = forecast["entity"].astype(str)
    H = int(forecast["horizon"].max())
    chosen = entities is None
    if chosen:
        last = forecast[forecast["horizon"] == H].assign(_e=ents)
        entities = list(last.sort_values(["p_fail", "_e"], ascending=[False, True],
                                         kind="stable")["_e"].head(8))
    elif isinstance(entities, str):
        entities = [entities]
    entities = [str(e) for e in entities]
    known = set(ents)
    unknown = [e for e in entities if e not in known]
    if unknown or not entities:
        raise ValueError(f"entities {unknown or entities} are not in the forecast "
                         f"(it holds {len(known)} entities, e.g. {sorted(known)[:3]})")
    bands = {"p_fail_lo", "p_fail_hi"} <= set(forecast.columns)
    for i, e in enumerate(entities):
        rows = forecast[ents == e].sort_values("horizon")
        (line,) = ax.plot(rows["horizon"], rows["p_fail"], label=f"{e} ({rows['state'].iloc[0]})",
                          clip_on=False, **_line_style(i))
        if bands:  # the posterior interval, a light band in the line's colour
            ax.fill_between(rows["horizon"], rows["p_fail_lo"], rows["p_fail_hi"], color=line.get_color(),
                            alpha=0.12, linewidth=0)
    _horizon_axis(ax, forecast["horizon"].unique())
    which = f"the {len(entities)} riskiest at h = {H}" if chosen else f"{len(entities)} entities"
    ax.set_title(f"P(fail within h) by entity, {which}" + (", with posterior intervals" if bands else ""),
                 fontsize="medium")
    ax.legend(title="entity (state now)", fontsize="small", loc="best")
    return ax


def plot_riskiest(forecast, horizon: int | None = None, top: int = 15, ax=None):
    """Horizontal bars: the ``top`` entities with the highest P(fail within h).

    Parameters
    ----------
    forecast : DataFrame
        What :meth:`FaultPredictor.predict` returns.
    horizon : int, optional
        The horizon ``h`` to rank by; default the largest in ``forecast``.
    top : int, default=15
        How many entities to show (ties at the cut broken by name).
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.

    Returns
    -------
    matplotlib Axes
        The riskiest entity on top, each bar labelled ``"<entity> (<state>)"``
        with its probability written at its end. The x axis spans [0, 1],
        or zooms in when every probability shown is below 0.5.
    """
    ax = _axes(ax)
    _check_forecast(forecast)
    horizons = sorted(int(h) for h in forecast["horizon"].unique())
    H = horizons[-1] if horizon is None else horizon
    if isinstance(H, bool) or not hasattr(H, "__index__") or int(H) not in horizons:
        raise ValueError(f"horizon = {horizon!r} is not in the forecast; horizons: "
                         f"{horizons[0]}..{horizons[-1]}")
    if isinstance(top, bool) or not hasattr(top, "__index__") or top < 1:
        raise ValueError(f"top = {top!r} must be a positive integer")
    rows = forecast[forecast["horizon"] == int(H)].assign(_e=forecast["entity"].astype(str))
    n_all = len(rows)
    rows = rows.sort_values(["p_fail", "_e"], ascending=[False, True], kind="stable").head(int(top))
    rows = rows.iloc[::-1]  # bottom to top: the riskiest drawn last, on top
    y = list(range(len(rows)))
    bars = ax.barh(y, rows["p_fail"], height=0.7, color="C0", edgecolor="black", linewidth=0.6)
    # the whole [0, 1] unless every probability is small (rare failures): then zoom in
    p_max = float(rows["p_fail"].max())
    small = p_max < 0.5
    ax.bar_label(bars, labels=[f"{p:.3g}" if small else f"{p:.2f}" for p in rows["p_fail"]],
                 padding=3, fontsize="small")
    ax.set_yticks(y, [f"{e} ({s})" for e, s in zip(rows["_e"], rows["state"].astype(str))],
                  fontsize="small" if len(rows) > 10 else "medium")
    ax.set_xlim(0.0, 1.3 * max(p_max, 1e-9) if small else 1.08)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.grid(True, axis="x", linewidth=0.4, alpha=0.5)
    ax.set_axisbelow(True)
    ax.set_xlabel(f"P(fail within h = {int(H)})")
    ax.set_title(f"riskiest entities: top {len(rows)} of {n_all:,}", fontsize="medium")
    return ax


# ------------------------------------------------------------ diagnostics
def plot_diagnostics(report, alpha: float | None = None, ax=None):
    """The p-values of a :class:`~markovfault.diagnostics.DiagnosticsReport`, one bar per test and state (or
    order), with each row's effect size.

    Bars are ``-log10(p)`` of the asymptotic p-value (hollow) and of the bootstrap p-value (filled, where the
    report has one); the dashed line is the level ``alpha`` (default: the report's): bars past it reject.
    Each row's label ends in its effect size (``report.summary()``'s ``effect_name=effect``). Nothing is
    computed here but the logarithm.

    Parameters
    ----------
    report : DiagnosticsReport
    alpha : float, optional
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> from markovfault import Trajectories
    >>> from markovfault.diagnostics import diagnose
    >>> traj = Trajectories.from_codes([0, 1, 1, 0, 1, 0, 0, 1] * 4, lengths=[8] * 4, state_names=["ok", "slow"])
    >>> ax = plot_diagnostics(diagnose(None, traj, max_order=1), ax=Figure().subplots())
    >>> ax.get_xlabel()
    '-log10 p-value'
    """
    import numpy as np

    summary = report.summary()
    level = report.alpha if alpha is None else float(alpha)
    ax = _axes(ax)
    if summary.empty:
        ax.set_title("diagnostics: no test was run")
        return ax
    y = np.arange(len(summary))[::-1]
    tiny = 1e-300

    def logp(p):
        return -np.log10(np.clip(p.to_numpy(dtype=float), tiny, 1.0))

    has_boot = summary["p_boot"].notna().any()
    height = 0.4 if has_boot else 0.8
    ax.barh(y + (height / 2 if has_boot else 0), np.nan_to_num(logp(summary["p_value"])), height=height,
            facecolor="none", edgecolor="black", label="asymptotic")
    if has_boot:
        ax.barh(y - height / 2, np.nan_to_num(logp(summary["p_boot"])), height=height, color="0.4",
                label="bootstrap")
    ax.axvline(-np.log10(level), color="black", linestyle="--", linewidth=1, label=f"p = {level:g}")
    labels = [f"{t}: {lab}  ({name} = {_fmt(e)})" for t, lab, name, e in
              zip(summary["test"], summary["label"], summary["effect_name"], summary["effect"])]
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize="small")
    ax.set_xlabel("-log10 p-value")
    ax.set_title("diagnostics: p-values (effect sizes in the labels)")
    ax.legend(loc="lower right", fontsize="small")
    return ax


# ------------------------------------------------------------------ explanations
def plot_flux(flux, min_share: float = 0.01, ax=None):
    """The failure flux of a :class:`~markovfault.explain.FailureFlux` as a layered graph: one column of
    states per step (step 0 the start), an edge from a state at step t-1 to a state at step t for the
    failing paths that take it (summed over events), its width proportional to its flux. Edges into
    failure states are drawn solid, the others dashed; edges below ``min_share`` of ``p_fail`` are left
    out. Failure states are marked "(F)" in bold.

    Examples
    --------
    >>> import numpy as np
    >>> from matplotlib.figure import Figure
    >>> from markovfault.chain import EventMarkovChain
    >>> from markovfault.explain import failure_flux
    >>> chain = EventMarkovChain(alpha=0, beta=0).fit_from_counts(
    ...     np.array([[[60, 30, 10], [50, 30, 20], [70, 0, 30]]]), ["ok", "slow", "down"], ["a"],
    ...     [False, False, True])
    >>> ax = plot_flux(failure_flux(chain, 3, state="ok"), ax=Figure().subplots())
    >>> ax.get_xlabel()
    'step'
    """
    import numpy as np

    ax = _axes(ax)
    edges = flux.edges.groupby(["step", "state", "next_state"], observed=True, as_index=False)["flux"].sum()
    if flux.p_fail <= 0 or edges.empty:
        ax.set_title(f"failure flux from {flux.start}: no failure within {flux.horizon} steps")
        return ax
    edges = edges[edges["flux"] >= min_share * flux.p_fail]
    names = list(flux.edges["state"].cat.categories)
    failing = set(flux.failure_states)
    # the states that occur, failures at the bottom
    used = sorted(set(edges["state"].astype(str)) | set(edges["next_state"].astype(str)),
                  key=lambda s: (s in failing, names.index(s)))
    y = {s: len(used) - 1 - i for i, s in enumerate(used)}
    widest = edges["flux"].max()
    for row in edges.itertuples():
        into = str(row.next_state) in failing
        ax.plot([row.step - 1, row.step], [y[str(row.state)], y[str(row.next_state)]], color="black",
                linewidth=0.5 + 6.0 * row.flux / widest, linestyle="-" if into else "--",
                alpha=0.85, solid_capstyle="round")
    ax.plot([0], [y.get(flux.start_state, 0)], marker="o", color="black", markersize=8)
    ax.set_yticks(list(y.values()))
    ax.set_yticklabels([_state_label(s, s in failing) for s in y])
    _bold_failures(ax.get_yticklabels(), [s in failing for s in y])
    ax.set_xticks(np.arange(flux.horizon + 1))
    ax.set_xlabel("step")
    ax.set_title(f"failure flux from {flux.start} ({flux.start_state}): P(fail within {flux.horizon}) = "
                 f"{flux.p_fail:.3f}; width = flux")
    return ax


def plot_attribution(attribution, start=None, ax=None):
    """The Shapley values of an :class:`~markovfault.explain.Attribution` (one start: its first row unless
    ``start`` names another) as horizontal bars, with the removal effects as hollow markers on a second
    scale; standard errors as error bars for sampled values.

    Examples
    --------
    >>> import numpy as np
    >>> from matplotlib.figure import Figure
    >>> from markovfault.chain import EventMarkovChain
    >>> from markovfault.explain import attribute_events
    >>> chain = EventMarkovChain(alpha=0, beta=0).fit_from_counts(
    ...     np.array([[[60, 30, 10], [50, 30, 20], [70, 0, 30]], [[20, 10, 30], [10, 20, 30], [40, 0, 60]]]),
    ...     ["ok", "slow", "down"], ["a", "b"], [False, False, True])
    >>> ax = plot_attribution(attribute_events(chain, 3, state="ok"), ax=Figure().subplots())
    >>> [t.get_text() for t in ax.get_yticklabels()]
    ['a', 'b']
    """
    import numpy as np

    ax = _axes(ax)
    start = attribution.values.index[0] if start is None else start
    values = attribution.values.loc[start].sort_values()
    y = np.arange(len(values))
    err = None
    if attribution.standard_errors is not None:
        err = attribution.standard_errors.loc[start].reindex(values.index).to_numpy()
    ax.barh(y, values.to_numpy(), color="0.45", xerr=err, label="Shapley value")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels([str(v) for v in values.index])
    ax.set_xlabel("Shapley value: what each adds to P(fail)")
    twin = ax.twiny()
    twin.plot(attribution.removal_effects.loc[start].reindex(values.index).to_numpy(), y, "o",
              markerfacecolor="none", markeredgecolor="black", label="removal effect")
    twin.set_xlabel("removal effect (relative)")
    what = attribution.players if attribution.players == "states" else f"events, {attribution.neutral}"
    ax.set_title(f"{start}: P(fail within {attribution.horizon}) = {attribution.value[start]:.3f} ({what})",
                 fontsize="medium", pad=32)
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="lower right", fontsize="small")
    return ax


def plot_propagation(propagation, ranking=None, ax=None):
    """The failure propagation graph of a :class:`~markovfault.explain.PropagationResult`: the handlers
    on a circle, an arrow A -> B for each significant edge (B fails more after A fails, given B's own state),
    its width growing with the log odds ratio. With ``ranking`` (a frame of
    :func:`~markovfault.explain.rank_root_causes`), each handler's label gets its rank and the likeliest root
    cause a filled marker.

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> from markovfault.explain import propagation_test
    >>> from markovfault.simulate import simulate_call_graph
    >>> sim = simulate_call_graph(8, rate=0.1, random_state=0)
    >>> ax = plot_propagation(propagation_test(sim.histories, failure=sim.failure), ax=Figure().subplots())
    >>> ax.get_title().startswith("failure propagation")
    True
    """
    import numpy as np

    ax = _axes(ax)
    names = sorted(set(propagation.table["source"].astype(str)) | set(propagation.table["target"].astype(str)))
    angle = np.pi / 2 - 2 * np.pi * np.arange(len(names)) / max(len(names), 1)
    pos = {n: (np.cos(a), np.sin(a)) for n, a in zip(names, angle)}
    edges = propagation.edges
    logs = np.log(np.clip(edges["odds_ratio"].to_numpy(dtype=float), 1.0001, 1e6)) if len(edges) else np.zeros(0)
    top = logs.max() if len(logs) else 1.0
    for (a, b), lw in zip(edges[["source", "target"]].astype(str).itertuples(index=False), logs):
        (x0, y0), (x1, y1) = pos[a], pos[b]
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops={"arrowstyle": "-|>", "color": "black", "linewidth": 0.6 + 3.0 * lw / top,
                                "shrinkA": 14, "shrinkB": 14, "connectionstyle": "arc3,rad=0.12"})
    rank = {}
    if ranking is not None:
        rank = dict(zip(ranking["entity"].astype(str), ranking["rank"].astype(int)))
    for n, (x, y) in pos.items():
        first = rank.get(n) == 1
        ax.plot([x], [y], "o", markersize=22, markerfacecolor="0.3" if first else "white", markeredgecolor="black")
        label = f"{n} (#{rank[n]})" if n in rank else n
        ax.text(x * 1.36, y * 1.27, label, ha="center", va="center", fontsize="small",
                fontweight="bold" if first else "normal")
    ax.set_xlim(-1.7, 1.7)
    ax.set_ylim(-1.5, 1.5)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(f"failure propagation: {len(edges)} edges at FDR {propagation.alpha:g} "
                 f"(window {propagation.window}; width = log odds ratio)", fontsize="medium")
    return ax
