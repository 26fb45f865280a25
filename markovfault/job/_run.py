"""One run of the job: :func:`run_job` takes the lock, reads the watermark, reads the due files (here or on the
dask cluster of ``[compute] scheduler``), counts their new rows, writes the model version and the partition and
commits the watermark, or, for an as-of already committed, rewrites that run's partition; :class:`JobResult`
says what it did."""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..exceptions import ConfigError, HistoryError, ModelFileError, NewerFormatError, NoInputError, UsageError
from ._asof import format_run_id, now_as_of, parse_as_of, show_tick, to_tick, utcnow_iso
from ._checkpoint import checkpoint
from ._config import JobConfig
from ._constants import EX_DATAERR, EX_OK, LOCK, RUNS, WATERMARK
from ._inputs import due_files, export_frame, list_inputs, read_files, read_files_dask
from ._lock import Lock
from ._logging import current_run
from ._partition import forecast_table, write_partition
from ._prometheus import prometheus_text, write_prometheus
from ._storage import apply_retention, remove_temporaries, repair_pointers, writing
from ._watermark import load_version, new_watermark, read_watermark, write_watermark

logger = logging.getLogger("markovfault.job")


@dataclass
class JobResult:
    """What a run did.

    ``status`` is ``"ok"`` (a new partition), ``"rerun"`` (a committed
    as-of again: its partition rewritten from its model version) or
    ``"nothing_new"``; ``exit_code`` is 65 when input files were skipped.
    ``timings`` holds seconds per phase (``read`` covers listing, hashing and
    parsing the files read).
    """

    status: str
    exit_code: int = EX_OK
    run_id: str | None = None
    partition: Path | None = None
    model_version: str | None = None
    n_entities: int = 0
    n_alerts: int = 0
    rows_counted: int = 0
    files_read: list = field(default_factory=list)
    files_skipped: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)


class _Timer(dict):
    @contextmanager
    def __call__(self, name):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self[name] = self.get(name, 0.0) + time.perf_counter() - t0


def run_job(job: JobConfig, *, as_of=None, refit: bool = False) -> JobResult:
    """Run the job once (see :mod:`markovfault.job`).

    Parameters
    ----------
    job : JobConfig
    as_of : str, Timestamp, int or None
        The data cutoff: rows at or after it are not used. Default: now, to
        the second. Running again with the as-of of a committed run rewrites
        that run's partition with identical content.
    refit : bool, default=False
        Fit from scratch on every input row before ``as_of`` (new state
        vocabulary, late rows counted), instead of adding the new rows.

    Returns
    -------
    JobResult

    Raises
    ------
    JobLockedError, OutputError, NoInputError, UsageError, NewerFormatError,
    ConfigError, ModelFileError, HistoryError
        Mapped to exit codes by :func:`~markovfault.job.forecast_command`.
    """
    as_of = now_as_of() if as_of is None else parse_as_of(as_of)
    run_id = format_run_id(as_of)
    token = current_run.set(run_id)
    try:
        return _run(job, as_of, run_id, refit)
    finally:
        current_run.reset(token)


