"""Statistics where decisions are made on few images (``ravit_keras.exits.intervals``),
the default calibration holdout (``run_calibration.default_calibration_holdout``) and ``--mode auto``'s
criterion (``mode_selection.choose_mode``)."""

import numpy as np
import pytest

from ravit_keras import run_calibration, runs
from ravit_keras.deploy.runtime import policy
from ravit_keras.exits.intervals import (
    bootstrap_mean_interval,
    operating_point_interval,
    paired_accuracy_loss,
    resolution_warning,
    wilson_interval,
)

# Interval functions --------------------------------------------------------------------------


def test_wilson_interval_known_values():
    # 0/n and n/n: one bound is exact, the other is z^2 / (n + z^2) away (z = 1.96 at 95 %).
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-5)
    assert wilson_interval(10, 10) == pytest.approx((0.72247, 1.0), abs=1e-5)
    # The textbook case (Newcombe 1998, Wilson's score method): 81 of 263.
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)  # Nothing known.
    low, high = wilson_interval(81, 263, sides=1)  # One-sided 95 % bounds are narrower.
    assert 0.2553 < low < high < 0.3662
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(11, 10)


def test_bootstrap_mean_interval_is_seeded_and_shrinks_with_more_images():
    rng = np.random.default_rng(1)
    few = rng.choice([300.0, 1000.0], size=100)
    many = rng.choice([300.0, 1000.0], size=10_000)
    a = bootstrap_mean_interval(few)
    assert a == bootstrap_mean_interval(few)  # Same seed, same interval.
    assert a != bootstrap_mean_interval(few, seed=1)
    assert a[0] < few.mean() < a[1]
    b = bootstrap_mean_interval(many)
    assert b[1] - b[0] < (a[1] - a[0]) / 5  # About 1/sqrt(100) as wide.
    # A constant has no spread.
    assert bootstrap_mean_interval(np.full(50, 7.0)) == (7.0, 7.0)


