"""Tests of markovfault.states: the state extractors."""

from __future__ import annotations

import json
import logging
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.cluster import KMeans
from sklearn.preprocessing import KBinsDiscretizer, StandardScaler

from markovfault.exceptions import (
    ConfigError,
    DataWarning,
    EmptyHistoryError,
    HistoryError,
    MetricTypeError,
    MissingColumnError,
    ModelFileError,
    NotFittedError,
    UnknownStatusError,
)
from markovfault.states import (
    STATE_KINDS,
    CategoricalStates,
    ClusterStates,
    QuantileStates,
    StateExtractor,
    ThresholdStates,
    extractor_from_config,
    make_state_extractor,
    parse_rule,
)


def roundtrip(ext: StateExtractor) -> StateExtractor:
    """Rebuild a fitted extractor through JSON (params) and plain arrays."""
    params, arrays = ext.get_config()
    params = json.loads(json.dumps(params))
    for a in arrays.values():
        assert a.dtype != object  # savez-able without pickle
    return extractor_from_config(params, {k: np.array(v) for k, v in arrays.items()})


@pytest.fixture
def metrics_frame() -> pd.DataFrame:
    rng = np.random.RandomState(42)
    n = 300
    return pd.DataFrame(
        {
            "entity": rng.choice(["a", "b"], n),
            "status": rng.choice(["healthy", "degraded", "down"], n),
            "latency_ms": rng.lognormal(5, 1, n),
            "error_rate": rng.beta(1, 5, n),
            "_row": np.arange(n, dtype=np.int64) + 1000,
        }
    )


# --------------------------------------------------------------------------
# rule parser
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, column, op, value",
    [
        ("status == 'down'", "status", "==", "down"),
        ('status != "ok"', "status", "!=", "ok"),
        ("error_rate >= 0.5", "error_rate", ">=", 0.5),
        ("latency_ms>5000", "latency_ms", ">", 5000.0),
        ("  x < -1.5e3 ", "x", "<", -1500.0),
        ("x <= .5", "x", "<=", 0.5),
        ("`latency-ms` > 1", "latency-ms", ">", 1.0),
        ("status == ''", "status", "==", ""),
    ],
)
def test_parse_rule_accepts(text, column, op, value):
    rule = parse_rule(text)
    assert (rule.column, rule.op, rule.value, rule.text) == (column, op, value, text)


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('x') == 1",
        "status = 'down'",
        "status == down",
        "error_rate >= 0.5 or 1",
        "error_rate >= 0.5; import os",
        "1 == error_rate",
        "error_rate",
        "error_rate => 0.5",
        "status == 'a' 'b'",
        "x == 0x10",
        "status > 'down'",  # strings only take == and !=
        "",
    ],
)
def test_parse_rule_rejects(text):
    with pytest.raises(ConfigError, match="accepted form") as info:
        parse_rule(text)
    assert repr(text) in str(info.value)


def test_rule_is_never_evaluated(monkeypatch):
    # if anything evaluated the rule, this would call the patched function
    called = []
    monkeypatch.setattr("os.system", lambda *a: called.append(a) or 0)
    ext = CategoricalStates(failure_when=["__import__('os').system('x') == 1"])
    with pytest.raises(ConfigError, match="accepted form"):
        ext.fit(pd.DataFrame({"status": ["ok"]}))
    assert called == []


def test_parse_rule_rejects_non_string():
    with pytest.raises(ConfigError, match="not a string"):
        parse_rule(5)


# --------------------------------------------------------------------------
# categorical
# --------------------------------------------------------------------------


def test_categorical_hand_counted():
    frame = pd.DataFrame({"status": ["healthy", "degraded", "down", "healthy", "down"]})
    ext = CategoricalStates(
        mapping={"healthy": "ok", "degraded": "slow"}, failure=["down"]
    ).fit(frame)
    # states: sorted {ok, slow, down} = down, ok, slow
    assert ext.state_names_ == ["down", "ok", "slow"]
    assert ext.n_states_ == 3
    codes = ext.transform(frame)
    assert codes.dtype == np.int64
    np.testing.assert_array_equal(codes, [1, 2, 0, 1, 0])
    np.testing.assert_array_equal(ext.is_failure_, [True, False, False])
    assert ext.failure_states_ == ["down"]
    assert ext.required_columns == ["status"]
    # a mapped state name given as a raw label is covered (identity)
    np.testing.assert_array_equal(ext.transform(pd.DataFrame({"status": ["ok", "slow"]})), [1, 2])


