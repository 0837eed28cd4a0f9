"""``SplitBatches``: a split as NumPy batches for ``model.fit`` (a ``keras.utils.PyDataset``), no TensorFlow.

The input of training on a backend other than TensorFlow (``ravit train --backend
jax``): arrays are indexed in memory, image files decoded with Pillow
(``images.read_image``) and resized with ``images.resize`` (TensorFlow's rule) as
each batch is read. The paper's augmentation runs in the training step on the
accelerator (``training/in_step.py``); each batch carries the seeds it draws from.

Reproducible and resumable: the order of epoch k is a permutation drawn from
``(seed, k)`` alone, and batch i of epoch k carries per-example seed pairs drawn
from ``(seed, k, i)``; nothing depends on earlier epochs, so a run resumed at
epoch k sees the batches an uninterrupted one sees. ``shard_index`` /
``num_shards`` give one process its contiguous share of every global batch
(several processes training one model).
"""

from __future__ import annotations

import math

import keras
import numpy as np

from ravit_keras import images
from ravit_keras.data.errors import DatasetError

# Salts keep the order and the augmentation seeds independent streams of one seed.
_ORDER_STREAM = 0x4F52
_SEED_STREAM = 0x5345


class SplitBatches(keras.utils.PyDataset):
    """Batches of one ``DataSplit``: ``({"images": uint8 [B, H, W, 3], "seeds": uint32 [B, 2]},
    {exit_name: int32 [B]})``.

    Args:
        split: a split read from arrays or image files (not a tfds pipeline).
        image_size: (height, width) every image is resized to where it differs.
        exit_names: the model's exits; each gets the labels.
        batch_size: the global batch (all shards together).
        training: shuffle per epoch and drop the last partial batch; else keep the
            order and the remainder.
        seed: seeds the order and the augmentation.
        shard_index, num_shards: this process's share of each global batch
            (rows ``[shard_index * B / num_shards, (shard_index + 1) * B / num_shards)``).
        with_seeds: False gives the bare images as ``x`` (a RAViT's own input: predict).
        **kwargs: ``keras.utils.PyDataset``'s ``workers``, ``use_multiprocessing``,
            ``max_queue_size``.

    Raises:
        DatasetError: for a tfds split (no arrays or files to index).
        ValueError: for a bad batch size or shard, or fewer training images than one batch.
    """

    def __init__(self, split, image_size, exit_names, batch_size: int, *, training: bool, seed: int = 0,
                 shard_index: int = 0, num_shards: int = 1, with_seeds: bool = True, **kwargs):
        super().__init__(**kwargs)
        if split._arrays is None and split._files is None:
            raise DatasetError("This dataset is a TensorFlow Datasets pipeline (tfds:NAME), which only the "
                               "TensorFlow backend reads; use --backend tensorflow, or give the images as "
                               "an .npz file or an image folder.")
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        if not (0 <= shard_index < num_shards) or batch_size % num_shards:
            raise ValueError(f"shard {shard_index} of {num_shards}: the shard must be in [0, num_shards) and "
                             f"num_shards must divide the batch size {batch_size}.")
        if training and split.num_examples < batch_size:
            raise ValueError(
                f"The split has {split.num_examples} examples, fewer than batch_size {batch_size}: training "
                "drops the partial batch, so no batch would remain.")
        self.split = split
        self.image_size = tuple(int(s) for s in image_size)
        self.exit_names = tuple(exit_names)
        self.batch_size = int(batch_size)
        self.training = bool(training)
        self.seed = int(seed)
        self.shard_index, self.num_shards = int(shard_index), int(num_shards)
        self.epoch = 0
        self.with_seeds = bool(with_seeds)
        self._labels = np.asarray(split._arrays[1] if split._arrays is not None else split._files[1], np.int32)

    @property
    def num_batches(self) -> int:
        n = self.split.num_examples
        return n // self.batch_size if self.training else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose order and seeds the next batches are (``EpochSetter`` calls it)."""
        self.epoch = int(epoch)

    def order(self, epoch: int) -> np.ndarray:
        """The positions of the examples in epoch ``epoch``: a function of (seed, epoch) alone."""
        n = self.split.num_examples
        if not self.training:
            return np.arange(n)
        return np.random.default_rng([_ORDER_STREAM, self.seed, int(epoch)]).permutation(n)

    def batch_seeds(self, epoch: int, index: int) -> np.ndarray:
        """uint32 [B, 2]: the global batch's per-example seed pairs (all shards' rows)."""
        rng = np.random.default_rng([_SEED_STREAM, self.seed, int(epoch), int(index)])
        return rng.integers(0, 2**32, size=(self.batch_size, 2), dtype=np.uint32)

    def shard_rows(self, rows: np.ndarray) -> np.ndarray:
        """This shard's contiguous part of a global batch's rows."""
        if self.num_shards == 1:
            return rows
        return np.array_split(rows, self.num_shards)[self.shard_index]

    def __getitem__(self, index: int):
        if not 0 <= index < self.num_batches:
            raise IndexError(f"batch {index} of {self.num_batches}")
        rows = self.order(self.epoch)[index * self.batch_size:(index + 1) * self.batch_size]
        seeds = self.batch_seeds(self.epoch, index)[:len(rows)]
        rows, seeds = self.shard_rows(rows), self.shard_rows(seeds)
        labels = self._labels[rows]
        images = read_rows(self.split, rows, self.image_size)
        x = {"images": images, "seeds": seeds} if self.with_seeds else images
        return x, {name: labels for name in self.exit_names}

    @property
    def labels(self) -> np.ndarray:
        """int32 [N]: every example's label, in the split's order."""
        return self._labels


