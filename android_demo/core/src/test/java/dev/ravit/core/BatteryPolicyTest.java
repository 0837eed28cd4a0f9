package dev.ravit.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.util.Arrays;
import java.util.List;

import org.junit.Test;

public class BatteryPolicyTest {
    private final BatteryPolicy policy = new BatteryPolicy(0.5, 0.15, new double[] {0.1, 0.2},
            new double[] {0.8, 0.9});

    @Test
    public void fullBatteryUsesTheNormalThresholds() {
        assertArrayEquals(new double[] {0.1, 0.2}, policy.thresholdsAt(1.0), 0);
        assertArrayEquals(new double[] {0.1, 0.2}, policy.thresholdsAt(0.5), 0);
    }

    @Test
    public void lowBatteryUsesTheSaverThresholds() {
        assertArrayEquals(new double[] {0.8, 0.9}, policy.thresholdsAt(0.15), 0);
        assertArrayEquals(new double[] {0.8, 0.9}, policy.thresholdsAt(0.0), 0);
    }

    @Test
    public void inBetweenIsLinear() {
        // Level 0.325 is half-way between 0.5 and 0.15.
        assertArrayEquals(new double[] {0.45, 0.55}, policy.thresholdsAt(0.325), 1e-12);
        double[] a = policy.thresholdsAt(0.4);
        double[] b = policy.thresholdsAt(0.3);
        assertTrue("thresholds rise as the battery drains", b[0] > a[0] && b[1] > a[1]);
    }

    @Test
    public void rejectsLevelsOutsideZeroOne() {
        for (double level : new double[] {-0.01, 1.01, Double.NaN}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> policy.thresholdsAt(level));
            assertTrue(e.getMessage(), e.getMessage().contains("Battery level must be in [0, 1], got " + level));
        }
    }

    @Test
    public void rejectsInconsistentPolicies() {
        assertThrows(IllegalArgumentException.class,
                () -> new BatteryPolicy(0.1, 0.5, new double[] {0.1}, new double[] {0.2}));
        assertThrows(IllegalArgumentException.class,
                () -> new BatteryPolicy(0.5, 0.1, new double[] {0.1}, new double[] {0.2, 0.3}));
    }

    private static final List<OperatingPoint> POINTS = Arrays.asList(
            new OperatingPoint(0.9, new double[] {0.1}, 0.90, 900, new double[] {0.2, 0.8}),
            new OperatingPoint(0.7, new double[] {0.5}, 0.85, 650, new double[] {0.5, 0.5}),
            new OperatingPoint(0.5, new double[] {0.9}, 0.80, 480, new double[] {0.8, 0.2}));

    @Test
    public void macBudgetPicksTheMostAccuratePointThatFits() {
        double[] current = {0.05};
        assertArrayEquals(new double[] {0.5}, BatteryPolicy.forMacBudget(1000, POINTS, 0.7, current), 0);
        assertArrayEquals(new double[] {0.9}, BatteryPolicy.forMacBudget(1000, POINTS, 500, current), 0);
        assertArrayEquals(new double[] {0.1}, BatteryPolicy.forMacBudget(1000, POINTS, 0.95, current), 0);
    }

    @Test
    public void fullBudgetKeepsTheCurrentThresholds() {
        double[] current = {0.05};
        assertArrayEquals(current, BatteryPolicy.forMacBudget(1000, POINTS, 1.0, current), 0);
        assertArrayEquals(current, BatteryPolicy.forMacBudget(1000, POINTS, 5000, current), 0);
    }

    @Test
    public void tooSmallABudgetNamesTheCheapestPoint() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> BatteryPolicy.forMacBudget(1000, POINTS, 0.3, new double[] {0.0}));
        assertTrue(e.getMessage(), e.getMessage().contains("300 MACs") && e.getMessage().contains("cheapest needs 480"));
    }
}
