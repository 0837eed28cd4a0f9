package dev.ravit.core;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * One exit of the manifest: the submodel file that computes it, its checksum, its
 * signature tensors and its cost.
 */
public final class ExitSpec {
    private final int index;
    private final String name;
    private final int branch;
    private final String file;
    private final String sha256;
    private final long sizeBytes;
    private final long macs;
    private final long cumulativeMacs;
    private final Map<String, TensorSpec> inputs;
    private final Map<String, TensorSpec> outputs;

    public ExitSpec(int index, String name, int branch, String file, String sha256, long sizeBytes, long macs,
                    long cumulativeMacs, Map<String, TensorSpec> inputs, Map<String, TensorSpec> outputs) {
        this.index = index;
        this.name = name;
        this.branch = branch;
        this.file = file;
        this.sha256 = sha256;
        this.sizeBytes = sizeBytes;
        this.macs = macs;
        this.cumulativeMacs = cumulativeMacs;
        this.inputs = Collections.unmodifiableMap(new LinkedHashMap<>(inputs));
        this.outputs = Collections.unmodifiableMap(new LinkedHashMap<>(outputs));
    }

    /** 0-based position among the exits. */
    public int index() {
        return index;
    }

    /** E.g. {@code exit_1}. */
    public String name() {
        return name;
    }

    /** 1-based branch number (branches with 0 layers have no exit). */
    public int branch() {
        return branch;
    }

    /** Submodel file name, e.g. {@code branch_1.tflite}. */
    public String file() {
        return file;
    }

    /** Lower-case hex SHA-256 of the submodel file. */
    public String sha256() {
        return sha256;
    }

    /** File size from the manifest, or -1 when absent. */
    public long sizeBytes() {
        return sizeBytes;
    }

    /** MACs of this branch alone. */
    public long macs() {
        return macs;
    }

    /** MACs spent by an image that leaves at this exit (this branch and all before it). */
    public long cumulativeMacs() {
        return cumulativeMacs;
    }

    /** Signature inputs by name: {@code image}, plus {@code cls_in} after the first exit. */
    public Map<String, TensorSpec> inputs() {
        return inputs;
    }

    /** Signature outputs by name: {@code logits} and {@code cls_out}. */
    public Map<String, TensorSpec> outputs() {
        return outputs;
    }

    /** @throws IllegalArgumentException if there is no such input. */
    public TensorSpec input(String tensor) {
        TensorSpec t = inputs.get(tensor);
        if (t == null) {
            throw new IllegalArgumentException(name + " has no input '" + tensor + "'; inputs: " + inputs.keySet());
        }
        return t;
    }

    /** @throws IllegalArgumentException if there is no such output. */
    public TensorSpec output(String tensor) {
        TensorSpec t = outputs.get(tensor);
        if (t == null) {
            throw new IllegalArgumentException(name + " has no output '" + tensor + "'; outputs: " + outputs.keySet());
        }
        return t;
    }

    @Override
    public String toString() {
        return name + " (" + file + ", " + cumulativeMacs + " cumulative MACs)";
    }
}
