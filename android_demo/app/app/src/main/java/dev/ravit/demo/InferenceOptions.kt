package dev.ravit.demo

/** Where LiteRT runs the submodels. */
enum class Delegate(val label: String) {
    /** LiteRT's built-in CPU kernels, XNNPACK switched off. */
    CPU("CPU"),

    /** The XNNPACK CPU delegate (LiteRT's default; usually the fastest for int8). */
    XNNPACK("XNNPACK"),

    /** The GPU delegate (falls back to XNNPACK where the device does not support it). */
    GPU("GPU"),

    /** Android's Neural Networks API (deprecated from Android 15; may fall back to CPU). */
    NNAPI("NNAPI"),
}

/**
 * How the interpreters are built. Changing it makes [RAViTClassifier] close its
 * interpreters and rebuild them, lazily, on its inference thread.
 *
 * @property delegate where the submodels run.
 * @property numThreads CPU threads per interpreter, passed to `Interpreter.Options.setNumThreads`.
 */
data class InferenceOptions(
    val delegate: Delegate = Delegate.XNNPACK,
    val numThreads: Int = 2,
) {
    init {
        require(numThreads in 1..MAX_THREADS) { "numThreads must be in 1..$MAX_THREADS, got $numThreads." }
    }

    companion object {
        const val MAX_THREADS = 8
        val THREAD_CHOICES = listOf(1, 2, 4, 8)
    }
}
