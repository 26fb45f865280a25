"""The command line as a pipeline sees it, in real processes: what-if scenarios checked against the model,
``--format {table,csv,json}``, ``predict --top/--sort/--layout/--config``, ``-v``/``-q`` after the subcommand,
Ctrl-C, a file that is not a model, and each subcommand's help."""

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from markovfault.exceptions import DataWarning

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "data" / "orders.toml"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
CMD = [sys.executable, "-m", "markovfault.cli"]


def cli(*argv, cwd, timeout=120):
    return subprocess.run([*CMD, *map(str, argv)], capture_output=True, text=True, env=ENV, cwd=cwd,
                          timeout=timeout)


def one_error_line(done, code, *fragments):
    assert done.returncode == code, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("markovfault: error: "), done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("outputs")
    done = cli("simulate", "--out", d / "hist.csv", "--handlers", 6, "--steps", 200, "--seed", 3, cwd=d)
    assert done.returncode == 0, done.stderr
    done = cli("train", d / "hist.csv", "--config", CONFIG, "--out", d / "model.npz", cwd=d)
    assert done.returncode == 0, done.stderr
    return d


def api_forecast(d, **kwargs):
    from markovfault import load_model

    return load_model(d / "model.npz").predict(d / "hist.csv", **kwargs)


# ---------------------------------------------------------------- what-if scenarios
def test_a_scenario_with_an_unknown_event_is_an_error_with_the_closest_names(files):
    d = files
    done = cli("predict", "--model", d / "model.npz", d / "hist.csv", "--horizon", 2,
               "--scenario", "paymnt_failed,order_created", cwd=d)
    line = one_error_line(done, 64, "'paymnt_failed'", "never seen in training", "did you mean 'payment_failed'",
                          "--allow-unknown-events")
    assert "order_shipped" in line  # the known events are listed
    done = cli("explain", d / "model.npz", d / "hist.csv", "--scenario", "paymnt_failed", cwd=d)
    one_error_line(done, 64, "'paymnt_failed'", "did you mean 'payment_failed'")
    # asked to allow it, the unknown event gets the pooled row (the API's behaviour)
    done = cli("predict", "--model", d / "model.npz", d / "hist.csv", "--scenario", "paymnt_failed,order_created",
               "--allow-unknown-events", "--format", "csv", cwd=d)
    assert done.returncode == 0, done.stderr
    got = pd.read_csv(io.StringIO(done.stdout))
    with pytest.warns(DataWarning, match="paymnt_failed"):
        api = api_forecast(d, horizon=2, scenario=["paymnt_failed", "order_created"])
    pd.testing.assert_series_equal(got["p_fail"], api["p_fail"], check_exact=False, rtol=1e-12)


def test_a_scenario_longer_than_the_horizon_is_an_error_not_cut(files):
    d = files
    scenario = "payment_failed,payment_failed,order_created,payment_failed"
    done = cli("predict", "--model", d / "model.npz", d / "hist.csv", "--horizon", 3, "--scenario", scenario, cwd=d)
    one_error_line(done, 64, "4 events", "--horizon is 3")
    done = cli("explain", d / "model.npz", d / "hist.csv", "--horizon", 2, "--scenario", scenario, cwd=d)
    one_error_line(done, 64, "4 events", "--horizon is 2")
    # without --horizon, the horizon is the scenario's length
    done = cli("predict", "--model", d / "model.npz", d / "hist.csv", "--scenario", scenario, "--format", "json",
               cwd=d)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert sorted({r["horizon"] for r in rows}) == [1, 2, 3, 4] and len(rows) == 6 * 4


# ---------------------------------------------------------------- output formats
def test_predict_prints_csv_and_json_of_the_apis_forecast(files):
    d = files
    api = api_forecast(d, horizon=3)
    done = cli("predict", "--model", d / "model.npz", d / "hist.csv", "--horizon", 3, "--format", "csv", cwd=d)
    assert done.returncode == 0, done.stderr
    got = pd.read_csv(io.StringIO(done.stdout))
    assert list(got.columns) == list(api.columns) and len(got) == len(api)
    assert got["entity"].tolist() == api["entity"].astype(str).tolist()
    pd.testing.assert_series_equal(got["p_fail"], api["p_fail"], check_exact=False, rtol=1e-12)
    done = cli("predict", "--model", d / "model.npz", d / "hist.csv", "--horizon", 3, "--format", "json", cwd=d)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [r["p_fail"] for r in rows] == pytest.approx(api["p_fail"].tolist(), rel=1e-12)
    assert pd.Timestamp(rows[0]["as_of"]) == api["as_of"].iloc[0]  # ISO 8601 with its zone
    done = cli("predict", "--model", d / "model.npz", d / "hist.csv", "--format", "json", "--out", d / "f.csv", cwd=d)
    one_error_line(done, 64, "--format json", "--out")


