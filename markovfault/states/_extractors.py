"""State extractors: statuses or metrics of each step -> state codes (see :mod:`markovfault.states`)."""

from __future__ import annotations

import inspect
import itertools
import logging
import numbers
import operator
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pandas as pd

from .._estimator import Estimator, TransformerMixin
from ..histories._contract import describe_row
from ..exceptions import (
    ConfigError,
    DataWarning,
    EmptyHistoryError,
    HistoryError,
    MetricTypeError,
    MissingColumnError,
    ModelFileError,
    NotFittedError,
    UnknownStatusError,
)

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
    "END_STATE",
    "END_EVENT",
]

logger = logging.getLogger("markovfault.states")

#: With no ``states`` list, a state learned from the labels is *rare* (a warning) when fewer rows than both
#: ``RARE_STATE_ROWS`` and ``RARE_STATE_SHARE`` of the rows carry it (states named in ``mapping``,
#: ``failure``, ``end`` or ``unknown`` excepted).
RARE_STATE_ROWS = 10
RARE_STATE_SHARE = 0.001

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]

#: The status column of the canonical history frame.
STATUS_COLUMN = "status"
#: The state and the event of the step added after a history that stopped (``end_after``).
END_STATE = "<end>"
END_EVENT = "<end>"

# --------------------------------------------------------------------------
# failure rules
# --------------------------------------------------------------------------

_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}

_RULE_RE = re.compile(
    r"""^\s*
    (?:(?P<col>[A-Za-z_][A-Za-z0-9_.]*)|`(?P<qcol>[^`]+)`)      # column or `column`
    \s*(?P<op>==|!=|<=|>=|<|>)\s*
    (?:(?P<num>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)  # number
      |'(?P<sq>[^']*)'|"(?P<dq>[^"]*)")                         # 'string' or "string"
    \s*$""",
    re.VERBOSE,
)

_RULE_FORM = (
    "the accepted form is <column> <op> <literal> with op one of "
    "==, !=, <, <=, >, >= and literal a number or a quoted string, "
    "e.g. \"status == 'down'\", \"error_rate >= 0.5\", \"latency_ms > 5000\""
)


@dataclass(frozen=True)
class Rule:
    """A parsed failure rule ``<column> <op> <literal>``.

    Attributes
    ----------
    column : str
        The frame column the rule reads.
    op : str
        One of ``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``.
    value : float or str
        The literal: a float for a number, a str for a quoted string.
    text : str
        The rule as written.
    """

    column: str
    op: str
    value: float | str
    text: str

    def evaluate(self, X: pd.DataFrame) -> BoolArray:
        """Return the boolean mask of rows of ``X`` that match the rule."""
        who = f"failure rule {self.text!r}"
        if isinstance(self.value, str):
            if pd.api.types.is_numeric_dtype(X[self.column].dtype):
                raise MetricTypeError(
                    f"{who} compares column {self.column!r} with a string, but the "
                    f"column is numeric (dtype {X[self.column].dtype}); write the "
                    f"literal as a number, e.g. {self.column} {self.op} 1"
                )
            values = _string_column(X, self.column, who)
            return np.asarray(_OPS[self.op](values, self.value), dtype=bool)
        values = _numeric_column(X, self.column, who)
        return _OPS[self.op](values, self.value)


def parse_rule(text: str) -> Rule:
    """Parse one failure rule without evaluating anything.

    Parameters
    ----------
    text : str
        A rule ``<column> <op> <literal>``; op is one of ``==``, ``!=``,
        ``<``, ``<=``, ``>``, ``>=``; literal is a number (``0.5``, ``5e3``,
        ``-1``) or a string in single or double quotes (no escapes). A column
        name that is not an identifier may be written in backticks.

    Returns
    -------
    Rule

    Raises
    ------
    ConfigError
        If the rule does not have the accepted form, or compares a string
        with ``<``, ``<=``, ``>`` or ``>=``.

    Examples
    --------
    >>> parse_rule("error_rate >= 0.5")
    Rule(column='error_rate', op='>=', value=0.5, text='error_rate >= 0.5')
    >>> parse_rule("status == 'down'").value
    'down'
    >>> parse_rule("__import__('os').system('x') == 1")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    markovfault.exceptions.ConfigError: failure rule "__import__('os').system('x') == 1" ...
    """
    if not isinstance(text, str):
        raise ConfigError(
            f"failure rule {text!r} is a {type(text).__name__}, not a string; {_RULE_FORM}"
        )
    m = _RULE_RE.match(text)
    if m is None:
        raise ConfigError(f"failure rule {text!r} cannot be parsed; {_RULE_FORM}")
    column = m["col"] if m["col"] is not None else m["qcol"]
    op = m["op"]
    value: float | str
    if m["num"] is not None:
        value = float(m["num"])
    else:
        value = m["sq"] if m["sq"] is not None else m["dq"]
        if op not in ("==", "!="):
            raise ConfigError(
                f"failure rule {text!r} compares a string with {op!r}; strings only "
                f"take == and !=; {_RULE_FORM}"
            )
    return Rule(column=column, op=op, value=value, text=text)


# --------------------------------------------------------------------------
# column access helpers (validate once, at the boundary)
# --------------------------------------------------------------------------


def _row_label(X: pd.DataFrame, position: int) -> str:
    """The row named in errors: its source and 1-based row there (``row 6 of 'a.csv'``)."""
    return describe_row(X, position)


def _check_no_missing(X: pd.DataFrame, column: str, missing: BoolArray, who: str) -> None:
    if missing.any():
        pos = int(np.flatnonzero(missing)[0])
        raise HistoryError(
            f"column {column!r} (needed by {who}) has a missing value at "
            f"{_row_label(X, pos)} ({int(missing.sum())} rows in all); drop or fill "
            "those rows first (read_histories drops rows without a usable status)"
        )


def _numeric_column(X: pd.DataFrame, column: str, who: str) -> FloatArray:
    series = X[column]
    if not pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(
        series.dtype
    ):
        raise MetricTypeError(
            f"column {column!r} (needed by {who}) must be numeric, got dtype "
            f"{series.dtype}; convert it with pd.to_numeric or list it under "
            "[columns].metrics"
        )
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    _check_no_missing(X, column, np.isnan(values), who)
    return values


def _string_column(X: pd.DataFrame, column: str, who: str) -> pd.Series:
    series = X[column]
    _check_no_missing(X, column, series.isna().to_numpy(dtype=bool), who)
    if isinstance(series.dtype, pd.CategoricalDtype) and (
        pd.api.types.is_string_dtype(series.cat.categories.dtype)
        or series.cat.categories.dtype == object
    ):  # text as codes (read_histories(..., categorical=True)): compared without copies
        return series
    if not (
        pd.api.types.is_string_dtype(series.dtype) or series.dtype == object
    ):  # e.g. integer status codes: compare them as text
        series = series.astype(str)
    return series


