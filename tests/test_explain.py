"""Explanations: failure flux, most likely paths, Shapley attributions, removal effects, the mix gradient.

References: Monte Carlo runs of the fitted chain (:func:`markovfault.forecast.simulate_chain`), brute-force
enumeration of every path, brute-force permutation averages over a value function built here from the
matrices, an absorbing-chain linear solve (removal effects), deeptime's ``forward_committor`` (the limit of a
long horizon), finite differences (the gradient) and the predictor's own forecasts.
"""

import itertools
import warnings
from math import factorial

import numpy as np
import pandas as pd
import pytest

from markovfault import FaultPredictor
from markovfault.chain import EventMarkovChain
from markovfault.exceptions import ConfigError, NotFittedError
from markovfault.explain import (attribute_events, attribute_states, event_mix_gradient, failure_flux,
                                 likely_paths)
from markovfault.forecast import simulate_chain
from markovfault.simulate import simulate_histories

NAMES = ["ok", "slow", "retry", "error"]
FAIL = np.array([False, False, False, True])
EVENTS = ["created", "paid", "timeout"]
# uneven counts C[e, i, j]; "timeout" is the risky event, "retry" the risky state
COUNTS = np.array([
    [[70, 12, 5, 3], [40, 31, 9, 4], [22, 6, 11, 9], [30, 4, 6, 17]],
    [[55, 9, 2, 1], [33, 20, 4, 2], [18, 3, 6, 4], [25, 2, 3, 9]],
    [[14, 11, 9, 7], [6, 9, 8, 10], [3, 2, 5, 12], [5, 1, 3, 11]],
])


@pytest.fixture(scope="module")
def chain():
    return EventMarkovChain(alpha=0.5, beta=2.0).fit_from_counts(COUNTS, NAMES, EVENTS, FAIL)


def _monte_carlo(chain, start, k, n, seed=3, scenario=None):
    """Paths of the fitted chain: states (n, k), events (n, k), and the step of the first failure (0: none)."""
    states, events = simulate_chain(chain.event_matrices_, chain.event_probs_, np.full(n, start), k,
                                    scenario=scenario, random_state=seed)
    fails = FAIL[states]
    first = np.where(fails.any(axis=1), fails.argmax(axis=1) + 1, 0)
    return states, events, first


# ---------------------------------------------------------------------------- flux
def test_flux_adds_up_to_the_forecast_and_matches_monte_carlo(chain):
    k, start, n = 6, 0, 400_000
    flux = failure_flux(chain, k, state="ok")
    assert flux.p_fail == pytest.approx(chain.failure_probabilities(k)[start, -1], abs=1e-12)
    assert flux.into_failure["share"].sum() == pytest.approx(1.0, abs=1e-12)
    assert flux.by_step.sum() == pytest.approx(1.0, abs=1e-12)
    assert flux.by_event["entering"].sum() == pytest.approx(1.0, abs=1e-12)
    # the flux of all edges at step t is P(fail within k, no failure before t)
    per_step = flux.edges.groupby("step")["flux"].sum()
    assert per_step[1] == pytest.approx(flux.p_fail, abs=1e-12)

    states, events, first = _monte_carlo(chain, start, k, n)
    failed = first > 0
    assert failed.mean() == pytest.approx(flux.p_fail, abs=4 * np.sqrt(flux.p_fail / n))
    prev = np.concatenate([np.full((n, 1), start), states[:, :-1]], axis=1)
    t = np.arange(1, k + 1)[None, :]
    taken = failed[:, None] & (t <= first[:, None])  # steps of failing paths up to their first failure
    mc = pd.DataFrame({"state": np.array(NAMES)[prev[taken]], "event": np.array(EVENTS)[events[taken]],
                       "next_state": np.array(NAMES)[states[taken]], "step": np.broadcast_to(t, taken.shape)[taken]})
    # edges by step: the flux is the probability of the (step, edge) among all paths
    got = flux.edges.assign(state=flux.edges.state.astype(str), event=flux.edges.event.astype(str),
                            next_state=flux.edges.next_state.astype(str))
    seen = mc.value_counts(["step", "state", "event", "next_state"]) / n
    top = got.nlargest(25, "flux")
    for row in top.itertuples():
        p = seen.get((row.step, row.state, row.event, row.next_state), 0.0)
        assert abs(p - row.flux) <= 4.5 * np.sqrt(row.flux * (1 - row.flux) / n) + 1e-4, row
    # shares by event of the failing step and by step of the first failure
    entering = mc[mc.next_state == "error"].event.value_counts() / failed.sum()
    for e in EVENTS:
        assert abs(entering.get(e, 0) - flux.by_event.loc[e, "entering"]) < 0.01
    by_step = pd.Series(first[failed]).value_counts(normalize=True)
    assert np.allclose(by_step.reindex(range(1, k + 1), fill_value=0).to_numpy(), flux.by_step.to_numpy(), atol=0.01)
    # the expected number of steps from each state on a failing path
    visits = mc.state.value_counts() / failed.sum()
    assert np.allclose(visits.reindex(NAMES[:3]).to_numpy(), flux.by_state.reindex(NAMES[:3]).to_numpy(), atol=0.02)


