"""Why will it fail: explanations of markovfault's forecasts.

For one handler (an entity's last step, or a state) and a horizon of k steps:

- :func:`failure_flux`: the exact failure flux, which (state, event, next state) edges failing paths take
  and when, with shares by edge, by event and by step;
- :func:`likely_paths`: the k most likely paths into failure, exact, with the share of the risk they cover;
- :func:`attribute_events`, :func:`attribute_states`: exact Shapley values of each event type and each
  entered state, with removal effects beside them; :func:`event_mix_gradient`, the derivative of the risk
  as the event mix moves toward each event;
- :func:`explain`: all of them in one :class:`Explanation` (what ``markovfault explain`` prints).

Every explanation works for plain and history-aware models, from the model's closed forms.

Across handlers (fault localization, from histories; see :mod:`markovfault.explain._localize`):
:func:`trace_paths` and :func:`failure_paths` (paths by trace id and the patterns that precede failures),
:func:`propagation_test` (does B fail more after A fails, given B's own state), :func:`rank_root_causes` (the
likely root causes of a failure episode) beside the :func:`robust_zscore_ranking` baseline,
:func:`root_cause_accuracy`, and :func:`localize`, all of it for a list of episodes.
"""

from ._api import (DEFAULT_HORIZON, Attribution, FailureFlux, LikelyPaths, attribute_events, attribute_states,
                   event_mix_gradient, failure_flux, likely_paths)
from ._localize import (LocalizationReport, PropagationResult, failure_paths, localize, propagation_test,
                        rank_root_causes, robust_zscore_ranking, root_cause_accuracy, trace_paths)
from ._report import Explanation, explain

__all__ = ["explain", "Explanation", "failure_flux", "likely_paths", "attribute_events", "attribute_states", "event_mix_gradient",
           "FailureFlux", "LikelyPaths", "Attribution", "DEFAULT_HORIZON",
           "trace_paths", "failure_paths", "propagation_test", "PropagationResult", "rank_root_causes",
           "robust_zscore_ranking", "root_cause_accuracy", "localize", "LocalizationReport"]
