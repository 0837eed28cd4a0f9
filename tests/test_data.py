"""Tests of ravit_keras.data: every source on tiny files written here, and the pipeline."""

from __future__ import annotations

import importlib.resources
import io
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from ravit_keras import data
from ravit_keras.config import get_config

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CLASS_COLOURS = [(220, 30, 30), (30, 200, 30), (30, 30, 220)]


# Fixtures: tiny datasets in the official layouts ----------------------------


def _cifar_batch(x: np.ndarray, y: np.ndarray, label: str) -> bytes:
    rows = x.transpose(0, 3, 1, 2).reshape(len(x), 3072)  # Official channel-first rows.
    return pickle.dumps(
        {b"batch_label": label.encode(), b"labels": [int(v) for v in y], b"data": rows,
         b"filenames": [b"x.png"] * len(y)},
        protocol=2,
    )


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
        (root / f"data_batch_{b + 1}").write_bytes(_cifar_batch(x_train[s], y_train[s], "train"))
    (root / "test_batch").write_bytes(_cifar_batch(x_test, y_test, "test"))
    meta = {b"label_names": [n.encode() for n in data.CIFAR10_CLASS_NAMES], b"num_vis": 3072}
    (root / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return root


def _write_jpeg(path: Path, colour, size=(64, 64)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size[1], size[0]), colour).save(path, quality=95)


def _make_tiny_imagenet(root: Path, with_val: bool, per_class: int = 5) -> Path:
    wnids = ["n003", "n001", "n002"]  # Unsorted on purpose: labels follow sorted wnids.
    words = {"n001": "goldfish, Carassius auratus", "n002": "bullfrog", "n003": "tabby, tabby cat"}
    root.mkdir(parents=True)
    (root / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    (root / "words.txt").write_text(
        "".join(f"{w}\t{t}\n" for w, t in words.items()) + "n999\tunused class\n"
    )
    for i, wnid in enumerate(sorted(wnids)):
        for k in range(per_class):
            _write_jpeg(root / "train" / wnid / "images" / f"{wnid}_{k}.JPEG", CLASS_COLOURS[i])
    if with_val:
        lines = []
        for k, wnid in enumerate(["n002", "n001", "n003", "n002"]):
            _write_jpeg(root / "val" / "images" / f"val_{k}.JPEG", CLASS_COLOURS[sorted(wnids).index(wnid)])
            lines.append(f"val_{k}.JPEG\t{wnid}\t0\t0\t63\t63\n")
        (root / "val" / "val_annotations.txt").write_text("".join(lines))
    return root


def _write_png(path: Path, colour, size):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size[1], size[0]), colour).save(path)


def _labels(split: data.DataSplit) -> np.ndarray:
    return np.array([int(y) for _, y in split.dataset.as_numpy_iterator()])


def _files_of(split: data.DataSplit) -> list:
    # Fixture images have unique pixels, so the bytes identify the file.
    return [x.tobytes() for x, _ in split.dataset.as_numpy_iterator()]


# Generated source -------------------------------------------------------------


def test_generated_shapes_classes_and_determinism():
    a = data.load_split("generated", "train", num_examples=60, seed=3)
    b = data.load_split("generated", "train", num_examples=60, seed=3)
    assert a.num_examples == 60 and a.image_size == (32, 32)
    assert a.class_names == data.generated_class_names(10)
    assert a.class_names[:2] == ["red_blob", "green_blob"]
    assert a.class_names[5:7] == ["fine_vertical_stripes", "fine_horizontal_stripes"]
    xa, ya = a.as_numpy()
    xb, yb = b.as_numpy()
    assert xa.dtype == np.uint8 and xa.shape == (60, 32, 32, 3)
    assert ya.dtype == np.int64 and np.bincount(ya, minlength=10).tolist() == [6] * 10
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
    xc, _ = data.load_split("generated", "train", num_examples=60, seed=4).as_numpy()
    assert not np.array_equal(xa, xc)


