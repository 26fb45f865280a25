"""Dask back end: fits and forecasts on a real LocalCluster equal the in-memory ones exactly."""

import numpy as np
import pandas as pd
import pytest

distributed = pytest.importorskip("distributed")
dd = pytest.importorskip("dask.dataframe")

from conftest import assert_same_counts  # noqa: E402

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
    {"states": CATEGORICAL, "history": {"failure_window": 3, "gap_bins": 4}},
], ids=["plain", "history", "quantiles", "gap"])
def test_fit_and_predict_equal_in_memory(client, dataset, params):
    in_memory, on_dask, ddf = _pair(dataset, **params)
    assert_same_counts(on_dask, in_memory)
    assert on_dask.chain_.spec == in_memory.chain_.spec  # gap edges from the gaps of every partition
    if getattr(in_memory.chain_.counts_, "exo", None) is not None:  # the next gaps' counts M[a, x']
        np.testing.assert_array_equal(on_dask.chain_.counts_.exo, in_memory.chain_.counts_.exo)
    assert on_dask.state_names_ == in_memory.state_names_
    assert on_dask.event_names_ == in_memory.event_names_
    pd.testing.assert_frame_equal(on_dask.last_seen_, in_memory.last_seen_)
    assert on_dask.read_report_.n_rows_kept == in_memory.read_report_.n_rows_kept
    assert on_dask.read_report_.dropped == in_memory.read_report_.dropped
    expected = in_memory.predict(pd.read_parquet(dataset), horizon=4)
    pd.testing.assert_frame_equal(on_dask.predict(ddf, horizon=4), expected)
    pd.testing.assert_frame_equal(on_dask.predict(None, within=["5min", "1h"]),
                                  in_memory.predict(None, within=["5min", "1h"]), rtol=1e-6)
    # an in-memory model forecasting from dask histories, and a what-if
    scenario = [in_memory.event_names_[0]] * 3
    pd.testing.assert_frame_equal(in_memory.predict(ddf, horizon=3, scenario=scenario),
                                  in_memory.predict(pd.read_parquet(dataset), horizon=3,
                                                    scenario=scenario))


HISTORY = {"order": 2, "failure_window": 3, "entering_event": True}


@pytest.fixture(scope="module")
def batches(dataset, tmp_path_factory):
    """Two batches for partial_fit: A before a cutoff without two handlers; B after it, with
    those two (new entities), a new event type, and a few steps of one handler older than
    its last step in A (they start a new run). B is written over 3 files, rows shuffled."""
    hist = pd.read_parquet(dataset)
    cut = hist["timestamp"].quantile(0.6)
    early = hist["timestamp"] < cut
    new = hist["handler"].isin(["orders-worker-01", "orders-worker-02"])
    a = hist[early & ~new]
    late = hist[early & (hist["handler"] == "orders-worker-03")]
    late = late.sort_values("timestamp").iloc[-5:-2]
    b = pd.concat([hist[~early], hist[early & new], late])
    b.loc[b.index[::13], "event_type"] = "order_cancelled"
    b = b.sample(frac=1, random_state=2).reset_index(drop=True)
    root = tmp_path_factory.mktemp("batch_b")
    for k, rows in enumerate(np.array_split(np.arange(len(b)), 3)):
        b.iloc[rows].to_parquet(root / f"part-{k}.parquet", index=False)
    return a.reset_index(drop=True), root


