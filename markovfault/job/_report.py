"""What ``markovfault inspect MODEL`` prints: the states and events of a fitted model as tables
(:func:`describe_model`: the riskiest states, the events that raise the risk most) and the report around them
(:func:`format_model_report`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ._asof import show_tick


def describe_model(model, horizons=(1, 5, 10)) -> dict:
    """The states and events of a fitted model, as tables.

    Returns
    -------
    dict
        ``states``: one row per (base) state with ``failure``, ``support``
        (transitions out of it), P(fail within h) for each horizon and the
        expected steps to the next failure, riskiest first. ``events``: one
        row per event with ``n`` (transitions it triggered), ``p_fail_next``
        (the chance that the next state is a failure when this event arrives
        in a healthy state, averaged over healthy states by their support)
        and ``lift`` over the same chance with the coming event unknown,
        largest first. ``baseline``: that chance.

    Examples
    --------
    >>> import pandas as pd
    >>> from markovfault import FaultPredictor
    >>> hist = pd.DataFrame({"entity": ["a"] * 6, "time": range(6),
    ...                      "event": ["tick", "spike", "tick", "tick", "spike", "tick"],
    ...                      "status": ["ok", "down", "ok", "ok", "down", "ok"]})
    >>> model = FaultPredictor(states={"kind": "categorical", "failure": ["down"]},
    ...                        alpha=0, beta=0).fit(hist)
    >>> d = describe_model(model, horizons=(1,))
    >>> d["events"][["event", "n", "p_fail_next", "lift"]]
       event  n  p_fail_next      lift
    0  spike  2          1.0  0.333333
    1   tick  3          0.0 -0.666667

    From ``ok``, 2 of 3 steps went ``down`` (the baseline, 2/3); both spikes did.
    """
    base = getattr(model, "base_chain_", model.chain_)
    names = list(base.state_names_)
    fail = np.asarray(base.is_failure_, dtype=bool)
    counts = np.asarray(base.counts_)
    support = counts.sum(axis=(0, 2))
    horizons = sorted(set(int(h) for h in horizons))
    table = base.failure_probabilities(max(horizons))
    states = pd.DataFrame({"state": names, "failure": fail, "support": support})
    for h in horizons:
        states[f"h={h}"] = table[:, h - 1]
    states["expected_steps"] = base.expected_steps_to_failure()
    states = states.sort_values([f"h={max(horizons)}", "state"], ascending=[False, True])
    healthy = ~fail
    w = support[healthy].astype(float)
    P = np.asarray(base.event_matrices_)
    T = np.asarray(base.transition_matrix_)
    if w.sum() > 0:
        to_fail = P[:, healthy][:, :, fail].sum(axis=2)  # (E, healthy)
        p_next = to_fail @ w / w.sum()
        baseline = float(T[healthy][:, fail].sum(axis=1) @ w / w.sum())
    else:
        p_next, baseline = np.full(len(base.event_names_), np.nan), float("nan")
    events = pd.DataFrame({"event": list(base.event_names_), "n": counts.sum(axis=(1, 2)),
                           "p_fail_next": p_next, "lift": p_next - baseline})
    events = events.sort_values(["lift", "event"], ascending=[False, True]).reset_index(drop=True)
    return {"states": states.reset_index(drop=True), "events": events, "baseline": baseline}


def format_model_report(path, horizons=(1, 5, 10)) -> str:
    """The text that ``markovfault inspect MODEL`` prints."""
    from ..persistence import load_model, read_header

    path = Path(path)
    header = read_header(path)
    model = load_model(path)
    d = describe_model(model, horizons)
    seen = model.last_seen_
    target = f" -> {os.readlink(path)}" if path.is_symlink() else ""
    last = ""
    if len(seen):
        t = int(seen["time"].max())
        last = f", last step {show_tick(t, model.time_kind_)}"
    states = d["states"]
    fmt = {c: "{:.3f}".format for c in states.columns if c.startswith("h=")}
    fmt["expected_steps"] = "{:.1f}".format
    lines = [
        f"model     {path}{target}",
        f"format    {header.get('format')} {header.get('format_version')}, written by "
        f"markovfault {header.get('markovfault_version')}",
        f"trained   {model.n_transitions_:,} transitions; "
        f"{seen.index.nunique():,} entities{last}",
        "states    " + ", ".join(s + ("*" if f else "") for s, f in
                                  zip(model.state_names_, np.isin(model.state_names_,
                                                                  model.failure_states_)))
        + "   (* failure)",
        f"events    {', '.join(model.event_names_)}",
        "",
        "Riskiest states: P(fail within h steps), and the expected steps to the next failure",
        states.to_string(index=False, formatters=fmt),
        "",
        "Events that raise the risk most: P(next state is a failure | event arrives in a "
        f"healthy state); with the event unknown: {d['baseline']:.3f}",
        d["events"].to_string(index=False, float_format="{:+.3f}".format,
                              formatters={"p_fail_next": "{:.3f}".format}),
    ]
    return "\n".join(lines)
