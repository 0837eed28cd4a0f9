package dev.ravit.jvm;

import com.sun.jna.Callback;
import com.sun.jna.Library;
import com.sun.jna.Native;
import com.sun.jna.Pointer;
import com.sun.jna.ptr.LongByReference;
import com.sun.jna.ptr.PointerByReference;
import com.sun.jna.ptr.IntByReference;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;

/**
 * The part of LiteRT's C API ({@code litert/c/*.h} of google-ai-edge/LiteRT, v2.x) that
 * {@link LiteRtRuntime} calls, bound with JNA to the {@code libLiteRt.so} that the
 * {@code ai-edge-litert} Python wheel ships.
 *
 * <p>Handles are opaque pointers; {@code LiteRtParamIndex} and {@code size_t} are 64-bit
 * ({@code long}) on the LP64 Linux hosts this runs on. Every function returns a
 * {@code LiteRtStatus} (0 = ok) unless it is {@code void}.
 */
public interface LiteRtC extends Library {
    /** System property naming the library file; overrides the search. */
    String LIB_PROPERTY = "ravit.litert.lib";
    /** Environment variable naming the library file (when the property is unset). */
    String LIB_ENV = "RAVIT_LITERT_LIB";

    int STATUS_OK = 0;
    int HW_ACCELERATOR_CPU = 1;
    int TENSOR_BUFFER_TYPE_HOST_MEMORY = 1;
    int LOCK_READ = 0;
    int LOCK_WRITE = 1;
    int QUANTIZATION_NONE = 0;
    int QUANTIZATION_PER_TENSOR = 1;
    /** sizeof(LiteRtRankedTensorType): element type (int32) + LiteRtLayout (68 bytes). */
    int RANKED_TENSOR_TYPE_SIZE = 72;
    /** sizeof(LiteRtQuantizationPerTensor): float scale, pad, int64 zero point. */
    int PER_TENSOR_QUANTIZATION_SIZE = 16;

    /** {@code void (*)(void*)}, the payload destructor of opaque options. */
    interface PayloadDestructor extends Callback {
        void invoke(Pointer payload);
    }

    int LiteRtCreateEnvironment(int numOptions, Pointer options, PointerByReference environment);

    void LiteRtDestroyEnvironment(Pointer environment);

    int LiteRtCreateModelFromFile(Pointer environment, String filename, PointerByReference model);

    void LiteRtDestroyModel(Pointer model);

    int LiteRtGetNumModelSignatures(Pointer model, LongByReference numSignatures);

    int LiteRtGetModelSignature(Pointer model, long signatureIndex, PointerByReference signature);

    int LiteRtGetSignatureKey(Pointer signature, PointerByReference key);

    int LiteRtGetNumSignatureInputs(Pointer signature, LongByReference numInputs);

    int LiteRtGetNumSignatureOutputs(Pointer signature, LongByReference numOutputs);

    int LiteRtGetSignatureInputName(Pointer signature, long index, PointerByReference name);

    int LiteRtGetSignatureOutputName(Pointer signature, long index, PointerByReference name);

    int LiteRtGetSignatureInputTensorByIndex(Pointer signature, long index, PointerByReference tensor);

    int LiteRtGetSignatureOutputTensorByIndex(Pointer signature, long index, PointerByReference tensor);

    int LiteRtGetRankedTensorType(Pointer tensor, Pointer rankedTensorType);

    int LiteRtGetQuantizationTypeId(Pointer tensor, IntByReference quantizationTypeId);

    int LiteRtGetPerTensorQuantization(Pointer tensor, Pointer perTensorQuantization);

    int LiteRtCreateOptions(PointerByReference options);

    void LiteRtDestroyOptions(Pointer options);

    int LiteRtSetOptionsHardwareAccelerators(Pointer options, int hardwareAccelerators);

    int LiteRtCreateOpaqueOptions(String identifier, Pointer payload, PayloadDestructor destructor,
            PointerByReference opaqueOptions);

    int LiteRtAddOpaqueOptions(Pointer options, Pointer opaqueOptions);

    int LiteRtCreateCompiledModel(Pointer environment, Pointer model, Pointer options,
            PointerByReference compiledModel);

    void LiteRtDestroyCompiledModel(Pointer compiledModel);

    int LiteRtRunCompiledModel(Pointer compiledModel, long signatureIndex, long numInputs, Pointer[] inputs,
            long numOutputs, Pointer[] outputs);

    int LiteRtCreateManagedTensorBuffer(Pointer environment, int bufferType, Pointer rankedTensorType,
            long bufferSize, PointerByReference buffer);

    void LiteRtDestroyTensorBuffer(Pointer buffer);

    int LiteRtLockTensorBuffer(Pointer buffer, PointerByReference hostMemory, int lockMode);

    int LiteRtUnlockTensorBuffer(Pointer buffer);

    /**
     * Loads {@code libLiteRt.so}: the file named by {@value #LIB_PROPERTY} or
     * {@value #LIB_ENV}, else the first {@code .venv/lib/python*}{@code /site-packages/ai_edge_litert/libLiteRt.so}
     * in the working directory or one of its parents.
     *
     * @throws IllegalStateException naming what was tried when no library is found or it does not load.
     */
    static LiteRtC load() {
        Path lib = findLibrary();
        try {
            return Native.load(lib.toAbsolutePath().toString(), LiteRtC.class);
        } catch (UnsatisfiedLinkError e) {
            throw new IllegalStateException("Could not load the LiteRT C library " + lib + ": " + e.getMessage(), e);
        }
    }

    /** Where {@link #load()} takes the library from (see there). */
    static Path findLibrary() {
        String named = System.getProperty(LIB_PROPERTY);
        String source = "-D" + LIB_PROPERTY;
        if (named == null || named.isEmpty()) {
            named = System.getenv(LIB_ENV);
            source = "$" + LIB_ENV;
        }
        if (named != null && !named.isEmpty()) {
            Path p = Paths.get(named);
            if (!Files.isRegularFile(p)) {
                throw new IllegalStateException(source + " names " + p + ", which is not a file.");
            }
            return p;
        }
        List<Path> tried = new ArrayList<>();
        for (Path dir = Paths.get("").toAbsolutePath(); dir != null; dir = dir.getParent()) {
            Path lib = dir.resolve(".venv/lib");
            tried.add(lib);
            if (!Files.isDirectory(lib)) {
                continue;
            }
            try (DirectoryStream<Path> pythons = Files.newDirectoryStream(lib, "python*")) {
                for (Path py : pythons) {
                    Path so = py.resolve("site-packages/ai_edge_litert/libLiteRt.so");
                    if (Files.isRegularFile(so)) {
                        return so;
                    }
                }
            } catch (java.io.IOException e) {
                // Unreadable folder: keep looking further up.
            }
        }
        throw new IllegalStateException("libLiteRt.so not found: set -D" + LIB_PROPERTY + " or $" + LIB_ENV
                + " to its path (pip install ai-edge-litert ships it as ai_edge_litert/libLiteRt.so); searched "
                + tried + ".");
    }
}