def read_rows(split, rows, image_size=None) -> np.ndarray:
    """uint8 [len(rows), H, W, 3]: a split's examples at ``rows`` (arrays or files), resized
    to ``image_size`` (default: the split's own) with ``images.resize``, TensorFlow's rule."""
    image_size = tuple(image_size or split.image_size)
    out = np.empty((len(rows), *image_size, 3), np.uint8)
    for k, i in enumerate(rows):
        image = split._arrays[0][i] if split._arrays is not None else images.read_image(split._files[0][i])
        if image.shape[:2] != image_size:
            image = images.resize(image, image_size)
        out[k] = image
    return out


def decoded(split):
    """``split`` with its image files decoded once into memory (Pillow; ``DataSplit.cached``
    without TensorFlow): JPEG decoding then takes no CPU from training. Arrays: as they are."""
    if split._files is None:
        return split
    if split.image_size is None:
        raise ValueError("The images of this split vary in size: load it with an image_size first.")
    from ravit_keras.data.split import split_from_arrays

    x = read_rows(split, np.arange(split.num_examples))
    return split_from_arrays(x, np.asarray(split._files[1]), split.class_names, None)


class EpochSetter(keras.callbacks.Callback):
    """Tells a ``SplitBatches`` which epoch begins, so that a resumed run (whose first
    epoch is the one after the last backed-up one) reads that epoch's order."""

    def __init__(self, batches: SplitBatches):
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.set_epoch(epoch)


def numpy_channel_stats(split, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``pipeline.compute_channel_stats`` without TensorFlow: per-channel mean and std in
    [0, 1] units over the first ``limit`` images (all when None)."""
    total = np.zeros(3)
    total_sq = np.zeros(3)
    count = 0
    n = split.num_examples if limit is None else min(int(limit), split.num_examples)
    for i in range(n):
        # As training sees it (resized); files of no common size are measured as they are.
        image = read_rows(split, [i])[0] if split.image_size else images.read_image(split._files[0][i])
        x = image.reshape(-1, 3).astype(np.float64) / 255.0
        total += x.sum(axis=0)
        total_sq += np.square(x).sum(axis=0)
        count += len(x)
    if count == 0:
        raise ValueError("Cannot compute channel statistics of an empty split.")
    mean = total / count
    return mean, np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
