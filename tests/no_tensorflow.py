"""Runs Python code in a subprocess in which TensorFlow and Keras cannot be imported."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PRELUDE = (
    "import sys\n"
    "class Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in ('tensorflow', 'keras'):\n"
    "            raise ImportError('blocked: ' + name)\n"
    "sys.meta_path.insert(0, Block())\n"
)


def run_without_tensorflow(code: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs ``code`` after blocking the import of TensorFlow and Keras; returns the result."""
    return subprocess.run([sys.executable, "-c", PRELUDE + code], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)
