"""Plots of early-exit results: accuracy vs FLOPs, exit histograms (matplotlib, no pyplot)."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Sequence

from ravit_keras.io_utils import atomic_write_bytes


def _save_figure(fig, path: str | Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    return atomic_write_bytes(path, buf.getvalue())


def _new_figure(figsize):
    # A bare Figure (no pyplot) leaves the caller's matplotlib backend and state alone.
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots()


def plot_accuracy_vs_flops(
    rows: Sequence[dict[str, Any]],
    path: str | Path,
    baselines: Mapping[str, tuple[float, float]] | None = None,
    title: str | None = None,
) -> Path:
    """Accuracy (%) against average MFLOPs for sweep rows, written atomically as PNG.

    Args:
        rows: sweep rows (need ``avg_mflops`` and ``accuracy`` as a fraction).
        baselines: optional ``name -> (mflops, accuracy)``, accuracy a fraction in
            [0, 1] like the rows, drawn as labelled points (e.g. classic ViTs).
    """
    rows = list(rows)
    if not rows:
        raise ValueError(f"No sweep rows to plot into {path}.")
    pts = sorted((float(r["avg_mflops"]), 100.0 * float(r["accuracy"])) for r in rows)
    fig, ax = _new_figure((6.0, 4.2))
    ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", ms=3, label="RAViT early exit")
    for name, (mflops, acc) in (baselines or {}).items():
        if not 0.0 <= float(acc) <= 1.0:
            raise ValueError(
                f"baseline {name!r} accuracy {acc!r} is not a fraction in [0, 1] "
                "(give 0.93, not 93)."
            )
        ax.plot([mflops], [100.0 * acc], "s", ms=6)
        ax.annotate(name, (mflops, 100.0 * acc), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel("average MFLOPs per image")
    ax.set_ylabel("accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    if title:
        ax.set_title(title)
    return _save_figure(fig, path)


def plot_exit_histogram(exit_counts: Sequence[int], exit_names: Sequence[str], path: str | Path,
                        title: str = "exit histogram") -> Path:
    """Bar chart of how many images left at each exit, written atomically as PNG."""
    counts = [int(k) for k in exit_counts]
    names = [str(n) for n in exit_names]
    if len(counts) != len(names):
        raise ValueError(f"exit_counts {counts} and exit_names {names} differ in length.")
    total = sum(counts)
    fig, ax = _new_figure((1.2 + 1.1 * max(len(counts), 2), 3.6))
    bars = ax.bar(names, counts)
    for bar, k in zip(bars, counts):
        share = f"{100.0 * k / total:.1f}%" if total else "0%"
        ax.annotate(f"{k}\n{share}", (bar.get_x() + bar.get_width() / 2, k), ha="center",
                    va="bottom", fontsize=8, textcoords="offset points", xytext=(0, 2))
    ax.set_ylabel("images")
    ax.set_ylim(0, max(counts + [1]) * 1.25)
    ax.set_title(title, fontsize=9 if len(title) > 40 else None)
    return _save_figure(fig, path)

