"""Deployment: branch models → TFLite submodels + manifest, and the runtimes' side.

Three sub-packages, one per side:

    runtime/       what a device runs: LiteRT + NumPy, never TensorFlow or Keras
        modes.py        the conversion-mode vocabulary (the manifest's ``quantization``)
        fields.py       typed JSON reads naming the key; ManifestError
        manifest.py     the typed manifest (Manifest, ExitSpec, TensorSpec, ImageSpec), load_manifest
        policy.py       operating points, MAC/latency budgets, the battery curve
        quantization.py quantize / dequantize / requantize (the CLS handoff rule)
        submodel.py     one submodel in LiteRT, the exit rule's entropy
        reports.py      Classification, StreamReport
        scheduler.py    the device-emulating early-exit scheduler
    export/        Keras → TFLite (TensorFlow)
        graph.py        graph surgery, SavedModel export, calibration inputs
        flatbuffer.py   .tflite graph fixes for XNNPACK int8, tensor and op introspection
        metadata.py     TFLite metadata, byte-reproducible
        convert.py      the conversion loop and the manifest it writes
        mode_selection.py  --mode auto: convert in several modes, keep the fastest accurate
        golden.py       golden vectors for the Android core's parity tests
    measurement/   timing on this machine
        profiling.py    interleaved timing, litert-benchmark, XNNPACK delegation
        op_profile.py   per-operator profiles (LiteRT's C API)
        benchmark.py    ravit bench: RAViT vs a classic ViT (converts both first)

runtime imports nothing from the other two; export and measurement build on it
(tests/test_layering.py states and checks the rule).
"""

from ravit_keras._lazy import lazy_exports

_EXPORTS = {
    "MANIFEST_FILE": "runtime.manifest", "ManifestError": "runtime.manifest",
    "load_manifest": "runtime.manifest", "Manifest": "runtime.manifest",
    "requantize": "runtime.quantization",
    "MODES": "runtime.modes",
    "ConversionOptions": "export.convert", "convert": "export.convert",
    "RAViTScheduler": "runtime.scheduler", "Classification": "runtime.scheduler",
    "convert_fastest": "export.mode_selection",
    "run_benchmark": "measurement.benchmark",
    "export_golden": "export.golden",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
