"""The recorder (markovfault.instrument): real files in temporary directories, real threads, a real child process
killed mid-period, a real Flask app and a real OpenTelemetry tracer provider."""

import datetime as dt
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from markovfault import read_histories
from markovfault.exceptions import ConfigError, RecorderError
from markovfault.histories import ColumnMap
from markovfault.instrument import CLOUDEVENTS_COLUMNS, HistoryRecorder
from markovfault.job._inputs import list_inputs

ROOT = Path(__file__).resolve().parents[1]
T0 = dt.datetime(2026, 12, 2, 10, 0, tzinfo=dt.timezone.utc)
UTC = dt.timezone.utc


class StepClock:
    """A clock that moves ``step`` forward at every reading (the recorder reads it under its lock)."""

    def __init__(self, start=T0, step=dt.timedelta(milliseconds=5)):
        self.now, self.step = start, step
        self.readings = 0

    def __call__(self):
        now = self.now
        self.now += self.step
        self.readings += 1
        return now


def settable_clock(start=T0):
    state = {"now": start}
    return state, (lambda: state["now"])


def lines_of(directory):
    """Every line of every renamed file, parsed (a torn line fails here)."""
    out = []
    for path in sorted(Path(directory).glob("*.jsonl")):
        text = path.read_text()
        assert text.endswith("\n"), path
        out += [json.loads(line) for line in text.splitlines()]
    return out


def event(k, traceparent=True, subject=None):
    ev = {"id": f"evt-{k}", "type": ("order.created", "payment.failed")[k % 2], "source": "/orders",
          "subject": subject or f"order-{k // 3}", "time": "2026-12-02T10:00:00Z", "data": {"k": k}}
    if traceparent:
        ev["traceparent"] = f"00-{k:032x}-{k:016x}-01"
    return ev


# ---------------------------------------------------------------------------- under concurrent load


