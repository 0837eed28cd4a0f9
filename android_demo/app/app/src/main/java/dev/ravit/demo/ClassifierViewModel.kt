package dev.ravit.demo

import android.app.Application
import android.graphics.Bitmap
import android.os.BatteryManager
import android.os.SystemClock
import androidx.lifecycle.AndroidViewModel
import androidx.lifecycle.viewModelScope
import dev.ravit.core.BatteryPolicy
import dev.ravit.core.Classification
import dev.ravit.core.Entropy
import dev.ravit.core.ExitPolicy
import dev.ravit.core.Manifest
import kotlinx.coroutines.CancellationException
import kotlinx.coroutines.delay
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.update
import kotlinx.coroutines.launch
import dev.ravit.demo.logic.FrameGate
import dev.ravit.demo.logic.batteryLevelFromPercent
import dev.ravit.demo.logic.chooseThresholds

/** What the screen needs to know about the converted model. */
data class ModelInfo(
    val exitNames: List<String>,
    val exitMacs: List<Long>,
    val fullModelMacs: Long,
    val numClasses: Int,
    val maxEntropy: Double,
    val defaultThresholds: List<Double>,
    val hasBatteryPolicy: Boolean,
    val inputWidth: Int,
    val inputHeight: Int,
    val quantization: String,
) {
    val numExits: Int get() = exitNames.size

    companion object {
        fun from(m: Manifest): ModelInfo {
            val image = m.imageSpec().shape()
            return ModelInfo(
                exitNames = m.exitNames(),
                exitMacs = m.exits().map { it.cumulativeMacs() },
                fullModelMacs = m.fullModelMacs(),
                numClasses = m.numClasses(),
                maxEntropy = Entropy.maxEntropy(m.numClasses()),
                defaultThresholds = m.defaultThresholds().toList(),
                hasBatteryPolicy = m.hasBatteryPolicy(),
                inputWidth = image[2],
                inputHeight = image[1],
                quantization = m.quantization(),
            )
        }
    }
}

enum class ImageSource { CAMERA, GALLERY }

/** The whole screen state; the activity renders it and sends user actions back. */
data class UiState(
    val model: ModelInfo? = null,
    val status: String = "Loading the model…",
    val error: String? = null,
    val result: Classification? = null,
    /** The slider's τ, applied to every exit but the last. */
    val manualThreshold: Double = 0.0,
    val batterySaver: Boolean = false,
    /** Battery level in [0, 1], or null when unknown. */
    val batteryLevel: Double? = null,
    /** The thresholds in effect (from the slider, or the battery policy). */
    val thresholds: List<Double> = emptyList(),
    /** Why the battery saver is not in effect, when it is on but cannot apply. */
    val thresholdNote: String? = null,
    val options: InferenceOptions = InferenceOptions(),
    val runtime: RAViTClassifier.RuntimeStatus? = null,
    val source: ImageSource = ImageSource.CAMERA,
)

/**
 * Holds the UI state (a [StateFlow]) and the [RAViTClassifier]; turns user actions into
 * options and thresholds. Frames arriving while a classification runs are dropped.
 */
class ClassifierViewModel(application: Application) : AndroidViewModel(application) {
    private val classifier = RAViTClassifier(application)
    private val batteryManager: BatteryManager? = application.getSystemService(BatteryManager::class.java)
    private val busy = FrameGate()

    private val _state = MutableStateFlow(UiState())
    val state: StateFlow<UiState> = _state.asStateFlow()

    @Volatile
    private var model: ModelInfo? = null

    @Volatile
    private var batteryPolicy: BatteryPolicy? = null

    @Volatile
    private var galleryPixels: IntArray? = null
    private var batteryReadAt = 0L

    init {
        viewModelScope.launch {
            try {
                val manifest = classifier.load()
                val info = ModelInfo.from(manifest)
                batteryPolicy = if (manifest.hasBatteryPolicy()) manifest.batteryPolicy() else null
                model = info
                _state.update {
                    it.copy(
                        model = info,
                        status = "Model: ${info.numExits} exits, ${info.numClasses} classes, ${info.quantization}",
                        manualThreshold = info.defaultThresholds.maxOrNull() ?: 0.0,
                    )
                }
                refreshThresholds(forceBattery = true)
            } catch (e: CancellationException) {
                throw e
            } catch (e: Exception) {
                _state.update { it.copy(error = "Cannot load the model: ${e.message}") }
            }
        }
    }

    // User actions -----------------------------------------------------------------------------

    fun setThreshold(tau: Double) {
        val info = model ?: return
        val clipped = tau.coerceIn(0.0, info.maxEntropy)
        if (clipped == _state.value.manualThreshold) return
        _state.update { it.copy(manualThreshold = clipped) }
        refreshThresholds()
        reclassifyGallery()
    }