# --------------------------------------------------------------------------
# parameter helpers
# --------------------------------------------------------------------------


def _name_list(value: Any, param: str, *, allow_str: bool = True) -> list[str]:
    """A list of names from a str (one name), None or a sequence of str."""
    if value is None:
        return []
    if isinstance(value, str):
        if not allow_str:
            raise ConfigError(f"{param} must be a list of strings, got the string {value!r}")
        return [value]
    if not isinstance(value, (Sequence, np.ndarray)):
        raise ConfigError(
            f"{param} must be a list of strings, got {type(value).__name__} {value!r}"
        )
    out: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise ConfigError(
                f"{param} must be a list of strings, got the item {item!r} "
                f"({type(item).__name__})"
            )
        if item not in out:
            out.append(item)
    return out


def _check_int(value: Any, param: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{param} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{param} == {value}, must be >= {minimum}")
    return int(value)


def _check_columns(value: Any, param: str) -> list[str]:
    columns = _name_list(value, param)
    if not columns:
        raise ConfigError(f"{param} must name at least one numeric column, got {value!r}")
    if len(columns) != len(value if not isinstance(value, str) else [value]):
        raise ConfigError(f"{param} lists a column twice: {list(value)!r}")
    return columns


def _json_safe(value: Any) -> Any:
    """Tuples to lists, numpy scalars to Python scalars; ConfigError otherwise."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json_safe(v) for v in value]
    raise ConfigError(
        f"the parameter value {value!r} ({type(value).__name__}) cannot be written to "
        "a config file; use numbers, strings and lists"
    )


def _str_array(names: Sequence[str]) -> np.ndarray:
    """Names as a fixed-width unicode array (saved by np.savez without pickle)."""
    return np.array(list(names), dtype=np.str_) if len(names) else np.zeros(0, "<U1")


def _array(arrays: Mapping[str, Any], key: str, cls_name: str) -> np.ndarray:
    if key not in arrays:
        raise ModelFileError(
            f"the saved {cls_name} lacks the array {key!r} (has: "
            f"{', '.join(sorted(arrays)) or 'none'}); the model file is truncated or "
            "was written for another kind of state extractor"
        )
    return np.asarray(arrays[key])


# --------------------------------------------------------------------------
# the common base
# --------------------------------------------------------------------------


class StateExtractor(TransformerMixin, Estimator):
    """Base class of the state extractors.

    Subclasses define the base states (from the ``status`` column or from
    numeric metric columns); this class adds the failure parameters, the
    failure rules, frame validation, ``get_config`` and the fitted-state
    checks. See the module docstring for ``failure``, ``failure_when`` and
    ``failure_state``.

    Attributes
    ----------
    state_names_ : list of str
        The states, in code order.
    n_states_ : int
        ``len(state_names_)``.
    is_failure_ : ndarray of shape (n_states_,), bool
        Which states are failure states.
    failure_states_ : list of str
        The names of the failure states, in code order.
    is_end_ : ndarray of shape (n_states_,), bool
        Which states are end states (``end``, and ``"<end>"`` with
        ``end_after``).
    rules_ : list of Rule
        The parsed ``failure_when`` rules.
    """

    #: the value of ``kind`` in the [states] table
    kind: ClassVar[str] = ""

    # ---- hooks the subclasses implement ------------------------------------

    def _base_columns(self) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_kind_params(self) -> None:
        """Validate the kind-specific parameters (raise ConfigError)."""

    def _fit_base(self, X: pd.DataFrame, rule_mask: BoolArray | None) -> list[str]:
        """Learn the kind-specific fitted attributes; return the base state names."""
        raise NotImplementedError  # pragma: no cover

    def _extra_failure(self, n_base: int) -> BoolArray | None:
        """Failure marks over the base states that come from kind parameters."""
        return None

    def _base_codes(self, X: pd.DataFrame, rule_mask: BoolArray | None) -> IntArray:
        """Codes of the base states; rows in ``rule_mask`` may get any code."""
        raise NotImplementedError  # pragma: no cover

    def _kind_arrays(self) -> dict[str, np.ndarray]:
        return {}

    def _restore_kind(self, arrays: Mapping[str, Any]) -> None:
        """Set the kind-specific fitted attributes from saved arrays."""

    # ---- public API ---------------------------------------------------------

    @property
    def required_columns(self) -> list[str]:
        """The frame columns the extractor reads (base columns, then rule columns)."""
        columns = list(self._base_columns())
        for rule in self._parse_rules():
            if rule.column not in columns:
                columns.append(rule.column)
        return columns

    def fit(self, X: pd.DataFrame, y: Any = None) -> StateExtractor:
        """Learn the states from a canonical history frame.

        Parameters
        ----------
        X : DataFrame
            The canonical history frame (at least the columns in
            :attr:`required_columns`).
        y : None
            Ignored.

        Returns
        -------
        self

        Raises
        ------
        ConfigError
            A parameter is invalid (named in the message).
        MissingColumnError, MetricTypeError, HistoryError
            A needed column is absent, of the wrong type, or has missing values.
        """
        self._check_params()
        X = self._check_frame(X)
        if len(X) == 0:
            raise EmptyHistoryError(
                f"{type(self).__name__} cannot be fitted on a frame with no rows"
            )
        rule_mask = self._rule_mask(X)
        base_names = self._fit_base(X, rule_mask)
        self._finish_states(base_names)
        return self

    def transform(self, X: pd.DataFrame) -> IntArray:
        """Return the state code of every row.

        Parameters
        ----------
        X : DataFrame
            The canonical history frame.

        Returns
        -------
        codes : ndarray of shape (n_rows,), int64
            Codes in ``0..n_states_-1``; ``state_names_[code]`` is the name.

        Raises
        ------
        NotFittedError
            If the extractor is not fitted.
        MissingColumnError, MetricTypeError, HistoryError, UnknownStatusError
            The frame does not fit the extractor (named in the message).
        """
        self._check_fitted()
        X = self._check_frame(X)
        rule_mask = self._rule_mask(X)
        codes = np.asarray(self._base_codes(X, rule_mask), dtype=np.int64)
        if rule_mask is not None:
            codes[rule_mask] = self.rule_state_code_
        return codes

    def get_config(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Return what is needed to rebuild the fitted extractor.

        Returns
        -------
        params : dict
            JSON-safe: ``"kind"`` and every constructor parameter. The same
            shape as the ``[states]`` table of a config file.
        arrays : dict of str to ndarray
            Plain (non-object) arrays: always ``state_names`` (unicode) and
            ``is_failure`` (bool), plus the kind's fitted arrays (label
            table, bin edges, scaler and cluster centres).

        Raises
        ------
        NotFittedError
            If the extractor is not fitted.
        ConfigError
            If a parameter cannot be written as JSON (e.g. a RandomState).

        See Also
        --------
        extractor_from_config : the inverse.
        """
        self._check_fitted()
        params = {"kind": self.kind}
        params.update({k: _json_safe(v) for k, v in self.get_params(deep=False).items()})
        arrays = {
            "state_names": _str_array(self.state_names_),
            "is_failure": np.asarray(self.is_failure_, dtype=bool).copy(),
        }
        arrays.update(self._kind_arrays())
        return params, arrays

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "state_names_")

    # ---- shared machinery ---------------------------------------------------

    def _check_fitted(self) -> None:
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet; call fit(frame) first, "
                "or rebuild a fitted one with extractor_from_config(params, arrays)"
            )

    def _parse_rules(self) -> list[Rule]:
        rules = self.failure_when
        if rules is None:
            return []
        if isinstance(rules, str):
            rules = [rules]
        if not isinstance(rules, (Sequence, np.ndarray)):
            raise ConfigError(
                f"failure_when must be a list of rule strings, got {rules!r}; {_RULE_FORM}"
            )
        return [parse_rule(r) for r in rules]

    def _check_params(self) -> None:
        self.rules_ = self._parse_rules()
        _name_list(self.failure, "failure")
        if self.failure_state is not None and not isinstance(self.failure_state, str):
            raise ConfigError(
                f"failure_state must be a state name (str), got {self.failure_state!r}"
            )
        self._check_kind_params()

    def _rule_state_name(self) -> str:
        if self.failure_state is not None:
            return self.failure_state
        failure = _name_list(self.failure, "failure")
        return failure[0] if failure else "failure"

    def _check_frame(self, X: Any) -> pd.DataFrame:
        if not isinstance(X, pd.DataFrame):
            raise TypeError(
                f"{type(self).__name__} reads a pandas DataFrame (the canonical history "
                f"frame), got {type(X).__name__}"
            )
        base = self._base_columns()
        for column in self.required_columns:
            if column not in X.columns:
                if column in base:
                    why = f"{type(self).__name__} reads it"
                else:
                    texts = [r.text for r in self._parse_rules() if r.column == column]
                    why = f"the failure rule {texts[0]!r} reads it"
                if column == STATUS_COLUMN:
                    fix = "Fix the [columns] or [states] section of the config"
                else:  # a numeric column: read only when listed in metrics
                    fix = (f"Numeric columns are read only when listed in [columns] metrics. Fix: add it "
                           f"there, [columns] metrics = [\"{column}\"] (FaultPredictor(columns="
                           f"{{\"metrics\": [\"{column}\"]}})), or name another column in [states]")
                raise MissingColumnError(
                    f"column {column!r} is missing: {why}; the frame has columns "
                    f"{[str(c) for c in X.columns]}. {fix}"
                )
        return X

    def _rule_mask(self, X: pd.DataFrame) -> BoolArray | None:
        if not self.rules_:
            return None
        mask = np.zeros(len(X), dtype=bool)
        for rule in self.rules_:
            mask |= rule.evaluate(X)
        return mask

    def _finish_states(self, base_names: list[str]) -> None:
        names = list(base_names)
        rule_state = None
        if self.rules_:
            rule_state = self._rule_state_name()
            if rule_state not in names:
                names.append(rule_state)
        failure = _name_list(self.failure, "failure")
        unknown = [f for f in failure if f not in names]
        if unknown:
            raise ConfigError(
                f"failure state {unknown[0]!r} is not a state of {type(self).__name__}; "
                f"the states are: {', '.join(map(repr, names))}"
            )
        if getattr(self, "end_after", None) is not None and END_STATE not in names:
            names.append(END_STATE)
        end = _name_list(getattr(self, "end", ()), "end")
        missing = [e for e in end if e not in names]
        if missing:
            raise ConfigError(
                f"end state {missing[0]!r} is not a state of {type(self).__name__}; "
                f"the states are: {', '.join(map(repr, names))}"
            )
        is_failure = np.isin(np.asarray(names, dtype=object), failure)
        extra = self._extra_failure(len(base_names))
        if extra is not None:
            is_failure[: len(base_names)] |= extra
        self._set_states(names, is_failure, rule_state)

    def _set_states(self, names: list[str], is_failure: BoolArray, rule_state: str | None) -> None:
        self.state_names_ = [str(n) for n in names]
        self.n_states_ = len(self.state_names_)
        self.is_failure_ = np.asarray(is_failure, dtype=bool)
        if rule_state is not None:
            self.rule_state_code_ = self.state_names_.index(rule_state)
            self.is_failure_[self.rule_state_code_] = True
        else:
            self.rule_state_code_ = -1
        self.failure_states_ = [n for n, f in zip(self.state_names_, self.is_failure_) if f]
        end = set(_name_list(getattr(self, "end", ()), "end"))
        if getattr(self, "end_after", None) is not None:
            end.add(END_STATE)
        self.is_end_ = np.isin(np.asarray(self.state_names_, dtype=object), sorted(end))
        both = [n for n, f, e in zip(self.state_names_, self.is_failure_, self.is_end_) if f and e]
        if both:
            raise ConfigError(
                f"state {both[0]!r} is both a failure and an end state; an end is an end "
                "without failure: remove it from one of the lists")

    def _restore(self, arrays: Mapping[str, Any]) -> StateExtractor:
        """Make this (unfitted) extractor fitted from the arrays of get_config."""
        self._check_params()
        cls_name = type(self).__name__
        names = [str(s) for s in _array(arrays, "state_names", cls_name).tolist()]
        is_failure = _array(arrays, "is_failure", cls_name).astype(bool)
        if is_failure.shape != (len(names),) or len(set(names)) != len(names):
            raise ModelFileError(
                f"the saved {cls_name} has {len(names)} state names (unique: "
                f"{len(set(names))}) but is_failure of shape {is_failure.shape}"
            )
        rule_state = None
        if self.rules_:
            rule_state = self._rule_state_name()
            if rule_state not in names:
                raise ModelFileError(
                    f"the saved {cls_name} has failure rules but no state "
                    f"{rule_state!r}; its states are {names}"
                )
        self._restore_kind(arrays)
        self._set_states(names, is_failure.copy(), rule_state)
        return self