def test_generated_defaults_and_disjoint_splits():
    train = data.load_split("generated", "train")
    test = data.load_split("generated", "test")
    assert (train.num_examples, test.num_examples) == (2000, 500)
    x_train, _ = train.as_numpy()
    x_test, _ = test.as_numpy()
    train_keys = {x.tobytes() for x in x_train}
    assert len(train_keys) == 2000
    assert not train_keys & {x.tobytes() for x in x_test}


def test_generated_size_and_num_classes():
    s = data.load_split("generated", "test", image_size=(48, 40), num_examples=12, num_classes=4)
    x, y = s.as_numpy()
    assert x.shape == (12, 48, 40, 3)
    assert s.class_names == ["red_blob", "green_blob", "fine_vertical_stripes",
                             "fine_horizontal_stripes"]
    assert set(y.tolist()) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="num_classes=11"):
        data.load_split("generated", num_classes=11)


def test_generated_fine_classes_vanish_at_half_resolution():
    # Each fine texture sums to zero over any 2x2 cell (any phase): 2x pooling erases it.
    for tile, colour in data.GENERATED_FINE_CLASSES.values():
        tile = np.asarray(tile)
        for py in range(2):
            for px in range(2):
                cell = np.roll(tile, (py, px), axis=(0, 1))
                assert abs(cell.sum()) < 1e-9
        assert len(colour) == 3
    # ... and the fine classes carry far more energy in what 2x pooling removes.
    x, y = data.load_split("generated", "train", num_examples=200).as_numpy()
    x = x.astype(np.float64)
    pooled = x.reshape(-1, 16, 2, 16, 2, 3).mean(axis=(2, 4))
    detail = np.abs(x - np.repeat(np.repeat(pooled, 2, axis=1), 2, axis=2)).mean(axis=(1, 2, 3))
    coarse, fine = detail[y < 5].mean(), detail[y >= 5].mean()
    assert fine > 2.5 * coarse, (coarse, fine)


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


# Tiny ImageNet -------------------------------------------------------------------


def test_tiny_imagenet_without_val_holdout(tmp_path):
    root = _make_tiny_imagenet(tmp_path / "tiny-imagenet-200", with_val=False, per_class=10)
    train = data.load_split(str(tmp_path), "train", holdout_fraction=0.2, seed=1)
    test = data.load_split(str(root), "test", holdout_fraction=0.2, seed=1)
    assert train.class_names == ["goldfish", "bullfrog", "tabby"]  # sorted wnids n001..n003
    assert (train.num_examples, test.num_examples) == (24, 6)
    assert train.image_size == (64, 64)
    x, y = test.as_numpy()
    assert x.shape == (6, 64, 64, 3) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [2, 2, 2]  # stratified
    # Labels match the JPEG contents (each class has its own colour).
    for image, label in zip(x, y):
        np.testing.assert_allclose(image.reshape(-1, 3).mean(0), CLASS_COLOURS[label], atol=4)


def test_holdout_is_disjoint_deterministic_and_seeded(tmp_path):
    root = tmp_path / "folders"
    for c, name in enumerate(["cat", "dog"]):
        for k in range(10):
            # Unique pixel content per file, so images identify files.
            _write_png(root / name / f"{k}.png", (c * 100 + k, k, 3), (8, 8))
    def keys(split, seed):
        return _files_of(data.load_split(str(root), split, seed=seed, holdout_fraction=0.3))
    train, test = keys("train", 0), keys("test", 0)
    assert len(train) == 14 and len(test) == 6
    assert not set(train) & set(test) and len(set(train) | set(test)) == 20
    assert keys("train", 0) == train and keys("test", 0) == test
    assert set(keys("test", 5)) != set(test)
    # The listing is a seeded mix of classes, not class-sorted.
    labels = _labels(data.load_split(str(root), "train", seed=0, holdout_fraction=0.3))
    assert sorted(labels.tolist()) == [0] * 7 + [1] * 7 and labels.tolist() != sorted(labels.tolist())


