"""The ``markovfault`` command line: simulate, train, predict, backtest, diagnose, demo, ...

Thin by design: every command calls the public Python API, so the tests of
that API cover the command line too. A user's mistake prints one line and
exits with a sysexits code; no traceback.

Exit codes: 0 ok, 64 usage, 65 bad data (or a damaged model file),
66 missing input, 73 output cannot be created, 74 other I/O error,
78 bad config; 141 when the reader of stdout went away (``| head``); 130 on Ctrl-C.
What is printed (``--format``), the what-if checks and each subcommand's help text: ``_cliformat.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Sequence

from ._version import __version__
from ._constants import BASELINES
from . import _cliformat as _out
from .exceptions import ConfigError, DataWarning, HistoryError, MarkovFaultError, ModelFileError

EX_OK, EX_USAGE, EX_DATAERR, EX_NOINPUT, EX_CONFIG = 0, 64, 65, 66, 78
EX_CANTCREAT, EX_IOERR = 73, 74
EX_PIPE = 128 + 13  # what a process killed by SIGPIPE reports
EX_INTERRUPTED = 128 + 2  # Ctrl-C (SIGINT), as a shell reports it

logger = logging.getLogger("markovfault.cli")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse exits 2; sysexits says 64
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"{self.prog}: error: {message}\n")


class _CommandParser(_Parser):
    """A subcommand's parser: its description and example (``_cliformat.ABOUT``), its defaults shown, and
    ``-v``/``-q`` after the subcommand too."""

    def __init__(self, **kwargs):
        kwargs.setdefault("formatter_class", _out.HelpFormatter)
        super().__init__(**kwargs)
        _out.describe(self, self.prog.split()[-1])
        self.add_argument("-v", "--verbose", dest="sub_verbose", action="count", default=0,
                          help="log more (-v info, -vv debug); also before the subcommand")
        self.add_argument("-q", "--quiet", dest="sub_quiet", action="store_true",
                          help="log errors only, no progress line; also before the subcommand")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="markovfault",
        description="Predict faults in event-driven systems from handler status histories.",
    )
    parser.add_argument("--version", action="version", version=f"markovfault {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="log errors only, no progress line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_CommandParser)

    p = sub.add_parser("simulate", help="write simulated order-service histories with known truth")
    p.add_argument("--out", required=True, help="output file (.csv, .csv.gz or .parquet)")
    p.add_argument("--handlers", type=int, default=40, help="number of handlers (default 40)")
    p.add_argument("--steps", type=int, default=1500, help="steps per handler (default 1500)")
    p.add_argument("--flaky-fraction", type=float, default=0.2, help="share of flaky handlers")
    p.add_argument("--duplicate-rate", type=float, default=0.0,
                   help="share of rows delivered twice (at-least-once delivery)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")

    p = sub.add_parser("train", help="fit a model on exported histories")
    p.add_argument("histories", nargs="+", help="history files (CSV, Parquet, JSON lines) or directories")
    p.add_argument("--config", required=True, help="TOML config with [columns], [states], [model]")
    p.add_argument("--out", required=True, help="model file to write (.npz)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS", help=_SCHEDULER_HELP)

    p = sub.add_parser("predict", help="forecast P(fail within h) for every entity")
    p.add_argument("histories", nargs="+", help="recent history files or directories")
    p.add_argument("--model", required=True, help="model file written by `markovfault train`")
    p.add_argument("--config", default=None,
                   help="TOML config: its [compute] scheduler (the model file has the columns and states)")
    p.add_argument("--horizon", type=int, default=None,
                   help="largest horizon h in steps (default 10, or the scenario's length; none with --within "
                        "unless given)")
    p.add_argument("--within", default=None, metavar="DURATIONS",
                   help="time horizons, comma-separated (e.g. 15min,1h; numbers for integer time)")
    p.add_argument("--at", default=None, help="forecast time of --within (default: the latest step)")
    p.add_argument("--silence-fails", default=None, metavar="DURATION",
                   help="with --within: an entity silent this long has failed (a missing heartbeat)")
    p.add_argument("--scenario", default=None,
                   help="what-if: the next events, comma-separated (e.g. payment_failed,payment_failed)")
    p.add_argument("--allow-unknown-events", action="store_true",
                   help="let --scenario name events never seen in training (they get the pooled row)")
    p.add_argument("--interval", type=float, default=None, metavar="LEVEL",
                   help="add a posterior interval: p_fail_lo, p_fail_hi and n_support (e.g. 0.9)")
    p.add_argument("--draws", type=int, default=200, help="posterior draws behind --interval (default 200)")
    p.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    p.add_argument("--out", default=None, help="forecast file (.csv or .parquet); default: print")
    _out.add_format(p)
    p.add_argument("--top", type=int, default=None, metavar="N",
                   help="only the N riskiest entities (by p_fail at the largest horizon), riskiest first")
    p.add_argument("--sort", choices=["entity", "risk"], default=None,
                   help="order of the entities: by name, or riskiest first (default: entity; risk with --top)")
    p.add_argument("--layout", choices=["tidy", "wide"], default="tidy",
                   help="tidy: a row per entity and horizon; wide: a row per entity, a p_fail_h column per "
                        "horizon")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS", help=_SCHEDULER_HELP)

    p = sub.add_parser("backtest", help="rolling-origin backtest against baselines")
    p.add_argument("histories", nargs="+", help="history files (CSV, Parquet, JSON lines) or directories")
    p.add_argument("--config", required=True, help="TOML config with [columns], [states], [model]")
    p.add_argument("--horizon", type=int, default=None, help="largest horizon h in steps (default 10)")
    p.add_argument("--within", default=None, metavar="DURATIONS",
                   help="score time horizons instead, comma-separated (e.g. 5min,30min)")
    p.add_argument("--cutoffs", type=int, default=5, help="number of cutoffs (default 5)")
    p.add_argument("--window", choices=["expanding", "sliding"], default="expanding",
                   help="training window of each fold: all data before the cutoff, or the last --window-size")
    p.add_argument("--window-size", default=None,
                   help="sliding window length: a duration such as 7D, or steps for integer time")
    p.add_argument("--origins", choices=["cutoff", "every_step"], default="cutoff",
                   help="forecast from each entity's state at the cutoff, or from every step")
    p.add_argument("--baselines", default=",".join(BASELINES),
                   help=f"comma-separated, from {','.join(BASELINES)} (default all; '' for none)")
    p.add_argument("--threshold", type=float, default=0.5, help="alert threshold (default 0.5)")
    p.add_argument("--jobs", type=int, default=None, help="parallel folds (joblib n_jobs)")
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    p.add_argument("--out", required=True,
                   help="directory for metrics.csv, predictions.parquet, report.md and figures")
    _out.add_format(p)
    p.add_argument("--scheduler", default=None, metavar="ADDRESS", help=_SCHEDULER_HELP)

    p = sub.add_parser("forecast", help="the scheduled job: count new exports, write a forecast "
                       "partition (JSON-lines log on stderr)")
    p.add_argument("--config", required=True, help="TOML config with a [job] table")
    p.add_argument("--as-of", default=None,
                   help="data cutoff: rows at or after it are not used (ISO 8601, naive = UTC, "
                   "or an integer; default now)")
    p.add_argument("--refit", action="store_true",
                   help="fit from scratch on every input row before the cutoff")

    p = sub.add_parser("report", help="the scheduled job's forecasts as one self-contained HTML page: the "
                       "riskiest handlers, their risk over the kept runs, why, and a backtest's summary")
    p.add_argument("output", nargs="?", default=None, help="the job's output directory (or --config)")
    p.add_argument("--config", default=None, help="the job's TOML config (its [job] output and model)")
    p.add_argument("--out", default=None, help="the page to write (default: <output>/report.html)")
    p.add_argument("--backtest", default=None, metavar="DIR",
                   help="a directory written by `markovfault backtest --out DIR`: its metrics.csv on the page")
    p.add_argument("--horizon", default=None,
                   help="the horizon to rank by, as in the partition (default: the largest in steps)")
    p.add_argument("--top", type=int, default=20, help="handlers in the table (default 20)")
    p.add_argument("--explain", type=int, default=3, help="handlers explained (default 3)")

    p = sub.add_parser("inspect", help="describe a model file: states, events, the riskiest "
                       "states and the events that raise the risk most")
    p.add_argument("model", help="model file (.npz), e.g. the [job] model pointer")
    p.add_argument("--horizons", default="1,5,10", help="comma-separated (default 1,5,10)")
    _out.add_format(p)

    p = sub.add_parser("select-states",
                       help="compare history-aware state maps by held-out likelihood and skill")
    p.add_argument("histories", nargs="+", help="history files (CSV, Parquet, JSON lines) or directories")
    p.add_argument("--config", required=True, help="TOML config with [columns], [states], [model]")
    p.add_argument("--orders", default="1,2,3", help="orders to try (default 1,2,3)")
    p.add_argument("--failure-windows", default="0,3",
                   help="failure windows to try, 0 = none (default 0,3)")
    p.add_argument("--failure-counts", default="0",
                   help="caps of the count of failures since the last recovery to try, 0 = none "
                        "(default 0)")
    p.add_argument("--entering-event", choices=["no", "yes", "both"], default="both",
                   help="add the event that entered the state (default: try both)")
    p.add_argument("--group-levels", default=None,
                   help="levels of the group context to try, 0 = none (needs [columns] group; default: 0 "
                        "and the config's [states.history] group_levels, if it has one, else 0)")
    p.add_argument("--group-window", default=None,
                   help="the group context's trailing window, e.g. 5min, or an integer for sequence "
                        "numbers (default: the config's [states.history] group_window)")
    p.add_argument("--criterion", choices=["heldout_loglik", "bss", "roc_auc"],
                   default="heldout_loglik", help="what picks the best state map")
    p.add_argument("--horizon", type=int, default=5, help="backtest horizon (default 5)")
    p.add_argument("--cutoffs", type=int, default=3, help="backtest cutoffs (default 3)")
    _out.add_format(p)

    p = sub.add_parser("diagnose", help="test the model's assumptions on histories: event dependence, "
                       "Markov order, history components, drift, heterogeneity")
    p.add_argument("model", metavar="MODEL_OR_CONFIG",
                   help="model file written by `markovfault train` (.npz), or a TOML config to fit on the histories")
    p.add_argument("histories", nargs="+", help="history files (CSV, Parquet, JSON lines) or directories")
    p.add_argument("--bootstrap", type=int, default=199,
                   help="parametric-bootstrap replicates per test (default 199; 0: asymptotic p-values only)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the bootstrap (default 0)")
    p.add_argument("--max-order", type=int, default=2, help="test orders 0..M-1 against 1..M (default 2)")
    p.add_argument("--split-time", default=None,
                   help="test drift: the transitions before this time against those after "
                        "(ISO 8601, or an integer for sequence numbers)")
    _out.add_format(p, json_alias=True)

    p = sub.add_parser("explain", help="why a handler is at risk: the most likely paths into failure, "
                       "the failure flux, and what each event and state adds to the risk")
    p.add_argument("model", metavar="MODEL_OR_CONFIG",
                   help="model file written by `markovfault train` (.npz), or a TOML config to fit on the histories")
    p.add_argument("histories", nargs="*",
                   help="history files or directories (default: the steps the model file remembers)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--entity", default=None, help="the handler to explain (default: the riskiest one)")
    where.add_argument("--state", default=None, help="explain the forecast from this state instead")
    p.add_argument("--horizon", type=int, default=None,
                   help="steps ahead (default 10, or the scenario's length)")
    p.add_argument("--paths", type=int, default=10, help="how many most likely paths (default 10)")
    p.add_argument("--scenario", default=None, help="comma-separated next events (a what-if)")
    p.add_argument("--allow-unknown-events", action="store_true",
                   help="let --scenario name events never seen in training (they get the pooled row)")
    p.add_argument("--neutral", choices=["absent", "harmless"], default="absent",
                   help="what an event outside a Shapley coalition does (default absent: it does not occur)")
    p.add_argument("--top", type=int, default=5, help="rows of each table in the report (default 5)")
    p.add_argument("--episode", action="append", default=None, metavar="START/END",
                   help="also localize the root cause of a failure episode across handlers (ISO 8601 times, "
                        "or integers, separated by '/'; repeatable): the propagation graph and a ranking")
    p.add_argument("--window", default="60s",
                   help="with --episode: how long after a handler fails counts as 'it just failed' (default 60s)")
    p.add_argument("--bootstrap", type=int, default=0,
                   help="with --episode: bootstrap replicates of the propagation test (default 0: asymptotic)")
    p.add_argument("--format", choices=_out.FORMATS, default="table",
                   help="table: the text report; json: one JSON document; csv: the per-event attribution table "
                        "(event, shapley, removal_effect, mix_gradient and the flux shares; default table)")
    p.add_argument("--json", dest="format", action="store_const", const="json",
                   help="print one JSON document (the same as --format json)")

    p = sub.add_parser("demo", help="train and forecast on the bundled sample, end to end")
    p.add_argument("--horizon", type=int, default=5, help="horizon to rank handlers by (default 5)")
    p.add_argument("--top", type=int, default=10, help="how many handlers to show (default 10)")
    _add_status(sub)
    return parser


# ------------------------------------------------------------ status: the scheduled job's last run
def _add_status(sub) -> None:
    p = sub.add_parser("status", help="the scheduled job's last run: its age, its alerts and the handlers it "
                       "left out")
    p.add_argument("--config", required=True, help="the job's TOML config (its [job] table)")
    p.add_argument("--format", choices=_out.FORMATS, default="table",
                   help="table: the status table; json: one JSON document; csv: the alerting rows (entity, "
                        "horizon, state, p_fail, p_fail_lo, p_fail_hi), all of them (default table)")
    p.add_argument("--json", dest="format", action="store_const", const="json",
                   help="print one JSON document (the same as --format json)")
    p.add_argument("--top", type=int, default=20, help="alerting rows and left-out handlers shown (default 20)")


def _cmd_status(args) -> int:
    import json

    from .exceptions import NewerFormatError, NoInputError
    from .job import format_status, job_status

    if args.top < 1:
        raise ValueError(f"--top {args.top}: give an integer >= 1")
    try:
        status = job_status(args.config)
    except NoInputError as exc:
        return _fail(exc, EX_NOINPUT)
    except NewerFormatError as exc:  # a watermark of a newer markovfault, as `forecast` says
        return _fail(exc, EX_CONFIG)
    if args.format == "json":
        print(json.dumps(status, indent=2))
    elif args.format == "csv":
        import pandas as pd

        cols = ["entity", "horizon", "state", "p_fail", "p_fail_lo", "p_fail_hi"]
        print(_out.format_frame(pd.DataFrame(status["alerts"], columns=cols), "csv"))
    else:
        print(format_status(status, top=args.top))
    return EX_OK


_SCHEDULER_HELP = ("run on an existing Dask cluster (e.g. tcp://host:8786; needs markovfault[dask]): "
                   "Parquet/CSV histories are read with dask; default: [compute] scheduler")


@contextlib.contextmanager
def _histories(args, config=None):
    """The histories: the paths, or with a scheduler a dask DataFrame read over a connected
    ``distributed.Client`` (``--scheduler``, else ``[compute] scheduler`` of the config)."""
    address = args.scheduler or (config or {}).get("compute", {}).get("scheduler")
    if not address:
        yield args.histories
        return
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError('--scheduler needs the dask extra: pip install "markovfault[dask]"') from None
    from ._dask import read_paths

    with Client(address, timeout="20s"):
        yield read_paths(args.histories)


class _CannotCreate(Exception):
    """An output file cannot be created (checked before any work is done)."""


def _check_out(out: str | None, *, table: bool = True) -> None:
    """Check ``--out`` before doing any work: a table's suffix, and its directory."""
    if out is None:
        return
    if table and not out.endswith((".csv", ".csv.gz", ".parquet")):
        raise ValueError(f"--out {out!r}: use a .csv, .csv.gz or .parquet file name")
    if not Path(out).parent.is_dir():
        raise _CannotCreate(
            f"--out {out!r}: the directory {str(Path(out).parent)!r} does not exist; create it first"
        )


