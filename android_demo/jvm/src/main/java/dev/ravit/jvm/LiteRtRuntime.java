package dev.ravit.jvm;

import com.sun.jna.Memory;
import com.sun.jna.Pointer;
import com.sun.jna.ptr.IntByReference;
import com.sun.jna.ptr.LongByReference;
import com.sun.jna.ptr.PointerByReference;
import dev.ravit.core.CpuKernels;
import dev.ravit.core.DType;
import dev.ravit.core.ExitSpec;
import dev.ravit.core.Manifest;
import dev.ravit.core.ManifestException;
import dev.ravit.core.SubmodelRuntime;
import dev.ravit.core.TensorData;
import dev.ravit.core.TensorSpec;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.TreeSet;

/**
 * The core's {@link SubmodelRuntime} on a desktop JVM: one LiteRT {@code CompiledModel}
 * per submodel, through LiteRT's C API ({@link LiteRtC}).
 *
 * <p>Each submodel is compiled for the CPU accelerator with LiteRT's CPU option
 * {@code kernel_mode} set from {@link CpuKernels} (XNNPACK by default, as Python's
 * interpreter) and {@code num_threads}. On construction every submodel's signature
 * tensors are checked against the manifest (names, shape, dtype, scale, zero point), as
 * the app and the Python scheduler do; a mismatch throws a {@link ManifestException}
 * naming the file. Not thread-safe; {@link #close()} releases every native object and is
 * idempotent.
 */
public final class LiteRtRuntime implements SubmodelRuntime {
    /** Keeps the no-op destructor reachable: LiteRT calls it when options are destroyed. */
    private static final LiteRtC.PayloadDestructor KEEP_PAYLOAD = payload -> { };

    private final LiteRtC lib;
    private final Manifest manifest;
    private final CpuKernels kernels;
    private final int numThreads;
    private Pointer environment;
    private final List<Submodel> submodels = new ArrayList<>();
    private boolean closed;
    private long runCompiledModelNanos;

    private static final class Submodel {
        final ExitSpec exit;
        Pointer model;
        Pointer options;
        Memory optionsPayload;
        Pointer compiled;
        final List<String> inputNames = new ArrayList<>();
        final List<String> outputNames = new ArrayList<>();
        final List<Pointer> inputBuffers = new ArrayList<>();
        final List<Pointer> outputBuffers = new ArrayList<>();

        Submodel(ExitSpec exit) {
            this.exit = exit;
        }
    }

    /** Loads the library ({@link LiteRtC#load()}) and every submodel of {@code folder}, XNNPACK, 1 thread. */
    public LiteRtRuntime(Manifest manifest, Path folder) {
        this(LiteRtC.load(), manifest, folder, CpuKernels.CALIBRATED, 1);
    }

    /**
     * @param folder the converter's output folder holding the manifest's submodel files.
     * @param kernels the CPU kernels to compute with ({@link CpuKernels#CALIBRATED} unless comparing).
     * @param numThreads CPU threads per submodel (LiteRT's {@code num_threads}), 1 or more.
     */
    public LiteRtRuntime(LiteRtC lib, Manifest manifest, Path folder, CpuKernels kernels, int numThreads) {
        this.lib = Objects.requireNonNull(lib, "lib");
        this.manifest = Objects.requireNonNull(manifest, "manifest");
        this.kernels = Objects.requireNonNull(kernels, "kernels");
        if (numThreads < 1) {
            throw new IllegalArgumentException("numThreads must be at least 1, got " + numThreads + ".");
        }
        this.numThreads = numThreads;
        try {
            PointerByReference env = new PointerByReference();
            check(lib.LiteRtCreateEnvironment(0, null, env), "LiteRtCreateEnvironment", "");
            environment = env.getValue();
            for (ExitSpec exit : manifest.exits()) {
                Submodel s = new Submodel(exit);
                submodels.add(s);
                build(s, folder.resolve(exit.file()));
            }
        } catch (RuntimeException e) {
            close();
            throw e;
        }
    }

    public CpuKernels kernels() {
        return kernels;
    }

    public int numThreads() {
        return numThreads;
    }

    /**
     * Nanoseconds spent inside {@code LiteRtRunCompiledModel} since construction: the pure
     * invoke time (what Python's {@code invoke()} measures), without the buffer copies and
     * JNA calls around it that {@link #run} and thus the scheduler's branch latencies include.
     */
    public long runCompiledModelNanos() {
        return runCompiledModelNanos;
    }

