"""CLS requantisation, quantize and dequantize (``ravit_keras.deploy.runtime.quantization``) against float maths.

Uses the session fixtures of conftest.py (one trained tiny RAViT converted once to
int8 and once to float32); tests that corrupt a folder work on a copy.
"""


import numpy as np
import pytest

from ravit_keras.deploy.runtime.quantization import dequantize, quantize, requantize

RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}


# Requantisation vs float math ------------------------------------------------------


def _round_half_away(x):
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def reference_requantize(q, source, target):
    """quantize(dequantize(q)) in float64: real = (q - zp_s)·s_s; q' = clamp(round(real / s_t) + zp_t)."""
    real = (np.asarray(q, np.float64) - source["zero_point"]) * source["scale"]
    if target["dtype"].startswith("float"):
        return real.astype(target["dtype"])
    lo, hi = RANGES[target["dtype"]]
    return np.clip(_round_half_away(real / target["scale"]) + target["zero_point"], lo, hi).astype(target["dtype"])


def _spec(dtype, scale, zero_point):
    return {"dtype": dtype, "scale": float(scale), "zero_point": int(zero_point)}


def _random_spec(rng, dtype):
    """A spec as the manifest holds them: float32 scales (exact in float64), zero points in range."""
    if dtype == "int16":
        return _spec(dtype, np.float32(rng.uniform(1e-5, 1e-3)), 0)
    lo, hi = RANGES[dtype]
    return _spec(dtype, np.float32(10 ** rng.uniform(-3.5, -0.5)), rng.integers(lo, hi + 1))


ALL_INT8 = np.arange(-128, 128, dtype=np.int8)


def test_quantize_rounds_half_away_from_zero_and_clamps():
    x = np.array([0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 0.49999, 1000.0, -1000.0])
    np.testing.assert_array_equal(quantize(x, 1.0, 0, "int8"), [1, -1, 2, -2, 3, -3, 0, 127, -128])
    np.testing.assert_array_equal(quantize(x, 0.5, 10, "uint8"), [11, 9, 13, 7, 15, 5, 11, 255, 0])
    np.testing.assert_array_equal(quantize(np.array([1e9, -1e9]), 1.0, 0, "int16"), [32767, -32768])
    assert quantize(x, 1.0, 0, "int8").dtype == np.int8
    np.testing.assert_array_equal(quantize(x, 0.0, 0, "float32"), x.astype(np.float32))


def test_dequantize():
    q = np.array([-128, 0, 5, 127], np.int8)
    np.testing.assert_array_equal(dequantize(q, 0.25, -3), (q.astype(np.float64) + 3) * 0.25)
    assert dequantize(q, 0.25, -3).dtype == np.float64
    f = np.array([1.5, -2.25], np.float32)
    np.testing.assert_array_equal(dequantize(f, 0.0, 0), f.astype(np.float64))


@pytest.mark.parametrize("target_dtype", ["int8", "uint8", "int16"])
def test_requantize_equals_float_math_random_specs(target_dtype):
    rng = np.random.default_rng({"int8": 1, "uint8": 2, "int16": 3}[target_dtype])
    for _ in range(300):
        source, target = _random_spec(rng, "int8"), _random_spec(rng, target_dtype)
        got = requantize(ALL_INT8, source, target)
        assert got.dtype == np.dtype(target_dtype)
        np.testing.assert_array_equal(got, reference_requantize(ALL_INT8, source, target),
                                      err_msg=f"{source} -> {target}")


