"""End to end: the orders app as a real server process, driven over HTTP on the loopback address by the load
generator, recorded by markovfault.instrument, read back and forecast by the scheduled job.

The references are independent of the code under test: what the load generator sent (its CSV of every
request), the rate the service was told to inject (P(error | payment_failed) = 0.37 during the outage), and
the times the incidents were scheduled at.
"""

import csv
import json
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("flask", reason="the orders app needs flask (the [app] extra)")
pytest.importorskip("waitress", reason="the orders app is served by waitress (the [app] extra)")

from scipy import stats  # noqa: E402

# the job's first runs have seen no timeout yet: the model says so (a DataWarning), which is expected here
pytestmark = pytest.mark.filterwarnings("ignore:states .'timeout'. were never left:UserWarning")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # examples/ is a namespace package at the repository root

from examples.orders_app import harness  # noqa: E402
from examples.orders_app.loadgen import plan_orders, run_load  # noqa: E402

SPEED = 900.0                      # a real second is 15 simulated minutes
START = pd.Timestamp("2026-03-02T00:00:00Z")
P_ERROR = 0.37                     # P(on_payment_failed errors) during the outage
FAULTS = ["slow_shipping@2h40m+30m:warn=70m",
          f"outage@4h30m+50m:warn=90m,p={P_ERROR},fail=0.85",
          "poison:order=ord-000013", "load:scale=40"]
INCIDENTS = [("slow downstream", "on_order_shipped", START + pd.Timedelta("1h30min"),
              START + pd.Timedelta("2h40min")),
             ("payment outage", "on_payment_failed", START + pd.Timedelta("3h"),
              START + pd.Timedelta("4h30min"))]
