"""History-aware states: tuples, back-off, carry-over, event mixes, selection."""

import numpy as np
import pandas as pd
import pytest

from conftest import assert_same_counts

from markovfault import FaultPredictor, load_model
from markovfault._eventmix import mix_event_probs
from markovfault.states._history import HistoryLayout as _Layout
from markovfault.states._history import HistorySpec, augment
from markovfault.selection import select_states
from markovfault.trajectories import Trajectories

quiet = pytest.mark.filterwarnings("ignore::markovfault.exceptions.DataWarning")


def counts_by_name(model):
    """{(event, augmented state name, next base state): count} of a fitted model."""
    ch = model.chain_
    return {(ch.base_.event_names_[e], ch.state_names_[a], ch.base_.state_names_[j]): int(v)
            for (e, a, j), v in np.ndenumerate(ch.counts_.counts) if v}


@quiet
def test_order_two_chain_on_tuples_equals_a_direct_order_two_count():
    seq = ["ok", "down", "down", "ok", "down", "ok", "ok"]
    hist = pd.DataFrame({"entity": "a", "time": range(len(seq)), "status": seq})
    model = FaultPredictor(states={"failure": ["down"]}, history={"order": 2}).fit(hist)
    # direct count of (s[n-2], s[n-1]) -> s[n]; '-' before the history starts
    direct = {}
    for n in range(1, len(seq)):
        prev2 = seq[n - 2] if n >= 2 else "-"
        key = ("step", f"{seq[n - 1]}|prev={prev2}", seq[n])
        direct[key] = direct.get(key, 0) + 1
    assert counts_by_name(model) == direct


def test_failure_window_and_entering_event_components():
    traj = Trajectories.from_codes([0, 1, 0, 0, 0, 1], event=[0, 1, 0, 1, 0, 0],
                                   state_names=["ok", "down"], event_names=["x", "y"],
                                   failure=["down"])
    spec = HistorySpec(failure_window=2, entering_event=True)
    names = _Layout(spec, 2, 2).names(["ok", "down"], ["x", "y"])
    # steps since the last failure, capped at 2 ('>=2' also before any failure)
    assert [names[a] for a in augment(traj, spec)] == [
        "ok|since_fail=>=2|in=x", "down|since_fail=0|in=y", "ok|since_fail=1|in=x",
        "ok|since_fail=>=2|in=y", "ok|since_fail=>=2|in=x", "down|since_fail=0|in=x"]


def sim(seed, n_ent=40, n_steps=300):
    from markovfault.simulate import simulate_histories

    return simulate_histories(n_ent, n_steps, random_state=seed, with_metrics=False)


COLUMNS = {"entity": "handler", "time": "timestamp", "event": "event_type"}
STATES = {"kind": "categorical", "states": ["ok", "slow", "error", "timeout", "down"],
          "failure": ["error", "timeout", "down"]}


@quiet
def test_backoff_without_data_equals_the_parent_row_and_infinite_backoff_the_base_chain():
    hist = sim(1)
    spec = {"order": 2, "failure_window": 3}
    model = FaultPredictor(states=STATES, columns=COLUMNS, history=spec).fit(hist)
    ch = model.chain_
    # an (event, state) row without data is its parent level's row exactly: here the order-2 states,
    # whose parents are the states with the whole failure window and no lag ("prev=*")
    names = ch.state_names_
    top = np.flatnonzero(ch.state_levels_ == len(ch.levels_) - 1)
    empty = ch.counts_.counts.sum(axis=2) == 0  # (E, seen states)
    e, a = np.nonzero(empty[:, top])
    assert len(e) > 10
    parent = [names.index(names[top[k]].split("|prev=")[0] + "|prev=*|" + names[top[k]].split("|", 2)[2])
              for k in a]
    np.testing.assert_array_equal(ch.next_probs_[e, top[a]], ch.next_probs_[e, parent])
    # infinite back-off: every augmented state forecasts like its base state
    heavy = FaultPredictor(states=STATES, columns=COLUMNS,
                           history=dict(spec, backoff=1e12)).fit(hist)
    plain = FaultPredictor(states=STATES, columns=COLUMNS).fit(hist)
    table = heavy.failure_probabilities(6).to_numpy()
    base_table = plain.failure_probabilities(6).to_numpy()
    np.testing.assert_allclose(table, base_table[heavy.chain_.base_state_], atol=1e-8)


@quiet
@pytest.mark.parametrize("spec", [{"order": 3}, {"failure_window": 4, "entering_event": True},
                                  {"order": 2, "failure_window": 2, "entering_event": True},
                                  {"failure_window": 2, "failure_count": 3}])
