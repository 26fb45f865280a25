"""The group context on every path that fits, selects or forecasts: partial_fit, chunked fits, Dask,
select_states, model files and the job.

The reference of every incremental or distributed fit is one in-memory fit on everything; what the
group context sees is re-counted with pandas from the raw rows (a self-merge on the group column).
"""

import copy
import tomllib

import numpy as np
import pandas as pd
import pytest

import markovfault as mf
from markovfault.exceptions import HistoryError, MissingColumnError
from markovfault.simulate import simulate_histories

COLUMNS = {"entity": "handler", "time": "timestamp", "event": "event_type", "status": "status",
           "event_id": "event_id", "group": "team"}
FAILURE = ["error", "timeout", "down"]
STATES = {"kind": "categorical", "states": ["ok", "slow", "error", "timeout", "down"],
          "failure": FAILURE}
WINDOW = "3min"
HISTORY = {"failure_window": 2, "group_window": WINDOW, "group_levels": 3}
quiet = pytest.mark.filterwarnings("ignore::markovfault.exceptions.DataWarning")


def _simulated(seed=3, n_handlers=12, n_steps=90):
    """Handlers in 3 groups of 4 whose shared dependency goes down now and then; the group column is
    named ``team``."""
    hist = simulate_histories(n_handlers, n_steps, random_state=seed, with_metrics=False,
                              flaky_fraction=0.0, memory_window=3, n_groups=3, clock="aligned",
                              group_outage_rate=0.05, group_outage_length=5.0,
                              group_outage_boost=8.0)
    return hist.drop(columns=["handler_class"]).rename(columns={"group": "team"})


@pytest.fixture(scope="module")
def hist():
    return _simulated()


def model(history=HISTORY, **kw):
    return mf.FaultPredictor(states=STATES, columns=COLUMNS, history=history, **kw)


def pandas_group_counts(frame, window=WINDOW, count="onsets"):
    """For every row of ``frame`` (raw column names): the failures of the other members of its team at
    times in [t - window, t), re-counted with pandas (``count``: "onsets" or "steps")."""
    f = frame.sort_values(["handler", "timestamp"], kind="stable").reset_index(drop=True)
    fail = f["status"].isin(FAILURE)
    if count == "onsets":
        fail = fail & ~fail.groupby(f["handler"]).shift(fill_value=False).astype(bool)
    events = f.loc[fail, ["handler", "team", "timestamp"]]
    m = f.reset_index().merge(events, on="team", suffixes=("", "_f"))
    w = pd.Timedelta(window)
    m = m[(m["handler_f"] != m["handler"]) & (m["timestamp_f"] >= m["timestamp"] - w)
          & (m["timestamp_f"] < m["timestamp"])]
    f["n"] = m.groupby("index").size().reindex(f.index, fill_value=0).to_numpy()
    return f


def pandas_exo_totals(frame, levels=3, count="onsets"):
    """M summed by (base state left, group level entered): a pandas cross table of the transitions."""
    f = pandas_group_counts(frame, count=count)
    prev = f.groupby("handler")["status"].shift()
    inner = prev.notna()
    level = np.minimum(f["n"], levels - 1)
    return pd.crosstab(prev[inner], level[inner])


def exo_by_base(fitted):
    """The fitted exogenous counts summed over the history of the state left, by its base state."""
    counts = fitted.chain_.counts_
    S = len(fitted.state_names_)
    out = np.zeros((S, counts.exo.shape[1]), dtype=np.int64)
    np.add.at(out, counts.codes % S, counts.exo)
    return pd.DataFrame(out, index=fitted.state_names_)


def assert_same_fit(got, want):
    """The counts (with the exogenous ones), the vocabularies and what each model remembers."""
    a, b = got.chain_.counts_, want.chain_.counts_
    np.testing.assert_array_equal(a.codes, b.codes)
    np.testing.assert_array_equal(a.counts, b.counts)
    np.testing.assert_array_equal(a.exo, b.exo)
    assert got.event_names_ == want.event_names_ and got.state_names_ == want.state_names_
    pd.testing.assert_frame_equal(got.last_seen_, want.last_seen_)
    pd.testing.assert_frame_equal(got.group_failures_, want.group_failures_)