def test_flux_under_a_scenario_matches_the_scenario_forecast_and_monte_carlo(chain):
    scenario = ["timeout", "paid", "timeout", "created"]
    flux = failure_flux(chain, state="slow", scenario=scenario)
    assert flux.horizon == 4 and flux.scenario == scenario
    want = chain.failure_probabilities(4, scenario=scenario)[1, -1]
    assert flux.p_fail == pytest.approx(want, abs=1e-12)
    # each step's edges carry that step's event only
    assert (flux.edges.event.astype(str).to_numpy() == np.array(scenario)[flux.edges.step.to_numpy() - 1]).all()
    codes = [EVENTS.index(e) for e in scenario]
    n = 300_000
    states, _, first = _monte_carlo(chain, 1, 4, n, seed=8, scenario=codes)
    by_step = pd.Series(first[first > 0]).value_counts(normalize=True).reindex(range(1, 5), fill_value=0)
    assert np.allclose(by_step.to_numpy(), flux.by_step.to_numpy(), atol=0.01)


def test_flux_of_a_history_aware_model_adds_up_to_its_forecasts():
    history = simulate_histories(n_handlers=12, n_steps=300, random_state=4)
    model = FaultPredictor(columns={"entity": "handler", "time": "timestamp", "event": "event_type",
                                    "status": "status", "event_id": "event_id"},
                           states={"kind": "categorical", "failure": ["error", "timeout", "down"]},
                           history={"order": 2}).fit(history)
    forecast = model.predict(history, horizon=5, layout="wide").set_index("entity")
    for entity in forecast.index[:3]:
        flux = failure_flux(model, 5, entity=entity, histories=history)
        assert flux.p_fail == pytest.approx(forecast.loc[entity, "p_fail_5"], abs=1e-12)
        assert flux.into_failure["share"].sum() == pytest.approx(1.0, abs=1e-9)
        chain_edges = failure_flux(model, 5, entity=entity, histories=history, by="chain")
        assert chain_edges.edges["flux"].sum() == pytest.approx(flux.edges["flux"].sum(), abs=1e-12)
        paths = likely_paths(model, 5, entity=entity, histories=history, n_paths=3)
        assert paths.p_fail == pytest.approx(flux.p_fail, abs=1e-12)
        assert (np.diff(paths.table["probability"].to_numpy()) <= 1e-15).all()
        assert "chain_states" in paths.table
    # a scenario from an entity: the predictor's what-if forecast
    entity = forecast.index[0]
    what_if = model.predict(history, horizon=3, scenario=["payment_failed"] * 3, layout="wide").set_index("entity")
    flux = failure_flux(model, entity=entity, histories=history, scenario=["payment_failed"] * 3)
    assert flux.p_fail == pytest.approx(what_if.loc[entity, "p_fail_3"], abs=1e-12)


