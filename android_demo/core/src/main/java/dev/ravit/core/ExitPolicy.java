package dev.ravit.core;

import java.util.Arrays;
import java.util.Locale;

/**
 * Per-exit entropy thresholds τ and the early-exit rule: after exit {@code i}, stop when
 * {@code u_i <= τ_i}; the last exit always answers. τ = 0 means no early exit, τ = ln C
 * stops every image at that exit.
 *
 * <p>Validation is that of {@code ravit_keras.exits.validate_thresholds}: one value
 * for every exit, or one per exit ({@code numExits - 1} entries, or {@code numExits} with
 * the last ignored); each finite, {@code >= 0} and {@code <= ln C}. Violations throw
 * {@link IllegalArgumentException} naming the value.
 */
public final class ExitPolicy {
    private final double[] thresholds;
    private final int numExits;
    private final int numClasses;

    private ExitPolicy(double[] thresholds, int numExits, int numClasses) {
        this.thresholds = thresholds;
        this.numExits = numExits;
        this.numClasses = numClasses;
    }

    /** The same τ after every exit but the last. */
    public static ExitPolicy uniform(double threshold, int numExits, int numClasses) {
        return new ExitPolicy(validate(threshold, numExits, numClasses), numExits, numClasses);
    }

    /** One τ per exit: {@code numExits - 1} values, or {@code numExits} (the last is ignored). */
    public static ExitPolicy perExit(double[] thresholds, int numExits, int numClasses) {
        return new ExitPolicy(validate(thresholds, numExits, numClasses), numExits, numClasses);
    }

    /** No early exit: every image runs every branch. */
    public static ExitPolicy never(int numExits, int numClasses) {
        return uniform(0.0, numExits, numClasses);
    }

    /** Validates a scalar τ; returns it repeated {@code numExits - 1} times. */
    public static double[] validate(double threshold, int numExits, int numClasses) {
        checkCounts(numExits, numClasses);
        double[] out = new double[numExits - 1];
        Arrays.fill(out, threshold);
        checkValues(out, true, numClasses);
        return out;
    }

    /** Validates per-exit thresholds; returns the {@code numExits - 1} that matter. */
    public static double[] validate(double[] thresholds, int numExits, int numClasses) {
        checkCounts(numExits, numClasses);
        if (thresholds == null || (thresholds.length != numExits - 1 && thresholds.length != numExits)) {
            throw new IllegalArgumentException("thresholds " + (thresholds == null ? "null" : Arrays.toString(thresholds))
                    + " must be a scalar or have " + (numExits - 1) + " or " + numExits
                    + " entries (one per exit; the last is ignored) for " + numExits + " exits.");
        }
        double[] out = Arrays.copyOf(thresholds, numExits - 1);
        checkValues(out, false, numClasses);
        return out;
    }

    private static void checkCounts(int numExits, int numClasses) {
        if (numExits < 1) {
            throw new IllegalArgumentException("num_exits must be a positive integer, got " + numExits + ".");
        }
        if (numClasses < 2) {
            throw new IllegalArgumentException("num_classes must be an integer >= 2, got " + numClasses + ".");
        }
    }

    private static void checkValues(double[] values, boolean scalar, int numClasses) {
        double limit = Entropy.maxEntropy(numClasses);
        for (int i = 0; i < values.length; i++) {
            double t = values[i];
            String where = scalar ? "threshold" : "threshold[" + i + "]";
            if (!Double.isFinite(t)) {
                throw new IllegalArgumentException(where + " = " + t + " is not a finite number.");
            }
            if (t < 0) {
                throw new IllegalArgumentException(where + " = " + t + " is negative; entropies are >= 0.");
            }
            if (t > limit) {
                String l = String.format(Locale.ROOT, "%.6g", limit);
                throw new IllegalArgumentException(where + " = " + t + " is above ln(" + numClasses + ") = " + l
                        + ", the maximum possible entropy over " + numClasses + " classes; use at most " + l
                        + " (which already stops every image at that exit).");
            }
        }
    }

    /** The {@code numExits - 1} thresholds (a copy). */
    public double[] thresholds() {
        return thresholds.clone();
    }

    /** τ of exit {@code exitIndex}; the last exit has none (it always answers). */
    public double threshold(int exitIndex) {
        if (exitIndex < 0 || exitIndex >= numExits - 1) {
            throw new IndexOutOfBoundsException("Exit " + exitIndex + " has no threshold (" + numExits
                    + " exits; the last always answers).");
        }
        return thresholds[exitIndex];
    }

    public int numExits() {
        return numExits;
    }

    public int numClasses() {
        return numClasses;
    }

    /** The rule: the last exit always answers, others when {@code entropy <= τ}. */
    public boolean shouldExit(int exitIndex, double entropy) {
        if (exitIndex < 0 || exitIndex >= numExits) {
            throw new IndexOutOfBoundsException("Exit " + exitIndex + " out of range for " + numExits + " exits.");
        }
        return exitIndex == numExits - 1 || entropy <= thresholds[exitIndex];
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof ExitPolicy && numExits == ((ExitPolicy) o).numExits
                && numClasses == ((ExitPolicy) o).numClasses && Arrays.equals(thresholds, ((ExitPolicy) o).thresholds);
    }

    @Override
    public int hashCode() {
        return 31 * (31 * numExits + numClasses) + Arrays.hashCode(thresholds);
    }

    @Override
    public String toString() {
        return "ExitPolicy" + Arrays.toString(thresholds);
    }
}
