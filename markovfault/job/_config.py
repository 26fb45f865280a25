"""The job's config: the ``[job]`` table of a TOML config, checked and with its paths resolved
(:class:`JobConfig`), and :func:`load_job_config`, which reads it from a file."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..exceptions import ConfigError


#: ``[job] max_silence`` when not set, for timestamps: handlers silent for longer are left out of the forecast.
DEFAULT_MAX_SILENCE = "7d"

#: What may raise an alert (``[job] alert_on``): the estimate or its posterior lower bound.
ALERT_ON = ("p_fail", "p_fail_lo")


@dataclass(frozen=True)
class JobConfig:
    """The ``[job]`` table of a config, resolved, plus the whole config.

    Relative paths are taken relative to the directory of the config file.

    Parameters
    ----------
    input : str
        A directory (its CSV, Parquet and JSON-lines files, not recursive,
        hidden files skipped) or a glob pattern (``**`` allowed).
    output : Path
        The output directory (watermark, lock, ``runs/``).
    model : Path
        The model pointer, a ``.npz`` path; versions are written next to it
        as ``<stem>.<run_id>.npz``. Default ``<output>/model.npz``.
    horizons : tuple of int and str, default=(1, 5, 10)
        Steps (ints, ascending), then durations (``"15min"``, ``"1h"``: time horizons, shortest first,
        from each handler's silence at the as-of; see ``FaultPredictor.predict(within=...)``).
    silence_fails : str, default=None
        On time horizons, a handler silent this long at the as-of is reported as failed (a missing
        heartbeat).
    threshold : float, default=0.5
        ``alert = <alert_on> >= threshold``.
    interval : float, default=0.9
        The posterior interval the partitions carry (``p_fail_lo``, ``p_fail_hi``: the 5% and 95%
        quantiles of 200 posterior draws, seeded, so a rerun of an as-of writes the same bounds).
    alert_on : {"p_fail", "p_fail_lo"}, default="p_fail"
        What raises an alert: the estimate, or its lower bound (alert only when the risk is above the
        threshold with 95% posterior probability: fewer alerts on states seen a handful of times).
    retention : int, default=168
        Runs (partitions) to keep; a week of hourly runs.
    keep_models : int, default=24
        Model versions to keep (those of the newest runs).
    max_silence : str, int, False or None, default=None
        Leave out of the forecast the entities whose last step is older than
        this before the cutoff (``"12h"``; an integer for integer time). None
        (not set): ``"7d"`` for timestamps, no limit for integer time
        (:meth:`silence_limit`); False (``max_silence = false``): no limit.
    config : dict
        The whole config: ``[columns]``, ``[states]``, ``[model]``.
    prometheus : Path
        Where each run also writes its forecast as a Prometheus textfile (the latest run's; each run's is
        beside its partition, ``runs/<run_id>/forecast.prom``). Default ``<output>/markovfault.prom``; point it
        into node_exporter's ``--collector.textfile.directory`` (the name must end in ``.prom``).

    Examples
    --------
    >>> job = JobConfig.from_config(
    ...     {"states": {"kind": "categorical", "failure": ["down"]},
    ...      "job": {"input": "exports/*.csv", "output": "out", "horizons": [1, 6]}},
    ...     base_dir="/srv/job")
    >>> job.input, str(job.model), job.horizons, job.threshold
    ('/srv/job/exports/*.csv', '/srv/job/out/model.npz', (1, 6), 0.5)
    """

    input: str
    output: Path
    model: Path
    horizons: tuple = (1, 5, 10)
    threshold: float = 0.5
    retention: int = 168
    keep_models: int = 24
    max_silence: object = None
    interval: float = 0.9
    alert_on: str = "p_fail"
    config: dict = field(default_factory=dict, compare=False, repr=False)
    silence_fails: str | None = None
    prometheus: Path | None = None

    def __post_init__(self):
        if self.prometheus is None:
            object.__setattr__(self, "prometheus", self.output / "markovfault.prom")

    @classmethod
    def from_config(cls, config: Mapping, base_dir=".", source: str = "config") -> "JobConfig":
        """Check the ``[job]`` table of a parsed config and resolve its paths."""
        from ..config import check_config

        config = check_config(config, source=source)
        if "job" not in config:
            raise ConfigError(
                f"{source}: a [job] table is needed for `markovfault forecast` "
                "(input, output, horizons, threshold, retention)."
            )
        if "states" not in config:
            raise ConfigError(f"{source}: a [states] table is needed (kind, failure)")
        table = config["job"]
        base = Path(base_dir)

        def path(key, required=True):
            value = table.get(key)
            if value is None and not required:
                return None
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{source}: [job] {key} must be a path (a non-empty string), "
                                  f"got {value!r}.")
            return os.path.join(base, os.path.expanduser(value))

        def integer(key, default, low=1):
            value = table.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{source}: [job] {key} = {value!r} must be an integer >= {low}.")
            return value

        output = Path(os.path.abspath(path("output")))
        model = path("model", required=False)
        model = Path(os.path.abspath(model)) if model else output / "model.npz"
        if model.suffix != ".npz":
            raise ConfigError(f"{source}: [job] model = {table.get('model')!r} must end in .npz "
                              "(it is the pointer to the current model version).")
        prometheus = path("prometheus", required=False)
        prometheus = Path(os.path.abspath(prometheus)) if prometheus else output / "markovfault.prom"
        if prometheus.suffix != ".prom":
            raise ConfigError(f"{source}: [job] prometheus = {table.get('prometheus')!r} must end in .prom "
                              "(node_exporter's textfile collector reads only *.prom files).")
        horizons = table.get("horizons", [1, 5, 10])
        if isinstance(horizons, (int, str)) and not isinstance(horizons, bool):
            horizons = [horizons]
        horizons = _horizons(source, horizons)
        silence_fails = table.get("silence_fails")
        if silence_fails is not None and _duration(silence_fails) is None:
            raise ConfigError(f"{source}: [job] silence_fails = {silence_fails!r} must be a duration such as "
                              "\"2h\": a handler silent that long is reported as failed on time horizons.")
        threshold = table.get("threshold", 0.5)
        if (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                or not 0 <= threshold <= 1):
            raise ConfigError(f"{source}: [job] threshold = {threshold!r} must be a number "
                              "in [0, 1].")
        interval = table.get("interval", 0.9)
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0 < interval < 1:
            raise ConfigError(f"{source}: [job] interval = {interval!r} must be a probability between 0 "
                              "and 1 (0.9 for a 90% interval).")
        alert_on = table.get("alert_on", "p_fail")
        if alert_on not in ALERT_ON:
            raise ConfigError(f"{source}: [job] alert_on = {alert_on!r} must be one of "
                              f"{', '.join(repr(a) for a in ALERT_ON)}.")
        silence = table.get("max_silence")
        if silence is not None:
            if isinstance(silence, str):
                try:
                    as_timedelta(silence)
                except ValueError:
                    raise ConfigError(f"{source}: [job] max_silence = {silence!r} is not a "
                                      "duration; use e.g. \"7d\" or \"12h\".") from None
            elif silence is True or (not isinstance(silence, bool)
                                     and (not isinstance(silence, int) or silence < 0)):
                raise ConfigError(f"{source}: [job] max_silence = {silence!r} must be a "
                                  "duration such as \"7d\" (or an integer for integer time), or "
                                  "false for no limit.")
        # check [columns] and [states] now: a bad config fails before any work
        from ..histories import ColumnMap
        from ..states import extractor_from_config

        ColumnMap.from_config(config.get("columns"))
        extractor_from_config({k: v for k, v in config["states"].items() if k != "history"})
        return cls(
            input=path("input"),
            output=output,
            model=model,
            horizons=horizons,
            threshold=float(threshold),
            retention=integer("retention", 168),
            keep_models=integer("keep_models", 24),
            max_silence=silence,
            interval=float(interval),
            alert_on=alert_on,
            config=config,
            silence_fails=silence_fails,
            prometheus=prometheus,
        )

    def silence_limit(self, integer_time: bool):
        """The ``max_silence`` in force: the configured one, else :data:`DEFAULT_MAX_SILENCE` for timestamps
        and no limit (None) for integer time; None also for ``max_silence = false``."""
        if self.max_silence is False:
            return None
        if self.max_silence is None:
            return None if integer_time else DEFAULT_MAX_SILENCE
        return self.max_silence

    @property
    def step_horizons(self) -> tuple:
        """The horizons in steps (ints)."""
        return tuple(h for h in self.horizons if isinstance(h, int))

    @property
    def time_horizons(self) -> tuple:
        """The horizons in time (duration strings), shortest first."""
        return tuple(h for h in self.horizons if isinstance(h, str))

    @property
    def model_dir(self) -> Path:
        return self.model.parent

    def version_name(self, run_id: str, n: int = 0) -> str:
        """The file name of the model version a run writes; ``n`` > 0 for a refit at an as-of whose version
        ``<stem>.<run_id>.npz`` (or ``.<n - 1>.npz``) is committed: ``<stem>.<run_id>.<n>.npz``."""
        return f"{self.model.stem}.{run_id}{f'.{n}' if n else ''}.npz"


def as_timedelta(text: str) -> pd.Timedelta:
    """A duration such as ``"7d"`` or ``"12h"`` as a Timedelta (a day written ``d`` or ``D``, as pandas
    will only read ``D``)."""
    return pd.Timedelta(re.sub(r"(?<=\d)\s*d\b", "D", text.strip()))


def _duration(value) -> pd.Timedelta | None:
    """``value`` as a positive duration, None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        width = pd.Timedelta(value)
    except (ValueError, TypeError):
        return None
    return width if width > pd.Timedelta(0) else None


def _horizons(source: str, horizons) -> tuple:
    """``[job] horizons``: ints >= 1 (steps) and durations (time); steps ascending, then durations, each once."""
    bad = ConfigError(f"{source}: [job] horizons = {horizons!r} must be a list of integers >= 1 (steps) "
                      "and durations (time), e.g. [1, 5, 10] or [1, \"15min\", \"1h\"].")
    if not isinstance(horizons, list) or not horizons:
        raise bad
    steps, times = set(), {}
    for h in horizons:
        if isinstance(h, int) and not isinstance(h, bool) and h >= 1:
            steps.add(h)
        elif _duration(h) is not None:
            times.setdefault(_duration(h), h.strip())
        else:
            raise bad
    return tuple(sorted(steps)) + tuple(times[k] for k in sorted(times))


def load_job_config(path) -> JobConfig:
    """Read a job config file (TOML); relative paths are relative to its directory."""
    from ..config import load_config

    path = Path(path)
    return JobConfig.from_config(load_config(path), base_dir=path.resolve().parent,
                                 source=str(path))
