"""Every prior of the model, and the formulas that apply them, in one place (internal API).

Each prior is a number of pseudo-counts that pulls a row estimated from few transitions toward a sensible
target; :func:`check_prior` checks them all the same way.

============  ==========================================  ============================================
prior         pulls                                       toward
============  ==========================================  ============================================
``alpha``     each pooled transition row                  the uniform row (total mass alpha)
``beta``      each event-conditioned row; each arrival    the pooled row; the global event mix
              row
``backoff``   each history-aware row (next state and      its parent level's row (level by level
              arrival)                                    down to the base state's)
recent        the recent event mix of a base state        its long-run mix, reweighted by the overall
strength                                                  shift of the mix
pseudo-       the state-frequency baseline's rate per     the training base rate (one pseudo-origin)
origin        state and horizon
============  ==========================================  ============================================

A row without any data is its prior's target, whatever the prior's mass.
"""

from __future__ import annotations

import numpy as np

from .counts import event_arrival_counts
from .exceptions import ConfigError

__all__ = ["PRIORS", "check_prior", "estimate_tensors", "back_off", "shift_event_probs",
           "pseudo_origin_rates", "DEFAULT_RECENT_STRENGTH", "AUTO", "dirichlet_log_evidence",
           "dirichlet_strength"]

PRIORS = ("alpha", "beta", "backoff", "recent_strength")
DEFAULT_RECENT_STRENGTH = 500.0
#: A prior given as ``"auto"`` is chosen from the data (:func:`dirichlet_strength`).
AUTO = "auto"
#: The strengths :func:`dirichlet_strength` considers before refining the best one.
STRENGTH_GRID = np.logspace(-2, 5, 57)


