package dev.ravit.core;

/**
 * Which int8 CPU kernels compute a submodel. They do not compute the same numbers: on the
 * demo's int8 submodels LiteRT's built-in kernels differ from XNNPACK in hundreds of logit
 * elements (by up to 17 quantisation steps), enough to change labels and exit decisions.
 * The converter calibrates the exit thresholds with Python's {@code ai_edge_litert}
 * Interpreter, which runs XNNPACK by default, so {@link #CALIBRATED} is XNNPACK and every
 * runtime of this project (the app's CPU path, the JVM runtime) should use it.
 */
public enum CpuKernels {
    /** The XNNPACK delegate: what Python's interpreter uses and the thresholds were calibrated on. */
    XNNPACK("delegate"),
    /** LiteRT's built-in (non-XNNPACK) kernels: for comparison only; they compute different values. */
    BUILTIN("builtin");

    /** The kernels the manifest's thresholds were calibrated on. */
    public static final CpuKernels CALIBRATED = XNNPACK;

    private final String liteRtKernelMode;

    CpuKernels(String liteRtKernelMode) {
        this.liteRtKernelMode = liteRtKernelMode;
    }

    /** The value of LiteRT's CPU option {@code kernel_mode} that selects these kernels. */
    public String liteRtKernelMode() {
        return liteRtKernelMode;
    }

    /** Whether results on these kernels can be compared with the calibrated thresholds. */
    public boolean isCalibrated() {
        return this == CALIBRATED;
    }

    /** Parses {@code xnnpack} or {@code builtin} (case-insensitive), naming the choices on error. */
    public static CpuKernels parse(String name) {
        for (CpuKernels k : values()) {
            if (k.name().equalsIgnoreCase(name)) {
                return k;
            }
        }
        throw new IllegalArgumentException("Unknown CPU kernels '" + name + "'; choose xnnpack or builtin.");
    }
}
