"""Priors given as "auto": chosen by the evidence wherever a chain is estimated, reported, saved and parsed.

References: the evidence written out with scipy's Dirichlet-multinomial over a dense grid (brute force), rows
drawn from a Dirichlet of known strength, the true event mix of a simulated system with mix shifts, and the
true what-if forecast of the simulated order service.
"""

import copy

import numpy as np
import pandas as pd
import pytest
from scipy.stats import dirichlet_multinomial

from markovfault import FaultPredictor, backtest, load_model
from markovfault._eventmix import RECENT, event_probs_for
from markovfault._priors import recent_strength_from_windows, shift_event_probs
from markovfault._recursion import scenario_hitting_probabilities
from markovfault.chain import EventMarkovChain, make_chain
from markovfault.config import check_config, load_config
from markovfault.exceptions import ConfigError
from markovfault.persistence import read_header
from markovfault.simulate import OrderServiceSystem, simulate_histories
from markovfault.states import HistorySpec

COLUMNS = {"entity": "handler", "time": "timestamp", "event": "event_type", "status": "status"}
STATES = {"kind": "categorical", "states": ["ok", "slow", "error", "timeout", "down"],
          "failure": ["error", "timeout", "down"]}
AUTO = dict(alpha="auto", beta="auto", recent_strength="auto")
quiet = pytest.mark.filterwarnings("ignore::markovfault.exceptions.DataWarning")

# a log grid fine enough that its best point is within 0.05% of the true maximum
DENSE = np.exp(np.linspace(np.log(0.05), np.log(5e3), 20001))

# uneven hand-made counts C[e, i, j]: 3 events, 3 states, rows of 0 to 41 transitions
C = np.array([
    [[30, 7, 4], [9, 2, 0], [1, 1, 5]],
    [[3, 11, 2], [0, 1, 0], [6, 0, 13]],
    [[2, 0, 1], [17, 21, 3], [0, 0, 0]],
])


def brute_force(rows, means):
    """The strength of the best of DENSE by the summed scipy log-pmf of every row with data (the
    multinomial coefficient is a constant: it does not move the maximum)."""
    rows = np.asarray(rows)
    means = np.broadcast_to(means, rows.shape).reshape(-1, rows.shape[-1])
    rows = rows.reshape(-1, rows.shape[-1])
    keep = rows.sum(axis=1) > 0
    total = np.zeros(len(DENSE))
    for n, p in zip(rows[keep], means[keep]):
        total += dirichlet_multinomial.logpmf(n, DENSE[:, None] * p[None, :], n.sum())
    return DENSE[np.argmax(total)]


def test_chosen_alpha_and_betas_are_the_maxima_of_the_evidence():
    chain = EventMarkovChain(alpha="auto", beta="auto").fit_from_counts(
        C, ["a", "b", "c"], ["x", "y", "z"], [False, False, True])
    pooled = C.sum(axis=0)
    assert chain.alpha_ == pytest.approx(brute_force(pooled, np.full(3, 1 / 3)), rel=1e-3)
    # each event's rows around the (alpha-smoothed) pooled rows of the other two events
    others = pooled[None] - C
    mean = (others + chain.alpha_ / 3) / (others.sum(axis=2, keepdims=True) + chain.alpha_)
    assert chain.beta_ == pytest.approx(brute_force(C, mean), rel=1e-3)
    # the arrival rows N[i, e] around the global event mix, a strength of their own
    arrivals = C.sum(axis=2).T
    glob = arrivals.sum(axis=0) / arrivals.sum()
    assert chain.beta_arrivals_ == pytest.approx(brute_force(arrivals, glob), rel=1e-3)
    assert chain.beta_arrivals_ != pytest.approx(chain.beta_, rel=0.05)
    # and the tensors are the formulas' with those numbers
    same = EventMarkovChain(alpha=chain.alpha_, beta=chain.beta_).fit_from_counts(
        C, ["a", "b", "c"], ["x", "y", "z"], [False, False, True])
    np.testing.assert_allclose(chain.event_matrices_, same.event_matrices_, rtol=1e-12)
    Q = (arrivals + chain.beta_arrivals_ * glob) / (arrivals.sum(axis=1, keepdims=True)
                                                     + chain.beta_arrivals_)
    np.testing.assert_allclose(chain.event_probs_, Q, rtol=1e-12)


