"""Early exit for RAViT (RAVIT.md, "Early exit"): entropy, routing, sweeps, calibration.

Pure NumPy (matplotlib only inside the plotting functions) so a device scheduler
or a notebook can use it without TensorFlow.

Inputs are the logits of every exit for a set of images, ``exit_logits``: a
sequence of ``(N, C)`` arrays in exit order (the order of ``config.exit_names``).

The rule: after exit ``i`` compute ``u_i = −Σ_c p_c·ln p_c`` of ``p = softmax(logits_i)``;
stop and answer ``argmax p`` if ``u_i ≤ τ_i``, otherwise go on; the last exit always
answers. ``τ = 0`` means no early exit: only an image whose entropy is exactly 0
(a probability that saturates to exactly 1 in float64) would stop, which is the
correct reading of the rule and harmless. ``τ = ln C`` (the largest possible
entropy) stops every image at the first exit.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ravit_keras import flops
from ravit_keras.io_utils import atomic_write_bytes, atomic_write_json, atomic_write_text


# Entropy ------------------------------------------------------------------

def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - np.max(z, axis=axis, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=axis, keepdims=True)


def entropy(logits: np.ndarray) -> np.ndarray:
    """Entropy ``u = −Σ p·ln p`` (natural log, unnormalised) of ``softmax(logits)`` over the last axis.

    ``0·ln 0`` counts as 0. The result lies in ``[0, ln C]``.
    """
    z = np.asarray(logits, dtype=np.float64)
    num_classes = z.shape[-1]
    z = z - np.max(z, axis=-1, keepdims=True)
    log_p = z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))
    p = np.exp(log_p)
    terms = np.where(p > 0, p * log_p, 0.0)
    u = -np.sum(terms, axis=-1)
    # Rounding can push a near-uniform row a hair above ln C; clipping keeps the
    # documented promise that τ = ln C stops every image.
    return np.clip(u, 0.0, math.log(num_classes))


def max_entropy(num_classes: int) -> float:
    """The largest possible entropy over ``num_classes`` classes, ``ln C``."""
    return math.log(num_classes)


def validate_thresholds(thresholds: Any, num_exits: int, num_classes: int) -> np.ndarray:
    """Normalises thresholds to a float64 array of length ``num_exits − 1``.

    Accepts a scalar (the same τ after every exit but the last) or a sequence of
    length ``num_exits − 1`` or ``num_exits`` (the last exit always answers, so
    its entry is ignored).

    Raises:
        ValueError: for a wrong length, or a value that is NaN/inf, negative or
            above ``ln(num_classes)`` (the maximum possible entropy).
    """
    if int(num_exits) != num_exits or num_exits < 1:
        raise ValueError(f"num_exits must be a positive integer, got {num_exits!r}.")
    if int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}.")
    num_exits = int(num_exits)
    try:
        arr = np.asarray(thresholds, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"thresholds {thresholds!r} are not numbers.") from None
    if arr.ndim == 0:
        arr = np.full(num_exits - 1, float(arr))
        scalar = True
    elif arr.ndim == 1 and len(arr) in (num_exits - 1, num_exits):
        arr = arr[: num_exits - 1].copy()
        scalar = False
    else:
        raise ValueError(
            f"thresholds {thresholds!r} must be a scalar or have {num_exits - 1} or "
            f"{num_exits} entries (one per exit; the last is ignored) for {num_exits} exits."
        )
    limit = max_entropy(num_classes)
    for i, t in enumerate(arr.tolist()):
        where = "threshold" if scalar else f"threshold[{i}]"
        if not math.isfinite(t):
            raise ValueError(f"{where} = {t!r} is not a finite number.")
        if t < 0:
            raise ValueError(f"{where} = {t!r} is negative; entropies are >= 0.")
        if t > limit:
            raise ValueError(
                f"{where} = {t!r} is above ln({num_classes}) = {limit:.6g}, the maximum "
                f"possible entropy over {num_classes} classes; use at most {limit:.6g} "
                "(which already stops every image at that exit)."
            )
    return arr


def _check_logits(exit_logits: Sequence[np.ndarray]) -> list[np.ndarray]:
    if isinstance(exit_logits, Mapping):
        raise TypeError(
            "exit_logits is a mapping; pass a list in exit order, e.g. "
            "[outputs[name] for name in config.exit_names]."
        )
    if isinstance(exit_logits, np.ndarray) and exit_logits.ndim == 2:
        raise ValueError(
            f"exit_logits is a single {exit_logits.shape} array; pass a list with one "
            "(N, C) array per exit (e.g. [logits] for one exit)."
        )
    arrays = [np.asarray(a) for a in exit_logits]
    if not arrays:
        raise ValueError("exit_logits is empty; give the logits of at least one exit.")
    shape = arrays[0].shape
    for i, a in enumerate(arrays):
        if a.ndim != 2:
            raise ValueError(f"exit_logits[{i}] has shape {a.shape}; expected (N, C).")
        if a.shape != shape:
            raise ValueError(
                f"exit_logits[{i}] has shape {a.shape} but exit_logits[0] has {shape}; "
                "every exit needs the same images and classes."
            )
        if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
            raise ValueError(f"exit_logits[{i}] has dtype {a.dtype}; expected real numbers.")
        finite = np.isfinite(a)
        if not finite.all():
            row = int(np.argwhere(~finite)[0, 0])
            raise ValueError(f"exit_logits[{i}] has a NaN or infinite value (image {row}).")
    if shape[1] < 2:
        raise ValueError(f"exit logits have {shape[1]} class(es); need at least 2.")
    if shape[0] == 0:
        raise ValueError("exit_logits hold no images (N = 0).")
    return arrays


def _check_labels(labels: Any, num_images: int, num_classes: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != num_images:
        raise ValueError(
            f"labels have shape {y.shape}; expected ({num_images},) integer class ids."
        )
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError(f"labels must be integer class ids, got dtype {y.dtype}.")
        y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= num_classes:
        bad = y[(y < 0) | (y >= num_classes)][0]
        raise ValueError(f"label {bad} is outside [0, {num_classes}).")
    return y.astype(np.int64)


def _check_exit_macs(exit_macs: Any, num_exits: int) -> list:
    costs = flops._as_exit_macs(exit_macs)
    if len(costs) != num_exits:
        raise ValueError(
            f"exit_macs {costs} has {len(costs)} entries but the logits have {num_exits} exits."
        )
    return costs


# Routing ------------------------------------------------------------------

@dataclasses.dataclass
class Routing:
    """Where each image left and what it answered.

    Attributes:
        exit_index: (N,) int, position (in exit order) of the exit that answered.
        predictions: (N,) int, argmax of that exit's probabilities.
        entropies: (N, num_exits) float64. :func:`route` fills every exit;
            :func:`route_one_at_a_time` leaves NaN for exits an image never reached.
        probabilities: (N, C) float64, softmax of the answering exit.
    """

    exit_index: np.ndarray
    predictions: np.ndarray
    entropies: np.ndarray
    probabilities: np.ndarray

    @property
    def num_exits(self) -> int:
        return self.entropies.shape[1]

    @property
    def exit_counts(self) -> np.ndarray:
        """Images that left at each exit, in exit order."""
        return np.bincount(self.exit_index, minlength=self.num_exits)


def _exit_positions(entropies: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Exit index per image from all-exit entropies (N, E) and E−1 thresholds."""
    n, e = entropies.shape
    stop = np.ones((n, e), dtype=bool)
    stop[:, : e - 1] = entropies[:, : e - 1] <= thresholds[None, :]
    return np.argmax(stop, axis=1)  # First True: the last column always stops.


