"""Exact duplicate rows without an event id: dropped and reported by default, kept on request, the same in
both readers and in the model."""

import logging

import numpy as np
import pandas as pd
import pytest

from markovfault import FaultPredictor, read_histories
from markovfault.histories import ColumnMap, iter_histories
from markovfault.histories import _fast

ROWS = [  # entity, time, event, status, latency
    ("a", 1, "x", "ok", 1.0),
    ("a", 2, "x", "down", 2.0),
    ("a", 2, "x", "down", 2.0),   # exact repeat of the row before: dropped
    ("a", 3, "x", "ok", 3.0),
    ("a", 3, "x", "ok", 3.5),     # same step but another metric value: kept
    ("b", 1, "x", "ok", 1.0),     # same fields as a's first row, another entity: kept
    ("b", 2, "y", "ok", 1.0),
    ("b", 2, "x", "ok", 1.0),     # another event: kept
    ("a", 2, "x", " down ", 2.0),  # a repeat once cleaned (blanks stripped): dropped
]


def export() -> pd.DataFrame:
    return pd.DataFrame(ROWS, columns=["entity", "time", "event", "status", "latency_ms"])


def write(tmp_path, fmt):
    frame = export()
    path = tmp_path / f"h.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return str(path)


@pytest.mark.parametrize("fmt", ["csv", "parquet", "frame"])
def test_exact_duplicates_dropped_and_reported(tmp_path, fmt, caplog):
    source = export() if fmt == "frame" else write(tmp_path, fmt)
    with caplog.at_level(logging.WARNING, logger="markovfault.histories"):
        frame = read_histories(source, columns={"metrics": ["latency_ms"]})
    report = frame.attrs["read_report"]
    assert report.dropped == {"duplicate_row": 2}
    assert report.n_rows_read == 9 and report.n_rows_kept == len(frame) == 7
    assert frame[["entity", "time"]].value_counts()[("a", 2)] == 1
    assert "duplicate_row=2" in caplog.text and "keep_duplicates" in caplog.text


@pytest.mark.parametrize("fmt", ["csv", "parquet", "frame"])
def test_keep_duplicates_keeps_them(tmp_path, fmt):
    source = export() if fmt == "frame" else write(tmp_path, fmt)
    kept = read_histories(source, columns={"metrics": ["latency_ms"]}, keep_duplicates=True)
    assert len(kept) == 9 and kept.attrs["read_report"].dropped == {}
    by_config = read_histories(source, columns={"metrics": ["latency_ms"], "keep_duplicates": True})
    assert len(by_config) == 9
    assert ColumnMap.from_config({"keep_duplicates": True}).keep_duplicates


def test_rows_with_event_ids_are_not_exact_duplicates():
    raw = export().assign(event_id=[f"e{k}" for k in range(len(ROWS))])
    frame = read_histories(raw, columns={"metrics": ["latency_ms"]})
    assert len(frame) == 9 and "duplicate_row" not in frame.attrs["read_report"].dropped


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_both_readers_agree(tmp_path, fmt, monkeypatch):
    path = write(tmp_path, fmt)
    fast = read_histories(path, columns={"metrics": ["latency_ms"]})

    def decline(*args, **kwargs):
        raise _fast.Fallback("test: the row-by-row reader")

    monkeypatch.setattr(_fast, "read_encoded", decline)
    general = read_histories(path, columns={"metrics": ["latency_ms"]})
    pd.testing.assert_frame_equal(fast, general)
    assert fast.attrs["read_report"] == general.attrs["read_report"]


def test_batches_drop_them_too():
    (frame, report), = list(iter_histories(export(), chunksize=100, columns={"metrics": ["latency_ms"]}))
    assert report.dropped == {"duplicate_row": 2}


@pytest.mark.filterwarnings("ignore::markovfault.exceptions.DataWarning")
def test_duplicates_do_not_count_twice_in_the_model():
    states = {"failure": ["down"]}
    fitted = FaultPredictor(states=states).fit(export())
    kept = FaultPredictor(states=states, columns={"keep_duplicates": True}).fit(export())
    once = export().drop(index=[2, 8])
    reference = FaultPredictor(states=states).fit(once)
    np.testing.assert_array_equal(fitted.chain_.counts_, reference.chain_.counts_)
    assert kept.chain_.counts_.sum() > reference.chain_.counts_.sum()
