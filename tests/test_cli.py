"""The command line, run in-process through markovfault.cli.main (one real process at the end)."""

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from markovfault import load_model, read_histories
from markovfault.cli import main
from markovfault.config import load_config

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "orders_sample.csv.gz"
CONFIG = ROOT / "data" / "orders.toml"
COLUMNS = load_config(CONFIG)["columns"]
FORECAST_COLUMNS = ["entity", "as_of", "state", "horizon", "p_fail"]


def run(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse exits (64 for usage errors) instead of returning
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """Simulated histories (10 handlers x 300 steps) and a model trained on them, via the CLI."""
    d = tmp_path_factory.mktemp("small")
    assert main(["simulate", "--out", str(d / "hist.csv"), "--handlers", "10", "--steps", "300",
                 "--seed", "5"]) == 0
    assert main(["train", str(d / "hist.csv"), "--config", str(CONFIG),
                 "--out", str(d / "model.npz")]) == 0
    return d / "hist.csv", d / "model.npz"


@pytest.fixture(scope="module")
def sample_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("sample") / "model.npz"
    assert main(["train", str(SAMPLE), "--config", str(CONFIG), "--out", str(path)]) == 0
    return path


# ------------------------------------------------------------------ simulate
def test_simulate_writes_readable_reproducible_histories(capsys, tmp_path):
    code, out, err = run(capsys, "simulate", "--out", tmp_path / "a.csv", "--handlers", 5,
                         "--steps", 50, "--seed", 1)
    assert code == 0 and err == ""
    assert "wrote 250 rows of 5 handlers" in out
    frame = read_histories(tmp_path / "a.csv", columns=COLUMNS)
    assert len(frame) == 250 and frame["entity"].nunique() == 5
    assert (frame.groupby("entity").size() == 50).all()
    assert set(frame["status"]) <= {"ok", "slow", "error", "timeout", "down"}

    assert run(capsys, "simulate", "--out", tmp_path / "b.csv", "--handlers", 5, "--steps", 50,
               "--seed", 1)[0] == 0
    assert run(capsys, "simulate", "--out", tmp_path / "c.csv", "--handlers", 5, "--steps", 50,
               "--seed", 2)[0] == 0
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert (tmp_path / "a.csv").read_bytes() != (tmp_path / "c.csv").read_bytes()


# ------------------------------------------------------------ train, predict
def test_train_reports_and_writes_a_loadable_model(small, capsys, tmp_path):
    hist, _ = small
    code, out, err = run(capsys, "train", hist, "--config", CONFIG, "--out", tmp_path / "m.npz")
    assert code == 0 and err == ""
    assert "trained on 2990 transitions" in out  # 10 handlers x 299 transitions
    assert "3000 of 3000 rows kept" in out
    model = load_model(tmp_path / "m.npz")
    assert model.failure_states_ == ["down", "error", "timeout"]
    assert model.n_transitions_ == 2990


def check_forecast(forecast, hist, horizon):
    assert list(forecast.columns) == FORECAST_COLUMNS
    frame = read_histories(hist, columns=COLUMNS)
    last = frame.groupby("entity").tail(1).set_index("entity")
    assert sorted(forecast["entity"].unique()) == sorted(last.index)
    assert len(forecast) == len(last) * horizon
    assert not forecast.duplicated(["entity", "horizon"]).any()
    for entity, rows in forecast.groupby("entity"):
        assert rows["horizon"].tolist() == list(range(1, horizon + 1))
        # each entity's forecast starts from its last observed step
        assert (rows["state"] == last.loc[entity, "status"]).all()
        assert (pd.to_datetime(rows["as_of"], utc=True) == last.loc[entity, "time"]).all()
        # "fails within h" can only grow with h (tolerance for rounding only)
        assert (np.diff(rows["p_fail"].to_numpy()) >= -1e-12).all()
    assert forecast["p_fail"].between(0.0, 1.0).all()


def test_predict_to_csv_and_parquet(small, capsys, tmp_path):
    hist, model = small
    outs = {}
    for suffix in ("csv", "parquet"):
        path = tmp_path / f"forecast.{suffix}"
        code, out, err = run(capsys, "predict", "--model", model, hist, "--horizon", 3, "--out", path)
        assert code == 0 and err == ""
        assert f"wrote 30 forecasts to {path}" in out
        outs[suffix] = pd.read_csv(path) if suffix == "csv" else pd.read_parquet(path)
    csv, parquet = outs["csv"], outs["parquet"]
    check_forecast(parquet, hist, 3)
    check_forecast(csv, hist, 3)
    for frame in (csv, parquet):  # CSV has no types: compare as strings and UTC times
        frame[["entity", "state"]] = frame[["entity", "state"]].astype(str)
        frame["as_of"] = pd.to_datetime(frame["as_of"], utc=True).astype("datetime64[ns, UTC]")
    pd.testing.assert_frame_equal(csv, parquet, check_dtype=False, check_exact=False,
                                  rtol=1e-12, atol=0)
    # and both are what the Python API gives
    api = load_model(model).predict(hist, horizon=3)
    np.testing.assert_allclose(parquet["p_fail"], api["p_fail"], rtol=0, atol=0)


def test_predict_with_an_interval_writes_the_apis_bounds(small, capsys, tmp_path):
    hist, model = small
    path = tmp_path / "f.parquet"
    code, out, err = run(capsys, "predict", "--model", model, hist, "--horizon", 3, "--interval", 0.8,
                         "--seed", 5, "--out", path)
    assert code == 0 and err == ""
    got = pd.read_parquet(path)
    assert list(got.columns) == FORECAST_COLUMNS + ["p_fail_lo", "p_fail_hi", "n_support"]
    api = load_model(model).predict(hist, horizon=3, interval=0.8, random_state=5)
    np.testing.assert_array_equal(got["p_fail_lo"], api["p_fail_lo"])
    np.testing.assert_array_equal(got["n_support"], api["n_support"])
    for bad, flag in (("1.5", "--interval"), ("1", "--draws")):
        code, _, err = run(capsys, "predict", "--model", model, hist, "--interval",
                           bad if flag == "--interval" else 0.9, *(["--draws", bad] if flag == "--draws" else []))
        assert code == 64 and flag in err


def test_predict_within_writes_the_apis_time_horizons(small, capsys, tmp_path):
    hist, model = small
    path = tmp_path / "f.parquet"
    code, out, err = run(capsys, "predict", "--model", model, hist, "--within", "90s,10min", "--horizon", 2,
                         "--silence-fails", "3min", "--out", path)
    assert code == 0
    got = pd.read_parquet(path)
    api = load_model(model).predict(hist, horizon=2, within=["90s", "10min"], silence_fails="3min")
    assert list(got.columns) == list(api.columns)
    assert got["horizon"].astype(str).tolist() == api["horizon"].astype(str).tolist()
    np.testing.assert_array_equal(got["p_fail"], api["p_fail"])
    np.testing.assert_array_equal(got["silent"], api["silent"])
    for argv, flag in ((("--within", "5"), "bare number"), (("--at", "2026-01-01"), "--at")):
        code, _, err = run(capsys, "predict", "--model", model, hist, *argv)
        assert code != 0 and flag in err


def test_predict_without_out_prints_a_table(small, capsys):
    hist, model = small
    code, out, err = run(capsys, "predict", "--model", model, hist, "--horizon", 2)
    assert code == 0 and err == ""
    lines = out.strip().splitlines()
    assert lines[0].split() == FORECAST_COLUMNS
    assert len(lines) == 1 + 10 * 2
    assert all(line.split()[0].startswith("orders-worker-") for line in lines[1:])


def test_scenario_of_payment_failures_raises_risk_from_ok(sample_model, capsys, tmp_path):
    base, what_if = tmp_path / "base.parquet", tmp_path / "what_if.parquet"
    assert run(capsys, "predict", "--model", sample_model, SAMPLE, "--horizon", 2,
               "--out", base)[0] == 0
    assert run(capsys, "predict", "--model", sample_model, SAMPLE, "--horizon", 2,
               "--scenario", "payment_failed,payment_failed", "--out", what_if)[0] == 0
    base, what_if = pd.read_parquet(base), pd.read_parquet(what_if)
    ok = base["state"] == "ok"
    assert ok.sum() >= 10  # most handlers end the sample in "ok"
    assert (what_if.loc[ok, "p_fail"].to_numpy() >= base.loc[ok, "p_fail"].to_numpy()).all()
    # the forecasts are the model's own table, row "ok"
    model = load_model(sample_model)
    table = model.failure_probabilities(2)
    table_if = model.failure_probabilities(2, scenario=["payment_failed", "payment_failed"])
    for frame, tab in ((base, table), (what_if, table_if)):
        rows = frame[ok]
        np.testing.assert_allclose(rows["p_fail"], tab.loc["ok", rows["horizon"]].to_numpy())
    assert (table_if.loc["ok"] > table.loc["ok"]).all()


def test_demo(capsys):
    code, out, err = run(capsys, "demo", "--horizon", 3, "--top", 4)
    assert code == 0
    assert "Traceback" not in err
    assert "riskiest handlers: P(fail within 3 steps)" in out
    block = out.split("riskiest handlers")[1].split("\n\n")[0].strip().splitlines()
    assert block[1].split() == ["entity", "as_of", "state", "p_fail"]
    rows = block[2:]
    assert len(rows) == 4 and all(r.split()[0].startswith("orders-worker-") for r in rows)
    p = [float(r.split()[-1]) for r in rows]
    assert p == sorted(p, reverse=True)  # the riskiest first
    assert "what-if: the next 3 events are all payment_failed" in out


# ---------------------------------------------------------------- exit codes
@pytest.fixture
def files(small, tmp_path):
    """Paths to broken inputs, keyed by name."""
    hist, model = small
    good = CONFIG.read_text()
    f = {"hist": hist, "model": model}

    def write(name, text):
        (tmp_path / name).write_text(text)
        f[name] = tmp_path / name

    write("unknown_table.toml", good + "\n[colums]\nentity = 'handler'\n")
    write("unknown_model_key.toml", good.replace("beta = 1.0", "beta = 1.0\nbeeta = 2.0"))
    write("unknown_column_key.toml", good.replace('entity = "handler"', 'entty = "handler"'))
    write("unknown_states_key.toml", good.replace('kind = "categorical"',
                                                  'kind = "categorical"\nfailures = ["down"]'))
    write("invalid.toml", "[states\nkind = ")
    write("bad_kind.toml", good.replace('kind = "categorical"', 'kind = "magic"'))
    write("no_states.toml", "[columns]\nentity = 'handler'\n")
    head = "handler,timestamp,event_type,status,event_id,latency_ms,error_rate\n"
    write("no_status.csv", "handler,timestamp,event_type,event_id,latency_ms,error_rate\n"
                           "w1,2026-01-01T00:00:00Z,order_created,e1,50,0.01\n")
    write("bad_time.csv", head + "w1,2026-01-01T00:00:00Z,order_created,ok,e1,50,0.01\n"
                                 "w1,yesterday,order_created,down,e2,2,1.0\n")
    raw = model.read_bytes()
    (tmp_path / "truncated.npz").write_bytes(raw[: len(raw) // 2])
    f["truncated.npz"] = tmp_path / "truncated.npz"
    f["tmp"] = tmp_path
    return f


def train(f, hist="hist", config=None, out=None):
    return ["train", f[hist], "--config", config or CONFIG, "--out", out or f["tmp"] / "m.npz"]


def predict(f, *extra, model="model", hist="hist"):
    return ["predict", "--model", f[model], f[hist], *extra]


CASES = [
    # usage: 64
    ("unknown-command", lambda f: ["frobnicate"], 64, "invalid choice: 'frobnicate'"),
    ("bad-option", lambda f: [*train(f), "--bogus"], 64, "unrecognized arguments: --bogus"),
    ("missing-option", lambda f: ["train", f["hist"]], 64, "the following arguments are required"),
    ("bad-int", lambda f: predict(f, "--horizon", "abc"), 64, "invalid int value: 'abc'"),
    ("horizon-0", lambda f: predict(f, "--horizon", "0"), 64, "horizon = 0, must be >= 1"),
    ("horizon-negative", lambda f: ["demo", "--horizon", "-2"], 64, "horizon = -2, must be >= 1"),
    ("scenario-too-short", lambda f: predict(f, "--horizon", "3", "--scenario", "payment_failed"),
     64, "exceeds the scenario's 1 events"),
    ("bad-handlers", lambda f: ["simulate", "--out", f["tmp"] / "s.csv", "--handlers", "0"],
     64, "n_handlers == 0"),
    ("bad-out-suffix", lambda f: predict(f, "--out", f["tmp"] / "f.txt"), 64,
     "use a .csv, .csv.gz or .parquet"),
    # missing input: 66
    ("missing-history-train", lambda f: train({**f, "hist": f["tmp"] / "nope.csv"}), 66, "nope.csv"),
    ("missing-history-predict", lambda f: predict({**f, "hist": f["tmp"] / "nope.csv"}), 66,
     "nope.csv"),
    ("missing-config", lambda f: train(f, config=f["tmp"] / "nope.toml"), 66,
     "config file .*nope.toml' does not exist"),
    ("missing-model", lambda f: predict({**f, "model": f["tmp"] / "nope.npz"}), 66,
     "model file .*nope.npz' does not exist"),
    # output cannot be created: 73
    ("out-dir-missing", lambda f: train(f, out=f["tmp"] / "no" / "m.npz"), 73,
     "directory .* does not exist"),
    # bad config: 78
    ("unknown-table", lambda f: train(f, config=f["unknown_table.toml"]), 78,
     r"unknown table\(s\) \['colums'\]"),
    ("unknown-model-key", lambda f: train(f, config=f["unknown_model_key.toml"]), 78,
     "unknown key 'beeta' in \\[model\\]"),
    ("unknown-column-key", lambda f: train(f, config=f["unknown_column_key.toml"]), 78,
     "unknown key 'entty'"),
    ("unknown-states-key", lambda f: train(f, config=f["unknown_states_key.toml"]), 78,
     "unknown key 'failures'"),
    ("invalid-toml", lambda f: train(f, config=f["invalid.toml"]), 78, "is not valid TOML"),
    ("bad-state-kind", lambda f: train(f, config=f["bad_kind.toml"]), 78,
     "kind = 'magic' is not a kind of state extractor"),
    ("no-states-table", lambda f: train(f, config=f["no_states.toml"]), 78,
     r"a \[states\] table is needed"),
    # bad data: 65
    ("missing-column-train", lambda f: train(f, hist="no_status.csv"), 65, "column 'status'"),
    ("missing-column-predict", lambda f: predict(f, hist="no_status.csv"), 65, "column 'status'"),
    ("bad-time-train", lambda f: train(f, hist="bad_time.csv"), 65, "'yesterday'"),
    ("bad-time-predict", lambda f: predict(f, hist="bad_time.csv"), 65, "'yesterday'"),
    ("damaged-model", lambda f: predict(f, model="truncated.npz"), 65, "truncated"),
    ("config-as-model", lambda f: predict({**f, "model": CONFIG}), 65, "not a model file"),
]


@pytest.mark.parametrize("argv, code, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_exit_codes(files, capsys, argv, code, message):
    got, out, err = run(capsys, *argv(files))
    assert got == code, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    if code == 64 and lines[0].startswith("usage:"):  # argparse: usage, then one error line
        assert lines[-1].startswith("markovfault")
        assert ": error: " in lines[-1]
    else:
        assert len(lines) == 1, err
        assert lines[0].startswith("markovfault: error: ")
    assert re.search(message, lines[-1]), lines[-1]
    assert not (files["tmp"] / "m.npz").exists()  # nothing written on failure


def test_no_command_prints_help_and_exits_64(capsys):
    code, out, err = run(capsys)
    assert code == 64
    assert "usage: markovfault" in err and "predict" in err


def test_closed_stdout_is_not_a_traceback(small, capsys, tmp_path, monkeypatch):
    # `markovfault predict ... | head`: the reader goes away mid-table
    hist, model = small
    sink = open(tmp_path / "sink", "w")

    class ClosedPipe(io.StringIO):
        def write(self, s):
            raise BrokenPipeError(32, "Broken pipe")

        def fileno(self):
            return sink.fileno()

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    try:
        code = main(["predict", "--model", str(model), str(hist), "--horizon", "2"])
    finally:
        sink.close()
    assert code == 141
    assert "Traceback" not in capsys.readouterr().err


# ---------------------------------------------------------------------- help
@pytest.mark.parametrize(
    "command, options",
    [
        (None, ["simulate", "train", "predict", "demo", "--version", "--verbose"]),
        ("simulate", ["--out", "--handlers", "--steps", "--flaky-fraction", "--duplicate-rate",
                      "--seed"]),
        ("train", ["histories", "--config", "--out"]),
        ("predict", ["histories", "--model", "--horizon", "--scenario", "--out"]),
        ("demo", ["--horizon", "--top"]),
    ],
)
def test_help(capsys, command, options):
    argv = ([command] if command else []) + ["--help"]
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    out, err = capsys.readouterr()
    assert out.startswith("usage: markovfault" + (f" {command}" if command else ""))
    for option in options:
        assert option in out


def test_version(capsys):
    from markovfault import __version__

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"markovfault {__version__}"


# ------------------------------------------------------------- real process
def test_runs_as_a_real_process(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    cmd = [sys.executable, "-m", "markovfault.cli"]
    done = subprocess.run([*cmd, "--help"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "usage: markovfault" in done.stdout and "predict" in done.stdout
    # the exit code of main() reaches the shell, with one line and no traceback
    done = subprocess.run([*cmd, "predict", "--model", "nope.npz", "nope.csv"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert done.returncode == 66
    assert done.stderr.strip() == "markovfault: error: model file 'nope.npz' does not exist"


# ------------------------------------------------------------------ backtest
def test_backtest_writes_report_and_prints_verdict(small, capsys, tmp_path):
    hist, _ = small
    out = tmp_path / "bt"
    code, stdout, err = run(capsys, "backtest", hist, "--config", CONFIG, "--horizon", 3,
                            "--cutoffs", 2, "--baselines", "climatology,no_events",
                            "--no-progress", "--out", out)
    assert code == 0, err
    assert {"metrics.csv", "folds.csv", "predictions.parquet", "report.md", "skill.png"} <= {
        p.name for p in out.iterdir()}
    metrics = pd.read_csv(out / "metrics.csv")
    assert set(metrics["model"]) == {"markov", "climatology", "no_events"}
    assert "markov" in stdout and "climatology" in stdout and "report written" in stdout
    assert "on bss" in (out / "report.md").read_text()


def test_backtest_within_scores_time_horizons(small, capsys, tmp_path):
    hist, _ = small
    out = tmp_path / "bt"
    code, stdout, err = run(capsys, "backtest", hist, "--config", CONFIG, "--within", "2min,10min",
                            "--cutoffs", 2, "--baselines", "climatology", "--no-progress", "--out", out)
    assert code == 0, err
    metrics = pd.read_csv(out / "metrics.csv")
    assert set(metrics["model"]) == {"markov", "markov_ctmc", "climatology"}
    assert set(metrics["horizon"].astype(str)) == {"2min", "10min"}
    assert "2min" in stdout and "report written" in stdout


@pytest.mark.parametrize("argv, code, message", [
    (["--baselines", "prophet"], 78, "unknown baseline"),
    (["--window", "sliding"], 78, "window_size"),
    (["--horizon", "0"], 64, "horizon"),
])
def test_backtest_errors(small, capsys, tmp_path, argv, code, message):
    hist, _ = small
    got, _, err = run(capsys, "backtest", hist, "--config", CONFIG, "--cutoffs", 2,
                      "--out", tmp_path / "bt", *argv)
    assert got == code and message in err and "Traceback" not in err
