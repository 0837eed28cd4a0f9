"""The training recipe: joint multi-exit loss, AdamW with cosine decay, callbacks.

Usable from a notebook (``compile_ravit`` then ``model.fit``) and from the
command line (``ravit train``, which calls ``train``). Resuming after a kill is
Keras's ``BackupAndRestore``: finished epochs are never lost.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import keras

from ravit_keras.config import RAViTConfig
from ravit_keras.io_utils import atomic_write_json, atomic_write_text
from ravit_keras.model import RAViT

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
LOG_FILE = "log.csv"
BACKUP_DIR = "backup"
EPOCH_TIMES_FILE = "epoch_times.json"
DTYPE_POLICIES = ("float32", "mixed_bfloat16")


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


def exit_losses(config: RAViTConfig, label_smoothing: float = 0.0) -> dict[str, keras.losses.Loss]:
    """One sparse cross-entropy on logits per exit."""
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
    **compile_kwargs: Any,
) -> RAViT:
    """Compiles ``model`` with the joint loss Σ α_i·CE(y, logits_i) and per-exit accuracy.

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
    model.compile(
        optimizer=optimizer or keras.optimizers.AdamW(1e-3, weight_decay=0.05),
        loss=exit_losses(config, label_smoothing),
        loss_weights=config.loss_weights,
        metrics={name: [keras.metrics.SparseCategoricalAccuracy(name=f"{name}_accuracy" if single else "accuracy")]
                 for name in config.exit_names},
        **compile_kwargs,
    )
    return model