# ---------------------------------------------------------------------------- paths
def _all_failing_paths(chain, start, k):
    """Every failing (event, state) path within k steps, by brute force: {(states, events): probability}."""
    Q, P = chain.event_probs_, chain.event_matrices_
    out = {}

    def walk(s, p, states, events, t):
        if t == k:
            return
        for e in range(len(EVENTS)):
            for j in range(len(NAMES)):
                q = p * Q[s, e] * P[e, s, j]
                if q <= 0:
                    continue
                if FAIL[j]:
                    out[(tuple(states + [j]), tuple(events + [e]))] = q
                else:
                    walk(j, q, states + [j], events + [e], t + 1)

    walk(start, 1.0, [start], [], 0)
    return out


def test_the_most_likely_paths_are_those_of_brute_force_enumeration(chain):
    k = 4
    every = _all_failing_paths(chain, 2, k)
    total = sum(every.values())
    assert total == pytest.approx(chain.failure_probabilities(k)[2, -1], abs=1e-12)
    ranked = sorted(every.items(), key=lambda kv: -kv[1])
    paths = likely_paths(chain, k, state="retry", n_paths=15)
    want = np.array([p for _, p in ranked[:15]])
    assert np.allclose(paths.table["probability"].to_numpy(), want, rtol=1e-12, atol=0)
    for (states, events), row in zip((kv[0] for kv in ranked[:15]), paths.table.itertuples()):
        if not np.isclose(every[(states, events)], row.probability, rtol=1e-12):
            continue
        assert every.get((tuple(NAMES.index(s) for s in row.states), tuple(EVENTS.index(e) for e in row.events))) \
            == pytest.approx(row.probability, rel=1e-12)
    assert paths.coverage == pytest.approx(want.sum() / total, rel=1e-12)
    assert paths.table.index[0] == 1 and paths.complete


def test_paths_without_events_sum_over_the_events_and_match_monte_carlo(chain):
    k, n = 5, 300_000
    paths = likely_paths(chain, k, state="ok", n_paths=5, events=False)
    assert all(set(ev) == {"*"} for ev in paths.table["events"])
    states, _, first = _monte_carlo(chain, 0, k, n, seed=21)
    full = np.concatenate([np.zeros((n, 1), np.int64), states], axis=1)
    for row in paths.table.itertuples():
        code = [NAMES.index(s) for s in row.states]
        L = len(code) - 1
        hit = (first == L) & (full[:, :L + 1] == np.array(code)[None]).all(axis=1)
        assert abs(hit.mean() - row.probability) <= 4.5 * np.sqrt(row.probability / n)


# ---------------------------------------------------------------------------- attributions
def _value(chain, coalition, k, start, neutral):
    """P(fail within k) from ``start`` when only the events of ``coalition`` act: built here, loop by loop."""
    Q, P, Pbar = chain.event_probs_, chain.event_matrices_, chain.pooled_matrix_
    S = len(NAMES)
    T = np.zeros((S, S))
    for i in range(S):
        if neutral == "absent":
            mass = sum(Q[i, e] for e in coalition)
            if mass == 0:  # no event arrives: no further step, no failure
                continue
            for e in coalition:
                T[i] += Q[i, e] / mass * P[e, i]
        else:
            for e in range(len(EVENTS)):
                T[i] += Q[i, e] * (P[e, i] if e in coalition else Pbar[i])
    return _by_hand(T, FAIL, k)[start]


def _by_hand(T, fail, k):
    """P(fail within k) by the recursion written out; rows may lose mass (it never fails)."""
    f = fail.astype(float)
    for _ in range(k):
        g = T @ f
        f = np.where(fail, 1.0, g)
    return g


