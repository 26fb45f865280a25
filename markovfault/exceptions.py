"""Error and warning types that users of markovfault can catch.

Every error raised for a user's input subclasses a builtin (``ValueError``
or ``TypeError``), so ``except ValueError`` keeps working, and names the
column, the first offending row and the fix.
"""

from __future__ import annotations

__all__ = [
    "MarkovFaultError",
    "HistoryError",
    "MissingColumnError",
    "EmptyHistoryError",
    "TimeParseError",
    "MixedTimezoneError",
    "MetricTypeError",
    "UnknownStatusError",
    "ConfigError",
    "ModelFileError",
    "CountsError",
    "NotFittedError",
    "JobLockedError",
    "OutputError",
    "NoInputError",
    "UsageError",
    "RecorderError",
    "NewerFormatError",
    "DataWarning",
]


class MarkovFaultError(Exception):
    """Base class of every error that markovfault raises on purpose."""


class HistoryError(MarkovFaultError, ValueError):
    """An exported history breaks the input contract."""


class MissingColumnError(HistoryError, KeyError):
    """A column that the input contract or the configuration needs is absent."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class EmptyHistoryError(HistoryError):
    """An input file or frame holds no rows."""


class TimeParseError(HistoryError):
    """A value of the time column is neither a timestamp nor an integer."""


class MixedTimezoneError(HistoryError):
    """The time column mixes time-zone-aware and naive timestamps."""


class MetricTypeError(HistoryError, TypeError):
    """A metric column that should be numeric holds something else."""


class UnknownStatusError(HistoryError):
    """A status label is not covered by the state mapping."""


class ConfigError(MarkovFaultError, ValueError):
    """A configuration file or a parameter is invalid."""


class ModelFileError(MarkovFaultError, ValueError):
    """A model file is truncated, tampered with, or of an unknown format."""


class CountsError(MarkovFaultError, ValueError):
    """Transition counts that cannot be used as given: a wrong shape, negative or non-finite values, two
    layouts that do not match, or a table with too few rows to test anything."""


class NotFittedError(MarkovFaultError, ValueError, AttributeError):
    """A model was used before it was fitted.

    Subclasses ``ValueError`` and ``AttributeError`` like scikit-learn's
    :class:`sklearn.exceptions.NotFittedError`.
    """


# the scheduled job's errors (each with its exit code in `markovfault forecast`)
class JobLockedError(MarkovFaultError):
    """Another run holds the job's lock (exit 75: try again later)."""


class OutputError(MarkovFaultError):
    """The output directory or the model directory cannot be written (exit 73)."""


class NoInputError(MarkovFaultError):
    """The input names no file, or no row lies before the cutoff (exit 66)."""


class UsageError(MarkovFaultError, ValueError):
    """A bad command-line value, such as an unusable ``--as-of`` (exit 64)."""


class RecorderError(MarkovFaultError, ValueError):
    """The history recorder (:mod:`markovfault.instrument`) was given something it cannot record (an event
    without an id or type, a status that is not a string, a naive time), was used after ``close()``, or
    finds another process writing its current file."""


class NewerFormatError(ModelFileError):
    """A model file or watermark written by a newer markovfault (exit 78)."""


class DataWarning(UserWarning):
    """Data are degenerate in a way that changes the estimates (unseen events,
    states never left, rows dropped)."""
