package dev.ravit.demo

import dev.ravit.core.BatteryPolicy
import dev.ravit.core.Classification
import dev.ravit.core.CpuKernels
import dev.ravit.demo.logic.FrameGate
import dev.ravit.demo.logic.batteryLevelFromPercent
import dev.ravit.demo.logic.branchLatencyText
import dev.ravit.demo.logic.chooseThresholds
import dev.ravit.demo.logic.entropiesText
import dev.ravit.demo.logic.sliderProgress
import dev.ravit.demo.logic.sliderThreshold
import dev.ravit.demo.logic.topClassesText
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertNotNull
import org.junit.Assert.assertNull
import org.junit.Assert.assertThrows
import org.junit.Assert.assertTrue
import org.junit.Test
import java.util.concurrent.CountDownLatch
import java.util.concurrent.Executors
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicInteger

/** The app's decisions, on a desktop JVM (run_logic_tests.sh; in Android Studio :app:testDebugUnitTest). */
class AppLogicTest {
    @Test
    fun cpuDelegateComputesOnTheCalibratedXnnpackKernels() {
        // Issue #13: Delegate.CPU used to set setUseXNNPACK(false), i.e. the built-in kernels.
        assertEquals(CpuKernels.XNNPACK, Delegate.CPU.cpuKernels)
        assertTrue(Delegate.CPU.useXnnpack)
        assertTrue(Delegate.CPU.calibrated)
        assertNull(Delegate.CPU.calibrationWarning())
        assertEquals(Delegate.CPU, InferenceOptions().delegate)
        assertEquals(Delegate.CPU, Delegate.FALLBACK)
    }

    @Test
    fun otherKernelsWarn() {
        assertFalse(Delegate.CPU_BUILTIN.useXnnpack)
        for (d in listOf(Delegate.CPU_BUILTIN, Delegate.GPU, Delegate.NNAPI)) {
            assertFalse(d.name, d.calibrated)
            val warning = d.calibrationWarning()
            assertNotNull(d.name, warning)
            assertTrue(warning, warning!!.contains("XNNPACK") && warning.contains(d.label))
        }
    }

    @Test
    fun optionChangesRebuildTheInterpreters() {
        val a = InferenceOptions(Delegate.CPU, 2)
        assertTrue(InferenceOptions.needsRebuild(null, a))
        assertFalse(InferenceOptions.needsRebuild(a, InferenceOptions(Delegate.CPU, 2)))
        assertTrue(InferenceOptions.needsRebuild(a, a.copy(numThreads = 4)))
        assertTrue(InferenceOptions.needsRebuild(a, a.copy(delegate = Delegate.GPU)))
        val e = assertThrows(IllegalArgumentException::class.java) { InferenceOptions(numThreads = 9) }
        assertTrue(e.message, e.message!!.contains("1..8"))
    }

    @Test
    fun frameGateLetsOneClassificationRunAndDropsTheRest() {
        val gate = FrameGate()
        assertTrue(gate.isFree)
        assertTrue(gate.tryAcquire())
        assertFalse(gate.isFree)
        assertFalse("a second frame is dropped while busy", gate.tryAcquire())
        gate.release()
        assertTrue(gate.tryAcquire())
        gate.release()
        assertThrows(IllegalStateException::class.java) { gate.release() }
    }

    @Test
    fun frameGateAdmitsOneOfManyConcurrentFrames() {
        val gate = FrameGate()
        val pool = Executors.newFixedThreadPool(8)
        val start = CountDownLatch(1)
        val admitted = AtomicInteger()
        repeat(64) {
            pool.execute {
                start.await()
                if (gate.tryAcquire()) admitted.incrementAndGet()
            }
        }
        start.countDown()
        pool.shutdown()
        assertTrue(pool.awaitTermination(10, TimeUnit.SECONDS))
        assertEquals(1, admitted.get())
    }

    @Test
    fun thresholdsFollowTheSliderOrTheBatteryPolicy() {
        val policy = BatteryPolicy(0.8, 0.2, doubleArrayOf(0.5), doubleArrayOf(1.5))
        assertEquals(listOf(0.7), chooseThresholds(2, 0.7, false, policy, 0.1).thresholds)
        assertNull(chooseThresholds(2, 0.7, false, policy, 0.1).note)
        assertEquals(listOf(1.5), chooseThresholds(2, 0.7, true, policy, 0.1).thresholds)
        assertEquals(listOf(0.5), chooseThresholds(2, 0.7, true, policy, 0.9).thresholds)
        assertEquals(1.0, chooseThresholds(2, 0.7, true, policy, 0.5).thresholds.single(), 1e-12)
        val noLevel = chooseThresholds(2, 0.7, true, policy, null)
        assertEquals(listOf(0.7), noLevel.thresholds)
        assertEquals("Battery level unavailable; using the slider.", noLevel.note)
        val noPolicy = chooseThresholds(3, 0.7, true, null, 0.5)
        assertEquals(listOf(0.7, 0.7), noPolicy.thresholds)
        assertEquals("This model has no battery policy; using the slider.", noPolicy.note)
    }

    @Test
    fun batteryPercentBecomesALevel() {
        assertEquals(0.42, batteryLevelFromPercent(42)!!, 1e-12)
        assertNull(batteryLevelFromPercent(null))
        assertNull(batteryLevelFromPercent(-1))  // BatteryManager's "unknown".
        assertNull(batteryLevelFromPercent(101))
    }

    @Test
    fun sliderMapsToThresholdsAndBack() {
        val lnC = Math.log(10.0)
        assertEquals(0, sliderProgress(0.0, lnC, 1000))
        assertEquals(1000, sliderProgress(lnC, lnC, 1000))
        assertEquals(1000, sliderProgress(99.0, lnC, 1000))
        assertEquals(500, sliderProgress(lnC / 2, lnC, 1000))
        assertEquals(lnC / 2, sliderThreshold(500, lnC, 1000), 1e-12)
        assertEquals(lnC, sliderThreshold(2000, lnC, 1000), 1e-12)
    }

    @Test
    fun resultPanelText() {
        val labels = listOf("cat", "dog", "ship")
        val c = Classification(
            1, "dog", doubleArrayOf(0.2, 0.7, 0.1), labels, 1, "exit_2", doubleArrayOf(1.0986, 0.8018),
            doubleArrayOf(0.5), 300L, 300L, doubleArrayOf(1.2, 3.4), 4.8,
        )
        assertEquals(
            "1. dog                       70.0 %\n2. cat                       20.0 %\n3. ship                      10.0 %",
            topClassesText(c),
        )
        assertEquals("1.099, 0.802", entropiesText(c))
        assertEquals("exit_1 1.20 ms + exit_2 3.40 ms", branchLatencyText(c, listOf("exit_1", "exit_2")))
    }
}
