"""The training run folder: its file names, its record, and the policy read from it.

A run folder is what ``train`` writes and what ``eval``, ``convert``, ``bench``,
``predict`` and the shipped presets read::

    config.json        the run record: model, recipe, class names, data signature
    log.csv            one row per finished epoch
    epoch_times.json   each epoch's wall time, across resumes
    backup/            the checkpoint of an unfinished run
    model.keras        the trained model (only once training finished)

This module is the one owner of those names and of the record: the labels'
names (with the one placeholder spelling for a model that has none), the data
signature a resumed run must match, the epoch times. Which images calibrate a
run's early-exit thresholds, decided from the same record, is
``run_calibration``. It imports no TensorFlow, so the scheduler side and tools
can use it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ravit_keras.io_utils import atomic_write_json

MODEL_FILE = "model.keras"
RECORD_FILE = "config.json"
CONFIG_FILE = RECORD_FILE  # The name train.py has always exported.
LOG_FILE = "log.csv"
BACKUP_DIR = "backup"
EPOCH_TIMES_FILE = "epoch_times.json"
RUN_FILES = (RECORD_FILE, LOG_FILE, EPOCH_TIMES_FILE, BACKUP_DIR + "/", MODEL_FILE)

# How many images the generated dataset draws when --limit-train is not given; a
# run on it records the number, since its holdouts are carved from those images.
DEFAULT_GENERATED_IMAGES = 2000


# Class names -----------------------------------------------------------------------


def placeholder_class_names(num_classes: int) -> list[str]:
    """Names for labels known by position only: ``class_0``, ``class_1``, ..."""
    return [_placeholder(i) for i in range(int(num_classes))]


def _placeholder(i: int) -> str:
    return f"class_{i}"


def are_placeholders(names: Sequence[Any]) -> bool:
    """True when ``names`` say nothing but positions (placeholders or the digits 0, 1, ...)."""
    return all(str(n) in (_placeholder(i), str(i)) for i, n in enumerate(names))


def class_names_or_placeholders(names: Sequence[Any] | None, num_classes: int) -> list[str]:
    """``names`` as strings, or placeholders when there are none."""
    return [str(n) for n in names] if names else placeholder_class_names(num_classes)


# Paths -----------------------------------------------------------------------------


def run_folder(model_path: str | os.PathLike) -> Path:
    """The run folder of a model path: the folder itself, or the folder a ``.keras`` file is in."""
    p = Path(model_path)
    return p if p.is_dir() else p.parent


def model_file(model_path: str | os.PathLike) -> Path:
    """The ``.keras`` file of a model path: ``FOLDER/model.keras`` for a run folder."""
    p = Path(model_path)
    return p / MODEL_FILE if p.is_dir() else p


def is_finished(out_dir: str | os.PathLike) -> bool:
    """A run whose final model is saved and whose checkpoint is gone."""
    out = Path(out_dir)
    return (out / MODEL_FILE).exists() and not (out / BACKUP_DIR).exists()


def has_checkpoint(out_dir: str | os.PathLike) -> bool:
    """Whether ``out_dir`` holds an unfinished run's checkpoint (training resumes from it)."""
    backup = Path(out_dir) / BACKUP_DIR
    return backup.is_dir() and any(backup.iterdir())


# The run record ----------------------------------------------------------------------


def has_record(out_dir: str | os.PathLike) -> bool:
    """Whether ``out_dir`` holds a run record."""
    return (Path(out_dir) / RECORD_FILE).exists()


def load_record(out_dir: str | os.PathLike) -> dict[str, Any]:
    """The run record of ``out_dir``.

    Raises:
        FileNotFoundError: ``out_dir`` is not a training run folder.
        ValueError: the record is there but torn or not a run record (names the file).
    """
    path = Path(out_dir) / RECORD_FILE
    if not path.exists():
        raise FileNotFoundError(f"No {RECORD_FILE} in {out_dir}: not a training run folder.")
    return _parse_record(path)


def read_record(model_path: str | os.PathLike) -> dict[str, Any]:
    """The run record beside a trained model (``{}`` when there is none).

    Raises:
        ValueError: a record is there but cannot be read (torn, not JSON, not an
            object): the answers would otherwise be named by placeholders silently.
    """
    path = run_folder(model_path) / RECORD_FILE
    if not path.is_file():
        return {}
    return _parse_record(path)