def route(exit_logits: Sequence[np.ndarray], thresholds: Any) -> Routing:
    """Routes every image by the early-exit rule, computing all exits at once.

    Equals :func:`route_one_at_a_time` except that ``entropies`` is filled for
    every exit, reached or not.
    """
    arrays = _check_logits(exit_logits)
    n, c = arrays[0].shape
    taus = validate_thresholds(thresholds, len(arrays), c)
    ent = np.stack([entropy(a) for a in arrays], axis=1)
    index = _exit_positions(ent, taus)
    probs = np.empty((n, c), dtype=np.float64)
    for e, a in enumerate(arrays):
        rows = index == e
        if rows.any():
            probs[rows] = softmax(a[rows])
    return Routing(
        exit_index=index,
        predictions=np.argmax(probs, axis=1),
        entropies=ent,
        probabilities=probs,
    )


def route_one_at_a_time(exit_logits: Sequence[np.ndarray], thresholds: Any) -> Routing:
    """Reference rule, image by image and exit by exit, as a device would run it.

    Deliberately plain: it is what :func:`route` is tested against and what the
    device scheduler follows. Exits an image never reached keep NaN entropy.
    """
    arrays = _check_logits(exit_logits)
    n, c = arrays[0].shape
    num_exits = len(arrays)
    taus = validate_thresholds(thresholds, num_exits, c)
    exit_index = np.zeros(n, dtype=np.int64)
    predictions = np.zeros(n, dtype=np.int64)
    entropies = np.full((n, num_exits), np.nan)
    probabilities = np.zeros((n, c), dtype=np.float64)
    for image in range(n):
        for e in range(num_exits):
            logits = arrays[e][image]
            u = float(entropy(logits))
            entropies[image, e] = u
            if e == num_exits - 1 or u <= taus[e]:
                p = softmax(logits)
                exit_index[image] = e
                predictions[image] = int(np.argmax(p))
                probabilities[image] = p
                break
    return Routing(exit_index, predictions, entropies, probabilities)