class TrainingDivergedError(ValueError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class _FiniteBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras's BackupAndRestore that never backs up an epoch whose loss is not finite,
    so a diverged run keeps the last good checkpoint to resume from."""

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            return
        super().on_epoch_end(epoch, logs)


class EpochTimer(keras.callbacks.Callback):
    """Records each finished epoch's wall time (training and validation) in
    ``out_dir/epoch_times.json``.

    The file survives resumes: an epoch trained again after a kill replaces its own
    entry, so the sum over the file is the run's training time however many
    processes it took (``training_seconds``). Written atomically after every epoch.
    """

    def __init__(self, out_dir: str | os.PathLike):
        super().__init__()
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / EPOCH_TIMES_FILE
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if self._start is None:
            return
        seconds = read_epoch_times(self.out_dir)
        seconds[epoch] = round(time.perf_counter() - self._start, 3)
        self._start = None
        atomic_write_json(self.path, {"seconds_per_epoch": {str(e): seconds[e] for e in sorted(seconds)}})


def read_epoch_times(out_dir: str | os.PathLike) -> dict[int, float]:
    """``{epoch: seconds}`` recorded by ``EpochTimer`` in a run folder (empty if none)."""
    path = Path(out_dir) / EPOCH_TIMES_FILE
    if not path.is_file():
        return {}
    try:
        return {int(e): float(s) for e, s in json.loads(path.read_text())["seconds_per_epoch"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: not an epoch-times file ({err}).") from err


def training_seconds(out_dir: str | os.PathLike, epochs: int) -> float | None:
    """Sum of the recorded epoch times of a run of ``epochs`` epochs, across resumes;
    None unless every epoch was timed (a run started before the timer existed)."""
    seconds = read_epoch_times(out_dir)
    if sorted(seconds) != list(range(epochs)):
        return None
    return sum(seconds.values())


class _ResumableCSVLogger(keras.callbacks.CSVLogger):
    """Keras's CSVLogger(append=True) that keeps one row per epoch across resumes.

    An epoch's row is written before its backup (see ``training_callbacks``), so a
    kill between the two leaves a row for an epoch the resumed run trains again;
    the first epoch of a run drops the rows of that epoch and later ones first.
    """

    def __init__(self, filename, **kwargs):
        super().__init__(filename, append=True, **kwargs)
        self._first_epoch_of_run = True

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._first_epoch_of_run = True

    def on_epoch_begin(self, epoch, logs=None):
        if not self._first_epoch_of_run:
            return
        self._first_epoch_of_run = False
        path = Path(self.filename)
        if not path.is_file():
            return
        lines = path.read_text().splitlines(keepends=True)
        kept = lines[:1] + [line for line in lines[1:] if _log_row_epoch(line, path) < epoch]
        if len(kept) == len(lines):
            return
        self.csv_file.close()
        atomic_write_text(path, "".join(kept))
        self.csv_file = open(path, "a")


def _log_row_epoch(line: str, path: Path) -> int:
    try:
        return int(line.split(",", 1)[0])
    except ValueError as err:
        raise ValueError(f"{path}: a row does not start with its epoch number: {line.strip()!r}.") from err


def training_callbacks(out_dir: str | os.PathLike) -> list[keras.callbacks.Callback]:
    """NaN guard, CSV log, epoch times, and a checkpoint every epoch (resumable after a kill).

    The checkpoint comes last, so an epoch's log row and time are on record before
    the backup says the epoch is done: a kill between them trains that epoch again
    and replaces its row and time, instead of leaving a finished epoch without them.
    The checkpoint is not deleted when training ends: ``train`` removes it only
    once the final model is safely in place, so a kill at any moment loses nothing.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        keras.callbacks.TerminateOnNaN(),
        _ResumableCSVLogger(str(out_dir / LOG_FILE)),
        EpochTimer(out_dir),
        # Weights + optimizer + epoch counter; double_checkpoint keeps the previous
        # backup, so a kill during the write still resumes from the epoch before.
        _FiniteBackupAndRestore(str(out_dir / BACKUP_DIR), double_checkpoint=True, delete_checkpoint=False),
    ]


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
) -> tuple[RAViT, dict[str, list[float]]]:
    """Trains a RAViT and writes ``out_dir/{config.json, log.csv, model.keras}``.

    Args:
        config: the architecture.
        train_data: batched ``tf.data.Dataset`` of ``(images, {exit: labels})``
            (``ravit_keras.data.make_pipeline``).
        out_dir: run folder. Re-running with the same folder resumes after the
            last finished epoch.
        training: the recipe's hyper-parameters.
        validation_data: optional batched dataset evaluated after each epoch.
        steps_per_epoch: steps in one epoch; required when ``train_data`` has
            unknown cardinality.
        strategy: optional ``tf.distribute.Strategy`` (e.g. MirroredStrategy).
        callbacks: extra Keras callbacks.
        jit_compile: XLA on or off; default on, except across several replicas
            (XLA cannot place a step across MirroredStrategy's logical CPUs).
        class_names: the labels' names, recorded in config.json so that the
            model's answers can be named later (``ravit predict``).
        data_signature: what identifies the training data (source, size, classes);
            a resumed run must be given the same.

    Raises:
        TrainingDivergedError: if the loss became NaN or infinite (the last good
            epoch stays in ``out_dir/backup`` and no model is saved).
        ValueError: if ``out_dir`` holds an unfinished run of another model, recipe
            or dataset.

    Returns:
        The trained model and the history of this call's epochs.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_resume_compatible(out_dir, config, training, data_signature)
    keras.utils.set_random_seed(training.seed)

    steps = steps_per_epoch or training.steps_per_epoch or _cardinality(train_data)
    total_steps = steps * training.epochs
    warmup_steps = int(round(training.warmup_epochs * steps))

    if jit_compile is None and training.xla != "auto":
        jit_compile = training.xla == "on"
    jit = jit_compile if jit_compile is not None else (
        training.dtype_policy == "float32" and (strategy is None or strategy.num_replicas_in_sync == 1))

    def build():
        model = RAViT(config)
        optimizer = make_optimizer(
            training.learning_rate, training.weight_decay, total_steps, warmup_steps,
            training.min_learning_rate_ratio,
        )
        return compile_ravit(model, optimizer, training.label_smoothing, jit_compile=jit)

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

    record = {"model": config.to_dict(), "training": dataclasses.asdict(training)}
    if class_names is not None:
        record["class_names"] = [str(n) for n in class_names]
    if data_signature is not None:
        record["data"] = data_signature
    atomic_write_json(out_dir / CONFIG_FILE, record)
    history = model.fit(
        train_data,
        epochs=training.epochs,
        steps_per_epoch=steps_per_epoch or training.steps_per_epoch,
        validation_data=validation_data,
        callbacks=[*training_callbacks(out_dir), *callbacks],
        verbose=verbose,
        shuffle=False,  # The tf.data pipeline shuffles (seeded); Keras would only warn.
    )
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
    save_model(model, out_dir / MODEL_FILE)
    # Only now is the checkpoint redundant: a kill before this line resumes from it.
    shutil.rmtree(out_dir / BACKUP_DIR, ignore_errors=True)
    return model, history.history


def save_model(model: keras.Model, path: str | os.PathLike) -> Path:
    """Saves a ``.keras`` file atomically (temporary file, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.partial.keras")
    model.save(tmp)
    os.replace(tmp, path)
    return path


def load_run_config(out_dir: str | os.PathLike) -> tuple[RAViTConfig, TrainingConfig]:
    """Reads the configuration a training run recorded in ``out_dir/config.json``."""
    path = Path(out_dir) / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"No {CONFIG_FILE} in {out_dir}: not a training run folder.")
    data = json.loads(path.read_text())
    return RAViTConfig.from_dict(data["model"]), TrainingConfig(**data["training"])


