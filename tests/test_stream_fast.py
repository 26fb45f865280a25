"""``fit(..., chunksize=N)`` and ``partial_fit`` count on integer codes.

``markovfault.predictor._updates.add_codes`` carries each entity's remembered last steps
(``_Tails``) into the next batch as codes. The references: the in-memory fit
on all the data (counts, event vocabulary and ``last_seen_`` exactly equal),
and the general path ``add_frames`` (the remembered tails prepended as rows
of a frame and encoded with it: the code before ``add_codes``, reached here by
declining the code path) for reports, warnings, errors and late rows.
"""

import logging

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import assert_same_counts

from markovfault import FaultPredictor, load_model, read_histories
from markovfault.exceptions import HistoryError
from markovfault.histories._read import read_frame
from markovfault.predictor import _updates
from markovfault.predictor._tails import Tails as _Tails
from markovfault.predictor._tails import union_sorted as _union_sorted

LABELS = ["down", "error", "ok", "slow"]
STATES = {"kind": "categorical", "states": LABELS, "failure": ["error", "down"]}
SPECS = [None, {"order": 2}, {"order": 3, "failure_window": 2},
         {"failure_window": 2, "failure_count": 2}, {"order": 2, "entering_event": True}]
# names whose string order differs from their look ("h10" < "h2", "Z" < "a" < "ä" < "é")
NAMES = ["h2", "h10", "h1", "a", "Z", "é", "ä", "z", "10", "9"]


def export(seed=0, n_entities=24, n_steps=40, datetime=False):
    """An export written in time order: entities interleaved and beginning at
    different times (some only in later batches), ties and gaps in time, and
    an event ("rollback") that occurs only late."""
    rng = np.random.default_rng(seed)
    names = NAMES + [f"h{k:02d}" for k in range(n_entities - len(NAMES))]
    ent = np.repeat(np.arange(n_entities), n_steps)
    begin = rng.integers(0, 60, n_entities)
    time = (begin[:, None] + rng.integers(0, 4, (n_entities, n_steps)).cumsum(axis=1)).ravel()
    event = rng.choice(np.array(["tick", "spike", "deploy"], dtype=object), ent.size)
    event[(time > np.quantile(time, 0.75)) & (rng.random(ent.size) < 0.3)] = "rollback"
    frame = pd.DataFrame({
        "entity": np.asarray(names, dtype=object)[ent],
        "time": time,
        "event": event,
        "status": rng.choice(LABELS, ent.size, p=[0.1, 0.15, 0.55, 0.2]),
    })
    # ties are real steps: each row has its id (else a tie that repeats a row exactly is a duplicate_row)
    frame["event_id"] = [f"e{k}" for k in range(len(frame))]
    frame = frame.iloc[np.argsort(time, kind="stable")].reset_index(drop=True)
    if datetime:
        frame["time"] = (pd.Timestamp("2024-01-01", tz="UTC")
                         + pd.to_timedelta(frame["time"], unit="min")).dt.strftime(
                             "%Y-%m-%dT%H:%M:%SZ")
    return frame


@pytest.fixture
def on_codes(monkeypatch):
    """Count the batches ``add_codes`` took (so no test passes on the general path)."""
    taken = []
    real = _updates.add_codes

    def spy(model, *args, **kwargs):
        done = real(model, *args, **kwargs)
        taken.append(done)
        return done

    monkeypatch.setattr(_updates, "add_codes", spy)
    return taken


def general(monkeypatch):
    """Decline the code path: every batch is counted by ``add_frames``."""
    monkeypatch.setattr(_updates, "add_codes", lambda model, *a, **k: False)


def assert_same_model(got, want):
    assert_same_counts(got, want)
    assert list(got.chain_.state_names_) == list(want.chain_.state_names_)
    assert got.event_names_ == want.event_names_
    assert got.n_transitions_ == want.n_transitions_
    assert got.time_kind_ == want.time_kind_
    pd.testing.assert_frame_equal(got.last_seen_, want.last_seen_)


def write(hist, path, kind):
    if kind == "csv":
        hist.to_csv(path, index=False)
    else:
        table = pa.Table.from_pandas(hist, preserve_index=False)
        pq.write_table(table, path, row_group_size=97)
    return path