@pytest.mark.parametrize("history", [None, HISTORY], ids=["plain", "history"])
def test_partial_fit_equals_in_memory(client, batches, history, caplog):
    import copy

    a, root = batches
    ddf = dd.read_parquet(str(root))
    assert ddf.npartitions == 3
    fitted = mf.FaultPredictor(columns=COLUMNS, states=CATEGORICAL, history=history).fit(a)
    with caplog.at_level("WARNING", logger="markovfault"):
        in_memory = copy.deepcopy(fitted).partial_fit(pd.read_parquet(root))
        memory_log = [r.getMessage() for r in caplog.records if "no later than" in r.getMessage()]
        caplog.clear()
        on_dask = copy.deepcopy(fitted).partial_fit(ddf)
        dask_log = [r.getMessage() for r in caplog.records if "no later than" in r.getMessage()]
    assert "order_cancelled" in in_memory.event_names_
    assert "order_cancelled" not in fitted.event_names_
    assert len(memory_log) == 1 and "orders-worker-03" in memory_log[0]
    assert dask_log == memory_log  # the steps older than seen start a new run, as in memory
    assert_same_counts(on_dask, in_memory)
    assert on_dask.event_names_ == in_memory.event_names_
    assert on_dask.state_names_ == in_memory.state_names_
    pd.testing.assert_frame_equal(on_dask.last_seen_, in_memory.last_seen_)
    assert on_dask.read_report_.n_rows_kept == in_memory.read_report_.n_rows_kept
    assert on_dask.read_report_.dropped == in_memory.read_report_.dropped
    pd.testing.assert_frame_equal(on_dask.predict(None, horizon=4),
                                  in_memory.predict(None, horizon=4))
    # and fit(dask A) then partial_fit(dask B) too
    both = mf.FaultPredictor(**fitted.get_params()).fit(
        dd.from_pandas(a, npartitions=3, sort=False)).partial_fit(ddf)
    assert_same_counts(both, in_memory)
    pd.testing.assert_frame_equal(both.last_seen_, in_memory.last_seen_)


@pytest.mark.parametrize("history", [None, HISTORY], ids=["plain", "history"])
def test_predict_recent_equals_in_memory(client, dataset, history):
    frame = pd.read_parquet(dataset)
    ddf = dd.read_parquet(str(dataset))
    model = mf.FaultPredictor(columns=COLUMNS, states=CATEGORICAL, history=history).fit(frame)
    for window in ("20min", "2h"):  # trailing durations
        want = model.predict(frame, horizon=4, event_mix="recent", recent_window=window)
        assert not want["p_fail"].equals(model.predict(frame, horizon=4)["p_fail"])
        pd.testing.assert_frame_equal(
            model.predict(ddf, horizon=4, event_mix="recent", recent_window=window), want)
    # partitions of more than 1000 steps, and the whole trailing window in one of them: the
    # handlers of the larger bucket (partition, after the shuffle) are moved a day later
    from markovfault._dask import _bucket_of

    big = simulate_histories(n_handlers=8, n_steps=400, random_state=4, with_metrics=False)
    bucket = _bucket_of(big["handler"].to_numpy(dtype=object), 2)
    late = bucket == np.argmax(np.bincount(bucket, minlength=2))
    assert 1000 < late.sum() < len(big) - 400
    big.loc[late, "timestamp"] += pd.Timedelta("1D")
    big_ddf = dd.from_pandas(big.sample(frac=1, random_state=0), npartitions=2, sort=False)
    want = model.predict(big, horizon=3, event_mix="recent", recent_window="30min")
    pd.testing.assert_frame_equal(
        model.predict(big_ddf, horizon=3, event_mix="recent", recent_window="30min"), want)


@pytest.mark.parametrize("mix,kw,match", [
    ({"no_such_event": 1.0}, {}, r"event_mix names unknown events \['no_such_event'\]"),
    ({"order_created": -1.0}, {}, "event_mix shares must be finite, >= 0 and not all zero"),
    ("recent", {}, "event_mix='recent' needs recent_window"),
    ("sideways", {}, "event_mix = 'sideways'; use 'long_run', 'recent'"),
], ids=["unknown_event", "negative_share", "recent_without_window", "unknown_kind"])
def test_a_bad_event_mix_is_the_same_error_in_predict_backtest_and_on_dask(client, dataset, mix, kw,
                                                                            match):
    """One resolver (markovfault._eventmix) words every event-mix error, whoever asks."""
    frame = pd.read_parquet(dataset)
    ddf = dd.read_parquet(str(dataset))
    model = mf.FaultPredictor(columns=COLUMNS, states=CATEGORICAL).fit(frame)
    calls = {
        "predict": lambda: model.predict(frame, horizon=3, event_mix=mix, **kw),
        "predict on dask": lambda: model.predict(ddf, horizon=3, event_mix=mix, **kw),
        "backtest": lambda: mf.backtest(frame, model, horizon=3, cutoffs=2, baselines=[],
                                        event_mix=mix, progress=False, **kw),
        "backtest on dask": lambda: mf.backtest(ddf, model, horizon=3, cutoffs=2, baselines=[],
                                                event_mix=mix, progress=False, **kw),
    }
    for where, call in calls.items():
        with pytest.raises(mf.exceptions.ConfigError, match=match):
            call()