def test_tiny_imagenet_with_val(tmp_path):
    root = _make_tiny_imagenet(tmp_path / "tiny-imagenet-200", with_val=True, per_class=3)
    train = data.load_split(str(root), "train")
    test = data.load_split(str(root), "test")
    assert train.num_examples == 9 and test.num_examples == 4
    x, y = test.as_numpy()
    assert sorted(y.tolist()) == [0, 1, 1, 2]
    for image, label in zip(x, y):
        np.testing.assert_allclose(image.reshape(-1, 3).mean(0), CLASS_COLOURS[label], atol=4)
    small = data.load_split(str(root), "test", image_size=32, num_classes=2)
    xs, ys = small.as_numpy()
    assert xs.shape == (3, 32, 32, 3) and sorted(ys.tolist()) == [0, 1, 1]


# Image folders ---------------------------------------------------------------------


def test_class_folders_of_varying_sizes(tmp_path):
    root = tmp_path / "images"
    sizes = [(20, 30), (32, 32), (17, 9)]
    for c, name in enumerate(["ant", "bee", "cow"]):
        for k, size in enumerate(sizes):
            _write_png(root / name / f"img{k}.png", CLASS_COLOURS[c], size)
        _write_jpeg(root / name / "sub" / "extra.jpg", CLASS_COLOURS[c], (24, 24))
    (root / "ant" / "notes.txt").write_text("not an image")
    s = data.load_split(str(root), "train", holdout_fraction=0.25)
    assert s.class_names == ["ant", "bee", "cow"]
    assert s.image_size is None and s.num_examples == 9
    shapes = {x.shape for x, _ in s.dataset.as_numpy_iterator()}
    assert len(shapes) > 1
    with pytest.raises(ValueError, match="vary in size"):
        s.as_numpy()
    x, y = s.resized(16).as_numpy()
    assert x.shape == (9, 16, 16, 3)
    resized = data.load_split(str(root), "test", image_size=(12, 10), holdout_fraction=0.25)
    x, y = resized.as_numpy()
    assert resized.image_size == (12, 10) and x.shape == (3, 12, 10, 3)
    for image, label in zip(x, y):  # Resizing a flat colour keeps it.
        np.testing.assert_allclose(image.reshape(-1, 3).mean(0), CLASS_COLOURS[label], atol=4)


def test_train_test_folders(tmp_path):
    for split, n in (("train", 3), ("test", 2)):
        for c, name in enumerate(["a", "b"]):
            for k in range(n):
                _write_png(tmp_path / split / name / f"{k}.png", CLASS_COLOURS[c], (10, 10))
    train = data.load_split(str(tmp_path), "train")
    test = data.load_split(str(tmp_path), "test")
    assert (train.num_examples, test.num_examples) == (6, 4)
    assert train.image_size == (10, 10) and test.class_names == ["a", "b"]
    assert sorted(_labels(test).tolist()) == [0, 0, 1, 1]
    _write_png(tmp_path / "test" / "zebra" / "0.png", (0, 0, 0), (10, 10))
    with pytest.raises(ValueError, match="zebra"):
        data.load_split(str(tmp_path), "test")


# .npz ----------------------------------------------------------------------------------


