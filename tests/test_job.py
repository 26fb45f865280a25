"""The scheduled job (`markovfault forecast`), run as real processes on real files.

Hourly exports of a simulated order service are written into an input directory hour by
hour; every run is `python -m markovfault.cli forecast --config job.toml --as-of ...`.
Crashes are real SIGKILLs: MARKOVFAULT_JOB_CRASH_AT=<point> makes the job kill itself there.
"""

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from markovfault import load_model
from markovfault.simulate import simulate_histories

T = {h: f"2026-01-01T{h:02d}:00:00Z" for h in range(5)}  # as-of at the end of hour h-1
RUN = {h: f"20260101T{h:02d}0000Z" for h in range(5)}
CONFIG = """
[columns]
entity = "handler"
time = "timestamp"
event = "event_type"
status = "status"
event_id = "event_id"

[states]
kind = "categorical"
states = ["ok", "slow", "error", "timeout", "down"]
failure = ["error", "timeout", "down"]

[job]
input = "in"
output = "{output}"
horizons = [1, 3, 10]
threshold = 0.2
retention = 2
"""
# while reading, after the model write, half-way through the partition, half-way through the latest
# Prometheus textfile, before and after the commit
CRASH_POINTS = ["reading", "model_written", "output", "prometheus", "outputs_written", "committed"]
# the lines of a Prometheus textfile that hold the wall clock, so that no two runs write the same
WALL_CLOCK = (b"markovfault_last_success_timestamp_seconds ", b"markovfault_run_duration_seconds ")


# ----------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Hourly export files of 12 handlers over 4 hours; CSV for even hours, Parquet for odd."""
    d = tmp_path_factory.mktemp("exports")
    hist = simulate_histories(n_handlers=12, n_steps=240, random_state=7, duplicate_rate=0.02)
    hour = hist["timestamp"].dt.floor("h").dt.hour
    files = {}
    for h in range(4):
        part = hist[hour == h]
        if h % 2 == 0:
            files[h] = d / f"orders-2026010100{h}.csv"
            part.to_csv(files[h], index=False)
        else:
            files[h] = d / f"orders-2026010100{h}.parquet"
            part.to_parquet(files[h], index=False)
    return files


def make_job(path: Path, exports, hours, output="out") -> Path:
    (path / "in").mkdir(parents=True)
    for h in hours:
        shutil.copy2(exports[h], path / "in")
    cfg = path / "job.toml"
    cfg.write_text(CONFIG.format(output=output))
    return cfg


def command(cfg, as_of=None, *extra):
    argv = [sys.executable, "-m", "markovfault.cli", "forecast", "--config", str(cfg)]
    return argv + (["--as-of", as_of] if as_of else []) + list(extra)


def forecast(cfg, as_of=None, *extra, env=None):
    proc = subprocess.run(command(cfg, as_of, *extra), capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)
    proc.logs = logs(proc.stderr)
    return proc


def logs(stderr: str) -> list:
    """Every stderr line is one JSON object."""
    return [json.loads(line) for line in stderr.splitlines() if line.strip()]


def events(proc) -> dict:
    return {rec.get("event"): rec for rec in proc.logs if rec.get("event")}


def snapshot(out: Path) -> dict:
    """Every file and symlink under ``out`` (but the lock): bytes, or the link target; a Prometheus
    textfile without its wall-clock lines (the time it was written, the duration)."""
    snap = {}
    for p in sorted(out.rglob("*")):
        if p.name == ".lock":
            continue
        if p.is_symlink():
            snap[str(p.relative_to(out))] = "-> " + os.readlink(p)
        elif p.is_file():
            data = p.read_bytes()
            if p.suffix == ".prom":
                data = b"\n".join(line for line in data.split(b"\n") if not line.startswith(WALL_CLOCK))
            snap[str(p.relative_to(out))] = data
    return snap


def drop_line(snap: dict, prefix: bytes) -> dict:
    """``snap`` with the lines starting with ``prefix`` dropped from its Prometheus textfiles."""
    return {k: b"\n".join(line for line in v.split(b"\n") if not line.startswith(prefix))
            if k.endswith(".prom") else v for k, v in snap.items()}


def partitions(out: Path) -> dict:
    """The visible partition files (temporary files of a killed run start with a dot)."""
    return {k: v for k, v in snapshot(out).items()
            if k.startswith("runs/") and not any(c.startswith(".") for c in k.split("/"))}


def watermark(out: Path) -> dict:
    wm = json.loads((out / "watermark.json").read_text())
    for run in wm["runs"]:
        run.pop("started_at"), run.pop("finished_at")
    wm.pop("input")
    return wm


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst / "job.toml"