def test_categorical_identity_and_fixed_states():
    frame = pd.DataFrame({"status": ["b", "a", "b"]})
    assert CategoricalStates().fit(frame).state_names_ == ["a", "b"]
    ext = CategoricalStates(states=["b", "a", "c"]).fit(frame)
    assert ext.state_names_ == ["b", "a", "c"]
    np.testing.assert_array_equal(ext.transform(frame), [0, 1, 0])


def test_categorical_mapping_targets_are_states_even_unseen():
    frame = pd.DataFrame({"status": ["up"]})
    ext = CategoricalStates(mapping={"up": "ok", "crashed": "down"}).fit(frame)
    assert ext.state_names_ == ["down", "ok"]
    np.testing.assert_array_equal(ext.transform(pd.DataFrame({"status": ["crashed"]})), [0])


def test_categorical_numeric_status_read_as_text():
    ext = CategoricalStates(mapping={"200": "ok", "500": "error"}).fit(
        pd.DataFrame({"status": [200, 500, 200]})
    )
    assert ext.state_names_ == ["error", "ok"]
    np.testing.assert_array_equal(ext.transform(pd.DataFrame({"status": [500]})), [0])


def test_categorical_unknown_label_error_names_column_row_labels_fix():
    ext = CategoricalStates().fit(pd.DataFrame({"status": ["ok", "down"]}))
    new = pd.DataFrame(
        {"status": ["ok", "weird", "ok", "odd", "weird"], "_row": [10, 11, 12, 13, 14]}
    )
    with pytest.raises(UnknownStatusError) as info:
        ext.transform(new)
    msg = str(info.value)
    assert "'status'" in msg
    assert "row 12 of the input (1-based, in read order)" in msg  # _row 11, 0-based
    assert "'weird'" in msg and "'odd'" in msg
    assert "[states].mapping" in msg and "unknown" in msg
    assert isinstance(info.value, ValueError)


def test_categorical_unknown_label_row_falls_back_to_index():
    ext = CategoricalStates().fit(pd.DataFrame({"status": ["ok"]}))
    new = pd.DataFrame({"status": ["ok", "x"]}, index=[7, 8])
    with pytest.raises(UnknownStatusError, match=r"row 2 of the frame \(index label 8\)"):
        ext.transform(new)


def test_categorical_unknown_labels_shown_up_to_five():
    ext = CategoricalStates().fit(pd.DataFrame({"status": ["ok"]}))
    new = pd.DataFrame({"status": [f"x{i}" for i in range(8)]})
    with pytest.raises(UnknownStatusError) as info:
        ext.transform(new)
    msg = str(info.value)
    assert "'x4'" in msg and "'x5'" not in msg and "..." in msg


def test_categorical_unknown_mapped_to_state_with_warning(caplog):
    frame = pd.DataFrame({"status": ["ok", "down"]})
    ext = CategoricalStates(unknown="other", failure=["down"]).fit(frame)
    assert ext.state_names_ == ["down", "ok", "other"]
    new = pd.DataFrame({"status": ["ok", "weird", "odd", "down"]})
    with caplog.at_level(logging.WARNING, logger="markovfault.states"):
        codes = ext.transform(new)
    np.testing.assert_array_equal(codes, [1, 2, 2, 0])
    record = [r for r in caplog.records if r.name == "markovfault.states"][-1]
    assert record.levelno == logging.WARNING
    assert "2 rows" in record.getMessage() and "'other'" in record.getMessage()


def test_categorical_fixed_states_check_labels_at_fit():
    frame = pd.DataFrame({"status": ["ok", "weird"]})
    with pytest.raises(UnknownStatusError, match="'weird'"):
        CategoricalStates(states=["ok", "down"]).fit(frame)
    ext = CategoricalStates(states=["ok", "down"], unknown="down").fit(frame)
    np.testing.assert_array_equal(ext.transform(frame), [0, 1])


@pytest.mark.parametrize(
    "params, match",
    [
        ({"states": ["ok"], "mapping": {"up": "fine"}}, "mapping\\['up'\\] = 'fine'"),
        ({"states": ["ok"], "unknown": "other"}, "unknown = 'other'"),
        ({"states": ["ok", "ok"]}, "distinct"),
        ({"states": "ok"}, "list of strings"),
        ({"mapping": ["ok"]}, "mapping"),
        ({"mapping": {"up": 1}}, "mapping\\['up'\\]"),
        ({"unknown": 3}, "unknown"),
        ({"failure": ["down", "dead"]}, "failure state 'dead'"),
        ({"failure": [1]}, "failure"),
        ({"failure_state": 1, "failure_when": ["status == 'x'"]}, "failure_state"),
    ],
)
def test_categorical_config_errors(params, match):
    with pytest.raises(ConfigError, match=match):
        CategoricalStates(**params).fit(pd.DataFrame({"status": ["ok", "down"]}))


