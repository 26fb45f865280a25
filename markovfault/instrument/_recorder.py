"""The recorder: one CloudEvents JSON line per handler step, into one file per period.

Part of :mod:`markovfault.instrument` (see its ``__init__``); standard library only.
"""

from __future__ import annotations

import atexit
import datetime as dt
import functools
import inspect
import json
import math
import numbers
import os
import re
import threading
import weakref
import time as _time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, overload

from ..exceptions import ConfigError, RecorderError
from . import _files
from ._files import logger

Handler = TypeVar("Handler", bound=Callable[..., Any])

_TRACEPARENT_RE = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_NO_TRACE = "0" * 32
_NO_SPAN = "0" * 16


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def new_traceparent() -> str:
    """A fresh W3C traceparent (version 00, sampled): a random trace id and parent id."""
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"


def trace_id_of(traceparent: Any) -> str | None:
    """The trace id of a valid W3C traceparent (lower-case hex, not all zeros), else None."""
    if not isinstance(traceparent, str):
        return None
    match = _TRACEPARENT_RE.match(traceparent.strip())
    if match is None or match.group(1) == "ff" or match.group(2) == _NO_TRACE or match.group(3) == _NO_SPAN:
        return None
    return match.group(2)


def _field(event: Any, name: str) -> Any:
    """``event[name]`` of a dict or of a CloudEvents SDK event (missing: None)."""
    try:
        return event[name]
    except (KeyError, IndexError):
        return None
    except TypeError:
        raise RecorderError(f"the event is a {type(event).__name__}; an event is a CloudEvents-shaped mapping "
                            "(id, type, source, subject, time, traceparent, data), e.g. a dict or a "
                            "cloudevents.http.CloudEvent.") from None


