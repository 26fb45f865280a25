"""States learned from the labels (no ``states`` list): labels that differ only in case or whitespace, and
rare new states, warn with the fix."""

import logging
import warnings

import numpy as np
import pandas as pd
import pytest

from markovfault import FaultPredictor
from markovfault.exceptions import DataWarning
from markovfault.states import CategoricalStates


def statuses(counts: dict) -> pd.DataFrame:
    labels = np.concatenate([[label] * n for label, n in counts.items()])
    return pd.DataFrame({"status": np.random.default_rng(0).permutation(labels)})


def test_labels_differing_in_case_warn(caplog):
    frame = statuses({"ok": 5000, "OK": 40, "down": 400})
    with caplog.at_level(logging.WARNING, logger="markovfault.states"):
        with pytest.warns(DataWarning, match="differ only in case or whitespace") as caught:
            ext = CategoricalStates(failure=["down"]).fit(frame)
    message = str(caught[0].message)
    assert "'ok' (5000 rows), 'OK' (40 rows)" in message
    assert '[states] mapping ("OK" = "ok")' in message and "states = [...]" in message
    assert "differ only in case" in caplog.text
    assert ext.state_names_ == ["OK", "down", "ok"]  # documented: a warning, not a change of the model


def test_labels_differing_in_whitespace_warn():
    frame = pd.DataFrame({"status": ["in flight"] * 50 + ["inflight"] * 50 + ["down"] * 50})
    with pytest.warns(DataWarning, match="'in flight' .* 'inflight'|'inflight' .* 'in flight'"):
        CategoricalStates(failure=["down"]).fit(frame)


def test_rare_new_state_warns():
    frame = statuses({"ok": 9000, "slow": 900, "down": 97, "degraded": 3})
    with pytest.warns(DataWarning, match=r"'degraded' \(3 rows\)") as caught:
        CategoricalStates(failure=["down"]).fit(frame)
    message = str(caught[0].message)
    assert "fewer than 10 rows and 0.1%" in message and "[states] mapping" in message


def test_declared_or_listed_states_do_not_warn():
    frame = statuses({"ok": 9000, "slow": 900, "down": 3, "degraded": 3, "OK": 94})
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        # a rare failure state is named in failure; the mapping merges OK; degraded is mapped
        CategoricalStates(failure=["down"], mapping={"OK": "ok", "degraded": "slow"}).fit(frame)
        CategoricalStates(failure=["down"], states=["ok", "OK", "slow", "down", "degraded"]).fit(frame)
        # small data: every state is seen in more than 0.1% of the rows
        CategoricalStates(failure=["down"]).fit(statuses({"ok": 50, "slow": 3, "down": 2}))


def test_predictor_fit_warns():
    rng = np.random.default_rng(1)
    n = 6000
    frame = pd.DataFrame({"entity": rng.integers(0, 20, n).astype(str), "time": np.arange(n),
                          "status": rng.choice(["ok", "down"], n, p=[0.9, 0.1])})
    frame.loc[[10, 500, 4000], "status"] = "degraded"
    with pytest.warns(DataWarning, match="'degraded' \\(3 rows\\)"):
        FaultPredictor(states={"failure": ["down"]}).fit(frame)


def test_a_warning_reaches_a_plain_process_once(tmp_path):
    """Without a logging configuration (a script, a notebook kernel), a model's warning is printed once: as
    the DataWarning, not a second time by Python's last-resort handler for the library's log record."""
    import subprocess
    import sys

    script = tmp_path / "fit.py"
    script.write_text(
        "import pandas as pd\n"
        "from markovfault import FaultPredictor\n"
        "hist = pd.DataFrame({'entity': ['a'] * 5 + ['b'] * 4, 'time': list(range(5)) + list(range(4)),\n"
        "                     'status': ['ok', 'slow', 'ok', 'ok', 'down', 'ok', 'ok', 'slow', 'ok']})\n"
        "FaultPredictor(states={'failure': ['down']}).fit(hist)\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True)
    assert out.stderr.count("were never left in training") == 1, out.stderr
    assert "DataWarning" in out.stderr
