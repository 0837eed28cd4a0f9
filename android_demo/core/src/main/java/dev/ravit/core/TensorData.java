package dev.ravit.core;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.Objects;

/**
 * An immutable tensor value: a {@link DType}, a shape and one primitive array.
 *
 * <p>Storage, chosen so that a tensor maps 1:1 onto the interpreter's buffer:
 * <ul>
 *   <li>{@code INT8}: {@code byte[]}, signed values -128..127;</li>
 *   <li>{@code UINT8}: {@code byte[]} holding the raw bytes; {@link #getInt} reads them
 *       unsigned (0..255), so 200 is stored as the byte {@code (byte) 200};</li>
 *   <li>{@code INT16}: {@code short[]};</li>
 *   <li>{@code FLOAT32}: {@code float[]}.</li>
 * </ul>
 * Elements are in row-major (C) order, as in a TFLite buffer. Factories copy their
 * arrays and accessors return copies, so a {@code TensorData} never changes after
 * construction and can be handed between threads. {@link #toByteBuffer()} and
 * {@link #fromByteBuffer} convert to and from the native-order buffers that
 * LiteRT's {@code Interpreter} reads and writes.
 */
public final class TensorData {
    private final DType dtype;
    private final int[] shape;
    private final byte[] bytes;
    private final short[] shorts;
    private final float[] floats;

    private TensorData(DType dtype, int[] shape, byte[] bytes, short[] shorts, float[] floats) {
        this.dtype = dtype;
        this.shape = shape;
        this.bytes = bytes;
        this.shorts = shorts;
        this.floats = floats;
    }

    /** Product of the dimensions; rejects negative dimensions and overflow. */
    public static int elementCount(int[] shape) {
        long n = 1;
        for (int s : shape) {
            if (s < 0) {
                throw new IllegalArgumentException("Negative dimension in shape " + Arrays.toString(shape) + ".");
            }
            n *= s;
            if (n > Integer.MAX_VALUE) {
                throw new IllegalArgumentException("Shape " + Arrays.toString(shape) + " is too large.");
            }
        }
        return (int) n;
    }

    private static int[] checkShape(int[] shape, int length, DType dtype) {
        Objects.requireNonNull(shape, "shape");
        int n = elementCount(shape);
        if (n != length) {
            throw new IllegalArgumentException(dtype + " tensor of shape " + Arrays.toString(shape) + " needs "
                    + n + " values, got " + length + ".");
        }
        return shape.clone();
    }

    /** Signed 8-bit values. */
    public static TensorData int8(int[] shape, byte[] values) {
        return new TensorData(DType.INT8, checkShape(shape, values.length, DType.INT8), values.clone(), null, null);
    }

    /** Unsigned 8-bit values given as raw bytes ({@code (byte) 255} is 255). */
    public static TensorData uint8(int[] shape, byte[] rawBytes) {
        return new TensorData(DType.UINT8, checkShape(shape, rawBytes.length, DType.UINT8), rawBytes.clone(), null,
                null);
    }

    public static TensorData int16(int[] shape, short[] values) {
        return new TensorData(DType.INT16, checkShape(shape, values.length, DType.INT16), null, values.clone(), null);
    }

    public static TensorData float32(int[] shape, float[] values) {
        return new TensorData(DType.FLOAT32, checkShape(shape, values.length, DType.FLOAT32), null, null,
                values.clone());
    }

    /**
     * A tensor of integer type from {@code int} values.
     *
     * @throws IllegalArgumentException if a value is outside the dtype's range, or the dtype is float.
     */
    public static TensorData ofInts(DType dtype, int[] shape, int[] values) {
        int[] s = checkShape(shape, values.length, dtype);
        if (dtype.isFloat()) {
            float[] f = new float[values.length];
            for (int i = 0; i < values.length; i++) {
                f[i] = values[i];
            }
            return new TensorData(dtype, s, null, null, f);
        }
        for (int i = 0; i < values.length; i++) {
            if (values[i] < dtype.min() || values[i] > dtype.max()) {
                throw new IllegalArgumentException("Value " + values[i] + " at index " + i + " is outside the "
                        + dtype + " range [" + dtype.min() + ", " + dtype.max() + "].");
            }
        }
        if (dtype == DType.INT16) {
            short[] v = new short[values.length];
            for (int i = 0; i < values.length; i++) {
                v[i] = (short) values[i];
            }
            return new TensorData(dtype, s, null, v, null);
        }
        byte[] v = new byte[values.length];
        for (int i = 0; i < values.length; i++) {
            v[i] = (byte) values[i];
        }
        return new TensorData(dtype, s, v, null, null);
    }

    /** A zero-filled tensor. */
    public static TensorData zeros(DType dtype, int[] shape) {
        int n = elementCount(shape);
        switch (dtype) {
            case INT8:
            case UINT8:
                return new TensorData(dtype, shape.clone(), new byte[n], null, null);
            case INT16:
                return new TensorData(dtype, shape.clone(), null, new short[n], null);
            default:
                return new TensorData(dtype, shape.clone(), null, null, new float[n]);
        }
    }

