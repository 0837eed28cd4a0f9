"""Tests of ravit_keras.data: every source on tiny files written here, and the pipeline."""

from __future__ import annotations

import numpy as np

from ravit_keras import data
from tests.data.builders import (
    CLASS_COLOURS,
    files_of,
    labels_of,
    make_tiny_imagenet,
    write_png,
)

# Tiny ImageNet -------------------------------------------------------------------


def test_tiny_imagenet_without_val_holdout(tmp_path):
    root = make_tiny_imagenet(tmp_path / "tiny-imagenet-200", with_val=False, per_class=10)
    train = data.load_split(str(tmp_path), "train", holdout_fraction=0.2, seed=1)
    test = data.load_split(str(root), "test", holdout_fraction=0.2, seed=1)
    assert train.class_names == ["goldfish", "bullfrog", "tabby"]  # sorted wnids n001..n003
    assert (train.num_examples, test.num_examples) == (24, 6)
    assert train.image_size == (64, 64)
    x, y = test.as_numpy()
    assert x.shape == (6, 64, 64, 3) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [2, 2, 2]  # stratified
    # Labels match the JPEG contents (each class has its own colour).
    for image, label in zip(x, y):
        np.testing.assert_allclose(image.reshape(-1, 3).mean(0), CLASS_COLOURS[label], atol=4)


def test_holdout_is_disjoint_deterministic_and_seeded(tmp_path):
    root = tmp_path / "folders"
    for c, name in enumerate(["cat", "dog"]):
        for k in range(10):
            # Unique pixel content per file, so images identify files.
            write_png(root / name / f"{k}.png", (c * 100 + k, k, 3), (8, 8))
    def keys(split, seed):
        return files_of(data.load_split(str(root), split, seed=seed, holdout_fraction=0.3))
    train, test = keys("train", 0), keys("test", 0)
    assert len(train) == 14 and len(test) == 6
    assert not set(train) & set(test) and len(set(train) | set(test)) == 20
    assert keys("train", 0) == train and keys("test", 0) == test
    assert set(keys("test", 5)) != set(test)
    # The listing is a seeded mix of classes, not class-sorted.
    labels = labels_of(data.load_split(str(root), "train", seed=0, holdout_fraction=0.3))
    assert sorted(labels.tolist()) == [0] * 7 + [1] * 7 and labels.tolist() != sorted(labels.tolist())


def test_tiny_imagenet_with_val(tmp_path):
    root = make_tiny_imagenet(tmp_path / "tiny-imagenet-200", with_val=True, per_class=3)
    train = data.load_split(str(root), "train")
    test = data.load_split(str(root), "test")
    assert train.num_examples == 9 and test.num_examples == 4
    x, y = test.as_numpy()
    assert sorted(y.tolist()) == [0, 1, 1, 2]
    for image, label in zip(x, y):
        np.testing.assert_allclose(image.reshape(-1, 3).mean(0), CLASS_COLOURS[label], atol=4)
    small = data.load_split(str(root), "test", image_size=32, num_classes=2)
    xs, ys = small.as_numpy()
    assert xs.shape == (3, 32, 32, 3) and sorted(ys.tolist()) == [0, 1, 1]


