"""Priors chosen from data ("auto"): the measurements behind the choices in markovfault._priors.

    python benchmarks/priors.py arrivals    # beta for the arrival rows: shared or its own? (~1 min)
    python benchmarks/priors.py leave_out   # beta around the pooled row with or without the row itself
    python benchmarks/priors.py what_if     # the what-if forecast: beta="auto" against beta=0 and 1
    python benchmarks/priors.py recent      # recent_strength: evidence with or without leaving a state out
    python benchmarks/priors.py defaults    # backtests: the default priors against "auto" (~10 min)
    python benchmarks/priors.py             # all of them

Everything on the simulated order service (markovfault.simulate), whose matrices and event mixes are known;
``defaults`` also on the public data sets of examples/ when ../shared/data holds them.
"""

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from markovfault import FaultPredictor, backtest
from markovfault._eventmix import RECENT, event_probs_for
from markovfault._priors import choose_priors, dirichlet_strength, estimate_tensors, recent_strength_from_windows
from markovfault._recursion import scenario_hitting_probabilities
from markovfault.chain import EventMarkovChain
from markovfault.simulate import OrderServiceSystem, simulate_histories

warnings.simplefilter("ignore")
pd.set_option("display.width", 200)

COLUMNS = {"entity": "handler", "time": "timestamp", "event": "event_type", "status": "status"}
STATES = {"kind": "categorical", "states": ["ok", "slow", "error", "timeout", "down"],
          "failure": ["error", "timeout", "down"]}
SYSTEM = OrderServiceSystem.default()


def counts_of(hist):
    """Counts C[e, i, j] of a simulated history, in the simulator's state and event order."""
    chain = FaultPredictor(states=STATES, columns=COLUMNS).fit(hist).chain_
    s = [chain.state_names_.index(x) for x in SYSTEM.state_names]
    e = [chain.event_names_.index(x) for x in SYSTEM.event_names]
    return chain.counts_[np.ix_(e, s, s)]


def arrivals():
    """Held-out log-likelihood per arrival of Q with the arrival rows' own strength or with beta's."""
    print("beta for the arrival rows: own strength or beta's (held-out log-likelihood per arrival)")
    wins = total = 0
    for n, steps in [(5, 100), (10, 200), (20, 500), (50, 1000)]:
        rows = []
        for seed in range(8):
            train = counts_of(simulate_histories(n, steps, random_state=100 + seed, with_metrics=False))
            test = counts_of(simulate_histories(200, 500, random_state=900 + seed, with_metrics=False))
            _, beta, own = choose_priors(train, "auto", "auto")
            arr, held = train.sum(axis=2).T, test.sum(axis=2).T
            glob = arr.sum(axis=0) / arr.sum()

            def ll(strength):
                Q = (arr + strength * glob) / (arr.sum(axis=1, keepdims=True) + strength)
                return float((held * np.log(Q)).sum() / held.sum())

            rows.append((beta, own, ll(beta), ll(own)))
        rows = np.array(rows)
        wins += int((rows[:, 3] > rows[:, 2]).sum())
        total += len(rows)
        print(f"  {n * steps:6d} steps: beta {np.median(rows[:, 0]):8.1f}, arrivals' own {np.median(rows[:, 1]):5.1f}"
              f" (medians) | shared {rows[:, 2].mean():.5f}, own {rows[:, 3].mean():.5f}"
              f" | own better in {(rows[:, 3] > rows[:, 2]).sum()}/{len(rows)}")
    print(f"  order service: own better in {wins} of {total} fits")
    # a system whose arrivals hardly depend on the state while its transitions stray far from the
    # pooled ones (counts drawn directly: 6 states, 5 events)
    rng = np.random.default_rng(0)
    S, E = 6, 5
    rows = []
    for _ in range(32):
        g = rng.dirichlet(np.ones(E) * 3)
        Q = rng.dirichlet(400 * g, size=S)
        m = rng.dirichlet(np.ones(S), size=S)
        P = np.stack([[rng.dirichlet(5.0 * m[i]) for i in range(S)] for _ in range(E)])
        visits = rng.integers(10, 120, size=S)

        def draw(vis):
            arr = np.stack([rng.multinomial(v, Q[i]) for i, v in enumerate(vis)])
            return np.stack([[rng.multinomial(arr[i, e], P[e, i]) for i in range(S)] for e in range(E)])

        train, test = draw(visits), draw(visits * 20)
        _, beta, own = choose_priors(train, "auto", "auto")
        arr, held = train.sum(axis=2).T, test.sum(axis=2).T
        glob = arr.sum(axis=0) / arr.sum()

        def ll(strength):
            Q_hat = (arr + strength * glob) / (arr.sum(axis=1, keepdims=True) + strength)
            return float((held * np.log(Q_hat)).sum() / held.sum())

        rows.append((beta, own, ll(beta), ll(own)))
    rows = np.array(rows)
    print(f"  arrivals alike in every state: beta {np.median(rows[:, 0]):.1f}, arrivals' own "
          f"{np.median(rows[:, 1]):.0f} | shared {rows[:, 2].mean():.5f}, own {rows[:, 3].mean():.5f}"
          f" | own better in {(rows[:, 3] > rows[:, 2]).sum()}/{len(rows)}")


