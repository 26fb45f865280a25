"""What the command line prints, and how its help reads: the output formats (``--format``), the what-if
scenario's checks, and each subcommand's description and example.

Light on purpose: the command line imports this module before it parses its arguments, so nothing here imports
a numerical library at module level (frames arrive already built).
"""

from __future__ import annotations

import argparse
import difflib
import json

FORMATS = ("table", "csv", "json")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The description and example as written; every option's default shown, unless its help says it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


def add_format(parser, *, json_alias: bool = False) -> None:
    """``--format {table,csv,json}`` (and ``--json``, the same as ``--format json``) on a subcommand."""
    parser.add_argument("--format", choices=FORMATS, default="table",
                        help="how to print the result on stdout: an aligned table, CSV or one JSON document")
    if json_alias:
        parser.add_argument("--json", dest="format", action="store_const", const="json",
                            help="print one JSON document (the same as --format json)")


def records(frame) -> list:
    """A frame as JSON-ready records: times in ISO 8601, NaN as null."""
    return json.loads(frame.to_json(orient="records", date_format="iso", date_unit="ms", double_precision=15))


def format_frame(frame, fmt: str, float_format: str | None = None) -> str:
    """A frame as an aligned table, CSV (header and rows) or a JSON array of records; the command line
    prints the text."""
    if fmt == "csv":
        return frame.to_csv(index=False).rstrip("\n")
    if fmt == "json":
        return json.dumps(records(frame), indent=2)
    if float_format is None:
        return frame.to_string(index=False)
    return frame.to_string(index=False, float_format=float_format)


def format_json(doc) -> str:
    """One JSON document, indented; what the command line prints for ``--format json``."""
    return json.dumps(doc, indent=2, default=str)


def scenario_events(text: str | None, known, horizon: int | None, *, allow_unknown: bool,
                    horizon_option: str = "--horizon") -> list | None:
    """The events of a ``--scenario``, checked against the model's events and the horizon.

    An event the model never saw is an error (with the closest known names) unless ``allow_unknown``; a
    scenario longer than the horizon is an error, not cut to it. Raises ``ValueError`` (a usage error)."""
    if text is None:
        return None
    events = [s.strip() for s in text.split(",") if s.strip()]
    if not events:
        raise ValueError(f"--scenario {text!r}: give the next events, comma-separated, e.g. payment_failed,order_created")
    known = [str(k) for k in known]
    unknown = [e for e in dict.fromkeys(events) if e not in known]
    if unknown and not allow_unknown:
        event = unknown[0]
        close = difflib.get_close_matches(event, known, n=3)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        more = f" (and {len(unknown) - 1} more unknown)" if len(unknown) > 1 else ""
        raise ValueError(
            f"--scenario: event {event!r}{more} was never seen in training; {hint}known events: "
            f"{', '.join(known)}; --allow-unknown-events forecasts unknown events with the pooled transition row"
        )
    if horizon is not None and len(events) > horizon:
        raise ValueError(
            f"--scenario has {len(events)} events but {horizon_option} is {horizon}: give {horizon_option} "
            f"{len(events)}, or a scenario of at most {horizon} events"
        )
    return events


# each subcommand's description and example, shown by `markovfault COMMAND --help`
ABOUT = {
    "simulate": (
        "Write simulated order-service histories whose true failure probabilities are known.",
        "markovfault simulate --out history.csv --handlers 40 --steps 1500 --seed 0",
    ),
    "train": (
        "Fit a model on exported histories and write it as a model file (.npz).",
        "markovfault train history.csv --config data/orders.toml --out model.npz",
    ),
    "predict": (
        "Forecast P(fail within h steps) for every entity, from its last observed state; a what-if\n"
        "--scenario fixes the next events.",
        "markovfault predict --model model.npz history.csv --horizon 10 --top 5 --layout wide\n"
        "  markovfault predict --model model.npz history.csv --scenario payment_failed,payment_failed\n"
        "  markovfault predict --model model.npz history.csv --format csv > forecast.csv",
    ),
    "backtest": (
        "Rolling-origin backtest of the model against baselines: metrics, predictions, a report and figures\n"
        "in --out, the summary on stdout.",
        "markovfault backtest history.csv --config data/orders.toml --horizon 10 --cutoffs 5 --out bt",
    ),
    "forecast": (
        "The scheduled job: count the new exports, write a forecast partition; a JSON-lines log on stderr.",
        "markovfault forecast --config job.toml",
    ),
    "report": (
        "The scheduled job's forecasts as one self-contained HTML page.",
        "markovfault report --config job.toml --backtest bt",
    ),
    "status": (
        "The scheduled job's last committed run: its age, its alerts and the handlers it left out (read from "
        "its output directory; nothing is written).",
        "markovfault status --config job.toml --format json\n"
        "  markovfault status --config job.toml --format csv > alerts.csv",
    ),
    "inspect": (
        "Describe a model file: states, events, the riskiest states and the events that raise the risk most.",
        "markovfault inspect model.npz --horizons 1,5,10 --format json",
    ),
    "select-states": (
        "Compare history-aware state maps by held-out likelihood and backtest skill; prints the best\n"
        "[states] section for the config.",
        "markovfault select-states history.csv --config data/orders.toml --orders 1,2 --failure-windows 0,3",
    ),
    "diagnose": (
        "Test the model's assumptions on histories: event dependence, Markov order, history components,\n"
        "drift and heterogeneity.",
        "markovfault diagnose model.npz history.csv --bootstrap 199 --format json",
    ),
    "explain": (
        "Why a handler is at risk: the most likely paths into failure, the failure flux, and what each\n"
        "event and state adds to the risk.",
        "markovfault explain model.npz history.csv --entity orders-worker-07 --horizon 10\n"
        "  markovfault explain model.npz history.csv --format csv > attribution.csv",
    ),
    "demo": (
        "Train and forecast on the bundled sample, end to end.",
        "markovfault demo --horizon 5 --top 10",
    ),
}


def describe(parser, name: str) -> None:
    """Give a subcommand's parser its description, its example and the formatter that shows defaults."""
    parser.formatter_class = HelpFormatter
    about = ABOUT.get(name)
    if about is not None:
        parser.description = parser.description or about[0]
        parser.epilog = "example:\n  " + about[1]