def _run(job: JobConfig, as_of, run_id: str, refit: bool) -> JobResult:
    from ..histories import ColumnMap

    timer = _Timer()
    t0 = time.perf_counter()
    kind = "integer" if isinstance(as_of, int) else "datetime"
    tick = to_tick(as_of)
    shown = show_tick(tick, kind)
    for where in (job.output, job.output / RUNS, job.model_dir):
        with writing(where):
            where.mkdir(parents=True, exist_ok=True)
    logger.info("run started: as-of %s%s", shown, " (refit)" if refit else "",
                extra={"event": "run_started", "as_of": shown, "refit": refit,
                       "input": job.input, "output": str(job.output), "pid": os.getpid()})
    with Lock(job.output / LOCK, shown), contextlib.ExitStack() as stack:
        checkpoint("locked")
        remove_temporaries(job)
        wm = _committed(job, refit)
        if wm is not None:
            if wm.get("time_kind", "datetime") != kind:
                raise UsageError(
                    f"the watermark's times are {wm.get('time_kind')} but --as-of {shown} is "
                    f"{'an integer' if kind == 'integer' else 'a timestamp'}."
                )
            repair_pointers(job, wm)
            _repair_newest(job, wm)
        elif not refit and os.path.lexists(job.model):
            raise ConfigError(
                f"[job] model {job.model} exists but {job.output} has no {WATERMARK}, so the job "
                "cannot tell which rows that model has counted. Remove it (the first run trains "
                "a model from every input file), point [job] model elsewhere, or run with --refit."
            )
        if wm is not None and not refit and tick <= int(wm["cutoff"]):
            return _rerun(job, wm, as_of, tick, run_id, timer, t0)

        with timer("load_model"):
            model = load_version(job, wm["model"]) if wm is not None and not refit else None
        prev = int(wm["cutoff"]) if model is not None else None
        known = wm["files"] if model is not None else {}
        cols = ColumnMap.from_config(job.config.get("columns"))
        with timer("read"):
            listing = list_inputs(job.input)
            due = due_files(listing, known, tick)
            records = {key: known[key] for key, _, _ in listing if key in known}
            if not due:
                logger.info(
                    "nothing new since the cutoff %s: no new or changed file and no row left "
                    "before %s; nothing written", show_tick(prev, kind), shown,
                    extra={"event": "nothing_new", "files": len(listing),
                           "duration_s": round(time.perf_counter() - t0, 3)})
                return JobResult("nothing_new", timings=dict(timer))
            cluster = stack.enter_context(_compute(job))  # [compute] scheduler, or None
            if cluster is None:
                pieces, read, skipped, stats = read_files(due, known, records, cols, kind,
                                                          model, prev, tick)
                window = pd.concat(pieces, ignore_index=True) if pieces else None
                n_window = 0 if window is None else len(window)
            else:  # the rows stay on the workers: a dask DataFrame in the configured names
                window, n_window, read, skipped, stats = read_files_dask(
                    due, known, records, cols, kind, model, prev, tick)
        code = EX_DATAERR if skipped else EX_OK
        if not n_window:
            if model is None:
                if skipped and not read:
                    raise HistoryError(f"every input file was skipped ({len(skipped)}); see "
                                       "the errors above. Nothing to train on.")
                raise NoInputError(f"no input row lies before --as-of {shown}; nothing to "
                                   "train on yet.")
            logger.info("no row to count before %s in the files read; nothing written", shown,
                        extra={"event": "nothing_new", "files_read": read,
                               "files_skipped": skipped})
            return JobResult("nothing_new", code, files_read=read, files_skipped=skipped,
                             timings=dict(timer))

        from ..predictor import FaultPredictor

        with timer("fit"):  # on the cluster, partition by partition, with a dask window
            frame = export_frame(window, cols) if cluster is None else window
            if model is None:
                model = FaultPredictor.from_config(job.config).fit(frame)
                logger.info("trained a new model on %d transitions", model.n_transitions_,
                            extra={"event": "model_trained", "refit": refit})
            else:
                before = _counts_copy(model.chain_.counts_)
                model.partial_fit(frame)
                _log_drift(before, model.chain_.counts_)
        # rows the model dropped once the files were put together (an event delivered in two files):
        # dropped, not counted
        cross = getattr(model, "read_report_", None)
        across = {r: int(n) for r, n in (cross.dropped.items() if cross is not None else ()) if n}
        for reason, n in across.items():
            stats["dropped"][reason] = stats["dropped"].get(reason, 0) + n
        n_counted = int(n_window) - sum(across.values())
        checkpoint("fitted")
        # a refit at a committed as-of: its version gets a name of its own and its partition is written after
        # the commit, so that until then the committed run is untouched (a kill after the commit: the next run
        # writes the partition, see _repair_newest)
        replacing = wm is not None and any(r["run_id"] == run_id for r in wm["runs"])
        version = _new_version(job, wm, run_id)
        with timer("save_model"), writing(job.model_dir / version):
            model.save(job.model_dir / version)
        logger.info("saved model version %s", version, extra={"event": "model_saved", "model_version": version})
        checkpoint("model_written")
        left_out = []
        with timer("forecast"):
            table = forecast_table(model, job, as_of, run_id, version, left_out)
        _log_left_out(job, kind, left_out)

        def write_outputs():
            with timer("write"):
                written = write_partition(job, run_id, table)
                write_prometheus(job, run_id, prometheus_text(
                    table, finished_at=time.time(), duration=time.perf_counter() - t0, rows_counted=n_counted))
            return written

        partition = None if replacing else write_outputs()
        checkpoint("outputs_written")

        n_alerts = int(table.loc[table["alert"], "entity"].nunique())
        n_entities = int(table["entity"].nunique())
        for key, rec in stats["records"].items():
            records[key] = rec
        run = {"run_id": run_id, "as_of": tick, "data_cutoff": shown, "model": version,
               "refit": refit, "rows_counted": n_counted, "entities": n_entities,
               "alerts": n_alerts, "left_out": len(left_out),
               "left_out_entities": left_out[:LEFT_OUT_KEPT], "started_at": _iso_from_perf(t0),
               "finished_at": utcnow_iso()}
        runs = [r for r in (wm["runs"] if wm else []) if r["as_of"] < tick]
        runs = sorted(runs + [run], key=lambda r: r["as_of"])[-job.retention:]
        new_wm = new_watermark(job, kind=kind, tick=tick, shown=shown, version=version,
                               records=records, runs=runs)
        with timer("commit"):
            write_watermark(job, new_wm)
        checkpoint("committed")
        if replacing:
            partition = write_outputs()
        repair_pointers(job, new_wm)
        apply_retention(job, new_wm)
        duration = time.perf_counter() - t0
        level = logging.WARNING if skipped else logging.INFO
        logger.log(
            level, "run finished: %d rows counted from %d files%s, %d entities forecast, %d "
            "alerting, %d files skipped", n_counted, len(read),
            f" ({sum(across.values())} more dropped as duplicates across files)" if across else "",
            n_entities, n_alerts, len(skipped),
            extra={"event": "run_finished", "exit_code": code, "data_cutoff": shown,
                   "files_read": read, "files_skipped": skipped,
                   "rows_read": stats["rows_read"], "rows_counted": n_counted,
                   "rows_dropped_across_files": sum(across.values()),
                   "rows_dropped": stats["dropped"], "rows_late": stats["late"],
                   "rows_after_cutoff": stats["after"], "entities": n_entities,
                   "entities_left_out": len(left_out),
                   "alerts": n_alerts, "alerts_by_horizon": {
                       (h if isinstance(h, str) else int(h)): int(n)
                       for h, n in table.groupby("horizon", sort=False)["alert"].sum().items()},
                   "model_version": version, "partition": str(partition),
                   "prometheus": str(job.prometheus), "duration_s": round(duration, 3),
                   "timings_s": {k: round(v, 4) for k, v in timer.items()}})
        return JobResult("ok", code, run_id, partition, version, n_entities, n_alerts,
                         n_counted, read, skipped, dict(timer))


