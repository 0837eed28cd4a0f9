package dev.ravit.demo

import android.content.pm.PackageManager
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.graphics.ImageDecoder
import android.net.Uri
import android.os.Build
import android.os.Bundle
import android.util.Size
import android.view.View
import android.widget.AdapterView
import android.widget.ArrayAdapter
import android.widget.SeekBar
import androidx.activity.result.PickVisualMediaRequest
import androidx.activity.result.contract.ActivityResultContracts
import androidx.activity.viewModels
import androidx.appcompat.app.AppCompatActivity
import androidx.camera.core.CameraSelector
import androidx.camera.core.ImageAnalysis
import androidx.camera.core.ImageProxy
import androidx.camera.core.Preview
import androidx.camera.core.resolutionselector.ResolutionSelector
import androidx.camera.core.resolutionselector.ResolutionStrategy
import androidx.camera.lifecycle.ProcessCameraProvider
import androidx.core.content.ContextCompat
import androidx.lifecycle.Lifecycle
import androidx.lifecycle.lifecycleScope
import androidx.lifecycle.repeatOnLifecycle
import dev.ravit.demo.databinding.ActivityMainBinding
import dev.ravit.demo.logic.branchLatencyText
import dev.ravit.demo.logic.entropiesText
import dev.ravit.demo.logic.sliderProgress
import dev.ravit.demo.logic.sliderThreshold
import dev.ravit.demo.logic.topClassesText
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext
import java.io.IOException
import java.util.Locale
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors
import kotlin.math.roundToInt

/**
 * The camera screen: CameraX preview + analysis frames, a gallery picker, and the
 * controls (threshold slider, battery saver, delegate and threads). It only renders
 * [ClassifierViewModel.state] and forwards user actions; inference lives in
 * [RAViTClassifier] on its own thread.
 */
class MainActivity : AppCompatActivity() {
    private lateinit var binding: ActivityMainBinding
    private val viewModel: ClassifierViewModel by viewModels()
    private lateinit var analysisExecutor: ExecutorService

