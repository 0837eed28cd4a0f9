"""Tests of ravit_keras.data: every source on tiny files written here, and the pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from ravit_keras import data
from ravit_keras.config import get_config

# Pipeline ------------------------------------------------------------------------------------------


def test_pipeline_structure_eval_and_training():
    config = get_config("tiny3")  # exits exit_1, exit_2, exit_3; 32x32
    split = data.load_split("generated", "test", num_examples=20)
    batches = list(data.make_pipeline(split, config, 8, training=False))
    assert [b[0].shape[0] for b in batches] == [8, 8, 4]  # eval keeps the remainder
    images, labels = batches[0]
    assert images.dtype == tf.float32 and images.shape == (8, 32, 32, 3)
    assert set(labels) == set(config.exit_names) == {"exit_1", "exit_2", "exit_3"}
    x, y = split.as_numpy()
    np.testing.assert_array_equal(images.numpy(), x[:8].astype(np.float32))  # raw 0..255
    for name in config.exit_names:
        assert labels[name].dtype == tf.int32
        np.testing.assert_array_equal(labels[name].numpy(), y[:8])
    train = list(data.make_pipeline(split, config, 8, training=True, seed=1))
    assert [b[0].shape[0] for b in train] == [8, 8]  # drop_remainder
    repeated = data.make_pipeline(split, config, 8, training=True, repeat=True)
    assert len(list(repeated.take(5))) == 5
    # Split at another size is resized to the config's.
    small = data.load_split("generated", "test", num_examples=4, image_size=16)
    images, _ = next(iter(data.make_pipeline(small, config, 4, training=False)))
    assert images.shape == (4, 32, 32, 3)


def test_pipeline_errors():
    config = get_config("tiny")
    split = data.load_split("generated", "test", num_examples=4)
    with pytest.raises(ValueError, match="batch_size"):
        data.make_pipeline(split, config, 0, training=False)
    with pytest.raises(ValueError, match="fewer than batch_size 8"):
        data.make_pipeline(split, config, 8, training=True)
    with pytest.raises(ValueError, match="num_classes=3"):
        data.make_pipeline(split, config.replace(num_classes=3), 2, training=False)


def _shift_flip_candidates(image: np.ndarray, pad: int):
    h, w, _ = image.shape
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[dy:dy + h, dx:dx + w]
            yield crop
            yield crop[:, ::-1]


def test_augmentation_is_seeded_and_is_pad_crop_flip():
    config = get_config("tiny")
    split = data.load_split("generated", "train", num_examples=16)
    x, _ = split.as_numpy()

    def first_batch(seed, shuffle_buffer=1):
        ds = data.make_pipeline(split, config, 16, training=True, seed=seed,
                                shuffle_buffer=shuffle_buffer)
        return next(iter(ds))[0].numpy()

    a, b, c = first_batch(1), first_batch(1), first_batch(2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, x.astype(np.float32))
    # With a buffer of 1 the order is kept: each output is a zero-padded crop
    # (pad 4 for 32x32), possibly mirrored, of its input.
    for out, image in zip(a, x):
        assert any(np.array_equal(out, cand) for cand in _shift_flip_candidates(image, 4))
    # Seeded shuffling is reproducible too.
    np.testing.assert_array_equal(first_batch(3, 100), first_batch(3, 100))
    # A second pass draws new augmentations (and a new order).
    ds = data.make_pipeline(split, config, 16, training=True, seed=1, shuffle_buffer=1)
    first, second = [next(iter(ds))[0].numpy() for _ in range(2)]
    assert not np.array_equal(first, second)