def _write_table(frame, out: str) -> None:
    path = Path(out)
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif path.suffix in (".csv", ".gz"):
        frame.to_csv(path, index=False)
    else:  # _check_out has refused it already
        raise ValueError(f"--out {out!r}: use a .csv, .csv.gz or .parquet file name")


def _cmd_simulate(args) -> int:
    from .simulate import simulate_histories

    _check_out(args.out)
    frame = simulate_histories(
        n_handlers=args.handlers,
        n_steps=args.steps,
        flaky_fraction=args.flaky_fraction,
        duplicate_rate=args.duplicate_rate,
        random_state=args.seed,
    )
    _write_table(frame, args.out)
    print(f"wrote {len(frame)} rows of {args.handlers} handlers to {args.out}")
    return EX_OK


def _cmd_train(args) -> int:
    from .config import load_config
    from .predictor import FaultPredictor

    _check_out(args.out, table=False)
    config = load_config(args.config)
    if "states" not in config:
        raise ConfigError(f"{args.config}: a [states] table is needed (kind, failure)")
    with _histories(args, config) as histories:
        model = FaultPredictor.from_config(config).fit(histories)
    model.save(args.out)
    report = model.read_report_
    print(
        f"trained on {model.n_transitions_} transitions "
        f"({len(model.state_names_)} states, {len(model.event_names_)} events); "
        f"{report.n_rows_kept} of {report.n_rows_read} rows kept"
        + (f", dropped: {dict(report.dropped)}" if report.n_dropped else "")
    )
    print(f"model written to {args.out}")
    return EX_OK


