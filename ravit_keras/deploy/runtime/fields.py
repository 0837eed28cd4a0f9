"""Typed reads of manifest JSON fields, each error naming the key (``ManifestError``).

Shared by ``manifest.py`` and ``policy.py`` (the Android core's ``Manifest.Reader``).
"""

from __future__ import annotations

import math
from typing import Any


class ManifestError(ValueError):
    """A manifest that is malformed or does not match its submodels."""


def bad(where: str, message: str) -> ManifestError:
    return ManifestError(f"{where}: {message}")


def get(obj: Any, key: str, where: str) -> Any:
    """``obj[key]``; a missing key (or a non-object ``obj``) names ``where.key``."""
    if not isinstance(obj, dict):
        raise bad(where, f"should be an object, got {obj!r}")
    if key not in obj or obj[key] is None:
        raise bad(f"{where}.{key}" if where else key, "is missing")
    return obj[key]


def number(value: Any, key: str) -> float:
    """A finite JSON number (not a bool): NaN or infinity would poison every comparison."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad(key, f"should be a number, got {value!r}")
    if not math.isfinite(value):
        raise bad(key, f"should be finite, got {value!r}")
    return value  # int or float as written: to_dict() writes it back unchanged.


def integer(value: Any, key: str) -> int:
    """A JSON integer (``3.0`` passes: JSON has one number type)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            isinstance(value, float) and not (math.isfinite(value) and value.is_integer())):
        raise bad(key, f"should be an integer, got {value!r}")
    return int(value)


def positive_int(value: Any, key: str) -> int:
    v = integer(value, key)
    if v <= 0:
        raise bad(key, f"should be positive, got {v}")
    return v


def string(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise bad(key, f"should be a string, got {value!r}")
    return value


def array(value: Any, key: str) -> list:
    if not isinstance(value, list):
        raise bad(key, f"should be a list, got {value!r}")
    return value


def numbers(value: Any, key: str) -> tuple[float, ...]:
    """A list of finite numbers."""
    return tuple(number(v, f"{key}[{i}]") for i, v in enumerate(array(value, key)))


def in_range(value: float, lo: float, hi: float, key: str) -> float:
    if not lo <= value <= hi:
        raise bad(key, f"should be in [{lo}, {hi}], got {value}")
    return value
