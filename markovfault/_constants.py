"""Names shared by the command line and the layers it calls, kept in a module that imports nothing, so the
command line can build its parser before numpy, pandas or scikit-learn are loaded."""

BASELINES = ("climatology", "state_frequency", "no_events", "gradient_boosting")
"""The built-in baselines of :func:`markovfault.backtest`, in the order they are reported."""

MODEL = "markov"
"""The name of the fitted chain in backtest results."""

IMPLICIT_EVENT = "step"
"""The event of every step of a history without an event column."""
