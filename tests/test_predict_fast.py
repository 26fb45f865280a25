"""FaultPredictor.predict against references worked out entity by entity.

predict reads each entity's last step (and, with history-aware states, its
history) without sorting or factorizing what read_histories already sorted,
and builds the forecast frame without copies. Here every (entity, horizon)
row is checked against the model's own table of P(fail within h) at the
entity's last (augmented) state, found by a plain Python walk over that
entity's steps; the encoding helpers are checked against
``Trajectories.from_frame`` and the string-based tail matching they replace.
"""

import logging

import numpy as np
import pandas as pd
import pytest

from markovfault import FaultPredictor, Trajectories, read_histories
from markovfault.histories._read import read_frame
from markovfault._timecodec import time_int
from markovfault.predictor._output import tidy_to_wide as _tidy_to_wide
from markovfault.predictor._tails import prepend_tail
from markovfault.states._history import HistoryLayout as _Layout
from markovfault.trajectories import encode_sorted as _encode_sorted


def _time_int(frame):
    return pd.Series(time_int(frame), index=frame.index)

LABELS = ["down", "ok", "slow"]
FAILURE = ["down"]
EVENTS = ["x", "y", "z"]
# names whose string order differs from their look: "h10" < "h2", "Z" < "a b" < "z" < "é"
NAMES = ["h2", "h10", "h1", "a b", "Z", "é", "z", "10", "9", "h3", "solo"]
SPECS = [None, {"order": 2}, {"order": 3, "failure_window": 2},
         {"failure_window": 2, "failure_count": 2}, {"order": 2, "entering_event": True}]

quiet = pytest.mark.filterwarnings("ignore::markovfault.exceptions.DataWarning")


def make_model(spec=None, max_gap=None, **kw):
    return FaultPredictor(states={"kind": "categorical", "states": LABELS, "failure": FAILURE},
                          history=spec, max_gap=max_gap, **kw)


def make_data(seed, time_kind):
    """Training and recent histories: entities with tails carried from training
    (recent steps all later), entities whose recent steps overlap training (no
    tail is carried), entities never trained on, ties in time, an unknown event,
    rows in random order."""
    rng = np.random.default_rng(seed)
    train, recent = [], []
    for k, name in enumerate(NAMES[:7]):
        n = int(rng.integers(1, 15))
        times = np.sort(rng.integers(0, 40, n))
        train += [(name, t, rng.choice(EVENTS), rng.choice(LABELS)) for t in times]
    train += [("zz", 0, "x", "ok"), ("zz", 1, "y", "down")]  # every label and event occurs
    train += [("zz", 2, "z", "slow"), ("zz", 3, "x", "ok")]
    for k, name in enumerate(NAMES[3:]):
        n = int(rng.integers(1, 9))
        lo = 45 if name in NAMES[3:5] else 20  # tails carried (later) / overlapping (late)
        times = rng.integers(lo, lo + 25, n)
        events = rng.choice(EVENTS + ["w"], n, p=[0.3, 0.3, 0.3, 0.1])
        recent += [(name, t, e, rng.choice(LABELS)) for t, e in zip(times, events)]
    cols = ["entity", "time", "event", "status"]
    train = pd.DataFrame(train, columns=cols)
    recent = pd.DataFrame(recent, columns=cols)
    train = train.iloc[rng.permutation(len(train))].reset_index(drop=True)
    recent = recent.iloc[rng.permutation(len(recent))].reset_index(drop=True)
    if time_kind == "datetime":
        for f in (train, recent):
            f["time"] = pd.to_datetime(f["time"] * 60, unit="s", utc=True)
    return train, recent


# ------------------------------------------------------------- references
def steps_of(frame, entity):
    """The steps of one entity in time order, ties in row order: (times, states, events)."""
    rows = frame[frame["entity"] == entity].sort_values("time", kind="stable")
    return (list(_time_int(rows)), [LABELS.index(s) for s in rows["status"]],
            list(rows["event"]))