def test_failure_name_error_lists_states():
    with pytest.raises(ConfigError) as info:
        ThresholdStates(column="x", edges=[1], names=["lo", "hi"], failure=["timeout"]).fit(
            pd.DataFrame({"x": [0.0]})
        )
    assert "'timeout'" in str(info.value) and "'lo', 'hi'" in str(info.value)


def test_nan_in_status_names_column_and_row():
    ext = CategoricalStates().fit(pd.DataFrame({"status": ["ok"]}))
    frame = pd.DataFrame({"status": ["ok", None, "ok"], "_row": [5, 6, 7]})
    with pytest.raises(HistoryError, match="'status'.*row 7 of the input"):
        ext.transform(frame)


# --------------------------------------------------------------------------
# failure rules
# --------------------------------------------------------------------------


def test_rules_override_mapping_and_use_first_failure_state():
    frame = pd.DataFrame(
        {
            "status": ["ok", "ok", "slow", "down", "ok"],
            "error_rate": [0.0, 0.6, 0.5, 0.0, 0.49],
        }
    )
    ext = CategoricalStates(failure=["down"], failure_when=["error_rate >= 0.5"]).fit(frame)
    assert ext.state_names_ == ["down", "ok", "slow"]
    # rows 1 and 2 have error_rate >= 0.5 -> "down" (code 0) whatever their status
    np.testing.assert_array_equal(ext.transform(frame), [1, 0, 0, 0, 1])
    assert ext.required_columns == ["status", "error_rate"]


def test_rules_append_failure_state_when_failure_empty():
    frame = pd.DataFrame({"latency_ms": [100.0, 6000.0, 300.0], "status": ["a", "b", "down"]})
    ext = ThresholdStates(
        column="latency_ms",
        edges=[200],
        names=["fast", "slow"],
        failure_when=["latency_ms > 5000", "status == 'down'"],
    ).fit(frame)
    assert ext.state_names_ == ["fast", "slow", "failure"]
    assert ext.failure_states_ == ["failure"]
    np.testing.assert_array_equal(ext.transform(frame), [0, 2, 2])


def test_rules_with_explicit_failure_state_appended():
    frame = pd.DataFrame({"status": ["ok", "ok"], "error_rate": [0.0, 0.9]})
    ext = CategoricalStates(
        failure_when=['error_rate > 0.5'], failure_state="erroring"
    ).fit(frame)
    assert ext.state_names_ == ["ok", "erroring"]
    np.testing.assert_array_equal(ext.is_failure_, [False, True])
    np.testing.assert_array_equal(ext.transform(frame), [0, 1])


def test_rules_cover_unknown_labels():
    ext = CategoricalStates(failure=["down"], failure_when=["status == 'crashed'"]).fit(
        pd.DataFrame({"status": ["ok", "down"]})
    )
    # 'crashed' is not a known label, but the rule decides its state
    np.testing.assert_array_equal(ext.transform(pd.DataFrame({"status": ["crashed"]})), [0])


def test_rules_on_string_column_with_not_equal():
    frame = pd.DataFrame({"x": [1.0, 2.0], "status": ["up", "down"]})
    ext = ThresholdStates(column="x", edges=[5], failure_when=["status != 'up'"]).fit(frame)
    np.testing.assert_array_equal(ext.transform(frame), [0, 2])


def test_rule_missing_column_names_column():
    ext = CategoricalStates(failure_when=["error_rate >= 0.5"])
    with pytest.raises(MissingColumnError, match="'error_rate'") as info:
        ext.fit(pd.DataFrame({"status": ["ok"]}))
    assert "error_rate >= 0.5" in str(info.value)
    ext.fit(pd.DataFrame({"status": ["ok"], "error_rate": [0.1]}))
    with pytest.raises(MissingColumnError, match="'error_rate'"):
        ext.transform(pd.DataFrame({"status": ["ok"]}))


def test_rule_type_mismatch():
    ext = CategoricalStates(failure_when=["error_rate == 'high'"])
    with pytest.raises(MetricTypeError, match="'error_rate'"):
        ext.fit(pd.DataFrame({"status": ["ok"], "error_rate": [0.1]}))
    ext = CategoricalStates(failure_when=["status > 1"])
    with pytest.raises(MetricTypeError, match="'status'"):
        ext.fit(pd.DataFrame({"status": ["ok"]}))


