"""State extractors: turn the canonical history frame into integer state codes.

Every extractor is a scikit-learn transformer. ``fit`` learns the state
vocabulary (and bin edges or cluster centres) from a history frame;
``transform`` returns one ``int64`` state code per row, in
``0..n_states_-1``, without a Python loop over rows.

Four kinds, chosen by ``kind`` in the ``[states]`` table of a config file:

============  ======================  =========================================
kind          class                   reads
============  ======================  =========================================
categorical   :class:`CategoricalStates`  the ``status`` column (labels)
thresholds    :class:`ThresholdStates`    one numeric column cut at fixed edges
quantiles     :class:`QuantileStates`     numeric columns cut at training quantiles
clusters      :class:`ClusterStates`      numeric columns clustered with k-means
============  ======================  =========================================

All kinds share the failure parameters:

* ``failure``: names of failure states (each must be a state).
* ``failure_when``: rules ``<column> <op> <literal>`` (op one of ``==``,
  ``!=``, ``<``, ``<=``, ``>``, ``>=``; literal a number or a quoted string).
  A row matching any rule gets the state ``failure_state`` whatever the
  mapping says. Rules are parsed by a small regular expression; nothing in a
  rule is ever evaluated as code.
* ``failure_state``: the state rule-matched rows get. Default: the first of
  ``failure``, or ``"failure"`` when ``failure`` is empty. When it is not
  already a state it is appended as the last state. It is always a failure
  state. Without rules it is ignored.

A fitted extractor is saved with :meth:`StateExtractor.get_config` (a
JSON-safe parameter dict plus plain numpy arrays) and rebuilt with
:func:`extractor_from_config`; the rebuilt extractor transforms with numpy
alone.
"""

from ._extractors import (
    STATE_KINDS,
    CategoricalStates,
    ClusterStates,
    QuantileStates,
    StateExtractor,
    ThresholdStates,
    extractor_from_config,
    make_state_extractor,
    parse_rule,
)
from ._history import HistoryCounts, HistorySpec, candidate_specs

__all__ = [
    "StateExtractor",
    "CategoricalStates",
    "ThresholdStates",
    "QuantileStates",
    "ClusterStates",
    "parse_rule",
    "extractor_from_config",
    "make_state_extractor",
    "STATE_KINDS",
    "HistorySpec",
    "HistoryCounts",
    "candidate_specs",
]
