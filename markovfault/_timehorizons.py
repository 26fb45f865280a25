"""P(fail within a time T): the continuous-time chain and the semi-Markov chain (internal API).

Both run on the chain's matrix T over its states (dense or sparse, the marginal chain or under an event mix),
so history-aware states and event mixes come along. A handler in chain state i has its last step at age a
(the time since it, at the forecast time) and a rate factor c (it steps c times as fast as its states do);
every one of its sojourns is the state's sojourn scaled by 1/c, so its forecast is the state's at c*T from age
c*a. As for step horizons, the current state does not count: "fails within T" means a step within T ends in
a failure state.

**Continuous-time chain** (``"ctmc"``). A handler in state i steps at rate lambda_i (its base state's rate) and
moves by T, so the generator is Q = diag(lambda) (T - I), Q* with failure absorbing. With Lambda = max lambda
and p = lambda / Lambda, uniformization gives P(fail within t | i) = sum_n Poisson(n; Lambda t) v_n(i), where
v_0 = 0, v_n = (1 - p) v_{n-1} + p (T f_{n-1}), f_n = 1_F + 1_{not F} v_n (f_0 = 1_F): the k-step recursion
of the uniformized chain, one matrix-vector product per term, with the current state not counting. The sum is
cut at the N where P(Poisson(Lambda t) > N) <= ``tol``; since v_n <= 1 that is the truncation error's bound,
returned with the forecasts. Memoryless: the age does not matter.

**Semi-Markov chain** (``"semi_markov"``). In state i the wait to the next step has the sojourn distribution
H_b of its base state b; the next state follows T. On a grid of step Delta (a wait in ((m-1) Delta, m Delta]
is taken as m Delta), with w_b(m) = H_b(m Delta) - H_b((m-1) Delta), the renewal equations

    F_j(l) = 1 for j in F,   F_j(l) = sum_{m=1}^{l} w_b(m) G_j(l - m) otherwise,   G = T F,

are solved forward in l. From age a the first wait is conditioned on the sojourn having lasted a,
H(u | a) = (H(a + u) - H(a)) / (1 - H(a)): Phi_i(l | a) = sum_m w_b(m | a) G_i(l - m), computed by FFT
for a grid of ages uniform in the cumulative hazard of H_b (exact for exponential waits, where the age does
not matter) and interpolated bilinearly in (cumulative hazard of the age, time). The grid's error is first
order in Delta; the forecast is the Richardson extrapolation 2 P(Delta) - P(2 Delta) of two grids.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .exceptions import ConfigError

__all__ = ["TIME_MODELS", "TimeHorizons", "parse_within", "check_time_model", "quantize_factors",
           "ctmc_failure", "semi_markov_failure", "DEFAULT_TOL", "AGE_HAZARD_MAX"]

logger = logging.getLogger("markovfault.forecast")

TIME_MODELS = ("semi_markov", "ctmc")
DEFAULT_TOL = 1e-12
#: the age grid of the semi-Markov forecast spans the cumulative hazard 0 .. this (survival 1e-9); an older
#: sojourn is taken at that age
AGE_HAZARD_MAX = -math.log(1e-9)
N_AGES = 64
MIN_GRID, MAX_GRID = 1024, 2 ** 15
#: rate factors are rounded to a geometric grid of this ratio (1%), so that handlers share curves
FACTOR_STEP = 1.01


def check_time_model(time_model) -> str:
    if not (isinstance(time_model, str) and time_model in TIME_MODELS):
        raise ConfigError(f"time_model = {time_model!r}; use 'semi_markov' (a sojourn-time distribution per "
                          "state, conditioned on the current silence) or 'ctmc' (exponential waits).")
    return time_model


@dataclass(frozen=True)
class TimeHorizons:
    """Time horizons as given (``labels``, e.g. ``"15min"``) and in time units (``values``: seconds for
    timestamps, the time column's units for integer time)."""

    labels: tuple[str, ...]
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def _label(value) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, pd.Timedelta):
        text = str(value)
        return text[7:] if text.startswith("0 days ") else text
    return f"{value:g}"