def test_nan_in_rule_column():
    ext = CategoricalStates(failure_when=["error_rate >= 0.5"])
    frame = pd.DataFrame({"status": ["ok", "ok"], "error_rate": [0.1, np.nan]})
    with pytest.raises(HistoryError, match=r"'error_rate'.*row 2 of the frame \(index label 1\)"):
        ext.fit(frame)


# --------------------------------------------------------------------------
# thresholds
# --------------------------------------------------------------------------


def test_threshold_boundaries_exactly_at_edges():
    frame = pd.DataFrame(
        {"latency_ms": [0.0, 199.999, 200.0, 200.001, 1999.0, 2000.0, 1e9, -5.0, np.inf]}
    )
    ext = ThresholdStates(
        column="latency_ms", edges=[200, 2000], names=["ok", "slow", "timeout"], failure=["timeout"]
    ).fit(frame)
    # x < 200 -> ok; 200 <= x < 2000 -> slow; x >= 2000 -> timeout
    np.testing.assert_array_equal(ext.transform(frame), [0, 0, 1, 1, 1, 2, 2, 0, 2])
    assert ext.failure_states_ == ["timeout"]
    assert ext.required_columns == ["latency_ms"]


def test_threshold_default_names():
    ext = ThresholdStates(column="x", edges=[1, 2, 3]).fit(pd.DataFrame({"x": [0.0]}))
    assert ext.state_names_ == ["bin0", "bin1", "bin2", "bin3"]


def test_threshold_integer_column():
    frame = pd.DataFrame({"x": pd.array([1, 5, 10], dtype="Int64")})
    ext = ThresholdStates(column="x", edges=[5]).fit(frame)
    np.testing.assert_array_equal(ext.transform(frame), [0, 1, 1])


@pytest.mark.parametrize(
    "params, match",
    [
        ({"edges": [200, 2000], "names": ["a", "b"]}, "len\\(edges\\) \\+ 1"),
        ({"edges": [2000, 200]}, "strictly increasing"),
        ({"edges": [200, 200]}, "strictly increasing"),
        ({"edges": []}, "at least one"),
        ({"edges": [float("nan")]}, "finite"),
        ({"edges": "200"}, "list of numbers"),
        ({"edges": [1, "2"]}, "list of numbers"),
        ({"edges": [1], "names": ["a", "a"]}, "distinct"),
        ({"edges": [1], "column": ""}, "column"),
    ],
)
def test_threshold_config_errors(params, match):
    params = {"column": "x", **params}
    with pytest.raises(ConfigError, match=match):
        ThresholdStates(**params).fit(pd.DataFrame({"x": [0.0]}))


def test_threshold_errors_on_data():
    ext = ThresholdStates(column="x", edges=[1])
    with pytest.raises(MissingColumnError, match="'x'"):
        ext.fit(pd.DataFrame({"y": [0.0]}))
    with pytest.raises(MetricTypeError, match="'x'"):
        ext.fit(pd.DataFrame({"x": ["a"]}))
    with pytest.raises(HistoryError, match="'x'.*row 1002 of the input"):
        ext.fit(pd.DataFrame({"x": [0.0, np.nan], "_row": [1000, 1001]}))
    with pytest.raises(EmptyHistoryError):
        ext.fit(pd.DataFrame({"x": pd.Series([], dtype=float)}))
    with pytest.raises(TypeError, match="DataFrame"):
        ext.fit(np.zeros((3, 1)))


# --------------------------------------------------------------------------
# quantiles
# --------------------------------------------------------------------------


def test_quantile_hand_counted():
    frame = pd.DataFrame(
        {"a": [1.0, 2, 3, 4, 5, 6, 7, 8], "b": [0.0, 0, 0, 0, 1, 1, 1, 1]}
    )
    ext = QuantileStates(columns=["a", "b"], n_bins=2, failure_top="b").fit(frame)
    assert ext.state_names_ == ["a:q0|b:q0", "a:q0|b:q1", "a:q1|b:q0", "a:q1|b:q1"]
    # a: median 4.5 -> bins 0,0,0,0,1,1,1,1; b: median 0.5 -> same; code = 2*a + b
    np.testing.assert_array_equal(ext.transform(frame), [0, 0, 0, 0, 3, 3, 3, 3])
    assert ext.failure_states_ == ["a:q0|b:q1", "a:q1|b:q1"]
    # mixed radix: an unseen combination
    new = pd.DataFrame({"a": [100.0], "b": [-1.0]})
    np.testing.assert_array_equal(ext.transform(new), [2])