def _permutation_shapley(value, n):
    phi = np.zeros(n)
    for order in itertools.permutations(range(n)):
        have = []
        for j in order:
            before = value(tuple(have))
            have.append(j)
            phi[j] += value(tuple(have)) - before
    return phi / factorial(n)


@pytest.mark.parametrize("neutral", ["absent", "harmless"])
def test_shapley_values_equal_permutation_averages_and_add_up(chain, neutral):
    k = 7
    att = attribute_events(chain, k, neutral=neutral)
    assert list(att.values.index) == NAMES and list(att.values.columns) == EVENTS
    for start in range(len(NAMES)):
        phi = _permutation_shapley(lambda c: _value(chain, c, k, start, neutral), len(EVENTS))
        assert np.allclose(att.values.iloc[start].to_numpy(), phi, atol=1e-12)
        full, empty = _value(chain, (0, 1, 2), k, start, neutral), _value(chain, (), k, start, neutral)
        assert att.values.iloc[start].sum() == pytest.approx(full - empty, abs=1e-12)
        if neutral == "absent":  # nothing arrives, nothing fails: the values share the risk itself
            assert empty == 0.0 and att.baseline.iloc[start] == 0.0
        assert att.value.iloc[start] == pytest.approx(full, abs=1e-12)
        without = [_value(chain, tuple(x for x in range(3) if x != j), k, start, neutral) for j in range(3)]
        assert np.allclose(att.removal_effects.iloc[start].to_numpy(), (full - np.array(without)) / full, atol=1e-12)
    # the risky event carries the most
    assert att.values.loc["ok"].idxmax() == "timeout"


def test_state_shapley_values_equal_permutation_averages(chain):
    k = 6
    att = attribute_states(chain, k, state="ok")
    players = ["ok", "slow", "retry"]
    assert list(att.values.columns) == players
    T = chain.transition_matrix_

    def value(coalition):
        keep = np.array([j in coalition for j in range(3)] + [True], dtype=float)
        return _by_hand(T * keep[None, :], FAIL, k)[0]

    phi = _permutation_shapley(value, 3)
    assert np.allclose(att.values.loc["ok"].to_numpy(), phi, atol=1e-12)
    assert att.values.loc["ok"].sum() == pytest.approx(value((0, 1, 2)) - T[0, 3], abs=1e-12)


def test_removal_effects_equal_the_absorbing_chain_values_of_markov_attribution():
    """Marketing attribution's first-order model: start, four channels, conversion (the 'failure') and
    null (an absorbing end); a removed channel's visits go to null. The long-horizon removal effects equal
    1 - P(convert | channel removed) / P(convert), computed here by a linear solve."""
    names = ["start", "c1", "c2", "c3", "c4", "conv", "null"]
    T = np.array([
        [0, .35, .25, .28, .12, 0, 0],
        [0, .05, .31, .12, .09, .23, .20],
        [0, .21, .04, .17, .14, .13, .31],
        [0, .10, .22, .03, .25, .19, .21],
        [0, .18, .07, .26, .06, .27, .16],
        [0, 0, 0, 0, 0, 1, 0],
        [0, 0, 0, 0, 0, 0, 1],
    ])
    fail = np.array([0, 0, 0, 0, 0, 1, 0], dtype=bool)
    chain = EventMarkovChain(alpha=0, beta=0).fit_from_counts(
        np.rint(T * 1e6).astype(np.int64)[None], names, ["touch"], fail)
    Tfit = chain.transition_matrix_

    def absorb(removed):
        A = Tfit.copy()
        for r in removed:
            A[:, r] = 0.0
        inner = np.arange(5)
        return np.linalg.solve(np.eye(5) - A[np.ix_(inner, inner)], A[inner, 5])[0]

    base = absorb(())
    att = attribute_states(chain, 400, state="start")
    for j, name in enumerate(["c1", "c2", "c3", "c4"], start=1):
        assert att.removal_effects.loc["start", name] == pytest.approx(1 - absorb((j,)) / base, abs=1e-9)
    assert att.value.loc["start"] == pytest.approx(base, abs=1e-9)
    # the removal effects do not add up; the Shapley values do (start itself is a player, never re-entered)
    assert att.removal_effects.loc["start"].sum() > 1.2
    assert att.values.loc["start"].sum() == pytest.approx(base, abs=1e-9)