# Evaluation ---------------------------------------------------------------

@dataclasses.dataclass
class _ExitStats:
    """What routing needs, computed once per set of logits: entropies and correctness."""

    entropies: np.ndarray  # (N, E) float64
    correct: np.ndarray  # (N, E) bool
    costs: np.ndarray  # (E,) cumulative exit MACs
    num_classes: int

    @property
    def num_images(self) -> int:
        return self.entropies.shape[0]

    @property
    def num_exits(self) -> int:
        return self.entropies.shape[1]


def _exit_stats(exit_logits, labels, exit_macs) -> _ExitStats:
    arrays = _check_logits(exit_logits)
    n, c = arrays[0].shape
    y = _check_labels(labels, n, c)
    costs = _check_exit_macs(exit_macs, len(arrays))
    ent = np.stack([entropy(a) for a in arrays], axis=1)
    # argmax of the logits equals argmax of the softmax (ties resolve the same way).
    correct = np.stack([np.argmax(a, axis=1) == y for a in arrays], axis=1)
    integral = all(float(x).is_integer() for x in costs)
    # Integer costs keep MAC totals exact, so budget checks agree with expected_macs.
    cost_arr = np.asarray(costs, dtype=np.int64 if integral else np.float64)
    return _ExitStats(ent, correct, cost_arr, c)


def _evaluate(stats: _ExitStats, taus: np.ndarray) -> dict[str, Any]:
    n, num_exits = stats.num_images, stats.num_exits
    index = _exit_positions(stats.entropies, taus)
    counts = np.bincount(index, minlength=num_exits)
    chosen_correct = stats.correct[np.arange(n), index]
    per_exit_correct = np.bincount(index, weights=chosen_correct, minlength=num_exits)
    avg_macs = flops.expected_macs(stats.costs.tolist(), counts.tolist())
    return {
        "accuracy": float(chosen_correct.mean()),
        "exit_counts": [int(k) for k in counts],
        "exit_fractions": [float(k / n) for k in counts],
        "avg_macs": float(avg_macs),
        "avg_mflops": float(2 * avg_macs / 1e6),
        "per_exit_accuracy": [float(a) for a in stats.correct.mean(axis=0)],
        "accuracy_at_exit": [
            float(per_exit_correct[e] / counts[e]) if counts[e] else None for e in range(num_exits)
        ],
        "thresholds": [float(t) for t in taus],
    }


