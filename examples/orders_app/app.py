"""The order/payment service: a Flask app, an in-process event bus, five handlers, injectable faults.

``create_app(settings)`` builds the app; :func:`serve` runs it under waitress until SIGTERM/SIGINT,
then drains the bus and closes the recorder (so the last export file is renamed).

An order's events::

    POST /event/order_created ──► on_order_created ──(payment provider)──► payment_succeeded | payment_failed
    payment_failed ──► on_payment_failed ──(retry, up to 3 attempts)──► payment_succeeded | payment_failed
    payment_succeeded ──► on_payment_succeeded ──► order_shipped ──► on_order_shipped ──(carrier)──►
    order_delivered ──► on_order_delivered

Every follow-on event carries the trace id of the event that caused it (W3C ``traceparent``) and the order id
(CloudEvents ``subject``), and an id derived from its parent's (``<id>/pay1``, ``<id>/ship``, ...). Emission is
idempotent (an outbox keyed by the follow-on's id): a redelivered event runs its handler again, and is
recorded again under the same id, but does not emit its follow-ons twice.

Time is the recorder's clock, a :class:`SimClock` running ``speed`` times faster than the wall clock from
``settings.start``; every fault window is in that simulated time, as an offset from ``start``.

>>> s = Settings.from_args(["--exports", "/tmp/x", "--faults", "outage@4h+1h:p=0.37"])
>>> s.outage.p, s.outage.start, s.outage.minutes
(0.37, 240.0, 60.0)
>>> clock = SimClock(s.start, speed=60.0)
>>> clock.minutes(clock.start) == 0.0
True
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import queue
import random
import re
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

logger = logging.getLogger("orders_app")

EVENT_TYPES = ("order_created", "payment_failed", "payment_succeeded", "order_shipped", "order_delivered")
HANDLERS = {t: f"on_{t}" for t in EVENT_TYPES}
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
DEFAULT_START = "2026-03-02T00:00:00Z"
MAX_PAYMENT_ATTEMPTS = 3


# --------------------------------------------------------------------------------------------- settings
def minutes_of(text) -> float:
    """``"4h20m"``, ``"90min"``, ``"90"`` (minutes), ``"1h"`` -> minutes.

    >>> minutes_of("4h20m"), minutes_of("90min"), minutes_of("45"), minutes_of("30s")
    (260.0, 90.0, 45.0, 0.5)
    """
    text = str(text).strip().lower()
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        return float(text)
    total, pos = 0.0, 0
    for m in re.finditer(r"(\d+(?:\.\d+)?)\s*(h|min|m|s)", text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * {"h": 60.0, "min": 1.0, "m": 1.0, "s": 1 / 60}[m.group(2)]
        pos = m.end()
    if pos != len(text) or pos == 0:
        raise ValueError(f"not a duration: {text!r} (use 4h20m, 90min, 45)")
    return total


@dataclass(frozen=True)
class Window:
    """A fault that lasts ``minutes`` from ``start`` (simulated minutes after ``Settings.start``), announced
    by a precursor of ``warn`` minutes before it (the degradation an operator could see coming)."""

    start: float
    minutes: float
    warn: float = 0.0
    p: float = 0.37          # outage: P(on_payment_failed errors); slow_shipping: P(a carrier call times out)
    fail: float = 0.85       # outage: P(a payment attempt is declined by the provider)
    warn_fail: float = 0.2   # outage precursor: P(a payment attempt is declined)

    def phase(self, minute: float) -> str | None:
        """``"active"``, ``"warn"`` or ``None`` at a simulated minute."""
        if self.start <= minute < self.start + self.minutes:
            return "active"
        if self.start - self.warn <= minute < self.start:
            return "warn"
        return None


@dataclass(frozen=True)
class Settings:
    """Everything the service is configured with (see :meth:`from_args` and README.md)."""

    exports: str = "exports"
    host: str = "127.0.0.1"
    port: int = 8080
    speed: float = 60.0
    seed: int = 0
    start: datetime = datetime(2026, 3, 2, tzinfo=timezone.utc)
    workers: int = 4
    slow_ms: float = 250.0            # a step slower than this (simulated ms) is "slow"
    base_error: float = 0.003         # P(error) of any step outside a fault
    base_decline: float = 0.06        # P(the payment provider declines an attempt) outside an outage
    outage: Window | None = None
    slow_shipping: Window | None = None
    poison: str | None = None         # an order id whose events always error
    load_scale: float | None = None   # on_order_created degrades as the bus's queue grows past this
    hiccups: tuple = (90.0, 10.0)     # (mean minutes between, minutes) of a handler's own short bad spells
    prefix: str = "events"

    @classmethod
    def from_args(cls, argv=None) -> "Settings":
        p = argparse.ArgumentParser(prog="python -m examples.orders_app",
                                    description="The order/payment service (Flask on waitress).")
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=8080)
        p.add_argument("--exports", required=True, help="directory of the recorder's hourly JSON-lines files")
        p.add_argument("--speed", type=float, default=60.0,
                       help="simulated seconds per real second (60: a real minute is a simulated hour)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--start", default=DEFAULT_START, help="the simulated clock's start (UTC)")
        p.add_argument("--workers", type=int, default=4, help="bus worker threads")
        p.add_argument("--faults", action="append", default=[], metavar="SPEC",
                       help="outage@START+DURATION[:p=..,fail=..,warn=..], slow_shipping@START+DURATION"
                            "[:p=..,warn=..], poison:order=ID, load:scale=N, hiccups:every=M,minutes=M (default 90,10), "
                            "hiccups:off (repeatable; START is simulated time after --start)")
        a = p.parse_args(argv)
        start = datetime.fromisoformat(a.start.replace("Z", "+00:00")).astimezone(timezone.utc)
        s = cls(exports=a.exports, host=a.host, port=a.port, speed=a.speed, seed=a.seed, start=start,
                workers=a.workers)
        for spec in a.faults:
            try:
                s = s.with_fault(spec)
            except (ValueError, KeyError) as exc:
                p.error(f"--faults {spec!r}: {exc}")
        return s

    def with_fault(self, spec: str) -> "Settings":
        """These settings with one more fault, from a ``--faults`` spec.

        >>> Settings().with_fault("slow_shipping@2h+30m:warn=70m").slow_shipping
        Window(start=120.0, minutes=30.0, warn=70.0, p=0.7, fail=0.85, warn_fail=0.2)
        """
        head, _, opts = spec.partition(":")
        kw = {}
        for item in filter(None, opts.split(",")):
            k, _, v = item.partition("=")
            kw[k.strip()] = v.strip()
        kind, _, when = head.partition("@")
        kind = kind.strip()
        if kind in ("outage", "slow_shipping"):
            at, _, dur = when.partition("+")
            if not at or not dur:
                raise ValueError(f"{kind} needs @START+DURATION, e.g. {kind}@3h+45m")
            w = Window(start=minutes_of(at), minutes=minutes_of(dur),
                       warn=minutes_of(kw.pop("warn", "60")),
                       p=float(kw.pop("p", 0.37 if kind == "outage" else 0.7)),
                       fail=float(kw.pop("fail", 0.85)), warn_fail=float(kw.pop("warn_fail", 0.2)))
            if kw:
                raise ValueError(f"unknown option(s) {sorted(kw)}")
            return replace(self, **{kind: w})
        if kind == "poison":
            return replace(self, poison=kw["order"])
        if kind == "load":
            return replace(self, load_scale=float(kw.get("scale", 40)))
        if kind == "hiccups":
            if opts.strip() == "off":
                return replace(self, hiccups=(0.0, 0.0))
            return replace(self, hiccups=(minutes_of(kw.get("every", "90")), minutes_of(kw.get("minutes", "10"))))
        raise ValueError(f"unknown fault {kind!r} (outage, slow_shipping, poison, load, hiccups)")

    def describe(self) -> dict:
        """The settings as JSON-ready values (``GET /healthz`` shows them)."""
        def w(x):
            return None if x is None else x.__dict__
        return {"speed": self.speed, "seed": self.seed, "start": iso(self.start), "slow_ms": self.slow_ms,
                "outage": w(self.outage), "slow_shipping": w(self.slow_shipping), "poison": self.poison,
                "load_scale": self.load_scale, "hiccups": list(self.hiccups), "workers": self.workers}


def iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SimClock:
    """An aware UTC clock running ``speed`` times the wall clock from ``start`` (monotonic underneath)."""

    def __init__(self, start: datetime, speed: float = 1.0):
        self.start, self.speed = start, float(speed)
        self._t0 = time.monotonic()

    def __call__(self) -> datetime:
        return self.now()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(time.monotonic() - self._t0) * self.speed)

    def minutes(self, t: datetime | None = None) -> float:
        """Simulated minutes since ``start``."""
        return ((t or self.now()) - self.start).total_seconds() / 60.0

    def sleep_sim_ms(self, ms: float) -> None:
        """Spend ``ms`` simulated milliseconds of work (``ms / speed`` real ones)."""
        time.sleep(max(ms, 0.0) / 1000.0 / self.speed)


# -------------------------------------------------------------------------------------------------- bus
class Bus:
    """An in-process event bus: a queue and worker threads that dispatch each event to its handler."""

    def __init__(self, dispatch, workers: int = 4):
        self._queue: queue.Queue = queue.Queue()
        self._dispatch = dispatch
        self._emitted: set = set()
        self._lock = threading.Lock()
        self.accepting = True
        self._threads = [threading.Thread(target=self._work, name=f"bus-{i}", daemon=True)
                         for i in range(workers)]
        for t in self._threads:
            t.start()

    def qsize(self) -> int:
        return self._queue.qsize()

    def publish(self, event: dict) -> None:
        self._queue.put(event)

    def emit_once(self, event: dict) -> bool:
        """Publish a follow-on event unless one with its id was already emitted (the outbox)."""
        with self._lock:
            if event["id"] in self._emitted:
                return False
            self._emitted.add(event["id"])
        self._queue.put(event)
        return True

    def _work(self) -> None:
        while True:
            event = self._queue.get()
            try:
                if event is None:
                    return
                self._dispatch(event)
            except Exception:  # the recorder has recorded the failure; the bus carries on
                logger.debug("handler failed on %s", event.get("id"), exc_info=True)
            finally:
                self._queue.task_done()

    def drain(self, timeout: float = 10.0) -> bool:
        """Stop taking events from outside, wait (bounded) for the queue to empty, stop the workers."""
        self.accepting = False
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        empty = not self._queue.unfinished_tasks
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))
        return empty


# ------------------------------------------------------------------------------------------- the service
class HandlerError(RuntimeError):
    """A handler failed (the recorder records status ``error``)."""


class OrderService:
    """The five handlers, their downstream calls and the faults."""

    def __init__(self, settings: Settings, clock: SimClock, recorder):
        self.settings, self.clock, self.recorder = settings, clock, recorder
        self.bus = Bus(self._dispatch, settings.workers)
        self.handlers = {}
        for etype, name in HANDLERS.items():
            fn = getattr(self, "_" + name)
            self.handlers[etype] = recorder.handler(name)(self._bind(fn))
        self._hiccups = self._draw_hiccups()

    @staticmethod
    def _bind(fn):
        def handler(event):
            return fn(event)
        handler.__name__ = fn.__name__.lstrip("_")
        return handler

    def _dispatch(self, event: dict) -> None:
        self.handlers[event["type"]](event)

    # --- randomness: one generator per (event, handler), so a step's draws do not depend on thread order
    def _rng(self, event: dict, name: str) -> random.Random:
        return random.Random(f"{self.settings.seed}:{event['id']}:{name}")

    def _draw_hiccups(self) -> dict:
        every, length = self.settings.hiccups
        out = {}
        for name in HANDLERS.values():
            rng = random.Random(f"{self.settings.seed}:hiccups:{name}")
            spells, t = [], rng.expovariate(1 / every) if every > 0 else math.inf
            while t < 7 * 24 * 60:
                spells.append((t, t + length))
                t += length + rng.expovariate(1 / every)
            out[name] = spells
        return out

    def _in_hiccup(self, name: str, minute: float) -> bool:
        return any(a <= minute < b for a, b in self._hiccups[name])

    # --- the common part of a step: latency, slow, base and hiccup errors, poison
    def _step(self, event, name, rng, *, latency_factor=1.0, extra_error=0.0, allow_noise=True):
        s = self.settings
        minute = self.clock.minutes()
        if s.poison is not None and event.get("subject") == s.poison:
            raise HandlerError(f"poison message: order {s.poison} cannot be processed")
        latency = rng.lognormvariate(math.log(40.0), 0.5) * latency_factor
        error = extra_error
        if allow_noise:
            error += s.base_error
            if self._in_hiccup(name, minute):
                latency *= 8.0
                error += 0.25
        self.clock.sleep_sim_ms(latency)
        if rng.random() < error:
            raise HandlerError(f"{name} failed on {event['id']}")
        return latency, minute

    def _status(self, latency: float) -> str | None:
        return "slow" if latency > self.settings.slow_ms else None

    def _follow(self, event: dict, etype: str, suffix: str, data: dict) -> None:
        trace = TRACEPARENT.match(event["traceparent"]).group(1)
        span = "%016x" % random.Random(f"{event['id']}/{suffix}").getrandbits(64)
        self.bus.emit_once({
            "specversion": "1.0", "id": f"{event['id'].split('/')[0]}/{suffix}", "type": etype,
            "source": "orders-app", "subject": event["subject"], "time": iso(self.clock.now()),
            "traceparent": f"00-{trace}-{span}-01", "data": data})

    def _pay(self, event: dict, rng: random.Random, attempt: int, minute: float) -> float:
        """One attempt at the payment provider: emits payment_succeeded or payment_failed; its latency."""
        s, phase = self.settings, (self.settings.outage.phase(minute) if self.settings.outage else None)
        decline = {"active": s.outage.fail if s.outage else 0, "warn": s.outage.warn_fail if s.outage else 0,
                   None: s.base_decline}[phase]
        decline = max(decline, s.base_decline)
        latency = rng.lognormvariate(math.log(60.0), 0.4) * (6.0 if phase else 1.0)
        data = dict(event.get("data") or {}, attempt=attempt)
        if rng.random() < decline:
            self._follow(event, "payment_failed", f"pay{attempt}", dict(data, reason="declined"))
        else:
            self._follow(event, "payment_succeeded", f"pay{attempt}", data)
        return latency

    # --- the handlers (each wrapped by the recorder: a str return is the status, None is "ok")
    def _on_order_created(self, event):
        s, rng = self.settings, self._rng(event, "on_order_created")
        factor, extra = 1.0, 0.0
        if s.load_scale:
            q = self.bus.qsize() / s.load_scale       # degrades with the bus's queue length
            factor, extra = 1.0 + 4.0 * q, min(0.5, 0.1 * q * q)
        latency, minute = self._step(event, "on_order_created", rng, latency_factor=factor, extra_error=extra)
        latency += self._pay(event, rng, 1, minute)
        return self._status(latency)

    def _on_payment_failed(self, event):
        s, rng = self.settings, self._rng(event, "on_payment_failed")
        minute = self.clock.minutes()
        phase = s.outage.phase(minute) if s.outage else None
        if phase == "active":
            # during the outage the handler errors with probability p, whatever else happens
            if s.poison is not None and event.get("subject") == s.poison:
                raise HandlerError("poison message")
            latency = rng.lognormvariate(math.log(40.0), 0.5) * 6.0
            self.clock.sleep_sim_ms(latency)
            if rng.random() < s.outage.p:
                raise HandlerError("payment provider unavailable while notifying the customer")
        else:
            latency, minute = self._step(event, "on_payment_failed", rng,
                                         latency_factor=6.0 if phase == "warn" else 1.0)
        attempt = int((event.get("data") or {}).get("attempt", 1))
        if attempt < MAX_PAYMENT_ATTEMPTS:
            latency += self._pay(event, rng, attempt + 1, minute)
        return self._status(latency)

    def _on_payment_succeeded(self, event):
        rng = self._rng(event, "on_payment_succeeded")
        latency, _ = self._step(event, "on_payment_succeeded", rng)
        self._follow(event, "order_shipped", "ship", event.get("data") or {})
        return self._status(latency)

    def _on_order_shipped(self, event):
        s, rng = self.settings, self._rng(event, "on_order_shipped")
        minute = self.clock.minutes()
        phase = s.slow_shipping.phase(minute) if s.slow_shipping else None
        latency, _ = self._step(event, "on_order_shipped", rng, latency_factor=12.0 if phase else 1.0)
        if phase == "active" and rng.random() < s.slow_shipping.p:
            raise TimeoutError("carrier API did not answer within 2 s")
        self._follow(event, "order_delivered", "deliver", event.get("data") or {})
        return self._status(latency)

    def _on_order_delivered(self, event):
        rng = self._rng(event, "on_order_delivered")
        latency, _ = self._step(event, "on_order_delivered", rng)
        return self._status(latency)


# ---------------------------------------------------------------------------------------------- the app
class BadEvent(ValueError):
    pass


def parse_event(event_type: str, headers, body: bytes) -> dict:
    """A CloudEvent from a request, binary mode (``ce-*`` headers, the body is ``data``) or structured mode
    (``Content-Type: application/cloudevents+json``); raises :class:`BadEvent` with a one-line reason.

    >>> e = parse_event("order_created", {"Content-Type": "application/cloudevents+json"},
    ...     b'{"specversion": "1.0", "id": "e1", "type": "order_created", "source": "shop", "subject": "o1"}')
    >>> e["id"], e["subject"], e["traceparent"][:3]
    ('e1', 'o1', '00-')
    >>> parse_event("order_created", {"ce-id": "e1"}, b"{}")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ...
    BadEvent: missing CloudEvents attribute 'specversion'
    """
    ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    try:
        payload = json.loads(body or b"null")
    except ValueError as exc:
        raise BadEvent(f"body is not JSON: {exc}") from None
    if ctype == "application/cloudevents+json":
        if not isinstance(payload, dict):
            raise BadEvent("a structured-mode body must be a JSON object")
        event = dict(payload)
    else:
        event = {k[3:].lower(): v for k, v in headers.items() if k.lower().startswith("ce-")}
        if "traceparent" in headers:
            event["traceparent"] = headers["traceparent"]
        event["data"] = payload
    for attr in ("specversion", "id", "source", "type", "subject"):
        if not isinstance(event.get(attr), str) or not event[attr]:
            raise BadEvent(f"missing CloudEvents attribute {attr!r}")
    if event["specversion"] != "1.0":
        raise BadEvent(f"specversion {event['specversion']!r} is not 1.0")
    if event["type"] != event_type:
        raise BadEvent(f"type {event['type']!r} does not match the route /event/{event_type}")
    if "/" in event["id"] or ":" in event["id"]:
        raise BadEvent("id must not contain '/' or ':' (they are kept for follow-on and step ids)")
    if event.get("data") is not None and not isinstance(event["data"], dict):
        raise BadEvent("data must be a JSON object")
    tp = event.get("traceparent")
    if tp is None:
        r = random.Random(event["id"])
        event["traceparent"] = "00-%032x-%016x-01" % (r.getrandbits(128), r.getrandbits(64))
    elif not isinstance(tp, str) or not TRACEPARENT.match(tp):
        raise BadEvent("traceparent is not a W3C trace context (00-<32 hex>-<16 hex>-<2 hex>)")
    return event


def create_app(settings: Settings, *, clock: SimClock | None = None):
    """The Flask app of the service, with its recorder, bus and handlers (``app.extensions["orders"]``).

    >>> import tempfile
    >>> app = create_app(Settings(exports=tempfile.mkdtemp(), speed=3600))
    >>> client = app.test_client()
    >>> client.post("/event/order_refunded", json={}).status_code
    404
    >>> r = client.post("/event/order_created", json={"specversion": "1.0", "id": "e1", "type": "order_created",
    ...     "source": "shop", "subject": "o1"}, headers={"Content-Type": "application/cloudevents+json"})
    >>> r.status_code, r.get_json()
    (202, {'accepted': 'e1'})
    >>> service = app.extensions["orders"]
    >>> service.bus.drain(5)
    True
    >>> service.recorder.close()
    """
    from flask import Flask, jsonify, request
    from markovfault.instrument import HistoryRecorder

    clock = clock or SimClock(settings.start, settings.speed)
    app = Flask("orders_app")
    # rotate_every: a period's file appears when its simulated hour ends, even in a lull (real seconds)
    recorder = HistoryRecorder(settings.exports, source="orders-app", period="1h", clock=clock.now,
                               prefix=settings.prefix, rotate_every=min(1.0, 600.0 / settings.speed))
    recorder.init_app(app)
    service = OrderService(settings, clock, recorder)
    app.extensions["orders"] = service
    state = {"accepted": 0}
    lock = threading.Lock()

    def error(code, message):
        return jsonify(error=message), code

    @app.post("/event/<event_type>")
    def receive(event_type):
        if event_type not in HANDLERS:
            return error(404, f"unknown event type {event_type!r}; known: {', '.join(EVENT_TYPES)}")
        if not service.bus.accepting:
            return error(503, "shutting down")
        try:
            event = parse_event(event_type, request.headers, request.get_data())
        except BadEvent as exc:
            return error(400, str(exc))
        service.bus.publish(event)
        with lock:
            state["accepted"] += 1
        return jsonify(accepted=event["id"]), 202

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok", time=iso(clock.now()), minutes=round(clock.minutes(), 3),
                       queue=service.bus.qsize(), accepted=state["accepted"],
                       settings=service.settings.describe())

    @app.post("/admin/faults")
    def faults():
        """Schedule a fault at run time: ``{"spec": "outage@3h+45m:p=0.37"}`` (the load generator's
        ``--incident-at``)."""
        body = request.get_json(silent=True) or {}
        try:
            new = service.settings.with_fault(str(body["spec"]))
        except (KeyError, ValueError) as exc:
            return error(400, f"bad fault spec: {exc}")
        service.settings = new
        return jsonify(settings=new.describe()), 200

    return app


def serve(settings: Settings, *, drain_timeout: float = 15.0) -> int:
    """Serve under waitress on ``settings.host:port`` until SIGTERM/SIGINT; drain, close, return 0."""
    from waitress import create_server

    app = create_app(settings)
    service = app.extensions["orders"]
    recorder = service.recorder
    server = create_server(app, host=settings.host, port=settings.port, threads=4)

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"orders-app on http://{settings.host}:{server.effective_port} (speed {settings.speed:g}, "
          f"exports {settings.exports})", flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        service.bus.accepting = False
        try:
            server.close()
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass
        drained = service.bus.drain(drain_timeout)
        recorder.close()
        print(f"orders-app stopped ({'drained' if drained else 'drain timed out'}; exports closed)", flush=True)
    return 0
