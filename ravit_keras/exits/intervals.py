"""How far figures measured on few images can be trusted (NumPy only).

Calibration chooses thresholds on a few hundred images and ``--mode auto`` compares
conversions on the same few: this module puts an interval on those figures.

    wilson_interval          an accuracy (k correct of n): the Wilson score interval
    bootstrap_mean_interval  an average (MACs per image): a seeded percentile bootstrap
    operating_point_interval both, for one set of thresholds on labelled exit logits
    resolution_warning       one line when the calibration set cannot tell the budgets apart
    paired_accuracy_loss     two models on the same images: agreement and a one-sided
                             bound on the accuracy one loses against the other
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any, Mapping, Sequence

import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
# The resolution one budget asks for: the spacing of convert's default budgets (0.9, 0.8, ...).
DEFAULT_BUDGET_RESOLUTION = 0.1


def _z(confidence: float, sides: int) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}.")
    return NormalDist().inv_cdf(1.0 - (1.0 - confidence) / sides)


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE, *,
                    sides: int = 2) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n``.

    Unlike the normal approximation it stays inside [0, 1] and is not empty at
    0/n or n/n. ``sides=1`` gives the bounds of two one-sided intervals at
    ``confidence`` each. ``n = 0`` gives (0, 1): nothing is known.
    """
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}.")
    if n == 0:
        return 0.0, 1.0
    z = _z(confidence, sides)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At 0/n and n/n the bound is exactly 0 or 1; rounding would leave 1e-17.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def bootstrap_mean_interval(values: Any, confidence: float = CONFIDENCE, *, resamples: int = BOOTSTRAP_RESAMPLES,
                            seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of ``mean(values)``, seeded (the same call gives the same interval).

    A resample of n values drawn with replacement is a multinomial count of each
    distinct value, which is how it is drawn here: per-image MACs take one value
    per exit, so this costs O(resamples x exits), not O(resamples x n).
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("bootstrap_mean_interval needs at least one value.")
    if int(resamples) != resamples or resamples < 2:
        raise ValueError(f"resamples must be an integer >= 2, got {resamples!r}.")
    _z(confidence, 2)
    distinct, counts = np.unique(values, return_counts=True)
    n = values.size
    rng = np.random.default_rng(seed)
    means = np.empty(int(resamples))
    step = max(1, 2_000_000 // max(distinct.size, 1))  # Bounds the memory of one draw.
    for start in range(0, int(resamples), step):
        stop = min(int(resamples), start + step)
        means[start:stop] = rng.multinomial(n, counts / n, size=stop - start) @ distinct / n
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def operating_point_interval(exit_logits: Sequence[np.ndarray], labels: Any, exit_macs: Sequence[float],
                             thresholds: Any, *, full_macs: float | None = None,
                             confidence: float = CONFIDENCE, resamples: int = BOOTSTRAP_RESAMPLES,
                             seed: int = BOOTSTRAP_SEED) -> dict[str, Any]:
    """Intervals of one operating point's figures on these (calibration) images.

    ``accuracy``: Wilson; ``avg_macs`` (and ``mac_fraction`` of ``full_macs`` when
    given): a seeded bootstrap of the images, the thresholds held fixed. They say how
    much the same thresholds' figures move on another sample of as many images; the
    choice of thresholds on this sample adds to that.

    Returns:
        ``{"confidence", "images", "accuracy": [lo, hi], "avg_macs": [lo, hi],
        "mac_fraction": [lo, hi] (with full_macs), "method"}``, JSON-ready.
    """
    from ravit_keras.exits.routing import route

    labels = np.asarray(labels).ravel()
    routing = route(exit_logits, thresholds)
    n = len(labels)
    correct = int(np.sum(routing.predictions == labels))
    costs = np.asarray(exit_macs, dtype=np.float64)[routing.exit_index]
    acc = wilson_interval(correct, n, confidence)
    macs = bootstrap_mean_interval(costs, confidence, resamples=resamples, seed=seed)
    result: dict[str, Any] = {"confidence": confidence, "images": n, "accuracy": list(acc),
                              "avg_macs": list(macs)}
    if full_macs:
        result["mac_fraction"] = [m / float(full_macs) for m in macs]
    result["method"] = (f"accuracy: Wilson score; MACs: percentile bootstrap of the images "
                        f"({resamples} resamples, seed {seed}), thresholds fixed")
    return result


def resolution_warning(points: Sequence[Mapping[str, Any]], *, spacing: float | None = None) -> str | None:
    """One line (the warning's text) when the calibration set is too small for the budgets asked of it, else None.

    ``points``: one per requested budget, ``{"mac_fraction": budget, "thresholds":
    [...], "interval": operating_point_interval(..., full_macs=...)}``.

    The rule: the resolution asked for is the smallest gap between the requested
    budgets (``spacing``; ``DEFAULT_BUDGET_RESOLUTION``, 0.1 of the full model's
    MACs, for a single budget). Warn when (a) an operating point's MAC-fraction
    interval is wider than that resolution: another sample of as many images
    could land it on a neighbouring budget; or (b) two budgets give the same
    thresholds while the point's interval reaches the smaller of the two: the
    budget binds, yet this set cannot place a point between them.
    """
    if not points:
        return None
    budgets = sorted({float(p["mac_fraction"]) for p in points})
    if spacing is None:
        gaps = np.diff(budgets)
        spacing = float(gaps.min()) if gaps.size else DEFAULT_BUDGET_RESOLUTION
    n = points[0]["interval"]["images"]
    wide = [p for p in points if np.diff(p["interval"]["mac_fraction"])[0] > spacing]
    same = []
    for a, b in zip(points, points[1:]):
        if list(a["thresholds"]) == list(b["thresholds"]) and a["mac_fraction"] != b["mac_fraction"]:
            smaller = min(a["mac_fraction"], b["mac_fraction"])
            if a["interval"]["mac_fraction"][1] >= smaller:
                same.append((a["mac_fraction"], b["mac_fraction"]))
    if not (wide or same):
        return None
    why = []
    if wide:
        widest = max(wide, key=lambda p: np.diff(p["interval"]["mac_fraction"])[0])
        lo, hi = widest["interval"]["mac_fraction"]
        why.append(f"the MAC share of the point for budget {widest['mac_fraction']:g} could be anywhere in "
                   f"[{lo:.2f}, {hi:.2f}] on as many other images, wider than the {spacing:g} between budgets")
    if same:
        why.append("budgets " + ", ".join(f"{a:g} and {b:g}" for a, b in same) + " give the same thresholds")
    return (f"{n} calibration images are too few for this budget resolution: {'; '.join(why)} "
            f"({100 * points[0]['interval']['confidence']:g} % intervals; more images: --calibration-images, "
            "or train with a larger --calibration-holdout)")


def paired_accuracy_loss(reference_correct: Any, candidate_correct: Any, *, agreement: float | None = None,
                         confidence: float = CONFIDENCE) -> dict[str, Any]:
    """How much accuracy a candidate loses against a reference on the SAME images, with a bound.

    Only the discordant images carry information (McNemar): ``b`` the reference
    gets right and the candidate wrong, ``c`` the other way round. Given their
    number ``k = b + c``, the loss is ``(b - c) / n = k (2 p - 1) / n`` with ``p =
    b / k``; a one-sided Wilson upper bound of ``p`` at ``confidence`` gives the
    upper bound of the loss. One image more or less among the discordant ones
    moves this bound by about 1/n, not across a decision on its own.

    Args:
        reference_correct, candidate_correct: per-image booleans (right answer or not).
        agreement: the share of images on which the two answer the same class
            (recorded as is; None: not known).

    Returns:
        ``{"images", "reference_accuracy", "candidate_accuracy", "agreement",
        "reference_only_correct": b, "candidate_only_correct": c, "loss", "loss_upper_bound",
        "confidence"}``, JSON-ready (accuracies and losses as fractions).
    """
    ref = np.asarray(reference_correct, dtype=bool).ravel()
    cand = np.asarray(candidate_correct, dtype=bool).ravel()
    if ref.shape != cand.shape or ref.size == 0:
        raise ValueError(f"need two equally long, non-empty sets of answers, got {ref.size} and {cand.size}.")
    n = ref.size
    b = int(np.sum(ref & ~cand))
    c = int(np.sum(~ref & cand))
    k = b + c
    upper = k * (2 * wilson_interval(b, k, confidence, sides=1)[1] - 1) / n if k else 0.0
    return {"images": n, "reference_accuracy": float(ref.mean()), "candidate_accuracy": float(cand.mean()),
            "agreement": None if agreement is None else float(agreement),
            "reference_only_correct": b, "candidate_only_correct": c, "loss": (b - c) / n,
            "loss_upper_bound": float(upper), "confidence": confidence}



def format_operating_points(points: Sequence[Mapping[str, Any]], full_macs: float) -> list[str]:
    """A small table of operating points (``OperatingPoint.to_dict()``) with their intervals."""
    if not points:
        return []
    first = points[0].get("interval") or {}
    lines = [f"operating points on {first.get('images', '?')} calibration images "
             f"([{100 * first.get('confidence', CONFIDENCE):g} % interval]):",
             f"  {'budget':>6}  {'MAC share':<18}  top-1"]
    for p in points:
        iv = p.get("interval") or {}
        share, acc = p["avg_macs"] / full_macs, iv.get("accuracy")
        share_text = f"{share:.2f}" + (" [{:.2f}, {:.2f}]".format(*iv["mac_fraction"]) if "mac_fraction" in iv else "")
        acc_text = f"{100 * p['accuracy']:.2f}%" + (f" [{100 * acc[0]:.1f}, {100 * acc[1]:.1f}]" if acc else "")
        budget = p.get("mac_fraction")
        lines.append(f"  {'-' if budget is None else f'{budget:g}':>6}  {share_text:<18}  {acc_text}")
    return lines
