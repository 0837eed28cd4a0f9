package dev.ravit.core;

/**
 * Affine (de)quantisation and the CLS requantisation rule, bit for bit the rule of
 * {@code ravit_keras/deploy/runtime/quantization.py}:
 *
 * <pre>
 * q_in = clamp(zp_in + round_half_away_from_zero(((q_out - zp_out) * s_out) / s_in), qmin_in, qmax_in)
 * </pre>
 *
 * computed in double from the manifest's scales. Float tensors pass through
 * ({@code dequantize} returns their values; {@code quantize} to float32 rounds to float).
 */
public final class Quantization {
    private Quantization() {
    }

    /** Rounds half-way cases away from zero: 0.5 → 1, -0.5 → -1, 2.5 → 3 (not banker's rounding). */
    public static double roundHalfAwayFromZero(double x) {
        return Math.signum(x) * Math.floor(Math.abs(x) + 0.5);
    }

    private static int clamp(double v, DType dtype) {
        return (int) Math.max(dtype.min(), Math.min(dtype.max(), v));
    }

    /** Integer (or float) tensor → real values {@code (q - zeroPoint) * scale} in double. */
    public static double[] dequantize(TensorData q, TensorSpec spec) {
        if (q.dtype() != spec.dtype()) {
            throw new IllegalArgumentException("Tensor '" + spec.name() + "' is " + spec.dtype() + " in the manifest, got "
                    + q.dtype() + " data.");
        }
        double[] out = new double[q.size()];
        if (q.dtype().isFloat()) {
            for (int i = 0; i < out.length; i++) {
                out[i] = q.getDouble(i);
            }
            return out;
        }
        double scale = spec.scale();
        int zp = spec.zeroPoint();
        for (int i = 0; i < out.length; i++) {
            out[i] = ((double) q.getInt(i) - zp) * scale;
        }
        return out;
    }

    /**
     * Real values → a tensor of {@code target}'s dtype with {@code shape}:
     * {@code clamp(round_half_away(x / scale) + zeroPoint)}; float32 targets just round to float.
     */
    public static TensorData quantize(double[] real, TensorSpec target, int[] shape) {
        DType t = target.dtype();
        if (t.isFloat()) {
            float[] f = new float[real.length];
            for (int i = 0; i < f.length; i++) {
                f[i] = (float) real[i];
            }
            return TensorData.float32(shape, f);
        }
        int[] v = new int[real.length];
        double scale = target.scale();
        int zp = target.zeroPoint();
        for (int i = 0; i < v.length; i++) {
            v[i] = clamp(roundHalfAwayFromZero(real[i] / scale) + zp, t);
        }
        return TensorData.ofInts(t, shape, v);
    }

    /** {@link #quantize(double[], TensorSpec, int[])} with the target's shape. */
    public static TensorData quantize(double[] real, TensorSpec target) {
        return quantize(real, target, target.shape());
    }

    /**
     * Re-expresses {@code q} (described by {@code source}, e.g. the previous branch's
     * {@code cls_out}) in {@code target}'s quantisation (the next branch's {@code cls_in}).
     * The result keeps {@code q}'s shape.
     *
     * @throws IllegalArgumentException if {@code q}'s dtype is not {@code source}'s.
     */
    public static TensorData requantize(TensorData q, TensorSpec source, TensorSpec target) {
        if (q.dtype() != source.dtype()) {
            throw new IllegalArgumentException("Cannot requantise " + q.dtype() + " data described as "
                    + source.dtype() + " (" + source.name() + ").");
        }
        if (source.dtype().isFloat() || target.dtype().isFloat()) {
            return quantize(dequantize(q, source), target, q.shape());
        }
        if (source.sameQuantization(target)) {
            return q;
        }
        DType t = target.dtype();
        double sOut = source.scale();
        double sIn = target.scale();
        int zpOut = source.zeroPoint();
        int zpIn = target.zeroPoint();
        int[] v = new int[q.size()];
        for (int i = 0; i < v.length; i++) {
            // The product is exact in double, so only the division rounds (as in Python).
            double shifted = roundHalfAwayFromZero((((double) q.getInt(i) - zpOut) * sOut) / sIn);
            v[i] = clamp(shifted + zpIn, t);
        }
        return TensorData.ofInts(t, q.shape(), v);
    }
}
