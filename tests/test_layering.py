"""The package layout is the data flow: lower layers never import higher ones.

Every module of ``ravit_keras`` is imported, and every import statement in it
(module level and inside functions: lazy imports are still dependencies) is
checked against the layer rule below; inside ``deploy``, against the rule between
its side folders (runtime, export, measurement; see DEPLOY_SIDES). A subprocess
then checks that every module of the runtime folder (and the exits maths) loads
without TensorFlow.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import ravit_keras
from tests.no_tensorflow import run_without_tensorflow

PACKAGE_DIR = Path(ravit_keras.__file__).parent

# Layer of every top-level part of the package; a module may import only parts of
# a layer at or below its own (and, within one part, its own modules).
LAYERS = {
    "_lazy": 0, "io_utils": 0, "config": 0, "images": 0, "console": 0, "runs": 0, "run_calibration": 0,
    "model": 1, "data": 1,
    "exits": 2,
    "train": 3, "training": 3, "evaluation": 3,
    "deploy": 4,
    "prediction": 4, "presets": 4,
    "cli": 5, "__main__": 6,
}

# Within deploy: the side folders, and which other sides each may import.
#   runtime      what a device runs (manifest, policy, quantisation, scheduler): imports no
#                other side, and loads without TensorFlow or Keras (checked below).
#   measurement  timing on this machine: builds on runtime (it times what runtime runs).
#   export       Keras -> TFLite: builds on runtime (the manifest contract, the scheduler that
#                calibrates thresholds on the shipped submodels) and on measurement (mode
#                selection times candidate conversions).
# One module is named as an exception: measurement.benchmark converts both models it
# compares, so it may use export (no cycle: export never imports it; checked below).
DEPLOY_SIDES = {"runtime": set(), "measurement": {"runtime"}, "export": {"runtime", "measurement"}}
DEPLOY_EXCEPTIONS = {"ravit_keras.deploy.measurement.benchmark": {"export"}}
RUNTIME_PACKAGE = "ravit_keras.deploy.runtime"


def _modules() -> list[str]:
    names = ["ravit_keras"]
    for info in pkgutil.walk_packages([str(PACKAGE_DIR)], prefix="ravit_keras."):
        names.append(info.name)
    return sorted(names)


def _path(module: str) -> Path:
    parts = module.split(".")[1:]
    folder = PACKAGE_DIR.joinpath(*parts)
    return folder / "__init__.py" if folder.is_dir() else folder.with_suffix(".py")


def _imports(module: str) -> set[str]:
    """Every ``ravit_keras`` module that ``module`` imports, anywhere in its code."""
    tree = ast.parse(_path(module).read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("ravit_keras")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ravit_keras"):
            for a in node.names:  # ``from ravit_keras import exits`` imports a sub-package.
                candidate = f"{node.module}.{a.name}"
                found.add(candidate if _is_module(candidate) else node.module)
    return found - {module}


def _is_module(name: str) -> bool:
    parts = name.split(".")[1:]
    folder = PACKAGE_DIR.joinpath(*parts)
    return folder.is_dir() or folder.with_suffix(".py").is_file()


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


MODULES = _modules()


def test_every_module_imports():
    for name in MODULES:
        if not name.endswith("__main__"):  # Importing it runs the command line.
            importlib.import_module(name)
    assert len(MODULES) > 30  # The walk found the sub-packages.


@pytest.mark.parametrize("module", [m for m in MODULES if m != "ravit_keras"])
def test_lower_layers_never_import_higher_ones(module):
    part = _part(module)
    assert part in LAYERS, f"{module}: add its part {part!r} to LAYERS"
    for dep in _imports(module):
        dep_part = _part(dep)
        if dep == "ravit_keras" or dep_part == part:
            continue
        assert LAYERS[dep_part] <= LAYERS[part], (
            f"{module} (layer {LAYERS[part]}) imports {dep} (layer {LAYERS[dep_part]})"
        )


def _side(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 3 and parts[1] == "deploy" else None


@pytest.mark.parametrize("module", [m for m in MODULES if m.startswith("ravit_keras.deploy.")])
def test_deploy_sides_use_only_what_is_below_them(module):
    parts = module.split(".")
    if len(parts) == 3:  # A side's own package (ravit_keras.deploy.runtime): only its __init__.
        assert parts[2] in DEPLOY_SIDES, f"{module}: deploy's modules live in {sorted(DEPLOY_SIDES)}"
        return
    side = _side(module)
    assert side in DEPLOY_SIDES, f"{module}: put it in one of {sorted(DEPLOY_SIDES)}"
    allowed = DEPLOY_SIDES[side] | DEPLOY_EXCEPTIONS.get(module, set())
    used = {_side(d) for d in _imports(module) if d.startswith("ravit_keras.deploy.")} - {side, None}
    assert used <= allowed, f"{module} ({side}) imports the {sorted(used - allowed)} side"


def test_deploy_package_root_imports_no_side_eagerly():
    # ravit_keras.deploy names its exports lazily: importing it loads no side.
    out = run_without_tensorflow("import sys, ravit_keras.deploy\n"
                                 "print(sorted(m for m in sys.modules if m.startswith('ravit_keras.deploy.')))\n")
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr + out.stdout


def test_no_import_cycles():
    graph = {m: {d for d in _imports(m) if d in MODULES and d != "ravit_keras"} for m in MODULES}
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path + [node, nxt]))
            if nxt not in state:
                visit(nxt, path + [node])
        state[node] = 2

    for m in MODULES:
        if m not in state:
            visit(m, [])


def test_runtime_side_imports_no_tensorflow():
    # The scheduler path (what `ravit run` needs) must start without TensorFlow or Keras:
    # every module in the runtime folder (walked, not listed), the exits maths and the cost model.
    runtime = [m for m in MODULES if m == RUNTIME_PACKAGE or m.startswith(RUNTIME_PACKAGE + ".")]
    assert {"ravit_keras.deploy.runtime.manifest", "ravit_keras.deploy.runtime.quantization",
            "ravit_keras.deploy.runtime.scheduler", "ravit_keras.deploy.runtime.policy"} <= set(runtime)
    out = run_without_tensorflow(
        "import ravit_keras.exits, ravit_keras.model.flops, ravit_keras.config\n"
        + "".join(f"import {m}\n" for m in runtime)
        + "print('ok')\n"
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
