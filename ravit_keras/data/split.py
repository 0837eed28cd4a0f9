"""``DataSplit`` (one split of a dataset as a tf.data pipeline) and the helpers every
source uses to build one: class subsets, seeded holdouts and order, resizing."""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

SPLITS = ("train", "test")


@dataclasses.dataclass
class DataSplit:
    """One split of an image classification dataset.

    Attributes:
        dataset: unbatched `tf.data.Dataset` of `(uint8 image [H, W, 3], int32
            label)` in a deterministic order.
        num_examples: int, number of elements of `dataset`.
        class_names: list of str, indexed by label.
        image_size: `(height, width)` if all images share it, else `None`.
    """

    dataset: tf.data.Dataset
    num_examples: int
    class_names: list[str]
    image_size: tuple[int, int] | None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def resized(self, image_size: tuple[int, int] | int) -> "DataSplit":
        """Returns this split with every image resized to `image_size`."""
        size = normalize_image_size(image_size)
        if size == self.image_size:
            return self
        dataset = self.dataset.map(
            lambda x, y: (_resize_if_needed(x, size), y),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        return dataclasses.replace(self, dataset=dataset, image_size=size)

    def cached(self) -> "DataSplit":
        """Returns this split with decoded images kept in memory after the first pass.

        Worth it for image files (Tiny ImageNet is 0.7 GB decoded) when training
        for several epochs on a machine where JPEG decoding competes with training.
        """
        return dataclasses.replace(self, dataset=self.dataset.cache())

    def as_numpy(self, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Returns `(images uint8 [N, H, W, 3], labels int64 [N])`, N <= `limit`.

        Raises:
            ValueError: if the images do not share one size (use `resized` first).
        """
        if self.image_size is None:
            raise ValueError(
                "Images of this split vary in size; call split.resized((h, w)) or pass "
                "image_size to load_split() before as_numpy()."
            )
        dataset = self.dataset
        if limit is not None:
            if limit < 0:
                raise ValueError(f"limit must be non-negative, got {limit}.")
            dataset = dataset.take(limit)
        xs, ys = [], []
        for x, y in dataset.batch(1024).as_numpy_iterator():
            xs.append(x)
            ys.append(y)
        h, w = self.image_size
        if not xs:
            return np.zeros((0, h, w, 3), np.uint8), np.zeros((0,), np.int64)
        return np.concatenate(xs).astype(np.uint8), np.concatenate(ys).astype(np.int64)


# Public entry points --------------------------------------------------------


def normalize_image_size(image_size) -> tuple[int, int]:
    if isinstance(image_size, (int, np.integer)):
        image_size = (image_size, image_size)
    try:
        size = tuple(int(s) for s in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}.") from None
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"image_size must be an int or (height, width) > 0, got {image_size!r}.")
    return size


def take_classes(class_names: list[str], num_classes: int | None) -> list[str]:
    if num_classes is None:
        return list(class_names)
    if num_classes > len(class_names):
        raise ValueError(
            f"num_classes={num_classes} exceeds the {len(class_names)} classes of the dataset."
        )
    return list(class_names)[:num_classes]


def holdout(files, labels, split, fraction, seed):
    """Seeded stratified split: `fraction` of each class is "test", the rest "train"."""
    is_test = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = int(round(len(idx) * fraction))
        k = min(max(k, 1), len(idx) - 1) if len(idx) > 1 else 0
        # A per-class stream keeps each class's holdout independent of the others.
        rng = np.random.default_rng([int(seed), int(c), 0x484F])
        is_test[rng.permutation(idx)[:k]] = True
    keep = is_test if split == "test" else ~is_test
    return files[keep], labels[keep]


def seeded_order(files, labels, seed, split, num_examples):
    rng = np.random.default_rng([int(seed), SPLITS.index(split), 0x4F52])
    order = rng.permutation(len(files))
    if num_examples is not None:
        order = order[:num_examples]
    return files[order], labels[order]


def resize_uint8(image, size):
    """Bilinear resize of a uint8 image, rounded and clipped back to uint8."""
    resized = tf.image.resize(image, size, method="bilinear", antialias=True)
    resized = tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)
    resized.set_shape((size[0], size[1], 3))
    return resized


def _resize_if_needed(image, size):
    shape = tf.shape(image)
    same = tf.logical_and(tf.equal(shape[0], size[0]), tf.equal(shape[1], size[1]))
    image = tf.cond(same, lambda: image, lambda: resize_uint8(image, size))
    image.set_shape((size[0], size[1], 3))
    return image


def split_from_arrays(x: np.ndarray, y: np.ndarray, class_names, image_size) -> DataSplit:
    dataset = tf.data.Dataset.from_tensor_slices((x, y.astype(np.int32)))
    split = DataSplit(dataset, int(len(x)), list(class_names), (int(x.shape[1]), int(x.shape[2])))
    return finish(split, image_size)


def split_from_files(files, labels, class_names, image_size, *, jpeg_only: bool) -> DataSplit:
    if len(files) == 0:
        raise ValueError("The dataset has no images for this split (after filtering).")

    def load(file, label):
        data = tf.io.read_file(file)
        if jpeg_only:
            image = tf.io.decode_jpeg(data, channels=3)
        else:
            image = tf.io.decode_image(data, channels=3, expand_animations=False)
        if image_size is not None:
            image = _resize_if_needed(image, image_size)
        else:
            image.set_shape((None, None, 3))
        return image, label

    dataset = tf.data.Dataset.from_tensor_slices(
        (tf.constant(list(files), tf.string), tf.constant(labels, tf.int32))
    ).map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return DataSplit(dataset, int(len(files)), list(class_names), image_size)


def finish(split: DataSplit, image_size) -> DataSplit:
    """Applies the requested image size, if any."""
    if image_size is None or image_size == split.image_size:
        return split
    return split.resized(image_size)
