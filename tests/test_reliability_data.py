"""Trust in data: no code runs from a dataset, class names a file can carry, images read
the same on both paths (EXIF, 16-bit), and huge images refused by name.

Cases of docs/RELIABILITY.md ("Data you did not make"). CLI cases run ``ravit train``
on the bad data: the data is read (and refused) before any model is built or trained.
"""

from __future__ import annotations

import os
import pickle
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ravit_keras import images
from ravit_keras.cli import main
from ravit_keras.data.checks import check_class_names

MARKER = "ravit-pickle-ran"


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def _refused_by_train(capsys, tmp_path, data, names):
    """``ravit train --data data`` exits 2 with one error line naming ``names``; no run folder."""
    out_dir = tmp_path / "run"
    code, out, err = _cli(capsys, "train", "--config", "tiny", "--data", data, "--epochs", "1",
                          "--out", out_dir)
    assert code == 2, out + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ravit train: error:"), err
    for name in names:
        assert name in err, err
    assert not out_dir.exists()
    return err


class _RunsCode:
    """Unpickling this calls ``open(marker, "w")``: the file appears if code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _cifar_folder(root: Path, test_batch: bytes) -> Path:
    root.mkdir(parents=True)
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"a", b"b"]}))
    (root / "test_batch").write_bytes(test_batch)
    for i in range(1, 6):
        (root / f"data_batch_{i}").write_bytes(test_batch)
    return root


# 3. No code from data -------------------------------------------------------------------------


def test_crafted_cifar_pickle_runs_no_code(tmp_path, capsys):
    marker = tmp_path / MARKER
    crafted = pickle.dumps({b"data": _RunsCode(str(marker)), b"labels": [0]})
    root = _cifar_folder(tmp_path / "cifar-10-batches-py", crafted)
    err = _refused_by_train(capsys, tmp_path, root, ["data_batch_1", "io.open", "refused"])
    assert not marker.exists()
    assert "not a CIFAR-10 pickle" in err


def test_crafted_cifar_meta_runs_no_code(tmp_path):
    from ravit_keras.data import load_split

    marker = tmp_path / MARKER
    root = _cifar_folder(tmp_path / "cifar-10-batches-py", b"")
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": _RunsCode(str(marker))}))
    with pytest.raises(ValueError, match=r"batches\.meta.*io\.open"):
        load_split(str(root), "test")
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_cifar_pickles_of_every_protocol_still_load(tmp_path, protocol):
    """What the official files need (NumPy arrays, bytes, lists) passes the restriction, in
    every pickle protocol and with NumPy 1's module names (the official files' own)."""
    from ravit_keras.data import load_split

    rng = np.random.default_rng(0)
    rows = rng.integers(0, 256, (6, 3072), dtype=np.uint8)
    batch = {b"batch_label": b"testing batch 1 of 1", b"labels": [0, 1, 2, 0, 1, 2], b"data": rows,
             b"filenames": [f"{i}.png".encode() for i in range(6)]}
    data = pickle.dumps(batch, protocol=protocol)
    if protocol == 2:
        data = data.replace(b"numpy._core", b"numpy.core")  # As NumPy 1 (the official files) wrote it.
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"x", b"y", b"z"]}, protocol=2))
    (root / "test_batch").write_bytes(data)
    split = load_split(str(root), "test")
    x, y = split.as_numpy()
    assert split.class_names == ["x", "y", "z"] and y.tolist() == [0, 1, 2, 0, 1, 2]
    np.testing.assert_array_equal(x, rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


# Class names ------------------------------------------------------------------------------------


def test_check_class_names():
    assert check_class_names(["cat", "dog house", "ünï"], "here") == ["cat", "dog house", "ünï"]
    for bad in ("a\nb", "a\rb", "tab\there", "nul\x00", "ls\u2028"):
        with pytest.raises(ValueError, match=r"here: class name 1 .*control character"):
            check_class_names(["ok", bad], "here")
    with pytest.raises(ValueError, match="not UTF-8"):
        check_class_names(["caf\udce9"], "here")
    with pytest.raises(ValueError, match="not text"):
        check_class_names([3], "here")


def _npz(path, **extra):
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 256, (8, 8, 8, 3), dtype=np.uint8), y_train=np.arange(8) % 2,
             x_test=rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8), y_test=np.arange(4) % 2, **extra)
    return path


def test_npz_with_object_class_names_names_file_and_key(tmp_path, capsys):
    data = _npz(tmp_path / "objects.npz", class_names=np.array(["a", "b"], dtype=object))
    _refused_by_train(capsys, tmp_path, data, ["objects.npz", "'class_names'", "Python objects"])


def test_npz_class_name_with_a_newline_is_refused(tmp_path, capsys):
    data = _npz(tmp_path / "newline.npz", class_names=np.array(["cat", "dog\nhouse"]))
    _refused_by_train(capsys, tmp_path, data, ["newline.npz", "'dog\\nhouse'", "control character"])


def test_npz_bytes_class_names_are_text(tmp_path):
    from ravit_keras.data import load_split

    data = _npz(tmp_path / "bytes.npz", class_names=np.array([b"cat", b"dog"]))
    assert load_split(str(data), "test").class_names == ["cat", "dog"]


def _folder(root: Path, classes) -> Path:
    rng = np.random.default_rng(0)
    for c in classes:
        d = Path(os.fsdecode(os.path.join(os.fsencode(root), c if isinstance(c, bytes) else c.encode())))
        d.mkdir(parents=True)
        for k in range(3):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(d / f"{k}.png")
    return root


def test_class_folder_with_a_newline_is_refused(tmp_path, capsys):
    data = _folder(tmp_path / "photos", ["cat", "dog\nhouse"])
    _refused_by_train(capsys, tmp_path, data, ["photos", "'dog\\nhouse'", "control character"])


def test_class_folder_not_utf8_is_refused(tmp_path, capsys):
    data = _folder(tmp_path / "photos", ["cat", b"caf\xe9"])
    _refused_by_train(capsys, tmp_path, data, ["photos", "caf\\udce9", "not UTF-8"])


def test_cifar_meta_class_name_with_a_newline_is_refused(tmp_path):
    from ravit_keras.data import load_split

    root = _cifar_folder(tmp_path / "cifar-10-batches-py", b"")
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"cat", b"dog\nhouse"]}))
    with pytest.raises(ValueError, match=r"batches\.meta.*'dog\\nhouse'"):
        load_split(str(root), "test")


# 7. Images: the same pixels on both paths ------------------------------------------------------


def _both_paths(files):
    """Pixels from Pillow (``images.read_image``) and from TensorFlow (``decode_image_file``)."""
    import tensorflow as tf

    from ravit_keras.data.decode import decode_image_file

    tf_pixels = list(tf.data.Dataset.from_tensor_slices([str(f) for f in files])
                     .map(decode_image_file).as_numpy_iterator())
    return [images.read_image(f) for f in files], tf_pixels


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation_is_applied_on_both_paths(tmp_path, fmt):
    from PIL import ImageOps

    x = np.random.default_rng(0).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    files = []
    for o in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = o
        files.append(tmp_path / f"o{o}.{fmt.lower()}")
        Image.fromarray(x).save(files[-1], format=fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))
    pillow, tf_pixels = _both_paths(files)
    for f, a, b in zip(files, pillow, tf_pixels):
        upright = np.asarray(ImageOps.exif_transpose(Image.open(f)).convert("RGB"))
        np.testing.assert_array_equal(a, upright, err_msg=f.name)
        np.testing.assert_array_equal(b, upright, err_msg=f.name)
        assert images.image_size(f) == upright.shape[:2]
    assert pillow[5].shape[:2] == (10, 6)  # 6: turned 90 degrees.


def test_16_bit_pngs_read_as_tensorflow_reads_them(tmp_path):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    grey = rng.integers(0, 65536, (5, 7), dtype=np.uint16)
    grey[0, :3] = [0x12FF, 0x1280, 0xFFFF]  # Rounding would give 19, 18; the high byte 18, 18.
    Image.fromarray(grey).save(tmp_path / "grey16.png")
    for name, shape in (("rgb16.png", (5, 7, 3)), ("rgba16.png", (5, 7, 4))):
        (tmp_path / name).write_bytes(tf.io.encode_png(rng.integers(0, 65536, shape, dtype=np.uint16)).numpy())
    files = [tmp_path / n for n in ("grey16.png", "rgb16.png", "rgba16.png")]
    pillow, tf_pixels = _both_paths(files)
    for f, a, b in zip(files, pillow, tf_pixels):
        ref = tf.io.decode_png(f.read_bytes(), channels=3, dtype=tf.uint8).numpy()
        np.testing.assert_array_equal(a, ref, err_msg=f.name)
        np.testing.assert_array_equal(b, ref, err_msg=f.name)
    assert pillow[0][0, :3, 0].tolist() == [0x12, 0x12, 0xFF]  # Not white: the high byte.


def test_resize_of_a_large_image_stays_small_in_memory():
    x = np.random.default_rng(0).integers(0, 256, (3000, 4000, 3), dtype=np.uint8)  # 36 MB
    tracemalloc.start()
    try:
        y = images.resize(x, (32, 32))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert y.shape == (32, 32, 3)
    assert peak < 30e6, peak  # float64 of the whole image was 288 MB


def _bomb(path, h=20000, w=10000):
    """A 0.2 MB PNG declaring 200 megapixels (all black)."""
    Image.fromarray(np.zeros((h, w), np.uint8)).save(path)
    return path


def test_pixel_cap_names_the_file(tmp_path, monkeypatch):
    bomb = _bomb(tmp_path / "bomb.png")
    for read in (images.read_image, images.image_size):
        with pytest.raises(images.ImageError, match="bomb.png.*too large"):
            read(bomb)
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 50 * 40)
    Image.fromarray(np.zeros((50, 41, 3), np.uint8)).save(tmp_path / "wide.png")
    with pytest.raises(images.ImageError, match=r"wide.png' is 41 x 50 .*MAX_IMAGE_PIXELS"):
        images.read_image(tmp_path / "wide.png")


def test_pixel_cap_on_the_tensorflow_path_names_the_file(tmp_path):
    import tensorflow as tf

    from ravit_keras.data.decode import decode_image_file

    bomb = _bomb(tmp_path / "bomb.png")
    with pytest.raises(tf.errors.InvalidArgumentError, match="bomb.png.*too large"):
        list(tf.data.Dataset.from_tensor_slices([str(bomb)]).map(decode_image_file).as_numpy_iterator())


def test_decompression_bomb_is_skipped_with_skip_bad_images(tmp_path):
    from ravit_keras.prediction import read_images

    ok = tmp_path / "ok.png"
    Image.fromarray(np.full((20, 20, 3), 9, np.uint8)).save(ok)
    bomb = _bomb(tmp_path / "bomb.png")
    with pytest.raises(images.ImageError, match="bomb.png"):
        list(read_images([str(bomb), str(ok)], (8, 8)))
    warnings = []
    got = list(read_images([str(bomb), str(ok)], (8, 8), skip_bad=True, warn=warnings.append))
    assert [f for f, _ in got] == [str(ok)] and len(warnings) == 1 and "bomb.png" in warnings[0]
