package dev.ravit.core;

import java.util.Arrays;
import java.util.Objects;

/**
 * One signature tensor of a submodel as the manifest describes it: shape, dtype and
 * the affine quantisation {@code real = (q - zeroPoint) * scale} (scale 0 for float tensors).
 */
public final class TensorSpec {
    private final String name;
    private final int position;
    private final String tensorName;
    private final int[] shape;
    private final DType dtype;
    private final double scale;
    private final int zeroPoint;

    public TensorSpec(String name, int position, String tensorName, int[] shape, DType dtype,
                      double scale, int zeroPoint) {
        this.name = Objects.requireNonNull(name, "name");
        this.position = position;
        this.tensorName = tensorName == null ? name : tensorName;
        this.shape = Objects.requireNonNull(shape, "shape").clone();
        this.dtype = Objects.requireNonNull(dtype, "dtype");
        this.scale = scale;
        this.zeroPoint = zeroPoint;
        for (int s : shape) {
            if (s < 1) {
                throw new IllegalArgumentException("Tensor '" + name + "' has a non-positive dimension in "
                        + Arrays.toString(shape) + ".");
            }
        }
        if (!dtype.isFloat() && !(scale > 0 && Double.isFinite(scale))) {
            throw new IllegalArgumentException("Tensor '" + name + "' (" + dtype + ") has scale " + scale
                    + "; a quantised tensor needs a positive, finite scale.");
        }
    }

    /** A spec with only the fields quantisation needs (tests, synthetic tensors). */
    public static TensorSpec of(String name, DType dtype, double scale, int zeroPoint, int... shape) {
        return new TensorSpec(name, 0, name, shape, dtype, scale, zeroPoint);
    }

    /** Signature name: {@code image}, {@code cls_in}, {@code logits} or {@code cls_out}. */
    public String name() {
        return name;
    }

    /** Position of the tensor among the interpreter's inputs or outputs. */
    public int position() {
        return position;
    }

    /** The graph tensor's own name (e.g. {@code serving_default_image:0}). */
    public String tensorName() {
        return tensorName;
    }

    public int[] shape() {
        return shape.clone();
    }

    public DType dtype() {
        return dtype;
    }

    public double scale() {
        return scale;
    }

    public int zeroPoint() {
        return zeroPoint;
    }

    /** Number of elements (product of the shape). */
    public int elementCount() {
        return TensorData.elementCount(shape);
    }

    /** Same dtype, scale and zero point: requantising between the two is the identity. */
    public boolean sameQuantization(TensorSpec other) {
        return dtype == other.dtype && Double.compare(scale, other.scale) == 0 && zeroPoint == other.zeroPoint;
    }

    @Override
    public boolean equals(Object o) {
        if (this == o) {
            return true;
        }
        if (!(o instanceof TensorSpec)) {
            return false;
        }
        TensorSpec t = (TensorSpec) o;
        return position == t.position && Double.compare(scale, t.scale) == 0 && zeroPoint == t.zeroPoint
                && name.equals(t.name) && tensorName.equals(t.tensorName) && Arrays.equals(shape, t.shape)
                && dtype == t.dtype;
    }

    @Override
    public int hashCode() {
        return Objects.hash(name, position, tensorName, Arrays.hashCode(shape), dtype, scale, zeroPoint);
    }

    @Override
    public String toString() {
        return name + "(" + dtype + " " + Arrays.toString(shape)
                + (dtype.isFloat() ? "" : ", scale=" + scale + ", zero_point=" + zeroPoint) + ")";
    }
}