@pytest.mark.parametrize("case", [
    dict(history=None, horizon=3, cutoffs=3, event_mix=["long_run", "recent"],
         recent_window="20min", gradient_boosting=True),
    dict(history=HISTORY, horizon=4, cutoffs=2, window="sliding", window_size="40min",
         origins="every_step", small_rounds=True),
    dict(history=None, horizon=2, cutoffs=["2026-01-01T00:50:00Z", "2026-01-01T01:40:00Z"],
         event_mix={"order_created": 1.0}, columns=dict(COLUMNS, metrics=["latency_ms"]),
         states={"kind": "quantiles", "columns": ["latency_ms"], "n_bins": 4,
                 "failure_top": "latency_ms"}),
    dict(history={"failure_window": 2, "gap_bins": 4}, horizon=3, cutoffs=2, origins="every_step"),
], ids=["cutoff_origins_recent_gb", "history_sliding_every_step", "given_cutoffs_quantiles",
        "gap_every_step"])
def test_backtest_equals_in_memory(client, dataset, monkeypatch, case):
    from markovfault import _dask
    from markovfault.backtest._baselines import GradientBoostingBaseline

    case = dict(case)
    model = mf.FaultPredictor(columns=case.pop("columns", COLUMNS),
                              states=case.pop("states", CATEGORICAL), history=case.pop("history"))
    baselines = ["climatology", "state_frequency", "no_events"]
    if case.pop("gradient_boosting", False):
        baselines.append(GradientBoostingBaseline(max_iter=5))
    if case.pop("small_rounds", False):  # the exact quantile search, narrowed over rounds
        monkeypatch.setattr(_dask, "_HIST_BINS", 4)
        monkeypatch.setattr(_dask, "_FETCH_VALUES", 20)
    frame = pd.read_parquet(dataset)
    want = mf.backtest(frame, model, baselines=baselines, progress=False, **case)
    got = mf.backtest(dd.read_parquet(str(dataset)), model, baselines=baselines,
                      progress=False, **case)
    pd.testing.assert_frame_equal(got.metrics, want.metrics)
    pd.testing.assert_frame_equal(got.predictions, want.predictions)
    pd.testing.assert_frame_equal(got.folds, want.folds)
    assert got.params == want.params
    assert len(want.predictions) > 0 and want.metrics["n_pos"].sum() > 0
    if "recent" in case.get("event_mix", []):  # the recent windows are not empty
        p = want.predictions
        assert (p.loc[p["model"] == "markov", "p"].to_numpy()
                != p.loc[p["model"] == "markov_recent", "p"].to_numpy()).any()


AUTO = dict(alpha="auto", beta="auto", recent_strength="auto")


def test_chosen_priors_equal_in_memory(client, dataset, batches):
    """Priors chosen from the data ("auto"): the counts and the arrival bins of the recent mix add up
    over partitions, so fit, partial_fit and every backtest fold choose what memory chooses."""
    import copy

    in_memory, on_dask, ddf = _pair(dataset, states=CATEGORICAL, **AUTO)
    pd.testing.assert_frame_equal(on_dask.priors_, in_memory.priors_)
    np.testing.assert_array_equal(on_dask.recent_bins_.counts, in_memory.recent_bins_.counts)
    a, root = batches
    fitted = mf.FaultPredictor(columns=COLUMNS, states=CATEGORICAL, **AUTO).fit(a)
    memory = copy.deepcopy(fitted).partial_fit(pd.read_parquet(root))
    dask_ = copy.deepcopy(fitted).partial_fit(dd.read_parquet(str(root)))
    pd.testing.assert_frame_equal(dask_.priors_, memory.priors_)
    assert not np.isclose(memory.priors_["value"], fitted.priors_["value"]).all()
    model = mf.FaultPredictor(columns=COLUMNS, states=CATEGORICAL, **AUTO)
    kw = dict(horizon=3, cutoffs=2, baselines=["no_events"], event_mix=["long_run", "recent"],
              recent_window="20min", progress=False)
    want = mf.backtest(pd.read_parquet(dataset), model, **kw)
    got = mf.backtest(dd.read_parquet(str(dataset)), model, **kw)
    pd.testing.assert_frame_equal(got.predictions, want.predictions)


