"""The RAViT input pipeline: batches for ``model.fit`` with the paper's augmentation
(and, opt-in, the stronger recipe's: ``data/augment.py``)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ravit_keras.config import RAViTConfig
from ravit_keras.data.augment import Augmentation, Augmenter
from ravit_keras.data.split import DataSplit, resize_uint8


def make_pipeline(
    split: DataSplit,
    config: RAViTConfig,
    batch_size: int,
    *,
    training: bool,
    seed: int = 0,
    shuffle_buffer: int = 10000,
    repeat: bool = False,
    augmentation: Augmentation | None = None,
    one_hot: bool = False,
) -> tf.data.Dataset:
    """Batches a split for `model.fit` / `model.evaluate`.

    Yields `(images float32 [B, H, W, 3] in [0, 255], {exit_name: int32 [B]})`
    at `config.image_size`, one label entry per exit. Pixels are not
    normalised: the model does that with `config.mean` / `config.std`.

    When `training`, examples are shuffled (seeded) and augmented as in the
    paper's CIFAR recipe: zero-pad by `max(1, side // 8)` pixels, random crop
    back, random horizontal flip, all from `seed` so runs are reproducible;
    the last partial batch is dropped. Evaluation keeps order and remainder.

    `augmentation` (training only) adds the stronger recipe's RandAugment,
    random erasing, CutMix and MixUp (`data/augment.py`), seeded from `seed`
    as well. With CutMix or MixUp the labels are one-hot mixtures, float32
    `[B, num_classes]`; `one_hot=True` gives one-hot labels in any case (the
    validation data of such a run).

    Raises:
        ValueError: for a bad batch size or shuffle buffer, more classes than
            `config.num_classes`, or fewer training examples than one batch.
    """
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if int(shuffle_buffer) != shuffle_buffer or shuffle_buffer < 1:
        raise ValueError(f"shuffle_buffer must be a positive integer, got {shuffle_buffer!r}.")
    if split.num_classes > config.num_classes:
        raise ValueError(
            f"The data has {split.num_classes} classes but the model config has "
            f"num_classes={config.num_classes}."
        )
    if training and not repeat and split.num_examples < batch_size:
        raise ValueError(
            f"The split has {split.num_examples} examples, fewer than batch_size "
            f"{batch_size}: training drops the partial batch, so no batch would remain."
        )
    size = tuple(config.image_size)
    exit_names = tuple(config.exit_names)
    dataset = split.dataset
    if split.image_size != size:
        dataset = dataset.map(
            lambda x, y: (resize_uint8(x, size), y),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    if training:
        dataset = dataset.shuffle(
            min(int(shuffle_buffer), max(1, split.num_examples)),
            seed=seed,
            reshuffle_each_iteration=True,
        )
    if repeat:
        dataset = dataset.repeat()
    extra = Augmenter(augmentation, size, config.num_classes) if (
        training and augmentation is not None and augmentation.enabled) else None
    one_hot = one_hot or (extra is not None and augmentation.mixes)
    if training:
        # One stateless seed pair per example; new values on each pass over the data.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        dataset = tf.data.Dataset.zip((dataset, seeds))
        pad = (max(1, size[0] // 8), max(1, size[1] // 8))
        if extra is None:
            dataset = dataset.map(
                lambda xy, s: (augment(xy[0], s, size, pad), xy[1]),
                num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True,
            )
        else:  # The seed pair goes on with the example: it also seeds the batch's augmentation.
            dataset = dataset.map(
                lambda xy, s: (extra.image(augment(xy[0], s, size, pad), s), xy[1], s),
                num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True,
            )
    dataset = dataset.batch(batch_size, drop_remainder=training)
    if extra is not None:
        dataset = dataset.map(extra.batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def to_model_inputs(x, y):
        if not one_hot:
            y = tf.cast(y, tf.int32)
        elif y.shape.rank == 1:
            y = tf.one_hot(tf.cast(y, tf.int32), config.num_classes, dtype=tf.float32)
        return tf.cast(x, tf.float32), {name: y for name in exit_names}

    dataset = dataset.map(to_model_inputs, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)


def augment(image, seed, size: tuple[int, int], pad: tuple[int, int]):
    """Zero-pads, randomly crops back to `size` and randomly flips one image.

    `seed` is a stateless seed (int tensor of shape [2]): equal seeds give
    equal results.
    """
    h, w = size
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    image = tf.image.pad_to_bounding_box(image, pad[0], pad[1], h + 2 * pad[0], w + 2 * pad[1])
    image = tf.image.stateless_random_crop(image, (h, w, 3), seed=crop_seed)
    return tf.image.stateless_random_flip_left_right(image, seed=flip_seed)


def compute_channel_stats(split: DataSplit, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel pixel mean and standard deviation in [0, 1] units.

    Returns:
        `(mean, std)`, float64 arrays of shape [3], over all pixels of the first
        `limit` images (all when `None`).
    """
    dataset = split.dataset.map(lambda x, y: tf.cast(x, tf.float64) / 255.0)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be positive, got {limit}.")
        dataset = dataset.take(limit)
    if split.image_size is not None:
        dataset = dataset.batch(512)
    else:
        dataset = dataset.map(lambda x: x[None])

    def accumulate(state, x):
        total, total_sq, count = state
        return (
            total + tf.reduce_sum(x, axis=[0, 1, 2]),
            total_sq + tf.reduce_sum(tf.square(x), axis=[0, 1, 2]),
            count + tf.cast(tf.reduce_prod(tf.shape(x)[:3]), tf.float64),
        )

    zeros = tf.zeros([3], tf.float64)
    total, total_sq, count = dataset.reduce((zeros, zeros, tf.constant(0.0, tf.float64)), accumulate)
    count = float(count.numpy())
    if count == 0:
        raise ValueError("Cannot compute channel statistics of an empty split.")
    mean = total.numpy() / count
    var = np.maximum(total_sq.numpy() / count - mean**2, 0.0)
    return mean, np.sqrt(var)