def _duration(text):
    """A command-line duration: an int for integer time ("30"), else the text ("15min", a timestamp)."""
    if text is None:
        return None
    text = text.strip()
    return int(text) if text.lstrip("-").isdigit() else text


def _durations(text: str, option: str) -> list:
    items = [_duration(t) for t in text.split(",") if t.strip()]
    if not items:
        raise ValueError(f"{option} {text!r}: give durations, comma-separated, e.g. 15min,1h")
    return items


def _cmd_predict(args) -> int:
    from .persistence import load_model

    _check_out(args.out)
    if args.interval is not None and not 0 < args.interval < 1:
        raise ValueError(f"--interval {args.interval:g}: give a probability between 0 and 1, e.g. 0.9")
    if args.draws < 2:
        raise ValueError(f"--draws {args.draws}: give an integer >= 2 (default 200)")
    if args.top is not None and args.top < 1:
        raise ValueError(f"--top {args.top}: give an integer >= 1")
    if args.out and args.format != "table":
        raise ValueError(f"--format {args.format} prints to stdout; --out writes the file its suffix names")
    config = None
    if args.config is not None:
        from .config import load_config

        config = load_config(args.config)
    model = load_model(args.model)
    time = {}
    if args.within is not None:
        time = {"within": _durations(args.within, "--within"), "silence_fails": _duration(args.silence_fails),
                "at": None if args.at is None else _duration(args.at)}
    elif args.at is not None or args.silence_fails is not None:
        raise ValueError("--at and --silence-fails go with --within (time horizons), e.g. --within 15min,1h")
    horizon = args.horizon
    scenario = _out.scenario_events(args.scenario, model.event_names_, horizon,
                                    allow_unknown=args.allow_unknown_events)
    if horizon is None and args.within is None:
        horizon = 10 if scenario is None else len(scenario)
    with _histories(args, config) as histories:
        forecast = model.predict(histories, horizon=horizon, scenario=scenario, layout=args.layout,
                                 interval=args.interval, n_draws=args.draws, random_state=args.seed, **time)
    forecast = _ranked(forecast, args.top, args.sort or ("risk" if args.top else "entity"))
    if args.out:
        _write_table(forecast, args.out)
        print(f"wrote {len(forecast)} forecasts to {args.out}")
    else:
        print(_out.format_frame(forecast, args.format))
    return EX_OK


