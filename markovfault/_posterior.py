"""Posterior draws of the chain's rows, and forecasts pushed through them (internal API).

The counts are Dirichlet-multinomial, so with the fitted priors every row of the model has a Dirichlet
posterior whose mean is the row the chain estimates: a row counted ``n`` (a vector over next states, or
over events) and pulled toward a prior row ``p`` with ``s`` pseudo-counts is

    row ~ Dirichlet(n + s p),        E[row] = (n + s p) / (N + s),

and the prior row ``p`` is itself a draw of its parent (the pooled row for an event-conditioned row, the
global event mix for an arrival row, the coarser level's row for a history-aware one). Drawing parents
first and children around them (nested) gives a row with few counts its parent's uncertainty too. A row
without data is its prior (the fitted chain's rule), so it is its parent's draw. A next-state row backed
off in two steps (``backoff="auto"``, :func:`markovfault.chain._history.back_off_split`) draws whether
the next state is a failure (a beta) and which state within the class (a Dirichlet) separately.

Draws of the whole model are pushed through the k-step recursion of :mod:`markovfault._recursion` all at
once: ``D`` draws of a chain over ``A`` states are one chain over ``D * A`` states whose matrix is block
diagonal (:class:`Stacked` for dense matrices, :func:`block_diagonal` for sparse ones), so a horizon is one
batched product, never a Python loop over draws or entities. Bounds are equal-tailed quantiles of the
draws of each chain state (not of each entity: entities in one state share its distribution).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._nullsim import rng_of  # the one generator of seeds, Generators and RandomStates

__all__ = ["DEFAULT_DRAWS", "DRAW_BUDGET", "Bounds", "check_interval", "check_draws", "rng_of",
           "dirichlet", "split_dirichlet", "draw_chunks", "bounds_of", "Stacked", "block_diagonal"]

#: Posterior draws behind an interval unless told otherwise.
DEFAULT_DRAWS = 200
#: The largest number of floats one chunk of draws holds in its rows (about 256 MB): draws are made and
#: pushed through the recursion chunk by chunk, so memory does not grow with ``n_draws``.
DRAW_BUDGET = 2 ** 25


class Bounds(NamedTuple):
    """A forecast with its posterior interval: the estimate (the fitted chain's) and the lower and upper
    bounds (equal-tailed quantiles of the posterior draws), arrays of one shape."""

    estimate: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


def check_interval(interval) -> float:
    """``interval`` as a probability strictly between 0 and 1, or a ValueError that names it.

    Examples
    --------
    >>> check_interval(0.9)
    0.9
    >>> check_interval(90)
    Traceback (most recent call last):
    ...
    ValueError: interval = 90 must be a probability between 0 and 1 (0.9 for a 90% interval).
    """
    if isinstance(interval, (bool, np.bool_)) or not isinstance(interval, (int, float, np.number)) \
            or not 0.0 < float(interval) < 1.0:
        raise ValueError(f"interval = {interval!r} must be a probability between 0 and 1 (0.9 for a 90% "
                         "interval).")
    return float(interval)


def check_draws(n_draws) -> int:
    """``n_draws`` as an int >= 2, or a ValueError that names it."""
    if isinstance(n_draws, (bool, np.bool_)) or not isinstance(n_draws, (int, np.integer)) or n_draws < 2:
        raise ValueError(f"n_draws = {n_draws!r} must be an integer >= 2 (posterior draws behind an "
                         f"interval; {DEFAULT_DRAWS} by default).")
    return int(n_draws)


def dirichlet(rng: np.random.Generator, counts: np.ndarray, prior: np.ndarray, strength: float) -> np.ndarray:
    """Draws of rows ``Dirichlet(counts + strength * prior)``; a row without counts is its prior.

    ``counts`` (..., K) broadcasts against ``prior`` (D, ..., K), one prior row per draw (a draw of the
    parent, or the same row repeated). Returns (D, ..., K).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> draws = dirichlet(rng, np.array([[30, 10], [0, 0]]), np.full((4000, 2, 2), 0.5), 2.0)
    >>> draws.mean(axis=0).round(2).tolist()   # (30 + 1) / 42, and the prior for the empty row
    [[0.74, 0.26], [0.5, 0.5]]
    """
    counts = np.asarray(counts, dtype=np.float64)
    prior = np.asarray(prior, dtype=np.float64)
    g = rng.standard_gamma(counts + strength * prior)
    total = g.sum(axis=-1, keepdims=True)
    has = (counts.sum(axis=-1, keepdims=True) > 0) & (total > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(has, g / np.where(total > 0, total, 1.0), prior)


def split_dirichlet(rng: np.random.Generator, counts: np.ndarray, prior: np.ndarray, strengths: tuple,
                    fail: np.ndarray) -> np.ndarray:
    """Draws of next-state rows backed off in two steps, the posterior of ``back_off_split``'s rows.

    Whether the next state is a failure: ``Beta(N_F + g_f p_F, N - N_F + g_f (1 - p_F))``; which state
    within its class: ``Dirichlet(N_j + g_c p_j / p_class)`` over the class's states (a class the prior
    gives no mass: its own counts). ``counts`` (E, n, S), ``prior`` (D, E, n, S); a row without counts is
    its prior.
    """
    g_f, g_c = strengths
    F = np.asarray(fail, dtype=bool)
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.sum(axis=-1, keepdims=True)
    nF = counts[..., F].sum(axis=-1, keepdims=True)
    pF = prior[..., F].sum(axis=-1, keepdims=True)
    a = rng.standard_gamma(nF + g_f * pF)
    b = rng.standard_gamma(n - nF + g_f * (1.0 - pF))
    with np.errstate(invalid="ignore", divide="ignore"):
        PF = np.where(a + b > 0, a / (a + b), pF)
        cls_p = np.where(F, pF, 1.0 - pF)
        has_p = cls_p > 0
        within = np.where(has_p, prior / np.where(has_p, cls_p, 1.0), 0.0)
        g = rng.standard_gamma(counts + np.where(has_p, g_c, 0.0) * within)
        tot = np.where(F, g[..., F].sum(axis=-1, keepdims=True), g[..., ~F].sum(axis=-1, keepdims=True))
        cond = np.where(tot > 0, g / np.where(tot > 0, tot, 1.0), within)
    return np.where(n > 0, np.where(F, PF, 1.0 - PF) * cond, prior)


def draw_chunks(n_draws: int, floats_per_draw: int, budget: int = DRAW_BUDGET) -> list[int]:
    """Chunk sizes that add up to ``n_draws`` with at most ``budget`` floats in a chunk (at least one draw).

    Examples
    --------
    >>> draw_chunks(10, 300, budget=1000)
    [3, 3, 3, 1]
    """
    size = int(max(1, min(n_draws, budget // max(int(floats_per_draw), 1))))
    return [size] * (n_draws // size) + ([n_draws % size] if n_draws % size else [])


def bounds_of(draws: np.ndarray, interval: float) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed bounds over the first axis: the ``(1 - interval) / 2`` and ``(1 + interval) / 2``
    quantiles (linear interpolation between draws)."""
    lo, hi = np.quantile(draws, [(1.0 - interval) / 2.0, (1.0 + interval) / 2.0], axis=0)
    return lo, hi