def test_inspect_diagnose_backtest_select_states_print_csv_and_json(files):
    d = files
    done = cli("inspect", d / "model.npz", "--horizons", "1,3", "--format", "json", cwd=d)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert {s["state"] for s in doc["states"]} == {"ok", "slow", "error", "timeout", "down"}
    assert {"h=1", "h=3", "expected_steps"} <= set(doc["states"][0]) and doc["events"]
    done = cli("inspect", d / "model.npz", "--format", "csv", cwd=d)
    assert done.returncode == 0, done.stderr
    assert pd.read_csv(io.StringIO(done.stdout)).columns[0] == "state"

    done = cli("diagnose", d / "model.npz", d / "hist.csv", "--bootstrap", 0, "--format", "csv", cwd=d)
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(io.StringIO(done.stdout))
    assert {"event_dependence", "markov_order"} <= set(table["test"]) and "p_value" in table
    done = cli("diagnose", d / "model.npz", d / "hist.csv", "--bootstrap", 0, "--format", "json", cwd=d)
    assert done.returncode == 0 and "event_dependence" in json.loads(done.stdout)["tests"]

    done = cli("backtest", d / "hist.csv", "--config", CONFIG, "--horizon", 2, "--cutoffs", 2, "--baselines",
               "climatology", "--out", d / "bt", "--format", "json", cwd=d)
    assert done.returncode == 0, done.stderr
    assert "backtest:" not in done.stderr  # no progress line: stderr is not a terminal
    doc = json.loads(done.stdout)
    assert {r["model"] for r in doc["summary"]} == {"markov", "climatology"}
    assert set(doc["verdicts"]) == {"bss", "roc_auc"} and Path(doc["report"]).exists()
    done = cli("backtest", d / "hist.csv", "--config", CONFIG, "--horizon", 2, "--cutoffs", 2, "--baselines",
               "climatology", "--out", d / "bt", "--format", "csv", cwd=d)
    assert done.returncode == 0, done.stderr
    assert set(pd.read_csv(io.StringIO(done.stdout))["model"]) == {"markov", "climatology"}

    done = cli("select-states", d / "hist.csv", "--config", CONFIG, "--orders", "1", "--failure-windows", "0",
               "--entering-event", "no", "--horizon", 2, "--cutoffs", 2, "--format", "json", cwd=d)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["criterion"] == "heldout_loglik" and len(doc["candidates"]) == 1 and "[states" in doc["best_config"]


# ---------------------------------------------------------------- predict options
def test_predict_top_sort_layout_and_config(files, tmp_path):
    d = files
    wide = api_forecast(d, horizon=3, layout="wide")
    riskiest = wide.sort_values("p_fail_3", ascending=False, kind="stable")["entity"].astype(str).tolist()
    done = cli("predict", "--model", d / "model.npz", d / "hist.csv", "--horizon", 3, "--top", 2, "--layout", "wide",
               "--format", "json", cwd=d)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [r["entity"] for r in rows] == riskiest[:2]
    assert set(rows[0]) == {"entity", "as_of", "state", "p_fail_1", "p_fail_2", "p_fail_3"}
    # --sort risk: every entity, riskiest first, all horizons of each; --top with --sort entity: by name
    config = tmp_path / "predict.toml"
    config.write_text("[compute]\n")
    done = cli("predict", "--model", d / "model.npz", d / "hist.csv", "--horizon", 3, "--sort", "risk",
               "--format", "csv", "--config", config, cwd=d)
    assert done.returncode == 0, done.stderr
    got = pd.read_csv(io.StringIO(done.stdout))
    assert got["entity"].drop_duplicates().tolist() == riskiest and len(got) == 6 * 3
    done = cli("predict", "--model", d / "model.npz", d / "hist.csv", "--horizon", 3, "--top", 3, "--sort", "entity",
               "--format", "csv", cwd=d)
    assert pd.read_csv(io.StringIO(done.stdout))["entity"].drop_duplicates().tolist() == sorted(riskiest[:3])
    config.write_text("[compute]\nschedular = 'tcp://x:1'\n")
    done = cli("predict", "--model", d / "model.npz", d / "hist.csv", "--config", config, "--top", 0, cwd=d)
    one_error_line(done, 64, "--top 0")
    done = cli("predict", "--model", d / "model.npz", d / "hist.csv", "--config", config, cwd=d)
    one_error_line(done, 78, "schedular")


