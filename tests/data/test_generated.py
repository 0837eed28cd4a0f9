"""Tests of ravit_keras.data: every source on tiny files written here, and the pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from ravit_keras import data

# Generated source -------------------------------------------------------------


def test_generated_shapes_classes_and_determinism():
    a = data.load_split("generated", "train", num_examples=60, seed=3)
    b = data.load_split("generated", "train", num_examples=60, seed=3)
    assert a.num_examples == 60 and a.image_size == (32, 32)
    assert a.class_names == data.generated_class_names(10)
    assert a.class_names[:2] == ["red_blob", "green_blob"]
    assert a.class_names[5:7] == ["fine_vertical_stripes", "fine_horizontal_stripes"]
    xa, ya = a.as_numpy()
    xb, yb = b.as_numpy()
    assert xa.dtype == np.uint8 and xa.shape == (60, 32, 32, 3)
    assert ya.dtype == np.int64 and np.bincount(ya, minlength=10).tolist() == [6] * 10
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
    xc, _ = data.load_split("generated", "train", num_examples=60, seed=4).as_numpy()
    assert not np.array_equal(xa, xc)


def test_generated_defaults_and_disjoint_splits():
    train = data.load_split("generated", "train")
    test = data.load_split("generated", "test")
    assert (train.num_examples, test.num_examples) == (2000, 500)
    x_train, _ = train.as_numpy()
    x_test, _ = test.as_numpy()
    train_keys = {x.tobytes() for x in x_train}
    assert len(train_keys) == 2000
    assert not train_keys & {x.tobytes() for x in x_test}


def test_generated_size_and_num_classes():
    s = data.load_split("generated", "test", image_size=(48, 40), num_examples=12, num_classes=4)
    x, y = s.as_numpy()
    assert x.shape == (12, 48, 40, 3)
    assert s.class_names == ["red_blob", "green_blob", "fine_vertical_stripes",
                             "fine_horizontal_stripes"]
    assert set(y.tolist()) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="num_classes=11"):
        data.load_split("generated", num_classes=11)


def test_generated_fine_classes_vanish_at_half_resolution():
    # Each fine texture sums to zero over any 2x2 cell (any phase): 2x pooling erases it.
    for tile, colour in data.GENERATED_FINE_CLASSES.values():
        tile = np.asarray(tile)
        for py in range(2):
            for px in range(2):
                cell = np.roll(tile, (py, px), axis=(0, 1))
                assert abs(cell.sum()) < 1e-9
        assert len(colour) == 3
    # ... and the fine classes carry far more energy in what 2x pooling removes.
    x, y = data.load_split("generated", "train", num_examples=200).as_numpy()
    x = x.astype(np.float64)
    pooled = x.reshape(-1, 16, 2, 16, 2, 3).mean(axis=(2, 4))
    detail = np.abs(x - np.repeat(np.repeat(pooled, 2, axis=1), 2, axis=2)).mean(axis=(1, 2, 3))
    coarse, fine = detail[y < 5].mean(), detail[y >= 5].mean()
    assert fine > 2.5 * coarse, (coarse, fine)


