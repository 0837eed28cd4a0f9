"""Threshold calibration: the per-exit τ that meet an accuracy or compute budget."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ravit_keras.exits.routing import (
    _evaluate,
    _exit_positions,
    _exit_stats,
    _ExitStats,
)
from ravit_keras.exits.sweep import default_threshold_grid
from ravit_keras.exits.uncertainty import max_entropy


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