def _cut(hist, q):
    return hist["timestamp"].quantile(q)


# ------------------------------------------------------------------------------- the reference
@quiet
@pytest.mark.parametrize("count", ["onsets", "steps"])
def test_one_fit_counts_what_pandas_recounts(hist, count):
    fitted = model({**HISTORY, "group_count": count}).fit(hist)
    want = pandas_exo_totals(hist, count=count)
    got = exo_by_base(fitted).loc[want.index, want.columns]
    np.testing.assert_array_equal(got.to_numpy(), want.to_numpy())
    assert (want.to_numpy()[:, 1:].sum() > 50) and want.shape[1] == 3  # the context is not idle


# ----------------------------------------------------------------- partial_fit and chunked fits
@quiet
@pytest.mark.parametrize("count", ["onsets", "steps"])
def test_partial_fit_in_time_order_equals_one_fit(hist, count):
    spec = {**HISTORY, "group_count": count, "order": 2}
    t = hist["timestamp"]
    cuts = [_cut(hist, 0.4), _cut(hist, 0.41), _cut(hist, 0.7)]  # one batch shorter than the window
    pieces = [hist[t < cuts[0]]] + [hist[(t >= lo) & (t < hi)] for lo, hi in zip(cuts, cuts[1:])]
    pieces.append(hist[t >= cuts[-1]])
    assert 0 < len(pieces[1]) < 20
    inc = model(spec).fit(pieces[0].sample(frac=1.0, random_state=1))
    for piece in pieces[1:]:
        inc.partial_fit(piece.sample(frac=1.0, random_state=2))
    one = model(spec).fit(hist)
    assert_same_fit(inc, one)
    assert set(one.last_seen_.columns) == {"time", "event", "state", "group", "group_failures"}
    pd.testing.assert_frame_equal(inc.predict(None, horizon=4), one.predict(None, horizon=4))


@quiet
def test_partial_fit_of_a_new_group_at_the_same_times_equals_one_fit(hist):
    new = hist["team"] == hist["team"].max()
    inc = model().fit(hist[~new]).partial_fit(hist[new])
    assert_same_fit(inc, model().fit(hist))


@quiet
def test_partial_fit_with_steps_before_the_latest_of_their_group_is_refused(hist):
    held = hist["handler"] == hist["handler"].iloc[0]
    team = hist.loc[held, "team"].iloc[0]
    fitted = model().fit(hist[~held])
    before = copy.deepcopy(fitted)
    with pytest.raises(HistoryError, match=rf"group {team!r}.*before the latest step.*Fix"):
        fitted.partial_fit(hist[held])
    assert_same_fit(fitted, before)  # nothing counted


@quiet
def test_chunked_fit_of_a_time_ordered_export_equals_one_fit(hist, tmp_path):
    path = tmp_path / "by_time.csv"
    hist.sort_values("timestamp", kind="stable").to_csv(path, index=False)
    streamed = model().fit(path, chunksize=97)
    assert_same_fit(streamed, model().fit(path))


@quiet
def test_chunked_fit_of_an_export_by_handler_is_refused(hist, tmp_path):
    path = tmp_path / "by_handler.csv"
    hist.to_csv(path, index=False)
    with pytest.raises(HistoryError, match=r"chunksize.*time order.*group.*Fix: sort the export by time"):
        model().fit(path, chunksize=200)


@quiet
def test_fit_on_a_list_of_files_equals_one_fit(hist, tmp_path):
    paths = []
    for k, team in enumerate(sorted(hist["team"].unique())):
        paths.append(tmp_path / f"team{k}.parquet")
        hist[hist["team"] == team].to_parquet(paths[-1], index=False)
    assert_same_fit(model().fit(paths), model().fit(hist))