# ---------------------------------------------------------------- -v and -q
def test_verbose_and_quiet_after_the_subcommand(files):
    d = files
    for argv in (["predict", "-v", "--model"], ["-v", "predict", "--model"]):
        done = cli(*argv, d / "model.npz", d / "hist.csv", "--horizon", 1, cwd=d)
        assert done.returncode == 0 and "INFO" in done.stderr, (argv, done.stderr)
    base = ["explain", d / "model.npz", d / "hist.csv", "--scenario", "bogus,bogus",
            "--allow-unknown-events"]
    loud = cli(*base, cwd=d)
    assert loud.returncode == 0 and "WARNING" in loud.stderr  # the unknown event is warned of
    for where in ("after", "before"):
        argv = [*base, "-q"] if where == "after" else ["-q", *base]
        quiet = cli(*argv, cwd=d)
        assert quiet.returncode == 0 and quiet.stderr == "", (where, quiet.stderr)
        assert quiet.stdout == loud.stdout


# ---------------------------------------------------------------- Ctrl-C
def test_ctrl_c_exits_130_with_one_line(tmp_path):
    proc = subprocess.Popen([*CMD, "simulate", "--out", str(tmp_path / "big.csv"), "--handlers", "300",
                             "--steps", "5000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV, cwd=tmp_path)
    # well inside the work (about 30 s of CPU): wait for 2 s of the process's own CPU time, not wall time, so
    # that a loaded machine cannot deliver the signal before the command line has started
    ticks, deadline = os.sysconf("SC_CLK_TCK"), time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        if (int(fields[11]) + int(fields[12])) / ticks >= 2.0:  # utime + stime
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip() == "markovfault: interrupted" and "Traceback" not in err


# ---------------------------------------------------------------- not a model file
def test_a_file_that_is_not_a_model_gets_markovfaults_message(files, tmp_path):
    import pickle

    import numpy as np

    d = files
    np.save(tmp_path / "array.npy", np.arange(3))
    (tmp_path / "pickled.npz").write_bytes(pickle.dumps({"a": 1}))
    cases = {"array.npy": "a single NumPy array", "pickled.npz": "a Python pickle", "hist.csv": "text"}
    for name, what in cases.items():
        path = d / name if name == "hist.csv" else tmp_path / name
        done = cli("predict", "--model", path, d / "hist.csv", cwd=d)
        line = one_error_line(done, 65, str(path), what, "not a model file", "markovfault train")
        assert "pickle=" not in line and "allow_pickle" not in line
    done = cli("inspect", d / "hist.csv", cwd=d)
    one_error_line(done, 65, "not a model file")


# ---------------------------------------------------------------- help
def test_every_subcommand_has_a_description_an_example_and_its_defaults():
    code = ("import contextlib, io, json\n"
            "from markovfault.cli import _build_parser\n"
            "parser = _build_parser()\n"
            "sub = next(a for a in parser._actions if a.dest == 'command')\n"
            "out = {}\n"
            "for name, p in sub.choices.items():\n"
            "    out[name] = {'help': p.format_help(), 'description': p.description or ''}\n"
            "print(json.dumps(out))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60)
    assert done.returncode == 0, done.stderr
    helps = json.loads(done.stdout)
    assert {"predict", "inspect", "backtest", "select-states", "diagnose", "train", "explain"} <= set(helps)
    for name, h in helps.items():
        assert h["description"], name
        text = h["help"]
        assert "example:\n  markovfault " + name in text, name
        assert "-q, --quiet" in text and "-v, --verbose" in text, name
    flat = {name: " ".join(h["help"].split()) for name, h in helps.items()}
    assert "(default: table)" in flat["predict"] and "(default: tidy)" in flat["predict"]
    assert "(default: expanding)" in flat["backtest"]  # a default the help did not say before
    assert "(default: heldout_loglik)" in flat["select-states"]


# ---------------------------------------------------------------- progress
def test_backtest_progress_on_a_terminal_with_the_time_left(files):
    import pty

    d = files

    def on_a_terminal(*extra):
        master, slave = pty.openpty()
        done = subprocess.run([*CMD, "backtest", str(d / "hist.csv"), "--config", str(CONFIG), "--horizon", "2",
                               "--cutoffs", "3", "--baselines", "climatology", "--out", str(d / "bt_tty"), *extra],
                              stdout=subprocess.PIPE, stderr=slave, env=ENV, cwd=d, timeout=120)
        os.close(slave)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the terminal's other end is closed: all read
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(master)
        assert done.returncode == 0
        return b"".join(chunks).decode()

    err = on_a_terminal()
    assert "backtest: fold 1/3" in err and "left" in err and "backtest: fold 3/3, done in" in err
    assert on_a_terminal("-q") == ""  # -q: no progress line
    # and none when stderr is not a terminal: test_inspect_diagnose_backtest_select_states_print_csv_and_json
