"""The real-histories examples (examples/<name>/run.py) on the public data sets in ../shared/data.

Each test runs the example's own conversion on the whole raw data, checks it against the counts verified in
../shared/data/<name>/LOAD.md, checks that the config's ``[states.history]`` is what ``--select`` chooses, and
runs a small backtest (a subset of entities, two cutoffs, short horizon) of the plain chain with every
baseline and of the history-aware chain (long-run and, where there are events, recent event mix) on the same
origins, as ``run()`` does. The data are never copied into the repository: when ../shared/data is absent (a
user's machine) the tests skip with the reason; in CI (the ``CI`` environment variable set) it must be present,
and its absence fails the tests instead of skipping them.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import markovfault as mf
from markovfault.states import HistorySpec
from markovfault.backtest import BASELINES

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
_MODULES: dict = {}


def _example(name: str):
    """The example's run.py as a module (imported from its path; examples/ is not a package)."""
    if name not in _MODULES:
        path = EXAMPLES / name / "run.py"
        spec = importlib.util.spec_from_file_location(f"markovfault_example_{name}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        _MODULES[name] = module
    return _MODULES[name]


def _data(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        reason = (f"{path} is absent: the real-histories examples read the public data sets in "
                  "../shared/data next to the repository (present in CI, never copied into the repo)")
        if os.environ.get("CI"):  # in CI the data must be there: a skip would pass silently
            pytest.fail(f"{reason}; CI is set, so this fails instead of skipping", pytrace=False)
        pytest.skip(reason)
    return path


def test_absent_data_fails_in_ci_and_skips_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "SHARED_DATA", tmp_path / "absent")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        _data("hdfs")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="is absent"):
        _data("hdfs")
    (tmp_path / "absent" / "hdfs").mkdir(parents=True)
    assert _data("hdfs") == tmp_path / "absent" / "hdfs"


def _models(events: bool) -> list:
    return ["markov", "markov+history", *(["markov+history+recent"] if events else []), *BASELINES]


def _check_backtest(result, horizon: int, expected: list) -> None:
    """Every model scored at every horizon on the same origins, probabilities in [0, 1], metrics finite
    where defined, and the history-aware chain a different model from the plain one."""
    assert result.models == expected
    pooled = result.metrics[result.metrics["fold"] == "mean"]
    assert sorted(map(tuple, pooled[["model", "horizon"]].to_numpy().tolist())) == sorted(
        (m, h) for m in expected for h in range(1, horizon + 1))
    # one row per (fold, horizon, model) too, for every fold
    per_fold = result.metrics[result.metrics["fold"] != "mean"]
    assert per_fold.groupby(["fold", "horizon"])["model"].apply(
        lambda m: sorted(m) == sorted(expected)).all()
    pred = result.predictions
    assert set(pred["model"].unique()) == set(expected)
    assert pred["p"].between(0.0, 1.0).all()
    assert set(pred["y"].unique()) <= {0, 1}
    # the same origins, in the same order, with the same outcomes for every model
    keys = pred[pred["model"] == "markov"][["fold", "origin_step", "horizon", "y"]].to_numpy()
    for model in expected:
        other = pred[pred["model"] == model][["fold", "origin_step", "horizon", "y"]].to_numpy()
        assert np.array_equal(other, keys), model
    assert pooled["n_pos"].sum() > 0, "the small backtest must see failures"
    for row in result.metrics.itertuples():
        if row.n == 0:
            continue
        for metric in ("brier", "log_loss", "ece"):
            assert np.isfinite(getattr(row, metric)), (row.model, row.horizon, metric)
        defined = 0 < row.n_pos < row.n
        for metric in ("roc_auc", "average_precision"):
            assert np.isfinite(getattr(row, metric)) == defined, (row.model, row.horizon, metric)
        assert np.isfinite(row.bss) == (row.brier_ref > 0), (row.model, row.horizon, "bss")
    # the history-aware chain is not the plain chain under another name
    p = pred.pivot_table(index=["fold", "origin_step", "horizon"], columns="model", values="p",
                         observed=True)
    assert not np.allclose(p["markov+history"], p["markov"])
    summary = result.summary()
    assert len(summary) == len(expected) * horizon
    for model in ("markov", "markov+history"):
        assert model in result.verdict(model=model)