def test_given_numbers_are_used_as_before():
    chain = EventMarkovChain(alpha=0.7, beta=3).fit_from_counts(
        C, ["a", "b", "c"], ["x", "y", "z"], [False, False, True])
    assert (chain.alpha_, chain.beta_, chain.beta_arrivals_) == (0.7, 3.0, 3.0)
    arrivals = C.sum(axis=2).T
    glob = arrivals.sum(axis=0) / arrivals.sum()
    np.testing.assert_allclose(chain.event_probs_,
                               (arrivals + 3 * glob) / (arrivals.sum(axis=1, keepdims=True) + 3))
    pooled = (C.sum(axis=0) + 0.7 / 3) / (C.sum(axis=(0, 2))[:, None] + 0.7)
    np.testing.assert_allclose(chain.pooled_matrix_, pooled)


def test_chosen_strengths_recover_simulated_dirichlet_priors():
    rng = np.random.default_rng(4)
    n_events, n_states = 14, 6
    # pooled rows drawn around the uniform row with mass 9; event rows around them with strength 25
    pooled = rng.dirichlet(np.full(n_states, 9.0 / n_states), size=n_states)
    P = np.stack([[rng.dirichlet(25.0 * pooled[i]) for i in range(n_states)]
                  for _ in range(n_events)])
    totals = rng.integers(40, 400, size=(n_events, n_states))  # uneven rows
    counts = np.stack([[rng.multinomial(totals[e, i], P[e, i]) for i in range(n_states)]
                       for e in range(n_events)])
    chain = EventMarkovChain(alpha="auto", beta="auto").fit_from_counts(
        counts, [f"s{i}" for i in range(n_states)], [f"e{k}" for k in range(n_events)],
        [False] * (n_states - 1) + [True])
    assert chain.beta_ == pytest.approx(25.0, rel=0.25)
    # the pooled rows themselves around the uniform row: mass 9, seen through 6 rows only
    assert chain.alpha_ == pytest.approx(9.0, rel=0.6)


def test_history_aware_chains_choose_on_their_base_chain():
    frame = pd.DataFrame({"entity": np.repeat(["p", "q"], 30), "time": np.tile(np.arange(30), 2),
                          "event": np.random.default_rng(1).choice(["x", "y", "z"], 60),
                          "status": np.random.default_rng(2).choice(["a", "b", "c"], 60)})
    model = FaultPredictor(states={"failure": ["c"]}, history={"order": 2}, **AUTO).fit(frame)
    base = model.chain_.base_
    plain = EventMarkovChain(alpha="auto", beta="auto").fit_from_counts(
        base.counts_, base.state_names_, base.event_names_, base.is_failure_)
    assert (base.alpha_, base.beta_, base.beta_arrivals_) == (
        plain.alpha_, plain.beta_, plain.beta_arrivals_)
    assert model.priors_["value"].tolist()[:3] == [base.alpha_, base.beta_, base.beta_arrivals_]
    assert type(make_chain(HistorySpec(order=2), alpha="auto")).__name__ == "HistoryChain"


@pytest.mark.parametrize("value", ["Auto", "automatic", "", True, -1.0, float("nan")])
def test_other_values_are_config_errors_naming_the_prior(value):
    for name in ("alpha", "beta"):
        with pytest.raises(ConfigError, match=f"{name} = "):
            EventMarkovChain(**{name: value}).fit_from_counts(C, ["a", "b", "c"], ["x", "y", "z"],
                                                            [False, False, True])
    frame = pd.DataFrame({"entity": ["a"] * 4, "time": [1, 2, 3, 4],
                          "status": ["ok", "down", "ok", "ok"]})
    for name in ("alpha", "beta", "recent_strength"):
        with pytest.raises(ConfigError, match=f"{name} = "):
            FaultPredictor(states={"failure": ["down"]}, **{name: value}).fit(frame)
        with pytest.raises(ConfigError, match=rf"\[model\] {name} = .*\"auto\""):
            check_config({"model": {name: value}})


