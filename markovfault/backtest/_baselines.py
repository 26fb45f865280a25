"""A machine-learning baseline on recent history, for the backtest.

:func:`history_features` turns each forecast origin (a global step index into
a :class:`~markovfault.trajectories.Trajectories`) into a row of features of
the history known at that step: the current and lagged states and events,
recent failures and the time since the previous step. Every feature depends
only on the last ``max(n_lags + 1, window)`` steps of the origin's entity, so
none grows with time and a test origin looks like the training origins.

:class:`GradientBoostingBaseline` fits one
:class:`sklearn.ensemble.HistGradientBoostingClassifier` per horizon on those
features; the backtest compares it with the Markov chain on the same origins.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state, check_scalar

from ..exceptions import DataWarning, NotFittedError
from ..trajectories import Trajectories

__all__ = ["history_features", "GradientBoostingBaseline"]

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
        If an origin is not an integer in ``0 .. n_steps - 1``, or
        ``n_lags < 0`` or ``window < 1``.

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
    n_lags = check_scalar(n_lags, "n_lags", (int, np.integer), min_val=0)
    window = check_scalar(window, "window", (int, np.integer), min_val=1)
    idx = _check_origins(idx, traj.n_steps)
    return _features(traj, idx, int(n_lags), int(window))


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
    if arr.ndim != 2 or arr.shape[0] != n:
        raise ValueError(
            f"y has shape {np.shape(y)}, expected ({n}, n_horizons): one row per origin."
        )
    if arr.size and not np.isin(arr, (-1, 0, 1)).all():
        raise ValueError(
            "y must hold 1 (failure within the horizon), 0 (none) or -1 (censored); "
            f"got values {np.unique(arr[~np.isin(arr, (-1, 0, 1))])[:5].tolist()}."
        )
    return arr.astype(np.int64)


class GradientBoostingBaseline(BaseEstimator):
    """Gradient boosting on recent history, one classifier per horizon.

    The machine-learning baseline of the backtest: features from
    :func:`history_features`, one
    :class:`~sklearn.ensemble.HistGradientBoostingClassifier` per column of
    the labels (state and event columns categorical, NaN handled natively).

    Parameters
    ----------
    n_lags : int, default=3
        Lagged states and events (see :func:`history_features`).
    window : int, default=10
        Look-back window of the failure features.
    max_train : int, default=200_000
        Largest number of training origins. When more origins have at least
        one uncensored label, a uniform random subsample of this size (drawn
        with ``random_state``, without replacement, order kept) is used for
        every horizon.
    random_state : int, RandomState or None, default=0
        Seeds the subsample and each classifier (whose randomness is the
        early-stopping validation split). An int gives the same fit every time.
    max_iter : int, default=200
        Boosting iterations per horizon; ``early_stopping="auto"`` stops
        earlier on more than 10,000 training origins.
    l2_regularization : float, default=1.0
        Passed to the classifier. Without it, a leaf holding a single failure
        among rare failures forecasts a probability near 1 (on drive-failure
        data the baseline's Brier skill fell to -117).

    Attributes
    ----------
    models_ : list of length n_horizons
        Fitted classifier per horizon, or None where the forecast is a
        constant (see ``constants_``).
    constants_ : ndarray of shape (n_horizons,)
        The constant forecast of a horizon whose uncensored training labels
        are all one class (that class: 0.0 or 1.0), NaN where no label was
        uncensored, and NaN where a model is used.
    notes_ : dict of int to str
        Why a horizon (column index of ``y``) got a constant, and whether
        codes were bucketed (key ``"categories"``).
    category_maps_ : dict of str to ndarray
        ``"state"`` and ``"event"``: the category given to each code seen at
        fit time. Identity when there are at most 255 codes; otherwise the 254
        most frequent codes among the training origins keep a category of
        their own and the rest share the category 254. Codes beyond the
        fitted vocabulary become NaN, which the classifier treats like an
        unseen category (as missing).
    feature_names_ : list of str
    categorical_mask_ : ndarray of shape (n_features,), bool
    n_horizons_ : int
    n_train_ : int
        Number of training origins after dropping those censored at every
        horizon and subsampling.

    Examples
    --------
    Failures (state 1) come in bursts of three steps, so the steps after a
    failure are likely failures too. Labels for horizon 1: did the next step
    fail (-1 at each entity's last step: censored).

    >>> rng = np.random.RandomState(0)
    >>> burst = rng.random_sample(2000) < 0.05
    >>> state = (burst | np.roll(burst, 1) | np.roll(burst, 2)).astype(int)
    >>> traj = Trajectories.from_codes(state, lengths=[1000, 1000], failure=["1"])
    >>> idx = np.arange(2000)
    >>> y = np.append(state[1:], -1)[:, None]
    >>> y[999] = -1
    >>> model = GradientBoostingBaseline(max_iter=20).fit(traj, idx, y)
    >>> p = model.predict_proba(traj, idx)
    >>> p.shape
    (2000, 1)
    >>> bool(p[state == 1].mean() > 0.5 > 0.1 > p[state == 0].mean())
    True
    """

    def __init__(
        self,
        *,
        n_lags: int = 3,
        window: int = 10,
        max_train: int = 200_000,
        random_state=0,
        max_iter: int = 200,
        l2_regularization: float = 1.0,
    ):
        self.n_lags = n_lags
        self.window = window
        self.max_train = max_train
        self.random_state = random_state
        self.l2_regularization = l2_regularization
        self.max_iter = max_iter

    def _check_params(self) -> None:
        check_scalar(self.n_lags, "n_lags", (int, np.integer), min_val=0)
        check_scalar(self.window, "window", (int, np.integer), min_val=1)
        check_scalar(self.max_train, "max_train", (int, np.integer), min_val=1)
        check_scalar(self.max_iter, "max_iter", (int, np.integer), min_val=1)

    def fit(self, traj: Trajectories, idx: np.ndarray, y: np.ndarray) -> "GradientBoostingBaseline":
        """Fit one classifier per horizon on the training origins.

        Parameters
        ----------
        traj : Trajectories
            Histories holding the origins (steps after an origin may be
            present: features only look back).
        idx : array-like of int of shape (n_origins,)
            Training origins, global step indices into ``traj``.
        y : array-like of int of shape (n_origins, n_horizons)
            1 if a failure follows within the horizon, 0 if not, -1 if
            censored; a censored entry is left out of that horizon's training
            set. A 1-D ``y`` is one horizon.

        Returns
        -------
        self

        Warns
        -----
        DataWarning
            When every label of a horizon is censored (its forecast is NaN).
        """
        from sklearn.ensemble import HistGradientBoostingClassifier  # not at import: ~0.1 s

        self._check_params()
        if not isinstance(traj, Trajectories):
            raise TypeError(f"traj must be a Trajectories, got {type(traj).__name__}.")
        idx = _check_origins(idx, traj.n_steps)
        y = _check_labels(y, idx.shape[0])
        rng = check_random_state(self.random_state)

        # Origins censored at every horizon say nothing; drop them before the
        # subsample so that they cannot change which origins are drawn.
        useful = (y >= 0).any(axis=1)
        idx, y = idx[useful], y[useful]
        if idx.shape[0] > self.max_train:
            keep = np.sort(rng.choice(idx.shape[0], int(self.max_train), replace=False))
            idx, y = idx[keep], y[keep]

        X, mask, names = _features(traj, idx, int(self.n_lags), int(self.window))
        self.feature_names_ = names
        self.categorical_mask_ = mask
        self.n_horizons_ = int(y.shape[1])
        self.n_train_ = int(idx.shape[0])
        self.notes_ = {}
        self.category_maps_ = {
            "state": self._category_map(X[:, : self.n_lags + 1], traj.n_states, "state"),
            "event": self._category_map(X[:, self.n_lags + 1 : mask.sum()], traj.n_events, "event"),
        }
        X = self._encode(X)

        self.models_ = []
        self.constants_ = np.full(self.n_horizons_, np.nan)
        for h in range(self.n_horizons_):
            seed = rng.randint(np.iinfo(np.int32).max)
            rows = y[:, h] >= 0
            labels = y[rows, h]
            if labels.size == 0:
                self.notes_[h] = "every training label is censored; the forecast is NaN"
                warnings.warn(
                    f"y column {h}: every training label is censored (-1), so this "
                    "horizon's forecast is NaN; use a longer training window.",
                    DataWarning,
                    stacklevel=2,
                )
                self.models_.append(None)
                continue
            if labels.min() == labels.max():
                self.constants_[h] = float(labels[0])
                self.notes_[h] = (
                    f"all {labels.size} uncensored training labels are {labels[0]}; "
                    f"constant forecast {float(labels[0])}"
                )
                self.models_.append(None)
                continue
            model = HistGradientBoostingClassifier(
                max_iter=int(self.max_iter),
                categorical_features=mask,
                early_stopping="auto",
                l2_regularization=float(self.l2_regularization),
                random_state=seed,
            )
            self.models_.append(model.fit(X[rows], labels))
        return self

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
            ``P(y = 1)`` per origin and horizon.
        """
        if not hasattr(self, "models_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet; call fit first."
            )
        if not isinstance(traj, Trajectories):
            raise TypeError(f"traj must be a Trajectories, got {type(traj).__name__}.")
        idx = _check_origins(idx, traj.n_steps)
        X, _, names = _features(traj, idx, int(self.n_lags), int(self.window))
        if names != self.feature_names_:
            raise ValueError(
                f"n_lags = {self.n_lags} gives features {names}, but the model was fitted "
                f"on {self.feature_names_}; fit again after changing parameters."
            )
        X = self._encode(X)
        out = np.empty((idx.shape[0], self.n_horizons_))
        for h, model in enumerate(self.models_):
            if model is None:
                out[:, h] = self.constants_[h]
            elif idx.shape[0]:
                out[:, h] = model.predict_proba(X)[:, list(model.classes_).index(1)]
        return out