def parse_within(within, time_kind: str) -> TimeHorizons:
    """``within`` (a duration, or a list of them) as :class:`TimeHorizons`; a :class:`ConfigError` that
    names the bad value otherwise.

    Examples
    --------
    >>> parse_within(["15min", "1h"], "datetime")
    TimeHorizons(labels=('15min', '1h'), values=array([ 900., 3600.]))
    >>> parse_within(30, "integer").values
    array([30.])
    """
    items = [within] if isinstance(within, (str, int, float, pd.Timedelta, np.number)) else list(within)
    if not items:
        raise ConfigError("within = []: give at least one duration, e.g. within=['15min', '1h'].")
    values = []
    for item in items:
        if time_kind == "datetime":
            if isinstance(item, (int, float, np.number)) and not isinstance(item, bool):
                raise ConfigError(f"within = {item!r} is a bare number but the time column holds timestamps; "
                                  "give a duration such as '15min' or '1h'.")
            try:
                seconds = pd.Timedelta(item).total_seconds()
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"within = {item!r} is not a duration ('15min', '1h', '2d'): {exc}") from exc
        else:
            if isinstance(item, bool) or not isinstance(item, (int, float, np.number)):
                raise ConfigError(f"within = {item!r}: the time column is an integer sequence, so a time "
                                  "horizon is a number of its units (within=[30, 60]).")
            seconds = float(item)
        if not (np.isfinite(seconds) and seconds > 0):
            raise ConfigError(f"within = {item!r} must be a positive duration.")
        values.append(seconds)
    labels = tuple(_label(item) for item in items)
    if len(set(labels)) != len(labels):
        raise ConfigError(f"within = {items!r} names a horizon twice.")
    return TimeHorizons(labels, np.asarray(values, dtype=np.float64))


def quantize_factors(factors: np.ndarray) -> np.ndarray:
    """Rate factors rounded to the nearest power of :data:`FACTOR_STEP` (1%), so handlers share curves.

    >>> quantize_factors(np.array([1.0, 1.004, 2.0])).round(4).tolist()
    [1.0, 1.0, 2.0068]
    """
    k = np.rint(np.log(np.asarray(factors, np.float64)) / math.log(FACTOR_STEP))
    return FACTOR_STEP ** k


def _pairs(rows: np.ndarray, times: np.ndarray):
    """The distinct (chain state, time) pairs of the targets and each target's pair."""
    t_unique, t_inv = np.unique(times, return_inverse=True)
    key = rows.astype(np.int64) * len(t_unique) + t_inv.reshape(-1)
    keys, inverse = np.unique(key, return_inverse=True)
    return t_unique, keys // len(t_unique), keys % len(t_unique), inverse.reshape(-1)


# ------------------------------------------------------------------ continuous-time chain
def ctmc_failure(matrix, mask: np.ndarray, rates: np.ndarray, rows: np.ndarray, times: np.ndarray,
                 tol: float = DEFAULT_TOL) -> tuple[np.ndarray, float]:
    """P(fail within ``times[k]`` | chain state ``rows[k]``) of the continuous-time chain, by uniformization.

    ``matrix``: the chain's (S, S) matrix T (dense or sparse); ``mask``: failure states; ``rates``: lambda per
    chain state (per time unit). Returns the forecasts (same shape as ``rows``) and the bound on their
    truncation error.

    Examples
    --------
    One state that fails at each step with probability 0.4, two steps per minute:

    >>> T = np.array([[0.6, 0.4], [0.0, 1.0]])
    >>> p, err = ctmc_failure(T, np.array([False, True]), np.array([2.0, 1.0]), np.array([0]), np.array([1.5]))
    >>> round(float(p[0]), 10), round(1 - math.exp(-0.8 * 1.5), 10), err <= 1e-12
    (0.6988057881, 0.6988057881, True)
    """
    from scipy import stats

    rows = np.asarray(rows, np.int64).reshape(-1)
    times = np.asarray(times, np.float64).reshape(-1)
    out = np.zeros(len(rows))
    if not len(rows):
        return out, 0.0
    big = float(np.max(rates))
    if big <= 0:
        return out, 0.0
    t_unique, pair_row, pair_t, inverse = _pairs(rows, times)
    mu = big * t_unique
    n_max = int(stats.poisson.isf(tol, mu.max())) + 1
    bound = float(np.max(stats.poisson.sf(n_max, mu)))
    fail = np.asarray(mask, np.float64)
    keep = 1.0 - fail
    p = np.asarray(rates, np.float64) / big
    f = fail.copy()
    v = np.zeros_like(fail)
    log_mu = np.log(np.maximum(mu, 1e-300))
    log_pi = -mu  # log Poisson(0; mu)
    acc = np.zeros(len(pair_row))
    for n in range(1, n_max + 1):
        g = np.asarray(matrix @ f).reshape(-1)
        v = (1.0 - p) * v + p * g
        f = fail + keep * v
        log_pi = log_pi + log_mu - math.log(n)
        acc += np.exp(log_pi[pair_t]) * v[pair_row]
    np.clip(acc, 0.0, 1.0, out=acc)
    return acc[inverse], bound


