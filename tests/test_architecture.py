"""Guards of the package's layering (see docs/architecture.md).

- no import cycle between markovfault's modules, counting imports inside functions too;
- no module imports another module's private name (``from .x import _name``) or reaches into another object's
  private attributes (``model._encode``), except the entries listed here, which may only shrink: an entry that no
  longer occurs fails the test until it is removed, so the list always says what is left to clean up;
- the command line parses its arguments without importing numpy, pandas, scikit-learn, scipy or matplotlib;
- training (``markovfault train``) imports no plotting, scoring, gradient boosting or dask, and a backtest without
  baselines no gradient boosting.
"""

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import _archscan  # noqa: E402

# import cycles still to be broken (each a set of modules, without the "markovfault." prefix)
ALLOWED_CYCLES: list[set] = []

PRIVATE_IMPORTS: set = set()

# ``ddf._meta`` is dask's own (documented) way to read a collection's empty frame
PRIVATE_ATTRIBUTES = {
    ('_dask', 'ddf._meta'): 1,
}


def _short(name: str) -> str:
    return name.removeprefix("markovfault.")


def test_no_new_import_cycles():
    found = [{_short(m) for m in cycle} for cycle in _archscan.cycles()]
    new = [sorted(c) for c in found if not any(c <= allowed for allowed in ALLOWED_CYCLES)]
    assert not new, f"import cycles: {new}; import from the lower layer instead (docs/architecture.md)"
    stale = [sorted(a) for a in ALLOWED_CYCLES if a not in found]
    assert not stale, f"cycles broken or shrunk, update ALLOWED_CYCLES to {[sorted(c) for c in found]}: {stale}"


def test_no_private_imports_across_modules():
    found = {(_short(i.source), _short(i.target), i.name) for i in _archscan.private_imports()}
    new = sorted(found - PRIVATE_IMPORTS)
    assert not new, (f"private names imported across modules: {new}; give the name a public spelling in a "
                     "private module (the internal API) instead")
    stale = sorted(PRIVATE_IMPORTS - found)
    assert not stale, f"no longer imported, remove from PRIVATE_IMPORTS: {stale}"


def test_no_private_attributes_of_other_objects():
    found = Counter((_short(u.source), u.expression) for u in _archscan.private_attribute_uses())
    grown = sorted((k, n) for k, n in found.items() if n > PRIVATE_ATTRIBUTES.get(k, 0))
    assert not grown, f"new uses of other objects' private attributes: {grown}"
    stale = sorted(k for k, n in PRIVATE_ATTRIBUTES.items() if found.get(k, 0) < n)
    assert not stale, f"fewer uses than listed, lower PRIVATE_ATTRIBUTES: {stale}"


def test_scanner_sees_deferred_and_relative_imports(tmp_path, monkeypatch):
    """The guards are only as good as the scanner: a cycle made by an import inside a function is found."""
    pkg = tmp_path / "markovfault"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import thing\n_hidden = 1\n")
    (pkg / "b.py").write_text("def thing():\n    from .a import _hidden\n    return _hidden\n")
    (pkg / "c.py").write_text("from . import a\n")
    (pkg / "d.py").write_text("class K:\n    def _own(self):\n        return 1\n\n"
                              "def f(k, m):\n    return k._own() + m._theirs()\n")
    monkeypatch.setattr(_archscan, "ROOT", pkg)
    assert _archscan.cycles() == [frozenset({"markovfault.a", "markovfault.b"})]
    assert [(i.source, i.name, i.deferred) for i in _archscan.private_imports()] == [("markovfault.b", "_hidden", True)]
    assert _archscan.graph()["markovfault.c"] == {"markovfault.a"}
    # a module may use its own private attributes on other objects, not another module's
    assert [u.expression for u in _archscan.private_attribute_uses()] == ["m._theirs"]


