"""The scheduled forecasting job: ``markovfault forecast --config JOB.toml``.

Run it every hour from cron, a systemd timer or a Kubernetes CronJob. Each
run takes a lock, reads only the history rows that are new since the last
successful run, adds them to the model's counts (``partial_fit``; or fits
from scratch with ``refit``), writes a new model version and one forecast
partition, and only then commits the *watermark* that says what has been
counted. A run killed at any instant leaves the previous state intact, and
the next run writes exactly what an uninterrupted run would have.

On disk (``[job] output = "out"``, ``[job] model`` left at its default)::

    out/
      .lock                          the lock (flock); holds the holder's pid while held
      watermark.json                 the commit record: cutoff, model version, files read, runs
      latest -> runs/20260101T020000Z
      runs/20260101T020000Z/forecast.parquet   one partition per run, named by its --as-of
      runs/20260101T020000Z/forecast.csv
      runs/20260101T020000Z/forecast.prom      the run's forecast for Prometheus (text format)
      markovfault.prom               the latest run's forecast.prom ([job] prometheus)
      model.npz -> model.20260101T020000Z.npz  the pointer to the current model version
      model.20260101T020000Z.npz               one model version per run

What an operator sees
---------------------
Each run writes its forecast as a Prometheus textfile (gauges ``markovfault_p_fail{entity,horizon}``,
``markovfault_alert``, ``markovfault_last_success_timestamp_seconds``, ...; see
:func:`~markovfault.job._prometheus.prometheus_text`) beside the partition and at ``[job] prometheus``, for
node_exporter's textfile collector. ``markovfault report`` (:func:`write_report`) turns the output directory
into one static HTML page: the riskiest handlers, their risk over the kept runs, why, a backtest's scores.

What is new
-----------
The watermark is in *event time*: a run with ``as_of = T`` counts exactly the
rows with ``previous cutoff <= time < T`` and moves the cutoff to ``T``. Each
row is therefore counted at most once, whatever happens to the files. The
list of files (path relative to the input directory, size, mtime, SHA-256,
and the earliest row not yet counted) only decides which files must be parsed
again: new files, files whose size or mtime changed (unless their content
hash is unchanged), and files holding rows at or after the previous cutoff.

* Rows older than the previous cutoff that show up later (a late file, or a
  file that changed after it was read) are not counted, and the log says how
  many; ``--refit`` counts them. Exporters should write each file under a
  hidden or temporary name and rename it when complete.
* A file that cannot be parsed is logged and skipped (not recorded, so it is
  tried again next run); the run still forecasts from the rest and exits 65.

On a Dask cluster
-----------------
With ``[compute] scheduler = "tcp://host:8786"`` (``markovfault[dask]``), a run
that has files to read connects to that scheduler: each due file is hashed,
read and cut to its new rows by a worker (the input must be readable from the
workers), only what happened to each file travels back for the log and the
watermark, and the rows are counted where they lie (``fit``/``partial_fit`` on
a dask DataFrame, one partition per file in file order). The partitions, model
versions and watermark are those of a run without a scheduler; the forecast
itself, from the model's remembered last steps, runs in the job's process. A
run with nothing new contacts no cluster; an unreachable scheduler exits 74.

Exit codes (sysexits): 0 ok (also "nothing new"), 64 bad command line,
65 bad data (some input skipped, or a damaged model or watermark), 66 no
input, 70 internal error, 73 output cannot be written, 74 other I/O error,
75 another run holds the lock (try again later), 78 bad config or a model of
a newer format.

For tests only, two environment variables stop a run at a named point:
``MARKOVFAULT_JOB_CRASH_AT=<point>`` makes the process SIGKILL itself there,
``MARKOVFAULT_JOB_PAUSE_AT=<point>:<dir>`` touches ``<dir>/paused.<pid>`` and
waits (at most a minute) until ``<dir>/release`` exists. The points are
``locked``, ``reading`` (after the first file is read), ``fitted``,
``model_written``, ``output`` (half of the partition written),
``prometheus`` (half of the latest Prometheus textfile written, the run's
one complete), ``outputs_written`` and ``committed``. A ``--refit`` at an as-of already committed
writes its model version as ``model.<run_id>.<n>.npz`` and its partition after the
commit (``outputs_written`` then comes before the partition; a run that finds
the newest partition not from its run's model version writes it again).
"""

from ..exceptions import JobLockedError, NewerFormatError, NoInputError, OutputError, UsageError
from ._asof import format_run_id, parse_as_of
from ._command import forecast_command
from ._config import JobConfig, load_job_config
from ._html import build_report, report_for_job, write_report
from ._logging import JsonFormatter
from ._report import describe_model, format_model_report
from ._run import JobResult, run_job
from ._status import format_status, job_status

__all__ = [
    "JobConfig",
    "JobResult",
    "JobLockedError",
    "OutputError",
    "NoInputError",
    "UsageError",
    "NewerFormatError",
    "JsonFormatter",
    "load_job_config",
    "run_job",
    "parse_as_of",
    "format_run_id",
    "describe_model",
    "format_model_report",
    "forecast_command",
    "build_report",
    "write_report",
    "report_for_job",
    "job_status",
    "format_status",
]
