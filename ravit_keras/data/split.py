"""``DataSplit`` (one split of a dataset) and the helpers every source uses to build one:
class subsets, seeded holdouts and order, resizing.

A split holds its images as arrays, as a list of image files, or (tfds) as a
``tf.data.Dataset``. ``split.dataset`` builds the tf.data pipeline on first use;
``iter_numpy`` reads arrays and files with NumPy and Pillow, so the scheduler side
(``ravit run``) never imports TensorFlow unless images must be resized.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from ravit_keras import images
from ravit_keras.data.classes import match_classes, take_classes  # noqa: F401  (re-exported)
from ravit_keras.data.errors import DatasetError
from ravit_keras.data.sampling import SPLITS, holdout, seeded_order  # noqa: F401  (re-exported)

CALIBRATION = "calibration"  # The held-out part of "train" that thresholds are calibrated on.


class DataSplit:
    """One split of an image classification dataset.

    Args:
        dataset: unbatched ``tf.data.Dataset`` of ``(uint8 image [H, W, 3], int32
            label)`` in a deterministic order; or ``None`` with ``arrays`` or ``files``.
        num_examples: int, number of examples.
        class_names: list of str, indexed by label.
        image_size: ``(height, width)`` if all images share it, else ``None``.
        arrays: ``(uint8 images [N, H, W, 3], int labels [N])`` held in memory.
        files: ``(image file paths [N], int labels [N], jpeg_only)``.

    Attributes:
        dataset: the tf.data pipeline (built from arrays or files on first use).
    """

    def __init__(self, dataset=None, num_examples: int = 0, class_names=(), image_size=None, *,
                 arrays=None, files=None, source_size=None):
        if sum(v is not None for v in (dataset, arrays, files)) != 1:
            raise ValueError("A DataSplit needs exactly one of dataset, arrays or files.")
        self._dataset = dataset
        self._arrays = arrays
        self._files = files
        self.num_examples = int(num_examples)
        self.class_names = list(class_names)
        self.image_size = None if image_size is None else tuple(int(s) for s in image_size)
        # The size the images have before any resize (arrays: their shape; files: common or None).
        self._source_size = self.image_size if source_size is None else tuple(source_size)

    def __repr__(self) -> str:
        kind = "arrays" if self._arrays is not None else "files" if self._files is not None else "tf.data"
        return (f"DataSplit({self.num_examples} images from {kind}, {self.num_classes} classes, "
                f"image_size={self.image_size})")

    @property
    def files(self) -> list[str] | None:
        """The image file of every example, in order, for a split read from files."""
        return None if self._files is None else list(self._files[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def dataset(self):
        if self._dataset is None:
            self._dataset = self._build_dataset()
        return self._dataset

    def _build_dataset(self):
        import tensorflow as tf

        size = self.image_size
        if self._arrays is not None:
            x, y = self._arrays
            dataset = tf.data.Dataset.from_tensor_slices((x, np.asarray(y).astype(np.int32)))
            if size is not None and size != self._source_size:
                dataset = dataset.map(lambda a, b: (resize_uint8(a, size), b),
                                      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            return dataset
        files, labels, jpeg_only = self._files

        from ravit_keras.data.decode import decode_image_file

        def load(file, label):
            # EXIF orientation, 16-bit and the pixel cap as on Pillow's path.
            image = decode_image_file(file, jpeg_only)
            if size is not None:
                image = _resize_if_needed(image, size)
            else:
                image.set_shape((None, None, 3))
            return image, label

        return tf.data.Dataset.from_tensor_slices(
            (tf.constant(list(files), tf.string), tf.constant(np.asarray(labels), tf.int32))
        ).map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def _with(self, **changes) -> "DataSplit":
        fields = dict(dataset=self._dataset if self._arrays is None and self._files is None else None,
                      num_examples=self.num_examples, class_names=self.class_names,
                      image_size=self.image_size, arrays=self._arrays, files=self._files,
                      source_size=self._source_size)
        fields.update(changes)
        return DataSplit(**fields)

    def resized(self, image_size: tuple[int, int] | int) -> "DataSplit":
        """Returns this split with every image resized to ``image_size``."""
        size = normalize_image_size(image_size)
        if size == self.image_size:
            return self
        if self._arrays is not None or self._files is not None:
            return self._with(image_size=size)
        import tensorflow as tf

        dataset = self.dataset.map(
            lambda x, y: (_resize_if_needed(x, size), y),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        return self._with(dataset=dataset, image_size=size, source_size=self._source_size)

    def cached(self) -> "DataSplit":
        """Returns this split with decoded images kept in memory after the first pass.

        Worth it for image files (Tiny ImageNet is 0.7 GB decoded) when training
        for several epochs on a machine where JPEG decoding competes with training.
        """
        return DataSplit(self.dataset.cache(), self.num_examples, self.class_names, self.image_size,
                         source_size=self._source_size)

    def find_unreadable(self, limit: int | None = None) -> list[tuple[str, str]]:
        """``(file, reason)`` of image files Pillow cannot decode (up to ``limit``)."""
        bad = []
        for file in (self._files[0] if self._files is not None else []):
            try:
                images.read_image(file)
            except images.ImageError as e:
                bad.append((file, str(e)))
                if limit is not None and len(bad) >= limit:
                    break
        return bad

    def without_unreadable(self, warn=None) -> "DataSplit":
        """This split without the image files that cannot be decoded (``warn`` names each)."""
        if self._files is None:
            return self
        unreadable = self.find_unreadable()
        if not unreadable:
            return self
        if warn is not None:
            for _, reason in unreadable:
                warn(reason)
        bad = {f for f, _ in unreadable}
        files, labels, jpeg_only = self._files
        keep = [i for i, f in enumerate(files) if f not in bad]
        if not keep:
            raise DatasetError("No readable image is left in this split.")
        return self._with(files=([files[i] for i in keep], np.asarray(labels)[keep], jpeg_only),
                          num_examples=len(keep))

    def carved(self, fraction: float, seed: int, keep: str) -> "DataSplit":
        """A seeded, stratified ``fraction`` of each class (``keep="calibration"``) or
        the rest (``keep="train"``): a calibration split the training never sees."""
        if self._arrays is None and self._files is None:
            raise DatasetError("A calibration holdout needs a dataset read from arrays or files, "
                               "not a tf.data pipeline (tfds); pass --calibration-split test.")
        labels = np.asarray(self._arrays[1] if self._arrays is not None else self._files[1], np.int64)
        index = np.arange(len(labels))
        which = "test" if keep == "calibration" else "train"
        chosen, _ = holdout(index, labels, which, fraction, seed, salt=0x43414C)
        chosen = np.sort(chosen)
        return self._subset(chosen)

    def take(self, n: int | None) -> "DataSplit":
        """The first ``n`` examples (all when ``n`` is None)."""
        if n is None or n >= self.num_examples:
            return self
        if self._arrays is None and self._files is None:
            return self._with(dataset=self.dataset.take(n), num_examples=n)
        return self._subset(np.arange(n))

    def subset(self, index) -> "DataSplit":
        """The examples at positions ``index`` (in that order): arrays and files only.

        Raises:
            DatasetError: a tf.data pipeline (tfds), which cannot be indexed.
        """
        if self._arrays is None and self._files is None:
            raise DatasetError("Picking images by position needs a dataset read from arrays or files, "
                               "not a tf.data pipeline (tfds).")
        index = np.asarray(index, np.int64)
        if index.size and (index.min() < 0 or index.max() >= self.num_examples):
            raise IndexError(f"positions outside a split of {self.num_examples} images")
        return self._subset(index)

    def _subset(self, index: np.ndarray) -> "DataSplit":
        if self._arrays is not None:
            x, y = self._arrays
            return self._with(arrays=(x[index], np.asarray(y)[index]), num_examples=len(index))
        files, labels, jpeg_only = self._files
        return self._with(files=([files[i] for i in index], np.asarray(labels)[index], jpeg_only),
                          num_examples=len(index))

    def relabelled(self, index: np.ndarray, class_names) -> "DataSplit":
        """This split with label ``l`` replaced by ``index[l]`` and the given class names."""
        index = np.asarray(index, np.int64)
        if self._arrays is not None:
            x, y = self._arrays
            return self._with(arrays=(x, index[np.asarray(y, np.int64)]), class_names=class_names)
        if self._files is not None:
            files, labels, jpeg_only = self._files
            return self._with(files=(files, index[np.asarray(labels, np.int64)], jpeg_only), class_names=class_names)
        import tensorflow as tf

        table = tf.constant(index.astype(np.int32))
        dataset = self.dataset.map(lambda x, y: (x, tf.gather(table, tf.cast(y, tf.int32))))
        return self._with(dataset=dataset, class_names=class_names)

    def iter_numpy(self, limit: int | None = None) -> Iterator[tuple[np.ndarray, int]]:
        """Yields ``(uint8 image [H, W, 3], label)`` one at a time, in the split's order.

        Arrays and files are read with NumPy and Pillow (no TensorFlow) unless a
        resize is needed; an unreadable file raises ``images.ImageError`` naming it.
        """
        n = self.num_examples if limit is None else min(int(limit), self.num_examples)
        if self._arrays is not None and (self.image_size is None or self.image_size == self._source_size):
            x, y = self._arrays
            for i in range(n):
                yield x[i], int(y[i])
            return
        if self._files is not None:
            files, labels, _ = self._files
            for i in range(n):
                image = images.read_image(files[i])
                if self.image_size is not None and image.shape[:2] != self.image_size:
                    image = _resize_numpy_like_training(image, self.image_size)
                yield image, int(labels[i])
            return
        for k, (x, y) in enumerate(self.dataset.as_numpy_iterator()):
            if k >= n:
                return
            yield x, int(y)

    def as_numpy(self, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Returns ``(images uint8 [N, H, W, 3], labels int64 [N])``, N <= ``limit``.

        Raises:
            ValueError: if the images do not share one size (use ``resized`` first).
        """
        if self.image_size is None:
            raise ValueError(
                "Images of this split vary in size; call split.resized((h, w)) or pass "
                "image_size to load_split() before as_numpy()."
            )
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be non-negative, got {limit}.")
        h, w = self.image_size
        if self._arrays is not None and self.image_size == self._source_size:
            x, y = self._arrays
            n = len(x) if limit is None else min(limit, len(x))
            return np.ascontiguousarray(x[:n], np.uint8), np.asarray(y[:n], np.int64)
        dataset = self.dataset
        if limit is not None:
            dataset = dataset.take(limit)
        xs, ys = [], []
        for x, y in dataset.batch(1024).as_numpy_iterator():
            xs.append(x)
            ys.append(y)
        if not xs:
            return np.zeros((0, h, w, 3), np.uint8), np.zeros((0,), np.int64)
        return np.concatenate(xs).astype(np.uint8), np.concatenate(ys).astype(np.int64)


