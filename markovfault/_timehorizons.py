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
for a grid of ages (exact for exponential waits, where the age does not matter) and interpolated bilinearly in (age, time) (:func:`age_grid`). The grid's error is first
order in Delta; the forecast is the Richardson extrapolation 2 P(Delta) - P(2 Delta) of two grids.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .exceptions import ConfigError

__all__ = ["TIME_MODELS", "TimeHorizons", "parse_within", "check_time_model", "quantize_factors", "factor_steps",
           "FACTOR_SPAN",
           "ctmc_failure", "semi_markov_failure", "DEFAULT_TOL", "AGE_HAZARD_MAX"]

logger = logging.getLogger("markovfault.forecast")

TIME_MODELS = ("semi_markov", "ctmc")
DEFAULT_TOL = 1e-12
#: the age grid of the semi-Markov forecast spans the cumulative hazard 0 .. this (survival 1e-9); an older
#: sojourn is taken at that age
AGE_HAZARD_MAX = -math.log(1e-9)
N_AGES = 32
MIN_GRID, MAX_GRID = 512, 2 ** 15
#: grid steps per shortest mean sojourn (the Richardson extrapolation makes the grid's error second order)
STEPS_PER_MEAN = 20
#: rate factors are rounded to a geometric grid of this ratio (1%), so that handlers share curves, and
#: kept within FACTOR_STEP ** +-FACTOR_SPAN (1/4 .. 4)
FACTOR_STEP = 1.01
FACTOR_SPAN = 139


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


def factor_steps(factors: np.ndarray) -> np.ndarray:
    """The power of :data:`FACTOR_STEP` nearest each rate factor, within +-:data:`FACTOR_SPAN` (int64)."""
    k = np.rint(np.log(np.asarray(factors, np.float64)) / math.log(FACTOR_STEP))
    return np.clip(k, -FACTOR_SPAN, FACTOR_SPAN).astype(np.int64)


def quantize_factors(factors: np.ndarray) -> np.ndarray:
    """Rate factors rounded to the nearest power of :data:`FACTOR_STEP` (1%), so handlers share curves, and
    kept within 1/4 .. 4 (a handler further off its states is more likely a different kind of handler).

    >>> quantize_factors(np.array([1.0, 1.004, 2.0, 9.0])).round(4).tolist()
    [1.0, 1.0, 2.0068, 3.9872]
    """
    return FACTOR_STEP ** factor_steps(factors).astype(np.float64)


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


def _kernel_length(kernel: np.ndarray, tol: float = 1e-15) -> int:
    """How many grid steps of a kernel carry mass: the rest sums to less than ``tol``."""
    tail = np.cumsum(kernel[::-1])[::-1]
    return int(np.searchsorted(-tail, -tol, side="left")) if len(kernel) else 0


#: a dense chain of at most this many states solves the renewal equations by FFT (one small linear solve
#: per frequency); larger (sparse, history-aware) chains step forward on the grid
MAX_FFT_STATES = 64


def _renewal(matrix, mask: np.ndarray, base: np.ndarray, kernels: list, m: int) -> np.ndarray:
    """G = T F on the grid, (m + 1, S): the renewal equations (see the module) solved forward on the grid,
    or, for a small dense chain, by a damped FFT (:func:`_renewal_fft`); each state's kernel is cut where
    its remaining mass is below 1e-15."""
    n = len(mask)
    fail = np.asarray(mask, np.float64)
    keep = 1.0 - fail
    span = max([_kernel_length(kernels[b]) for b in np.unique(base[~mask])], default=0)
    W = np.zeros((span, n))  # W[j - 1, i] = w_{b(i)}(j); zero on failure states
    if span:
        live = np.flatnonzero(~mask)
        W[:, live] = np.stack([kernels[b][:span] for b in base[live]], axis=1)
    if isinstance(matrix, np.ndarray) and n <= MAX_FFT_STATES:
        return _renewal_fft(matrix, fail, W, m)
    G = np.zeros((m + 1, n))
    G[0] = np.asarray(matrix @ fail).reshape(-1)
    for ell in range(1, m + 1):
        j = min(ell, span)
        acc = np.einsum("ji,ji->i", W[:j], G[ell - 1::-1][:j]) if j else np.zeros(n)
        G[ell] = np.asarray(matrix @ (fail + keep * acc)).reshape(-1)
    return G