    private void build(Submodel s, Path file) {
        String where = file.toString();
        if (!Files.isRegularFile(file)) {
            throw new ManifestException(where + " does not exist (the manifest lists it for " + s.exit.name() + ").");
        }
        PointerByReference ref = new PointerByReference();
        if (lib.LiteRtCreateModelFromFile(environment, file.toAbsolutePath().toString(), ref) != LiteRtC.STATUS_OK) {
            throw new ManifestException(where + " is not a loadable TFLite model.");
        }
        s.model = ref.getValue();
        LongByReference n = new LongByReference();
        check(lib.LiteRtGetNumModelSignatures(s.model, n), "LiteRtGetNumModelSignatures", where);
        if (n.getValue() < 1) {
            throw new ManifestException(where + " has no signature; convert it with the ravit_keras converter.");
        }
        check(lib.LiteRtGetModelSignature(s.model, 0, ref), "LiteRtGetModelSignature", where);
        Pointer signature = ref.getValue();
        checkSignature(s, signature, where);

        check(lib.LiteRtCreateOptions(ref), "LiteRtCreateOptions", where);
        s.options = ref.getValue();
        check(lib.LiteRtSetOptionsHardwareAccelerators(s.options, LiteRtC.HW_ACCELERATOR_CPU),
                "LiteRtSetOptionsHardwareAccelerators", where);
        // LiteRT's CPU options travel as TOML text under the identifier "xnnpack"
        // (litert/c/options/litert_cpu_options.cc); kernel_mode picks XNNPACK or built-in kernels.
        String toml = "kernel_mode = \"" + kernels.liteRtKernelMode() + "\"\nnum_threads = " + numThreads + "\n";
        s.optionsPayload = new Memory(toml.length() + 1);
        s.optionsPayload.setString(0, toml, "US-ASCII");
        check(lib.LiteRtCreateOpaqueOptions("xnnpack", s.optionsPayload, KEEP_PAYLOAD, ref),
                "LiteRtCreateOpaqueOptions", where);
        check(lib.LiteRtAddOpaqueOptions(s.options, ref.getValue()), "LiteRtAddOpaqueOptions", where);
        check(lib.LiteRtCreateCompiledModel(environment, s.model, s.options, ref), "LiteRtCreateCompiledModel", where);
        s.compiled = ref.getValue();

        for (String name : s.inputNames) {
            s.inputBuffers.add(allocate(s.exit.input(name), where));
        }
        for (String name : s.outputNames) {
            s.outputBuffers.add(allocate(s.exit.output(name), where));
        }
    }

    private void checkSignature(Submodel s, Pointer signature, String where) {
        LongByReference n = new LongByReference();
        PointerByReference ref = new PointerByReference();
        check(lib.LiteRtGetNumSignatureInputs(signature, n), "LiteRtGetNumSignatureInputs", where);
        List<Pointer> inputTensors = new ArrayList<>();
        for (long i = 0; i < n.getValue(); i++) {
            check(lib.LiteRtGetSignatureInputName(signature, i, ref), "LiteRtGetSignatureInputName", where);
            s.inputNames.add(ref.getValue().getString(0, "UTF-8"));
            check(lib.LiteRtGetSignatureInputTensorByIndex(signature, i, ref), "LiteRtGetSignatureInputTensor", where);
            inputTensors.add(ref.getValue());
        }
        check(lib.LiteRtGetNumSignatureOutputs(signature, n), "LiteRtGetNumSignatureOutputs", where);
        List<Pointer> outputTensors = new ArrayList<>();
        for (long i = 0; i < n.getValue(); i++) {
            check(lib.LiteRtGetSignatureOutputName(signature, i, ref), "LiteRtGetSignatureOutputName", where);
            s.outputNames.add(ref.getValue().getString(0, "UTF-8"));
            check(lib.LiteRtGetSignatureOutputTensorByIndex(signature, i, ref), "LiteRtGetSignatureOutputTensor",
                    where);
            outputTensors.add(ref.getValue());
        }
        TreeSet<String> actual = new TreeSet<>(s.inputNames);
        actual.addAll(s.outputNames);
        TreeSet<String> expected = new TreeSet<>(s.exit.inputs().keySet());
        expected.addAll(s.exit.outputs().keySet());
        if (!actual.equals(expected)) {
            throw new ManifestException(where + " has signature tensors " + actual + ", the manifest says " + expected
                    + ".");
        }
        for (int i = 0; i < inputTensors.size(); i++) {
            checkTensor(inputTensors.get(i), s.exit.input(s.inputNames.get(i)), where);
        }
        for (int i = 0; i < outputTensors.size(); i++) {
            checkTensor(outputTensors.get(i), s.exit.output(s.outputNames.get(i)), where);
        }
    }