# --------------------------------------------------------------------------
# categorical
# --------------------------------------------------------------------------


def _lookup_labels(
    X: pd.DataFrame,
    status: pd.Series,
    labels: np.ndarray,
    label_codes: IntArray,
    covered: BoolArray | None,
    unknown: str,
    unknown_code: int,
) -> IntArray:
    """Vectorised label -> state code, with the unknown-label policy."""
    # factorize first (fast on arrow strings; free on categoricals), then look up
    # only the distinct labels
    if isinstance(status.dtype, pd.CategoricalDtype):  # no missing values here
        row_codes, distinct = status.cat.codes.to_numpy(), status.cat.categories
    else:
        row_codes, distinct = pd.factorize(status, use_na_sentinel=False)
    idx = pd.Index(labels).get_indexer(pd.Index(distinct, dtype=object))
    table = np.where(idx >= 0, label_codes[np.maximum(idx, 0)] if len(labels) else 0, 0)
    codes = table.astype(np.int64)[row_codes]
    missing = np.zeros(len(row_codes), dtype=bool)
    if (idx < 0).any():
        missing = (idx < 0)[row_codes]
        if covered is not None:
            missing &= ~covered
    if missing.any():
        bad = pd.unique(status.to_numpy()[missing])
        shown = ", ".join(repr(str(b)) for b in bad[:5]) + (", ..." if len(bad) > 5 else "")
        n_bad = int(missing.sum())
        if unknown == "raise":
            pos = int(np.flatnonzero(missing)[0])
            raise UnknownStatusError(
                f"column {STATUS_COLUMN!r} has {len(bad)} label(s) not covered by the state "
                f"mapping: {shown}; first at {_row_label(X, pos)} ({n_bad} rows in "
                "all). Add them to [states].mapping (label = \"<state>\") or set "
                "unknown = \"<state>\" in [states] to map every unknown label to one state"
            )
        logger.warning(
            "%d rows of column %r have labels not covered by the state mapping (%s); "
            "mapped to state %r",
            n_bad,
            STATUS_COLUMN,
            shown,
            unknown,
        )
        codes[missing] = unknown_code
    return codes.astype(np.int64, copy=False)


