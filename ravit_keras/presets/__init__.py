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

This module imports no TensorFlow until ``from_preset`` loads a model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ravit_keras.runs import MODEL_FILE

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


def from_preset(name: str, num_classes: int | None = None):
    """Loads the trained preset ``name`` as a ``RAViT`` Keras model (uncompiled, float32).

    Args:
        num_classes: classes of the exit heads, as keras-hub's ``from_preset(...,
            num_classes=)``: another count than the preset's gives the preset's
            encoders with new, freshly initialised heads (to fine-tune on other
            classes; ``training.finetune.init_from``); None or the preset's count,
            the preset as it is.
    """
    from ravit_keras.model import load_ravit

    model = load_ravit(str(preset_dir(name) / MODEL_FILE))
    if num_classes is None or num_classes == model.ravit_config.num_classes:
        return model
    from ravit_keras.training.finetune import InitSource, finetune_config, init_from

    source = InitSource(f"{PREFIX}{name.removeprefix(PREFIX)}", preset_dir(name) / MODEL_FILE, "", model)
    return init_from(source, finetune_config(source, num_classes))


def resolve_model_path(spec: str) -> str:
    """``preset:NAME`` -> that preset's run folder; any other path unchanged."""
    return str(preset_dir(spec)) if spec.startswith(PREFIX) else spec
