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

A row without any data is its prior's target, whatever the prior's mass; so is a row whose total is not a
positive normal number (a subnormal prior mass such as 5e-324 would otherwise underflow to a row of zeros).

``alpha``, ``beta`` and ``recent_strength`` may also be given as ``"auto"`` (:data:`AUTO`): each is then
chosen from the data by the Dirichlet-multinomial evidence of the rows it pulls (empirical Bayes,
:func:`dirichlet_strength`): :func:`choose_priors` for ``alpha`` and ``beta`` (the chain calls it on its
counts), :func:`recent_strength_from_windows` for ``recent_strength`` (on the arrivals of each state in
windows of the training time, see :mod:`markovfault._eventmix`).
"""

from __future__ import annotations

import numpy as np

from .counts import event_arrival_counts
from .exceptions import ConfigError

__all__ = ["PRIORS", "check_prior", "check_prior_setting", "estimate_tensors", "back_off",
           "shift_event_probs", "shift_targets", "pseudo_origin_rates", "DEFAULT_RECENT_STRENGTH", "AUTO",
           "dirichlet_log_evidence", "dirichlet_strength", "choose_priors", "recent_strength_from_windows",
           "absorb_ends"]

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


def check_prior_setting(name: str, value) -> float | str:
    """A prior as a user may give it: :data:`AUTO` (chosen from the data), or a pseudo-count
    (:func:`check_prior`); any other string is a :class:`ConfigError` naming ``name``.

    Examples
    --------
    >>> check_prior_setting("alpha", "auto"), check_prior_setting("beta", 3)
    ('auto', 3.0)
    >>> check_prior_setting("beta", "Auto")
    Traceback (most recent call last):
    ...
    markovfault.exceptions.ConfigError: beta = 'Auto' must be a number >= 0 or "auto" (chosen from the data).
    """
    if isinstance(value, str):
        if value == AUTO:
            return AUTO
        raise ConfigError(f'{name} = {value!r} must be a number >= 0 or "auto" (chosen from the data).')
    return check_prior(name, value)


def estimate_tensors(counts: np.ndarray, alpha: float = 1.0, beta: float = 1.0,
                     beta_arrivals: float | None = None) -> dict:
    """Smoothed chain tensors from event-conditioned counts.

    Parameters
    ----------
    counts : ndarray of shape (n_events, n_states, n_states)
        ``counts[e, i, j]`` = #(state i, event e, next state j).
    alpha : float, default=1.0
        Total mass of the uniform Dirichlet prior on each pooled row.
    beta : float, default=1.0
        Pseudo-counts that shrink each event-conditioned row toward the pooled
        row, and (unless ``beta_arrivals`` is given) each event-arrival row
        toward the global event frequencies.
    beta_arrivals : float, optional
        Pseudo-counts of the event-arrival rows; ``None`` is ``beta``.

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

        Q_{ie} = \\frac{N_{ie} + \\beta_a g_e}{\\sum_e N_{ie} + \\beta_a},\\qquad
        T_{ij} = \\sum_e Q_{ie} P_{eij},

    where :math:`N_{ie} = \\sum_j C_{eij}`, :math:`g` are the global event
    frequencies and :math:`\\beta_a` is ``beta_arrivals`` (:math:`\\beta` by
    default). A row without data, or whose total (counts plus prior mass) is
    not a positive normal number (its terms would underflow), falls back to the
    uniform row for :math:`\\bar P`, to :math:`\\bar P` for :math:`P`, and to
    :math:`g` for :math:`Q`. With ``alpha = beta = 0`` and
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
    # underflows: alpha = 5e-324 would otherwise give a row of zeros); so is a row whose total is not a
    # positive normal number (its terms underflow)
    pooled[(pooled_rows == 0) | _not_normal(denom)] = 1.0 / n_states

    row = counts.sum(axis=2)  # (E, S)
    denom = row + beta
    with np.errstate(invalid="ignore", divide="ignore"):
        event_matrices = (counts + beta * pooled[None]) / denom[:, :, None]
    empty = (row == 0) | _not_normal(denom)
    if empty.any():
        event_matrices[empty] = np.broadcast_to(pooled, event_matrices.shape)[empty]

    arrivals = event_arrival_counts(counts)  # (S, E)
    total = arrivals.sum()
    glob = arrivals.sum(axis=0) / total if total > 0 else np.full(n_events, 1.0 / n_events)
    beta_a = beta if beta_arrivals is None else beta_arrivals
    denom = arrivals.sum(axis=1) + beta_a
    with np.errstate(invalid="ignore", divide="ignore"):
        event_probs = (arrivals + beta_a * glob[None]) / denom[:, None]
    event_probs[(arrivals.sum(axis=1) == 0) | _not_normal(denom)] = glob

    transition = np.einsum("ie,eij->ij", event_probs, event_matrices)
    return {
        "pooled": pooled,
        "event_matrices": event_matrices,
        "event_probs": event_probs,
        "transition_matrix": transition,
        "unvisited": unvisited,
    }


