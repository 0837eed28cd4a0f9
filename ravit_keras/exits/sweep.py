"""Threshold sweeps: accuracy and cost of the early-exit rule over a grid of τ."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ravit_keras.exits.routing import _evaluate, _exit_stats
from ravit_keras.exits.uncertainty import max_entropy, validate_thresholds
from ravit_keras.io_utils import atomic_write_json, atomic_write_text


def default_threshold_grid(num_classes: int, num: int = 40) -> np.ndarray:
    """0, a geometric grid from ln(C)/1000 to ln(C), and a coarse linear grid, sorted."""
    top = max_entropy(num_classes)
    grid = np.concatenate([[0.0], np.geomspace(top * 1e-3, top, num), np.linspace(0.0, top, 11)])
    return np.unique(np.clip(grid, 0.0, top))


def sweep(
    exit_logits: Sequence[np.ndarray],
    labels: Any,
    exit_macs: Any,
    thresholds: Sequence[Any] | None = None,
) -> list[dict[str, Any]]:
    """Rows of :func:`evaluate_exits` over a threshold grid.

    Args:
        thresholds: grid entries, each a scalar (same τ for every exit) or a
            per-exit sequence; default :func:`default_threshold_grid`.

    Returns:
        One dict per grid entry, with ``tau`` (the scalar, or None for a per-exit
        entry) in front of the :func:`evaluate_exits` keys.
    """
    stats = _exit_stats(exit_logits, labels, exit_macs)
    grid = default_threshold_grid(stats.num_classes) if thresholds is None else list(thresholds)
    rows = []
    for entry in grid:
        taus = validate_thresholds(entry, stats.num_exits, stats.num_classes)
        tau = float(entry) if np.ndim(entry) == 0 else None
        rows.append({"tau": tau, **_evaluate(stats, taus)})
    return rows


def _flatten_row(row: dict[str, Any]) -> dict[str, Any]:
    flat = {}
    for key, value in row.items():
        if isinstance(value, (list, tuple, np.ndarray)):
            for i, v in enumerate(value):
                flat[f"{key}.{i}"] = v  # Position in exit order.
        else:
            flat[key] = value
    return flat


def save_sweep(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Writes sweep rows atomically: CSV for ``.csv`` (lists become ``key.<exit position>``
    columns, None an empty cell), JSON for ``.json``."""
    path = Path(path)
    rows = list(rows)
    if not rows:
        raise ValueError(f"No sweep rows to write to {path}.")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return atomic_write_json(path, rows)
    if suffix != ".csv":
        raise ValueError(f"Cannot tell the format of {path}: use a .csv or .json name.")
    flat = [_flatten_row(r) for r in rows]
    columns: list[str] = []
    for r in flat:
        columns += [k for k in r if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    for r in flat:
        writer.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return atomic_write_text(path, buf.getvalue())

