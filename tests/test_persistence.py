"""Model files: round trip, refusal of damaged/tampered/newer files, and no code on load."""

import copy
import json
import os
import pickle
import zipfile

import numpy as np
import pandas as pd
import pytest

from markovfault import FaultPredictor, load_model, read_histories
from markovfault._version import __version__
from markovfault.exceptions import ModelFileError
from markovfault._modelfile import digest as _digest
from markovfault._modelfile import header_digest as _header_digest
from markovfault.persistence import FORMAT_NAME, FORMAT_VERSION, read_header
from markovfault.simulate import simulate_histories

# the [columns] table of data/orders.toml
COLUMNS = {"entity": "handler", "time": "timestamp", "event": "event_type", "status": "status",
           "event_id": "event_id", "metrics": ["latency_ms", "error_rate"]}
STATES = {
    "categorical": {"kind": "categorical", "failure": ["error", "timeout", "down"]},
    "thresholds": {"kind": "thresholds", "column": "latency_ms", "edges": [200, 2000],
                   "names": ["fast", "slow", "stuck"], "failure": ["stuck"]},
    "quantiles": {"kind": "quantiles", "columns": ["latency_ms", "error_rate"], "n_bins": 3,
                  "failure_top": "error_rate"},
    "clusters": {"kind": "clusters", "columns": ["latency_ms", "error_rate"], "n_clusters": 4,
                 "failure_by": "error_rate"},
}
HEADER = "header.json"


@pytest.fixture(scope="module")
def hist():
    return simulate_histories(10, 300, random_state=3)


@pytest.fixture(scope="module")
def model(hist):
    return FaultPredictor(states=STATES["categorical"], columns=COLUMNS, max_gap="30min").fit(hist)


@pytest.fixture
def saved(model, tmp_path):
    path = tmp_path / "model.npz"
    model.save(path)
    return path


def read_raw(path):
    with np.load(path, allow_pickle=False) as npz:
        header = json.loads(npz[HEADER].tobytes().decode("utf-8"))
        arrays = {k: npz[k] for k in npz.files if k != HEADER}
    return header, arrays


