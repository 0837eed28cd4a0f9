"""Fixtures: a tiny CIFAR-10 in the official python layout."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from ravit_keras import data
from tests.data.builders import cifar_batch


@pytest.fixture(scope="module")
def cifar_arrays():
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, size=(15, 32, 32, 3), dtype=np.uint8)  # 3 per batch.
    y_train = np.arange(15) % 10
    x_test = rng.integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    y_test = np.array([3, 1, 4, 1])
    return x_train, y_train, x_test, y_test


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory, cifar_arrays):
    x_train, y_train, x_test, y_test = cifar_arrays
    root = tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py"
    root.mkdir()
    for b in range(5):
        s = slice(3 * b, 3 * b + 3)
        (root / f"data_batch_{b + 1}").write_bytes(cifar_batch(x_train[s], y_train[s], "train"))
    (root / "test_batch").write_bytes(cifar_batch(x_test, y_test, "test"))
    meta = {b"label_names": [n.encode() for n in data.CIFAR10_CLASS_NAMES], b"num_vis": 3072}
    (root / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return root

