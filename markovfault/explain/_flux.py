"""Failure flux within k steps, exact: which (state, event, next state) edges failing paths take, and when.

A path "fails within k" when one of its next k states is a failure state; it stops at its first failure.
With ``a_t`` the probability of being at each state after t steps without a failure (``a_0`` the start) and
``h_t(s') = 1`` for a failure state, else P(fail within the steps t+1..k | S_t = s') (the k-step recursion
folded backward: under the marginal chain ``h_t = f_{k-t}``), the flux through the edge (s, e, s') at step t
is

    a_{t-1}(s) Q[s, e] P_e[s, s'] h_t(s')

the probability that the path takes this edge at step t, has not failed before and fails by step k. Over
the edges into a failure state the fluxes add up to P(fail within k) (each failing path enters failure once);
over all edges of one step t, to P(fail within k and no failure before t). Under a what-if scenario the event
of step t is given, and ``Q[s, e]`` drops out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._view import ChainView

__all__ = ["step_sets", "backward", "forward_flux", "flux_frame"]


def step_sets(view: ChainView, horizon: int, codes=None, labels=None, events: bool = True) -> list:
    """What each step of a forecast may do: per step a list of ``(label, matrix)``.

    The marginal chain: every event with its weighted matrix ``diag(Q[:, e]) P_e`` (or, with ``events``
    False, the marginal chain ``T`` labelled :data:`~._view.ANY_EVENT`); a scenario: its event of that step
    with ``P_e`` (``codes``, -1 for an event never seen, named by ``labels``).
    """
    if codes is None:
        if events:
            one = [(name, view.weighted(e)) for e, name in enumerate(view.event_names)]
        else:
            from ._view import ANY_EVENT

            one = [(ANY_EVENT, view.transition)]
        return [one] * horizon
    return [[(str(labels[t]), view.event_matrix(int(c)))] for t, c in enumerate(codes[:horizon])]


def _total(view: ChainView, step: list):
    if len(step) == 1:
        return step[0][1]
    return view.transition


def backward(view: ChainView, steps: list) -> list:
    """``h_t``, t = 0..k: 1 on failure states, else P(fail within the steps t+1..k | S_t).

    ``h_0`` is P(fail within k | S_0) on every state (the start may be a failure state)."""
    fail = view.mask.astype(np.float64)
    keep = 1.0 - fail
    k = len(steps)
    h = [None] * (k + 1)
    h[k] = fail
    for t in range(k, 0, -1):
        g = np.asarray(_total(view, steps[t - 1]) @ h[t]).reshape(-1)
        h[t - 1] = g if t == 1 else fail + keep * g
    return h


def forward_flux(view: ChainView, start: np.ndarray, steps: list) -> tuple:
    """The flux of every edge at every step from the start distribution ``start`` (n_states,).

    Returns ``(p_fail, records)``: P(fail within k) and the arrays ``step`` (1-based), ``state``,
    ``event`` (index into the labels), ``next_state``, ``flux`` of every edge with flux, plus the labels.
    """
    h = backward(view, steps)
    keep = 1.0 - view.mask.astype(np.float64)
    a = np.asarray(start, dtype=np.float64)
    p_fail = float(a @ h[0])
    labels: list = []
    cols = {"step": [], "state": [], "event": [], "next_state": [], "flux": []}
    for t, step in enumerate(steps, start=1):
        live = np.flatnonzero(a > 0)
        for label, M in step:
            if label not in labels:
                labels.append(label)
            li = labels.index(label)
            if view.sparse:
                sub = M[live].tocoo()
                r, c, w = live[sub.row], sub.col, sub.data
            else:
                sub = M[live]
                rr, c = np.nonzero(sub)
                r, w = live[rr], sub[rr, c]
            v = a[r] * w * h[t][c]
            keep_nz = v > 0
            n = int(keep_nz.sum())
            cols["step"].append(np.full(n, t, dtype=np.int64))
            cols["state"].append(r[keep_nz])
            cols["event"].append(np.full(n, li, dtype=np.int64))
            cols["next_state"].append(c[keep_nz])
            cols["flux"].append(v[keep_nz])
        a = keep * np.asarray(a @ _total(view, step)).reshape(-1)
    records = {k: np.concatenate(v) if v else np.zeros(0) for k, v in cols.items()}
    return p_fail, records, labels


def flux_frame(view: ChainView, records: dict, labels: list, by: str = "base") -> pd.DataFrame:
    """The edges as a frame (step, state, event, next_state, flux), on base states (``by="base"``: the
    chain states of a history-aware chain summed by their base states) or on the chain's own states."""
    if by == "base":
        names, state, nxt = view.base_names, view.base_of[records["state"]], view.base_of[records["next_state"]]
    else:
        names, state, nxt = view.state_names, records["state"], records["next_state"]
    frame = pd.DataFrame({"step": records["step"], "state": state, "event": records["event"],
                          "next_state": nxt, "flux": records["flux"]})
    frame = frame.groupby(["step", "state", "event", "next_state"], as_index=False, sort=True)["flux"].sum()
    frame["state"] = pd.Categorical.from_codes(frame["state"].to_numpy(), categories=names)
    frame["next_state"] = pd.Categorical.from_codes(frame["next_state"].to_numpy(), categories=names)
    frame["event"] = pd.Categorical.from_codes(frame["event"].to_numpy(), categories=labels)
    return frame