# ------------------------------------------------------------------ semi-Markov chain
def _kernel(dist, ages: np.ndarray, delta: float, m: int) -> np.ndarray:
    """w(j | a) = P(wait in ((j-1) delta, j delta] | waited a), j = 1..m, one row per age."""
    grid = np.arange(m + 1) * delta
    base = dist.logsf(ages)[:, None]
    sf = np.exp(np.minimum(dist.logsf(ages[:, None] + grid[None, :]) - base, 0.0))
    sf[~np.isfinite(sf)] = 0.0
    return np.maximum(sf[:, :-1] - sf[:, 1:], 0.0)


def _renewal(matrix, mask: np.ndarray, base: np.ndarray, kernels: list, m: int) -> np.ndarray:
    """G = T F on the grid, (m + 1, S): the renewal equations solved forward (see the module)."""
    n = len(mask)
    fail = np.asarray(mask, np.float64)
    keep = 1.0 - fail
    groups = [(b, np.flatnonzero((base == b) & ~mask)) for b in range(len(kernels))]
    groups = [(b, cols) for b, cols in groups if len(cols)]
    lengths = {b: int(np.max(np.flatnonzero(kernels[b] > 1e-300), initial=-1)) + 1 for b, _ in groups}
    G = np.zeros((m + 1, n))
    G[0] = np.asarray(matrix @ fail).reshape(-1)
    F = fail.copy()
    for ell in range(1, m + 1):
        F[:] = fail
        for b, cols in groups:
            span = min(ell, lengths[b])
            if span:
                w = kernels[b][:span]  # w(1..span) against G(ell-1 .. ell-span)
                F[cols] = w @ G[ell - 1::-1][:span, cols]
        F *= keep
        F += fail
        G[ell] = np.asarray(matrix @ F).reshape(-1)
    return G


