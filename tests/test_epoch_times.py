"""Integer times that look like Unix epoch times: a warning by default, parsed with ``[columns] time_unit``."""

import warnings

import pandas as pd
import pytest

from markovfault import read_histories
from markovfault.exceptions import ConfigError, DataWarning, TimeParseError
from markovfault.histories import ColumnMap, _fast

SECONDS = [1714557600, 1714557660, 1714557720]  # 2024-05-01 10:00, 10:01, 10:02 UTC


def export(times) -> pd.DataFrame:
    return pd.DataFrame({"entity": ["a"] * len(times), "time": times, "status": ["ok", "slow", "ok"]})


def sources(tmp_path, times):
    frame = export(times)
    frame.to_csv(tmp_path / "h.csv", index=False)
    frame.to_parquet(tmp_path / "h.parquet", index=False)
    return {"frame": frame, "csv": str(tmp_path / "h.csv"), "parquet": str(tmp_path / "h.parquet")}


@pytest.mark.parametrize("fmt", ["frame", "csv", "parquet"])
@pytest.mark.parametrize("scale, unit", [(1, "s"), (1000, "ms")])
def test_epoch_like_integers_warn(tmp_path, caplog, fmt, scale, unit):
    source = sources(tmp_path, [t * scale for t in SECONDS])[fmt]
    with pytest.warns(DataWarning, match=f"look like Unix epoch times in '{unit}'") as caught:
        frame = read_histories(source)
    message = str(caught[0].message)
    assert f'time_unit = "{unit}"' in message and "2024-05-01 10:00" in message
    assert frame["time"].dtype == "int64"  # still step numbers, as documented
    assert "epoch" in caplog.text


@pytest.mark.parametrize("fmt", ["frame", "csv", "parquet"])
@pytest.mark.parametrize("scale, unit", [(1, "s"), (1000, "ms")])
def test_time_unit_parses_them(tmp_path, fmt, scale, unit):
    source = sources(tmp_path, [t * scale for t in SECONDS])[fmt]
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        frame = read_histories(source, columns={"time_unit": unit})
    assert frame["time"].tolist() == list(pd.to_datetime(
        ["2024-05-01T10:00Z", "2024-05-01T10:01Z", "2024-05-01T10:02Z"], utc=True))
    assert frame.attrs["read_report"].time_kind == "datetime"


@pytest.mark.parametrize("fmt", ["frame", "csv", "parquet"])
def test_step_numbers_do_not_warn(tmp_path, fmt):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        frame = read_histories(sources(tmp_path, [1, 2, 3])[fmt])
        assert frame["time"].tolist() == [1, 2, 3]
        read_histories(sources(tmp_path, SECONDS)[fmt], columns={"time_unit": "step"})


def test_time_unit_checked():
    with pytest.raises(ConfigError, match="time_unit"):
        ColumnMap(time_unit="hours")
    with pytest.raises(TimeParseError, match="outside 1677-2262"):
        read_histories(export([1, 2, 10**17]), columns={"time_unit": "s"})


def test_both_readers_agree_on_epoch_times(tmp_path, monkeypatch):
    path = sources(tmp_path, [t * 1000 for t in SECONDS])["csv"]
    fast = read_histories(path, columns={"time_unit": "ms"})
    monkeypatch.setattr(_fast, "read_encoded", lambda *a, **k: (_ for _ in ()).throw(_fast.Fallback("test")))
    general = read_histories(path, columns={"time_unit": "ms"})
    pd.testing.assert_frame_equal(fast, general)
