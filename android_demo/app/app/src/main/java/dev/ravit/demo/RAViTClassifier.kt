package dev.ravit.demo

import android.content.Context
import android.util.Log
import dev.ravit.core.Classification
import dev.ravit.core.DType
import dev.ravit.core.ExitPolicy
import dev.ravit.core.ExitSpec
import dev.ravit.core.ImagePreprocessor
import dev.ravit.core.Manifest
import dev.ravit.core.ManifestException
import dev.ravit.core.Scheduler
import dev.ravit.core.SubmodelRuntime
import dev.ravit.core.TensorData
import dev.ravit.core.TensorSpec
import kotlinx.coroutines.asCoroutineDispatcher
import kotlinx.coroutines.withContext
import org.tensorflow.lite.DataType
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.Tensor
import org.tensorflow.lite.gpu.CompatibilityList
import org.tensorflow.lite.gpu.GpuDelegate
import java.io.FileInputStream
import java.io.IOException
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.channels.FileChannel
import java.util.concurrent.Executors
import kotlin.math.abs

/**
 * Owns the LiteRT interpreters (one per submodel, read from the assets the manifest
 * lists) and runs the core's early-exit [Scheduler] over them.
 *
 * Everything that touches an interpreter runs on ONE background thread
 * ("ravit-inference"); the suspend functions switch to it. [setOptions] only records the
 * wish: the interpreters are closed and rebuilt lazily, on that thread, before the next
 * classification. Implements the core's [SubmodelRuntime] for the scheduler.
 *
 * @param assetDir folder of the converter's output inside the APK's assets.
 */
