package dev.ravit.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.List;

/** The scheduler's answer for one image (the Java twin of {@code scheduler.Classification}). */
public final class Classification {
    /** One class with its probability. */
    public static final class Prediction {
        private final int index;
        private final String label;
        private final double probability;

        public Prediction(int index, String label, double probability) {
            this.index = index;
            this.label = label;
            this.probability = probability;
        }

        public int index() {
            return index;
        }

        public String label() {
            return label;
        }

        public double probability() {
            return probability;
        }

        @Override
        public String toString() {
            return label + " (" + index + "): " + probability;
        }
    }

    private final int label;
    private final String labelName;
    private final double[] probabilities;
    private final List<String> labels;
    private final int exitIndex;
    private final String exitName;
    private final double[] entropies;
    private final double[] thresholds;
    private final long macs;
    private final long fullModelMacs;
    private final double[] branchLatencyMs;
    private final double totalLatencyMs;

    public Classification(int label, String labelName, double[] probabilities, List<String> labels, int exitIndex,
                          String exitName, double[] entropies, double[] thresholds, long macs, long fullModelMacs,
                          double[] branchLatencyMs, double totalLatencyMs) {
        this.label = label;
        this.labelName = labelName;
        this.probabilities = probabilities.clone();
        this.labels = Collections.unmodifiableList(new ArrayList<>(labels));
        this.exitIndex = exitIndex;
        this.exitName = exitName;
        this.entropies = entropies.clone();
        this.thresholds = thresholds.clone();
        this.macs = macs;
        this.fullModelMacs = fullModelMacs;
        this.branchLatencyMs = branchLatencyMs.clone();
        this.totalLatencyMs = totalLatencyMs;
    }

    /** Predicted class index (argmax of the answering exit's probabilities). */
    public int label() {
        return label;
    }

    public String labelName() {
        return labelName;
    }

    /** Softmax of the answering exit's dequantised logits. */
    public double[] probabilities() {
        return probabilities.clone();
    }

    /** 0-based position of the exit that answered. */
    public int exitIndex() {
        return exitIndex;
    }

    public String exitName() {
        return exitName;
    }

    /** Entropy (nats) of every visited exit, in order; the last one is the answering exit's. */
    public double[] entropies() {
        return entropies.clone();
    }

    /** Entropy of the answering exit. */
    public double entropy() {
        return entropies[entropies.length - 1];
    }

    /** The thresholds the decision used ({@code numExits - 1} values). */
    public double[] thresholds() {
        return thresholds.clone();
    }

    /** MACs spent: the answering exit's cumulative MACs. */
    public long macs() {
        return macs;
    }

    /** MACs of the full model (every branch), for "spent vs full". */
    public long fullModelMacs() {
        return fullModelMacs;
    }

    /** {@code macs / fullModelMacs}. */
    public double macFraction() {
        return fullModelMacs > 0 ? (double) macs / fullModelMacs : Double.NaN;
    }

    /** Time of each visited submodel's runtime call, in ms. */
    public double[] branchLatencyMs() {
        return branchLatencyMs.clone();
    }

    /** Wall time of the whole classification (runtime calls, requantisation, entropy), in ms. */
    public double totalLatencyMs() {
        return totalLatencyMs;
    }

    /** Time outside the runtime calls: the scheduler's own cost. */
    public double overheadMs() {
        double sum = 0;
        for (double t : branchLatencyMs) {
            sum += t;
        }
        return totalLatencyMs - sum;
    }

    /** The {@code k} most probable classes, most probable first (ties: lower index first). */
    public List<Prediction> topK(int k) {
        List<Prediction> all = new ArrayList<>();
        for (int i = 0; i < probabilities.length; i++) {
            all.add(new Prediction(i, i < labels.size() ? labels.get(i) : Integer.toString(i), probabilities[i]));
        }
        all.sort(Comparator.comparingDouble(Prediction::probability).reversed()
                .thenComparingInt(Prediction::index));
        return new ArrayList<>(all.subList(0, Math.max(0, Math.min(k, all.size()))));
    }

    @Override
    public String toString() {
        return labelName + " at " + exitName + " (entropy " + entropy() + ", " + macs + " MACs, "
                + totalLatencyMs + " ms)";
    }
}