HEAVY = ("numpy", "pandas", "sklearn", "scipy", "matplotlib", "pyarrow", "dask", "joblib")


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["forecast", "--help"], ["diagnose", "--help"],
                                  ["predict", "--help"], ["inspect", "--help"], ["backtest", "--help"],
                                  ["report", "--help"],
                                  ["--version"]])
def test_command_line_parses_without_numerical_libraries(argv):
    code = ("import sys\n"
            "from markovfault.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit as exc:\n    assert exc.code in (0, None), exc.code\n"
            f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_importing_the_package_is_light():
    code = ("import sys, markovfault\n"
            f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True)


# what fitting must not import: plotting, scoring, the gradient-boosting baseline, dask, and scikit-learn and
# scipy.stats at all (the estimators follow scikit-learn's conventions without importing it: about a second of
# start-up; see markovfault/_estimator.py)
NOT_FOR_TRAINING = ("matplotlib", "sklearn", "scipy.stats", "dask", "markovfault.backtest",
                    "markovfault.plotting")


def _modules_after(code: str) -> set:
    """The modules a fresh process has loaded after running ``code``."""
    code += "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def _loaded(modules: set, name: str) -> list:
    return sorted(m for m in modules if m == name or m.startswith(name + "."))


@pytest.fixture(scope="module")
def small_export(tmp_path_factory):
    """A small CSV export and a config for it."""
    tmp = tmp_path_factory.mktemp("export")
    statuses = ["ok", "slow", "error"]
    rows = [f"h{k % 3},{k // 3},{'ab'[k % 2]},{statuses[k % 5 % 3]}" for k in range(300)]
    (tmp / "h.csv").write_text("entity,time,event,status\n" + "\n".join(rows) + "\n")
    (tmp / "c.toml").write_text('[states]\nkind = "categorical"\nfailure = ["error"]\n')
    return tmp


@pytest.fixture(scope="module")
def modules_after_training(small_export):
    """The modules loaded by a fresh process that runs ``markovfault train`` on a small CSV."""
    csv, config, model = (str(small_export / f) for f in ("h.csv", "c.toml", "m.npz"))
    modules = _modules_after("from markovfault.cli import main\n"
                             f"assert main(['train', {csv!r}, '--config', {config!r}, '--out', {model!r}]) == 0")
    assert (small_export / "m.npz").exists()
    return modules


@pytest.mark.parametrize("name", NOT_FOR_TRAINING)
def test_training_does_not_import(modules_after_training, name):
    loaded = _loaded(modules_after_training, name)
    assert not loaded, f"`markovfault train` imported {loaded[:5]}; import it inside the function that needs it"


def test_backtest_without_baselines_does_not_import_gradient_boosting(small_export):
    modules = _modules_after(
        "from markovfault import FaultPredictor, backtest\n"
        "model = FaultPredictor(states={'kind': 'categorical', 'failure': ['error']})\n"
        f"backtest({str(small_export / 'h.csv')!r}, model, horizon=3, cutoffs=2, baselines=[], progress=False)")
    assert "markovfault.backtest" in modules
    assert not _loaded(modules, "sklearn.ensemble"), "sklearn.ensemble is only for the gradient-boosting baseline"
    assert not _loaded(modules, "matplotlib"), "a backtest draws nothing until asked"


def test_the_predictor_stays_a_thin_estimator():
    """FaultPredictor hands the work to the layers below: under 300 lines with its docstrings, and no method
    with more than 40 lines of code (docstring excluded)."""
    import ast

    path = _archscan.ROOT / "predictor" / "_predictor.py"
    (cls,) = [n for n in ast.parse(path.read_text()).body
              if isinstance(n, ast.ClassDef) and n.name == "FaultPredictor"]
    assert cls.end_lineno - cls.lineno + 1 < 300
    for fn in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
        body = fn.body[1:] if ast.get_docstring(fn) else fn.body
        assert body[-1].end_lineno - body[0].lineno + 1 <= 40, fn.name