def _backtest_both(ex, frame, cutoffs, *, events: bool):
    """The small backtest, as run() does it: read once, plain chain + baselines, then the config's
    history-aware chain on the same origins."""
    model = ex.predictor()
    hist = mf.read_histories(frame, columns=model.columns)
    kwargs = {"event_mix": ("long_run", "recent"), "recent_window": ex.RECENT_WINDOW} if events else {}
    result = ex._common().backtest_both(hist, model, horizon=3, cutoffs=cutoffs, n_jobs=1,
                                        progress=False, **kwargs)
    assert result.params["history"] == HistorySpec.from_config(model.history).to_config()
    assert not HistorySpec.from_config(model.history).is_plain
    return result


def _check_selection(ex, data) -> None:
    """The config's [states.history] is what --select chooses, and it beats the plain chain held out."""
    table, chosen = ex.select(data)
    assert chosen == HistorySpec.from_config(ex.predictor().history).to_config()
    assert len(table) == len(ex.CANDIDATES) and (table["chosen"] == "<-").sum() == 1
    assert table["heldout_loglik"].is_monotonic_decreasing
    plain = table[(table["order"] == 1) & (table["failure_window"] == 0)]["heldout_loglik"].item()
    assert table.loc[table["chosen"] == "<-", "heldout_loglik"].item() > plain


# --------------------------------------------------------------------- Backblaze
def test_backblaze_example():
    data = _data("backblaze")
    ex = _example("backblaze")
    frame = ex.load(data)
    model = ex.predictor()
    hist = mf.read_histories(frame, columns=model.columns)
    report = hist.attrs["read_report"]

    # LOAD.md: 868,524 drive-days, 22,892 drives, 40 days, 120 failures on 2,610 drive-days of failed drives
    assert report.n_rows_read == report.n_rows_kept == 868_524
    assert report.n_entities == 22_892
    assert hist["time"].nunique() == 40
    assert int(hist["failure"].sum()) == 120
    failed = hist.loc[hist["failure"] == 1, "entity"]
    assert int(hist["entity"].isin(failed).sum()) == 2_610
    # the failure is each failed drive's last record
    last = hist.groupby("entity")["time"].transform("max")
    assert not ((hist["failure"] == 1) & (hist["time"] != last)).any()
    # events: which error counters rose (187 and 198 are empty in this subset); a first day is "none"
    assert hist["event"].value_counts().to_dict() == {
        "none": 864_140, "realloc": 3_764, "pending": 458, "realloc+pending": 162}
    first = ~hist["entity"].duplicated()
    assert (hist.loc[first, "event"] == "none").all()

    # a small backtest: every failed drive and 1,200 others, two weekly cutoffs, 3 days ahead
    drives = np.sort(frame["serial_number"].unique())
    keep = set(failed) | set(drives[:1200])
    small = frame[frame["serial_number"].isin(keep)]
    result = _backtest_both(ex, small, ["2013-05-03", "2013-05-10"], events=True)
    assert result.params["rows_read"] == len(small)
    _check_backtest(result, horizon=3, expected=_models(events=True))
    _check_selection(ex, data)


