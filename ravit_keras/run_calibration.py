"""Which images calibrate a trained run's early-exit thresholds, decided from its run record.

The calibration holdout (``--calibration-holdout``, ``default_calibration_holdout``)
and which split calibrates (``calibration_plan``), with the smallest number of
images that can (``check_calibration_size``). A model trained on every training
image (no holdout) may instead record a fixed, seeded part of the TEST split as
its calibration images (``ReservedTestImages``): thresholds are then calibrated
on exactly those, and early-exit figures are reported on the rest of the test
split. No TensorFlow: the scheduler side and tools use it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ravit_keras.runs import read_record

# Fewer labelled images than this cannot place a threshold between confident and
# unsure images: one image alone sets it to ln C.
MIN_CALIBRATION_IMAGES = 20
# At most this many labelled images calibrate, in eval, convert and bench alike.
DEFAULT_CALIBRATION_IMAGES = 5000
CALIBRATION_SPLITS = ("auto", "calibration", "train", "test")
# The default calibration holdout (``default_calibration_holdout``): 5 %, >= 500 images, <= 20 %.
DEFAULT_CALIBRATION_HOLDOUT = 0.05
CALIBRATION_HOLDOUT_MIN_IMAGES = 500
CALIBRATION_HOLDOUT_MAX_SHARE = 0.20


# Calibration: which images the early-exit thresholds are calibrated on ---------------


@dataclass(frozen=True)
class ReservedTestImages:
    """A fixed, seeded part of the test split set aside to calibrate thresholds.

    For a model trained on every training image (no ``--calibration-holdout``):
    thresholds are calibrated on these ``images`` test images and every
    early-exit figure is measured on the other ``of - images``. The run record
    holds it as ``data: {"calibration": {"split": "test", "images": 2000,
    "seed": 0, "of": 10000}}``.

    The images are ``numpy.random.default_rng(seed).permutation(of)[:images]``
    (positions in the test split's order), so any tool (a notebook, a script over
    saved test logits) can draw the same ones.

    Attributes:
        images: how many test images calibrate.
        seed: seeds which ones.
        of: the size of the test split they were drawn from (None: not recorded).
    """

    images: int
    seed: int
    of: int | None = None

    @classmethod
    def from_record(cls, entry: Any) -> "ReservedTestImages | None":
        """The ``data.calibration`` entry of a run record (None when it is not a test subset)."""
        if not isinstance(entry, dict) or entry.get("split") != "test":
            return None
        of = entry.get("of")
        return cls(int(entry["images"]), int(entry.get("seed") or 0), None if of is None else int(of))

    def to_record(self) -> dict[str, Any]:
        """The ``data.calibration`` entry of a run record (and of a manifest)."""
        entry: dict[str, Any] = {"split": "test", "images": self.images, "seed": self.seed}
        if self.of is not None:
            entry["of"] = self.of
        return entry

    def check_size(self, num_test: int) -> None:
        """Refuses a test split of another size than the one the images were drawn from.

        Raises:
            ValueError: the test split is not the one the record names.
        """
        if self.of is not None and int(num_test) != self.of:
            raise ValueError(
                f"the model's calibration images are {self.images} of a {self.of}-image test split "
                f"(seed {self.seed}), but this test split has {num_test} images: give the dataset the "
                "model was trained on, whole (no --limit on it), or --calibration-split train")
        if self.images >= int(num_test):
            raise ValueError(f"a test split of {num_test} images has none left beside "
                             f"{self.images} calibration images")

    def calibration_index(self, num_test: int):
        """Positions (sorted) of the calibration images in a test split of ``num_test`` images."""
        import numpy as np

        self.check_size(num_test)
        return np.sort(np.random.default_rng(self.seed).permutation(int(num_test))[:self.images])

    def reported_index(self, num_test: int):
        """Positions (in order) of the test images the figures are reported on: all but calibration."""
        import numpy as np

        keep = np.ones(int(num_test), bool)
        keep[self.calibration_index(num_test)] = False
        return np.flatnonzero(keep)

    @property
    def description(self) -> str:
        of = f"{self.images} of {self.of}" if self.of else f"{self.images}"
        rest = f"; figures are reported on the other {self.of - self.images}" if self.of else ""
        return f"test images set aside for calibration ({of}, seed {self.seed}){rest}"


def reserved_test_images(model_path: str | os.PathLike) -> ReservedTestImages | None:
    """The test images a model's record sets aside for calibration (None when it sets none aside)."""
    return ReservedTestImages.from_record((read_record(model_path).get("data") or {}).get("calibration"))