class RAViTClassifier(
    context: Context,
    private val assetDir: String = DEFAULT_ASSET_DIR,
) : SubmodelRuntime {

    /** What the interpreters were actually built with (a delegate may have fallen back). */
    data class RuntimeStatus(val requested: InferenceOptions, val delegate: Delegate, val note: String?)

    private val appContext = context.applicationContext
    private val assets = AndroidAssetSource(appContext.assets, assetDir)
    private val executor = Executors.newSingleThreadExecutor { r -> Thread(r, THREAD_NAME) }
    private val dispatcher = executor.asCoroutineDispatcher()

    @Volatile
    private var options = InferenceOptions()

    @Volatile
    var status: RuntimeStatus? = null
        private set

    // Inference thread only. --------------------------------------------------------------
    private var manifest: Manifest? = null
    private var scheduler: Scheduler? = null
    private var preprocessor: ImagePreprocessor? = null
    private var builtFor: InferenceOptions? = null
    private val interpreters = mutableListOf<Interpreter>()
    private val gpuDelegates = mutableListOf<GpuDelegate>()
    private val signatureKeys = mutableListOf<String>()
    private val inputBuffers = mutableListOf<Map<String, ByteBuffer>>()
    private val outputBuffers = mutableListOf<Map<String, ByteBuffer>>()

    /** Records new options; the interpreters are rebuilt before the next classification. */
    fun setOptions(newOptions: InferenceOptions) {
        options = newOptions
    }

    /**
     * Reads and validates the manifest and the submodels' checksums.
     *
     * @throws ManifestException if the assets are missing or do not match the manifest.
     */
    suspend fun load(): Manifest = withContext(dispatcher) { loadOnThread() }

    /**
     * Classifies one image of the model's input size (ARGB pixels, row-major, as
     * `Bitmap.getPixels` gives them) with the early-exit [policy].
     */
    suspend fun classify(pixels: IntArray, policy: ExitPolicy): Classification = withContext(dispatcher) {
        loadOnThread()
        ensureInterpreters()
        val image = preprocessor!!.toTensor(pixels)
        scheduler!!.classify(image, policy)
    }

    private fun loadOnThread(): Manifest {
        manifest?.let { return it }
        val m = Manifest.load(assets)
        preprocessor = ImagePreprocessor(m.imageSpec())
        scheduler = Scheduler(m, this)
        manifest = m
        Log.i(TAG, "Loaded ${m.numExits()} ${m.quantization()} submodels from ${assets.describe("")}")
        return m
    }

    // Interpreters ---------------------------------------------------------------------------

    private fun ensureInterpreters() {
        val wanted = options
        if (!InferenceOptions.needsRebuild(builtFor, wanted) && interpreters.isNotEmpty()) return
        closeInterpreters()
        val m = manifest!!
        var delegate = wanted.delegate
        var note: String? = null
        if (delegate == Delegate.GPU && !CompatibilityList().isDelegateSupportedOnThisDevice) {
            delegate = Delegate.FALLBACK
            note = "GPU delegate not supported on this device; using ${Delegate.FALLBACK.label}."
        }
        try {
            buildAll(m, wanted.numThreads, delegate)
        } catch (e: ManifestException) {
            closeInterpreters()
            throw e
        } catch (e: Exception) {
            if (delegate == Delegate.FALLBACK) throw e
            Log.w(TAG, "$delegate failed; falling back to ${Delegate.FALLBACK}", e)
            closeInterpreters()
            note = "$delegate failed (${e.message}); using ${Delegate.FALLBACK.label}."
            delegate = Delegate.FALLBACK
            buildAll(m, wanted.numThreads, delegate)
        }
        builtFor = wanted
        // Say so on screen when the kernels are not the ones the thresholds were calibrated on.
        status = RuntimeStatus(wanted, delegate, listOfNotNull(note, delegate.calibrationWarning()).joinToString("\n").ifEmpty { null })
    }

    private fun buildAll(m: Manifest, numThreads: Int, delegate: Delegate) {
        for (exit in m.exits()) {
            val interpreterOptions = Interpreter.Options().apply {
                setNumThreads(numThreads)
                when (delegate) {
                    // The CPU paths: XNNPACK on (the calibrated kernels) or off (built-in kernels).
                    Delegate.CPU, Delegate.CPU_BUILTIN -> setUseXNNPACK(delegate.useXnnpack)
                    Delegate.GPU -> {
                        val gpu = GpuDelegate(CompatibilityList().bestOptionsForThisDevice)
                        gpuDelegates += gpu
                        addDelegate(gpu)
                    }
                    Delegate.NNAPI -> setUseNNAPI(true)
                }
            }
            val interpreter = Interpreter(loadModel(exit), interpreterOptions)
            interpreters += interpreter
            val key = interpreter.signatureKeys.firstOrNull()
                ?: throw ManifestException("${exit.file()} has no signature; convert it with the ravit_keras converter.")
            checkSignature(interpreter, key, exit)
            signatureKeys += key
            inputBuffers += exit.inputs().mapValues { (_, spec) -> allocate(spec) }
            outputBuffers += exit.outputs().mapValues { (_, spec) -> allocate(spec) }
        }
    }

    private fun allocate(spec: TensorSpec): ByteBuffer =
        ByteBuffer.allocateDirect(spec.elementCount() * spec.dtype().byteSize()).order(ByteOrder.nativeOrder())

    /** Memory-maps the submodel (stored uncompressed, see noCompress), else reads it. */
    private fun loadModel(exit: ExitSpec): ByteBuffer {
        val path = assets.path(exit.file())
        return try {
            appContext.assets.openFd(path).use { fd ->
                FileInputStream(fd.fileDescriptor).use { stream ->
                    stream.channel.map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
                }
            }
        } catch (e: IOException) {  // Compressed asset: no file descriptor.
            val bytes = assets.readBytes(exit.file())
            ByteBuffer.allocateDirect(bytes.size).order(ByteOrder.nativeOrder()).apply { put(bytes); rewind() }
        }
    }

    /** The interpreter's signature tensors must be the manifest's (like the Python scheduler checks). */
    private fun checkSignature(interpreter: Interpreter, key: String, exit: ExitSpec) {
        for ((name, spec) in exit.inputs()) checkTensor(interpreter.getInputTensorFromSignature(name, key), spec, exit)
        for ((name, spec) in exit.outputs()) checkTensor(interpreter.getOutputTensorFromSignature(name, key), spec, exit)
    }

    private fun checkTensor(tensor: Tensor, spec: TensorSpec, exit: ExitSpec) {
        val problems = mutableListOf<String>()
        if (!tensor.shape().contentEquals(spec.shape())) {
            problems += "shape ${tensor.shape().contentToString()} != ${spec.shape().contentToString()}"
        }
        val dtype = when (tensor.dataType()) {
            DataType.INT8 -> DType.INT8
            DataType.UINT8 -> DType.UINT8
            DataType.INT16 -> DType.INT16
            DataType.FLOAT32 -> DType.FLOAT32
            else -> null
        }
        if (dtype != spec.dtype()) problems += "dtype ${tensor.dataType()} != ${spec.dtype()}"
        if (dtype != null && !dtype.isFloat) {
            val q = tensor.quantizationParams()
            if (abs(q.scale - spec.scale()) > 1e-6 * spec.scale() || q.zeroPoint != spec.zeroPoint()) {
                problems += "quantisation (${q.scale}, ${q.zeroPoint}) != (${spec.scale()}, ${spec.zeroPoint()})"
            }
        }
        if (problems.isNotEmpty()) {
            throw ManifestException(
                "${assets.describe(exit.file())} tensor '${spec.name()}' does not match the manifest: " +
                    problems.joinToString("; ") + "."
            )
        }
    }

    private fun closeInterpreters() {
        interpreters.forEach { it.close() }
        gpuDelegates.forEach { it.close() }
        interpreters.clear()
        gpuDelegates.clear()
        signatureKeys.clear()
        inputBuffers.clear()
        outputBuffers.clear()
        builtFor = null
    }

    // SubmodelRuntime -------------------------------------------------------------------------

    override fun run(exitIndex: Int, inputs: Map<String, TensorData>): Map<String, TensorData> {
        check(Thread.currentThread().name == THREAD_NAME) { "Submodels run on the inference thread only." }
        val exit = manifest!!.exit(exitIndex)
        val interpreter = interpreters[exitIndex]
        val inputObjects = HashMap<String, Any>()
        for ((name, data) in inputs) {
            val buffer = inputBuffers[exitIndex][name]
                ?: throw IllegalArgumentException("${exit.name()} has no input '$name'.")
            buffer.clear()
            data.copyTo(buffer)
            buffer.rewind()
            inputObjects[name] = buffer
        }
        val outputObjects = HashMap<String, Any>()
        for ((name, buffer) in outputBuffers[exitIndex]) {
            buffer.clear()
            outputObjects[name] = buffer
        }
        interpreter.runSignature(inputObjects, outputObjects, signatureKeys[exitIndex])
        return exit.outputs().mapValues { (name, spec) ->
            TensorData.fromByteBuffer(spec.dtype(), spec.shape(), outputBuffers[exitIndex].getValue(name))
        }
    }

    /** Closes the interpreters on the inference thread and stops it. */
    override fun close() {
        if (executor.isShutdown) return
        executor.execute { closeInterpreters() }
        executor.shutdown()
    }

    companion object {
        const val DEFAULT_ASSET_DIR = "ravit"
        private const val THREAD_NAME = "ravit-inference"
        private const val TAG = "RAViTClassifier"
    }
}
