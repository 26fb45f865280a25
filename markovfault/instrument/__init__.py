"""Record histories from a running service: one CloudEvents JSON line per handler step, one file per period.

:class:`HistoryRecorder` writes the lines (from a decorated handler, ``@recorder.handler``, or by
:meth:`~HistoryRecorder.record`), :meth:`~HistoryRecorder.init_app` makes it a Flask extension,
:class:`HistorySpanProcessor` records the spans of a service that already uses OpenTelemetry, and
:data:`CLOUDEVENTS_COLUMNS` is the :class:`~markovfault.ColumnMap` that reads the files back.

Importing this module loads neither Flask nor OpenTelemetry nor any numerical library (a service that records
needs none of them): :data:`CLOUDEVENTS_COLUMNS` and :class:`HistorySpanProcessor` load on first use.

>>> import datetime as dt, tempfile
>>> from markovfault import read_histories
>>> from markovfault.instrument import CLOUDEVENTS_COLUMNS, HistoryRecorder
>>> directory = tempfile.mkdtemp()
>>> now = dt.datetime(2024, 5, 1, 10, 58, tzinfo=dt.timezone.utc)
>>> with HistoryRecorder(directory, period="1h", clock=lambda: now) as recorder:
...     for handler, status in [("on_order_created", "ok"), ("on_payment_failed", "declined")]:
...         event = {"id": "e1", "type": "order.created", "subject": "order-1",
...                  "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
...         recorder.record(handler, event, status, 12.5)
...     recorder.record("on_order_created", event, "ok", 9.0)  # the same event, redelivered
>>> frame = read_histories(directory, columns=CLOUDEVENTS_COLUMNS)
>>> frame[["entity", "event", "status", "latency_ms"]]
              entity          event    status  latency_ms
0   on_order_created  order.created        ok        12.5
1  on_payment_failed  order.created  declined        12.5
>>> frame.attrs["read_report"].dropped
{'duplicate_event_id': 1}
>>> frame["trace"].unique().tolist()
['4bf92f3577b34da6a3ce929d0e0e4736']
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._recorder import HistoryRecorder

__all__ = ["CLOUDEVENTS_COLUMNS", "HistoryRecorder", "HistorySpanProcessor"]

if TYPE_CHECKING:  # pragma: no cover
    from ..histories import ColumnMap
    from ._spans import HistorySpanProcessor

    CLOUDEVENTS_COLUMNS: ColumnMap


def __getattr__(name: str):
    if name == "CLOUDEVENTS_COLUMNS":
        from ..histories import ColumnMap

        # the recorder's lines: a nested field by its dotted name (status), a metric found under data.
        value = ColumnMap(entity="subject", time="time", event="type", status="data.status", event_id="id",
                          metrics=("latency_ms",), trace="traceid")
    elif name == "HistorySpanProcessor":
        from ._spans import HistorySpanProcessor as value
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
