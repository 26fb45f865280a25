"""Choosing history-aware states from data.

:func:`select_states` compares candidate :class:`~markovfault.states.HistorySpec`
settings (orders, failure windows, the entering event, the group context) by
the log-likelihood of held-out transitions and by backtest skill, and returns
a table and the best choice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from ._estimator import clone

from ._timecodec import time_int
from .backtest import backtest
from .chain import HistoryChain
from .exceptions import ConfigError, HistoryError
from .predictor._settings import new_extractor, read_input
from .states import HistorySpec, candidate_specs
from .states._history import resolve_gap_edges
from .trajectories import encode_frame

__all__ = ["select_states", "SelectionResult", "candidate_specs"]


@dataclass
class SelectionResult:
    """The comparison of candidate state maps.

    Attributes
    ----------
    table : DataFrame
        One row per candidate: its settings, ``n_states`` (the history-aware
        states seen with a transition in the training part),
        ``heldout_loglik`` (mean log-likelihood per held-out transition, of
        the event and the next state given the history), ``note`` (why a
        candidate was not scored, e.g. too many states),
        and, when a backtest ran, per-fold mean ``bss`` and ``roc_auc`` averaged over
        horizons. Sorted best first.
    best : HistorySpec
        The winner by ``criterion``.
    criterion : str
    """

    table: pd.DataFrame
    best: HistorySpec
    criterion: str

    def best_config(self) -> str:
        """The winner as a ``[states.history]`` TOML table.

        Examples
        --------
        >>> spec = HistorySpec(failure_window=3, backoff="auto", gap_edges=["30s", "5min"])
        >>> print(SelectionResult(pd.DataFrame(), spec, "heldout_loglik").best_config())
        [states.history]
        order = 1
        failure_window = 3
        failure_count = 0
        entering_event = false
        backoff = "auto"
        gap_bins = 3
        gap_edges = ["30s", "5min"]
        <BLANKLINE>
        >>> SelectionResult(pd.DataFrame(), HistorySpec(group_window="5min", group_levels=3),
        ...                 "heldout_loglik").best_config().splitlines()[-3:]
        ['group_window = "5min"', 'group_levels = 3', 'group_count = "onsets"']
        """
        c = self.best.to_config()
        return "[states.history]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in c.items())


def _toml_value(v) -> str:
    """A config value as TOML: booleans in lower case, strings quoted, lists of them."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return str(v)


def _as_spec(c) -> HistorySpec:
    if isinstance(c, HistorySpec):
        return c
    if isinstance(c, dict):
        return HistorySpec.from_config(c)
    raise ConfigError(f"a candidate must be a HistorySpec or a dict, got {type(c).__name__}")


def select_states(
    histories,
    predictor,
    candidates: Sequence | None = None,
    *,
    holdout: float = 0.25,
    criterion: str = "heldout_loglik",
    horizon: int | None = 5,
    cutoffs: int = 3,
) -> SelectionResult:
    """Compare history-aware state maps and pick the best.

    Parameters
    ----------
    histories : DataFrame, path, or list of them
    predictor : FaultPredictor
        Gives the base states, columns, alpha, beta and max_gap; its own
        ``history`` is ignored.
    candidates : sequence of HistorySpec or dict, optional
        Default: orders 1-3 x failure windows 0, 3 x entering event off/on.
        Candidates with the group context (``group_levels``, see
        :func:`candidate_specs`) need ``predictor``'s columns to name the
        group column; every candidate is scored on the same observations,
        each held-out step's event and next state (the group context's own
        next value, ``R(x' | a)``, is what a candidate knows, not what it
        is scored on).
    holdout : float, default=0.25
        The last share of the steps (by time) is held out for the likelihood.
    criterion : {'heldout_loglik', 'bss', 'roc_auc'}, default='heldout_loglik'
    horizon : int or None, default=5
        Backtest horizon for ``bss`` and ``roc_auc``; ``None`` skips the backtest.
    cutoffs : int, default=3

    Returns
    -------
    SelectionResult
    """
    if criterion not in ("heldout_loglik", "bss", "roc_auc"):
        raise ConfigError(f"criterion = {criterion!r}; use heldout_loglik, bss or roc_auc")
    if criterion != "heldout_loglik" and horizon is None:
        raise ConfigError(f"criterion {criterion!r} needs a backtest horizon")
    if not 0 < holdout < 1:
        raise ConfigError(f"holdout = {holdout}, must lie in (0, 1)")
    specs = [_as_spec(c) for c in (candidates if candidates is not None else candidate_specs(
        orders=(1, 2, 3), failure_windows=(0, 3), entering_event=(False, True)))]
    if not specs:
        raise ConfigError("no candidates to compare")

    frame, _ = read_input(histories, predictor.columns)
    times = time_int(frame)
    split = np.quantile(times, 1 - holdout, method="higher")
    extractor = new_extractor(predictor.states).fit(frame.loc[times < split])
    codes = extractor.transform(frame)
    traj = encode_frame(frame, codes, extractor.state_names_, extractor.is_failure_, None,
                        predictor.max_gap)
    test_bin = (traj.time >= split).astype(np.int64)
    rows, kept = [], []
    for spec in specs:  # a loop over candidates, each vectorised
        # gap bins chosen from the data: from the steps before the hold-out
        chain = HistoryChain(resolve_gap_edges(spec, traj, before=split), alpha=predictor.alpha,
                             beta=predictor.beta)
        try:
            train, test = chain.count(traj, test_bin, 2)
        except ConfigError as exc:  # too many seen states to count: reported, not fatal
            rows.append({**spec.to_config(), "n_states": np.nan, "heldout_loglik": np.nan,
                         "note": str(exc)})
            kept.append(spec)
            continue
        if test.sum() == 0 or train.sum() == 0:
            raise HistoryError("the hold-out split leaves no training or no test transitions")
        chain.fit_from_counts(train, traj.state_names, traj.event_names, traj.is_failure,
                              is_end=traj.is_end)
        # log P(e | a) + log P(j | a, e) of every held-out transition: the event term
        # matters where the event names the next state (a log key, say)
        ll = chain.counts_log_likelihood(test)
        row = {**spec.to_config(), "n_states": chain.n_seen_, "heldout_loglik": ll / test.sum(),
               "note": ""}
        if horizon is not None:
            model = clone(predictor).set_params(history=spec)
            res = backtest(frame, model, horizon=horizon, cutoffs=cutoffs,
                           baselines=[], progress=False, n_boot=0)
            mean = res.metrics[res.metrics["fold"] == "mean"]  # per-fold means, by horizon
            row["bss"] = float(mean["bss"].mean())
            row["roc_auc"] = float(mean["roc_auc"].mean())
        rows.append(row)
        kept.append(spec)
    table = pd.DataFrame(rows)
    if "group_levels" in table:  # candidates without the group context: 0 levels
        table["group_levels"] = table["group_levels"].fillna(0).astype(np.int64)
    table = table.sort_values(criterion, ascending=False, kind="stable", na_position="last")
    if table[criterion].isna().all():
        raise ConfigError("no candidate could be scored: " + "; ".join(table["note"]))
    best = kept[int(table.index[0])]
    return SelectionResult(table=table.reset_index(drop=True), best=best, criterion=criterion)
