"""Streaming fit (histories larger than memory): ``fit(..., chunksize=N)`` and
``iter_histories(..., chunksize=N)`` equal the in-memory fit exactly."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import assert_same_counts

from markovfault import FaultPredictor, read_histories
from markovfault.exceptions import HistoryError
from markovfault.histories import iter_histories
from markovfault.histories._read import iter_frames, read_frame

STATUSES = np.array(["ok", "slow", "error", "down"], dtype=object)
STATES = {"kind": "categorical", "failure": ["error", "down"]}
HISTORIES = [None, {"order": 2}, {"order": 2, "failure_window": 3, "entering_event": True}]


def export(n_entities=40, n_steps=60, seed=0, datetime=False):
    """An export written in time order: entities interleaved, some equal times."""
    rng = np.random.default_rng(seed)
    ent = np.repeat(np.arange(n_entities), n_steps)
    # per entity nondecreasing times with ties (steps of 0, 1 or 2)
    steps = rng.integers(0, 3, (n_entities, n_steps)).cumsum(axis=1).ravel()
    frame = pd.DataFrame({
        "entity": [f"h{k:02d}" for k in ent],
        "time": steps,
        "event": rng.choice(["tick", "spike", "deploy"], ent.size),
        "status": STATUSES[rng.integers(0, 4, ent.size)],
    })
    # ties are real steps: each row has its id (else a tie that repeats a row exactly is a duplicate_row)
    frame["event_id"] = [f"e{k}" for k in range(len(frame))]
    # the first rows hold every status, so the first batch fits the whole vocabulary
    frame = frame.sort_values("time", kind="stable").reset_index(drop=True)
    if datetime:
        frame["time"] = (pd.Timestamp("2024-01-01", tz="UTC")
                         + pd.to_timedelta(frame["time"], unit="min")).dt.strftime(
                             "%Y-%m-%dT%H:%M:%SZ")
    return frame


def assert_same_model(streamed, whole, hist):
    assert_same_counts(streamed, whole)
    assert streamed.chain_.state_names_ == whole.chain_.state_names_
    assert list(streamed.event_names_) == list(whole.event_names_)
    assert streamed.n_transitions_ == whole.n_transitions_
    pd.testing.assert_frame_equal(streamed.last_seen_, whole.last_seen_)
    pd.testing.assert_frame_equal(streamed.predict(horizon=5), whole.predict(horizon=5))
    pd.testing.assert_frame_equal(streamed.predict(hist.tail(300), horizon=5),
                                  whole.predict(hist.tail(300), horizon=5))


@pytest.mark.parametrize("history", HISTORIES)
@pytest.mark.parametrize("chunksize", [37, 500])
def test_csv_chunks_equal_in_memory(tmp_path, history, chunksize):
    hist = export()
    path = tmp_path / "export.csv"
    hist.to_csv(path, index=False)
    whole = FaultPredictor(states=STATES, history=history).fit(path)
    streamed = FaultPredictor(states=STATES, history=history).fit(path, chunksize=chunksize)
    assert_same_model(streamed, whole, hist)
    assert streamed.read_report_.n_rows_kept == len(hist)


@pytest.mark.parametrize("history", HISTORIES)
def test_parquet_row_groups_and_many_files_equal_in_memory(tmp_path, history):
    hist = export(datetime=True, seed=1)
    table = pa.Table.from_pandas(hist, preserve_index=False)
    pq.write_table(table, tmp_path / "one.parquet", row_group_size=101)
    parts = tmp_path / "parts"
    parts.mkdir()
    for k, start in enumerate(range(0, len(hist), 700)):  # a dataset of several files
        pq.write_table(table.slice(start, 700), parts / f"part-{k:03d}.parquet",
                       row_group_size=150)
    whole = FaultPredictor(states=STATES, history=history).fit(tmp_path / "one.parquet")
    for source, chunksize in [(tmp_path / "one.parquet", 64), (parts, 256)]:
        streamed = FaultPredictor(states=STATES, history=history).fit(source, chunksize=chunksize)
        assert_same_model(streamed, whole, hist)


def test_max_gap_and_canonical_frame(tmp_path):
    hist = export(seed=2)
    whole = FaultPredictor(states=STATES, max_gap=1).fit(hist)
    streamed = FaultPredictor(states=STATES, max_gap=1).fit(hist, chunksize=50)
    assert_same_model(streamed, whole, hist)
    for canonical in (read_histories(hist), read_frame(hist)[0]):  # public, and with _row
        streamed = FaultPredictor(states=STATES, max_gap=1).fit(canonical, chunksize=50)
        assert_same_counts(streamed, whole)


def test_iter_histories_chunks(tmp_path):
    hist = export(n_entities=5, n_steps=20)
    path = tmp_path / "export.csv"
    hist.to_csv(path, index=False)
    chunks = list(iter_frames(path, 30))  # the internal batches keep the source rows
    assert [len(f) for f, _ in chunks] == [30, 30, 30, 10]
    rows = np.concatenate([f["_row"].to_numpy() for f, _ in chunks])
    np.testing.assert_array_equal(np.sort(rows), np.arange(100))
    whole, _ = read_frame(path)
    joined = pd.concat([f for f, _ in chunks]).sort_values(["entity", "_row"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(joined, whole.sort_values(["entity", "_row"]).reset_index(drop=True))
    for frame, _ in chunks:  # each batch sorted by (entity, time)
        assert frame.equals(frame.sort_values(["entity", "time"], kind="stable")
                            .reset_index(drop=True))
    public = list(iter_histories(path, chunksize=30))  # the same batches without _row
    assert len(public) == len(chunks)
    for (frame, report), (ref, ref_report) in zip(public, chunks):
        assert "_row" not in frame and frame.attrs["read_report"] is report
        pd.testing.assert_frame_equal(frame, ref.drop(columns="_row"))
        assert report == ref_report


def test_out_of_order_rows_raise_naming_the_entity(tmp_path):
    hist = export(n_entities=5, n_steps=40)
    late = hist[hist["entity"] == "h03"].index[5]
    moved = pd.concat([hist.drop(index=late), hist.loc[[late]]], ignore_index=True)
    path = tmp_path / "export.csv"
    moved.to_csv(path, index=False)
    with pytest.raises(HistoryError, match=r"entity 'h03'.*time order.*sort the export"):
        FaultPredictor(states=STATES).fit(path, chunksize=50)
    # in one batch the order does not matter
    FaultPredictor(states=STATES).fit(path, chunksize=10_000)


def test_bad_chunksize(tmp_path):
    from markovfault.exceptions import ConfigError

    for bad in (0, -3, 2.5, True, "10"):
        with pytest.raises(ConfigError, match="chunksize"):
            iter_histories(export(), chunksize=bad)  # at the call, before a batch is taken
    with pytest.warns(DeprecationWarning, match="iter_histories"), \
            pytest.raises(ConfigError, match="chunksize"):
        read_histories(export(), chunksize=0)