def _write_npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def test_npz_source_and_channel_stats(tmp_path):
    rng = np.random.default_rng(1)
    x_train = rng.integers(0, 256, size=(10, 8, 6, 3), dtype=np.uint8)
    x_test = rng.integers(0, 256, size=(4, 8, 6, 3), dtype=np.uint8)
    path = _write_npz(
        tmp_path / "d.npz", x_train=x_train, y_train=np.arange(10)[:, None] % 3,
        x_test=x_test, y_test=np.array([0, 1, 2, 1], np.uint8),
        class_names=np.array(["x", "y", "z"]),
    )
    train = data.load_split(path, "train")
    x, y = train.as_numpy()
    np.testing.assert_array_equal(x, x_train)
    assert y.tolist() == (np.arange(10) % 3).tolist()
    assert train.class_names == ["x", "y", "z"] and train.image_size == (8, 6)
    assert data.load_split(path, "test", num_examples=3).as_numpy()[1].tolist() == [0, 1, 2]
    mean, std = data.compute_channel_stats(train)
    pixels = x_train.reshape(-1, 3) / 255.0
    np.testing.assert_allclose(mean, pixels.mean(0), rtol=1e-9)
    np.testing.assert_allclose(std, pixels.std(0), rtol=1e-9)
    mean2, _ = data.compute_channel_stats(train, limit=2)
    np.testing.assert_allclose(mean2, x_train[:2].reshape(-1, 3).mean(0) / 255.0)
    # Without class_names, classes are numbered from both splits' labels.
    path = _write_npz(tmp_path / "e.npz", x_train=x_train, y_train=np.zeros(10, int),
                      x_test=x_test, y_test=np.array([0, 4, 0, 0]))
    assert data.load_split(path, "train").class_names == ["0", "1", "2", "3", "4"]


def test_npz_errors_name_the_key(tmp_path):
    x = np.zeros((2, 4, 4, 3), np.uint8)
    y = np.zeros(2, np.int64)
    missing = _write_npz(tmp_path / "m.npz", x_train=x, y_train=y)
    with pytest.raises(ValueError, match="'x_test'"):
        data.load_split(missing, "test")
    floats = _write_npz(tmp_path / "f.npz", x_train=x.astype(np.float32), y_train=y, x_test=x, y_test=y)
    with pytest.raises(ValueError, match="'x_train'.*uint8"):
        data.load_split(floats, "train")
    gray = _write_npz(tmp_path / "g.npz", x_train=x[..., 0], y_train=y, x_test=x, y_test=y)
    with pytest.raises(ValueError, match="'x_train'"):
        data.load_split(gray, "train")
    short = _write_npz(tmp_path / "s.npz", x_train=x, y_train=y[:1], x_test=x, y_test=y)
    with pytest.raises(ValueError, match="'y_train'"):
        data.load_split(short, "train")
    float_y = _write_npz(tmp_path / "y.npz", x_train=x, y_train=y, x_test=x, y_test=y + 0.5)
    with pytest.raises(ValueError, match="'y_test'"):
        data.load_split(float_y, "test")


# Errors ------------------------------------------------------------------------------------


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such_dir"):
        data.load_split(str(tmp_path / "no_such_dir"))
    with pytest.raises(ValueError, match="'validation'"):
        data.load_split("generated", "validation")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "readme.md").write_text("hi")
    with pytest.raises(ValueError, match="(?s)Unrecognised dataset folder.*cifar-10-batches-py"):
        data.load_split(str(tmp_path / "empty"))
    (tmp_path / "file.csv").write_text("a,b")
    with pytest.raises(ValueError, match="Unsupported dataset file"):
        data.load_split(str(tmp_path / "file.csv"))
    with pytest.raises(ValueError, match="holdout_fraction"):
        data.load_split("generated", holdout_fraction=1.0)
    with pytest.raises(ValueError, match="image_size"):
        data.load_split("generated", image_size=(0, 3))
    with pytest.raises(ValueError, match="num_examples"):
        data.load_split("generated", num_examples=0)


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
    assert data._tfds_split_name("imagenet2012", "test", []) == "validation"
    assert data._tfds_split_name("imagenet2012:5.1.0", "test", []) == "validation"
    assert data._tfds_split_name("cifar10", "test", []) == "test"
    assert data._tfds_split_name("x", "test", ["train", "validation"]) == "validation"
    assert data._tfds_split_name("x", "test", ["train", "test", "validation"]) == "test"
    assert data._tfds_split_name("imagenet2012", "train", []) == "train"


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


