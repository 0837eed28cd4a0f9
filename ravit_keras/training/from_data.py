"""``train_from_data``: a dataset source to a finished training run, with the toolkit's policy.

What ``ravit train`` does, callable from Python: load the training images (with
a calibration holdout kept out), size the heads for the data's classes, choose
the normalisation, build the pipelines, record what identifies the data, and
train into the run folder. ``finetune_from_data`` (``ravit train --init``) does
the same starting from a trained model's weights (``training.finetune``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

from ravit_keras import run_calibration, runs
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
    calibration_holdout: float | None = None,
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
            training for calibrating thresholds (0: none; None: the rule of
            ``run_calibration.default_calibration_holdout``, by the training split's size).
        limit_train, limit_test: use only the first N images.
        validate: evaluate on the test split after each epoch.
        normalization: "auto", "preset" or "data" (``choose_normalization``).
        name: the model's name (plots, manifest, metadata); default: the architecture's on
            its own dataset, else the data's (``normalization.model_name``).
        notes: receives what is decided on the way and the plan.

    Returns:
        ``(model, history, config)``: the config the model was trained with.
    """
    from ravit_keras.training.distribution import writer_lock

    # Taken before the data is read: a second training fails at once (process 0's only).
    with writer_lock(out_dir):
        return _train_from_data(config, source, out_dir, training, arch=arch, num_classes=num_classes,
                                calibration_holdout=calibration_holdout, limit_train=limit_train,
                                limit_test=limit_test, validate=validate, normalization=normalization,
                                name=name, strategy=strategy, verbose=verbose, notes=notes)


def finetune_from_data(
    init: str | os.PathLike,
    source: DataSource,
    out_dir: str | os.PathLike,
    training: TrainingConfig = TrainingConfig(),
    *,
    label: str | None = None,
    changes: dict[str, Any] | None = None,
    num_classes: int | None = None,
    normalization: str = "auto",
    **kwargs: Any,
) -> tuple[Any, dict[str, list[float]], RAViTConfig]:
    """Fine-tunes the trained model at ``init`` on ``source`` into the run folder ``out_dir``.

    As ``train_from_data``, with the configuration taken from the source model
    (``training.finetune.finetune_config``: its architecture and normalisation, the
    data's classes) and its weights copied in before the first epoch. A run resumed
    from its checkpoint takes its configuration from its own record and does not
    read ``init`` again.

    Args:
        init: a run folder (a preset's included) or a ``.keras`` file.
        label: how the run record names the source (default: ``init``), e.g. ``preset:NAME``.
        changes: configuration fields to change (``image_size``, ``dropout``, ...);
            architecture fields only with the source's values.
        normalization: "auto" or "preset" keep the source's mean/std (its patch
            embedding was trained on pixels normalised so); "data" measures the
            training data's.
        kwargs: ``train_from_data``'s other arguments (``calibration_holdout``, ...).

    Raises:
        training.finetune.ArchitectureMismatchError: ``changes`` do not fit the source (names the field).
    """
    from ravit_keras.io_utils import folder_lock

    label = label or str(init)
    notes = kwargs.get("notes", _say)
    with folder_lock(out_dir):
        recorded = _resumed_init(out_dir, label)
        if recorded is not None:
            config, init_source, init_record = recorded[0], None, recorded[1]
            notes(f"Resuming the fine-tuning run in {out_dir} from its checkpoint (not from {label})")
        else:
            from ravit_keras.training.finetune import finetune_config, load_init

            init_source = load_init(init, label)
            config = finetune_config(init_source, num_classes, **(changes or {}))
            init_record = init_source.record()
        if normalization == "data":
            normalization_arch = config.name
        elif normalization in ("auto", "preset"):
            normalization_arch, normalization = config.name, "preset"
        else:
            raise ValueError(f"normalization must be auto, preset or data, got {normalization!r}.")
        kwargs.setdefault("notes", notes)
        return _train_from_data(config, source, out_dir, training, arch=normalization_arch,
                                num_classes=num_classes, normalization=normalization, init=init_source,
                                init_record=init_record, **{**_DEFAULTS, **kwargs})


# calibration_holdout None: run_calibration.default_calibration_holdout's rule for the data's size.
_DEFAULTS = dict(calibration_holdout=None, limit_train=None, limit_test=None, validate=False, name=None,
                 strategy=None, verbose="auto")


def _resumed_init(out_dir, label: str):
    """``(config, init record)`` of an unfinished run in ``out_dir`` started from ``label``
    that has a checkpoint to resume from; None when the run starts from the source."""
    from ravit_keras.config import RAViTConfig

    if not (runs.has_checkpoint(out_dir) and runs.has_record(out_dir)):
        return None
    record = runs.load_record(out_dir)
    init = record.get("init")
    if not isinstance(init, dict) or init.get("source") != label:
        return None  # train() refuses the resume, naming what the run was started from.
    return RAViTConfig.from_dict(record["model"]), init