def _renewal_fft(T: np.ndarray, fail: np.ndarray, W: np.ndarray, m: int) -> np.ndarray:
    """The renewal equations F = 1_F + 1_{not F} (W * G), G = T F, as sequences over l = 0..N-1 damped by
    r^l with r^N = 1e-14: their DFTs solve (I - diag(W^) T) F^ = phi^ at every frequency, and G = r^-l
    IDFT(T F^) for l <= m. With N >= 4 (m + 1) the wrapped terms are below 1e-14 r^-m = 10^-10.5."""
    n = len(fail)
    size = 1 << int(math.ceil(math.log2(4 * (m + 1))))
    damp = np.exp(math.log(1e-14) / size * np.arange(size))
    w = np.zeros((size, n))
    w[1:1 + min(len(W), size - 1)] = W[:size - 1] * damp[1:1 + min(len(W), size - 1), None]
    w_hat = np.fft.rfft(w, axis=0)  # (F, n), zero on failure states
    phi_hat = np.fft.rfft(damp)[:, None] * fail[None, :]  # (F, n)
    system = np.eye(n)[None, :, :] - w_hat[:, :, None] * T[None, :, :]
    f_hat = np.linalg.solve(system, phi_hat[:, :, None])[:, :, 0]
    g = np.fft.irfft(f_hat @ T.T, n=size, axis=0)[:m + 1]
    return g / damp[:m + 1, None]


def _phi_chunks(G: np.ndarray, kernel_by_age: np.ndarray, cols: np.ndarray, chunk: int):
    """Phi[k, i, l] = sum_j w(j | a_k) G[l - j, i], l = 0..m, for blocks of ``chunk`` of the columns ``cols``
    (by FFT): yields (block's first position in ``cols``, Phi of the block)."""
    m = G.shape[0] - 1
    k = kernel_by_age.shape[0]
    size = 1 << int(math.ceil(math.log2(2 * (m + 1))))
    wk = np.zeros((k, size))
    wk[:, 1:m + 1] = kernel_by_age[:, :m]
    fw = np.fft.rfft(wk, axis=1)
    for s in range(0, len(cols), chunk):
        fg = np.fft.rfft(G[:, cols[s:s + chunk]].T, n=size, axis=1)  # (chunk, F)
        yield s, np.fft.irfft(fw[:, None, :] * fg[None, :, :], n=size, axis=2)[:, :, :m + 1]


def _extrapolated(fine: np.ndarray, coarse: np.ndarray) -> np.ndarray:
    """2 fine - coarse on the fine grid (the coarse grid's odd points interpolated): Richardson."""
    on_fine = np.empty_like(fine)
    on_fine[..., ::2] = coarse
    on_fine[..., 1::2] = 0.5 * (coarse[..., :-1] + coarse[..., 1:])
    return 2.0 * fine - on_fine


