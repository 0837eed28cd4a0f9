package dev.ravit.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.google.gson.JsonPrimitive;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.function.Consumer;

import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

public class ManifestTest {
    @Rule
    public TemporaryFolder tmp = new TemporaryFolder();

    private static JsonObject goldenJson() {
        return JsonParser.parseString(TestSupport.goldenManifestJson()).getAsJsonObject();
    }

    /** Parses the golden manifest after {@code edit}; returns the error message. */
    private static String parseError(Consumer<JsonObject> edit) {
        JsonObject m = goldenJson();
        edit.accept(m);
        return assertThrows(ManifestException.class, () -> Manifest.parse(m.toString(), "test/manifest.json"))
                .getMessage();
    }

    private static JsonObject exit(JsonObject m, int k) {
        return m.getAsJsonArray("exits").get(k).getAsJsonObject();
    }

    @Test
    public void loadsTheGoldenManifest() {
        Manifest m = TestSupport.goldenManifest();
        assertEquals(10, m.numClasses());
        assertEquals(10, m.labels().size());
        assertEquals("red_blob", m.label(0));
        assertEquals(2, m.numExits());
        assertEquals("exit_1", m.exit(0).name());
        assertEquals("branch_2.tflite", m.exit(1).file());
        assertEquals("int8", m.quantization());
        assertEquals(m.exit(1).cumulativeMacs(), m.fullModelMacs());
        assertTrue(m.exit(0).cumulativeMacs() < m.fullModelMacs());
        TensorSpec image = m.imageSpec();
        assertArrayEquals(new int[] {1, 32, 32, 3}, image.shape());
        assertEquals(DType.UINT8, image.dtype());
        assertEquals(1.0, image.scale(), 0);
        assertEquals(DType.INT8, m.exit(0).output("cls_out").dtype());
        assertArrayEquals(m.exit(0).output("cls_out").shape(), m.exit(1).input("cls_in").shape());
        assertEquals(1, m.defaultThresholds().length);
        assertTrue(m.hasBatteryPolicy());
        assertEquals(0.5, m.batteryPolicy().high(), 0);
    }

    @Test
    public void rejectsInvalidJson() {
        String msg = assertThrows(ManifestException.class, () -> Manifest.parse("{\"format\": ", "x/manifest.json"))
                .getMessage();
        assertTrue(msg, msg.startsWith("x/manifest.json is not valid JSON"));
        msg = assertThrows(ManifestException.class, () -> Manifest.parse("{} {}", "x/manifest.json")).getMessage();
        assertTrue(msg, msg.contains("not valid JSON"));
        msg = assertThrows(ManifestException.class, () -> Manifest.parse("{format: 'x'}", "x/manifest.json"))
                .getMessage();
        assertTrue("lenient JSON is rejected: " + msg, msg.contains("not valid JSON"));
        msg = assertThrows(ManifestException.class, () -> Manifest.parse("[1]", "x/manifest.json")).getMessage();
        assertTrue(msg, msg.contains("not a JSON object"));
    }

    @Test
    public void rejectsAnotherFormat() {
        String msg = parseError(m -> m.addProperty("format", "tflite-model"));
        assertTrue(msg, msg.contains("test/manifest.json is not a ravit-tflite manifest") && msg.contains("tflite-model"));
    }

    @Test
    public void rejectsAnotherVersion() {
        String msg = parseError(m -> m.addProperty("format_version", 2));
        assertTrue(msg, msg.contains("format_version 2; this runtime reads 1"));
    }

    @Test
    public void rejectsNoExits() {
        assertTrue(parseError(m -> m.add("exits", new JsonArray())).contains("lists no exits"));
    }

    @Test
    public void rejectsLabelsThatDoNotMatchTheClassCount() {
        String msg = parseError(m -> m.getAsJsonArray("labels").remove(0));
        assertTrue(msg, msg.contains("9 labels for num_classes=10"));
    }