# ----------------------------------------------------------------- streamed fit
@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("kind,datetime", [("csv", False), ("parquet", True), ("csv", True)])
def test_streamed_fit_equals_in_memory_fit(tmp_path, on_codes, spec, kind, datetime):
    hist = export(seed=len(str(spec)), datetime=datetime)
    path = write(hist, tmp_path / f"export.{kind}", kind)
    whole = FaultPredictor(states=STATES, history=spec).fit(path)
    assert "rollback" in whole.event_names_
    for chunksize in (53, 200):
        on_codes.clear()
        streamed = FaultPredictor(states=STATES, history=spec).fit(path, chunksize=chunksize)
        assert len(on_codes) >= len(hist) // chunksize and all(on_codes)
        assert_same_model(streamed, whole)
        assert streamed.read_report_.n_rows_kept == len(hist)
        assert streamed.read_report_.n_entities == hist["entity"].nunique()


def test_streamed_fit_report_equals_the_general_path(tmp_path, monkeypatch):
    hist = export(seed=3)
    hist.loc[7, "status"] = None  # a dropped row
    path = write(hist, tmp_path / "export.csv", "csv")
    fast = FaultPredictor(states=STATES, history={"order": 2}).fit(path, chunksize=61)
    general(monkeypatch)
    slow = FaultPredictor(states=STATES, history={"order": 2}).fit(path, chunksize=61)
    assert_same_model(fast, slow)
    assert fast.read_report_ == slow.read_report_
    assert fast.read_report_.dropped == {"missing_status": 1}


@pytest.mark.parametrize("spec", [None, {"order": 3, "failure_window": 2}])
@pytest.mark.parametrize("datetime,gap", [(False, 2), (True, "2min")])
def test_max_gap(tmp_path, on_codes, spec, datetime, gap):
    hist = export(seed=5, datetime=datetime)
    path = write(hist, tmp_path / "export.parquet", "parquet")
    whole = FaultPredictor(states=STATES, history=spec, max_gap=gap).fit(path)
    streamed = FaultPredictor(states=STATES, history=spec, max_gap=gap).fit(path, chunksize=40)
    assert on_codes and all(on_codes)
    assert_same_model(streamed, whole)


@pytest.mark.parametrize("spec", [None, {"order": 2, "entering_event": True}])
def test_canonical_frames_grouped_or_in_time_order(on_codes, spec):
    hist = export(seed=6)
    whole = FaultPredictor(states=STATES, history=spec).fit(hist)
    grouped = read_histories(hist)  # sorted by (entity, time): entities span batch ends
    in_time_order = hist.assign(_row=np.arange(len(hist)))  # batches sorted here
    for frame in (grouped, read_frame(hist)[0], in_time_order):  # read_frame's keeps _row
        on_codes.clear()
        streamed = FaultPredictor(states=STATES, history=spec).fit(frame, chunksize=45)
        assert len(on_codes) == (len(hist) - 1) // 45 and all(on_codes)
        assert_same_model(streamed, whole)


@pytest.mark.filterwarnings("ignore::markovfault.exceptions.DataWarning")
def test_ties_across_batches_keep_read_order(tmp_path, on_codes):
    """Equal times at a batch boundary are carried (not an error), in read order."""
    rows = [("a", 1, "x", "ok"), ("a", 2, "x", "down"), ("b", 1, "y", "ok"),
            ("a", 2, "y", "ok"), ("a", 2, "x", "error"), ("b", 1, "x", "slow"),
            ("a", 3, "y", "ok"), ("b", 2, "x", "down")]
    hist = pd.DataFrame(rows, columns=["entity", "time", "event", "status"])
    path = write(hist, tmp_path / "ties.csv", "csv")
    for spec in SPECS:
        whole = FaultPredictor(states=STATES, history=spec).fit(path)
        streamed = FaultPredictor(states=STATES, history=spec).fit(path, chunksize=2)
        assert all(on_codes)
        assert_same_model(streamed, whole)


@pytest.mark.parametrize("spec", [None, {"order": 2}])
def test_older_row_raises_as_the_general_path(tmp_path, monkeypatch, spec):
    hist = export(seed=7)
    late = hist.index[hist["entity"] == "é"][6]
    moved = pd.concat([hist.drop(index=late), hist.loc[[late]]], ignore_index=True)
    path = write(moved, tmp_path / "export.csv", "csv")
    fast = FaultPredictor(states=STATES, history=spec)
    with pytest.raises(HistoryError, match=r"entity 'é'.*time order.*sort the export") as e1:
        fast.fit(path, chunksize=100)
    general(monkeypatch)
    slow = FaultPredictor(states=STATES, history=spec)
    with pytest.raises(HistoryError) as e2:
        slow.fit(path, chunksize=100)
    assert str(e1.value) == str(e2.value)
    assert_same_model(fast, slow)  # what was counted before the batch that failed