def leave_out():
    """beta chosen with the mean made of all events or of the other events, on rows drawn around the
    pooled rows with a known strength (uneven event frequencies)."""
    print("beta on rows drawn around the pooled rows with strength 20 (medians of 20 draws)")
    rng = np.random.default_rng(0)
    S = 6
    for E in (3, 5, 12):
        plain, loo = [], []
        for _ in range(20):
            m = rng.dirichlet(np.ones(S) * 2, size=S)
            P = np.stack([[rng.dirichlet(20.0 * m[i]) for i in range(S)] for _ in range(E)])
            n = rng.multinomial(200 * E, rng.dirichlet(np.ones(E) * 2), size=S).T
            C = np.stack([[rng.multinomial(n[e, i], P[e, i]) for i in range(S)] for e in range(E)])
            a, b, _ = choose_priors(C, "auto", "auto")
            loo.append(b)
            pooled = estimate_tensors(C, a, 0.0)["pooled"]
            plain.append(dirichlet_strength(C, np.broadcast_to(pooled, C.shape)))
        print(f"  {E:2d} events: mean of all events {np.median(plain):5.1f}, of the other events {np.median(loo):5.1f}")


def what_if(replicates=200):
    """max |forecast - truth| of a what-if (payment_failed x2, order_created, payment_failed) over every
    state and horizon: counts drawn afresh from the true matrices, rows as often as in one history."""
    print("what-if error, mean over count replicates (beta=auto / 0 / 1 / chosen around the mean of all "
          "events), and auto <= 0 in how many")
    scenario = ["payment_failed", "payment_failed", "order_created", "payment_failed"]
    e = [SYSTEM.event_names.index(x) for x in scenario]
    fail = np.isin(SYSTEM.state_names, SYSTEM.failure_states)
    truth = scenario_hitting_probabilities(list(SYSTEM.event_matrices["normal"][e]), fail)
    for n, steps in [(20, 1000), (100, 2000)]:
        hist = simulate_histories(n, steps, flaky_fraction=0.0, random_state=2027, with_metrics=False)
        rows = counts_of(hist).sum(axis=2)
        rng = np.random.default_rng(0)
        errs = []
        for _ in range(replicates):
            C = rng.multinomial(rows, SYSTEM.event_matrices["normal"])
            pooled = estimate_tensors(C, 1.0, 0.0)["pooled"]
            all_events = dirichlet_strength(C, np.broadcast_to(pooled, C.shape))
            errs.append([np.abs(EventMarkovChain(beta=b).fit_from_counts(
                C, SYSTEM.state_names, SYSTEM.event_names, fail).failure_probabilities(
                4, scenario=scenario) - truth).max() for b in ("auto", 0.0, 1.0, all_events)])
        errs = np.array(errs)
        print(f"  {n * steps:6d} steps: {errs[:, 0].mean():.4f} / {errs[:, 1].mean():.4f} / "
              f"{errs[:, 2].mean():.4f} / {errs[:, 3].mean():.4f}; auto <= 0 in "
              f"{(errs[:, 0] <= errs[:, 1]).sum()}/{replicates}")