def write_raw(path, header, arrays, *, reseal=False):
    """Rewrite an archive with numpy. ``reseal`` recomputes every checksum, so that
    only the edit made by the caller differs from a file that save_model wrote."""
    if reseal:
        header = copy.deepcopy(header)
        header["arrays"] = {n: {"dtype": a.dtype.str, "shape": list(a.shape), "sha256": _digest(a)}
                            for n, a in arrays.items()}
        header["header_sha256"] = _header_digest(header)
    payload = np.frombuffer(json.dumps(header, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    with open(path, "wb") as fh:
        np.savez(fh, **{HEADER: payload}, **arrays)


# ---------------------------------------------------------------- round trip
@pytest.mark.filterwarnings("ignore::markovfault.exceptions.DataWarning")
@pytest.mark.parametrize("kind", list(STATES))
def test_round_trip(kind, hist, tmp_path):
    model = FaultPredictor(states=STATES[kind], columns=COLUMNS, alpha=0.5, beta=2.0).fit(hist)
    path = tmp_path / f"{kind}.npz"
    model.save(path)
    same = load_model(path)

    assert same.states_.kind == kind
    pd.testing.assert_frame_equal(same.predict(hist, horizon=5), model.predict(hist, horizon=5))
    scenario = ["payment_failed", "order_created", "payment_failed"]
    pd.testing.assert_frame_equal(same.predict(hist, horizon=3, scenario=scenario),
                                  model.predict(hist, horizon=3, scenario=scenario))
    np.testing.assert_array_equal(same.chain_.counts_, model.chain_.counts_)
    assert same.chain_.counts_.dtype == np.int64
    assert same.state_names_ == model.state_names_
    assert same.event_names_ == model.event_names_
    assert same.failure_states_ == model.failure_states_ and model.failure_states_
    assert (same.alpha, same.beta, same.max_gap) == (0.5, 2.0, None)
    assert same.time_kind_ == model.time_kind_ == "datetime"
    pd.testing.assert_frame_equal(same.last_seen_, model.last_seen_)
    # the extractor: same parameters, same fitted arrays, same codes on every row
    (p1, a1), (p2, a2) = model.states_.get_config(), same.states_.get_config()
    assert json.loads(json.dumps(p1)) == json.loads(json.dumps(p2))
    assert a1.keys() == a2.keys()
    for name in a1:
        np.testing.assert_array_equal(a2[name], a1[name], err_msg=name)
    frame = read_histories(hist, columns=COLUMNS)
    np.testing.assert_array_equal(same.states_.transform(frame), model.states_.transform(frame))


def test_round_trip_keeps_model_params(saved):
    same = load_model(saved)
    assert (same.alpha, same.beta, same.max_gap) == (1.0, 1.0, "30min")
    assert same.get_params()["columns"]["entity"] == "handler"


def test_loaded_model_partial_fits_like_the_original(hist, tmp_path):
    step = hist.groupby("handler").cumcount()
    old, new = hist[step < 200], hist[step >= 200]  # chronological batches
    never_saved = FaultPredictor(states=STATES["categorical"], columns=COLUMNS).fit(old)
    never_saved.save(tmp_path / "old.npz")
    loaded = load_model(tmp_path / "old.npz")

    loaded.partial_fit(new)
    never_saved.partial_fit(new)
    np.testing.assert_array_equal(loaded.chain_.counts_, never_saved.chain_.counts_)
    pd.testing.assert_frame_equal(loaded.last_seen_, never_saved.last_seen_)
    # and both equal one fit on everything: counts are sufficient statistics
    whole = FaultPredictor(states=STATES["categorical"], columns=COLUMNS).fit(hist)
    np.testing.assert_array_equal(loaded.chain_.counts_, whole.chain_.counts_)
    assert loaded.n_transitions_ == 10 * 299


# ------------------------------------------------------------- file contents
def test_file_is_plain_npz_with_json_header(saved, model):
    with np.load(saved, allow_pickle=False) as npz:  # no pickle needed to read any of it
        arrays = {k: npz[k] for k in npz.files}
    assert HEADER in arrays and "counts" in arrays
    assert all(a.dtype != object for a in arrays.values())
    header = json.loads(arrays.pop(HEADER).tobytes().decode("utf-8"))
    assert header["format"] == FORMAT_NAME == "markovfault-model"
    assert header["format_version"] == FORMAT_VERSION
    assert header["markovfault_version"] == __version__
    assert header["vocabulary"] == {"states": model.state_names_, "events": model.event_names_,
                                    "failure_states": model.failure_states_}
    assert header["model"] == {"alpha": 1.0, "beta": 1.0, "max_gap": "30min", "history": None,
                               "recent_strength": 500.0, "time_model": "semi_markov", "sojourn": "auto"}
    assert header["states"]["kind"] == "categorical"
    assert header["states"]["failure"] == ["error", "timeout", "down"]
    assert set(header["arrays"]) == set(arrays)
    assert read_header(saved) == header


def test_save_leaves_no_temporary_file(model, tmp_path):
    model.save(tmp_path / "model.npz")
    model.save(tmp_path / "model.npz")  # overwrite
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]


def test_failed_save_keeps_the_old_file(model, hist, tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    model.save(path)
    before = path.read_bytes()

    def half_written(fh, **arrays):
        fh.write(b"PK\x03\x04 half a file")
        raise OSError("disk full")

    monkeypatch.setattr("markovfault.persistence.np.savez_compressed", half_written)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]
    assert path.read_bytes() == before


# ------------------------------------------------------------ refusing files
def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load_model(tmp_path / "nope.npz")


def test_rewritten_but_unchanged_file_still_loads(saved, model, hist, tmp_path):
    # the control for the tampering tests below: rewriting with numpy alone is not an error
    header, arrays = read_raw(saved)
    write_raw(tmp_path / "same.npz", header, arrays)
    write_raw(tmp_path / "resealed.npz", header, arrays, reseal=True)
    for name in ("same.npz", "resealed.npz"):
        pd.testing.assert_frame_equal(load_model(tmp_path / name).predict(hist, horizon=3),
                                      model.predict(hist, horizon=3))


def test_truncated_file(saved, tmp_path):
    raw = saved.read_bytes()
    cuts = [1, 3, 4, 10, 100, len(raw) // 2, len(raw) - 22, len(raw) - 1]
    for cut in cuts:
        path = tmp_path / f"cut{cut}.npz"
        path.write_bytes(raw[:cut])
        with pytest.raises(ModelFileError, match="truncated or not a model file"):
            load_model(path)


def test_corrupted_bytes(saved, tmp_path):
    # a flipped byte inside the compressed data breaks zlib or zipfile; every
    # such error must still be a ModelFileError (zlib.error used to escape)
    raw = bytearray(saved.read_bytes())
    path = tmp_path / "flipped.npz"
    n_refused = 0
    for pos in range(30, len(raw), 7):
        b = bytearray(raw)
        b[pos] ^= 0x5A
        path.write_bytes(bytes(b))
        try:
            load_model(path)
        except ModelFileError:
            n_refused += 1
    assert n_refused > len(range(30, len(raw), 7)) // 2


def test_damaged_array_header_is_a_model_file_error(saved, tmp_path):
    # an array whose npy header text is cut inside a string: numpy's parser raises tokenize.TokenError,
    # which used to escape load_model
    import zipfile
    path = tmp_path / "damaged.npz"
    with zipfile.ZipFile(saved) as src, zipfile.ZipFile(path, "w") as dst:
        names = src.namelist()
        victim = next(n for n in names if n.startswith("last_seen"))
        for name in names:
            data = src.read(name)
            if name == victim:
                start = data.index(b"{")
                data = data[:start] + b"{'descr': '<i" + b" " * (data.index(b"}") - start - 12) + data[
                    data.index(b"}") + 1:]
            dst.writestr(name, data)
    with pytest.raises(ModelFileError, match="cannot be read"):
        load_model(path)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is empty .truncated.*not a model file"),
        (np.random.RandomState(0).bytes(4000), "not a model file"),
        (b"\x93NUMPY garbage", "not a model file"),
        (pickle.dumps({"a": 1}), "model.npz is a Python pickle, not a model file"),
        (b"handler,timestamp,status\nw1,1,ok\n", "model.npz is text or another format"),
    ],
    ids=["empty", "random-bytes", "bad-npy", "pickle", "csv"],
)
def test_not_a_model_file(tmp_path, content, message):
    path = tmp_path / "model.npz"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=message) as info:
        load_model(path)
    assert "pickle=" not in str(info.value)  # markovfault's message, not numpy's hint to enable pickle
    assert "FaultPredictor.save" in str(info.value)  # and what a model file is