def _resize_numpy_like_training(image: np.ndarray, size) -> np.ndarray:
    """The training pipeline's resize (TensorFlow's), used where a file needs one."""
    import tensorflow as tf

    return resize_uint8(tf.constant(image), size).numpy()


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


def resize_uint8(image, size):
    """Bilinear resize of a uint8 image, rounded and clipped back to uint8 (TensorFlow)."""
    import tensorflow as tf

    resized = tf.image.resize(image, size, method="bilinear", antialias=True)
    resized = tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)
    resized.set_shape((size[0], size[1], 3))
    return resized


def _resize_if_needed(image, size):
    import tensorflow as tf

    shape = tf.shape(image)
    same = tf.logical_and(tf.equal(shape[0], size[0]), tf.equal(shape[1], size[1]))
    image = tf.cond(same, lambda: image, lambda: resize_uint8(image, size))
    image.set_shape((size[0], size[1], 3))
    return image


def split_from_arrays(x: np.ndarray, y: np.ndarray, class_names, image_size) -> DataSplit:
    """A split over in-memory uint8 images (resized lazily to ``image_size`` if given)."""
    source = (int(x.shape[1]), int(x.shape[2]))
    split = DataSplit(num_examples=len(x), class_names=class_names, image_size=source, arrays=(x, y))
    return finish(split, image_size)


def split_from_files(files, labels, class_names, image_size, *, jpeg_only: bool) -> DataSplit:
    """A split over image files, decoded when read (resized to ``image_size`` if given)."""
    if len(files) == 0:
        raise ValueError("The dataset has no images for this split (after filtering).")
    return DataSplit(num_examples=len(files), class_names=class_names, image_size=image_size,
                     files=(list(files), np.asarray(labels, np.int64), jpeg_only), source_size=None)


def finish(split: DataSplit, image_size) -> DataSplit:
    """Applies the requested image size, if any."""
    if image_size is None or image_size == split.image_size:
        return split
    return split.resized(image_size)