def test_quantile_equals_kbinsdiscretizer(metrics_frame):
    columns = ["latency_ms", "error_rate"]
    ext = QuantileStates(columns=columns, n_bins=4).fit(metrics_frame)
    kbd = KBinsDiscretizer(n_bins=4, encode="ordinal", strategy="quantile", subsample=None)
    train = metrics_frame[columns].to_numpy()
    kbd.fit(train)
    rng = np.random.RandomState(42)
    new = np.column_stack(
        [
            # includes values below and above the training range and exact edges
            np.r_[rng.lognormal(5, 1.5, 200), -1.0, 1e12, kbd.bin_edges_[0]],
            np.r_[rng.uniform(-0.2, 1.2, 200), 0.5, -3.0, kbd.bin_edges_[1]],
        ]
    )
    for data in (train, new):
        expected = kbd.transform(data).astype(np.int64)
        codes = ext.transform(pd.DataFrame(data, columns=columns))
        np.testing.assert_array_equal(codes, expected[:, 0] * 4 + expected[:, 1])
    assert ext.n_states_ == 16


def test_quantile_edges_are_labelled_by_column_and_equal_kbinsdiscretizer(metrics_frame):
    ext = QuantileStates(columns=["latency_ms", "error_rate"], n_bins=3).fit(metrics_frame)
    assert list(ext.bin_edges_) == ["latency_ms", "error_rate"] == list(ext.n_bins_)
    kbd = KBinsDiscretizer(n_bins=3, encode="ordinal", strategy="quantile", subsample=None)
    kbd.fit(metrics_frame[["latency_ms", "error_rate"]].to_numpy())
    for j, column in enumerate(["latency_ms", "error_rate"]):
        np.testing.assert_array_equal(ext.bin_edges_[column], kbd.bin_edges_[j])
        assert ext.n_bins_[column] == kbd.n_bins_[j]
    # the labels survive a model file's arrays (npz: flat float arrays, no pickle)
    params, arrays = ext.get_config()
    assert all(isinstance(a, np.ndarray) and a.dtype != object for a in arrays.values())
    twin = extractor_from_config(params, arrays)
    assert list(twin.bin_edges_) == ["latency_ms", "error_rate"]
    for column in twin.bin_edges_:
        np.testing.assert_array_equal(twin.bin_edges_[column], ext.bin_edges_[column])
    assert twin.n_bins_ == ext.n_bins_


def test_quantile_constant_column_warns_and_gets_one_bin():
    frame = pd.DataFrame({"a": [1.0, 2, 3, 4], "c": [5.0, 5, 5, 5]})
    with pytest.warns(DataWarning, match="'c'"):
        ext = QuantileStates(columns=["a", "c"], n_bins=2).fit(frame)
    assert ext.state_names_ == ["a:q0|c:q0", "a:q1|c:q0"]
    np.testing.assert_array_equal(ext.transform(frame), [0, 0, 1, 1])
    assert ext.n_bins_ == {"a": 2, "c": 1}
    np.testing.assert_array_equal(ext.bin_edges_["a"], [1.0, 2.5, 4.0])


def test_quantile_explicit_failure_names_checked_after_fit():
    frame = pd.DataFrame({"a": [1.0, 2, 3, 4]})
    ext = QuantileStates(columns=["a"], n_bins=2, failure=["a:q1"]).fit(frame)
    assert ext.failure_states_ == ["a:q1"]
    with pytest.raises(ConfigError, match="'a:q5'"):
        QuantileStates(columns=["a"], n_bins=2, failure=["a:q5"]).fit(frame)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"columns": []}, "at least one"),
        ({"columns": ["a", "a"]}, "twice"),
        ({"columns": ["a"], "n_bins": 1}, "n_bins == 1"),
        ({"columns": ["a"], "n_bins": 2.5}, "n_bins"),
        ({"columns": ["a"], "n_bins": True}, "n_bins"),
        ({"columns": ["a"], "failure_top": "b"}, "failure_top"),
    ],
)
def test_quantile_config_errors(params, match):
    with pytest.raises(ConfigError, match=match):
        QuantileStates(**params).fit(pd.DataFrame({"a": [1.0, 2.0]}))


# --------------------------------------------------------------------------
# clusters
# --------------------------------------------------------------------------


