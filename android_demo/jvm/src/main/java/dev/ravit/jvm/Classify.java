package dev.ravit.jvm;

import dev.ravit.core.Classification;
import dev.ravit.core.CpuKernels;
import dev.ravit.core.DirectoryAssetSource;
import dev.ravit.core.ExitPolicy;
import dev.ravit.core.ImagePreprocessor;
import dev.ravit.core.Manifest;
import dev.ravit.core.Scheduler;
import dev.ravit.core.TensorData;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import javax.imageio.ImageIO;

/**
 * Command line over the core and {@link LiteRtRuntime}: classifies every image of a folder
 * (PNG, JPEG, BMP, GIF; sorted by name) with a converted model, as the app does (center crop,
 * antialiased resize to the model's size, early-exit {@link Scheduler}).
 *
 * <pre>
 * java -cp "$(bash android_demo/jvm/build.sh | tail -1)" dev.ravit.jvm.Classify \
 *     --model runs/demo/tflite --images DIR [--kernels xnnpack|builtin] [--threads N]
 *     [--thresholds t1,t2] [--passes N] [--quiet]
 * </pre>
 *
 * Prints one line per image (file, label, exit, entropy, latency), then a summary: exit
 * counts, average MACs, mean latency, mean submodel invoke time and the scheduler's own
 * overhead (total minus invoke time, the same definition as the Python scheduler's
 * {@code scheduler_overhead_fraction}, where the scheduler times each {@link LiteRtRuntime#run}), and
 * the overhead against the time inside {@code LiteRtRunCompiledModel} alone (the cut the Python
 * scheduler makes around {@code invoke()}). {@code --passes N} classifies the folder N times
 * and summarises the last pass only (the earlier ones warm the JIT and the caches).
 */
public final class Classify {
    private Classify() {
    }

    public static void main(String[] args) throws IOException {
        System.exit(run(args, System.out, System.err));
    }

