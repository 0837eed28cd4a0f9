"""Tests of ravit_keras.data: every source on tiny files written here, and the pipeline."""

from __future__ import annotations

import pickle
import tarfile

import numpy as np

from ravit_keras import data

# CIFAR-10 python version -------------------------------------------------------


def test_cifar_folder_exact_pixels(cifar_dir, cifar_arrays):
    x_train, y_train, x_test, y_test = cifar_arrays
    train = data.load_split(str(cifar_dir), "train")
    assert train.num_examples == 15 and train.image_size == (32, 32)
    assert train.class_names == list(data.CIFAR10_CLASS_NAMES)
    x, y = train.as_numpy()
    np.testing.assert_array_equal(x, x_train)
    np.testing.assert_array_equal(y, y_train)
    # The parent folder works too; test split.
    x, y = data.load_split(str(cifar_dir.parent), "test").as_numpy()
    np.testing.assert_array_equal(x, x_test)
    np.testing.assert_array_equal(y, y_test)


def test_cifar_channel_first_rows_map_to_hwc(tmp_path):
    # First 1024 bytes are the red plane, row-major: check a few known pixels.
    row = np.zeros(3072, np.uint8)
    row[:1024] = 200                 # red everywhere
    row[1024 + 1 * 32 + 5] = 77      # green at (y=1, x=5)
    row[2048 + 31 * 32 + 0] = 9      # blue at (y=31, x=0)
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    batch = pickle.dumps({b"data": row[None], b"labels": [7]})
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (root / name).write_bytes(batch)
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"c%d" % i for i in range(10)]}))
    x, y = data.load_split(str(root), "test").as_numpy()
    assert x.shape == (1, 32, 32, 3) and y.tolist() == [7]
    assert (x[0, :, :, 0] == 200).all()
    assert x[0, 1, 5, 1] == 77 and x[0, :, :, 1].sum() == 77
    assert x[0, 31, 0, 2] == 9 and x[0, :, :, 2].sum() == 9


def test_cifar_tar_gz_limits_and_num_classes(tmp_path, cifar_dir, cifar_arrays):
    x_train, y_train, _, _ = cifar_arrays
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(cifar_dir, arcname="cifar-10-batches-py")
    s = data.load_split(str(archive), "train", num_examples=7)
    x, y = s.as_numpy()
    np.testing.assert_array_equal(x, x_train[:7])
    np.testing.assert_array_equal(y, y_train[:7])
    s = data.load_split(str(archive), "train", num_classes=3, image_size=16)
    x, y = s.as_numpy()
    assert s.class_names == ["airplane", "automobile", "bird"] and s.image_size == (16, 16)
    assert x.shape == (len(y), 16, 16, 3) and set(y.tolist()) == {0, 1, 2}
    # A folder holding the archive is recognised too.
    assert data.load_split(str(tmp_path), "test").num_examples == 4