#: how many of the handlers a run left out its watermark record names (all are counted)
LEFT_OUT_KEPT = 100


def _log_left_out(job: JobConfig, kind: str, left_out: list) -> None:
    """One log line when the forecast left handlers out (silent for longer than ``max_silence``)."""
    if not left_out:
        return
    limit = job.silence_limit(kind == "integer")
    logger.info("left %d handlers out of the forecast, silent for longer than max_silence = %s%s: %s%s",
                len(left_out), limit, " (the default)" if job.max_silence is None else "",
                ", ".join(left_out[:10]), f" and {len(left_out) - 10} more" if len(left_out) > 10 else "",
                extra={"event": "entities_left_out", "entities": len(left_out), "max_silence": str(limit),
                       "examples": left_out[:10]})


def _new_version(job: JobConfig, wm: dict | None, run_id: str) -> str:
    """The name of the model version a run writes: ``<stem>.<run_id>.npz``, or for a refit at an as-of whose
    version is committed, the first ``<stem>.<run_id>.<n>.npz`` that no kept run names."""
    used = set() if wm is None else {wm["model"]} | {r["model"] for r in wm["runs"]}
    n = 0
    while job.version_name(run_id, n) in used:
        n += 1
    return job.version_name(run_id, n)


def _repair_newest(job: JobConfig, wm: dict) -> None:
    """Write the newest run's partition again when it is not from the run's model version: a refit at a
    committed as-of writes its partition after the commit, and may have been killed in between."""
    import pyarrow.parquet as pq

    if not wm["runs"]:
        return
    run = max(wm["runs"], key=lambda r: r["as_of"])
    path = job.output / RUNS / run["run_id"] / "forecast.parquet"
    try:
        versions = pq.read_table(path, columns=["model_version"]).column(0).unique().to_pylist()
    except (OSError, ValueError, KeyError):  # missing or unreadable: written again below
        versions = None
    if versions is not None and versions in ([run["model"]], []):
        return
    if not (job.model_dir / run["model"]).exists():
        return  # the watermark's version is missing: the run reports it when it loads it
    logger.warning("the partition of run %s is not from its model version %s (a run was killed after its "
                   "commit); writing it again", run["run_id"], run["model"],
                   extra={"event": "partition_repaired", "run": run["run_id"], "model_version": run["model"]})
    as_of = parse_as_of(run["as_of"]) if wm.get("time_kind") == "integer" else pd.Timestamp(
        run["as_of"], tz="UTC").as_unit("ns")
    _rerun(job, wm, as_of, int(run["as_of"]), run["run_id"], _Timer(), time.perf_counter(), retention=False)


def _committed(job: JobConfig, refit: bool) -> dict | None:
    """The committed watermark; with ``refit``, a damaged one is set aside (the refit rebuilds the model and
    the watermark from the input, so it needs nothing the damaged one says)."""
    try:
        return read_watermark(job)
    except ModelFileError as exc:
        if not refit or isinstance(exc, NewerFormatError):  # a newer markovfault's watermark: not ours to replace
            raise
        logger.warning("%s; --refit rebuilds the model and the watermark from every input row, so the damaged "
                       "watermark is not read (it is replaced at the commit)", exc,
                       extra={"event": "watermark_ignored", "error": str(exc)})
        return None