    /** Runs the command; returns the exit status (0 ok, 2 bad arguments or input). */
    static int run(String[] args, PrintStream out, PrintStream err) throws IOException {
        Path model = null;
        Path images = null;
        CpuKernels kernels = CpuKernels.CALIBRATED;
        int threads = 1;
        int passes = 1;
        double[] thresholds = null;
        boolean quiet = false;
        try {
            for (int i = 0; i < args.length; i++) {
                String a = args[i];
                if (a.equals("--quiet")) {
                    quiet = true;
                    continue;
                }
                if (i + 1 >= args.length) {
                    throw new IllegalArgumentException(a + " needs a value.");
                }
                String v = args[++i];
                switch (a) {
                    case "--model":
                        model = Paths.get(v);
                        break;
                    case "--images":
                        images = Paths.get(v);
                        break;
                    case "--kernels":
                        kernels = CpuKernels.parse(v);
                        break;
                    case "--threads":
                        threads = Integer.parseInt(v);
                        break;
                    case "--passes":
                        passes = Integer.parseInt(v);
                        break;
                    case "--thresholds":
                        thresholds = Arrays.stream(v.split(",")).mapToDouble(Double::parseDouble).toArray();
                        break;
                    default:
                        throw new IllegalArgumentException("Unknown option " + a + ".");
                }
            }
            if (model == null || images == null) {
                throw new IllegalArgumentException("--model and --images are required.");
            }
            if (passes < 1) {
                throw new IllegalArgumentException("--passes must be at least 1.");
            }
            if (!Files.isDirectory(images)) {
                throw new IllegalArgumentException("--images " + images + " is not a folder.");
            }
        } catch (IllegalArgumentException e) {
            err.println("error: " + e.getMessage());
            err.println("usage: Classify --model DIR --images DIR [--kernels xnnpack|builtin] [--threads N]"
                    + " [--thresholds t1,t2] [--passes N] [--quiet]");
            return 2;
        }
        Manifest manifest = Manifest.load(new DirectoryAssetSource(model));
        ImagePreprocessor pre = new ImagePreprocessor(manifest.imageSpec());
        List<Path> files;
        try (Stream<Path> s = Files.list(images)) {
            files = s.filter(p -> p.getFileName().toString().toLowerCase(Locale.ROOT)
                    .matches(".*\\.(png|jpe?g|bmp|gif)")).sorted().collect(Collectors.toList());
        }
        if (files.isEmpty()) {
            err.println("error: no PNG/JPEG/BMP/GIF images in " + images + ".");
            return 2;
        }
        List<TensorData> tensors = new ArrayList<>();
        for (Path f : files) {
            BufferedImage img = ImageIO.read(f.toFile());
            if (img == null) {
                err.println("error: " + f + " is not a readable image.");
                return 2;
            }
            int w = img.getWidth();
            int h = img.getHeight();
            tensors.add(pre.fromFrame(img.getRGB(0, 0, w, h, null, 0, w), w, h));
        }
        if (!kernels.isCalibrated()) {
            err.println("warning: the thresholds were calibrated on " + CpuKernels.CALIBRATED + " kernels; "
                    + kernels + " computes different values, so exits and labels can differ.");
        }
        try (LiteRtRuntime runtime = new LiteRtRuntime(LiteRtC.load(), manifest, model, kernels, threads)) {
            Scheduler scheduler = new Scheduler(manifest, runtime);
            ExitPolicy policy = thresholds == null ? manifest.defaultPolicy()
                    : ExitPolicy.perExit(thresholds, manifest.numExits(), manifest.numClasses());
            int[] exitCounts = new int[manifest.numExits()];
            double macs = 0;
            double total = 0;
            double invoke = 0;
            long pureStart = 0;
            for (int pass = 0; pass < passes; pass++) {
                boolean last = pass == passes - 1;
                if (last) {
                    pureStart = runtime.runCompiledModelNanos();
                }
                for (int i = 0; i < tensors.size(); i++) {
                    Classification c = scheduler.classify(tensors.get(i), policy);
                    if (!last) {
                        continue;
                    }
                    exitCounts[c.exitIndex()]++;
                    macs += c.macs();
                    total += c.totalLatencyMs();
                    invoke += Arrays.stream(c.branchLatencyMs()).sum();
                    if (!quiet) {
                        out.printf(Locale.ROOT, "%s\tlabel=%s\texit=%s\tentropy=%.4f\tlatency_ms=%.3f%n",
                                files.get(i).getFileName(), c.labelName(), c.exitName(), c.entropy(),
                                c.totalLatencyMs());
                    }
                }
            }
            int n = tensors.size();
            double pure = (runtime.runCompiledModelNanos() - pureStart) / 1e6;
            out.printf(Locale.ROOT, "images=%d kernels=%s threads=%d thresholds=%s%n", n, kernels, threads,
                    Arrays.toString(policy.thresholds()));
            StringBuilder exits = new StringBuilder();
            for (int k = 0; k < exitCounts.length; k++) {
                exits.append(k == 0 ? "" : " ").append(manifest.exit(k).name()).append('=').append(exitCounts[k]);
            }
            out.println("exit_counts: " + exits);
            out.printf(Locale.ROOT, "avg_macs=%.0f (%.1f%% of the full model)%n", macs / n,
                    100 * macs / n / manifest.fullModelMacs());
            out.printf(Locale.ROOT, "latency_ms_mean=%.4f invoke_ms_mean=%.4f overhead_ms_mean=%.4f"
                    + " scheduler_overhead_fraction=%.4f%n", total / n, invoke / n, (total - invoke) / n,
                    (total - invoke) / invoke);
            // The Python scheduler times invoke() alone; here the same cut is LiteRtRunCompiledModel, and
            // everything else (tensor copies, JNA calls, entropy, requantisation) counts as overhead.
            out.printf(Locale.ROOT, "litert_run_ms_mean=%.4f overhead_vs_litert_run_ms_mean=%.4f"
                    + " overhead_vs_litert_run_fraction=%.4f%n", pure / n, (total - pure) / n, (total - pure) / pure);
        }
        return 0;
    }
}