def _ranked(forecast, top: int | None, sort: str):
    """A forecast ordered by entity or riskiest first (p_fail at the largest horizon), its ``top`` entities."""
    if sort == "entity" and top is None:
        return forecast
    if "horizon" in forecast:  # tidy: each entity's risk is its p_fail at the last horizon
        last = forecast["horizon"].drop_duplicates().iloc[-1]
        risk = forecast.loc[forecast["horizon"] == last].set_index("entity")["p_fail"]
    else:  # wide: the last p_fail_<h> column
        risk = forecast.set_index("entity")[[c for c in forecast if c.startswith("p_fail_")
                                             and not c.startswith(("p_fail_lo", "p_fail_hi"))][-1]]
    order = risk.sort_values(ascending=False, kind="stable").index
    if top is not None:
        order = order[:top]
    if sort == "entity":
        order = sorted(order)
    rank = {entity: k for k, entity in enumerate(order)}
    keep = forecast["entity"].map(rank)
    picked = forecast.assign(_rank=keep).dropna(subset=["_rank"])
    return picked.sort_values("_rank", kind="stable").drop(columns="_rank").reset_index(drop=True)


def _cmd_backtest(args) -> int:
    from .backtest import backtest
    from .config import load_config
    from .predictor import FaultPredictor

    config = load_config(args.config)
    if "states" not in config:
        raise ConfigError(f"{args.config}: a [states] table is needed (kind, failure)")
    window_size = args.window_size
    if window_size is not None and window_size.lstrip("-").isdigit():
        window_size = int(window_size)
    baselines = [b.strip() for b in args.baselines.split(",") if b.strip()]
    with _histories(args, config) as histories:  # dask: counted where it lies (see _dask.py)
        within = None if args.within is None else _durations(args.within, "--within")
        horizon = 10 if args.horizon is None and within is None else args.horizon
        result = backtest(
            histories, FaultPredictor.from_config(config), horizon=horizon, within=within,
            cutoffs=args.cutoffs, window=args.window, window_size=window_size,
            origins=args.origins, baselines=baselines, threshold=args.threshold,
            n_jobs=args.jobs, progress=False if args.no_progress or args.quiet else None,
        )
    out = result.to_dir(args.out)
    summary = result.summary()
    cols = ["model", "horizon", "n", "n_pos", "brier", "bss", "roc_auc", "average_precision", "ece"]
    if args.format == "csv":
        print(_out.format_frame(summary[cols], "csv"))
        return EX_OK
    if args.format == "json":
        print(_out.format_json({"summary": _out.records(summary[cols]),
                         "verdicts": {"bss": result.verdict(), "roc_auc": result.verdict("roc_auc")},
                         "out": str(out), "report": str(out / "report.md")}))
        return EX_OK
    print(summary[cols].to_string(index=False, float_format="%.4f"))
    print()
    print(result.verdict())
    print(result.verdict("roc_auc"))
    print(f"\nreport written to {out / 'report.md'}")
    return EX_OK


