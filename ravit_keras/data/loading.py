"""``load_split``: one entry point that recognises every supported source."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

from ravit_keras.data.cifar10 import find_cifar10, load_cifar10
from ravit_keras.data.generated import load_generated
from ravit_keras.data.image_folder import find_image_folder, load_image_folder
from ravit_keras.data.npz import load_npz
from ravit_keras.data.split import CALIBRATION, SPLITS, DataSplit, normalize_image_size
from ravit_keras.data.tiny_imagenet import find_tiny_imagenet, load_tiny_imagenet

_SUPPORTED_SOURCES = """Supported sources:
  - "generated": synthetic dataset made in memory
  - "tfds:NAME": a prepared TensorFlow Datasets dataset (pass data_dir / --data-dir)
  - CIFAR-10 python version: the cifar-10-batches-py folder, a folder containing it,
    or the cifar-10-python.tar.gz archive
  - Tiny ImageNet: the tiny-imagenet-200 folder (wnids.txt, train/<wnid>/images/)
    or a folder containing it
  - an image folder: root/<class>/*.jpg|jpeg|png, or root/train/<class>/ and
    root/test/<class>/ (also val/ or validation/ for the test split)
  - an .npz file with x_train, y_train, x_test, y_test (uint8 NHWC images)"""



def load_split(
    source: str,
    split: str = "train",
    *,
    data_dir: str | None = None,
    image_size: tuple[int, int] | int | None = None,
    holdout_fraction: float = 0.1,
    seed: int = 0,
    num_examples: int | None = None,
    num_classes: int | None = None,
    calibration_fraction: float = 0.0,
) -> DataSplit:
    """Loads one split of an image classification dataset.

    Folder sources (Tiny ImageNet, image folders) are listed in a seeded random
    order, so that the first `num_examples` are a random sample and a finite
    shuffle buffer mixes classes. When such a source has no test images (e.g.
    Tiny ImageNet without `val/`, or a plain class-folder tree), "test" is a
    seeded, stratified holdout of `holdout_fraction` of each class and "train"
    is the rest; the same `seed` gives the same, disjoint pair.

    Args:
        source: `"generated"`, `"tfds:NAME"`, or a path (see module docstring).
        split: `"train"`, `"test"` or `"calibration"`. For tfds datasets with no
            "test" split (e.g. imagenet2012), "test" reads "validation". With
            `calibration_fraction` f > 0, "calibration" is a seeded, stratified f of
            each class of the training images and "train" is the rest: thresholds
            calibrated on images the training never saw.
        data_dir: folder of prepared tfds datasets (tfds sources only).
        image_size: int or `(height, width)`; images are resized to it when
            they differ. Required for a fixed size when images vary.
        holdout_fraction: float in (0, 1), share of each class held out as
            "test" when the source has no test images.
        seed: int, seeds generation, holdouts and folder order.
        num_examples: optional int; keeps the first N examples (for
            "generated", the number to generate; default 2000 train, 500 test).
        calibration_fraction: float in [0, 1), see `split`.
        num_classes: optional int; for "generated" the number of classes (2 to
            10, default 10); for files, keeps only the first `num_classes`
            classes (labels below it).

    Returns:
        A `DataSplit`.

    Raises:
        FileNotFoundError: for a missing path, or a tfds dataset not prepared.
        ValueError: for a bad argument, unknown layout or malformed file.
    """
    if split == CALIBRATION and not calibration_fraction:
        raise ValueError("split 'calibration' needs calibration_fraction > 0 (the share of the training "
                         "images held out for it).")
    if calibration_fraction and split in ("train", CALIBRATION):
        if not 0.0 < calibration_fraction < 1.0:
            raise ValueError(f"calibration_fraction must be in [0, 1), got {calibration_fraction}.")
        generated = os.fspath(source) == "generated"
        # The holdout is carved from the whole training split, so that any limit keeps
        # the two apart (the generated set is as many images as asked for).
        full = _load_source(source, "train", data_dir=data_dir, image_size=image_size,
                            holdout_fraction=holdout_fraction, seed=seed,
                            num_examples=num_examples if generated else None, num_classes=num_classes)
        carved = full.carved(calibration_fraction, seed, keep=split)
        return carved if generated else carved.take(num_examples)
    return _load_source(source, split, data_dir=data_dir, image_size=image_size,
                        holdout_fraction=holdout_fraction, seed=seed, num_examples=num_examples,
                        num_classes=num_classes)


def _load_source(
    source: str,
    split: str = "train",
    *,
    data_dir: str | None = None,
    image_size: tuple[int, int] | int | None = None,
    holdout_fraction: float = 0.1,
    seed: int = 0,
    num_examples: int | None = None,
    num_classes: int | None = None,
) -> DataSplit:
    """``load_split`` without the calibration holdout: one split as the source defines it."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {(*SPLITS, CALIBRATION)}, got {split!r}.")
    size = None if image_size is None else normalize_image_size(image_size)
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}.")
    if num_examples is not None and (int(num_examples) != num_examples or num_examples < 1):
        raise ValueError(f"num_examples must be a positive integer, got {num_examples!r}.")
    if num_classes is not None and (int(num_classes) != num_classes or num_classes < 1):
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}.")
    if not isinstance(source, (str, os.PathLike)):
        raise ValueError(f"source must be a string or path, got {source!r}.")
    source_str = os.fspath(source)

    if source_str == "generated":
        return load_generated(split, size, seed, num_examples, num_classes)
    if source_str.startswith("tfds:"):
        from ravit_keras.data.tfds_source import load_tfds  # TensorFlow only for tfds.

        return load_tfds(source_str[len("tfds:"):], split, data_dir, size, num_examples, num_classes)

    path = Path(source_str).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"Dataset path {source_str!r} does not exist. Pass an existing folder or file, "
            "'generated', or 'tfds:NAME'."
        )
    kwargs = dict(
        split=split, image_size=size, holdout_fraction=holdout_fraction, seed=seed,
        num_examples=num_examples, num_classes=num_classes,
    )
    if path.is_file():
        if path.suffix.lower() == ".npz":
            return load_npz(path, split, size, num_examples, num_classes)
        if tarfile.is_tarfile(path):
            return load_cifar10(path, split, size, num_examples, num_classes)
        raise ValueError(f"Unsupported dataset file {str(path)!r}.\n{_SUPPORTED_SOURCES}")

    cifar = find_cifar10(path)
    if cifar is not None:
        return load_cifar10(cifar, split, size, num_examples, num_classes)
    tiny = find_tiny_imagenet(path)
    if tiny is not None:
        return load_tiny_imagenet(tiny, **kwargs)
    layout = find_image_folder(path)
    if layout is not None:
        return load_image_folder(layout, **kwargs)
    raise ValueError(
        f"Unrecognised dataset folder {str(path)!r}: it matches none of the supported "
        f"layouts.\n{_SUPPORTED_SOURCES}"
    )
