"""Integer tensor arithmetic shared by the scheduler, the golden vectors and the Android core.

The CLS requantisation rule (the same bit for bit on the phone):

    q_in = clamp(zp_in + round_half_away_from_zero(((q_out - zp_out) * s_out) / s_in),
                 qmin_in, qmax_in)

computed in float64 from the manifest's scales (the product is exact, so only
the division rounds).
"""

from __future__ import annotations

import numpy as np

QUANT_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
    """Float -> integer tensor (round half away from zero, clamp); identity for float."""
    if dtype.startswith("float"):
        return np.asarray(x, dtype)
    lo, hi = QUANT_RANGES[dtype]
    return np.clip(_round_half_away(np.asarray(x, np.float64) / scale) + zero_point, lo, hi).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Integer tensor -> float64 (a float tensor passes through as float64)."""
    if np.issubdtype(np.asarray(q).dtype, np.floating):
        return np.asarray(q, np.float64)
    return (np.asarray(q, np.float64) - zero_point) * scale


def requantize(q: np.ndarray, source: dict, target: dict) -> np.ndarray:
    """Re-expresses the CLS token ``q`` from the producer's tensor to the consumer's.

    ``source``/``target`` are manifest tensors: ``TensorSpec``s or their JSON dicts
    (dtype, scale, zero_point).
    """
    source, target = _params(source), _params(target)
    s_dtype, t_dtype = source["dtype"], target["dtype"]
    if t_dtype.startswith("float") or s_dtype.startswith("float"):
        real = dequantize(q, source["scale"], source["zero_point"])
        return quantize(real, target["scale"], target["zero_point"], t_dtype)
    if (source["scale"], source["zero_point"], s_dtype) == (target["scale"], target["zero_point"], t_dtype):
        return q
    lo, hi = QUANT_RANGES[t_dtype]
    # (q - zp)·s_out is exact in float64 (a 16-bit integer times a float32 scale), so
    # only the division rounds: exact .5 ties stay ties, in Python and on the phone.
    x = (q.astype(np.float64) - source["zero_point"]) * float(source["scale"]) / float(target["scale"])
    shifted = _round_half_away(x)
    shifted += target["zero_point"]
    return np.minimum(np.maximum(shifted, lo, out=shifted), hi, out=shifted).astype(t_dtype)


def _params(spec) -> dict:
    """The quantisation of a manifest tensor, given as a dict or a ``TensorSpec``."""
    if isinstance(spec, dict):
        return spec
    return {"dtype": spec.dtype, "scale": spec.scale, "zero_point": spec.zero_point}


def _round_half_away(x: np.ndarray) -> np.ndarray:
    """Round half away from zero; equals Java's signum(x)·floor(|x| + 0.5) for every double."""
    return np.trunc(x + np.copysign(0.5, x))
