"""RAViT (Resolution-Adaptive Vision Transformer) in Keras 3, with int8 TFLite
submodels and an early-exit scheduler.

The public names below load lazily, so ``import ravit_keras.early_exit`` or the
scheduler does not pull in TensorFlow until a Keras model is needed.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "RAViTConfig": "config", "get_config": "config", "preset_names": "config",
    "RAViT": "model", "build_branch_model": "model", "load_ravit": "model",
    "TrainingConfig": "train", "compile_ravit": "train", "make_optimizer": "train",
    "training_callbacks": "train", "train": "train",
    "load_split": "data", "make_pipeline": "data",
    "predict_exit_logits": "evaluation", "evaluate_logits": "evaluation",
    "convert": "export", "ConversionOptions": "export",
    "RAViTScheduler": "scheduler", "load_manifest": "scheduler",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"ravit_keras.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'ravit_keras' has no attribute {name!r}")