@dataclass(frozen=True)
class CalibrationPlan:
    """Where a model's thresholds are calibrated.

    Attributes:
        split: "calibration" (the run's held-out training images), "train" or "test".
        fraction: the share of each class's training images the run held out (0: none).
        seed: the run's seed, which placed that holdout.
        generated_images: for generated data, how many images the run drew.
        note: a caveat to show the user (None when there is nothing to say).
        test_images: with split "test", the test images the record sets aside
            (``ReservedTestImages``): exactly those calibrate (None: the first test images).
    """

    split: str
    fraction: float
    seed: int
    generated_images: int | None = None
    note: str | None = None
    test_images: ReservedTestImages | None = None

    @property
    def carve_fraction(self) -> float:
        """The holdout to carve from the training images (0 when reading the test split)."""
        return self.fraction if self.split in ("calibration", "train") else 0.0

    def record(self, num_images: int, source: str | None = None) -> dict[str, Any]:
        """The images as a manifest's ``calibration`` entry (``deploy.runtime.calibration_set``):
        the test images set aside (all of them, however many of them calibrated), else the
        ``num_images`` that did; ``source`` names the dataset."""
        entry: dict[str, Any] = {"source": source, "split": self.split, "images": int(num_images)}
        if self.test_images is not None:
            entry.update(self.test_images.to_record())
        elif self.split == "calibration":
            entry.update(seed=self.seed, fraction=self.fraction)
        return {k: v for k, v in entry.items() if v is not None}

    @property
    def description(self) -> str:
        """What the images are, as reports and manifests state it."""
        if self.split == "test" and self.test_images is not None:
            return self.test_images.description
        return {"calibration": f"held-out training images never trained on ({self.fraction:.3g} of each class)",
                "train": "training images", "test": "test images"}[self.split]


def calibration_plan(model_path: str | os.PathLike, requested: str = "auto") -> CalibrationPlan:
    """Chooses the calibration split of a trained model from its run record.

    ``auto``: the training images the run held out (``--calibration-holdout``),
    which the model never saw; else the test images the record sets aside
    (``ReservedTestImages``: exactly those, also for ``test``); without either, the
    training split, with a note that this is optimistic.

    Raises:
        ValueError: "calibration" was asked of a model that records no holdout.
    """
    if requested not in CALIBRATION_SPLITS:
        raise ValueError(f"calibration split must be one of {', '.join(CALIBRATION_SPLITS)}, got {requested!r}.")
    record = read_record(model_path)
    data = record.get("data") or {}
    fraction = float(data.get("calibration_holdout") or 0.0)
    seed = int((record.get("training") or {}).get("seed") or 0)
    test_images = ReservedTestImages.from_record(data.get("calibration"))
    split, note = requested, None
    if split == "auto" and test_images is not None and fraction <= 0:
        split = "test"
        note = (f"note: thresholds are calibrated on the {test_images.description} "
                "(the model was trained on every training image; its run record sets these aside)")
    if split == "auto":
        split = "calibration" if fraction > 0 else "train"
        if split == "train":
            note = ("note: the model records no calibration holdout (ravit train --calibration-holdout); "
                    "thresholds are calibrated on training images, which is optimistic "
                    "(--calibration-split test uses the test split)")
    if split == "calibration" and fraction <= 0:
        raise ValueError(f"--calibration-split calibration: {model_path} records no calibration holdout "
                         "(train with --calibration-holdout, or pass --calibration-split test).")
    return CalibrationPlan(split, fraction, seed, data.get("generated_images"), note,
                           test_images if split == "test" else None)


def default_calibration_holdout(num_train_images: int) -> float:
    """The share of the training images a run holds out for calibration when none is given.

    ``min(max(5 %, 500 images), 20 %)`` of the ``num_train_images``: 5 % of a large
    set (2,500 of 50,000), 500 images of a small one (20 % of 2,500), and 20 % of a
    set under 2,500 images, where 500 would leave too little to train on.
    """
    n = int(num_train_images)
    if n <= 0:
        raise ValueError(f"num_train_images must be positive, got {num_train_images!r}.")
    return min(max(DEFAULT_CALIBRATION_HOLDOUT, CALIBRATION_HOLDOUT_MIN_IMAGES / n), CALIBRATION_HOLDOUT_MAX_SHARE)


def check_calibration_size(num_images: int) -> None:
    """Refuses a calibration set too small to place a threshold.

    Raises:
        ValueError: fewer than ``MIN_CALIBRATION_IMAGES`` images.
    """
    if num_images < MIN_CALIBRATION_IMAGES:
        raise ValueError(
            f"--calibration-images: {num_images} labelled images cannot calibrate early-exit thresholds; "
            f"give at least {MIN_CALIBRATION_IMAGES}.")
