"""The group context: a history component drawn from R(x' | a), counted from the other members' failures."""

import numpy as np
import pandas as pd
import pytest

from conftest import monte_carlo_of_exogenous_chain

from markovfault.chain import HistoryChain, counts_from_arrays, counts_to_arrays, merge_counts
from markovfault.exceptions import ConfigError, HistoryError
from markovfault.states import HistorySpec
from markovfault.states._history import HistoryLayout, augment, group_failures
from markovfault.trajectories import Trajectories

# two groups of uneven size; integer times; "down" is the failure
ROWS = [  # entity, group, time, status
    ("a1", "A", 0, "down"), ("a1", "A", 2, "ok"), ("a1", "A", 5, "down"), ("a1", "A", 6, "ok"),
    ("a2", "A", 1, "ok"), ("a2", "A", 3, "down"), ("a2", "A", 4, "ok"), ("a2", "A", 8, "ok"),
    ("a3", "A", 2, "down"), ("a3", "A", 7, "ok"),
    ("b1", "B", 0, "ok"), ("b1", "B", 1, "down"), ("b1", "B", 2, "down"), ("b1", "B", 4, "ok"),
    ("b2", "B", 3, "ok"), ("b2", "B", 5, "ok"),
]
# failure steps of the other members in [t - 3, t), counted by hand (in entity, time order)
HAND_W3 = [0, 0, 2, 1, 1, 2, 1, 1, 1, 1, 0, 0, 0, 0, 2, 1]
# failures (onsets): every failure step of group A enters its failure; b1's down at 2 follows its down at 1,
# so b2@3 sees one failure (b1@1) and b2@5 none
HAND_W3_ONSETS = [0, 0, 2, 1, 1, 2, 1, 1, 1, 1, 0, 0, 0, 0, 1, 0]


def _traj(rows=ROWS, shuffle=False):
    frame = pd.DataFrame(rows, columns=["entity", "group", "time", "status"])
    if shuffle:
        frame = frame.sample(frac=1.0, random_state=3).reset_index(drop=True)
    names = ["ok", "down"]
    state = frame["status"].map({"ok": 0, "down": 1}).to_numpy()
    return Trajectories.from_frame(frame, state, names, ["down"])


@pytest.mark.parametrize("shuffle", [False, True])
def test_group_failures_match_a_hand_count(shuffle):
    traj = _traj(shuffle=shuffle)
    assert traj.group.tolist() == [0] * 10 + [1] * 6
    assert group_failures(traj, 3, "steps").tolist() == HAND_W3
    assert group_failures(traj, 3).tolist() == group_failures(traj, 3, "onsets").tolist() == HAND_W3_ONSETS
    # a window of 1: only failures at t - 1; a2@1 sees a1@0, a2@3 sees a3@2, b2@3 sees b1@2 (a step down,
    # not a new failure)
    assert group_failures(traj, 1, "steps").tolist() == [0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]
    assert group_failures(traj, 1).tolist() == [0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]


def test_group_level_is_bucketed_in_the_code():
    traj = _traj()
    spec = HistorySpec(group_window=3, group_levels=2)
    layout = HistoryLayout(spec, 2, 1)
    comps = layout.components(augment(traj, spec))
    assert comps[layout.index["group"]].tolist() == np.minimum(HAND_W3_ONSETS, 1).tolist()
    assert comps[0].tolist() == traj.state.tolist()


def test_exogenous_counts_and_rows_match_hand_counts():
    traj = _traj()
    spec = HistorySpec(group_window=3, group_levels=3, backoff=2.0, group_count="steps")
    chain = HistoryChain(spec, alpha=1.0, beta=1.5)
    counts = chain.count(traj)
    layout = HistoryLayout(spec, 2, 1)
    code = {(s, g): int(layout.compose(np.array([[s], [g]]))[0]) for s in (0, 1) for g in range(3)}
    hand = {(1, 0): [3, 0, 0], (0, 0): [1, 0, 1], (1, 2): [0, 2, 0], (0, 1): [0, 1, 1],
            (1, 1): [0, 1, 0], (0, 2): [0, 1, 0]}
    got = {k: counts.exo[np.searchsorted(counts.codes, c)].tolist() for k, c in code.items()
           if c in counts.codes}
    assert got == hand
    chain.fit_from_counts(counts, ["ok", "down"], ["step"], [False, True])
    # R by hand: the overall mix, the base row, the level with cap 1, the full level
    tot = np.array([4.0, 5.0, 2.0])
    overall = (tot + 1.0 / 3) / (11 + 1.0)
    r0_ok = (np.array([1, 2, 2]) + 1.5 * overall) / (5 + 1.5)
    r1_ok_hi = (np.array([0, 2, 1]) + 2.0 * r0_ok) / (3 + 2.0)  # ok|group>=1: (ok,1) + (ok,2)
    r2_ok_2 = (np.array([0, 1, 0]) + 2.0 * r1_ok_hi) / (1 + 2.0)
    row = chain.state_index(np.array([code[(0, 2)]]))[0]
    np.testing.assert_allclose(chain.exo_probs_[row], r2_ok_2, rtol=1e-12)
    np.testing.assert_allclose(chain.exo_probs_.sum(axis=1), 1.0)