def augmented_code(model, states, events, times):
    """The chain state (table row) of the last step: its history code, walking the run it ends, as a
    row of the fitted chain (plain: its state)."""
    spec = getattr(model.chain_, "spec", None)
    if spec is None:
        return states[-1]
    gap = model.max_gap
    if gap is not None:
        gap = pd.Timedelta(gap).value if model.time_kind_ == "datetime" else gap
        start = 0
        for i in range(1, len(times)):
            if times[i] - times[i - 1] > gap:
                start = i
        states, events = states[start:], events[start:]
    names = model.event_names_
    E = len(names)
    ev = [names.index(e) if e in names else E for e in events]
    S = len(model.state_names_)
    fail = [model.state_names_[s] in FAILURE for s in states]
    lay = _Layout(spec, S, E)
    i = len(states) - 1
    code, k = states[i], 1
    for lag in range(1, spec.order):
        code += (states[i - lag] if i - lag >= 0 else S) * lay.strides[k]
        k += 1
    if spec.failure_window:
        W = spec.failure_window

        def since_fail(j):
            last = [x for x in range(j + 1) if fail[x]]
            return min(j - last[-1], W) if last else W

        code += since_fail(i) * lay.strides[k]
        k += 1
        if spec.failure_count:
            recovered = [j for j in range(i + 1) if since_fail(j) == W]
            after = recovered[-1] if recovered else -1
            code += min(sum(fail[after + 1:i + 1]), spec.failure_count) * lay.strides[k]
            k += 1
    if spec.entering_event:
        code += min(ev[i], E) * lay.strides[k]
    return int(model.chain_.state_index(np.array([code]))[0])


def expected_forecast(model, table, train, recent, horizon):
    """The tidy forecast, entity by entity: each entity's history is its recent steps,
    after its training steps when those are all older (else the recent steps alone);
    ``recent=None`` forecasts from the training steps."""
    rows = []
    source = train if recent is None else recent
    for entity in sorted(set(source["entity"].astype(str))):
        times, states, events = steps_of(source, entity)
        if recent is not None and entity in set(train["entity"]):
            t0, s0, e0 = steps_of(train, entity)
            if min(times) > max(t0):
                times, states, events = t0 + times, s0 + states, e0 + events
        code = augmented_code(model, states, events, times)
        for h in range(1, horizon + 1):
            rows.append((entity, times[-1], LABELS[states[-1]], h, table[code, h - 1]))
    return pd.DataFrame(rows, columns=["entity", "as_of", "state", "horizon", "p_fail"])


def check_against(out, expected, time_kind):
    assert list(out.columns) == ["entity", "as_of", "state", "horizon", "p_fail"]
    assert out["entity"].astype(str).tolist() == expected["entity"].tolist()
    assert out["state"].astype(str).tolist() == expected["state"].tolist()
    assert out["horizon"].tolist() == expected["horizon"].tolist()
    as_of = out["as_of"]
    if time_kind == "datetime":
        assert isinstance(as_of.dtype, pd.DatetimeTZDtype) and str(as_of.dt.tz) == "UTC"
        as_of = as_of.dt.tz_localize(None).to_numpy("datetime64[ns]").view(np.int64)
    np.testing.assert_array_equal(np.asarray(as_of, dtype=np.int64), expected["as_of"])
    np.testing.assert_array_equal(out["p_fail"].to_numpy(), expected["p_fail"].to_numpy())
    # documented types
    assert out["entity"].cat.categories.dtype == object
    assert list(out["entity"].cat.categories) == sorted(expected["entity"].unique())
    assert out["horizon"].dtype == np.int64 and out["p_fail"].dtype == np.float64
    assert isinstance(out.index, pd.RangeIndex)


# ------------------------------------------------------------------ tests
@quiet
@pytest.mark.parametrize("time_kind", ["integer", "datetime"])
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: "plain" if s is None else "-".join(s))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_predict_is_the_table_row_of_each_entitys_last_state(seed, spec, time_kind):
    train, recent = make_data(seed, time_kind)
    model = make_model(spec).fit(train)
    table = model.failure_probabilities(6).to_numpy()
    check_against(model.predict(recent, horizon=6),
                  expected_forecast(model, table, train, recent, 6), time_kind)
    check_against(model.predict(horizon=6),
                  expected_forecast(model, table, train, None, 6), time_kind)


@quiet
@pytest.mark.parametrize("time_kind", ["integer", "datetime"])
@pytest.mark.parametrize("spec", [None, {"order": 2, "failure_window": 2}],
                         ids=["plain", "history"])