# ----------------------------------------------------------------------------- model files
@quiet
def test_a_saved_group_model_forecasts_new_rows_as_the_whole_history_does(hist, tmp_path):
    t = hist["timestamp"]
    cut = _cut(hist, 0.6)
    old, new = hist[t < cut], hist[(t >= cut) & (t < cut + pd.Timedelta("90s"))]
    fitted = model().fit(old)
    fitted.save(tmp_path / "m.npz")
    loaded = mf.load_model(tmp_path / "m.npz")
    assert_same_fit(loaded, fitted)
    got = loaded.predict(new, horizon=4)
    pd.testing.assert_frame_equal(got, fitted.predict(new, horizon=4))
    pd.testing.assert_frame_equal(loaded.predict(None, horizon=4), fitted.predict(None, horizon=4))
    # the new rows are shorter than the window: their group context reaches into the training rows,
    # which the model remembers; forecasting from the whole history gives the same
    whole = fitted.predict(pd.concat([old, new]), horizon=4)
    whole = whole[whole["entity"].isin(got["entity"])].reset_index(drop=True)
    whole["entity"] = whole["entity"].cat.remove_unused_categories()
    pd.testing.assert_frame_equal(got, whole)
    # and a loaded model adds new rows as the saved one does
    assert_same_fit(loaded.partial_fit(new), fitted.partial_fit(new))


@quiet
def test_forecast_rows_without_the_group_column_are_a_clear_error(hist):
    fitted = model().fit(hist)
    with pytest.raises(MissingColumnError, match="'team'"):
        fitted.predict(hist.drop(columns=["team"]), horizon=2)
    canonical = mf.read_histories(hist, columns={**COLUMNS, "group": None})
    with pytest.raises(HistoryError, match=r"group column.*\[columns\] group"):
        fitted.predict(canonical, horizon=2)


# --------------------------------------------------------------------------------- selection
@quiet
def test_select_states_scores_group_candidates_as_their_fitted_models_do(hist):
    from markovfault.predictor._updates import encode_with
    from markovfault.selection import select_states

    plain, grp = {"failure_window": 2}, HISTORY
    res = select_states(hist, model(None), candidates=[plain, grp], horizon=3, cutoffs=2)
    assert len(res.table) == 2 and res.table["heldout_loglik"].is_monotonic_decreasing
    t = hist["timestamp"]
    split = np.quantile(t.astype("int64"), 0.75, method="higher")
    for spec in (plain, grp):
        # the reference: a model fitted on the steps before the split, scoring every later transition
        # from the state its whole history puts it in (log Q(e | a) + log P(j | a, e))
        ref = model(spec).fit(hist[t.astype("int64") < split])
        frame = mf.read_histories(hist, columns=COLUMNS)
        traj = encode_with(ref, frame, ref.states_.transform(frame), ref.event_names_)
        rows = ref.chain_.encode(traj)
        test = (traj.time[1:] >= split) & ~traj.is_run_start()[1:]
        e, a, j = traj.event[1:][test], rows[:-1][test], traj.state[1:][test]
        ll = np.log(ref.chain_.next_probs_[e, a, j]) + np.log(ref.chain_.event_probs_[a, e])
        got = res.table[res.table["group_levels"].fillna(0) == spec.get("group_levels", 0)]
        assert got["heldout_loglik"].iloc[0] == pytest.approx(ll.mean(), rel=1e-10)
        bt = mf.backtest(hist, model(spec), horizon=3, cutoffs=2, baselines=[], progress=False,
                         n_boot=0)
        mean = bt.metrics[bt.metrics["fold"] == "mean"]
        assert got["bss"].iloc[0] == pytest.approx(mean["bss"].mean(), rel=1e-12)


