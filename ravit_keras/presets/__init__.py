"""Trained models that ship with the package, loaded by name.

A preset is a trained model that ships: a training run folder kept in the
package (``ravit_keras.runs``: the model file, float32 with no optimizer state;
the run record with model, recipe and class names; the training log) plus
``card.json`` (data, command, host, measured accuracy), written by
``scripts/make_preset.py``. A preset is not an architecture configuration
(``get_config("cifar10")``, ``--arch cifar10``): it is one trained on one. Because a preset is a run folder, everything
that takes a run folder takes a preset: ``ravit convert --model preset:NAME``.

    >>> from ravit_keras.presets import from_preset
    >>> model = from_preset("ravit_1-3_cifar10")   # a trained RAViT, ready to convert

Each preset also ships ``metadata.json`` (keras-hub's keys: ``presets.metadata``) and
its int8 submodels in ``int8/`` (``manifest.json`` + ``branch_*.tflite``, converted by
``ravit convert`` with the thresholds calibrated on the images the card names), so
``ravit run``/``predict --model preset:NAME --mode int8`` need no dataset.
``from_preset`` and ``--model`` also take a local preset folder and ``hf://`` /
``kaggle://`` locations (``presets.locations``).

This module imports no TensorFlow until ``from_preset`` loads a model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ravit_keras.presets.locations import PresetLocationError, check_preset_folder, download, is_hub_location
from ravit_keras.runs import MODEL_FILE

__all__ = ["PRESETS_DIR", "PREFIX", "CARD_FILE", "MANIFEST_FILE", "PresetLocationError", "available_presets",
           "preset_dir", "preset_card", "locate", "from_preset", "resolve_model_path", "shipped_submodels"]

MANIFEST_FILE = "manifest.json"  # deploy.runtime.manifest.MANIFEST_FILE, without importing the runtime.

PRESETS_DIR = Path(__file__).resolve().parent
PREFIX = "preset:"
CARD_FILE = "card.json"


def available_presets() -> tuple[str, ...]:
    """Names of the presets in this installation."""
    return tuple(sorted(p.name for p in PRESETS_DIR.iterdir()
                        if p.is_dir() and (p / MODEL_FILE).is_file() and (p / CARD_FILE).is_file()))


def preset_dir(name: str) -> Path:
    """The run folder of preset ``name`` (``preset:`` prefix allowed).

    Raises:
        LookupError: no preset has that name (the message lists those that exist).
    """
    name = name[len(PREFIX):] if name.startswith(PREFIX) else name
    names = available_presets()
    if name not in names:
        raise LookupError(f"No preset named {name!r}; available: {', '.join(names) or '(none)'}.")
    return PRESETS_DIR / name


def preset_card(name: str) -> dict[str, Any]:
    """What a preset records about itself: data, command, host, measured accuracy."""
    return json.loads((preset_dir(name) / CARD_FILE).read_text())


def locate(spec: str) -> Path:
    """The local folder of a preset: a name (``preset:`` prefix allowed), a local preset
    folder (``model.keras`` + ``config.json``, and ``metadata.json``), or a hub location
    (``hf://OWNER/REPO``, ``kaggle://OWNER/MODEL/keras/VARIATION``), downloaded on first use.

    Raises:
        LookupError: no preset has that name.
        PresetLocationError (a ValueError): a hub location that cannot be read, or a
            folder that is not a preset.
    """
    spec = str(spec)
    if is_hub_location(spec):
        return download(spec)
    if spec.startswith(PREFIX) or spec in available_presets():
        return preset_dir(spec)
    folder = Path(spec)
    if folder.is_dir():
        return check_preset_folder(folder, spec)
    return preset_dir(spec)  # Names the presets that exist.


def from_preset(name: str, num_classes: int | None = None):
    """Loads a preset as a ``RAViT`` Keras model (uncompiled, float32): a shipped preset's
    name, a local preset folder, or an ``hf://`` / ``kaggle://`` location (``locate``).

    Args:
        num_classes: classes of the exit heads, as keras-hub's ``from_preset(...,
            num_classes=)``: another count than the preset's gives the preset's
            encoders with new, freshly initialised heads (to fine-tune on other
            classes; ``training.finetune.init_from``); None or the preset's count,
            the preset as it is.
    """
    from ravit_keras.model import load_ravit

    folder = locate(name)
    model = load_ravit(str(folder / MODEL_FILE))
    if num_classes is None or num_classes == model.ravit_config.num_classes:
        return model
    from ravit_keras.training.finetune import InitSource, finetune_config, init_from

    label = f"{PREFIX}{name.removeprefix(PREFIX)}" if name.removeprefix(PREFIX) in available_presets() else name
    source = InitSource(label, folder / MODEL_FILE, "", model)
    return init_from(source, finetune_config(source, num_classes))


def resolve_model_path(spec: str) -> str:
    """``preset:NAME`` -> that preset's run folder; ``hf://`` / ``kaggle://`` -> the downloaded
    folder; any other path unchanged."""
    return str(locate(spec)) if spec.startswith(PREFIX) or is_hub_location(spec) else spec


def shipped_submodels(model_path: str | Path, mode: str = "int8") -> Path | None:
    """The folder of the ``mode`` submodels a preset (or any model folder) ships beside its
    model (``FOLDER/MODE/manifest.json``), or None when it ships none."""
    folder = Path(model_path)
    folder = folder if folder.is_dir() else folder.parent
    converted = folder / mode
    return converted if (converted / MANIFEST_FILE).is_file() else None
