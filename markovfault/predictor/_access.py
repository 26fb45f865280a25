"""What a fitted :class:`~markovfault.predictor.FaultPredictor` answers about itself (internal API):
its vocabularies, priors, model file and notebook summary, kept apart so that the estimator's own class
holds fitting and forecasting only."""

from __future__ import annotations

from ..chain import EventMarkovChain
from ..exceptions import NotFittedError
from ._output import html_summary, priors_frame

__all__ = ["FittedAccess"]


class FittedAccess:
    """The fitted predictor's accessors (a base of :class:`~markovfault.predictor.FaultPredictor`)."""

    def _check_fitted(self) -> None:
        if not hasattr(self, "chain_"):
            raise NotFittedError("This FaultPredictor is not fitted yet; call fit(histories) or load a "
                                 "model with markovfault.load_model(path).")

    @property
    def base_chain_(self) -> EventMarkovChain:
        """The chain over base states (the model itself without history-aware states)."""
        self._check_fitted()
        return self.chain_.base_

    @property
    def state_names_(self) -> list:
        """The base states (without history)."""
        return list(self.base_chain_.state_names_)

    @property
    def event_names_(self) -> list:
        return list(self.base_chain_.event_names_)

    @property
    def failure_states_(self) -> list:
        base = self.base_chain_
        return [s for s, f in zip(base.state_names_, base.is_failure_) if f]

    @property
    def n_transitions_(self) -> int:
        self._check_fitted()
        return self.chain_.n_transitions_

    @property
    def priors_(self):
        """The priors in use: ``value`` and ``source`` ("given", or "chosen" from the data for "auto");
        see :func:`~markovfault.predictor._output.priors_frame`."""
        return priors_frame(self)

    def expected_steps_to_failure(self, *, interval: float | None = None, n_draws: int = 200,
                                  random_state=0):
        """Expected steps until the next failure from each base state, labelled: a Series by state (inf where
        a failure is not certain to come), or with ``interval`` a DataFrame with columns ``steps``,
        ``steps_lo`` and ``steps_hi`` (posterior bounds, as
        :meth:`EventMarkovChain.expected_steps_to_failure` draws them; seeded).

        Examples
        --------
        >>> import pandas as pd
        >>> from markovfault import FaultPredictor
        >>> hist = pd.DataFrame({"entity": ["a"] * 6, "time": range(6),
        ...                      "status": ["ok", "ok", "down", "ok", "down", "ok"]})
        >>> FaultPredictor(states={"failure": ["down"]}, alpha=0, beta=0).fit(hist).expected_steps_to_failure()
        state
        down    2.5
        ok      1.5
        Name: expected_steps, dtype: float64

        From ``ok`` 2 of 3 steps went down: m = 1 + m / 3, so 1.5; from ``down`` every step went to ``ok``:
        1 + 1.5.
        """
        import pandas as pd

        base = self.base_chain_
        index = pd.Index(list(base.state_names_), name="state")
        if interval is None:
            return pd.Series(base.expected_steps_to_failure(), index=index, name="expected_steps")
        bounds = base.expected_steps_to_failure(interval=interval, n_draws=n_draws, random_state=random_state)
        return pd.DataFrame({"steps": bounds.estimate, "steps_lo": bounds.lower, "steps_hi": bounds.upper},
                            index=index)

    def save(self, path) -> None:
        """Write the fitted model to ``path`` (a safe ``.npz`` file; see
        :func:`markovfault.load_model`)."""
        from ._io import save_model

        save_model(self, path)

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "chain_")

    def _repr_html_(self) -> str:
        """For notebooks: per state, P(fail within 1, 5, 10) and the transitions seen (unfitted, the
        estimator diagram); Jupyter shows it in the mime bundle too."""
        return html_summary(self)