def blobs(rng: np.random.RandomState) -> pd.DataFrame:
    """Three well-separated blobs; the one with high error_rate is the failure."""
    centers = {"fast": (50.0, 0.01), "slow": (800.0, 0.05), "broken": (300.0, 0.9)}
    parts = []
    for (lat, err) in centers.values():
        parts.append(
            pd.DataFrame(
                {
                    "latency_ms": rng.normal(lat, 10.0, 40),
                    "error_rate": rng.normal(err, 0.01, 40),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def test_cluster_failure_is_highest_failure_by_centre():
    frame = blobs(np.random.RandomState(42))
    ext = ClusterStates(
        columns=["latency_ms", "error_rate"], n_clusters=3, failure_by="error_rate"
    ).fit(frame)
    assert ext.state_names_ == ["c0", "c1", "c2"]
    # ordered by error_rate centre: fast (0.01), slow (0.05), broken (0.9)
    np.testing.assert_allclose(ext.cluster_centers_["error_rate"], [0.01, 0.05, 0.9], atol=0.01)
    np.testing.assert_allclose(ext.cluster_centers_["latency_ms"], [50, 800, 300], atol=10)
    assert ext.failure_states_ == ["c2"]
    codes = ext.transform(frame)
    np.testing.assert_array_equal(codes, np.repeat([0, 1, 2], 40))
    # default failure_by (first column, latency): the slow blob is the failure
    ext2 = ClusterStates(columns=["latency_ms", "error_rate"], n_clusters=3).fit(frame)
    np.testing.assert_allclose(ext2.cluster_centers_["latency_ms"], [50, 300, 800], atol=10)
    assert ext2.failure_states_ == ["c2"]
    np.testing.assert_array_equal(ext2.transform(frame), np.repeat([0, 2, 1], 40))
    # two failure clusters; explicit names override failure_by
    ext3 = clone(ext).set_params(n_failure_clusters=2).fit(frame)
    assert ext3.failure_states_ == ["c1", "c2"]
    ext4 = clone(ext).set_params(failure=["c0"]).fit(frame)
    assert ext4.failure_states_ == ["c0"]
    ext5 = clone(ext).set_params(n_failure_clusters=0).fit(frame)
    assert ext5.failure_states_ == []


def test_cluster_centres_labelled_by_state_and_column_and_round_trip():
    frame = blobs(np.random.RandomState(7))
    ext = ClusterStates(columns=["latency_ms", "error_rate"], n_clusters=3,
                        failure_by="error_rate").fit(frame)
    for table in (ext.centers_, ext.cluster_centers_):
        assert list(table.index) == ext.state_names_ == ["c0", "c1", "c2"]
        assert list(table.columns) == ["latency_ms", "error_rate"]
    # the scaler's mean and scale by column: pandas' own mean and population std of the frame
    pd.testing.assert_series_equal(ext.mean_, frame.mean(), check_names=False)
    pd.testing.assert_series_equal(ext.scale_, frame.std(ddof=0), check_names=False)
    pd.testing.assert_frame_equal(ext.cluster_centers_, ext.centers_ * ext.scale_ + ext.mean_)
    # every row's cluster is the one whose mean in original units it came from
    means = frame.groupby(np.repeat(["fast", "slow", "broken"], 40)).mean()
    np.testing.assert_allclose(ext.cluster_centers_.to_numpy(),
                               means.loc[["fast", "slow", "broken"]].to_numpy(), rtol=1e-9)
    params, arrays = ext.get_config()
    assert all(a.dtype != object for a in arrays.values())
    twin = extractor_from_config(params, arrays)
    pd.testing.assert_frame_equal(twin.cluster_centers_, ext.cluster_centers_)
    pd.testing.assert_series_equal(twin.mean_, ext.mean_)
    np.testing.assert_array_equal(twin.transform(frame), ext.transform(frame))


def test_cluster_equals_kmeans_predict(metrics_frame):
    columns = ["latency_ms", "error_rate"]
    ext = ClusterStates(columns=columns, n_clusters=4, random_state=3).fit(metrics_frame)
    train = metrics_frame[columns].to_numpy()
    scaler = StandardScaler().fit(train)
    km = KMeans(n_clusters=4, n_init=10, random_state=3).fit(scaler.transform(train))
    # our codes are KMeans labels renamed by ascending latency centre
    order = np.argsort(scaler.inverse_transform(km.cluster_centers_)[:, 0], kind="stable")
    rank = np.empty(4, dtype=np.int64)
    rank[order] = np.arange(4)
    rng = np.random.RandomState(42)
    new = np.column_stack([rng.lognormal(5, 2, 500), rng.uniform(-1, 2, 500)])
    for data in (train, new):
        expected = rank[km.predict(scaler.transform(data))]
        np.testing.assert_array_equal(ext.transform(pd.DataFrame(data, columns=columns)), expected)
    np.testing.assert_allclose(ext.mean_, scaler.mean_)
    np.testing.assert_allclose(ext.scale_, scaler.scale_)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"n_clusters": 0}, "n_clusters == 0"),
        ({"n_clusters": 2, "n_failure_clusters": 3}, "n_failure_clusters == 3"),
        ({"failure_by": "zzz"}, "failure_by = 'zzz'"),
        ({"columns": "a"}, None),  # a single column name is accepted
    ],
)
def test_cluster_config(params, match):
    frame = pd.DataFrame({"a": [1.0, 2, 3, 4, 5], "b": [0.0, 1, 0, 1, 0]})
    params = {"columns": ["a", "b"], **params}
    if match is None:
        ClusterStates(**params).set_params(n_clusters=2).fit(frame)
        return
    with pytest.raises(ConfigError, match=match):
        ClusterStates(**params).fit(frame)