def test_threads_across_periods_lose_and_duplicate_nothing(tmp_path):
    clock = StepClock()
    recorder = HistoryRecorder(tmp_path, period="10s", clock=clock, flush_lines=50)
    statuses = {}

    @recorder.handler("on_order_created")
    def handle(ev):
        k = int(ev["id"].split("-")[1])
        if k % 7 == 0:
            raise TimeoutError("slow downstream")
        if k % 11 == 0:
            raise RuntimeError("poison message")
        return None if k % 3 else "slow"

    n_threads, per_thread = 8, 2000
    errors = []

    def worker(t):
        for j in range(per_thread):
            k = t * per_thread + j + 1
            statuses[k] = ("timeout" if k % 7 == 0 else "error" if k % 11 == 0 else "ok" if k % 3 else "slow")
            try:
                handle(event(k, traceparent=k % 2 == 0))
            except TimeoutError:
                pass
            except RuntimeError as exc:
                if str(exc) != "poison message":
                    errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    recorder.close()
    assert not errors
    n = n_threads * per_thread
    assert clock.readings == n + 1  # once at the start (for leftovers), then once per line, under the lock

    names = sorted(p.name for p in tmp_path.iterdir())
    assert not [name for name in names if name.startswith(".")], names  # no temporary left
    expected = {f"events-{T0 + dt.timedelta(seconds=10 * (5 * k // 10000)):%Y%m%dT%H%M%SZ}.jsonl"
                for k in range(1, n + 1)}  # the periods of the times 5 ms, 10 ms, ..., 80 s
    assert set(names) == expected and len(names) >= 8  # one file per period crossed

    lines = lines_of(tmp_path)
    ids = [line["id"] for line in lines]
    assert len(ids) == n and set(ids) == {f"evt-{k}:on_order_created" for k in range(1, n + 1)}
    for path in tmp_path.glob("*.jsonl"):  # each file holds its period's steps only, in time order
        start = dt.datetime.strptime(path.name[7:23], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        times = [dt.datetime.fromisoformat(json.loads(line)["time"]) for line in path.read_text().splitlines()]
        assert all(start <= t < start + dt.timedelta(seconds=10) for t in times)
        assert times == sorted(times)
    first = lines[0]
    assert first["specversion"] == "1.0" and first["source"] == "orders-app"
    assert first["datacontenttype"] == "application/json" and first["subject"] == "on_order_created"

    frame = read_histories(tmp_path, columns=CLOUDEVENTS_COLUMNS)
    assert len(frame) == n and frame.attrs["read_report"].dropped == {}
    by_id = {line["id"]: line for line in lines}
    frame["k"] = frame["event_id"].str.split(":").str[0].str.split("-").str[1].astype(int)
    assert (frame["entity"] == "on_order_created").all()
    assert frame["status"].tolist() == [statuses[k] for k in frame["k"]]
    assert frame["event"].tolist() == [("order.created", "payment.failed")[k % 2] for k in frame["k"]]
    # times: the clock's readings, exactly (to the microsecond), and one distinct time per line
    assert frame["time"].is_unique and frame["time"].min() == T0 + dt.timedelta(milliseconds=5)
    assert frame["time"].max() == T0 + dt.timedelta(milliseconds=5) * n
    assert [by_id[i]["time"] for i in frame["event_id"]] == \
        frame["time"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ").tolist()
    assert frame["latency_ms"].tolist() == [by_id[i]["data"]["latency_ms"] for i in frame["event_id"]]
    assert (frame["latency_ms"] >= 0).all() and frame["latency_ms"].dtype == "float64"
    # trace: the event's traceparent passed through, or a fresh one for events without
    with_parent = frame["k"] % 2 == 0
    assert frame.loc[with_parent, "trace"].tolist() == [f"{k:032x}" for k in frame.loc[with_parent, "k"]]
    fresh = frame.loc[~with_parent, "trace"]
    assert fresh.str.fullmatch("[0-9a-f]{32}").all() and fresh.is_unique
    assert all(by_id[i]["traceparent"][3:35] == by_id[i]["traceid"] for i in frame["event_id"])


def test_threads_and_a_rotating_timer(tmp_path):
    """Steps of 4 threads and a timer that closes periods in between: every line once, whole, in its period."""
    clock = StepClock(step=dt.timedelta(milliseconds=1))
    recorder = HistoryRecorder(tmp_path, period="1s", clock=clock, rotate_every=0.001, flush_lines=7)

    def worker(t):
        for j in range(1000):
            recorder.record(f"h{t}", event(t * 1000 + j), "ok", 1.0)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    recorder.close()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    ids = [line["id"] for line in lines_of(tmp_path)]
    assert sorted(ids) == sorted(f"evt-{k}:h{k // 1000}" for k in range(4000))
    for path in tmp_path.glob("*.jsonl"):
        start = dt.datetime.strptime(path.name[7:23], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        times = [dt.datetime.fromisoformat(json.loads(line)["time"]) for line in path.read_text().splitlines()]
        assert all(start <= t < start + dt.timedelta(seconds=1) for t in times)


def test_a_redelivered_event_is_dropped_and_reported(tmp_path):
    clock = StepClock()
    with HistoryRecorder(tmp_path, clock=clock) as recorder:
        for k in (1, 2, 3, 2):  # event 2 delivered twice (at-least-once delivery)
            recorder.record("on_payment_failed", event(k), "declined", 4.0)
        recorder.record("on_order_shipped", event(2), "ok", 1.0)  # another handler of that event: kept
    lines = lines_of(tmp_path)
    assert [line["id"] for line in lines].count("evt-2:on_payment_failed") == 2
    frame = read_histories(tmp_path, columns=CLOUDEVENTS_COLUMNS)
    report = frame.attrs["read_report"]
    assert report.dropped == {"duplicate_event_id": 1}
    assert report.n_rows_read == 5 and report.n_rows_kept == 4
    assert sorted(frame["event_id"]) == ["evt-1:on_payment_failed", "evt-2:on_order_shipped",
                                         "evt-2:on_payment_failed", "evt-3:on_payment_failed"]


# ---------------------------------------------------------------------------- a crash


CHILD = textwrap.dedent("""
    import datetime as dt, sys, time
    from markovfault.instrument import HistoryRecorder

    t0 = dt.datetime(2026, 12, 2, 10, 0, tzinfo=dt.timezone.utc)
    now = [t0]
    recorder = HistoryRecorder(sys.argv[1], period="1min", clock=lambda: now[0], flush_lines=1000,
                               flush_seconds=3600)
    for k in range(1, 91):  # 10:00:01 .. 10:01:30: the first minute closes at the 60th step
        now[0] = t0 + dt.timedelta(seconds=k)
        recorder.record("on_order_created", {"id": f"e{k}", "type": "order.created", "subject": f"o{k}"},
                        "ok", 1.0)
    recorder.flush()  # 31 lines of 10:01 in the temporary
    for k in range(91, 96):
        recorder.record("on_order_created", {"id": f"e{k}", "type": "order.created"}, "ok", 1.0)  # buffered only
    print("ready", flush=True)
    time.sleep(60)
""")


CONTINUE = textwrap.dedent("""
    import datetime as dt, logging, sys, time
    from markovfault.instrument import HistoryRecorder

    logging.basicConfig(level=logging.WARNING)
    clock = lambda: dt.datetime(2026, 12, 2, 10, 1, 40, tzinfo=dt.timezone.utc)
    recorder = HistoryRecorder(sys.argv[1], period="1min", clock=clock)
    recorder.record("on_order_created", {"id": "late", "type": "order.created"}, "ok", 1.0)
    recorder.flush()
    print("ready", flush=True)
    time.sleep(60)
""")


def test_a_process_killed_mid_period_leaves_only_complete_files(tmp_path, caplog):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, env=env,
                             text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [".events-20261202T100100Z.jsonl.tmp", "events-20261202T100000Z.jsonl"]
    done = tmp_path / "events-20261202T100000Z.jsonl"
    assert [line["id"] for line in lines_of(tmp_path)] == [f"e{k}:on_order_created" for k in range(1, 60)]
    assert [key for key, _, _ in list_inputs(str(tmp_path))] == [done.name]  # the job reads complete files only
    assert len(read_histories(tmp_path, columns=CLOUDEVENTS_COLUMNS)) == 59
    tmp = tmp_path / ".events-20261202T100100Z.jsonl.tmp"
    assert len(tmp.read_text().splitlines()) == 31  # what was flushed; the 5 buffered lines died with it
    with open(tmp, "ab") as fh:  # and a write the crash cut short
        fh.write(b'{"specversion":"1.0","id":"e96:on_ord')

    # a recorder started while that period is still open continues its file (the torn line cut off) ...
    again = subprocess.Popen([sys.executable, "-c", CONTINUE, str(tmp_path)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env, text=True)
    try:
        assert again.stdout.readline().strip() == "ready"
    finally:
        again.send_signal(signal.SIGKILL)  # ... and is killed too
        again.wait(timeout=30)
    assert "dropped 37 bytes after its last complete line (31 lines kept)" in again.stderr.read()
    assert tmp.read_bytes().endswith(b"\n") and len(tmp.read_text().splitlines()) == 32
    assert [key for key, _, _ in list_inputs(str(tmp_path))] == [done.name]
    with open(tmp, "ab") as fh:
        fh.write(b'{"torn"')

    # a recorder started after that period ended completes and renames its temporary
    clock = lambda: dt.datetime(2026, 12, 2, 10, 2, 5, tzinfo=UTC)  # noqa: E731
    with caplog.at_level(logging.INFO, logger="markovfault.instrument"):
        second = HistoryRecorder(tmp_path, period="1min", clock=clock)
    assert [getattr(r, "event", None) for r in caplog.records] == ["torn_line_dropped", "leftover_completed"]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["events-20261202T100000Z.jsonl", "events-20261202T100100Z.jsonl"]
    ids = [line["id"] for line in lines_of(tmp_path)]
    assert ids == [f"e{k}:on_order_created" for k in range(1, 91)] + ["late:on_order_created"]
    assert [key for key, _, _ in list_inputs(str(tmp_path))] == names
    second.close()


def test_a_second_process_on_the_same_files_is_refused(tmp_path):
    _, clock = settable_clock()
    first = HistoryRecorder(tmp_path, clock=clock)
    first.record("h", event(1), "ok", 1.0)
    code = textwrap.dedent(f"""
        import datetime as dt
        from markovfault.exceptions import RecorderError
        from markovfault.instrument import HistoryRecorder
        r = HistoryRecorder({str(tmp_path)!r}, clock=lambda: dt.datetime(2026, 12, 2, 10, 30, tzinfo=dt.timezone.utc))
        try:
            r.record("h", {{"id": "x", "type": "t"}}, "ok", 1.0)
        except RecorderError as exc:
            print("refused:", exc)
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.startswith("refused: another process is writing") and "prefix" in out
    first.close()
    assert len(lines_of(tmp_path)) == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_a_forked_child_neither_writes_nor_duplicates_its_parents_lines(tmp_path):
    _, clock = settable_clock()
    recorder = HistoryRecorder(tmp_path, clock=clock)
    recorder.record("h", event(1), "ok", 1.0)  # buffered in the parent when it forks
    pid = os.fork()
    if pid == 0:  # the child (a pre-forking server's worker)
        code = 3
        try:
            recorder.record("h", event(2), "ok", 1.0)
            recorder.flush()
        except RecorderError as exc:
            code = 0 if "another process is writing" in str(exc) else 4
        finally:
            recorder.close()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    recorder.record("h", event(3), "ok", 1.0)
    recorder.close()
    assert [line["id"] for line in lines_of(tmp_path)] == ["evt-1:h", "evt-3:h"]


def test_rotate_closes_an_ended_period_without_a_new_step(tmp_path):
    state, clock = settable_clock(dt.datetime(2026, 12, 2, 10, 59, 59, 999999, tzinfo=UTC))
    recorder = HistoryRecorder(tmp_path, clock=clock, prefix="orders")
    recorder.record("h", event(1), "ok", 1.0)
    assert recorder.rotate() == []
    assert (tmp_path / ".orders-20261202T100000Z.jsonl.tmp").read_text().count("\n") == 1  # rotate flushes
    state["now"] = dt.datetime(2026, 12, 2, 11, 0, tzinfo=UTC)  # the boundary itself
    assert [p.name for p in recorder.rotate()] == ["orders-20261202T100000Z.jsonl"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["orders-20261202T100000Z.jsonl"]
    # a step given an explicit time (12:30+02:00 = 10:30 UTC) of the period just closed: a second file for it
    recorder.record("h", event(2), "ok", 1.0, time=dt.datetime(2026, 12, 2, 12, 30, tzinfo=dt.timezone(
        dt.timedelta(hours=2))))
    recorder.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["orders-20261202T100000Z.1.jsonl",
                                                         "orders-20261202T100000Z.jsonl"]
    with pytest.raises(RecorderError, match="closed"):
        recorder.record("h", event(3), "ok", 1.0)
    recorder.close()  # idempotent


def test_rotate_every_runs_a_timer(tmp_path):
    state, clock = settable_clock()
    recorder = HistoryRecorder(tmp_path, period="1min", clock=clock, rotate_every=0.02)
    recorder.record("h", event(1), "ok", 1.0)
    state["now"] = T0 + dt.timedelta(minutes=1)
    deadline = time.monotonic() + 5
    while not (tmp_path / "events-20261202T100000Z.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (tmp_path / "events-20261202T100000Z.jsonl").exists()
    recorder.close()
    assert not recorder._timer.is_alive()  # noqa: SLF001


# ---------------------------------------------------------------------------- the decorator


def test_the_decorator_maps_outcomes_to_statuses(tmp_path):
    recorder = HistoryRecorder(tmp_path, clock=StepClock())

    @recorder.handler
    def on_order_created(ev):
        return None

    @recorder.handler("on_payment_failed")
    def payment(ev, outcome):
        if outcome == "timeout":
            raise TimeoutError
        if outcome == "boom":
            raise KeyError("poison")
        return outcome

    @recorder.handler()
    def on_order_delivered(ev):
        time.sleep(0.02)

    @recorder.handler
    def on_order_shipped(ev):
        return {"status": "ok"}

    assert on_order_created(event(1)) is None
    assert payment(event(2), "declined") == "declined"
    with pytest.raises(TimeoutError):
        payment(event(3), "timeout")
    with pytest.raises(KeyError, match="poison"):
        payment(event(4), "boom")
    on_order_delivered(event(5))
    with pytest.raises(RecorderError, match="on_order_shipped returned a dict"):
        on_order_shipped(event(6))
    assert payment.__name__ == "payment" and on_order_created.__name__ == "on_order_created"
    recorder.close()
    lines = lines_of(tmp_path)
    assert [(line["subject"], line["data"]["status"]) for line in lines] == [
        ("on_order_created", "ok"), ("on_payment_failed", "declined"), ("on_payment_failed", "timeout"),
        ("on_payment_failed", "error"), ("on_order_delivered", "ok")]
    latency = {line["subject"]: line["data"]["latency_ms"] for line in lines}
    assert latency["on_order_delivered"] >= 20 and latency["on_order_created"] < 20
    assert lines[1]["orderid"] == "order-0" and lines[1]["data"]["event_id"] == "evt-2"


def test_coroutine_handlers_are_recorded_too(tmp_path):
    import asyncio

    recorder = HistoryRecorder(tmp_path, clock=StepClock())

    @recorder.handler
    async def on_order_shipped(ev):
        await asyncio.sleep(0.02)
        if ev["id"] == "evt-2":
            raise TimeoutError
        return "shipped"

    async def main():
        assert await on_order_shipped(event(1)) == "shipped"
        with pytest.raises(TimeoutError):
            await on_order_shipped(event(2))

    asyncio.run(main())
    recorder.close()
    lines = lines_of(tmp_path)
    assert [line["data"]["status"] for line in lines] == ["shipped", "timeout"]
    assert all(line["data"]["latency_ms"] >= 20 for line in lines)


def test_a_directory_that_cannot_be_written_is_a_recorder_error(tmp_path):
    recorder = HistoryRecorder(tmp_path / "exports", clock=StepClock())
    (tmp_path / "exports").rename(tmp_path / "gone")
    (tmp_path / "exports").write_text("a file where the directory was")
    with pytest.raises(RecorderError, match="cannot write the histories in"):
        recorder.record("h", event(1), "ok", 1.0)


def test_bad_input_gets_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="period"):
        HistoryRecorder(tmp_path, period="1.5h")
    with pytest.raises(ConfigError, match="whole number of seconds"):
        HistoryRecorder(tmp_path, period=dt.timedelta(milliseconds=1500))
    with pytest.raises(ConfigError, match="prefix"):
        HistoryRecorder(tmp_path, prefix=".hidden")
    with pytest.raises(RecorderError, match="naive"):  # the clock is read at the start
        HistoryRecorder(tmp_path, clock=lambda: dt.datetime(2026, 1, 1))
    recorder = HistoryRecorder(tmp_path)
    with pytest.raises(RecorderError, match="naive"):
        recorder.record("h", event(1), "ok", 1.0, time=dt.datetime(2026, 1, 1))
    for ev, status, latency, match in [({"type": "t"}, "ok", 1.0, "no 'id'"), ({"id": "x"}, "ok", 1.0, "no 'type'"),
                                       (event(1), "", 1.0, "status"), (event(1), None, 1.0, "status"),
                                       (event(1), "ok", float("nan"), "latency_ms"), ("text", "ok", 1.0, "mapping")]:
        with pytest.raises(RecorderError, match=match):
            recorder.record("h", ev, status, latency, time=T0)
    bad = dict(event(1), traceparent="00-zz-bad-01")  # an invalid traceparent starts a new trace
    recorder.record("h", bad, "ok", 1.0, time=T0)
    recorder.close()
    (line,) = lines_of(tmp_path)
    assert line["traceparent"] != "00-zz-bad-01" and line["traceparent"][3:35] == line["traceid"]


def test_the_column_map_reads_nested_fields_also_from_toml(tmp_path):
    with HistoryRecorder(tmp_path, clock=StepClock()) as recorder:
        for k in range(1, 5):
            recorder.record(f"h{k % 2}", event(k), ("ok", "slow")[k % 2], 10.0 * k)
    (tmp_path / "c.toml").write_text('[columns]\nentity = "subject"\nevent = "type"\nstatus = "data.status"\n'
                                     'event_id = "id"\ntrace = "orderid"\nmetrics = ["data.latency_ms"]\n')
    from markovfault.config import load_config

    columns = ColumnMap.from_config(load_config(tmp_path / "c.toml")["columns"])
    frame = read_histories(tmp_path, columns=columns)
    assert frame["status"].tolist() == ["ok", "ok", "slow", "slow"]  # h0: k=2,4; h1: k=1,3
    assert frame["data.latency_ms"].tolist() == [20.0, 40.0, 10.0, 30.0]
    assert frame["trace"].tolist() == ["order-0", "order-1", "order-0", "order-1"]
    with pytest.raises(Exception, match="data.nothing"):
        read_histories(tmp_path, columns={"status": "data.nothing"})


def test_parquet_struct_columns_read_like_json_lines(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from markovfault.histories import iter_histories

    with HistoryRecorder(tmp_path / "jsonl", clock=StepClock()) as recorder:
        for k in range(1, 7):
            recorder.record(f"h{k % 2}", event(k), ("ok", "slow")[k % 2], 1.5 * k)
    lines = lines_of(tmp_path / "jsonl")
    (tmp_path / "pq").mkdir()
    pq.write_table(pa.Table.from_pylist(lines), tmp_path / "pq" / "events.parquet")  # data: a struct column
    expected = read_histories(tmp_path / "jsonl", columns=CLOUDEVENTS_COLUMNS)
    got = read_histories(tmp_path / "pq", columns=CLOUDEVENTS_COLUMNS)
    assert got.equals(expected) and got["latency_ms"].tolist() == [3.0, 6.0, 9.0, 1.5, 4.5, 7.5]
    batches = [frame for frame, _ in iter_histories(tmp_path / "pq", chunksize=4, columns=CLOUDEVENTS_COLUMNS)]
    assert [len(b) for b in batches] == [4, 2] and sum(b["latency_ms"].sum() for b in batches) == 31.5
    flat = read_histories(tmp_path / "pq", columns={"entity": "subject", "status": "data.status",
                                                    "metrics": ["data.latency_ms"]})
    assert flat["data.latency_ms"].tolist() == [3.0, 6.0, 9.0, 1.5, 4.5, 7.5]


# ---------------------------------------------------------------------------- OpenTelemetry


def test_the_span_processor_records_handler_spans(tmp_path):
    pytest.importorskip("opentelemetry.sdk.trace")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Status, StatusCode

    from markovfault.instrument import HistorySpanProcessor

    recorder = HistoryRecorder(tmp_path, clock=StepClock())
    provider = TracerProvider()
    provider.add_span_processor(HistorySpanProcessor(recorder))
    tracer = provider.get_tracer("orders")
    contexts = {}
    with tracer.start_as_current_span("POST /event/order.created"):  # the HTTP span: no handler attribute
        with tracer.start_as_current_span("on_order_created") as span:
            span.set_attributes({"markovfault.handler": "on_order_created", "markovfault.event_id": "o1",
                                 "markovfault.event_type": "order.created", "markovfault.subject": "order-1"})
            time.sleep(0.01)
            contexts["ok"] = span.get_span_context()
        with tracer.start_as_current_span("charge") as span:
            span.set_attribute("markovfault.handler", "on_payment_failed")
            span.set_status(Status(StatusCode.ERROR, "provider down"))
            contexts["error"] = span.get_span_context()
        with pytest.raises(ValueError):
            with tracer.start_as_current_span("ship", attributes={"markovfault.handler": "on_order_shipped"}) \
                    as span:
                contexts["raised"] = span.get_span_context()
                raise ValueError("no address")
        with tracer.start_as_current_span("deliver") as span:
            span.set_attributes({"markovfault.handler": "on_order_delivered", "markovfault.status": "late"})
            span.set_status(Status(StatusCode.ERROR))  # the handler's own status wins
            contexts["late"] = span.get_span_context()
    provider.shutdown()
    recorder.close()
    lines = lines_of(tmp_path)
    assert [(line["subject"], line["data"]["status"]) for line in lines] == [
        ("on_order_created", "ok"), ("on_payment_failed", "error"), ("on_order_shipped", "error"),
        ("on_order_delivered", "late")]
    for line, key in zip(lines, ["ok", "error", "raised", "late"]):
        assert line["traceid"] == format(contexts[key].trace_id, "032x")
        assert line["traceparent"] == f"00-{contexts[key].trace_id:032x}-{contexts[key].span_id:016x}-{int(contexts[key].trace_flags):02x}"
    assert len({line["traceid"] for line in lines}) == 1  # one request, one trace
    assert lines[0]["id"] == "o1:on_order_created" and lines[0]["type"] == "order.created"
    assert lines[0]["orderid"] == "order-1" and lines[0]["data"]["latency_ms"] >= 10
    assert lines[1]["type"] == "charge" and lines[1]["id"] == f"{contexts['error'].span_id:016x}:on_payment_failed"
    frame = read_histories(tmp_path, columns=CLOUDEVENTS_COLUMNS)
    assert frame["trace"].nunique() == 1 and len(frame) == 4


def test_the_span_processor_says_what_to_install(monkeypatch, tmp_path):
    from markovfault.instrument import _spans

    monkeypatch.setattr(_spans, "StatusCode", None)
    with pytest.raises(ImportError, match="pip install opentelemetry-sdk"):
        _spans.HistorySpanProcessor(HistoryRecorder(tmp_path))


# ---------------------------------------------------------------------------- Flask and the light import


def test_init_app_with_a_real_flask_app(tmp_path):
    flask = pytest.importorskip("flask")
    app = flask.Flask("orders")
    recorder = HistoryRecorder(tmp_path, clock=StepClock()).init_app(app)
    assert app.extensions["markovfault"] is recorder

    @recorder.handler
    def on_order_created(ev):
        return "ok" if ev["data"]["amount"] < 100 else "needs_review"

    @recorder.handler
    def on_payment_failed(ev):
        return None

    handlers = {"order.created": on_order_created, "payment.failed": on_payment_failed}

    @app.post("/event/<event_type>")
    def receive(event_type):
        status = handlers[event_type](flask.request.get_json())
        return {"status": status or "ok"}, 202

    client = app.test_client()
    for k, amount in enumerate([10, 500]):
        reply = client.post("/event/order.created", json={"id": f"o{k}", "type": "order.created",
                                                         "subject": f"order-{k}", "data": {"amount": amount}})
        assert reply.status_code == 202
    assert client.post("/event/payment.failed", json={"id": "p0", "type": "payment.failed"}).status_code == 202
    recorder.close()
    assert [(line["subject"], line["data"]["status"]) for line in lines_of(tmp_path)] == [
        ("on_order_created", "ok"), ("on_order_created", "needs_review"), ("on_payment_failed", "ok")]


def test_init_app_closes_the_recorder_at_exit(tmp_path):
    pytest.importorskip("flask")
    code = textwrap.dedent(f"""
        from flask import Flask
        from markovfault.instrument import HistoryRecorder
        recorder = HistoryRecorder({str(tmp_path)!r}).init_app(Flask("orders"))
        recorder.record("on_order_created", {{"id": "o1", "type": "order.created"}}, "ok", 1.0)
    """)  # exits without close()
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    names = [p.name for p in tmp_path.iterdir()]
    assert len(names) == 1 and not names[0].startswith(".") and len(lines_of(tmp_path)) == 1


def test_importing_the_recorder_loads_no_flask_opentelemetry_or_numerical_library():
    code = ("import sys\n"
            "import markovfault.instrument\n"
            "from markovfault.instrument import HistoryRecorder\n"
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'flask', 'opentelemetry', 'numpy', 'pandas',"
            " 'pyarrow', 'scipy', 'werkzeug', 'cloudevents'})\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))


def test_the_lazy_names():
    import markovfault.instrument as instrument

    assert CLOUDEVENTS_COLUMNS.status == "data.status" and CLOUDEVENTS_COLUMNS.trace == "traceid"
    assert "HistorySpanProcessor" in dir(instrument)
    with pytest.raises(AttributeError, match="nope"):
        instrument.nope  # noqa: B018

