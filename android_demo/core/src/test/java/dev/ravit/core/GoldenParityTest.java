package dev.ravit.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.junit.BeforeClass;
import org.junit.Test;

/**
 * Replays the Python golden vectors ({@code python -m ravit_keras.deploy.export.golden}) through the core.
 *
 * <p>A {@link SubmodelRuntime} stub returns the raw integer outputs LiteRT produced in
 * Python and asserts that the inputs it receives (the image and the requantised CLS) are
 * exactly those Python handed to the real submodels. Entropies must agree within 1e-9
 * (asked: 1e-5), the requantised CLS and every decision exactly.
 */
public class GoldenParityTest {
    private static final String REGENERATE = "If the Python side changed on purpose, regenerate the fixture: "
            + "python -m ravit_keras.deploy.export.golden --out android_demo/core/src/test/resources/golden";

    private static Manifest manifest;
    private static JsonObject golden;
    private static List<TensorData> images;

    @BeforeClass
    public static void load() {
        manifest = TestSupport.goldenManifest();
        golden = TestSupport.golden();
        assertEquals("golden format", "ravit-golden", golden.get("format").getAsString());
        images = new ArrayList<>();
        ImagePreprocessor pre = new ImagePreprocessor(manifest.imageSpec());
        int[] shape = TestSupport.ints(golden.getAsJsonArray("image_shape"));
        for (JsonElement im : golden.getAsJsonArray("images")) {
            byte[] rgb = TestSupport.base64(im.getAsJsonObject().get("pixels_base64").getAsString());
            // Through the app's path: ARGB pixels -> ImagePreprocessor -> uint8 NHWC.
            TensorData viaArgb = pre.toTensor(TestSupport.argbFromRgb(rgb), shape[1], shape[0]);
            assertEquals(TensorData.uint8(new int[] {1, shape[0], shape[1], shape[2]}, rgb), viaArgb);
            images.add(viaArgb);
        }
    }

    private static JsonObject exitRecord(int image, int exit) {
        return golden.getAsJsonArray("images").get(image).getAsJsonObject().getAsJsonArray("exits").get(exit)
                .getAsJsonObject();
    }

    /** Returns the recorded outputs of one image; checks the inputs it is given. */
    private static final class RecordedRuntime implements SubmodelRuntime {
        private final int image;
        final List<Integer> calls = new ArrayList<>();

        RecordedRuntime(int image) {
            this.image = image;
        }

        @Override
        public Map<String, TensorData> run(int exitIndex, Map<String, TensorData> inputs) {
            calls.add(exitIndex);
            JsonObject record = exitRecord(image, exitIndex);
            assertEquals("image fed to exit " + exitIndex, images.get(image), inputs.get("image"));
            JsonObject wantInputs = record.getAsJsonObject("inputs");
            assertEquals("inputs of exit " + exitIndex, wantInputs.keySet().size() + 1, inputs.size());
            for (String name : wantInputs.keySet()) {
                TensorData want = TestSupport.tensor(wantInputs.getAsJsonObject(name));
                assertEquals("image " + image + ": requantised " + name + " handed to exit " + exitIndex
                        + " differs from Python's. " + REGENERATE, want, inputs.get(name));
            }
            Map<String, TensorData> out = new LinkedHashMap<>();
            JsonObject outputs = record.getAsJsonObject("outputs");
            for (String name : outputs.keySet()) {
                out.put(name, TestSupport.tensor(outputs.getAsJsonObject(name)));
            }
            return out;
        }

        @Override
        public void close() {
        }
    }

    @Test
    public void manifestMatchesTheGoldenDocument() {
        assertEquals(golden.get("num_classes").getAsInt(), manifest.numClasses());
        List<String> names = new ArrayList<>();
        for (JsonElement e : golden.getAsJsonArray("exit_names")) {
            names.add(e.getAsString());
        }
        assertEquals(names, manifest.exitNames());
        assertEquals(golden.get("image_dtype").getAsString(), manifest.imageSpec().dtype().manifestName());
        assertTrue("the fixture needs at least 2 exits to test hand-over", manifest.numExits() >= 2);
    }