class CategoricalStates(StateExtractor):
    """States from the labels of the ``status`` column.

    Parameters
    ----------
    mapping : dict of str to str, default=None
        Label -> state name. Labels not in the mapping keep their own name
        (identity), so a mapping only needs the labels to rename or merge.
    states : list of str, default=None
        The state vocabulary in a fixed order. Default: the sorted set of
        the (mapped) labels seen in fit, plus every mapping target, plus
        ``unknown`` when it names a state. With ``states`` given, every
        mapping target must be one of them.
    failure : list of str, default=()
        Names of the failure states.
    failure_when : list of str, default=()
        Failure rules; see the module docstring.
    failure_state : str, default=None
        State of rule-matched rows; see the module docstring.
    end : list of str, default=()
        Terminal states (a status such as ``finished``): an entity in one has
        ended without failure. They are absorbing, never failures, and an
        origin whose entity ends within ``h`` steps without failing is a
        negative (see :func:`markovfault.backtest`).
    end_after : duration or int, default=None
        An entity whose history stops more than this long before the data
        end has ended: it gets one more step, into the state ``"<end>"``
        (added to the states) by the event ``"<end>"``, so the chain learns
        P(end | state) like any other transition.
    unknown : str, default="raise"
        What to do with a label that the mapping does not cover (at
        transform, and at fit when ``states`` is given): ``"raise"`` raises
        :class:`~markovfault.exceptions.UnknownStatusError`; a state name
        maps such rows to that state and logs a warning with the row count
        on the ``markovfault.states`` logger. (So a state literally named
        ``"raise"`` cannot be the target of unknown labels.)

    Attributes
    ----------
    state_names_ : list of str
        The states, in code order.
    n_states_ : int
        Number of states.
    is_failure_ : ndarray of shape (n_states_,), bool
        Which states are failure states.
    failure_states_ : list of str
        Names of the failure states.
    labels_ : ndarray of shape (n_labels,), str
        The labels the extractor knows: every state name (identity) and every
        mapping key.
    label_codes_ : ndarray of shape (n_labels,), int64
        The state code of each of ``labels_``.

    Notes
    -----
    **Labels that look accidental.** Without ``states``, every distinct
    (mapped) label becomes a state. Fit then warns
    (:class:`~markovfault.exceptions.DataWarning`, and a record on the
    ``markovfault.states`` logger) when labels differ only in case or
    whitespace (``OK`` next to ``ok``: two states), and when a state is rare:
    fewer than ``RARE_STATE_ROWS`` (10) rows *and* fewer than
    ``RARE_STATE_SHARE`` (0.1%) of the rows carry it (``degraded`` in 3 of
    10,000 rows), unless it is named in ``mapping``, ``failure``, ``end`` or
    ``unknown``. The warnings say to merge labels with ``mapping`` or to
    fix the vocabulary with ``states``; with ``states`` given there is no such
    warning (labels outside it are handled by ``unknown``).

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"status": ["healthy", "degraded", "down", "healthy"]})
    >>> ext = CategoricalStates(mapping={"healthy": "ok", "degraded": "slow"},
    ...                         failure=["down"]).fit(frame)
    >>> ext.state_names_
    ['down', 'ok', 'slow']
    >>> ext.transform(frame).tolist()
    [1, 2, 0, 1]
    >>> ext.failure_states_
    ['down']
    >>> new = pd.DataFrame({"status": ["healthy", "rebooting"]})
    >>> ext.set_params(unknown="down").fit(frame).transform(new).tolist()
    [1, 0]
    """

    kind = "categorical"

    def __init__(
        self,
        *,
        mapping: Mapping[str, str] | None = None,
        states: Sequence[str] | None = None,
        failure: Sequence[str] = (),
        failure_when: Sequence[str] = (),
        failure_state: str | None = None,
        unknown: str = "raise",
        end: Sequence[str] = (),
        end_after: str | int | None = None,
    ) -> None:
        self.mapping = mapping
        self.states = states
        self.failure = failure
        self.failure_when = failure_when
        self.failure_state = failure_state
        self.end = end
        self.end_after = end_after
        self.unknown = unknown

    def _base_columns(self) -> list[str]:
        return [STATUS_COLUMN]

    def _mapping(self) -> dict[str, str]:
        if self.mapping is None:
            return {}
        if not isinstance(self.mapping, Mapping):
            raise ConfigError(
                f"mapping must be a table of label = \"state\", got {self.mapping!r}"
            )
        out = {}
        for label, state in self.mapping.items():
            if not isinstance(state, str):
                raise ConfigError(
                    f"mapping[{label!r}] must be a state name (str), got {state!r}"
                )
            out[str(label)] = state
        return out

    def _check_kind_params(self) -> None:
        mapping = self._mapping()
        if not isinstance(self.unknown, str) or not self.unknown:
            raise ConfigError(
                f"unknown must be \"error\" or a state name, got {self.unknown!r}"
            )
        if self.states is not None:
            states = _name_list(self.states, "states", allow_str=False)
            if len(states) != len(list(self.states)) or not states:
                raise ConfigError(
                    f"states must be a non-empty list of distinct names, got {self.states!r}"
                )
            for label, state in mapping.items():
                if state not in states:
                    raise ConfigError(
                        f"mapping[{label!r}] = {state!r} is not one of states "
                        f"{states}; add it to states or fix the mapping"
                    )
            if self.unknown != "raise" and self.unknown not in states:
                raise ConfigError(
                    f"unknown = {self.unknown!r} is not one of states {states}; "
                    "set it to one of them or to \"error\""
                )

    def _fit_base(self, X: pd.DataFrame, rule_mask: BoolArray | None) -> list[str]:
        status = _string_column(X, STATUS_COLUMN, type(self).__name__)
        mapping = self._mapping()
        if self.states is not None:
            vocab = _name_list(self.states, "states")
        else:
            counts = status.value_counts(sort=False) if rule_mask is None else \
                status[~rule_mask].value_counts(sort=False)
            counts = counts[counts > 0]
            seen = {str(s) for s in status.unique()}
            self._warn_on_labels({str(k): int(v) for k, v in counts.items()}, mapping, len(status))
            names = {mapping.get(s, s) for s in seen} | set(mapping.values())
            if self.unknown != "raise":
                names.add(self.unknown)
            vocab = sorted(names)
        table = {s: i for i, s in enumerate(vocab)}
        table.update({label: vocab.index(state) for label, state in mapping.items()})
        labels = _str_array(list(table))
        label_codes = np.fromiter(table.values(), dtype=np.int64, count=len(table))
        unknown_code = vocab.index(self.unknown) if self.unknown != "raise" else -1
        if self.states is not None:  # a fixed vocabulary: validate the labels (raise or warn)
            _lookup_labels(X, status, labels, label_codes, rule_mask, self.unknown, unknown_code)
        self.labels_, self.label_codes_ = labels, label_codes
        return vocab

    def _warn_on_labels(self, counts: dict[str, int], mapping: dict[str, str], n_rows: int) -> None:
        """Warn when states are learned from the labels (no ``states`` list) and some look accidental:
        labels that differ only in case or whitespace, and rare states (see the class notes)."""
        by_state: dict[str, int] = {}
        for label, n in counts.items():
            state = mapping.get(label, label)
            by_state[state] = by_state.get(state, 0) + n
        declared = set(mapping.values()) | set(_name_list(self.failure, "failure")) \
            | set(_name_list(self.end, "end")) | {self.unknown, self.failure_state}
        messages = []
        groups: dict[str, list[str]] = {}
        for state in by_state:
            groups.setdefault(re.sub(r"\s+", "", state).casefold(), []).append(state)
        for names in groups.values():
            if len(names) > 1:
                names = sorted(names, key=lambda name: -by_state[name])
                shown = ", ".join(f"{name!r} ({by_state[name]} rows)" for name in names)
                example = " ".join(f'"{name}" = "{names[0]}"' for name in names[1:])
                messages.append(
                    f"status labels {shown} differ only in case or whitespace and become separate states. "
                    f"Fix: map them to one state in [states] mapping ({example}), or list the states with "
                    f"states = [...]")
        limit = min(RARE_STATE_ROWS, RARE_STATE_SHARE * n_rows)
        rare = sorted(state for state, n in by_state.items() if n < limit and state not in declared)
        if rare:
            shown = ", ".join(f"{name!r} ({by_state[name]} rows)" for name in rare)
            messages.append(
                f"the states {shown} are each seen in fewer than {RARE_STATE_ROWS} rows and "
                f"{RARE_STATE_SHARE:.1%} of the {n_rows} rows; each becomes a state of its own with next to "
                "no data. Fix: map them to a known state in [states] mapping (label = \"<state>\"), or list "
                "the states with states = [...] (then a label outside the list is an error, or goes to "
                "unknown = \"<state>\")")
        for message in messages:
            logger.warning("%s: %s", type(self).__name__, message)
            warnings.warn(message, DataWarning, stacklevel=4)

    def _base_codes(self, X: pd.DataFrame, rule_mask: BoolArray | None) -> IntArray:
        status = _string_column(X, STATUS_COLUMN, type(self).__name__)
        unknown_code = (
            self.state_names_.index(self.unknown) if self.unknown != "raise" else -1
        )
        return _lookup_labels(
            X, status, self.labels_, self.label_codes_, rule_mask, self.unknown, unknown_code
        )

    def _kind_arrays(self) -> dict[str, np.ndarray]:
        return {"labels": self.labels_.copy(), "label_codes": self.label_codes_.copy()}

    def _restore_kind(self, arrays: Mapping[str, Any]) -> None:
        name = type(self).__name__
        labels = _array(arrays, "labels", name).astype(np.str_)
        codes = _array(arrays, "label_codes", name).astype(np.int64)
        n_states = len(_array(arrays, "state_names", name))
        if labels.shape != codes.shape or (codes.size and not (0 <= codes.min() and codes.max() < n_states)):
            raise ModelFileError(
                f"the saved {name} has {labels.size} labels, {codes.size} label codes "
                f"and {n_states} states; they do not fit together"
            )
        self.labels_, self.label_codes_ = labels, codes