OUTAGE = (START + pd.Timedelta("4h30min"), START + pd.Timedelta("5h20min"))
END_MINUTES = 390                  # traffic until 06:30 simulated
RATE, SEED, RETRY = 40.0, 11, 0.04


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One run of the loop: the service up, the load, SIGTERM, the job at every simulated hour."""
    from markovfault import read_histories
    from markovfault.instrument import CLOUDEVENTS_COLUMNS
    from markovfault.job import load_job_config, run_job

    d = tmp_path_factory.mktemp("orders_app")
    exports = d / "exports"
    with harness.running_service(exports, speed=SPEED, seed=SEED, faults=FAULTS,
                                 log_path=d / "server.log") as (proc, url):
        m0 = harness.healthz(url)["minutes"]
        answers = [http_post(url + path, body, headers) for path, body, headers in BAD_REQUESTS]
        orders = int(RATE * (END_MINUTES - m0) * 60 / SPEED)
        counts = run_load(url, orders=orders, rate=RATE, seed=SEED, retry_rate=RETRY,
                          sent_path=d / "sent.csv", timeout=60)
        code = harness.stop(proc)
    history = read_histories(exports, columns=CLOUDEVENTS_COLUMNS)
    cfg = harness.job_config(d, exports, d / "forecasts")
    job = load_job_config(cfg)
    first = history["time"].min().floor("h") + pd.Timedelta("1h")
    as_ofs = pd.date_range(first, history["time"].max().ceil("h"), freq="h")
    for as_of in as_ofs:
        run_job(job, as_of=as_of.isoformat())
    table = harness.forecasts(d / "forecasts")
    return {"dir": d, "exports": exports, "counts": counts, "answers": answers, "orders": orders, "exit": code,
            "history": history, "table": table, "as_ofs": as_ofs}


STRUCTURED = {"Content-Type": "application/cloudevents+json"}
BAD_REQUESTS = [  # (path, body, headers) -> (status, JSON error) below
    ("/event/order_cancelled", b"{}", STRUCTURED),
    ("/event/order_created", b"{not json", STRUCTURED),
    ("/event/order_created", json.dumps({"specversion": "1.0", "id": "x1", "type": "order_created",
                                         "source": "t"}).encode(), STRUCTURED),
    ("/event/order_created", b"{}", {"Content-Type": "application/json", "ce-specversion": "1.0",
                                     "ce-id": "x2", "ce-type": "order_shipped", "ce-source": "t",
                                     "ce-subject": "o"}),
    ("/event/order_created", b"{}", {"Content-Type": "application/json", "ce-specversion": "1.0",
                                     "ce-id": "x3", "ce-type": "order_created", "ce-source": "t",
                                     "ce-subject": "o", "traceparent": "00-xyz"}),
]


def http_post(url, body, headers):
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_bad_requests_get_one_line_json_errors(run):
    codes = [code for code, _ in run["answers"]]
    assert codes == [404, 400, 400, 400, 400]
    for _, text in run["answers"]:
        assert "\n" not in text.strip() and set(json.loads(text)) == {"error"}
    errors = [json.loads(t)["error"] for _, t in run["answers"]]
    assert "unknown event type 'order_cancelled'" in errors[0]
    assert "not JSON" in errors[1] and "'subject'" in errors[2] and "does not match" in errors[3]
    assert "traceparent" in errors[4]


def raw_lines(exports: Path) -> pd.DataFrame:
    rows = [dict(json.loads(line), file=f.name) for f in sorted(exports.iterdir())
            for line in f.read_text().splitlines() if line.strip()]
    return pd.DataFrame(rows)


def test_server_stopped_cleanly_and_files_complete(run):
    assert run["exit"] == 0, (run["dir"] / "server.log").read_text()
    names = sorted(p.name for p in run["exports"].iterdir())
    assert names, "no export file"
    assert not [n for n in names if n.startswith(".") or n.endswith(".tmp")], names
    assert all(n.startswith("events-") and n.endswith(".jsonl") for n in names)
    raw = raw_lines(run["exports"])
    hour = pd.to_datetime(raw["file"].str[len("events-"):-len(".jsonl")], format="%Y%m%dT%H%M%SZ", utc=True)
    assert (pd.to_datetime(raw["time"], utc=True).dt.floor("h") == hour).all()   # each line in its hour
    assert hour.nunique() >= 6, names   # several simulated hours passed


def test_every_sent_event_is_recorded_once_and_resends_are_the_duplicates(run):
    sent = list(csv.DictReader(open(run["dir"] / "sent.csv")))
    counts = run["counts"]
    assert counts["errors"] == counts["rejected"] == 0 and not counts["timed_out"], counts
    originals = [r["event_id"] for r in sent if r["resend"] == "0"]
    resent = [r["event_id"] for r in sent if r["resend"] == "1"]
    assert len(originals) == len(set(originals)) == run["orders"] == counts["sent"]
    assert len(resent) == counts["resent"] > 0
    plan = {p["event_id"]: p for p in plan_orders(run["orders"], seed=SEED, retry_rate=RETRY)}

    raw = raw_lines(run["exports"])
    created = raw[raw["subject"] == "on_order_created"]
    per_id = Counter(created["id"])
    expected = Counter({f"{e}:on_order_created": 1 for e in originals})
    expected.update(f"{e}:on_order_created" for e in resent)
    assert per_id == expected            # each sent event once, plus once per re-send; nothing else
    # follow-on steps: once each (the outbox does not emit twice for a redelivery), all from sent orders
    follow = raw[raw["subject"] != "on_order_created"]
    assert follow["id"].is_unique
    roots = follow["id"].str.split("/").str[0]
    assert set(roots) <= set(originals)
    # every step carries the trace id and order id of the order that caused it
    root_all = raw["id"].str.split("[/:]", regex=True).str[0]
    want_trace = root_all.map(lambda e: plan[e]["event"]["traceparent"].split("-")[1])
    assert (raw["traceid"] == want_trace).all()
    assert (raw["orderid"] == root_all.map(lambda e: plan[e]["order_id"])).all()
    # an order whose creation step succeeded at least once has exactly one first payment attempt
    ok_created = set(created.loc[~created["data"].map(lambda d: d["status"]).isin(["error", "timeout"]),
                                 "id"].str.split(":").str[0])
    paid = set(follow.loc[follow["id"].str.contains("/pay1:"), "id"].str.split("/").str[0])
    assert paid == ok_created
    # the poison order always errors
    poison = raw[raw["orderid"] == "ord-000013"]
    assert len(poison) and (poison["data"].map(lambda d: d["status"]) == "error").all()

    report = run["history"].attrs["read_report"]
    assert report.dropped.get("duplicate_event_id", 0) == len(resent)
    assert report.n_rows_kept == len(raw) - len(resent)
    assert run["history"]["event_id"].is_unique


def test_error_rate_of_on_payment_failed_during_the_outage(run):
    from markovfault import FaultPredictor

    h = run["history"]
    margin = pd.Timedelta("1min")   # the handler's clock and the recorded time differ by its latency
    inside = ((h["entity"] == "on_payment_failed") & (h["time"] >= OUTAGE[0] + margin)
              & (h["time"] < OUTAGE[1] - margin))
    steps = h[inside]
    n, k = len(steps), int((steps["status"] == "error").sum())
    ci = stats.binomtest(k, n).proportion_ci(0.95)
    print(f"\nP(error | payment_failed) during the outage: {k}/{n} = {k / n:.3f}, 95% CI "
          f"[{ci.low:.3f}, {ci.high:.3f}], injected {P_ERROR}")
    assert n >= 100, n
    assert ci.low <= P_ERROR <= ci.high
    # the same from a model fitted on those steps: its transition counts into error under payment_failed
    model = FaultPredictor(states={"kind": "categorical", "states": ["ok", "slow", "error", "timeout"],
                                   "failure": ["error", "timeout"]},
                           ).fit(steps[["entity", "time", "event", "status"]])
    chain = model.chain_
    e = chain.event_names_.index("payment_failed")
    c = chain.counts_[e]
    p_fit = c[:, chain.state_names_.index("error")].sum() / c.sum()
    # the fit counts transitions: every step but the first
    assert c.sum() == n - 1
    ci_fit = stats.binomtest(int(round(p_fit * c.sum())), int(c.sum())).proportion_ci(0.95)
    assert ci_fit.low <= P_ERROR <= ci_fit.high


def test_the_job_alerts_before_the_failures(run):
    table = run["table"]
    assert len(table) and table["alert"].dtype == bool
    assert set(table["as_of"]) == set(run["as_ofs"])
    leads = harness.lead_times(run["history"], table, INCIDENTS)
    wide = table.pivot_table(index="entity", columns=["as_of", "horizon"], values="p_fail")
    wide.columns = [f"{a:%H}h/{h}" for a, h in wide.columns]
    print("\n" + wide.round(2).to_string() + "\n" + leads.to_string())
    outage = leads.set_index("incident").loc["payment outage"]
    assert outage["alert_first"] and outage["lead"] > pd.Timedelta(0), leads
    assert leads["alert_first"].sum() * 2 >= len(leads)        # at least half of the incidents


def test_the_example_modules_doctests():
    """The examples are not under pytest's testpaths: their docstring examples run here."""
    import doctest

    from examples.orders_app import app, harness as h, loadgen

    for module in (app, loadgen, h):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0 and result.attempted > 0, module.__name__


