"""The labelled images a trained model's early-exit thresholds are calibrated on.

Which split (the run's held-out training images, else the training or test
split) is ``ravit_keras.runs.calibration_plan``'s choice; this reads it, so
``ravit eval``, ``convert``, ``bench`` and a notebook calibrate on the same images.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from ravit_keras import runs
from ravit_keras.data.source import DataSource, matched


def _say(text: str) -> None:
    print(text, flush=True)


def load_calibration(source: DataSource, model_path: str | os.PathLike, *, image_size, num_classes: int,
                     num_images: int, model_classes: Sequence[str] | None = None, split: str = "auto",
                     notes: Callable[[str], None] = _say):
    """The calibration images of a trained model, and what they are.

    Args:
        source: the dataset the model was trained on.
        model_path: the trained model (its run record names the holdout and seed).
        image_size, num_classes: the model's input size and classes.
        num_images: how many images to take.
        model_classes: the model's class names (default: its run record's).
        split: "auto", "calibration", "train" or "test" (``runs.calibration_plan``).
        notes: receives the caveats (an optimistic split, labels remapped).

    Returns:
        ``(DataSplit, description)``, e.g. ``(..., "training images")``.
    """
    plan = runs.calibration_plan(model_path, split)
    if plan.note:
        notes(plan.note)
    if model_classes is None:
        model_classes = runs.class_names(model_path, num_classes)
    # The generated set is as many images as drawn: draw what training drew, so the holdout matches.
    drawn = plan.generated_images if source.is_generated else None
    loaded = source.load(plan.split, image_size, num_classes, drawn or num_images,
                         calibration_fraction=plan.carve_fraction, seed=plan.seed)
    loaded = loaded.take(num_images)
    return matched(loaded, model_classes, f"{source.data} {plan.split}", notes), plan.description
