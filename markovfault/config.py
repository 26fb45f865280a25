"""Job and training configuration files (TOML).

A config has these tables, all optional but ``[states]`` (and ``[job]``, which
only ``markovfault forecast`` reads and needs):

.. code-block:: toml

    [columns]            # names of the exported history's columns
    entity = "handler"
    time = "timestamp"
    event = "event_type"
    status = "status"
    event_id = "event_id"
    metrics = ["latency_ms"]
    group = "group"      # optional (default: none): for the group context of [states.history]
    time_unit = "s"      # optional: integer times are Unix epoch seconds ("ms", "us", "ns"; "step": a sequence)
    keep_duplicates = false  # default: exact duplicate rows without an event_id are dropped and counted

    [states]             # how statuses or metrics become states
    kind = "categorical"
    failure = ["error", "timeout", "down"]

    [model]              # smoothing and gaps
    alpha = 1.0          # or "auto": chosen from the data
    beta = 1.0           # or "auto"
    max_gap = "30min"
    recent_strength = 500.0   # or "auto"
    time_model = "semi_markov"  # or "ctmc": the waits of time horizons (within = ["15min"])

    [job]                # the scheduled job (``markovfault forecast``)
    input = "exports/"
    output = "forecasts/"
    horizons = [1, 5, 10]

    [compute]            # run on an existing Dask cluster (needs markovfault[dask])
    scheduler = "tcp://scheduler:8786"

``[compute] scheduler`` is read by ``train`` and ``backtest`` (as their
``--scheduler``, which wins) and by the scheduled job ``markovfault forecast``,
which then reads the new files and counts them on the cluster's workers (the
files must be readable there).

The tables are checked here (unknown tables and keys are errors naming
them); the ``[columns]`` and ``[states]`` tables are checked in detail by
:class:`~markovfault.histories.ColumnMap` and :mod:`markovfault.states`, the
values of ``[job]`` by :mod:`markovfault.job`.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from pathlib import Path

from .exceptions import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["load_config", "check_config"]

_TABLES = {"columns", "states", "model", "job", "compute"}
_COMPUTE_KEYS = {"scheduler"}  # [compute] scheduler = "tcp://host:8786": run on a Dask cluster
_MODEL_KEYS = {"alpha", "beta", "max_gap", "recent_strength", "time_model", "sojourn"}
_PRIOR_KEYS = ("alpha", "beta", "recent_strength")  # pseudo-counts, or "auto" (chosen from the data)
_JOB_KEYS = {"input", "output", "model", "horizons", "threshold", "retention", "keep_models",
             "max_silence", "interval", "alert_on", "silence_fails", "prometheus"}


def load_config(path) -> dict:
    """Read and check a TOML config file.

    Parameters
    ----------
    path : str or PathLike

    Returns
    -------
    dict

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ConfigError
        If it is not valid TOML or has unknown tables or keys.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    try:
        with open(path, "rb") as fh:
            config = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    return check_config(config, source=str(path))


def check_config(config: Mapping, source: str = "config") -> dict:
    """Check the top-level shape of a parsed config and return it as a dict.

    Examples
    --------
    >>> check_config({"states": {"kind": "categorical", "failure": ["down"]}})
    {'states': {'kind': 'categorical', 'failure': ['down']}}
    >>> check_config({"model": {"alpah": 1}})
    Traceback (most recent call last):
    ...
    markovfault.exceptions.ConfigError: config: unknown key 'alpah' in [model]; the keys are alpha, beta, max_gap, recent_strength, sojourn, time_model.
    >>> check_config({"model": {"alpha": "auto", "beta": "Auto"}})
    Traceback (most recent call last):
    ...
    markovfault.exceptions.ConfigError: config: [model] beta = 'Auto' must be a number >= 0 or "auto" (chosen from the data).
    """
    if not isinstance(config, Mapping):
        raise ConfigError(f"{source}: a config must be a table, got {type(config).__name__}")
    unknown = sorted(set(config) - _TABLES)
    if unknown:
        raise ConfigError(
            f"{source}: unknown table(s) {unknown}; the tables are "
            f"{', '.join(sorted(_TABLES))}."
        )
    for table in config:
        if not isinstance(config[table], Mapping):
            raise ConfigError(f"{source}: [{table}] must be a table")
    for key in config.get("model", {}):
        if key not in _MODEL_KEYS:
            raise ConfigError(
                f"{source}: unknown key {key!r} in [model]; the keys are "
                f"{', '.join(sorted(_MODEL_KEYS))}."
            )
    for key in _PRIOR_KEYS:
        if key in config.get("model", {}):
            _check_prior_value(source, key, config["model"][key])
    for key in config.get("job", {}):
        if key not in _JOB_KEYS:
            raise ConfigError(
                f"{source}: unknown key {key!r} in [job]; the keys are "
                f"{', '.join(sorted(_JOB_KEYS))}."
            )
    for key in config.get("compute", {}):
        if key not in _COMPUTE_KEYS:
            raise ConfigError(f"{source}: unknown key {key!r} in [compute]; the keys are scheduler.")
    scheduler = config.get("compute", {}).get("scheduler")
    if scheduler is not None and (not isinstance(scheduler, str) or not scheduler.strip()):
        raise ConfigError(f"{source}: [compute] scheduler = {scheduler!r} must be the address "
                          "of a Dask scheduler, e.g. \"tcp://scheduler:8786\".")
    return {k: dict(v) for k, v in config.items()}


def _check_prior_value(source: str, key: str, value) -> None:
    """A prior in [model]: a number >= 0 or "auto" (the same rule as markovfault._priors.check_prior_setting,
    without loading numpy before the command line has parsed its arguments)."""
    if isinstance(value, str) and value == "auto":
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(f'{source}: [model] {key} = {value!r} must be a number >= 0 or "auto" '
                          "(chosen from the data).")