    private void checkTensor(Pointer tensor, TensorSpec spec, String where) {
        Memory type = new Memory(LiteRtC.RANKED_TENSOR_TYPE_SIZE);
        check(lib.LiteRtGetRankedTensorType(tensor, type), "LiteRtGetRankedTensorType", where);
        int rank = type.getInt(4) & 0x7F;  // The 7-bit field `rank` of LiteRtLayout.
        int[] shape = type.getIntArray(8, rank);
        DType dtype = dtypeOf(type.getInt(0));
        IntByReference qType = new IntByReference();
        check(lib.LiteRtGetQuantizationTypeId(tensor, qType), "LiteRtGetQuantizationTypeId", where);
        double scale = 0;
        long zeroPoint = 0;
        List<String> problems = new ArrayList<>();
        if (qType.getValue() == LiteRtC.QUANTIZATION_PER_TENSOR) {
            Memory q = new Memory(LiteRtC.PER_TENSOR_QUANTIZATION_SIZE);
            check(lib.LiteRtGetPerTensorQuantization(tensor, q), "LiteRtGetPerTensorQuantization", where);
            scale = q.getFloat(0);
            zeroPoint = q.getLong(8);
        } else if (qType.getValue() != LiteRtC.QUANTIZATION_NONE) {
            problems.add("quantisation type " + qType.getValue() + " (only per-tensor is supported)");
        }
        if (!Arrays.equals(shape, spec.shape())) {
            problems.add("shape " + Arrays.toString(shape) + " != " + Arrays.toString(spec.shape()));
        }
        if (dtype != spec.dtype()) {
            problems.add("dtype " + (dtype == null ? "element type " + type.getInt(0) : dtype) + " != "
                    + spec.dtype());
        }
        if (Math.abs(scale - spec.scale()) > 1e-6 * Math.abs(spec.scale()) || zeroPoint != spec.zeroPoint()) {
            problems.add("quantisation (" + scale + ", " + zeroPoint + ") != (" + spec.scale() + ", "
                    + spec.zeroPoint() + ")");
        }
        if (!problems.isEmpty()) {
            throw new ManifestException(where + " tensor '" + spec.name() + "' does not match the manifest: "
                    + String.join("; ", problems) + ".");
        }
    }

    /** LiteRtElementType (litert/c/litert_model_types.h) -> DType; null for types the core has no use for. */
    private static DType dtypeOf(int elementType) {
        switch (elementType) {
            case 1:
                return DType.FLOAT32;
            case 3:
                return DType.UINT8;
            case 7:
                return DType.INT16;
            case 9:
                return DType.INT8;
            default:
                return null;
        }
    }

    private static int elementTypeOf(DType dtype) {
        switch (dtype) {
            case FLOAT32:
                return 1;
            case UINT8:
                return 3;
            case INT16:
                return 7;
            default:
                return 9;
        }
    }

    private Pointer allocate(TensorSpec spec, String where) {
        Memory type = new Memory(LiteRtC.RANKED_TENSOR_TYPE_SIZE);
        type.clear();
        int[] shape = spec.shape();
        type.setInt(0, elementTypeOf(spec.dtype()));
        type.setInt(4, shape.length & 0x7F);  // rank; has_strides = 0.
        for (int i = 0; i < shape.length; i++) {
            type.setInt(8 + 4L * i, shape[i]);
        }
        PointerByReference ref = new PointerByReference();
        check(lib.LiteRtCreateManagedTensorBuffer(environment, LiteRtC.TENSOR_BUFFER_TYPE_HOST_MEMORY, type,
                (long) spec.elementCount() * spec.dtype().byteSize(), ref), "LiteRtCreateManagedTensorBuffer", where);
        return ref.getValue();
    }

