"""Lazy public names for packages whose modules pull in TensorFlow or LiteRT.

``import ravit_keras.exits`` or the scheduler must not import TensorFlow, so a
package ``__init__`` names what it exports and where, and imports a module only
when one of its names is first used.
"""

from __future__ import annotations

import importlib
from typing import Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """Returns ``(__getattr__, __dir__)`` for ``package`` exporting ``{name: submodule}``."""

    def __getattr__(name: str):
        if name in exports:
            value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