def test_partial_fit_over_chronological_batches_equals_one_fit(spec, tmp_path):
    hist = sim(2, n_ent=12, n_steps=200)
    t = hist["timestamp"]
    cut1, cut2 = t.quantile(0.3), t.quantile(0.7)
    parts = [hist[t < cut1], hist[(t >= cut1) & (t < cut2)], hist[t >= cut2]]
    parts[0] = parts[0][parts[0]["event_type"] != "order_delivered"]  # an event arrives later
    whole = pd.concat(parts)
    one = FaultPredictor(states=STATES, columns=COLUMNS, history=spec).fit(whole)
    inc = FaultPredictor(states=STATES, columns=COLUMNS, history=spec).fit(parts[0])
    inc.partial_fit(parts[1]).partial_fit(parts[2])
    assert inc.event_names_ == one.event_names_
    assert_same_counts(inc, one)
    pd.testing.assert_frame_equal(inc.predict(horizon=4), one.predict(horizon=4))
    path = tmp_path / "m.npz"
    inc.save(path)
    same = load_model(path)
    pd.testing.assert_frame_equal(same.predict(whole, horizon=4), inc.predict(whole, horizon=4))
    pd.testing.assert_frame_equal(same.predict(horizon=4), inc.predict(horizon=4))


@quiet
def test_recent_mix_equal_to_the_long_run_mix_gives_the_marginal_forecast():
    hist = sim(3)
    for history in (None, {"order": 2}):
        model = FaultPredictor(states=STATES, columns=COLUMNS, history=history).fit(hist)
        ch = model.chain_
        counts = model.base_chain_.counts_.sum(axis=(1, 2)).astype(float)
        same = mix_event_probs(ch.event_probs_, counts / counts.sum(), counts / counts.sum())
        np.testing.assert_allclose(ch.failure_probabilities(8, event_probs=same),
                                   model.failure_probabilities(8).to_numpy(), atol=1e-12)
        # a burst of payment failures raises the risk from ok
        burst = model.predict(hist, horizon=3, event_mix={"payment_failed": 1.0})
        calm = model.predict(hist, horizon=3)
        assert (burst["p_fail"].to_numpy() >= calm["p_fail"].to_numpy() - 1e-12).mean() > 0.9


def order_two_history(rng, n_ent=60, n_steps=400):
    """A chain whose next state depends on the last two: failure follows 'slow, slow'."""
    states = np.zeros((n_ent, n_steps), dtype=int)
    for t in range(1, n_steps):  # loop over steps, vectorised over entities
        prev, prev2 = states[:, t - 1], states[:, t - 2] if t >= 2 else np.zeros(n_ent, int)
        p_slow = np.where(prev == 2, 0.1, 0.3)
        p_down = np.where((prev == 1) & (prev2 == 1), 0.6, 0.02)
        u = rng.random_sample(n_ent)
        states[:, t] = np.where(u < p_down, 2, np.where(u < p_down + p_slow, 1, 0))
    names = np.array(["ok", "slow", "down"])
    return pd.DataFrame({"entity": np.repeat(np.arange(n_ent), n_steps).astype(str),
                         "time": np.tile(np.arange(n_steps), n_ent),
                         "status": names[states.ravel()]})


@quiet
def test_selection_picks_the_true_order():
    hist = order_two_history(np.random.RandomState(0))
    model = FaultPredictor(states={"states": ["ok", "slow", "down"], "failure": ["down"]})
    res = select_states(hist, model, candidates=[{"order": o} for o in (1, 2, 3)], horizon=3,
                        cutoffs=2)
    assert res.best.order == 2
    assert list(res.table.columns[:5]) == ["order", "failure_window", "failure_count",
                                           "entering_event", "backoff"]
    ll = res.table.set_index("order")["heldout_loglik"]
    assert ll[2] > ll[1]
    assert "order = 2" in res.best_config()


@quiet
def test_backtest_compares_three_event_mixes_and_recent_mix_pays_off_in_outages():
    from markovfault import backtest
    from markovfault.simulate import simulate_histories

    hist = simulate_histories(60, 500, random_state=4, with_metrics=False, flaky_fraction=0.0,
                              memory_window=3, outages=4, outage_length=60, clock="aligned")
    model = FaultPredictor(states=STATES, columns=COLUMNS, history={"failure_window": 4})
    res = backtest(hist, model, horizon=5, cutoffs=2, origins="every_step", baselines=[],
                   event_mix=["long_run", "recent", {"payment_failed": 1.0}],
                   recent_window="4min")
    assert res.models == ["markov", "markov_recent", "markov_mix"]
    bss = res.summary().pivot(index="horizon", columns="model", values="bss")
    # outages of payment failures: the recent mix beats the long-run mix at longer horizons,
    # and a permanent outage (all payment failures) is the worst guess
    assert (bss.loc[3:, "markov_recent"] > bss.loc[3:, "markov"]).all()
    assert (bss["markov_mix"] < bss["markov"]).all()


def test_aligned_clock_lines_steps_up_in_wall_time():
    from markovfault.simulate import simulate_histories

    hist = simulate_histories(5, 50, random_state=0, with_metrics=False, clock="aligned")
    minutes = (hist["timestamp"] - pd.Timestamp("2026-01-01", tz="UTC")).dt.total_seconds() / 60
    step = np.tile(np.arange(50), 5)
    assert ((minutes >= step - 1e-9) & (minutes < step + 0.5 + 1e-9)).all()
    assert (hist.groupby("handler")["timestamp"].diff().dropna() > pd.Timedelta(0)).all()


