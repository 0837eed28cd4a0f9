"""Executes every notebook in notebooks/ top to bottom with tiny settings.

Like papermill, the test injects a cell right after the cell tagged "parameters"
that overrides the notebook's settings: generated data, tiny width, one short
epoch, outputs in a temporary folder. Each notebook is self-contained (the later
ones train their own tiny model when no saved model is given), so the tests do
not depend on their order. The kernel is started with this interpreter, never a
user-level kernel, and each notebook has a total time budget.

The committed notebooks carry the outputs of a real run (real CIFAR-10 / Tiny
ImageNet at the budget in ``notebooks/run_notebooks.py``); a test checks they do.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
sys.path.insert(0, str(NOTEBOOK_DIR))
from run_notebooks import RECORDED, execute_notebook, write_kernel_spec  # noqa: E402

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


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_runs(name, tmp_path, monkeypatch):
    overrides, budget = NOTEBOOKS[name]
    monkeypatch.setenv("JUPYTER_PATH", str(write_kernel_spec(tmp_path / "jupyter")))
    workdir = tmp_path / "work"
    workdir.mkdir()
    params = {**TINY, "OUT_DIR": str(tmp_path / "out"), **overrides}
    nb = execute_notebook(NOTEBOOK_DIR / name, params, workdir, budget,
                          "Parameters injected by tests/test_notebooks.py")
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_is_committed_with_its_recorded_run(name):
    """Committed notebooks show a real run: every cell executed, no errors, plots, real data."""
    nb = nbformat.read(str(NOTEBOOK_DIR / name), as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") is not None for c in code), "re-record: notebooks/run_notebooks.py --record"
    outputs = [o for c in code for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    injected = [c for c in code if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and len(injected) == 1
    assert injected[0].source.startswith("# The recorded run")
    for key, value in RECORDED[name].items():
        assert f"{key} = {value!r}" in injected[0].source
    assert "generated" not in RECORDED[name]["DATA"]
    assert nb.cells[0].cell_type == "markdown"
    assert "ravit_keras" in "\n".join(c.source for c in code)


def test_notebook_list_is_complete():
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb")) == sorted(NOTEBOOKS)
