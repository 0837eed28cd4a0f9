"""Per-class results of an early-exit run: accuracy, confusion matrix, exit shares.

A model can look fine on average while one class is far behind, or leaves early
much more often than the others; these figures show it. They are computed from
two count matrices, so a stream can accumulate them in constant memory.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def count_matrices(labels: Any, predictions: Any, exit_index: Any, num_classes: int,
                   num_exits: int) -> tuple[np.ndarray, np.ndarray]:
    """``(confusion [C, C], class_exit_counts [C, E])`` of int64 counts.

    ``confusion[t, p]`` counts images of true class ``t`` predicted as ``p``;
    ``class_exit_counts[t, e]`` those of class ``t`` that left at exit ``e``.

    Raises:
        ValueError: if the arrays differ in length or hold a label, prediction or
            exit outside the model's range.
    """
    y = np.asarray(labels, np.int64).reshape(-1)
    p = np.asarray(predictions, np.int64).reshape(-1)
    e = np.asarray(exit_index, np.int64).reshape(-1)
    if not len(y) == len(p) == len(e):
        raise ValueError(f"labels, predictions and exits differ in length: {len(y)}, {len(p)}, {len(e)}.")
    for name, values, limit in (("label", y, num_classes), ("prediction", p, num_classes), ("exit", e, num_exits)):
        bad = values[(values < 0) | (values >= limit)]
        if bad.size:
            raise ValueError(f"{name} {int(bad[0])} is outside [0, {limit}).")
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (y, p), 1)
    class_exits = np.zeros((num_classes, num_exits), np.int64)
    np.add.at(class_exits, (y, e), 1)
    return confusion, class_exits


def per_class_from_counts(confusion: np.ndarray, class_exit_counts: np.ndarray,
                          class_names: Sequence[str], exit_names: Sequence[str]) -> dict[str, Any]:
    """Per-class figures (JSON-ready) from the two count matrices of ``count_matrices``.

    Returns ``{"classes": [{"name", "images", "correct", "accuracy", "exit_shares"}...],
    "confusion_matrix": [[...]], "class_names", "exit_names"}``; ``accuracy`` and
    ``exit_shares`` are None for a class with no images.
    """
    confusion = np.asarray(confusion, np.int64)
    class_exits = np.asarray(class_exit_counts, np.int64)
    n = len(class_names)
    if confusion.shape != (n, n) or class_exits.shape != (n, len(exit_names)):
        raise ValueError(
            f"Count matrices {confusion.shape} and {class_exits.shape} do not fit "
            f"{len(class_names)} classes and {len(exit_names)} exits.")
    rows = []
    for c, name in enumerate(class_names):
        n = int(confusion[c].sum())
        correct = int(confusion[c, c])
        rows.append({
            "name": str(name),
            "images": n,
            "correct": correct,
            "accuracy": correct / n if n else None,
            "exit_shares": [int(k) / n for k in class_exits[c]] if n else None,
        })
    return {
        "class_names": [str(n) for n in class_names],
        "exit_names": [str(n) for n in exit_names],
        "classes": rows,
        "confusion_matrix": confusion.tolist(),
    }


def per_class_report(labels: Any, predictions: Any, exit_index: Any, class_names: Sequence[str],
                     exit_names: Sequence[str]) -> dict[str, Any]:
    """Per-class accuracy, exit shares and confusion matrix of routed predictions."""
    confusion, class_exits = count_matrices(labels, predictions, exit_index, len(class_names), len(exit_names))
    return per_class_from_counts(confusion, class_exits, class_names, exit_names)


def format_per_class(report: dict[str, Any], max_rows: int = 20) -> str:
    """The per-class table as text: worst classes first when there are more than ``max_rows``."""
    rows = [r for r in report["classes"] if r["images"]]
    exit_names = report["exit_names"]
    header = f"{'class':<24} {'images':>7} {'top-1':>8}  " + "  ".join(f"{n:>7}" for n in exit_names)
    lines = ["per class (share of the class's images leaving at each exit):", header]
    shown = rows
    if len(rows) > max_rows:
        shown = sorted(rows, key=lambda r: r["accuracy"])[:max_rows]
        lines[0] = f"per class, the {max_rows} least accurate of {len(rows)} (exit shares per class):"
    for r in shown:
        shares = "  ".join(f"{100 * s:6.1f}%" for s in r["exit_shares"])
        lines.append(f"{r['name'][:24]:<24} {r['images']:>7} {100 * r['accuracy']:7.2f}%  {shares}")
    empty = [r["name"] for r in report["classes"] if not r["images"]]
    if empty:
        lines.append(f"no images of: {', '.join(empty[:10])}{' ...' if len(empty) > 10 else ''}")
    return "\n".join(lines)