def test_sampled_shapley_values_agree_with_the_exact_ones(chain):
    exact = attribute_events(chain, 5, state="slow")
    sampled = attribute_events(chain, 5, state="slow", max_exact=0, n_permutations=4000, random_state=2)
    assert not sampled.exact and sampled.standard_errors is not None
    diff = (sampled.values - exact.values).loc["slow"].abs()
    assert (diff <= 4 * sampled.standard_errors.loc["slow"] + 1e-12).all()
    # every order adds up exactly, so the sampled values add up too
    assert sampled.values.loc["slow"].sum() == pytest.approx(exact.values.loc["slow"].sum(), abs=1e-12)


def test_the_mix_gradient_equals_finite_differences(chain):
    k, eps = 8, 1e-6
    grad = event_mix_gradient(chain, k)
    for e, name in enumerate(EVENTS):
        toward = np.zeros_like(chain.event_probs_)
        toward[:, e] = 1.0
        up = chain.failure_probabilities(k, event_probs=(1 - eps) * chain.event_probs_ + eps * toward)[:, -1]
        down = chain.failure_probabilities(k, event_probs=(1 + eps) * chain.event_probs_ - eps * toward)[:, -1]
        assert np.allclose(grad[name].to_numpy(), (up - down) / (2 * eps), atol=1e-7)
    assert (grad["timeout"] > 0).all() and (grad["paid"] < 0).all()


def test_attributions_of_a_history_aware_model_equal_its_own_forecasts():
    """The sparse path: every coalition's chain stacked block-diagonally; the reference runs the chain's
    own recursion under the renormalised arrivals, one coalition at a time."""
    history = simulate_histories(n_handlers=8, n_steps=200, random_state=6)
    model = FaultPredictor(columns={"entity": "handler", "time": "timestamp", "event": "event_type",
                                    "status": "status", "event_id": "event_id"},
                           states={"kind": "categorical", "failure": ["error", "timeout", "down"]},
                           history={"order": 2}).fit(history)
    chain, k = model.chain_, 4
    entity = model.predict(history, horizon=k, layout="wide")["entity"].iloc[1]
    att = attribute_events(model, k, entity=entity, histories=history)
    from markovfault.explain._api import _starts

    row = int(_starts(model, entity=entity, histories=history).rows[0])
    E = len(chain.event_names_)
    Q = chain.event_probs_

    def value(coalition):
        if not coalition:
            return 0.0
        keep = np.zeros(E)
        keep[list(coalition)] = 1.0
        q = Q * keep[None, :]
        q = q / q.sum(axis=1, keepdims=True)  # every state receives every event here
        return chain.failure_probabilities(k, event_probs=q)[row, -1]

    phi = _permutation_shapley(value, E)
    assert np.allclose(att.values.loc[entity].to_numpy(), phi, atol=1e-12)
    grad = event_mix_gradient(model, k, entity=entity, histories=history)
    eps = 1e-6
    for e, name in enumerate(chain.event_names_):
        toward = np.zeros_like(Q)
        toward[:, e] = 1.0
        up = chain.failure_probabilities(k, event_probs=(1 - eps) * Q + eps * toward)[row, -1]
        down = chain.failure_probabilities(k, event_probs=(1 + eps) * Q - eps * toward)[row, -1]
        assert grad.loc[entity, name] == pytest.approx((up - down) / (2 * eps), abs=1e-7)
    states = attribute_states(model, k, entity=entity, histories=history)
    T = chain.transition_matrix().toarray()
    base = chain.base_state_
    players = list(states.values.columns)
    names = chain.base_.state_names_

    def state_value(coalition):
        keep = np.isin(base, [names.index(players[j]) for j in coalition]) | chain.is_failure_
        return _by_hand(T * keep[None, :], chain.is_failure_, k)[row]

    assert np.allclose(states.values.loc[entity].to_numpy(), _permutation_shapley(state_value, len(players)),
                       atol=1e-12)