    private val requestCamera = registerForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
        if (granted) startCamera() else viewModel.showMessage(getString(R.string.camera_denied))
    }

    private val pickImage = registerForActivityResult(ActivityResultContracts.PickVisualMedia()) { uri ->
        if (uri != null) showGalleryImage(uri)
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        binding = ActivityMainBinding.inflate(layoutInflater)
        setContentView(binding.root)
        analysisExecutor = Executors.newSingleThreadExecutor()
        setUpControls()
        lifecycleScope.launch {
            repeatOnLifecycle(Lifecycle.State.STARTED) {
                viewModel.state.collect { render(it) }
            }
        }
        val permission = android.Manifest.permission.CAMERA
        if (ContextCompat.checkSelfPermission(this, permission) == PackageManager.PERMISSION_GRANTED) {
            startCamera()
        } else {
            requestCamera.launch(permission)
        }
    }

    override fun onDestroy() {
        super.onDestroy()
        analysisExecutor.shutdown()
    }

    // Controls ------------------------------------------------------------------------------------

    private fun setUpControls() {
        binding.thresholdSeek.setOnSeekBarChangeListener(object : SeekBar.OnSeekBarChangeListener {
            override fun onProgressChanged(seekBar: SeekBar, progress: Int, fromUser: Boolean) {
                val model = viewModel.state.value.model ?: return
                if (fromUser) viewModel.setThreshold(sliderThreshold(progress, model.maxEntropy, SLIDER_STEPS))
            }

            override fun onStartTrackingTouch(seekBar: SeekBar) = Unit

            override fun onStopTrackingTouch(seekBar: SeekBar) = Unit
        })
        binding.batterySwitch.setOnCheckedChangeListener { _, checked -> viewModel.setBatterySaver(checked) }

        val delegates = Delegate.entries
        binding.delegateSpinner.adapter = ArrayAdapter(
            this, android.R.layout.simple_spinner_dropdown_item, delegates.map { it.label }
        )
        // Select the current options before listening, so the spinners' first callback is a no-op.
        val options = viewModel.state.value.options
        binding.delegateSpinner.setSelection(delegates.indexOf(options.delegate), false)
        binding.delegateSpinner.onItemSelectedListener = onSelected { viewModel.setDelegate(delegates[it]) }

        val threads = InferenceOptions.THREAD_CHOICES
        binding.threadSpinner.adapter = ArrayAdapter(
            this, android.R.layout.simple_spinner_dropdown_item, threads.map { it.toString() }
        )
        binding.threadSpinner.setSelection(threads.indexOf(options.numThreads).coerceAtLeast(0), false)
        binding.threadSpinner.onItemSelectedListener = onSelected { viewModel.setThreads(threads[it]) }

        binding.galleryButton.setOnClickListener {
            pickImage.launch(PickVisualMediaRequest(ActivityResultContracts.PickVisualMedia.ImageOnly))
        }
        binding.cameraButton.setOnClickListener {
            binding.galleryImage.visibility = View.GONE
            binding.galleryImage.setImageDrawable(null)
            viewModel.useCamera()
        }
    }

    private fun onSelected(action: (Int) -> Unit) = object : AdapterView.OnItemSelectedListener {
        override fun onItemSelected(parent: AdapterView<*>?, view: View?, position: Int, id: Long) = action(position)

        override fun onNothingSelected(parent: AdapterView<*>?) = Unit
    }

    // Rendering -----------------------------------------------------------------------------------

    private fun render(state: UiState) {
        binding.status.text = state.error ?: state.status
        val model = state.model
        if (model != null) {
            binding.thresholdSeek.isEnabled = !(state.batterySaver && state.thresholdNote == null)
            val progress = sliderProgress(state.manualThreshold, model.maxEntropy, SLIDER_STEPS)
            if (binding.thresholdSeek.progress != progress) binding.thresholdSeek.progress = progress
            binding.thresholdLabel.text = getString(
                R.string.threshold_label, state.thresholds.joinToString(", ") { fmt("%.3f", it) }, model.maxEntropy
            )
        }
        if (binding.batterySwitch.isChecked != state.batterySaver) binding.batterySwitch.isChecked = state.batterySaver
        binding.batteryInfo.text = when {
            state.thresholdNote != null -> state.thresholdNote
            state.batteryLevel == null -> getString(R.string.battery_unknown)
            state.batterySaver -> getString(R.string.battery_label, (state.batteryLevel * 100).roundToInt())
            else -> fmt("Battery %d %%", (state.batteryLevel * 100).roundToInt())
        }
        val delegateIndex = Delegate.entries.indexOf(state.options.delegate)
        if (binding.delegateSpinner.selectedItemPosition != delegateIndex) binding.delegateSpinner.setSelection(delegateIndex)
        val threadIndex = InferenceOptions.THREAD_CHOICES.indexOf(state.options.numThreads)
        if (threadIndex >= 0 && binding.threadSpinner.selectedItemPosition != threadIndex) {
            binding.threadSpinner.setSelection(threadIndex)
        }
        val runtime = state.runtime
        binding.runtimeInfo.text = if (runtime == null) {
            getString(R.string.runtime_label, state.options.delegate.label, state.options.numThreads)
        } else {
            getString(R.string.runtime_label, runtime.delegate.label, runtime.requested.numThreads) +
                (runtime.note?.let { "\n$it" } ?: "")
        }

        val result = state.result
        if (result == null || model == null) {
            binding.topClasses.setText(R.string.waiting_for_frames)
            binding.exitInfo.text = ""
            binding.latencyInfo.text = ""
            binding.macsInfo.text = ""
            return
        }
        binding.topClasses.text = topClassesText(result)
        binding.exitInfo.text = getString(
            R.string.exit_label, result.exitName(), result.exitIndex() + 1, model.numExits, result.entropy(),
            entropiesText(result)
        )
        binding.latencyInfo.text = getString(
            R.string.latency_label,
            branchLatencyText(result, model.exitNames),
            result.totalLatencyMs(), result.overheadMs()
        )
        binding.macsInfo.text = getString(
            R.string.macs_label, result.macs() / 1e6, result.fullModelMacs() / 1e6, 100 * result.macFraction()
        )
    }

    private fun fmt(format: String, vararg args: Any): String = String.format(Locale.US, format, *args)

    // Camera ----------------------------------------------------------------------------------------

    private fun startCamera() {
        val future = ProcessCameraProvider.getInstance(this)
        future.addListener({
            val provider = future.get()
            val preview = Preview.Builder().build()
            preview.setSurfaceProvider(binding.previewView.surfaceProvider)
            val analysis = ImageAnalysis.Builder()
                .setResolutionSelector(
                    ResolutionSelector.Builder()
                        .setResolutionStrategy(
                            ResolutionStrategy(
                                Size(640, 480), ResolutionStrategy.FALLBACK_RULE_CLOSEST_HIGHER_THEN_LOWER
                            )
                        )
                        .build()
                )
                .setBackpressureStrategy(ImageAnalysis.STRATEGY_KEEP_ONLY_LATEST)
                .setOutputImageFormat(ImageAnalysis.OUTPUT_IMAGE_FORMAT_RGBA_8888)
                .build()
            analysis.setAnalyzer(analysisExecutor) { proxy -> analyze(proxy) }
            try {
                provider.unbindAll()
                provider.bindToLifecycle(this, CameraSelector.DEFAULT_BACK_CAMERA, preview, analysis)
            } catch (e: Exception) {  // No back camera (emulators): the gallery still works.
                viewModel.showMessage("Cannot start the camera: ${e.message}")
            }
        }, ContextCompat.getMainExecutor(this))
    }

    /** Runs on the analysis thread; the frame is converted here, classified on the inference thread. */
    private fun analyze(proxy: ImageProxy) {
        proxy.use {
            if (viewModel.wantsFrame()) {
                viewModel.classifyFrame(it.toBitmap(), it.imageInfo.rotationDegrees)
            }
        }
    }

    // Gallery ---------------------------------------------------------------------------------------

    private fun showGalleryImage(uri: Uri) {
        lifecycleScope.launch {
            val bitmap = withContext(Dispatchers.IO) { decode(uri) }
            if (bitmap == null) {
                viewModel.showMessage(getString(R.string.cannot_open_image))
                return@launch
            }
            binding.galleryImage.setImageBitmap(bitmap)
            binding.galleryImage.visibility = View.VISIBLE
            viewModel.classifyGalleryImage(bitmap)
        }
    }

    /** A software ARGB bitmap, down-sampled so its longest side is at most [MAX_GALLERY_SIDE]-ish. */
    private fun decode(uri: Uri): Bitmap? = try {
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.P) {
            ImageDecoder.decodeBitmap(ImageDecoder.createSource(contentResolver, uri)) { decoder, info, _ ->
                decoder.allocator = ImageDecoder.ALLOCATOR_SOFTWARE  // getPixels needs a software bitmap.
                decoder.setTargetSampleSize(sampleSize(info.size.width, info.size.height))
            }
        } else {
            val bounds = BitmapFactory.Options().apply { inJustDecodeBounds = true }
            contentResolver.openInputStream(uri)?.use { BitmapFactory.decodeStream(it, null, bounds) }
            val options = BitmapFactory.Options().apply {
                inSampleSize = sampleSize(bounds.outWidth, bounds.outHeight)
                inPreferredConfig = Bitmap.Config.ARGB_8888
            }
            contentResolver.openInputStream(uri)?.use { BitmapFactory.decodeStream(it, null, options) }
        }
    } catch (e: IOException) {
        null
    } catch (e: RuntimeException) {
        null
    }

    private fun sampleSize(width: Int, height: Int): Int {
        var sample = 1
        while (maxOf(width, height) / (sample * 2) >= MAX_GALLERY_SIDE) sample *= 2
        return sample
    }

    companion object {
        private const val SLIDER_STEPS = 1000
        private const val MAX_GALLERY_SIDE = 512
    }
}
