"""The operator's view of the scheduled job: the Prometheus textfile of every run and `markovfault report`.

The job runs as real processes (`python -m markovfault.cli forecast`) on hourly exports of a simulated order
service in which one handler's name holds a double quote and a backslash. The textfile is read back with
prometheus_client's own parser and compared with the partition; the report is opened in a real headless
Chromium (skipped, saying why, only where chromium is not installed; CI installs it).
"""

import html
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

T = {h: f"2026-01-01T{h:02d}:00:00Z" for h in range(4)}
RUN = {h: f"20260101T{h:02d}0000Z" for h in range(4)}
ODD = 'pay"ment\\worker'  # a quote and a backslash: both escaped in a label value
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
output = "out"
horizons = {horizons}
threshold = 0.5
retention = 5
{extra}
"""
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium; .ci/run installs it)")


def parse(text: str) -> dict:
    """{(metric, labels as a sorted tuple): value}, by prometheus_client's parser."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge" and family.documentation, family.name
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in out, key
            out[key] = s.value
    return out


def job_dir(path: Path, exports, hours, horizons="[1, 3, 10]", extra="") -> Path:
    (path / "in").mkdir(parents=True)
    for h in hours:
        shutil.copy2(exports[h], path / "in")
    cfg = path / "job.toml"
    cfg.write_text(CONFIG.format(horizons=horizons, extra=extra))
    return cfg


def command(cfg, as_of):
    return [sys.executable, "-m", "markovfault.cli", "forecast", "--config", str(cfg), "--as-of", as_of]


def forecast(cfg, as_of, env=None):
    proc = subprocess.run(command(cfg, as_of), capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})
    return proc


