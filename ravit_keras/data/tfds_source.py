"""Prepared TensorFlow Datasets datasets (``tfds:NAME``; never downloaded here)."""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from ravit_keras.data.split import DataSplit, finish

# tfds datasets whose held-out labelled split is called "validation".
_TFDS_NO_TEST_SPLIT = ("imagenet2012", "imagenet2012_subset", "imagenet_resized", "imagenette")


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


def load_tfds(name, split, data_dir, image_size, num_examples, num_classes) -> DataSplit:
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
    return finish(DataSplit(dataset, int(count), class_names, source_size), image_size)

