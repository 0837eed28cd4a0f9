package dev.ravit.core;

/**
 * One calibrated operating point of the manifest's {@code operating_points}: the per-exit
 * thresholds chosen for a MAC budget, with the accuracy, average MACs and exit fractions
 * measured on the calibration images.
 */
public final class OperatingPoint {
    private final double macFraction;
    private final double[] thresholds;
    private final double accuracy;
    private final double avgMacs;
    private final double[] exitFractions;

    public OperatingPoint(double macFraction, double[] thresholds, double accuracy, double avgMacs,
                          double[] exitFractions) {
        this.macFraction = macFraction;
        this.thresholds = thresholds.clone();
        this.accuracy = accuracy;
        this.avgMacs = avgMacs;
        this.exitFractions = exitFractions.clone();
    }

    public double macFraction() {
        return macFraction;
    }

    public double[] thresholds() {
        return thresholds.clone();
    }

    public double accuracy() {
        return accuracy;
    }

    public double avgMacs() {
        return avgMacs;
    }

    public double[] exitFractions() {
        return exitFractions.clone();
    }
}