def test_foreign_zip_and_foreign_npz(tmp_path):
    with zipfile.ZipFile(tmp_path / "a.npz", "w") as z:
        z.writestr("readme.txt", "hello")
    np.savez(tmp_path / "b.npz", weights=np.arange(3.0))
    for name in ("a.npz", "b.npz"):
        with pytest.raises(ModelFileError, match=r"not a markovfault model file \(no header.json\)"):
            load_model(tmp_path / name)


def _bump_count(arrays):
    counts = arrays["counts"].copy()
    counts.flat[np.argmax(counts)] += 1
    return {**arrays, "counts": counts}


@pytest.mark.parametrize(
    "tamper, message",
    [
        (_bump_count, "array 'counts' does not match its checksum"),
        (lambda a: {**a, "counts": a["counts"].astype(np.int32)}, "'counts' does not match"),
        (lambda a: {**a, "states/state_names": a["states/state_names"][::-1].copy()},
         "'states/state_names' does not match"),
        (lambda a: {k: v for k, v in a.items() if k != "last_seen/time"}, "do not match its header"),
        (lambda a: {**a, "extra": np.zeros(2)}, "do not match its header"),
    ],
    ids=["count+1", "counts-int32", "state-names", "array-removed", "array-added"],
)
def test_tampered_arrays(saved, tmp_path, tamper, message):
    header, arrays = read_raw(saved)
    write_raw(tmp_path / "bad.npz", header, tamper(arrays))  # the old header, unchanged
    with pytest.raises(ModelFileError, match=message + ".*tampered"):
        load_model(tmp_path / "bad.npz")


def _swap_events(v):
    v["events"][0], v["events"][1] = v["events"][1], v["events"][0]


@pytest.mark.parametrize(
    "edit",
    [
        lambda h: h["vocabulary"]["states"].__setitem__(2, "okay"),
        lambda h: _swap_events(h["vocabulary"]),
        lambda h: h["vocabulary"].__setitem__("failure_states", ["down"]),
        lambda h: h["model"].__setitem__("alpha", 50.0),
        lambda h: h["states"].__setitem__("failure", ["down"]),
    ],
    ids=["rename-state", "swap-events", "fewer-failures", "alpha", "states-table"],
)
def test_tampered_header(saved, tmp_path, edit):
    # Editing the header without its checksum used to load silently (a swapped
    # event vocabulary changes every what-if forecast).
    header, arrays = read_raw(saved)
    edit(header)
    write_raw(tmp_path / "bad.npz", header, arrays)
    with pytest.raises(ModelFileError, match="header does not match its checksum.*tampered"):
        load_model(tmp_path / "bad.npz")


