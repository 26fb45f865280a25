"""The ``backtest`` function (see :mod:`markovfault.backtest`): checks, cutoffs and windows, then a
:class:`~markovfault.backtest._run.Run` scores the folds."""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from .._backends import backend_for
from .._constants import BASELINES
from .._eventmix import check_event_mixes
from .._recursion import check_horizon
from .._timehorizons import parse_within
from .._timecodec import parse_max_gap, time_int, time_kind_of, to_time_int
from ..exceptions import ConfigError, HistoryError, UnknownStatusError
from ..predictor import FaultPredictor
from ..predictor._settings import check_failure_states, new_extractor, read_input
from ..predictor._time import check_time_settings
from ..predictor._updates import with_ends
from ..trajectories import encode_frame
from ._baselines import GradientBoostingBaseline
from ._result import BacktestResult
from ._run import Run, fmt_time
from ._timed import run_in_time

__all__ = ["backtest", "transform_states", "check_baselines", "resolve_cutoffs", "cutoffs_from",
           "resolve_window"]

logger = logging.getLogger("markovfault.backtest")


def backtest(
    histories,
    predictor,
    *,
    horizon: int | None = None,
    within=None,
    cutoffs: int | Sequence = 5,
    window: str = "expanding",
    window_size=None,
    origins: str = "cutoff",
    baselines: Sequence = BASELINES,
    threshold: float = 0.5,
    n_jobs: int | None = None,
    progress: bool | None = None,
    event_mix="long_run",
    recent_window=None,
    n_boot: int = 200,
    confidence: float = 0.95,
    random_state=0,
    rate_factors: bool = True,
) -> BacktestResult:
    """Rolling-origin backtest of a :class:`~markovfault.FaultPredictor` against baselines.

    Parameters
    ----------
    histories : DataFrame, path, or list of them
        Exported histories, read as by :func:`markovfault.read_histories`
        with the predictor's columns.
    predictor : FaultPredictor
        Unfitted (or fitted: only its settings are used): states, alpha,
        beta, columns, max_gap.
    horizon : int, optional
        Step horizons: forecasts and outcomes for h = 1..horizon (default 10
        when ``within`` is not given).
    within : duration or list of durations, optional
        Time horizons instead (``["5min", "30min"]``; numbers of the time
        column's units for integer time): P(a step within T after the origin
        ends in a failure state), scored against what happened in that time.
        With ``within`` and without ``horizon`` only time horizons are scored;
        give one of the two (run two backtests for both). The result's
        ``horizon`` columns then hold the labels (``"5min"``). The models:
        ``markov`` (the predictor's ``time_model``), the other time model
        (``markov_ctmc`` or ``markov_semi_markov``, so the two can be
        compared), and the baselines ``climatology``, ``state_frequency`` and
        ``gradient_boosting`` (on time features: the state, the age at the
        origin, the time since the previous step, the failures and steps in
        the longest horizon before the origin); ``no_events`` is a step
        baseline and is skipped. Each fold fits a clone of the predictor on
        its training window's rows. Origins at a cutoff have an age (the time
        since their last step), origins at every step have age 0. An outcome
        is 1 when a step in (origin, origin + T] ends in a failure state, 0
        when none did and the histories reach origin + T (their latest time is
        at least origin + T) or the entity ended by then, censored otherwise;
        training labels follow the same rule with the data ending at the
        cutoff. Lead times (``mean_lead_time``) are the time from the origin to
        the failure caught, in seconds (time units for integer time); the
        predictions carry each origin's ``silent_for`` and ``time_to_failure``.
        ``n_jobs`` is not used (the folds run in turn). See
        :mod:`markovfault.backtest._timed`.
    cutoffs : int or sequence of times, default=5
        ``N`` cutoffs at the ``k/(N+1)`` quantiles of the step times, or the
        cutoff times themselves (timestamps or integers, as the time column).
    window : {'expanding', 'sliding'}, default='expanding'
        Train on everything before the cutoff, or on ``window_size`` before it.
    window_size : duration or int, optional
        Length of the sliding window (``"7D"`` for timestamps, an integer for
        sequence numbers). Required with ``window='sliding'``.
    origins : {'cutoff', 'every_step'}, default='cutoff'
        Forecast from each entity's state at the cutoff, or from every step
        between this cutoff and the next (with the model of this fold).
    baselines : sequence, default=all of :data:`BASELINES`
        Names from :data:`BASELINES`, or a :class:`GradientBoostingBaseline`
        instance (scored as ``"gradient_boosting"``).
    threshold : float, default=0.5
        Alert threshold for precision, recall, F1 and lead time.
    n_jobs : int, optional
        Folds of the gradient-boosting baseline in parallel (joblib).
    progress : bool, optional
        Show a progress line on stderr; default: when stderr is a terminal.
    event_mix : str, dict, or a list of them, default='long_run'
        The Markov model's expected event mix (see
        :meth:`FaultPredictor.predict`); a list scores one model per mix:
        ``markov`` (long run), ``markov_recent`` (the mix of the
        ``recent_window`` before each origin), ``markov_mix`` (given shares).
    recent_window : duration or int, optional
        The trailing window of ``'recent'``.
    n_boot : int, default=200
        Bootstrap replicates of the intervals (0: estimates only). Each
        replicate resamples the scored *entities* with replacement, so the
        forecasts of one entity, which share its history, stay together.
    confidence : float, default=0.95
        Coverage of the percentile intervals.
    random_state : int, optional, default=0
        Seeds the bootstrap (the same intervals every run).
    rate_factors : bool, default=True
        Time horizons only: scale each entity's sojourns by its rate factor,
        estimated from its training sojourns (as ``predict(...,
        rate_factors=True)``).

    Returns
    -------
    BacktestResult
        Every score per fold, and per (horizon, model) the mean over folds
        weighted by their scored origins, with intervals
        (:attr:`BacktestResult.intervals`) and the differences between the
        Markov model and every other model with theirs
        (:attr:`BacktestResult.comparisons`). Scores of all folds pooled into
        one set (which mixes folds of different base rates: a constant forecast
        gets a pooled AUC below 0.5) only by :meth:`BacktestResult.pooled`.

    Examples
    --------
    Time horizons: two fits of the predictor (one per cutoff), its semi-Markov model against the
    continuous-time chain and the climatology, within 5 and 30 minutes of each cutoff:

    >>> import warnings
    >>> from markovfault import FaultPredictor
    >>> from markovfault.simulate import simulate_histories
    >>> hist = simulate_histories(10, 120, random_state=0, with_metrics=False)
    >>> model = FaultPredictor(states={"failure": ["error", "timeout", "down"]}, sojourn="weibull_min",
    ...     columns={"entity": "handler", "time": "timestamp", "event": "event_type"})
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     result = backtest(hist, model, within=["5min", "30min"], cutoffs=2, n_boot=20,
    ...                       baselines=["climatology"])
    >>> result.summary()[["model", "horizon", "n"]].values.tolist()  # doctest: +NORMALIZE_WHITESPACE
    [['markov', '5min', 20], ['markov_ctmc', '5min', 20], ['climatology', '5min', 20],
     ['markov', '30min', 20], ['markov_ctmc', '30min', 20], ['climatology', '30min', 20]]
    >>> result.folds[["fold", "horizon", "n_origins", "n_censored"]].values.tolist()
    [[0, '5min', 10, 0], [0, '30min', 10, 0], [1, '5min', 10, 0], [1, '30min', 10, 0]]

    Notes
    -----
    Training outcomes (of every baseline, and the base rate Brier skill is
    measured against) are built exactly like test outcomes, from what lies
    before the cutoff: positive when a failure is seen within h steps before
    the cutoff, negative when h steps without failure are seen before it,
    censored otherwise.

    The state extractor is fitted on the steps before the *first* cutoff and
    used for every fold, so no fold's states depend on its future; so are the
    edges of gap bins chosen from the data (``[states.history] gap_bins``),
    which ``result.params["history"]`` shows.

    ``histories`` may be a ``dask.dataframe.DataFrame`` (``markovfault[dask]``):
    the result is the same, exactly. Each partition (all the rows of its
    entities) is read, encoded and counted where it lies; only the fold count
    tensors, the per-state training rates, each entity's name and number of
    steps, and the origins' rows (state, history code, time, outcome per
    horizon) travel to the client. Integer ``cutoffs`` are exact quantiles
    found by a few rounds of per-partition histograms of the step times. The
    ``gradient_boosting`` baseline is the exception: it trains one classifier
    per fold on the features of (a sample of) the training steps, so with it
    the *encoded* steps (entity, time, event and state codes; not the frame)
    are collected to the client. Leave it out of ``baselines`` (it is in the default) to keep
    the data where it lies.
    """
    if not isinstance(predictor, FaultPredictor):
        raise TypeError(f"predictor must be a FaultPredictor, got {type(predictor).__name__}")
    if within is not None and horizon is not None:
        raise ConfigError("give horizon= (step horizons) or within= (time horizons), not both: run one "
                          "backtest for each.")
    if within is None:
        horizon = check_horizon(10 if horizon is None else horizon)
    if window not in ("expanding", "sliding"):
        raise ConfigError(f"window = {window!r}; use 'expanding' or 'sliding'.")
    if origins not in ("cutoff", "every_step"):
        raise ConfigError(f"origins = {origins!r}; use 'cutoff' or 'every_step'.")
    if not (0.0 <= float(threshold) <= 1.0):
        raise ConfigError(f"threshold = {threshold!r} must lie in [0, 1].")
    base_specs = check_baselines(baselines)
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
        raise ConfigError(f"n_boot = {n_boot!r} must be an integer >= 0 (0: no intervals).")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float, np.number)) \
            or not 0.0 < float(confidence) < 1.0:
        raise ConfigError(f"confidence = {confidence!r} must lie strictly between 0 and 1.")

    backend = backend_for(histories)
    if within is not None:
        if backend is not None:
            raise ConfigError("time horizons are backtested in memory: backtest(ddf.compute(), ..., "
                              "within=...).")
        check_time_settings(predictor)
        frame, report = read_input(histories, predictor.columns, categorical=True)
        time_kind = time_kind_of(frame)
        horizons = parse_within(within, time_kind)
        cuts = resolve_cutoffs(cutoffs, time_int(frame), time_kind)
        width = resolve_window(window, window_size, time_kind)
        result = run_in_time(frame, report, predictor, horizons, cuts, width, origins, base_specs,
                             float(threshold), progress, event_mix, bool(rate_factors), int(n_boot),
                             float(confidence), random_state)
        result.params.update(window=window, window_size=window_size)
        return result
    if backend is not None:  # counted partition by partition where the data lie
        run, report = backend.backtest_run(
            histories, predictor, horizon=horizon, cutoffs=cutoffs, window=window,
            window_size=window_size, origins=origins, base_specs=base_specs,
            threshold=float(threshold), n_jobs=n_jobs, progress=progress,
            event_mix=event_mix, recent_window=recent_window)
    else:
        frame, report = read_input(histories, predictor.columns, categorical=True)
        times = time_int(frame)
        time_kind = time_kind_of(frame)
        cuts = resolve_cutoffs(cutoffs, times, time_kind)
        width = resolve_window(window, window_size, time_kind)

        # states learned from the first training window only
        extractor = new_extractor(predictor.states)
        extractor.fit(frame.loc[times < cuts[0]])
        codes = transform_states(extractor, frame)
        check_failure_states(extractor, hint=False)
        traj = encode_frame(frame, codes, extractor.state_names_, extractor.is_failure_, None,
                            predictor.max_gap)
        traj = with_ends(traj, extractor)
        mixes, recent_width = check_event_mixes(event_mix, traj.event_names, time_kind, recent_window)
        run = Run(traj, cuts, width, horizon, float(threshold), predictor, base_specs, origins,
                  n_jobs, progress, mixes, recent_width)
    result = run.execute(n_boot=int(n_boot), confidence=float(confidence),
                         random_state=random_state)
    tr = run.traj
    result.params.update(
        horizon=horizon, n_folds=len(run.cuts), window=window, window_size=window_size,
        origins=origins, threshold=float(threshold), time_kind=tr.time_kind,
        cutoffs=list(run.cuts), rows_read=report.n_rows_read, rows_dropped=report.n_dropped,
        failure_states=[n for n, f in zip(tr.state_names, tr.is_failure) if f],
        n_boot=int(n_boot), confidence=float(confidence),
        # the history-aware states of every fold (gap edges as chosen before the first cutoff)
        history=None if run.chain.spec is None else run.chain.spec.to_config(),
    )
    return result


