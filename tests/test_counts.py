import numpy as np
import pandas as pd
import pytest

from markovfault.counts import count_codes, count_transitions, event_arrival_counts
from markovfault.trajectories import Trajectories


def reference_counts(entity, time, event, state, n_states, n_events, max_gap=None):
    """Plain Python loop over rows, sorted by (entity, time): the independent reference."""
    rows = sorted(zip(entity, time, range(len(entity))), key=lambda r: (r[0], r[1], r[2]))
    C = np.zeros((n_events, n_states, n_states), dtype=np.int64)
    prev = None
    for ent, t, k in rows:
        if prev is not None and prev[0] == ent and (max_gap is None or t - prev[1] <= max_gap):
            C[event[k], state[prev[2]], state[k]] += 1
        prev = (ent, t, k)
    return C


def test_hand_counted():
    # entity a: ok -x-> down -y-> ok ; entity b: ok -x-> ok
    frame = pd.DataFrame({"entity": ["a", "a", "a", "b", "b"], "time": [1, 2, 3, 1, 2],
                          "event": ["x", "x", "y", "x", "x"]})
    traj = Trajectories.from_frame(frame, [0, 1, 0, 0, 0], ["ok", "down"], ["down"])
    C = count_transitions(traj)
    # x: ok->down once (a), ok->ok once (b); y: down->ok once (a)
    np.testing.assert_array_equal(C[0], [[1, 1], [0, 0]])
    np.testing.assert_array_equal(C[1], [[0, 0], [1, 0]])
    np.testing.assert_array_equal(event_arrival_counts(C), [[2, 0], [0, 1]])


@pytest.mark.parametrize("max_gap", [None, 3])
def test_matches_reference_on_shuffled_rows(rng, max_gap):
    n, S, E = 3000, 5, 4
    entity = rng.randint(0, 40, n)
    time = rng.randint(0, 10_000, n)  # ties within an entity keep input order (stable)
    event = rng.randint(0, E, n)
    state = rng.randint(0, S, n)
    frame = pd.DataFrame({"entity": [f"h{e:02d}" for e in entity], "time": time,
                          "event": [f"e{e}" for e in event]})
    traj = Trajectories.from_frame(frame, state, [f"s{k}" for k in range(S)], max_gap=max_gap)
    got = count_transitions(traj)
    want = reference_counts(entity, time, event, state, S, E, max_gap=max_gap)
    np.testing.assert_array_equal(got, want)
    assert got.sum() == traj.n_transitions


def test_gap_splits_runs_with_timestamps():
    t = pd.to_datetime(["2026-01-01 00:00", "2026-01-01 00:10", "2026-01-01 02:00",
                        "2026-01-01 02:05"], utc=True)
    frame = pd.DataFrame({"entity": ["a"] * 4, "time": t, "event": ["x"] * 4})
    traj = Trajectories.from_frame(frame, [0, 1, 0, 1], ["ok", "down"], max_gap="30min")
    assert traj.n_runs == 2
    np.testing.assert_array_equal(count_transitions(traj)[0], [[0, 2], [0, 0]])


def test_single_row_and_empty():
    C = count_codes(np.array([1]), np.array([0]), np.array([0]), 2, 1)
    assert C.shape == (1, 2, 2) and C.sum() == 0
    C = count_codes(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), 2, 1)
    assert C.sum() == 0


def test_fixed_event_vocabulary_keeps_codes():
    frame = pd.DataFrame({"entity": ["a"] * 3, "time": [1, 2, 3], "event": ["z", "y", "new"]})
    traj = Trajectories.from_frame(frame, [0, 0, 0], ["ok"], event_names=["y", "z"])
    assert traj.event_names == ("y", "z", "new")
    np.testing.assert_array_equal(traj.event, [1, 0, 2])
