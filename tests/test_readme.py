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


def test_config_example_is_accepted(tmp_path):
    from markovfault import FaultPredictor
    from markovfault.config import load_config
    from markovfault.predictor._settings import column_map_of
    from markovfault.states import extractor_from_config

    (toml,) = blocks("toml")
    path = tmp_path / "job.toml"
    path.write_text(toml)
    config = load_config(path)
    column_map_of(FaultPredictor.from_config(config).columns)
    extractor_from_config(config["states"])


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
