"""The notebooks in notebooks/ run top to bottom without an error, and are committed without outputs.

Each notebook is executed by nbclient in a fresh kernel whose working directory is notebooks/ (as when a user
opens it in Jupyter). 05_real_histories reads ../shared/data when it is there and skips its cells otherwise;
both paths must run.
"""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["01_quickstart", "02_states", "03_backtesting", "04_what_if", "05_real_histories", "06_why_at_risk"]
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))


def read(path):
    return nbformat.read(path, as_version=4)


def test_the_notebooks_are_all_there():
    assert [p.stem for p in PATHS] == NAMES


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_committed_without_outputs(path):
    book = read(path)
    nbformat.validate(book)
    assert book.nbformat == 4
    for k, cell in enumerate(book.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {k} holds outputs; clear them before committing"
            assert cell.execution_count is None, f"{path.name} cell {k} has an execution count"


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_starts_with_a_title_and_ends_with_what_next(path):
    cells = read(path).cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# ")
    assert cells[-1].cell_type == "markdown" and "## What next" in cells[-1].source


@pytest.fixture
def single_threaded(monkeypatch):
    """One OpenMP thread in the kernel: HistGradientBoosting (a backtest baseline) slows down
    tenfold when its threads compete with other processes for 2 cores."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_runs_top_to_bottom(path, single_threaded):
    book = read(path)
    client = nbclient.NotebookClient(book, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors
    # every notebook draws something (05 only when its data is there)
    images = [o for c in book.cells if c.cell_type == "code" for o in c.outputs
              if "image/png" in o.get("data", {})]
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "backblaze"
    if path.stem != "05_real_histories" or shared.is_dir():
        assert images, f"{path.name} drew no figure"


def test_real_histories_skip_cleanly_without_the_data(tmp_path, single_threaded):
    """Run 05 from a folder with no shared/data above it: it prints why and skips its cells."""
    book = read(NOTEBOOKS / "05_real_histories.ipynb")
    nbclient.NotebookClient(book, timeout=60, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    printed = "".join(o.get("text", "") for c in book.cells if c.cell_type == "code"
                      for o in c.outputs if o.output_type == "stream")
    assert "skipping this notebook" in printed
    assert not [o for c in book.cells if c.cell_type == "code" for o in c.outputs
                if "image/png" in o.get("data", {})]