    /**
     * Reads a tensor from a buffer filled by the interpreter (native byte order unless the
     * buffer says otherwise). Reads from position 0 to the limit; the buffer is not modified.
     *
     * @throws IllegalArgumentException if the buffer does not hold exactly the tensor's bytes.
     */
    public static TensorData fromByteBuffer(DType dtype, int[] shape, ByteBuffer buffer) {
        int n = elementCount(shape);
        ByteBuffer b = buffer.duplicate();
        b.order(buffer.order());
        b.rewind();
        if (b.remaining() != n * dtype.byteSize()) {
            throw new IllegalArgumentException("Buffer holds " + b.remaining() + " bytes; a " + dtype + " tensor of shape "
                    + Arrays.toString(shape) + " needs " + n * dtype.byteSize() + ".");
        }
        switch (dtype) {
            case INT8:
            case UINT8: {
                byte[] v = new byte[n];
                b.get(v);
                return new TensorData(dtype, shape.clone(), v, null, null);
            }
            case INT16: {
                short[] v = new short[n];
                b.asShortBuffer().get(v);
                return new TensorData(dtype, shape.clone(), null, v, null);
            }
            default: {
                float[] v = new float[n];
                b.asFloatBuffer().get(v);
                return new TensorData(dtype, shape.clone(), null, null, v);
            }
        }
    }

    /** A new direct buffer in native byte order, position 0, holding this tensor's bytes. */
    public ByteBuffer toByteBuffer() {
        ByteBuffer b = ByteBuffer.allocateDirect(byteSize()).order(ByteOrder.nativeOrder());
        copyTo(b);
        b.rewind();
        return b;
    }

    /** Writes the tensor's bytes into {@code target} at its position (byte order: the target's). */
    public void copyTo(ByteBuffer target) {
        if (target.remaining() < byteSize()) {
            throw new IllegalArgumentException("Target buffer has " + target.remaining() + " bytes left; need "
                    + byteSize() + ".");
        }
        switch (dtype) {
            case INT8:
            case UINT8:
                target.put(bytes);
                break;
            case INT16:
                for (short s : shorts) {
                    target.putShort(s);
                }
                break;
            default:
                for (float f : floats) {
                    target.putFloat(f);
                }
        }
    }

    public DType dtype() {
        return dtype;
    }

    public int[] shape() {
        return shape.clone();
    }

    /** Number of elements. */
    public int size() {
        switch (dtype) {
            case INT8:
            case UINT8:
                return bytes.length;
            case INT16:
                return shorts.length;
            default:
                return floats.length;
        }
    }

    /** Bytes in an interpreter buffer. */
    public int byteSize() {
        return size() * dtype.byteSize();
    }

    /** Element {@code i} as an integer (uint8 read unsigned); float tensors are rejected. */
    public int getInt(int i) {
        switch (dtype) {
            case INT8:
                return bytes[i];
            case UINT8:
                return bytes[i] & 0xFF;
            case INT16:
                return shorts[i];
            default:
                throw new UnsupportedOperationException("getInt on a float32 tensor; use getDouble.");
        }
    }

    /** Element {@code i} as a double (the stored number, not dequantised). */
    public double getDouble(int i) {
        return dtype.isFloat() ? floats[i] : getInt(i);
    }

    /** All elements as ints (integer dtypes only). */
    public int[] toIntArray() {
        int[] out = new int[size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = getInt(i);
        }
        return out;
    }

    /** All elements as doubles (the stored numbers, not dequantised). */
    public double[] toDoubleArray() {
        double[] out = new double[size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = getDouble(i);
        }
        return out;
    }

    /** A copy of the raw bytes (int8 and uint8 only). */
    public byte[] rawBytes() {
        if (bytes == null) {
            throw new UnsupportedOperationException(dtype + " tensors are not stored as bytes.");
        }
        return bytes.clone();
    }

    /** A copy of the floats (float32 only). */
    public float[] floats() {
        if (floats == null) {
            throw new UnsupportedOperationException(dtype + " tensors are not stored as floats.");
        }
        return floats.clone();
    }

    /** The same values under another shape with the same element count. */
    public TensorData reshape(int... newShape) {
        checkShape(newShape, size(), dtype);
        return new TensorData(dtype, newShape.clone(), bytes, shorts, floats);
    }

    /** Whether the dtype and the shape are those of {@code spec}. */
    public boolean matches(TensorSpec spec) {
        return dtype == spec.dtype() && Arrays.equals(shape, spec.shape());
    }

    @Override
    public boolean equals(Object o) {
        if (this == o) {
            return true;
        }
        if (!(o instanceof TensorData)) {
            return false;
        }
        TensorData t = (TensorData) o;
        return dtype == t.dtype && Arrays.equals(shape, t.shape) && Arrays.equals(bytes, t.bytes)
                && Arrays.equals(shorts, t.shorts) && Arrays.equals(floats, t.floats);
    }

    @Override
    public int hashCode() {
        return Objects.hash(dtype, Arrays.hashCode(shape), Arrays.hashCode(bytes), Arrays.hashCode(shorts),
                Arrays.hashCode(floats));
    }

    @Override
    public String toString() {
        StringBuilder sb = new StringBuilder();
        sb.append(dtype).append(Arrays.toString(shape)).append('[');
        int n = Math.min(size(), 8);
        for (int i = 0; i < n; i++) {
            if (i > 0) {
                sb.append(", ");
            }
            sb.append(dtype.isFloat() ? Float.toString(floats[i]) : Integer.toString(getInt(i)));
        }
        if (size() > n) {
            sb.append(", ...");
        }
        return sb.append(']').toString();
    }
}
