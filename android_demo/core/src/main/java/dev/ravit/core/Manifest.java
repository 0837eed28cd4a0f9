package dev.ravit.core;

import com.google.gson.Gson;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonPrimitive;
import com.google.gson.stream.JsonReader;
import com.google.gson.stream.JsonToken;

import java.io.IOException;
import java.io.InputStream;
import java.io.StringReader;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

/**
 * The converter's {@code manifest.json} (written by {@code ravit_keras.deploy.export.convert.convert}):
 * exit order, submodel files and checksums, signature tensors with their quantisation,
 * MACs, labels, default thresholds, operating points and the battery policy.
 *
 * <p>{@link #parse} checks the structure exactly as {@code ravit_keras.deploy.runtime.manifest.load_manifest}
 * does (format {@code "ravit-tflite"}, format_version 1, one label per class, every exit
 * with inputs {@code image} (+ {@code cls_in} after the first) and outputs
 * {@code logits}/{@code cls_out}, CLS shapes that chain, valid default thresholds), and the
 * same key checks: quantisation present and sane, MACs positive and rising, exits unique, files
 * inside the folder, {@code image} matching the submodels, operating points and battery policy
 * well-formed. The cases both must refuse are listed once, in tests/fixtures/bad_manifests.json.
 * {@link #validateAssets} then checks the files: each submodel present with the SHA-256
 * the manifest lists. Every problem is a {@link ManifestException} naming the file and
 * what is wrong.
 */
public final class Manifest {
    public static final String FILE = "manifest.json";
    public static final String FORMAT = "ravit-tflite";
    public static final int FORMAT_VERSION = 1;
    /** The conversion modes ({@code ravit_keras/deploy/runtime/modes.py}, the manifest's {@code quantization}). */
    public static final List<String> MODES = Collections.unmodifiableList(
            Arrays.asList("int8", "int8-full", "dynamic", "int16x8", "float32"));

    private final String source;
    private final String quantization;
    private final int numClasses;
    private final List<String> labels;
    private final List<ExitSpec> exits;
    private final long fullModelMacs;
    private final double[] defaultThresholds;
    private final List<OperatingPoint> operatingPoints;
    private final BatteryPolicy batteryPolicy;

    private Manifest(String source, String quantization, int numClasses, List<String> labels, List<ExitSpec> exits,
                     long fullModelMacs, double[] defaultThresholds, List<OperatingPoint> operatingPoints,
                     BatteryPolicy batteryPolicy) {
        this.source = source;
        this.quantization = quantization;
        this.numClasses = numClasses;
        this.labels = Collections.unmodifiableList(new ArrayList<>(labels));
        this.exits = Collections.unmodifiableList(new ArrayList<>(exits));
        this.fullModelMacs = fullModelMacs;
        this.defaultThresholds = defaultThresholds;
        this.operatingPoints = Collections.unmodifiableList(new ArrayList<>(operatingPoints));
        this.batteryPolicy = batteryPolicy;
    }

    // Loading ------------------------------------------------------------------------------

    /** Reads, parses and validates {@code manifest.json} and the submodels beside it (with checksums). */
    public static Manifest load(AssetSource assets) {
        return load(assets, true);
    }