def check_prior(name: str, value) -> float:
    """``value`` as a float pseudo-count (finite, >= 0), or a :class:`ConfigError` naming ``name``.

    Examples
    --------
    >>> check_prior("alpha", 2)
    2.0
    >>> check_prior("beta", -1)
    Traceback (most recent call last):
    ...
    markovfault.exceptions.ConfigError: beta = -1 must be a finite number >= 0.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise ConfigError(f"{name} = {value!r} must be a number >= 0.")
    if not np.isfinite(value) or value < 0:
        raise ConfigError(f"{name} = {value!r} must be a finite number >= 0.")
    return float(value)


def estimate_tensors(counts: np.ndarray, alpha: float = 1.0, beta: float = 1.0) -> dict:
    """Smoothed chain tensors from event-conditioned counts.

    Parameters
    ----------
    counts : ndarray of shape (n_events, n_states, n_states)
        ``counts[e, i, j]`` = #(state i, event e, next state j).
    alpha : float, default=1.0
        Total mass of the uniform Dirichlet prior on each pooled row.
    beta : float, default=1.0
        Pseudo-counts that shrink each event-conditioned row toward the pooled
        row, and each event-arrival row toward the global event frequencies.

    Returns
    -------
    dict with keys
        ``pooled`` (S, S), ``event_matrices`` (E, S, S), ``event_probs`` (S, E),
        ``transition_matrix`` (S, S), ``unvisited`` (S,) bool: states never left.

    Notes
    -----
    With :math:`C_{eij}` the counts, :math:`S` states and :math:`E` events,

    .. math::

        \\bar P_{ij} = \\frac{\\sum_e C_{eij} + \\alpha/S}{\\sum_{e,j} C_{eij} + \\alpha},\\qquad
        P_{eij} = \\frac{C_{eij} + \\beta \\bar P_{ij}}{\\sum_j C_{eij} + \\beta},

    .. math::

        Q_{ie} = \\frac{N_{ie} + \\beta g_e}{\\sum_e N_{ie} + \\beta},\\qquad
        T_{ij} = \\sum_e Q_{ie} P_{eij},

    where :math:`N_{ie} = \\sum_j C_{eij}` and :math:`g` are the global event
    frequencies. A row with no data at all (zero counts and zero prior mass)
    falls back to the uniform row for :math:`\\bar P`, to :math:`\\bar P` for
    :math:`P`, and to :math:`g` for :math:`Q`. With ``alpha = beta = 0`` and
    every row observed, :math:`T = \\bar P` exactly.

    Examples
    --------
    >>> C = np.array([[[3, 1], [0, 0]], [[0, 0], [2, 2]]])
    >>> est = estimate_tensors(C, alpha=0.0, beta=0.0)
    >>> est["pooled"]
    array([[0.75, 0.25],
           [0.5 , 0.5 ]])
    >>> est["event_probs"]
    array([[1., 0.],
           [0., 1.]])
    >>> bool(np.allclose(est["transition_matrix"], est["pooled"]))
    True
    """
    counts = np.asarray(counts, dtype=np.float64)
    n_events, n_states, _ = counts.shape
    pooled_counts = counts.sum(axis=0)  # (S, S)
    pooled_rows = pooled_counts.sum(axis=1)  # (S,)
    unvisited = pooled_rows == 0

    denom = pooled_rows + alpha
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled = (pooled_counts + alpha / n_states) / denom[:, None]
    # a row without data is its prior's target, whatever the prior's mass (also when alpha / S
    # underflows: alpha = 5e-324 would otherwise give a row of zeros)
    pooled[pooled_rows == 0] = 1.0 / n_states

    row = counts.sum(axis=2)  # (E, S)
    denom = row + beta
    with np.errstate(invalid="ignore", divide="ignore"):
        event_matrices = (counts + beta * pooled[None]) / denom[:, :, None]
    empty = row == 0
    if empty.any():
        event_matrices[empty] = np.broadcast_to(pooled, event_matrices.shape)[empty]

    arrivals = event_arrival_counts(counts)  # (S, E)
    total = arrivals.sum()
    glob = arrivals.sum(axis=0) / total if total > 0 else np.full(n_events, 1.0 / n_events)
    denom = arrivals.sum(axis=1) + beta
    with np.errstate(invalid="ignore", divide="ignore"):
        event_probs = (arrivals + beta * glob[None]) / denom[:, None]
    event_probs[arrivals.sum(axis=1) == 0] = glob

    transition = np.einsum("ie,eij->ij", event_probs, event_matrices)
    return {
        "pooled": pooled,
        "event_matrices": event_matrices,
        "event_probs": event_probs,
        "transition_matrix": transition,
        "unvisited": unvisited,
    }


def back_off(counts: np.ndarray, base_next: np.ndarray, base_arrivals: np.ndarray,
             gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """History-aware rows backed off to their base rows with ``gamma`` pseudo-counts.

    ``counts`` are N[e, a, j] (event, augmented state, next base state); ``base_next`` (E, A, S) and
    ``base_arrivals`` (A, E) are the base chain's rows of each augmented state's base state. Returns
    ``P(j | a, e)`` (E, A, S) and ``Q(e | a)`` (A, E)::

        P(j | a, e) = (N[e, a, j] + gamma * P_base[e, base(a), j]) / (N[e, a, .] + gamma)
        Q(e | a)    = (M[a, e]    + gamma * Q_base[base(a), e])    / (M[a, .]    + gamma)

    Examples
    --------
    >>> P, Q = back_off(np.array([[[3, 1]]]), np.array([[[0.5, 0.5]]]), np.array([[1.0]]), 4.0)
    >>> P[0, 0].tolist()  # (3 + 2) / 8, (1 + 2) / 8
    [0.625, 0.375]
    """
    rows = counts.sum(axis=2, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        P = (counts + gamma * base_next) / (rows + gamma)
    P = np.where(rows > 0, P, base_next)
    M = counts.sum(axis=2).T  # (A, E)
    mrow = M.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        Q = (M + gamma * base_arrivals) / (mrow + gamma)
    Q = np.where(mrow > 0, Q, base_arrivals)
    return P, Q


def shift_event_probs(event_probs: np.ndarray, base_of: np.ndarray, base_event_probs: np.ndarray,
                      recent_counts: np.ndarray, strength: float = DEFAULT_RECENT_STRENGTH) -> np.ndarray:
    """Event-arrival probabilities under the recent event mix, state by state.

    ``recent_counts[s, e]`` counts the events that arrived lately in base
    state ``s``. Each base state's recent mix is estimated with ``strength``
    pseudo-counts toward its long-run mix reweighted by how the overall mix
    has shifted (``base_event_probs[s, e] * r_e``, with ``r_e`` the recent
    over the long-run share of ``e`` among all arrivals), so that states
    seldom visited lately still get a sensible mix. Every (augmented)
    state's arrival row is then reweighted by its base state's ratio of
    recent to long-run mix:

    ``Q'[a, e] ∝ Q[a, e] * recent[s(a), e] / long_run[s(a), e]``.

    When the recent counts follow the long-run mix exactly, ``Q' = Q``.

    Examples
    --------
    >>> Q = np.array([[0.8, 0.2], [0.5, 0.5]])
    >>> same = shift_event_probs(Q, np.array([0, 1]), Q, np.array([[80, 20], [50, 50]]), 0.0)
    >>> bool(np.allclose(same, Q))
    True
    >>> shift_event_probs(Q, np.array([0, 1]), Q, np.array([[50, 50], [50, 50]]), 0.0)[0]
    array([0.5, 0.5])
    """
    Qb = np.asarray(base_event_probs, dtype=np.float64)
    recent_counts = np.asarray(recent_counts, dtype=np.float64)
    rows = recent_counts.sum(axis=1, keepdims=True)
    # the overall shift, measured against what the long-run mix predicts for these visits
    expected = (rows * Qb).sum(axis=0)
    observed = recent_counts.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(expected > 0, observed / expected, 1.0)
        target = Qb * r[None, :]
        target = target / np.where(target.sum(axis=1, keepdims=True) > 0,
                                   target.sum(axis=1, keepdims=True), 1.0)
        recent = (recent_counts + strength * target) / (rows + strength)
        recent = np.where(rows + strength > 0, recent, target)
        ratio = np.where(Qb > 0, recent / Qb, 0.0)
    w = event_probs * ratio[base_of]
    sums = w.sum(axis=1, keepdims=True)
    return np.where(sums > 0, w / np.where(sums > 0, sums, 1.0), event_probs)


def pseudo_origin_rates(n_pos: np.ndarray, n_orig: np.ndarray, base_rate: np.ndarray) -> np.ndarray:
    """Per (state, horizon) failure rates with one pseudo-origin at the training base rate, so a state
    seen at few origins keeps a sane rate (the state-frequency baseline)."""
    b = np.nan_to_num(base_rate, nan=0.0)[None, :]
    return (n_pos + b) / (n_orig + 1.0)


def dirichlet_log_evidence(counts, prior, strengths) -> np.ndarray:
    """Log marginal likelihood of count rows under Dirichlet priors of mean ``prior`` and each strength.

    Row ``r`` of ``counts`` is multinomial with probabilities drawn from
    ``Dirichlet(s * prior[r])``; integrating them out (Dirichlet-multinomial,
    in closed form, without the multinomial coefficient, which does not depend
    on ``s``)::

        log p(n_r | s) = lgamma(s) - lgamma(s + n_r.) + sum_k [lgamma(s p_rk + n_rk) - lgamma(s p_rk)]

    summed over rows. Only non-zero counts enter the sum over ``k``, so the
    cost is one pass over the non-zero counts per strength. A count where the
    prior mean is 0 is impossible under every strength: such entries are
    floored at 1e-12 so that the evidence stays finite and still prefers the
    strengths that let the data speak.

    Parameters
    ----------
    counts : array-like of shape (..., K)
        Count rows (any leading shape; the last axis is the category).
    prior : array-like broadcastable to ``counts``
        Prior mean of each row (rows sum to 1).
    strengths : array-like of shape (G,)
        Prior strengths ``s > 0`` (total pseudo-counts per row).

    Returns
    -------
    ndarray of shape (G,)

    Examples
    --------
    Against scipy's Dirichlet-multinomial (which includes the multinomial
    coefficient, a constant in ``s``):

    >>> from scipy.stats import dirichlet_multinomial
    >>> n, p = np.array([[7, 2, 0]]), np.array([[0.5, 0.3, 0.2]])
    >>> ours = dirichlet_log_evidence(n, p, [0.5, 4.0])
    >>> ref = [dirichlet_multinomial.logpmf(n[0], s * p[0], 9) for s in (0.5, 4.0)]
    >>> bool(np.isclose(ours[1] - ours[0], ref[1] - ref[0]))
    True
    """
    from scipy.special import gammaln

    counts = np.asarray(counts, dtype=np.float64)
    prior = np.broadcast_to(np.asarray(prior, dtype=np.float64), counts.shape)
    s = np.asarray(strengths, dtype=np.float64).reshape(-1, 1)
    flat_n = counts.reshape(-1, counts.shape[-1])
    flat_p = prior.reshape(-1, counts.shape[-1])
    rows = flat_n.sum(axis=1)
    rows = rows[rows > 0]
    nz = flat_n > 0
    n, p = flat_n[nz][None, :], np.maximum(flat_p[nz], 1e-12)[None, :]
    row_terms = gammaln(s) * len(rows) - gammaln(s + rows[None, :]).sum(axis=1, keepdims=True)
    cell_terms = (gammaln(s * p + n) - gammaln(s * p)).sum(axis=1, keepdims=True)
    return (row_terms + cell_terms).ravel()


def dirichlet_strength(counts, prior, *, grid=None) -> float:
    """The prior strength that maximises :func:`dirichlet_log_evidence` (empirical Bayes).

    The best of ``grid`` (default: 57 strengths from 0.01 to 1e5, evenly on a
    log scale) is refined by golden-section search on the log scale between
    its neighbours. With no counts at all every strength is equally good and
    the result is the grid's geometric middle (the prior's mass cannot matter:
    rows without data are their prior's mean).

    Examples
    --------
    Rows drawn exactly at the prior mean want a strong prior; rows far from it a weak one:

    >>> p = np.array([[0.6, 0.4]] * 3)
    >>> dirichlet_strength(np.array([[60, 40], [59, 41], [61, 39]]), p) > 1000
    True
    >>> dirichlet_strength(np.array([[100, 0], [0, 100], [100, 0]]), p) < 0.1
    True
    """
    grid = STRENGTH_GRID if grid is None else np.asarray(grid, dtype=np.float64)
    counts = np.asarray(counts)
    if counts.size == 0 or not counts.any():
        return float(np.sqrt(grid[0] * grid[-1]))
    ev = dirichlet_log_evidence(counts, prior, grid)
    k = int(np.argmax(ev))
    lo, hi = np.log(grid[max(k - 1, 0)]), np.log(grid[min(k + 1, len(grid) - 1)])
    if lo == hi:
        return float(grid[k])
    g = (np.sqrt(5.0) - 1) / 2
    a, b = lo, hi
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = dirichlet_log_evidence(counts, prior, np.exp([c, d]))
    for _ in range(40):  # a scalar search: 40 shrinks by 0.618 reach 1e-8 of the bracket
        if fc > fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = dirichlet_log_evidence(counts, prior, [np.exp(c)])[0]
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = dirichlet_log_evidence(counts, prior, [np.exp(d)])[0]
    best = float(np.exp((a + b) / 2))
    return best if dirichlet_log_evidence(counts, prior, [best])[0] >= ev[k] else float(grid[k])
