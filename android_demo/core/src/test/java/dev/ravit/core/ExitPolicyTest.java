package dev.ravit.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import org.junit.Test;

public class ExitPolicyTest {
    private static String message(Runnable r) {
        return assertThrows(IllegalArgumentException.class, r::run).getMessage();
    }

    @Test
    public void scalarAppliesToEveryExitButTheLast() {
        ExitPolicy p = ExitPolicy.uniform(0.2, 3, 10);
        assertArrayEquals(new double[] {0.2, 0.2}, p.thresholds(), 0);
        assertTrue(p.shouldExit(0, 0.2));
        assertFalse(p.shouldExit(1, 0.2000001));
        assertTrue("the last exit always answers", p.shouldExit(2, Math.log(10)));
    }

    @Test
    public void perExitAcceptsOneEntryPerExitAndIgnoresTheLast() {
        assertArrayEquals(new double[] {0.1, 0.3}, ExitPolicy.perExit(new double[] {0.1, 0.3}, 3, 10).thresholds(), 0);
        assertArrayEquals(new double[] {0.1, 0.3},
                ExitPolicy.perExit(new double[] {0.1, 0.3, 2.0}, 3, 10).thresholds(), 0);
        assertEquals(0.3, ExitPolicy.perExit(new double[] {0.1, 0.3}, 3, 10).threshold(1), 0);
    }

    @Test
    public void zeroMeansNoEarlyExitAndLnCMeansAlways() {
        ExitPolicy never = ExitPolicy.never(2, 10);
        assertFalse(never.shouldExit(0, 1e-12));
        assertTrue("exactly zero entropy still stops", never.shouldExit(0, 0.0));
        ExitPolicy always = ExitPolicy.uniform(Math.log(10), 2, 10);
        assertTrue(always.shouldExit(0, Entropy.entropy(new double[10])));
    }

    @Test
    public void rejectsNaNAndInfinity() {
        String m = message(() -> ExitPolicy.uniform(Double.NaN, 2, 10));
        assertTrue(m, m.contains("threshold = NaN") && m.contains("not a finite number"));
        m = message(() -> ExitPolicy.perExit(new double[] {0.1, Double.POSITIVE_INFINITY}, 3, 10));
        assertTrue(m, m.contains("threshold[1] = Infinity"));
    }

    @Test
    public void rejectsNegative() {
        String m = message(() -> ExitPolicy.perExit(new double[] {-0.1}, 2, 10));
        assertTrue(m, m.contains("threshold[0] = -0.1") && m.contains("negative"));
    }

    @Test
    public void rejectsAboveLnC() {
        String m = message(() -> ExitPolicy.uniform(2.31, 2, 10));
        assertTrue(m, m.contains("threshold = 2.31") && m.contains("ln(10) = 2.30259"));
        ExitPolicy.uniform(Math.log(10), 2, 10);  // ln C itself is allowed.
    }

    @Test
    public void rejectsAWrongCount() {
        String m = message(() -> ExitPolicy.perExit(new double[] {0.1, 0.2, 0.3}, 2, 10));
        assertTrue(m, m.contains("[0.1, 0.2, 0.3]") && m.contains("1 or 2 entries"));
        m = message(() -> ExitPolicy.perExit(new double[0], 3, 10));
        assertTrue(m, m.contains("2 or 3 entries"));
    }

    @Test
    public void rejectsBadCounts() {
        assertTrue(message(() -> ExitPolicy.uniform(0.1, 0, 10)).contains("num_exits"));
        assertTrue(message(() -> ExitPolicy.uniform(0.1, 2, 1)).contains("num_classes"));
    }

    @Test
    public void oneExitHasNoThresholds() {
        ExitPolicy p = ExitPolicy.uniform(0.5, 1, 10);
        assertEquals(0, p.thresholds().length);
        assertTrue(p.shouldExit(0, 2.0));
    }

    @Test
    public void exitIndexIsChecked() {
        ExitPolicy p = ExitPolicy.uniform(0.5, 2, 10);
        assertThrows(IndexOutOfBoundsException.class, () -> p.shouldExit(2, 0.1));
        assertThrows(IndexOutOfBoundsException.class, () -> p.threshold(1));
    }
}
