"""Training a RAViT into a run folder: ``train`` runs the recipe with model.fit.

Usable from a notebook (``compile_ravit`` then ``model.fit``, or ``train``) and
from the command line (``ravit train``, through ``training.from_data``). Resuming
after a kill is Keras's ``BackupAndRestore``: finished epochs are never lost.

    training/recipe.py         TrainingConfig, optimizer, losses, compile_ravit
    training/callbacks.py      NaN guard, CSV log, epoch times, checkpoint
    training/normalization.py  which per-channel mean/std a model normalises with
    training/from_data.py      train_from_data: a data source to a finished run
    training/in_step.py        augmentation inside the step (non-TensorFlow backends)
    training/resume.py         whether a run folder resumes with these settings
    training/distribution.py   several devices and processes (JAX DataParallel, MirroredStrategy)
    runs.py                    the run folder's file names and record

Input: on the TensorFlow backend a ``tf.data`` pipeline (``data.make_pipeline``);
on JAX (and for any backend given them) ``data.batches.SplitBatches``, NumPy batches
augmented inside the step by ``AugmentedTrainer`` (nothing imports TensorFlow).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Sequence

import keras

from ravit_keras import runs
from ravit_keras.config import RAViTConfig
from ravit_keras.data.batches import EpochSetter, SplitBatches
from ravit_keras.model import RAViT
from ravit_keras.runs import (  # noqa: F401  (the names this module has always exported)
    BACKUP_DIR,
    CONFIG_FILE,
    EPOCH_TIMES_FILE,
    LOG_FILE,
    MODEL_FILE,
    read_epoch_times,
    training_seconds,
)
from ravit_keras.training import distribution
from ravit_keras.training.callbacks import (  # noqa: F401
    CheckpointError,
    CheckpointWriteError,
    EpochTimer,
    _FiniteBackupAndRestore,
    _ResumableCSVLogger,
    training_callbacks,
)
from ravit_keras.training.distribution import distribution_strategy  # noqa: F401  (moved; imported from here too)
from ravit_keras.training.finetune import FreezeEncoders
from ravit_keras.training.recipe import (  # noqa: F401
    AUGMENTATION_FIELDS,
    DTYPE_POLICIES,
    TrainingConfig,
    _SmoothedSparseCrossentropy,
    compile_ravit,
    exit_losses,
    make_optimizer,
    set_random_seed,
    tensorflow_left_out,
)
from ravit_keras.training.resume import check_resume_compatible, load_run_config  # noqa: F401


class TrainingDivergedError(ValueError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def train(
    config: RAViTConfig,
    train_data,
    out_dir: str | os.PathLike,
    training: TrainingConfig = TrainingConfig(),
    validation_data=None,
    *,
    steps_per_epoch: int | None = None,
    strategy=None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: str | int = "auto",
    jit_compile: bool | None = None,
    class_names: Sequence[str] | None = None,
    data_signature: dict[str, Any] | None = None,
    initialize: Callable[[keras.Model], Any] | None = None,
    init_record: dict[str, Any] | None = None,
) -> tuple[RAViT, dict[str, list[float]]]:
    """Trains a RAViT and writes its run folder: record, log, epoch times, ``model.keras``.

    Args:
        config: the architecture.
        train_data: batched ``tf.data.Dataset`` of ``(images, {exit: labels})``
            (``ravit_keras.data.make_pipeline``), or ``data.batches.SplitBatches``
            (NumPy; augmented inside the training step: the JAX backend's input).
        out_dir: run folder. Re-running with the same folder resumes after the
            last finished epoch.
        training: the recipe's hyper-parameters.
        validation_data: optional batched dataset evaluated after each epoch.
        steps_per_epoch: steps in one epoch; required when ``train_data`` has
            unknown cardinality.
        strategy: optional ``tf.distribute.Strategy`` (MirroredStrategy) or, on JAX, a
            ``keras.distribution.DataParallel`` (``training.distribution.setup``); with
            several processes only process 0 writes ``out_dir``.
        callbacks: extra Keras callbacks.
        jit_compile: XLA on or off; default on, except across several replicas
            (XLA cannot place a step across MirroredStrategy's logical CPUs). JAX
            always compiles the step (``jax.jit``).
        class_names: the labels' names, recorded in the run record so that the
            model's answers can be named later (``ravit predict``).
        data_signature: what identifies the training data (source, size, classes);
            a resumed run must be given the same.
        initialize: called on the freshly built model to set its starting weights
            (fine-tuning: ``training.finetune.InitSource.apply``); not called when the
            run resumes from a checkpoint, whose weights replace any start.
        init_record: what the run started from (``InitSource.record()``), kept in the
            run record as ``init``; a resumed run must name the same source.

    Raises:
        TrainingDivergedError: if the loss became NaN or infinite (the last good
            epoch stays in ``out_dir/backup`` and no model is saved).
        ValueError: if ``out_dir`` holds an unfinished run of another model, recipe
            or dataset.

    Returns:
        The trained model and the history of this call's epochs.
    """
    _check_label_format(train_data, training)
    out_dir = Path(out_dir)
    check_steps_per_epoch(steps_per_epoch or training.steps_per_epoch, train_data)
    # A second training into the folder fails at once (the lock); the distribution
    # is set for the whole training.
    with distribution.fit_scope(strategy, train_data), distribution.writer_lock(out_dir):
        return _train(config, train_data, out_dir, training, validation_data, steps_per_epoch=steps_per_epoch,
                      strategy=strategy, callbacks=callbacks, verbose=verbose, jit_compile=jit_compile,
                      class_names=class_names, data_signature=data_signature, initialize=initialize,
                      init_record=init_record)


def check_steps_per_epoch(steps: int | None, train_data) -> None:
    """Refuses more steps per epoch than the (finite) training data has batches: Keras
    would stop the epoch when the data runs out, under a progress bar that looks full.

    Raises:
        ValueError: naming ``--steps-per-epoch`` and the number of batches.
    """
    if not steps:
        return
    try:
        batches = int(_batches_of(train_data))
    except (AttributeError, TypeError):
        return
    if 0 <= batches < steps:
        raise ValueError(
            f"--steps-per-epoch {steps}: the training data has only {batches} batches (the last partial "
            f"batch is dropped); give at most {batches}, or leave the flag out for one pass over the data.")


def _train(config, train_data, out_dir: Path, training, validation_data, *, steps_per_epoch, strategy, callbacks,
           verbose, jit_compile, class_names, data_signature, initialize, init_record):
    backend = keras.backend.backend()
    jit_compile = _jit_for_backend(backend, training, jit_compile)
    in_step = _in_step(train_data)
    writer = distribution.is_writer()  # With several processes, process 0 alone writes the run folder.

    def check_folder():
        out_dir.mkdir(parents=True, exist_ok=True)
        check_resume_compatible(out_dir, config, training, data_signature, backend, init_record)

    distribution.on_writer(check_folder, f"checking the run folder {out_dir}")
    if training.freeze_epochs and backend == "jax":
        # JAX's stateless optimizer step takes every variable it was built with: a frozen subset fails.
        raise ValueError("--freeze-epochs needs the TensorFlow backend (KERAS_BACKEND=tensorflow, the default), "
                         "not JAX.")
    resuming = runs.has_checkpoint(out_dir)
    set_random_seed(training.seed)

    steps = steps_per_epoch or training.steps_per_epoch or _cardinality(train_data)
    total_steps = steps * training.epochs
    warmup_steps = int(round(training.warmup_epochs * steps))

    if jit_compile is None and training.xla != "auto":
        jit_compile = training.xla == "on"
    jit = jit_compile if jit_compile is not None else (
        training.dtype_policy == "float32" and not distribution.splits_xla(strategy))

    def build():
        model = RAViT(config)
        if in_step:  # Fit the training-only wrapper; the RAViT inside is what is saved.
            from ravit_keras.training.in_step import AugmentedTrainer

            model = AugmentedTrainer(model, training.augmentation)
        optimizer = make_optimizer(
            training.learning_rate, training.weight_decay, total_steps, warmup_steps,
            training.min_learning_rate_ratio,
        )
        compile_ravit(model, optimizer, training.label_smoothing, jit_compile=jit,
                      soft_labels=training.augmentation.mixes)
        if training.freeze_epochs:
            # Built on every variable while all are trainable: the frozen epochs update a
            # subset of them, and the checkpoint has one layout in both phases.
            model.optimizer.build(model.trainable_variables)
        return model

    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(training.dtype_policy)
    try:
        if strategy is not None:
            with strategy.scope():
                model = build()
        else:
            model = build()
    finally:
        keras.config.set_dtype_policy(previous_policy)
    if initialize is not None and not resuming:
        initialize(model.ravit if in_step else model)

    extra = [FreezeEncoders(training.freeze_epochs)] if training.freeze_epochs else []
    with _disk_errors_named(out_dir):
        if writer:
            runs.write_record(out_dir, config.to_dict(), dataclasses.asdict(training), class_names, data_signature,
                              backend=backend, init=init_record)
        # Before the run's callbacks: the checkpoint's resume sets the first epoch, whose order this reads.
        order = [EpochSetter(train_data)] if in_step else []
        history = model.fit(
            train_data,
            epochs=training.epochs,
            steps_per_epoch=steps_per_epoch or training.steps_per_epoch,
            validation_data=validation_data,
            callbacks=[*extra, *training_callbacks(out_dir, writer, distribution.process_shard()[1]), *order,
                       *callbacks],
            verbose=verbose,
            shuffle=False,  # The input shuffles (seeded, per epoch); Keras would only warn.
        )
    if in_step:
        model = model.ravit
    losses = history.history.get("loss", [])
    if losses and not math.isfinite(float(losses[-1])):
        kept = (f"{out_dir / BACKUP_DIR} keeps the last good epoch" if (out_dir / BACKUP_DIR).exists()
                else "no epoch ended with a finite loss")
        raise TrainingDivergedError(
            f"The training loss became {losses[-1]} in epoch {len(losses)} of this run; nothing was "
            f"saved as {MODEL_FILE} and {kept}. Lower the learning rate (--lr) and train in a new folder.")
    if training.dtype_policy != "float32":
        # The layers record their policy; a float32 copy converts to TFLite as trained.
        previous_policy = keras.config.dtype_policy()
        keras.config.set_dtype_policy("float32")
        try:
            float_model = RAViT(config)
        finally:
            keras.config.set_dtype_policy(previous_policy)
        float_model.set_weights(model.get_weights())
        model = float_model
    if writer:
        with _disk_errors_named(out_dir), distribution.writing_alone():
            save_model(model, out_dir / MODEL_FILE)
        # Only now is the checkpoint redundant: a kill before this line resumes from it.
        shutil.rmtree(out_dir / BACKUP_DIR, ignore_errors=True)
    return model, history.history


def save_model(model: keras.Model, path: str | os.PathLike) -> Path:
    """Saves a ``.keras`` file atomically (temporary file, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.partial.keras")
    try:
        with tensorflow_left_out():  # On JAX, Keras's saving would import TensorFlow to probe for it.
            model.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # A kill (SIGTERM, Ctrl-C) or a full disk leaves no partial file.
        raise
    return path


@contextlib.contextmanager
def _disk_errors_named(out_dir: Path):
    """A full disk (or another write error without a file name) while training into
    ``out_dir``: one error naming the folder and what is kept to resume from."""
    try:
        yield
    except CheckpointWriteError:
        raise
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EIO) or err.filename:
            raise
        backup = out_dir / BACKUP_DIR
        kept = (f"{backup} keeps the last good checkpoint; rerun the same command to resume once there is space"
                if backup.exists() else "no epoch was backed up yet")
        raise OSError(err.errno, f"{err.strerror or err} while writing into the run folder {out_dir}: "
                                 f"training stopped; {kept}.") from None


def _in_step(train_data) -> bool:
    """Whether the data is ``SplitBatches`` (augmented in the step, not in tf.data)."""
    return isinstance(train_data, SplitBatches)


def check_xla(backend: str, xla_off: bool) -> None:
    """Refuses XLA off on JAX, which always compiles the training step (``jax.jit``)."""
    if backend == "jax" and xla_off:
        raise ValueError("--xla off: the JAX backend always compiles the training step (jax.jit); "
                         "leave the flag out (auto) or give --xla on.")


def _jit_for_backend(backend: str, training: TrainingConfig, jit_compile: bool | None) -> bool | None:
    """JAX compiles the training step always: ``--xla off`` is refused there, auto is on."""
    if backend != "jax":
        return jit_compile
    check_xla(backend, training.xla == "off" or jit_compile is False)
    return True


def _check_label_format(dataset, training: TrainingConfig):
    """CutMix and MixUp train on one-hot labels, the paper's recipe on class indices."""
    spec = getattr(dataset, "element_spec", None)
    if not (isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], dict) and spec[1]):
        return  # Not a (images, {exit: labels}) dataset: Keras will say what is wrong.
    rank = next(iter(spec[1].values())).shape.rank
    if training.augmentation.mixes and rank == 1:
        raise ValueError("The recipe mixes images (CutMix or MixUp) but the training data has class-index "
                         "labels: build it with make_pipeline(..., augmentation=training.augmentation).")
    if not training.augmentation.mixes and rank == 2:
        raise ValueError("The training data has one-hot labels but the recipe does not mix images: "
                         "give class indices (make_pipeline without one_hot).")


def _batches_of(dataset) -> int:
    """Batches in one pass: a PyDataset's ``num_batches`` or a tf.data ``cardinality``."""
    if isinstance(dataset, keras.utils.PyDataset):
        return dataset.num_batches
    return dataset.cardinality()


def _cardinality(dataset) -> int:
    n = int(_batches_of(dataset))
    if n < 0:
        raise ValueError(
            "The training dataset has unknown or infinite length; pass steps_per_epoch."
        )
    return max(1, n)


__all__ = [
    "TrainingConfig", "make_optimizer", "exit_losses", "compile_ravit", "training_callbacks",
    "train", "save_model", "load_run_config", "distribution_strategy",
    "MODEL_FILE", "CONFIG_FILE", "LOG_FILE", "BACKUP_DIR", "EPOCH_TIMES_FILE", "EpochTimer",
    "TrainingDivergedError", "read_epoch_times", "training_seconds",
]
