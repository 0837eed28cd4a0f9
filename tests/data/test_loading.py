"""Tests of ravit_keras.data: every source on tiny files written here, and the pipeline."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ravit_keras import data
from tests.data.builders import SHARED_DATA, make_tiny_imagenet

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
    make_tiny_imagenet(tmp_path / "tiny-imagenet-200", with_val=False, per_class=4)
    split = data.load_split(str(tmp_path), "train", holdout_fraction=0.25)
    cached = split.cached()
    assert (cached.num_examples, cached.class_names, cached.image_size) == (
        split.num_examples, split.class_names, split.image_size)
    x, y = split.as_numpy()
    for _ in range(2):  # The second pass reads from memory.
        cx, cy = cached.as_numpy()
        np.testing.assert_array_equal(cx, x)
        np.testing.assert_array_equal(cy, y)


# The calibration holdout -----------------------------------------------------------------------


def _pixels(split):
    return {x.tobytes() for x, _ in split.iter_numpy()}


@pytest.mark.parametrize("source", ["generated", "npz", "folder"])
def test_calibration_holdout_is_disjoint_stratified_and_stable(source, tmp_path):
    from ravit_keras.data import load_split

    if source == "npz":
        rng = np.random.default_rng(0)
        np.savez(tmp_path / "d.npz", x_train=rng.integers(0, 256, (200, 8, 8, 3), dtype=np.uint8),
                 y_train=np.arange(200) % 4, x_test=np.zeros((4, 8, 8, 3), np.uint8), y_test=np.arange(4))
        source = tmp_path / "d.npz"
    elif source == "folder":
        rng = np.random.default_rng(1)
        for c in "abcd":
            (tmp_path / "f" / c).mkdir(parents=True)
            for k in range(25):
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "f" / c / f"{k}.png")
        source = tmp_path / "f"
    kw = dict(calibration_fraction=0.2, num_examples=200 if source == "generated" else None)
    train = load_split(source, "train", **kw)
    calibration = load_split(source, "calibration", **kw)
    assert not _pixels(train) & _pixels(calibration)
    counts = np.bincount([y for _, y in calibration.iter_numpy()])
    assert counts.min() == counts.max() > 0  # The same share of every class.
    assert _pixels(load_split(source, "calibration", **kw)) == _pixels(calibration)
    if source != "generated":  # A limit takes from each side, never across.
        limited = load_split(source, "train", calibration_fraction=0.2, num_examples=30)
        assert _pixels(limited) <= _pixels(train)


def test_calibration_split_needs_a_fraction():
    from ravit_keras.data import load_split

    with pytest.raises(ValueError, match="calibration_fraction"):
        load_split("generated", "calibration")
