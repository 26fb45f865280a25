"""The scikit-learn estimator conventions without importing scikit-learn (internal API).

markovfault's estimators (the state extractors, the chains, :class:`~markovfault.FaultPredictor`) follow
scikit-learn's API: constructor arguments stored under their own names, ``get_params``/``set_params``,
``sklearn.base.clone``, a repr of the parameters that differ from the defaults, fitted attributes ending in
``_``. Importing ``sklearn.base`` costs about a second (it loads ``scipy.stats``), which the command line and a
scheduled job pay at every start, so the conventions are implemented here: :class:`Estimator` is duck-type
compatible with scikit-learn (``sklearn.base.clone`` works through ``__sklearn_clone__``, pipelines and
``estimator_html_repr`` see ``get_params``), and scikit-learn loads only where its algorithms are used
(quantile bins, k-means, metrics, gradient boosting).

Examples
--------
>>> class Toy(Estimator):
...     def __init__(self, *, a=1, b=None):
...         self.a, self.b = a, b
>>> Toy(a=2)
Toy(a=2)
>>> Toy(a=2).get_params()
{'a': 2, 'b': None}
>>> clone(Toy(b=[1])).set_params(a=3)
Toy(a=3, b=[1])
"""

from __future__ import annotations

import copy
import inspect

__all__ = ["Estimator", "TransformerMixin", "clone"]


def clone(estimator):
    """A new unfitted estimator with the same parameters (parameters cloned in turn), as
    ``sklearn.base.clone`` does; anything else is deep-copied."""
    if isinstance(estimator, (list, tuple, set, frozenset)):
        return type(estimator)(clone(e) for e in estimator)
    if hasattr(estimator, "get_params") and not isinstance(estimator, type):
        params = estimator.get_params(deep=False)
        return type(estimator)(**{k: clone(v) for k, v in params.items()})
    return copy.deepcopy(estimator)


class Estimator:
    """Base class: parameters from the constructor's signature, ``get_params``, ``set_params``, a repr."""

    @classmethod
    def _get_param_names(cls) -> list:
        init = cls.__init__
        if init is object.__init__:
            return []
        params = inspect.signature(init).parameters.values()
        return sorted(p.name for p in params if p.name != "self" and p.kind != p.VAR_KEYWORD)

    def get_params(self, deep: bool = True) -> dict:
        """The constructor arguments (with ``deep``, those of nested estimators as ``name__param``)."""
        out = {}
        for name in self._get_param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{k}", v) for k, v in value.get_params().items())
            out[name] = value
        return out

    def set_params(self, **params):
        """Set constructor arguments (``name__param`` for nested estimators); returns ``self``."""
        valid = self._get_param_names()
        nested: dict = {}
        for key, value in params.items():
            name, delim, sub = key.partition("__")
            if name not in valid:
                raise ValueError(f"Invalid parameter {name!r} for estimator {self!r}. "
                                 f"Valid parameters are: {valid!r}.")
            if delim:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
        for name, sub in nested.items():
            getattr(self, name).set_params(**sub)
        return self

    def __sklearn_clone__(self):
        return clone(self)

    def __sklearn_tags__(self):
        """scikit-learn's default tags (asked for by its utilities, e.g. ``check_is_fitted``)."""
        from sklearn.base import BaseEstimator  # loaded only when scikit-learn asks

        return BaseEstimator.__sklearn_tags__(self)

    def __repr__(self) -> str:
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        shown = []
        for name, value in self.get_params(deep=False).items():
            default = defaults.get(name, inspect.Parameter.empty)
            if default is inspect.Parameter.empty or repr(value) != repr(default):
                shown.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

    def _repr_mimebundle_(self, **kwargs) -> dict:
        """What Jupyter shows: the repr, and the estimator's ``_repr_html_`` (scikit-learn's estimator
        diagram when it has none)."""
        html = getattr(self, "_repr_html_", None)
        if html is None:
            from sklearn.utils import estimator_html_repr

            return {"text/plain": repr(self), "text/html": estimator_html_repr(self)}
        return {"text/plain": repr(self), "text/html": html()}


class TransformerMixin:
    """``fit_transform`` for estimators with ``fit`` and ``transform``."""

    def fit_transform(self, X, y=None, **fit_params):
        """``fit(X, y, **fit_params).transform(X)``."""
        return self.fit(X, y, **fit_params).transform(X)