def test_config_reads_auto(tmp_path):
    path = tmp_path / "model.toml"
    path.write_text('[states]\nkind = "categorical"\nfailure = ["down"]\n\n'
                    '[model]\nalpha = "auto"\nbeta = 0.5\nrecent_strength = "auto"\n')
    config = load_config(path)
    model = FaultPredictor.from_config(config)
    assert (model.alpha, model.beta, model.recent_strength) == ("auto", 0.5, "auto")
    frame = pd.DataFrame({"entity": ["a"] * 6 + ["b"] * 6, "time": list(range(6)) * 2,
                          "status": ["ok", "ok", "down", "ok", "down", "ok"] * 2})
    model.fit(frame)
    assert model.priors_["source"].to_dict() == {"alpha": "chosen", "beta": "given",
                                                 "beta_arrivals": "given",
                                                 "recent_strength": "chosen"}
    assert model.priors_.loc["beta", "value"] == 0.5
    path.write_text('[states]\nfailure = ["down"]\n[model]\nbeta = "AUTO"\n')
    with pytest.raises(ConfigError, match=r"model.toml: \[model\] beta = 'AUTO'"):
        load_config(path)


# ----------------------------------------------------------------- the recent mix
def test_recent_strength_is_the_one_closest_to_the_true_mixes_of_simulated_windows():
    """Windows whose states' mixes are drawn around the shifted long-run mix (strength 60): the chosen
    strength makes the recent mix as close to the true mixes as the best strength of a dense grid."""
    rng = np.random.default_rng(8)
    Qb = np.array([[0.6, 0.3, 0.1], [0.5, 0.3, 0.2], [0.3, 0.3, 0.4], [0.2, 0.5, 0.3]])
    n_windows, n_states = 300, 4
    shift = np.exp(rng.normal(0.0, 0.5, size=(n_windows, 1, 3)))
    target = Qb * shift / (Qb * shift).sum(axis=2, keepdims=True)
    true = np.stack([[rng.dirichlet(60.0 * target[w, s]) for s in range(n_states)]
                     for w in range(n_windows)])
    visits = rng.integers(20, 300, size=(n_windows, n_states)) * np.array([8, 3, 1, 1])
    counts = np.stack([[rng.multinomial(visits[w, s], true[w, s]) for s in range(n_states)]
                       for w in range(n_windows)])
    chosen = recent_strength_from_windows(counts, Qb)
    # the recent mix of every window at once: with the long-run rows as the fitted ones, shift_event_probs
    # is (counts + k * target) / (visits + k), target the long-run rows times the window's shift
    rows = counts.sum(axis=2, keepdims=True)
    ratio = counts.sum(axis=1, keepdims=True) / (rows * Qb).sum(axis=1, keepdims=True)
    shifted = Qb * ratio / (Qb * ratio).sum(axis=2, keepdims=True)
    np.testing.assert_allclose(shift_event_probs(Qb, np.arange(n_states), Qb, counts[7], 33.0),
                               (counts[7] + 33.0 * shifted[7]) / (rows[7] + 33.0))

    def error(k):
        return float((((counts + k * shifted) / (rows + k) - true) ** 2).sum())

    grid = np.exp(np.linspace(np.log(2.0), np.log(5000.0), 80))
    errors = np.array([error(k) for k in grid])
    assert error(chosen) <= 1.02 * errors.min()
    assert error(chosen) < 0.9 * min(error(2.0), error(5000.0))
    # one window is nothing to learn from
    assert recent_strength_from_windows(counts[:1], Qb) is None


@pytest.fixture(scope="module")
def shifted():
    """An order service whose event mix shifts: six outages (payment failures x10), order_shipped x4
    over steps 100..220, payment_succeeded x0.2 over 500..560; every handler steps at the same times."""
    return simulate_histories(120, 900, random_state=5, with_metrics=False, flaky_fraction=0.0,
                              outages=6, mix_shifts=[(100, 220, {"order_shipped": 4.0}),
                                                     (500, 560, {"payment_succeeded": 0.2})],
                              clock="aligned", jitter=0.2, return_result=True)


