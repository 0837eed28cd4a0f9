package dev.ravit.demo

import dev.ravit.core.CpuKernels

// Plain Kotlin (core + standard library only): compiled and unit-tested on a desktop JVM
// by android_demo/app/run_logic_tests.sh.

/**
 * Where LiteRT runs the submodels.
 *
 * @property cpuKernels the CPU kernels it computes with, or null for a non-CPU delegate.
 */
enum class Delegate(val label: String, val cpuKernels: CpuKernels?) {
    /**
     * The CPU with XNNPACK (LiteRT's default, usually the fastest for int8): the kernels
     * Python's interpreter ran when the exit thresholds were calibrated. It used to mean
     * `setUseXNNPACK(false)`, which computes other logits (issue #13).
     */
    CPU("CPU (XNNPACK)", CpuKernels.XNNPACK),

    /** LiteRT's built-in CPU kernels (XNNPACK off): for comparison; the screen warns. */
    CPU_BUILTIN("CPU, built-in kernels", CpuKernels.BUILTIN),

    /** The GPU delegate (falls back to the CPU where the device does not support it). */
    GPU("GPU", null),

    /** Android's Neural Networks API (deprecated from Android 15; may fall back to CPU). */
    NNAPI("NNAPI", null);

    /** What `Interpreter.Options.setUseXNNPACK` must be set to. */
    val useXnnpack: Boolean get() = cpuKernels != CpuKernels.BUILTIN

    /** Whether it computes on the kernels the thresholds were calibrated on. */
    val calibrated: Boolean get() = cpuKernels?.isCalibrated == true

    /** The warning the screen shows while this delegate runs, or null for the calibrated kernels. */
    fun calibrationWarning(): String? = if (calibrated) null else
        "Thresholds were calibrated on ${CpuKernels.CALIBRATED} CPU kernels; $label computes different " +
            "values, so exits and labels can differ from the calibration."

    companion object {
        /** Where a failing delegate falls back to: the calibrated CPU kernels. */
        val FALLBACK = CPU
    }
}

/**
 * How the interpreters are built. Changing it makes [RAViTClassifier] close its
 * interpreters and rebuild them, lazily, on its inference thread ([needsRebuild]).
 *
 * @property delegate where the submodels run.
 * @property numThreads CPU threads per interpreter, passed to `Interpreter.Options.setNumThreads`.
 */
data class InferenceOptions(
    val delegate: Delegate = Delegate.CPU,
    val numThreads: Int = 2,
) {
    init {
        require(numThreads in 1..MAX_THREADS) { "numThreads must be in 1..$MAX_THREADS, got $numThreads." }
    }

    companion object {
        const val MAX_THREADS = 8
        val THREAD_CHOICES = listOf(1, 2, 4, 8)

        /** Whether interpreters built for [builtFor] (null: none built) must be rebuilt for [wanted]. */
        fun needsRebuild(builtFor: InferenceOptions?, wanted: InferenceOptions): Boolean = builtFor != wanted
    }
}
