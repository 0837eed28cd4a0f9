package dev.ravit.core;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;
import java.util.function.LongSupplier;

/**
 * The early-exit scheduler, exactly {@code RAViTScheduler.classify}: run exit 0,
 * dequantise its logits, take the softmax entropy, stop when it is {@code <= τ} (the last
 * exit always answers), else requantise {@code cls_out} into the next submodel's
 * {@code cls_in} and go on.
 *
 * <p>Not thread-safe (nor is a runtime): call it from one inference thread.
 */
public final class Scheduler {
    private final Manifest manifest;
    private final SubmodelRuntime runtime;
    private final LongSupplier nanoClock;

    public Scheduler(Manifest manifest, SubmodelRuntime runtime) {
        this(manifest, runtime, System::nanoTime);
    }

    /** @param nanoClock the clock latencies are measured with (tests pass a fake one). */
    public Scheduler(Manifest manifest, SubmodelRuntime runtime, LongSupplier nanoClock) {
        this.manifest = Objects.requireNonNull(manifest, "manifest");
        this.runtime = Objects.requireNonNull(runtime, "runtime");
        this.nanoClock = Objects.requireNonNull(nanoClock, "nanoClock");
    }

    public Manifest manifest() {
        return manifest;
    }

    /** Classifies with the manifest's default thresholds. */
    public Classification classify(TensorData image) {
        return classify(image, manifest.defaultPolicy());
    }

    /** Classifies with per-exit thresholds (validated: {@code numExits - 1} or {@code numExits} values). */
    public Classification classify(TensorData image, double[] thresholds) {
        return classify(image, ExitPolicy.perExit(thresholds, manifest.numExits(), manifest.numClasses()));
    }

    /**
     * Classifies one image with the early-exit rule.
     *
     * @param image the image input ({@code [1, H, W, 3]} or {@code [H, W, 3]}, the manifest's dtype).
     * @throws IllegalArgumentException for an image or policy that does not fit the model.
     * @throws IllegalStateException if the runtime returns tensors that do not match the manifest.
     */
    public Classification classify(TensorData image, ExitPolicy policy) {
        long start = nanoClock.getAsLong();
        if (policy.numExits() != manifest.numExits() || policy.numClasses() != manifest.numClasses()) {
            throw new IllegalArgumentException("Policy for " + policy.numExits() + " exits and " + policy.numClasses()
                    + " classes; the model has " + manifest.numExits() + " exits and " + manifest.numClasses()
                    + " classes.");
        }
        image = checkImage(image);
        int numExits = manifest.numExits();
        double[] entropies = new double[numExits];
        double[] latencies = new double[numExits];
        TensorData cls = null;
        for (int k = 0; k < numExits; k++) {
            ExitSpec exit = manifest.exit(k);
            Map<String, TensorData> inputs = new LinkedHashMap<>();
            inputs.put("image", image);
            if (k > 0) {
                inputs.put("cls_in", Quantization.requantize(cls, manifest.exit(k - 1).output("cls_out"),
                        exit.input("cls_in")));
            }
            long t0 = nanoClock.getAsLong();
            Map<String, TensorData> outputs = runtime.run(k, inputs);
            long t1 = nanoClock.getAsLong();
            latencies[k] = (t1 - t0) / 1e6;
            TensorSpec logitsSpec = exit.output("logits");
            TensorData logitsData = checkOutput(outputs, exit, "logits");
            double[] logits = Quantization.dequantize(logitsData, logitsSpec);
            double u = Entropy.entropy(logits);
            entropies[k] = u;
            if (policy.shouldExit(k, u)) {
                double[] probabilities = Entropy.softmax(logits);
                int label = Entropy.argmax(probabilities);
                double total = (nanoClock.getAsLong() - start) / 1e6;
                return new Classification(label, manifest.label(label), probabilities, manifest.labels(), k,
                        exit.name(), Arrays.copyOf(entropies, k + 1), policy.thresholds(), exit.cumulativeMacs(),
                        manifest.fullModelMacs(), Arrays.copyOf(latencies, k + 1), total);
            }
            cls = checkOutput(outputs, exit, "cls_out");
        }
        throw new AssertionError("unreachable: the last exit always answers");
    }

    private TensorData checkImage(TensorData image) {
        TensorSpec spec = manifest.imageSpec();
        int[] shape = spec.shape();
        int[] unbatched = Arrays.copyOfRange(shape, 1, shape.length);
        if (Arrays.equals(image.shape(), unbatched)) {
            image = image.reshape(shape);
        }
        if (!Arrays.equals(image.shape(), shape)) {
            throw new IllegalArgumentException("Image shape " + Arrays.toString(image.shape())
                    + " does not match the model input " + Arrays.toString(shape) + " (resize the image first).");
        }
        if (image.dtype() != spec.dtype()) {
            throw new IllegalArgumentException("The model takes " + spec.dtype() + " pixels; got " + image.dtype()
                    + " (use ImagePreprocessor).");
        }
        return image;
    }

    private static TensorData checkOutput(Map<String, TensorData> outputs, ExitSpec exit, String name) {
        TensorSpec spec = exit.output(name);
        TensorData t = outputs == null ? null : outputs.get(name);
        if (t == null) {
            throw new IllegalStateException("The runtime returned no '" + name + "' for " + exit.name() + " ("
                    + exit.file() + "); got " + (outputs == null ? "null" : outputs.keySet()) + ".");
        }
        if (t.dtype() != spec.dtype() || t.size() != spec.elementCount()) {
            throw new IllegalStateException("The runtime's '" + name + "' of " + exit.name() + " is " + t.dtype() + " "
                    + Arrays.toString(t.shape()) + "; the manifest says " + spec.dtype() + " "
                    + Arrays.toString(spec.shape()) + ".");
        }
        return t;
    }
}
