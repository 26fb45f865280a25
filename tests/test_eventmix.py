"""One event-mix resolver: what each mix means and how each mistake is worded (markovfault._eventmix).

The same checks run for predict, backtest and the Dask back end; tests/test_dask.py checks that all of them
raise the same errors.
"""

import logging

import numpy as np
import pandas as pd
import pytest

from markovfault import FaultPredictor
from markovfault._eventmix import check_event_mix, check_event_mixes, mix_name
from markovfault.exceptions import ConfigError


def history():
    # ok -x-> ok twice, ok -y-> down once, down -x-> ok once, per handler; handler b three steps later
    rows = []
    for ent, t0 in (("a", 0), ("b", 3)):
        for k, (ev, st) in enumerate([("x", "ok"), ("x", "ok"), ("y", "down"), ("x", "ok"), ("x", "ok")]):
            rows.append((ent, t0 + k, ev, st))
    return pd.DataFrame(rows, columns=["entity", "time", "event", "status"])


def test_given_shares_are_normalised_and_used_in_every_state():
    mix, width = check_event_mix({"y": 3, "x": 1}, ["x", "y"])
    assert mix == {"x": 0.25, "y": 0.75} and width is None
    model = FaultPredictor(states={"failure": ["down"]}, alpha=0, beta=0).fit(history())
    got = model.failure_probabilities(1, event_mix={"y": 3, "x": 1}).loc["ok", 1]
    # from ok: x never fails, y always does: P(fail in 1) = 0.75
    assert got == pytest.approx(0.75)


@pytest.mark.parametrize("mix,match", [
    ({"z": 1}, r"unknown events \['z'\]"),
    ({"x": 0, "y": 0}, "not all zero"),
    ({"x": float("nan")}, "finite"),
    ({"x": "a lot"}, "must be numbers"),
    ("recent", "needs recent_window"),
    (3, "use 'long_run', 'recent'"),
])
def test_bad_mixes_are_config_errors(mix, match):
    with pytest.raises(ConfigError, match=match):
        check_event_mix(mix, ["x", "y"], "integer")


def test_a_list_of_mixes_names_each_kind_once():
    mixes, width = check_event_mixes(["long_run", "recent", {"x": 1}], ["x", "y"], "integer", 4)
    assert [mix_name(m) for m in mixes] == ["markov", "markov_recent", "markov_mix"] and width == 4
    with pytest.raises(ConfigError, match="twice"):
        check_event_mixes([{"x": 1}, {"y": 1}], ["x", "y"], "integer", None)


def test_recent_mix_needs_histories_and_an_empty_window_leaves_the_long_run_mix(caplog):
    hist = history()
    model = FaultPredictor(states={"failure": ["down"]}, alpha=0.5, beta=0.5).fit(hist)
    for no_histories in (lambda: model.failure_probabilities(2, event_mix="recent"),
                         lambda: model.predict(None, horizon=2, event_mix="recent", recent_window=2)):
        with pytest.raises(ConfigError, match="needs the recent histories"):
            no_histories()
    # from ok, y arrived in 1 of 3 arrivals over the whole history and in 1 of 4 in the window [3, 8):
    # fewer failing events lately, a lower risk from ok
    long_run = model.predict(hist, horizon=2)
    shifted = model.predict(hist, horizon=2, event_mix="recent", recent_window=4)
    assert (shifted["p_fail"].to_numpy() < long_run["p_fail"].to_numpy()).all()
    # a single row per handler: no transition in any window, the long-run mix, and a warning
    last = hist.groupby("entity").tail(1)
    with caplog.at_level(logging.WARNING, logger="markovfault.eventmix"):
        same = model.predict(last, horizon=2, event_mix="recent", recent_window=3)
    pd.testing.assert_frame_equal(same, model.predict(last, horizon=2))
    assert "holds no transition" in caplog.text
