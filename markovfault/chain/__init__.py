"""The event-conditioned Markov chain estimator.

:class:`EventMarkovChain` turns transition counts into smoothed estimates of
how each kind of event moves an entity between states, ``P(S_n | S_{n-1},
E_n)``, of which events arrive in which state, ``P(E_n | S_{n-1})``, and of the
marginal chain for unknown future events; :class:`HistoryChain` does the same
over history-aware states (:class:`markovfault.states.HistorySpec`), backed off
to the base chain. The numerics live in pure functions (every prior in
:mod:`markovfault._priors`, the k-step recursion in
:mod:`markovfault._recursion`); the estimators store counts and call them.
"""

from __future__ import annotations

from ._event import EventMarkovChain, estimate_tensors
from ._history import HistoryChain

__all__ = ["EventMarkovChain", "estimate_tensors", "HistoryChain", "make_chain"]


def make_chain(spec=None, *, alpha: float = 1.0, beta: float = 1.0):
    """An unfitted chain: :class:`EventMarkovChain` for plain states (``spec`` None or plain),
    :class:`HistoryChain` over the history-aware states of ``spec`` otherwise.

    Both answer the same interface (``count``, ``fit_from_counts``, ``add_counts``, ``encode``,
    ``failure_probabilities``, ...; see ``docs/architecture.md``), so no caller asks which one it holds.

    Examples
    --------
    >>> from markovfault.states import HistorySpec
    >>> type(make_chain(None)).__name__, type(make_chain(HistorySpec(order=2))).__name__
    ('EventMarkovChain', 'HistoryChain')
    """
    if spec is None or spec.is_plain:
        return EventMarkovChain(alpha=alpha, beta=beta)
    return HistoryChain(spec, alpha=alpha, beta=beta)