class Stacked:
    """``D`` dense (S, S) matrices as one block-diagonal operator over ``D * S`` states.

    ``Stacked(T) @ x`` with ``x`` of shape (D * S,) or (D * S, k) multiplies draw by draw in one batched
    product, so the recursions of :mod:`markovfault._recursion` run on it unchanged.

    Examples
    --------
    >>> T = np.array([[[0.5, 0.5], [0.0, 1.0]], [[1.0, 0.0], [0.25, 0.75]]])
    >>> (Stacked(T) @ np.array([0.0, 1.0, 0.0, 1.0])).tolist()
    [0.5, 1.0, 0.0, 0.75]
    """

    def __init__(self, matrices: np.ndarray):
        self.matrices = np.asarray(matrices, dtype=np.float64)
        D, S, _ = self.matrices.shape
        self.shape = (D * S, D * S)

    def __matmul__(self, x: np.ndarray) -> np.ndarray:
        D, S, _ = self.matrices.shape
        x = np.asarray(x, dtype=np.float64)
        out = np.matmul(self.matrices, x.reshape((D, S, -1)))
        return out.reshape(x.shape)


def block_diagonal(pattern: tuple, data: np.ndarray, n: int):
    """The block-diagonal CSR matrix of ``D`` matrices sharing one sparsity pattern.

    ``pattern`` is ``(indices, indptr)`` of one (n, n) CSR matrix, ``data`` (D, nnz) the values of each
    draw. Returns a (D * n, D * n) ``scipy.sparse.csr_matrix``.
    """
    import scipy.sparse

    indices, indptr = pattern
    D, nnz = data.shape
    offsets = np.arange(D, dtype=np.int64)
    cols = (indices[None, :] + (offsets * n)[:, None]).reshape(-1)
    ptr = np.append((indptr[None, :-1] + (offsets * nnz)[:, None]).reshape(-1), D * nnz)
    return scipy.sparse.csr_matrix((data.reshape(-1), cols, ptr), shape=(D * n, D * n))
