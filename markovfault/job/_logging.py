"""The job's log: one JSON object per record on stderr (:class:`JsonFormatter`), each tagged with the id of the
run in progress (the context variable :data:`current_run`, which :func:`~markovfault.job.run_job` sets)."""

from __future__ import annotations

import contextvars
import datetime as _dt
import json
import logging
import sys

current_run: contextvars.ContextVar[str | None] = contextvars.ContextVar("run_id", default=None)
"""The id of the run in progress in this context, added to every log record as ``run_id``."""

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime",
                                                                         "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per log record: time, level, logger, message, run_id, extras.

    Examples
    --------
    >>> record = logging.LogRecord("markovfault.job", logging.INFO, "", 0, "read %d rows",
    ...                            (3,), None)
    >>> record.created, record.event = 0.0, "file_read"
    >>> JsonFormatter().format(record)
    '{"time": "1970-01-01T00:00:00.000Z", "level": "info", "logger": "markovfault.job", "message": "read 3 rows", "event": "file_read"}'
    """

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": _dt.datetime.fromtimestamp(record.created, _dt.timezone.utc)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class _RunIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        run_id = current_run.get()
        if run_id is not None and not hasattr(record, "run_id"):
            record.run_id = run_id
        return True


def install_json_logging(verbose: int) -> None:
    """Make the root logger write JSON lines on stderr (debug records with ``-vv``)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(_RunIdFilter())
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose >= 2 else logging.INFO)
    # the job logs one line per file; the reader's own summaries only with -v
    logging.getLogger("markovfault.histories").setLevel(
        logging.NOTSET if verbose else logging.WARNING)
    logging.captureWarnings(True)