    @Test
    public void everyExitEntropyAndProbabilityMatches() {
        double worst = 0;
        for (int i = 0; i < images.size(); i++) {
            for (int k = 0; k < manifest.numExits(); k++) {
                JsonObject record = exitRecord(i, k);
                TensorData logits = TestSupport.tensor(record.getAsJsonObject("outputs").getAsJsonObject("logits"));
                double[] real = Quantization.dequantize(logits, manifest.exit(k).output("logits"));
                double u = Entropy.entropy(real);
                double want = record.get("entropy").getAsDouble();
                worst = Math.max(worst, Math.abs(u - want));
                assertEquals("entropy of image " + i + " exit " + k, want, u, 1e-9);
                assertArrayEquals("probabilities of image " + i + " exit " + k,
                        TestSupport.doubles(record.getAsJsonArray("probabilities")), Entropy.softmax(real), 1e-12);
            }
        }
        assertTrue("largest entropy difference " + worst, worst <= 1e-9);
    }

    @Test
    public void requantisedClsMatchesExactly() {
        for (int i = 0; i < images.size(); i++) {
            for (int k = 1; k < manifest.numExits(); k++) {
                TensorData produced = TestSupport.tensor(
                        exitRecord(i, k - 1).getAsJsonObject("outputs").getAsJsonObject("cls_out"));
                TensorData want = TestSupport.tensor(exitRecord(i, k).getAsJsonObject("inputs").getAsJsonObject("cls_in"));
                TensorData got = Quantization.requantize(produced, manifest.exit(k - 1).output("cls_out"),
                        manifest.exit(k).input("cls_in"));
                assertEquals("image " + i + " cls_in of exit " + k, want, got);
            }
        }
    }

    @Test
    public void decisionsMatchAtEveryThresholdSetting() {
        JsonArray settings = golden.getAsJsonArray("threshold_settings");
        assertTrue(settings.size() >= 3);
        int early = 0;
        int late = 0;
        for (JsonElement s : settings) {
            JsonObject setting = s.getAsJsonObject();
            double[] thresholds = TestSupport.doubles(setting.getAsJsonArray("thresholds"));
            ExitPolicy policy = ExitPolicy.perExit(thresholds, manifest.numExits(), manifest.numClasses());
            JsonArray decisions = setting.getAsJsonArray("decisions");
            for (int i = 0; i < images.size(); i++) {
                JsonObject want = decisions.get(i).getAsJsonObject();
                String where = "setting " + setting.get("name").getAsString() + " " + Arrays.toString(thresholds)
                        + ", image " + i;
                RecordedRuntime runtime = new RecordedRuntime(i);
                Classification c = new Scheduler(manifest, runtime).classify(images.get(i), policy);
                assertEquals(where + ": exit", want.get("exit_index").getAsInt(), c.exitIndex());
                assertEquals(where + ": exit name", want.get("exit_name").getAsString(), c.exitName());
                assertEquals(where + ": label", want.get("label").getAsInt(), c.label());
                assertEquals(where + ": label name", want.get("label_name").getAsString(), c.labelName());
                assertEquals(where + ": MACs", want.get("macs").getAsLong(), c.macs());
                assertArrayEquals(where + ": entropies", TestSupport.doubles(want.getAsJsonArray("entropies")),
                        c.entropies(), 1e-9);
                assertEquals(where + ": submodels run", c.exitIndex() + 1, runtime.calls.size());
                if (c.exitIndex() < manifest.numExits() - 1) {
                    early++;
                } else {
                    late++;
                }
            }
        }
        assertTrue("the settings should make some images exit early and some late", early > 0 && late > 0);
    }

    @Test
    public void requantizeCasesMatchPython() {
        for (JsonElement e : golden.getAsJsonArray("requantize_cases")) {
            JsonObject c = e.getAsJsonObject();
            TensorData input = TestSupport.tensor(c.getAsJsonObject("input"));
            TensorData want = TestSupport.tensor(c.getAsJsonObject("expected"));
            TensorSpec source = TestSupport.spec("source", c.getAsJsonObject("source"), input.shape());
            TensorSpec target = TestSupport.spec("target", c.getAsJsonObject("target"), input.shape());
            assertEquals(c.get("name").getAsString(), want, Quantization.requantize(input, source, target));
        }
    }

