package dev.ravit.jvm;

import dev.ravit.core.Classification;
import dev.ravit.core.CpuKernels;
import dev.ravit.core.DirectoryAssetSource;
import dev.ravit.core.ExitSpec;
import dev.ravit.core.Manifest;
import dev.ravit.core.Quantization;
import dev.ravit.core.Scheduler;
import dev.ravit.core.TensorData;
import dev.ravit.core.TensorSpec;
import java.io.BufferedOutputStream;
import java.io.DataInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Runs the core's {@link Scheduler} over {@link LiteRtRuntime} on a file of images and
 * writes everything the Java side computed, for {@code tests/deploy/test_android_parity.py}
 * to compare with the Python scheduler byte for byte.
 *
 * <pre>
 * java dev.ravit.jvm.ParityDump MODEL_DIR IMAGES.bin OUT.bin [--kernels xnnpack|builtin] [--thresholds t1,t2 ...]
 * </pre>
 *
 * {@code IMAGES.bin}: the images back to back, each exactly the manifest's image tensor in
 * its dtype (little-endian). {@code OUT.bin}, little-endian, per image: for every exit k in
 * order, the raw bytes of {@code cls_in} (k > 0; requantised by {@link Quantization#requantize},
 * what the scheduler feeds), {@code logits} and {@code cls_out} (k < last) of the chain run to
 * the last exit; then for each {@code --thresholds} setting (each one τ per exit but the last)
 * the scheduler's answer: int32 exit index, int32 label, int64 MACs, float64 entropy of every
 * exit 0..K-1 (NaN for exits not visited).
 */
public final class ParityDump {
    private ParityDump() {
    }

    public static void main(String[] args) throws IOException {
        if (args.length < 3) {
            System.err.println("usage: ParityDump MODEL_DIR IMAGES.bin OUT.bin [--kernels xnnpack|builtin]"
                    + " [--thresholds t1,t2 ...]");
            System.exit(2);
        }
        Path folder = Paths.get(args[0]);
        Path images = Paths.get(args[1]);
        Path out = Paths.get(args[2]);
        CpuKernels kernels = CpuKernels.CALIBRATED;
        List<double[]> settings = new ArrayList<>();
        for (int i = 3; i < args.length; i++) {
            if (args[i].equals("--kernels") && i + 1 < args.length) {
                kernels = CpuKernels.parse(args[++i]);
            } else if (args[i].equals("--thresholds") && i + 1 < args.length) {
                String[] parts = args[++i].split(",");
                double[] t = new double[parts.length];
                for (int j = 0; j < parts.length; j++) {
                    t[j] = Double.parseDouble(parts[j]);
                }
                settings.add(t);
            } else {
                throw new IllegalArgumentException("Unknown argument '" + args[i] + "'.");
            }
        }
        Manifest manifest = Manifest.load(new DirectoryAssetSource(folder));
        TensorSpec imageSpec = manifest.imageSpec();
        int imageBytes = imageSpec.elementCount() * imageSpec.dtype().byteSize();
        long size = Files.size(images);
        if (size % imageBytes != 0) {
            throw new IllegalArgumentException(images + " holds " + size + " bytes, not a multiple of one image ("
                    + imageBytes + " bytes of " + imageSpec.dtype() + ").");
        }
        int numExits = manifest.numExits();
        try (LiteRtRuntime runtime = new LiteRtRuntime(LiteRtC.load(), manifest, folder, kernels, 1);
                InputStream in = Files.newInputStream(images);
                OutputStream os = new BufferedOutputStream(Files.newOutputStream(out))) {
            Scheduler scheduler = new Scheduler(manifest, runtime);
            DataInputStream din = new DataInputStream(in);
            byte[] raw = new byte[imageBytes];
            for (long n = size / imageBytes; n > 0; n--) {
                din.readFully(raw);
                TensorData image = TensorData.fromByteBuffer(imageSpec.dtype(), imageSpec.shape(),
                        ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN));
                TensorData cls = null;
                for (int k = 0; k < numExits; k++) {
                    ExitSpec exit = manifest.exit(k);
                    Map<String, TensorData> inputs = new LinkedHashMap<>();
                    inputs.put("image", image);
                    if (k > 0) {
                        TensorData clsIn = Quantization.requantize(cls, manifest.exit(k - 1).output("cls_out"),
                                exit.input("cls_in"));
                        inputs.put("cls_in", clsIn);
                        write(os, clsIn);
                    }
                    Map<String, TensorData> outputs = runtime.run(k, inputs);
                    write(os, outputs.get("logits"));
                    if (k < numExits - 1) {
                        cls = outputs.get("cls_out");
                        write(os, cls);
                    }
                }
                for (double[] t : settings) {
                    Classification c = scheduler.classify(image, t);
                    ByteBuffer b = ByteBuffer.allocate(16 + 8 * numExits).order(ByteOrder.LITTLE_ENDIAN);
                    b.putInt(c.exitIndex()).putInt(c.label()).putLong(c.macs());
                    double[] u = c.entropies();
                    for (int k = 0; k < numExits; k++) {
                        b.putDouble(k < u.length ? u[k] : Double.NaN);
                    }
                    os.write(b.array());
                }
            }
        }
    }

    private static void write(OutputStream os, TensorData t) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(t.byteSize()).order(ByteOrder.LITTLE_ENDIAN);
        t.copyTo(b);
        os.write(b.array());
    }
}