def transform_states(extractor, frame) -> np.ndarray:
    """State codes of ``frame`` with the extractor fitted before the first cutoff."""
    try:
        return extractor.transform(frame)
    except UnknownStatusError as exc:
        raise UnknownStatusError(
            f"{exc} (the states are learned from the steps before the first cutoff; list every "
            "state in [states].states, or set [states].unknown, when labels first appear later)"
        ) from exc


def check_baselines(baselines) -> list:
    specs = []
    for b in baselines:
        if isinstance(b, GradientBoostingBaseline):
            specs.append(("gradient_boosting", b))
        elif isinstance(b, str) and b in BASELINES:
            specs.append((b, GradientBoostingBaseline() if b == "gradient_boosting" else None))
        else:
            raise ConfigError(f"unknown baseline {b!r}; the baselines are {list(BASELINES)}.")
    names = [n for n, _ in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"baselines {names} name one baseline twice")
    return specs


def _higher_ranks(n: int, q: np.ndarray) -> np.ndarray:
    """0-based ranks of the ``'higher'`` quantiles ``q`` of ``n`` values (as numpy 2 does)."""
    return np.clip(np.ceil((n - 1) * np.asarray(q, dtype=np.float64)), 0, n - 1).astype(np.int64)


def resolve_cutoffs(cutoffs, times: np.ndarray, time_kind: str) -> np.ndarray:
    times = np.asarray(times, dtype=np.int64)

    def kth(ranks):  # the values at these ranks of the sorted times
        return np.partition(times, ranks)[ranks]

    return cutoffs_from(cutoffs, time_kind, len(times), times.min(), times.max(), kth)


