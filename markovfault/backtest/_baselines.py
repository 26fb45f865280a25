"""A machine-learning baseline on recent history, for the backtest.

:func:`history_features` turns each forecast origin (a global step index into
a :class:`~markovfault.trajectories.Trajectories`) into a row of features of
the history known at that step: the current and lagged states and events,
recent failures and the time since the previous step. Every feature depends
only on the last ``max(n_lags + 1, window)`` steps of the origin's entity, so
none grows with time and a test origin looks like the training origins.

:class:`GradientBoostingBaseline` fits one
:class:`sklearn.ensemble.HistGradientBoostingClassifier` per training set on
those features, predicting the step of the first failure
(:func:`first_failure_classes`); P(fail within h) is the cumulative sum of the
class probabilities. The backtest compares it with the Markov chain on the
same origins. scikit-learn is imported only when a model is fitted.
"""

from __future__ import annotations

import logging
import numbers
import warnings

import numpy as np

from .._estimator import Estimator
from ..exceptions import ConfigError, DataWarning, NotFittedError
from ..trajectories import Trajectories

__all__ = ["history_features", "first_failure_classes", "GradientBoostingBaseline", "NO_FAILURE"]

logger = logging.getLogger(__name__)

#: The class of an origin that saw ``H`` steps without a failure.
NO_FAILURE = 0

#: Largest number of categories one feature may have in a
#: HistGradientBoostingClassifier (its ``max_bins``, default 255).
MAX_CATEGORIES = 255