    @Test
    public void entropyCasesMatchPython() {
        for (JsonElement e : golden.getAsJsonArray("entropy_cases")) {
            JsonObject c = e.getAsJsonObject();
            double[] logits = TestSupport.doubles(c.getAsJsonArray("logits"));
            assertEquals(Arrays.toString(logits), c.get("entropy").getAsDouble(), Entropy.entropy(logits), 1e-12);
            assertArrayEquals(Arrays.toString(logits), TestSupport.doubles(c.getAsJsonArray("softmax")),
                    Entropy.softmax(logits), 1e-15);
        }
    }

    @Test
    public void batteryPolicyMatchesPython() {
        JsonArray cases = golden.getAsJsonArray("battery_cases");
        for (int c = 0; c < cases.size(); c++) {
            JsonObject bc = cases.get(c).getAsJsonObject();
            JsonObject p = bc.getAsJsonObject("policy");
            BatteryPolicy policy = c == 0 ? manifest.batteryPolicy() : new BatteryPolicy(p.get("high").getAsDouble(),
                    p.get("low").getAsDouble(), TestSupport.doubles(p.getAsJsonArray("thresholds_high")),
                    TestSupport.doubles(p.getAsJsonArray("thresholds_low")));
            double[] levels = TestSupport.doubles(bc.getAsJsonArray("levels"));
            JsonArray want = bc.getAsJsonArray("thresholds");
            for (int i = 0; i < levels.length; i++) {
                assertArrayEquals("policy " + p + " at battery " + levels[i],
                        TestSupport.doubles(want.get(i).getAsJsonArray()), policy.thresholdsAt(levels[i]), 0.0);
            }
        }
        // Case 0 is the manifest's own policy.
        assertArrayEquals(TestSupport.doubles(cases.get(0).getAsJsonObject().getAsJsonObject("policy")
                .getAsJsonArray("thresholds_low")), manifest.batteryPolicy().thresholdsLow(), 0.0);
    }

    @Test
    public void macBudgetChoiceMatchesPython() {
        for (JsonElement e : golden.getAsJsonArray("mac_budgets")) {
            JsonObject b = e.getAsJsonObject();
            double budget = b.get("budget").getAsDouble();
            if (b.has("error")) {
                try {
                    BatteryPolicy.forMacBudget(manifest, budget, manifest.defaultThresholds());
                    fail("budget " + budget + " should fail like Python: " + b.get("error").getAsString());
                } catch (IllegalArgumentException expected) {
                    assertTrue(expected.getMessage(), expected.getMessage().contains("No calibrated operating point"));
                }
            } else {
                assertArrayEquals("budget " + budget, TestSupport.doubles(b.getAsJsonArray("thresholds")),
                        BatteryPolicy.forMacBudget(manifest, budget, manifest.defaultThresholds()), 0.0);
            }
        }
    }

    @Test
    public void centerCropResizeMatchesTensorFlow() {
        int total = 0;
        int differ = 0;
        for (JsonElement e : golden.getAsJsonArray("resize_cases")) {
            JsonObject c = e.getAsJsonObject();
            int sw = c.get("src_width").getAsInt();
            int sh = c.get("src_height").getAsInt();
            int dw = c.get("dst_width").getAsInt();
            int dh = c.get("dst_height").getAsInt();
            String where = sw + "x" + sh + " -> " + dw + "x" + dh;
            assertArrayEquals(where + ": crop box", TestSupport.ints(c.getAsJsonArray("crop_box")),
                    ImagePreprocessor.centerCropBox(sw, sh, dw, dh));
            int[] src = TestSupport.argbFromRgb(TestSupport.base64(c.get("src_base64").getAsString()));
            int[] want = TestSupport.argbFromRgb(TestSupport.base64(c.get("expected_base64").getAsString()));
            int[] got = ImagePreprocessor.centerCropResize(src, sw, sh, dw, dh);
            assertEquals(want.length, got.length);
            for (int i = 0; i < want.length; i++) {
                for (int shift = 0; shift <= 16; shift += 8) {
                    int a = (want[i] >> shift) & 0xFF;
                    int b = (got[i] >> shift) & 0xFF;
                    total++;
                    if (a != b) {
                        differ++;
                        // TensorFlow works in float32, the core in double: a value on a .5
                        // boundary may round the other way, never further.
                        assertTrue(where + ": pixel " + i + " channel differs by " + (b - a), Math.abs(a - b) <= 1);
                    }
                }
            }
        }
        assertTrue("off-by-one values: " + differ + " of " + total, differ <= total / 100);
    }
}
