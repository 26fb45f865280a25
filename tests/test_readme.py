"""The README's Python example and config block work as written."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.filterwarnings("ignore::markovfault.exceptions.DataWarning")
def test_python_example_runs(tmp_path, monkeypatch, capsys):
    (code,) = blocks("python")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {})
    assert (tmp_path / "model.npz").exists()
    assert "p_fail" in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore::markovfault.exceptions.DataWarning")
def test_config_example_is_accepted(tmp_path):
    import tomllib

    import pandas as pd

    from markovfault import FaultPredictor
    from markovfault.config import load_config
    from markovfault.predictor._settings import column_map_of
    from markovfault.states import extractor_from_config

    (toml,) = blocks("toml")
    path = tmp_path / "job.toml"
    path.write_text(toml)
    raw = tomllib.loads(toml)  # what the block says, read without markovfault
    config = load_config(path)
    model = FaultPredictor.from_config(config)

    cols = column_map_of(model.columns)
    for key in ("entity", "time", "event", "status", "event_id"):
        assert getattr(cols, key) == raw["columns"][key]
    assert list(cols.metrics) == raw["columns"]["metrics"]
    params = model.get_params()
    assert params["alpha"] == raw["model"]["alpha"] and params["beta"] == raw["model"]["beta"]

    states = extractor_from_config(config["states"])
    assert type(states).__name__.lower().startswith(raw["states"]["kind"])
    assert list(states.failure) == raw["states"]["failure"]

    # fitted on a frame with the README's column names: the statuses are the states, the failure list
    # marks failures, the priors reach the chain
    labels = ["ok", "slow", "error", "ok", "timeout", "ok", "down", "ok"]
    frame = pd.DataFrame({
        raw["columns"]["entity"]: ["h1"] * 4 + ["h2"] * 4,
        raw["columns"]["time"]: pd.date_range("2026-01-01", periods=8, freq="min", tz="UTC"),
        raw["columns"]["event"]: ["a", "b"] * 4,
        raw["columns"]["status"]: labels,
        raw["columns"]["event_id"]: [f"id{k}" for k in range(8)],
        "latency_ms": [10.0] * 8, "error_rate": [0.0] * 8,
    })
    model.fit(frame)
    assert sorted(model.state_names_) == sorted(set(labels))
    failing = {s for s, f in zip(model.state_names_, model.chain_.is_failure_) if f}
    assert failing == set(raw["states"]["failure"])
    assert model.chain_.alpha_ == raw["model"]["alpha"] and model.chain_.beta_ == raw["model"]["beta"]
    assert model.n_transitions_ == 6


@pytest.mark.parametrize("marker, name, tries", [
    ("markovfault.diagnostics", "diagnostics", 5),
    ("within=", "time horizons", 5),
    ("interval=0.9", "intervals", 4),
    ("markovfault.explain import explain", "explanations", 8),
    ("markovfault.explain import localize", "localization", 5),
    ("HistoryRecorder(exports", "recording", 10),
])
def test_pycon_example_runs(marker, name, tries):
    import doctest

    (example,) = [b for b in blocks("pycon") if marker in b]
    test = doctest.DocTestParser().get_doctest(example, {}, f"README {name}", str(README), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.failures == 0 and runner.tries >= tries
