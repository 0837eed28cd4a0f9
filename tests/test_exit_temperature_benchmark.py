"""benchmarks/exit_temperature.py: the temperature fit, the ECE and one comparison on synthetic logits."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import exit_temperature as et  # noqa: E402


def _sampled(temperature: float, n: int = 4000, classes: int = 5, seed: int = 0):
    """Logits z and labels drawn from softmax(z / temperature): that T is the true one."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 3.0, size=(n, classes))
    p = np.exp(et._log_softmax(z / temperature))
    labels = np.array([rng.choice(classes, p=row) for row in p])
    return z, labels


def test_fit_temperature_recovers_the_temperature_labels_were_drawn_with():
    for true in (0.5, 2.0):
        z, y = _sampled(true)
        fitted = et.fit_temperature(z, y)
        assert abs(fitted - true) / true < 0.1
        assert et.nll(z, y, fitted) <= min(et.nll(z, y, 1.0), et.nll(z, y, fitted * 1.2))


def test_ece_is_small_when_calibrated_and_large_when_not():
    z, y = _sampled(2.0, seed=1)
    assert et.ece(z / 2.0, y) < 0.03
    assert et.ece(z, y) > 0.1  # the unscaled logits are over-confident


def test_compare_reports_both_variants_at_each_feasible_budget():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, size=600)
    first = rng.normal(0.0, 1.0, size=(600, 4)) + 2.0 * np.eye(4)[y] * (rng.random(600) < 0.6)[:, None]
    last = rng.normal(0.0, 1.0, size=(600, 4)) + 4.0 * np.eye(4)[y]
    order = rng.permutation(600)
    r = et.compare("synthetic", [first, last], y, [100, 300], np.sort(order[:200]), np.sort(order[200:]))
    assert set(r["variants"]) == {"NLL", "routing"}
    assert r["variants"]["routing"]["temperatures"][-1] == 1.0
    for v in r["variants"].values():
        assert [b["budget"] for b in v["budgets"]] == list(et.BUDGETS)
        for b in v["budgets"]:
            lo, hi = b["diff_ci95"]
            assert lo <= b["diff"] <= hi
            # Thresholds are calibrated on other images, so the held-out cost may overshoot a little.
            assert b["macs_fraction"] <= b["budget"] + 0.1 and b["macs_fraction_T"] <= b["budget"] + 0.1
    assert "| synthetic | 0.60 |" in et.markdown([r])
