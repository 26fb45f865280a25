"""Dask back end: fits and forecasts on a real LocalCluster equal the in-memory ones exactly."""

import numpy as np
import pandas as pd
import pytest

distributed = pytest.importorskip("distributed")
dd = pytest.importorskip("dask.dataframe")

import markovfault as mf  # noqa: E402
from markovfault.cli import main  # noqa: E402
from markovfault.simulate import simulate_histories  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning",
                                        "ignore::ResourceWarning")

COLUMNS = {"entity": "handler", "time": "timestamp", "event": "event_type",
           "status": "status", "event_id": "event_id"}
CATEGORICAL = {"kind": "categorical", "failure": ["error", "timeout", "down"]}


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A partitioned Parquet dataset: rows shuffled, so every entity spans every file;
    with repeated event ids (at-least-once delivery) to de-duplicate across files."""
    hist = simulate_histories(n_handlers=12, n_steps=150, duplicate_rate=0.02, random_state=3)
    hist = hist.iloc[np.random.default_rng(0).permutation(len(hist))].reset_index(drop=True)
    root = tmp_path_factory.mktemp("histories")
    for k, rows in enumerate(np.array_split(np.arange(len(hist)), 4)):
        hist.iloc[rows].to_parquet(root / f"part-{k}.parquet", index=False)
    return root


def _pair(dataset, **params):
    memory = mf.FaultPredictor(columns=params.pop("columns", COLUMNS), **params)
    ddf = dd.read_parquet(str(dataset))
    assert ddf.npartitions == 4
    in_memory = mf.FaultPredictor(**memory.get_params()).fit(pd.read_parquet(dataset))
    on_dask = memory.fit(ddf)
    return in_memory, on_dask, ddf


@pytest.mark.parametrize("params", [
    {"states": CATEGORICAL},
    {"states": CATEGORICAL, "history": {"order": 2, "failure_window": 3, "entering_event": True}},
    {"states": {"kind": "quantiles", "columns": ["latency_ms"], "n_bins": 4,
                "failure_top": "latency_ms"},
     "columns": dict(COLUMNS, metrics=["latency_ms"])},
], ids=["plain", "history", "quantiles"])
def test_fit_and_predict_equal_in_memory(client, dataset, params):
    in_memory, on_dask, ddf = _pair(dataset, **params)
    np.testing.assert_array_equal(on_dask.chain_.counts_, in_memory.chain_.counts_)
    assert on_dask.state_names_ == in_memory.state_names_
    assert on_dask.event_names_ == in_memory.event_names_
    pd.testing.assert_frame_equal(on_dask.last_seen_, in_memory.last_seen_)
    assert on_dask.read_report_.n_rows_kept == in_memory.read_report_.n_rows_kept
    assert on_dask.read_report_.dropped == in_memory.read_report_.dropped
    expected = in_memory.predict(pd.read_parquet(dataset), horizon=4)
    pd.testing.assert_frame_equal(on_dask.predict(ddf, horizon=4), expected)
    # an in-memory model forecasting from dask histories, and a what-if
    scenario = [in_memory.event_names_[0]] * 3
    pd.testing.assert_frame_equal(in_memory.predict(ddf, horizon=3, scenario=scenario),
                                  in_memory.predict(pd.read_parquet(dataset), horizon=3,
                                                    scenario=scenario))


def test_partial_fit_and_backtest_collect(client, dataset):
    ddf = dd.read_parquet(str(dataset))
    frame = pd.read_parquet(dataset)
    model = mf.FaultPredictor(columns=COLUMNS, states=CATEGORICAL)
    a = mf.FaultPredictor(**model.get_params()).fit(ddf).partial_fit(ddf)
    b = mf.FaultPredictor(**model.get_params()).fit(frame).partial_fit(frame)
    np.testing.assert_array_equal(a.chain_.counts_, b.chain_.counts_)
    r1 = mf.backtest(ddf, model, horizon=3, cutoffs=2, baselines=["climatology"])
    r2 = mf.backtest(frame, model, horizon=3, cutoffs=2, baselines=["climatology"])
    pd.testing.assert_frame_equal(r1.metrics, r2.metrics)


def test_cli_scheduler(client, dataset, tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text(
        "[columns]\n" + "".join(f'{k} = "{v}"\n' for k, v in COLUMNS.items())
        + '[states]\nkind = "categorical"\nfailure = ["error", "timeout", "down"]\n'
        + f'[compute]\nscheduler = "{client.scheduler.address}"\n')
    address = client.scheduler.address
    model_path, out = tmp_path / "m.npz", tmp_path / "f.parquet"
    assert main(["train", str(dataset), "--config", str(config), "--out", str(model_path),
                 "--scheduler", address]) == 0
    assert main(["predict", "--model", str(model_path), str(dataset), "--horizon", "3",
                 "--out", str(out), "--scheduler", address]) == 0
    expected = mf.FaultPredictor(columns=COLUMNS, states=CATEGORICAL).fit(
        pd.read_parquet(dataset))
    np.testing.assert_array_equal(mf.load_model(model_path).chain_.counts_,
                                  expected.chain_.counts_)
    got = pd.read_parquet(out)
    want = expected.predict(pd.read_parquet(dataset), horizon=3)
    np.testing.assert_array_equal(got["p_fail"].to_numpy(), want["p_fail"].to_numpy())
    assert got["entity"].astype(str).tolist() == want["entity"].astype(str).tolist()
    # [compute] scheduler alone also routes train through the cluster
    assert main(["train", str(dataset), "--config", str(config), "--out", str(model_path)]) == 0
    assert "trained on" in capsys.readouterr().out


def test_core_does_not_import_dask():
    import subprocess
    import sys

    code = ("import sys, markovfault, markovfault.cli, markovfault.predictor; "
            "import pandas as pd; "
            "m = markovfault.FaultPredictor(states={'kind': 'categorical', 'failure': ['down']})"
            ".fit(pd.DataFrame({'entity': ['a'] * 3, 'time': [1, 2, 3], "
            "'status': ['ok', 'down', 'ok']})); "
            "print(any(k == 'dask' or k.startswith('dask.') for k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
