"""The k-step failure recursion: one kernel for dense and sparse matrices (internal API).

Every forecast of markovfault ends here: the plain chain (dense ``(S, S)`` arrays), the history-aware chain
(``scipy.sparse`` matrices over augmented states), the marginal chain, what-if scenarios and every event mix.
The kernels trust their input; the public functions of :mod:`markovfault.forecast` validate it first.

"Fails within h" means at least one of the next h states is a failure state. With ``f_0 = 1_F`` and
``f_h = 1_F + 1_{not F} * (T f_{h-1})``, P(fail within h | S_0 = i) = (T f_{h-1})(i).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["check_horizon", "hitting_probabilities", "scenario_hitting_probabilities"]


def check_horizon(horizon) -> int:
    """``horizon`` as an int >= 1, or a TypeError / ValueError that names it."""
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)):
        raise TypeError(f"horizon = {horizon!r} must be an integer >= 1.")
    if horizon < 1:
        raise ValueError(f"horizon = {horizon}, must be >= 1.")
    return int(horizon)


def hitting_probabilities(matrix, mask: np.ndarray, horizon: int) -> np.ndarray:
    """P(fail within h | S_0 = i), h = 1..horizon, for a time-homogeneous chain: ``horizon`` mat-vecs.

    ``matrix`` is a dense ndarray or a scipy sparse matrix of shape (S, S); ``mask`` a bool array (S,).
    Returns an array (S, horizon).

    Examples
    --------
    >>> T = np.array([[0.9, 0.1], [0.5, 0.5]])
    >>> hitting_probabilities(T, np.array([False, True]), 3)[0]
    array([0.1  , 0.19 , 0.271])
    """
    fail = np.asarray(mask, dtype=np.float64)
    keep = 1.0 - fail
    out = np.empty((fail.shape[0], horizon))
    f = fail
    for h in range(horizon):
        g = np.asarray(matrix @ f).reshape(-1)
        out[:, h] = g
        f = fail + keep * g
    np.clip(out, 0.0, 1.0, out=out)
    return out


def scenario_hitting_probabilities(matrices: Sequence, mask: np.ndarray) -> np.ndarray:
    """P(fail within h | S_0 = i), h = 1..k, when step m moves by ``matrices[m]`` (dense or sparse).

    Folded from the last step backward, all horizons together: the fold of horizon h starts at step h with
    ``1_F`` and, at each earlier step m, becomes ``1_F + 1_{not F} * (P_m f)`` (at step 1 only ``P_1 f``). The
    folds of every horizon still open at step m share one product of ``P_m`` with a block of columns, so the
    whole scenario takes k passes over the matrices (one matrix-block product per step), not one fold per
    horizon. Returns an array (S, k).

    Examples
    --------
    Nothing can fail on the first step; then each step fails half of what is left:

    >>> ok = np.eye(2)
    >>> bad = np.array([[0.5, 0.5], [0.0, 1.0]])
    >>> scenario_hitting_probabilities([ok, bad, bad], np.array([False, True]))[0]
    array([0.  , 0.5 , 0.75])
    """
    fail = np.asarray(mask, dtype=np.float64)
    keep = 1.0 - fail
    k, n = len(matrices), fail.shape[0]
    out = np.empty((n, k))
    for m in range(k - 1, -1, -1):
        # column 0: the fold of horizon m + 1 starts here; the others continue those of horizons m + 2..k
        block = np.empty((n, k - m))
        block[:, 0] = fail
        if k - m > 1:
            np.multiply(keep[:, None], out[:, m + 1:], out=block[:, 1:])
            block[:, 1:] += fail[:, None]
        out[:, m:] = np.asarray(matrices[m] @ block).reshape(n, k - m)
    np.clip(out, 0.0, 1.0, out=out)
    return out