def test_cluster_too_few_rows():
    with pytest.raises(HistoryError, match="at least n_clusters == 4"):
        ClusterStates(columns=["a"]).fit(pd.DataFrame({"a": [1.0, 2.0]}))


# --------------------------------------------------------------------------
# config round trip, factory, sklearn API
# --------------------------------------------------------------------------


def fitted_extractors(frame: pd.DataFrame) -> list[StateExtractor]:
    return [
        CategoricalStates(
            mapping={"healthy": "ok"},
            failure=["down"],
            failure_when=["error_rate >= 0.5"],
            unknown="down",
        ).fit(frame),
        ThresholdStates(
            column="latency_ms",
            edges=[100, 400],
            names=["ok", "slow", "timeout"],
            failure=["timeout"],
            failure_when=["error_rate > 0.6"],
            failure_state="erroring",
        ).fit(frame),
        QuantileStates(columns=["latency_ms", "error_rate"], n_bins=3, failure_top="error_rate").fit(
            frame
        ),
        ClusterStates(
            columns=["latency_ms", "error_rate"], n_clusters=3, failure_by="error_rate",
            failure_when=["status == 'down'"],
        ).fit(frame),
    ]


def test_get_config_roundtrip_transforms_identically(metrics_frame):
    rng = np.random.RandomState(42)
    new = metrics_frame.sample(frac=1.0, random_state=rng).reset_index(drop=True)
    new["latency_ms"] *= rng.uniform(0.1, 10, len(new))
    new.loc[:4, "status"] = "never-seen"
    for ext in fitted_extractors(metrics_frame):
        rebuilt = roundtrip(ext)
        assert type(rebuilt) is type(ext)
        assert {"kind": rebuilt.kind, **rebuilt.get_params()} == json.loads(
            json.dumps(ext.get_config()[0])
        )
        assert rebuilt.state_names_ == ext.state_names_
        np.testing.assert_array_equal(rebuilt.is_failure_, ext.is_failure_)
        assert rebuilt.failure_states_ == ext.failure_states_
        for data in (metrics_frame, new):
            np.testing.assert_array_equal(rebuilt.transform(data), ext.transform(data))


def test_get_config_params_shape():
    ext = ThresholdStates(column="x", edges=(1, 2), failure=("bin2",)).fit(
        pd.DataFrame({"x": [0.0]})
    )
    params, arrays = ext.get_config()
    assert params == {
        "kind": "thresholds",
        "column": "x",
        "edges": [1, 2],
        "names": None,
        "failure": ["bin2"],
        "failure_when": [],
        "failure_state": None,
        "end": [],
        "end_after": None,
    }
    assert arrays["state_names"].tolist() == ["bin0", "bin1", "bin2"]
    assert arrays["is_failure"].tolist() == [False, False, True]


def test_rebuilt_extractor_needs_no_sklearn_objects(metrics_frame):
    for ext in fitted_extractors(metrics_frame):
        rebuilt = roundtrip(ext)
        for value in vars(rebuilt).values():
            assert not hasattr(value, "get_params"), value


def test_get_config_rejects_unserialisable_param():
    frame = pd.DataFrame({"a": [1.0, 2, 3, 4]})
    ext = ClusterStates(columns=["a"], n_clusters=2, random_state=np.random.RandomState(0)).fit(frame)
    with pytest.raises(ConfigError, match="RandomState"):
        ext.get_config()


