package dev.ravit.jvm;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.ravit.core.Classification;
import dev.ravit.core.CpuKernels;
import dev.ravit.core.DType;
import dev.ravit.core.DirectoryAssetSource;
import dev.ravit.core.Manifest;
import dev.ravit.core.ManifestException;
import dev.ravit.core.Scheduler;
import dev.ravit.core.TensorData;
import java.io.IOException;
import java.net.URISyntaxException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.Assume;
import org.junit.BeforeClass;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

/**
 * {@link LiteRtRuntime} on the real {@code libLiteRt.so} over the core's golden fixture
 * (real int8 submodels): XNNPACK outputs must match what Python's interpreter recorded in
 * {@code golden.json} to 1 LSB (recorded on another CPU); bad folders fail naming the file.
 */
public class LiteRtRuntimeTest {
    /**
     * golden.json was recorded by Python's interpreter on the machine that made the fixture;
     * XNNPACK's int8 kernels round differently per instruction set (AVX2, AVX-512, Zen 4),
     * so outputs computed here may be 1 LSB off (tests/deploy/test_golden.py says the same).
     * Python and Java on ONE machine stay byte-identical: tests/deploy/test_android_parity.py.
     */
    private static final int CROSS_CPU_LSB = 1;

    private static LiteRtC lib;
    private static Path golden;
    private static JsonObject vectors;

    @Rule
    public TemporaryFolder tmp = new TemporaryFolder();

    @BeforeClass
    public static void loadLibrary() throws URISyntaxException, IOException {
        golden = Paths.get(LiteRtRuntimeTest.class.getResource("/golden/manifest.json").toURI()).getParent();
        vectors = JsonParser.parseString(Files.readString(golden.resolve("golden.json"))).getAsJsonObject();
        try {
            lib = LiteRtC.load();
        } catch (IllegalStateException e) {
            Assume.assumeNoException("Skipping: " + e.getMessage(), e);
        }
    }

    private static TensorData tensor(JsonObject t) {
        int[] shape = toInts(t.getAsJsonArray("shape"));
        int[] values = toInts(t.getAsJsonArray("values"));
        return TensorData.ofInts(DType.fromManifestName(t.get("dtype").getAsString()), shape, values);
    }

    private static int[] toInts(com.google.gson.JsonArray a) {
        int[] v = new int[a.size()];
        for (int i = 0; i < v.length; i++) {
            v[i] = a.get(i).getAsInt();
        }
        return v;
    }

    private static Manifest manifest(Path folder) {
        return Manifest.load(new DirectoryAssetSource(folder), false);
    }

    private Path copyGolden() throws IOException {
        Path dir = tmp.newFolder("model").toPath();
        try (var files = Files.list(golden)) {
            for (Path p : (Iterable<Path>) files::iterator) {
                Files.copy(p, dir.resolve(p.getFileName()));
            }
        }
        return dir;
    }

    @Test
    public void xnnpackOutputsMatchPythonsInterpreterToOneLsb() {
        Manifest m = manifest(golden);
        int[] imageShape = m.imageSpec().shape();
        int compared = 0;
        try (LiteRtRuntime runtime = new LiteRtRuntime(lib, m, golden, CpuKernels.XNNPACK, 1)) {
            for (JsonElement im : vectors.getAsJsonArray("images")) {
                JsonObject image = im.getAsJsonObject();
                TensorData pixels = TensorData.uint8(imageShape,
                        Base64.getDecoder().decode(image.get("pixels_base64").getAsString()));
                for (int k = 0; k < m.numExits(); k++) {
                    JsonObject record = image.getAsJsonArray("exits").get(k).getAsJsonObject();
                    Map<String, TensorData> inputs = new LinkedHashMap<>();
                    inputs.put("image", pixels);
                    for (Map.Entry<String, JsonElement> e : record.getAsJsonObject("inputs").entrySet()) {
                        inputs.put(e.getKey(), tensor(e.getValue().getAsJsonObject()));
                    }
                    Map<String, TensorData> outputs = runtime.run(k, inputs);
                    for (Map.Entry<String, JsonElement> e : record.getAsJsonObject("outputs").entrySet()) {
                        int[] want = tensor(e.getValue().getAsJsonObject()).toIntArray();
                        int[] got = outputs.get(e.getKey()).toIntArray();
                        String where = "image " + compared + " exit " + k + " " + e.getKey();
                        assertEquals(where + " size", want.length, got.length);
                        for (int i = 0; i < want.length; i++) {
                            assertTrue(where + "[" + i + "]: " + got[i] + " vs recorded " + want[i],
                                    Math.abs(got[i] - want[i]) <= CROSS_CPU_LSB);
                        }
                    }
                }
                compared++;
            }
        }
        assertTrue("golden.json holds images", compared > 0);
    }

    @Test
    public void schedulerRunsOverTheRuntime() {
        Manifest m = manifest(golden);
        try (LiteRtRuntime runtime = new LiteRtRuntime(lib, m, golden, CpuKernels.XNNPACK, 2)) {
            Classification c = new Scheduler(m, runtime).classify(TensorData.zeros(DType.UINT8, m.imageSpec().shape()),
                    new double[] {0.0});
            assertEquals("threshold 0 answers at the last exit", m.numExits() - 1, c.exitIndex());
            assertEquals(m.fullModelMacs(), c.macs());
        }
    }

