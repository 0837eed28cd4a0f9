package dev.ravit.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import org.junit.Test;

public class EntropyTest {
    @Test
    public void uniformLogitsHaveMaximalEntropy() {
        assertEquals(Math.log(10), Entropy.entropy(new double[10]), 1e-15);
        assertEquals(Math.log(10), Entropy.maxEntropy(10), 0);
    }

    @Test
    public void oneHotLogitsHaveZeroEntropy() {
        double[] logits = {1000, 0, 0, 0};
        assertEquals(0.0, Entropy.entropy(logits), 0);
    }

    @Test
    public void vanishingProbabilitiesCountAsZero() {
        // Two classes share the mass; the third has p = exp(-2000) = 0 exactly (0·ln 0 = 0).
        assertEquals(Math.log(2), Entropy.entropy(new double[] {0, 0, -2000}), 1e-15);
    }

    @Test
    public void twoClassEntropyByHand() {
        double p = 1 / (1 + Math.exp(-1));  // softmax([1, 0])[0]
        double expected = -(p * Math.log(p) + (1 - p) * Math.log(1 - p));
        assertEquals(expected, Entropy.entropy(new double[] {1, 0}), 1e-15);
    }

    @Test
    public void entropyIsShiftInvariantAndStable() {
        double[] a = {1, 2, 3};
        double[] b = {1e6 + 1, 1e6 + 2, 1e6 + 3};
        assertEquals(Entropy.entropy(a), Entropy.entropy(b), 1e-9);
        assertTrue(Double.isFinite(Entropy.entropy(new double[] {1e300, -1e300})));
    }

    @Test
    public void entropyStaysWithinZeroAndLnC() {
        java.util.Random rng = new java.util.Random(0);
        for (int trial = 0; trial < 1000; trial++) {
            double[] logits = new double[7];
            for (int i = 0; i < logits.length; i++) {
                logits[i] = rng.nextGaussian() * (trial % 10) * 1e-3;
            }
            double u = Entropy.entropy(logits);
            assertTrue(u >= 0 && u <= Math.log(7));
        }
    }

    @Test
    public void softmaxSumsToOneAndKeepsOrder() {
        double[] p = Entropy.softmax(new double[] {2, 1, 0, 1000, -1000});
        double sum = 0;
        for (double v : p) {
            sum += v;
        }
        assertEquals(1.0, sum, 1e-15);
        assertEquals(3, Entropy.argmax(p));
        assertArrayEquals(new double[] {0.5, 0.5}, Entropy.softmax(new double[] {3, 3}), 0);
    }

    @Test
    public void argmaxTakesTheFirstOnTies() {
        assertEquals(1, Entropy.argmax(new double[] {0, 2, 2, 1}));
    }

    @Test
    public void rejectsEmptyAndNaN() {
        assertThrows(IllegalArgumentException.class, () -> Entropy.entropy(new double[0]));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Entropy.softmax(new double[] {0, Double.NaN}));
        assertTrue(e.getMessage().contains("NaN"));
    }
}
