"""Sorting kernels for the layouts exports come in (internal API): the stable sort by (entity, time) in
linear time for the common cases."""

from __future__ import annotations

import numpy as np

__all__ = ["group_order", "stable_argsort_codes"]


def group_order(entity: np.ndarray, time: np.ndarray, n_entities: int) -> np.ndarray | None:
    """The stable sort by (entity, time), or ``None`` when rows are in that order.

    Equal to ``np.lexsort((time, entity))``, without its cost in the common
    layouts of exports: already sorted (checked in one pass), or written in
    time order (a stable radix sort of the entity codes).
    """
    n = entity.shape[0]
    if n < 2:
        return None
    if n_entities == n:  # one row per entity (last steps): the inverse permutation
        if not np.any(entity[1:] < entity[:-1]):
            return None
        order = np.empty(n, dtype=np.int64)
        order[entity] = np.arange(n, dtype=np.int64)
        return order
    head = min(n, 1 << 16)  # most exports written in time order show it at once
    if np.any(entity[1:head] < entity[:head - 1]) and not np.any(time[1:] < time[:-1]):
        return stable_argsort_codes(entity, n_entities)
    step = entity[1:] != entity[:-1]
    back = time[1:] < time[:-1]
    if not np.any(entity[1:] < entity[:-1]):
        if not np.any(back & ~step):
            return None
        return np.lexsort((time, entity))
    if not np.any(back):  # time order: group the entities, keeping the order within each
        return stable_argsort_codes(entity, n_entities)
    return np.lexsort((time, entity))


def stable_argsort_codes(codes: np.ndarray, n_codes: int) -> np.ndarray:
    """Stable argsort of non-negative integer codes below ``n_codes``.

    numpy sorts 8- and 16-bit integers stably with a radix sort (linear
    time); larger codes are sorted by their low and then their high 16 bits.
    """
    if n_codes <= 2**16:
        return np.argsort(codes.astype(np.uint16, copy=False), kind="stable")
    low = np.argsort((codes & 0xFFFF).astype(np.uint16), kind="stable")
    high = (codes[low] >> 16).astype(np.uint16)
    return low[np.argsort(high, kind="stable")]
