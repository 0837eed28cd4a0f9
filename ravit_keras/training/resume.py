"""Whether a run folder can go on with these settings: the record ``train`` checks before it resumes.

A run killed at any moment is resumed by running the same command again
(``BackupAndRestore``); the same command means the same backend, ``--init``
source, model, recipe and data. Anything else is refused before training
starts, naming what differs, so a checkpoint is never continued as another run.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from ravit_keras import runs
from ravit_keras.config import RAViTConfig
from ravit_keras.runs import MODEL_FILE
from ravit_keras.training.recipe import AUGMENTATION_FIELDS, TrainingConfig


def load_run_config(out_dir: str | os.PathLike) -> tuple[RAViTConfig, TrainingConfig]:
    """Reads the model and recipe a training run recorded (``runs.RECORD_FILE``)."""
    data = runs.load_record(out_dir)
    # A record may say more about the run than the recipe (e.g. "backend" of an imported run).
    fields = {f.name for f in dataclasses.fields(TrainingConfig)}
    recipe = {k: v for k, v in data["training"].items() if k in fields}
    return RAViTConfig.from_dict(data["model"]), TrainingConfig(**recipe)


def check_resume_compatible(out_dir: Path, config: RAViTConfig, training: TrainingConfig,
                            data_signature: dict[str, Any] | None = None, backend: str | None = None,
                            init_record: dict[str, Any] | None = None):
    """Refuses to continue a run folder with another backend, --init source, model, recipe or data,
    and to train again into a finished one.

    Raises:
        ValueError: naming what differs and how to resume.
        FileExistsError: the folder holds a finished run.
    """
    if not runs.has_record(out_dir):
        return
    old_backend = runs.recorded_backend(out_dir)
    if backend is not None and old_backend != backend and not runs.is_finished(out_dir):
        # The two backends read the data in other orders with other augmentation streams (tf.data
        # vs data.batches): a run continued on the other one would be neither run.
        raise ValueError(
            f"{out_dir} holds an unfinished run trained on the {old_backend} backend; resume it with "
            f"--backend {old_backend} (this process runs {backend}), or use a new output folder.")
    old_init = (runs.load_record(out_dir).get("init") or {}).get("source")
    new_init = (init_record or {}).get("source")
    if old_init != new_init and not runs.is_finished(out_dir):
        started = f"was started from --init {old_init}" if old_init else "was started without --init"
        raise ValueError(f"{out_dir} holds an unfinished run that {started}; resume it with the same "
                         "command, or use a new output folder.")
    old_config, old_training = load_run_config(out_dir)
    # The name is a label (a run started as "cifar10-custom" resumes under its data's name).
    if old_config.replace(name=config.name) != config:
        raise ValueError(
            f"{out_dir} holds a run of another model ({old_config.name} "
            f"{old_config.layer_spec}); use a new output folder to train {config.name} "
            f"{config.layer_spec}."
        )
    if runs.is_finished(out_dir):
        raise FileExistsError(
            f"{out_dir} holds a finished run ({out_dir / MODEL_FILE}); use a new output folder "
            "(or delete that one) to train again."
        )
    fields = ("batch_size", "learning_rate", "weight_decay", "epochs", "warmup_epochs", "seed",
              "label_smoothing", "steps_per_epoch", "dtype_policy", "freeze_epochs", *AUGMENTATION_FIELDS)
    changed = [f for f in fields if getattr(old_training, f) != getattr(training, f)]
    if changed:
        raise ValueError(
            f"{out_dir} holds an unfinished run with different {', '.join(changed)}; "
            "resume with the same settings or use a new output folder."
        )
    old_data = runs.load_record(out_dir).get("data")
    if data_signature is not None and old_data is not None and old_data != data_signature:
        diff = sorted(k for k in set(old_data) | set(data_signature) if old_data.get(k) != data_signature.get(k))
        raise ValueError(
            f"{out_dir} holds an unfinished run on other data (different {', '.join(diff)}); resume "
            "with the same --data and limits, or use a new output folder."
        )