def cutoffs_from(cutoffs, time_kind: str, n: int, t_min, t_max, kth) -> np.ndarray:
    """The cutoff times; ``kth(ranks)`` gives the sorted step times at (unique, sorted)
    0-based ranks, so quantile cutoffs need no sorted copy of every time in one place."""
    if isinstance(cutoffs, (int, np.integer)) and not isinstance(cutoffs, bool):
        if cutoffs < 1:
            raise ConfigError(f"cutoffs = {cutoffs}, must be >= 1.")
        q = np.arange(1, cutoffs + 1) / (cutoffs + 1)
        ranks = np.unique(_higher_ranks(n, q))
        cuts = np.unique(np.asarray(kth(ranks)).astype(np.int64))
        cuts = cuts[cuts > t_min]
        if len(cuts) < cutoffs:
            raise HistoryError(
                f"the histories have too few distinct times for {cutoffs} cutoffs "
                f"(found {len(cuts)} usable); ask for fewer."
            )
        return cuts
    cuts = np.sort(to_time_int(cutoffs, time_kind))
    if len(cuts) == 0:
        raise ConfigError("cutoffs is empty")
    if cuts[0] <= t_min:
        raise HistoryError(
            f"cutoff {fmt_time(cuts[0], time_kind)} leaves no training data: the first step is at "
            f"{fmt_time(t_min, time_kind)}; choose cutoffs after it."
        )
    if cuts[-1] > t_max:
        raise HistoryError(
            f"cutoff {fmt_time(cuts[-1], time_kind)} lies after the last step "
            f"({fmt_time(t_max, time_kind)}): nothing to forecast; choose cutoffs inside the data."
        )
    if len(np.unique(cuts)) != len(cuts):
        raise ConfigError("cutoffs must be distinct")
    return cuts


def resolve_window(window, window_size, time_kind):
    if window == "expanding":
        if window_size is not None:
            raise ConfigError("window_size is only used with window='sliding'")
        return None
    if window_size is None:
        raise ConfigError("window='sliding' needs a window_size (e.g. \"7D\" or 1000)")
    try:
        return parse_max_gap(window_size, time_kind)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("max_gap", "window_size")) from exc
