"""Folders of class sub-folders (optionally split into ``train/`` and ``test/``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ravit_keras.data.checks import check_class_names
from ravit_keras.data.split import (
    DataSplit,
    holdout,
    seeded_order,
    split_from_files,
    take_classes,
)
from ravit_keras.images import ImageError, image_size, list_images


def _class_folders(root: Path) -> dict[str, list[str]]:
    """Maps each sub-folder of `root` that holds images to its image files."""
    if not root.is_dir():
        return {}
    classes = {}
    for child in sorted(root.iterdir()):
        if child.is_dir() and not child.name.startswith("."):
            files = list_images(child)
            if files:
                classes[child.name] = files
    # A folder name becomes a class name: it must be text a CSV row or a JSON file can carry.
    check_class_names(list(classes), f"class folders of {str(root)!r}")
    return classes


def find_image_folder(path: Path):
    """Returns `(train classes, test classes or None)` for an image folder, else None."""
    train = _class_folders(path / "train")
    if train:
        for name in ("test", "val", "validation"):
            test = _class_folders(path / name)
            if test:
                return train, test
        return train, None
    classes = _class_folders(path)
    if classes:
        return classes, None
    return None


def load_image_folder(layout, *, split, image_size, holdout_fraction, seed,
                       num_examples, num_classes) -> DataSplit:
    train, test = layout
    class_names = take_classes(sorted(train), num_classes)
    index = {c: i for i, c in enumerate(class_names)}
    if test is not None:
        unknown = sorted(set(test) - set(train))
        if unknown:
            raise ValueError(
                f"Test class folders {unknown} have no training folder; classes are "
                f"{sorted(train)}."
            )
    chosen = test if (split == "test" and test is not None) else train
    files, labels = [], []
    for name, found in chosen.items():
        if name in index:
            files += found
            labels += [index[name]] * len(found)
    files, labels = np.asarray(files, dtype=object), np.asarray(labels, dtype=np.int64)
    if test is None:
        files, labels = holdout(files, labels, split, holdout_fraction, seed)
    files, labels = seeded_order(files, labels, seed, split, num_examples)
    target = image_size or _common_image_size(files)
    return split_from_files(files, labels, class_names, target, jpeg_only=False)


def _common_image_size(files) -> tuple[int, int] | None:
    """The (h, w) shared by all files (header reads only), or None if they vary."""
    sizes = set()
    for file in files:
        try:
            sizes.add(image_size(file))
        except ImageError:
            continue  # Named when it is read (or left out with --skip-bad-images).
        if len(sizes) > 1:
            return None
    return sizes.pop() if sizes else None
