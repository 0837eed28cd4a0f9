"""The package layout is the data flow: lower layers never import higher ones.

Every module of ``ravit_keras`` is imported, and every import statement in it
(module level and inside functions: lazy imports are still dependencies) is
checked against the layer rule below. A subprocess then checks that the
runtime side (exits maths, manifest, scheduler) loads without TensorFlow.
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
    "_lazy": 0, "io_utils": 0, "config": 0, "images": 0, "console": 0,
    "model": 1, "data": 1,
    "exits": 2,
    "train": 3, "evaluation": 3,
    "deploy": 4,
    "prediction": 4, "presets": 4,
    "cli": 5, "__main__": 6,
}

# Within deploy: what each module may use (the scheduler needs only the manifest,
# the quantisation rule and LiteRT; mode selection and benchmarks sit on top).
DEPLOY_ALLOWED = {
    "manifest": set(),
    "quantization": set(),
    "flatbuffer": set(),
    "profiling": set(),
    "op_profile": set(),  # LiteRT's C API only.
    "metadata": {"manifest"},
    "scheduler": {"manifest", "quantization"},
    "convert": {"manifest", "flatbuffer", "metadata", "scheduler"},
    "mode_selection": {"convert", "manifest", "profiling", "scheduler"},
    "benchmark": {"convert", "profiling", "scheduler"},
    "golden": {"convert", "quantization", "scheduler"},
}


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


@pytest.mark.parametrize("module", [m for m in MODULES if m.startswith("ravit_keras.deploy.")])
def test_deploy_modules_use_only_what_is_below_them(module):
    name = module.rsplit(".", 1)[1]
    assert name in DEPLOY_ALLOWED, f"{module}: add it to DEPLOY_ALLOWED"
    used = {d.rsplit(".", 1)[1] for d in _imports(module) if d.startswith("ravit_keras.deploy.")}
    assert used <= DEPLOY_ALLOWED[name], f"{module} imports deploy modules {sorted(used - DEPLOY_ALLOWED[name])}"


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
    # The scheduler path (what `ravit run` needs) must start without TensorFlow or Keras.
    out = run_without_tensorflow(
        "import ravit_keras.exits, ravit_keras.model.flops, ravit_keras.config\n"
        "import ravit_keras.deploy.runtime.manifest, ravit_keras.deploy.runtime.quantization, ravit_keras.deploy.runtime.scheduler\n"
        "print('ok')\n"
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
