package dev.ravit.core;

/**
 * Softmax and the early-exit uncertainty, as {@code ravit_keras.exits} computes them:
 * {@code u = -Σ p·ln p} of {@code p = softmax(logits)}, natural log, not normalised,
 * {@code 0·ln 0 = 0}, clipped to {@code [0, ln C]}. Everything in double.
 */
public final class Entropy {
    private Entropy() {
    }

    /** {@code ln C}: the largest possible entropy over {@code numClasses} classes. */
    public static double maxEntropy(int numClasses) {
        if (numClasses < 1) {
            throw new IllegalArgumentException("numClasses must be >= 1, got " + numClasses + ".");
        }
        return Math.log(numClasses);
    }

    private static double max(double[] logits) {
        if (logits.length == 0) {
            throw new IllegalArgumentException("No logits: need at least one class.");
        }
        double m = Double.NEGATIVE_INFINITY;
        for (double x : logits) {
            if (Double.isNaN(x)) {
                throw new IllegalArgumentException("Logits contain NaN.");
            }
            m = Math.max(m, x);
        }
        return m;
    }

    /** Numerically stable softmax: {@code exp(x - max) / Σ exp(x - max)}. */
    public static double[] softmax(double[] logits) {
        double m = max(logits);
        double[] e = new double[logits.length];
        double sum = 0.0;
        for (int i = 0; i < e.length; i++) {
            e[i] = Math.exp(logits[i] - m);
            sum += e[i];
        }
        for (int i = 0; i < e.length; i++) {
            e[i] /= sum;
        }
        return e;
    }

    /** Entropy of {@code softmax(logits)} in nats, in {@code [0, ln C]}. */
    public static double entropy(double[] logits) {
        double m = max(logits);
        int c = logits.length;
        double[] z = new double[c];
        double sum = 0.0;
        for (int i = 0; i < c; i++) {
            z[i] = logits[i] - m;
            sum += Math.exp(z[i]);
        }
        double logSum = Math.log(sum);
        double u = 0.0;
        for (int i = 0; i < c; i++) {
            double logP = z[i] - logSum;
            double p = Math.exp(logP);
            if (p > 0) {
                u -= p * logP;
            }
        }
        // Rounding can push a near-uniform row a hair above ln C; the clip keeps
        // the promise that a threshold of ln C stops every image.
        return Math.min(Math.max(u, 0.0), Math.log(c));
    }

    /** Index of the largest value; the first one on ties (like {@code numpy.argmax}). */
    public static int argmax(double[] values) {
        int best = 0;
        for (int i = 1; i < values.length; i++) {
            if (values[i] > values[best]) {
                best = i;
            }
        }
        return best;
    }
}