def test_timeouts_of_the_slow_downstream_lie_in_its_window(run):
    h = run["history"]
    shipped = h[h["entity"] == "on_order_shipped"]
    start, end = START + pd.Timedelta("2h40min"), START + pd.Timedelta("3h10min")
    timeouts = shipped[shipped["status"] == "timeout"]
    margin = pd.Timedelta("1min")
    assert len(timeouts) and timeouts["time"].between(start, end + margin).all()
    inside = shipped[shipped["time"].between(start + margin, end - margin)]
    k, n = int((inside["status"] == "timeout").sum()), len(inside)
    ci = stats.binomtest(k, n).proportion_ci(0.95)
    print(f"\nP(timeout | order_shipped) in the slow-carrier window: {k}/{n} = {k / n:.3f}, 95% CI "
          f"[{ci.low:.3f}, {ci.high:.3f}], injected 0.7")
    assert ci.low <= 0.7 <= ci.high, (k, n)


# ------------------------------------------------------------- the app in process (Flask's test client)
def _app(tmp_path, *faults, speed=50.0, workers=1):
    from examples.orders_app.app import Settings, create_app

    s = Settings(exports=str(tmp_path), speed=speed, workers=workers).with_fault("hiccups:off")
    for spec in faults:
        s = s.with_fault(spec)
    return create_app(s)


