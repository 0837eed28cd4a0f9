"""The manifest's ``calibration`` entry: which labelled images calibrated the thresholds.

``thresholds_calibrated_on`` says it in words; this says it in fields a runtime can
act on, so ``ravit run`` on the test split leaves out the images the thresholds were
calibrated on (as ``ravit eval`` does from a run record)::

    "calibration": {"source": "cifar-10-batches-py", "split": "test",
                    "images": 2000, "seed": 0, "of": 10000, "used": 2000}

``split`` is "test" (test images set aside: ``run_calibration.ReservedTestImages``, the images
``numpy.random.default_rng(seed).permutation(of)[:images]``; without ``seed``, the
first ``images`` of the split), "calibration" (training images the run held out and
never trained on) or "train". ``used`` is how many of them calibrated (at most
``images``); ``source`` the dataset's name (its file or folder name, never a local
path). The field is optional; the Android core does not read it (its parser ignores
keys it does not use).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ravit_keras.deploy.runtime import fields as f

SPLITS = ("test", "calibration", "train")


@dataclasses.dataclass(frozen=True)
class CalibrationSet:
    """The labelled images a conversion calibrated its thresholds on (see the module doc)."""

    split: str
    images: int
    source: str | None = None
    seed: int | None = None
    of: int | None = None
    used: int | None = None
    fraction: float | None = None

    @classmethod
    def from_dict(cls, d: Any, key: str = "calibration") -> "CalibrationSet":
        if not isinstance(d, dict):
            raise f.bad(key, f"should be an object, got {d!r}")
        split = f.string(f.get(d, "split", key), f"{key}.split")
        if split not in SPLITS:
            raise f.bad(f"{key}.split", f"should be one of {SPLITS}, got {split!r}")
        opt = lambda name, read: None if d.get(name) is None else read(d[name], f"{key}.{name}")  # noqa: E731
        entry = cls(split=split, images=f.positive_int(f.get(d, "images", key), f"{key}.images"),
                    source=opt("source", f.string), seed=opt("seed", f.integer), of=opt("of", f.positive_int),
                    used=opt("used", f.positive_int), fraction=opt("fraction", f.number))
        if entry.of is not None and entry.images >= entry.of:
            raise f.bad(f"{key}.images", f"{entry.images} of a {entry.of}-image split leaves none to report on")
        if entry.used is not None and entry.used > entry.images:
            raise f.bad(f"{key}.used", f"{entry.used} is more than the {entry.images} images set aside")
        return entry

    def to_dict(self) -> dict[str, Any]:
        d = {"source": self.source, "split": self.split, "images": self.images, "seed": self.seed,
             "of": self.of, "used": self.used, "fraction": self.fraction}
        return {k: v for k, v in d.items() if v is not None}

    def excluded_index(self, split: str, num_images: int):
        """Positions of the calibration images in a ``split`` of ``num_images`` images, or
        None when that split holds none of them (another split, or a test split of another
        size than the one they were drawn from)."""
        import numpy as np

        if split != "test" or self.split != "test":
            return None
        if self.of is not None and int(num_images) != self.of:
            return None
        if self.seed is None:  # The first images of the split.
            return np.arange(min(self.images, int(num_images)))
        from ravit_keras.run_calibration import ReservedTestImages

        return ReservedTestImages(self.images, self.seed, self.of).calibration_index(num_images)

    @property
    def description(self) -> str:
        """The images in words, e.g. "2000 of the 10000 test images of cifar-10-batches-py (seed 0)"."""
        of = f" of the {self.of}" if self.of else ""
        chosen = f", seed {self.seed}" if self.seed is not None else (", the first" if self.split == "test" else "")
        source = f" of {self.source}" if self.source else ""
        return f"{self.images}{of} {self.split} images{source}{chosen}"