def _train_from_data(config, source, out_dir, training, *, arch, num_classes, calibration_holdout, limit_train,
                     limit_test, validate, normalization, name, strategy, verbose, notes, init=None, init_record=None):
    import keras

    from ravit_keras.data.checks import check_class_names
    from ravit_keras.train import train
    from ravit_keras.training.recipe import set_random_seed

    on_tf_data = keras.backend.backend() == "tensorflow"
    if not on_tf_data:
        if str(source.data).startswith("tfds:"):
            from ravit_keras.data.errors import DatasetError

            raise DatasetError(f"--data {source.data}: TensorFlow Datasets are read on the TensorFlow backend "
                               f"only (this run uses {keras.backend.backend()}); use --backend tensorflow, or "
                               "give the images as an .npz file, a CIFAR-10 folder or an image folder.")
    # tf.data's seeded shuffle and augmentation combine their seed with TF's global
    # seed: fixing it here makes a run depend on the recipe's seed alone.
    set_random_seed(training.seed)
    if calibration_holdout is None:
        calibration_holdout = _default_holdout(source, config, limit_train, out_dir)
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
    train_ds = fit_batches(train_split, config, training, training=True)
    from ravit_keras.train import check_steps_per_epoch

    check_steps_per_epoch(training.steps_per_epoch, train_ds)
    val_ds = None
    if validate:
        val_split = source.load("test", config.image_size, config.num_classes, limit_test)
        val_ds = fit_batches(val_split, config, training, training=False)
    recipe = recipe_name(dataclasses.asdict(training), config.drop_path_rate)
    notes(f"Training RAViT {config.layer_spec} ({config.name}) on {plural(train_split.num_examples, 'image')} "
          f"from {source.data} for {plural(training.epochs, 'epoch')} ({recipe} recipe) -> {out_dir}")
    signature = runs.data_signature(source.data, train_split.num_examples, train_split.class_names,
                                    source.holdout_fraction, calibration_holdout, limit_train)
    initialize = None
    if init is not None:
        def initialize(model):
            for line in init.apply(model, train_split.class_names):
                notes(f"note: {line}")
        notes(f"Starting from {init.label} (sha256 {init.sha256[:12]}...): its encoders, "
              f"{'its heads' if init.keeps_heads(config, train_split.class_names) else 'new heads'}")
    model, history = naming_bad_images(train_split, lambda: train(
        config, train_ds, out_dir, training, val_ds, strategy=strategy, verbose=verbose,
        class_names=train_split.class_names, data_signature=signature, initialize=initialize,
        init_record=init_record))
    return model, history, config


def fit_batches(split, config: RAViTConfig, recipe: TrainingConfig, *, training: bool):
    """A split's batches for ``train`` (``training``) or its validation data, by Keras backend:
    a tf.data pipeline on TensorFlow, else NumPy ``SplitBatches`` that the training step
    augments (``training/in_step.py``)."""
    import keras

    if keras.backend.backend() == "tensorflow":
        from ravit_keras.data import make_pipeline

        if training:
            return make_pipeline(split, config, recipe.batch_size, training=True, seed=recipe.seed,
                                 augmentation=recipe.augmentation)
        return make_pipeline(split, config, recipe.batch_size, training=False, one_hot=recipe.augmentation.mixes)
    from ravit_keras.data.batches import SplitBatches
    from ravit_keras.training import distribution

    # With several processes each reads its contiguous slice of every global batch
    # (Keras assembles the global batch); evaluation's partial last batch cannot be split evenly.
    shard_index, num_shards = distribution.process_shard()
    if num_shards > 1 and not training:
        raise ValueError("--validate: validation data is not split across several processes yet; "
                         "train without --validate and run `ravit eval` on the finished run.")
    return SplitBatches(split, config.image_size, config.exit_names, recipe.batch_size, training=training,
                        seed=recipe.seed, shard_index=shard_index, num_shards=num_shards)


def _default_holdout(source: DataSource, config: RAViTConfig, limit_train: int | None, out_dir) -> float:
    """``run_calibration.default_calibration_holdout`` of the whole training split (the holdout is carved
    before any --limit-train; the generated set is the images drawn), or the share an
    unfinished run in ``out_dir`` began with, so that it resumes on the same images."""
    record = runs.read_record(out_dir) if os.path.isdir(out_dir) else {}
    recorded = (record.get("data") or {}).get("calibration_holdout")
    if recorded is not None:
        return float(recorded)
    drawn = (limit_train or runs.DEFAULT_GENERATED_IMAGES) if source.is_generated else None
    total = drawn or source.load("train", config.image_size, None).num_examples
    return run_calibration.default_calibration_holdout(total) if total else 0.0
