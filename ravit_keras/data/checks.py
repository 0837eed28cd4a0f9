"""Checks on what data sources hand the toolkit: class names.

Class names travel into CSV and JSON answers, reports, the manifest of converted
submodels, the Android app's label list and one-line terminal output. A name with a
newline or another control character would split a row or a line there, and one that
is not UTF-8 text (a folder name in another encoding) cannot be written to JSON at
all, so every source's names pass ``check_class_names`` where they are read.
"""

from __future__ import annotations

import unicodedata
from typing import Iterable


def _fault(name: str) -> str | None:
    """What is wrong with one class name, or None."""
    for ch in name:
        if "\ud800" <= ch <= "\udfff":
            return "is not UTF-8 text (a file or folder name in another encoding?)"
        category = unicodedata.category(ch)
        if category == "Cc" or category in ("Zl", "Zp"):
            return f"holds the control character {ch!r} (a newline, tab or another unprintable character)"
    return None


def check_class_names(names: Iterable, where: str) -> list[str]:
    """Returns ``names`` as a list of str, after refusing any a file could not carry.

    Refused: a newline, carriage return, tab or any other control character (Unicode
    category Cc, and the line/paragraph separators U+2028/U+2029), and text that is not
    UTF-8 (lone surrogates, which Python uses for undecodable bytes of file names).

    Args:
        names: the class names, in label order.
        where: the source, named in the error (a file, a folder, an array key).

    Raises:
        ValueError: naming ``where`` and the offending name (as ``repr``, so the
            character shows).
    """
    checked = []
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise ValueError(f"{where}: class name {i} is a {type(name).__name__} ({name!r}), not text.")
        fault = _fault(name)
        if fault is not None:
            raise ValueError(f"{where}: class name {i} {name!r} {fault}; rename it.")
        checked.append(name)
    return checked