def test_candidate_specs_with_and_without_the_group_context():
    from markovfault.selection import candidate_specs
    from markovfault.states import HistorySpec

    got = candidate_specs(orders=(1,), failure_windows=(2,), group_levels=(0, 3), group_window=WINDOW,
                          group_count="steps")
    assert got == [HistorySpec(failure_window=2),
                   HistorySpec(failure_window=2, group_window=WINDOW, group_levels=3,
                               group_count="steps")]


def test_the_chosen_group_context_is_printed_as_a_valid_toml_table():
    from markovfault.selection import SelectionResult
    from markovfault.states import HistorySpec

    best = HistorySpec(failure_window=2, group_window=WINDOW, group_levels=3, backoff="auto")
    printed = SelectionResult(pd.DataFrame(), best, "heldout_loglik").best_config()
    assert HistorySpec.from_config(tomllib.loads(printed)["states"]["history"]) == best


@quiet
def test_select_states_command_with_a_group_column(hist, tmp_path, capsys):
    from markovfault.cli import main

    hist.to_csv(tmp_path / "h.csv", index=False)
    cols = "".join(f'{k} = "{v}"\n' for k, v in COLUMNS.items())
    (tmp_path / "c.toml").write_text(
        f"[columns]\n{cols}\n[states]\nkind = \"categorical\"\nfailure = {FAILURE!r}\n".replace("'", '"')
        + f'\n[states.history]\nfailure_window = 2\ngroup_window = "{WINDOW}"\ngroup_levels = 3\n')
    code = main(["select-states", str(tmp_path / "h.csv"), "--config", str(tmp_path / "c.toml"),
                 "--orders", "1", "--failure-windows", "2", "--entering-event", "no",
                 "--horizon", "2", "--cutoffs", "2"])
    out = capsys.readouterr().out
    assert code == 0
    table = out[:out.index("best by")]
    assert "group_levels" in table and len(table.strip().splitlines()) == 3  # header, two candidates
    chosen = tomllib.loads(out[out.index("[states.history]"):])["states"]["history"]
    assert mf.states.HistorySpec.from_config(chosen).failure_window == 2


# -------------------------------------------------------------------------------------- job
JOB = """
[columns]
{columns}
[states]
kind = "categorical"
states = ["ok", "slow", "error", "timeout", "down"]
failure = ["error", "timeout", "down"]

[states.history]
failure_window = 2
group_window = "{window}"
group_levels = 3

[job]
input = "in"
output = "out"
horizons = [1, 3]
threshold = 0.2
"""


@quiet
def test_job_with_a_group_context_runs_end_to_end(hist, tmp_path):
    from markovfault.job import load_job_config, run_job

    (tmp_path / "in").mkdir()
    start = hist["timestamp"].min().floor("20min")
    slot = ((hist["timestamp"] - start) // pd.Timedelta("20min")).astype(int)
    for k in sorted(slot.unique()):
        hist[slot == k].to_csv(tmp_path / "in" / f"export-{k}.csv", index=False)
    cols = "".join(f'{k} = "{v}"\n' for k, v in COLUMNS.items())
    (tmp_path / "job.toml").write_text(JOB.format(columns=cols, window=WINDOW))
    job = load_job_config(tmp_path / "job.toml")
    for as_of in (start + pd.Timedelta("40min"), start + pd.Timedelta("65min")):
        result = run_job(job, as_of=as_of.isoformat())
        assert result.status == "ok" and result.exit_code == 0
        table = pd.read_parquet(result.partition / "forecast.parquet")
        # the reference: one fit on every row before the as-of, forecasting from the last steps
        ref = model().fit(hist[hist["timestamp"] < as_of])
        want = ref.predict(None, horizon=3)
        want = want[want["horizon"].isin([1, 3])]
        np.testing.assert_allclose(table["p_fail"].to_numpy(), want["p_fail"].to_numpy(), rtol=1e-12)
        assert table["entity"].tolist() == want["entity"].astype(str).tolist()
        saved = mf.load_model(tmp_path / "out" / "model.npz")
        assert_same_fit(saved, ref)


# ------------------------------------------------------------------------------------- dask
@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, host="127.0.0.1")
    client = distributed.Client(cluster, timeout="60s")
    yield client
    client.close()
    cluster.close()