# Real data (../shared/data) ---------------------------------------------------------------------


@pytest.mark.real_data
def test_real_cifar10_official_folder(tmp_path):
    compact = SHARED_DATA / "cifar10_compact.npz"
    if not compact.is_file() or not (SHARED_DATA / "materialize.py").is_file():
        pytest.skip(f"real CIFAR-10 not found at {SHARED_DATA} (only present beside the dev checkout)")
    # The shared npz is a compact JPEG store; unpack the official layout into tmp_path.
    subprocess.run([sys.executable, str(SHARED_DATA / "materialize.py"), "cifar10", str(tmp_path)],
                   check=True, capture_output=True)
    train = data.load_split(str(tmp_path), "train", num_examples=300)
    assert train.num_examples == 300 and train.class_names == list(data.CIFAR10_CLASS_NAMES)
    x, y = train.as_numpy()
    assert x.shape == (300, 32, 32, 3) and set(y.tolist()) == set(range(10))
    with np.load(compact) as z:
        np.testing.assert_array_equal(y, z["y_train"][:300])
        exact = z["train_exact_index"]
        keep = exact < 300
        np.testing.assert_array_equal(x[exact[keep]], z["train_exact_x"][keep])
    mean, _ = data.compute_channel_stats(train)
    np.testing.assert_allclose(mean, [0.4913, 0.4821, 0.4465], atol=0.03)
    assert data.load_split(str(tmp_path), "test").num_examples == 10000


@pytest.mark.real_data
def test_real_tiny_imagenet_jpegs(tmp_path):
    packed = SHARED_DATA / "tinyimagenet_train_jpeg.npz"
    if not packed.is_file():
        pytest.skip(f"real Tiny ImageNet not found at {SHARED_DATA} (only present beside the dev checkout)")
    # A 3-class, 12-image-per-class slice of the official layout (the full unpack is 60k files).
    z = np.load(packed)
    wnids, words, off, blob = z["wnids"], z["class_words"], z["train_offsets"], z["train_jpeg"]
    labels, names = z["y_train"], z["train_names"]
    root = tmp_path / "tiny-imagenet-200"
    root.mkdir()
    (root / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids[:3]))
    (root / "words.txt").write_text("".join(f"{w}\t{t}\n" for w, t in zip(wnids, words)))
    for c in range(3):
        for i in np.flatnonzero(labels == c)[:12]:
            path = root / "train" / wnids[c] / "images" / names[i]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(blob[off[i]:off[i + 1]].tobytes())
    train = data.load_split(str(root), "train", holdout_fraction=0.25)
    test = data.load_split(str(root), "test", holdout_fraction=0.25)
    assert train.class_names == [words[c].split(",")[0] for c in range(3)]
    assert (train.num_examples, test.num_examples) == (27, 9)
    x, y = test.as_numpy()
    assert x.shape == (9, 64, 64, 3) and np.bincount(y).tolist() == [3, 3, 3]
    assert x.std() > 20  # real photos, decoded
    first = Image.open(io.BytesIO(blob[off[0]:off[1]].tobytes())).convert("RGB")
    assert first.size == (64, 64)


def test_cached_split_keeps_content_and_order(tmp_path):
    _make_tiny_imagenet(tmp_path / "tiny-imagenet-200", with_val=False, per_class=4)
    split = data.load_split(str(tmp_path), "train", holdout_fraction=0.25)
    cached = split.cached()
    assert (cached.num_examples, cached.class_names, cached.image_size) == (
        split.num_examples, split.class_names, split.image_size)
    x, y = split.as_numpy()
    for _ in range(2):  # The second pass reads from memory.
        cx, cy = cached.as_numpy()
        np.testing.assert_array_equal(cx, x)
        np.testing.assert_array_equal(cy, y)