# --------------------------------------------------------------------------
# thresholds
# --------------------------------------------------------------------------


class ThresholdStates(StateExtractor):
    """States from one numeric column cut at fixed, increasing edges.

    ``names[0]`` for ``x < edges[0]``, ``names[k]`` for
    ``edges[k-1] <= x < edges[k]``, ``names[-1]`` for ``x >= edges[-1]``: a
    value exactly at an edge belongs to the state above it.

    Parameters
    ----------
    column : str
        The numeric column, e.g. ``"latency_ms"``.
    edges : list of float
        Strictly increasing finite edges (at least one).
    names : list of str, default=None
        ``len(edges) + 1`` distinct state names. Default ``"bin0"`` ..
        ``"bin{len(edges)}"``.
    failure, failure_when, failure_state
        See the module docstring.
    end, end_after
        End states, and the silence after which a history has ended; see
        :class:`CategoricalStates`.

    Attributes
    ----------
    state_names_ : list of str
        The states, in code order.
    n_states_ : int
        Number of states.
    is_failure_ : ndarray of shape (n_states_,), bool
        Which states are failure states.
    failure_states_ : list of str
        Names of the failure states.
    edges_ : ndarray of shape (n_edges,), float64
        The validated edges.

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"latency_ms": [50.0, 200.0, 1999.0, 2000.0, 9000.0]})
    >>> ext = ThresholdStates(column="latency_ms", edges=[200, 2000],
    ...                       names=["ok", "slow", "timeout"], failure=["timeout"])
    >>> ext.fit_transform(frame).tolist()
    [0, 1, 1, 2, 2]
    >>> ext.is_failure_.tolist()
    [False, False, True]
    """

    kind = "thresholds"

    def __init__(
        self,
        *,
        column: str,
        edges: Sequence[float],
        names: Sequence[str] | None = None,
        failure: Sequence[str] = (),
        failure_when: Sequence[str] = (),
        failure_state: str | None = None,
        end: Sequence[str] = (),
        end_after: str | int | None = None,
    ) -> None:
        self.column = column
        self.edges = edges
        self.names = names
        self.failure = failure
        self.failure_when = failure_when
        self.failure_state = failure_state
        self.end = end
        self.end_after = end_after

    def _base_columns(self) -> list[str]:
        return [self.column]

    def _check_kind_params(self) -> None:
        if not isinstance(self.column, str) or not self.column:
            raise ConfigError(f"column must be a column name, got {self.column!r}")
        edges = self.edges
        if isinstance(edges, (str, bytes)) or not isinstance(edges, (Sequence, np.ndarray)):
            raise ConfigError(f"edges must be a list of numbers, got {edges!r}")
        if any(isinstance(e, bool) or not isinstance(e, numbers.Real) for e in edges):
            raise ConfigError(f"edges must be a list of numbers, got {list(edges)!r}")
        arr = np.asarray(edges, dtype=np.float64)
        if arr.size == 0 or not np.isfinite(arr).all() or (np.diff(arr) <= 0).any():
            raise ConfigError(
                f"edges must be at least one finite number, strictly increasing, got "
                f"{list(edges)!r}"
            )
        if self.names is not None:
            names = _name_list(self.names, "names", allow_str=False)
            if len(names) != len(list(self.names)):
                raise ConfigError(f"names must be distinct, got {list(self.names)!r}")
            if len(names) != arr.size + 1:
                raise ConfigError(
                    f"names has {len(names)} names but {arr.size} edges make "
                    f"{arr.size + 1} states; give len(edges) + 1 names"
                )
        self.edges_ = arr

    def _fit_base(self, X: pd.DataFrame, rule_mask: BoolArray | None) -> list[str]:
        _numeric_column(X, self.column, type(self).__name__)  # type and NaN check
        if self.names is not None:
            return _name_list(self.names, "names")
        return [f"bin{k}" for k in range(self.edges_.size + 1)]

    def _base_codes(self, X: pd.DataFrame, rule_mask: BoolArray | None) -> IntArray:
        values = _numeric_column(X, self.column, type(self).__name__)
        return np.digitize(values, self.edges_).astype(np.int64)


