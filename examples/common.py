"""What the three examples share: the plain chain and the history-aware chain backtested on the same
origins, and the choice of the history-aware states.

Each ``run.py`` loads this file by its path (``examples/`` is not a package); see :func:`load_common`
there.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Model names in the combined results. ``markov`` is the plain chain of the config without its
#: ``[states.history]``; the history-aware chain is scored under the long-run event mix and, where events
#: exist, under the recent one.
PLAIN = "markov"
HISTORY = "markov+history"
HISTORY_RECENT = "markov+history+recent"
#: A candidate whose held-out log-likelihood lies within this share of the best one counts as a tie; the
#: smallest of the tied state maps is chosen.
TIE = 1e-3


def plain(model):
    """The same predictor without history-aware states."""
    from sklearn.base import clone

    return clone(model).set_params(history=None)


def backtest_both(hist, model, *, horizon, cutoffs, n_jobs=2, event_mix=("long_run",),
                  recent_window=None, progress=None):
    """Backtest the plain chain with every baseline, then the history-aware chain of ``model`` on the
    same cutoffs and origins (no baselines), and return one result holding every model.

    ``hist`` is a frame returned by ``markovfault.read_histories`` (read once, used by both runs).
    """
    import markovfault as mf

    base = mf.backtest(hist, plain(model), horizon=horizon, cutoffs=cutoffs, origins="every_step",
                       n_jobs=n_jobs, progress=progress)
    aware = mf.backtest(hist, model, horizon=horizon, cutoffs=cutoffs, origins="every_step",
                        baselines=[], event_mix=list(event_mix), recent_window=recent_window,
                        progress=progress)
    return combine(base, aware, mf.HistorySpec.from_config(model.history).to_config())


def combine(base, aware, history: dict):
    """One :class:`~markovfault.BacktestResult` from the plain run (``markov`` and the baselines) and
    the history-aware run (``markov``, ``markov_recent``), renamed ``markov+history`` and
    ``markov+history+recent`` and placed right after ``markov``. Raises if the runs did not score
    the same origins."""
    import markovfault as mf

    rename = {"markov": HISTORY, "markov_recent": HISTORY_RECENT}
    unknown = set(aware.models) - set(rename)
    if unknown:
        raise ValueError(f"unexpected models {sorted(unknown)} in the history-aware run")
    keys = ["fold", "origin_step", "horizon"]
    left = base.predictions.loc[base.predictions["model"] == "markov", keys]
    right = aware.predictions.loc[aware.predictions["model"] == "markov", keys]
    if not (len(left) == len(right) and (left.to_numpy() == right.to_numpy()).all()):
        raise ValueError("the plain and the history-aware backtests scored different origins")
    if not base.folds.equals(aware.folds):
        raise ValueError("the plain and the history-aware backtests have different folds")

    names = [PLAIN, *(rename[m] for m in aware.models),
             *(m for m in base.models if m != PLAIN)]
    # the models' categories renamed and unified (no copy of the other columns before the concat)
    parts = [frame.assign(model=pd.Categorical(
        frame["model"].cat.rename_categories(lambda m: mapping.get(m, m)), categories=names))
        for frame, mapping in ((base.predictions, {}), (aware.predictions, rename))]
    pred = pd.concat(parts, ignore_index=True)
    params = {**base.params, "history": dict(history),
              "event_mix": ["long_run", *(["recent"] if HISTORY_RECENT in names else [])]}
    # scored again as one run: per-fold means, intervals and every model-vs-model difference
    return mf.BacktestResult(metrics=base.metrics, predictions=pred, folds=base.folds,
                             params=params).rescore()


def select(hist, model, candidates, first_cutoff, *, events: bool = True):
    """Compare ``candidates`` with :func:`markovfault.selection.select_states` on the steps before
    ``first_cutoff`` (so that the choice never sees a test fold) by held-out log-likelihood, and choose
    the smallest state map within :data:`TIE` of the best.

    ``events=False`` drops the event column for the comparison: ``select_states`` scores
    log P(next state | history, event), which says nothing when the event names the next state
    (HDFS) and little when it nearly does (Backblaze); without events it scores
    log P(next state | history), what a forecast over unknown events needs.

    Returns ``(table, chosen)``: the table (best first) with a ``chosen`` column, and the chosen
    settings as a ``[states.history]`` dict.
    """
    from markovfault.selection import select_states

    pre = hist[hist["time"] < first_cutoff]
    if not events:
        pre = pre.assign(event="step")  # one event for every step, as a config without events
    res = select_states(pre, model, candidates, horizon=None)
    table = res.table.copy()
    best = table["heldout_loglik"].iloc[0]
    tied = table[table["heldout_loglik"] >= best - TIE * abs(best)]
    pick = tied.sort_values(["n_states", "heldout_loglik"], ascending=[True, False],
                            kind="stable").index[0]
    table["chosen"] = np.where(table.index == pick, "<-", "")
    keys = ["order", "failure_window", "failure_count", "entering_event", "backoff"]
    chosen = {k: getattr(table.loc[pick, k], "item", lambda v=table.loc[pick, k]: v)()  # "auto" is a str
              for k in keys if k in table}
    return table, chosen


def history_table(chosen: dict) -> str:
    """``chosen`` as a ``[states.history]`` TOML table."""
    return "[states.history]\n" + "".join(
        f"{k} = {str(v).lower() if isinstance(v, bool) else v}\n" for k, v in chosen.items())


def print_selection(table, chosen) -> None:
    """What ``run.py --select`` prints: the comparison, then the chosen ``[states.history]`` table."""
    print(table.to_string(index=False, float_format="%.6f"))
    print("\nchosen (the smallest within common.TIE of the best):\n" + history_table(chosen))


def print_result(result) -> None:
    """What ``run.py`` prints: the per-fold means with intervals and the verdicts of both chains."""
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(result.summary().drop(columns=["note"]).round(4).to_string(index=False))
    print()
    for model in (PLAIN, HISTORY):
        print(result.verdict(model=model))
        print(result.verdict("roc_auc", model=model))
