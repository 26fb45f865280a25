"""Sojourn times: how long a handler waits in each state before its next step (internal API).

Step n of a handler ends in state S_n at time t_n; the wait until its next step, t_{n+1} - t_n, is a
*sojourn* in S_n. The time models of :mod:`markovfault._timehorizons` are fitted from them:

- ``"ctmc"``: a rate per base state, lambda_b = sojourns / time at risk (a Gamma prior of one pseudo-sojourn
  at the overall rate);
- ``"semi_markov"``: a sojourn-time distribution per base state, a family of :mod:`scipy.stats` (exponential,
  Weibull, gamma, log-normal) chosen by likelihood, or the empirical distribution (life table).

Sojourns are counted on a fixed grid of log-spaced bins (:data:`EDGES`, 16 per octave from 2^-10 s, about
1 ms, to 2^30 s; integer time: the same numbers in its units), so the counts of batches, partitions and folds add exactly, with
the exact sum of the durations beside them. A sojourn that was never seen to end is *censored*: the open last
sojourn of every entity at the data's end, and the wait across a silence longer than ``max_gap`` (the chain
does not count that transition, so neither do the sojourns). Censored sojourns count in the time at risk and in
the likelihood (as survival), never as an ending.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .exceptions import ConfigError

__all__ = ["EDGES", "FAMILIES", "SOJOURN_KINDS", "SojournCounts", "count_sojourns", "open_sojourns",
           "time_unit", "check_sojourn", "Sojourn", "fit_sojourns", "state_rates"]

PER_OCTAVE = 16
LOW_OCTAVE, N_OCTAVES = -10, 40
#: bin edges in time units (seconds for timestamps): 0, then 2^-10 (about 1 ms) .. 2^30 (34 years), 16 per
#: octave (each 1/16 of the octave's start wide: the top four mantissa bits of a double); the last bin is open
EDGES = np.r_[0.0, np.ldexp(1.0 + (np.arange(1, N_OCTAVES * PER_OCTAVE + 1) % PER_OCTAVE) / PER_OCTAVE,
                            LOW_OCTAVE + np.arange(1, N_OCTAVES * PER_OCTAVE + 1) // PER_OCTAVE)]
N_BINS = len(EDGES)  # bins [EDGES[k], EDGES[k + 1]), the last one [EDGES[-1], inf)
FAMILIES = ("expon", "weibull_min", "gamma", "lognorm")
SOJOURN_KINDS = ("auto", "empirical") + FAMILIES
#: a state with fewer completed sojourns than this gets the exponential (its rate, with the prior)
MIN_FIT = 10


def time_unit(time_kind: str) -> float:
    """Time units per int64 time step: 1e-9 s per ns for timestamps, 1 for integer time."""
    return 1e-9 if time_kind == "datetime" else 1.0


def _bin(durations: np.ndarray) -> np.ndarray:
    """The bin of each duration (>= 0), read from the bits of the doubles: the exponent and the top four
    mantissa bits (a shift, no search)."""
    bits = np.ascontiguousarray(durations, dtype=np.float64).view(np.int64) >> 48
    bits -= (1023 + LOW_OCTAVE) << 4
    return np.clip(bits, 0, N_BINS - 1, out=bits)


@dataclass
class SojournCounts:
    """Sojourns per base state: completed ones (``done``, (S, N_BINS) counts; ``done_sum``, (S,) the sum of
    their durations) and censored ones (``cens``, ``cens_sum``), in time units. They add with ``+``/``-``."""

    done: np.ndarray
    done_sum: np.ndarray
    cens: np.ndarray
    cens_sum: np.ndarray

    FIELDS = ("done", "done_sum", "cens", "cens_sum")

    @classmethod
    def zeros(cls, n_states: int) -> "SojournCounts":
        return cls(np.zeros((n_states, N_BINS), np.int64), np.zeros(n_states),
                   np.zeros((n_states, N_BINS), np.int64), np.zeros(n_states))

    @property
    def n_states(self) -> int:
        return self.done.shape[0]

    def _combine(self, other: "SojournCounts", sign: int) -> "SojournCounts":
        n = max(self.n_states, other.n_states)
        a, b = self.padded(n), other.padded(n)
        return SojournCounts(a.done + sign * b.done, a.done_sum + sign * b.done_sum,
                             a.cens + sign * b.cens, a.cens_sum + sign * b.cens_sum)

    def __add__(self, other: "SojournCounts") -> "SojournCounts":
        return self._combine(other, 1)

    def __sub__(self, other: "SojournCounts") -> "SojournCounts":
        return self._combine(other, -1)

    def padded(self, n_states: int) -> "SojournCounts":
        """The counts over ``n_states`` base states (new states without sojourns)."""
        extra = n_states - self.n_states
        if extra <= 0:
            return self
        z2, z1 = np.zeros((extra, N_BINS), np.int64), np.zeros(extra)
        return SojournCounts(np.vstack([self.done, z2]), np.r_[self.done_sum, z1],
                             np.vstack([self.cens, z2]), np.r_[self.cens_sum, z1])

    def to_arrays(self) -> dict:
        return {k: getattr(self, k) for k in self.FIELDS}

    @classmethod
    def from_arrays(cls, arrays) -> "SojournCounts":
        """From :meth:`to_arrays` (a model file's); a ValueError when the shapes disagree."""
        done, done_sum, cens, cens_sum = (np.asarray(arrays[k]) for k in cls.FIELDS)
        n = done.shape[0]
        if done.shape != (n, N_BINS) or cens.shape != (n, N_BINS) or done_sum.shape != (n,) \
                or cens_sum.shape != (n,):
            raise ValueError(f"sojourn arrays of shapes {done.shape}, {done_sum.shape}, {cens.shape}, "
                             f"{cens_sum.shape}; expected (S, {N_BINS}) and (S,)")
        return cls(done.astype(np.int64), done_sum.astype(np.float64), cens.astype(np.int64),
                   cens_sum.astype(np.float64))


def _histogram(state: np.ndarray, durations: np.ndarray, n_states: int) -> tuple[np.ndarray, np.ndarray]:
    cells = np.bincount(state * N_BINS + _bin(durations), minlength=n_states * N_BINS)
    return cells.reshape(n_states, N_BINS).astype(np.int64), np.bincount(state, durations, n_states)


def count_sojourns(traj, exclude: np.ndarray | None = None, cap: float | None = None) -> SojournCounts:
    """The sojourns between consecutive steps of ``traj`` (a :class:`~markovfault.trajectories.Trajectories`):
    completed within a run, censored across a run break of the same entity (a silence past ``max_gap``,
    censored at ``cap``, the max_gap in time units: what was watched). States in ``exclude`` (bool per state:
    end states) have no sojourn."""
    n_states = traj.n_states
    if traj.n_steps < 2:
        return SojournCounts.zeros(n_states)
    unit = time_unit(traj.time_kind)
    state = traj.state[:-1]
    d = np.diff(traj.time).astype(np.float64)
    if unit != 1.0:
        d *= unit
    # one pass over the steps: a completed sojourn counts in its state's row, anything else in row n_states
    starts = traj.run_starts[traj.run_starts > 0] - 1  # the waits into a run's first step
    broken = starts[traj.entity[starts] == traj.entity[starts + 1]]  # a run break of one entity: censored
    row = state.copy()
    row[starts] = n_states
    if exclude is not None and np.any(exclude):
        ends = np.asarray(exclude, bool)[state]
        row[ends] = n_states
        broken = broken[~ends[broken]]
    done_s = np.bincount(row, d, n_states + 1)[:n_states]
    row *= N_BINS  # in place: the row is not needed again
    row += _bin(d)
    cells = np.bincount(row, minlength=(n_states + 1) * N_BINS)
    done_h = cells[:n_states * N_BINS].reshape(n_states, N_BINS).astype(np.int64)
    gaps = d[broken] if cap is None else np.minimum(d[broken], cap)
    cens_h, cens_s = _histogram(state[broken], gaps, n_states)
    return SojournCounts(done_h, done_s, cens_h, cens_s)


def open_sojourns(state: np.ndarray, ages: np.ndarray, n_states: int) -> SojournCounts:
    """Censored sojourns of age ``ages`` (time units) in base states ``state``: the open last sojourns."""
    ages = np.maximum(np.asarray(ages, np.float64), 0.0)
    cens_h, cens_s = _histogram(np.asarray(state, np.int64), ages, n_states)
    z = SojournCounts.zeros(n_states)
    return SojournCounts(z.done, z.done_sum, cens_h, cens_s)


def check_sojourn(sojourn) -> str:
    """``sojourn`` as one of :data:`SOJOURN_KINDS`, or a :class:`ConfigError` that lists them."""
    if not (isinstance(sojourn, str) and sojourn in SOJOURN_KINDS):
        raise ConfigError(f"sojourn = {sojourn!r}; use one of {', '.join(map(repr, SOJOURN_KINDS))} "
                          "('auto': the family of scipy.stats with the best AIC per state).")
    return sojourn


def state_rates(counts: SojournCounts, prior: float = 1.0) -> np.ndarray:
    """lambda_b = (completed + prior) / (time at risk + prior / overall rate), per base state (time units^-1).

    The Gamma prior holds ``prior`` pseudo-sojourns at the overall rate, so a state without data gets it.

    Examples
    --------
    >>> c = SojournCounts.zeros(2)
    >>> c.done[0, 100], c.done_sum[0] = 9, 30.0  # nine sojourns in 30 s, then one open for 6 s
    >>> c = c + open_sojourns(np.array([0]), np.array([6.0]), 2)
    >>> state_rates(c).round(4).tolist()  # (9 + 1) / (36 + 36 / 9); the empty state: 9 / 36
    [0.25, 0.25]
    """
    n = counts.done.sum(axis=1).astype(np.float64)
    risk = counts.done_sum + counts.cens_sum
    total_n, total_risk = n.sum(), risk.sum()
    if total_n == 0 or total_risk <= 0:
        raise ConfigError("time horizons need sojourns: no entity has two steps at different times")
    overall = total_n / total_risk
    return (n + prior) / (risk + prior / overall)


# ------------------------------------------------------------------ distributions
class Sojourn:
    """One base state's sojourn-time distribution: ``logsf`` (log survival), ``isf_hazard`` (the age with a
    given cumulative hazard), ``mean``; ``name`` and ``params`` say what it is."""

    name: str
    params: dict
    mean: float

    def logsf(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def age_at_hazard(self, h: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def scaled(self, factor: float) -> "Sojourn":
        """This distribution with every duration multiplied by ``factor``."""
        return _Scaled(self, factor)

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v:.4g}" for k, v in self.params.items())
        return f"Sojourn({self.name}, {shown}, mean={self.mean:.4g})"


class _Scaled(Sojourn):
    def __init__(self, inner: Sojourn, factor: float):
        self.inner, self.factor = inner, float(factor)
        self.name, self.params, self.mean = inner.name, dict(inner.params), inner.mean * factor

    def logsf(self, x):
        return self.inner.logsf(np.asarray(x, np.float64) / self.factor)

    def age_at_hazard(self, h):
        return self.inner.age_at_hazard(h) * self.factor


def _family_logsf(family: str, shape: float | None, scale: float, x: np.ndarray) -> np.ndarray:
    """log P(W > x) of a family with ``loc = 0``, in closed form (no frozen object per call: the fits
    evaluate it hundreds of times)."""
    from scipy import special

    z = np.maximum(np.asarray(x, np.float64), 0.0) / scale
    if family == "expon":
        return -z
    if family == "weibull_min":
        return -(z ** shape)
    if family == "lognorm":
        with np.errstate(divide="ignore"):
            return special.log_ndtr(-np.log(z) / shape)
    with np.errstate(divide="ignore"):  # gamma: the regularised upper incomplete gamma function
        out = np.log(special.gammaincc(shape, z))
    far = ~np.isfinite(out) & (z > 0)
    if np.any(far):  # its asymptotic tail, (a - 1) log z - z - log Gamma(a), where it underflows
        zf = z[far]
        out[far] = (shape - 1) * np.log(zf) - zf - special.gammaln(shape) + np.log1p((shape - 1) / zf)
    return out


class Parametric(Sojourn):
    """A family of :mod:`scipy.stats` with ``loc = 0``: ``dist`` is the frozen distribution."""

    def __init__(self, family: str, shape: float | None, scale: float, loglik: float = np.nan):
        self.name, self.loglik = family, float(loglik)
        self.shape, self.scale = (None if shape is None else float(shape)), float(scale)
        self.params = {"scale": self.scale} if shape is None else {"shape": self.shape, "scale": self.scale}
        self._dist = None
        self.mean = self.scale * {"expon": lambda k: 1.0, "weibull_min": lambda k: math.gamma(1 + 1 / k),
                                  "gamma": lambda k: k, "lognorm": lambda k: math.exp(k * k / 2)}[family](shape)

    @property
    def dist(self):
        if self._dist is None:
            from scipy import stats

            args = () if self.shape is None else (self.shape,)
            self._dist = getattr(stats, self.name)(*args, scale=self.scale)
        return self._dist

    def logsf(self, x):
        x = np.asarray(x, np.float64)
        return np.where(x <= 0, 0.0, _family_logsf(self.name, self.shape, self.scale, x))

    def age_at_hazard(self, h):
        return self.dist.isf(np.exp(-np.asarray(h, np.float64)))


class Empirical(Sojourn):
    """The life-table estimate over the bins: in each bin the hazard -log(1 - q) / width with
    q = endings / (at risk - censored / 2), constant within the bin; past the last bin with an ending, the
    hazard of that bin."""

    def __init__(self, done: np.ndarray, cens: np.ndarray):
        done, cens = np.asarray(done, np.float64), np.asarray(cens, np.float64)
        at_risk = np.cumsum((done + cens)[::-1])[::-1]
        q = np.clip(done / np.maximum(at_risk - cens / 2.0, 1e-300), 0.0, 1.0 - 1e-12)
        width = np.diff(EDGES)
        haz = np.empty(N_BINS)
        haz[:-1] = -np.log1p(-q[:-1]) / width
        ended = np.flatnonzero(done[:-1] > 0)
        last = int(ended[-1]) if len(ended) else N_BINS - 2
        haz[last + 1:] = haz[last]
        self.haz = haz
        self.cum = np.r_[0.0, np.cumsum(haz[:-1] * width)]  # the cumulative hazard at EDGES
        self.name, self.params = "empirical", {"sojourns": float(done.sum())}
        sf = np.exp(-self.cum)
        with np.errstate(divide="ignore", invalid="ignore"):
            part = np.where(haz[:-1] > 0, sf[:-1] * -np.expm1(-haz[:-1] * width) / haz[:-1], sf[:-1] * width)
        self.mean = float(part.sum() + (sf[-1] / haz[-1] if haz[-1] > 0 else 0.0))

    def logsf(self, x):
        x = np.maximum(np.asarray(x, np.float64), 0.0)
        k = _bin(x)
        return -(self.cum[k] + self.haz[k] * (x - EDGES[k]))

    def age_at_hazard(self, h):
        h = np.asarray(h, np.float64)
        k = np.clip(np.searchsorted(self.cum, h, side="right") - 1, 0, N_BINS - 1)
        return EDGES[k] + (h - self.cum[k]) / np.maximum(self.haz[k], 1e-300)


def _binned_loglik(logsf, done: np.ndarray, cens: np.ndarray) -> float:
    lo = logsf(EDGES)
    hi = np.r_[lo[1:], -np.inf]
    mass = lo + np.log(-np.expm1(np.minimum(hi - lo, -1e-300)))  # log(S(lo) - S(hi))
    mid = np.r_[EDGES[1] / 2, np.sqrt(EDGES[1:-1] * EDGES[2:]), EDGES[-1] * 1.5]
    ll = np.sum(np.where(done > 0, done * np.maximum(mass, -1e300), 0.0))
    return float(ll + np.sum(np.where(cens > 0, cens * logsf(mid), 0.0)))


def _fit_family(family: str, done, cens, mean: float) -> Parametric:
    from scipy import optimize

    if family == "expon":
        n = done.sum()
        rate_scale = mean if n else 1.0
        d = Parametric("expon", None, rate_scale)
        d.loglik = _binned_loglik(d.logsf, done, cens)
        return d

    def negll(theta):
        shape, scale = math.exp(theta[0]), math.exp(theta[1])
        try:
            value = -_binned_loglik(lambda x: np.where(x <= 0, 0.0, _family_logsf(family, shape, scale, x)),
                                    done, cens)
        except (ValueError, FloatingPointError, OverflowError):
            return 1e300
        return value if np.isfinite(value) else 1e300

    start = {"weibull_min": (0.0, math.log(mean)), "gamma": (0.0, math.log(mean)),
             "lognorm": (0.0, math.log(mean) - 0.5)}[family]
    with np.errstate(all="ignore"):
        res = optimize.minimize(negll, np.array(start), method="Nelder-Mead",
                                options={"xatol": 1e-6, "fatol": 1e-8, "maxiter": 2000})
    return Parametric(family, math.exp(res.x[0]), math.exp(res.x[1]), -res.fun)


def fit_sojourns(counts: SojournCounts, kind: str = "auto") -> list[Sojourn]:
    """A sojourn distribution per base state, from completed and censored sojourns.

    ``kind``: a family of :data:`FAMILIES`, ``"empirical"``, or ``"auto"`` (the family with the smallest AIC
    on the binned, censored likelihood). A state with fewer than :data:`MIN_FIT` completed sojourns gets the
    exponential with its rate from :func:`state_rates` (the prior's pull).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> import types
    >>> traj = types.SimpleNamespace(n_states=1, n_steps=4001, time_kind="integer",
    ...     entity=np.zeros(4001, int), state=np.zeros(4001, int),
    ...     time=np.r_[0, np.cumsum(np.rint(1000 * rng.weibull(3.0, 4000)))].astype(np.int64),
    ...     run_starts=np.array([0]))
    >>> fitted = fit_sojourns(count_sojourns(traj))[0]
    >>> fitted.name, round(fitted.params["shape"], 1)
    ('weibull_min', 3.0)
    """
    kind = check_sojourn(kind)
    rates = state_rates(counts)
    out = []
    for b in range(counts.n_states):
        done, cens = counts.done[b], counts.cens[b]
        n = int(done.sum())
        if n < MIN_FIT:
            d = Parametric("expon", None, 1.0 / rates[b])
            d.loglik = _binned_loglik(d.logsf, done, cens)
            out.append(d)
            continue
        if kind == "empirical":
            out.append(Empirical(done, cens))
            continue
        mean = (counts.done_sum[b] + counts.cens_sum[b]) / n
        families = FAMILIES if kind == "auto" else (kind,)
        fits = [_fit_family(f, done, cens, max(mean, 1e-9)) for f in families]
        aic = [2 * (1 if f.name == "expon" else 2) - 2 * f.loglik for f in fits]
        out.append(fits[int(np.nanargmin(aic))])
    return out
