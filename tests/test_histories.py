"""Tests of markovfault.histories: reading, validating and reporting histories."""

from __future__ import annotations

import gzip
import json
import logging
import warnings

import numpy as np
import pandas as pd
import pytest

from conftest import assert_same_counts

from markovfault.exceptions import (
    ConfigError,
    EmptyHistoryError,
    HistoryError,
    MetricTypeError,
    MissingColumnError,
    MixedTimezoneError,
    TimeParseError,
)
from markovfault.histories import IMPLICIT_EVENT, ColumnMap, ReadReport, iter_histories, read_histories
from markovfault.histories._read import iter_frames, read_frame

CSV = (
    "entity,time,event,status,event_id\n"
    "h2,2024-05-01T10:00:00Z,order,ok,a1\n"
    "h1,2024-05-01T10:01:00Z,order,ok,a2\n"
    "h1,2024-05-01T10:00:00Z,pay,slow,a3\n"
)


def utc(*stamps: str) -> list[pd.Timestamp]:
    return [pd.Timestamp(s, tz="UTC") for s in stamps]


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def check_canonical(frame: pd.DataFrame) -> None:
    """The invariants of the canonical frame (see read_histories)."""
    assert isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0
    assert frame["entity"].dtype == "str"
    assert frame["event"].dtype == "str"
    assert "_row" not in frame  # internal: read_frame keeps it
    assert isinstance(frame.attrs["read_report"], ReadReport)
    assert frame["time"].dtype in (np.dtype("int64"), pd.DatetimeTZDtype("ns", "UTC"))
    assert list(frame.columns[:3]) == ["entity", "time", "event"]


# --------------------------------------------------------------------- formats


def test_csv(tmp_path):
    frame = read_histories(write(tmp_path / "a.csv", CSV))
    report = frame.attrs["read_report"]
    check_canonical(frame)
    assert list(frame.columns) == ["entity", "time", "event", "status", "event_id"]
    assert frame["entity"].tolist() == ["h1", "h1", "h2"]
    assert frame["time"].tolist() == utc("2024-05-01 10:00", "2024-05-01 10:01",
                                         "2024-05-01 10:00")
    assert frame["status"].tolist() == ["slow", "ok", "ok"]
    rows, _ = read_frame(tmp_path / "a.csv")  # the internal frame keeps the source rows
    assert rows["_row"].dtype == np.int64 and rows["_row"].tolist() == [2, 1, 0]
    assert report.time_kind == "datetime"
    assert report.per_source == [(str(tmp_path / "a.csv"), 3)]
    assert (report.n_sources, report.n_rows_read, report.n_rows_kept) == (1, 3, 3)


def test_csv_gz_and_entity_kept_as_text(tmp_path):
    path = tmp_path / "a.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("entity,time,status\n007,3,ok\n7,1, down \n")
    frame = read_histories(path)
    # "007" and "7" are different handlers: CSV is read as text
    assert frame["entity"].tolist() == ["007", "7"]
    assert frame["status"].tolist() == ["ok", "down"]  # whitespace stripped
    assert frame["event"].tolist() == [IMPLICIT_EVENT] * 2


def test_parquet(tmp_path):
    raw = pd.DataFrame({
        "entity": [2, 1, 1],
        "time": pd.to_datetime(["2024-05-01 12:00", "2024-05-01 12:05", "2024-05-01 12:01"])
        .tz_localize("Europe/Berlin"),
        "status": ["ok", "ok", "slow"],
        "latency_ms": [1.0, 2.0, 3.0],
    })
    path = tmp_path / "a.parquet"
    raw.to_parquet(path, engine="pyarrow")
    frame = read_histories(path, columns={"metrics": ["latency_ms"]})
    check_canonical(frame)
    assert frame["entity"].tolist() == ["1", "1", "2"]
    # Berlin is UTC+2 in May
    assert frame["time"].tolist() == utc("2024-05-01 10:01", "2024-05-01 10:05",
                                         "2024-05-01 10:00")
    assert frame["latency_ms"].dtype == np.float64
    assert frame["latency_ms"].tolist() == [3.0, 2.0, 1.0]


def test_parquet_naive_datetime_is_utc(tmp_path):
    raw = pd.DataFrame({"entity": ["a"], "time": pd.to_datetime(["2024-05-01 12:00"]),
                        "status": ["ok"]})
    raw.to_parquet(tmp_path / "a.pq", engine="pyarrow")
    frame = read_histories(tmp_path / "a.pq")
    assert frame["time"].tolist() == utc("2024-05-01 12:00")


