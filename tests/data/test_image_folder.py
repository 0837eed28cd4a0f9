"""Tests of ravit_keras.data: every source on tiny files written here, and the pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from ravit_keras import data
from tests.data.builders import CLASS_COLOURS, labels_of, write_jpeg, write_png

# Image folders ---------------------------------------------------------------------


def test_class_folders_of_varying_sizes(tmp_path):
    root = tmp_path / "images"
    sizes = [(20, 30), (32, 32), (17, 9)]
    for c, name in enumerate(["ant", "bee", "cow"]):
        for k, size in enumerate(sizes):
            write_png(root / name / f"img{k}.png", CLASS_COLOURS[c], size)
        write_jpeg(root / name / "sub" / "extra.jpg", CLASS_COLOURS[c], (24, 24))
    (root / "ant" / "notes.txt").write_text("not an image")
    s = data.load_split(str(root), "train", holdout_fraction=0.25)
    assert s.class_names == ["ant", "bee", "cow"]
    assert s.image_size is None and s.num_examples == 9
    shapes = {x.shape for x, _ in s.dataset.as_numpy_iterator()}
    assert len(shapes) > 1
    with pytest.raises(ValueError, match="vary in size"):
        s.as_numpy()
    x, y = s.resized(16).as_numpy()
    assert x.shape == (9, 16, 16, 3)
    resized = data.load_split(str(root), "test", image_size=(12, 10), holdout_fraction=0.25)
    x, y = resized.as_numpy()
    assert resized.image_size == (12, 10) and x.shape == (3, 12, 10, 3)
    for image, label in zip(x, y):  # Resizing a flat colour keeps it.
        np.testing.assert_allclose(image.reshape(-1, 3).mean(0), CLASS_COLOURS[label], atol=4)


def test_train_test_folders(tmp_path):
    for split, n in (("train", 3), ("test", 2)):
        for c, name in enumerate(["a", "b"]):
            for k in range(n):
                write_png(tmp_path / split / name / f"{k}.png", CLASS_COLOURS[c], (10, 10))
    train = data.load_split(str(tmp_path), "train")
    test = data.load_split(str(tmp_path), "test")
    assert (train.num_examples, test.num_examples) == (6, 4)
    assert train.image_size == (10, 10) and test.class_names == ["a", "b"]
    assert sorted(labels_of(test).tolist()) == [0, 0, 1, 1]
    write_png(tmp_path / "test" / "zebra" / "0.png", (0, 0, 0), (10, 10))
    with pytest.raises(ValueError, match="zebra"):
        data.load_split(str(tmp_path), "test")