def check_consistent(out: Path) -> dict:
    """What a reader may rely on at any instant: a valid watermark naming a loadable model,
    a complete partition for every run it lists, and only complete files under visible names."""
    wm = json.loads((out / "watermark.json").read_text())
    load_model(out / wm["model"])
    for run in wm["runs"]:
        assert (out / "runs" / run["run_id"]).is_dir()
    for part in (out / "runs").iterdir():
        if part.name.startswith("."):
            continue  # a temporary directory of the killed run
        pq = pd.read_parquet(part / "forecast.parquet")
        csv = pd.read_csv(part / "forecast.csv")
        assert len(pq) == len(csv) > 0 and list(pq.columns) == list(csv.columns)
    return wm


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def base(tmp_path_factory, exports):
    """The first run (hour 0 exported, as-of 01:00): no model yet, so one is trained."""
    d = tmp_path_factory.mktemp("base")
    cfg = make_job(d, exports, [0])
    proc = forecast(cfg, T[1])
    assert proc.returncode == 0, proc.stderr
    ev = events(proc)
    assert "model_trained" in ev and ev["run_finished"]["entities"] == 12
    return d


@pytest.fixture(scope="module")
def reference(tmp_path_factory, base, exports):
    """An uninterrupted second run: hour 1 exported, as-of 02:00."""
    d = tmp_path_factory.mktemp("reference") / "job"
    cfg = copy(base, d)
    shutil.copy2(exports[1], d / "in")
    proc = forecast(cfg, T[2])
    assert proc.returncode == 0, proc.stderr
    return d


# -------------------------------------------------------------------------- tests
def test_first_run_layout_columns_and_json_logs(base):
    out = base / "out"
    assert os.readlink(out / "model.npz") == f"model.{RUN[1]}.npz"
    assert os.readlink(out / "latest") == f"runs/{RUN[1]}"
    assert (out / ".lock").read_text() == ""  # released; no holder left
    frame = pd.read_parquet(out / "runs" / RUN[1] / "forecast.parquet")
    assert list(frame.columns) == ["run_id", "issued_at", "data_cutoff", "entity", "state",
                                   "horizon", "p_fail", "p_fail_lo", "p_fail_hi", "alert", "threshold",
                                   "n_support", "model_version", "last_seen"]
    assert len(frame) == 12 * 3 and sorted(frame["horizon"].unique()) == [1, 3, 10]
    assert (frame["run_id"] == RUN[1]).all() and (frame["model_version"] == f"model.{RUN[1]}.npz").all()
    assert (frame["data_cutoff"] == pd.Timestamp(T[1])).all()
    assert (frame["last_seen"] < pd.Timestamp(T[1])).all()
    assert (frame["alert"] == (frame["p_fail"] >= 0.2)).all() and (frame["threshold"] == 0.2).all()
    model = load_model(out / "model.npz")
    support = dict(zip(model.state_names_, model.chain_.state_support()))
    assert (frame["n_support"] == frame["state"].map(support)).all()
    # the bounds are the model's 90% interval, seed 0
    pred = model.predict(None, horizon=10, interval=0.9, random_state=0).set_index(["entity", "horizon"])
    want = pred.loc[list(zip(frame["entity"], frame["horizon"]))]
    np.testing.assert_array_equal(frame["p_fail_lo"].to_numpy(), want["p_fail_lo"].to_numpy())
    np.testing.assert_array_equal(frame["p_fail_hi"].to_numpy(), want["p_fail_hi"].to_numpy())
    assert (frame["p_fail_lo"] < frame["p_fail_hi"]).all()
    csv = pd.read_csv(out / "runs" / RUN[1] / "forecast.csv")
    np.testing.assert_array_equal(csv["p_fail"], frame["p_fail"])  # full precision in CSV
    wm = json.loads((out / "watermark.json").read_text())
    assert wm["data_cutoff"] == T[1] and list(wm["files"]) == ["orders-20260101000.csv"]


def test_sigkill_at_every_point_then_the_next_run_equals_an_uninterrupted_one(
        tmp_path, base, reference, exports):
    expected = partitions(reference / "out")
    cfgs = {}
    for point in CRASH_POINTS:
        cfgs[point] = copy(base, tmp_path / point)
        shutil.copy2(exports[1], tmp_path / point / "in")
    procs = {p: subprocess.Popen(command(cfg, T[2]), stderr=subprocess.PIPE, text=True,
                                 env={**os.environ, "MARKOVFAULT_JOB_CRASH_AT": p})
             for p, cfg in cfgs.items()}
    for point, proc in procs.items():
        proc.communicate(timeout=120)
        assert proc.returncode == -signal.SIGKILL, point
        out = tmp_path / point / "out"
        wm = check_consistent(out)
        assert wm["data_cutoff"] == (T[2] if point == "committed" else T[1]), point
        # the previous partitions are intact; the new one is complete or absent
        visible = partitions(out)
        assert {k: v for k, v in visible.items() if RUN[1] in k} == partitions(base / "out")
        assert {k: v for k, v in visible.items() if RUN[2] in k} in (
            {}, {k: v for k, v in expected.items() if RUN[2] in k}), point
        # the latest Prometheus textfile is the previous run's or the new one, complete
        assert snapshot(out)["markovfault.prom"] in (snapshot(base / "out")["markovfault.prom"],
                                                     snapshot(reference / "out")["markovfault.prom"]), point
        if point == "prometheus":  # killed half-way through it: the old one, and the run's own complete
            assert snapshot(out)["markovfault.prom"] == snapshot(base / "out")["markovfault.prom"]
            assert visible[f"runs/{RUN[2]}/forecast.prom"] == expected[f"runs/{RUN[2]}/forecast.prom"]
            assert [p.name for p in out.glob(".markovfault.prom.*.tmp")]  # the half-written temporary
    procs = {p: subprocess.Popen(command(cfg, T[2]), stderr=subprocess.PIPE, text=True)
             for p, cfg in cfgs.items()}
    for point, proc in procs.items():
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, (point, err)
        out = tmp_path / point / "out"
        assert partitions(out) == expected, point
        assert watermark(out) == watermark(reference / "out"), point
        assert snapshot(out).keys() == snapshot(reference / "out").keys(), point  # no leftovers
        assert "stale_lock" in {r.get("event") for r in logs(err)}, point