def test_requantize_exact_ties_and_clamping_with_exact_ratios():
    """Scale ratios that are exact in binary (x2, x4, /2 ...): .5 ties are exact, both ways."""
    rng = np.random.default_rng(4)
    ties = 0
    for _ in range(300):
        s = 2.0 ** -int(rng.integers(3, 10))
        source = _spec("int8", s, rng.integers(-128, 128))
        target_dtype = ["int8", "uint8"][int(rng.integers(2))]
        lo, hi = RANGES[target_dtype]
        target = _spec(target_dtype, s * 2.0 ** int(rng.integers(-2, 4)), rng.integers(lo, hi + 1))
        got = requantize(ALL_INT8, source, target)
        np.testing.assert_array_equal(got, reference_requantize(ALL_INT8, source, target))
        x = (ALL_INT8.astype(np.float64) - source["zero_point"]) * source["scale"] / target["scale"]
        ties += int(np.sum(np.abs(x - np.trunc(x)) == 0.5))
    assert ties > 1000  # Many exact .5 ties were exercised.
    # Hand values: ratio 0.5 (source scale 1, target scale 2), zero points 0.
    q = np.array([1, -1, 3, -3, 5, -5], np.int8)
    np.testing.assert_array_equal(requantize(q, _spec("int8", 1.0, 0), _spec("int8", 2.0, 0)),
                                  [1, -1, 2, -2, 3, -3])
    # Clamping at both ends: ratio 4 saturates int8, a large zero point saturates uint8.
    np.testing.assert_array_equal(
        requantize(np.array([-128, -40, 0, 40, 127], np.int8), _spec("int8", 1.0, 0), _spec("int8", 0.25, 0)),
        [-128, -128, 0, 127, 127])
    np.testing.assert_array_equal(
        requantize(np.array([-128, 0, 127], np.int8), _spec("int8", 1.0, 0), _spec("uint8", 1.0, 128)),
        [0, 128, 255])
    np.testing.assert_array_equal(
        requantize(np.array([-128, 127], np.int8), _spec("int8", 1.0, 0), _spec("uint8", 0.5, 10)),
        [0, 255])


def test_requantize_exact_ties_with_inexact_ratio():
    source, target = _spec("int8", 3 / 1024, 0), _spec("int8", 22 / 1024, 0)
    q = np.array([-99, 99, -33, 33], np.int8)  # Real values -13.5, 13.5, -4.5, 4.5 in target steps.
    np.testing.assert_array_equal(reference_requantize(q, source, target), [-14, 14, -5, 5])
    np.testing.assert_array_equal(requantize(q, source, target), [-14, 14, -5, 5])


def test_requantize_float_paths():
    rng = np.random.default_rng(5)
    q = ALL_INT8
    source = _spec("int8", 0.0123, -7)
    # int8 -> float32: the dequantised values.
    f = requantize(q, source, _spec("float32", 0.0, 0))
    assert f.dtype == np.float32
    np.testing.assert_array_equal(f, reference_requantize(q, source, _spec("float32", 0.0, 0)))
    # float32 -> int8 / uint8: quantize with rounding half away from zero and clamping.
    real = np.concatenate([rng.uniform(-3, 3, 200), [0.5, -0.5, 1.5, -1.5, 1e6, -1e6]]).astype(np.float32)
    for target in (_spec("int8", 1.0, 0), _spec("int8", 0.02, 3), _spec("uint8", 0.015, 120)):
        got = requantize(real, _spec("float32", 0.0, 0), target)
        assert got.dtype == np.dtype(target["dtype"])
        np.testing.assert_array_equal(got, reference_requantize(real, _spec("float32", 1.0, 0), target))
    np.testing.assert_array_equal(requantize(np.array([0.5, -0.5, 2.5], np.float32), _spec("float32", 0.0, 0),
                                             _spec("int8", 1.0, 0)), [1, -1, 3])
    # float32 -> float32: unchanged values.
    out = requantize(real, _spec("float32", 0.0, 0), _spec("float32", 0.0, 0))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, real)


@pytest.mark.parametrize("spec", [_spec("int8", 0.0123, -7), _spec("uint8", 0.02, 128), _spec("int16", 1e-4, 0)])
def test_requantize_identical_specs_return_the_input(spec):
    lo, hi = RANGES[spec["dtype"]]
    q = np.random.default_rng(6).integers(lo, hi + 1, 64).astype(spec["dtype"])
    out = requantize(q, dict(spec), dict(spec))
    assert out.dtype == q.dtype
    np.testing.assert_array_equal(out, q)


