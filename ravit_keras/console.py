"""Quiet by default: the toolkit's own lines only, the libraries' logs on request.

TensorFlow's converter and LiteRT write their own logs from C++ straight to the
process's stdout/stderr ("fully_quantize: 0, ...", "INFO: Created TensorFlow Lite
XNNPACK delegate for CPU.") and Python warnings about their internals.
``quiet_native_output`` holds those back around the calls that make them and shows
them only when the call fails or verbose output is on (``ravit --verbose``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from typing import Iterator

_verbose = os.environ.get("RAVIT_VERBOSE", "") not in ("", "0")

# Python warnings raised inside TensorFlow's converter about its own internals.
_LIBRARY_WARNINGS = (
    r".*tf\.lite\.Interpreter is deprecated.*",
    r".*Statistics for quantized inputs were expected.*",
)


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """A count and its noun, singular for exactly one: ``"1 image"``, ``"2 images"``.

    ``noun`` may be several words ("int8 submodel"); only the last takes the plural
    (``plural_form`` replaces the whole noun where adding "s" is wrong, e.g. "classes").
    """
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {plural_form or noun + 's'}"


def set_verbose(verbose: bool) -> None:
    """Shows (True) or holds back (False, the default) the libraries' own logs."""
    global _verbose
    _verbose = bool(verbose)


def is_verbose() -> bool:
    return _verbose


@contextlib.contextmanager
def quiet_native_output() -> Iterator[None]:
    """Holds back what native code writes to file descriptors 1 and 2 in the block.

    On an exception the held-back text is written to stderr before the exception
    propagates, so a failure keeps its diagnostics. A no-op when verbose.
    """
    if _verbose:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as held, warnings.catch_warnings():
        for pattern in _LIBRARY_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        os.dup2(held.fileno(), 1)
        os.dup2(held.fileno(), 2)
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            if failed:
                held.seek(0)
                text = held.read().decode("utf-8", "replace")
                if text.strip():
                    sys.stderr.write(text)
                    sys.stderr.flush()


class Progress:
    """A one-line progress counter on stderr (no Keras, no TensorFlow).

    ``mode`` "bar" always draws, "none" never, "auto" only on a terminal. It
    redraws at most ten times a second and ends with a newline.
    """

    def __init__(self, total: int | None, unit: str = "image", mode: str = "auto"):
        import time

        self._time = time.monotonic
        self.total = total
        self.unit = unit
        self.enabled = mode == "bar" or (mode == "auto" and sys.stderr.isatty())
        self._last = 0.0
        self._start = self._time()
        self.count = 0

    def update(self, count: int) -> None:
        self.count = count
        if not self.enabled:
            return
        now = self._time()
        if now - self._last < 0.1 and count != self.total:
            return
        self._last = now
        rate = count / max(now - self._start, 1e-9)
        of = f"/{self.total}" if self.total else ""
        sys.stderr.write(f"\r  {count}{of} {self.unit}s, {rate:,.0f}/s")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.count:
            self.update(self.count)
            sys.stderr.write("\n")
            sys.stderr.flush()


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow and Keras with their load-time C++ lines held back (the oneDNN
    notice is printed before TF_CPP_MIN_LOG_LEVEL takes effect). A no-op when verbose."""
    with quiet_native_output():
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