def history_features(
    traj: Trajectories,
    idx: np.ndarray,
    *,
    n_lags: int = 3,
    window: int = 10,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features of the recent history known at each origin step.

    The origin's own state and event are known. The history is the origin's
    entity's (runs split by ``max_gap`` are not separated here: the steps
    before a gap are still known, and ``time_since_previous`` shows the gap).

    Parameters
    ----------
    traj : Trajectories
        Encoded histories, sorted by (entity, time).
    idx : array-like of int of shape (n_origins,)
        Origins, as global step indices into the arrays of ``traj``.
    n_lags : int, default=3
        Number of lagged states and events.
    window : int, default=10
        Length of the look-back window for the failure features, counting the
        origin step.

    Returns
    -------
    X : ndarray of shape (n_origins, 2 * (n_lags + 1) + 3), float64
        Columns, in order:

        - ``state``, ``state_lag1`` .. ``state_lag{n_lags}``: state codes at
          ``idx``, ``idx - 1``, ...; NaN where that step is before the entity's
          first step.
        - ``event``, ``event_lag1`` .. ``event_lag{n_lags}``: event codes, NaN
          likewise.
        - ``n_failures_window``: number of failure steps among
          ``max(entity_start, idx - window + 1) .. idx``.
        - ``steps_since_failure``: ``idx`` minus the position of the entity's
          last failure at or before ``idx`` (0 when the origin's state is a
          failure), capped at ``window``. ``window`` also stands for "no
          failure seen yet", so the feature depends only on the last
          ``window`` steps.
        - ``time_since_previous``: ``time[idx] - time[idx - 1]`` in seconds
          for datetime trajectories and in sequence units for integer ones;
          NaN at the entity's first step.
    categorical_mask : ndarray of shape (n_features,), bool
        True for the state and event columns (codes, not quantities).
    names : list of str
        Column names.

    Raises
    ------
    TypeError
        If ``traj`` is not a Trajectories.
    ValueError
        If an origin is not an integer in ``0 .. n_steps - 1``.
    ConfigError
        If ``n_lags < 0`` or ``window < 1`` (a ``ValueError`` too).

    Notes
    -----
    Nothing depends on the absolute position or time (no step index, no
    calendar time, no age of the entity): such features only grow, and every
    test origin of a rolling-origin backtest would lie outside the training
    range. Computed for all origins at once from a cumulative sum of failures
    and each step's entity start; the only Python loop is over the lags.

    Examples
    --------
    Two entities; state 1 is a failure. Lags of the first step of entity 1
    (step 3) do not reach into entity 0:

    >>> traj = Trajectories.from_codes([0, 1, 0, 1, 0], [0, 1, 1, 0, 1], lengths=[3, 2],
    ...                                failure=["1"])
    >>> X, categorical, names = history_features(traj, [2, 3, 4], n_lags=1, window=2)
    >>> names
    ['state', 'state_lag1', 'event', 'event_lag1', 'n_failures_window', 'steps_since_failure', 'time_since_previous']
    >>> X
    array([[ 0.,  1.,  1.,  1.,  1.,  1.,  1.],
           [ 1., nan,  0., nan,  1.,  0., nan],
           [ 0.,  1.,  1.,  0.,  1.,  1.,  1.]])
    >>> categorical
    array([ True,  True,  True,  True, False, False, False])
    """
    if not isinstance(traj, Trajectories):
        raise TypeError(f"traj must be a Trajectories, got {type(traj).__name__}.")
    n_lags = _check_int(n_lags, "n_lags", 0)
    window = _check_int(window, "window", 1)
    idx = _check_origins(idx, traj.n_steps)
    return _features(traj, idx, int(n_lags), int(window))


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    if value < minimum:
        raise ConfigError(f"{name} == {value}, must be >= {minimum}.")
    return int(value)


def _feature_names(n_lags: int) -> tuple[list[str], np.ndarray]:
    lags = [f"lag{k}" for k in range(1, n_lags + 1)]
    names = (
        ["state"] + [f"state_{s}" for s in lags]
        + ["event"] + [f"event_{s}" for s in lags]
        + ["n_failures_window", "steps_since_failure", "time_since_previous"]
    )
    mask = np.zeros(len(names), dtype=bool)
    mask[: 2 * (n_lags + 1)] = True
    return names, mask


def _check_origins(idx, n_steps: int) -> np.ndarray:
    arr = np.asarray(idx)
    if arr.ndim != 1:
        raise ValueError(f"idx must be one-dimensional, got shape {arr.shape}.")
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"idx must hold integer step indices, got dtype {arr.dtype}; origins are "
            "positions in the Trajectories arrays."
        )
    arr = arr.astype(np.int64)
    bad = (arr < 0) | (arr >= n_steps)
    if bad.any():
        raise ValueError(
            f"idx[{int(np.argmax(bad))}] = {int(arr[bad][0])} is not a step of the "
            f"trajectories (0 .. {n_steps - 1})."
        )
    return arr


def _features(traj: Trajectories, idx: np.ndarray, n_lags: int, window: int):
    """Unchecked kernel of :func:`history_features`."""
    names, mask = _feature_names(n_lags)
    n, m = traj.n_steps, idx.shape[0]
    X = np.full((m, len(names)), np.nan)
    if m == 0:
        return X, mask, names
    pos = np.arange(n, dtype=np.int64)
    is_new = np.ones(n, dtype=bool)
    is_new[1:] = traj.entity[1:] != traj.entity[:-1]
    start = np.maximum.accumulate(np.where(is_new, pos, 0))[idx]  # entity start per origin

    for k in range(n_lags + 1):
        j = idx - k
        ok = j >= start
        jj = np.where(ok, j, 0)
        X[:, k] = np.where(ok, traj.state[jj], np.nan)
        X[:, n_lags + 1 + k] = np.where(ok, traj.event[jj], np.nan)

    fail = np.asarray(traj.is_failure, dtype=bool)[traj.state]
    cum = np.concatenate([[0], np.cumsum(fail, dtype=np.int64)])
    lo = np.maximum(start, idx - window + 1)
    col = 2 * (n_lags + 1)
    X[:, col] = cum[idx + 1] - cum[lo]

    last_fail = np.maximum.accumulate(np.where(fail, pos, -1))[idx]
    X[:, col + 1] = np.where(last_fail >= start, np.minimum(idx - last_fail, window), window)

    prev = np.maximum(idx - 1, 0)
    dt = (traj.time[idx] - traj.time[prev]).astype(np.float64)
    if traj.time_kind == "datetime":
        dt /= 1e9  # ns -> s
    X[:, col + 2] = np.where(idx > start, dt, np.nan)
    return X, mask, names


def _check_labels(y, n: int) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] == 0:
        raise ValueError(
            f"y has shape {np.shape(y)}, expected ({n}, n_horizons) with n_horizons >= 1: "
            "one row per origin."
        )
    if arr.size and not np.isin(arr, (-1, 0, 1)).all():
        raise ValueError(
            "y must hold 1 (failure within the horizon), 0 (none) or -1 (censored); "
            f"got values {np.unique(arr[~np.isin(arr, (-1, 0, 1))])[:5].tolist()}."
        )
    arr = arr.astype(np.int64)
    # along h a row is 0 (h steps seen, no failure) up to the first failure, then 1, then
    # -1 (censored): the stage 0 -> 1 -> 2 never goes back
    stage = np.where(arr < 0, 2, arr)
    back = np.diff(stage, axis=1) < 0
    if back.any():
        r, c = np.argwhere(back)[0]
        raise ValueError(
            f"y[{r}] = {arr[r].tolist()} is not monotone in the horizon (column {c + 1} after "
            f"column {c}): a row is 0 until a failure is seen, then 1, and -1 once censored."
        )
    return arr


def first_failure_classes(y) -> np.ndarray:
    """The step of the first failure of each origin, from its labels per horizon.

    Parameters
    ----------
    y : array-like of int of shape (n_origins, n_horizons)
        ``y[i, h - 1]`` is 1 if a failure follows origin ``i`` within ``h``
        steps, 0 if ``h`` steps were seen without one, -1 if censored (fewer
        than ``h`` steps seen, none failed). Along ``h`` a row is 0 up to the
        first failure, then 1, and -1 once censored. A 1-D ``y`` is one
        horizon.

    Returns
    -------
    ndarray of int64 of shape (n_origins,)
        ``h`` in ``1 .. H`` (``H = n_horizons``) where the first 1 of the row
        is in column ``h - 1``; :data:`NO_FAILURE` (0) where the row has no 1
        and ``y[i, H - 1] == 0`` (``H`` steps seen without a failure); -1
        where neither: the origin is censored at ``H`` and says nothing about
        the step of its first failure.

    Raises
    ------
    ValueError
        If ``y`` holds other values than -1, 0 and 1, or a row is not
        monotone in ``h``.

    Examples
    --------
    >>> first_failure_classes([[0, 1, 1], [0, 0, 0], [1, 1, -1], [0, -1, -1], [-1, -1, -1]])
    array([ 2,  0,  1, -1, -1])
    """
    arr = np.asarray(y)
    y = _check_labels(arr, arr.shape[0] if arr.ndim else -1)
    pos = y == 1
    first = pos.argmax(axis=1) + 1
    return np.where(pos.any(axis=1), first, np.where(y[:, -1] == 0, NO_FAILURE, -1))


class GradientBoostingBaseline(Estimator):
    """Gradient boosting on recent history: one classifier of the step of the first failure.

    The machine-learning baseline of the backtest. Each training origin gets
    a class from its labels (:func:`first_failure_classes`): the step
    ``h = 1 .. H`` of its first failure, or :data:`NO_FAILURE` (0) when ``H``
    steps passed without one; origins censored at ``H`` are left out (counted
    in ``n_censored_``). One
    :class:`~sklearn.ensemble.HistGradientBoostingClassifier` learns the class
    from :func:`history_features` (state and event columns categorical, NaN
    handled natively), and the forecast is

    .. math:: P(\\text{fail within } h) = \\sum_{j=1}^{h} P(\\text{class} = j),

    monotone in ``h`` by construction. A class absent from the training set
    has probability 0.

    Parameters
    ----------
    n_lags : int, default=3
        Lagged states and events (see :func:`history_features`).
    window : int, default=10
        Look-back window of the failure features.
    max_train : int, default=20_000
        Largest number of training origins. When more origins have a class, a
        uniform random sample of this size (drawn with ``random_state``,
        without replacement, order kept) is the training set, and the sample
        is logged (``logging.INFO``). On the bundled sample and on simulated
        handlers with memory (every step an origin), the mean Brier skill and
        ROC AUC with 20,000 are within 0.0011 of those with every origin (up
        to 50,000 and 90,000), for a third to half of the fit.
    random_state : int, RandomState or None, default=0
        Seeds the sample, the early-stopping validation split and the
        classifier. An int gives the same fit every time; None a different
        one.
    max_iter : int, default=100
        Largest number of boosting iterations; each builds one tree per class
        present.
    learning_rate : float, default=0.2
        Shrinkage of each tree.
    max_leaf_nodes : int, default=4
        Leaves per tree. The features are few and coarse (codes, counts in a
        short window): on the bundled sample and on simulated handlers, trees
        of 4 leaves score as well as trees of 7 and better than 31, and each
        tree costs less.
    l2_regularization : float, default=1.0
        Passed to the classifier. Without it, a leaf holding a single failure
        among rare failures forecasts a probability near 1 (on drive-failure
        data the baseline's Brier skill fell to -117).
    early_stopping : bool or 'auto', default=True
        Stop when the log loss on a validation split (a random tenth of the
        training origins) has not improved by ``1e-7`` for
        ``n_iter_no_change`` iterations.
        ``'auto'``: only on more than 10,000 training origins, as scikit-learn
        does. The split is drawn here, not stratified: an origin whose class
        occurs nowhere else stays in the training part, so that rare classes
        (one origin with its first failure at step 7) neither break the split
        nor go missing from the fit.
    n_iter_no_change : int, default=5
        Patience of the early stopping. scikit-learn's 10 costs a third more
        iterations for the same scores on the bundled sample and on simulated
        handlers.
    n_threads : int or None, default=1
        OpenMP threads of the classifier while it fits and predicts (None:
        scikit-learn's default, every core). One by default: on capped
        training sets threads cost more than they save, and far more on a
        busy machine (the bundled sample's five fits took 2 s with one
        thread, 12 to 56 s with two on a shared 2-core machine); the backtest
        runs folds in parallel with ``n_jobs`` instead.

    Attributes
    ----------
    classifier_ : HistGradientBoostingClassifier or None
        The fitted classifier; None when the training set holds one class
        (the forecast is then that class's: 0 before its step, 1 from it on)
        or none (NaN).
    classes_ : ndarray of int64 of shape (n_classes,)
        The classes of the training set, sorted (a subset of ``0 .. H``).
    class_counts_ : ndarray of int64 of shape (n_horizons + 1,)
        Training origins per class ``0 .. H``.
    n_horizons_ : int
        ``H``, the number of columns of ``y``.
    n_candidates_ : int
        Training origins with a class, before the sample.
    n_censored_ : int
        Origins left out as censored at ``H``.
    n_train_ : int
        Origins of the training set: ``min(n_candidates_, max_train)``
        (with early stopping, a tenth of them is the validation split).
    train_idx_ : ndarray of int64 of shape (n_train_,)
        Those origins (step indices into the fitted ``traj``), in the order
        given.
    notes_ : dict of str to str
        What the fit had to work around: ``"censored"`` (origins left out),
        ``"sample"`` (the cap applied), ``"classes"`` (one class or none) and
        ``"categories"`` (codes bucketed).
    category_maps_ : dict of str to ndarray
        ``"state"`` and ``"event"``: the category given to each code seen at
        fit time. Identity when there are at most 255 codes; otherwise the 254
        most frequent codes among the training origins keep a category of
        their own and the rest share the category 254. Codes beyond the
        fitted vocabulary become NaN, which the classifier treats like an
        unseen category (as missing).
    feature_names_ : list of str
    categorical_mask_ : ndarray of shape (n_features,), bool

    Examples
    --------
    Failures (state 1) come in bursts of three steps, so the steps after a
    failure are likely failures too. Labels for horizons 1 and 2 (-1 where
    an entity's last steps leave the window unseen, unless a failure was
    seen):

    >>> rng = np.random.RandomState(0)
    >>> burst = rng.random_sample(2000) < 0.05
    >>> state = (burst | np.roll(burst, 1) | np.roll(burst, 2)).astype(int)
    >>> traj = Trajectories.from_codes(state, lengths=[1000, 1000], failure=["1"])
    >>> nxt = state.reshape(2, 1000)
    >>> y1 = np.pad(nxt[:, 1:], ((0, 0), (0, 1)), constant_values=-1)
    >>> y2 = np.maximum(y1, np.pad(nxt[:, 2:], ((0, 0), (0, 2)), constant_values=-1))
    >>> y2[:, -2] = np.where(y1[:, -2] == 1, 1, -1)
    >>> y = np.column_stack([y1.ravel(), y2.ravel()])
    >>> model = GradientBoostingBaseline(max_iter=20).fit(traj, np.arange(2000), y)
    >>> model.classes_, model.n_censored_  # each entity's last two steps (neither fails)
    (array([0, 1, 2]), 4)
    >>> p = model.predict_proba(traj, np.arange(2000))
    >>> p.shape
    (2000, 2)
    >>> bool((p[:, 1] >= p[:, 0]).all())
    True
    >>> bool(p[state == 1, 0].mean() > 0.5 > 0.1 > p[state == 0, 0].mean())
    True
    """

    def __init__(
        self,
        *,
        n_lags: int = 3,
        window: int = 10,
        max_train: int = 20_000,
        random_state=0,
        max_iter: int = 100,
        learning_rate: float = 0.2,
        max_leaf_nodes: int = 4,
        l2_regularization: float = 1.0,
        early_stopping=True,
        n_iter_no_change: int = 5,
        n_threads: int | None = 1,
    ):
        self.n_lags = n_lags
        self.window = window
        self.max_train = max_train
        self.random_state = random_state
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.l2_regularization = l2_regularization
        self.early_stopping = early_stopping
        self.n_iter_no_change = n_iter_no_change
        self.n_threads = n_threads

    def _check_params(self) -> None:
        _check_int(self.n_lags, "n_lags", 0)
        _check_int(self.window, "window", 1)
        _check_int(self.max_train, "max_train", 1)
        _check_int(self.max_iter, "max_iter", 1)
        _check_int(self.max_leaf_nodes, "max_leaf_nodes", 2)
        _check_int(self.n_iter_no_change, "n_iter_no_change", 1)
        if self.n_threads is not None:
            _check_int(self.n_threads, "n_threads", 1)
        if not (self.early_stopping is True or self.early_stopping is False
                or (isinstance(self.early_stopping, str) and self.early_stopping == "auto")):
            raise ConfigError(
                f"early_stopping = {self.early_stopping!r}; use True, False or 'auto'.")
        for name in ("learning_rate", "l2_regularization"):
            value = getattr(self, name)
            ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
            if not ok or not np.isfinite(value) or value < 0 or (name == "learning_rate"
                                                                  and value == 0):
                need = "> 0" if name == "learning_rate" else ">= 0"
                raise ConfigError(f"{name} = {value!r}, must be a finite number {need}.")

    def fit(self, traj: Trajectories, idx: np.ndarray, y: np.ndarray) -> "GradientBoostingBaseline":
        """Fit the classifier of the first failure's step on the training origins.

        Parameters
        ----------
        traj : Trajectories
            Histories holding the origins (steps after an origin may be
            present: features only look back).
        idx : array-like of int of shape (n_origins,)
            Training origins, global step indices into ``traj``.
        y : array-like of int of shape (n_origins, n_horizons)
            Column ``h - 1`` is horizon ``h`` (``h = 1 .. H``): 1 if a
            failure follows within ``h`` steps, 0 if ``h`` steps passed
            without one, -1 if censored; monotone in ``h`` (see
            :func:`first_failure_classes`). A 1-D ``y`` is one horizon.

        Returns
        -------
        self

        Raises
        ------
        ConfigError
            If a parameter is out of range.
        ValueError
            If ``idx`` or ``y`` is malformed.

        Warns
        -----
        DataWarning
            When no origin has a class (every one is censored at ``H``): the
            forecast is NaN.
        """
        self._check_params()
        if not isinstance(traj, Trajectories):
            raise TypeError(f"traj must be a Trajectories, got {type(traj).__name__}.")
        idx = _check_origins(idx, traj.n_steps)
        y = _check_labels(y, idx.shape[0])
        H = int(y.shape[1])
        cls = first_failure_classes(y)
        known = cls >= 0
        self.n_horizons_ = H
        self.notes_ = {}
        self.n_censored_ = int((~known).sum())
        self.n_candidates_ = int(known.sum())
        if self.n_censored_:
            self.notes_["censored"] = (
                f"{self.n_censored_} of {idx.shape[0]} origins are censored at h = {H} without "
                "a failure seen; left out")
        idx, cls = idx[known], cls[known]
        # the sample is drawn among the origins with a class only, so censored ones cannot
        # change which origins are drawn
        rng = _random_state(self.random_state)
        cap = int(self.max_train)
        if idx.shape[0] > cap:
            keep = np.sort(rng.choice(idx.shape[0], cap, replace=False))
            idx, cls = idx[keep], cls[keep]
            self.notes_["sample"] = f"{cap} of {self.n_candidates_} training origins sampled"
            logger.info("gradient boosting: training on a sample of %d of %d origins (max_train)",
                        cap, self.n_candidates_)
        self.n_train_ = int(idx.shape[0])
        self.train_idx_ = idx
        self.class_counts_ = np.bincount(cls, minlength=H + 1).astype(np.int64)
        self.classes_ = np.flatnonzero(self.class_counts_)

        X, mask, names = _features(traj, idx, int(self.n_lags), int(self.window))
        self.feature_names_ = names
        self.categorical_mask_ = mask
        self.category_maps_ = {
            "state": self._category_map(X[:, : self.n_lags + 1], traj.n_states, "state"),
            "event": self._category_map(X[:, self.n_lags + 1 : mask.sum()], traj.n_events, "event"),
        }
        self.classifier_ = None
        if self.classes_.size == 0:
            self.notes_["classes"] = "no training origin has a class; the forecast is NaN"
            warnings.warn(
                f"none of the {self.n_censored_} training origins has a class (each is censored "
                f"at h = {H} without a failure seen), so the forecast is NaN; use a longer "
                "training window.",
                DataWarning,
                stacklevel=2,
            )
            return self
        if self.classes_.size == 1:
            c = int(self.classes_[0])
            self.notes_["classes"] = (
                f"all {self.n_train_} training origins are of class {c} "
                f"({'no failure' if c == NO_FAILURE else f'first failure at step {c}'}); "
                "the forecast is constant")
            return self
        X = self._encode(X)
        stop = self.n_train_ > 10_000 if self.early_stopping == "auto" else self.early_stopping
        val = _validation_rows(cls, rng) if stop else np.zeros(self.n_train_, dtype=bool)
        self.classifier_ = _fit_classifier(
            X, cls, val, mask, rng.randint(np.iinfo(np.int32).max),
            max_iter=int(self.max_iter), learning_rate=float(self.learning_rate),
            max_leaf_nodes=int(self.max_leaf_nodes), n_iter_no_change=int(self.n_iter_no_change),
            l2_regularization=float(self.l2_regularization), threads=self._threads)
        return self

    def _threads(self):
        """A context limiting the classifier's OpenMP threads to ``n_threads``."""
        if self.n_threads is None:
            import contextlib

            return contextlib.nullcontext()
        from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

        return threadpool_limits(int(self.n_threads), user_api="openmp")

    def _category_map(self, codes: np.ndarray, n_codes: int, kind: str) -> np.ndarray:
        """Category of each code: identity, or the most frequent codes plus one bucket."""
        if n_codes <= MAX_CATEGORIES:
            return np.arange(n_codes, dtype=np.float64)
        seen = codes[~np.isnan(codes)].astype(np.int64)
        freq = np.bincount(seen, minlength=n_codes)
        order = np.argsort(-freq, kind="stable")
        lut = np.full(n_codes, MAX_CATEGORIES - 1, dtype=np.float64)
        lut[order[: MAX_CATEGORIES - 1]] = np.arange(MAX_CATEGORIES - 1)
        self.notes_["categories"] = (
            self.notes_.get("categories", "")
            + f"{n_codes} {kind} codes: the {MAX_CATEGORIES - 1} most frequent kept, "
            f"the rest share category {MAX_CATEGORIES - 1}. "
        )
        return lut

    def _encode(self, X: np.ndarray) -> np.ndarray:
        """Map state and event codes to categories (in place)."""
        k = self.n_lags + 1
        for cols, lut in ((slice(0, k), self.category_maps_["state"]),
                          (slice(k, 2 * k), self.category_maps_["event"])):
            block = X[:, cols]
            known = ~np.isnan(block) & (block < lut.shape[0])
            out = np.full(block.shape, np.nan)
            out[known] = lut[block[known].astype(np.int64)]
            X[:, cols] = out
        return X

    def predict_class_proba(self, traj: Trajectories, idx: np.ndarray) -> np.ndarray:
        """Probability of each class, the step of the first failure, from each origin.

        Parameters
        ----------
        traj : Trajectories
            Histories holding the origins, with the vocabularies of the fit
            (codes appended to a vocabulary after the fit are treated as
            unseen).
        idx : array-like of int of shape (n_origins,)
            Origins, global step indices into ``traj``.

        Returns
        -------
        ndarray of shape (n_origins, n_horizons + 1)
            Column 0: no failure within ``H`` steps (:data:`NO_FAILURE`);
            column ``h``: the first failure at step ``h``. A class absent from
            the training set has probability 0; rows are NaN when no training
            origin had a class.
        """
        if not hasattr(self, "classifier_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet; call fit first."
            )
        if not isinstance(traj, Trajectories):
            raise TypeError(f"traj must be a Trajectories, got {type(traj).__name__}.")
        idx = _check_origins(idx, traj.n_steps)
        H = self.n_horizons_
        out = np.zeros((idx.shape[0], H + 1))
        if self.classes_.size == 0:
            out[:] = np.nan
        elif self.classifier_ is None:
            out[:, self.classes_[0]] = 1.0
        elif idx.shape[0]:
            X, _, names = _features(traj, idx, int(self.n_lags), int(self.window))
            if names != self.feature_names_:
                raise ValueError(
                    f"n_lags = {self.n_lags} gives features {names}, but the model was fitted "
                    f"on {self.feature_names_}; fit again after changing parameters."
                )
            with self._threads():
                proba = self.classifier_.predict_proba(self._encode(X))
            out[:, self.classifier_.classes_.astype(np.int64)] = proba
        return out

    def predict_proba(self, traj: Trajectories, idx: np.ndarray) -> np.ndarray:
        """Probability of a failure within each horizon, from each origin.

        Parameters
        ----------
        traj : Trajectories
            Histories holding the origins, with the vocabularies of the fit
            (codes appended to a vocabulary after the fit are treated as
            unseen).
        idx : array-like of int of shape (n_origins,)
            Origins, global step indices into ``traj``.

        Returns
        -------
        ndarray of shape (n_origins, n_horizons)
            ``P(fail within h)``: the sum of the probabilities of the classes
            ``1 .. h`` (:meth:`predict_class_proba`), non-decreasing in ``h``;
            NaN when no training origin had a class.
        """
        proba = self.predict_class_proba(traj, idx)
        return np.minimum(np.cumsum(proba[:, 1:], axis=1), 1.0)


#: Share of the training origins held out for early stopping (scikit-learn's default).
VALIDATION_FRACTION = 0.1


def _validation_rows(cls: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """A random tenth of the rows, less those whose class would be missing from the rest."""
    n = cls.shape[0]
    val = np.zeros(n, dtype=bool)
    val[rng.choice(n, int(np.ceil(VALIDATION_FRACTION * n)), replace=False)] = True
    in_train = np.bincount(cls[~val], minlength=cls.max() + 1) > 0
    return val & in_train[cls]


def _accepts_validation_data() -> bool:
    """Whether HistGradientBoostingClassifier.fit takes ``X_val`` (scikit-learn >= 1.7)."""
    import inspect

    from sklearn.ensemble import HistGradientBoostingClassifier

    return "X_val" in inspect.signature(HistGradientBoostingClassifier.fit).parameters


def _fit_classifier(X, cls, val, mask, seed, *, threads, **params):
    """The fitted classifier: on ``~val``, early-stopped on ``val`` when it holds a row
    (``threads``: a function giving the context that limits its threads).

    scikit-learn before 1.7 takes no validation set and draws a stratified one itself, which
    needs two origins of every class: where it cannot, the fit runs without early stopping.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier  # not at import: ~1 s

    model = HistGradientBoostingClassifier(categorical_features=mask, random_state=seed,
                                           early_stopping=bool(val.any()), **params)
    with threads():
        if not val.any():
            return model.fit(X, cls)
        if _accepts_validation_data():
            return model.fit(X[~val], cls[~val], X_val=X[val], y_val=cls[val])
        counts = np.bincount(cls)
        n_val = int(np.ceil(VALIDATION_FRACTION * cls.shape[0]))
        n_classes = int((counts > 0).sum())
        feasible = counts[counts > 0].min() >= 2 and n_classes <= min(n_val, cls.shape[0] - n_val)
        model.set_params(early_stopping=bool(feasible), validation_fraction=VALIDATION_FRACTION)
        return model.fit(X, cls)


def _random_state(seed) -> np.random.RandomState:
    """``sklearn.utils.check_random_state`` without importing scikit-learn (None: a fresh
    generator seeded by the operating system)."""
    if seed is None:
        return np.random.RandomState()
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        return np.random.RandomState(int(seed))
    if isinstance(seed, np.random.RandomState):
        return seed
    raise ConfigError(f"random_state = {seed!r}; give None, an int or a numpy RandomState.")