# -------------------------------------------------------------------------- HDFS
@pytest.mark.filterwarnings("ignore:states .* were never left in training:markovfault.exceptions.DataWarning")
def test_hdfs_example():
    data = _data("hdfs")
    ex = _example("hdfs")
    frame = ex.load(data)
    model = ex.predictor()
    hist = mf.read_histories(frame, columns=model.columns)
    report = hist.attrs["read_report"]

    # LOAD.md: 21,693 sessions (4,855 normal + 16,838 anomalous), 379,943 steps, 5,709 exception steps;
    # 5,231 anomalous and no normal sessions hold an exception
    assert report.n_rows_read == report.n_rows_kept == 379_943
    assert report.n_entities == 21_693
    sess = frame.assign(error=frame["key"].isin(ex.ERROR_KEYS)).groupby("block").agg(
        anomalous=("session_anomalous", "first"), error=("error", "any"))
    assert int((~sess["anomalous"]).sum()) == 4_855 and int(sess["anomalous"].sum()) == 16_838
    assert int(hist["status"].isin(ex.ERROR_KEYS).sum()) == 5_709
    assert int(sess.loc[sess["anomalous"], "error"].sum()) == 5_231
    assert int(sess.loc[~sess["anomalous"], "error"].sum()) == 0
    # the clock: one tick per line, each session contiguous and in its own order
    assert frame["clock"].is_unique and frame["clock"].is_monotonic_increasing
    assert (frame.groupby("block")["step"].diff().dropna() == 1).all()
    # the seeded order mixes normal and anomalous sessions
    assert 0.1 < frame.loc[frame["clock"] < len(frame) // 2, "session_anomalous"].mean() < 0.9
    fitted = ex.predictor().fit(frame)
    assert fitted.failure_states_ == list(ex.ERROR_KEYS)

    small = ex.load(data, max_sessions=1_500)
    assert small["block"].nunique() == 1_500
    result = _backtest_both(ex, small, ex.cutoffs(small, (0.6, 0.8)), events=True)
    _check_backtest(result, horizon=3, expected=_models(events=True))
    _check_selection(ex, data)


# --------------------------------------------------------------------------- NAB
def test_nab_example():
    data = _data("nab")
    ex = _example("nab")
    frame = ex.load(data)
    model = ex.predictor()
    hist = mf.read_histories(frame, columns=model.columns)
    report = hist.attrs["read_report"]

    # LOAD.md: 137,301 rows, 24 series, 51 label points, 12,906 rows inside windows
    assert report.n_rows_read == 137_301
    assert report.n_entities == 24
    assert int(frame["label_point"].sum()) == 51
    assert int(frame["in_window"].sum()) == 12_906
    # failures: from a label point to its window's end, so inside windows; 23 series have some
    assert frame.loc[frame["anomaly"] == 1, "in_window"].all()
    assert 0 < int(frame["anomaly"].sum()) < 12_906
    assert frame.groupby("series")["anomaly"].max().sum() == 23
    # the first MIN_PERIODS rows of each series have no z-score and are dropped (and counted)
    assert report.dropped == {"missing_metric": 24 * ex.MIN_PERIODS}
    assert report.missing_metrics == {"z": 24 * ex.MIN_PERIODS}
    assert np.isfinite(hist["z"]).all() and hist["z"].abs().max() <= 10
    assert (hist.groupby("entity")["time"].diff().dropna() > 0).all()

    # a small backtest: six series, two cutoffs, 3 samples ahead
    names = sorted(frame["series"].unique())
    some = [n for n in names if "realKnownCause" in n][:3] + [n for n in names if "ec2_cpu" in n][:3]
    small = frame[frame["series"].isin(some)]
    result = _backtest_both(ex, small, ex.cutoffs((0.4, 0.7)), events=False)
    _check_backtest(result, horizon=3, expected=_models(events=False))
    onset = ex.onset_scores(result, 3)
    assert list(onset["model"]) == result.models and (onset["n_pos"] > 0).all()
    _check_selection(ex, data)


# ------------------------------------------------------------ no data, clear exit
@pytest.mark.parametrize("name", ["backblaze", "hdfs", "nab"])
def test_example_without_data_exits_clearly(name, tmp_path, capsys):
    ex = _example(name)
    code = ex.main(["--data", str(tmp_path / "absent"), "--out", str(tmp_path / "out")])
    assert code == 66
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--data" in err and "not found" in err
    assert not (tmp_path / "out").exists()
