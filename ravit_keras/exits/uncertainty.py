"""Softmax entropy (the paper's uncertainty u_i) and threshold validation (NumPy only)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


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


def display_rounding(value: float) -> float:
    """Half a unit in the sixth significant digit of ``value``: how far above ``value`` its
    printed form (``%g``, e.g. ln 5 = 1.60944) may lie."""
    return 0.5 * 10.0 ** (math.floor(math.log10(value)) - 5)


def validate_thresholds(thresholds: Any, num_exits: int, num_classes: int) -> np.ndarray:
    """Normalises thresholds to a float64 array of length ``num_exits − 1``.

    Accepts a scalar (the same τ after every exit but the last) or a sequence of
    length ``num_exits − 1`` or ``num_exits`` (the last exit always answers, so
    its entry is ignored).

    Raises:
        ValueError: for a wrong length, or a value that is NaN/inf, negative or
            above ``ln(num_classes)`` (the maximum possible entropy). A value above
            ln C by no more than ``display_rounding`` (ln C typed as printed) is ln C.
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
        if t > limit + display_rounding(limit):
            raise ValueError(
                f"{where} = {t!r} is above ln({num_classes}) = {limit:.8g}, the maximum "
                f"possible entropy over {num_classes} classes; use at most {limit:.8g} "
                "(which already stops every image at that exit)."
            )
        arr[i] = min(t, limit)  # ln C as printed (e.g. 1.60944 for ln 5) is ln C.
    return arr

