"""The dictionary-encoded reader of Parquet and CSV files against the general reader.

``read_histories`` reads Parquet and CSV files dictionary-encoded (markovfault.histories._fast)
and falls back to the general, row-by-row reader for anything that path does not
handle. The reference here is the general reader itself, forced by making the fast
path decline: both must give the same frame, the same report and the same fit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pandas.testing import assert_frame_equal

from conftest import assert_same_counts

import markovfault._sorting as sorting
import markovfault.histories._fast as fastread
from markovfault import FaultPredictor, read_histories
from markovfault.histories._read import iter_frames, read_frame
from markovfault.exceptions import MetricTypeError, MixedTimezoneError, TimeParseError

STATES = {"kind": "categorical", "failure": ["down"]}


@pytest.fixture
def general(monkeypatch):
    """A function that reads with the general reader only: ``(frame, report)`` as
    ``read_frame`` returns them, or with ``chunksize`` the list of ``iter_frames``' batches
    (only ``read_encoded`` declines, as before: batches are still encoded where they can be)."""

    def read(source, chunksize=None, **kwargs):
        with monkeypatch.context() as m:
            def decline(*a, **k):
                raise fastread.Fallback("test: the general reader")

            m.setattr(fastread, "read_encoded", decline)
            if chunksize is None:
                return read_frame(source, **kwargs)
            return list(iter_frames(source, chunksize, **kwargs))

    return read


def messy_export(seed: int, n: int = 400, kind: str = "datetime") -> pd.DataFrame:
    """Rows in a random order with the blemishes exports have."""
    rng = np.random.default_rng(seed)
    entities = np.array(["a", " a", "b ", "b", "c", "", "NA", "d-7", "é", "Z"], dtype=object)
    statuses = np.array(["ok", "slow", " ok", "down", "", None, "null", "N/A"], dtype=object)
    events = np.array(["deploy", "order", " order", None, "", "step"], dtype=object)
    ent = entities[rng.integers(0, len(entities), n)]
    ent[rng.random(n) < 0.03] = None
    if kind == "datetime":
        base = np.datetime64("2024-05-01T00:00:00")
        time = pd.Series(base + rng.integers(0, 50, n).astype("timedelta64[m]"))
    else:
        time = pd.Series(rng.integers(-5, 60, n), dtype="int64")
    ids = np.array([f"id{k}" for k in rng.integers(0, n // 2, n)], dtype=object)
    ids[rng.random(n) < 0.1] = None
    latency = rng.gamma(2.0, 50.0, n)
    latency[rng.random(n) < 0.05] = np.nan
    frame = pd.DataFrame({
        "handler": ent,
        "ts": time,
        "event": events[rng.integers(0, len(events), n)],
        "status": statuses[rng.integers(0, len(statuses), n)],
        "event_id": ids,
        "latency_ms": latency,
    })
    # rows written twice by an export without event ids: exact repeats, some with a blank padded
    again = rng.integers(0, n, 20)
    frame.loc[again, "event_id"] = None
    repeats = frame.iloc[again].copy()
    repeats["status"] = repeats["status"].map(lambda s: f"{s} " if isinstance(s, str) else s)
    return pd.concat([frame, repeats], ignore_index=True)


COLUMNS = {"entity": "handler", "time": "ts", "metrics": ["latency_ms"]}


def write(frame: pd.DataFrame, path, fmt: str) -> str:
    path = str(path)
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path,
                       row_group_size=97)
    else:
        frame.to_csv(path, index=False)
    return path


def check_same(read_general, source, fast_path=True, **kwargs):
    used = []
    real = fastread.read_encoded

    def spy(*a, **k):
        out = real(*a, **k)
        used.append(True)
        return out

    fastread.read_encoded = spy
    try:
        fast, fast_report = read_frame(source, **kwargs)  # with the source rows (_row)
    finally:
        fastread.read_encoded = real
    assert bool(used) == fast_path  # the path under test really ran (or declined)
    ref, ref_report = read_general(source, **kwargs)
    assert_frame_equal(fast, ref)
    assert fast_report == ref_report
    cat = read_histories(source, categorical=True, **kwargs)
    assert cat.attrs["read_report"] == ref_report
    for name in ("entity", "event", "status", "event_id"):
        if name in cat:
            assert isinstance(cat[name].dtype, pd.CategoricalDtype)
            cat[name] = cat[name].astype("str")
    assert_frame_equal(cat, ref.drop(columns="_row"))
    return fast, fast_report


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
@pytest.mark.parametrize("kind", ["datetime", "integer"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_messy_files_read_the_same(tmp_path, general, fmt, kind, seed):
    path = write(messy_export(seed, kind=kind), tmp_path / f"x.{fmt}", fmt)
    frame, report = check_same(general, path, columns=COLUMNS)
    # the export's blemishes really were there, and were counted
    assert set(report.dropped) == {"missing_entity", "duplicate_event_id", "missing_status",
                                   "missing_metric", "duplicate_row"}
    assert report.missing_metrics == {"latency_ms": report.dropped["missing_metric"]}
    assert report.filled["missing_event_filled"] > 0
    assert "a" in set(frame["entity"]) and " a" not in set(frame["entity"])


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_several_files_with_different_vocabularies(tmp_path, general, fmt):
    frames = [messy_export(seed, n=150) for seed in (3, 4, 5)]
    frames[1]["status"] = frames[1]["status"].replace({"slow": "degraded"})
    for k, f in enumerate(frames):
        write(f, tmp_path / f"part-{k}.{fmt}", fmt)
    frame, report = check_same(general, str(tmp_path), columns=COLUMNS)
    assert report.n_sources == 3
    assert {"slow", "degraded"} <= set(frame["status"])


def test_time_order_and_sorted_exports(tmp_path, general):
    rng = np.random.default_rng(7)
    n_ent, steps = 300, 20
    ent = np.tile([f"h{k:03d}" for k in rng.permutation(n_ent)], steps)
    time = np.repeat(np.arange(steps), n_ent)
    frame = pd.DataFrame({"entity": ent, "time": time,
                          "status": rng.choice(["ok", "down"], n_ent * steps)})
    check_same(general, write(frame, tmp_path / "time_order.parquet", "parquet"))
    ordered = frame.sort_values(["entity", "time"], kind="stable")
    check_same(general, write(ordered, tmp_path / "sorted.parquet", "parquet"))


def test_aware_timestamps_and_integer_entities(tmp_path, general):
    frame = pd.DataFrame({
        "entity": [3, 1, 3, 2, 1],
        "time": pd.to_datetime(["2024-05-01T10:00:00+02:00", "2024-05-01T08:00:00Z",
                                "2024-05-01T09:00:00Z", "2024-05-01T08:30:00Z",
                                "2024-05-01T08:00:00Z"], utc=True, format="ISO8601"),
        "status": ["ok", "down", "ok", "ok", "ok"],
    })
    out, _ = check_same(general, write(frame, tmp_path / "x.parquet", "parquet"))
    assert out["entity"].tolist() == ["1", "1", "2", "3", "3"]
    text = ("entity,time,status\n007,2024-05-01T10:00:00+02:00,ok\n7,2024-05-01T08:00:00Z,down\n"
            "007,2024-05-01T07:00:00Z,ok\n")
    (tmp_path / "x.csv").write_text(text)
    out, _ = check_same(general, str(tmp_path / "x.csv"))
    assert out["entity"].tolist() == ["007", "007", "7"]  # text stays text


def test_what_the_fast_path_declines_still_reads_or_raises(tmp_path, general):
    # time as text pyarrow does not parse, mixed time zones in CSV, a metric that is
    # not a number, a missing time: the general reader reads or raises as always
    frame = pd.DataFrame({"entity": ["a", "a"], "time": ["2024-05-01 10:00", "2024-05-01 11:00"],
                          "status": ["ok", "down"]})
    check_same(general, write(frame, tmp_path / "text_time.parquet", "parquet"))
    frame["time"] = ["2024-05-01 10:00:00 UTC", "2024-05-01 11:00:00 UTC"]
    check_same(general, write(frame, tmp_path / "utc_time.parquet", "parquet"),
               fast_path=False)
    (tmp_path / "mixed.csv").write_text("entity,time,status\na,2024-05-01T10:00:00,ok\n"
                                        "a,2024-05-01T11:00:00Z,down\n")
    with pytest.raises(MixedTimezoneError):
        read_histories(str(tmp_path / "mixed.csv"))
    (tmp_path / "metric.csv").write_text("entity,time,latency_ms\na,1,5\na,2,fast\n")
    with pytest.raises(MetricTypeError, match="fast"):
        read_histories(str(tmp_path / "metric.csv"), columns={"metrics": ["latency_ms"]})
    (tmp_path / "hole.csv").write_text("entity,time,status\na,1,ok\na,,down\n")
    with pytest.raises(TimeParseError, match="row 2"):
        read_histories(str(tmp_path / "hole.csv"))


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_fit_from_files_equals_fit_from_the_general_reader(tmp_path, general, fmt):
    rng = np.random.default_rng(11)
    n = 3000
    frame = pd.DataFrame({
        "entity": rng.choice([f"h{k}" for k in range(40)], n),
        "time": rng.integers(0, 500, n),
        "event": rng.choice(["a", "b", "c"], n),
        "status": rng.choice(["ok", "slow", "down"], n, p=[0.7, 0.2, 0.1]),
    })
    path = write(frame, tmp_path / f"x.{fmt}", fmt)
    fast = FaultPredictor(states=STATES, history={"order": 2}).fit(path)
    ref = FaultPredictor(states=STATES, history={"order": 2}).fit(general(path)[0])
    assert_same_counts(fast, ref)
    assert fast.chain_.base_.event_names_ == ref.chain_.base_.event_names_
    assert_frame_equal(fast.last_seen_, ref.last_seen_)
    assert_frame_equal(fast.predict(horizon=5), ref.predict(horizon=5))


@pytest.mark.parametrize("n_codes", [3, 300, 70_000, 3_000_000])
def test_group_order_is_lexsort(n_codes):
    rng = np.random.default_rng(n_codes)
    n = 200_000
    codes = rng.integers(0, n_codes, n)
    ordered_time = np.sort(rng.integers(0, 1000, n))  # an export written in time order
    for time in (ordered_time, rng.integers(0, 1000, n)):
        order = fastread.group_order(codes, time, n_codes)
        np.testing.assert_array_equal(order, np.lexsort((time, codes)))
    done = np.lexsort((ordered_time, codes))
    assert fastread.group_order(codes[done], ordered_time[done], n_codes) is None
    np.testing.assert_array_equal(sorting.stable_argsort_codes(codes, n_codes),
                                  np.argsort(codes, kind="stable"))
    once = rng.permutation(n)  # one row per entity
    time = rng.integers(0, 1000, n)
    np.testing.assert_array_equal(fastread.group_order(once, time, n),
                                  np.lexsort((time, once)))


def read_encoded_batches(source, **kwargs):
    """The batches iter_frames yields (those of iter_histories, with _row), and the batches it encoded."""
    calls = []
    real = fastread.finish
    fastread.finish = lambda *a, **k: calls.append(1) or real(*a, **k)
    try:
        return list(iter_frames(source, **kwargs)), calls
    finally:
        fastread.finish = real


@pytest.mark.parametrize("categorical", [False, True])
def test_streamed_parquet_batches_read_the_same(tmp_path, general, categorical):
    frames = [messy_export(seed, n=300) for seed in (8, 9)]
    for k, f in enumerate(frames):
        write(f, tmp_path / f"part-{k}.parquet", "parquet")
    kwargs = dict(columns=COLUMNS, chunksize=128)
    fast, calls = read_encoded_batches(str(tmp_path), categorical=categorical, **kwargs)
    assert len(calls) == len(fast)  # every batch went the encoded way
    ref = general(str(tmp_path), **kwargs)
    assert len(fast) == len(ref) >= 6  # batches of at most 128 rows (row groups of 97)
    for (f, fr), (r, rr) in zip(fast, ref):
        if categorical:
            f = f.assign(**{c: f[c].astype("str") for c in ("entity", "event", "status",
                                                              "event_id")})
        assert_frame_equal(f, r)
        assert fr == rr


def test_streamed_fit_from_parquet_equals_the_in_memory_fit(tmp_path):
    rng = np.random.default_rng(12)
    n_ent, steps = 50, 40
    frame = pd.DataFrame({
        "entity": np.tile([f"h{k}" for k in range(n_ent)], steps),
        "time": np.repeat(np.arange(steps), n_ent),
        "event": rng.choice(["a", "b"], n_ent * steps),
        "status": rng.choice(["ok", "slow", "down"], n_ent * steps),
    })
    path = write(frame, tmp_path / "x.parquet", "parquet")
    whole = FaultPredictor(states=STATES).fit(path)
    streamed = FaultPredictor(states=STATES).fit(path, chunksize=333)
    assert_same_counts(streamed, whole)
    assert streamed.read_report_.n_rows_kept == whole.read_report_.n_rows_kept


@pytest.mark.parametrize("text_dtype", ["object", "str", "category"])
@pytest.mark.parametrize("kind", ["datetime", "integer"])
def test_frames_read_the_same(general, text_dtype, kind):
    frame = messy_export(13, kind=kind)
    for col in ("handler", "event", "status", "event_id"):
        frame[col] = frame[col].astype(text_dtype) if text_dtype != "object" else frame[col]
    check_same(general, frame, columns=COLUMNS)


def test_frames_with_numbers_for_names(general):
    frame = pd.DataFrame({"entity": [7, 3, 7, 3], "time": [1, 1, 2, 2],
                          "status": [200, 500, 200, 200], "event": [True, False, True, True]})
    out, _ = check_same(general, frame)
    assert out["entity"].tolist() == ["3", "3", "7", "7"]
    # values that hash alike but read differently as text: the general reader reads them
    mixed = pd.DataFrame({"entity": pd.Series([1, 1.0, True, "1"], dtype=object),
                          "time": [1, 2, 3, 4], "status": ["ok"] * 4})
    check_same(general, mixed, fast_path=False)
    floats = pd.DataFrame({"entity": [1.5, 2.0, np.nan], "time": [1, 2, 3], "status": ["ok"] * 3})
    check_same(general, floats, fast_path=False)


def test_parquet_with_zones_categories_and_large_strings(tmp_path, general):
    times = pd.date_range("2024-03-31T00:30", periods=6, freq="30min", tz="Europe/Berlin")
    frame = pd.DataFrame({
        "entity": pd.Categorical(["b", "a", "b", "a", "b", "a"]),
        "time": times[[1, 0, 3, 2, 5, 4]],
        "status": ["ok", "down", "ok", "ok", "down", "ok"],
        "event": ["x", "y", None, "x", "y", "x"],
    })
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.set_column(2, "status", table.column("status").cast(pa.large_string()))
    path = str(tmp_path / "zones.parquet")
    pq.write_table(table, path)
    out, _ = check_same(general, path)
    assert str(out["time"].dt.tz) == "UTC"
    assert out["time"].iloc[0] == times[0].tz_convert("UTC")


@pytest.mark.parametrize("kind", ["datetime", "integer"])
def test_streamed_csv_batches_read_the_same(tmp_path, general, kind):
    frames = [messy_export(seed, n=300, kind=kind) for seed in (14, 15)]
    for k, f in enumerate(frames):
        write(f, tmp_path / f"part-{k}.csv", "csv")
    kwargs = dict(columns=COLUMNS, chunksize=64)
    fast, calls = read_encoded_batches(str(tmp_path), **kwargs)
    ref = general(str(tmp_path), **kwargs)
    assert len(fast) == len(ref) == 10 and len(calls) == 10  # 5 batches a file, all encoded
    for (f, fr), (r, rr) in zip(fast, ref):
        assert_frame_equal(f, r)
        assert fr == rr


def test_streamed_csv_where_pyarrow_stops_pandas_goes_on(tmp_path, general):
    # a row with a missing trailing field: pandas fills it, pyarrow stops there
    rows = [f"h{k % 3},{k},ok,e" for k in range(40)]
    rows[25] = "h1,25,ok"
    (tmp_path / "short.csv").write_text("entity,time,status,event\n" + "\n".join(rows) + "\n")
    path = str(tmp_path / "short.csv")
    kwargs = dict(chunksize=8)
    fast = list(iter_frames(path, **kwargs))
    ref = general(path, **kwargs)
    assert len(fast) == len(ref) == 5
    for (f, fr), (r, rr) in zip(fast, ref):
        assert_frame_equal(f, r)
        assert fr == rr
    assert fast[3][1].filled == {"missing_event_filled": 1}


def test_streamed_fit_from_csv_equals_the_in_memory_fit(tmp_path):
    rng = np.random.default_rng(16)
    n_ent, steps = 30, 50
    frame = pd.DataFrame({
        "entity": np.tile([f"h{k}" for k in range(n_ent)], steps),
        "time": pd.Series(np.repeat(np.arange(steps), n_ent)).map(
            lambda m: f"2024-05-01T{m // 60:02d}:{m % 60:02d}:00Z"),
        "event": rng.choice(["a", "b"], n_ent * steps),
        "status": rng.choice(["ok", "slow", "down"], n_ent * steps),
    })
    path = write(frame, tmp_path / "x.csv", "csv")
    whole = FaultPredictor(states=STATES, history={"order": 2}).fit(path)
    streamed = FaultPredictor(states=STATES, history={"order": 2}).fit(path, chunksize=97)
    assert_same_counts(streamed, whole)
    assert_frame_equal(streamed.last_seen_, whole.last_seen_)
