"""Early exit: entropy, routing (batched == one at a time), evaluation, sweeps, calibration."""


import numpy as np
import pytest

from ravit_keras import exits
from tests.exits.helpers import make_logits

# Calibration --------------------------------------------------------------

@pytest.mark.parametrize("num_exits,costs", [(2, [10, 100]), (3, [10, 30, 100])])
@pytest.mark.parametrize("budget", [10, 25, 50, 80, 100])
def test_calibration_meets_budget(num_exits, costs, budget):
    exit_logits, labels = make_logits(5, num_exits, n=300)
    result = exits.calibrate_thresholds(exit_logits, labels, costs, mac_budget=budget)
    cal = result["calibration"]
    assert cal["avg_macs"] <= budget
    assert len(result["thresholds"]) == num_exits - 1
    assert cal == exits.evaluate_exits(exit_logits, labels, result["thresholds"], costs)
    # At least as good as the best uniform threshold that fits the budget.
    uniform = [r for r in exits.sweep(exit_logits, labels, costs) if r["avg_macs"] <= budget]
    assert cal["accuracy"] >= max(r["accuracy"] for r in uniform)


def test_calibration_two_exits_is_exhaustive():
    exit_logits, labels = make_logits(6, 2, n=200)
    costs, budget = [10, 100], 55
    result = exits.calibrate_thresholds(exit_logits, labels, costs, mac_budget=budget)
    best = max(
        (r["accuracy"], -r["avg_macs"])
        for r in (exits.evaluate_exits(exit_logits, labels, t, costs) for t in np.unique(exits.entropy(exit_logits[0])))
        if r["avg_macs"] <= budget
    )
    assert (result["calibration"]["accuracy"], -result["calibration"]["avg_macs"]) == best


def test_calibration_subsampled_candidates():
    exit_logits, labels = make_logits(8, 3, n=300)
    result = exits.calibrate_thresholds(exit_logits, labels, [10, 30, 100], mac_budget=40, candidates=16)
    assert result["calibration"]["avg_macs"] <= 40


def test_calibration_infeasible_budget():
    exit_logits, labels = make_logits(5, 2, n=50)
    with pytest.raises(ValueError, match="minimum possible average is 10 MACs"):
        exits.calibrate_thresholds(exit_logits, labels, [10, 100], mac_budget=9.5)
    assert exits.calibrate_thresholds(exit_logits, labels, [10, 100], mac_budget=10)["calibration"][
        "exit_counts"
    ] == [50, 0]


@pytest.mark.parametrize(
    "kwargs", [{}, {"mac_budget": 50, "max_accuracy_drop": 0.01}]
)
def test_calibration_needs_one_objective(kwargs):
    exit_logits, labels = make_logits(5, 2, n=50)
    with pytest.raises(ValueError, match="exactly one"):
        exits.calibrate_thresholds(exit_logits, labels, [10, 100], **kwargs)


@pytest.mark.parametrize("num_exits,costs", [(2, [10, 100]), (3, [10, 30, 100])])
@pytest.mark.parametrize("drop", [0.0, 0.02, 0.1])
def test_calibration_accuracy_drop(num_exits, costs, drop):
    exit_logits, labels = make_logits(9, num_exits, n=300)
    result = exits.calibrate_thresholds(exit_logits, labels, costs, max_accuracy_drop=drop)
    cal = result["calibration"]
    reference = result["reference_accuracy"]
    assert reference == cal["per_exit_accuracy"][-1]
    assert cal["accuracy"] >= reference - drop - 1e-12
    assert cal["avg_macs"] <= costs[-1]
    # The cheapest uniform setting meeting the target is no cheaper than the result.
    uniform = [r for r in exits.sweep(exit_logits, labels, costs) if r["accuracy"] >= reference - drop - 1e-12]
    assert cal["avg_macs"] <= min(r["avg_macs"] for r in uniform)
    with pytest.raises(ValueError, match="1.5"):
        exits.calibrate_thresholds(exit_logits, labels, costs, max_accuracy_drop=1.5)


def test_calibrated_thresholds_apply_to_another_split():
    exit_logits, labels = make_logits(10, 3, n=400)
    cal = [a[:200] for a in exit_logits], labels[:200]
    test = [a[200:] for a in exit_logits], labels[200:]
    result = exits.calibrate_thresholds(*cal, [10, 30, 100], mac_budget=50)
    held_out = exits.apply_thresholds(*test, result["thresholds"], [10, 30, 100])
    assert sum(held_out["exit_counts"]) == 200


def test_single_exit_model():
    exit_logits, labels = make_logits(11, 1, n=50)
    r = exits.route(exit_logits, 0.5)
    assert (r.exit_index == 0).all()
    result = exits.calibrate_thresholds(exit_logits, labels, [100], mac_budget=100)
    assert result["thresholds"] == []
    assert result["calibration"]["accuracy"] == result["reference_accuracy"]
