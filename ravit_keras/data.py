"""Image classification data sources and the RAViT input pipeline.

Every source gives a `DataSplit`: an unbatched `tf.data.Dataset` of
`(uint8 image [H, W, 3], int32 label)` in a deterministic order, with its size,
class names and (when fixed) image size. `load_split` reads:

- `"generated"`: a synthetic, resolution-dependent dataset made in memory
  (see `generated_class_names`).
- `"tfds:NAME"`: a prepared TensorFlow Datasets dataset (never downloaded here).
- the official CIFAR-10 python version (folder or `cifar-10-python.tar.gz`),
- the official `tiny-imagenet-200` folder,
- a folder of class sub-folders (optionally split into `train/` and `test/`),
- an `.npz` file with `x_train, y_train, x_test, y_test`.

`make_pipeline` batches a split for training or evaluation: raw pixels in
[0, 255] as float32 (the model normalises inside) and one label entry per exit.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import tarfile
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
import tensorflow as tf

from ravit_keras.config import RAViTConfig

__all__ = [
    "CIFAR10_CLASS_NAMES",
    "GENERATED_COARSE_CLASSES",
    "GENERATED_FINE_CLASSES",
    "DataSplit",
    "augment",
    "compute_channel_stats",
    "generated_class_names",
    "load_split",
    "make_pipeline",
]

SPLITS = ("train", "test")

CIFAR10_CLASS_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")

# tfds datasets whose held-out labelled split is called "validation".
_TFDS_NO_TEST_SPLIT = ("imagenet2012", "imagenet2012_subset", "imagenet_resized", "imagenette")

_SUPPORTED_SOURCES = """Supported sources:
  - "generated": synthetic dataset made in memory
  - "tfds:NAME": a prepared TensorFlow Datasets dataset (pass data_dir / --data-dir)
  - CIFAR-10 python version: the cifar-10-batches-py folder, a folder containing it,
    or the cifar-10-python.tar.gz archive
  - Tiny ImageNet: the tiny-imagenet-200 folder (wnids.txt, train/<wnid>/images/)
    or a folder containing it
  - an image folder: root/<class>/*.jpg|jpeg|png, or root/train/<class>/ and
    root/test/<class>/ (also val/ or validation/ for the test split)
  - an .npz file with x_train, y_train, x_test, y_test (uint8 NHWC images)"""


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
        size = _normalize_image_size(image_size)
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


def load_split(
    source: str,
    split: str = "train",
    *,
    data_dir: str | None = None,
    image_size: tuple[int, int] | int | None = None,
    holdout_fraction: float = 0.1,
    seed: int = 0,
    num_examples: int | None = None,
    num_classes: int | None = None,
) -> DataSplit:
    """Loads one split of an image classification dataset.

    Folder sources (Tiny ImageNet, image folders) are listed in a seeded random
    order, so that the first `num_examples` are a random sample and a finite
    shuffle buffer mixes classes. When such a source has no test images (e.g.
    Tiny ImageNet without `val/`, or a plain class-folder tree), "test" is a
    seeded, stratified holdout of `holdout_fraction` of each class and "train"
    is the rest; the same `seed` gives the same, disjoint pair.

    Args:
        source: `"generated"`, `"tfds:NAME"`, or a path (see module docstring).
        split: `"train"` or `"test"`. For tfds datasets with no "test" split
            (e.g. imagenet2012), "test" reads "validation".
        data_dir: folder of prepared tfds datasets (tfds sources only).
        image_size: int or `(height, width)`; images are resized to it when
            they differ. Required for a fixed size when images vary.
        holdout_fraction: float in (0, 1), share of each class held out as
            "test" when the source has no test images.
        seed: int, seeds generation, holdouts and folder order.
        num_examples: optional int; keeps the first N examples (for
            "generated", the number to generate; default 2000 train, 500 test).
        num_classes: optional int; for "generated" the number of classes (2 to
            10, default 10); for files, keeps only the first `num_classes`
            classes (labels below it).

    Returns:
        A `DataSplit`.

    Raises:
        FileNotFoundError: for a missing path, or a tfds dataset not prepared.
        ValueError: for a bad argument, unknown layout or malformed file.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    size = None if image_size is None else _normalize_image_size(image_size)
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}.")
    if num_examples is not None and (int(num_examples) != num_examples or num_examples < 1):
        raise ValueError(f"num_examples must be a positive integer, got {num_examples!r}.")
    if num_classes is not None and (int(num_classes) != num_classes or num_classes < 1):
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}.")
    if not isinstance(source, (str, os.PathLike)):
        raise ValueError(f"source must be a string or path, got {source!r}.")
    source_str = os.fspath(source)

    if source_str == "generated":
        return _load_generated(split, size, seed, num_examples, num_classes)
    if source_str.startswith("tfds:"):
        return _load_tfds(source_str[len("tfds:"):], split, data_dir, size, num_examples, num_classes)

    path = Path(source_str).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"Dataset path {source_str!r} does not exist. Pass an existing folder or file, "
            "'generated', or 'tfds:NAME'."
        )
    kwargs = dict(
        split=split, image_size=size, holdout_fraction=holdout_fraction, seed=seed,
        num_examples=num_examples, num_classes=num_classes,
    )
    if path.is_file():
        if path.suffix.lower() == ".npz":
            return _load_npz(path, split, size, num_examples, num_classes)
        if tarfile.is_tarfile(path):
            return _load_cifar10(path, split, size, num_examples, num_classes)
        raise ValueError(f"Unsupported dataset file {str(path)!r}.\n{_SUPPORTED_SOURCES}")

    cifar = _find_cifar10(path)
    if cifar is not None:
        return _load_cifar10(cifar, split, size, num_examples, num_classes)
    tiny = _find_tiny_imagenet(path)
    if tiny is not None:
        return _load_tiny_imagenet(tiny, **kwargs)
    layout = _find_image_folder(path)
    if layout is not None:
        return _load_image_folder(layout, **kwargs)
    raise ValueError(
        f"Unrecognised dataset folder {str(path)!r}: it matches none of the supported "
        f"layouts.\n{_SUPPORTED_SOURCES}"
    )


def make_pipeline(
    split: DataSplit,
    config: RAViTConfig,
    batch_size: int,
    *,
    training: bool,
    seed: int = 0,
    shuffle_buffer: int = 10000,
    repeat: bool = False,
) -> tf.data.Dataset:
    """Batches a split for `model.fit` / `model.evaluate`.

    Yields `(images float32 [B, H, W, 3] in [0, 255], {exit_name: int32 [B]})`
    at `config.image_size`, one label entry per exit. Pixels are not
    normalised: the model does that with `config.mean` / `config.std`.

    When `training`, examples are shuffled (seeded) and augmented as in the
    paper's CIFAR recipe: zero-pad by `max(1, side // 8)` pixels, random crop
    back, random horizontal flip, all from `seed` so runs are reproducible;
    the last partial batch is dropped. Evaluation keeps order and remainder.

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
            lambda x, y: (_resize_uint8(x, size), y),
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
    if training:
        # One stateless seed pair per example; new values on each pass over the data.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        dataset = tf.data.Dataset.zip((dataset, seeds))
        pad = (max(1, size[0] // 8), max(1, size[1] // 8))
        dataset = dataset.map(
            lambda xy, s: (augment(xy[0], s, size, pad), xy[1]),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    dataset = dataset.batch(batch_size, drop_remainder=training)

    def to_model_inputs(x, y):
        y = tf.cast(y, tf.int32)
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


# Generated (synthetic) source ----------------------------------------------

# Coarse classes: a big disc of this colour, visible at any resolution.
GENERATED_COARSE_CLASSES = {
    "red_blob": (205, 45, 45),
    "green_blob": (45, 185, 45),
    "blue_blob": (45, 70, 210),
    "yellow_blob": (215, 205, 40),
    "magenta_blob": (200, 45, 200),
}

# Fine classes: a grey square textured with a 2x2-periodic pattern (spatial
# tile x colour direction) of zero mean, so that any 2x2 averaging (a 2x
# down-sampling) leaves the same flat grey square for every fine class.
_VERTICAL = ((1.0, -1.0), (1.0, -1.0))
_HORIZONTAL = ((1.0, 1.0), (-1.0, -1.0))
_CHECKER = ((1.0, -1.0), (-1.0, 1.0))
GENERATED_FINE_CLASSES = {
    "fine_vertical_stripes": (_VERTICAL, (1.0, 1.0, 1.0)),
    "fine_horizontal_stripes": (_HORIZONTAL, (1.0, 1.0, 1.0)),
    "fine_checkerboard": (_CHECKER, (1.0, 1.0, 1.0)),
    "fine_red_green_stripes": (_VERTICAL, (1.5, -1.5, 0.0)),
    "fine_blue_yellow_stripes": (_HORIZONTAL, (-0.9, -0.9, 1.8)),
}

_GENERATED_MAX_CLASSES = len(GENERATED_COARSE_CLASSES) + len(GENERATED_FINE_CLASSES)


def generated_class_names(num_classes: int = 10) -> list[str]:
    """Class names of the generated dataset: coarse classes first, then fine.

    Every image has a dull random background, Gaussian pixel noise and one
    object at a random place. Coarse classes (`red_blob`, `green_blob`,
    `blue_blob`, `yellow_blob`, `magenta_blob`) are a big disc of that colour,
    clear at any resolution. Fine classes (`fine_vertical_stripes`,
    `fine_horizontal_stripes`, `fine_checkerboard`, `fine_red_green_stripes`,
    `fine_blue_yellow_stripes`) are a grey square with a 1-pixel texture of
    random phase that averages to zero over every 2x2 cell, so after a 2x
    down-sampling all fine classes look the same. A coarse exit therefore
    tops out near 50% + 50% / 5 while the full-resolution exit can reach
    100% (the "tiny" preset gets there in about 6 epochs of 2000 images).

    With `num_classes` n, the first `ceil(n / 2)` coarse and `floor(n / 2)`
    fine classes are used.
    """
    if not 2 <= num_classes <= _GENERATED_MAX_CLASSES:
        raise ValueError(
            f"The generated dataset has 2 to {_GENERATED_MAX_CLASSES} classes, got "
            f"num_classes={num_classes}."
        )
    num_coarse = (num_classes + 1) // 2
    return (
        list(GENERATED_COARSE_CLASSES)[:num_coarse]
        + list(GENERATED_FINE_CLASSES)[: num_classes - num_coarse]
    )


def _generate_images(
    num_examples: int, image_size: tuple[int, int], num_classes: int, seed: int, split: str
) -> tuple[np.ndarray, np.ndarray]:
    """Draws the generated dataset; train and test use independent seed streams.

    Each image has a random dull background with Gaussian pixel noise and one
    object at a random position: a colour disc (coarse classes) or a grey
    square with a fine 2x2-periodic texture of random phase (fine classes).
    """
    rng = np.random.default_rng([int(seed), SPLITS.index(split), 0x5241])
    names = generated_class_names(num_classes)
    h, w = image_size
    side = min(h, w)
    labels = rng.permutation(np.arange(num_examples) % num_classes)

    images = rng.uniform(40, 110, size=(num_examples, 1, 1, 3)) * np.ones((1, h, w, 1))
    yy, xx = np.mgrid[0:h, 0:w]
    for i, label in enumerate(labels):
        name = names[label]
        if name in GENERATED_COARSE_CLASSES:
            radius = rng.uniform(0.2, 0.3) * side
            cy = rng.uniform(radius, h - radius)
            cx = rng.uniform(radius, w - radius)
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
            colour = np.asarray(GENERATED_COARSE_CLASSES[name]) + rng.uniform(-20, 20, size=3)
            images[i][mask] = colour
        else:
            s = int(round(rng.uniform(0.6, 0.8) * side))
            top = rng.integers(0, h - s + 1)
            left = rng.integers(0, w - s + 1)
            tile, colour = GENERATED_FINE_CLASSES[name]
            py, px = rng.integers(0, 2, size=2)  # Random phase of the texture.
            texture = np.asarray(tile)[(yy[:s, :s] + py) % 2, (xx[:s, :s] + px) % 2]
            grey = rng.uniform(110, 150)
            amplitude = rng.uniform(50, 65)
            texture = texture[..., None] * np.asarray(colour)
            images[i, top : top + s, left : left + s, :] = grey + amplitude * texture
    images += rng.normal(0.0, 10.0, size=images.shape)
    images = np.clip(np.round(images), 0, 255).astype(np.uint8)
    return images, labels.astype(np.int32)


def _load_generated(split, image_size, seed, num_examples, num_classes) -> DataSplit:
    size = image_size or (32, 32)
    if min(size) < 8:
        raise ValueError(f"The generated dataset needs images of at least 8x8, got {size}.")
    n = num_examples if num_examples is not None else (2000 if split == "train" else 500)
    classes = 10 if num_classes is None else num_classes
    x, y = _generate_images(int(n), size, classes, seed, split)
    return _split_from_arrays(x, y, generated_class_names(classes), None)


# TensorFlow Datasets ----------------------------------------------------------


def _tfds_split_name(name: str, split: str, available: Sequence[str]) -> str:
    """Maps "test" to "validation" for tfds datasets that have no test split."""
    if split != "test":
        return split
    available = set(available)
    if available:
        if "test" in available or "validation" not in available:
            return "test"
        return "validation"
    base = name.split(":")[0].split("/")[0]
    return "validation" if base in _TFDS_NO_TEST_SPLIT else "test"


def _load_tfds(name, split, data_dir, image_size, num_examples, num_classes) -> DataSplit:
    if not name:
        raise ValueError("Empty tfds dataset name: use 'tfds:NAME', e.g. 'tfds:cifar10'.")
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ImportError(
            f"Loading 'tfds:{name}' needs tensorflow-datasets: pip install tensorflow-datasets."
        ) from e
    not_prepared = (
        f"TFDS dataset {name!r} is not available{' in ' + repr(data_dir) if data_dir else ''} "
        "and is never downloaded here. Prepare it on a machine with network access "
        f"(`tfds build {name} --data_dir DIR`, or manual download for imagenet2012) and "
        "pass --data-dir DIR (data_dir=DIR), or pass a local dataset folder or file instead."
    )
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise ValueError(f"Unknown tfds dataset {name!r}.") from e
    info = builder.info
    image_key, label_key = tuple(info.supervised_keys or ("image", "label"))[:2]
    features = info.features
    if image_key not in features or label_key not in features:
        raise ValueError(
            f"TFDS dataset {name!r} has no ({image_key!r}, {label_key!r}) image and label "
            f"features; it has {sorted(features.keys())}."
        )
    label = features[label_key]
    class_names = list(getattr(label, "names", None) or [])
    if not class_names:
        raise ValueError(f"TFDS dataset {name!r}: feature {label_key!r} has no class names.")
    if num_classes is not None and num_classes != len(class_names):
        raise ValueError(
            f"num_classes={num_classes} is not supported for tfds sources: {name!r} has "
            f"{len(class_names)} classes and cannot be subset without a full pass."
        )
    shape = features[image_key].shape
    source_size = tuple(shape[:2]) if None not in shape[:2] else None
    channels = shape[-1]

    tfds_split = _tfds_split_name(name, split, list(info.splits))
    read_split = tfds_split if num_examples is None else f"{tfds_split}[:{int(num_examples)}]"
    try:
        dataset = tfds.load(
            name, split=read_split, data_dir=data_dir, download=False, shuffle_files=False
        )
    except AssertionError as e:  # tfds signals missing prepared data this way.
        raise FileNotFoundError(not_prepared) from e
    except (OSError, tf.errors.NotFoundError) as e:
        raise FileNotFoundError(f"{not_prepared}\n({e})") from e

    def convert(example):
        x = example[image_key]
        if channels == 1:
            x = tf.image.grayscale_to_rgb(x)
        return x, tf.cast(example[label_key], tf.int32)

    dataset = dataset.map(convert, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if tfds_split in info.splits:
        count = info.splits[read_split].num_examples
    else:  # Mocked or unusual builders report no splits: count once.
        count = int(dataset.reduce(0, lambda n, _: n + 1).numpy())
    return _finish(DataSplit(dataset, int(count), class_names, source_size), image_size)


# CIFAR-10 python version ------------------------------------------------------


def _find_cifar10(path: Path) -> Path | None:
    """Returns the cifar-10-batches-py folder or archive at or inside `path`."""
    for candidate in (path, path / "cifar-10-batches-py"):
        if (candidate / "batches.meta").is_file() and (candidate / "test_batch").is_file():
            return candidate
    archive = path / "cifar-10-python.tar.gz"
    if archive.is_file():
        return archive
    return None


def _cifar10_members(path: Path, names: Sequence[str]):
    """Yields `(name, bytes)` of the wanted CIFAR-10 files, in `names` order.

    Reads a folder or the tar archive directly (no extraction).
    """
    if path.is_dir():
        for name in names:
            file = path / name
            if not file.is_file():
                raise ValueError(f"CIFAR-10 folder {str(path)!r} has no file {name!r}.")
            yield name, file.read_bytes()
        return
    with tarfile.open(path, "r:*") as tar:
        members = {}
        for member in tar.getmembers():
            base = member.name.rsplit("/", 1)[-1]
            if member.isfile() and base in names and base not in members:
                members[base] = member
        for name in names:
            if name not in members:
                raise ValueError(f"CIFAR-10 archive {str(path)!r} has no member {name!r}.")
            yield name, tar.extractfile(members[name]).read()


def _unpickle(data: bytes, where: str) -> dict:
    # The official CIFAR files are pickles; only open archives you trust.
    try:
        return pickle.load(io.BytesIO(data), encoding="bytes")
    except Exception as e:
        raise ValueError(f"Cannot read {where} as a CIFAR-10 pickle: {e}") from e


def _load_cifar10(path: Path, split, image_size, num_examples, num_classes) -> DataSplit:
    batch_names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    class_names = list(CIFAR10_CLASS_NAMES)
    (_, meta_bytes), = _cifar10_members(path, ["batches.meta"])
    meta = _unpickle(meta_bytes, f"{path}/batches.meta")
    if b"label_names" in meta:
        class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[b"label_names"]]
    num_source_classes = len(class_names)
    class_names = _take_classes(class_names, num_classes)

    xs, ys, count = [], [], 0
    for name, data in _cifar10_members(path, batch_names):
        batch = _unpickle(data, f"{path}/{name}")
        rows = np.asarray(batch.get(b"data"))
        labels = np.asarray(batch.get(b"labels", []), dtype=np.int64)
        if rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] != 3072:
            raise ValueError(
                f"CIFAR-10 file {name!r} in {str(path)!r}: b'data' must be uint8 of shape "
                f"(N, 3072), got {rows.dtype} {rows.shape}."
            )
        if labels.shape != (len(rows),):
            raise ValueError(
                f"CIFAR-10 file {name!r} in {str(path)!r}: {labels.size} labels for "
                f"{len(rows)} images."
            )
        if labels.size and (labels.min() < 0 or labels.max() >= num_source_classes):
            raise ValueError(
                f"CIFAR-10 file {name!r} in {str(path)!r} has labels outside "
                f"[0, {num_source_classes}): {labels.min()}..{labels.max()}."
            )
        # Rows hold 1024 red, then 1024 green, then 1024 blue values (row-major 32x32).
        images = rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        keep = labels < len(class_names)
        xs.append(images[keep])
        ys.append(labels[keep])
        count += int(keep.sum())
        if num_examples is not None and count >= num_examples:
            break
    x, y = np.concatenate(xs), np.concatenate(ys)
    if num_examples is not None:
        x, y = x[:num_examples], y[:num_examples]
    return _split_from_arrays(np.ascontiguousarray(x), y, class_names, image_size)


# .npz arrays ------------------------------------------------------------------


def _load_npz(path: Path, split, image_size, num_examples, num_classes) -> DataSplit:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"Cannot read {str(path)!r} as an .npz file: {e}") from e
    with archive:
        keys = set(archive.files)
        x_key, y_key = f"x_{split}", f"y_{split}"
        for key in (x_key, y_key):
            if key not in keys:
                raise ValueError(
                    f"{str(path)!r} has no array {key!r} (it has {sorted(keys)}); expected "
                    "x_train, y_train, x_test, y_test."
                )
        x = archive[x_key]
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(
                f"{str(path)!r}: {x_key!r} must be uint8 images of shape (N, H, W, 3), got "
                f"{x.dtype} {x.shape}."
            )
        y = _check_labels(archive[y_key], y_key, len(x), path)
        # The class count comes from both splits, so train and test agree.
        all_labels = [y] + [
            _check_labels(archive[k], k, None, path) for k in ("y_train", "y_test")
            if k != y_key and k in keys
        ]
        max_label = max((int(a.max()) for a in all_labels if a.size), default=-1)
        if "class_names" in keys:
            class_names = [str(n) for n in np.asarray(archive["class_names"]).reshape(-1)]
            if max_label >= len(class_names):
                raise ValueError(
                    f"{str(path)!r}: label {max_label} in {y_key!r} has no entry in "
                    f"'class_names' ({len(class_names)} names)."
                )
        else:
            class_names = [str(i) for i in range(max_label + 1)]
    class_names = _take_classes(class_names, num_classes)
    keep = y < len(class_names)
    x, y = x[keep], y[keep]
    if num_examples is not None:
        x, y = x[:num_examples], y[:num_examples]
    return _split_from_arrays(x, y, class_names, image_size)


def _check_labels(y: np.ndarray, key: str, n: int | None, path: Path) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1:
        raise ValueError(
            f"{str(path)!r}: {key!r} must hold integer labels of shape (N,) or (N, 1), got "
            f"{y.dtype} {y.shape}."
        )
    if n is not None and len(y) != n:
        raise ValueError(f"{str(path)!r}: {key!r} has {len(y)} labels for {n} images.")
    if y.size and y.min() < 0:
        raise ValueError(f"{str(path)!r}: {key!r} has a negative label {int(y.min())}.")
    return y.astype(np.int64)


# Tiny ImageNet ------------------------------------------------------------------


def _find_tiny_imagenet(path: Path) -> Path | None:
    for candidate in (path, path / "tiny-imagenet-200"):
        if (candidate / "wnids.txt").is_file() and (candidate / "train").is_dir():
            return candidate
    return None


def _load_tiny_imagenet(root: Path, *, split, image_size, holdout_fraction, seed,
                        num_examples, num_classes) -> DataSplit:
    """Reads the official tiny-imagenet-200 folder; labels follow sorted wnids."""
    wnids = sorted({line.strip() for line in (root / "wnids.txt").read_text().splitlines()} - {""})
    if not wnids:
        raise ValueError(f"{str(root / 'wnids.txt')!r} lists no classes.")
    wnids = _take_classes(wnids, num_classes)
    words = {}
    words_file = root / "words.txt"
    if words_file.is_file():
        for line in words_file.read_text(encoding="utf-8", errors="replace").splitlines():
            wnid, _, text = line.partition("\t")
            words[wnid.strip()] = text.split(",")[0].strip()
    class_names = [words.get(w) or w for w in wnids]
    index = {w: i for i, w in enumerate(wnids)}

    val_dir = root / "val"
    annotations = val_dir / "val_annotations.txt"
    has_val = annotations.is_file() and (val_dir / "images").is_dir()
    if split == "test" and has_val:
        files, labels = [], []
        for line in annotations.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 2 and parts[1].strip() in index:
                files.append(str(val_dir / "images" / parts[0].strip()))
                labels.append(index[parts[1].strip()])
        files, labels = np.asarray(files, dtype=object), np.asarray(labels, dtype=np.int64)
    else:
        files, labels = [], []
        for i, wnid in enumerate(wnids):
            folder = root / "train" / wnid
            if not folder.is_dir():
                raise ValueError(f"Tiny ImageNet folder {str(root)!r} has no train/{wnid}/.")
            found = _list_images(folder)
            files += found
            labels += [i] * len(found)
        files, labels = np.asarray(files, dtype=object), np.asarray(labels, dtype=np.int64)
        if not has_val:
            files, labels = _holdout(files, labels, split, holdout_fraction, seed)
    files, labels = _seeded_order(files, labels, seed, split, num_examples)
    # The official images are all 64x64; any other size is resized to that.
    target = image_size or (64, 64)
    return _split_from_files(files, labels, class_names, target, jpeg_only=True)


# Image folders -------------------------------------------------------------------


def _list_images(folder: Path) -> list[str]:
    """Image files under `folder` (recursive), sorted for a stable order."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."):
                found.append(os.path.join(dirpath, name))
    return found


def _class_folders(root: Path) -> dict[str, list[str]]:
    """Maps each sub-folder of `root` that holds images to its image files."""
    if not root.is_dir():
        return {}
    classes = {}
    for child in sorted(root.iterdir()):
        if child.is_dir() and not child.name.startswith("."):
            files = _list_images(child)
            if files:
                classes[child.name] = files
    return classes


def _find_image_folder(path: Path):
    """Returns `(train classes, test classes or None)` for an image folder, else None."""
    train = _class_folders(path / "train")
    if train:
        for name in ("test", "val", "validation"):
            test = _class_folders(path / name)
            if test:
                return train, test
        return train, None
    classes = _class_folders(path)
    if classes:
        return classes, None
    return None


def _load_image_folder(layout, *, split, image_size, holdout_fraction, seed,
                       num_examples, num_classes) -> DataSplit:
    train, test = layout
    class_names = _take_classes(sorted(train), num_classes)
    index = {c: i for i, c in enumerate(class_names)}
    if test is not None:
        unknown = sorted(set(test) - set(train))
        if unknown:
            raise ValueError(
                f"Test class folders {unknown} have no training folder; classes are "
                f"{sorted(train)}."
            )
    chosen = test if (split == "test" and test is not None) else train
    files, labels = [], []
    for name, found in chosen.items():
        if name in index:
            files += found
            labels += [index[name]] * len(found)
    files, labels = np.asarray(files, dtype=object), np.asarray(labels, dtype=np.int64)
    if test is None:
        files, labels = _holdout(files, labels, split, holdout_fraction, seed)
    files, labels = _seeded_order(files, labels, seed, split, num_examples)
    target = image_size or _common_image_size(files)
    return _split_from_files(files, labels, class_names, target, jpeg_only=False)


def _common_image_size(files) -> tuple[int, int] | None:
    """The (h, w) shared by all files (header reads only), or None if they vary."""
    from PIL import Image

    sizes = set()
    for file in files:
        with Image.open(file) as image:
            sizes.add((image.height, image.width))
        if len(sizes) > 1:
            return None
    return sizes.pop() if sizes else None


# Shared helpers ------------------------------------------------------------------


def _normalize_image_size(image_size) -> tuple[int, int]:
    if isinstance(image_size, (int, np.integer)):
        image_size = (image_size, image_size)
    try:
        size = tuple(int(s) for s in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}.") from None
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"image_size must be an int or (height, width) > 0, got {image_size!r}.")
    return size


def _take_classes(class_names: list[str], num_classes: int | None) -> list[str]:
    if num_classes is None:
        return list(class_names)
    if num_classes > len(class_names):
        raise ValueError(
            f"num_classes={num_classes} exceeds the {len(class_names)} classes of the dataset."
        )
    return list(class_names)[:num_classes]


def _holdout(files, labels, split, fraction, seed):
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


def _seeded_order(files, labels, seed, split, num_examples):
    rng = np.random.default_rng([int(seed), SPLITS.index(split), 0x4F52])
    order = rng.permutation(len(files))
    if num_examples is not None:
        order = order[:num_examples]
    return files[order], labels[order]


def _resize_uint8(image, size):
    """Bilinear resize of a uint8 image, rounded and clipped back to uint8."""
    resized = tf.image.resize(image, size, method="bilinear", antialias=True)
    resized = tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)
    resized.set_shape((size[0], size[1], 3))
    return resized


def _resize_if_needed(image, size):
    shape = tf.shape(image)
    same = tf.logical_and(tf.equal(shape[0], size[0]), tf.equal(shape[1], size[1]))
    image = tf.cond(same, lambda: image, lambda: _resize_uint8(image, size))
    image.set_shape((size[0], size[1], 3))
    return image


def _split_from_arrays(x: np.ndarray, y: np.ndarray, class_names, image_size) -> DataSplit:
    dataset = tf.data.Dataset.from_tensor_slices((x, y.astype(np.int32)))
    split = DataSplit(dataset, int(len(x)), list(class_names), (int(x.shape[1]), int(x.shape[2])))
    return _finish(split, image_size)


def _split_from_files(files, labels, class_names, image_size, *, jpeg_only: bool) -> DataSplit:
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


def _finish(split: DataSplit, image_size) -> DataSplit:
    """Applies the requested image size, if any."""
    if image_size is None or image_size == split.image_size:
        return split
    return split.resized(image_size)