def _first_step(G: np.ndarray, kernel_by_age: np.ndarray, cols: np.ndarray, need: np.ndarray) -> np.ndarray:
    """Phi[k, i, l] = sum_j w(j | a_k) G[l - j, i] for the columns ``cols`` and grid points ``need``, by FFT."""
    m = G.shape[0] - 1
    size = 1 << int(math.ceil(math.log2(2 * (m + 1))))
    wk = np.zeros((kernel_by_age.shape[0], size))
    wk[:, 1:m + 1] = kernel_by_age[:, :m]
    fw = np.fft.rfft(wk, axis=1)
    out = np.empty((kernel_by_age.shape[0], len(cols), len(need)))
    chunk = max(1, int(2 ** 22 // (kernel_by_age.shape[0] * size)))
    for s in range(0, len(cols), chunk):
        c = cols[s:s + chunk]
        fg = np.fft.rfft(G[:, c].T, n=size, axis=1)  # (chunk, F)
        conv = np.fft.irfft(fw[:, None, :] * fg[None, :, :], n=size, axis=2)
        out[:, s:s + len(c), :] = conv[:, :, need]
    return out


def _semi_markov_once(matrix, mask, base, dists, rows, ages, times, m: int) -> np.ndarray:
    t_max = float(times.max())
    delta = t_max / m
    kernels = [_kernel(d, np.zeros(1), delta, m)[0] for d in dists]
    G = _renewal(matrix, mask, base, kernels, m)
    pos = times / delta
    lo = np.clip(np.floor(pos).astype(np.int64), 0, m)
    hi = np.minimum(lo + 1, m)
    frac = np.clip(pos - lo, 0.0, 1.0)
    need, l_inv = np.unique(np.r_[lo, hi], return_inverse=True)
    lo_k, hi_k = l_inv[:len(lo)], l_inv[len(lo):]
    out = np.empty(len(rows))
    hazard_grid = np.linspace(0.0, AGE_HAZARD_MAX, N_AGES)
    for b, dist in enumerate(dists):
        sel = np.flatnonzero(base[rows] == b)
        if not len(sel):
            continue
        ages_grid = np.r_[0.0, dist.age_at_hazard(hazard_grid[1:])]
        cols, col_inv = np.unique(rows[sel], return_inverse=True)
        phi = _first_step(G, _kernel(dist, ages_grid, delta, m), cols, need)  # (K, cols, need)
        h = np.clip(-dist.logsf(ages[sel]), 0.0, AGE_HAZARD_MAX) / hazard_grid[1] if N_AGES > 1 else 0.0
        k0 = np.clip(np.floor(h).astype(np.int64), 0, N_AGES - 2)
        u = np.clip(h - k0, 0.0, 1.0)
        ci = col_inv.reshape(-1)
        a0 = (1 - frac[sel]) * phi[k0, ci, lo_k[sel]] + frac[sel] * phi[k0, ci, hi_k[sel]]
        a1 = (1 - frac[sel]) * phi[k0 + 1, ci, lo_k[sel]] + frac[sel] * phi[k0 + 1, ci, hi_k[sel]]
        out[sel] = (1 - u) * a0 + u * a1
    return out


def grid_size(dists, times: np.ndarray, grid: int | None = None) -> int:
    """The number of grid steps: ``grid`` if given, else enough for 40 steps per shortest mean sojourn,
    at least 1024 and at most 2^15 (even, for the extrapolation)."""
    if grid is not None:
        return int(grid) + int(grid) % 2
    shortest = min(d.mean for d in dists)
    wanted = 40.0 * float(np.max(times)) / max(shortest, 1e-300)
    m = int(min(MAX_GRID, max(MIN_GRID, math.ceil(wanted))))
    if wanted > MAX_GRID:
        logger.warning("the time grid is capped at %d steps (%d wanted): horizons of %.3g mean sojourns; "
                       "the forecast's grid error grows", MAX_GRID, int(wanted), np.max(times) / shortest)
    return m + m % 2


def semi_markov_failure(matrix, mask: np.ndarray, base: np.ndarray, dists: list, rows: np.ndarray,
                        ages: np.ndarray, times: np.ndarray, grid: int | None = None) -> np.ndarray:
    """P(fail within ``times[k]`` | chain state ``rows[k]``, its sojourn aged ``ages[k]``) of the semi-Markov
    chain (see the module): ``base`` maps chain states to base states, ``dists`` a sojourn distribution
    (:class:`~markovfault._sojourns.Sojourn`) per base state. ``grid``: grid steps (default
    :func:`grid_size`). Returns an array shaped like ``rows``.

    Examples
    --------
    Exponential waits of mean 0.5: the continuous-time chain's answer, to the grid's accuracy:

    >>> from markovfault._sojourns import Parametric
    >>> T = np.array([[0.6, 0.4], [0.0, 1.0]])
    >>> p = semi_markov_failure(T, np.array([False, True]), np.array([0, 1]),
    ...                         [Parametric("expon", None, 0.5)] * 2, np.array([0]), np.array([3.0]),
    ...                         np.array([1.5]))
    >>> abs(float(p[0]) - (1 - math.exp(-0.8 * 1.5))) < 1e-5
    True
    """
    rows = np.asarray(rows, np.int64).reshape(-1)
    ages = np.asarray(ages, np.float64).reshape(-1)
    times = np.asarray(times, np.float64).reshape(-1)
    if not len(rows):
        return np.zeros(0)
    mask = np.asarray(mask, bool)
    base = np.asarray(base, np.int64)
    m = grid_size(dists, times, grid)
    fine = _semi_markov_once(matrix, mask, base, dists, rows, ages, times, m)
    coarse = _semi_markov_once(matrix, mask, base, dists, rows, ages, times, m // 2)
    return np.clip(2.0 * fine - coarse, 0.0, 1.0)