def _simulated(seed=0, n_ent=7, n=60):
    rng = np.random.default_rng(seed)
    state = rng.choice(3, size=n_ent * n, p=[0.7, 0.2, 0.1])
    traj = Trajectories.from_codes(state, rng.integers(0, 2, n_ent * n), lengths=[n] * n_ent,
                                   state_names=["ok", "slow", "down"], failure=["down"])
    traj.time = np.tile(np.arange(n) * 3, n_ent) + np.repeat(np.arange(n_ent), n)
    traj.group = np.repeat([0, 0, 0, 1, 1, 1, 1], n)
    return traj


def test_forecast_matches_monte_carlo_of_the_fitted_augmented_chain():
    traj = _simulated()
    spec = HistorySpec(failure_window=2, group_window=7, group_levels=3, backoff=3.0)
    chain = HistoryChain(spec).fit_from_counts(HistoryChain(spec).count(traj), traj.state_names,
                                               traj.event_names, traj.is_failure)
    starts, mc, se = monte_carlo_of_exogenous_chain(chain)
    exact = chain.failure_probabilities(5)
    assert (np.abs(mc - exact[starts]) < 5 * se).all()
    assert np.abs(mc - exact[starts]).max() < 0.015


def test_group_changes_the_forecast_and_counts_add():
    traj = _simulated(seed=2)
    spec = HistorySpec(group_window=7, group_levels=3)
    c = HistoryChain(spec).count(traj)
    half = traj.n_steps // 2
    bins = (np.arange(traj.n_steps) >= half).astype(np.int64)
    cb = HistoryChain(spec).count(traj, bins=bins, n_bins=2)
    whole = cb.cumsum(axis=0)[1].pruned()
    assert np.array_equal(whole.codes, c.codes) and np.array_equal(whole.exo, c.exo)
    total, _ = merge_counts([cb[0], cb[1]])
    assert np.array_equal(total.pruned().exo, c.exo)
    back = counts_from_arrays(counts_to_arrays(c), history=True)
    assert np.array_equal(back.exo, c.exo)


def test_an_entity_in_two_groups_is_refused_by_name():
    rows = ROWS[:3] + [("a1", "B", 6, "ok")] + ROWS[4:]
    with pytest.raises(HistoryError, match=r"'a1' is in more than one group \('A', 'B'\)"):
        _traj(rows)


def test_group_context_without_a_group_column_is_refused():
    traj = Trajectories.from_codes([0, 1, 0], state_names=["ok", "down"], failure=["down"])
    with pytest.raises(HistoryError, match=r"\[columns\] group"):
        HistoryChain(HistorySpec(group_window=3, group_levels=2)).count(traj)


@pytest.mark.parametrize("kwargs, match", [
    ({"group_levels": 2}, "needs a group_window"),
    ({"group_window": 3}, "needs group_levels"),
    ({"group_window": 3, "group_levels": 1}, "group_levels = 1"),
    ({"group_window": "soon", "group_levels": 2}, "not a positive duration"),
    ({"group_window": -2, "group_levels": 2}, "positive integer"),
    ({"group_window": 3, "group_levels": 2, "group_count": "failures"}, "group_count = 'failures'"),
])
def test_bad_group_settings(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        HistorySpec(**kwargs)


def test_duration_window_needs_timestamps():
    traj = _traj()
    with pytest.raises(ConfigError, match="sequence numbers"):
        group_failures(traj, "10min")


def test_levels_put_the_group_right_above_the_failure_window():
    spec = HistorySpec(order=2, failure_window=2, group_window="10min", group_levels=3)
    assert [label for label, _ in spec.levels()] == [
        "base", "failure_window=1", "failure_window=2", "group_levels=2", "group_levels=3", "order=2"]
    assert HistorySpec.from_config(spec.to_config()) == spec
    assert all(s.group_count == "onsets" for _, s in spec.levels() if s.group_levels)
    steps = HistorySpec(group_window=3, group_levels=2, group_count="steps")
    assert HistorySpec.from_config(steps.to_config()) == steps
    assert [s.group_count for _, s in steps.levels() if s.group_levels] == ["steps"]


def test_the_group_column_is_read_and_carried_into_the_trajectories(tmp_path):
    from markovfault import read_histories
    from markovfault.histories import ColumnMap
    from markovfault.trajectories import encode_frame

    raw = pd.DataFrame(ROWS, columns=["who", "team", "t", "status"])
    path = tmp_path / "h.csv"
    raw.sample(frac=1.0, random_state=1).to_csv(path, index=False)
    cols = ColumnMap(entity="who", time="t", group="team")
    frame = read_histories(path, columns=cols)
    assert "group" in frame.columns and ColumnMap().group is None
    state = frame["status"].map({"ok": 0, "down": 1}).to_numpy()
    traj = encode_frame(frame, state, ["ok", "down"], [False, True])
    assert group_failures(traj, 3).tolist() == HAND_W3_ONSETS
    assert "group" not in read_histories(path, columns=ColumnMap(entity="who", time="t")).columns


def test_a_named_group_column_that_is_missing_or_empty_is_an_error(tmp_path):
    from markovfault import read_histories
    from markovfault.exceptions import MissingColumnError

    raw = pd.DataFrame(ROWS, columns=["entity", "team", "time", "status"])
    with pytest.raises(MissingColumnError, match="grp"):
        read_histories(raw, columns={"group": "grp"})
    raw.loc[4, "team"] = None
    with pytest.raises(HistoryError, match=r"entity 'a2'.*no group"):
        read_histories(raw, columns={"group": "team"})
