"""`markovfault diagnose` as a real subprocess on real files: a model file or a config, history files, the
readable report and --json."""

import json

import pandas as pd
import pytest
from conftest import SIMULATED_CONFIG, run_cli

CONFIG = SIMULATED_CONFIG
cli = run_cli


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("diagnose")
    done = cli("simulate", "--out", d / "hist.csv", "--handlers", 12, "--steps", 250, "--seed", 4, cwd=d)
    assert done.returncode == 0, done.stderr
    (d / "model.toml").write_text(CONFIG)
    history_config = CONFIG + "\n[states.history]\norder = 2\n"
    (d / "history.toml").write_text(history_config)
    for name in ("model", "history"):
        done = cli("train", d / "hist.csv", "--config", d / f"{name}.toml", "--out", d / f"{name}.npz", cwd=d)
        assert done.returncode == 0, done.stderr
    times = pd.read_csv(d / "hist.csv", usecols=["timestamp"])["timestamp"]
    split = str(pd.to_datetime(times).sort_values().iloc[len(times) // 2])
    return d, split


def test_diagnose_prints_the_report(files):
    d, split = files
    done = cli("diagnose", d / "model.npz", d / "hist.csv", "--bootstrap", 39, "--seed", 3, "--split-time", split,
               cwd=d)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for title in ("== event dependence", "== Markov order", "== drift", "== heterogeneity"):
        assert title in out
    assert "asymptotic and bootstrap p-values, 39 replicates" in out
    # the simulated order service's transitions depend on the event in its well-visited ok state
    line = next(x for x in out.splitlines() if x.startswith("-> the next state depends on the event in states:"))
    assert "ok" in line.split(":", 1)[1]
    assert "most deviating entities" in out
    assert "history-aware states" not in out  # a plain model: no history test
    again = cli("diagnose", d / "model.npz", d / "hist.csv", "--bootstrap", 39, "--seed", 3, "--split-time", split,
                cwd=d)
    assert again.stdout == out  # seeded


def test_diagnose_json_of_a_history_model(files):
    d, _ = files
    done = cli("diagnose", d / "history.npz", d / "hist.csv", "--bootstrap", 9, "--max-order", 1, "--json", cwd=d)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert set(doc["tests"]) == {"event_dependence", "markov_order", "history_components", "heterogeneity"}
    rows = {r["state"]: r for r in doc["tests"]["history_components"]}
    assert "all" in rows and rows["all"]["df"] > 0 and 0 < rows["all"]["p_boot"] <= 1
    assert [r["order"] for r in doc["tests"]["markov_order"]] == [0]
    assert set(doc["findings"]) == set(doc["tests"]) and doc["bootstrap"] == 9
    handlers = set(pd.read_csv(d / "hist.csv", usecols=["handler"])["handler"])
    assert {r["entity"] for r in doc["heterogeneity_entities"]} == handlers


def test_diagnose_fits_a_config_on_the_histories(files):
    d, _ = files
    by_config = cli("diagnose", d / "model.toml", d / "hist.csv", "--bootstrap", 0, "--json", cwd=d)
    by_model = cli("diagnose", d / "model.npz", d / "hist.csv", "--bootstrap", 0, "--json", cwd=d)
    assert by_config.returncode == 0, by_config.stderr
    a, b = json.loads(by_config.stdout), json.loads(by_model.stdout)
    assert a["tests"]["event_dependence"] == b["tests"]["event_dependence"]
    assert all(r["p_boot"] is None for r in a["tests"]["event_dependence"])


def test_diagnose_errors_are_one_line(files):
    d, _ = files
    done = cli("diagnose", d / "nope.npz", d / "hist.csv", cwd=d)
    assert done.returncode == 66 and "does not exist" in done.stderr and "Traceback" not in done.stderr
    done = cli("diagnose", d / "model.npz", d / "hist.csv", "--bootstrap", 9, cwd=d)
    assert done.returncode == 0 and "no bootstrap test can reject" in done.stdout
    done = cli("diagnose", d / "model.npz", d / "hist.csv", "--bootstrap", -2, cwd=d)
    assert done.returncode == 64 and "--bootstrap -2" in done.stderr and "Traceback" not in done.stderr
    done = cli("diagnose", d / "model.npz", d / "hist.csv", "--split-time", "not a time", cwd=d)
    assert done.returncode == 78 and "split_time" in done.stderr and "Traceback" not in done.stderr
    done = cli("diagnose", d / "model.npz", d / "hist.csv", "--split-time", "2000-01-01", "--bootstrap", 0, cwd=d)
    assert done.returncode == 65 and "inside the histories" in done.stderr