def test_header_not_json_or_not_ours(saved, tmp_path):
    header, arrays = read_raw(saved)
    with open(tmp_path / "a.npz", "wb") as fh:
        np.savez(fh, **{HEADER: np.frombuffer(b"{not json", dtype=np.uint8)}, **arrays)
    with pytest.raises(ModelFileError, match="header is not valid JSON"):
        load_model(tmp_path / "a.npz")
    write_raw(tmp_path / "b.npz", {**header, "format": "someone-elses"}, arrays, reseal=True)
    with pytest.raises(ModelFileError, match="format field"):
        load_model(tmp_path / "b.npz")


def test_newer_format_is_refused(saved, tmp_path):
    header, arrays = read_raw(saved)
    header["format_version"] = FORMAT_VERSION + 1
    write_raw(tmp_path / "newer.npz", header, arrays, reseal=True)  # only the version differs
    with pytest.raises(ModelFileError, match="newer") as info:
        load_model(tmp_path / "newer.npz")
    assert "Upgrade" in str(info.value)
    assert f"format {FORMAT_VERSION + 1}" in str(info.value)


# ------------------------------------------------------------ no code on load
class _WritesMarker:
    """Unpickling this opens ``path`` for writing: a harmless, visible side effect."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("where", ["states/labels", HEADER])
def test_pickled_object_array_never_runs(saved, tmp_path, where):
    header, arrays = read_raw(saved)
    marker = tmp_path / "marker"
    bomb = np.empty(1, dtype=object)
    bomb[0] = _WritesMarker(marker)
    payload = np.frombuffer(json.dumps(header, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    members = {HEADER: payload, **arrays, where: bomb}
    path = tmp_path / "model.npz"
    with open(path, "wb") as fh:
        np.savez(fh, **members)  # allow_pickle defaults to True: the object array is pickled

    # control: the file is live; unpickling it does run code
    control = tmp_path / "control"
    bomb[0] = _WritesMarker(control)
    np.savez(tmp_path / "control.npz", x=bomb)
    with np.load(tmp_path / "control.npz", allow_pickle=True) as npz:
        npz["x"][0].close()  # unpickling returned the file that open() created
    assert control.exists()

    with pytest.raises(ModelFileError, match="Object arrays cannot be loaded"):
        load_model(path)
    with pytest.raises(ModelFileError):
        read_header(path)
    assert not marker.exists()


def test_plain_pickle_renamed_npz_never_runs(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "model.npz"
    path.write_bytes(pickle.dumps(_WritesMarker(marker)))
    with pytest.raises(ModelFileError, match="not a model file"):
        load_model(path)
    assert not marker.exists()


def test_corrupted_files_that_still_load_forecast_as_the_original(saved, model, tmp_path):
    # flip bytes all over the file: each damaged file is refused with a ModelFileError or, where the
    # damage misses everything read (zip metadata, padding), loads a model whose counts and forecasts
    # are the original's: a damaged file never loads as a different model
    raw = saved.read_bytes()
    what_if = ["payment_failed", "order_created", "payment_failed"]
    original = load_model(saved)
    want = model.predict(horizon=3)  # from the last counted steps the file stores
    want_table = model.failure_probabilities(3)
    want_what_if = model.failure_probabilities(3, scenario=what_if)
    path = tmp_path / "flipped.npz"
    loaded = refused = 0
    rng = np.random.default_rng(0)
    positions = np.unique(np.r_[np.arange(0, len(raw), max(1, len(raw) // 200)),
                                len(raw) - 1 - np.arange(100), rng.integers(0, len(raw), 60)])
    for k, pos in enumerate(positions):
        b = bytearray(raw)
        b[pos] ^= (0x01, 0x80, 0x5A)[k % 3]
        path.write_bytes(bytes(b))
        try:
            same = load_model(path)
        except ModelFileError:
            refused += 1
            continue
        loaded += 1
        np.testing.assert_array_equal(same.chain_.counts_, model.chain_.counts_)
        assert same.state_names_ == model.state_names_
        assert same.get_params() == original.get_params()  # (settings as a loaded file spells them)
        pd.testing.assert_frame_equal(same.predict(horizon=3), want)
        pd.testing.assert_frame_equal(same.failure_probabilities(3), want_table)
        pd.testing.assert_frame_equal(same.failure_probabilities(3, scenario=what_if), want_what_if)
    assert refused > 0 and loaded > 0 and loaded + refused == len(positions)
