"""Static map of markovfault's own imports, read from the source with ``ast``.

Shared by the architecture guards in ``test_architecture.py``: which module imports which (at module level
and inside functions), and which private names cross from one module to another.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "markovfault"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE


def module_files() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__``)."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


@dataclass(frozen=True)
class Import:
    source: str     # the importing module
    target: str     # the imported module
    name: str | None  # the imported name (``from target import name``), None for ``import target``
    line: int
    deferred: bool  # inside a function or class body


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    if level == 0:
        return name or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def imports() -> list[Import]:
    """Every import of a markovfault module by a markovfault module."""
    files = module_files()
    found = []
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        top = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == PACKAGE:
                        found.append(Import(module, alias.name, None, node.lineno, id(node) not in top))
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(module, is_package, node.level, node.module)
                if target.split(".")[0] != PACKAGE:
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in files:  # ``from . import plotting`` imports a module
                        found.append(Import(module, sub, None, node.lineno, id(node) not in top))
                    else:
                        found.append(Import(module, target, alias.name, node.lineno, id(node) not in top))
    return found


def graph() -> dict[str, set[str]]:
    """Module -> the modules it imports (parents of a submodule count as imported too)."""
    files = module_files()
    g: dict[str, set[str]] = {m: set() for m in files}
    for imp in imports():
        target = imp.target
        while target and target not in files:
            target = target.rpartition(".")[0]
        if target and target != imp.source:
            g[imp.source].add(target)
    return g


def cycles() -> list[frozenset[str]]:
    """The strongly connected components of the import graph with more than one module (Tarjan)."""
    g = graph()
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(frozenset(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_imports() -> list[Import]:
    """Imports of a private name (``_name``) of one module by another module."""
    return [imp for imp in imports()
            if imp.name is not None and _is_private(imp.name) and imp.target != imp.source
            and imp.name != "__version__"]


@dataclass(frozen=True)
class PrivateUse:
    source: str
    expression: str  # ``obj._name`` as written
    line: int


def _defined_private(tree) -> set[str]:
    """Private names a module defines itself: functions, classes, class-level names and ``self._x``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                for sub in ast.walk(t):
                    if isinstance(sub, ast.Attribute):
                        names.add(sub.attr)
                    elif isinstance(sub, ast.Name):
                        names.add(sub.id)
    return {n for n in names if _is_private(n)}


def private_attribute_uses() -> list[PrivateUse]:
    """Uses of ``obj._name`` where ``obj`` is not ``self``/``cls`` and ``_name`` is not defined in the same
    module: reaching into the internals of another module's objects."""
    out = []
    for module, path in module_files().items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        own = _defined_private(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _is_private(node.attr) and node.attr not in own:
                base = node.value
                if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                    continue
                if isinstance(base, ast.Call) and isinstance(base.func, ast.Name) and base.func.id == "super":
                    continue
                out.append(PrivateUse(module, f"{ast.unparse(base)}.{node.attr}", node.lineno))
    return out