    @Test
    public void rejectsAnExitWithoutAKey() {
        String msg = parseError(m -> exit(m, 1).remove("sha256"));
        assertTrue(msg, msg.contains("exit 1 has no 'sha256'"));
    }

    @Test
    public void rejectsMissingClsInput() {
        String msg = parseError(m -> exit(m, 1).getAsJsonObject("inputs").remove("cls_in"));
        assertTrue(msg, msg.contains("exit exit_2 has inputs [image]") && msg.contains("expected [cls_in, image]"));
    }

    @Test
    public void rejectsAClsInputOnTheFirstExit() {
        String msg = parseError(m -> exit(m, 0).getAsJsonObject("inputs").add("cls_in",
                exit(m, 1).getAsJsonObject("inputs").get("cls_in")));
        assertTrue(msg, msg.contains("exit exit_1 has inputs [cls_in, image]"));
    }

    @Test
    public void rejectsMissingLogits() {
        String msg = parseError(m -> exit(m, 0).getAsJsonObject("outputs").remove("logits"));
        assertTrue(msg, msg.contains("outputs [cls_out]"));
    }

    @Test
    public void rejectsClsShapesThatDoNotChain() {
        String msg = parseError(m -> {
            JsonArray shape = new JsonArray();
            shape.add(1);
            shape.add(16);
            exit(m, 1).getAsJsonObject("inputs").getAsJsonObject("cls_in").add("shape", shape);
        });
        assertTrue(msg, msg.contains("cls_out of exit_1 [1, 32] does not fit cls_in of exit_2 [1, 16]"));
    }

    @Test
    public void rejectsAnUnknownDtype() {
        String msg = parseError(m -> exit(m, 0).getAsJsonObject("outputs").getAsJsonObject("logits")
                .addProperty("dtype", "bfloat16"));
        assertTrue(msg, msg.contains("exits[0].outputs.logits") && msg.contains("bfloat16"));
    }

    @Test
    public void rejectsDefaultThresholdsOutOfRange() {
        String msg = parseError(m -> {
            JsonArray t = new JsonArray();
            t.add(new JsonPrimitive(5.0));
            m.add("default_thresholds", t);
        });
        assertTrue(msg, msg.contains("default_thresholds") && msg.contains("threshold[0] = 5.0")
                && msg.contains("ln(10)"));
    }

    @Test
    public void rejectsAWrongType() {
        String msg = parseError(m -> exit(m, 0).addProperty("cumulative_macs", "many"));
        assertTrue(msg, msg.contains("exits[0].cumulative_macs should be a number"));
    }

    @Test
    public void acceptsAScalarDefaultThreshold() {
        JsonObject m = goldenJson();
        m.addProperty("default_thresholds", 0.25);
        assertArrayEquals(new double[] {0.25}, Manifest.parse(m.toString(), "m").defaultThresholds(), 0);
    }

    @Test
    public void acceptsTheCalibrationEntry() {
        // The converter records the calibration images as fields (Python reads them for
        // `ravit run`); the core does not use them and must parse such a manifest unchanged.
        JsonObject m = goldenJson();
        JsonObject calibration = new JsonObject();
        calibration.addProperty("source", "cifar-10-batches-py");
        calibration.addProperty("split", "test");
        calibration.addProperty("images", 2000);
        calibration.addProperty("seed", 0);
        calibration.addProperty("of", 10000);
        calibration.addProperty("used", 2000);
        m.add("calibration", calibration);
        Manifest parsed = Manifest.parse(m.toString(), "m");
        Manifest golden = TestSupport.goldenManifest();
        assertEquals(golden.numExits(), parsed.numExits());
        assertArrayEquals(golden.defaultThresholds(), parsed.defaultThresholds(), 0);
    }

    // Assets ------------------------------------------------------------------------

    @Test
    public void missingManifestIsNamed() throws IOException {
        Path dir = tmp.newFolder("empty").toPath();
        String msg = assertThrows(ManifestException.class, () -> Manifest.load(AssetSource.directory(dir))).getMessage();
        assertTrue(msg, msg.contains("No manifest.json") && msg.contains(dir.toString()));
    }