def test_recent_strength_against_the_true_mix_of_a_simulated_system(shifted):
    sim = shifted
    frame = sim.frame
    train = frame[sim.step < 600]
    model = FaultPredictor(states=STATES, columns=COLUMNS, recent_strength="auto").fit(train)
    chain, width = model.chain_, 10
    names, events = list(sim.system.state_names), list(sim.system.event_names)
    # the arrivals of the held-out steps 600..900, by hand: (state before, event, step)
    state = pd.Categorical(frame["status"], categories=chain.state_names_).codes
    event = pd.Categorical(frame["event_type"], categories=chain.event_names_).codes
    first = np.r_[True, frame["handler"].to_numpy()[1:] != frame["handler"].to_numpy()[:-1]]
    prev = np.r_[0, state[:-1]]
    Q = np.stack([sim.system.shifted_event_probs("normal", sim.regime_multipliers.loc[r].to_dict())
                  for r in sim.regime_multipliers.index])  # true Q per regime, simulator's order
    Q = Q[:, [names.index(s) for s in chain.state_names_]][:, :, [events.index(e)
                                                                  for e in chain.event_names_]]
    windows = []
    for start in range(600, 900, width):
        sel = ~first & (sim.step >= start) & (sim.step < start + width)
        counts = np.zeros((5, 5), dtype=np.int64)
        np.add.at(counts, (prev[sel], event[sel]), 1)
        # the truth of the window: each state's true mix, averaged over its arrivals' regimes
        truth, visits = np.zeros((5, 5)), np.bincount(prev[sel], minlength=5)
        np.add.at(truth, prev[sel], Q[sim.regime[sel], prev[sel]])
        windows.append((counts, truth / np.maximum(visits, 1)[:, None], visits))

    def error(k):
        return sum(float((v[:, None] * (event_probs_for(chain, RECENT, c, strength=k) - t) ** 2).sum())
                   for c, t, v in windows)

    grid = np.exp(np.linspace(np.log(5.0), np.log(1e5), 50))
    errors = np.array([error(k) for k in grid])
    chosen = model.recent_strength_
    assert model.priors_.loc["recent_strength", "source"] == "chosen"
    assert error(chosen) <= 1.1 * errors.min()  # measured: 1.007 (chosen 212, best of the grid 155)
    assert error(chosen) < error(500.0)  # the default, set on another simulation
    assert error(chosen) < 0.7 * min(error(5.0), error(1e5))


@quiet
def test_backtest_folds_choose_the_recent_strength_from_their_training_data(shifted):
    frame = shifted.frame
    cut = frame["timestamp"].quantile(0.7)
    kw = dict(horizon=3, cutoffs=[cut], baselines=[], event_mix=["long_run", "recent"],
              recent_window="10min", progress=False)
    auto = backtest(frame, FaultPredictor(states=STATES, columns=COLUMNS, recent_strength="auto"), **kw)
    # a model fitted on the fold's training steps (before the cutoff) chooses the same strength
    chosen = FaultPredictor(states=STATES, columns=COLUMNS, recent_strength="auto").fit(
        frame[frame["timestamp"] < cut]).recent_strength_
    given = backtest(frame, FaultPredictor(states=STATES, columns=COLUMNS, recent_strength=chosen),
                     **kw)
    pd.testing.assert_frame_equal(auto.predictions, given.predictions)
    other = backtest(frame, FaultPredictor(states=STATES, columns=COLUMNS), **kw)
    recent = auto.predictions["model"] == "markov_recent"
    assert not np.allclose(auto.predictions.loc[recent, "p"], other.predictions.loc[recent, "p"])


# ------------------------------------------------------------ batches, files, summaries
@pytest.fixture(scope="module")
def halves(shifted):
    frame = shifted.frame
    cut = frame["timestamp"].quantile(0.5)
    return frame, frame[frame["timestamp"] < cut], frame[frame["timestamp"] >= cut]