def _ints(text: str, option: str) -> list:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{option} {text!r}: give comma-separated integers, e.g. 1,2,3") from None


def _cmd_select_states(args) -> int:
    from .states import candidate_specs
    from .config import load_config
    from .predictor import FaultPredictor
    from .selection import select_states

    config = load_config(args.config)
    if "states" not in config:
        raise ConfigError(f"{args.config}: a [states] table is needed (kind, failure)")
    entering = {"no": (False,), "yes": (True,), "both": (False, True)}[args.entering_event]
    history = dict(config["states"].get("history") or {})
    levels = args.group_levels
    if levels is None:  # with and without the config's own group context
        levels = f"0,{history['group_levels']}" if history.get("group_levels") else "0"
    window = args.group_window if args.group_window is not None else history.get("group_window")
    if isinstance(window, str) and window.strip().isdigit():  # sequence numbers
        window = int(window)
    candidates = candidate_specs(_ints(args.orders, "--orders"),
                                 _ints(args.failure_windows, "--failure-windows"), entering,
                                 failure_counts=_ints(args.failure_counts, "--failure-counts"),
                                 group_levels=_ints(levels, "--group-levels"), group_window=window,
                                 group_count=history.get("group_count", "onsets"))
    result = select_states(args.histories, FaultPredictor.from_config(config), candidates,
                           criterion=args.criterion, horizon=args.horizon, cutoffs=args.cutoffs)
    if args.format == "csv":
        print(_out.format_frame(result.table, "csv"))
        return EX_OK
    if args.format == "json":
        print(_out.format_json({"criterion": args.criterion, "candidates": _out.records(result.table),
                         "best_config": result.best_config()}))
        return EX_OK
    print(result.table.to_string(index=False, float_format="%.4f"))
    print(f"\nbest by {args.criterion}; put this in the config's [states] section:\n")
    print(result.best_config())
    return EX_OK


