"""The live demo: ``python -m examples.orders_app.demo [--seconds 60] [--out DIR]``.

For about ``--seconds`` real seconds (simulated: seven hours), it runs the whole loop: the service as a
process (waitress, loopback), the load generator's traffic with a slow carrier and a payment provider
outage, the recorder's hourly exports, ``markovfault forecast --config job.toml --as-of <hour>`` at every
simulated hour as its own process, and at the end ``markovfault report --config job.toml`` (skipped with a
message where the report command is not there). It prints where the exports, partitions and report are,
and for each affected handler when the job first alerted and when its status first turned to
error/timeout. It always stops the service, and returns within ``2 * seconds + 90`` real seconds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from examples.orders_app import harness
from examples.orders_app.loadgen import run_load

HOURS = 7.1                      # simulated hours the demo covers: traffic until 06:40, the last job at 07:00
START = "2026-03-02T00:00:00Z"
FAULTS = ["slow_shipping@2h40m+30m:warn=70m", "outage@4h30m+50m:warn=90m,p=0.37,fail=0.85",
          "poison:order=ord-000013", "load:scale=40"]
INCIDENTS = [("slow downstream", "on_order_shipped", "1h30min", "2h40min"),
             ("payment outage", "on_payment_failed", "3h", "4h30min")]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(harness.ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def _markovfault(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "markovfault.cli", *args], cwd=harness.ROOT, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


def run_demo(seconds: float = 60.0, out=None, seed: int = 0, rate: float = 30.0) -> int:
    import pandas as pd

    out = Path(out) if out else Path(tempfile.mkdtemp(prefix="orders-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    exports, forecasts = out / "exports", out / "forecasts"
    cfg = harness.job_config(out, exports, forecasts)
    speed = HOURS * 3600.0 / seconds
    start = pd.Timestamp(START)
    deadline = time.monotonic() + 2 * seconds + 60
    print(f"demo: {seconds:g} s real = {HOURS:g} simulated hours (speed {speed:.0f}); everything under {out}")
    for spec in FAULTS:
        print(f"  fault: {spec}")
    runs = []
    with harness.running_service(exports, speed=speed, seed=seed, faults=FAULTS,
                                 log_path=out / "server.log") as (proc, url):
        m0 = harness.healthz(url)["minutes"]
        orders = int(rate * max(0.0, (HOURS - 0.45) * 60 - m0) * 60 / speed)
        load = {}
        thread = threading.Thread(target=lambda: load.update(run_load(
            url, orders=orders, rate=rate, seed=seed, retry_rate=0.03, sent_path=out / "sent.csv",
            timeout=seconds * 1.5)), daemon=True)
        thread.start()
        print(f"service up at {url}; {orders} orders at {rate:g}/s")
        print(f"{'as-of':>20}  {'job':>5}  alerting handlers (p_fail within 10 steps)")
        hour = 1
        while hour <= int(HOURS) and time.monotonic() < deadline and proc.poll() is None:
            try:
                now = harness.healthz(url)["minutes"]
            except OSError:
                break
            previous = exports / f"events-{(start + pd.Timedelta(hours=hour - 1)):%Y%m%dT%H%M%SZ}.jsonl"
            if now < hour * 60 + 2 or not previous.exists():
                time.sleep(0.1)
                continue
            as_of = (start + pd.Timedelta(hours=hour)).isoformat().replace("+00:00", "Z")
            try:
                res = _markovfault("forecast", "--config", str(cfg), "--as-of", as_of,
                                   timeout=max(5.0, deadline - time.monotonic()))
                code = res.returncode
            except subprocess.TimeoutExpired:
                code = "timeout"
            runs.append((as_of, code))
            print(f"{as_of:>20}  {code!s:>5}  {_alerting(forecasts, as_of)}", flush=True)
            hour += 1
        thread.join(max(0.0, min(5.0, deadline - time.monotonic())))
    print(f"service stopped (exit {proc.returncode}); load: {load or 'unfinished'}")

    report = out / "report.html"
    help_ = _markovfault("report", "--help", timeout=60)
    if help_.returncode != 0:
        print("report: skipped (this markovfault has no `markovfault report` command yet)")
        report = None
    else:
        res = _markovfault("report", "--config", str(cfg), "--out", str(report),
                           timeout=max(10.0, deadline - time.monotonic() + 30))
        if res.returncode != 0:
            print(f"report: failed (exit {res.returncode}): {res.stderr.strip().splitlines()[-1:]}")
            report = None
    _summary(exports, forecasts, report, start)
    return 0


def _alerting(forecasts: Path, as_of: str) -> str:
    import pandas as pd

    part = forecasts / "runs" / pd.Timestamp(as_of).strftime("%Y%m%dT%H%M%SZ") / "forecast.parquet"
    if not part.exists():
        return "(no partition)"
    t = pd.read_parquet(part)
    top = t[t["horizon"].astype(str) == t["horizon"].astype(str).iloc[-1]].set_index("entity")["p_fail"]
    alerting = sorted(t.loc[t["alert"], "entity"].unique())
    return ", ".join(f"{e} ({top.get(e, float('nan')):.2f})" for e in alerting) or "-"


def _summary(exports: Path, forecasts: Path, report, start) -> None:
    import pandas as pd

    from markovfault import read_histories
    from markovfault.instrument import CLOUDEVENTS_COLUMNS

    print(f"\nexports:    {exports}")
    print(f"partitions: {forecasts / 'runs'}")
    print(f"report:     {report if report else '(none)'}")
    try:
        history = read_histories(exports, columns=CLOUDEVENTS_COLUMNS)
        table = harness.forecasts(forecasts)
    except Exception as exc:  # noqa: BLE001 - the demo reports and returns
        print(f"no summary: {exc}")
        return
    incidents = [(n, h, start + pd.Timedelta(w), start + pd.Timedelta(s)) for n, h, w, s in INCIDENTS]
    leads = harness.lead_times(history, table, incidents) if len(table) else None
    if leads is None:
        print("no partition written: no summary")
        return
    print(f"\n{'incident':<16} {'handler':<18} {'degrades':>8} {'first alert':>11} {'first failure':>13} "
          f"{'lead':>8}")
    for r in leads.itertuples():
        alert = "-" if pd.isna(r.first_alert) else f"{r.first_alert:%H:%M}"
        fail = "-" if pd.isna(r.first_failure) else f"{r.first_failure:%H:%M}"
        lead = "-" if r.lead is None or pd.isna(r.lead) else f"{r.lead.total_seconds() / 60:.0f} min"
        print(f"{r.incident:<16} {r.handler:<18} {r.warn_start:%H:%M}   {alert:>11} {fail:>13} {lead:>8}")
    print("(times simulated; an alert is the job's, at the as-of of its run; lead = failure - alert)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m examples.orders_app.demo", description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=60.0, help="real seconds the loop runs (default 60)")
    p.add_argument("--out", default=None, help="directory for exports, forecasts, report (default: a new temp dir)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    try:
        return run_demo(a.seconds, a.out, a.seed)
    except KeyboardInterrupt:
        print("demo: interrupted (the service was stopped)")
        return 130
    except Exception as exc:  # noqa: BLE001 - the demo says what went wrong and returns
        print(f"demo: failed: {type(exc).__name__}: {exc} (the service was stopped)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