def _counts_copy(counts):
    """The counts of a model before a batch is added (plain arrays or history-aware counts)."""
    return counts.copy() if hasattr(counts, "copy") else copy.deepcopy(counts)


def _log_drift(before, after_total) -> None:
    """One log line: the asymptotic drift test (:func:`markovfault.diagnostics.drift`) of the rows this run
    counted against the model's counts before them. A diagnostic only: when it cannot be computed, a warning
    says why and the run goes on."""
    from ..diagnostics import drift

    try:
        if isinstance(before, np.ndarray):  # new events extend the vocabulary: pad the old counts
            old = np.zeros(np.shape(after_total), dtype=np.float64)
            old[tuple(slice(0, k) for k in before.shape)] = before
            new = np.asarray(after_total, dtype=np.float64) - old
        else:
            old, new = before, after_total - before
        res = drift(old, new)
    except Exception as exc:  # noqa: BLE001 - never fail a run over its diagnostic
        logger.warning("drift not tested: %s", exc, extra={"event": "drift", "error": str(exc)})
        return
    tested = res[res["df"] > 0]
    changed = [str(s) for s in tested.index[(tested["p_value"] < 0.01).to_numpy()]]
    g2, df = float(tested["g2"].sum()), int(tested["df"].sum())
    p = float(drift_p(g2, df)) if df else float("nan")
    logger.info("drift of the rows counted against the model's counts before them: G2 = %.2f, df = %d, "
                "p = %.3g; states changed at p < 0.01: %s", g2, df, p, ", ".join(changed) or "none",
                extra={"event": "drift", "g2": round(g2, 6), "df": df, "p_value": p,
                       "states_changed": changed, "states_tested": int(len(tested)),
                       "n_new": int(res["n_after"].sum())})


def drift_p(g2: float, df: int) -> float:
    """The chi-square upper tail of the summed drift statistic."""
    from scipy.stats import chi2

    return chi2.sf(g2, df)


def _iso_from_perf(t0: float) -> str:
    start = _dt.datetime.now(_dt.timezone.utc) - _dt.timedelta(seconds=time.perf_counter() - t0)
    return start.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@contextmanager
def _compute(job: JobConfig):
    """A ``distributed.Client`` on ``[compute] scheduler`` (reading and counting then run
    on that cluster), or None: everything in this process."""
    address = job.config.get("compute", {}).get("scheduler")
    if not address:
        yield None
        return
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError('[compute] scheduler needs the dask extra: '
                          'pip install "markovfault[dask]"') from None
    with Client(address, timeout="20s") as client:
        logger.info("reading and counting on the dask cluster at %s", address,
                    extra={"event": "cluster", "scheduler": address,
                           "workers": len(client.scheduler_info().get("workers", {}))})
        yield client


def _rerun(job, wm, as_of, tick, run_id, timer, t0, *, retention: bool = True) -> JobResult:
    """A committed as-of again: rewrite its partition from its own model version."""
    run = next((r for r in wm["runs"] if r["as_of"] == tick), None)
    kind = wm.get("time_kind", "datetime")
    if run is None:
        raise UsageError(
            f"--as-of {show_tick(tick, kind)} is not after the last cutoff "
            f"{wm['data_cutoff']} and no kept run has that as-of. Give a later --as-of, or "
            "--refit to rebuild the model as of then (runs after it are dropped)."
        )
    if not (job.model_dir / run["model"]).exists():
        raise UsageError(
            f"the model version {run['model']} of run {run_id} is no longer kept "
            f"(keep_models = {job.keep_models}); its partition cannot be rebuilt as it was. "
            "--refit rebuilds the model as of then (runs after it are dropped)."
        )
    with timer("load_model"):
        model = load_version(job, run["model"])
    left_out = []
    with timer("forecast"):
        table = forecast_table(model, job, as_of, run_id, run["model"], left_out)
    _log_left_out(job, kind, left_out)
    with timer("write"):
        partition = write_partition(job, run_id, table)
        newest = max(wm["runs"], key=lambda r: r["as_of"])["run_id"]
        write_prometheus(job, run_id, prometheus_text(
            table, finished_at=time.time(), duration=time.perf_counter() - t0,
            rows_counted=int(run.get("rows_counted", 0))), latest=run_id == newest)
    # a run killed after its commit left what retention would have deleted: delete it now
    if retention:
        apply_retention(job, wm)
    logger.info("as-of %s was already committed: rewrote its partition from model version %s",
                run["data_cutoff"], run["model"],
                extra={"event": "rerun", "partition": str(partition),
                       "duration_s": round(time.perf_counter() - t0, 3)})
    return JobResult("rerun", EX_OK, run_id, partition, run["model"],
                     int(table["entity"].nunique()), int(table.loc[table["alert"], "entity"].nunique()),
                     timings=dict(timer))
