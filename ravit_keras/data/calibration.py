"""The labelled images a trained model's early-exit thresholds are calibrated on.

Which split (the run's held-out training images, the test images the run
record sets aside, else the training or test split) is
``ravit_keras.run_calibration.calibration_plan``'s choice; this reads it, so ``ravit eval``,
``convert``, ``bench`` and a notebook calibrate on the same images.

``load_reported`` is the other side: the images a figure is reported on, which
for a model whose record sets test images aside for calibration
(``run_calibration.ReservedTestImages``) is the test split without those images whenever
thresholds are calibrated.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from ravit_keras import run_calibration, runs
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
        split: "auto", "calibration", "train" or "test" (``run_calibration.calibration_plan``).
        notes: receives the caveats (an optimistic split, labels remapped).

    Returns:
        ``(DataSplit, description)``, e.g. ``(..., "training images")``.
    """
    plan = run_calibration.calibration_plan(model_path, split)
    if plan.note:
        notes(plan.note)
    if model_classes is None:
        model_classes = runs.class_names(model_path, num_classes)
    if plan.test_images is not None:
        return _reserved_test_calibration(source, plan.test_images, image_size, num_classes, num_images,
                                          model_classes, notes), plan.description
    # The generated set is as many images as drawn: draw what training drew, so the holdout matches.
    drawn = plan.generated_images if source.is_generated else None
    loaded = source.load(plan.split, image_size, num_classes, drawn or num_images,
                         calibration_fraction=plan.carve_fraction, seed=plan.seed)
    loaded = loaded.take(num_images)
    return matched(loaded, model_classes, f"{source.data} {plan.split}", notes), plan.description


def _reserved_test_calibration(source: DataSource, reserved: run_calibration.ReservedTestImages, image_size,
                               num_classes, num_images: int, model_classes, notes):
    """Exactly the test images the run record sets aside (the first ``num_images`` of them)."""
    test = source.load("test", image_size, num_classes)
    calibration = test.subset(reserved.calibration_index(test.num_examples))
    if num_images < calibration.num_examples:
        notes(f"note: thresholds are calibrated on {num_images} of the {calibration.num_examples} test images "
              "set aside for it (--calibration-images)")
    return matched(calibration.take(num_images), model_classes, f"{source.data} test (calibration part)", notes)


def load_reported(source: DataSource, model_path: str | os.PathLike, split: str, *, image_size,
                  num_classes: int, limit: int | None = None, calibrating: bool = True,
                  notes: Callable[[str], None] = _say):
    """The images a model's figures on ``split`` are reported on, and how many were set aside.

    For the test split of a model whose run record sets test images aside for
    calibration (``run_calibration.ReservedTestImages``), those images are left out when
    ``calibrating`` (thresholds calibrated on them, or taken from a conversion that
    was): the figures are measured on the rest only. Without calibration (no early
    exit, or thresholds given by hand) the whole split is reported, with a note
    saying which images the model's thresholds would come from. ``limit`` applies
    after the exclusion. Labels are not yet matched to the model's classes.

    Returns:
        ``(DataSplit, excluded)``: the split and how many images were left out (0: none).
    """
    reserved = run_calibration.reserved_test_images(model_path) if split == "test" else None
    if reserved is None:
        return source.load(split, image_size, num_classes, limit), 0
    test = source.load(split, image_size, num_classes)
    if not calibrating:
        notes(f"note: {model_path} calibrates its thresholds on {reserved.description}; "
              f"without calibrated thresholds all {test.num_examples} test images are reported")
        return test.take(limit), 0
    reported = test.subset(reserved.reported_index(test.num_examples)).take(limit)
    notes(f"note: reporting on {reported.num_examples} test images: the {reserved.images} that calibrate "
          f"{Path(str(model_path)).name}'s thresholds (seed {reserved.seed}) are left out")
    return reported, reserved.images


def load_reported_converted(source: DataSource, calibration, split: str, *, image_size, num_classes: int,
                            limit: int | None = None, calibrating: bool = True, model_name: str = "the model",
                            notes: Callable[[str], None] = _say):
    """``load_reported`` for converted submodels: the manifest's ``calibration`` entry
    (``deploy.runtime.calibration_set.CalibrationSet``, None when it has none) names the
    images to leave out instead of a run record.

    Returns:
        ``(DataSplit, excluded)``: the split and how many images were left out (0: none).
    """
    if calibration is None or calibration.split != "test" or split != "test":
        return source.load(split, image_size, num_classes, limit), 0
    full = source.load(split, image_size, num_classes)
    index = calibration.excluded_index(split, full.num_examples)
    where = f"{model_name}'s thresholds were calibrated on {calibration.description}"
    if index is None:
        notes(f"note: {where}; this test split has {full.num_examples} images, so it is another one and "
              "none are left out")
        return full.take(limit), 0
    if not calibrating:
        notes(f"note: {where}; with thresholds given by hand all {full.num_examples} test images are reported")
        return full.take(limit), 0
    import numpy as np

    keep = np.ones(full.num_examples, bool)
    keep[index] = False
    reported = full.subset(np.flatnonzero(keep)).take(limit)
    notes(f"note: reporting on {reported.num_examples} test images: the {len(index)} that calibrated "
          f"{model_name}'s thresholds are left out ({calibration.description})")
    return reported, int(len(index))
