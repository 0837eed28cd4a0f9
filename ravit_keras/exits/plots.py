"""Plots of early-exit results: accuracy vs FLOPs, exit histograms, per-class results,
confusion matrices, and the three of one operating point (matplotlib, no pyplot)."""

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
    rows: Sequence[dict[str, Any]] | Mapping[str, Sequence[dict[str, Any]]],
    path: str | Path,
    baselines: Mapping[str, tuple[float, float]] | None = None,
    title: str | None = None,
    operating_point: tuple[str, float, float] | None = None,
    mac_budget_mflops: float | None = None,
) -> Path:
    """Accuracy (%) against average MFLOPs for sweep rows, written atomically as PNG.

    Args:
        rows: sweep rows (need ``avg_mflops`` and ``accuracy`` as a fraction), or
            ``name -> rows`` to draw several models' early-exit curves in one plot.
        baselines: optional ``name -> (mflops, accuracy)``, accuracy a fraction in
            [0, 1] like the rows, drawn as labelled points (e.g. classic ViTs).
        operating_point: optional ``(label, mflops, accuracy)``: the thresholds the
            report states (e.g. the calibrated ones), marked and labelled on the curve.
        mac_budget_mflops: optional budget the thresholds were calibrated to, drawn as
            a labelled vertical line.
    """
    fig = accuracy_vs_flops_figure(rows, baselines, title, operating_point, mac_budget_mflops, where=path)
    return _save_figure(fig, path)


