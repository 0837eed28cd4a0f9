"""Which per-channel mean/std a model normalises with.

An architecture configuration (``get_config("cifar10")``) carries the mean/std
of the dataset it was designed for. Trained on that dataset, the model keeps
them; trained on other data, it normalises with that data's own statistics,
measured on the first images (and is named after that data: ``model_name``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ravit_keras.config import RAViTConfig

NORMALIZATIONS = ("auto", "preset", "data")  # "preset": the architecture configuration's own.
STATS_IMAGES = 2000  # Images the data's statistics are measured on.


def is_architectures_own_data(arch: str, source: str, split) -> bool:
    """Whether ``split`` is the dataset architecture ``arch``'s mean/std belong to."""
    from ravit_keras.data import CIFAR10_CLASS_NAMES, generated_class_names

    if arch == "cifar10":
        return list(split.class_names) == list(CIFAR10_CLASS_NAMES)
    if arch in ("tiny", "tiny3"):
        return source == "generated" and list(split.class_names) == generated_class_names(split.num_classes)
    if arch.startswith("tinyimagenet"):
        return split.num_classes == 200
    if arch == "imagenet":
        return split.num_classes == 1000
    return True


def choose_normalization(config: RAViTConfig, arch: str, source: str, split, mode: str = "auto",
                         notes: Callable[[str], None] | None = None) -> RAViTConfig:
    """``config`` with the mean/std it should normalise with for training on ``split``.

    Args:
        mode: "preset" keeps the architecture's; "data" measures the training
            data's; "auto" keeps the architecture's on its own dataset only.
        notes: receives a line saying which statistics were measured.
    """
    if mode not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {mode!r}.")
    if mode == "preset" or (mode == "auto" and is_architectures_own_data(arch, source, split)):
        return config
    import keras

    if keras.backend.backend() == "tensorflow":
        from ravit_keras.data import compute_channel_stats
    else:  # The same statistics with NumPy and Pillow: no TensorFlow on other backends.
        from ravit_keras.data.batches import numpy_channel_stats as compute_channel_stats

    mean, std = compute_channel_stats(split, limit=STATS_IMAGES)
    std = np.maximum(std, 1.0 / 255)  # A flat channel would divide by zero.
    config = config.replace(mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std))
    if notes is not None:
        notes(f"note: normalising with the training data's own channel statistics (mean "
              f"{', '.join(f'{m:.3f}' for m in mean)}, std {', '.join(f'{s:.3f}' for s in std)}), not the "
              f"{arch} preset's")
    return config


def model_name(config: RAViTConfig, arch: str, source, split, name: str | None = None) -> str:
    """The name a model trained on ``split`` carries (plots, manifest, TFLite metadata):
    ``name`` when given; the architecture's (``config.name``) on its own dataset; else the
    data's (``DataSource.name``: a folder's name, a file's stem, a tfds name)."""
    if name:
        return name
    if is_architectures_own_data(arch, source.data, split):
        return config.name
    return source.name
