package dev.ravit.demo.logic

import dev.ravit.core.BatteryPolicy
import java.util.concurrent.atomic.AtomicBoolean

// Plain Kotlin (core + standard library only): what the app decides, kept out of the
// Android classes so that run_logic_tests.sh can compile and test it on a desktop JVM.

/**
 * Drops camera frames while a classification runs: at most one is in flight.
 * Thread-safe (the analysis thread acquires, the inference coroutine releases).
 */
class FrameGate {
    private val busy = AtomicBoolean(false)

    /** Whether a frame would be taken now (lets the analyzer skip converting it). */
    val isFree: Boolean get() = !busy.get()

    /** Takes the gate for one classification; false (drop the frame) while one runs. */
    fun tryAcquire(): Boolean = busy.compareAndSet(false, true)

    /** Frees the gate; call exactly once per successful [tryAcquire]. */
    fun release() {
        check(busy.getAndSet(false)) { "FrameGate released without being acquired." }
    }
}

/** The thresholds in effect and, when the battery saver is on but cannot apply, why. */
data class ThresholdChoice(val thresholds: List<Double>, val note: String?)

/**
 * The thresholds the scheduler uses: the battery policy at [batteryLevel] when the saver
 * is on and can apply, else the slider's τ for every exit but the last.
 */
fun chooseThresholds(
    numExits: Int,
    manualThreshold: Double,
    batterySaver: Boolean,
    policy: BatteryPolicy?,
    batteryLevel: Double?,
): ThresholdChoice {
    require(numExits >= 1) { "numExits must be at least 1, got $numExits." }
    if (batterySaver && policy != null && batteryLevel != null) {
        return ThresholdChoice(policy.thresholdsAt(batteryLevel).toList(), null)
    }
    val note = when {
        !batterySaver -> null
        policy == null -> "This model has no battery policy; using the slider."
        else -> "Battery level unavailable; using the slider."
    }
    return ThresholdChoice(List(numExits - 1) { manualThreshold }, note)
}

/** `BatteryManager.BATTERY_PROPERTY_CAPACITY` (percent, or a negative/absurd value) as a level in [0, 1]. */
fun batteryLevelFromPercent(percent: Int?): Double? = if (percent != null && percent in 0..100) percent / 100.0 else null

/** The slider position (0..[steps]) for τ, and back; τ is clipped to [0, maxEntropy]. */
fun sliderProgress(tau: Double, maxEntropy: Double, steps: Int): Int =
    Math.round(tau.coerceIn(0.0, maxEntropy) / maxEntropy * steps).toInt()

fun sliderThreshold(progress: Int, maxEntropy: Double, steps: Int): Double =
    (progress.coerceIn(0, steps).toDouble() / steps) * maxEntropy

/** The top-[k] lines of the result panel: rank, label, probability in percent. */
fun topClassesText(result: dev.ravit.core.Classification, k: Int = 3): String =
    result.topK(k).withIndex().joinToString("\n") { (rank, p) ->
        String.format(java.util.Locale.US, "%d. %-24s %5.1f %%", rank + 1, p.label(), 100 * p.probability())
    }

/** Each visited exit's entropy, e.g. "1.234, 0.567". */
fun entropiesText(result: dev.ravit.core.Classification): String =
    result.entropies().joinToString(", ") { String.format(java.util.Locale.US, "%.3f", it) }

/** Each visited branch's latency, e.g. "exit_1 1.20 ms + exit_2 3.40 ms". */
fun branchLatencyText(result: dev.ravit.core.Classification, exitNames: List<String>): String =
    result.branchLatencyMs().withIndex().joinToString(" + ") { (i, ms) ->
        String.format(java.util.Locale.US, "%s %.2f ms", exitNames[i], ms)
    }
