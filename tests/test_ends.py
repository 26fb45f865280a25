"""Entities that end: end statuses and silent histories become an absorbing, non-failure END state."""

import numpy as np
import pandas as pd
import pytest

from markovfault import FaultPredictor, backtest, load_model
from markovfault.persistence import save_model
from markovfault.exceptions import ConfigError
from markovfault.trajectories import Trajectories, mark_ends

quiet = pytest.mark.filterwarnings("ignore::markovfault.exceptions.DataWarning")


def orders():
    """Orders that finish (a, c, d), fail (b) or are still open (e) at the end of the data."""
    rows = []
    for name, seq in {"a": ["ok", "ok", "ok", "finished"], "b": ["ok", "slow", "down", "down"],
                      "c": ["ok", "slow", "ok", "finished"], "d": ["ok", "finished"],
                      "e": ["ok", "ok", "slow", "ok", "ok", "ok"]}.items():
        rows += [(name, t, s) for t, s in enumerate(seq, 1)]
    return pd.DataFrame(rows, columns=["entity", "time", "status"])


STATES = {"failure": ["down"], "end": ["finished"], "states": ["ok", "slow", "down", "finished"]}


def test_end_states_are_absorbing_and_the_chain_learns_p_end():
    model = FaultPredictor(states=STATES, alpha=0.0, beta=0.0).fit(orders())
    chain = model.chain_
    names = chain.state_names_
    end = names.index("finished")
    T = chain.transition_matrix_
    assert T[end].tolist() == [1.0 if j == end else 0.0 for j in range(len(names))]
    # out of ok, hand-counted: a ok->ok x2, ok->finished; b ok->slow; c ok->slow, ok->finished;
    # d ok->finished; e ok->ok x3, ok->slow: 11 transitions, 3 into finished
    assert T[names.index("ok"), end] == pytest.approx(3 / 11)
    p = chain.failure_probabilities(4)
    assert (p[end] == 0).all()
    # a finished order never fails: its forecast is 0 at every horizon
    out = model.predict(horizon=3)
    by = out.groupby("entity")["p_fail"].max()
    assert by["a"] == by["c"] == by["d"] == 0.0 and by["e"] > 0.0


@quiet
def test_an_order_that_finishes_within_h_is_a_negative_not_censored():
    # cutoff 3: origins at the cutoff are the last steps before t = 3 (t = 2)
    model = FaultPredictor(states=STATES, alpha=0.0, beta=0.0)
    res = backtest(orders(), model, horizon=3, cutoffs=[3], baselines=["climatology"], n_boot=0)
    pred = res.predictions[res.predictions["model"] == "markov"].set_index(["entity", "horizon"])
    # a@2 (ok): finished at 4, no failure -> negative at h = 2 and at h = 3 (only 2 steps follow)
    assert pred.loc[("a", 3), "y"] == 0 and pred.loc[("a", 2), "y"] == 0
    # d ended at t = 2: its last step before the cutoff is the end itself: no origin
    assert "d" not in pred.index.get_level_values("entity")
    # b@2 (slow) fails at 3
    assert pred.loc[("b", 1), "y"] == 1
    # without the end state, a@2 would be censored at h = 3
    plain = backtest(orders(), FaultPredictor(states={"failure": ["down"],
                                                      "states": STATES["states"]}), horizon=3,
                     cutoffs=[3], baselines=[], n_boot=0)
    pp = plain.predictions.set_index(["entity", "horizon"])
    assert ("a", 3) not in pp.index
    folds = res.folds.set_index("horizon")
    assert folds.loc[3, "n_censored"] < plain.folds.set_index("horizon").loc[3, "n_censored"]


@quiet
def test_training_labels_with_ends_rebuilt_by_hand():
    # cutoff 5: every order but e has ended or failed before it. Training origins and their
    # outcomes at h = 3 (positive: a failure seen before the cutoff within 3 steps; negative:
    # 3 steps seen, or the order finished first; END steps are no origins):
    #   a@1 0, a@2 0, a@3 0 (finished at 4);  b@1 1, b@2 1, b@3 1, b@4: down@4 has no step
    #   after it before the cutoff and b never ended -> censored
    #   c@1 0, c@2 0, c@3 0;  d@1 0;  e@1 0 (3 steps seen), e@2, e@3, e@4: censored
    # -> 3 positives of 11 scored
    model = FaultPredictor(states=STATES, alpha=0.0, beta=0.0)
    res = backtest(orders(), model, horizon=3, cutoffs=[5], baselines=["climatology"], n_boot=0)
    rate = res.folds.set_index("horizon").loc[3, "train_base_rate"]
    assert rate == pytest.approx(3 / 11)


