"""Forecasts against references built in the test from the raw frame: the plain chain under a given event
mix (a hand-built mixed matrix), and history-aware what-if scenarios (every path enumerated)."""

import numpy as np
import pandas as pd
import pytest

from markovfault import FaultPredictor

STATES = ["ok", "slow", "down"]
FAIL = {"down"}
quiet = pytest.mark.filterwarnings("ignore::markovfault.exceptions.DataWarning")


def frame(n_entities=40, n_steps=70, seed=5):
    """Histories whose next status depends on the previous two statuses and the event (x arrives 70% of
    the time): a chain with memory, so a history-aware model differs from a plain one."""
    rng = np.random.default_rng(seed)
    law = rng.dirichlet([1.0, 1.0, 0.6], size=(3, 3, 2))  # (prev, cur, event) -> next
    rows = []
    for k in range(n_entities):
        prev, cur = 0, 0
        for t in range(n_steps):
            e = int(rng.random() < 0.3)  # 0: x, 1: y
            nxt = int(rng.choice(3, p=law[prev, cur, e]))
            rows.append((f"h{k:02d}", t, "xy"[e], STATES[nxt]))
            prev, cur = cur, nxt
    return pd.DataFrame(rows, columns=["entity", "time", "event", "status"])


def steps(hist):
    """Each transition of the raw frame by pandas shifts: previous status, status, the event entering it,
    the next event and the next status."""
    h = hist.sort_values(["entity", "time"]).copy()
    g = h.groupby("entity")
    h["prev"] = g["status"].shift(1)
    h["next_event"] = g["event"].shift(-1)
    h["next"] = g["status"].shift(-1)
    return h


def model(**kw):
    return FaultPredictor(states={"kind": "categorical", "states": STATES, "failure": sorted(FAIL)}, **kw)


def fail_within(start_dist, matrices):
    """P(fail within 1..h) from a distribution over STATES, the failure states absorbing."""
    fail = np.isin(STATES, sorted(FAIL))
    alive, done, out = start_dist.astype(float), 0.0, []
    for M in matrices:
        alive = alive @ M
        done = done + alive[fail].sum()
        alive = np.where(fail, 0.0, alive)
        out.append(done)
    return np.array(out)


@quiet
def test_a_given_event_mix_on_the_plain_chain_is_the_mixed_matrix():
    hist = frame()
    st = steps(hist).dropna(subset=["next"])
    # the event matrices by hand: counts of (status, next event, next status), rows normalised (alpha = beta = 0)
    P = {}
    for e in "xy":
        tab = pd.crosstab(st.loc[st["next_event"] == e, "status"], st.loc[st["next_event"] == e, "next"])
        tab = tab.reindex(index=STATES, columns=STATES, fill_value=0).to_numpy(float)
        assert (tab.sum(axis=1) > 0).all()  # every (state, event) row has data: no fallback involved
        P[e] = tab / tab.sum(axis=1, keepdims=True)
    mix = {"x": 1, "y": 3}  # the opposite of the training mix (x 70%)
    T = 0.25 * P["x"] + 0.75 * P["y"]
    fitted = model(alpha=0.0, beta=0.0).fit(hist)
    out = fitted.predict(hist, horizon=4, event_mix=mix)
    long_run = fitted.predict(hist, horizon=4)
    last = hist.sort_values("time").groupby("entity")["status"].last()
    gap = 0.0
    for ent, grp in out.groupby("entity"):
        start = np.array([s == last[ent] for s in STATES], dtype=float)
        np.testing.assert_allclose(grp["p_fail"].to_numpy(), fail_within(start, [T] * 4), rtol=1e-10)
        gap = max(gap, np.abs(grp["p_fail"].to_numpy()
                              - long_run.loc[long_run["entity"] == ent, "p_fail"].to_numpy()).max())
    assert gap > 0.02  # the mix matters here: a forecast that ignored it would fail above


@quiet
@pytest.mark.parametrize("scenario", [["y", "y", "x"], ["x", "y", "y", "y"]])
def test_history_aware_scenario_equals_the_enumerated_paths(scenario):
    hist = frame()
    st = steps(hist).dropna(subset=["next", "prev"])
    # P(next | previous status, status, entering event, next event) by hand, from the raw frame
    counts = st.groupby(["prev", "status", "event", "next_event", "next"]).size()
    totals = counts.groupby(level=[0, 1, 2, 3]).sum()

    def p(prev, cur, e_in, e, nxt):
        key = (prev, cur, e_in, e)
        assert key in totals.index, f"no data for {key}: the reference would need the back-off"
        return counts.get(key + (nxt,), 0) / totals[key]

    # back-off strength 0: every history-aware row is its counts alone (each row used has data)
    fitted = model(history={"order": 2, "entering_event": True, "backoff": 0.0}).fit(hist)
    h = len(scenario)
    out = fitted.predict(hist, horizon=h, scenario=scenario)
    ordered = hist.sort_values(["entity", "time"])
    for ent, grp in out.groupby("entity"):
        tail = ordered[ordered["entity"] == ent].tail(2)
        prev, cur, e_in = tail["status"].iloc[0], tail["status"].iloc[1], tail["event"].iloc[1]
        ref = np.zeros(h)

        def walk(a, m, w):  # every path of next statuses, each ending at its first failure
            for nxt in STATES:
                q = w * p(*a, scenario[m], nxt)
                if q == 0:
                    continue
                if nxt in FAIL:
                    ref[m:] += q  # failed at step m + 1: within every horizon from there on
                elif m + 1 < h:
                    walk((a[1], nxt, scenario[m]), m + 1, q)

        walk((prev, cur, e_in), 0, 1.0)
        np.testing.assert_allclose(grp["p_fail"].to_numpy(), ref, rtol=1e-9, atol=1e-12)