def _ddf(frame, tmp_path, n=4, seed=0):
    """``frame`` written over ``n`` Parquet files, rows shuffled: every team spans every file."""
    dd = pytest.importorskip("dask.dataframe")
    frame = frame.iloc[np.random.default_rng(seed).permutation(len(frame))].reset_index(drop=True)
    root = tmp_path / f"parts{seed}"
    root.mkdir()
    for k, rows in enumerate(np.array_split(np.arange(len(frame)), n)):
        frame.iloc[rows].to_parquet(root / f"part-{k}.parquet", index=False)
    return dd.read_parquet(str(root))


@quiet
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::ResourceWarning")
def test_dask_fit_predict_and_partial_fit_equal_in_memory(client, hist, tmp_path):
    ddf = _ddf(hist, tmp_path)
    want = model().fit(hist)
    got = model().fit(ddf)
    assert_same_fit(got, want)
    # what the group context saw on the partitions: every member of the team (pandas re-count)
    expected = pandas_exo_totals(hist)
    np.testing.assert_array_equal(exo_by_base(got).loc[expected.index, expected.columns].to_numpy(),
                                  expected.to_numpy())
    pd.testing.assert_frame_equal(got.predict(ddf, horizon=3), want.predict(hist, horizon=3))
    # partial_fit on dask: the later rows, over partitions that split every team
    t = hist["timestamp"]
    cut = _cut(hist, 0.55)
    fitted = model().fit(hist[t < cut])
    on_dask = copy.deepcopy(fitted).partial_fit(_ddf(hist[t >= cut], tmp_path, n=3, seed=1))
    assert_same_fit(on_dask, want)
    pd.testing.assert_frame_equal(on_dask.predict(None, horizon=3), want.predict(None, horizon=3))
    held = hist["handler"] == hist["handler"].iloc[0]
    with pytest.raises(HistoryError, match=r"before the latest step.*Fix"):
        model().fit(hist[~held]).partial_fit(_ddf(hist[held], tmp_path, n=2, seed=2))


@quiet
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::ResourceWarning")
def test_dask_backtest_with_groups_equals_in_memory(client, hist, tmp_path):
    kw = dict(horizon=3, cutoffs=2, baselines=["climatology"], origins="every_step", progress=False)
    want = mf.backtest(hist, model(), **kw)
    got = mf.backtest(_ddf(hist, tmp_path), model(), **kw)
    pd.testing.assert_frame_equal(got.predictions, want.predictions)
    pd.testing.assert_frame_equal(got.metrics, want.metrics)


@quiet
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::ResourceWarning")
def test_dask_refuses_a_handler_in_two_groups(client, hist, tmp_path):
    bad = hist.copy()
    who = bad["handler"].iloc[0]
    bad.loc[bad.index[(bad["handler"] == who).to_numpy()][-5:], "team"] = "elsewhere"
    with pytest.raises(HistoryError, match=rf"{who!r} is in more than one group"):
        model().fit(bad)
    with pytest.raises(HistoryError, match=rf"{who!r} is in more than one group"):
        model().fit(_ddf(bad, tmp_path))


@quiet
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::ResourceWarning")
def test_a_handler_that_moves_to_another_group_is_refused_in_memory_and_on_dask(client, hist, tmp_path):
    t = hist["timestamp"]
    cut = _cut(hist, 0.5)
    later = hist[t >= cut].copy()
    who = later["handler"].iloc[0]
    later.loc[later["handler"] == who, "team"] = "elsewhere"
    fitted = model().fit(hist[t < cut])
    for batch in (later, _ddf(later, tmp_path, n=4, seed=3)):
        with pytest.raises(HistoryError, match=rf"{who!r} is in more than one group"):
            copy.deepcopy(fitted).partial_fit(batch)
