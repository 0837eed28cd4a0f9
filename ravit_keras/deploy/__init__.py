"""Deployment: branch models → TFLite submodels + manifest, and the runtimes' side.

    manifest.py        the manifest format: constants, load_manifest, ManifestError
    quantization.py    quantize / dequantize / requantize (the CLS handoff rule)
    flatbuffer.py      .tflite graph fixes for XNNPACK int8, tensor and op introspection
    metadata.py        TFLite metadata (tflite-support writers), byte-reproducible
    convert.py         Keras → SavedModel → TFLite per mode, thresholds on the submodels
    scheduler.py       the device-emulating early-exit scheduler (LiteRT + NumPy only)
    profiling.py       interleaved timing, litert-benchmark, XNNPACK delegation
    mode_selection.py  --mode auto: convert in several modes, keep the fastest accurate
    benchmark.py       ravit bench: RAViT vs a classic ViT (and the naive int8 ViT)
    golden.py          golden vectors for the Android core's parity tests

Lower modules never import higher ones: the scheduler needs only the manifest and
quantisation modules; the converter uses the scheduler to calibrate thresholds on
the submodels it ships; mode selection and the benchmark sit above both.
"""

from ravit_keras._lazy import lazy_exports

_EXPORTS = {
    "MANIFEST_FILE": "manifest", "ManifestError": "manifest", "load_manifest": "manifest",
    "requantize": "quantization",
    "MODES": "convert", "ConversionOptions": "convert", "convert": "convert",
    "RAViTScheduler": "scheduler", "Classification": "scheduler",
    "convert_fastest": "mode_selection",
    "run_benchmark": "benchmark",
    "export_golden": "golden",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