def recent(width=10):
    """The shifted order service of tests/test_priors_chosen.py: the error of the recent mix against
    the true mix of ten-minute windows, for the chosen strength, the strength evidence would choose
    without leaving each state out, and the best of a grid."""
    from markovfault import _priors

    print(f"recent_strength on {width}-minute windows of a system with mix shifts (error relative to the best)")
    for seed in (3, 4, 5):
        sim = simulate_histories(120, 900, random_state=seed, with_metrics=False, flaky_fraction=0.0,
                                 outages=6, mix_shifts=[(100, 220, {"order_shipped": 4.0}),
                                                        (500, 560, {"payment_succeeded": 0.2})],
                                 clock="aligned", jitter=0.2, return_result=True)
        frame = sim.frame
        model = FaultPredictor(states=STATES, columns=COLUMNS, recent_strength="auto").fit(
            frame[sim.step < 600])
        chain = model.chain_
        names, events = list(SYSTEM.state_names), list(SYSTEM.event_names)
        state = pd.Categorical(frame["status"], categories=chain.state_names_).codes
        event = pd.Categorical(frame["event_type"], categories=chain.event_names_).codes
        first = np.r_[True, frame["handler"].to_numpy()[1:] != frame["handler"].to_numpy()[:-1]]
        prev = np.r_[0, state[:-1]]
        Q = np.stack([SYSTEM.shifted_event_probs("normal", sim.regime_multipliers.loc[r].to_dict())
                      for r in sim.regime_multipliers.index])
        Q = Q[:, [names.index(s) for s in chain.state_names_]][:, :, [events.index(x) for x in chain.event_names_]]
        windows, train_windows = [], []
        for start in range(0, 900, width):
            sel = ~first & (sim.step >= start) & (sim.step < start + width)
            c = np.zeros((5, 5), dtype=np.int64)
            np.add.at(c, (prev[sel], event[sel]), 1)
            if start < 600:
                train_windows.append(c)
                continue
            truth, visits = np.zeros((5, 5)), np.bincount(prev[sel], minlength=5)
            np.add.at(truth, prev[sel], Q[sim.regime[sel], prev[sel]])
            windows.append((c, truth / np.maximum(visits, 1)[:, None], visits))

        def error(k):
            return sum(float((v[:, None] * (event_probs_for(chain, RECENT, c, strength=k) - t) ** 2).sum())
                       for c, t, v in windows)

        grid = np.exp(np.linspace(np.log(5.0), np.log(1e5), 50))
        errors = np.array([error(k) for k in grid])
        tw = np.array(train_windows)
        own = recent_strength_from_windows(tw, chain.event_probs_)
        target = _priors.shift_targets(chain.event_probs_, tw)  # every state in its own shift
        plain = dirichlet_strength(tw.reshape(-1, 5), target.reshape(-1, 5))
        best = errors.min()
        print(f"  seed {seed}: chosen (bins) {model.recent_strength_:7.1f} x{error(model.recent_strength_) / best:.3f}"
              f" | {width}-min windows: left out {own:7.1f} x{error(own) / best:.3f},"
              f" not left out {plain:7.1f} x{error(plain) / best:.3f}"
              f" | default 500 x{error(500.0) / best:.3f} | best of grid {grid[errors.argmin()]:.0f}")


def defaults():
    """Backtests with the default priors and with "auto": the simulation of the README's accuracy table
    (benchmarks/accuracy_memory.py, seed 7), then the examples' data sets when present."""
    print("pooled Brier skill / ROC AUC over horizons: default priors | alpha, beta, recent_strength auto")
    sim = simulate_histories(150, 800, random_state=7, with_metrics=False, flaky_fraction=0.0,
                             memory_window=5, memory_boost=3.0, outages=8, outage_length=60,
                             clock="aligned")
    cases = [("simulation, plain chain", sim, FaultPredictor(states=STATES, columns=COLUMNS),
              dict(horizon=10, cutoffs=3, origins="every_step")),
             ("simulation, history-aware + recent", sim,
              FaultPredictor(states=STATES, columns=COLUMNS, history={"failure_window": 6}),
              dict(horizon=10, cutoffs=3, origins="every_step", event_mix=["long_run", "recent"],
                   recent_window="2min"))]
    data = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    examples = Path(__file__).resolve().parents[1] / "examples"
    if data.exists():
        import importlib.util

        for name in ("backblaze", "hdfs", "nab"):
            spec = importlib.util.spec_from_file_location(f"ex_{name}", examples / name / "run.py")
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            hist = mod.load(data / name)
            cuts = mod.CUTOFFS if hasattr(mod, "CUTOFFS") else (
                mod.cutoffs(hist) if name == "hdfs" else mod.cutoffs())
            kw = dict(horizon=mod.HORIZON, cutoffs=cuts, origins="every_step")
            cases.append((f"{name}, plain chain", hist, mod.predictor(history=False), kw))
            recent = getattr(mod, "RECENT_WINDOW", None)
            kw = dict(kw, event_mix=["long_run", "recent"], recent_window=recent) if recent else kw
            cases.append((f"{name}, history-aware", hist, mod.predictor(history=True), kw))
    for label, hist, model, kw in cases:
        out = []
        for params in ({}, dict(alpha="auto", beta="auto", recent_strength="auto")):
            res = backtest(hist, model.set_params(**params) if params else model, baselines=[],
                           progress=False, **kw)
            s = res.summary()
            out.append(s.groupby("model")[["bss", "roc_auc"]].mean())
            model = model.set_params(alpha=1.0, beta=1.0, recent_strength=500.0)
        both = out[0].join(out[1], lsuffix=" default", rsuffix=" auto")
        print(f"  {label}:\n" + both.round(4).to_string().replace("\n", "\n    ").join(["    ", ""]))


if __name__ == "__main__":
    parts = {"arrivals": arrivals, "leave_out": leave_out, "what_if": what_if, "recent": recent,
             "defaults": defaults}
    for name in sys.argv[1:] or parts:
        parts[name]()