def _not_normal(total: np.ndarray) -> np.ndarray:
    """Where a row total is not a positive normal number (zero, subnormal, negative or NaN): such a row is
    empty, its prior's target, since its terms may underflow (``5e-324 / S`` is 0)."""
    return ~(np.asarray(total, dtype=np.float64) >= np.finfo(np.float64).tiny)


def absorb_ends(est: dict, is_end) -> dict:
    """The tensors of :func:`estimate_tensors` with every end state absorbing.

    An end state (a finished order, a session that closed) is left by no event: its pooled row,
    its row under every event and its marginal row become the unit row on itself, whatever was
    counted (a history that goes on after an end status does not move the end state). Its
    arrival row is kept. ``is_end`` None or all False leaves the tensors as they are.

    Examples
    --------
    >>> est = absorb_ends(estimate_tensors(np.array([[[3, 1], [2, 2]]]), 1.0, 1.0), [False, True])
    >>> est["transition_matrix"][1].tolist()
    [0.0, 1.0]
    """
    if is_end is None or not np.any(is_end):
        return est
    end = np.flatnonzero(np.asarray(is_end, dtype=bool))
    S = est["pooled"].shape[0]
    unit = np.eye(S)[end]
    out = dict(est)
    for key in ("pooled", "transition_matrix"):
        out[key] = est[key].copy()
        out[key][end] = unit
    out["event_matrices"] = est["event_matrices"].copy()
    out["event_matrices"][:, end, :] = unit[None]
    out["unvisited"] = est["unvisited"] & ~np.asarray(is_end, dtype=bool)
    return out


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
    P = np.where((rows > 0) & ~_not_normal(rows + gamma), P, base_next)
    M = counts.sum(axis=2).T  # (A, E)
    mrow = M.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        Q = (M + gamma * base_arrivals) / (mrow + gamma)
    Q = np.where((mrow > 0) & ~_not_normal(mrow + gamma), Q, base_arrivals)
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
    target = shift_targets(Qb, recent_counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        recent = (recent_counts + strength * target) / (rows + strength)
        recent = np.where(rows + strength > 0, recent, target)
        ratio = np.where(Qb > 0, recent / Qb, 0.0)
    w = event_probs * ratio[base_of]
    sums = w.sum(axis=1, keepdims=True)
    return np.where(sums > 0, w / np.where(sums > 0, sums, 1.0), event_probs)


def shift_targets(base_event_probs: np.ndarray, recent_counts: np.ndarray,
                  leave_out: bool = False) -> np.ndarray:
    """The prior mean of each base state's recent mix: its long-run mix reweighted by the overall shift.

    ``recent_counts`` is (..., S, E): the arrivals in each base state during one window (or a stack of
    windows, one per leading index). With ``r_e`` the observed over the expected count of event ``e``
    in the window (expected: what the long-run rows ``base_event_probs`` (S, E) predict for the window's
    visits), the target of state ``s`` is ``base_event_probs[s] * r``, renormalised. The prior of
    :func:`shift_event_probs` pulls toward it, and :func:`recent_strength_from_windows` measures how
    closely windows follow it. With ``leave_out``, the shift of each state's target is measured on the
    window's other states only (where they have no arrivals: no shift).

    Examples
    --------
    >>> Qb = np.array([[0.5, 0.5], [0.75, 0.25]])
    >>> shift_targets(Qb, np.array([[2, 2], [3, 1]]))  # as the long run predicts: no shift
    array([[0.5 , 0.5 ],
           [0.75, 0.25]])
    >>> t = shift_targets(Qb, np.array([[1, 3], [2, 2]]))  # expected (5, 3), observed (3, 5)
    >>> r = np.array([3 / 5, 5 / 3])
    >>> bool(np.allclose(t, Qb * r / (Qb * r).sum(axis=1, keepdims=True)))
    True

    Left out, state 0's target shifts by state 1's counts alone (expected (3, 1), observed (2, 2)):

    >>> r0 = np.array([2 / 3, 2 / 1])
    >>> t0 = shift_targets(Qb, np.array([[1, 3], [2, 2]]), leave_out=True)[0]
    >>> bool(np.allclose(t0, Qb[0] * r0 / (Qb[0] * r0).sum()))
    True
    """
    Qb = np.asarray(base_event_probs, dtype=np.float64)
    recent_counts = np.asarray(recent_counts, dtype=np.float64)
    rows = recent_counts.sum(axis=-1, keepdims=True)
    expected = (rows * Qb).sum(axis=-2, keepdims=True)  # (..., 1, E)
    observed = recent_counts.sum(axis=-2, keepdims=True)
    if leave_out:  # (..., S, E): each state's shift from the others
        expected, observed = expected - rows * Qb, observed - recent_counts
        expected = np.where(np.isclose(expected, 0.0, atol=1e-9), 0.0, expected)  # rounding
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(expected > 0, observed / expected, 1.0)
        target = Qb * r
        sums = target.sum(axis=-1, keepdims=True)
        return target / np.where(sums > 0, sums, 1.0)


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
    return _compact_evidence(*_evidence_terms(counts, prior), strengths)


def _evidence_terms(counts, prior):
    """What the evidence depends on: the non-zero row totals and the non-zero counts with their prior
    means (found once, then evaluated at many strengths)."""
    counts = np.asarray(counts, dtype=np.float64)
    prior = np.broadcast_to(np.asarray(prior, dtype=np.float64), counts.shape)
    flat_n = counts.reshape(-1, counts.shape[-1])
    flat_p = prior.reshape(-1, counts.shape[-1])
    rows = flat_n.sum(axis=1)
    nz = flat_n > 0
    return rows[rows > 0], flat_n[nz], np.maximum(flat_p[nz], 1e-12)


def _compact_evidence(rows, n, p, strengths) -> np.ndarray:
    from scipy.special import gammaln

    s = np.asarray(strengths, dtype=np.float64).reshape(-1, 1)
    row_terms = gammaln(s) * len(rows) - gammaln(s + rows[None, :]).sum(axis=1, keepdims=True)
    cell_terms = (gammaln(s * p[None, :] + n[None, :]) - gammaln(s * p[None, :])).sum(axis=1, keepdims=True)
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
    terms = _evidence_terms(counts, prior)  # the non-zero counts, found once for every strength
    return maximise_strength(lambda strengths: _compact_evidence(*terms, strengths), grid)


def maximise_strength(objective, grid=None) -> float:
    """The strength that maximises ``objective`` (a function of an array of strengths, vectorised).

    The best of ``grid`` (default :data:`STRENGTH_GRID`: 57 strengths from 0.01 to 1e5, evenly on a log
    scale; the first of equal bests) is refined by golden-section search on the log scale between its
    neighbours; the refined value is kept only when it is at least as good.

    Examples
    --------
    >>> round(maximise_strength(lambda s: -(np.log(s) - np.log(7.0)) ** 2), 6)
    7.0
    """
    grid = STRENGTH_GRID if grid is None else np.asarray(grid, dtype=np.float64)
    ev = np.asarray(objective(grid), dtype=np.float64)
    k = int(np.argmax(ev))
    lo, hi = np.log(grid[max(k - 1, 0)]), np.log(grid[min(k + 1, len(grid) - 1)])
    if lo == hi:
        return float(grid[k])
    g = (np.sqrt(5.0) - 1) / 2
    a, b = lo, hi
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = objective(np.exp([c, d]))
    for _ in range(40):  # a scalar search: 40 shrinks by 0.618 reach 1e-8 of the bracket
        if fc > fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = objective(np.exp([c]))[0]
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = objective(np.exp([d]))[0]
    best = float(np.exp((a + b) / 2))
    return best if objective(np.asarray([best]))[0] >= ev[k] else float(grid[k])


def choose_priors(counts: np.ndarray, alpha, beta) -> tuple[float, float, float]:
    """The ``(alpha, beta, beta_arrivals)`` that :func:`estimate_tensors` uses for ``counts``.

    A number is used as given (``beta_arrivals`` is then ``beta``, as always); :data:`AUTO` is chosen by
    the Dirichlet-multinomial evidence (:func:`dirichlet_strength`) of the rows the prior pulls, under
    the prior's own mean:

    - ``alpha``: the pooled rows ``sum_e C[e, i, :]`` under the uniform row;
    - ``beta``: the event-conditioned rows ``C[e, i, :]`` under their pooled row (smoothed with the
      ``alpha`` in use), the target :func:`estimate_tensors` shrinks them toward, made without the row
      itself: the pooled row of the other events. A row compared with a mean it helped to make looks
      closer to it than it is, the more so the more of the counts its event brings: rows drawn around
      the pooled row with strength 20 give medians of 33 for three events and 22 for twelve with the
      mean of all events, 14 and 18 with the mean of the others (``benchmarks/priors.py leave_out``),
      and the lower strengths forecast what-ifs of events far from the pooled row better;
    - ``beta_arrivals`` (with ``beta="auto"``): the arrival rows ``N[i, :]`` under the global event mix,
      a strength of their own. How far a state's arrivals stray from the global mix has nothing to do
      with how far an event's transitions stray from the pooled ones. On the simulated order service
      the two come out alike (medians 16 and 21) and so do the held-out arrivals (the own strength
      better in 16 of 32 fits); where arrivals hardly depend on the state but transitions do, the own
      strength is better in 32 of 32 (``python benchmarks/priors.py arrivals``).

    Examples
    --------
    >>> C = np.array([[[30, 10], [5, 5]], [[2, 18], [5, 5]]])
    >>> choose_priors(C, 1.0, 2.0)
    (1.0, 2.0, 2.0)
    >>> a, b, ba = choose_priors(C, "auto", "auto")
    >>> pooled = np.array([[32, 28], [10, 10]])
    >>> bool(a == dirichlet_strength(pooled, np.full((2, 2), 0.5)))
    True
    >>> others = pooled[None] - C  # event 0's rows against event 1's and back
    >>> mean = (others + a / 2) / (others.sum(axis=2, keepdims=True) + a)
    >>> bool(b == dirichlet_strength(C, mean))
    True
    """
    counts = np.asarray(counts)
    n_events, n_states, _ = counts.shape
    pooled_counts = counts.sum(axis=0)
    if isinstance(alpha, str):  # AUTO
        alpha = dirichlet_strength(pooled_counts, np.full((n_states, n_states), 1.0 / n_states))
    alpha = float(alpha)
    if not isinstance(beta, str):
        return alpha, float(beta), float(beta)
    # each event's rows against the pooled rows of the other events: a row compared with a mean it
    # helped to make looks closer to it than it is (worst where one event brings most of the counts)
    others = pooled_counts[None] - counts  # (E, S, S)
    rows = others.sum(axis=2, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (others + alpha / n_states) / (rows + alpha)
    mean = np.where(rows + alpha > 0, mean, 1.0 / n_states)  # as estimate_tensors: rows without data
    beta = dirichlet_strength(counts, mean)
    arrivals = counts.sum(axis=2).T  # (S, E)
    total = arrivals.sum()
    glob = arrivals.sum(axis=0) / total if total > 0 else np.full(n_events, 1.0 / n_events)
    beta_arrivals = dirichlet_strength(arrivals, np.broadcast_to(glob, arrivals.shape))
    return alpha, float(beta), float(beta_arrivals)


def recent_strength_from_windows(window_counts: np.ndarray, base_event_probs: np.ndarray) -> float | None:
    """The ``recent_strength`` that the arrivals of windows of the training time make most likely.

    ``window_counts`` (W, S, E) are the events that arrived in each base state during each of ``W``
    windows. The recent mix of :func:`shift_event_probs` is the posterior mean of a model in which a
    state's mix during a window is drawn from ``Dirichlet(k * target)``, ``target`` being the state's
    long-run mix reweighted by the window's overall shift (:func:`shift_targets`), and the arrivals are
    multinomial given it. ``k`` is chosen by the evidence of every (window, state) row under that
    model (:func:`dirichlet_strength`): the multinomial accounts for the noise of few arrivals, so the
    strength measures how far states really stray from the shifted long-run mix, not how many
    arrivals a window holds. Each state's shift is measured on the window's other states
    (``leave_out=True``): the state most visited would otherwise bring most of the arrivals the shift
    is measured on, follow its own target closely and make the strength far too large: on the
    simulated order service with mix shifts, 880 to 1,300 instead of 205 to 225 for ten-minute
    windows, where the strengths closest to the true mixes lie between 85 and 155 and cost 1.2 to 1.9
    times their error against 1.01 to 1.11 (``python benchmarks/priors.py recent``). ``None`` with
    fewer than two windows holding arrivals (nothing to learn from: the caller keeps its default).

    Examples
    --------
    Windows in which every state follows the shifted long-run mix want a strong prior; windows in
    which each state goes its own way a weak one:

    >>> Qb = np.array([[0.5, 0.5], [0.5, 0.5]])
    >>> follow = np.array([[[50, 50], [50, 50]], [[20, 80], [20, 80]]])
    >>> recent_strength_from_windows(follow, Qb) > 1000
    True
    >>> stray = np.array([[[90, 10], [10, 90]], [[95, 5], [5, 95]]])
    >>> recent_strength_from_windows(stray, Qb) < 5
    True
    """
    window_counts = np.asarray(window_counts)
    if (window_counts.reshape(len(window_counts), -1).sum(axis=1) > 0).sum() < 2:
        return None
    target = shift_targets(base_event_probs, window_counts, leave_out=True)
    n_events = window_counts.shape[-1]
    return dirichlet_strength(window_counts.reshape(-1, n_events), target.reshape(-1, n_events))
