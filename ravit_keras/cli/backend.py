"""``ravit train --backend``: the Keras backend, chosen before Keras is imported.

Keras reads its backend once, at import (``KERAS_BACKEND``, else ``keras.json``);
``ravit train --backend jax`` sets ``KERAS_BACKEND`` when the command line is read
(``cli/__init__.py`` does so from ``sys.argv`` before anything imports Keras), and
``main(argv)`` in a process where Keras already runs another backend refuses with
one line instead of training on the wrong one.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence

BACKENDS = ("jax", "tensorflow")


def backend_flag(argv: Sequence[str]) -> str | None:
    """The value of ``train``'s ``--backend`` in ``argv`` (None when absent or not training)."""
    argv = list(argv)
    if "train" not in argv:
        return None
    for i, arg in enumerate(argv[argv.index("train") + 1:], start=argv.index("train") + 1):
        if arg == "--backend" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--backend="):
            return arg.split("=", 1)[1]
    return None


def configured_backend() -> str:
    """The backend Keras runs (or will run when imported), without importing it: as Keras
    decides, ``KERAS_BACKEND``, else ``keras.json`` in ``KERAS_HOME`` or ``~/.keras``, else TensorFlow."""
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json"), encoding="utf-8") as f:
            return str(json.load(f).get("backend", "tensorflow"))
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def select_backend(name: str | None) -> str:
    """Makes ``name`` the Keras backend of this process (None: Keras's own setting); returns it.

    Raises:
        ValueError: an unknown backend, or Keras already imported with another one.
    """
    if name is None:
        return configured_backend()
    if name not in BACKENDS:
        raise ValueError(f"--backend {name!r}: choose one of {', '.join(BACKENDS)}.")
    if "keras" in sys.modules:
        running = sys.modules["keras"].backend.backend()
        if running != name:
            raise ValueError(f"--backend {name}: Keras is already loaded in this process with the {running} "
                             f"backend; start a new process (ravit train --backend {name}, or "
                             f"KERAS_BACKEND={name}).")
        return name
    os.environ["KERAS_BACKEND"] = name
    return name


def select_from_argv(argv: Sequence[str]) -> None:
    """At start-up: a valid ``--backend`` in the command line becomes ``KERAS_BACKEND``
    (an invalid one is left to the parser, which names it)."""
    name = backend_flag(argv)
    if name in BACKENDS and "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = name