# ---------------------------------------------------------------------------- a long horizon
def test_a_long_horizon_converges_to_deeptimes_forward_committor():
    deeptime = pytest.importorskip("deeptime")
    from deeptime.markov.tools.analysis import committor

    # ok, slow, retry, error (failure), done (an absorbing end): P(fail within k) -> P(error before done)
    T = np.array([[.62, .17, .08, .05, .08],
                  [.31, .37, .14, .11, .07],
                  [.18, .12, .33, .29, .08],
                  [.40, .10, .20, .30, .00],
                  [0, 0, 0, 0, 1.0]])
    names = ["ok", "slow", "retry", "error", "done"]
    fail = np.array([0, 0, 0, 1, 0], dtype=bool)
    chain = EventMarkovChain(alpha=0, beta=0).fit_from_counts(
        np.rint(T * 1e6).astype(np.int64)[None], names, ["step"], fail)
    Tfit = chain.transition_matrix_.copy()
    absorbing = Tfit.copy()
    absorbing[3] = np.eye(5)[3]
    q = committor(absorbing, [4], [3], forward=True)
    errors = []
    for k in (10, 40, 160, 640):
        p = chain.failure_probabilities(k)[:3, -1]
        errors.append(np.abs(p - q[:3]).max())
        flux = failure_flux(chain, k, state="ok")
        assert flux.p_fail == pytest.approx(p[0], abs=1e-12)
    assert errors[-1] < 1e-10 and all(b < a for a, b in zip(errors, errors[1:]))


# ---------------------------------------------------------------------------- the predictor and errors
@pytest.fixture(scope="module")
def fitted():
    history = simulate_histories(n_handlers=10, n_steps=250, random_state=2)
    model = FaultPredictor(columns={"entity": "handler", "time": "timestamp", "event": "event_type",
                                    "status": "status", "event_id": "event_id"},
                           states={"kind": "categorical", "failure": ["error", "timeout", "down"]}).fit(history)
    return model, history


def test_an_entitys_explanations_use_its_forecast(fitted):
    model, history = fitted
    forecast = model.predict(history, horizon=10, layout="wide").set_index("entity")
    entity = forecast["p_fail_10"].idxmax()
    flux = failure_flux(model, entity=entity, histories=history)
    assert flux.horizon == 10 and flux.start == entity
    assert flux.p_fail == pytest.approx(forecast.loc[entity, "p_fail_10"], abs=1e-12)
    att = attribute_events(model, entity=entity, histories=history)
    assert list(att.values.index) == [entity]
    assert att.value[entity] == pytest.approx(flux.p_fail, abs=1e-12)
    # without histories: the remembered last steps give the same start
    assert failure_flux(model, entity=entity).p_fail == pytest.approx(flux.p_fail, abs=1e-12)
    # a recent event mix changes the forecast the same way predict does
    mix = {"payment_failed": 3, "order_created": 1}
    shifted = model.predict(history, horizon=10, event_mix=mix, layout="wide").set_index("entity")
    assert failure_flux(model, entity=entity, histories=history, event_mix=mix).p_fail == \
        pytest.approx(shifted.loc[entity, "p_fail_10"], abs=1e-12)


