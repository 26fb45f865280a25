"""The load generator: new orders over HTTP to the running service, seeded, bounded, with at-least-once
re-sends.

``python -m examples.orders_app.loadgen --url http://127.0.0.1:8080 --orders N --rate R --seed S
[--retry-rate q] [--incident-at T --incident-minutes M] [--sent FILE] [--timeout SECONDS]``

Each order is one ``order_created`` CloudEvent (id ``evt-<seed>-<n>``, subject ``ord-<n>``, a fresh W3C
trace), sent in binary or structured mode (half each, seeded), at ``rate`` per second. A fraction ``q`` of
them is sent a second time with the same id right after (at-least-once delivery); the service records the
redelivery under the same id, and ``read_histories`` drops and reports it. ``--incident-at`` schedules a
payment provider outage at that simulated time (after the service's ``--start``) through
``POST /admin/faults``, with the service's outage rates. Stops after ``orders`` orders or ``timeout``
seconds, whichever is first. ``--sent`` writes one CSV line per request: ``n,event_id,order_id,resend,
status``.

>>> plan = plan_orders(5, seed=1, retry_rate=0.4)
>>> [p["order_id"] for p in plan]
['ord-000000', 'ord-000001', 'ord-000002', 'ord-000003', 'ord-000004']
>>> plan == plan_orders(5, seed=1, retry_rate=0.4)
True
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import random
import sys
import time
from urllib.parse import urlsplit

ITEMS = ("book", "lamp", "kettle", "chair", "headphones", "bike light", "mug")
METHODS = ("card", "card", "card", "paypal", "invoice")


def plan_orders(n: int, *, seed: int = 0, retry_rate: float = 0.0) -> list[dict]:
    """The orders to send, in order: ids, the event, the mode and whether it is re-sent."""
    rng = random.Random(f"loadgen:{seed}")
    out = []
    for i in range(n):
        items = [{"sku": rng.choice(ITEMS), "qty": rng.randint(1, 3)} for _ in range(rng.randint(1, 3))]
        event = {"specversion": "1.0", "id": f"evt-{seed}-{i:06d}", "type": "order_created",
                 "source": "loadgen", "subject": f"ord-{i:06d}",
                 "traceparent": "00-%032x-%016x-01" % (rng.getrandbits(128), rng.getrandbits(64)),
                 "datacontenttype": "application/json",
                 "data": {"order_id": f"ord-{i:06d}", "items": items, "method": rng.choice(METHODS),
                          "amount": round(rng.uniform(5, 400), 2)}}
        out.append({"n": i, "event_id": event["id"], "order_id": event["subject"], "event": event,
                    "structured": rng.random() < 0.5, "resend": rng.random() < retry_rate})
    return out


def _request(event: dict, structured: bool) -> tuple[bytes, dict]:
    if structured:
        return json.dumps(event).encode(), {"Content-Type": "application/cloudevents+json"}
    headers = {"Content-Type": "application/json", "traceparent": event["traceparent"]}
    for k in ("specversion", "id", "type", "source", "subject"):
        headers[f"ce-{k}"] = event[k]
    return json.dumps(event["data"]).encode(), headers


class _Client:
    """A keep-alive HTTP/1.1 connection to the service, reopened after an error."""

    def __init__(self, url: str, timeout: float = 5.0):
        u = urlsplit(url)
        self.host, self.port, self.timeout = u.hostname, u.port or 80, timeout
        self.conn = None

    def post(self, path: str, body: bytes, headers: dict) -> int:
        for attempt in (0, 1):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                self.conn.request("POST", path, body=body, headers=headers)
                resp = self.conn.getresponse()
                resp.read()
                return resp.status
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def run_load(url: str, *, orders: int, rate: float, seed: int = 0, retry_rate: float = 0.0,
             incident_at: str | None = None, incident_minutes: float | None = None,
             sent_path=None, timeout: float | None = None) -> dict:
    """Send the orders; return counts: ``sent`` (distinct events accepted), ``resent`` (re-sends accepted),
    ``rejected`` (non-202 answers), ``errors`` (requests that failed), ``seconds``, ``timed_out``."""
    plan = plan_orders(orders, seed=seed, retry_rate=retry_rate)
    timeout = timeout if timeout is not None else orders / rate * 2 + 10
    client = _Client(url)
    counts = {"sent": 0, "resent": 0, "rejected": 0, "errors": 0, "timed_out": False}
    rows = []
    if incident_at is not None:
        spec = f"outage@{incident_at}+{incident_minutes or 60}"
        status = client.post("/admin/faults", json.dumps({"spec": spec}).encode(),
                             {"Content-Type": "application/json"})
        if status != 200:
            raise RuntimeError(f"the service refused the incident {spec!r} (HTTP {status})")
    t0 = time.monotonic()
    try:
        for i, p in enumerate(plan):
            now = time.monotonic()
            if now - t0 > timeout:
                counts["timed_out"] = True
                break
            due = t0 + i / rate
            if due > now:
                time.sleep(due - now)
            body, headers = _request(p["event"], p["structured"])
            for resend in (False, True) if p["resend"] else (False,):
                try:
                    status = client.post("/event/order_created", body, headers)
                except (OSError, http.client.HTTPException):
                    counts["errors"] += 1
                    status = -1
                if status == 202:
                    counts["resent" if resend else "sent"] += 1
                elif status != -1:
                    counts["rejected"] += 1
                rows.append((p["n"], p["event_id"], p["order_id"], int(resend), status))
    finally:
        client.close()
        counts["seconds"] = round(time.monotonic() - t0, 3)
        if sent_path is not None:
            with open(sent_path, "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["n", "event_id", "order_id", "resend", "status"])
                w.writerows(rows)
    return counts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m examples.orders_app.loadgen", description=__doc__.split("\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8080")
    p.add_argument("--orders", type=int, default=1000)
    p.add_argument("--rate", type=float, default=20.0, help="orders per real second")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--retry-rate", type=float, default=0.0, help="fraction of orders sent twice (same id)")
    p.add_argument("--incident-at", default=None, help="simulated time of a payment outage, e.g. 3h30m")
    p.add_argument("--incident-minutes", type=float, default=None)
    p.add_argument("--sent", default=None, help="CSV of every request sent")
    p.add_argument("--timeout", type=float, default=None, help="hard limit in real seconds")
    a = p.parse_args(argv)
    if urlsplit(a.url).hostname not in ("127.0.0.1", "localhost", "::1"):
        p.error("--url must be a loopback address (this is a load generator for a local example)")
    counts = run_load(a.url, orders=a.orders, rate=a.rate, seed=a.seed, retry_rate=a.retry_rate,
                      incident_at=a.incident_at, incident_minutes=a.incident_minutes, sent_path=a.sent,
                      timeout=a.timeout)
    print(json.dumps(counts))
    return 0 if not (counts["errors"] or counts["rejected"]) else 1


if __name__ == "__main__":
    sys.exit(main())
