"""``markovfault forecast``: what the command line calls. It installs the JSON log, runs the job once and maps
the job's errors to exit codes (sysexits), logging each failure as one record."""

from __future__ import annotations

import logging

from ..exceptions import (ConfigError, JobLockedError, MarkovFaultError, NewerFormatError, NoInputError,
                          OutputError, UsageError)
from ._config import load_job_config
from ._constants import (EX_CANTCREAT, EX_CONFIG, EX_DATAERR, EX_IOERR, EX_NOINPUT, EX_SOFTWARE,
                         EX_TEMPFAIL, EX_USAGE)
from ._logging import install_json_logging
from ._run import run_job

logger = logging.getLogger("markovfault.job")


def forecast_command(config, *, as_of=None, refit: bool = False, verbose: int = 0) -> int:
    """``markovfault forecast``: run the job once, log JSON lines on stderr, return the exit code."""
    install_json_logging(verbose)
    try:
        job = load_job_config(config)
        return run_job(job, as_of=as_of, refit=refit).exit_code
    except JobLockedError as exc:
        return _failed(exc, EX_TEMPFAIL, logging.WARNING)
    except OutputError as exc:
        return _failed(exc, EX_CANTCREAT)
    except (NoInputError, FileNotFoundError) as exc:
        return _failed(exc, EX_NOINPUT)
    except UsageError as exc:
        return _failed(exc, EX_USAGE)
    except (ConfigError, NewerFormatError) as exc:
        return _failed(exc, EX_CONFIG)
    except (MarkovFaultError, ValueError) as exc:
        return _failed(exc, EX_DATAERR)
    except OSError as exc:
        return _failed(exc, EX_IOERR)
    except Exception as exc:  # a bug: say so, with the traceback, in the same format
        logger.exception("internal error: %s", exc,
                         extra={"event": "run_failed", "exit_code": EX_SOFTWARE,
                                "error": type(exc).__name__})
        return EX_SOFTWARE


def _failed(exc: BaseException, code: int, level: int = logging.ERROR) -> int:
    msg = str(exc)
    if isinstance(exc, FileNotFoundError) and exc.filename:
        msg = f"{exc.strerror}: {exc.filename}"
    logger.log(level, "%s", msg, extra={"event": "run_failed", "exit_code": code,
                                        "error": type(exc).__name__})
    return code