@quiet
def test_partial_fit_and_streams_choose_again_from_all_the_data(halves):
    frame, early, late = halves
    whole = FaultPredictor(states=STATES, columns=COLUMNS, **AUTO).fit(frame)
    first = FaultPredictor(states=STATES, columns=COLUMNS, **AUTO).fit(early)
    both = copy.deepcopy(first).partial_fit(late)
    stream = FaultPredictor(states=STATES, columns=COLUMNS, **AUTO).fit(frame, chunksize=9000)
    for model in (both, stream):
        np.testing.assert_array_equal(model.chain_.counts_, whole.chain_.counts_)
        pd.testing.assert_frame_equal(model.priors_, whole.priors_)
        assert model.recent_bins_.width == whole.recent_bins_.width
        np.testing.assert_array_equal(model.recent_bins_.counts, whole.recent_bins_.counts)
    assert not np.isclose(first.priors_["value"], whole.priors_["value"]).any()  # chosen again


@quiet
def test_chosen_priors_survive_a_model_file(halves, tmp_path):
    frame, early, late = halves
    model = FaultPredictor(states=STATES, columns=COLUMNS, **AUTO).fit(early)
    path = tmp_path / "model.npz"
    model.save(path)
    header = read_header(path)
    assert header["model"]["alpha"] == header["model"]["recent_strength"] == "auto"
    assert header["priors"]["beta"] == {"value": model.chain_.beta_, "source": "chosen"}
    same = load_model(path)
    pd.testing.assert_frame_equal(same.priors_, model.priors_)
    recent = dict(event_mix="recent", recent_window="10min")
    pd.testing.assert_frame_equal(same.predict(late, horizon=3, **recent),
                                  model.predict(late, horizon=3, **recent))
    # and a later batch chooses again as it would have without the file
    pd.testing.assert_frame_equal(same.partial_fit(late).priors_,
                                  copy.deepcopy(model).partial_fit(late).priors_)
    # given numbers: no arrival bins in the file, the numbers in the header
    given = FaultPredictor(states=STATES, columns=COLUMNS, alpha=0.5, beta=2.0).fit(early)
    given.save(path)
    assert "recent_bins" not in read_header(path)
    assert load_model(path).priors_["value"].tolist() == [0.5, 2.0, 2.0, 500.0]