def evaluate_exits(
    exit_logits: Sequence[np.ndarray], labels: Any, thresholds: Any, exit_macs: Any
) -> dict[str, Any]:
    """Accuracy and average cost of routing with ``thresholds`` (JSON-ready dict).

    Args:
        exit_logits: one (N, C) array per exit, in exit order.
        labels: (N,) integer class ids.
        thresholds: scalar or per-exit thresholds (see :func:`validate_thresholds`).
        exit_macs: cumulative MACs C_i per exit (``flops.exit_macs(config)``) or a config.

    Returns:
        ``accuracy`` (routed), ``exit_counts``, ``exit_fractions``, ``avg_macs``
        (Eq. 4), ``avg_mflops`` (2·avg_macs/1e6), ``per_exit_accuracy`` (each exit
        alone on all images), ``accuracy_at_exit`` (of the images that left there,
        None where none did) and ``thresholds`` (length num_exits − 1).
    """
    stats = _exit_stats(exit_logits, labels, exit_macs)
    taus = validate_thresholds(thresholds, stats.num_exits, stats.num_classes)
    return _evaluate(stats, taus)


# Evaluating chosen thresholds on another split is the same computation.
apply_thresholds = evaluate_exits


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


# Plots --------------------------------------------------------------------

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


# Calibration --------------------------------------------------------------

def _candidate_values(u: np.ndarray, top: float, candidates: int | None) -> np.ndarray:
    """Sorted candidate thresholds for one exit: 0, ln C and that exit's entropies.

    Routing only changes at the entropies themselves, so they are the exact
    breakpoints; ``candidates`` subsamples them to that many quantiles.
    """
    values = np.unique(u)
    if candidates is not None and len(values) > candidates:
        values = np.unique(np.quantile(u, np.linspace(0.0, 1.0, candidates), method="lower"))
    return np.unique(np.concatenate([[0.0], values, [top]]))


def _line_search(stats: _ExitStats, taus: np.ndarray, e: int, values: np.ndarray):
    """Correct count and MAC total for every candidate τ_e, the other thresholds fixed.

    Images that stop before exit e do not care about τ_e; the others stop at e
    if u_e ≤ τ_e and otherwise land where the later thresholds send them.
    Sorting by u_e and cumulative sums give all candidates in O(N log N).
    """
    n = stats.num_images
    rows = np.arange(n)
    index = _exit_positions(stats.entropies, taus)
    reached = index >= e
    # Where each image lands if it passes exit e: routing with τ_e = -1 (never stop there).
    passed = taus.copy()
    passed[e] = -1.0
    later = _exit_positions(stats.entropies, passed)
    fixed_correct = int(stats.correct[rows[~reached], index[~reached]].sum())
    fixed_cost = stats.costs[index[~reached]].sum()

    u = stats.entropies[reached, e]
    order = np.argsort(u, kind="stable")
    u_sorted = u[order]
    stop_correct = stats.correct[reached, e][order].astype(np.int64)
    go_correct = stats.correct[rows[reached], later[reached]][order].astype(np.int64)
    go_cost = stats.costs[later[reached]][order]
    zero = np.zeros(1, dtype=stats.costs.dtype)
    # k images (the k lowest entropies) stop at e for a τ with k = #(u ≤ τ).
    cum_stop_correct = np.concatenate([[0], np.cumsum(stop_correct)])
    cum_go_correct = np.concatenate([[0], np.cumsum(go_correct)])
    cum_go_cost = np.concatenate([zero, np.cumsum(go_cost)])
    k = np.searchsorted(u_sorted, values, side="right")
    correct = fixed_correct + cum_stop_correct[k] + (cum_go_correct[-1] - cum_go_correct[k])
    cost = fixed_cost + k * stats.costs[e] + (cum_go_cost[-1] - cum_go_cost[k])
    return correct, cost


def _better(candidate, incumbent, mode: str) -> bool:
    """Strict lexicographic improvement; (correct, cost) pairs."""
    c_ok, c_cost = candidate
    i_ok, i_cost = incumbent
    if mode == "budget":  # Most accurate, then cheapest.
        return c_ok > i_ok or (c_ok == i_ok and c_cost < i_cost)
    return c_cost < i_cost or (c_cost == i_cost and c_ok > i_ok)  # Cheapest, then most accurate.