def test_extractor_from_toml_like_table():
    table = {
        "kind": "categorical",
        "failure": ["error", "timeout", "down"],
        "failure_when": ["status == 'down'", "error_rate >= 0.5"],
        "failure_state": "down",
        "mapping": {"healthy": "ok", "degraded": "slow"},
    }
    ext = extractor_from_config(table)
    assert isinstance(ext, CategoricalStates)
    assert ext.required_columns == ["status", "error_rate"]
    frame = pd.DataFrame(
        {"status": ["healthy", "degraded", "error", "timeout", "down"], "error_rate": [0.0] * 5}
    )
    ext.fit(frame)
    assert ext.state_names_ == ["down", "error", "ok", "slow", "timeout"]
    assert ext.failure_states_ == ["down", "error", "timeout"]
    assert make_state_extractor(table).get_params() == ext.get_params()
    # kind defaults to categorical
    assert isinstance(extractor_from_config({}), CategoricalStates)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"kind": "hmm"}, "kind = 'hmm'.*'categorical', 'thresholds', 'quantiles', 'clusters'"),
        ({"kind": 3}, "kind = 3"),
        ({"kind": "thresholds", "column": "x", "edges": [1], "bins": 3}, "unknown key 'bins'.*names"),
        ({"kind": "categorical", "column": "x"}, "unknown key 'column'.*mapping"),
        ({"kind": "thresholds", "column": "x"}, "needs the key\\(s\\) 'edges'"),
        ({"kind": "clusters"}, "'columns'"),
    ],
)
def test_extractor_from_config_errors(params, match):
    with pytest.raises(ConfigError, match=match):
        extractor_from_config(params)


def test_extractor_from_config_rejects_non_table():
    with pytest.raises(ConfigError, match="table"):
        extractor_from_config(["kind"])


def test_extractor_from_config_missing_or_bad_arrays(metrics_frame):
    ext = QuantileStates(columns=["latency_ms"], n_bins=3).fit(metrics_frame)
    params, arrays = ext.get_config()
    del arrays["bin_edges"]
    with pytest.raises(ModelFileError, match="'bin_edges'"):
        extractor_from_config(params, arrays)
    params, arrays = ext.get_config()
    arrays["n_bins"] = np.array([3, 3])
    with pytest.raises(ModelFileError, match="do not fit"):
        extractor_from_config(params, arrays)
    params, arrays = ext.get_config()
    arrays["is_failure"] = np.zeros(2, dtype=bool)
    with pytest.raises(ModelFileError, match="is_failure"):
        extractor_from_config(params, arrays)


def test_kinds_registry():
    assert set(STATE_KINDS) == {"categorical", "thresholds", "quantiles", "clusters"}


@pytest.mark.parametrize(
    "ext",
    [
        CategoricalStates(mapping={"a": "b"}, failure=["b"]),
        ThresholdStates(column="x", edges=[1.0], names=["lo", "hi"]),
        QuantileStates(columns=["x"], n_bins=3, failure_top="x"),
        ClusterStates(columns=["x"], n_clusters=2, failure_by="x"),
    ],
)
def test_sklearn_clone_and_get_params(ext):
    params = ext.get_params()
    twin = clone(ext)
    assert twin is not ext and twin.get_params() == params
    assert type(ext).__name__ in repr(ext)
    for key, value in params.items():
        if value not in (None, (), 4, 1, 0, "raise"):
            assert f"{key}=" in repr(ext)
    with pytest.raises(NotFittedError, match="not fitted"):
        ext.transform(pd.DataFrame({"x": [1.0], "status": ["a"]}))
    with pytest.raises(NotFittedError):
        ext.get_config()
    # the markovfault error is also sklearn-compatible (ValueError, AttributeError)
    assert issubclass(NotFittedError, ValueError) and issubclass(NotFittedError, AttributeError)


def test_fit_transform_and_empty_transform():
    frame = pd.DataFrame({"x": [0.5, 1.5]})
    ext = ThresholdStates(column="x", edges=[1.0])
    np.testing.assert_array_equal(ext.fit_transform(frame), [0, 1])
    out = ext.transform(frame.iloc[:0])
    assert out.shape == (0,) and out.dtype == np.int64


def test_sklearn_check_is_fitted_agrees():
    from sklearn.utils.validation import check_is_fitted

    ext = ThresholdStates(column="x", edges=[1.0])
    with pytest.raises(Exception):
        check_is_fitted(ext)
    check_is_fitted(ext.fit(pd.DataFrame({"x": [0.0]})))


def test_codes_within_range(metrics_frame):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for ext in fitted_extractors(metrics_frame):
            codes = ext.transform(metrics_frame)
            assert codes.dtype == np.int64 and codes.shape == (len(metrics_frame),)
            assert codes.min() >= 0 and codes.max() < ext.n_states_
            assert ext.is_failure_.shape == (ext.n_states_,) and ext.is_failure_.dtype == bool