def _bundled_data() -> tuple[Path, Path] | None:
    root = Path(__file__).resolve().parent.parent / "data"
    sample, config = root / "orders_sample.csv.gz", root / "orders.toml"
    return (sample, config) if sample.exists() and config.exists() else None


def _cmd_demo(args) -> int:
    from .config import load_config
    from .predictor import FaultPredictor

    bundled = _bundled_data()
    with tempfile.TemporaryDirectory() as tmp:
        if bundled is None:
            from .simulate import simulate_histories

            print("bundled sample not found; simulating one (40 handlers x 1500 steps)")
            sample = Path(tmp) / "orders_sample.csv"
            simulate_histories(n_handlers=40, n_steps=1500, random_state=0).to_csv(sample, index=False)
            config = {
                "columns": {"entity": "handler", "time": "timestamp", "event": "event_type",
                            "status": "status", "event_id": "event_id"},
                "states": {"kind": "categorical", "failure": ["error", "timeout", "down"]},
            }
        else:
            sample, config_path = bundled
            config = load_config(config_path)
        print(f"histories: {sample}")
        model = FaultPredictor.from_config(config).fit(sample)
        report = model.read_report_
        print(
            f"read {report.n_rows_read} rows of {report.n_entities} handlers; "
            f"fitted {model.n_transitions_} transitions over states {model.state_names_} "
            f"(failure: {model.failure_states_}) and events {model.event_names_}"
        )
        model_path = Path(tmp) / "model.npz"
        model.save(model_path)
        from .persistence import load_model

        model = load_model(model_path)
        forecast = model.predict(sample, horizon=args.horizon)
        at_h = forecast[forecast["horizon"] == args.horizon]
        top = at_h.sort_values(["p_fail", "entity"], ascending=[False, True]).head(args.top)
        print(f"\nriskiest handlers: P(fail within {args.horizon} steps) from their last state")
        print(top[["entity", "as_of", "state", "p_fail"]].to_string(index=False, float_format="%.3f"))

        table = model.failure_probabilities(args.horizon)
        print("\nP(fail within h steps) by current state:")
        print(table.to_string(float_format="%.3f"))

        scenario = ["payment_failed"] * args.horizon
        if "payment_failed" in model.event_names_:
            what_if = model.failure_probabilities(args.horizon, scenario=scenario)[args.horizon]
            print(f"\nwhat-if: the next {args.horizon} events are all payment_failed")
            print(what_if.to_frame("p_fail").to_string(float_format="%.3f"))
    return EX_OK


