"""Routing images through exits with the early-exit rule, and the figures of a routing.

Inputs are the logits of every exit for a set of images, ``exit_logits``: a
sequence of ``(N, C)`` arrays in exit order (the order of ``config.exit_names``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Sequence

import numpy as np

from ravit_keras.exits.uncertainty import entropy, softmax, validate_thresholds
from ravit_keras.model import flops


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