    /**
     * Reads and parses {@code manifest.json} from {@code assets}, then {@link #validateAssets}.
     *
     * @throws ManifestException if the manifest is missing, malformed or does not match the files.
     */
    public static Manifest load(AssetSource assets, boolean verifyChecksums) {
        String where = assets.describe(FILE);
        if (!assets.exists(FILE)) {
            throw new ManifestException("No " + FILE + " at " + where + ": not a converted RAViT folder "
                    + "(run the converter and copy its output folder).");
        }
        String json;
        try {
            json = new String(assets.readBytes(FILE), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new ManifestException("Cannot read " + where + ": " + e.getMessage(), e);
        }
        Manifest manifest = parse(json, where);
        manifest.validateAssets(assets, verifyChecksums);
        return manifest;
    }

    /**
     * Parses and validates manifest JSON; {@code source} names it in messages.
     *
     * @throws ManifestException for invalid JSON or a manifest that breaks a rule.
     */
    public static Manifest parse(String json, String source) {
        JsonObject root = readObject(json, source);
        Reader r = new Reader(source);
        JsonElement format = root.get("format");
        if (format == null || !format.isJsonPrimitive() || !FORMAT.equals(format.getAsString())) {
            throw new ManifestException(source + " is not a " + FORMAT + " manifest (format="
                    + (format == null ? "None" : format.toString()) + ").");
        }
        JsonElement version = root.get("format_version");
        if (version == null || !version.isJsonPrimitive() || !((JsonPrimitive) version).isNumber()
                || version.getAsDouble() != FORMAT_VERSION) {
            throw new ManifestException(source + " has format_version " + (version == null ? "None" : version.toString())
                    + "; this runtime reads " + FORMAT_VERSION + ".");
        }
        JsonElement exitsJson = root.get("exits");
        if (exitsJson == null || !exitsJson.isJsonArray() || exitsJson.getAsJsonArray().size() == 0) {
            throw new ManifestException(source + " lists no exits.");
        }
        List<String> labels = root.has("labels") ? r.strings(root, "labels", "labels") : new ArrayList<>();
        JsonElement numClassesJson = root.get("num_classes");
        if (numClassesJson == null || !numClassesJson.isJsonPrimitive() || !((JsonPrimitive) numClassesJson).isNumber()
                || labels.size() != numClassesJson.getAsDouble()) {
            throw new ManifestException(source + ": " + labels.size() + " labels for num_classes="
                    + (numClassesJson == null ? "None" : numClassesJson.toString()) + ".");
        }
        int numClasses = labels.size();

        JsonArray exitArray = exitsJson.getAsJsonArray();
        List<ExitSpec> exits = new ArrayList<>();
        for (int k = 0; k < exitArray.size(); k++) {
            String path = "exits[" + k + "]";
            if (!exitArray.get(k).isJsonObject()) {
                throw new ManifestException(source + ": " + path + " is not an object.");
            }
            JsonObject e = exitArray.get(k).getAsJsonObject();
            for (String key : new String[] {"name", "file", "sha256", "inputs", "outputs", "cumulative_macs"}) {
                if (!e.has(key)) {
                    throw new ManifestException(source + ": exit " + k + " has no '" + key + "'.");
                }
            }
            String name = r.string(e, "name", path);
            Map<String, TensorSpec> inputs = r.tensors(e, "inputs", path);
            Map<String, TensorSpec> outputs = r.tensors(e, "outputs", path);
            Set<String> neededIn = new TreeSet<>(k == 0 ? Arrays.asList("image") : Arrays.asList("cls_in", "image"));
            Set<String> neededOut = new TreeSet<>(Arrays.asList("cls_out", "logits"));
            if (!new TreeSet<>(inputs.keySet()).equals(neededIn) || !new TreeSet<>(outputs.keySet()).equals(neededOut)) {
                throw new ManifestException(source + ": exit " + name + " has inputs " + new TreeSet<>(inputs.keySet())
                        + " and outputs " + new TreeSet<>(outputs.keySet()) + "; expected " + neededIn + " and "
                        + neededOut + ".");
            }
            String sha = r.string(e, "sha256", path).toLowerCase(java.util.Locale.ROOT);
            long sizeBytes = e.has("size_bytes") ? r.integer(e, "size_bytes", path) : -1;
            long macs = e.has("macs") ? r.positive(e, "macs", path) : -1;
            int branch = e.has("branch") ? (int) r.positive(e, "branch", path) : k + 1;
            String file = r.relativeFile(e, "file", path);
            long cumulative = r.positive(e, "cumulative_macs", path);
            for (ExitSpec before : exits) {
                if (before.name().equals(name) || before.file().equals(file)) {
                    throw new ManifestException(source + ": " + path + ".name: exit " + name + " (" + file
                            + ") is listed twice.");
                }
            }
            if (k > 0 && cumulative <= exits.get(k - 1).cumulativeMacs()) {
                throw new ManifestException(source + ": " + path + ".cumulative_macs: " + cumulative
                        + " is not above the previous exit's " + exits.get(k - 1).cumulativeMacs()
                        + ": cumulative MACs rise strictly along the exits.");
            }
            if (k > 0 && e.has("branch") && branch <= exits.get(k - 1).branch()) {
                throw new ManifestException(source + ": " + path + ".branch: branch " + branch + " after branch "
                        + exits.get(k - 1).branch() + ": exits must be in order.");
            }
            exits.add(new ExitSpec(k, name, branch, file, sha, sizeBytes, macs, cumulative, inputs, outputs));
        }
        ExitSpec first = exits.get(0);
        for (int k = 0; k < exits.size(); k++) {
            ExitSpec e = exits.get(k);
            if (k > 0) {
                TensorSpec produced = exits.get(k - 1).output("cls_out");
                TensorSpec consumed = e.input("cls_in");
                if (!Arrays.equals(produced.shape(), consumed.shape())) {
                    throw new ManifestException(source + ": cls_out of " + exits.get(k - 1).name() + " "
                            + Arrays.toString(produced.shape()) + " does not fit cls_in of " + e.name() + " "
                            + Arrays.toString(consumed.shape()) + ".");
                }
            }
            TensorSpec logits = e.output("logits");
            if (logits.elementCount() != numClasses) {
                throw new ManifestException(source + ": logits of " + e.name() + " have shape "
                        + Arrays.toString(logits.shape()) + " but num_classes=" + numClasses + ".");
            }
            if (!Arrays.equals(e.input("image").shape(), first.input("image").shape())
                    || e.input("image").dtype() != first.input("image").dtype()) {
                throw new ManifestException(source + ": the image input of " + e.name() + " ("
                        + e.input("image") + ") differs from that of " + first.name() + " (" + first.input("image")
                        + "); every submodel takes the same full image.");
            }
        }

        JsonObject image = r.object(r.get(root, "image", ""), "image");
        long height = r.positive(image, "height", "image");
        long width = r.positive(image, "width", "image");
        long channels = image.has("channels") ? r.positive(image, "channels", "image") : 3;
        int[] imageShape = first.input("image").shape();
        if (!Arrays.equals(imageShape, new int[] {1, (int) height, (int) width, (int) channels})) {
            throw new ManifestException(source + ": image: " + height + "x" + width + "x" + channels
                    + " but tensor 'image' of " + first.name() + " does not match the manifest: shape "
                    + Arrays.toString(imageShape) + ".");
        }

        double[] defaults;
        JsonElement d = root.get("default_thresholds");
        try {
            if (d == null) {
                defaults = ExitPolicy.validate(0.0, exits.size(), numClasses);
            } else if (d.isJsonArray()) {
                defaults = ExitPolicy.validate(r.doubles(root, "default_thresholds", ""), exits.size(), numClasses);
            } else {
                defaults = ExitPolicy.validate(r.number(root, "default_thresholds", ""), exits.size(), numClasses);
            }
        } catch (IllegalArgumentException ex) {
            throw new ManifestException(source + ": default_thresholds: " + ex.getMessage(), ex);
        }

        List<OperatingPoint> points = new ArrayList<>();
        if (root.has("operating_points") && !root.get("operating_points").isJsonNull()) {
            JsonArray array = r.array(root, "operating_points", "");
            for (int i = 0; i < array.size(); i++) {
                String path = "operating_points[" + i + "]";
                JsonObject p = r.object(array.get(i), path);
                double[] thresholds = r.doubles(p, "thresholds", path);
                double accuracy = r.number(p, "accuracy", path);
                if (!(accuracy >= 0 && accuracy <= 1)) {
                    throw new ManifestException(source + ": " + path + ".accuracy should be in [0, 1], got " + accuracy + ".");
                }
                double avgMacs = r.number(p, "avg_macs", path);
                if (!(avgMacs > 0 && Double.isFinite(avgMacs))) {
                    throw new ManifestException(source + ": " + path + ".avg_macs should be positive, got " + avgMacs + ".");
                }
                double[] fractions = r.doubles(p, "exit_fractions", path);
                boolean fractionsOk = fractions.length == exits.size();
                for (double x : fractions) {
                    fractionsOk &= x >= 0 && x <= 1;
                }
                if (!fractionsOk) {
                    throw new ManifestException(source + ": " + path + ".exit_fractions should be " + exits.size()
                            + " fractions in [0, 1], got " + Arrays.toString(fractions) + ".");
                }
                try {
                    ExitPolicy.validate(thresholds, exits.size(), numClasses);
                } catch (IllegalArgumentException ex) {
                    throw new ManifestException(source + ": " + path + ".thresholds: " + ex.getMessage(), ex);
                }
                points.add(new OperatingPoint(
                        p.has("mac_fraction") ? r.number(p, "mac_fraction", path) : Double.NaN, thresholds,
                        accuracy, avgMacs, fractions));
            }
        }

        // Required, as in load_manifest: the battery policy, the full model's MACs, the mode.
        JsonObject b = r.object(r.get(root, "battery_policy", ""), "battery_policy");
        String bp = "battery_policy";
        double[] hi = r.thresholds(b, "thresholds_high", bp, exits.size(), numClasses);
        double[] lo = r.thresholds(b, "thresholds_low", bp, exits.size(), numClasses);
        BatteryPolicy battery;
        try {
            battery = new BatteryPolicy(r.number(b, "high", bp), r.number(b, "low", bp), hi, lo);
        } catch (IllegalArgumentException ex) {
            throw new ManifestException(source + ": battery_policy: " + ex.getMessage(), ex);
        }
        long full = r.positive(root, "full_model_macs", "");
        String quantization = r.string(root, "quantization", "");
        if (!MODES.contains(quantization)) {
            throw new ManifestException(source + ": quantization should be one of " + MODES + ", got '"
                    + quantization + "'.");
        }
        return new Manifest(source, quantization, numClasses, labels, exits, full, defaults, points, battery);
    }

    private static JsonObject readObject(String json, String source) {
        try {
            JsonReader reader = new JsonReader(new StringReader(json));  // Strict (not lenient) by default.
            JsonElement root = new Gson().getAdapter(JsonElement.class).read(reader);
            if (reader.peek() != JsonToken.END_DOCUMENT) {
                throw new ManifestException(source + " is not valid JSON: trailing content after the object.");
            }
            if (root == null || !root.isJsonObject()) {
                throw new ManifestException(source + " is not a JSON object.");
            }
            return root.getAsJsonObject();
        } catch (IOException | JsonParseException | IllegalStateException e) {
            throw new ManifestException(source + " is not valid JSON: " + e.getMessage(), e);
        }
    }

    // Assets -------------------------------------------------------------------------------

    /** {@link #validateAssets(AssetSource, boolean)} with checksums. */
    public void validateAssets(AssetSource assets) {
        validateAssets(assets, true);
    }

    /**
     * Checks that every submodel the manifest lists is in {@code assets} and, when
     * {@code verifyChecksums}, that its SHA-256 is the manifest's.
     *
     * @throws ManifestException naming the missing or changed file.
     */
    public void validateAssets(AssetSource assets, boolean verifyChecksums) {
        for (ExitSpec e : exits) {
            String where = assets.describe(e.file());
            if (!assets.exists(e.file())) {
                throw new ManifestException("Submodel " + where + " listed in the manifest (" + e.name()
                        + ") is missing.");
            }
            if (verifyChecksums) {
                String digest;
                try (InputStream in = assets.open(e.file())) {
                    digest = sha256(in);
                } catch (IOException ex) {
                    throw new ManifestException("Cannot read submodel " + where + ": " + ex.getMessage(), ex);
                }
                if (!digest.equals(e.sha256())) {
                    throw new ManifestException("Checksum of " + where + " (" + digest.substring(0, 12)
                            + "...) differs from the manifest (" + e.sha256().substring(0, Math.min(12, e.sha256().length()))
                            + "...): the file was changed or belongs to another conversion.");
                }
            }
        }
    }

    /** Lower-case hex SHA-256 of a stream. */
    public static String sha256(InputStream in) throws IOException {
        MessageDigest md;
        try {
            md = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 is not available", e);
        }
        byte[] buffer = new byte[64 * 1024];
        for (int n; (n = in.read(buffer)) != -1; ) {
            md.update(buffer, 0, n);
        }
        StringBuilder hex = new StringBuilder(64);
        for (byte b : md.digest()) {
            hex.append(Character.forDigit((b >> 4) & 0xF, 16)).append(Character.forDigit(b & 0xF, 16));
        }
        return hex.toString();
    }

    // Accessors ----------------------------------------------------------------------------

    /** Where the manifest came from (for messages). */
    public String source() {
        return source;
    }

    /** {@code int8}, {@code int16x8} or {@code float32}. */
    public String quantization() {
        return quantization;
    }

    public int numClasses() {
        return numClasses;
    }

    public List<String> labels() {
        return labels;
    }

    public String label(int index) {
        return labels.get(index);
    }

    public List<ExitSpec> exits() {
        return exits;
    }

    public ExitSpec exit(int index) {
        return exits.get(index);
    }

    public int numExits() {
        return exits.size();
    }

    public List<String> exitNames() {
        List<String> names = new ArrayList<>();
        for (ExitSpec e : exits) {
            names.add(e.name());
        }
        return names;
    }

    /** MACs of the whole model (every branch): the cost without early exit. */
    public long fullModelMacs() {
        return fullModelMacs;
    }

    /** The image input every submodel takes ({@code [1, H, W, 3]}). */
    public TensorSpec imageSpec() {
        return exits.get(0).input("image");
    }

    /** The validated default thresholds ({@code numExits - 1} values). */
    public double[] defaultThresholds() {
        return defaultThresholds.clone();
    }

    public ExitPolicy defaultPolicy() {
        return ExitPolicy.perExit(defaultThresholds, numExits(), numClasses);
    }

    public List<OperatingPoint> operatingPoints() {
        return operatingPoints;
    }

    public boolean hasBatteryPolicy() {
        return batteryPolicy != null;
    }

    /** @throws IllegalStateException if the manifest has no battery policy. */
    public BatteryPolicy batteryPolicy() {
        if (batteryPolicy == null) {
            throw new IllegalStateException(source + " has no battery_policy (convert the model again).");
        }
        return batteryPolicy;
    }

    // JSON access with paths in messages -----------------------------------------------------

    private static final class Reader {
        private final String source;

        Reader(String source) {
            this.source = source;
        }

        private ManifestException bad(String path, String key, String expected, JsonElement got) {
            String where = path.isEmpty() ? key : path + "." + key;
            return new ManifestException(source + ": " + where + " should be " + expected + ", got "
                    + (got == null ? "nothing" : got.toString()) + ".");
        }

        JsonElement get(JsonObject o, String key, String path) {
            JsonElement e = o.get(key);
            if (e == null || e.isJsonNull()) {
                throw new ManifestException(source + ": " + (path.isEmpty() ? "" : path + " ") + "has no '" + key + "' ("
                        + (path.isEmpty() ? key : path + "." + key) + " is missing).");
            }
            return e;
        }

        String string(JsonObject o, String key, String path) {
            JsonElement e = get(o, key, path);
            if (!e.isJsonPrimitive() || !((JsonPrimitive) e).isString()) {
                throw bad(path, key, "a string", e);
            }
            return e.getAsString();
        }

        double number(JsonObject o, String key, String path) {
            JsonElement e = get(o, key, path);
            if (!e.isJsonPrimitive() || !((JsonPrimitive) e).isNumber()) {
                throw bad(path, key, "a number", e);
            }
            return e.getAsDouble();
        }

        long integer(JsonObject o, String key, String path) {
            double v = number(o, key, path);
            if (v != Math.rint(v) || Math.abs(v) > 9.007199254740992E15) {
                throw bad(path, key, "an integer", o.get(key));
            }
            return o.get(key).getAsBigDecimal().longValueExact();
        }

        long positive(JsonObject o, String key, String path) {
            long v = integer(o, key, path);
            if (v <= 0) {
                throw bad(path, key, "positive", o.get(key));
            }
            return v;
        }

        /** A plain relative path inside the model folder: no absolute path, no "..". */
        String relativeFile(JsonObject o, String key, String path) {
            String f = string(o, key, path);
            boolean escapes = f.isEmpty() || f.startsWith("/") || f.startsWith("\\") || f.matches("^[A-Za-z]:.*");
            for (String part : f.split("[/\\\\]")) {
                escapes |= part.equals("..");
            }
            if (escapes) {
                throw bad(path, key, "a file name inside the model folder", o.get(key));
            }
            return f;
        }

        double[] thresholds(JsonObject o, String key, String path, int numExits, int numClasses) {
            try {
                return ExitPolicy.validate(doubles(o, key, path), numExits, numClasses);
            } catch (IllegalArgumentException ex) {
                throw new ManifestException(source + ": " + path + "." + key + ": " + ex.getMessage(), ex);
            }
        }

        JsonArray array(JsonObject o, String key, String path) {
            JsonElement e = get(o, key, path);
            if (!e.isJsonArray()) {
                throw bad(path, key, "a list", e);
            }
            return e.getAsJsonArray();
        }

        JsonObject object(JsonElement e, String path) {
            if (e == null || !e.isJsonObject()) {
                throw new ManifestException(source + ": " + path + " should be an object, got " + e + ".");
            }
            return e.getAsJsonObject();
        }

        double[] doubles(JsonObject o, String key, String path) {
            JsonArray a = array(o, key, path);
            double[] out = new double[a.size()];
            for (int i = 0; i < out.length; i++) {
                JsonElement e = a.get(i);
                if (!e.isJsonPrimitive() || !((JsonPrimitive) e).isNumber()) {
                    throw bad(path, key + "[" + i + "]", "a number", e);
                }
                out[i] = e.getAsDouble();
            }
            return out;
        }

        int[] ints(JsonObject o, String key, String path) {
            double[] d = doubles(o, key, path);
            int[] out = new int[d.length];
            for (int i = 0; i < d.length; i++) {
                if (d[i] != Math.rint(d[i]) || Math.abs(d[i]) > Integer.MAX_VALUE) {
                    throw bad(path, key + "[" + i + "]", "an integer", o.get(key).getAsJsonArray().get(i));
                }
                out[i] = (int) d[i];
            }
            return out;
        }

        List<String> strings(JsonObject o, String key, String path) {
            JsonArray a = array(o, key, path);
            List<String> out = new ArrayList<>();
            for (int i = 0; i < a.size(); i++) {
                JsonElement e = a.get(i);
                if (!e.isJsonPrimitive() || !((JsonPrimitive) e).isString()) {
                    throw bad(path, key + "[" + i + "]", "a string", e);
                }
                out.add(e.getAsString());
            }
            return out;
        }

        Map<String, TensorSpec> tensors(JsonObject exit, String key, String path) {
            JsonObject o = object(get(exit, key, path), path + "." + key);
            Map<String, TensorSpec> out = new LinkedHashMap<>();
            for (Map.Entry<String, JsonElement> entry : o.entrySet()) {
                String name = entry.getKey();
                String p = path + "." + key + "." + name;
                JsonObject t = object(entry.getValue(), p);
                DType dtype;
                try {
                    dtype = DType.fromManifestName(string(t, "dtype", p));
                } catch (IllegalArgumentException ex) {
                    throw new ManifestException(source + ": " + p + ": " + ex.getMessage(), ex);
                }
                int[] shape = ints(t, "shape", p);
                // Quantisation is required: a positive finite scale on integer tensors and an
                // integer zero point (as load_manifest checks).
                double scale = number(t, "scale", p);
                long zp = integer(t, "zero_point", p);
                if (!dtype.isFloat() && !(scale > 0 && Double.isFinite(scale))) {
                    throw bad(p, "scale", "> 0 for a " + dtype.manifestName() + " tensor", t.get("scale"));
                }
                int position = t.has("position") ? (int) integer(t, "position", p) : -1;
                String tensorName = t.has("tensor_name") ? string(t, "tensor_name", p) : name;
                try {
                    out.put(name, new TensorSpec(name, position, tensorName, shape, dtype, scale, (int) zp));
                } catch (IllegalArgumentException ex) {
                    throw new ManifestException(source + ": " + p + ": " + ex.getMessage(), ex);
                }
            }
            return out;
        }
    }
}
