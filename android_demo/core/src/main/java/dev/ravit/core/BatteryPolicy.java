package dev.ravit.core;

import java.util.List;
import java.util.Locale;

/**
 * Battery-aware thresholds, as {@code RAViTScheduler.battery_thresholds}: at or above
 * {@code high} the normal thresholds apply, at or below {@code low} the saver ones, and in
 * between they are interpolated linearly, so the phone trades a little accuracy for
 * battery life gradually as the battery drains.
 *
 * <p>Also {@link #forMacBudget}, the choice among the manifest's calibrated operating
 * points of {@code RAViTScheduler.thresholds_for_mac_budget}.
 */
public final class BatteryPolicy {
    private final double high;
    private final double low;
    private final double[] thresholdsHigh;
    private final double[] thresholdsLow;

    /**
     * @throws IllegalArgumentException if the levels are not {@code 0 <= low <= high <= 1} or
     *     the two threshold lists differ in length.
     */
    public BatteryPolicy(double high, double low, double[] thresholdsHigh, double[] thresholdsLow) {
        if (!(0.0 <= low && low <= high && high <= 1.0)) {
            throw new IllegalArgumentException("Battery levels must satisfy 0 <= low <= high <= 1, got low=" + low
                    + ", high=" + high + ".");
        }
        if (thresholdsHigh.length != thresholdsLow.length) {
            throw new IllegalArgumentException("thresholds_high has " + thresholdsHigh.length
                    + " entries but thresholds_low has " + thresholdsLow.length + ".");
        }
        this.high = high;
        this.low = low;
        this.thresholdsHigh = thresholdsHigh.clone();
        this.thresholdsLow = thresholdsLow.clone();
    }

    public double high() {
        return high;
    }

    public double low() {
        return low;
    }

    public double[] thresholdsHigh() {
        return thresholdsHigh.clone();
    }

    public double[] thresholdsLow() {
        return thresholdsLow.clone();
    }

    /**
     * Thresholds at battery {@code level} in [0, 1] (Android: capacity percent / 100).
     *
     * @throws IllegalArgumentException for NaN or a level outside [0, 1].
     */
    public double[] thresholdsAt(double level) {
        if (Double.isNaN(level) || level < 0.0 || level > 1.0) {
            throw new IllegalArgumentException("Battery level must be in [0, 1], got " + level + ".");
        }
        double w = level >= high ? 0.0 : level <= low ? 1.0 : (high - level) / (high - low);
        double[] out = new double[thresholdsHigh.length];
        for (int i = 0; i < out.length; i++) {
            out[i] = (1 - w) * thresholdsHigh[i] + w * thresholdsLow[i];
        }
        return out;
    }

    /**
     * The most accurate calibrated operating point whose average MACs fit {@code budget}.
     *
     * @param budget a fraction of the full model's MACs when {@code <= 1}, else MACs.
     * @param current thresholds returned when the budget covers the full model.
     * @throws IllegalArgumentException when no operating point fits (names the cheapest).
     */
    public static double[] forMacBudget(double fullModelMacs, List<OperatingPoint> points, double budget,
                                        double[] current) {
        double macs = budget <= 1 ? budget * fullModelMacs : budget;
        OperatingPoint best = null;
        double cheapest = Double.NaN;
        for (OperatingPoint p : points) {
            cheapest = Double.isNaN(cheapest) ? p.avgMacs() : Math.min(cheapest, p.avgMacs());
            if (p.avgMacs() <= macs && (best == null || p.accuracy() > best.accuracy())) {
                best = p;
            }
        }
        if (macs >= fullModelMacs) {
            return current.clone();
        }
        if (best == null) {
            throw new IllegalArgumentException(String.format(Locale.ROOT,
                    "No calibrated operating point fits %,.0f MACs; the cheapest needs %,.0f.", macs, cheapest));
        }
        return best.thresholds();
    }

    /** {@link #forMacBudget(double, List, double, double[])} over a manifest's operating points. */
    public static double[] forMacBudget(Manifest manifest, double budget, double[] current) {
        return forMacBudget(manifest.fullModelMacs(), manifest.operatingPoints(), budget, current);
    }
}
