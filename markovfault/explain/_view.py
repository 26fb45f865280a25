"""The matrices an explanation reads from a fitted chain (either chain of :mod:`markovfault.chain`).

``ChainView`` holds, for one event mix, every event's matrix ``P_e`` and its weight ``Q[:, e]`` over the
chain's states, the marginal chain ``T = sum_e diag(Q[:, e]) P_e``, the failure mask and the names. For a
plain chain the matrices are dense ``(S, S)`` arrays; for a history-aware chain they are
``scipy.sparse`` CSR matrices that share one sparsity pattern (the chain builds every matrix on its fixed
pattern), which is what lets an attribution stack the matrices of many coalitions into one operator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..exceptions import ConfigError, NotFittedError

__all__ = ["ChainView", "view_of", "ANY_EVENT"]

#: The event label of a step whose event is summed over (paths without events).
ANY_EVENT = "*"


@dataclass
class ChainView:
    """One chain's matrices under one event mix (see the module docstring)."""

    chain: object
    probs: np.ndarray                     # Q (n_states, E)
    mask: np.ndarray                      # failure states (n_states,)
    event_names: list
    state_names: list                     # the chain's states
    base_names: list                      # the base states
    base_of: np.ndarray                   # the base state of each chain state
    sparse: bool
    _events: dict = field(default_factory=dict, repr=False)

    @property
    def n_states(self) -> int:
        return len(self.mask)

    @property
    def n_events(self) -> int:
        return len(self.event_names)

    def event_matrix(self, code: int):
        """``P_e`` of event ``code`` (-1: an event never seen, the chain's pooled rows)."""
        if code not in self._events:
            self._events[code] = self.chain.event_matrix(int(code))
        return self._events[code]

    def weighted(self, code: int):
        """``diag(Q[:, e]) P_e``: the mass of each step that the event ``code`` moves."""
        M = self.event_matrix(code)
        q = self.probs[:, code]
        if self.sparse:
            return M.multiply(q[:, None]).tocsr()
        return q[:, None] * M

    @property
    def transition(self):
        """The marginal chain ``T`` under this view's event mix."""
        if "T" not in self._events:
            self._events["T"] = self.chain.transition_matrix(self.probs)
        return self._events["T"]

    @property
    def pooled(self):
        """The rows an event's own rows are replaced by when it is made harmless: the plain chain's pooled
        rows ``P-bar``; a history-aware chain's event-marginal rows (its ``pooled_matrix``)."""
        if "pooled" not in self._events:
            c = self.chain
            self._events["pooled"] = c.pooled_matrix_ if self.sparse is False else c.pooled_matrix()
        return self._events["pooled"]

    def start_row(self, state: str) -> int:
        """The chain state of a state name: a chain state's own name, or a base state's name (for a
        history-aware chain, the base state's own row)."""
        names = self.state_names
        if state in names and not self.sparse:
            return names.index(state)
        if state in self.base_names:
            b = self.base_names.index(state)
            if not self.sparse:
                return b
            levels = self.chain.state_levels_
            rows = np.flatnonzero((levels == 0) & (self.base_of == b))
            return int(rows[0])
        if self.sparse and state in names:
            return names.index(state)
        raise ConfigError(f"state {state!r} is not a state of the model; its states are {self.base_names}")

    def rows_data(self, matrix) -> np.ndarray:
        """The values of a matrix of this chain on the marginal chain's sparsity pattern (sparse views)."""
        T = self.transition
        if (matrix.indptr.shape == T.indptr.shape and matrix.indices.shape == T.indices.shape
                and np.array_equal(matrix.indices, T.indices) and np.array_equal(matrix.indptr, T.indptr)):
            return np.asarray(matrix.data, dtype=np.float64)
        rows = np.repeat(np.arange(T.shape[0]), np.diff(T.indptr))
        return np.asarray(matrix[rows, T.indices], dtype=np.float64).reshape(-1)


def view_of(chain, event_probs: np.ndarray | None = None) -> ChainView:
    """The :class:`ChainView` of a fitted chain, under ``event_probs`` (default: the fitted arrivals)."""
    if not chain.__sklearn_is_fitted__():
        raise NotFittedError(f"this {type(chain).__name__} is not fitted yet; call fit first")
    probs = np.asarray(chain.event_probs_ if event_probs is None else event_probs, dtype=np.float64)
    base = chain.base_
    sparse = base is not chain
    return ChainView(chain=chain, probs=probs, mask=np.asarray(chain.is_failure_, dtype=bool),
                     event_names=list(base.event_names_), state_names=list(chain.state_names_),
                     base_names=list(base.state_names_), base_of=np.asarray(chain.base_state_, np.int64),
                     sparse=sparse)
