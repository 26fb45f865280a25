"""Running the service as a real process, and reading what the job made of its exports (the demo and the
end-to-end test share these).

>>> free_port() > 0
True
>>> first_alerts(__import__("pandas").DataFrame(
...     {"entity": ["a", "a", "b"], "as_of": __import__("pandas").to_datetime(
...         ["2026-03-02T02:00Z", "2026-03-02T03:00Z", "2026-03-02T03:00Z"]), "alert": [False, True, True]}))
{'a': Timestamp('2026-03-02 03:00:00+0000', tz='UTC'), 'b': Timestamp('2026-03-02 03:00:00+0000', tz='UTC')}
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def free_port() -> int:
    """A free TCP port on the loopback address (bound to port 0 and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthz(url: str, timeout: float = 2.0) -> dict:
    with urllib.request.urlopen(url + "/healthz", timeout=timeout) as resp:
        return json.loads(resp.read())


@contextlib.contextmanager
def running_service(exports, *, speed: float, seed: int = 0, faults=(), port: int | None = None,
                    log_path=None, start_timeout: float = 30.0, stop_timeout: float = 20.0):
    """Start ``python -m examples.orders_app`` (cwd = the repository root) on a free loopback port, wait
    for ``/healthz``, yield ``(process, url)``; on exit SIGTERM it, wait (bounded), and kill it if it is
    still there."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "examples.orders_app", "--host", "127.0.0.1", "--port", str(port),
            "--exports", str(exports), "--speed", str(speed), "--seed", str(seed)]
    for spec in faults:
        argv += ["--faults", spec]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the service exited with {proc.returncode} before it was healthy"
                                   + (f" (log: {log_path})" if log_path else ""))
            try:
                healthz(url, timeout=0.5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the service was not healthy within {start_timeout} s") from None
                time.sleep(0.05)
        yield proc, url
    finally:
        stop(proc, stop_timeout)
        if log_path:
            log.close()


def stop(proc: subprocess.Popen, timeout: float = 20.0) -> int:
    """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def job_config(workdir: Path, exports: Path, output: Path, **job) -> Path:
    """``job.toml`` of this example, copied into ``workdir`` with its input and output set."""
    text = (HERE / "job.toml").read_text()
    cfg = tomllib.loads(text)
    lines = []
    for line in text.splitlines():
        key = line.split("=")[0].strip()
        if key == "input":
            line = f"input = {json.dumps(str(exports))}"
        elif key == "output":
            line = f"output = {json.dumps(str(output))}"
        elif key in job:
            line = f"{key} = {json.dumps(job.pop(key))}"
        lines.append(line)
    for key, value in job.items():  # keys the file does not set go to the end of [job], the last table
        lines.append(f"{key} = {json.dumps(value)}")
    path = Path(workdir) / "job.toml"
    path.write_text("\n".join(lines) + "\n")
    assert tomllib.loads(path.read_text())["columns"] == cfg["columns"]
    return path


def forecasts(output: Path):
    """Every partition the job wrote under ``output/runs``, one frame, with the run's ``as_of``."""
    import pandas as pd

    parts = []
    for part in sorted((Path(output) / "runs").glob("[0-9]*")):
        t = pd.read_parquet(part / "forecast.parquet")
        t["as_of"] = pd.Timestamp(t["data_cutoff"].iloc[0])
        parts.append(t)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def first_alerts(table, since=None, until=None) -> dict:
    """Each entity's first as-of in ``[since, until]`` at which any horizon alerted."""
    t = table[table["alert"].astype(bool)]
    if since is not None:
        t = t[t["as_of"] >= since]
    if until is not None:
        t = t[t["as_of"] <= until]
    return t.groupby("entity")["as_of"].min().to_dict()


def lead_times(history, table, incidents, failure=("error", "timeout")):
    """For each incident ``(name, handler, warn start, start)``: the handler's first failure at or after the
    incident's start (``first_failure``; ``first_failure_any`` is its first failure since the warn start,
    which may be background noise), the job's first alert for it between the warn start and that failure,
    and the lead time (failure - alert; ``None`` when no alert came first). A frame, one row per
    incident."""
    import pandas as pd

    rows = []
    for name, handler, warn, start in incidents:
        h = history[(history["entity"] == handler) & (history["time"] >= warn)
                    & history["status"].isin(failure)]
        first_any = h["time"].min() if len(h) else pd.NaT
        h = h[h["time"] >= start]
        first_fail = h["time"].min() if len(h) else pd.NaT
        alerts = first_alerts(table[table["entity"] == handler], since=warn,
                              until=first_fail if pd.notna(first_fail) else None)
        alert = alerts.get(handler, pd.NaT)
        after = first_alerts(table[table["entity"] == handler], since=warn).get(handler, pd.NaT)
        rows.append({"incident": name, "handler": handler, "warn_start": warn, "start": start,
                     "first_alert": alert if pd.notna(alert) else after, "first_failure": first_fail, "first_failure_any": first_any,
                     "lead": (first_fail - alert) if pd.notna(alert) and pd.notna(first_fail) else None,
                     "alert_first": bool(pd.notna(alert) and pd.notna(first_fail))})
    return pd.DataFrame(rows)