def test_files_without_the_chosen_priors_still_load(tmp_path):
    """A file written before priors could be chosen: numbers in [model], no priors, no arrival bins."""
    import json

    from markovfault._modelfile import digest, header_digest

    frame = pd.DataFrame({"entity": ["a"] * 6, "time": range(6),
                          "status": ["ok", "ok", "down", "ok", "down", "ok"]})
    model = FaultPredictor(states={"failure": ["down"]}, alpha=0.5, beta=2.0).fit(frame)
    path = tmp_path / "old.npz"
    model.save(path)
    with np.load(path, allow_pickle=False) as npz:
        header = json.loads(npz["header.json"].tobytes().decode("utf-8"))
        arrays = {k: npz[k] for k in npz.files if k != "header.json"}
    del header["priors"], header["model"]["recent_strength"]
    header["arrays"] = {n: {"dtype": a.dtype.str, "shape": list(a.shape), "sha256": digest(a)}
                        for n, a in arrays.items()}
    header["header_sha256"] = header_digest(header)
    payload = np.frombuffer(json.dumps(header, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    with open(path, "wb") as fh:
        np.savez(fh, **{"header.json": payload}, **arrays)
    same = load_model(path)
    assert same.priors_["value"].tolist() == [0.5, 2.0, 2.0, 500.0]
    pd.testing.assert_frame_equal(same.predict(frame, horizon=2), model.predict(frame, horizon=2))


def test_summary_shows_the_priors():
    frame = pd.DataFrame({"entity": ["a"] * 6, "time": range(6),
                          "status": ["ok", "ok", "down", "ok", "down", "ok"]})
    model = FaultPredictor(states={"failure": ["down"]}, beta="auto").fit(frame)
    html = model._repr_html_()
    assert "alpha 1 (given)" in html and "beta_arrivals" in html and "(chosen)" in html
    assert repr(model) == "FaultPredictor(beta='auto', states={'failure': ['down']})"


# --------------------------------------------------------------- the what-if forecast
SCENARIO = ["payment_failed", "payment_failed", "order_created", "payment_failed"]


def true_what_if(system):
    e = [system.event_names.index(x) for x in SCENARIO]
    fail = np.isin(system.state_names, system.failure_states)
    return scenario_hitting_probabilities(list(system.event_matrices["normal"][e]), fail)


def what_if_error(model, system, truth):
    order = [model.state_names_.index(s) for s in system.state_names]
    return np.abs(model.failure_probabilities(4, scenario=SCENARIO).to_numpy()[order] - truth).max()


@quiet
def test_what_if_forecast_with_chosen_beta_is_no_worse_than_unsmoothed():
    """The product owner's check, on a seed nothing was tuned on (2027, drawn before the first run):
    max |forecast - truth| of the what-if over every state and horizon, 200,000 steps."""
    system = OrderServiceSystem.default()
    hist = simulate_histories(100, 2000, system=system, flaky_fraction=0.0, random_state=2027,
                              with_metrics=False)
    truth = true_what_if(system)
    auto = what_if_error(FaultPredictor(states=STATES, columns=COLUMNS, beta="auto").fit(hist),
                         system, truth)
    unsmoothed = what_if_error(FaultPredictor(states=STATES, columns=COLUMNS, beta=0.0).fit(hist),
                               system, truth)
    assert auto <= unsmoothed, (auto, unsmoothed)  # measured: 0.0226 and 0.0271


def replicate_errors(n_handlers, n_steps, n_replicates):
    """The what-if error of beta="auto" and of beta=0 on counts drawn afresh from the true matrices,
    each row as often as in one simulated history (the estimators see nothing but the counts)."""
    system = OrderServiceSystem.default()
    hist = simulate_histories(n_handlers, n_steps, system=system, flaky_fraction=0.0,
                              random_state=2027, with_metrics=False, with_event_ids=False)
    fitted = FaultPredictor(states=STATES, columns=COLUMNS).fit(hist).chain_
    s = [fitted.state_names_.index(x) for x in system.state_names]
    e = [fitted.event_names_.index(x) for x in system.event_names]
    rows = fitted.counts_[np.ix_(e, s, s)].sum(axis=2)
    rng = np.random.default_rng(0)
    truth = true_what_if(system)
    fail = np.isin(system.state_names, system.failure_states)
    out = []
    for _ in range(n_replicates):
        counts = rng.multinomial(rows, system.event_matrices["normal"])
        out.append([np.abs(EventMarkovChain(beta=beta).fit_from_counts(
            counts, system.state_names, system.event_names, fail).failure_probabilities(
            4, scenario=SCENARIO) - truth).max() for beta in ("auto", 0.0)])
    return np.array(out).mean(axis=0)


@quiet
def test_what_if_with_chosen_beta_is_within_a_few_percent_of_unsmoothed_on_average():
    # 200,000 steps: the pooled row the rows shrink toward is far from payment_failed's rows, which
    # the scenario runs on; on average over 120 replicates the two are within 3% (measured: 0.0150
    # and 0.0150, auto 0.3% worse)
    auto, unsmoothed = replicate_errors(100, 2000, 120)
    assert auto <= 1.03 * unsmoothed, (auto, unsmoothed)


@quiet
@pytest.mark.xfail(strict=True, reason="20,000 steps: one strength for every event shrinks the rows of "
                   "payment_failed, far from the pooled row, too much for this what-if (measured: "
                   "0.058 on average against 0.045 unsmoothed); see benchmarks/priors.py")
def test_what_if_with_chosen_beta_is_no_worse_than_unsmoothed_on_average_with_little_data():
    auto, unsmoothed = replicate_errors(20, 1000, 120)
    assert auto <= unsmoothed, (auto, unsmoothed)
