package dev.ravit.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;

import java.net.URISyntaxException;
import java.net.URL;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.junit.BeforeClass;
import org.junit.Test;

/**
 * Replays the second golden fixture, a tiny RAViT with ReLU MLPs (issue 26; its int8
 * fully-connected layers apply the activation themselves, no float GELU island), through
 * the core exactly as {@link GoldenParityTest} replays the GELU one: a {@link SubmodelRuntime}
 * stub hands back the integer outputs LiteRT produced in Python and checks that the image
 * and the requantised CLS it receives are those Python fed the real submodels; exits,
 * labels, label names and MACs must match exactly, entropies within 1e-9.
 *
 * <p>Regenerate with {@code python -m ravit_keras.deploy.export.golden --mlp-activation relu
 * --out android_demo/core/src/test/resources/golden_relu}.
 */
public class GoldenReluParityTest {
    private static final String REGENERATE = "If the Python side changed on purpose, regenerate the fixture: "
            + "python -m ravit_keras.deploy.export.golden --mlp-activation relu "
            + "--out android_demo/core/src/test/resources/golden_relu";

    private static Path dir;
    private static Manifest manifest;
    private static JsonObject golden;
    private static List<TensorData> images;

    static Path reluDir() {
        URL url = GoldenReluParityTest.class.getResource("/golden_relu/manifest.json");
        if (url == null) {
            throw new IllegalStateException("golden_relu/manifest.json is not on the test classpath. " + REGENERATE);
        }
        try {
            return Paths.get(url.toURI()).getParent();
        } catch (URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    @BeforeClass
    public static void load() {
        dir = reluDir();
        manifest = Manifest.load(AssetSource.directory(dir)); // Checksums of the ReLU submodels too.
        golden = TestSupport.readJson(dir.resolve("golden.json")).getAsJsonObject();
        assertEquals("golden format", "ravit-golden", golden.get("format").getAsString());
        images = new ArrayList<>();
        ImagePreprocessor pre = new ImagePreprocessor(manifest.imageSpec());
        int[] shape = TestSupport.ints(golden.getAsJsonArray("image_shape"));
        for (JsonElement im : golden.getAsJsonArray("images")) {
            byte[] rgb = TestSupport.base64(im.getAsJsonObject().get("pixels_base64").getAsString());
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
                assertEquals("image " + image + ": requantised " + name + " handed to exit " + exitIndex
                        + " differs from Python's. " + REGENERATE,
                        TestSupport.tensor(wantInputs.getAsJsonObject(name)), inputs.get(name));
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
    public void theFixtureIsAnInt8ReluModelOtherThanTheGeluOne() {
        JsonObject raw = TestSupport.readJson(dir.resolve("manifest.json")).getAsJsonObject();
        assertEquals("relu", raw.getAsJsonObject("model").get("mlp_activation").getAsString());
        assertEquals("int8", manifest.quantization());
        assertEquals(golden.get("num_classes").getAsInt(), manifest.numClasses());
        assertTrue("the fixture needs at least 2 exits to test hand-over", manifest.numExits() >= 2);
        // Same architecture and images as the GELU fixture, another function: its logits differ.
        Manifest gelu = TestSupport.goldenManifest();
        assertEquals(gelu.exitNames(), manifest.exitNames());
        assertEquals(gelu.fullModelMacs(), manifest.fullModelMacs());
        JsonObject geluGolden = TestSupport.golden();
        int differ = 0;
        for (int i = 0; i < images.size(); i++) {
            String pixels = golden.getAsJsonArray("images").get(i).getAsJsonObject().get("pixels_base64").getAsString();
            JsonObject geluImage = geluGolden.getAsJsonArray("images").get(i).getAsJsonObject();
            assertEquals("same test images as the GELU fixture", geluImage.get("pixels_base64").getAsString(), pixels);
            TensorData relu = TestSupport.tensor(exitRecord(i, 1).getAsJsonObject("outputs").getAsJsonObject("logits"));
            TensorData other = TestSupport.tensor(geluImage.getAsJsonArray("exits").get(1).getAsJsonObject()
                    .getAsJsonObject("outputs").getAsJsonObject("logits"));
            if (!relu.equals(other)) {
                differ++;
            }
        }
        assertTrue("the ReLU model's logits should differ from the GELU model's", differ > images.size() / 2);
    }

    @Test
    public void everyExitEntropyAndProbabilityMatches() {
        for (int i = 0; i < images.size(); i++) {
            for (int k = 0; k < manifest.numExits(); k++) {
                JsonObject record = exitRecord(i, k);
                TensorData logits = TestSupport.tensor(record.getAsJsonObject("outputs").getAsJsonObject("logits"));
                double[] real = Quantization.dequantize(logits, manifest.exit(k).output("logits"));
                assertEquals("entropy of image " + i + " exit " + k, record.get("entropy").getAsDouble(),
                        Entropy.entropy(real), 1e-9);
                assertArrayEquals("probabilities of image " + i + " exit " + k,
                        TestSupport.doubles(record.getAsJsonArray("probabilities")), Entropy.softmax(real), 1e-12);
            }
        }
    }

    @Test
    public void requantisedClsMatchesExactly() {
        for (int i = 0; i < images.size(); i++) {
            for (int k = 1; k < manifest.numExits(); k++) {
                TensorData produced = TestSupport.tensor(
                        exitRecord(i, k - 1).getAsJsonObject("outputs").getAsJsonObject("cls_out"));
                TensorData want = TestSupport.tensor(exitRecord(i, k).getAsJsonObject("inputs").getAsJsonObject("cls_in"));
                assertEquals("image " + i + " cls_in of exit " + k, want, Quantization.requantize(produced,
                        manifest.exit(k - 1).output("cls_out"), manifest.exit(k).input("cls_in")));
            }
        }
    }

    @Test
    public void schedulerReproducesExitsAndLabelsAtEveryThresholdSetting() {
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
                String where = "ReLU fixture, setting " + setting.get("name").getAsString() + " "
                        + Arrays.toString(thresholds) + ", image " + i;
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
        assertFalse("labels should vary", distinctLabels(settings) < 2);
    }

    private static int distinctLabels(JsonArray settings) {
        java.util.Set<Integer> labels = new java.util.HashSet<>();
        for (JsonElement s : settings) {
            for (JsonElement d : s.getAsJsonObject().getAsJsonArray("decisions")) {
                labels.add(d.getAsJsonObject().get("label").getAsInt());
            }
        }
        return labels.size();
    }
}
