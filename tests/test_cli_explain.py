"""`markovfault explain` as a real subprocess on real files: a model file (with and without histories) or a
config, the readable report, --json, a what-if scenario and the errors a user can make."""

import json

import pytest
from conftest import SIMULATED_CONFIG, run_cli

from markovfault.persistence import load_model

CONFIG = SIMULATED_CONFIG
cli = run_cli


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("explain")
    for argv in (("simulate", "--out", d / "hist.csv", "--handlers", 10, "--steps", 250, "--seed", 5),
                 ("train", d / "hist.csv", "--config", d / "model.toml", "--out", d / "model.npz")):
        if argv[0] == "train":
            (d / "model.toml").write_text(CONFIG)
        done = cli(*argv, cwd=d)
        assert done.returncode == 0, done.stderr
    return d


def test_the_report_and_json_agree_with_the_models_forecast(files):
    d = files
    model = load_model(d / "model.npz")
    forecast = model.predict(d / "hist.csv", horizon=7, layout="wide").set_index("entity")
    entity = forecast.index[3]
    done = cli("explain", d / "model.npz", d / "hist.csv", "--entity", entity, "--horizon", 7, "--json", cwd=d)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["flux"]["start"] == entity and report["flux"]["horizon"] == 7
    assert report["flux"]["p_fail"] == pytest.approx(forecast.loc[entity, "p_fail_7"], abs=1e-12)
    shapley = report["events"]["starts"][0]["shapley"]
    assert sum(shapley.values()) == pytest.approx(report["flux"]["p_fail"], abs=1e-12)
    probs = [p["probability"] for p in report["paths"]["paths"]]
    assert len(probs) == 10 and probs == sorted(probs, reverse=True)
    # the text report; without histories, the remembered last steps and the riskiest handler not failed
    done = cli("explain", d / "model.npz", "--top", 3, cwd=d)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    for part in ("Most likely paths into failure", "Where failing paths enter failure", "Events (Shapley",
                 "Entered states"):
        assert part in text
    ten = model.predict(horizon=10, layout="wide").set_index("entity")
    up = ten[~ten["state"].isin({"error", "timeout", "down"})]
    assert text.splitlines()[0].startswith(f"{up['p_fail_10'].idxmax()} (now ")


def test_a_scenario_a_state_and_a_config(files):
    d = files
    done = cli("explain", d / "model.npz", "--state", "slow", "--scenario", "payment_failed,payment_failed",
               "--json", cwd=d)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    model = load_model(d / "model.npz")
    want = model.failure_probabilities(2, scenario=["payment_failed"] * 2).loc["slow", 2]
    assert report["flux"]["horizon"] == 2 and report["flux"]["p_fail"] == pytest.approx(want, abs=1e-12)
    assert report["events"] is None  # a scenario's events are given
    done = cli("explain", d / "model.toml", d / "hist.csv", "--state", "ok", "--horizon", 3, cwd=d)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok (now ok): P(fail within 3 steps)")


@pytest.mark.parametrize("argv, code, words", [
    (("--entity", "nobody"), 78, "entity 'nobody' has no steps"),
    (("--state", "sideways"), 78, "not a state of the model"),
    (("--horizon", 0), 64, "--horizon 0"),
    (("--entity", "a", "--state", "ok"), 64, "not allowed with argument"),
])
def test_mistakes_print_one_line(files, argv, code, words):
    done = cli("explain", files / "model.npz", *argv, cwd=files)
    assert done.returncode == code, (done.returncode, done.stderr)
    assert words in done.stderr and "Traceback" not in done.stderr


def test_a_config_needs_histories(files):
    done = cli("explain", files / "model.toml", cwd=files)
    assert done.returncode == 78 and "give the histories" in done.stderr


def test_episodes_are_localized_across_handlers(tmp_path):
    """--episode adds the propagation graph and each episode's root-cause ranking, on the model's states;
    the two ends of an episode may be written with different precision (they were parsed with one format)."""
    from markovfault.simulate import simulate_call_graph

    sim = simulate_call_graph(20, rate=0.2, random_state=3)
    sim.histories.to_csv(tmp_path / "calls.csv", index=False)
    (tmp_path / "calls.toml").write_text('[columns]\nmetrics = ["latency_ms"]\n\n[states]\nkind = "categorical"\n'
                                         'failure = ["error", "down"]\n')
    done = cli("train", tmp_path / "calls.csv", "--config", tmp_path / "calls.toml", "--out", tmp_path / "m.npz",
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    last = sim.episodes.iloc[-1]
    start = last.start.floor("min").strftime("%Y-%m-%dT%H:%M")            # minutes
    end = last.end.ceil("s").strftime("%Y-%m-%dT%H:%M:%S")                 # seconds
    done = cli("explain", tmp_path / "m.npz", tmp_path / "calls.csv", "--episode", f"{start}/{end}", "--json",
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    where = json.loads(done.stdout)["localization"]
    (episode,) = where["episodes"]
    assert episode["rankings"]["propagation"][0]["entity"] == last.root_cause
    assert set(episode["rankings"]) == {"propagation", "robust_zscore"}
    edges = {(e["source"], e["target"]) for e in where["propagation"]["edges"]}
    assert set(sim.true_edges()) & edges  # some true propagation edge is found
    done = cli("explain", tmp_path / "m.npz", tmp_path / "calls.csv", "--episode", f"{end}/{start}", cwd=tmp_path)
    assert done.returncode == 78 and "must come after" in done.stderr
    done = cli("explain", tmp_path / "m.npz", tmp_path / "calls.csv", "--episode", "soon", cwd=tmp_path)
    assert done.returncode == 64 and "START/END" in done.stderr


def test_format_csv_is_the_event_attribution_table_of_the_json(files):
    import io

    import pandas as pd

    d = files
    argv = ("explain", d / "model.npz", d / "hist.csv", "--horizon", 5)
    done = cli(*argv, "--format", "csv", cwd=d)
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(io.StringIO(done.stdout)).set_index("event")
    doc = json.loads(cli(*argv, "--format", "json", cwd=d).stdout)
    assert doc == json.loads(cli(*argv, "--json", cwd=d).stdout)  # --json is --format json
    shapley = doc["events"]["starts"][0]["shapley"]
    assert set(table.index.astype(str)) == set(shapley)
    for event, value in shapley.items():
        assert table.loc[event, "shapley"] == pytest.approx(value, abs=1e-12)