def _cmd_forecast(args) -> int:
    from .job import forecast_command

    return forecast_command(args.config, as_of=args.as_of, refit=args.refit,
                            verbose=args.verbose)


def _cmd_report(args) -> int:
    from .exceptions import NoInputError, OutputError, UsageError

    if (args.output is None) == (args.config is None):
        raise ValueError("give the job's output directory or --config JOB.toml, one of them")
    for name in ("top", "explain"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} {getattr(args, name)}: give an integer >= 1")
    _check_out(args.out, table=False)
    options = dict(backtest=args.backtest, horizon=args.horizon, top=args.top, explain_top=args.explain)
    try:
        from .job import load_job_config, report_for_job, write_report

        if args.config is not None:
            path = report_for_job(load_job_config(args.config), args.out, **options)
        else:
            path = write_report(args.output, args.out, **options)
    except NoInputError as exc:
        return _fail(exc, EX_NOINPUT)
    except OutputError as exc:
        return _fail(exc, EX_CANTCREAT)
    except UsageError as exc:
        return _fail(exc, EX_USAGE)
    print(f"report written to {path}")
    return EX_OK


def _cmd_inspect(args) -> int:
    from .job import format_model_report

    try:
        horizons = [int(h) for h in args.horizons.split(",") if h.strip()]
    except ValueError:
        raise ValueError(f"--horizons {args.horizons!r}: give integers, e.g. 1,5,10") from None
    if not horizons or min(horizons) < 1:
        raise ValueError(f"--horizons {args.horizons!r}: give integers >= 1, e.g. 1,5,10")
    if args.format == "table":
        print(format_model_report(args.model, horizons))
        return EX_OK
    from .job import describe_model
    from .persistence import load_model

    model = load_model(args.model)
    d = describe_model(model, horizons)
    if args.format == "csv":  # one table: the states, riskiest first
        print(_out.format_frame(d["states"], "csv"))
    else:
        print(_out.format_json({"model": str(args.model), "n_transitions": int(model.n_transitions_),
                         "states": _out.records(d["states"]), "events": _out.records(d["events"]),
                         "failure_states": list(model.failure_states_),
                         "baseline_p_fail_next": d.get("baseline")}))
    return EX_OK


def _cmd_diagnose(args) -> int:
    import json

    from .diagnostics import diagnose

    if args.bootstrap < 0:
        raise ValueError(f"--bootstrap {args.bootstrap}: give an integer >= 0 (0: asymptotic p-values only)")
    if args.max_order < 1:
        raise ValueError(f"--max-order {args.max_order}: give an integer >= 1")
    if args.model.endswith(".toml"):
        from .config import load_config
        from .predictor import FaultPredictor

        config = load_config(args.model)
        if "states" not in config:
            raise ConfigError(f"{args.model}: a [states] table is needed (kind, failure)")
        model = FaultPredictor.from_config(config).fit(args.histories)
    else:
        from .persistence import load_model

        model = load_model(args.model)
    split = args.split_time
    if split is not None and split.strip().lstrip("-").isdigit():
        split = int(split)
    report = diagnose(model, args.histories, bootstrap=args.bootstrap, random_state=args.seed,
                      max_order=args.max_order, split_time=split)
    if args.format == "json":
        print(json.dumps(report.to_dict(), indent=2))
    elif args.format == "csv":  # one row per test and state: the summary
        print(_out.format_frame(report.summary(), "csv"))
    else:
        print(report.to_text())
    return EX_OK