def _pick(correct: np.ndarray, cost: np.ndarray, ok: np.ndarray, mode: str) -> int | None:
    """Index of the best feasible candidate (the smallest τ among equals), or None."""
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        return None
    if mode == "budget":
        keep = idx[correct[idx] == correct[idx].max()]
        keep = keep[cost[keep] == cost[keep].min()]
    else:
        keep = idx[cost[idx] == cost[idx].min()]
        keep = keep[correct[keep] == correct[keep].max()]
    return int(keep[0])


def _centre_in_gaps(taus: np.ndarray, entropies: np.ndarray, top: float) -> np.ndarray:
    """Moves each τ from a calibration entropy to the middle of the gap above it.

    Routing on the calibration split is unchanged (no entropy lies inside the
    gap), but a runtime whose entropy differs in the last bits (another
    summation order, float32 on a phone) no longer flips images sitting on τ.
    τ = 0 ("no early exit") is kept as it is.
    """
    centred = taus.copy()
    for e, tau in enumerate(taus):
        if tau <= 0.0 or tau >= top:
            continue
        above = entropies[:, e][entropies[:, e] > tau]
        upper = float(above.min()) if above.size else top
        centred[e] = 0.5 * (tau + upper)
    return centred


def calibrate_thresholds(
    exit_logits: Sequence[np.ndarray],
    labels: Any,
    exit_macs: Any,
    *,
    mac_budget: float | None = None,
    max_accuracy_drop: float | None = None,
    candidates: int | None = None,
    max_rounds: int = 20,
) -> dict[str, Any]:
    """Chooses per-exit thresholds on this (calibration) split.

    Exactly one objective:
      * ``mac_budget``: the most accurate setting whose average MACs per image
        are ≤ the budget (ties: the cheaper one);
      * ``max_accuracy_drop`` (fraction, 0..1): the cheapest setting whose routed
        accuracy is ≥ the accuracy without early exit (the last exit alone) minus
        the drop (ties: the more accurate one).

    Method: the search runs over each exit's candidate thresholds (0, ln C and
    that exit's entropies, which are the exact breakpoints of the rule;
    ``candidates`` subsamples them to that many quantiles). Changing one
    threshold with the others fixed is evaluated for every candidate at once
    (sort + cumulative sums), so with 2 exits the single threshold is searched
    exhaustively and the result is optimal. With 3+ exits it is a coordinate
    search: start from the best feasible uniform setting (the same τ for every
    exit, over the default grid and the candidates), then in rounds, coarse to
    fine, (a) a pair move for exits e and e+1: for each of up to 256 quantile
    values of τ_e, the best τ_{e+1}, and (b) the best τ_e alone; stop when a
    round improves nothing (or after ``max_rounds``). With 3 exits the pair
    move is a full grid × exact search; with more it finds a local optimum.
    Among candidates with equal results the smallest τ is kept.

    Evaluate the result on another split with :func:`apply_thresholds`.

    Returns:
        ``{"thresholds": [...], "calibration": evaluate_exits(...) on this split,
        "objective": ..., "reference_accuracy": last-exit accuracy}`` plus the
        budget or drop that was asked for.

    Raises:
        ValueError: without exactly one objective, for a budget below the first
            exit's cost (names the minimum), or a drop no setting meets.
    """
    if (mac_budget is None) == (max_accuracy_drop is None):
        raise ValueError(
            f"Give exactly one of mac_budget (got {mac_budget!r}) and max_accuracy_drop "
            f"(got {max_accuracy_drop!r})."
        )
    if candidates is not None and (int(candidates) != candidates or candidates < 2):
        raise ValueError(f"candidates must be None or an integer >= 2, got {candidates!r}.")
    stats = _exit_stats(exit_logits, labels, exit_macs)
    n, num_exits, top = stats.num_images, stats.num_exits, max_entropy(stats.num_classes)
    reference = float(stats.correct[:, -1].mean())

    if mac_budget is not None:
        mode = "budget"
        if not math.isfinite(mac_budget):
            raise ValueError(f"mac_budget = {mac_budget!r} is not a finite number.")
        minimum = float(stats.costs[0])
        if mac_budget < minimum:
            raise ValueError(
                f"mac_budget = {mac_budget!r} MACs is infeasible: the minimum possible average "
                f"is {minimum:.10g} MACs (every image leaving at the first exit)."
            )

        def feasible(correct, cost):
            return cost / n <= mac_budget
    else:
        mode = "drop"
        if not (math.isfinite(max_accuracy_drop) and 0.0 <= max_accuracy_drop <= 1.0):
            raise ValueError(
                f"max_accuracy_drop = {max_accuracy_drop!r} must be a fraction in [0, 1] "
                "(0.01 for one point)."
            )
        # The tolerance absorbs rounding in reference − drop, not a real accuracy loss.
        target = reference - max_accuracy_drop - 1e-12

        def feasible(correct, cost):
            return correct / n >= target

    values = [_candidate_values(stats.entropies[:, e], top, candidates) for e in range(num_exits - 1)]

    def score(taus):
        index = _exit_positions(stats.entropies, taus)
        correct = int(stats.correct[np.arange(n), index].sum())
        return correct, stats.costs[index].sum()

    # Start: the best feasible uniform setting (with 2 exits the line search below covers it all).
    uniform = np.unique(np.concatenate([default_threshold_grid(stats.num_classes), *values]))
    if num_exits > 2 and len(uniform) > 512:
        uniform = np.unique(np.quantile(uniform, np.linspace(0.0, 1.0, 512), method="lower"))
    best_taus, best = None, None
    start_points = [np.full(num_exits - 1, t) for t in uniform] if num_exits > 2 else [
        np.zeros(num_exits - 1), np.full(num_exits - 1, top)
    ]
    for taus in start_points:
        s = score(taus)
        if feasible(*s) and (best is None or _better(s, best, mode)):
            best_taus, best = taus, s

    # Coarser grids for the first threshold of a pair move: each grid value costs a line search.
    pair_values = [
        _candidate_values(stats.entropies[:, e], top, min(candidates or 256, 256))
        for e in range(num_exits - 1)
    ]

    def line_move(base: np.ndarray, e: int) -> bool:
        nonlocal best_taus, best
        correct, cost = _line_search(stats, base, e, values[e])
        j = _pick(correct, cost, feasible(correct, cost), mode)
        if j is None:
            return False
        s = (int(correct[j]), cost[j])
        if best is not None and not _better(s, best, mode):
            return False
        best_taus = base.copy()
        best_taus[e] = values[e][j]
        best = s
        return True

    for _ in range(max_rounds):
        changed = False
        for e in range(num_exits - 1):
            current = best_taus if best_taus is not None else np.zeros(num_exits - 1)
            if e + 1 < num_exits - 1:
                # Pair move: at a binding budget one threshold alone is often stuck;
                # moving τ_e and τ_{e+1} together trades cost between exits.
                for t in pair_values[e]:
                    base = current.copy()
                    base[e] = t
                    changed |= line_move(base, e + 1)
            changed |= line_move(best_taus if best_taus is not None else current, e)
        if not changed:
            break

    if best_taus is None:
        raise ValueError(
            f"No thresholds keep the accuracy within max_accuracy_drop = {max_accuracy_drop!r} "
            f"of the no-early-exit accuracy {reference:.4f} on this split "
            f"(even τ = 0 stops some images with zero entropy at an earlier exit)."
        )
    best_taus = _centre_in_gaps(best_taus, stats.entropies, top)
    result = {
        "thresholds": [float(t) for t in best_taus],
        "calibration": _evaluate(stats, best_taus),
        "objective": "mac_budget" if mode == "budget" else "max_accuracy_drop",
        "reference_accuracy": reference,
    }
    if mode == "budget":
        result["mac_budget"] = float(mac_budget)
    else:
        result["max_accuracy_drop"] = float(max_accuracy_drop)
    return result
