package dev.ravit.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;

import org.junit.BeforeClass;
import org.junit.Test;

/** The early-exit loop over a scripted runtime (the golden manifest, synthetic outputs). */
public class SchedulerTest {
    private static Manifest manifest;
    private static TensorData image;

    @BeforeClass
    public static void load() {
        manifest = TestSupport.goldenManifest();
        image = TensorData.zeros(DType.UINT8, manifest.imageSpec().shape());
    }

    /** Logits (quantised) that put all mass on {@code label}, or uniform when label < 0. */
    private static TensorData logits(int exit, int label) {
        TensorSpec spec = manifest.exit(exit).output("logits");
        double[] real = new double[manifest.numClasses()];
        if (label >= 0) {
            real[label] = 100.0;  // Saturates: a confident answer.
        }
        return Quantization.quantize(real, spec);
    }

    private static TensorData cls(int exit, int seed) {
        TensorSpec spec = manifest.exit(exit).output("cls_out");
        int[] v = new int[spec.elementCount()];
        for (int i = 0; i < v.length; i++) {
            v[i] = ((i * 37 + seed) % 256) - 128;
        }
        return TensorData.ofInts(spec.dtype(), spec.shape(), v);
    }

    /** Answers from a script; records the inputs; advances a fake clock. */
    private static final class ScriptedRuntime implements SubmodelRuntime {
        final int[] labels;
        final AtomicLong clock;
        final List<Map<String, TensorData>> inputs = new ArrayList<>();

        ScriptedRuntime(AtomicLong clock, int... labels) {
            this.clock = clock;
            this.labels = labels;
        }

        @Override
        public Map<String, TensorData> run(int exitIndex, Map<String, TensorData> in) {
            inputs.add(in);
            clock.addAndGet(5_000_000L * (exitIndex + 1));  // 5 ms, then 10 ms.
            Map<String, TensorData> out = new LinkedHashMap<>();
            out.put("logits", logits(exitIndex, labels[exitIndex]));
            out.put("cls_out", cls(exitIndex, 7));
            return out;
        }

        @Override
        public void close() {
        }
    }

    @Test
    public void confidentFirstExitStopsEarly() {
        AtomicLong clock = new AtomicLong();
        ScriptedRuntime rt = new ScriptedRuntime(clock, 3, 4);
        Classification c = new Scheduler(manifest, rt, clock::get).classify(image, new double[] {0.5});
        assertEquals(1, rt.inputs.size());
        assertEquals(0, c.exitIndex());
        assertEquals("exit_1", c.exitName());
        assertEquals(3, c.label());
        assertEquals(manifest.label(3), c.labelName());
        assertEquals(manifest.exit(0).cumulativeMacs(), c.macs());
        assertTrue(c.macFraction() < 1.0);
        assertEquals(1, c.entropies().length);
        assertTrue(c.entropy() <= 0.5);
        assertEquals(3, c.topK(3).get(0).index());
    }

    @Test
    public void uncertainFirstExitHandsTheRequantisedClsOn() {
        AtomicLong clock = new AtomicLong();
        ScriptedRuntime rt = new ScriptedRuntime(clock, -1, 4);
        Classification c = new Scheduler(manifest, rt, clock::get).classify(image, new double[] {0.5});
        assertEquals(2, rt.inputs.size());
        assertEquals(1, c.exitIndex());
        assertEquals(4, c.label());
        assertEquals(manifest.fullModelMacs(), c.macs());
        assertEquals(Math.log(10), c.entropies()[0], 1e-12);
        TensorData expected = Quantization.requantize(cls(0, 7), manifest.exit(0).output("cls_out"),
                manifest.exit(1).input("cls_in"));
        assertEquals(expected, rt.inputs.get(1).get("cls_in"));
        assertEquals(manifest.exit(1).input("cls_in").dtype(), rt.inputs.get(1).get("cls_in").dtype());
        assertEquals(image, rt.inputs.get(1).get("image"));
        assertEquals(1, rt.inputs.get(0).size());  // The first submodel gets no cls_in.
    }

    @Test
    public void lastExitAlwaysAnswers() {
        AtomicLong clock = new AtomicLong();
        Classification c = new Scheduler(manifest, new ScriptedRuntime(clock, -1, -1), clock::get)
                .classify(image, new double[] {0.0});
        assertEquals(1, c.exitIndex());
        assertEquals(Math.log(10), c.entropy(), 1e-12);
        assertEquals(0, c.label());  // Uniform: argmax takes the first.
    }

    @Test
    public void thresholdLnCStopsEveryImageAtTheFirstExit() {
        AtomicLong clock = new AtomicLong();
        Classification c = new Scheduler(manifest, new ScriptedRuntime(clock, -1, 2), clock::get)
                .classify(image, ExitPolicy.uniform(Math.log(10), 2, 10));
        assertEquals(0, c.exitIndex());
    }