    fun setBatterySaver(on: Boolean) {
        if (on == _state.value.batterySaver) return
        _state.update { it.copy(batterySaver = on) }
        refreshThresholds(forceBattery = true)
        reclassifyGallery()
    }

    fun setDelegate(delegate: Delegate) = setOptions(_state.value.options.copy(delegate = delegate))

    fun setThreads(numThreads: Int) = setOptions(_state.value.options.copy(numThreads = numThreads))

    private fun setOptions(options: InferenceOptions) {
        if (options == _state.value.options) return
        classifier.setOptions(options)
        _state.update { it.copy(options = options) }
        reclassifyGallery()
    }

    fun useCamera() {
        galleryPixels = null
        _state.update { it.copy(source = ImageSource.CAMERA, result = null) }
    }

    fun showMessage(message: String) {
        _state.update { it.copy(error = message) }
    }

    /** Whether a camera frame would be used now (lets the analyzer skip the conversion). */
    fun wantsFrame(): Boolean = model != null && _state.value.source == ImageSource.CAMERA && busy.isFree

    /** A camera frame (called on the analysis thread); dropped while a classification runs. */
    fun classifyFrame(bitmap: Bitmap, rotationDegrees: Int) {
        val info = model ?: return
        if (_state.value.source != ImageSource.CAMERA || !busy.tryAcquire()) return
        val pixels = try {
            FramePixels.fromBitmap(bitmap, rotationDegrees, info.inputWidth, info.inputHeight)
        } catch (e: RuntimeException) {
            busy.release()
            _state.update { it.copy(error = "Cannot read the camera frame: ${e.message}") }
            return
        }
        launchClassification(pixels)
    }

    /** A picture from the gallery: shown until the user goes back to the camera. */
    fun classifyGalleryImage(bitmap: Bitmap) {
        val info = model ?: run {
            showMessage("The model is not loaded yet.")
            return
        }
        val pixels = FramePixels.fromBitmap(bitmap, 0, info.inputWidth, info.inputHeight)
        galleryPixels = pixels
        _state.update { it.copy(source = ImageSource.GALLERY) }
        viewModelScope.launch {
            while (!busy.tryAcquire()) delay(5)  // Let a camera frame in flight finish.
            classifyNow(pixels)
        }
    }

    private fun reclassifyGallery() {
        val pixels = galleryPixels ?: return
        if (_state.value.source != ImageSource.GALLERY) return
        viewModelScope.launch {
            while (!busy.tryAcquire()) delay(5)
            classifyNow(pixels)
        }
    }

    private fun launchClassification(pixels: IntArray) {
        viewModelScope.launch { classifyNow(pixels) }
    }

    /** Runs one classification; the caller holds [busy], released here. */
    private suspend fun classifyNow(pixels: IntArray) {
        try {
            val info = model ?: return
            val thresholds = refreshThresholds()
            val policy = ExitPolicy.perExit(thresholds.toDoubleArray(), info.numExits, info.numClasses)
            val result = classifier.classify(pixels, policy)
            _state.update { it.copy(result = result, error = null, runtime = classifier.status) }
        } catch (e: CancellationException) {
            throw e
        } catch (e: Exception) {
            _state.update { it.copy(error = "Classification failed: ${e.message}", runtime = classifier.status) }
        } finally {
            busy.release()
        }
    }

    // Thresholds and battery ---------------------------------------------------------------------

    /**
     * Recomputes the thresholds in effect: the battery policy at the current battery level
     * when the saver is on (the level is read at most every few seconds), else the slider's.
     */
    private fun refreshThresholds(forceBattery: Boolean = false): List<Double> {
        val info = model ?: return emptyList()
        val s = _state.value
        var level = s.batteryLevel
        val now = SystemClock.elapsedRealtime()
        if (forceBattery || now - batteryReadAt > BATTERY_READ_INTERVAL_MS) {
            level = readBatteryLevel()
            batteryReadAt = now
        }
        val choice = chooseThresholds(info.numExits, s.manualThreshold, s.batterySaver, batteryPolicy, level)
        val thresholds = choice.thresholds
        val note = choice.note
        _state.update { it.copy(batteryLevel = level, thresholds = thresholds, thresholdNote = note) }
        return thresholds
    }

    /** `BatteryManager.BATTERY_PROPERTY_CAPACITY` (percent) as a level in [0, 1], or null. */
    private fun readBatteryLevel(): Double? {
        return batteryLevelFromPercent(batteryManager?.getIntProperty(BatteryManager.BATTERY_PROPERTY_CAPACITY))
    }

    override fun onCleared() {
        classifier.close()
    }

    companion object {
        private const val BATTERY_READ_INTERVAL_MS = 10_000L
    }
}