# --------------------------------------------------------------------------
# quantiles
# --------------------------------------------------------------------------


class QuantileStates(StateExtractor):
    """States from numeric columns binned at their training quantiles.

    Each column is binned with
    ``sklearn.preprocessing.KBinsDiscretizer(n_bins, strategy="quantile",
    encode="ordinal", subsample=None)`` at fit; the joint state is the tuple
    of bins, coded mixed-radix with the first column most significant.
    Every combination is a state (also those not seen in fit), named like
    ``"latency_ms:q2|error_rate:q0"``, in code order. ``transform`` uses the
    stored edges only: ``np.digitize(x, edges[1:-1])``, exactly what
    ``KBinsDiscretizer.transform`` does, so values below (above) the
    training range fall in the first (last) bin. A column with fewer
    distinct values than bins gets fewer bins (a ``DataWarning`` says so).

    Parameters
    ----------
    columns : list of str
        The numeric columns.
    n_bins : int, default=4
        Bins per column (>= 2).
    failure : list of str, default=()
        Names of failure states (known only after fit).
    failure_top : str, default=None
        A column of ``columns``: every state whose bin for that column is
        the highest is a failure state (in addition to ``failure``).
    failure_when, failure_state
        See the module docstring.
    end, end_after
        End states, and the silence after which a history has ended; see
        :class:`CategoricalStates`.

    Attributes
    ----------
    state_names_ : list of str
        The states, in code order.
    n_states_ : int
        Number of states (``prod(n_bins_)`` plus a rule state, if any).
    is_failure_ : ndarray of shape (n_states_,), bool
        Which states are failure states.
    failure_states_ : list of str
        Names of the failure states.
    bin_edges_ : dict of str to ndarray
        Each column's ``n_bins_[column] + 1`` edges (those of
        ``KBinsDiscretizer.bin_edges_``), keyed by column, in the order of
        ``columns``.
    n_bins_ : dict of str to int
        Bins of each column, keyed by column, in the order of ``columns``.

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"latency_ms": [10.0, 20, 30, 40, 50, 60, 70, 80]})
    >>> ext = QuantileStates(columns=["latency_ms"], n_bins=2,
    ...                      failure_top="latency_ms").fit(frame)
    >>> ext.state_names_
    ['latency_ms:q0', 'latency_ms:q1']
    >>> ext.transform(frame).tolist()
    [0, 0, 0, 0, 1, 1, 1, 1]
    >>> ext.failure_states_
    ['latency_ms:q1']
    >>> {column: edges.tolist() for column, edges in ext.bin_edges_.items()}
    {'latency_ms': [10.0, 45.0, 80.0]}
    >>> ext.n_bins_
    {'latency_ms': 2}
    """

    kind = "quantiles"

    def __init__(
        self,
        *,
        columns: Sequence[str],
        n_bins: int = 4,
        failure: Sequence[str] = (),
        failure_top: str | None = None,
        failure_when: Sequence[str] = (),
        failure_state: str | None = None,
        end: Sequence[str] = (),
        end_after: str | int | None = None,
    ) -> None:
        self.columns = columns
        self.n_bins = n_bins
        self.failure = failure
        self.failure_top = failure_top
        self.failure_when = failure_when
        self.failure_state = failure_state
        self.end = end
        self.end_after = end_after

    def _base_columns(self) -> list[str]:
        return _check_columns(self.columns, "columns")

    def _check_kind_params(self) -> None:
        columns = _check_columns(self.columns, "columns")
        _check_int(self.n_bins, "n_bins", 2)
        if self.failure_top is not None and self.failure_top not in columns:
            raise ConfigError(
                f"failure_top = {self.failure_top!r} is not one of columns {columns}"
            )

    def _fit_base(self, X: pd.DataFrame, rule_mask: BoolArray | None) -> list[str]:
        from sklearn.preprocessing import KBinsDiscretizer

        columns = self._base_columns()
        data = np.column_stack([_numeric_column(X, c, type(self).__name__) for c in columns])
        kbd = KBinsDiscretizer(
            n_bins=int(self.n_bins),
            encode="ordinal",
            strategy="quantile",
            quantile_method="averaged_inverted_cdf",
            subsample=None,
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            kbd.fit(data)
        for w in caught:  # re-emit, naming the column instead of its index
            if issubclass(w.category, UserWarning) and "eature" in str(w.message):
                j = int(re.search(r"eature (\d+)", str(w.message)).group(1))
                warnings.warn(
                    f"column {columns[j]!r} has too few distinct values for "
                    f"{self.n_bins} quantile bins; it gets {int(kbd.n_bins_[j])} "
                    f"bin(s) ({w.message})",
                    DataWarning,
                    stacklevel=3,
                )
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        self._set_bins([np.asarray(e, dtype=np.float64) for e in kbd.bin_edges_],
                       np.asarray(kbd.n_bins_, dtype=np.int64))
        return self._names()

    def _set_bins(self, edges: list[np.ndarray], n_bins: IntArray) -> None:
        """Label the per-column edges and bin counts by column (in the order of ``columns``)."""
        columns = self._base_columns()
        self.bin_edges_ = dict(zip(columns, edges))
        self.n_bins_ = {column: int(n) for column, n in zip(columns, n_bins)}

    def _bin_counts(self) -> IntArray:
        return np.fromiter(self.n_bins_.values(), dtype=np.int64, count=len(self.n_bins_))

    def _names(self) -> list[str]:
        per_column = [[f"{c}:q{b}" for b in range(n)] for c, n in self.n_bins_.items()]
        return ["|".join(combo) for combo in itertools.product(*per_column)]

    def _extra_failure(self, n_base: int) -> BoolArray | None:
        if self.failure_top is None:
            return None
        n_bins = self._bin_counts()
        j = self._base_columns().index(self.failure_top)
        bins = np.indices(tuple(int(n) for n in n_bins)).reshape(len(n_bins), -1)
        return bins[j] == n_bins[j] - 1

    def _base_codes(self, X: pd.DataFrame, rule_mask: BoolArray | None) -> IntArray:
        codes = np.zeros(len(X), dtype=np.int64)
        for column, edges in self.bin_edges_.items():
            values = _numeric_column(X, column, type(self).__name__)
            codes = codes * self.n_bins_[column] + np.digitize(values, edges[1:-1])
        return codes

    def _kind_arrays(self) -> dict[str, np.ndarray]:
        return {
            "bin_edges": np.concatenate(list(self.bin_edges_.values())),
            "n_bins": self._bin_counts(),
        }

    def _restore_kind(self, arrays: Mapping[str, Any]) -> None:
        name = type(self).__name__
        flat = _array(arrays, "bin_edges", name).astype(np.float64)
        n_bins = _array(arrays, "n_bins", name).astype(np.int64)
        if n_bins.shape != (len(self._base_columns()),) or flat.size != int((n_bins + 1).sum()):
            raise ModelFileError(
                f"the saved {name} has n_bins {n_bins.tolist()} and {flat.size} edges "
                f"for columns {self._base_columns()}; they do not fit together"
            )
        splits = np.cumsum(n_bins + 1)[:-1]
        self._set_bins(list(np.split(flat, splits)), n_bins)


# --------------------------------------------------------------------------
# clusters
# --------------------------------------------------------------------------


class ClusterStates(StateExtractor):
    """States from k-means clusters of numeric columns.

    At fit the columns are standardised (``StandardScaler``) and clustered
    with ``KMeans(n_clusters, n_init=10, random_state)``. The clusters are
    then **ordered by the centre of column** ``failure_by`` (in original
    units) ascending and named ``"c0"`` .. ``"c{k-1}"``, so that names do not
    depend on k-means' arbitrary label order.

    **Failure clusters.** If ``failure`` is given, exactly those states are
    failure states. Otherwise the ``n_failure_clusters`` clusters with the
    highest ``failure_by`` centre (the last ones, ``c{k-n}`` .. ``c{k-1}``)
    are. ``failure_by`` defaults to the first of ``columns``.

    ``transform`` assigns each row to the nearest centre in standardised
    space with numpy alone; this equals ``KMeans.predict`` (up to the
    renaming above).

    Parameters
    ----------
    columns : list of str
        The numeric columns.
    n_clusters : int, default=4
        Number of clusters (>= 1).
    failure_by : str, default=None
        The column that orders clusters and picks failure clusters;
        default the first of ``columns``.
    n_failure_clusters : int, default=1
        How many of the highest clusters are failure states when
        ``failure`` is empty (0 .. n_clusters).
    random_state : int or None, default=0
        Seed of KMeans.
    failure, failure_when, failure_state
        See the module docstring.
    end, end_after
        End states, and the silence after which a history has ended; see
        :class:`CategoricalStates`.

    Attributes
    ----------
    state_names_ : list of str
        The states, in code order.
    n_states_ : int
        Number of states.
    is_failure_ : ndarray of shape (n_states_,), bool
        Which states are failure states.
    failure_states_ : list of str
        Names of the failure states.
    mean_, scale_ : Series of float64, indexed by column
        The StandardScaler's mean and scale of each column.
    centers_ : DataFrame of shape (n_clusters, n_columns)
        Cluster centres in standardised space: a row per cluster state
        (``c0`` .., in state order), a column per metric column.
    cluster_centers_ : DataFrame of shape (n_clusters, n_columns)
        The same centres in original units, labelled the same way.

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"latency_ms": [10.0, 12, 11, 500, 520, 510],
    ...                       "error_rate": [0.0, 0.01, 0.0, 0.4, 0.5, 0.45]})
    >>> ext = ClusterStates(columns=["latency_ms", "error_rate"], n_clusters=2,
    ...                     failure_by="error_rate").fit(frame)
    >>> ext.transform(frame).tolist()
    [0, 0, 0, 1, 1, 1]
    >>> ext.failure_states_
    ['c1']
    >>> ext.cluster_centers_.round(2)
        latency_ms  error_rate
    c0        11.0        0.00
    c1       510.0        0.45
    """

    kind = "clusters"

    def __init__(
        self,
        *,
        columns: Sequence[str],
        n_clusters: int = 4,
        failure_by: str | None = None,
        n_failure_clusters: int = 1,
        random_state: int | None = 0,
        failure: Sequence[str] = (),
        failure_when: Sequence[str] = (),
        failure_state: str | None = None,
        end: Sequence[str] = (),
        end_after: str | int | None = None,
    ) -> None:
        self.columns = columns
        self.n_clusters = n_clusters
        self.failure_by = failure_by
        self.n_failure_clusters = n_failure_clusters
        self.random_state = random_state
        self.failure = failure
        self.failure_when = failure_when
        self.failure_state = failure_state
        self.end = end
        self.end_after = end_after

    def _base_columns(self) -> list[str]:
        return _check_columns(self.columns, "columns")

    def _failure_by(self) -> str:
        return self.failure_by if self.failure_by is not None else self._base_columns()[0]

    def _check_kind_params(self) -> None:
        columns = _check_columns(self.columns, "columns")
        k = _check_int(self.n_clusters, "n_clusters", 1)
        n_fail = _check_int(self.n_failure_clusters, "n_failure_clusters", 0)
        if n_fail > k:
            raise ConfigError(
                f"n_failure_clusters == {n_fail}, must be <= n_clusters == {k}"
            )
        if self._failure_by() not in columns:
            raise ConfigError(
                f"failure_by = {self.failure_by!r} is not one of columns {columns}"
            )

    def _matrix(self, X: pd.DataFrame) -> FloatArray:
        return np.column_stack(
            [_numeric_column(X, c, type(self).__name__) for c in self._base_columns()]
        )

    def _fit_base(self, X: pd.DataFrame, rule_mask: BoolArray | None) -> list[str]:
        from sklearn.cluster import KMeans
        from sklearn.preprocessing import StandardScaler

        data = self._matrix(X)
        k = int(self.n_clusters)
        if len(data) < k:
            raise HistoryError(
                f"{type(self).__name__} needs at least n_clusters == {k} rows to fit, "
                f"got {len(data)}"
            )
        scaler = StandardScaler().fit(data)
        km = KMeans(n_clusters=k, n_init=10, random_state=self.random_state)
        km.fit(scaler.transform(data))
        centers = np.asarray(km.cluster_centers_, dtype=np.float64)
        original = centers * scaler.scale_ + scaler.mean_
        j = self._base_columns().index(self._failure_by())
        order = np.argsort(original[:, j], kind="stable")
        self._set_centers(np.asarray(scaler.mean_, dtype=np.float64),
                          np.asarray(scaler.scale_, dtype=np.float64), centers[order])
        return [f"c{i}" for i in range(k)]

    def _set_centers(self, mean: FloatArray, scale: FloatArray, centers: FloatArray) -> None:
        """Label the scaler's mean and scale by column, the centres by cluster state and column."""
        columns = pd.Index(self._base_columns())
        states = pd.Index([f"c{i}" for i in range(len(centers))])
        self.mean_ = pd.Series(mean, index=columns, dtype=np.float64)
        self.scale_ = pd.Series(scale, index=columns, dtype=np.float64)
        self.centers_ = pd.DataFrame(centers, index=states, columns=columns)
        self.cluster_centers_ = pd.DataFrame(centers * scale + mean, index=states, columns=columns)

    def _extra_failure(self, n_base: int) -> BoolArray | None:
        if _name_list(self.failure, "failure"):
            return None  # explicit names override failure_by
        mask = np.zeros(n_base, dtype=bool)
        if self.n_failure_clusters:
            mask[n_base - int(self.n_failure_clusters) :] = True
        return mask

    def _base_codes(self, X: pd.DataFrame, rule_mask: BoolArray | None) -> IntArray:
        z = (self._matrix(X) - self.mean_.to_numpy()) / self.scale_.to_numpy()
        centers = self.centers_.to_numpy()
        dist = np.empty((len(z), len(centers)), dtype=np.float64)
        for c, center in enumerate(centers):  # loop over clusters, not rows
            dist[:, c] = ((z - center) ** 2).sum(axis=1)
        return np.argmin(dist, axis=1).astype(np.int64)

    def _kind_arrays(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean_.to_numpy(copy=True), "scale": self.scale_.to_numpy(copy=True),
                "centers": self.centers_.to_numpy(copy=True)}

    def _restore_kind(self, arrays: Mapping[str, Any]) -> None:
        name = type(self).__name__
        d = len(self._base_columns())
        mean = _array(arrays, "mean", name).astype(np.float64)
        scale = _array(arrays, "scale", name).astype(np.float64)
        centers = _array(arrays, "centers", name).astype(np.float64)
        if mean.shape != (d,) or scale.shape != (d,) or centers.ndim != 2 or centers.shape[1] != d:
            raise ModelFileError(
                f"the saved {name} has mean {mean.shape}, scale {scale.shape} and centers "
                f"{centers.shape} for {d} columns; they do not fit together"
            )
        self._set_centers(mean, scale, centers)


# --------------------------------------------------------------------------
# building from config
# --------------------------------------------------------------------------

#: kind -> extractor class, the accepted values of ``[states].kind``
STATE_KINDS: dict[str, type[StateExtractor]] = {
    cls.kind: cls
    for cls in (CategoricalStates, ThresholdStates, QuantileStates, ClusterStates)
}


def extractor_from_config(
    params: Mapping[str, Any], arrays: Mapping[str, Any] | None = None
) -> StateExtractor:
    """Build a state extractor from a ``[states]`` table or a saved config.

    Parameters
    ----------
    params : mapping
        ``"kind"`` (one of :data:`STATE_KINDS`; default ``"categorical"``)
        and the constructor parameters of that kind: the ``[states]`` table
        of a config file, or the first item of
        :meth:`StateExtractor.get_config`.
    arrays : mapping of str to ndarray, default=None
        The second item of :meth:`StateExtractor.get_config`. Given: the
        extractor is returned fitted, ready to transform. None: unfitted.

    Returns
    -------
    StateExtractor

    Raises
    ------
    ConfigError
        An unknown ``kind``, an unknown key, a missing required key or an
        invalid value.
    ModelFileError
        ``arrays`` lacks an array or its arrays do not fit together.

    Examples
    --------
    >>> import pandas as pd
    >>> ext = extractor_from_config({"kind": "thresholds", "column": "latency_ms",
    ...                              "edges": [200, 2000]})
    >>> ext
    ThresholdStates(column='latency_ms', edges=[200, 2000])
    >>> frame = pd.DataFrame({"latency_ms": [100.0, 3000.0]})
    >>> params, arrays = ext.fit(frame).get_config()
    >>> extractor_from_config(params, arrays).transform(frame).tolist()
    [0, 2]
    """
    if not isinstance(params, Mapping):
        raise ConfigError(f"[states] must be a table, got {type(params).__name__}")
    params = dict(params)
    kind = params.pop("kind", "categorical")
    cls = STATE_KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ConfigError(
            f"[states].kind = {kind!r} is not a kind of state extractor; "
            f"accepted: {', '.join(map(repr, STATE_KINDS))}"
        )
    accepted = cls._get_param_names()
    for key in params:
        if key not in accepted:
            raise ConfigError(
                f"[states] has the unknown key {key!r} for kind = {kind!r}; accepted "
                f"keys: kind, {', '.join(accepted)}"
            )
    signature = inspect.signature(cls.__init__)
    missing = [
        name
        for name, p in signature.parameters.items()
        if p.kind is p.KEYWORD_ONLY and p.default is p.empty and name not in params
    ]
    if missing:
        raise ConfigError(
            f"[states] with kind = {kind!r} needs the key(s) {', '.join(map(repr, missing))}"
        )
    extractor = cls(**params)
    if arrays is not None:
        extractor._restore(arrays)
    return extractor


def make_state_extractor(config: Mapping[str, Any]) -> StateExtractor:
    """Build the unfitted state extractor a ``[states]`` table describes.

    Same as ``extractor_from_config(config)``.

    Examples
    --------
    >>> make_state_extractor({"kind": "categorical", "failure": ["down"]})
    CategoricalStates(failure=['down'])
    """
    return extractor_from_config(config)
