"""Tests of ravit_keras.data: every source on tiny files written here, and the pipeline."""

from __future__ import annotations

import importlib.resources
import sys

import numpy as np
import pytest
import tensorflow as tf

from ravit_keras import data
from ravit_keras.data import tfds_source

# TensorFlow Datasets -------------------------------------------------------------------------


def test_tfds_not_prepared_offline_gives_clear_error(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(FileNotFoundError, match=r"'cifar10'.*--data-dir"):
        data.load_split("tfds:cifar10", "train", data_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="imagenet2012"):
        data.load_split("tfds:imagenet2012", "test", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="Unknown tfds dataset 'no_such_dataset_xyz'"):
        data.load_split("tfds:no_such_dataset_xyz", data_dir=str(tmp_path))


def test_tfds_split_mapping():
    assert tfds_source._tfds_split_name("imagenet2012", "test", []) == "validation"
    assert tfds_source._tfds_split_name("imagenet2012:5.1.0", "test", []) == "validation"
    assert tfds_source._tfds_split_name("cifar10", "test", []) == "test"
    assert tfds_source._tfds_split_name("x", "test", ["train", "validation"]) == "validation"
    assert tfds_source._tfds_split_name("x", "test", ["train", "test", "validation"]) == "test"
    assert tfds_source._tfds_split_name("imagenet2012", "train", []) == "train"


def test_tfds_prepared_dataset(tmp_path, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    # tfds 4.9.10 imports importlib_resources unconditionally when writing; the
    # standard library module is equivalent on Python >= 3.9.
    monkeypatch.setitem(sys.modules, "importlib_resources", sys.modules.get(
        "importlib_resources", importlib.resources))
    features = tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(8, 8, 1)),
        "label": tfds.features.ClassLabel(names=["a", "b", "c"]),
    })
    def examples(n, offset):
        images = (offset + np.arange(n, dtype=np.uint8))[:, None, None, None] * np.ones((1, 8, 8, 1), np.uint8)
        return tf.data.Dataset.from_tensor_slices({"image": images, "label": np.arange(n) % 3})
    try:
        tfds.dataset_builders.store_as_tfds_dataset(
            name="ravit_toy_gray", version="1.0.0", features=features,
            split_datasets={"train": examples(7, 0), "validation": examples(4, 100)},
            data_dir=str(tmp_path),
        )
    except Exception as e:  # pragma: no cover - depends on the installed tfds
        pytest.skip(f"cannot write a toy tfds dataset with this tfds: {e}")
    test = data.load_split("tfds:ravit_toy_gray", "test", data_dir=str(tmp_path))
    assert test.num_examples == 4 and test.class_names == ["a", "b", "c"]
    assert test.image_size == (8, 8)
    x, y = test.as_numpy()
    assert x.shape == (4, 8, 8, 3)  # grayscale -> RGB
    # Each image is flat with value 100 + index and label index % 3.
    assert sorted(zip(x[:, 0, 0, 0].tolist(), y.tolist())) == [(100 + i, i % 3) for i in range(4)]
    train = data.load_split("tfds:ravit_toy_gray", "train", data_dir=str(tmp_path),
                            num_examples=5, image_size=4)
    x, _ = train.as_numpy()
    assert train.num_examples == 5 and x.shape == (5, 4, 4, 3)