def _cmd_explain(args) -> int:
    import json

    from .explain import explain

    for name in ("horizon", "paths", "top"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name} {getattr(args, name)}: give an integer >= 1")
    histories = args.histories or None
    if args.model.endswith(".toml"):
        from .config import load_config
        from .predictor import FaultPredictor

        if histories is None:
            raise ConfigError(f"{args.model} is a config: give the histories to fit it on")
        config = load_config(args.model)
        if "states" not in config:
            raise ConfigError(f"{args.model}: a [states] table is needed (kind, failure)")
        model = FaultPredictor.from_config(config).fit(histories)
    else:
        from .persistence import load_model

        model = load_model(args.model)
    scenario = _out.scenario_events(args.scenario, model.event_names_, args.horizon,
                                    allow_unknown=args.allow_unknown_events)
    why = explain(model, histories, entity=args.entity, state=args.state, horizon=args.horizon,
                  n_paths=args.paths, scenario=scenario, neutral=args.neutral)
    where = None
    if args.episode:
        from .explain import localize

        if histories is None:
            raise ConfigError("--episode needs the histories to localize in")
        if args.bootstrap < 0:
            raise ValueError(f"--bootstrap {args.bootstrap}: give an integer >= 0")
        episodes = []
        for text in args.episode:
            parts = [p.strip() for p in text.split("/")]
            if len(parts) != 2 or not all(parts):
                raise ValueError(f"--episode {text!r}: give START/END, e.g. 2026-03-01T08:00/2026-03-01T08:30")
            episodes.append(tuple(int(p) if p.lstrip("-").isdigit() else p for p in parts))
        where = localize(histories, episodes, model=model, window=args.window, bootstrap=args.bootstrap,
                         top=args.top, random_state=0)
    if args.format == "csv":
        print(_out.format_frame(why.event_table().rename_axis("event").reset_index(), "csv"))
    elif args.format == "json":
        out = why.to_dict()
        if where is not None:
            out["localization"] = where.to_dict()
        print(json.dumps(out, indent=2))
    else:
        print(why.to_text(top=args.top))
        if where is not None:
            print("\nAcross handlers:\n" + where.to_text())
    return EX_OK


_COMMANDS = {
    "simulate": _cmd_simulate,
    "train": _cmd_train,
    "predict": _cmd_predict,
    "backtest": _cmd_backtest,
    "select-states": _cmd_select_states,
    "demo": _cmd_demo,
    "forecast": _cmd_forecast,
    "inspect": _cmd_inspect,
    "report": _cmd_report,
    "diagnose": _cmd_diagnose,
    "explain": _cmd_explain,
    "status": _cmd_status,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EX_USAGE
    args.verbose += args.sub_verbose
    args.quiet = args.quiet or args.sub_quiet
    level = logging.ERROR if args.quiet else [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="markovfault: %(levelname)s: %(message)s")
    # library warnings are also logged; show each once, as a log line
    warnings.simplefilter("ignore", DataWarning)
    try:
        code = _COMMANDS[args.command](args)
        sys.stdout.flush()  # meet a closed pipe here, not at interpreter exit
        return code
    except BrokenPipeError:  # `markovfault predict ... | head`: the reader went away
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:  # point stdout at devnull, so the flush at exit does not fail again
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):  # stdout has no file descriptor
            pass
        finally:
            os.close(devnull)
        return EX_PIPE
    except KeyboardInterrupt:  # Ctrl-C: one line, the shell's code for SIGINT
        print("\nmarkovfault: interrupted", file=sys.stderr)
        return EX_INTERRUPTED
    except _CannotCreate as exc:
        return _fail(exc, EX_CANTCREAT)
    except FileNotFoundError as exc:
        return _fail(exc, EX_NOINPUT)
    except ConfigError as exc:
        return _fail(exc, EX_CONFIG)
    except (HistoryError, ModelFileError) as exc:
        return _fail(exc, EX_DATAERR)
    except MarkovFaultError as exc:
        return _fail(exc, EX_DATAERR)
    except ValueError as exc:
        return _fail(exc, EX_USAGE)
    except OSError as exc:  # e.g. no permission, disk full
        return _fail(exc, EX_IOERR)


def _fail(exc: BaseException, code: int) -> int:
    msg = exc.strerror + f": {exc.filename}" if isinstance(exc, FileNotFoundError) and exc.filename else str(exc)
    print(f"markovfault: error: {msg}", file=sys.stderr)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