def _exit_logits(n, seed=0, num_classes=10):
    """Two exits: the first right on about 60 % of the images, the second on about 90 %."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, n)
    logits = []
    for skill in (1.2, 3.0):
        z = rng.normal(0, 1, (n, num_classes))
        z[np.arange(n), labels] += rng.uniform(0, 2 * skill, n)
        logits.append(z * 2)
    return logits, labels


def test_operating_point_interval_holds_the_point_on_its_images():
    logits, labels = _exit_logits(400)
    macs = [300.0, 1000.0]
    out = operating_point_interval(logits, labels, macs, [0.8], full_macs=1000.0)
    from ravit_keras.exits import evaluate_exits

    point = evaluate_exits(logits, labels, [0.8], macs)
    assert out["images"] == 400 and out["confidence"] == 0.95
    assert out["accuracy"][0] < point["accuracy"] < out["accuracy"][1]
    assert out["avg_macs"][0] < point["avg_macs"] < out["avg_macs"][1]
    assert out["mac_fraction"] == pytest.approx([m / 1000 for m in out["avg_macs"]])


def _policy(n):
    logits, labels = _exit_logits(n)
    return policy.calibrate_policy(logits, labels, [300, 1000], 1000, mac_budgets=(0.9, 0.8, 0.7, 0.6, 0.5, 0.4),
                                   max_accuracy_drop=0.01, battery_high=0.5, battery_low=0.2)


def test_resolution_warning_fires_on_a_tiny_calibration_set_and_not_on_a_large_one():
    _, tiny, _ = _policy(60)
    line = resolution_warning([p.to_dict() for p in tiny])
    assert line is not None and line.startswith("60 calibration images are too few") and "\n" not in line
    _, large, _ = _policy(5000)
    assert resolution_warning([p.to_dict() for p in large]) is None
    # Each point carries its interval, the one the manifest records.
    assert all(p.interval["images"] == 5000 and len(p.interval["mac_fraction"]) == 2 for p in large)


def test_resolution_warning_names_coinciding_budgets():
    interval = {"images": 100, "confidence": 0.95, "mac_fraction": [0.62, 0.70]}
    points = [{"mac_fraction": 0.8, "thresholds": [1.0], "interval": interval},
              {"mac_fraction": 0.7, "thresholds": [1.0], "interval": interval}]
    assert "budgets 0.8 and 0.7 give the same thresholds" in resolution_warning(points)
    # Not when the point sits well under both budgets: the budgets do not bind.
    loose = {**interval, "mac_fraction": [0.40, 0.45]}
    assert resolution_warning([{**p, "interval": loose} for p in points]) is None


def test_operating_point_interval_round_trips_through_the_policy():
    _, points, _ = _policy(300)
    interval = points[0].to_dict()["interval"]
    assert set(interval) >= {"confidence", "images", "accuracy", "avg_macs", "mac_fraction", "method"}
    parsed = policy.OperatingPoint.from_dict(points[0].to_dict(), "operating_points[0]", 2, 10)
    assert parsed == points[0]
    # A manifest written before intervals existed still loads (the field is optional).
    old = {k: v for k, v in points[0].to_dict().items() if k != "interval"}
    assert policy.OperatingPoint.from_dict(old, "operating_points[0]", 2, 10).interval is None
    assert "interval" not in policy.OperatingPoint.from_dict(old, "p", 2, 10).to_dict()


# The default calibration holdout ---------------------------------------------------------------


@pytest.mark.parametrize("n, share, images", [
    (50_000, 0.05, 2500),   # Large: 5 %.
    (2_500, 0.20, 500),     # The 5-class set: 500 images, 20 %.
    (3_000, 1 / 6, 500),    # The demo: 500 images.
    (10_000, 0.05, 500),    # Where 5 % and 500 images meet.
    (400, 0.20, 80),        # Small: capped at 20 %, 80 % left to train.
    (1, 0.20, 0.2),         # Tiny: still the cap.
])
def test_default_calibration_holdout(n, share, images):
    assert run_calibration.default_calibration_holdout(n) == pytest.approx(share)
    assert run_calibration.default_calibration_holdout(n) * n == pytest.approx(images)
    with pytest.raises(ValueError):
        run_calibration.default_calibration_holdout(0)


def test_the_default_holdout_is_of_the_whole_split_and_a_resumed_run_keeps_its_own(tmp_path):
    import json

    from ravit_keras.config import get_config
    from ravit_keras.data.source import DataSource
    from ravit_keras.training.from_data import _default_holdout

    config = get_config("tiny", layers=(1, 2))
    generated = DataSource("generated")
    assert _default_holdout(generated, config, 2500, tmp_path / "new") == pytest.approx(0.2)
    assert _default_holdout(generated, config, None, tmp_path / "new") == pytest.approx(0.2)  # 2,000 drawn.
    assert _default_holdout(generated, config, 50_000, tmp_path / "new") == pytest.approx(0.05)
    # An unfinished run begun with another share resumes on the same images.
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / runs.RECORD_FILE).write_text(json.dumps({"data": {"calibration_holdout": 0.05}}))
    assert _default_holdout(generated, config, 2500, tmp_path / "old") == 0.05


# --mode auto -----------------------------------------------------------------------------------


def _answers(n=1000, accuracy=0.85, lose=0, gain=0, swap=0, seed=0):
    """float32 answers, and int8's: ``lose`` right answers made wrong, ``gain`` wrong ones made
    right, ``swap`` wrong answers changed to another wrong class."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    ref = labels.copy()
    wrong = rng.permutation(n)[: int(round((1 - accuracy) * n))]
    ref[wrong] = (labels[wrong] + 1) % 10
    cand = ref.copy()
    right = np.setdiff1d(np.arange(n), wrong)
    cand[right[:lose]] = (labels[right[:lose]] + 2) % 10
    cand[wrong[:gain]] = labels[wrong[:gain]]
    cand[wrong[gain:gain + swap]] = (labels[wrong[gain:gain + swap]] + 3) % 10
    return labels, ref, cand


def _choose(labels, ref, cand):
    from ravit_keras.deploy.export.mode_selection import choose_mode

    return choose_mode({"int8": cand, "float32": ref}, labels, {"int8": 0.7, "float32": 1.0})


@pytest.mark.parametrize("lose, gain", [(6, 4), (7, 3), (8, 4), (6, 6)])
def test_auto_keeps_int8_when_one_or_two_images_flip(lose, gain):
    chosen, why = _choose(*_answers(lose=lose, gain=gain))
    assert chosen == "int8", why
    v = why["modes"]["int8"]
    assert why["reference"] == "float32" and v["reference_only_correct"] == lose and v["as_accurate"]
    assert v["agreement"] == pytest.approx(1 - (lose + gain) / 1000)
    assert 0 < v["loss_upper_bound"] <= 0.01


@pytest.mark.parametrize("lose, gain, swap", [
    (30, 5, 0),   # A real drop: 2.5 points.
    (16, 2, 0),   # 1.4 points.
    (10, 10, 5),  # Same accuracy, but 2.5 % of the answers changed: another model.
])
def test_auto_refuses_int8_that_is_not_as_accurate(lose, gain, swap):
    chosen, why = _choose(*_answers(lose=lose, gain=gain, swap=swap))
    assert chosen == "float32" and not why["modes"]["int8"]["as_accurate"]


def test_paired_loss_bound_without_discordant_images():
    same = np.array([True, False, True])
    out = paired_accuracy_loss(same, same, agreement=1.0)
    assert out["loss"] == out["loss_upper_bound"] == 0.0 and out["agreement"] == 1.0
    with pytest.raises(ValueError, match="equally long"):
        paired_accuracy_loss(same, same[:2])
