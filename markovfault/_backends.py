"""Optional compute back ends, found by the type of the input and loaded only when asked (internal API).

The core never imports a back end: :func:`backend_for` recognises an input by its type's module name
(a ``dask.dataframe.DataFrame`` without importing dask) and imports the back end's module by name then. A back
end module provides ``fit``, ``partial_fit``, ``predict``, ``backtest_run`` and ``compute_frame`` over the
predictor's internal API (see ``docs/architecture.md``). The registry follows scoringrules'
``backend/registry.py``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["BACKENDS", "backend_for", "load_backend"]

# name -> (the module that implements it, the prefix of the module of the input types it handles)
BACKENDS = {"dask": ("markovfault._dask", "dask")}


def _kind(obj) -> str | None:
    module = type(obj).__module__ or ""
    for name, (_, prefix) in BACKENDS.items():
        if module.split(".")[0] == prefix and hasattr(obj, "map_partitions"):
            return name
    return None


def backend_for(obj) -> ModuleType | None:
    """The back end that handles ``obj`` (loaded now), or ``None`` for in-memory input."""
    name = _kind(obj)
    return None if name is None else load_backend(name)


def load_backend(name: str) -> ModuleType:
    """The module of back end ``name``."""
    return importlib.import_module(BACKENDS[name][0])