def test_exact_order_statistics_over_partitions(client, dataset, monkeypatch):
    """The histogram rounds find every rank's time exactly (ties and extremes too)."""
    from markovfault import _dask
    from markovfault._timecodec import time_int
    from markovfault.predictor._settings import column_map_of

    import dask

    monkeypatch.setattr(_dask, "_HIST_BINS", 3)
    monkeypatch.setattr(_dask, "_FETCH_VALUES", 5)
    ddf = dd.read_parquet(str(dataset))
    parts = _dask._canonical_parts(ddf, column_map_of(COLUMNS))
    times = dask.persist(*[dask.delayed(_dask._sorted_times)(p) for p in parts])
    frame = mf.read_histories(pd.read_parquet(dataset), columns=COLUMNS)
    every = np.sort(time_int(frame))
    ranks = np.unique(np.r_[0, 1, 7, len(every) // 3, len(every) // 2, len(every) - 2,
                            len(every) - 1])
    got = _dask._kth_times(times, ranks, every[0], every[-1], len(every))
    np.testing.assert_array_equal(got, every[ranks])


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
    assert_same_counts(mf.load_model(model_path), expected)
    got = pd.read_parquet(out)
    want = expected.predict(pd.read_parquet(dataset), horizon=3)
    np.testing.assert_array_equal(got["p_fail"].to_numpy(), want["p_fail"].to_numpy())
    assert got["entity"].astype(str).tolist() == want["entity"].astype(str).tolist()
    # [compute] scheduler alone also routes train through the cluster
    assert main(["train", str(dataset), "--config", str(config), "--out", str(model_path)]) == 0
    assert "trained on" in capsys.readouterr().out


JOB = """
[columns]
entity = "handler"
time = "timestamp"
event = "event_type"
status = "status"
event_id = "event_id"

[states]
kind = "categorical"
states = ["ok", "slow", "error", "timeout", "down"]
failure = ["error", "timeout", "down"]

[job]
input = "in"
output = "out"
horizons = [1, 3]
threshold = 0.2
"""


