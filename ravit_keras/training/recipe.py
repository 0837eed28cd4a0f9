"""The training recipe: joint multi-exit loss, AdamW with cosine decay, its hyper-parameters.

``compile_ravit`` then ``model.fit`` is the recipe by hand (notebooks);
``ravit_keras.train.train`` runs it with the run folder's callbacks and record.

Two named recipes (``training/recipes.py``, ``ravit train --recipe``): ``paper``, the
paper's (the default), and ``strong``, the small-ViT regularisation of SPT_LSA_ViT and DeiT.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from typing import Any

import keras

from ravit_keras.config import RAViTConfig
from ravit_keras.data.augmentation import Augmentation
from ravit_keras.model import RAViT
from ravit_keras.training.recipes import AUGMENTATION_FIELDS, RECIPES, STRONG_RECIPE, recipe_settings  # noqa: F401

DTYPE_POLICIES = ("float32", "mixed_bfloat16")


def set_random_seed(seed: int) -> None:
    """``keras.utils.set_random_seed`` without importing TensorFlow on another backend.

    Keras's seeds TensorFlow too whenever it can be imported, importing it; on JAX the
    data is NumPy (``data.batches``) and only Python's, NumPy's and Keras's own global
    seeds matter, set here as Keras sets them.
    """
    if keras.backend.backend() == "tensorflow":
        keras.utils.set_random_seed(seed)
        return
    import random

    import numpy as np
    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator
    from keras.src.utils import rng_utils

    global_state.set_global_attribute(rng_utils.GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)  # Re-made from the seed.
    random.seed(seed)
    np.random.seed(seed)


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """Hyper-parameters of the training recipe.

    Args:
        epochs: int. The reference CIFAR-10 recipe is 400 epochs at batch 256.
        batch_size: int. Global batch (split across devices by a strategy).
        learning_rate: float. Peak learning rate of the cosine schedule.
        weight_decay: float. AdamW decoupled weight decay.
        warmup_epochs: float. Linear warm-up before the cosine decay (0: none).
        min_learning_rate_ratio: float. Final learning rate as a fraction of the peak.
        label_smoothing: float. 0 keeps plain cross-entropy, as in the paper.
        seed: int. Seeds weights, shuffling and augmentation.
        steps_per_epoch: optional int to cap an epoch (quick runs).
        dtype_policy: "float32" or "mixed_bfloat16" (bfloat16 compute, float32
            weights). The saved model is float32 either way, ready to convert.
        xla: "auto", "on" or "off": XLA compilation of the training step. auto is on
            for float32 and off for mixed_bfloat16 (measured on an AMD Zen 5 host:
            float32 + XLA about 760 images/s, bfloat16 without XLA about 870, with XLA
            about 650; ``benchmarks/train_throughput.py`` measures a host).
        rand_augment_ops, rand_augment_magnitude, random_erasing, cutmix_alpha,
        mixup_alpha: the stronger recipe's augmentations (``data.augment.Augmentation``),
            all off by default (the paper's recipe). With CutMix or MixUp the labels
            are one-hot mixtures and the exit losses take dense targets.
        freeze_epochs: int, default 0. The first ``freeze_epochs`` epochs train the exit
            heads only (encoders frozen), the rest train everything: for fine-tuning
            (``train(..., initialize=...)``), so that fresh heads do not send large
            gradients into trained encoders.
    """

    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    min_learning_rate_ratio: float = 0.01
    label_smoothing: float = 0.0
    seed: int = 0
    steps_per_epoch: int | None = None
    dtype_policy: str = "float32"
    xla: str = "auto"
    rand_augment_ops: int = 0
    rand_augment_magnitude: float = 0.0
    random_erasing: float = 0.0
    cutmix_alpha: float = 0.0
    mixup_alpha: float = 0.0
    freeze_epochs: int = 0

    def __post_init__(self):
        if self.dtype_policy not in DTYPE_POLICIES:
            raise ValueError(f"dtype_policy must be one of {DTYPE_POLICIES}, got {self.dtype_policy!r}.")
        if self.xla not in ("auto", "on", "off"):
            raise ValueError(f"xla must be 'auto', 'on' or 'off', got {self.xla!r}.")
        if self.epochs <= 0 or self.batch_size <= 0:
            raise ValueError(f"epochs and batch_size must be positive, got {self.epochs}, {self.batch_size}.")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}.")
        if self.weight_decay < 0 or self.warmup_epochs < 0:
            raise ValueError("weight_decay and warmup_epochs must be non-negative.")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}.")
        if not 0 <= self.freeze_epochs <= self.epochs:
            raise ValueError(f"freeze_epochs must be in [0, epochs = {self.epochs}], got {self.freeze_epochs}.")
        _ = self.augmentation  # Validates the augmentation fields.

    @property
    def augmentation(self) -> Augmentation:
        """The augmentations beyond the paper's pad-crop-flip (``make_pipeline(augmentation=)``)."""
        return Augmentation(**{f: getattr(self, f) for f in AUGMENTATION_FIELDS})


@contextlib.contextmanager
def tensorflow_left_out():
    """On a backend other than TensorFlow, with TensorFlow not loaded: Keras's saving asks
    whether TensorFlow is available (``module_utils.tensorflow.available``, for
    ``tf.TensorShape``-like objects) and imports it to answer. With TensorFlow not loaded no
    object can be one of its types, so "not available" is the exact answer for the block and
    the process stays without TensorFlow. Elsewhere (or on a Keras without that probe): no-op."""
    try:
        from keras.src.utils.module_utils import tensorflow as lazy
    except ImportError:
        lazy = None
    if (keras.backend.backend() == "tensorflow" or "tensorflow" in sys.modules or lazy is None
            or getattr(lazy, "_available", True) is not None):
        yield
        return
    lazy._available = False
    try:
        yield
    finally:
        lazy._available = None  # Asked again (and imported) only if something needs TensorFlow later.


def make_optimizer(
    learning_rate: float,
    weight_decay: float,
    total_steps: int,
    warmup_steps: int = 0,
    min_learning_rate_ratio: float = 0.01,
) -> keras.optimizers.Optimizer:
    """AdamW with a cosine-annealed learning rate and optional linear warm-up."""
    total_steps = max(1, int(total_steps))
    warmup_steps = min(int(warmup_steps), total_steps - 1)
    if warmup_steps > 0:
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0,
            decay_steps=total_steps - warmup_steps,
            alpha=min_learning_rate_ratio,
            warmup_target=learning_rate,
            warmup_steps=warmup_steps,
        )
    else:
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=learning_rate,
            decay_steps=total_steps,
            alpha=min_learning_rate_ratio,
        )
    return keras.optimizers.AdamW(learning_rate=schedule, weight_decay=weight_decay)