def test_jsonl_cloudevents(tmp_path):
    events = [
        {"specversion": "1.0", "id": "e1", "source": "/orders", "subject": "h1",
         "type": "order.created", "time": "2024-05-01T10:00:00Z",
         "data": {"status": "ok", "latency_ms": 12}},
        {"specversion": "1.0", "id": "e2", "source": "/payments",
         "type": "payment.failed", "time": "2024-05-01T10:00:30Z",
         "data": {"status": "down", "latency_ms": 900}},
        {"specversion": "1.0", "id": "e1", "source": "/orders", "subject": "h1",
         "type": "order.created", "time": "2024-05-01T10:00:00Z",
         "data": {"status": "ok", "latency_ms": 12}},  # redelivered
        {"specversion": "1.0", "id": 4, "source": "/orders", "subject": "h1",
         "type": "order.paid", "time": "2024-05-01T10:02:00Z",
         "data": {"status": "slow", "latency_ms": 450.5}},
    ]
    lines = [json.dumps(e) for e in events]
    path = write(tmp_path / "events.jsonl", "\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:]))
    frame = read_histories(path, columns={"metrics": ["latency_ms"]})
    report = frame.attrs["read_report"]
    check_canonical(frame)
    # entity: subject where the row has one, else source
    assert frame["entity"].tolist() == ["/payments", "h1", "h1"]
    assert frame["event"].tolist() == ["payment.failed", "order.created", "order.paid"]
    assert frame["status"].tolist() == ["down", "ok", "slow"]
    assert frame["event_id"].tolist() == ["e2", "e1", "4"]
    assert frame["latency_ms"].tolist() == [900.0, 12.0, 450.5]
    assert report.dropped == {"duplicate_event_id": 1}


def test_jsonl_error_names_the_line(tmp_path):
    lines = ['{"entity": "a", "time": "2024-05-01T10:00:00Z", "status": "ok"}', "",
             '{"entity": "a", "time": "yesterday", "status": "ok"}']
    path = write(tmp_path / "a.ndjson", "\n".join(lines) + "\n")
    with pytest.raises(TimeParseError, match=r"line 3 of '.*a\.ndjson'.*'yesterday'"):
        read_histories(path)


def test_dataframe_is_not_modified():
    raw = pd.DataFrame({"entity": ["b", "a"], "time": [2, 1], "status": ["ok", " ok"]})
    before = raw.copy()
    frame = read_histories(raw)
    pd.testing.assert_frame_equal(raw, before)
    assert frame["entity"].tolist() == ["a", "b"]
    assert frame["time"].dtype == np.int64


# ------------------------------------------------------------ several sources


def test_several_files_directory_and_glob(tmp_path):
    write(tmp_path / "b.csv", "entity,time,status,event_id\nh1,2,ok,x2\nh1,1,ok,x1\n")
    write(tmp_path / "a.csv", "entity,time,status,event_id\nh1,3,down,x3\nh1,2,ok,x2\n")
    write(tmp_path / "notes.txt", "not an export\n")
    frame, report = read_frame([tmp_path / "b.csv", tmp_path / "a.csv"])
    # read order b then a: _row counts across both; the duplicate x2 (a, row 1) goes
    assert frame["_row"].tolist() == [1, 0, 2]
    assert frame["time"].tolist() == [1, 2, 3]
    assert report.dropped == {"duplicate_event_id": 1}
    assert report.per_source == [(str(tmp_path / "b.csv"), 2), (str(tmp_path / "a.csv"), 2)]

    # a directory is read sorted by name: a (rows 0, 1) then b (rows 2, 3);
    # now b's x2 (row 2) is the duplicate; notes.txt is skipped
    frame, report = read_frame(tmp_path)
    assert report.n_sources == 2
    assert frame["_row"].tolist() == [3, 1, 0]
    assert frame["time"].tolist() == [1, 2, 3]

    by_glob = read_histories(str(tmp_path / "*.csv"))
    pd.testing.assert_frame_equal(by_glob, frame.drop(columns="_row"))
    assert by_glob.attrs["read_report"] == report


def test_mixed_sources_frame_and_file(tmp_path):
    path = write(tmp_path / "a.csv", "entity,time,status\nh1,5,ok\n")
    raw = pd.DataFrame({"entity": ["h1"], "time": [1], "status": ["down"]})
    frame = read_histories([raw, path])
    assert frame["status"].tolist() == ["down", "ok"]


def test_sources_must_agree_on_time_kind(tmp_path):
    write(tmp_path / "a.csv", "entity,time,status\nh1,5,ok\n")
    write(tmp_path / "b.csv", "entity,time,status\nh1,2024-05-01,ok\n")
    with pytest.raises(TimeParseError, match=r"integer values in '.*a\.csv'.*b\.csv"):
        read_histories(tmp_path)


def test_forced_format(tmp_path):
    path = write(tmp_path / "export.log", CSV)
    with pytest.raises(ConfigError, match="format="):
        read_histories(path)
    assert len(read_histories(path, format="csv")) == 3


# ------------------------------------------------------------------- columns


def test_configurable_column_names(tmp_path):
    path = write(tmp_path / "a.csv", "handler,ts,kind,state,id,lat\n"
                                     "h1,2,x,ok,i1,5\nh1,1,y,ok,i2,7\n")
    config = {"entity": "handler", "time": "ts", "event": "kind", "status": "state",
              "event_id": "id", "metrics": ["lat"]}
    frame = read_histories(path, columns=config)
    assert list(frame.columns) == ["entity", "time", "event", "status", "event_id", "lat"]
    assert frame["event"].tolist() == ["y", "x"]
    pd.testing.assert_frame_equal(read_histories(path, columns=ColumnMap(**config)), frame)

    # "" means none: the event column is ignored, every row gets the implicit event
    frame = read_histories(path, columns={**config, "event": ""})
    assert frame["event"].tolist() == [IMPLICIT_EVENT] * 2


def test_column_map_from_config():
    cmap = ColumnMap.from_config({"entity": "handler", "status": "", "metrics": ["lat"]})
    assert cmap == ColumnMap(entity="handler", status=None, metrics=("lat",))
    with pytest.raises(ConfigError, match="'entiti'"):
        ColumnMap.from_config({"entiti": "handler"})
    with pytest.raises(ConfigError, match="nothing to read states from"):
        ColumnMap(status=None)
    with pytest.raises(ConfigError, match="both name the column 'x'"):
        ColumnMap(entity="x", event="x")


def test_status_optional_when_metrics_given():
    raw = pd.DataFrame({"entity": ["a", "a"], "time": [1, 2], "lat": ["1.5", ""]})
    frame = read_histories(raw, columns={"metrics": ["lat"]})
    report = frame.attrs["read_report"]
    assert "status" not in frame and "event_id" not in frame
    assert frame["lat"].tolist() == [1.5]
    assert report.dropped == {"missing_metric": 1}


def test_missing_event_values_are_filled_and_counted():
    raw = pd.DataFrame({"entity": ["a", "a", "a"], "time": [1, 2, 3],
                        "event": ["x", None, "  "], "status": ["ok"] * 3})
    frame = read_histories(raw)
    report = frame.attrs["read_report"]
    assert frame["event"].tolist() == ["x", IMPLICIT_EVENT, IMPLICIT_EVENT]
    assert report.filled == {"missing_event_filled": 2}
    assert report.n_dropped == 0


# ------------------------------------------------------- sorting and time


def test_stable_sort_of_unsorted_input():
    raw = pd.DataFrame({
        "entity": ["b", "a", "b", "a", "a", "b"],
        "time": [3, 2, 1, 2, 1, 3],
        "status": ["s0", "s1", "s2", "s3", "s4", "s5"],
    })
    frame, _ = read_frame(raw)
    # by hand: a@1 (row 4), a@2 (rows 1, 3 in read order), b@1 (row 2), b@3 (rows 0, 5)
    expected = pd.DataFrame({
        "entity": pd.array(["a", "a", "a", "b", "b", "b"], dtype="str"),
        "time": np.array([1, 2, 2, 1, 3, 3], dtype="int64"),
        "event": pd.array([IMPLICIT_EVENT] * 6, dtype="str"),
        "status": pd.array(["s4", "s1", "s3", "s2", "s0", "s5"], dtype="str"),
        "_row": np.array([4, 1, 3, 2, 0, 5], dtype="int64"),
    })
    pd.testing.assert_frame_equal(frame, expected)
    pd.testing.assert_frame_equal(read_histories(raw), expected.drop(columns="_row"))


def test_timezones_converted_to_utc(tmp_path):
    path = write(tmp_path / "a.csv", "entity,time,status\n"
                                     "a,2024-05-01T12:00:00+02:00,ok\n"
                                     "a,2024-05-01T10:30:00Z,ok\n"
                                     "a,2024-05-01T05:00:00-0500,slow\n")
    frame, _ = read_frame(path)
    assert frame["time"].dtype == pd.DatetimeTZDtype("ns", "UTC")
    assert frame["time"].tolist() == utc("2024-05-01 10:00", "2024-05-01 10:00",
                                         "2024-05-01 10:30")
    assert frame["_row"].tolist() == [0, 2, 1]


def test_naive_timestamps_are_utc():
    raw = pd.DataFrame({"entity": ["a", "a"], "time": ["2024-05-01 12:00", "2024-05-01"],
                        "status": ["ok", "ok"]})
    frame = read_histories(raw)
    assert frame["time"].tolist() == utc("2024-05-01 00:00", "2024-05-01 12:00")


def test_integer_time(tmp_path):
    path = write(tmp_path / "a.csv", "entity,time,status\na,10,ok\na,-3,ok\n")
    frame = read_histories(path)
    report = frame.attrs["read_report"]
    assert frame["time"].dtype == np.int64
    assert frame["time"].tolist() == [-3, 10]
    assert report.time_kind == "integer"


# ----------------------------------------------------------- drops and report


def test_dedupe_missing_status_single_rows_and_counts(tmp_path, caplog):
    path = write(tmp_path / "a.csv", "entity,time,status,event_id,lat\n"
                                     "a,1,ok,e1,1\n"
                                     "a,2,ok,e2,2\n"
                                     "a,1,ok,e1,1\n"    # duplicate of row 0
                                     "a,3,,e3,3\n"      # no status
                                     "a,4,ok,e4,\n"     # metric missing
                                     "b,1,ok,e1,1\n"    # same id, other entity: kept
                                     "c,1,ok,,1\n"      # no id: never a duplicate
                                     "c,2,ok,,1\n"
                                     ",3,ok,e9,1\n")    # no entity
    with caplog.at_level(logging.INFO, logger="markovfault.histories"):
        frame, report = read_frame(path, columns={"metrics": ["lat"]})
    assert report.dropped == {"missing_entity": 1, "duplicate_event_id": 1,
                              "missing_status": 1, "missing_metric": 1}
    assert report.missing_metrics == {"lat": 1}
    assert report.n_rows_read == 9
    assert report.n_rows_read == report.n_rows_kept + report.n_dropped
    assert report.n_rows_kept == len(frame) == 5
    assert report.n_entities == 3
    assert report.single_row_entities == 1  # b
    assert frame["_row"].tolist() == [0, 1, 5, 6, 7]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "duplicate_event_id=1" in warnings[0].getMessage()
    assert "missing_status=1" in warnings[0].getMessage()
    assert "missing_metric=1 (no number in metric column lat=1)" in warnings[0].getMessage()
    assert any(r.levelno == logging.INFO for r in caplog.records)
    text = str(report)
    assert "dropped 4" in text and "missing_entity=1" in text
    assert isinstance(report, ReadReport) and "ReadReport(" in repr(report)


def test_no_warning_without_drops(caplog):
    raw = pd.DataFrame({"entity": ["a"], "time": [1], "status": ["ok"]})
    with caplog.at_level(logging.WARNING, logger="markovfault.histories"):
        read_histories(raw)
    assert not caplog.records


# ---------------------------------------------------------------- bad input


def test_missing_column(tmp_path):
    path = write(tmp_path / "a.csv", "handler,time,status\nh1,1,ok\n")
    with pytest.raises(MissingColumnError) as info:
        read_histories(path)
    message = str(info.value)
    assert "'entity'" in message and "a.csv" in message
    assert "['handler', 'time', 'status']" in message
    assert "[columns] entity" in message
    # an explicitly named optional column must be there
    with pytest.raises(MissingColumnError, match="'kind' \\(event\\)"):
        read_histories(path, columns={"entity": "handler", "event": "kind"})
    # no status column and no metrics: nothing to read states from
    with pytest.raises(MissingColumnError, match="'status'.*no metrics"):
        read_histories(pd.DataFrame({"entity": ["a"], "time": [1]}))
    with pytest.raises(MissingColumnError, match="'lat' \\(metrics\\)"):
        read_histories(path, columns={"entity": "handler", "metrics": ["lat"]})


def test_unparseable_time(tmp_path):
    path = write(tmp_path / "a.csv", "entity,time,status\n"
                                     "a,2024-05-01T10:00:00Z,ok\n"
                                     "a,2024-05-01T10:01:00Z,ok\n"
                                     "a,not a time,ok\n")
    with pytest.raises(TimeParseError) as info:
        read_histories(path)
    message = str(info.value)
    assert "'time'" in message and "row 3 of" in message and "a.csv" in message
    assert "'not a time'" in message and "ISO 8601" in message


def test_missing_time_is_an_error():
    raw = pd.DataFrame({"entity": ["a", "a"], "ts": [1.0, np.nan], "status": ["ok", "ok"]},
                       index=[7, 8])
    with pytest.raises(TimeParseError, match=r"'ts'.*index label 8 \(row 2\)"):
        read_histories(raw, columns={"time": "ts"})


def test_mixed_timezones(tmp_path):
    path = write(tmp_path / "a.csv", "entity,when,status\n"
                                     "a,2024-05-01T10:00:00+02:00,ok\n"
                                     "a,2024-05-01T10:01:00Z,ok\n"
                                     "a,2024-05-01 10:02:00,ok\n")
    with pytest.raises(MixedTimezoneError) as info:
        read_histories(path, columns={"time": "when"})
    message = str(info.value)
    assert "'when'" in message and "row 3 of" in message and "a.csv" in message
    assert "offset" in message and "Z" in message


def test_mixed_integers_and_timestamps():
    raw = pd.DataFrame({"entity": ["a", "a"], "time": ["2024-05-01", "17"],
                        "status": ["ok", "ok"]})
    with pytest.raises(TimeParseError, match="mixes integers and timestamps"):
        read_histories(raw)


@pytest.mark.parametrize("text", ["", "entity,time,status\n"], ids=["zero-byte", "header-only"])
def test_empty_file(tmp_path, text):
    path = write(tmp_path / "a.csv", text)
    with pytest.raises(EmptyHistoryError, match=r"a\.csv.*no rows.*Fix"):
        read_histories(path)


def test_empty_parquet_jsonl_and_frame(tmp_path):
    pd.DataFrame({"entity": pd.Series([], dtype="str"), "time": pd.Series([], dtype="int64"),
                  "status": pd.Series([], dtype="str")}).to_parquet(tmp_path / "a.parquet")
    with pytest.raises(EmptyHistoryError, match=r"a\.parquet"):
        read_histories(tmp_path / "a.parquet")
    write(tmp_path / "b.jsonl", "\n\n")
    with pytest.raises(EmptyHistoryError, match=r"b\.jsonl"):
        read_histories(tmp_path / "b.jsonl")
    with pytest.raises(EmptyHistoryError, match="DataFrame"):
        read_histories(pd.DataFrame({"entity": [], "time": [], "status": []}))


def test_non_numeric_metric(tmp_path):
    path = write(tmp_path / "a.csv", "entity,time,status,latency_ms\n"
                                     "a,1,ok,12.5\n"
                                     "a,2,ok,\n"
                                     "a,3,ok,fast\n")
    with pytest.raises(MetricTypeError) as info:
        read_histories(path, columns={"metrics": ["latency_ms"]})
    message = str(info.value)
    assert "'latency_ms'" in message and "row 3 of" in message and "'fast'" in message
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)


