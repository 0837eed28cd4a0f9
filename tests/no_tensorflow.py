"""Runs Python code in a subprocess in which TensorFlow (and by default Keras) cannot be imported."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BLOCKED = ("tensorflow", "keras")


def prelude(blocked=BLOCKED) -> str:
    """Python lines that make importing any of the ``blocked`` packages raise ImportError."""
    return (
        "import sys\n"
        "class Block:\n"
        "    tried = []  # Every blocked import asked for, even one the asker caught.\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {tuple(blocked)!r}:\n"
        "            Block.tried.append(name)\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
    )


PRELUDE = prelude()


def run_without_tensorflow(code: str, timeout: float = 300, blocked=BLOCKED, env: dict | None = None,
                           args=()) -> subprocess.CompletedProcess:
    """Runs ``code`` after blocking the import of TensorFlow and Keras (``blocked``); returns the
    result. ``env``: variables set on top of this process's environment; ``args``: ``sys.argv[1:]``."""
    return subprocess.run([sys.executable, "-c", prelude(blocked) + code, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})