    @Test
    public void builtinKernelsRunToo() {
        Manifest m = manifest(golden);
        try (LiteRtRuntime runtime = new LiteRtRuntime(lib, m, golden, CpuKernels.BUILTIN, 1)) {
            Map<String, TensorData> out = runtime.run(0, Map.of("image", TensorData.zeros(DType.UINT8,
                    m.imageSpec().shape())));
            assertEquals(m.numClasses(), out.get("logits").size());
            assertEquals(CpuKernels.BUILTIN, runtime.kernels());
        }
    }

    @Test
    public void closeIsIdempotentAndRunAfterCloseFails() {
        Manifest m = manifest(golden);
        LiteRtRuntime runtime = new LiteRtRuntime(lib, m, golden, CpuKernels.XNNPACK, 1);
        runtime.close();
        runtime.close();
        assertThrows(IllegalStateException.class, () -> runtime.run(0, Map.of()));
    }

    @Test
    public void wrongInputsAreRejected() {
        Manifest m = manifest(golden);
        try (LiteRtRuntime runtime = new LiteRtRuntime(lib, m, golden, CpuKernels.XNNPACK, 1)) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> runtime.run(1, Map.of("image", TensorData.zeros(DType.UINT8, m.imageSpec().shape()))));
            assertTrue(e.getMessage(), e.getMessage().contains("cls_in"));
            e = assertThrows(IllegalArgumentException.class,
                    () -> runtime.run(0, Map.of("image", TensorData.zeros(DType.FLOAT32, m.imageSpec().shape()))));
            assertTrue(e.getMessage(), e.getMessage().contains("image"));
        }
    }

    @Test
    public void quantisationThatDiffersFromTheManifestNamesTheFile() throws IOException {
        Path dir = copyGolden();
        Path manifestFile = dir.resolve("manifest.json");
        JsonObject json = JsonParser.parseString(Files.readString(manifestFile)).getAsJsonObject();
        JsonObject logits = json.getAsJsonArray("exits").get(1).getAsJsonObject().getAsJsonObject("outputs")
                .getAsJsonObject("logits");
        logits.addProperty("scale", logits.get("scale").getAsDouble() * 2);
        Files.writeString(manifestFile, json.toString(), StandardCharsets.UTF_8);
        Manifest m = manifest(dir);
        String file = m.exit(1).file();
        ManifestException e = assertThrows(ManifestException.class,
                () -> new LiteRtRuntime(lib, m, dir, CpuKernels.XNNPACK, 1));
        assertTrue(e.getMessage(), e.getMessage().contains(file) && e.getMessage().contains("'logits'")
                && e.getMessage().contains("quantisation"));
    }

    @Test
    public void swappedSubmodelFilesAreCaught() throws IOException {
        Path dir = copyGolden();
        Manifest m = manifest(dir);
        Path first = dir.resolve(m.exit(0).file());
        Path second = dir.resolve(m.exit(1).file());
        Path t = dir.resolve("swap.tmp");
        Files.move(first, t);
        Files.move(second, first);
        Files.move(t, second);
        ManifestException e = assertThrows(ManifestException.class,
                () -> new LiteRtRuntime(lib, m, dir, CpuKernels.XNNPACK, 1));
        assertTrue(e.getMessage(), e.getMessage().contains(m.exit(0).file()));
    }

    @Test
    public void missingOrCorruptSubmodelNamesTheFile() throws IOException {
        Path dir = copyGolden();
        Manifest m = manifest(dir);
        Files.writeString(dir.resolve(m.exit(1).file()), "not a flatbuffer");
        ManifestException e = assertThrows(ManifestException.class,
                () -> new LiteRtRuntime(lib, m, dir, CpuKernels.XNNPACK, 1));
        assertTrue(e.getMessage(), e.getMessage().contains(m.exit(1).file()));
        Files.delete(dir.resolve(m.exit(1).file()));
        e = assertThrows(ManifestException.class, () -> new LiteRtRuntime(lib, m, dir, CpuKernels.XNNPACK, 1));
        assertTrue(e.getMessage(), e.getMessage().contains("does not exist"));
    }

    @Test
    public void libraryPropertyNamingNoFileIsAClearError() {
        String old = System.getProperty(LiteRtC.LIB_PROPERTY);
        System.setProperty(LiteRtC.LIB_PROPERTY, "/nonexistent/libLiteRt.so");
        try {
            IllegalStateException e = assertThrows(IllegalStateException.class, LiteRtC::findLibrary);
            assertTrue(e.getMessage(), e.getMessage().contains("/nonexistent/libLiteRt.so"));
        } finally {
            if (old == null) {
                System.clearProperty(LiteRtC.LIB_PROPERTY);
            } else {
                System.setProperty(LiteRtC.LIB_PROPERTY, old);
            }
        }
    }

    @Test
    public void kernelNamesParse() {
        assertEquals(CpuKernels.XNNPACK, CpuKernels.parse("XNNPACK"));
        assertEquals(CpuKernels.BUILTIN, CpuKernels.parse("builtin"));
        assertTrue(CpuKernels.CALIBRATED.isCalibrated());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> CpuKernels.parse("gpu"));
        assertTrue(e.getMessage().contains("gpu"));
    }
}
