"""Early exit: entropy, routing (batched == one at a time), evaluation, sweeps, calibration."""

import math

import numpy as np
import pytest

from ravit_keras import exits

# Entropy ------------------------------------------------------------------

@pytest.mark.parametrize("c", [2, 10, 200, 1000])
def test_entropy_uniform_is_ln_c(c):
    assert exits.entropy(np.zeros(c)) == pytest.approx(math.log(c), rel=1e-12)
    assert exits.entropy(np.full((3, c), 7.5)) == pytest.approx([math.log(c)] * 3, rel=1e-12)


def test_entropy_one_hot_is_zero():
    logits = np.array([[1000.0, 0.0, 0.0], [0.0, -1e4, 800.0]])
    np.testing.assert_array_equal(exits.entropy(logits), [0.0, 0.0])


def test_entropy_hand_values():
    # p = (1/2, 1/4, 1/4): u = 1/2·ln 2 + 2·(1/4)·ln 4 = 1.5·ln 2.
    logits = np.log([0.5, 0.25, 0.25]) + 123.0
    assert exits.entropy(logits) == pytest.approx(1.5 * math.log(2), rel=1e-12)
    # p = (0.9, 0.1): u = −0.9·ln 0.9 − 0.1·ln 0.1.
    assert exits.entropy(np.log([0.9, 0.1])) == pytest.approx(
        -0.9 * math.log(0.9) - 0.1 * math.log(0.1), rel=1e-12
    )
    assert exits.entropy(np.zeros((2, 3), np.float32)).dtype == np.float64


def test_softmax_stable_float64():
    p = exits.softmax(np.array([[1e4, 1e4 - 1.0, 0.0]], dtype=np.float32))
    assert p.dtype == np.float64
    assert np.isfinite(p).all()
    assert p.sum() == pytest.approx(1.0)
    assert p[0, 0] / p[0, 1] == pytest.approx(math.e)


# Threshold validation -------------------------------------------------------

def test_validate_thresholds_accepts():
    np.testing.assert_array_equal(exits.validate_thresholds(0.1, 3, 10), [0.1, 0.1])
    np.testing.assert_array_equal(exits.validate_thresholds([0.1, 0.2], 3, 10), [0.1, 0.2])
    np.testing.assert_array_equal(exits.validate_thresholds([0.1, 0.2, 99.0], 3, 10), [0.1, 0.2])
    np.testing.assert_array_equal(exits.validate_thresholds(math.log(10), 2, 10), [math.log(10)])
    assert exits.validate_thresholds(0.3, 1, 10).shape == (0,)
    assert exits.validate_thresholds(np.float32(0.5), 2, 10).dtype == np.float64


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
        exits.validate_thresholds(thresholds, 3, 10)




def test_ln_c_as_printed_is_accepted_and_the_bound_has_enough_digits():
    # ln 5 = 1.6094379..., printed (%g) as 1.60944: that value, typed back, is ln 5.
    for c in (2, 5, 10, 200):
        printed = float(f"{math.log(c):g}")
        assert exits.validate_thresholds(printed, 2, c).tolist() == [min(printed, math.log(c))]
        assert exits.validate_thresholds(printed, 2, c)[0] <= math.log(c)
    with pytest.raises(ValueError, match=r"1.6095 is above ln\(5\) = 1.6094379,.*at most 1.6094379 "):
        exits.validate_thresholds(1.6095, 2, 5)
    assert exits.validate_thresholds(1.6094379, 2, 5)[0] == pytest.approx(math.log(5), abs=1e-7)
