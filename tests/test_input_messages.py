"""Input errors and reports that name the right thing: missing metrics by column, unknown labels at predict
time by source and 1-based row, threshold columns not listed in ``metrics``."""

import logging

import pandas as pd
import pytest

from markovfault import FaultPredictor, read_histories
from markovfault.exceptions import MissingColumnError, UnknownStatusError


def test_na_metric_is_reported_as_a_missing_metric(tmp_path, caplog):
    path = tmp_path / "h.csv"
    path.write_text("entity,time,status,latency_ms\na,1,ok,1.5\na,2,ok,n/a\na,3,,2.0\n")
    with caplog.at_level(logging.WARNING, logger="markovfault.histories"):
        frame = read_histories(str(path), columns={"metrics": ["latency_ms"]})
    report = frame.attrs["read_report"]
    assert report.dropped == {"missing_status": 1, "missing_metric": 1}
    assert report.missing_metrics == {"latency_ms": 1}
    assert "latency_ms" in caplog.text and "latency_ms" in str(report)


def _fitted():
    frame = pd.DataFrame({"entity": ["a"] * 6 + ["b"] * 6, "time": list(range(6)) * 2,
                          "status": ["ok", "ok", "down", "ok", "ok", "down"] * 2})
    return frame, FaultPredictor(states={"failure": ["down"], "states": ["ok", "down"]}).fit(frame)


def test_unknown_label_at_predict_names_file_and_1_based_row(tmp_path):
    frame, model = _fitted()
    new = frame.copy()
    new.loc[5, "status"] = "rebooting"
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    frame.to_csv(first, index=False)
    new.to_csv(second, index=False)
    with pytest.raises(UnknownStatusError, match=r"first at row 6 of '.*second\.csv'"):
        model.predict(str(second))
    # in the second of two files: the row within that file, not the position across both
    with pytest.raises(UnknownStatusError, match=r"first at row 6 of '.*second\.csv'"):
        model.predict([str(first), str(second)])
    with pytest.raises(UnknownStatusError, match=r"first at row 6 of <DataFrame>"):
        model.predict(new)


def test_threshold_column_not_in_metrics_says_so(tmp_path):
    frame = pd.DataFrame({"entity": ["a"] * 6, "time": range(6), "status": ["ok"] * 6,
                          "latency_ms": [10.0, 20, 90, 10, 95, 20]})
    states = {"kind": "thresholds", "column": "latency_ms", "edges": [50], "names": ["fast", "slow"],
              "failure": ["slow"]}
    with pytest.raises(MissingColumnError, match=r'\[columns\] metrics = \["latency_ms"\]'):
        FaultPredictor(states=states).fit(frame)
    # no status column either: the reader's error points at metrics first, not only at [columns] status
    with pytest.raises(MissingColumnError) as caught:
        FaultPredictor(states=states).fit(frame.drop(columns="status"))
    message = str(caught.value)
    assert 'kind = "thresholds"' in message and "[columns] metrics" in message
    assert message.index("[columns] metrics") < message.index("[columns] status")
    # listed in metrics, it works
    FaultPredictor(states=states, columns={"metrics": ["latency_ms"]}).fit(frame.drop(columns="status"))