def _post_orders(client, n, prefix="t"):
    for i in range(n):
        r = client.post("/event/order_created", json={
            "specversion": "1.0", "id": f"{prefix}-{i}", "type": "order_created", "source": "test",
            "subject": f"o-{i}", "data": {}}, headers={"Content-Type": "application/cloudevents+json"})
        assert r.status_code == 202, r.get_json()


def _history(app):
    from markovfault import read_histories
    from markovfault.instrument import CLOUDEVENTS_COLUMNS

    service = app.extensions["orders"]
    assert service.bus.drain(30)
    service.recorder.close()
    return read_histories(service.recorder.directory, columns=CLOUDEVENTS_COLUMNS)


def _statuses(app, handler):
    h = _history(app)
    return h.loc[h["entity"] == handler, "status"].value_counts().to_dict()


def test_a_handler_degrades_with_the_queue(tmp_path):
    quiet = _app(tmp_path / "quiet")
    _post_orders(quiet.test_client(), 60)
    loaded = _app(tmp_path / "loaded", "load:scale=10")
    _post_orders(loaded.test_client(), 60)
    q, l = _statuses(quiet, "on_order_created"), _statuses(loaded, "on_order_created")
    bad = lambda c: c.get("slow", 0) + c.get("error", 0)  # noqa: E731
    assert sum(q.values()) == sum(l.values()) == 60
    assert bad(q) <= 3 and bad(l) >= 20, (q, l)


def test_faults_scheduled_at_run_time_and_healthz(tmp_path):
    app = _app(tmp_path)
    c = app.test_client()
    health = c.get("/healthz").get_json()
    assert health["status"] == "ok" and health["settings"]["outage"] is None
    r = c.post("/admin/faults", json={"spec": "outage@0m+2h:p=0.37,warn=0m"})
    assert r.status_code == 200 and r.get_json()["settings"]["outage"]["p"] == 0.37
    assert c.post("/admin/faults", json={"spec": "meteor@1h+1h"}).status_code == 400
    _post_orders(c, 40)
    # during the outage the provider declines 85% of attempts: payment_failed bursts
    h = _history(app)
    assert (h["entity"] == "on_payment_failed").sum() > (h["entity"] == "on_payment_succeeded").sum()


def test_the_load_generator_command_and_its_bounds(tmp_path):
    import subprocess

    with harness.running_service(tmp_path / "exports", speed=3600.0, faults=["hiccups:off"],
                                 log_path=tmp_path / "server.log") as (proc, url):
        cmd = [sys.executable, "-m", "examples.orders_app.loadgen", "--url", url, "--orders", "30",
               "--rate", "200", "--seed", "5", "--retry-rate", "0.5", "--incident-at", "0m",
               "--incident-minutes", "600", "--sent", str(tmp_path / "sent.csv")]
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60,
                             env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
        assert res.returncode == 0, res.stderr
        counts = json.loads(res.stdout)
        assert counts["sent"] == 30 and counts["resent"] > 0 and not counts["timed_out"]
        assert harness.healthz(url)["settings"]["outage"]["minutes"] == 600.0   # the incident, scheduled
        bounded = run_load(url, orders=10_000, rate=1000.0, seed=6, timeout=0.5)
        assert bounded["timed_out"] and bounded["sent"] < 10_000 and bounded["seconds"] < 5
    sent = list(csv.DictReader(open(tmp_path / "sent.csv")))
    assert len(sent) == counts["sent"] + counts["resent"]
    bad = subprocess.run(cmd[:3] + ["--url", "http://example.com:80"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert bad.returncode == 2 and "loopback" in bad.stderr