class HistoryRecorder:
    """Record each step of a service's event handlers as one CloudEvents JSON line, one file per period.

    The files are what :func:`~markovfault.read_histories` reads with
    ``columns=CLOUDEVENTS_COLUMNS`` and what the scheduled job's ``input`` directory takes: a period's file
    is written under a hidden temporary name and appears, complete, when its period closes.

    Parameters
    ----------
    directory : str or PathLike
        Where the files go (created if missing). One recorder per directory and ``prefix``: a second process
        that would write the same temporary gets a :class:`~markovfault.exceptions.RecorderError`.
    source : str, default="orders-app"
        The CloudEvents ``source`` of every line: the service that records.
    period : str or timedelta, default="1h"
        The length of a file's period: ``"1h"``, ``"15min"``, ``"30s"``, ``"1d"``, a whole number of seconds.
        Periods are aligned to the Unix epoch in UTC (hourly files start on the hour).
    clock : callable, optional
        Returns the current time as an aware ``datetime`` (default: ``datetime.now(timezone.utc)``). It is
        read under the recorder's lock, so lines are written in the order of their times; an accelerated
        clock makes hours pass in seconds (a demo).
    prefix : str, default="events"
        The files are ``f"{prefix}-{start:%Y%m%dT%H%M%SZ}.jsonl"`` (the period's start, UTC).
    flush_lines : int, default=100
        Written lines are flushed to the operating system after at most this many lines ...
    flush_seconds : float, default=1.0
        ... or when a line comes this many seconds (monotonic) after the last flush; :meth:`rotate` also
        flushes. A process killed (SIGKILL) loses at most the lines not flushed yet; an operating-system
        crash at most those since the last fsync, which every period's file gets when it closes.
    rotate_every : float, optional
        When given, a daemon thread calls :meth:`rotate` every this many seconds (real time), so that a
        period's file appears when the period ends even if no line comes, and buffered lines are flushed.
        :meth:`close` stops it.

    Attributes
    ----------
    directory : Path
    source, prefix : str
    period : timedelta

    Raises
    ------
    ConfigError
        A bad ``period``, ``prefix``, ``flush_lines``, ``flush_seconds`` or ``rotate_every``.

    Notes
    -----
    **Files.** A period's lines go to ``"." + name + ".tmp"``; the temporary is renamed to ``name`` (after
    flush and fsync; the directory is fsynced too) when its period closes: at the first line at or after the
    period's end, at :meth:`rotate` once the period has ended, and at :meth:`close` (which closes the
    current period's file early: a later start within the same period writes ``<name>.1.jsonl``). A file's
    lines have times within its period, except a line given an explicit ``time`` before the open period,
    which goes to the open file (and is logged): the job reads rows by their time, not their file.

    **Crashes.** A process killed mid-period leaves the renamed files of the periods before and one hidden
    temporary, which the job does not read. A new recorder on the directory repairs every temporary that no
    live process holds (a torn last line is dropped and logged), renames those whose period has ended,
    and goes on appending to the one of the current period. Those of later periods (a clock set back) are
    renamed by :meth:`rotate` once their period has ended, or by :meth:`close`.

    **Threads.** :meth:`record` may be called from many threads: one lock guards the clock, the period's
    file and the buffer. Lines are buffered whole and written with ``os.write`` to the temporary (opened
    ``O_APPEND``); a write that fails (a full disk) is cut back to the last whole line, and the error is a
    :class:`~markovfault.exceptions.RecorderError`.

    **Processes.** One process per directory and prefix (an advisory lock on the open temporary enforces
    it). A process forked from one that records (a pre-forking server's worker) does not write its
    parent's file: its first step raises a RecorderError. Make the recorder in each worker, after the fork,
    with a prefix of its own that stays the same across restarts (so that its leftovers are completed).

    **Each line** is a CloudEvents 1.0 structured-mode JSON object: ``specversion`` ``"1.0"``, ``id``
    ``f"{event['id']}:{handler}"`` (a redelivered event handled twice writes the same id, which
    :func:`~markovfault.read_histories` drops as a duplicate and reports), ``source``, ``type`` (the
    event's type), ``subject`` (the handler), ``time`` (ISO 8601 UTC to the microsecond, ``Z``),
    ``traceparent`` (the event's, or a new one when it has none or an invalid one, as W3C Trace Context
    prescribes), ``traceid`` (its 32-hex trace id), ``orderid`` (the event's ``subject``),
    ``datacontenttype`` ``"application/json"`` and ``data``: ``{"status", "latency_ms", "event_id"}``.
    To follow an order across handlers, give its follow-on events the traceparent of the event that caused
    them (or read ``orderid`` as the trace column).

    Examples
    --------
    >>> import datetime as dt, json, os, tempfile
    >>> now = [dt.datetime(2024, 5, 1, 10, 59, 59, tzinfo=dt.timezone.utc)]
    >>> directory = tempfile.mkdtemp()
    >>> recorder = HistoryRecorder(directory, period="1h", clock=lambda: now[0])
    >>> event = {"id": "e1", "type": "order.created", "source": "/orders", "subject": "order-7",
    ...          "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
    >>> recorder.record("on_order_created", event, "ok", 12.5)
    >>> sorted(os.listdir(directory))
    ['.events-20240501T100000Z.jsonl.tmp']
    >>> now[0] += dt.timedelta(seconds=2)  # the hour ends
    >>> [path.name for path in recorder.rotate()]
    ['events-20240501T100000Z.jsonl']
    >>> line = json.loads(open(os.path.join(directory, "events-20240501T100000Z.jsonl")).read())
    >>> line["id"], line["subject"], line["time"], line["traceid"], line["data"]
    ('e1:on_order_created', 'on_order_created', '2024-05-01T10:59:59.000000Z', '4bf92f3577b34da6a3ce929d0e0e4736', {'status': 'ok', 'latency_ms': 12.5, 'event_id': 'e1'})
    >>> recorder.close()
    """

    def __init__(self, directory: str | os.PathLike, *, source: str = "orders-app",
                 period: str | dt.timedelta = "1h", clock: Callable[[], dt.datetime] | None = None,
                 prefix: str = "events", flush_lines: int = 100, flush_seconds: float = 1.0,
                 rotate_every: float | None = None) -> None:
        if not isinstance(source, str) or not source.strip():
            raise ConfigError(f"source = {source!r}: must be a non-empty string (the CloudEvents source, e.g. "
                              "the service's name or URI).")
        if isinstance(flush_lines, bool) or not isinstance(flush_lines, int) or flush_lines < 1:
            raise ConfigError(f"flush_lines = {flush_lines!r}: must be a positive integer.")
        if not _positive(flush_seconds):
            raise ConfigError(f"flush_seconds = {flush_seconds!r}: must be a positive number of seconds.")
        if rotate_every is not None and not _positive(rotate_every):
            raise ConfigError(f"rotate_every = {rotate_every!r}: must be a positive number of seconds or None.")
        if clock is not None and not callable(clock):
            raise ConfigError(f"clock = {clock!r}: must be a callable returning an aware datetime.")
        self.directory = Path(directory)
        self.source = source
        self.prefix = _files.check_prefix(prefix)
        self._period = _files.parse_period(period)
        self.period = dt.timedelta(microseconds=self._period)
        self._clock = clock or _utcnow
        self._flush_lines = flush_lines
        self._flush_seconds = float(flush_seconds)
        self._lock = threading.Lock()
        self._fd: int | None = None  # the open period's temporary (unbuffered; the recorder buffers)
        self._tmp: Path | None = None
        self._buffer: list[bytes] = []  # whole lines not written yet
        self._size = 0  # bytes in the temporary: a failed write is cut back to it
        self._start: int | None = None  # its period's start (microseconds since the epoch)
        self._pending = 0  # lines written since the last flush
        self._flushed_at = _time.monotonic()
        self._late = 0
        self._closed = False
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._leftovers = self._recover()
        except OSError as exc:
            raise RecorderError(f"cannot use the directory {self.directory}: {exc.strerror or exc}") from exc
        if hasattr(os, "register_at_fork"):  # a child process does not write its parent's file
            ref = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: (r := ref()) is not None and r._after_fork())
        if rotate_every is not None:
            self._timer = threading.Thread(target=self._rotate_loop, args=(float(rotate_every),),
                                           name="markovfault-recorder-rotate", daemon=True)
            self._timer.start()

    def __repr__(self) -> str:
        return (f"HistoryRecorder({str(self.directory)!r}, source={self.source!r}, period={self.period!r}, "
                f"prefix={self.prefix!r})")

    def __enter__(self) -> HistoryRecorder:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ------------------------------------------------------------------ recording

    def record(self, handler: str, event: Any, status: str, latency_ms: float, *,
               time: dt.datetime | None = None) -> None:
        """Write one step of ``handler``: it handled ``event`` and ended in ``status`` after ``latency_ms``.

        Parameters
        ----------
        handler : str
            The handler's name: the line's ``subject``, the entity of the histories.
        event : mapping
            The CloudEvents-shaped event handled: ``id`` and ``type`` (required), ``subject`` (the order
            id), ``traceparent`` (optional); a dict or a ``cloudevents`` SDK event.
        status : str
            The step's outcome (``"ok"``, ``"timeout"``, ``"error"``, ...).
        latency_ms : float
            How long the step took, in milliseconds (finite, >= 0).
        time : datetime, optional
            When the step ended, aware; default: the recorder's clock, read under its lock.

        Raises
        ------
        RecorderError
            A missing event id or type, a status that is not a non-empty string, a bad latency, a naive
            time, or a recorder closed already.

        Examples
        --------
        >>> import tempfile
        >>> with HistoryRecorder(tempfile.mkdtemp()) as recorder:  # doctest: +ELLIPSIS
        ...     recorder.record("on_order_created", {"id": "e1", "type": "order.created"}, "ok", 3.0)
        ...     recorder.record("on_order_created", {"type": "order.created"}, "ok", 3.0)
        Traceback (most recent call last):
        ...
        markovfault.exceptions.RecorderError: on_order_created: the event has no 'id'; ...
        """
        body = self._body(handler, event, status, latency_ms)
        when = None if time is None else self._check_time(time, "time")
        with self._lock, _writing(self.directory):
            if self._closed:
                raise RecorderError(f"{handler}: the recorder of {self.directory} is closed; nothing more can be "
                                    "recorded. Fix: record before close() (init_app closes it at exit).")
            if when is None:
                when = self._check_time(self._clock(), "the clock's time")
            micros = _files.micros_of(when)
            start = _files.period_start(micros, self._period)
            if self._fd is None or start > self._start:
                self._close_file()
                self._open(start)
            elif start < self._start:
                self._late += 1
                if self._late == 1:
                    logger.warning("%s: a step at %s is before the open period (%s); written to the open file "
                                   "(further such steps of this period are not logged)", handler,
                                   when.isoformat(), _files.time_of(self._start).isoformat(),
                                   extra={"event": "late_step"})
            line = body + (',"time":"' + f"{_files.time_of(micros):%Y-%m-%dT%H:%M:%S.%f}Z" + '"}\n').encode()
            self._buffer.append(line)
            self._pending += 1
            if self._pending >= self._flush_lines or _time.monotonic() - self._flushed_at >= self._flush_seconds:
                self._flush()

    def _body(self, handler: str, event: Any, status: str, latency_ms: float) -> bytes:
        """The line without its time and closing brace (built outside the lock)."""
        if not isinstance(handler, str) or not handler.strip():
            raise RecorderError(f"handler = {handler!r}: must be a non-empty string (the handler's name).")
        event_id = _field(event, "id")
        event_type = _field(event, "type")
        for name, value in (("id", event_id), ("type", event_type)):
            if value is None or (isinstance(value, str) and not value.strip()):
                raise RecorderError(f"{handler}: the event has no {name!r}; every CloudEvent has an id and a "
                                    f"type. Event: {event!r}")
        if not isinstance(status, str) or not status.strip():
            raise RecorderError(f"{handler}: status = {status!r} must be a non-empty string (e.g. \"ok\", "
                                "\"error\").")
        if isinstance(latency_ms, bool) or not isinstance(latency_ms, numbers.Real) \
                or not math.isfinite(latency_ms) or latency_ms < 0:
            raise RecorderError(f"{handler}: latency_ms = {latency_ms!r} must be a finite number >= 0.")
        traceparent = _field(event, "traceparent")
        trace_id = trace_id_of(traceparent)
        if trace_id is None:
            if traceparent is not None:
                logger.warning("%s: event %s has an invalid traceparent %r; a new trace starts", handler,
                               event_id, traceparent, extra={"event": "invalid_traceparent"})
            traceparent = new_traceparent()
            trace_id = traceparent[3:35]
        else:
            traceparent = traceparent.strip()
        subject = _field(event, "subject")
        event_id = str(event_id).strip()
        text = json.dumps({
            "specversion": "1.0",
            "id": f"{event_id}:{handler}",
            "source": self.source,
            "type": str(event_type).strip(),
            "subject": handler,
            "traceparent": traceparent,
            "traceid": trace_id,
            "orderid": None if subject is None else str(subject),
            "datacontenttype": "application/json",
            "data": {"status": status.strip(), "latency_ms": round(float(latency_ms), 3), "event_id": event_id},
        }, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return text[:-1].encode("utf-8")

    @staticmethod
    def _check_time(value: Any, what: str) -> dt.datetime:
        if not isinstance(value, dt.datetime):
            raise RecorderError(f"{what} is {value!r}, not a datetime. Fix: a clock returns an aware datetime, "
                                "e.g. datetime.now(timezone.utc).")
        if value.tzinfo is None or value.utcoffset() is None:
            raise RecorderError(f"{what} {value.isoformat()} is naive. Fix: give it a time zone, e.g. "
                                "datetime.now(timezone.utc); the files are named by UTC periods.")
        return value.astimezone(dt.timezone.utc)

    @overload
    def handler(self, name: Handler) -> Handler: ...

    @overload
    def handler(self, name: str | None = None) -> Callable[[Handler], Handler]: ...

    def handler(self, name=None):
        """Decorate a handler ``fn(event) -> str | None`` so that every call is recorded as one step.

        The call is timed with :func:`time.perf_counter`; the status is the returned string, ``"ok"`` when
        it returns None, ``"timeout"`` when it raises :class:`TimeoutError` and ``"error"`` when it raises
        any other exception (the exception is re-raised once the step is recorded). A coroutine function
        (``async def``) is wrapped by a coroutine function, timed from its start to its end.

        Parameters
        ----------
        name : str or callable, optional
            The handler's name; ``@recorder.handler`` without one uses the function's ``__name__``.

        Returns
        -------
        callable
            The decorated function (``functools.wraps``); it takes the event first, then whatever else the
            function takes.

        Raises
        ------
        RecorderError
            At a call, when the handler returns something other than a string or None (nothing is
            recorded), or the event cannot be recorded (see :meth:`record`).

        Examples
        --------
        >>> import json, os, tempfile
        >>> directory = tempfile.mkdtemp()
        >>> recorder = HistoryRecorder(directory)
        >>> @recorder.handler
        ... def on_payment_failed(event):
        ...     return "retry_scheduled"
        >>> @recorder.handler("on_order_created")
        ... def create(event):
        ...     raise TimeoutError("inventory did not answer")
        >>> on_payment_failed({"id": "p1", "type": "payment.failed", "subject": "order-1"})
        'retry_scheduled'
        >>> create({"id": "o2", "type": "order.created", "subject": "order-2"})
        Traceback (most recent call last):
        ...
        TimeoutError: inventory did not answer
        >>> recorder.close()
        >>> (path,) = [os.path.join(directory, f) for f in os.listdir(directory)]
        >>> [(line["subject"], line["data"]["status"]) for line in map(json.loads, open(path))]
        [('on_payment_failed', 'retry_scheduled'), ('on_order_created', 'timeout')]
        """
        if callable(name):
            return self.handler(None)(name)
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ConfigError(f"handler name {name!r}: must be a non-empty string.")

        def decorate(fn: Handler) -> Handler:
            label = name or fn.__name__

            def done(event, began: float, result: Any) -> Any:
                latency = (_time.perf_counter() - began) * 1000.0
                if result is not None and not isinstance(result, str):
                    raise RecorderError(f"{label} returned a {type(result).__name__}; a recorded handler returns "
                                        "its status as a string, or None for \"ok\".")
                self.record(label, event, "ok" if result is None else result, latency)
                return result

            def failed(event, began: float, exc: Exception) -> None:
                status = "timeout" if isinstance(exc, TimeoutError) else "error"
                self.record(label, event, status, (_time.perf_counter() - began) * 1000.0)

            if inspect.iscoroutinefunction(fn):
                @functools.wraps(fn)
                async def wrapper(event, *args, **kwargs):
                    began = _time.perf_counter()
                    try:
                        result = await fn(event, *args, **kwargs)
                    except Exception as exc:  # recorded, then re-raised (KeyboardInterrupt is no step)
                        failed(event, began, exc)
                        raise
                    return done(event, began, result)
            else:
                @functools.wraps(fn)
                def wrapper(event, *args, **kwargs):
                    began = _time.perf_counter()
                    try:
                        result = fn(event, *args, **kwargs)
                    except Exception as exc:  # recorded, then re-raised (KeyboardInterrupt is no step)
                        failed(event, began, exc)
                        raise
                    return done(event, began, result)

            return wrapper  # type: ignore[return-value]

        return decorate

    # ------------------------------------------------------------------ files

    def rotate(self) -> list[Path]:
        """Close the open period's file if its period has ended, and flush what is buffered.

        Call it from a timer (or give ``rotate_every``), or before a job run, so that a period's file appears
        when the period ends even if no step comes after it. Leftover temporaries of later periods (see the
        class's Notes) are renamed here once their period has ended.

        Returns
        -------
        list of Path
            The files renamed by this call (the period's file, leftovers), in that order.
        """
        with self._lock, _writing(self.directory):
            if self._closed:
                return []
            now = _files.micros_of(self._check_time(self._clock(), "the clock's time"))
            done = []
            if self._fd is not None and now >= self._start + self._period:
                done.append(self._close_file())
            elif self._pending:
                self._flush()
            for start in sorted(s for s in self._leftovers if now >= s + self._period):
                path = _files.complete_leftover(self._leftovers.pop(start), self.directory, self.prefix, start)
                done += [path] if path is not None else []
            return done

    def flush(self, *, fsync: bool = False) -> None:
        """Write the buffered lines to the operating system (and to the disk with ``fsync=True``)."""
        with self._lock, _writing(self.directory):
            if self._fd is not None:
                self._flush()
                if fsync:
                    os.fsync(self._fd)

    def close(self) -> None:
        """Close the open file (renamed, its period's end or not) and any leftover temporary; idempotent.

        A recorder that closes records nothing more (:class:`~markovfault.exceptions.RecorderError`).
        """
        self._stop.set()
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.join()
        with self._lock, _writing(self.directory):
            if self._closed:
                return
            self._closed = True
            self._close_file()
            for start in sorted(self._leftovers):
                _files.complete_leftover(self._leftovers.pop(start), self.directory, self.prefix, start)
        logger.info("recorder of %s closed", self.directory, extra={"event": "recorder_closed"})

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def init_app(self, app: Any) -> HistoryRecorder:
        """Register the recorder as a Flask extension: ``app.extensions["markovfault"]``, closed at exit.

        Flask itself is not imported (any object with an ``extensions`` dict will do). The recorder is
        closed when the process exits normally (:mod:`atexit`), so the open period's file is renamed; a
        process killed leaves its temporary, which the next recorder completes (see the class's Notes).

        Parameters
        ----------
        app : flask.Flask
            The application.

        Returns
        -------
        HistoryRecorder
            This recorder.

        Examples
        --------
        >>> import tempfile
        >>> from flask import Flask
        >>> app = Flask("orders")
        >>> recorder = HistoryRecorder(tempfile.mkdtemp()).init_app(app)
        >>> app.extensions["markovfault"] is recorder
        True
        >>> recorder.close()
        """
        extensions = getattr(app, "extensions", None)
        if not isinstance(extensions, dict):
            raise ConfigError(f"init_app needs a Flask application (with an 'extensions' dict), got "
                              f"{type(app).__name__}.")
        extensions["markovfault"] = self
        atexit.register(self.close)
        return self

    def _open(self, start: int) -> None:
        """Open (or, after a restart within the period, continue) the temporary of the period ``start``."""
        tmp = self.directory / _files.temporary_name(self.prefix, start)
        self._leftovers.pop(start, None)  # a leftover of this period (repaired at start) is continued
        fd = os.open(tmp, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        if not _files.try_lock(fd):
            os.close(fd)
            raise _files.busy_error(tmp)
        self._fd, self._tmp, self._start = fd, tmp, start
        self._size = os.fstat(fd).st_size
        self._pending, self._late = 0, 0
        self._flushed_at = _time.monotonic()
        logger.debug("writing %s", tmp.name)

    def _flush(self) -> None:
        """Write the buffered lines (whole: a write that fails is cut back to the last whole line)."""
        data = b"".join(self._buffer)
        lost = len(self._buffer)
        self._buffer.clear()
        self._pending = 0
        self._flushed_at = _time.monotonic()
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except OSError:
            logger.error("%d lines could not be written to %s", lost, self._tmp, extra={"event": "lines_lost"})
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:  # the next start repairs the tail
                pass
            raise
        self._size += len(data)

    def _close_file(self) -> Path | None:
        """Flush, fsync, close and rename the open temporary; the path it got (None if none was open)."""
        if self._fd is None:
            return None
        fd, tmp, start = self._fd, self._tmp, self._start
        try:
            self._flush()
            os.fsync(fd)
        finally:
            os.close(fd)
            self._fd = self._tmp = self._start = None
        path = _files.publish(tmp, self.directory, self.prefix, start)
        logger.info("closed the period %s: %s", _files.time_of(start).isoformat(), path.name,
                    extra={"event": "period_closed"})
        return path

    def _after_fork(self) -> None:
        """In a forked child: forget the parent's open file and buffered lines (the parent writes them) and its
        lock and timer; the child's first step opens the period's file, which the parent holds: a
        RecorderError that says to give each process its own prefix."""
        self._lock = threading.Lock()
        if self._fd is not None:
            os.close(self._fd)  # the parent's open file (and its lock) stay the parent's
        self._fd = self._tmp = self._start = None
        self._buffer, self._pending = [], 0
        self._leftovers = {}
        self._timer = None
        self._stop = threading.Event()

    def _recover(self) -> dict[int, Path]:
        """Repair the temporaries no live process holds; rename those of ended periods; the others, kept."""
        now = _files.micros_of(self._check_time(self._clock(), "the clock's time"))
        kept = {}
        for start, tmp in sorted(_files.temporaries(self.directory, self.prefix).items()):
            if _files.is_locked(tmp):
                logger.info("%s is being written by another process; left alone", tmp.name,
                            extra={"event": "temporary_busy"})
                continue
            if now >= start + self._period:
                _files.complete_leftover(tmp, self.directory, self.prefix, start)
            else:
                _files.repair(tmp)
                kept[start] = tmp
        return kept

    def _rotate_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.rotate()
            except Exception:  # a timer thread has no caller to tell: log and go on
                logger.exception("rotating %s failed", self.directory)


@contextmanager
def _writing(directory: Path) -> Iterator[None]:
    """An OSError while writing the files as a RecorderError naming the directory."""
    try:
        yield
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise RecorderError(f"cannot write the histories in {directory}: {exc.strerror or exc}{where}. Fix: check "
                            "the directory's free space and permissions.") from exc


def _positive(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value > 0
