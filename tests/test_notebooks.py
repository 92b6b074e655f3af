"""The workbench notebooks: committed without outputs, and every one runs headless without error.

The notebooks share one small simulated dataset through RECOUP_NOTEBOOK_DATA (built once here) and run
in a kernel of this interpreter, so they see exactly the installed packages the tests see.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
KERNEL = "recoup-test-python"


def test_the_workbench_notebooks_exist():
    names = {p.name for p in NOTEBOOKS}
    assert {"01_explore_ar.ipynb", "02_train_and_evaluate.ipynb", "03_worklist_and_reasons.ipynb",
            "04_drift_and_backtest.ipynb"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebooks_carry_no_outputs(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; clear them (python notebooks/_build.py)"


def test_notebooks_are_built_by_the_generator():
    """The .ipynb files are what notebooks/_build.py writes (edit the script, not the notebooks)."""
    import importlib.util

    import nbformat

    spec = importlib.util.spec_from_file_location("_nb_build", NOTEBOOK_DIR / "_build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for name, cells in mod.NOTEBOOKS.items():
        committed = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
        assert [c.source for c in committed.cells] == [c.source for c in cells], f"{name} differs from _build.py"


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory, monkeypatch_module):
    """A kernelspec for this interpreter and the shared simulated dataset."""
    from features.sources.simulate import simulate_to_folder

    root = tmp_path_factory.mktemp("nb")
    spec_dir = root / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "recoup tests", "language": "python"}))
    monkeypatch_module.setenv("JUPYTER_PATH", str(root / "jupyter"))
    monkeypatch_module.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    data = root / "data"
    simulate_to_folder(data / "ar-5000", n_accounts=5000, seed=7, start="2024-01-01", end="2025-12-31")
    monkeypatch_module.setenv("RECOUP_NOTEBOOK_DATA", str(data))
    return root


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, kernel_env, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    before = sorted(NOTEBOOK_DIR.iterdir())
    client = NotebookClient(nb, kernel_name=KERNEL, timeout=600, allow_errors=False,
                            resources={"metadata": {"path": str(tmp_path)}})
    t0 = time.perf_counter()
    client.execute()  # raises CellExecutionError on the first failing cell
    elapsed = time.perf_counter() - t0
    print(f"{path.name}: {elapsed:.1f}s")
    images = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                 if "image/png" in o.get("data", {}))
    assert images > 0, f"{path.name} showed no figure"
    assert sorted(NOTEBOOK_DIR.iterdir()) == before, "a notebook wrote into notebooks/"
