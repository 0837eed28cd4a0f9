"""Early exit: entropy, routing (batched == one at a time), evaluation, sweeps, calibration."""

import csv
import json
import math

import numpy as np
import pytest

from ravit_keras import early_exit as ee


def make_logits(seed, num_exits, n=300, c=10):
    """Random logits whose later exits are more often right and more confident."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, n)
    exits = []
    for e in range(num_exits):
        scale = rng.uniform(0.2, 3.0, size=(n, 1))  # Spread entropies over [0, ln C].
        logits = rng.normal(size=(n, c)) * scale
        logits[np.arange(n), labels] += rng.uniform(0, 2.0 + 2.0 * e, size=n)
        exits.append(logits.astype(np.float32))
    return exits, labels


# Entropy ------------------------------------------------------------------

@pytest.mark.parametrize("c", [2, 10, 200, 1000])
def test_entropy_uniform_is_ln_c(c):
    assert ee.entropy(np.zeros(c)) == pytest.approx(math.log(c), rel=1e-12)
    assert ee.entropy(np.full((3, c), 7.5)) == pytest.approx([math.log(c)] * 3, rel=1e-12)


def test_entropy_one_hot_is_zero():
    logits = np.array([[1000.0, 0.0, 0.0], [0.0, -1e4, 800.0]])
    np.testing.assert_array_equal(ee.entropy(logits), [0.0, 0.0])


def test_entropy_hand_values():
    # p = (1/2, 1/4, 1/4): u = 1/2·ln 2 + 2·(1/4)·ln 4 = 1.5·ln 2.
    logits = np.log([0.5, 0.25, 0.25]) + 123.0
    assert ee.entropy(logits) == pytest.approx(1.5 * math.log(2), rel=1e-12)
    # p = (0.9, 0.1): u = −0.9·ln 0.9 − 0.1·ln 0.1.
    assert ee.entropy(np.log([0.9, 0.1])) == pytest.approx(
        -0.9 * math.log(0.9) - 0.1 * math.log(0.1), rel=1e-12
    )
    assert ee.entropy(np.zeros((2, 3), np.float32)).dtype == np.float64


def test_softmax_stable_float64():
    p = ee.softmax(np.array([[1e4, 1e4 - 1.0, 0.0]], dtype=np.float32))
    assert p.dtype == np.float64
    assert np.isfinite(p).all()
    assert p.sum() == pytest.approx(1.0)
    assert p[0, 0] / p[0, 1] == pytest.approx(math.e)


# Threshold validation -------------------------------------------------------

def test_validate_thresholds_accepts():
    np.testing.assert_array_equal(ee.validate_thresholds(0.1, 3, 10), [0.1, 0.1])
    np.testing.assert_array_equal(ee.validate_thresholds([0.1, 0.2], 3, 10), [0.1, 0.2])
    np.testing.assert_array_equal(ee.validate_thresholds([0.1, 0.2, 99.0], 3, 10), [0.1, 0.2])
    np.testing.assert_array_equal(ee.validate_thresholds(math.log(10), 2, 10), [math.log(10)])
    assert ee.validate_thresholds(0.3, 1, 10).shape == (0,)
    assert ee.validate_thresholds(np.float32(0.5), 2, 10).dtype == np.float64


@pytest.mark.parametrize(
    "thresholds,match",
    [
        (float("nan"), "nan.*not a finite"),
        ([0.1, float("inf")], r"threshold\[1\] = inf.*not a finite"),
        (-0.01, "-0.01 is negative"),
        ([0.2, -1.0], r"threshold\[1\] = -1.0 is negative"),
        (2.31, "2.31 is above ln\\(10\\).*maximum possible entropy"),
        ([0.1], "must be a scalar or have 2 or 3 entries"),
        ([0.1, 0.1, 0.1, 0.1], "must be a scalar or have 2 or 3 entries"),
        ([[0.1, 0.2]], "must be a scalar or have 2 or 3 entries"),
        ("abc", "are not numbers"),
    ],
)
def test_validate_thresholds_errors(thresholds, match):
    with pytest.raises(ValueError, match=match):
        ee.validate_thresholds(thresholds, 3, 10)


# Routing ------------------------------------------------------------------

def _assert_same_routing(batched, reference):
    np.testing.assert_array_equal(batched.exit_index, reference.exit_index)
    np.testing.assert_array_equal(batched.predictions, reference.predictions)
    np.testing.assert_allclose(batched.probabilities, reference.probabilities, rtol=1e-12, atol=0)
    reached = np.arange(batched.num_exits)[None, :] <= reference.exit_index[:, None]
    np.testing.assert_array_equal(batched.entropies[reached], reference.entropies[reached])
    assert np.isnan(reference.entropies[~reached]).all()
    assert np.isfinite(batched.entropies).all()


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("num_exits", [2, 3])
def test_route_matches_one_at_a_time(seed, num_exits):
    exits, _ = make_logits(seed, num_exits, n=120)
    rng = np.random.default_rng(100 + seed)
    ent = np.stack([ee.entropy(a) for a in exits], axis=1)
    settings = [0.0, math.log(10), 0.3, 1.0, float(rng.uniform(0, math.log(10)))]
    settings.append(list(rng.uniform(0, math.log(10), num_exits - 1)))
    settings.append(list(rng.uniform(0, math.log(10), num_exits)))  # Last entry ignored.
    # Thresholds exactly at an image's entropy: u ≤ τ must stop it in both versions.
    settings.append([float(ent[int(rng.integers(120)), e]) for e in range(num_exits - 1)])
    for thresholds in settings:
        batched = ee.route(exits, thresholds)
        _assert_same_routing(batched, ee.route_one_at_a_time(exits, thresholds))
    on_boundary = ee.route(exits, settings[-1])
    assert on_boundary.exit_counts.sum() == 120


def test_route_extremes():
    exits, _ = make_logits(7, 3, n=200)
    none_early = ee.route(exits, 0.0)
    assert (none_early.exit_index == 2).all()
    np.testing.assert_array_equal(none_early.predictions, np.argmax(exits[2], axis=1))
    # Near-uniform rows included: clipping keeps their entropy within ln C.
    exits[0][:5] = 0.0
    all_first = ee.route(exits, math.log(10))
    assert (all_first.exit_index == 0).all()
    np.testing.assert_array_equal(all_first.exit_counts, [200, 0, 0])
    np.testing.assert_allclose(all_first.probabilities, ee.softmax(exits[0]))


def test_route_per_exit_thresholds():
    exits, _ = make_logits(3, 3, n=200)
    # Never stop at exit 1, always stop at exit 2.
    r = ee.route(exits, [0.0, math.log(10)])
    assert (r.exit_index == 1).all()


def test_route_input_errors():
    exits, _ = make_logits(0, 2, n=10)
    with pytest.raises(TypeError, match="mapping"):
        ee.route({"exit_1": exits[0], "exit_2": exits[1]}, 0.1)
    with pytest.raises(ValueError, match="same images"):
        ee.route([exits[0], exits[1][:5]], 0.1)
    bad = exits[1].copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="image 3"):
        ee.route([exits[0], bad], 0.1)
    with pytest.raises(ValueError, match="single"):
        ee.route(exits[0], 0.1)


# Evaluation ---------------------------------------------------------------

def _hand_example():
    # 4 images, 3 classes, 3 exits. "conf k" = logit 20 on class k (u ≈ 0); zeros = uniform (u = ln 3).
    z = [0.0, 0.0, 0.0]
    exit0 = [[20, 0, 0], z, [0, 20, 0], z]
    exit1 = [z, [0, 0, 20], z, z]
    exit2 = [[20, 0, 0], [20, 0, 0], [20, 0, 0], [0, 0, 20]]
    labels = [0, 2, 0, 1]
    return [np.array(a, dtype=np.float64) for a in (exit0, exit1, exit2)], np.array(labels)


def test_evaluate_exits_hand_example():
    exits, labels = _hand_example()
    r = ee.evaluate_exits(exits, labels, 0.1, [10, 30, 100])
    # img0 stops at exit 0 (right), img1 at exit 1 (right), img2 at exit 0 (predicts 1: wrong),
    # img3 runs to exit 2 (predicts 2: wrong).
    assert r["exit_counts"] == [2, 1, 1]
    assert r["exit_fractions"] == [0.5, 0.25, 0.25]
    assert r["accuracy"] == 0.5
    assert r["avg_macs"] == (2 * 10 + 1 * 30 + 1 * 100) / 4 == 37.5
    assert r["avg_mflops"] == pytest.approx(2 * 37.5 / 1e6)
    # Each exit alone (argmax of zeros is class 0): exit0 1/4, exit1 3/4, exit2 2/4.
    assert r["per_exit_accuracy"] == [0.25, 0.75, 0.5]
    assert r["accuracy_at_exit"] == [0.5, 1.0, 0.0]
    assert r["thresholds"] == [0.1, 0.1]
    json.dumps(r)

    r0 = ee.evaluate_exits(exits, labels, 0.0, [10, 30, 100])
    assert r0["exit_counts"] == [0, 0, 4]
    assert r0["accuracy_at_exit"] == [None, None, 0.5]
    assert r0["avg_macs"] == 100.0
    assert ee.apply_thresholds is ee.evaluate_exits


def test_evaluate_exits_validation():
    exits, labels = _hand_example()
    with pytest.raises(ValueError, match="3 exits"):
        ee.evaluate_exits(exits, labels, 0.1, [10, 100])
    with pytest.raises(ValueError, match="label 3"):
        ee.evaluate_exits(exits, [0, 1, 2, 3], 0.1, [10, 30, 100])
    with pytest.raises(ValueError, match=r"\(4,\)"):
        ee.evaluate_exits(exits, [0, 1], 0.1, [10, 30, 100])


# Sweep and files ------------------------------------------------------------

def test_sweep_cost_non_increasing():
    exits, labels = make_logits(1, 3, n=400)
    rows = ee.sweep(exits, labels, [10, 30, 100])
    taus = [r["tau"] for r in rows]
    assert taus == sorted(taus) and taus[0] == 0.0 and taus[-1] == pytest.approx(math.log(10))
    costs = [r["avg_macs"] for r in rows]
    assert all(b <= a for a, b in zip(costs, costs[1:]))
    assert costs[0] == 100.0 and costs[-1] == 10.0
    assert rows[0]["accuracy"] == rows[0]["per_exit_accuracy"][2]
    assert rows[-1]["accuracy"] == rows[-1]["per_exit_accuracy"][0]


def test_sweep_custom_grid():
    exits, labels = make_logits(2, 3, n=100)
    rows = ee.sweep(exits, labels, [10, 30, 100], thresholds=[0.2, [0.1, 0.5]])
    assert rows[0]["tau"] == 0.2 and rows[0]["thresholds"] == [0.2, 0.2]
    assert rows[1]["tau"] is None and rows[1]["thresholds"] == [0.1, 0.5]
    assert rows[1] == {"tau": None, **ee.evaluate_exits(exits, labels, [0.1, 0.5], [10, 30, 100])}


def test_save_sweep_csv_and_json(tmp_path):
    exits, labels = _hand_example()
    rows = ee.sweep(exits, labels, [10, 30, 100], thresholds=[0.0, 0.1])
    ee.save_sweep(rows, tmp_path / "sweep.json")
    assert json.loads((tmp_path / "sweep.json").read_text()) == rows
    ee.save_sweep(rows, tmp_path / "sub" / "sweep.csv")
    with open(tmp_path / "sub" / "sweep.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 2
    assert float(table[1]["accuracy"]) == 0.5
    assert [int(table[1][f"exit_counts.{i}"]) for i in range(3)] == [2, 1, 1]
    assert float(table[1]["avg_macs"]) == 37.5
    assert table[0]["accuracy_at_exit.0"] == ""  # None.
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["sweep.csv"]
    with pytest.raises(ValueError, match="sweep.txt"):
        ee.save_sweep(rows, tmp_path / "sweep.txt")


def _is_png(path):
    data = path.read_bytes()
    return len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots(tmp_path):
    exits, labels = make_logits(4, 2, n=200)
    rows = ee.sweep(exits, labels, [10, 100])
    out = ee.plot_accuracy_vs_flops(
        rows, tmp_path / "acc.png", baselines={"ViT-3": (0.15, 0.6), "ViT-4": (0.2, 0.62)}, title="t"
    )
    assert _is_png(out)
    assert _is_png(ee.plot_exit_histogram(rows[5]["exit_counts"], ["exit_1", "exit_2"], tmp_path / "h.png"))
    with pytest.raises(ValueError, match="93"):
        ee.plot_accuracy_vs_flops(rows, tmp_path / "bad.png", baselines={"ViT": (1.0, 93.0)})
    with pytest.raises(ValueError, match="differ in length"):
        ee.plot_exit_histogram([1, 2], ["exit_1"], tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


# Calibration --------------------------------------------------------------

@pytest.mark.parametrize("num_exits,costs", [(2, [10, 100]), (3, [10, 30, 100])])
@pytest.mark.parametrize("budget", [10, 25, 50, 80, 100])
def test_calibration_meets_budget(num_exits, costs, budget):
    exits, labels = make_logits(5, num_exits, n=300)
    result = ee.calibrate_thresholds(exits, labels, costs, mac_budget=budget)
    cal = result["calibration"]
    assert cal["avg_macs"] <= budget
    assert len(result["thresholds"]) == num_exits - 1
    assert cal == ee.evaluate_exits(exits, labels, result["thresholds"], costs)
    # At least as good as the best uniform threshold that fits the budget.
    uniform = [r for r in ee.sweep(exits, labels, costs) if r["avg_macs"] <= budget]
    assert cal["accuracy"] >= max(r["accuracy"] for r in uniform)


def test_calibration_two_exits_is_exhaustive():
    exits, labels = make_logits(6, 2, n=200)
    costs, budget = [10, 100], 55
    result = ee.calibrate_thresholds(exits, labels, costs, mac_budget=budget)
    best = max(
        (r["accuracy"], -r["avg_macs"])
        for r in (ee.evaluate_exits(exits, labels, t, costs) for t in np.unique(ee.entropy(exits[0])))
        if r["avg_macs"] <= budget
    )
    assert (result["calibration"]["accuracy"], -result["calibration"]["avg_macs"]) == best


def test_calibration_subsampled_candidates():
    exits, labels = make_logits(8, 3, n=300)
    result = ee.calibrate_thresholds(exits, labels, [10, 30, 100], mac_budget=40, candidates=16)
    assert result["calibration"]["avg_macs"] <= 40


def test_calibration_infeasible_budget():
    exits, labels = make_logits(5, 2, n=50)
    with pytest.raises(ValueError, match="minimum possible average is 10 MACs"):
        ee.calibrate_thresholds(exits, labels, [10, 100], mac_budget=9.5)
    assert ee.calibrate_thresholds(exits, labels, [10, 100], mac_budget=10)["calibration"][
        "exit_counts"
    ] == [50, 0]


@pytest.mark.parametrize(
    "kwargs", [{}, {"mac_budget": 50, "max_accuracy_drop": 0.01}]
)
def test_calibration_needs_one_objective(kwargs):
    exits, labels = make_logits(5, 2, n=50)
    with pytest.raises(ValueError, match="exactly one"):
        ee.calibrate_thresholds(exits, labels, [10, 100], **kwargs)


@pytest.mark.parametrize("num_exits,costs", [(2, [10, 100]), (3, [10, 30, 100])])
@pytest.mark.parametrize("drop", [0.0, 0.02, 0.1])
def test_calibration_accuracy_drop(num_exits, costs, drop):
    exits, labels = make_logits(9, num_exits, n=300)
    result = ee.calibrate_thresholds(exits, labels, costs, max_accuracy_drop=drop)
    cal = result["calibration"]
    reference = result["reference_accuracy"]
    assert reference == cal["per_exit_accuracy"][-1]
    assert cal["accuracy"] >= reference - drop - 1e-12
    assert cal["avg_macs"] <= costs[-1]
    # The cheapest uniform setting meeting the target is no cheaper than the result.
    uniform = [r for r in ee.sweep(exits, labels, costs) if r["accuracy"] >= reference - drop - 1e-12]
    assert cal["avg_macs"] <= min(r["avg_macs"] for r in uniform)
    with pytest.raises(ValueError, match="1.5"):
        ee.calibrate_thresholds(exits, labels, costs, max_accuracy_drop=1.5)


def test_calibrated_thresholds_apply_to_another_split():
    exits, labels = make_logits(10, 3, n=400)
    cal = [a[:200] for a in exits], labels[:200]
    test = [a[200:] for a in exits], labels[200:]
    result = ee.calibrate_thresholds(*cal, [10, 30, 100], mac_budget=50)
    held_out = ee.apply_thresholds(*test, result["thresholds"], [10, 30, 100])
    assert sum(held_out["exit_counts"]) == 200


def test_single_exit_model():
    exits, labels = make_logits(11, 1, n=50)
    r = ee.route(exits, 0.5)
    assert (r.exit_index == 0).all()
    result = ee.calibrate_thresholds(exits, labels, [100], mac_budget=100)
    assert result["thresholds"] == []
    assert result["calibration"]["accuracy"] == result["reference_accuracy"]