def cli(*argv):
    return subprocess.run([sys.executable, "-m", "markovfault.cli", *map(str, argv)], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Hourly Parquet exports of 8 handlers over 3 hours, one of them named ODD."""
    d = tmp_path_factory.mktemp("exports")
    hist = simulate_histories(n_handlers=8, n_steps=150, random_state=11)
    first = hist["handler"].iloc[0]
    hist["handler"] = hist["handler"].where(hist["handler"] != first, ODD)
    hour = hist["timestamp"].dt.floor("h").dt.hour
    files = {}
    for h in range(3):
        files[h] = d / f"orders-{h}.parquet"
        hist[hour == h].to_parquet(files[h], index=False)
    return files


WALL = {}  # a job directory -> the wall clock before and after its second run


@pytest.fixture(scope="module")
def job(tmp_path_factory, exports):
    """Two runs: as-of 01:00 with hour 0 exported, then 02:00 with hour 1."""
    d = tmp_path_factory.mktemp("job")
    cfg = job_dir(d, exports, [0])
    assert forecast(cfg, T[1]).returncode == 0
    shutil.copy2(exports[1], d / "in")
    t0 = time.time()
    proc = forecast(cfg, T[2])
    assert proc.returncode == 0, proc.stderr
    WALL[d] = (t0, time.time())
    return d


# ------------------------------------------------------------------------------------------ Prometheus
def test_textfile_holds_exactly_the_partition(job):
    out = job / "out"
    frame = pd.read_parquet(out / "runs" / RUN[2] / "forecast.parquet")
    text = (out / "runs" / RUN[2] / "forecast.prom").read_text()
    got = parse(text)
    assert ODD in set(frame["entity"])
    want = {}
    for r in frame.itertuples():
        labels = (("entity", r.entity), ("horizon", str(r.horizon)))
        want[("markovfault_p_fail", labels)] = r.p_fail
        want[("markovfault_p_fail_lo", labels)] = r.p_fail_lo
        want[("markovfault_p_fail_hi", labels)] = r.p_fail_hi
        want[("markovfault_alert", labels)] = float(r.alert)
    run = json.loads((out / "watermark.json").read_text())["runs"][-1]
    assert run["run_id"] == RUN[2]
    want[("markovfault_alerts", ())] = frame.loc[frame["alert"], "entity"].nunique()
    want[("markovfault_entities", ())] = 8
    want[("markovfault_rows_counted", ())] = run["rows_counted"]
    stamp = got.pop(("markovfault_last_success_timestamp_seconds", ()))
    duration = got.pop(("markovfault_run_duration_seconds", ()))
    assert got == want  # every entity x horizon, exactly (floats read back bit for bit), and nothing else
    assert 0 < want[("markovfault_alerts", ())] < 8 and run["rows_counted"] > 0
    assert WALL[job][0] <= stamp <= WALL[job][1] and 0 < duration < WALL[job][1] - WALL[job][0]
    # the odd name is escaped as the format says, and the latest file is this run's
    assert 'entity="pay\\"ment\\\\worker"' in text
    assert (out / "markovfault.prom").read_bytes() == (out / "runs" / RUN[2] / "forecast.prom").read_bytes()
    # the first run's file stays beside its own partition
    first = parse((out / "runs" / RUN[1] / "forecast.prom").read_text())
    p1 = pd.read_parquet(out / "runs" / RUN[1] / "forecast.parquet")
    assert {k: v for k, v in first.items() if k[0] == "markovfault_p_fail"} == {
        ("markovfault_p_fail", (("entity", r.entity), ("horizon", str(r.horizon)))): r.p_fail
        for r in p1.itertuples()}


def test_label_values_with_newlines_and_bounds_only_where_present():
    from markovfault.job._prometheus import prometheus_text

    table = pd.DataFrame({"entity": ["a\nb", 'c\\"d'], "horizon": ["15min", "3"], "p_fail": [0.5, 1 / 3],
                          "p_fail_lo": [np.nan, 0.25], "p_fail_hi": [np.nan, 0.5], "alert": [True, False]})
    got = parse(prometheus_text(table, finished_at=1.5e9, duration=0.25, rows_counted=7))
    assert got[("markovfault_p_fail", (("entity", "a\nb"), ("horizon", "15min")))] == 0.5
    assert got[("markovfault_p_fail", (("entity", 'c\\"d'), ("horizon", "3")))] == 1 / 3
    assert [k for k in got if k[0] == "markovfault_p_fail_lo"] == [
        ("markovfault_p_fail_lo", (("entity", 'c\\"d'), ("horizon", "3")))]
    assert got[("markovfault_alerts", ())] == 1 and got[("markovfault_last_success_timestamp_seconds", ())] == 1.5e9


def test_time_and_step_horizons_in_the_textfile(tmp_path, exports):
    cfg = job_dir(tmp_path, exports, [0, 1], horizons='[1, "15min", "1h"]')
    proc = forecast(cfg, T[2])
    assert proc.returncode == 0, proc.stderr
    frame = pd.read_parquet(tmp_path / "out" / "runs" / RUN[2] / "forecast.parquet")
    got = parse((tmp_path / "out" / "markovfault.prom").read_text())
    p = {dict(k[1])["horizon"]: v for k, v in got.items()
         if k[0] == "markovfault_p_fail" and dict(k[1])["entity"] == ODD}
    assert p == dict(zip(frame.loc[frame["entity"] == ODD, "horizon"], frame.loc[frame["entity"] == ODD, "p_fail"]))
    assert set(p) == {"1", "15min", "1h"}
    lo = {dict(k[1])["horizon"] for k in got if k[0] == "markovfault_p_fail_lo"}
    assert lo == {"1"}  # time horizons have no bounds
    # the report ranks by the step horizon by default, or by a time horizon (no interval there)
    proc = cli("report", tmp_path / "out", "--explain", "1")
    assert proc.returncode == 0, proc.stderr
    page = (tmp_path / "out" / "report.html").read_text()
    assert "P(fail within 1 step)" in page and page.count('class="explanation"') == 1
    proc = cli("report", tmp_path / "out", "--horizon", "15min", "--out", tmp_path / "t.html")
    assert proc.returncode == 0, proc.stderr
    page = (tmp_path / "t.html").read_text()
    top = frame[frame["horizon"] == "15min"].sort_values(["p_fail", "entity"], ascending=[False, True]).iloc[0]
    assert "P(fail within 15min)" in page and "data-p-fail-lo" not in page
    assert f'data-entity="{html.escape(top["entity"])}" data-p-fail="{float(top["p_fail"])!r}"' in page


def test_a_rerun_replaces_the_files_atomically(tmp_path, job):
    shutil.copytree(job, tmp_path / "job", symlinks=True)
    out = tmp_path / "job" / "out"
    latest, old_run = out / "markovfault.prom", out / "runs" / RUN[1] / "forecast.prom"
    before = {p: (p.stat().st_ino, p.read_bytes()) for p in (latest, old_run)}
    # the older as-of again: its own file is replaced (a new inode: renamed over), the latest one is not touched
    assert forecast(tmp_path / "job" / "job.toml", T[1]).returncode == 0
    assert old_run.stat().st_ino != before[old_run][0]
    assert strip_clock(old_run.read_bytes()) == strip_clock(before[old_run][1])
    assert (latest.stat().st_ino, latest.read_bytes()) == before[latest]
    # the newest as-of again: the latest file is replaced too, and equals the run's
    assert forecast(tmp_path / "job" / "job.toml", T[2]).returncode == 0
    assert latest.stat().st_ino != before[latest][0]
    assert latest.read_bytes() == (out / "runs" / RUN[2] / "forecast.prom").read_bytes()
    assert strip_clock(latest.read_bytes()) == strip_clock(before[latest][1])
    assert not list(out.rglob("*.tmp"))


def strip_clock(data: bytes) -> bytes:
    return b"\n".join(line for line in data.split(b"\n") if not line.startswith(
        (b"markovfault_last_success_timestamp_seconds ", b"markovfault_run_duration_seconds ")))


def test_killed_at_the_textfile_the_collector_reads_the_old_one_then_the_new(tmp_path, exports):
    """[job] prometheus in another directory (node_exporter's collector): SIGKILL half-way through the file."""
    collector = tmp_path / "collector"
    cfg = job_dir(tmp_path, exports, [0], extra=f'prometheus = "{collector}/orders.prom"')
    assert forecast(cfg, T[1]).returncode == 0
    old = (collector / "orders.prom").read_bytes()
    shutil.copy2(exports[1], tmp_path / "in")
    proc = forecast(cfg, T[2], env={"MARKOVFAULT_JOB_CRASH_AT": "prometheus"})
    assert proc.returncode == -signal.SIGKILL
    assert (collector / "orders.prom").read_bytes() == old  # the previous run's, complete
    parse(old.decode())
    leftovers = [p.name for p in collector.iterdir() if p.name != "orders.prom"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".orders.prom.") and leftovers[0].endswith(".tmp")
    assert not (tmp_path / "out" / "markovfault.prom").exists()  # the default path is not written
    proc = forecast(cfg, T[2])
    assert proc.returncode == 0, proc.stderr
    finished = [json.loads(line) for line in proc.stderr.splitlines() if '"run_finished"' in line]
    assert finished[-1]["prometheus"] == str(collector / "orders.prom")
    assert [p.name for p in collector.iterdir()] == ["orders.prom"]  # the temporary removed
    new = (collector / "orders.prom").read_text()
    assert new.encode() == (tmp_path / "out" / "runs" / RUN[2] / "forecast.prom").read_bytes()
    frame = pd.read_parquet(tmp_path / "out" / "runs" / RUN[2] / "forecast.parquet")
    assert sorted(v for k, v in parse(new).items() if k[0] == "markovfault_p_fail") == sorted(frame["p_fail"])


# ---------------------------------------------------------------------------------------------- report
@pytest.fixture(scope="module")
def backtest_dir(tmp_path_factory, exports):
    from markovfault import FaultPredictor, backtest

    d = tmp_path_factory.mktemp("backtest")
    hist = pd.concat([pd.read_parquet(exports[h]) for h in (0, 1)], ignore_index=True)
    model = FaultPredictor(columns={"entity": "handler", "time": "timestamp", "event": "event_type",
                                    "status": "status"},
                           states={"kind": "categorical", "failure": ["error", "timeout", "down"]})
    result = backtest(hist, model, horizon=10, cutoffs=2, baselines=["climatology"], progress=False)
    result.metrics.to_csv(d / "metrics.csv", index=False)  # what `backtest --out` writes first
    return d


@pytest.fixture(scope="module")
def report(job, backtest_dir):
    page = job / "report.html"
    proc = cli("report", "--config", job / "job.toml", "--out", page, "--backtest", backtest_dir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"report written to {page}"
    return page


def dump_dom(page: Path, *flags) -> str:
    proc = subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", *flags, "--dump-dom",
                           page.as_uri()], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def rows(dom: str) -> list:
    """The (data-entity, data-p-fail, shown p_fail) of each row of #riskiest, in order."""
    from html.parser import HTMLParser

    class P(HTMLParser):
        def __init__(self):
            super().__init__()
            self.rows, self.cell, self.inside = [], None, False

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if a.get("id") == "riskiest":
                self.inside = True
            if self.inside and tag == "tr" and "handler" in a.get("class", "").split():
                self.rows.append([a["data-entity"], float(a["data-p-fail"]), ""])
            if self.inside and tag == "td" and a.get("class") == "p-fail":
                self.cell = self.rows[-1]

        def handle_endtag(self, tag):
            if tag == "td":
                self.cell = None
            if tag == "section":
                self.inside = False

        def handle_data(self, data):
            if self.cell is not None:
                self.cell[2] += data

    p = P()
    p.feed(dom)
    return [tuple(r) for r in p.rows]


@needs_chromium
def test_report_in_a_headless_browser_shows_the_riskiest_handler_and_why(job, report):
    # (headless Chromium's --dump-dom needs scripting on, so a page with JavaScript off is checked as a page
    # without any script: test_report_is_self_contained_and_lists_the_backtest)
    dom = dump_dom(report)
    frame = pd.read_parquet(job / "out" / "runs" / RUN[2] / "forecast.parquet")
    at = frame[frame["horizon"] == 10].sort_values(["p_fail", "entity"], ascending=[False, True])
    shown = rows(dom)
    assert [r[0] for r in shown] == at["entity"].tolist()  # every handler, riskiest first
    top = at.iloc[0]
    assert shown[0] == (top["entity"], top["p_fail"], f"{top['p_fail']:.3f}")
    assert f"{top['p_fail_lo']:.3f}–{top['p_fail_hi']:.3f}" in dom
    assert f'<b id="run-id">{RUN[2]}</b>' in dom
    assert f'<b id="n-alerts">{frame.loc[frame["alert"], "entity"].nunique()}</b>' in dom
    # the risk over the two kept runs, one chart per top handler
    assert dom.count('class="risk-history"') == 8
    # why: the explanation of the riskiest handler on the latest run's model version
    from markovfault.explain import explain

    model = load_model(job / "out" / f"model.{RUN[2]}.npz")
    why = explain(model, entity=top["entity"], horizon=10)
    assert why.p_fail == pytest.approx(top["p_fail"], rel=1e-9)
    block = dom[dom.index(f'class="explanation" data-entity="{html.escape(top["entity"])}"'):]
    first_path = why.paths.table["path"].iloc[0]
    assert f'<td class="path">{html.escape(first_path, quote=False)}</td>' in block[:block.index("</table>")]
    # the backtest's section, one row per model and horizon
    assert 'id="backtest"' in dom and 'data-model="markov"' in dom and 'data-model="climatology"' in dom


@needs_chromium
def test_report_screenshot_is_not_blank(tmp_path, report):
    from PIL import Image

    png = tmp_path / "report.png"
    proc = subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", f"--screenshot={png}",
                           "--window-size=1280,1600", report.as_uri()], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = np.asarray(Image.open(png).convert("RGB"))
    assert image.shape == (1600, 1280, 3)
    assert image.std() > 10 and len(np.unique(image.reshape(-1, 3), axis=0)) > 50  # text, bars, charts
    assert (image < 100).all(axis=2).mean() > 0.002  # dark text drawn


def test_report_is_self_contained_and_lists_the_backtest(report, backtest_dir):
    page = report.read_text()
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page and "src=" not in page and "<link" not in page
    metrics = pd.read_csv(backtest_dir / "metrics.csv")
    row = metrics[(metrics["model"] == "markov") & (metrics["horizon"] == 10)].iloc[0]
    assert f"<td>{row['bss']:.4f}</td>" in page


def test_report_of_the_output_directory_without_a_backtest(job, tmp_path):
    proc = cli("report", job / "out", "--out", tmp_path / "r.html", "--top", "3", "--horizon", "3")
    assert proc.returncode == 0, proc.stderr
    page = (tmp_path / "r.html").read_text()
    assert page.count('class="handler') == 3 and "P(fail within 3 steps)" in page
    assert "No backtest given" in page
    assert page.count('class="explanation"') == 3


def test_report_command_errors(tmp_path, job):
    missing = cli("report", tmp_path / "nowhere")
    assert missing.returncode == 66
    assert missing.stderr.strip().splitlines() == [
        f"markovfault: error: the job's output directory {tmp_path / 'nowhere'} does not exist; "
        "run `markovfault forecast` first."]
    (tmp_path / "empty").mkdir()
    empty = cli("report", tmp_path / "empty")
    assert empty.returncode == 66 and "no run yet" in empty.stderr and len(empty.stderr.splitlines()) == 1
    both = cli("report", job / "out", "--config", job / "job.toml")
    assert both.returncode == 64 and "one of them" in both.stderr
    assert cli("report").returncode == 64
    nobt = cli("report", job / "out", "--out", tmp_path / "r.html", "--backtest", tmp_path / "empty")
    assert nobt.returncode == 66 and "no metrics.csv" in nobt.stderr
    assert not (tmp_path / "r.html").exists()
    nodir = cli("report", job / "out", "--out", tmp_path / "no" / "r.html")
    assert nodir.returncode == 73 and "does not exist" in nodir.stderr
    badh = cli("report", job / "out", "--out", tmp_path / "r.html", "--horizon", "7")
    assert badh.returncode == 64 and "1, 3, 10" in badh.stderr