def test_max_gap_runs_scenarios_and_event_mixes(spec, time_kind):
    train, recent = make_data(5, time_kind)
    model = make_model(spec, max_gap=8 if time_kind == "integer" else "8min").fit(train)
    check_against(model.predict(recent, horizon=5),
                  expected_forecast(model, model.failure_probabilities(5).to_numpy(),
                                    train, recent, 5), time_kind)
    scenario = ["y", "x", "y", "z"]
    table = model.failure_probabilities(4, scenario).to_numpy()
    check_against(model.predict(recent, horizon=4, scenario=",".join(scenario)),
                  expected_forecast(model, table, train, recent, 4), time_kind)
    mix = {"x": 3, "z": 1}
    table = model.failure_probabilities(4, event_mix=mix).to_numpy()
    check_against(model.predict(recent, horizon=4, event_mix=mix),
                  expected_forecast(model, table, train, recent, 4), time_kind)


@quiet
def test_plain_forecast_equals_predict_proba_of_the_last_states():
    train, recent = make_data(3, "integer")
    model = make_model().fit(train)
    out = model.predict(recent, horizon=7)
    last = (recent.sort_values("time", kind="stable").groupby("entity").tail(1)
            .set_index("entity").sort_index())
    codes = [model.state_names_.index(s) for s in last["status"]]
    np.testing.assert_allclose(out["p_fail"].to_numpy().reshape(-1, 7),
                               model.chain_.predict_proba(codes, 7), rtol=0, atol=1e-15)


@quiet
@pytest.mark.parametrize("spec", [None, {"order": 2, "failure_window": 2}],
                         ids=["plain", "history"])
def test_rows_in_any_order_and_unsorted_canonical_frames_give_the_same(spec):
    train, recent = make_data(4, "datetime")
    recent = recent.drop_duplicates(["entity", "time"])  # ties keep read order: none here
    model = make_model(spec).fit(train)
    ref = model.predict(recent, horizon=3)
    for canonical in (read_histories(recent), read_frame(recent)[0]):  # public, and with _row
        shuffled = canonical.iloc[np.random.default_rng(0).permutation(len(canonical))]
        pd.testing.assert_frame_equal(model.predict(shuffled, horizon=3), ref)
    pd.testing.assert_frame_equal(model.predict(recent.iloc[::-1], horizon=3), ref)


@quiet
def test_integer_entities_are_ordered_as_text():
    frame = pd.DataFrame({"entity": [10, 9, 100, 9, 2], "time": [1, 1, 1, 2, 1],
                          "event": ["x"] * 5, "status": ["ok", "down", "ok", "ok", "slow"]})
    model = make_model().fit(frame)
    out = model.predict(frame, horizon=2)
    assert out["entity"].astype(str).tolist() == ["10", "10", "100", "100", "2", "2", "9", "9"]
    assert out["state"].astype(str).tolist()[::2] == ["ok", "ok", "slow", "ok"]


@quiet
@pytest.mark.parametrize("time_kind", ["integer", "datetime"])
@pytest.mark.parametrize("spec", [None, {"order": 2, "entering_event": True}],
                         ids=["plain", "history"])
def test_wide_layout_is_the_tidy_frame_pivoted(spec, time_kind):
    train, recent = make_data(6, time_kind)
    model = make_model(spec).fit(train)
    for histories in (recent, None):
        tidy = model.predict(histories, horizon=4)
        wide = model.predict(histories, horizon=4, layout="wide")
        assert list(wide.columns) == ["entity", "as_of", "state",
                                      "p_fail_1", "p_fail_2", "p_fail_3", "p_fail_4"]
        pivot = tidy.pivot(index="entity", columns="horizon", values="p_fail")
        np.testing.assert_array_equal(wide.iloc[:, 3:].to_numpy(), pivot.to_numpy())
        first = tidy[tidy["horizon"] == 1].reset_index(drop=True)
        pd.testing.assert_frame_equal(wide[["entity", "as_of", "state"]],
                                      first[["entity", "as_of", "state"]])
        pd.testing.assert_frame_equal(_tidy_to_wide(tidy), wide)  # the dask route
    with pytest.raises(ValueError, match="layout"):
        model.predict(recent, horizon=4, layout="long")


