package dev.ravit.core;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URISyntaxException;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Base64;
import java.util.stream.Stream;

/** Shared helpers: the golden fixture (test resources) and JSON → tensors. */
final class TestSupport {
    private TestSupport() {
    }

    /** The folder of the golden fixture ({@code src/test/resources/golden}). */
    static Path goldenDir() {
        URL url = TestSupport.class.getResource("/golden/manifest.json");
        if (url == null) {
            throw new IllegalStateException("golden/manifest.json is not on the test classpath; regenerate it with "
                    + "`python -m ravit_keras.deploy.export.golden --out android_demo/core/src/test/resources/golden`.");
        }
        try {
            return Paths.get(url.toURI()).getParent();
        } catch (URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    static JsonObject golden() {
        return readJson(goldenDir().resolve("golden.json")).getAsJsonObject();
    }

    static Manifest goldenManifest() {
        return Manifest.load(AssetSource.directory(goldenDir()));
    }

    static String goldenManifestJson() {
        return readString(goldenDir().resolve("manifest.json"));
    }

    static JsonElement readJson(Path p) {
        return JsonParser.parseString(readString(p));
    }

    static String readString(Path p) {
        try {
            return new String(Files.readAllBytes(p), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** A copy of the golden fixture in {@code target} (to break it in tests). */
    static Path copyGolden(Path target) throws IOException {
        try (Stream<Path> files = Files.list(goldenDir())) {
            for (Path f : (Iterable<Path>) files::iterator) {
                Files.copy(f, target.resolve(f.getFileName().toString()));
            }
        }
        return target;
    }

    /** {@code {"dtype", "shape", "values"}} → TensorData. */
    static TensorData tensor(JsonObject t) {
        DType dtype = DType.fromManifestName(t.get("dtype").getAsString());
        int[] shape = ints(t.getAsJsonArray("shape"));
        JsonArray values = t.getAsJsonArray("values");
        if (dtype.isFloat()) {
            float[] f = new float[values.size()];
            for (int i = 0; i < f.length; i++) {
                f[i] = values.get(i).getAsFloat();
            }
            return TensorData.float32(shape, f);
        }
        return TensorData.ofInts(dtype, shape, ints(values));
    }

    /** A manifest-style tensor entry (dtype, scale, zero_point) as a spec of {@code shape}. */
    static TensorSpec spec(String name, JsonObject s, int[] shape) {
        return new TensorSpec(name, 0, name, shape, DType.fromManifestName(s.get("dtype").getAsString()),
                s.get("scale").getAsDouble(), s.get("zero_point").getAsInt());
    }

    static int[] ints(JsonArray a) {
        int[] out = new int[a.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = a.get(i).getAsInt();
        }
        return out;
    }

    static double[] doubles(JsonArray a) {
        double[] out = new double[a.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = a.get(i).getAsDouble();
        }
        return out;
    }

    static byte[] base64(String s) {
        return Base64.getDecoder().decode(s);
    }

    /** RGB bytes → ARGB ints (alpha 255), as Bitmap.getPixels would give them. */
    static int[] argbFromRgb(byte[] rgb) {
        int[] out = new int[rgb.length / 3];
        for (int i = 0; i < out.length; i++) {
            out[i] = 0xFF000000 | (rgb[3 * i] & 0xFF) << 16 | (rgb[3 * i + 1] & 0xFF) << 8 | (rgb[3 * i + 2] & 0xFF);
        }
        return out;
    }
}