def accuracy_vs_flops_figure(rows, baselines=None, title=None, operating_point=None, mac_budget_mflops=None,
                             where="the plot"):
    """The ``plot_accuracy_vs_flops`` figure (a matplotlib ``Figure``), not saved."""
    curves = ({str(name): list(r) for name, r in rows.items()} if isinstance(rows, Mapping)
              else {"RAViT early exit": list(rows)})
    if not curves or not all(curves.values()):
        empty = [name for name, r in curves.items() if not r]
        raise ValueError(f"No sweep rows to plot into {where}" + (f" for {empty}." if empty else "."))
    fig, ax = _new_figure((6.0, 4.2))
    for name, curve in curves.items():
        pts = sorted((float(r["avg_mflops"]), 100.0 * float(r["accuracy"])) for r in curve)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", ms=3, label=name)
    for name, (mflops, acc) in (baselines or {}).items():
        _check_fraction(f"baseline {name!r}", acc)
        # In the legend, not beside the point: nearby points' labels would overlap.
        ax.plot([mflops], [100.0 * acc], "s", ms=6, label=name)
    if mac_budget_mflops is not None:
        ax.axvline(float(mac_budget_mflops), color="0.4", ls="--", lw=1,
                   label=f"MAC budget: {float(mac_budget_mflops):.2f} MFLOPs")
    if operating_point is not None:
        label, mflops, acc = operating_point
        _check_fraction(f"operating point {label!r}", acc)
        ax.plot([mflops], [100.0 * acc], "*", ms=13, color="crimson", zorder=5,
                label=f"{label}: {100.0 * acc:.2f}%, {float(mflops):.2f} MFLOPs")
    ax.set_xlabel("average MFLOPs per image")
    ax.set_ylabel("accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    if title:
        ax.set_title(title)
    return fig


def _check_fraction(what: str, acc) -> None:
    if not 0.0 <= float(acc) <= 1.0:
        raise ValueError(f"{what} accuracy {acc!r} is not a fraction in [0, 1] (give 0.93, not 93).")


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



def plot_per_class(report: Mapping[str, Any], path: str | Path, title: str = "per-class results",
                   max_classes: int = 40) -> Path:
    """Per-class top-1 (bars) beside the share of each class's images leaving at each
    exit (stacked bars), from ``per_class_report``; written atomically as PNG.

    With more than ``max_classes`` classes, the least accurate ones are drawn.
    """
    rows = [r for r in report["classes"] if r["images"]]
    if not rows:
        raise ValueError(f"No class has images; nothing to plot into {path}.")
    if len(rows) > max_classes:
        rows = sorted(rows, key=lambda r: r["accuracy"])[:max_classes]
        title = f"{title} ({max_classes} least accurate classes)"
    names = [r["name"] for r in rows]
    from matplotlib.figure import Figure

    height = 1.2 + 0.28 * len(rows)
    fig = Figure(figsize=(9.0, height))
    acc_ax, exit_ax = fig.subplots(1, 2, sharey=True)
    ys = list(range(len(rows)))
    acc_ax.barh(ys, [100 * r["accuracy"] for r in rows])
    acc_ax.set_yticks(ys, names, fontsize=8)
    acc_ax.invert_yaxis()
    acc_ax.set_xlim(0, 100)
    acc_ax.set_xlabel("top-1 (%)")
    acc_ax.grid(True, axis="x", alpha=0.3)
    left = [0.0] * len(rows)
    for e, exit_name in enumerate(report["exit_names"]):
        shares = [100 * r["exit_shares"][e] for r in rows]
        exit_ax.barh(ys, shares, left=left, label=exit_name)
        left = [a + b for a, b in zip(left, shares)]
    exit_ax.set_xlim(0, 100)
    exit_ax.set_xlabel("images leaving at each exit (%)")
    exit_ax.legend(loc="lower right", fontsize=7)
    fig.suptitle(title, fontsize=10)
    return _save_figure(fig, path)


def plot_confusion_matrix(report: Mapping[str, Any], path: str | Path, title: str = "confusion matrix",
                          max_classes: int = 30) -> Path:
    """Row-normalised confusion matrix (true class down, predicted across) from
    ``per_class_report``; numbers are shown up to 12 classes. Written atomically as PNG.

    With more than ``max_classes`` classes, only the counts are kept in the report
    (a matrix that size is unreadable as a picture) and this draws the most confused
    ``max_classes`` classes.
    """
    import numpy as np

    confusion = np.asarray(report["confusion_matrix"], dtype=np.float64)
    names = list(report["class_names"])
    if confusion.sum() == 0:
        raise ValueError(f"The confusion matrix is empty; nothing to plot into {path}.")
    if len(names) > max_classes:
        errors = confusion.sum(1) - np.diag(confusion)
        keep = np.sort(np.argsort(-errors, kind="stable")[:max_classes])
        confusion, names = confusion[np.ix_(keep, keep)], [names[i] for i in keep]
        title = f"{title} ({max_classes} most confused classes)"
    totals = confusion.sum(1, keepdims=True)
    shares = np.divide(confusion, totals, out=np.zeros_like(confusion), where=totals > 0)
    side = 2.0 + 0.35 * len(names)
    fig, ax = _new_figure((side + 1.0, side))
    im = ax.imshow(100 * shares, cmap="Blues", vmin=0, vmax=100)
    ticks = list(range(len(names)))
    ax.set_xticks(ticks, names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(ticks, names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(names) <= 12:
        for i in ticks:
            for j in ticks:
                if confusion[i, j]:
                    ax.text(j, i, f"{int(confusion[i, j])}", ha="center", va="center", fontsize=7,
                            color="white" if shares[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, label="% of the true class")
    ax.set_title(title, fontsize=10)
    return _save_figure(fig, path)


def plot_operating_point(per_class: Mapping[str, Any], exit_counts: Sequence[int], exit_names: Sequence[str], *,
                         heading: str, subtitle: str, histogram: str | Path | None = None,
                         per_class_path: str | Path | None = None,
                         confusion: str | Path | None = None) -> list[Path]:
    """The three plots of one operating point, each drawn where a path is given:
    the exit histogram (titled ``heading``), per-class results and the confusion
    matrix (titled with ``subtitle``). Returns the files written."""
    written = []
    if histogram is not None:
        written.append(plot_exit_histogram(exit_counts, exit_names, histogram, title=heading))
    if per_class_path is not None:
        written.append(plot_per_class(per_class, per_class_path, title=f"per class: {subtitle}"))
    if confusion is not None:
        written.append(plot_confusion_matrix(per_class, confusion, title=f"confusion matrix: {subtitle}"))
    return written