def test_bad_requests_get_clear_errors(fitted, chain):
    model, history = fitted
    with pytest.raises(ConfigError, match="entity 'nobody'"):
        failure_flux(model, entity="nobody", histories=history)
    with pytest.raises(ConfigError, match="not a state"):
        likely_paths(chain, 3, state="sideways")
    with pytest.raises(ConfigError, match="say where to start"):
        failure_flux(chain, 3)
    with pytest.raises(ConfigError, match="not both"):
        failure_flux(model, entity="x", state="ok")
    with pytest.raises(ConfigError, match="neutral"):
        attribute_events(chain, 3, neutral="gone")
    with pytest.raises(ConfigError, match="n_paths"):
        likely_paths(chain, 3, state="ok", n_paths=0)
    with pytest.raises(NotFittedError):
        failure_flux(FaultPredictor(), 3, state="ok")
    with pytest.warns(Warning, match="never seen"):
        failure_flux(chain, state="ok", scenario=["created", "meteor"])


# ---------------------------------------------------------------------------- figures
def test_the_figures_draw_what_the_explanations_hold(chain):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from markovfault.plotting import plot_attribution, plot_flux

    flux = failure_flux(chain, 4, state="slow")
    ax = plot_flux(flux, min_share=0.05, ax=Figure().subplots())
    edges = flux.edges.groupby(["step", "state", "next_state"], observed=True)["flux"].sum()
    kept = edges[edges >= 0.05 * flux.p_fail]
    lines = ax.get_lines()[:-1]  # the last is the start's marker
    assert len(lines) == len(kept)
    widths = np.array([ln.get_linewidth() for ln in lines])
    assert np.allclose(widths, 0.5 + 6.0 * kept.to_numpy() / kept.max())  # in the frame's order
    assert [t.get_text() for t in ax.get_yticklabels()][-1] == "error (F)"

    att = attribute_events(chain, 4, state="slow")
    ax = plot_attribution(att, ax=Figure().subplots())
    bars = sorted((p.get_width() for p in ax.patches))
    assert np.allclose(bars, np.sort(att.values.loc["slow"].to_numpy()))


def test_the_propagation_figure_draws_every_edge_and_the_likeliest_root():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from markovfault.explain import propagation_test, rank_root_causes
    from markovfault.plotting import plot_propagation
    from markovfault.simulate import simulate_call_graph

    sim = simulate_call_graph(10, rate=0.2, random_state=4)
    graph = propagation_test(sim.histories, failure=sim.failure)
    ep = sim.episodes.iloc[-1]
    ranked = rank_root_causes(sim.histories, ep.start, ep.end, failure=sim.failure, propagation=graph)
    ax = plot_propagation(graph, ranked, ax=Figure().subplots())
    arrows = [c for c in ax.get_children() if type(c).__name__ == "Annotation"]
    assert len(arrows) == len(graph.edges) > 0
    labels = {t.get_text() for t in ax.texts} - {""}  # the arrows are annotations without text
    assert f"{ranked.entity[0]} (#1)" in labels and len(labels) == len(set(graph.table["source"]))
    filled = [ln for ln in ax.get_lines() if ln.get_markerfacecolor() != "white"]
    assert len(filled) == 1


def test_a_start_that_cannot_fail_has_nothing_to_explain_and_strict_json():
    import json

    from markovfault.explain import explain

    counts = np.array([[[60, 30, 0, 0], [50, 30, 20, 0], [0, 0, 10, 0], [0, 0, 0, 10]]])
    chain = EventMarkovChain(alpha=0, beta=0).fit_from_counts(
        counts, ["ok", "slow", "down", "done"], ["a"], [False, False, True, False])
    why = explain(chain, state="done", horizon=3)
    assert why.p_fail == 0 and len(why.paths.table) == 0 and why.paths.coverage == 0
    assert "nothing to explain" in why.to_text()
    data = json.loads(json.dumps(why.to_dict(), allow_nan=False))  # NaN shares are null, not NaN
    assert data["flux"]["by_step"][0]["share"] is None
    # from ok the risk is there, and the JSON is strict too
    json.dumps(explain(chain, state="ok", horizon=3).to_dict(), allow_nan=False)
