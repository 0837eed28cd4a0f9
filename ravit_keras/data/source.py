"""``DataSource``: where a dataset is and how to read it, loaded split by split.

The command line's data flags (``--data``, ``--data-dir``, ``--holdout-fraction``,
``--skip-bad-images``) are one ``DataSource``; a notebook builds the same.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from ravit_keras.data.errors import DatasetError

# Errors TensorFlow raises for an image file it cannot decode.
_DECODE_ERRORS = ("InvalidArgumentError", "DataLossError", "UnknownError")


@dataclasses.dataclass(frozen=True)
class DataSource:
    """A dataset to read splits of.

    Args:
        data: "generated", "tfds:NAME" or a path (see ``load_split``).
        data_dir: tensorflow-datasets data directory (for tfds:NAME).
        holdout_fraction: share of training images held out as "test" where the
            source has no test split.
        skip_bad_images: leave out image files that cannot be decoded, calling
            ``warn`` with the reason for each (else the first one stops the work).
        warn: where the skipped files are reported (default: nowhere).
    """

    data: str
    data_dir: str | None = None
    holdout_fraction: float = 0.1
    skip_bad_images: bool = False
    warn: Callable[[str], None] | None = None

    @property
    def location_name(self) -> str:
        """The dataset without its local folder ("generated", "tfds:NAME", or the file or folder
        name): what a shipped manifest may record about it."""
        if self.is_generated or self.data.startswith("tfds:"):
            return self.data
        from pathlib import Path

        return Path(self.data).name or self.data

    @property
    def is_generated(self) -> bool:
        """The generated dataset, whose size is the number of images drawn."""
        return self.data == "generated"

    @property
    def name(self) -> str:
        """A short name for the dataset, for the model trained on it: the folder's name,
        the file's without its extension, the tfds name, or "generated"."""
        return dataset_name(self.data)

    def load(self, split: str, image_size, num_classes: int | None, limit: int | None = None,
             calibration_fraction: float = 0.0, seed: int = 0):
        """One split as a ``DataSplit`` (``num_classes`` sizes only the generated set)."""
        from ravit_keras.data.loading import load_split

        loaded = load_split(
            self.data, split, data_dir=self.data_dir, image_size=image_size,
            holdout_fraction=self.holdout_fraction, num_examples=limit,
            num_classes=num_classes if self.is_generated else None,
            calibration_fraction=calibration_fraction, seed=seed,
        )
        if self.skip_bad_images:
            loaded = loaded.without_unreadable(self.warn)
        return loaded


def dataset_name(data: str) -> str:
    """``DataSource.name`` of a ``--data`` value: ``tfds:tf_flowers`` -> tf_flowers,
    ``~/data/flowers/`` -> flowers, ``faces.npz`` -> faces, ``cifar-10-python.tar.gz``
    -> cifar-10-python. Characters other than letters, digits, '.', '_' and '-' become '-'."""
    import re
    from pathlib import Path

    if data.startswith("tfds:"):
        name = data[len("tfds:"):]
    else:
        path = Path(data).expanduser()
        name = path.name or path.resolve().name
        for suffix in (".tar.gz", ".tgz", ".tar", ".npz", ".zip"):
            if name.lower().endswith(suffix) and len(name) > len(suffix):
                name = name[: -len(suffix)]
                break
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "custom"


def naming_bad_images(split, work: Callable[[], Any]) -> Any:
    """Runs ``work()``; when TensorFlow fails to decode one of ``split``'s image files,
    raises a ``DatasetError`` naming the file instead of TensorFlow's message."""
    try:
        return work()
    except Exception as e:
        if split.files is None or type(e).__name__ not in _DECODE_ERRORS:
            raise
        bad = split.find_unreadable(limit=3)
        if not bad:
            raise
        raise DatasetError("; ".join(reason for _, reason in bad)
                           + ". Fix or remove the file, or pass --skip-bad-images.") from None


def matched(split, model_classes, name: str, notes: Callable[[str], None] = print):
    """``split`` with its labels matched to a model's classes by name (or refused);
    ``notes`` gets what was remapped."""
    from ravit_keras.data.classes import match_classes

    result, note = match_classes(split, model_classes, "the model")
    if note:
        notes(f"note: {name}: {note}")
    return result