def test_sigkill_during_the_first_run_then_it_trains_as_if_never_killed(tmp_path, base, exports):
    cfg = make_job(tmp_path, exports, [0])
    proc = forecast(cfg, T[1], env={"MARKOVFAULT_JOB_CRASH_AT": "model_written"})
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "out" / "watermark.json").exists()
    assert not os.path.lexists(tmp_path / "out" / "model.npz")
    proc = forecast(cfg, T[1])
    assert proc.returncode == 0, proc.stderr
    assert snapshot(tmp_path / "out").keys() == snapshot(base / "out").keys()
    assert partitions(tmp_path / "out") == partitions(base / "out")
    assert watermark(tmp_path / "out") == watermark(base / "out")


def test_two_runs_at_once_exactly_one_writes_the_other_exits_75(tmp_path, base, exports):
    cfg = copy(base, tmp_path / "job")
    shutil.copy2(exports[1], tmp_path / "job" / "in")
    pause = tmp_path / "pause"
    pause.mkdir()
    env = {**os.environ, "MARKOVFAULT_JOB_PAUSE_AT": f"locked:{pause}"}
    procs = [subprocess.Popen(command(cfg, T[2]), stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    deadline = time.monotonic() + 60
    while all(p.poll() is None for p in procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    loser = next(p for p in procs if p.poll() is not None)
    winner = next(p for p in procs if p is not loser)
    _, err = loser.communicate()
    assert loser.returncode == 75, err
    (line,) = logs(err)[-1:]
    assert line["exit_code"] == 75 and "another run holds the lock" in line["message"]
    assert len(list(pause.glob("paused.*"))) == 1  # the winner, holding the lock
    (pause / "release").touch()
    _, err = winner.communicate(timeout=120)
    assert winner.returncode == 0, err
    out = tmp_path / "job" / "out"
    assert sorted(p.name for p in (out / "runs").iterdir()) == [RUN[1], RUN[2]]
    assert [r["run_id"] for r in json.loads((out / "watermark.json").read_text())["runs"]] \
        == [RUN[1], RUN[2]]


def test_the_same_as_of_again_rewrites_identical_partitions(tmp_path, reference):
    cfg = copy(reference, tmp_path / "job")
    out = tmp_path / "job" / "out"
    before = snapshot(out)
    for h in (2, 1):
        part = out / "runs" / RUN[h] / "forecast.parquet"
        mtime = part.stat().st_mtime_ns
        proc = forecast(cfg, T[h])
        assert proc.returncode == 0, proc.stderr
        assert "rerun" in events(proc)
        assert part.stat().st_mtime_ns != mtime  # replaced ...
    assert snapshot(out) == before  # ... with the same bytes; the watermark untouched


def test_incremental_runs_equal_a_refit(tmp_path, reference, exports):
    cfg = copy(reference, tmp_path / "job")
    shutil.copy2(exports[2], tmp_path / "job" / "in")
    out = tmp_path / "job" / "out"
    assert forecast(cfg, T[3]).returncode == 0
    incremental = partitions(out)
    model = load_model(out / "model.npz")
    proc = forecast(cfg, T[3], "--refit")
    assert proc.returncode == 0, proc.stderr
    assert events(proc)["model_trained"]["refit"] is True
    refit = load_model(out / "model.npz")
    np.testing.assert_array_equal(refit.chain_.counts_, model.chain_.counts_)
    pd.testing.assert_frame_equal(refit.last_seen_, model.last_seen_)
    # the same forecasts, but the model version: a refit at a committed as-of writes a version of its own
    assert os.readlink(out / "model.npz") == f"model.{RUN[3]}.1.npz"
    assert partitions(out)[f"runs/{RUN[3]}/forecast.csv"] == incremental[f"runs/{RUN[3]}/forecast.csv"].replace(
        f"model.{RUN[3]}.npz".encode(), f"model.{RUN[3]}.1.npz".encode())
    assert partitions(out)[f"runs/{RUN[2]}/forecast.parquet"] == incremental[f"runs/{RUN[2]}/forecast.parquet"]
    # ... and the Prometheus textfile, but the rows counted: a refit counts every row
    assert drop_line(partitions(out), b"markovfault_rows_counted ")[f"runs/{RUN[3]}/forecast.prom"] \
        == drop_line(incremental, b"markovfault_rows_counted ")[f"runs/{RUN[3]}/forecast.prom"]
    # retention = 2: the third run dropped the oldest partition and its model version, the refit the
    # version it replaced
    assert sorted(p.name for p in (out / "runs").iterdir()) == [RUN[2], RUN[3]]
    assert sorted(p.name for p in out.glob("model.*.npz")) == [f"model.{RUN[2]}.npz",
                                                                f"model.{RUN[3]}.1.npz"]


def test_corrupt_truncated_and_repeated_files_are_skipped_and_reported(
        tmp_path, base, reference, exports):
    cfg = copy(base, tmp_path / "job")
    inp = tmp_path / "job" / "in"
    shutil.copy2(exports[1], inp)
    data = exports[1].read_bytes()
    (inp / "orders-truncated.parquet").write_bytes(data[: len(data) // 2])
    (inp / "orders-garbage.csv").write_bytes(b"\x00\xff\xfe not a csv \x00" * 50)
    shutil.copy2(exports[0], inp / "orders-again.csv")  # rows already counted, under a new name
    proc = forecast(cfg, T[2])
    assert proc.returncode == 65, proc.stderr
    skipped = {r["file"]: r for r in proc.logs if r.get("event") == "file_skipped"}
    assert sorted(skipped) == ["orders-garbage.csv", "orders-truncated.parquet"]
    assert all(r["level"] == "error" for r in skipped.values())
    assert events(proc)["late_rows"]["file"] == "orders-again.csv"
    finished = events(proc)["run_finished"]
    assert finished["exit_code"] == 65 and finished["files_skipped"] == sorted(skipped)
    # forecast from the rest; nothing learned is lost and nothing is counted twice
    assert partitions(tmp_path / "job" / "out") == partitions(reference / "out")
    proc = forecast(cfg, T[3])  # still there: reported again, nothing else to do
    assert proc.returncode == 65
    assert {r["file"] for r in proc.logs if r.get("event") == "file_skipped"} == set(skipped)


def test_no_new_files_exit_0_and_nothing_rewritten(tmp_path, reference):
    cfg = copy(reference, tmp_path / "job")
    out = tmp_path / "job" / "out"
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("*")
              if p.is_file() and p.name != ".lock"}
    proc = forecast(cfg, T[3])
    assert proc.returncode == 0, proc.stderr
    assert events(proc)["nothing_new"]["level"] == "info"
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("*")
            if p.is_file() and p.name != ".lock"} == before


def test_compute_table_is_checked_and_only_used_when_there_is_work(tmp_path, reference):
    from markovfault.exceptions import ConfigError
    from markovfault.job import load_job_config

    cfg = copy(reference, tmp_path / "job")
    text = cfg.read_text()
    cfg.write_text(text + "\n[compute]\nscheduler = 8786\n")
    with pytest.raises(ConfigError, match=r"\[compute\] scheduler = 8786"):
        load_job_config(cfg)
    proc = forecast(cfg, T[3])
    assert proc.returncode == 78 and events(proc)["run_failed"]["error"] == "ConfigError"
    # nothing new: no cluster is needed, so none is contacted (this address has none)
    cfg.write_text(text + '\n[compute]\nscheduler = "tcp://127.0.0.1:9"\n')
    proc = forecast(cfg, T[3])
    assert proc.returncode == 0, proc.stderr
    assert "nothing_new" in events(proc) and "cluster" not in events(proc)


def test_a_model_of_a_newer_format_exits_78(tmp_path, base, exports, monkeypatch):
    import markovfault._modelfile as modelfile  # where model files are written

    cfg = copy(base, tmp_path / "job")
    out = tmp_path / "job" / "out"
    model = load_model(out / "model.npz")
    monkeypatch.setattr(modelfile, "FORMAT_VERSION", modelfile.FORMAT_VERSION + 1)
    model.save(out / f"model.{RUN[1]}.npz")
    shutil.copy2(exports[1], tmp_path / "job" / "in")
    before = snapshot(out)
    proc = forecast(cfg, T[2])
    assert proc.returncode == 78, proc.stderr
    (line,) = proc.logs[-1:]
    assert "newer" in line["message"] and "Upgrade markovfault" in line["message"]
    assert snapshot(out) == before


def test_an_output_directory_that_cannot_be_written_exits_73(tmp_path, exports):
    # Tests run as root, which ignores permission bits: a path below a regular file
    # cannot be created by anyone.
    (tmp_path / "blocker").write_text("a file, not a directory")
    cfg = make_job(tmp_path, exports, [0], output="blocker/out")
    proc = forecast(cfg, T[1])
    assert proc.returncode == 73, proc.stderr
    assert "cannot write" in proc.logs[-1]["message"] and "blocker" in proc.logs[-1]["message"]


def test_a_read_only_output_directory_exits_73(tmp_path, base, monkeypatch, capsys):
    # the job's entry in-process, with every write under the output directory refused as a read-only
    # directory refuses it: root (whom chmod does not stop) meets the error too, so this never skips
    import builtins
    import errno
    import io
    import logging

    from markovfault.cli import main

    cfg = copy(base, tmp_path / "job")
    out = (tmp_path / "job" / "out").resolve()
    (out / ".lock").unlink()
    refused = []

    def inside(path) -> bool:
        try:
            return Path(os.fsdecode(path)).resolve().is_relative_to(out)
        except (TypeError, ValueError):  # a file descriptor, not a path
            return False

    def deny(path):
        refused.append(str(path))
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(path))

    def guard(real, writes):
        def wrapper(path, *args, **kwargs):
            if writes(args, kwargs) and inside(path):
                deny(path)
            return real(path, *args, **kwargs)
        return wrapper

    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    open_writes = lambda a, kw: any(c in (a[0] if a else kw.get("mode", "r")) for c in "wax+")  # noqa: E731
    always = lambda a, kw: True  # noqa: E731
    monkeypatch.setattr(os, "open", guard(os.open, lambda a, kw: bool((a[0] if a else kw["flags"]) & write_flags)))
    monkeypatch.setattr(builtins, "open", guard(builtins.open, open_writes))
    monkeypatch.setattr(io, "open", guard(io.open, open_writes))
    for name in ("mkdir", "symlink", "unlink", "remove", "rmdir"):
        monkeypatch.setattr(os, name, guard(getattr(os, name), always))
    for name in ("replace", "rename"):  # the destination is what a read-only directory refuses
        real = getattr(os, name)
        monkeypatch.setattr(os, name, lambda src, dst, *a, _real=real, **kw:
                            deny(dst) if inside(dst) or inside(src) else _real(src, dst, *a, **kw))
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        code = main(["forecast", "--config", str(cfg), "--as-of", T[2]])
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        logging.captureWarnings(False)
    err = capsys.readouterr().err
    assert refused, "nothing under the output directory was written"
    assert code == 73, err
    last = logs(err)[-1]
    assert last["exit_code"] == 73 and "cannot write" in last["message"], last


def test_inspect_prints_states_events_and_risks(base, capsys):
    from markovfault.cli import main

    assert main(["inspect", str(base / "out" / "model.npz"), "--horizons", "1,10"]) == 0
    text = capsys.readouterr().out
    assert f"-> model.{RUN[1]}.npz" in text and "error*, timeout*, down*" in text
    assert "Riskiest states" in text and "h=10" in text and "expected_steps" in text
    assert "Events that raise the risk most" in text and "payment_failed" in text


def test_each_incremental_run_logs_a_drift_test(tmp_path, base, exports):
    cfg = copy(base, tmp_path / "job")
    shutil.copy2(exports[1], tmp_path / "job" / "in")
    proc = forecast(cfg, T[2])
    assert proc.returncode == 0, proc.stderr
    rec = [r for r in proc.logs if r.get("event") == "drift"]
    assert len(rec) == 1 and rec[0]["level"] == "info", rec
    d = rec[0]
    assert d["df"] > 0 and 0 <= d["p_value"] <= 1 and d["n_new"] > 0
    assert d["message"].startswith(f"drift of the rows counted against the model's counts before them: G2 = "
                                   f"{d['g2']:.2f}, df = {d['df']}")
    # the statistic is the drift test of the new counts against the old ones, recomputed here
    from markovfault.diagnostics import drift
    old = load_model(base / "out" / "model.npz").chain_.counts_
    new = load_model(tmp_path / "job" / "out" / "model.npz").chain_.counts_
    pad = np.zeros(new.shape)
    pad[tuple(slice(0, k) for k in old.shape)] = old
    ref = drift(pad, new - pad)
    assert d["g2"] == pytest.approx(ref["g2"].sum(), rel=1e-6) and d["df"] == ref["df"].sum()


@pytest.mark.parametrize("alert_on", ["p_fail", "p_fail_lo"])
def test_alert_on_chooses_the_estimate_or_its_lower_bound(base, alert_on):
    from markovfault.job._config import JobConfig
    from markovfault.job._partition import forecast_table

    model = load_model(base / "out" / "model.npz")
    pred = model.predict(None, horizon=10, interval=0.9, random_state=0)
    pred = pred[pred["horizon"].isin([1, 10])]
    widest = (pred["p_fail"] - pred["p_fail_lo"]).idxmax()  # a threshold between its bound and estimate
    threshold = float((pred.loc[widest, "p_fail"] + pred.loc[widest, "p_fail_lo"]) / 2)

    def job(**kw):
        return JobConfig.from_config({"states": {"kind": "categorical", "failure": ["down"]},
                                      "job": {"input": "in", "output": "out", "horizons": [1, 10],
                                              "threshold": threshold, **kw}})

    table = forecast_table(model, job(alert_on=alert_on), pd.Timestamp(T[1]), "r", "m")
    assert (table["alert"] == (table[alert_on] >= threshold)).all()
    if alert_on == "p_fail_lo":  # fewer alerts than on the estimate (the default), and some
        default = forecast_table(model, job(), pd.Timestamp(T[1]), "r", "m")
        assert 0 < table["alert"].sum() < default["alert"].sum()


def test_bad_interval_and_alert_on_settings_name_the_key():
    from markovfault.exceptions import ConfigError
    from markovfault.job._config import JobConfig

    for bad, key in (({"interval": 90}, "interval"), ({"alert_on": "p_fail_hi"}, "alert_on")):
        with pytest.raises(ConfigError, match=key):
            JobConfig.from_config({"states": {"kind": "categorical", "failure": ["down"]},
                                   "job": {"input": "in", "output": "out", **bad}})


def test_time_horizons_mixed_with_steps_in_the_partition(tmp_path, exports):
    cfg = make_job(tmp_path, exports, [0, 1])
    cfg.write_text(cfg.read_text().replace("horizons = [1, 3, 10]",
                                           'horizons = ["1h", 3, "15min", 1]\nsilence_fails = "50min"'))
    proc = forecast(cfg, T[2])
    assert proc.returncode == 0, proc.stderr
    frame = pd.read_parquet(tmp_path / "out" / "runs" / RUN[2] / "forecast.parquet")
    assert list(frame.columns[-2:]) == ["kind", "silent_for"]
    assert frame.groupby("entity")["horizon"].apply(list).map(tuple).unique().tolist() == [
        ("1", "3", "15min", "1h")]
    assert frame.groupby("entity")["kind"].apply(list).map(tuple).unique().tolist() == [
        ("steps", "steps", "time", "time")]
    model = load_model(tmp_path / "out" / "model.npz")
    timed = model.predict(None, within=["15min", "1h"], at=pd.Timestamp(T[2]), silence_fails="50min")
    got = frame[frame["kind"] == "time"]
    np.testing.assert_array_equal(got["p_fail"].to_numpy(), timed["p_fail"].to_numpy())
    np.testing.assert_array_equal(got["n_support"].to_numpy(), timed["n_support"].to_numpy())
    assert got["p_fail_lo"].isna().all() and frame.loc[frame["kind"] == "steps", "p_fail_lo"].notna().all()
    steps = model.predict(None, horizon=3, interval=0.9, random_state=0)
    steps = steps[steps["horizon"].isin([1, 3])]
    np.testing.assert_array_equal(frame.loc[frame["kind"] == "steps", "p_fail"].to_numpy(),
                                  steps["p_fail"].to_numpy())
    # the silence at the as-of, the same on every row of an entity
    last = frame.groupby("entity")["last_seen"].transform("first")
    assert (frame["silent_for"] == pd.Timestamp(T[2]) - last).all()
    assert (frame["alert"] == (frame["p_fail"] >= 0.2)).all()


def test_bad_horizons_name_the_key():
    from markovfault.exceptions import ConfigError
    from markovfault.job._config import JobConfig

    def job(**kw):
        return JobConfig.from_config({"states": {"kind": "categorical", "failure": ["down"]},
                                      "job": {"input": "in", "output": "out", **kw}})

    assert job(horizons=["1h", 5, "15min", 5, "60min"]).horizons == (5, "15min", "1h")
    for bad in ([0], ["soon"], ["-5min"], [True], []):
        with pytest.raises(ConfigError, match="horizons"):
            job(horizons=bad)
    with pytest.raises(ConfigError, match="silence_fails"):
        job(silence_fails="forever")


def test_a_trace_column_in_the_config_is_read_and_kept(tmp_path, exports):
    """[columns] trace: the job's frame keeps it under its configured name (it was left out and the run
    failed with a missing column)."""
    (tmp_path / "in").mkdir()
    for h in (0, 1):
        part = pd.read_csv(exports[h]) if exports[h].suffix == ".csv" else pd.read_parquet(exports[h])
        part["order_id"] = "o" + (part.index % 37).astype(str)
        part.to_csv(tmp_path / "in" / f"orders-{h}.csv", index=False)
    cfg = tmp_path / "job.toml"
    cfg.write_text(CONFIG.format(output="out").replace('event_id = "event_id"\n',
                                                        'event_id = "event_id"\ntrace = "order_id"\n'))
    proc = forecast(cfg, T[2])
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "runs" / RUN[2] / "forecast.parquet").exists()


# ------------------------------------------------------- issue 17: the scheduled job's defects
def test_refit_repairs_a_damaged_watermark(tmp_path, base, exports):
    cfg = copy(base, tmp_path / "job")
    out = tmp_path / "job" / "out"
    (out / "watermark.json").write_text('{"format": "markovfault-job-watermark", "cutoff": ')  # torn
    proc = forecast(cfg, T[1])
    assert proc.returncode == 65 and "--refit" in proc.logs[-1]["message"], proc.stderr
    proc = forecast(cfg, T[1], "--refit")
    assert proc.returncode == 0, proc.stderr
    assert "watermark_ignored" in events(proc) and "model_trained" in events(proc)
    wm, want = watermark(out), watermark(base / "out")
    assert wm["runs"][0].pop("refit") is True and want["runs"][0].pop("refit") is False
    assert wm == want
    assert partitions(out) == partitions(base / "out")
    shutil.copy2(exports[1], tmp_path / "job" / "in")  # and the job goes on from it
    assert forecast(cfg, T[2]).returncode == 0


def test_recovery_after_a_kill_just_after_the_commit_applies_retention(tmp_path, reference, exports):
    cfg = copy(reference, tmp_path / "job")
    out = tmp_path / "job" / "out"
    shutil.copy2(exports[2], tmp_path / "job" / "in")
    proc = forecast(cfg, T[3], env={"MARKOVFAULT_JOB_CRASH_AT": "committed"})
    assert proc.returncode == -signal.SIGKILL
    assert sorted(p.name for p in (out / "runs").iterdir()) == [RUN[1], RUN[2], RUN[3]]  # retention = 2
    proc = forecast(cfg, T[3])
    assert proc.returncode == 0, proc.stderr
    assert "rerun" in events(proc) and "partition_deleted" in events(proc)
    assert sorted(p.name for p in (out / "runs").iterdir()) == [RUN[2], RUN[3]]
    assert sorted(p.name for p in out.glob("model.*.npz")) == [f"model.{RUN[2]}.npz", f"model.{RUN[3]}.npz"]


def test_rows_counted_excludes_rows_dropped_as_duplicates_across_files(tmp_path, base, reference, exports):
    cfg = copy(base, tmp_path / "job")
    inp = tmp_path / "job" / "in"
    shutil.copy2(exports[1], inp)
    again = pd.read_parquet(exports[1]).drop_duplicates("event_id").head(50)
    again.to_csv(inp / "orders-redelivered.csv", index=False)  # 50 rows delivered a second time
    proc = forecast(cfg, T[2])
    assert proc.returncode == 0, proc.stderr
    done = events(proc)["run_finished"]
    want = json.loads((reference / "out" / "watermark.json").read_text())["runs"][-1]["rows_counted"]
    assert done["rows_counted"] == want and done["rows_dropped_across_files"] == 50
    assert done["rows_dropped"]["duplicate_event_id"] >= 50
    assert json.loads((tmp_path / "job" / "out" / "watermark.json").read_text())["runs"][-1][
        "rows_counted"] == want
    # the model holds what the reference's holds: the 50 were added once
    np.testing.assert_array_equal(load_model(tmp_path / "job" / "out" / "model.npz").chain_.counts_,
                                  load_model(reference / "out" / "model.npz").chain_.counts_)


def test_a_file_grown_after_it_was_read_says_how_many_rows_are_lost(tmp_path, exports):
    hist = pd.read_csv(exports[0]).drop_duplicates("event_id")
    early = pd.to_datetime(hist["timestamp"], utc=True) < pd.Timestamp("2026-01-01T00:40:00Z")
    (tmp_path / "in").mkdir()
    path = tmp_path / "in" / "orders-0.csv"
    hist[early].to_csv(path, index=False)
    cfg = tmp_path / "job.toml"
    cfg.write_text(CONFIG.format(output="out"))
    assert forecast(cfg, T[1]).returncode == 0
    hist.to_csv(path, index=False)  # the exporter appended the rest of the hour after the run read it
    proc = forecast(cfg, T[2])
    rec = events(proc)["file_changed"]
    assert rec["rows"] == len(hist) and rec["rows_lost"] == int((~early).sum()) > 0, rec
    assert f"{rec['rows_lost']} of them" in rec["message"] and "--refit" in rec["message"]


def test_a_refit_killed_before_its_commit_leaves_the_committed_run_intact(tmp_path, reference, exports):
    late = pd.read_parquet(exports[1])  # late rows of handlers never seen: a refit at the same as-of counts them
    late["handler"] = "late-" + late["handler"].astype(str)
    late["event_id"] = "late-" + late["event_id"].astype(str)
    points = ["model_written", "outputs_written"]
    cfgs = {p: copy(reference, tmp_path / p) for p in points}
    for p in points:
        late.to_csv(tmp_path / p / "in" / "orders-late.csv", index=False)
    procs = {p: subprocess.Popen(command(cfg, T[2], "--refit"), stderr=subprocess.PIPE, text=True,
                                 env={**os.environ, "MARKOVFAULT_JOB_CRASH_AT": p}) for p, cfg in cfgs.items()}
    committed = snapshot(reference / "out")
    for p, proc in procs.items():
        proc.communicate(timeout=120)
        assert proc.returncode == -signal.SIGKILL, p
        out = tmp_path / p / "out"
        now = snapshot(out)
        assert {k: now.get(k) for k in committed} == committed, p  # the model version, partition, watermark
        proc = forecast(cfgs[p], T[2])  # a plain rerun of that as-of
        assert proc.returncode == 0 and "rerun" in events(proc), proc.stderr
        assert partitions(out) == partitions(reference / "out"), p
        assert snapshot(out).keys() == committed.keys(), p  # the killed refit's version is gone
    out = tmp_path / points[0] / "out"
    proc = forecast(cfgs[points[0]], T[2], "--refit")
    assert proc.returncode == 0, proc.stderr
    wm = json.loads((out / "watermark.json").read_text())
    assert wm["model"] == os.readlink(out / "model.npz") == f"model.{RUN[2]}.1.npz"
    frame = pd.read_parquet(out / "runs" / RUN[2] / "forecast.parquet")
    assert frame["entity"].str.startswith("late-").any() and (frame["model_version"] == wm["model"]).all()
    assert sorted(p.name for p in out.glob("model.*.npz")) == [f"model.{RUN[1]}.npz", f"model.{RUN[2]}.1.npz"]


def test_a_refit_killed_just_after_its_commit_has_its_partition_written_by_the_next_run(
        tmp_path, reference, exports):
    cfg = copy(reference, tmp_path / "job")
    out = tmp_path / "job" / "out"
    late = pd.read_parquet(exports[1])
    late["handler"] = "late-" + late["handler"].astype(str)
    late["event_id"] = "late-" + late["event_id"].astype(str)
    late.to_csv(tmp_path / "job" / "in" / "orders-late.csv", index=False)
    proc = forecast(cfg, T[2], "--refit", env={"MARKOVFAULT_JOB_CRASH_AT": "committed"})
    assert proc.returncode == -signal.SIGKILL
    shutil.copy2(exports[2], tmp_path / "job" / "in")
    proc = forecast(cfg, T[3])  # the next hour's run finds the refit's partition not yet written
    assert proc.returncode == 0 and "partition_repaired" in events(proc), proc.stderr
    frame = pd.read_parquet(out / "runs" / RUN[2] / "forecast.parquet")
    assert (frame["model_version"] == f"model.{RUN[2]}.1.npz").all()


def test_handlers_silent_for_a_week_are_left_out_and_status_shows_the_last_run(tmp_path, exports):
    (tmp_path / "in").mkdir()
    hist = pd.read_csv(exports[0])
    old = hist[hist["handler"] == hist["handler"].iloc[0]].copy()  # one handler, heard from 11 months ago
    old["handler"] = "retired"
    old["event_id"] = "old-" + old["event_id"].astype(str)
    old["timestamp"] = (pd.to_datetime(old["timestamp"], utc=True) - pd.Timedelta("335D")).dt.strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")
    hist.to_csv(tmp_path / "in" / "orders-0.csv", index=False)
    old.to_csv(tmp_path / "in" / "orders-old.csv", index=False)
    cfg = tmp_path / "job.toml"
    cfg.write_text(CONFIG.format(output="out"))
    proc = forecast(cfg, T[1])
    assert proc.returncode == 0, proc.stderr
    rec = events(proc)["entities_left_out"]
    assert rec["entities"] == 1 and rec["examples"] == ["retired"] and rec["max_silence"] == "7d"
    frame = pd.read_parquet(tmp_path / "out" / "runs" / RUN[1] / "forecast.parquet")
    assert "retired" not in set(frame["entity"]) and frame["entity"].nunique() == 12
    assert events(proc)["run_finished"]["entities_left_out"] == 1

    from markovfault.job import job_status

    status = job_status(cfg, now=pd.Timestamp(T[1]) + pd.Timedelta("2h"))
    assert status["last_run"]["run_id"] == RUN[1] and status["data_age_s"] == 7200
    assert status["left_out"] == {"count": 1, "max_silence": "7d", "entities": ["retired"]}
    alerts = frame[frame["alert"]]
    assert len(status["alerts"]) == len(alerts) > 0
    assert {(a["entity"], a["horizon"]) for a in status["alerts"]} == set(zip(alerts["entity"], alerts["horizon"]))
    cli = [sys.executable, "-m", "markovfault.cli", "status", "--config", str(cfg)]
    out = subprocess.run(cli + ["--json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["left_out"]["entities"] == ["retired"]
    same = json.loads(subprocess.run(cli + ["--format", "json"], capture_output=True, text=True,
                                     timeout=60).stdout)
    assert same["alerts"] == json.loads(out.stdout)["alerts"] and same["left_out"] == json.loads(out.stdout)["left_out"]
    out = subprocess.run(cli + ["--format", "csv"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = pd.read_csv(io.StringIO(out.stdout))  # every alerting row of the partition, with its numbers
    mine = alerts[["entity", "horizon", "p_fail"]].sort_values(["entity", "horizon"]).reset_index(drop=True)
    theirs = rows[["entity", "horizon", "p_fail"]].sort_values(["entity", "horizon"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(theirs, mine, check_dtype=False, rtol=1e-12)
    out = subprocess.run(cli, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "left out    1 handler" in out.stdout and "retired" in out.stdout, out.stdout
    assert f"last run    {RUN[1]}" in out.stdout and "alerts" in out.stdout
    # max_silence = false: no limit
    (tmp_path / "out2").mkdir()
    cfg.write_text(CONFIG.format(output="out2") + "max_silence = false\n")
    assert forecast(cfg, T[1]).returncode == 0
    assert "retired" in set(pd.read_parquet(tmp_path / "out2" / "runs" / RUN[1] / "forecast.parquet")["entity"])


def test_status_before_any_run_exits_66(tmp_path):
    cfg = tmp_path / "job.toml"
    cfg.write_text(CONFIG.format(output="out"))
    (tmp_path / "in").mkdir()
    out = subprocess.run([sys.executable, "-m", "markovfault.cli", "status", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 66 and "no committed run" in out.stderr, out.stderr