def test_job_with_compute_scheduler_equals_in_process(client, tmp_path):
    """`markovfault forecast` with [compute] scheduler reads and counts the new files on the
    cluster; its partitions, model and watermark equal those of the in-process job."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    from markovfault.job import load_job_config, run_job

    hist = simulate_histories(n_handlers=10, n_steps=150, random_state=7, duplicate_rate=0.02)
    hour = hist["timestamp"].dt.floor("h").dt.hour
    exports = tmp_path / "exports"
    exports.mkdir()
    files = []
    for h in (0, 1, 2):  # every handler in every file: entities span the partitions
        part = hist[hour == h].sample(frac=1, random_state=h)
        files.append(exports / f"orders-{h}.{'parquet' if h == 1 else 'csv'}")
        part.to_parquet(files[-1], index=False) if h == 1 else part.to_csv(files[-1], index=False)
    jobs = {}
    compute = f'[compute]\nscheduler = "{client.scheduler.address}"\n'
    for name, extra in (("here", ""), ("cluster", compute)):
        (tmp_path / name / "in").mkdir(parents=True)
        (tmp_path / name / "job.toml").write_text(JOB + extra)
        jobs[name] = tmp_path / name
    cli = [sys.executable, "-m", "markovfault.cli", "forecast", "--config",
           str(jobs["cluster"] / "job.toml")]
    # the first run trains on two files (two partitions), the second adds the third and a
    # file that cannot be parsed (skipped where it was read, reported: exit 65)
    for hours, as_of in (((0, 1), "2026-01-01T02:00:00Z"), ((2,), "2026-01-01T03:00:00Z")):
        for d in jobs.values():
            for h in hours:
                shutil.copy2(files[h], d / "in")
            if hours == (2,):
                (d / "in" / "orders-bad.csv").write_text("handler,status\nx,ok\n")
        code = 0 if hours[0] == 0 else 65
        assert run_job(load_job_config(jobs["here"] / "job.toml"), as_of=as_of).exit_code == code
        proc = subprocess.run(cli + ["--as-of", as_of], capture_output=True, text=True,
                              env=dict(os.environ), timeout=180)
        assert proc.returncode == code, proc.stderr
        log = [json.loads(line) for line in proc.stderr.splitlines() if line.strip()]
        by_event = {rec.get("event"): rec for rec in log}
        assert by_event["cluster"]["scheduler"] == client.scheduler.address
        assert by_event["cluster"]["workers"] == 2
        assert ("model_trained" in by_event) == (hours[0] == 0)
        assert sum(rec.get("event") == "file_read" for rec in log) == len(hours)
        assert ("file_skipped" in by_event) == (code == 65)
    here, there = jobs["here"] / "out", jobs["cluster"] / "out"
    runs = sorted(p.name for p in (here / "runs").iterdir())
    assert runs == sorted(p.name for p in (there / "runs").iterdir()) and len(runs) == 2
    for run in runs:
        for name in ("forecast.parquet", "forecast.csv"):
            assert (here / "runs" / run / name).read_bytes() == \
                (there / "runs" / run / name).read_bytes()
    a, b = mf.load_model(here / "model.npz"), mf.load_model(there / "model.npz")
    assert_same_counts(a, b)
    pd.testing.assert_frame_equal(a.last_seen_, b.last_seen_)
    marks = []
    for out in (here, there):
        wm = json.loads((out / "watermark.json").read_text())
        for run in wm["runs"]:
            run.pop("started_at"), run.pop("finished_at")
        wm.pop("input")
        marks.append(wm)
    assert marks[0] == marks[1]


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


def test_backtest_with_end_states_equals_in_memory(client, tmp_path):
    """End statuses and ends by silence (end_after, judged against the data end of every
    partition) give the same backtest on a cluster as in memory; the dask fit refuses
    end_after, which needs every history at once."""
    hist = simulate_histories(n_handlers=16, n_steps=120, random_state=4, finish_rate=0.02,
                              start_spread=20, with_metrics=False)
    hist = hist.iloc[np.random.default_rng(1).permutation(len(hist))].reset_index(drop=True)
    for k, rows in enumerate(np.array_split(np.arange(len(hist)), 3)):
        hist.iloc[rows].to_parquet(tmp_path / f"part-{k}.parquet", index=False)
    states = {**CATEGORICAL, "states": ["ok", "slow", "error", "timeout", "down", "finished"],
              "end": ["finished"], "end_after": "10min"}
    model = mf.FaultPredictor(columns=COLUMNS, states=states, history={"order": 2})
    frame = pd.read_parquet(tmp_path)
    kw = dict(horizon=4, cutoffs=3, origins="every_step", baselines=["climatology"],
              progress=False, n_boot=20)
    want = mf.backtest(frame, model, **kw)
    got = mf.backtest(dd.read_parquet(str(tmp_path)), model, **kw)
    assert (frame["status"] == "finished").sum() >= 3
    pd.testing.assert_frame_equal(got.metrics, want.metrics)
    pd.testing.assert_frame_equal(got.predictions, want.predictions)
    pd.testing.assert_frame_equal(got.intervals, want.intervals)
    with pytest.raises(mf.exceptions.ConfigError, match="end_after"):
        model.fit(dd.read_parquet(str(tmp_path)))


def test_missing_metric_values_are_counted_over_every_partition(client, tmp_path):
    """Rows without a number in a listed metric column, spread over the partitions: the Dask read reports
    the same count per column as the in-memory read (the partitions' counts summed)."""
    hist = simulate_histories(n_handlers=6, n_steps=60, random_state=5)
    holes = np.random.default_rng(1).choice(len(hist), 17, replace=False)  # 17, in several partitions
    hist.loc[hist.index[holes], "latency_ms"] = np.nan
    for k, rows in enumerate(np.array_split(np.arange(len(hist)), 3)):
        hist.iloc[rows].to_parquet(tmp_path / f"part-{k}.parquet", index=False)
    params = {"states": {"kind": "quantiles", "columns": ["latency_ms"], "n_bins": 3,
                         "failure_top": "latency_ms"}, "columns": dict(COLUMNS, metrics=["latency_ms"])}
    in_memory = mf.FaultPredictor(**params).fit(pd.read_parquet(tmp_path))
    on_dask = mf.FaultPredictor(**params).fit(dd.read_parquet(str(tmp_path)))
    assert in_memory.read_report_.missing_metrics == {"latency_ms": 17}
    assert on_dask.read_report_.missing_metrics == in_memory.read_report_.missing_metrics
