"""Executes the notebooks, papermill-style, and (``--record``) saves them with their outputs.

A cell tagged "injected-parameters" is inserted right after the cell tagged
"parameters"; it overrides the notebook's settings (an older injected cell is
replaced). CI runs every notebook this way with tiny settings
(``tests/test_notebooks.py``); ``--record`` runs them on real data at the budget
below and writes the executed notebooks back, so that a reader sees real tables
and plots:

    python ../shared/data/materialize.py cifar10 runs/data          # real CIFAR-10
    python ../shared/data/materialize.py tinyimagenet runs/data     # real Tiny ImageNet
    python notebooks/run_notebooks.py --record                      # about 40 min on 2 cores

The kernel is this interpreter (never a user-level kernel); each notebook has a
total time budget.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

NOTEBOOK_DIR = Path(__file__).resolve().parent

# The recorded run: real data, a budget a 2-core CPU finishes in about 40 minutes.
# Paths are relative to notebooks/ (where the notebooks run).
RECORDED = {
    "01_train.ipynb": dict(DATA="../runs/data/cifar-10-batches-py", LIMIT_TRAIN=10000, EPOCHS=3,
                           BATCH_SIZE=128),
    "02_early_exit.ipynb": dict(DATA="../runs/data/cifar-10-batches-py", LIMIT_TEST=4000, EPOCHS=3,
                                LIMIT_TRAIN=10000, BATCH_SIZE=128),
    "03_deploy.ipynb": dict(DATA="../runs/data/cifar-10-batches-py", LIMIT_CALIBRATION=1000, LIMIT_TEST=1000),
    "04_tinyimagenet_three_branches.ipynb": dict(
        DATA="../runs/data/tiny-imagenet-200", LIMIT_TRAIN=10000, LIMIT_TEST=2000, EPOCHS=2,
        WIDTH=dict(hidden_dim=64, mlp_dim=256, num_heads=2)),
}
RECORD_BUDGET_S = 3600


def parameters_index(nb) -> int:
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            return i
    raise ValueError("The notebook has no cell tagged 'parameters'.")


def inject_parameters(nb, params: dict, note: str) -> None:
    """Inserts (or replaces) the cell setting ``params`` right after the parameters cell."""
    import nbformat

    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    index = parameters_index(nb)
    defined = nb.cells[index].source
    unknown = [name for name in params if f"\n{name} = " not in "\n" + defined]
    if unknown:
        raise ValueError(f"The parameters cell does not define {unknown}.")
    source = f"# {note}\n" + "\n".join(f"{name} = {value!r}" for name, value in params.items())
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(index + 1, cell)


def write_kernel_spec(root: Path) -> Path:
    """A "python3" kernel spec that runs this interpreter (found first via JUPYTER_PATH)."""
    spec_dir = root / "kernels" / "python3"
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3",
        "language": "python",
        "env": {"TF_CPP_MIN_LOG_LEVEL": "2", "MPLBACKEND": "module://matplotlib_inline.backend_inline"},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return root


def execute_notebook(path: Path, params: dict, workdir: Path, budget_s: float, note: str):
    """Runs ``path`` with ``params`` injected, in ``workdir``; returns the executed notebook.

    Raises nbclient's CellExecutionError on the first failing cell, and
    CellTimeoutError when the whole notebook runs past ``budget_s``. The caller
    sets JUPYTER_PATH to a folder from ``write_kernel_spec``.
    """
    import nbclient
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    inject_parameters(nb, params, note)
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


def record(names: list[str]) -> int:
    """Runs ``names`` at the recorded budget and writes them back with their outputs."""
    import os

    import nbformat

    from ravit_keras.deploy.measurement.profiling import cpu_description

    host = cpu_description()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["JUPYTER_PATH"] = str(write_kernel_spec(Path(tmp)))
        for name in names:
            start = time.monotonic()
            note = (f"The recorded run (notebooks/run_notebooks.py --record): real data at a small budget, "
                    f"on {host}")
            print(f"{name}: running ...", flush=True)
            nb = execute_notebook(NOTEBOOK_DIR / name, RECORDED[name], NOTEBOOK_DIR, RECORD_BUDGET_S, note)
            nb.cells[parameters_index(nb) + 1].source += f"\n# wall time of this run: {time.monotonic() - start:.0f} s"
            tmp_path = NOTEBOOK_DIR / f".{name}.tmp"
            nbformat.write(nb, str(tmp_path))
            os.replace(tmp_path, NOTEBOOK_DIR / name)
            print(f"{name}: recorded in {time.monotonic() - start:.0f} s", flush=True)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="run at the recorded budget and save the outputs")
    parser.add_argument("names", nargs="*", help="notebooks (default: all)")
    args = parser.parse_args(argv)
    names = args.names or sorted(RECORDED)
    if not args.record:
        parser.error("nothing to do: pass --record (CI runs the notebooks through tests/test_notebooks.py)")
    return record(names)


if __name__ == "__main__":
    sys.exit(main())
