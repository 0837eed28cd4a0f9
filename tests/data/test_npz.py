"""Tests of ravit_keras.data: every source on tiny files written here, and the pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from ravit_keras import data

# .npz ----------------------------------------------------------------------------------


def _write_npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def test_npz_source_and_channel_stats(tmp_path):
    rng = np.random.default_rng(1)
    x_train = rng.integers(0, 256, size=(10, 8, 6, 3), dtype=np.uint8)
    x_test = rng.integers(0, 256, size=(4, 8, 6, 3), dtype=np.uint8)
    path = _write_npz(
        tmp_path / "d.npz", x_train=x_train, y_train=np.arange(10)[:, None] % 3,
        x_test=x_test, y_test=np.array([0, 1, 2, 1], np.uint8),
        class_names=np.array(["x", "y", "z"]),
    )
    train = data.load_split(path, "train")
    x, y = train.as_numpy()
    np.testing.assert_array_equal(x, x_train)
    assert y.tolist() == (np.arange(10) % 3).tolist()
    assert train.class_names == ["x", "y", "z"] and train.image_size == (8, 6)
    assert data.load_split(path, "test", num_examples=3).as_numpy()[1].tolist() == [0, 1, 2]
    mean, std = data.compute_channel_stats(train)
    pixels = x_train.reshape(-1, 3) / 255.0
    np.testing.assert_allclose(mean, pixels.mean(0), rtol=1e-9)
    np.testing.assert_allclose(std, pixels.std(0), rtol=1e-9)
    mean2, _ = data.compute_channel_stats(train, limit=2)
    np.testing.assert_allclose(mean2, x_train[:2].reshape(-1, 3).mean(0) / 255.0)
    # Without class_names, classes are numbered from both splits' labels.
    path = _write_npz(tmp_path / "e.npz", x_train=x_train, y_train=np.zeros(10, int),
                      x_test=x_test, y_test=np.array([0, 4, 0, 0]))
    assert data.load_split(path, "train").class_names == ["0", "1", "2", "3", "4"]


def test_npz_errors_name_the_key(tmp_path):
    x = np.zeros((2, 4, 4, 3), np.uint8)
    y = np.zeros(2, np.int64)
    missing = _write_npz(tmp_path / "m.npz", x_train=x, y_train=y)
    with pytest.raises(ValueError, match="'x_test'"):
        data.load_split(missing, "test")
    floats = _write_npz(tmp_path / "f.npz", x_train=x.astype(np.float32), y_train=y, x_test=x, y_test=y)
    with pytest.raises(ValueError, match="'x_train'.*uint8"):
        data.load_split(floats, "train")
    gray = _write_npz(tmp_path / "g.npz", x_train=x[..., 0], y_train=y, x_test=x, y_test=y)
    with pytest.raises(ValueError, match="'x_train'"):
        data.load_split(gray, "train")
    short = _write_npz(tmp_path / "s.npz", x_train=x, y_train=y[:1], x_test=x, y_test=y)
    with pytest.raises(ValueError, match="'y_train'"):
        data.load_split(short, "train")
    float_y = _write_npz(tmp_path / "y.npz", x_train=x, y_train=y, x_test=x, y_test=y + 0.5)
    with pytest.raises(ValueError, match="'y_test'"):
        data.load_split(float_y, "test")