    @Override
    public Map<String, TensorData> run(int exitIndex, Map<String, TensorData> inputs) {
        if (closed) {
            throw new IllegalStateException("LiteRtRuntime is closed.");
        }
        if (exitIndex < 0 || exitIndex >= submodels.size()) {
            throw new IllegalArgumentException("Exit " + exitIndex + " out of range 0.." + (submodels.size() - 1) + ".");
        }
        Submodel s = submodels.get(exitIndex);
        if (!new TreeSet<>(inputs.keySet()).equals(new TreeSet<>(s.inputNames))) {
            throw new IllegalArgumentException(s.exit.file() + " takes inputs " + s.inputNames + "; got "
                    + inputs.keySet() + ".");
        }
        PointerByReference host = new PointerByReference();
        for (int i = 0; i < s.inputNames.size(); i++) {
            String name = s.inputNames.get(i);
            TensorData data = inputs.get(name);
            TensorSpec spec = s.exit.input(name);
            if (data == null) {
                throw new IllegalArgumentException(s.exit.file() + " needs input '" + name + "'; got " + inputs.keySet()
                        + ".");
            }
            if (data.dtype() != spec.dtype() || data.size() != spec.elementCount()) {
                throw new IllegalArgumentException(s.exit.file() + " input '" + name + "' is " + spec.dtype() + " "
                        + Arrays.toString(spec.shape()) + "; got " + data.dtype() + " " + Arrays.toString(data.shape())
                        + ".");
            }
            Pointer buffer = s.inputBuffers.get(i);
            check(lib.LiteRtLockTensorBuffer(buffer, host, LiteRtC.LOCK_WRITE), "LiteRtLockTensorBuffer", s.exit.file());
            try {
                ByteBuffer target = host.getValue().getByteBuffer(0, data.byteSize()).order(ByteOrder.nativeOrder());
                data.copyTo(target);
            } finally {
                lib.LiteRtUnlockTensorBuffer(buffer);
            }
        }
        Pointer[] in = s.inputBuffers.toArray(new Pointer[0]);
        Pointer[] out = s.outputBuffers.toArray(new Pointer[0]);
        long t0 = System.nanoTime();
        int status = lib.LiteRtRunCompiledModel(s.compiled, 0, in.length, in, out.length, out);
        runCompiledModelNanos += System.nanoTime() - t0;
        check(status, "LiteRtRunCompiledModel", s.exit.file());
        Map<String, TensorData> outputs = new LinkedHashMap<>();
        for (int i = 0; i < s.outputNames.size(); i++) {
            String name = s.outputNames.get(i);
            TensorSpec spec = s.exit.output(name);
            Pointer buffer = s.outputBuffers.get(i);
            check(lib.LiteRtLockTensorBuffer(buffer, host, LiteRtC.LOCK_READ), "LiteRtLockTensorBuffer", s.exit.file());
            try {
                ByteBuffer b = host.getValue().getByteBuffer(0, (long) spec.elementCount() * spec.dtype().byteSize())
                        .order(ByteOrder.nativeOrder());
                outputs.put(name, TensorData.fromByteBuffer(spec.dtype(), spec.shape(), b));
            } finally {
                lib.LiteRtUnlockTensorBuffer(buffer);
            }
        }
        return outputs;
    }

    /** Destroys buffers, compiled models, options, models and the environment (in that order); idempotent. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        for (Submodel s : submodels) {
            s.inputBuffers.forEach(lib::LiteRtDestroyTensorBuffer);
            s.outputBuffers.forEach(lib::LiteRtDestroyTensorBuffer);
            s.inputBuffers.clear();
            s.outputBuffers.clear();
            if (s.compiled != null) {
                lib.LiteRtDestroyCompiledModel(s.compiled);
            }
            if (s.options != null) {
                lib.LiteRtDestroyOptions(s.options);
            }
            if (s.model != null) {
                lib.LiteRtDestroyModel(s.model);
            }
        }
        submodels.clear();
        if (environment != null) {
            lib.LiteRtDestroyEnvironment(environment);
            environment = null;
        }
    }

    private static void check(int status, String function, String where) {
        if (status != LiteRtC.STATUS_OK) {
            throw new IllegalStateException(function + " failed with LiteRtStatus " + status
                    + (where.isEmpty() ? "" : " for " + where) + ".");
        }
    }
}