# ------------------------------------------------------------------ partial_fit
@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("datetime", [False, True])
def test_partial_fit_in_time_order_equals_in_memory_fit(tmp_path, on_codes, spec, datetime):
    hist = export(seed=8, datetime=datetime)
    cut1, cut2 = int(len(hist) * 0.4), int(len(hist) * 0.8)  # "rollback" only after cut1
    whole = FaultPredictor(states=STATES, history=spec).fit(hist)
    path = write(hist.iloc[cut1:cut2], tmp_path / "middle.parquet", "parquet")
    model = FaultPredictor(states=STATES, history=spec).fit(hist.iloc[:cut1])
    model.partial_fit(path)  # a file (read as codes)
    model.partial_fit(hist.iloc[cut2:])  # a frame (read as text)
    assert on_codes == [True, True]
    assert_same_model(model, whole)
    # after a save and load (last_seen_ rebuilt from the file)
    model = FaultPredictor(states=STATES, history=spec).fit(hist.iloc[:cut2])
    model.save(tmp_path / "model.npz")
    loaded = load_model(tmp_path / "model.npz").partial_fit(hist.iloc[cut2:])
    assert_same_model(loaded, whole)


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("datetime", [False, True])
def test_partial_fit_with_late_rows_as_the_general_path(monkeypatch, caplog, on_codes, spec,
                                                         datetime):
    hist = export(seed=9, datetime=datetime)
    cut = len(hist) // 2
    first, second = hist.iloc[:cut], hist.iloc[cut:].copy()
    # late rows: entities whose new steps begin no later than their last step counted
    older = first.groupby("entity")["time"].max()
    for name in ("h10", "ä", "9"):
        second = pd.concat([second, first[first["entity"] == name].tail(2)], ignore_index=True)
    second = second.iloc[::-1].reset_index(drop=True)  # and in no particular order
    results = []
    for path in ("codes", "frames"):
        if path == "frames":
            general(monkeypatch)
        model = FaultPredictor(states=STATES, history=spec).fit(first)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="markovfault.predictor"):
            model.partial_fit(second)
        results.append((model, [r.getMessage() for r in caplog.records]))
    (fast, fast_log), (slow, slow_log) = results
    assert on_codes == [True]
    assert_same_model(fast, slow)
    assert fast.read_report_ == slow.read_report_
    assert fast_log == slow_log
    assert len(older) and "3 entities have steps no later" in fast_log[0]
    assert "['9', 'h10', 'ä']" in fast_log[0]


def test_partial_fit_new_entities_and_events_only(on_codes):
    hist = export(seed=10)
    cut = hist.index[hist["event"] == "rollback"][0]
    names = sorted(set(hist["entity"]))
    a = hist[hist["entity"].isin(names[::2]) & (hist.index < cut)]
    b = hist[~hist.index.isin(a.index)]
    whole = FaultPredictor(states=STATES, history={"order": 2}).fit(hist)
    model = FaultPredictor(states=STATES, history={"order": 2}).fit(a).partial_fit(b)
    assert on_codes == [True]
    assert_same_model(model, whole)


# --------------------------------------------------------------------- helpers
@pytest.mark.parametrize("seed", range(5))
def test_union_sorted(seed):
    rng = np.random.default_rng(seed)
    pool = np.array(sorted({f"{rng.choice(list('aZé9_'))}{k}" for k in
                            rng.integers(0, 300, 200)}), dtype=object)
    old = np.sort(rng.choice(pool, int(rng.integers(0, 80)), replace=False))
    new = np.sort(rng.choice(pool, int(rng.integers(0, 80)), replace=False))
    union, pos_old, pos_new = _union_sorted(old.astype(object), new.astype(object))
    want = sorted(set(old) | set(new))
    assert union.dtype == object and union.tolist() == want
    assert union[pos_old].tolist() == old.tolist()
    assert union[pos_new].tolist() == new.tolist()


@pytest.mark.parametrize("spec", [None, {"order": 3}])
def test_tails_round_trip(spec):
    model = FaultPredictor(states=STATES, history=spec).fit(export(seed=11))
    seen = model.last_seen_
    tails = _Tails.from_frame(seen, model.chain_.tail_length)
    pd.testing.assert_frame_equal(tails.to_frame(), seen)
    codes = pd.factorize(seen.index)[0]  # the entities shuffled, each one's steps in order
    shuffled = seen.iloc[np.argsort(np.random.default_rng(0).permutation(codes.max() + 1)[codes],
                                    kind="stable")]
    assert not shuffled.index.is_monotonic_increasing
    pd.testing.assert_frame_equal(_Tails.from_frame(shuffled, model.chain_.tail_length).to_frame(),
                                  seen)
    assert _Tails.from_frame(None, 1) is None
