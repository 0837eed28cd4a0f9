"""Executes every notebook in notebooks/ top to bottom with tiny settings.

Like papermill, the test injects a cell right after the cell tagged "parameters"
that overrides the notebook's settings: generated data, tiny width, one short
epoch, outputs in a temporary folder. Each notebook is self-contained (the later
ones train their own tiny model when no saved model is given), so the tests do
not depend on their order. The kernel is started with this interpreter, never a
user-level kernel, and each notebook has a total time budget.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"

# Settings shared by every notebook: tiny enough for seconds per training run.
TINY = dict(
    DATA="generated",
    EPOCHS=1,
    LIMIT_TRAIN=256,
    LIMIT_TEST=128,
    BATCH_SIZE=32,
    WIDTH=dict(hidden_dim=32, mlp_dim=64, num_heads=2),
    EXECUTION="eager",
)

# Notebook -> (extra overrides, total time budget in seconds). The budgets are
# generous guards against a hang, several times the run time on 2 idle cores.
NOTEBOOKS = {
    "01_train.ipynb": (dict(), 240),
    "02_early_exit.ipynb": (dict(MODEL_PATH=None, BASELINE_PATHS={}), 300),
    "03_deploy.ipynb": (dict(MODEL_PATH=None, NUM_CALIBRATION=64, LIMIT_CALIBRATION=128,
                             BENCHMARK_RUNS=20, BATTERY_LEVELS=(1.0, 0.3, 0.1)), 300),
    "04_tinyimagenet_three_branches.ipynb": (dict(NUM_CALIBRATION=32, BENCHMARK_RUNS=20), 360),
}


def parameters_index(nb) -> int:
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            return i
    raise AssertionError("The notebook has no cell tagged 'parameters'.")


def inject_parameters(nb, params: dict) -> None:
    """Inserts a code cell setting ``params`` right after the parameters cell."""
    index = parameters_index(nb)
    defined = nb.cells[index].source
    unknown = [name for name in params if f"\n{name} = " not in "\n" + defined]
    assert not unknown, f"The parameters cell does not define {unknown}."
    source = "# Parameters injected by tests/test_notebooks.py\n" + "\n".join(
        f"{name} = {value!r}" for name, value in params.items()
    )
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(index + 1, cell)


def write_kernel_spec(root: Path) -> Path:
    """A "python3" kernel spec that runs this interpreter (found first via JUPYTER_PATH)."""
    spec_dir = root / "kernels" / "python3"
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (tests)",
        "language": "python",
        "env": {"TF_CPP_MIN_LOG_LEVEL": "2", "MPLBACKEND": "module://matplotlib_inline.backend_inline"},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return root


def execute_notebook(path: Path, params: dict, workdir: Path, budget_s: float):
    """Runs ``path`` with ``params`` injected, in ``workdir``; returns the executed notebook.

    Raises nbclient's CellExecutionError on the first failing cell, and
    CellTimeoutError when the whole notebook runs past ``budget_s``.
    """
    nb = nbformat.read(str(path), as_version=4)
    inject_parameters(nb, params)
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=budget_s, allow_errors=False,
        resources={"metadata": {"path": str(workdir)}},
    )
    deadline = time.monotonic() + budget_s
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            # One budget for the notebook: each cell may use what the earlier ones left.
            client.timeout = max(1, int(deadline - time.monotonic()))
            client.execute_cell(cell, index)
    return nb


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_runs(name, tmp_path, monkeypatch):
    overrides, budget = NOTEBOOKS[name]
    monkeypatch.setenv("JUPYTER_PATH", str(write_kernel_spec(tmp_path / "jupyter")))
    workdir = tmp_path / "work"
    workdir.mkdir()
    params = {**TINY, "OUT_DIR": str(tmp_path / "out"), **overrides}
    nb = execute_notebook(NOTEBOOK_DIR / name, params, workdir, budget)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_is_clean(name):
    """Committed notebooks carry no outputs and exactly one parameters cell."""
    nb = nbformat.read(str(NOTEBOOK_DIR / name), as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert nb.cells[0].cell_type == "markdown"
    assert "ravit_keras" in "\n".join(c.source for c in code)


def test_notebook_list_is_complete():
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb")) == sorted(NOTEBOOKS)