@quiet
@pytest.mark.parametrize("seed", range(6))
def test_encoding_sorted_frames_equals_from_frame(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    frame = pd.DataFrame({
        "entity": rng.choice(NAMES, n), "time": rng.integers(0, 20, n),
        "event": rng.choice(EVENTS, n), "_row": np.arange(n)})
    if seed % 2:
        frame["time"] = pd.to_datetime(frame["time"], unit="s", utc=True)
    state = rng.integers(0, 3, n)
    fail = np.array([True, False, False])
    order = np.lexsort((_time_int(frame).to_numpy(), frame["entity"].to_numpy().astype(str)))
    in_order = bool((order == np.arange(n)).all())
    for rows, expect_fast in ((order, True), (np.arange(n), in_order)):
        for entity in ("str", "object"):
            f = frame.iloc[rows].reset_index(drop=True)
            f["entity"] = f["entity"].astype(entity)
            for vocab in (None, ["y", "q"]):
                for gap in (None, 3 if seed % 2 == 0 else "3s"):
                    fast = _encode_sorted(f, state[rows], LABELS, fail, vocab, gap)
                    assert (fast is not None) == expect_fast
                    if fast is None:
                        continue
                    ref = Trajectories.from_frame(f, state[rows], LABELS, fail,
                                                  event_names=vocab, max_gap=gap)
                    for field in ("entity", "time", "event", "state", "run_starts",
                                  "is_failure", "source_row"):
                        np.testing.assert_array_equal(getattr(fast, field), getattr(ref, field))
                        assert getattr(fast, field).dtype == getattr(ref, field).dtype
                    for field in ("state_names", "event_names", "entity_names", "time_kind"):
                        assert getattr(fast, field) == getattr(ref, field)


def _prepend_tail_reference(model, frame, codes):
    """The carried tail rows, matched on entity names with pandas grouping (the
    string-based version the integer codes replace)."""
    seen = model.last_seen_
    ents = frame["entity"].astype(str)
    present = pd.Index(pd.unique(ents.to_numpy(dtype=object)), dtype=object)
    carried = seen[present.get_indexer(seen.index.to_numpy(dtype=object)) >= 0]
    if not len(carried):
        return frame, codes, 0
    first_time = _time_int(frame).groupby(ents.to_numpy()).min()
    last_time = carried.groupby(level=0)["time"].max()
    late = first_time.reindex(last_time.index) <= last_time
    carried = carried[~carried.index.isin(last_time.index[late.to_numpy()])]
    times = (pd.to_datetime(carried["time"].to_numpy(), utc=True)
             if model.time_kind_ == "datetime" else carried["time"].to_numpy())
    boundary = pd.DataFrame({"entity": carried.index.to_numpy(), "time": times,
                             "event": carried["event"].to_numpy(), "_row": -1})
    both = pd.concat([boundary, frame[["entity", "time", "event", "_row"]]], ignore_index=True)
    return both, np.concatenate([carried["state"].to_numpy(np.int64), codes]), len(boundary)


@quiet
@pytest.mark.parametrize("time_kind", ["integer", "datetime"])
@pytest.mark.parametrize("seed", range(3))
def test_prepend_tail_matches_string_matching(seed, time_kind, caplog):
    train, recent = make_data(seed, time_kind)
    model = make_model({"order": 3}).fit(train)
    for frame in (read_frame(recent)[0], recent.assign(_row=np.arange(len(recent)))):
        codes = model.states_.transform(frame)
        both, both_codes, n_tail = prepend_tail(model.last_seen_, model.time_kind_, frame, codes, warn=False)
        ref, ref_codes, ref_tail = _prepend_tail_reference(model, frame, codes)
        pd.testing.assert_frame_equal(both, ref)
        np.testing.assert_array_equal(both_codes, ref_codes)
        assert n_tail == ref_tail
        # interleaved: the same rows, each entity's tail just before its own rows
        mixed, mixed_codes, _ = prepend_tail(model.last_seen_, model.time_kind_, frame, codes, warn=False,
                                              interleave=True)
        key = mixed["entity"].astype(str).to_numpy()
        assert (key[1:] >= key[:-1]).all()
        order = np.argsort(np.concatenate([ref["entity"].astype(str).to_numpy()]), kind="stable")
        pd.testing.assert_frame_equal(mixed, ref.iloc[order].reset_index(drop=True))
        np.testing.assert_array_equal(mixed_codes, ref_codes[order])
    # the warning counts the entities whose steps are not later and names the first three
    late = sorted(e for e in set(recent["entity"]) & set(train["entity"])
                  if _time_int(recent[recent["entity"] == e]).min()
                  <= _time_int(train[train["entity"] == e]).max())
    frame, _ = read_frame(recent)
    with caplog.at_level(logging.WARNING, logger="markovfault.predictor"):
        prepend_tail(model.last_seen_, model.time_kind_, frame, model.states_.transform(frame), warn=True)
    if late:
        assert f"{len(late)} entities have steps no later" in caplog.text
        assert f"(e.g. {late[:3]})" in caplog.text
    else:
        assert "no later than" not in caplog.text
