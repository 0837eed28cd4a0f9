"""RAViT (Resolution-Adaptive Vision Transformer) in Keras 3, with int8 TFLite
submodels and an early-exit scheduler.

The package follows the data flow: ``config`` → ``data`` (images) and ``model``
(branches, joint model, cost model) → ``train`` / ``evaluation`` → ``exits``
(early-exit maths) → ``deploy`` (submodels, manifest, scheduler, benchmarks);
``presets`` holds trained models that ship (``from_preset("ravit_1-3_cifar10")``).
The public names below load lazily, so ``import ravit_keras.exits`` or the
scheduler does not pull in TensorFlow until a Keras model is needed.
"""

from ravit_keras._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "RAViTConfig": "config", "get_config": "config", "preset_names": "config",
    "RAViT": "model", "build_branch_model": "model", "load_ravit": "model",
    "TrainingConfig": "train", "compile_ravit": "train", "make_optimizer": "train",
    "training_callbacks": "train", "train": "train",
    "load_split": "data", "make_pipeline": "data",
    "predict_exit_logits": "evaluation", "evaluate_logits": "evaluation",
    "convert": "deploy", "ConversionOptions": "deploy",
    "RAViTScheduler": "deploy", "load_manifest": "deploy",
    "from_preset": "presets", "available_presets": "presets", "preset_card": "presets",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