def test_unreadable_file(tmp_path):
    path = write(tmp_path / "a.jsonl", '{"entity": "a", "time": 1\n')
    with pytest.raises(HistoryError, match=r"could not read '.*a\.jsonl' as jsonl"):
        read_histories(path)


def test_bad_sources(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_histories(tmp_path / "nope.csv")
    with pytest.raises(FileNotFoundError):
        read_histories(str(tmp_path / "*.csv"))
    with pytest.raises(TypeError):
        read_histories(42)
    with pytest.raises(ConfigError, match="format='xml'"):
        read_histories(pd.DataFrame(), format="xml")


# ---------------------------------------------------- the return shape (one frame, report in attrs)

RAW_COLUMNS = {"entity": "handler", "time": "ts", "event": "kind", "metrics": ["lat"]}


def raw_export() -> pd.DataFrame:
    """Unsorted rows under other names, with a duplicate id, a row without status, a missing event."""
    return pd.DataFrame({
        "handler": ["b", "a", "a", "b", "a", "b", "a", "c"],
        "ts": [3, 1, 2, 1, 1, 2, 3, 1],
        "kind": ["x", "y", None, "x", "y", "y", "x", "x"],
        "status": ["ok", "ok", "slow", "down", "ok", None, "ok", "ok"],
        "event_id": ["e1", "e2", "e3", "e4", "e2", "e5", "e6", "e7"],
        "lat": [1.0, 2.0, 3.0, 4.0, 2.0, 5.0, 6.0, 7.0],
    })


@pytest.fixture(params=["frame", "csv", "jsonl", "files"])
def source(request, tmp_path):
    """The same export as a frame (read encoded), a CSV file (encoded), JSON lines (row by row) and a
    list of a file and a frame."""
    raw = raw_export()
    if request.param == "frame":
        return raw
    if request.param == "csv":
        raw.to_csv(tmp_path / "a.csv", index=False)
        return tmp_path / "a.csv"
    if request.param == "jsonl":
        raw.to_json(tmp_path / "a.jsonl", orient="records", lines=True)
        return tmp_path / "a.jsonl"
    raw.iloc[:5].to_csv(tmp_path / "a.csv", index=False)
    return [tmp_path / "a.csv", raw.iloc[5:]]


@pytest.mark.parametrize("categorical", [False, True])
def test_read_histories_returns_one_frame_with_its_report_attached(source, categorical):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new shape warns of nothing
        frame = read_histories(source, columns=RAW_COLUMNS, categorical=categorical)
    assert isinstance(frame, pd.DataFrame)
    assert "_row" not in frame.columns
    report = frame.attrs["read_report"]
    assert isinstance(report, ReadReport)
    assert report.dropped == {"duplicate_event_id": 1, "missing_status": 1}
    assert report.filled == {"missing_event_filled": 1}
    assert report.n_rows_kept == len(frame) == 6
    internal, internal_report = read_frame(source, columns=RAW_COLUMNS, categorical=categorical)
    assert list(internal.columns) == [*frame.columns, "_row"] and "read_report" not in internal.attrs
    assert "markovfault_sources" not in frame.attrs  # where rows came from: internal frames only
    pd.testing.assert_frame_equal(frame, internal.drop(columns="_row"))
    assert report == internal_report


def test_old_call_shapes_map_to_the_new_api(source):
    """return_report=True and chunksize=N return what they returned before (frames with the internal
    ``_row``, as read_frame and iter_frames give them), with a DeprecationWarning at the caller."""
    kwargs = dict(columns=RAW_COLUMNS, categorical=True)
    ref_frame, ref_report = read_frame(source, **kwargs)
    ref_batches = list(iter_frames(source, 3, **kwargs))
    assert len(ref_batches) >= 3

    with pytest.warns(DeprecationWarning, match=r"frame\.attrs\['read_report'\]") as caught:
        frame, report = read_histories(source, return_report=True, **kwargs)
    assert caught[0].filename == __file__  # points at the caller
    pd.testing.assert_frame_equal(frame, ref_frame)
    assert report == ref_report

    with pytest.warns(DeprecationWarning, match=r"iter_histories\(source, chunksize=N\)") as caught:
        frames = read_histories(source, chunksize=3, **kwargs)
    assert caught[0].filename == __file__
    frames = list(frames)
    assert len(frames) == len(ref_batches)
    for got, (ref, _) in zip(frames, ref_batches):
        pd.testing.assert_frame_equal(got, ref)

    with pytest.warns(DeprecationWarning, match="iter_histories"):
        pairs = list(read_histories(source, chunksize=3, return_report=True, **kwargs))
    assert len(pairs) == len(ref_batches)
    for (got, got_report), (ref, ref_batch_report) in zip(pairs, ref_batches):
        pd.testing.assert_frame_equal(got, ref)
        assert got_report == ref_batch_report

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame = read_histories(source, **kwargs)
        batches = list(iter_histories(source, chunksize=3, **kwargs))
    pd.testing.assert_frame_equal(frame, ref_frame.drop(columns="_row"))
    assert frame.attrs["read_report"] == ref_report
    # iter_histories: the old chunked batches without _row, each with its report (also in attrs)
    assert len(batches) == len(ref_batches)
    for (got, got_report), (ref, ref_batch_report) in zip(batches, ref_batches):
        assert "_row" not in got.columns
        pd.testing.assert_frame_equal(got, ref.drop(columns="_row"))
        assert got_report == ref_batch_report and got.attrs["read_report"] is got_report


def test_iter_histories_checks_at_the_call_and_reads_lazily(tmp_path):
    with pytest.raises(FileNotFoundError):
        iter_histories(tmp_path / "nope.csv", chunksize=2)
    with pytest.raises(ConfigError, match=r"chunksize = 0 must be a positive integer"):
        iter_histories(raw_export(), chunksize=0, columns=RAW_COLUMNS)
    path = write(tmp_path / "a.csv", "entity,time,status\na,1,ok\na,x,ok\n")
    batches = iter_histories(path, chunksize=1)  # nothing read yet
    frame, report = next(batches)
    assert frame["time"].tolist() == [1] and report.per_source == [(str(path), 1)]
    with pytest.raises(TimeParseError, match="'x'"):  # when the second batch is taken
        next(batches)


def assert_same_values(left: pd.DataFrame, right: pd.DataFrame) -> None:
    """Equal frames, categorical columns compared by their values and categories: the row-by-row
    reader's categories are of dtype str, the encoded reader's of dtype object (as before)."""
    for frame in (left, right):
        for name in frame.columns:
            if isinstance(frame[name].dtype, pd.CategoricalDtype):
                assert list(left[name].cat.categories) == list(right[name].cat.categories)
    pd.testing.assert_frame_equal(left, right, check_categorical=False)
    pd.testing.assert_frame_equal(left.astype("str"), right.astype("str"))


@pytest.mark.parametrize("categorical", [False, True])
def test_reading_its_own_output_gives_the_same_frame(source, categorical):
    once = read_histories(source, columns=RAW_COLUMNS, categorical=categorical)
    same = assert_same_values if categorical else pd.testing.assert_frame_equal
    # its columns now have the canonical names: read by them, whatever columns says
    for columns in (RAW_COLUMNS, {"metrics": ["lat"]}):
        twice = read_histories(once, columns=columns, categorical=categorical)
        same(twice, once)
        report = twice.attrs["read_report"]
        assert report.n_rows_read == report.n_rows_kept == len(once) and not report.dropped
        assert not report.filled
    # what pandas keeps attrs through reads the same way (here rows in another order)
    backwards = once.iloc[::-1]
    assert backwards.attrs["read_report"] == once.attrs["read_report"]
    same(read_histories(backwards, columns=RAW_COLUMNS, categorical=categorical), once)
    # each batch of iter_histories too
    for frame, _ in iter_histories(source, chunksize=3, columns=RAW_COLUMNS, categorical=categorical):
        same(read_histories(frame, columns=RAW_COLUMNS, categorical=categorical), frame)
    # without its report it is a frame like any other, read by the columns given
    bare = once.copy()
    bare.attrs.clear()
    with pytest.raises(MissingColumnError, match="'handler'"):
        read_histories(bare, columns=RAW_COLUMNS)


SIM_COLUMNS = {"entity": "handler", "time": "timestamp", "event": "event_type", "metrics": ["latency_ms"]}


def assert_same_model(left, right) -> None:
    assert_same_counts(left, right)
    assert left.state_names_ == right.state_names_
    assert list(left.event_names_) == list(right.event_names_)
    assert left.time_kind_ == right.time_kind_
    pd.testing.assert_frame_equal(left.last_seen_, right.last_seen_)
    pd.testing.assert_frame_equal(left.predict(horizon=4), right.predict(horizon=4))


@pytest.mark.filterwarnings("ignore::markovfault.exceptions.DataWarning")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # predictor.py still reads the old shapes
def test_fit_on_read_histories_output_equals_fit_on_the_source():
    from markovfault import FaultPredictor
    from markovfault.simulate import simulate_histories

    sim = simulate_histories(n_handlers=12, n_steps=80, duplicate_rate=0.05, shuffle=True,
                             random_state=3)
    train, recent = sim.iloc[: len(sim) * 3 // 4], sim.iloc[len(sim) * 3 // 4:]
    canonical = sim.rename(columns={v: k for k, v in SIM_COLUMNS.items() if k != "metrics"})

    states = {"kind": "categorical", "failure": ["error", "timeout", "down"]}

    # the default columns, on an export with the canonical names
    hist = read_histories(canonical)
    assert "_row" not in hist
    assert_same_model(FaultPredictor(states=states).fit(hist), FaultPredictor(states=states).fit(canonical))

    # other column names, history-aware states: fit, predict, partial_fit, the streamed fit
    spec = {"order": 2, "failure_window": 2}

    def model():
        return FaultPredictor(states=states, columns=SIM_COLUMNS, history=spec)

    train_hist, recent_hist = (read_histories(x, columns=SIM_COLUMNS) for x in (train, recent))
    assert train_hist.attrs["read_report"].dropped  # the duplicates were there
    direct, via = model().fit(train), model().fit(train_hist)
    assert_same_model(via, direct)
    pd.testing.assert_frame_equal(via.predict(recent_hist, horizon=3), direct.predict(recent, horizon=3))
    assert_same_model(model().fit(train_hist).partial_fit(recent_hist),
                      model().fit(train).partial_fit(recent))
    ordered = read_histories(sim, columns=SIM_COLUMNS)
    assert_same_model(model().fit(ordered, chunksize=97), model().fit(ordered))


# ------------------------------------------------------------------ the trace column
TRACE_CSV = (
    "entity,time,event,status,order_id\n"
    "payment,2024-05-01T10:00:02Z,order_placed,error,o1\n"
    "order_api,2024-05-01T10:00:00Z,order_requested,ok,o1\n"
    "order_api,2024-05-01T10:00:05Z,order_requested,ok,\n"
    "order_api,2024-05-01T10:00:07Z,order_requested,ok, o2 \n"
    "payment,2024-05-01T10:00:09Z,order_placed,ok,o2\n"
)


def test_trace_column_read_back_from_csv(tmp_path):
    path = write(tmp_path / "t.csv", TRACE_CSV)
    frame = read_histories(path, columns=ColumnMap(trace="order_id"))
    assert list(frame.columns) == ["entity", "time", "event", "status", "trace"]
    assert frame["trace"].dtype == "str"
    # sorted by (entity, time); the blank trace is missing (a step outside any trace); whitespace stripped
    assert frame["entity"].tolist() == ["order_api"] * 3 + ["payment"] * 2
    assert frame["trace"].tolist()[:1] + frame["trace"].tolist()[2:] == ["o1", "o2", "o1", "o2"]
    assert pd.isna(frame["trace"].iloc[1])
    # the row-by-row reader (a frame of objects, JSON lines) gives the same frame
    raw = pd.read_csv(path, dtype=object)
    general = read_histories(raw.astype(object).assign(time=raw["time"].astype(object)),
                             columns={"trace": "order_id"})
    pd.testing.assert_frame_equal(frame, general)
    lines = tmp_path / "t.jsonl"
    lines.write_text("\n".join(json.dumps(r) for r in raw.where(raw.notna(), None).to_dict("records")))
    pd.testing.assert_frame_equal(frame, read_histories(lines, columns={"trace": "order_id"}))
    # batch by batch too, and the frame read again keeps its trace
    batches = [b for b, _ in iter_histories(path, chunksize=2, columns={"trace": "order_id"})]
    assert sum(len(b) for b in batches) == 5 and all("trace" in b for b in batches)
    again = read_histories(frame, columns={"trace": "order_id"})
    pd.testing.assert_frame_equal(frame, again)
    # without a trace setting nothing changes
    assert "trace" not in read_histories(path)


def test_trace_column_from_config_and_its_errors(tmp_path):
    path = write(tmp_path / "t.csv", TRACE_CSV)
    assert ColumnMap.from_config({"trace": "order_id"}).trace == "order_id"
    assert ColumnMap(trace="").trace is None
    with pytest.raises(MissingColumnError, match=r"'trace_id' \(trace\).*\[columns\] trace"):
        read_histories(path, columns={"trace": "trace_id"})
    with pytest.raises(ConfigError, match="both name the column 'order_id'"):
        ColumnMap(trace="order_id", event_id="order_id")
    with pytest.raises(ConfigError, match="trace"):
        ColumnMap(trace="order_id", metrics=["trace"])


def test_trace_column_from_parquet_matches_csv(tmp_path):
    path = write(tmp_path / "t.csv", TRACE_CSV)
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    raw.to_parquet(tmp_path / "t.parquet")
    from_csv = read_histories(path, columns={"trace": "order_id"})
    from_parquet = read_histories(tmp_path / "t.parquet", columns={"trace": "order_id"})
    pd.testing.assert_frame_equal(from_csv, from_parquet)
