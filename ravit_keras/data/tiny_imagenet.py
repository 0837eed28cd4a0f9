"""The official ``tiny-imagenet-200`` folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ravit_keras.data.split import (
    DataSplit,
    holdout,
    seeded_order,
    split_from_files,
    take_classes,
)
from ravit_keras.images import list_images


def find_tiny_imagenet(path: Path) -> Path | None:
    for candidate in (path, path / "tiny-imagenet-200"):
        if (candidate / "wnids.txt").is_file() and (candidate / "train").is_dir():
            return candidate
    return None


def load_tiny_imagenet(root: Path, *, split, image_size, holdout_fraction, seed,
                        num_examples, num_classes) -> DataSplit:
    """Reads the official tiny-imagenet-200 folder; labels follow sorted wnids."""
    wnids = sorted({line.strip() for line in (root / "wnids.txt").read_text().splitlines()} - {""})
    if not wnids:
        raise ValueError(f"{str(root / 'wnids.txt')!r} lists no classes.")
    wnids = take_classes(wnids, num_classes)
    words = {}
    words_file = root / "words.txt"
    if words_file.is_file():
        for line in words_file.read_text(encoding="utf-8", errors="replace").splitlines():
            wnid, _, text = line.partition("\t")
            words[wnid.strip()] = text.split(",")[0].strip()
    class_names = [words.get(w) or w for w in wnids]
    index = {w: i for i, w in enumerate(wnids)}

    val_dir = root / "val"
    annotations = val_dir / "val_annotations.txt"
    has_val = annotations.is_file() and (val_dir / "images").is_dir()
    if split == "test" and has_val:
        files, labels = [], []
        for line in annotations.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 2 and parts[1].strip() in index:
                files.append(str(val_dir / "images" / parts[0].strip()))
                labels.append(index[parts[1].strip()])
        files, labels = np.asarray(files, dtype=object), np.asarray(labels, dtype=np.int64)
    else:
        files, labels = [], []
        for i, wnid in enumerate(wnids):
            folder = root / "train" / wnid
            if not folder.is_dir():
                raise ValueError(f"Tiny ImageNet folder {str(root)!r} has no train/{wnid}/.")
            found = list_images(folder)
            files += found
            labels += [i] * len(found)
        files, labels = np.asarray(files, dtype=object), np.asarray(labels, dtype=np.int64)
        if not has_val:
            files, labels = holdout(files, labels, split, holdout_fraction, seed)
    files, labels = seeded_order(files, labels, seed, split, num_examples)
    # The official images are all 64x64; any other size is resized to that.
    target = image_size or (64, 64)
    return split_from_files(files, labels, class_names, target, jpeg_only=True)