def test_end_after_adds_the_end_of_silent_histories():
    hist = pd.DataFrame({"entity": ["a"] * 3 + ["b"] * 20, "time": list(range(1, 4)) + list(range(1, 21)),
                         "status": ["ok", "ok", "ok"] + ["ok"] * 19 + ["down"]})
    model = FaultPredictor(states={"failure": ["down"], "end_after": 5}, alpha=0.0,
                           beta=0.0).fit(hist)
    names = model.chain_.state_names_
    assert names[-1] == "<end>"
    assert "<end>" in model.chain_.event_names_
    T = model.chain_.transition_matrix_
    # ok -> ok 2 (a) + 18 (b), ok -> <end> 1 (a, silent from 3 to 20), ok -> down 1
    assert T[names.index("ok"), names.index("<end>")] == pytest.approx(1 / 22)
    with pytest.raises(ConfigError, match="end_after"):
        FaultPredictor(states={"failure": ["down"], "end_after": "five"}).fit(hist)


def test_mark_ends_inserts_after_each_silent_entity():
    traj = Trajectories.from_codes([0, 0, 0, 0, 0, 1], lengths=[2, 3, 1],
                                   state_names=["ok", "down"], failure=["down"])
    traj = Trajectories(**{**traj.__dict__, "state_names": ("ok", "down", "<end>"),
                           "is_failure": np.array([False, True, False]),
                           "time": np.array([0, 1, 0, 5, 9, 2])})
    out = mark_ends(traj, [False, False, True], end_after=4)
    # entity 0 (last at 1) and entity 2 (last at 2) are silent for >= 4 before 9
    assert out.entity.tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    assert out.time.tolist() == [0, 1, 5, 0, 5, 9, 2, 6]
    assert out.state.tolist() == [0, 0, 2, 0, 0, 0, 1, 2]
    assert out.run_starts.tolist() == [0, 3, 6]
    assert out.source_row.tolist() == [0, 1, -1, 2, 3, 4, 5, -1]
    assert out.n_transitions == traj.n_transitions + 2


def test_end_configuration_errors():
    with pytest.raises(ConfigError, match="end state 'closed' is not a state"):
        FaultPredictor(states={"failure": ["down"], "end": ["closed"]}).fit(orders())
    with pytest.raises(ConfigError, match="both a failure and an end state"):
        FaultPredictor(states={"failure": ["down"], "end": ["down"]}).fit(orders())


def test_model_file_keeps_the_end_state_absorbing(tmp_path):
    model = FaultPredictor(states=STATES).fit(orders())
    path = save_model(model, tmp_path / "m.npz")
    back = load_model(path)
    np.testing.assert_allclose(back.chain_.transition_matrix_, model.chain_.transition_matrix_)
    assert back.states_.is_end_.tolist() == model.states_.is_end_.tolist()


def test_batch_paths_refuse_end_after():
    hist = orders()
    model = FaultPredictor(states={**STATES, "end_after": 3}).fit(hist)
    with pytest.raises(ConfigError, match="partial_fit cannot use end_after"):
        model.partial_fit(hist)
    with pytest.raises(ConfigError, match="chunksize"):
        FaultPredictor(states={**STATES, "end_after": 3}).fit(hist, chunksize=5)


def test_history_aware_end_states_stay_ended():
    model = FaultPredictor(states=STATES, history={"order": 2, "backoff": "auto"}).fit(orders())
    chain = model.chain_
    ended = chain.base_.is_end_[chain.base_state_]
    assert ended.any()
    p = chain.failure_probabilities(5)
    assert (p[ended] == 0).all() and (p[~ended].max() > 0)
    T = chain.transition_matrix().toarray()
    # every row of an end state stays among end states, and rows still sum to one
    np.testing.assert_allclose(T[ended][:, ~ended], 0.0)
    np.testing.assert_allclose(T.sum(axis=1), 1.0)