def _check_resume_compatible(out_dir: Path, config: RAViTConfig, training: TrainingConfig,
                             data_signature: dict[str, Any] | None = None):
    if not (out_dir / CONFIG_FILE).exists():
        return
    old_config, old_training = load_run_config(out_dir)
    if old_config != config:
        raise ValueError(
            f"{out_dir} holds a run of another model ({old_config.name} "
            f"{old_config.layer_spec}); use a new output folder to train {config.name} "
            f"{config.layer_spec}."
        )
    if (out_dir / MODEL_FILE).exists() and not (out_dir / BACKUP_DIR).exists():
        raise FileExistsError(
            f"{out_dir} holds a finished run ({out_dir / MODEL_FILE}); use a new output folder "
            "(or delete that one) to train again."
        )
    fields = ("batch_size", "learning_rate", "weight_decay", "epochs", "warmup_epochs", "seed",
              "label_smoothing", "steps_per_epoch", "dtype_policy")
    changed = [f for f in fields if getattr(old_training, f) != getattr(training, f)]
    if changed:
        raise ValueError(
            f"{out_dir} holds an unfinished run with different {', '.join(changed)}; "
            "resume with the same settings or use a new output folder."
        )
    old_data = json.loads((out_dir / CONFIG_FILE).read_text()).get("data")
    if data_signature is not None and old_data is not None and old_data != data_signature:
        diff = sorted(k for k in set(old_data) | set(data_signature) if old_data.get(k) != data_signature.get(k))
        raise ValueError(
            f"{out_dir} holds an unfinished run on other data (different {', '.join(diff)}); resume "
            "with the same --data and limits, or use a new output folder."
        )


def _cardinality(dataset) -> int:
    n = int(dataset.cardinality())
    if n < 0:
        raise ValueError(
            "The training dataset has unknown or infinite length; pass steps_per_epoch."
        )
    return max(1, n)


def distribution_strategy(num_devices: int):
    """A ``MirroredStrategy`` over ``num_devices`` devices (GPUs, else logical CPUs).

    On a CPU-only machine the CPU is split into ``num_devices`` logical devices;
    this must run before TensorFlow initialises its devices.
    """
    import tensorflow as tf

    if num_devices <= 1:
        return tf.distribute.get_strategy()
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) >= num_devices:
        return tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in range(num_devices)])
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(num_devices)]
    )
    return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(num_devices)])


__all__ = [
    "TrainingConfig", "make_optimizer", "exit_losses", "compile_ravit", "training_callbacks",
    "train", "save_model", "load_run_config", "distribution_strategy",
    "MODEL_FILE", "CONFIG_FILE", "LOG_FILE",
]