def _parse_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError) as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors.
        raise ValueError(f"{path}: the run record cannot be read ({err}); restore it from a copy "
                         "(or train again): the model's class names and calibration holdout are in it.") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path}: not a run record (a JSON {type(record).__name__}, not an object).")
    return record


def write_record(out_dir: str | os.PathLike, model: dict[str, Any], training: dict[str, Any],
                 class_names: Sequence[Any] | None = None, data: dict[str, Any] | None = None,
                 backend: str | None = None, init: dict[str, Any] | None = None) -> Path:
    """Writes the run record (atomically): model and recipe (with the Keras ``backend`` it
    trains on, as ``training.backend``), what names the data, and (``init``) the trained
    model a fine-tuning run started from."""
    if backend is not None:
        training = {**training, "backend": backend}
    record: dict[str, Any] = {"model": model, "training": training}
    if class_names is not None:
        record["class_names"] = [str(n) for n in class_names]
    if data is not None:
        record["data"] = data
    if init is not None:
        record["init"] = init
    return atomic_write_json(Path(out_dir) / RECORD_FILE, record)


def recorded_backend(run: str | os.PathLike) -> str:
    """The Keras backend a run trained on; records from before it was kept are TensorFlow's."""
    return str(read_record(run).get("training", {}).get("backend", "tensorflow"))


def copy_record(run: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Copies a run's record and training log into ``dest`` (a preset folder)."""
    import shutil

    for name in (RECORD_FILE, LOG_FILE):
        shutil.copy(Path(run) / name, Path(dest) / name)


def class_names(model_path: str | os.PathLike, num_classes: int) -> list[str]:
    """The class names a run recorded beside a trained model, else placeholders (no
    record, a record without names, or names of another model: another count).

    Raises:
        ValueError: the record is unreadable, or its ``class_names`` is not a list
            (names the file and the key).
    """
    names = read_record(model_path).get("class_names")
    if names is not None and not isinstance(names, list):
        raise ValueError(f"{run_folder(model_path) / RECORD_FILE}: 'class_names' is a {type(names).__name__}, "
                         "not a list of names.")
    if names and len(names) == num_classes:
        return [str(n) for n in names]
    return placeholder_class_names(num_classes)


def data_signature(source: str, num_examples: int, class_names: Sequence[Any], holdout_fraction: float,
                   calibration_holdout: float, generated_images: int | None = None) -> dict[str, Any]:
    """What identifies a run's training data; a resumed run must be given the same."""
    signature = {"source": str(source), "num_examples": int(num_examples),
                 "class_names": [str(n) for n in class_names], "holdout_fraction": holdout_fraction,
                 "calibration_holdout": calibration_holdout}
    if source == "generated":
        # The generated set depends on how many images are drawn: the holdout is of these.
        signature["generated_images"] = generated_images or DEFAULT_GENERATED_IMAGES
    return signature


# Epoch times -----------------------------------------------------------------------


def read_epoch_times(out_dir: str | os.PathLike) -> dict[int, float]:
    """``{epoch: seconds}`` recorded by ``EpochTimer`` in a run folder (empty if none)."""
    path = Path(out_dir) / EPOCH_TIMES_FILE
    if not path.is_file():
        return {}
    try:
        return {int(e): float(s) for e, s in json.loads(path.read_text())["seconds_per_epoch"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: not an epoch-times file ({err}).") from err


def write_epoch_times(out_dir: str | os.PathLike, seconds: dict[int, float]) -> Path:
    """Writes ``{epoch: seconds}`` (atomically)."""
    return atomic_write_json(Path(out_dir) / EPOCH_TIMES_FILE,
                             {"seconds_per_epoch": {str(e): seconds[e] for e in sorted(seconds)}})


def training_seconds(out_dir: str | os.PathLike, epochs: int) -> float | None:
    """Sum of the recorded epoch times of a run of ``epochs`` epochs, across resumes;
    None unless every epoch was timed (a run started before the timer existed)."""
    seconds = read_epoch_times(out_dir)
    if sorted(seconds) != list(range(epochs)):
        return None
    return sum(seconds.values())

