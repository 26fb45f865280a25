"""The OpenTelemetry span processor: the spans of a service that already traces, recorded as handler steps.

Part of :mod:`markovfault.instrument` (see its ``__init__``). OpenTelemetry is an optional dependency: this
module imports without it (so that the package's doctests and the light import hold), and
:class:`HistorySpanProcessor` raises an ImportError that says what to install when it is made without it.
"""

from __future__ import annotations

from typing import Any

from ._files import logger
from ._recorder import HistoryRecorder

try:
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.trace import StatusCode
except ImportError:  # the class below then refuses to be made
    SpanProcessor = object  # type: ignore[assignment,misc]
    StatusCode = None  # type: ignore[assignment]

INSTALL = ("HistorySpanProcessor needs the OpenTelemetry SDK, which is not installed. Fix: "
           "pip install opentelemetry-sdk (or: pip install 'markovfault[otel]').")


class HistorySpanProcessor(SpanProcessor):  # type: ignore[misc,valid-type]
    """An OpenTelemetry ``SpanProcessor`` that records every span of a handler as one step.

    Add it to the service's ``TracerProvider``; each span that ends carrying the handler attribute is
    written by the recorder (:meth:`HistoryRecorder.record`) as the handler's step; other spans (HTTP
    requests, database calls) are ignored.

    Parameters
    ----------
    recorder : HistoryRecorder
        Where the steps go. The processor does not own it: ``shutdown`` flushes it, the service closes it.
    handler_attribute : str, default="markovfault.handler"
        The span attribute naming the handler. Spans without it are not recorded.
    status_attribute : str, default="markovfault.status"
        The span attribute holding the step's status. Without it, the status is ``"error"`` if the span's
        status is ERROR and ``"ok"`` otherwise.

    Raises
    ------
    ImportError
        The OpenTelemetry SDK (``opentelemetry-sdk``) is not installed.

    Notes
    -----
    **Set the outcome in the handler.** OpenTelemetry leaves the status of a successful span UNSET (an
    HTTP server span of a 2xx response, too; a 4xx one as well), so a span's status only says "it raised"
    (ERROR, set when an exception leaves ``start_as_current_span``). Any other outcome (``"timeout"``,
    ``"declined"``, ``"retry_scheduled"``) must be set by the handler as the status attribute:
    ``span.set_attribute("markovfault.status", "declined")``.

    What a line holds: the event id and type from the attributes ``markovfault.event_id`` and
    ``markovfault.event_type`` (without them: the span id and the span's name), the order id from
    ``markovfault.subject`` (optional), the trace id and a traceparent from the span's context, and the
    latency from the span's start and end. The time of the step is the recorder's clock when the span
    ends (``on_end`` runs as it ends), so an accelerated clock applies to spans too. A span that cannot be
    recorded is logged, never raised into the tracer.

    Examples
    --------
    >>> import json, os, tempfile
    >>> from opentelemetry.sdk.trace import TracerProvider
    >>> directory = tempfile.mkdtemp()
    >>> recorder = HistoryRecorder(directory)
    >>> provider = TracerProvider()
    >>> provider.add_span_processor(HistorySpanProcessor(recorder))
    >>> tracer = provider.get_tracer("orders")
    >>> with tracer.start_as_current_span("on_payment_failed") as span:
    ...     span.set_attributes({"markovfault.handler": "on_payment_failed", "markovfault.event_id": "p1",
    ...                          "markovfault.event_type": "payment.failed", "markovfault.subject": "order-1"})
    ...     span.set_attribute("markovfault.status", "retry_scheduled")
    >>> recorder.close()
    >>> (path,) = [os.path.join(directory, f) for f in os.listdir(directory)]
    >>> line = json.loads(open(path).read())
    >>> line["id"], line["type"], line["orderid"], line["data"]["status"]
    ('p1:on_payment_failed', 'payment.failed', 'order-1', 'retry_scheduled')
    >>> line["traceid"] == format(span.get_span_context().trace_id, "032x")
    True
    """

    def __init__(self, recorder: HistoryRecorder, *, handler_attribute: str = "markovfault.handler",
                 status_attribute: str = "markovfault.status") -> None:
        if StatusCode is None:
            raise ImportError(INSTALL)
        if not isinstance(recorder, HistoryRecorder):
            from ..exceptions import ConfigError

            raise ConfigError(f"HistorySpanProcessor records into a HistoryRecorder, got {type(recorder).__name__}.")
        self.recorder = recorder
        self.handler_attribute = handler_attribute
        self.status_attribute = status_attribute

    def on_end(self, span: Any) -> None:
        """Record ``span`` if it carries the handler attribute (never raises)."""
        attributes = span.attributes or {}
        handler = attributes.get(self.handler_attribute)
        if handler is None:
            return
        try:
            self.recorder.record(str(handler), self.event_of(span), self.status_of(span), self.latency_of(span))
        except Exception:  # a processor must not raise into the code that ends the span
            logger.exception("span %r of handler %r was not recorded", span.name, handler)

    def status_of(self, span: Any) -> str:
        """The status attribute; else ``"error"`` for an ERROR span, ``"ok"`` otherwise."""
        status = (span.attributes or {}).get(self.status_attribute)
        if status is not None:
            return str(status)
        return "error" if span.status is not None and span.status.status_code is StatusCode.ERROR else "ok"

    @staticmethod
    def event_of(span: Any) -> dict:
        """The CloudEvents-shaped event of a span: its id, type, subject and traceparent."""
        attributes = span.attributes or {}
        context = span.get_span_context()
        event = {
            "id": attributes.get("markovfault.event_id") or format(context.span_id, "016x"),
            "type": attributes.get("markovfault.event_type") or span.name,
            "traceparent": f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}",
        }
        if attributes.get("markovfault.subject") is not None:
            event["subject"] = attributes["markovfault.subject"]
        return event

    @staticmethod
    def latency_of(span: Any) -> float:
        """Milliseconds from the span's start to its end."""
        if span.start_time is None or span.end_time is None:
            return 0.0
        return max(0, span.end_time - span.start_time) / 1e6

    def shutdown(self) -> None:
        """Flush the recorder (the tracer provider shuts down; the recorder stays open)."""
        self.force_flush()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the recorder's buffered lines to the operating system."""
        if not self.recorder.closed:
            self.recorder.flush()
        return True

