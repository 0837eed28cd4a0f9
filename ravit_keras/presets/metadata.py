"""A preset folder's ``metadata.json``, in keras-hub's shape.

keras-hub writes ``metadata.json`` beside every preset (``keras_version``,
``keras_hub_version``, ``parameter_count``, ``date_saved`` as ``%Y-%m-%d@%H:%M:%S``,
and on Kaggle ``tasks``); a preset here carries the same keys, with this package's
version as ``ravit_keras_version``, plus what a loader can check before it loads
anything: the model class, its classes and the converted submodels that ship.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

METADATA_FILE = "metadata.json"
TASKS = ("ImageClassifier", "EarlyExitImageClassifier")


def preset_metadata(model, class_names, converted: dict[str, str] | None = None,
                    date_saved: datetime.datetime | None = None) -> dict[str, Any]:
    """The ``metadata.json`` of a preset holding ``model`` (a ``RAViT``).

    Args:
        class_names: the model's classes, in output order.
        converted: conversion mode -> the folder of its submodels inside the preset
            (e.g. ``{"int8": "int8"}``).
        date_saved: when (default: now, UTC).
    """
    import keras

    from ravit_keras import __version__

    config = model.ravit_config
    when = date_saved or datetime.datetime.now(datetime.timezone.utc)
    return {
        "keras_version": keras.__version__,
        "ravit_keras_version": __version__,
        "parameter_count": int(model.count_params()),
        "date_saved": when.strftime("%Y-%m-%d@%H:%M:%S"),
        "tasks": list(TASKS),
        "class_name": type(model).__name__,
        "layers": config.layer_spec,
        "image_size": list(config.image_size),
        "num_classes": int(config.num_classes),
        "class_names": [str(n) for n in class_names],
        "converted": dict(converted or {}),
    }


def write_metadata(folder: str | Path, metadata: dict[str, Any]) -> Path:
    """Writes ``folder/metadata.json`` atomically."""
    from ravit_keras.io_utils import atomic_write_text

    path = Path(folder) / METADATA_FILE
    atomic_write_text(path, json.dumps(metadata, indent=2) + "\n")
    return path


def read_metadata(folder: str | Path) -> dict[str, Any] | None:
    """``folder/metadata.json`` (None when the folder has none)."""
    path = Path(folder) / METADATA_FILE
    return json.loads(path.read_text()) if path.is_file() else None