def age_grid(dist) -> np.ndarray:
    """The ages the first wait is conditioned on: uniform in age up to the 99.9% quantile (where the
    conditional wait changes fastest), then uniform in the cumulative hazard up to :data:`AGE_HAZARD_MAX`;
    :data:`N_AGES` points, ascending. An age past the last is taken at the last."""
    split = -math.log(1e-3)
    early = np.linspace(0.0, float(dist.age_at_hazard(np.array([split]))[0]), N_AGES - N_AGES // 4)
    late = dist.age_at_hazard(np.linspace(split, AGE_HAZARD_MAX, N_AGES // 4 + 1)[1:])
    return np.r_[early, late]


def grid_size(dists, times: np.ndarray, grid: int | None = None) -> int:
    """The number of grid steps: ``grid`` if given, else :data:`STEPS_PER_MEAN` steps per shortest mean
    sojourn, at least :data:`MIN_GRID` and at most :data:`MAX_GRID` (even, for the extrapolation)."""
    if grid is not None:
        return int(grid) + int(grid) % 2
    shortest = min(d.mean for d in dists)
    wanted = STEPS_PER_MEAN * float(np.max(times)) / max(shortest, 1e-300)
    m = int(min(MAX_GRID, max(MIN_GRID, math.ceil(wanted))))
    if wanted > MAX_GRID:
        logger.warning("the time grid is capped at %d steps (%d wanted): horizons of %.3g mean sojourns; "
                       "the forecast's grid error grows", MAX_GRID, int(wanted), np.max(times) / shortest)
    return m + m % 2


def semi_markov_failure(matrix, mask: np.ndarray, base: np.ndarray, dists: list, rows: np.ndarray,
                        ages: np.ndarray, times: np.ndarray, grid: int | None = None) -> np.ndarray:
    """P(fail within ``times[k, h]`` | chain state ``rows[k]``, its sojourn aged ``ages[k]``) of the
    semi-Markov chain (see the module): ``base`` maps chain states to base states, ``dists`` a sojourn
    distribution (:class:`~markovfault._sojourns.Sojourn`) per base state. ``times`` is (n, H) (or (n,)
    for one horizon each); ``grid``: grid steps (default :func:`grid_size`). Returns an array shaped like
    ``times``.

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
    shape = np.shape(times)
    times = np.asarray(times, np.float64).reshape(len(rows), -1)
    if not len(rows):
        return np.zeros(shape)
    mask = np.asarray(mask, bool)
    base = np.asarray(base, np.int64)
    m = grid_size(dists, times, grid)
    t_max = float(times.max())
    solved = []
    for steps in (m, m // 2):  # the fine grid and the coarse one of the extrapolation
        delta = t_max / steps
        G = _renewal(matrix, mask, base, [_kernel(d, np.zeros(1), delta, steps)[0] for d in dists], steps)
        solved.append((steps, delta, G))
    pos = times / solved[0][1]
    lo = np.clip(np.floor(pos).astype(np.int64), 0, m - 1)
    frac = np.clip(pos - lo, 0.0, 1.0)
    out = np.empty(times.shape)
    occupied = np.zeros(len(mask), bool)
    occupied[rows] = True
    chunk = max(1, int(2 ** 23 // (N_AGES * 4 * (m + 1))))  # floats of one block of Phi
    for b, dist in enumerate(dists):
        cols = np.flatnonzero(occupied & (base == b))
        if not len(cols):
            continue
        sel = np.flatnonzero(base[rows] == b)
        position = np.full(len(mask), -1, np.int64)
        position[cols] = np.arange(len(cols))
        where = position[rows[sel]]
        ages_grid = age_grid(dist)
        a = np.minimum(ages[sel], ages_grid[-1])
        k0 = np.clip(np.searchsorted(ages_grid, a, side="right") - 1, 0, len(ages_grid) - 2)
        u = ((a - ages_grid[k0]) / (ages_grid[k0 + 1] - ages_grid[k0]))[:, None]
        fine, coarse = (_phi_chunks(G, _kernel(dist, ages_grid, delta, steps), cols, chunk)
                        for steps, delta, G in solved)
        for (s, pf), (_, pc) in zip(fine, coarse):
            phi = _extrapolated(pf, pc)
            inside = (where >= s) & (where < s + phi.shape[1])
            e = sel[inside]
            width = phi.shape[2]
            flat = phi.reshape(-1)
            # the flat index of (age k, column, grid point l); the next age is one column block further
            at = ((k0[inside] * phi.shape[1] + where[inside] - s) * width)[:, None] + lo[e]
            f, u_e, next_age = frac[e], u[inside], phi.shape[1] * width
            low = (1 - f) * flat[at] + f * flat[at + 1]
            high = (1 - f) * flat[at + next_age] + f * flat[at + next_age + 1]
            out[e] = (1 - u_e) * low + u_e * high
    return np.clip(out, 0.0, 1.0).reshape(shape)