    @Test
    public void latencyIsMeasuredAroundEachRuntimeCall() {
        AtomicLong clock = new AtomicLong();
        Classification c = new Scheduler(manifest, new ScriptedRuntime(clock, -1, 1), clock::get)
                .classify(image, new double[] {0.1});
        assertArrayEquals(new double[] {5.0, 10.0}, c.branchLatencyMs(), 1e-12);
        assertEquals(15.0, c.totalLatencyMs(), 1e-12);
        assertEquals(0.0, c.overheadMs(), 1e-12);
    }

    @Test
    public void unbatchedImagesAreAccepted() {
        AtomicLong clock = new AtomicLong();
        int[] s = manifest.imageSpec().shape();
        TensorData hwc = TensorData.zeros(DType.UINT8, new int[] {s[1], s[2], s[3]});
        assertEquals(0, new Scheduler(manifest, new ScriptedRuntime(clock, 1, 1), clock::get)
                .classify(hwc, new double[] {1.0}).exitIndex());
    }

    @Test
    public void wrongImageShapeOrDtypeIsAClearError() {
        AtomicLong clock = new AtomicLong();
        Scheduler s = new Scheduler(manifest, new ScriptedRuntime(clock, 1, 1), clock::get);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> s.classify(TensorData.zeros(DType.UINT8, new int[] {1, 16, 16, 3}), new double[] {0.1}));
        assertTrue(e.getMessage(), e.getMessage().contains("[1, 16, 16, 3]") && e.getMessage().contains("[1, 32, 32, 3]"));
        e = assertThrows(IllegalArgumentException.class,
                () -> s.classify(TensorData.zeros(DType.FLOAT32, manifest.imageSpec().shape()), new double[] {0.1}));
        assertTrue(e.getMessage(), e.getMessage().contains("uint8") && e.getMessage().contains("float32"));
    }

    @Test
    public void invalidThresholdsAreRejectedBeforeRunning() {
        AtomicLong clock = new AtomicLong();
        ScriptedRuntime rt = new ScriptedRuntime(clock, 1, 1);
        Scheduler s = new Scheduler(manifest, rt, clock::get);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> s.classify(image, new double[] {3.0}));
        assertTrue(e.getMessage(), e.getMessage().contains("threshold[0] = 3.0"));
        e = assertThrows(IllegalArgumentException.class, () -> s.classify(image, ExitPolicy.uniform(0.1, 3, 10)));
        assertTrue(e.getMessage(), e.getMessage().contains("3 exits"));
        assertEquals(0, rt.inputs.size());
    }

    @Test
    public void runtimeOutputsAreChecked() {
        SubmodelRuntime missing = new SubmodelRuntime() {
            @Override
            public Map<String, TensorData> run(int exitIndex, Map<String, TensorData> inputs) {
                Map<String, TensorData> out = new LinkedHashMap<>();
                out.put("cls_out", cls(exitIndex, 0));
                return out;
            }

            @Override
            public void close() {
            }
        };
        IllegalStateException e = assertThrows(IllegalStateException.class,
                () -> new Scheduler(manifest, missing).classify(image, new double[] {0.1}));
        assertTrue(e.getMessage(), e.getMessage().contains("no 'logits' for exit_1") && e.getMessage().contains("branch_1"));

        SubmodelRuntime wrongType = new SubmodelRuntime() {
            @Override
            public Map<String, TensorData> run(int exitIndex, Map<String, TensorData> inputs) {
                Map<String, TensorData> out = new LinkedHashMap<>();
                out.put("logits", TensorData.zeros(DType.FLOAT32, new int[] {1, 10}));
                out.put("cls_out", cls(exitIndex, 0));
                return out;
            }

            @Override
            public void close() {
            }
        };
        e = assertThrows(IllegalStateException.class,
                () -> new Scheduler(manifest, wrongType).classify(image, new double[] {0.1}));
        assertTrue(e.getMessage(), e.getMessage().contains("float32") && e.getMessage().contains("int8"));
    }

    @Test
    public void defaultThresholdsComeFromTheManifest() {
        AtomicLong clock = new AtomicLong();
        Classification c = new Scheduler(manifest, new ScriptedRuntime(clock, 2, 5), clock::get).classify(image);
        assertArrayEquals(manifest.defaultThresholds(), c.thresholds(), 0);
    }

    @Test
    public void topKIsSortedAndStable() {
        Classification c = new Classification(1, "b", new double[] {0.2, 0.5, 0.2, 0.1}, java.util.Arrays.asList(
                "a", "b", "c", "d"), 0, "exit_1", new double[] {0.3}, new double[] {0.4}, 10, 20,
                new double[] {1.0}, 1.5);
        List<Classification.Prediction> top = c.topK(3);
        assertEquals(3, top.size());
        assertEquals("b", top.get(0).label());
        assertEquals(0, top.get(1).index());
        assertEquals(2, top.get(2).index());
        assertEquals(4, c.topK(10).size());
        assertEquals(0.5, c.macFraction(), 0);
        assertEquals(0.5, c.overheadMs(), 1e-12);
    }
}
