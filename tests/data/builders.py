"""Tiny datasets in the official layouts, for the data tests."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from ravit_keras import data

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
CLASS_COLOURS = [(220, 30, 30), (30, 200, 30), (30, 30, 220)]


# Fixtures: tiny datasets in the official layouts ----------------------------


def cifar_batch(x: np.ndarray, y: np.ndarray, label: str) -> bytes:
    rows = x.transpose(0, 3, 1, 2).reshape(len(x), 3072)  # Official channel-first rows.
    return pickle.dumps(
        {b"batch_label": label.encode(), b"labels": [int(v) for v in y], b"data": rows,
         b"filenames": [b"x.png"] * len(y)},
        protocol=2,
    )


def write_jpeg(path: Path, colour, size=(64, 64)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size[1], size[0]), colour).save(path, quality=95)


def make_tiny_imagenet(root: Path, with_val: bool, per_class: int = 5) -> Path:
    wnids = ["n003", "n001", "n002"]  # Unsorted on purpose: labels follow sorted wnids.
    words = {"n001": "goldfish, Carassius auratus", "n002": "bullfrog", "n003": "tabby, tabby cat"}
    root.mkdir(parents=True)
    (root / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    (root / "words.txt").write_text(
        "".join(f"{w}\t{t}\n" for w, t in words.items()) + "n999\tunused class\n"
    )
    for i, wnid in enumerate(sorted(wnids)):
        for k in range(per_class):
            write_jpeg(root / "train" / wnid / "images" / f"{wnid}_{k}.JPEG", CLASS_COLOURS[i])
    if with_val:
        lines = []
        for k, wnid in enumerate(["n002", "n001", "n003", "n002"]):
            write_jpeg(root / "val" / "images" / f"val_{k}.JPEG", CLASS_COLOURS[sorted(wnids).index(wnid)])
            lines.append(f"val_{k}.JPEG\t{wnid}\t0\t0\t63\t63\n")
        (root / "val" / "val_annotations.txt").write_text("".join(lines))
    return root


def write_png(path: Path, colour, size):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size[1], size[0]), colour).save(path)


def labels_of(split: data.DataSplit) -> np.ndarray:
    return np.array([int(y) for _, y in split.dataset.as_numpy_iterator()])


def files_of(split: data.DataSplit) -> list:
    # Fixture images have unique pixels, so the bytes identify the file.
    return [x.tobytes() for x, _ in split.dataset.as_numpy_iterator()]


