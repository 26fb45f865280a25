"""Every public name imports from the path users write, and nothing public disappears in a move.

The table below is the public API: each module's ``__all__`` must hold at least these names, every name must be
importable from that path and resolve to the same object as the top-level package where both export it. New names
may be added; removing or renaming one is a breaking change and must be a deliberate edit of this table.
"""

import importlib
import subprocess
import sys

import pytest

PUBLIC = {
    "markovfault": ["BacktestResult", "CategoricalStates", "ClusterStates", "ColumnMap", "EventMarkovChain",
                    "FaultPredictor", "GradientBoostingBaseline", "HistorySpec", "QuantileStates", "ReadReport",
                    "ThresholdStates", "Trajectories", "backtest", "load_model", "read_histories", "select_states"],
    "markovfault.backtest": ["BASELINES", "BacktestResult", "GradientBoostingBaseline", "backtest"],
    "markovfault.chain": ["EventMarkovChain", "estimate_tensors"],
    "markovfault.config": ["check_config", "load_config"],
    "markovfault.counts": ["count_codes", "count_codes_by_bin", "count_transitions", "event_arrival_counts"],
    "markovfault.diagnostics": ["drift", "event_dependence", "markov_order"],
    "markovfault.exceptions": ["ConfigError", "CountsError", "DataWarning", "EmptyHistoryError", "HistoryError",
                               "JobLockedError", "MarkovFaultError", "MetricTypeError", "MissingColumnError", "MixedTimezoneError",
                               "ModelFileError", "NewerFormatError", "NoInputError", "NotFittedError", "OutputError",
                               "RecorderError",
                               "TimeParseError", "UnknownStatusError", "UsageError"],
    "markovfault.forecast": ["check_transition_matrix", "expected_steps_to_failure", "failure_probabilities",
                             "monte_carlo_failure_probabilities", "scenario_failure_probabilities", "simulate_chain"],
    "markovfault.histories": ["ColumnMap", "IMPLICIT_EVENT", "ReadReport", "iter_histories", "read_histories"],
    "markovfault.instrument": ["CLOUDEVENTS_COLUMNS", "HistoryRecorder", "HistorySpanProcessor"],
    "markovfault.job": ["JobConfig", "JobLockedError", "JobResult", "JsonFormatter", "NewerFormatError",
                        "NoInputError", "OutputError", "UsageError", "describe_model", "forecast_command",
                        "format_model_report", "format_run_id", "load_job_config", "parse_as_of", "run_job"],
    "markovfault.persistence": ["FORMAT_NAME", "FORMAT_VERSION", "load_model", "read_header", "save_model"],
    "markovfault.plotting": ["plot_entity_risk", "plot_failure_curve", "plot_lead_times", "plot_precision_recall",
                             "plot_reliability", "plot_riskiest", "plot_roc", "plot_skill_by_horizon",
                             "plot_state_diagram", "plot_transitions", "save_backtest_figures"],
    "markovfault.predictor": ["FaultPredictor"],
    "markovfault.selection": ["SelectionResult", "candidate_specs", "select_states"],
    "markovfault.simulate": ["OrderServiceSystem", "SimulatedHistories", "simulate_histories",
                             "true_failure_probabilities"],
    "markovfault.states": ["CategoricalStates", "ClusterStates", "HistorySpec", "QuantileStates", "STATE_KINDS",
                           "StateExtractor", "ThresholdStates", "candidate_specs", "extractor_from_config",
                           "make_state_extractor", "parse_rule"],
    "markovfault.trajectories": ["Trajectories", "parse_max_gap"],
}

# paths that the README, the notebooks and the examples use in their code
DOCUMENTED = [
    ("markovfault.config", "load_config"),
    ("markovfault.selection", "select_states"),
    ("markovfault.simulate", "simulate_histories"),
    ("markovfault.cli", "main"),
    ("markovfault", "plotting"),
    ("markovfault", "config"),
]


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names_import(module):
    mod = importlib.import_module(module)
    missing = sorted(set(PUBLIC[module]) - set(mod.__all__))
    assert not missing, f"{module}.__all__ lost {missing}"
    for name in mod.__all__:
        assert getattr(mod, name) is not None, f"{module}.{name}"


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_star_import(module):
    namespace: dict = {}
    exec(f"from {module} import *", namespace)
    assert set(PUBLIC[module]) <= set(namespace)


def test_same_object_at_every_path():
    import markovfault
    for module, names in PUBLIC.items():
        mod = importlib.import_module(module)
        for name in names:
            if name in markovfault.__all__:
                assert getattr(mod, name) is getattr(markovfault, name), f"{module}.{name}"


@pytest.mark.parametrize("module,name", DOCUMENTED)
def test_documented_paths(module, name):
    assert getattr(importlib.import_module(module), name) is not None


def test_top_level_names_resolve_in_a_fresh_process():
    """``import markovfault as mf; mf.X`` works for every exported name, also when nothing was imported before."""
    code = ("import markovfault as mf\n"
            "missing = [n for n in mf.__all__ if getattr(mf, n, None) is None]\n"
            "assert not missing, missing\n"
            "assert mf.config.load_config and mf.plotting.plot_roc\n"
            "assert sorted(dir(mf)) and set(mf.__all__) <= set(dir(mf))\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_attribute_is_an_attribute_error():
    import markovfault
    with pytest.raises(AttributeError, match="no_such_name"):
        markovfault.no_such_name  # noqa: B018


def test_function_named_like_its_module_stays_the_function():
    """``mf.backtest`` is the function even after ``markovfault.backtest`` (the module) was imported lazily."""
    code = ("import markovfault as mf, importlib\n"
            "importlib.import_module('markovfault.backtest')\n"
            "import markovfault.backtest\n"
            "assert callable(mf.backtest) and not isinstance(mf.backtest, type(mf)), mf.backtest\n"
            "from markovfault import backtest\n"
            "assert backtest is mf.backtest\n")
    subprocess.run([sys.executable, "-c", code], check=True)