def exit_losses(config: RAViTConfig, label_smoothing: float = 0.0,
                soft_labels: bool = False) -> dict[str, keras.losses.Loss]:
    """One sparse cross-entropy on logits per exit (``soft_labels``: one on one-hot
    or mixed targets, as CutMix and MixUp give)."""
    if soft_labels:
        return {
            name: keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing)
            for name in config.exit_names
        }
    if label_smoothing:
        # Keras's sparse loss has no label smoothing; the one-hot form is equivalent.
        return {
            name: _SmoothedSparseCrossentropy(config.num_classes, label_smoothing)
            for name in config.exit_names
        }
    return {
        name: keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        for name in config.exit_names
    }


@keras.saving.register_keras_serializable(package="ravit")
class _SmoothedSparseCrossentropy(keras.losses.Loss):
    def __init__(self, num_classes, label_smoothing, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        y = keras.ops.one_hot(keras.ops.reshape(keras.ops.cast(y_true, "int32"), (-1,)), self.num_classes)
        return keras.losses.categorical_crossentropy(
            y, y_pred, from_logits=True, label_smoothing=self.label_smoothing
        )

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "label_smoothing": self.label_smoothing}


def compile_ravit(
    model: RAViT,
    optimizer: keras.optimizers.Optimizer | None = None,
    label_smoothing: float = 0.0,
    soft_labels: bool = False,
    **compile_kwargs: Any,
) -> RAViT:
    """Compiles ``model`` with the joint loss Σ α_i·CE(y, logits_i) and per-exit accuracy.

    Labels are class indices, or with ``soft_labels`` one-hot rows or their mixtures
    (CutMix, MixUp; accuracy then counts the largest share as the label).

    The α_i are ``model.ravit_config.loss_weights``. Logged metric names are
    ``exit_<i>_loss`` and ``exit_<i>_accuracy`` (a single-exit model, a classic
    ViT, logs ``exit_<i>_accuracy`` and ``loss``, its one exit's loss). XLA is on by default: on a
    2-core CPU it doubles training throughput (Keras's "auto" leaves it off).
    """
    config = model.ravit_config
    compile_kwargs.setdefault("jit_compile", True)
    # Keras prefixes metric names with the output name only when there are several
    # outputs; a single exit names its metric itself so logs always say which exit.
    single = len(config.exit_names) == 1
    accuracy = keras.metrics.CategoricalAccuracy if soft_labels else keras.metrics.SparseCategoricalAccuracy
    model.compile(
        optimizer=optimizer or keras.optimizers.AdamW(1e-3, weight_decay=0.05),
        loss=exit_losses(config, label_smoothing, soft_labels),
        loss_weights=config.loss_weights,
        metrics={name: [accuracy(name=f"{name}_accuracy" if single else "accuracy")]
                 for name in config.exit_names},
        **compile_kwargs,
    )
    return model