    @Test
    public void missingSubmodelIsNamed() throws IOException {
        Path dir = TestSupport.copyGolden(tmp.newFolder("golden").toPath());
        Files.delete(dir.resolve("branch_2.tflite"));
        String msg = assertThrows(ManifestException.class, () -> Manifest.load(AssetSource.directory(dir))).getMessage();
        assertTrue(msg, msg.contains("branch_2.tflite") && msg.contains("is missing"));
    }

    @Test
    public void changedSubmodelFailsTheChecksum() throws IOException {
        Path dir = TestSupport.copyGolden(tmp.newFolder("golden").toPath());
        byte[] bytes = Files.readAllBytes(dir.resolve("branch_1.tflite"));
        bytes[bytes.length / 2] ^= 1;
        Files.write(dir.resolve("branch_1.tflite"), bytes);
        String msg = assertThrows(ManifestException.class, () -> Manifest.load(AssetSource.directory(dir))).getMessage();
        assertTrue(msg, msg.contains("Checksum of") && msg.contains("branch_1.tflite")
                && msg.contains("differs from the manifest"));
        // Without checksum verification it loads.
        assertEquals(2, Manifest.load(AssetSource.directory(dir), false).numExits());
    }

    @Test
    public void submodelsOfAnotherConversionAreCaught() throws IOException {
        Path dir = TestSupport.copyGolden(tmp.newFolder("golden").toPath());
        Files.copy(dir.resolve("branch_1.tflite"), dir.resolve("branch_2.tflite"),
                java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        String msg = assertThrows(ManifestException.class, () -> Manifest.load(AssetSource.directory(dir))).getMessage();
        assertTrue(msg, msg.contains("branch_2.tflite") && msg.contains("another conversion"));
    }

    @Test
    public void sha256IsLowerCaseHex() throws IOException {
        String digest = Manifest.sha256(new java.io.ByteArrayInputStream("abc".getBytes(StandardCharsets.US_ASCII)));
        assertEquals("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", digest);
    }

    @Test
    public void operatingPointsAreParsed() {
        Manifest m = TestSupport.goldenManifest();
        JsonArray points = goldenJson().getAsJsonArray("operating_points");
        assertEquals(points.size(), m.operatingPoints().size());
        for (int i = 0; i < points.size(); i++) {
            JsonObject p = points.get(i).getAsJsonObject();
            assertEquals(p.get("avg_macs").getAsDouble(), m.operatingPoints().get(i).avgMacs(), 0);
            assertArrayEquals(TestSupport.doubles(p.getAsJsonArray("thresholds")),
                    m.operatingPoints().get(i).thresholds(), 0);
        }
    }

    @Test
    public void operatingPointIntervalsAreOptionalAndSkipped() {
        // Converters since issue 25 write an informative "interval" per operating point
        // (tests/deploy/test_manifest.py); the core decides nothing on it.
        JsonObject m = goldenJson();
        JsonObject interval = JsonParser.parseString("{\"confidence\": 0.95, \"images\": 150, "
                + "\"accuracy\": [0.78, 0.9], \"avg_macs\": [810000, 990000], \"mac_fraction\": [0.74, 0.9], "
                + "\"method\": \"Wilson; bootstrap\"}").getAsJsonObject();
        for (JsonElement p : m.getAsJsonArray("operating_points")) {
            p.getAsJsonObject().add("interval", interval.deepCopy());
        }
        Manifest with = Manifest.parse(m.toString(), "test/manifest.json");
        Manifest without = TestSupport.goldenManifest();
        assertEquals(without.operatingPoints().size(), with.operatingPoints().size());
        for (int i = 0; i < with.operatingPoints().size(); i++) {
            OperatingPoint a = with.operatingPoints().get(i);
            OperatingPoint b = without.operatingPoints().get(i);
            assertArrayEquals(b.thresholds(), a.thresholds(), 0);
            assertEquals(b.avgMacs(), a.avgMacs(), 0);
            assertEquals(b.accuracy(), a.accuracy(), 0);
        }
    }

    // The bad manifests shared with tests/deploy/test_manifest.py ---------------------------

    /** tests/fixtures/bad_manifests.json, found by walking up from the test resources. */
    private static JsonArray badManifests() throws IOException {
        for (Path dir = TestSupport.goldenDir(); dir != null; dir = dir.getParent()) {
            Path file = dir.resolve("tests/fixtures/bad_manifests.json");
            if (Files.isRegularFile(file)) {
                return JsonParser.parseString(Files.readString(file, StandardCharsets.UTF_8)).getAsJsonObject()
                        .getAsJsonArray("cases");
            }
        }
        throw new AssertionError("tests/fixtures/bad_manifests.json not found above " + TestSupport.goldenDir());
    }

    /** Applies one case's mutation (the file's format: set / delete / append_copy by dotted path). */
    private static boolean mutate(JsonObject root, JsonObject c) {
        boolean nonJsonNumber = false;
        if (c.has("set")) {
            for (var e : c.getAsJsonObject("set").entrySet()) {
                JsonElement v = e.getValue();
                if (v.isJsonObject() && v.getAsJsonObject().has("number")) {
                    nonJsonNumber = true;  // NaN/Infinity: no JSON text can hold it.
                    v = new JsonPrimitive(Double.parseDouble(v.getAsJsonObject().get("number").getAsString()));
                }
                put(root, e.getKey(), v);
            }
        }
        if (c.has("delete")) {
            for (JsonElement path : c.getAsJsonArray("delete")) {
                String[] parts = path.getAsString().split("\\.");
                JsonElement parent = walk(root, parts);
                parent.getAsJsonObject().remove(parts[parts.length - 1]);
            }
        }
        if (c.has("append_copy")) {
            for (JsonElement path : c.getAsJsonArray("append_copy")) {
                String[] parts = path.getAsString().split("\\.");
                JsonArray list = walk(root, parts).getAsJsonArray();
                list.add(list.get(Integer.parseInt(parts[parts.length - 1])).deepCopy());
            }
        }
        return nonJsonNumber;
    }

    private static JsonElement walk(JsonObject root, String[] parts) {
        JsonElement node = root;
        for (int i = 0; i < parts.length - 1; i++) {
            node = node.isJsonArray() ? node.getAsJsonArray().get(Integer.parseInt(parts[i]))
                    : node.getAsJsonObject().get(parts[i]);
        }
        return node;
    }

    private static void put(JsonObject root, String path, JsonElement value) {
        String[] parts = path.split("\\.");
        JsonElement parent = walk(root, parts);
        String last = parts[parts.length - 1];
        if (parent.isJsonArray()) {
            parent.getAsJsonArray().set(Integer.parseInt(last), value);
        } else {
            parent.getAsJsonObject().add(last, value);
        }
    }

    @Test
    public void refusesEverySharedBadManifestNamingTheKey() throws IOException {
        JsonArray cases = badManifests();
        assertTrue(cases.size() >= 20);
        for (JsonElement element : cases) {
            JsonObject c = element.getAsJsonObject();
            JsonObject m = goldenJson();
            boolean nonJsonNumber = mutate(m, c);
            String text = new com.google.gson.GsonBuilder().serializeSpecialFloatingPointValues().create().toJson(m);
            String message = assertThrows(c.get("name").getAsString(), ManifestException.class,
                    () -> Manifest.parse(text, "test/manifest.json")).getMessage();
            String key = c.get("key").getAsString();
            // Gson reads strict JSON: a NaN or Infinity fails the whole document before any key.
            boolean named = message.contains(key) || (nonJsonNumber && message.contains("is not valid JSON"));
            assertTrue(c.get("name").getAsString() + ": " + message + " does not name " + key, named);
        }
    }
}
