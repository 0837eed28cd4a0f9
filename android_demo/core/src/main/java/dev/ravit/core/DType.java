package dev.ravit.core;

import java.util.Locale;

/**
 * Element type of a submodel tensor, named as in the manifest ({@code "int8"}, ...).
 *
 * <p>The integer types carry the quantisation range used by {@link Quantization}
 * (the same table as {@code QUANT_RANGES} in {@code ravit_keras/deploy/runtime/quantization.py}).
 */
public enum DType {
    INT8("int8", 1, -128, 127),
    UINT8("uint8", 1, 0, 255),
    INT16("int16", 2, -32768, 32767),
    FLOAT32("float32", 4, 0, 0);

    private final String manifestName;
    private final int byteSize;
    private final int min;
    private final int max;

    DType(String manifestName, int byteSize, int min, int max) {
        this.manifestName = manifestName;
        this.byteSize = byteSize;
        this.min = min;
        this.max = max;
    }

    /** The name used in manifest.json, e.g. {@code "uint8"}. */
    public String manifestName() {
        return manifestName;
    }

    /** Bytes per element in a tensor buffer. */
    public int byteSize() {
        return byteSize;
    }

    public boolean isFloat() {
        return this == FLOAT32;
    }

    /** Smallest representable quantised value (integer types only). */
    public int min() {
        requireInteger();
        return min;
    }

    /** Largest representable quantised value (integer types only). */
    public int max() {
        requireInteger();
        return max;
    }

    private void requireInteger() {
        if (isFloat()) {
            throw new UnsupportedOperationException(manifestName + " has no quantisation range.");
        }
    }

    /**
     * Parses a manifest dtype name.
     *
     * @throws IllegalArgumentException naming the value and the supported ones.
     */
    public static DType fromManifestName(String name) {
        if (name != null) {
            String lower = name.toLowerCase(Locale.ROOT);
            for (DType t : values()) {
                if (t.manifestName.equals(lower)) {
                    return t;
                }
            }
        }
        throw new IllegalArgumentException(
                "Unsupported tensor dtype '" + name + "'; this runtime reads int8, uint8, int16 and float32.");
    }

    @Override
    public String toString() {
        return manifestName;
    }
}
