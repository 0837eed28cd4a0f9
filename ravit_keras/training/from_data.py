"""``train_from_data``: a dataset source to a finished training run, with the toolkit's policy.

What ``ravit train`` does, callable from Python: load the training images (with
a calibration holdout kept out), size the heads for the data's classes, choose
the normalisation, build the pipelines, record what identifies the data, and
train into the run folder.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

from ravit_keras import runs
from ravit_keras.config import RAViTConfig
from ravit_keras.console import plural
from ravit_keras.data.source import DataSource, naming_bad_images
from ravit_keras.training.normalization import choose_normalization, model_name
from ravit_keras.training.recipe import TrainingConfig
from ravit_keras.training.recipes import recipe_name


def _say(text: str) -> None:
    print(text, flush=True)


def train_from_data(
    config: RAViTConfig,
    source: DataSource,
    out_dir: str | os.PathLike,
    training: TrainingConfig = TrainingConfig(),
    *,
    arch: str,
    num_classes: int | None = None,
    calibration_holdout: float = runs.DEFAULT_CALIBRATION_HOLDOUT,
    limit_train: int | None = None,
    limit_test: int | None = None,
    validate: bool = False,
    normalization: str = "auto",
    name: str | None = None,
    strategy=None,
    verbose: str | int = "auto",
    notes: Callable[[str], None] = _say,
) -> tuple[Any, dict[str, list[float]], RAViTConfig]:
    """Trains ``config`` on ``source`` into the run folder ``out_dir`` (resumable).

    Args:
        config: the architecture (``get_config(arch, ...)``).
        source: the training data.
        arch: the architecture configuration's name, whose mean/std belong to its dataset.
        num_classes: the classes the user asked for; None sizes the heads for the data.
        calibration_holdout: share of each class's training images kept out of
            training for calibrating thresholds (0: none).
        limit_train, limit_test: use only the first N images.
        validate: evaluate on the test split after each epoch.
        normalization: "auto", "preset" or "data" (``choose_normalization``).
        name: the model's name (plots, manifest, metadata); default: the architecture's on
            its own dataset, else the data's (``normalization.model_name``).
        notes: receives what is decided on the way and the plan.

    Returns:
        ``(model, history, config)``: the config the model was trained with.
    """
    from ravit_keras.io_utils import folder_lock

    with folder_lock(out_dir):  # Taken before the data is read: a second training fails at once.
        return _train_from_data(config, source, out_dir, training, arch=arch, num_classes=num_classes,
                                calibration_holdout=calibration_holdout, limit_train=limit_train,
                                limit_test=limit_test, validate=validate, normalization=normalization,
                                name=name, strategy=strategy, verbose=verbose, notes=notes)


def _train_from_data(config, source, out_dir, training, *, arch, num_classes, calibration_holdout, limit_train,
                     limit_test, validate, normalization, name, strategy, verbose, notes):
    import keras

    from ravit_keras.data import make_pipeline
    from ravit_keras.data.checks import check_class_names
    from ravit_keras.train import train

    # tf.data's seeded shuffle and augmentation combine their seed with TF's global
    # seed: fixing it here makes a run depend on the recipe's seed alone.
    keras.utils.set_random_seed(training.seed)
    train_split = source.load("train", config.image_size, num_classes or config.num_classes, limit_train,
                              calibration_fraction=calibration_holdout, seed=training.seed)
    if train_split.num_examples == 0:
        raise ValueError(f"The train split of {source.data} holds no images.")
    # Names go into config.json, labels.txt and the TFLite metadata, one per line.
    check_class_names(train_split.class_names, f"--data {source.data}")
    if train_split.num_classes != config.num_classes:
        if num_classes is not None:
            raise ValueError(
                f"--num-classes {num_classes} but {source.data} has {train_split.num_classes} classes "
                f"({', '.join(train_split.class_names[:8])}{', ...' if train_split.num_classes > 8 else ''}).")
        # The head is sized for the data, not for the architecture's dataset.
        config = config.replace(num_classes=train_split.num_classes)
    config = choose_normalization(config, arch, source.data, train_split, normalization, notes)
    config = config.replace(name=model_name(config, arch, source, train_split, name))
    train_ds = make_pipeline(train_split, config, training.batch_size, training=True, seed=training.seed,
                             augmentation=training.augmentation)
    from ravit_keras.train import check_steps_per_epoch

    check_steps_per_epoch(training.steps_per_epoch, train_ds)
    val_ds = None
    if validate:
        val_split = source.load("test", config.image_size, config.num_classes, limit_test)
        val_ds = make_pipeline(val_split, config, training.batch_size, training=False,
                               one_hot=training.augmentation.mixes)
    recipe = recipe_name(dataclasses.asdict(training), config.drop_path_rate)
    notes(f"Training RAViT {config.layer_spec} ({config.name}) on {plural(train_split.num_examples, 'image')} "
          f"from {source.data} for {plural(training.epochs, 'epoch')} ({recipe} recipe) -> {out_dir}")
    signature = runs.data_signature(source.data, train_split.num_examples, train_split.class_names,
                                    source.holdout_fraction, calibration_holdout, limit_train)
    model, history = naming_bad_images(train_split, lambda: train(
        config, train_ds, out_dir, training, val_ds, strategy=strategy, verbose=verbose,
        class_names=train_split.class_names, data_signature=signature))
    return model, history, config