@quiet
def test_select_states_command_prints_the_winner_as_config(tmp_path, capsys):
    from markovfault.cli import main

    hist = order_two_history(np.random.RandomState(1), n_ent=30, n_steps=300)
    hist.to_csv(tmp_path / "h.csv", index=False)
    (tmp_path / "c.toml").write_text(
        '[states]\nkind = "categorical"\nstates = ["ok", "slow", "down"]\nfailure = ["down"]\n')
    code = main(["select-states", str(tmp_path / "h.csv"), "--config", str(tmp_path / "c.toml"),
                 "--orders", "1,2", "--failure-windows", "0", "--entering-event", "no",
                 "--horizon", "2", "--cutoffs", "2"])
    out = capsys.readouterr().out
    assert code == 0 and "[states.history]" in out and "order = 2" in out
    # the printed table goes into a config that train accepts
    snippet = out[out.index("[states.history]"):]
    (tmp_path / "c2.toml").write_text((tmp_path / "c.toml").read_text() + snippet)
    assert main(["train", str(tmp_path / "h.csv"), "--config", str(tmp_path / "c2.toml"),
                 "--out", str(tmp_path / "m.npz")]) == 0
    assert load_model(tmp_path / "m.npz").chain_.spec.order == 2


def test_failure_count_since_recovery_hand_counted():
    # W = 2, C = 2: a recovery is 2 steps in a row without failure
    seq = [0, 1, 0, 1, 0, 0, 0, 1]  # 1 = down
    traj = Trajectories.from_codes(seq, state_names=["ok", "down"], failure=["down"])
    spec = HistorySpec(failure_window=2, failure_count=2)
    names = _Layout(spec, 2, 1).names(["ok", "down"], ["step"])
    got = [names[a].split("|", 1)[1] for a in augment(traj, spec)]
    assert got == ["since_fail=>=2|fails=0", "since_fail=0|fails=1", "since_fail=1|fails=1",
                   "since_fail=0|fails=>=2", "since_fail=1|fails=>=2", "since_fail=>=2|fails=0",
                   "since_fail=>=2|fails=0", "since_fail=0|fails=1"]


@pytest.mark.parametrize("spec", [
    HistorySpec(order=3), HistorySpec(failure_window=3, failure_count=2),
    HistorySpec(order=2, failure_window=2, failure_count=1, entering_event=True),
])
def test_successor_map_agrees_with_augmented_histories(spec):
    # the forecast recursion moves states with the successor map; it must reproduce the
    # augmented state that the history itself gives at every step
    rng = np.random.RandomState(5)
    n = 3000
    traj = Trajectories.from_codes(rng.randint(0, 3, n), rng.randint(0, 2, n),
                                   lengths=[1000, 1500, 500],
                                   state_names=["ok", "slow", "down"], event_names=["x", "y"],
                                   failure=["down"])
    aug = augment(traj, spec)
    succ = _Layout(spec, 3, 2).successor(traj.is_failure)
    inner = ~traj.is_run_start()[1:]
    pred = succ[aug[:-1], traj.event[1:], traj.state[1:]]
    np.testing.assert_array_equal(pred[inner], aug[1:][inner])


@quiet
def test_selection_reports_oversized_candidates_instead_of_failing(monkeypatch):
    from markovfault.states import _history

    hist = order_two_history(np.random.RandomState(2), n_ent=20, n_steps=200)
    model = FaultPredictor(states={"states": ["ok", "slow", "down"], "failure": ["down"]})
    # order 14 has 3 * 4**13 = 201 million product states, but only the seen ones are stored
    res = select_states(hist, model, candidates=[{"order": 2}, {"order": 14}], horizon=None)
    big = res.table[res.table["order"] == 14].iloc[0]
    assert np.isfinite(big["heldout_loglik"]) and 1000 < big["n_states"] < 4000
    # past the limit on the counts of the seen states: reported, not fatal
    monkeypatch.setattr(_history, "MAX_COUNT_CELLS", 5_000)
    res = select_states(hist, model, candidates=[{"order": 2}, {"order": 14}], horizon=None)
    assert res.best.order == 2
    big = res.table[res.table["order"] == 14].iloc[0]
    assert np.isnan(big["heldout_loglik"]) and "over the limit" in big["note"]


def test_selection_counts_the_event_term():
    # events name the next state outright: only the event term tells the orders apart
    rng = np.random.RandomState(3)
    seq = np.zeros((40, 300), dtype=int)
    for t in range(2, 300):  # order-2 rule over 3 states, fully determined by the event
        seq[:, t] = np.where(seq[:, t - 1] == seq[:, t - 2], rng.randint(0, 3, 40),
                             (seq[:, t - 1] + 1) % 3)
    names = np.array(["ok", "slow", "down"])
    hist = pd.DataFrame({"entity": np.repeat(np.arange(40), 300).astype(str),
                         "time": np.tile(np.arange(300), 40),
                         "status": names[seq.ravel()], "event": names[seq.ravel()]})
    model = FaultPredictor(states={"states": list(names), "failure": ["down"]})
    res = select_states(hist, model, candidates=[{"order": 1}, {"order": 2}], horizon=None)
    assert res.best.order == 2
