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
