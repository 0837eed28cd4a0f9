"""Image files without TensorFlow (``ravit_keras.images``) agree with the training pipeline."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from ravit_keras import images


def _picture(rng, h, w):
    x = rng.integers(0, 256, (h, w, 3)) // 2 + np.linspace(0, 120, w)[None, :, None]
    return x.astype(np.uint8)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_decoding_equals_tensorflow(tmp_path, fmt):
    rng = np.random.default_rng(0)
    for i in range(5):
        x = _picture(rng, int(rng.integers(5, 60)), int(rng.integers(5, 60)))
        path = tmp_path / f"x{i}.{fmt.lower()}"
        Image.fromarray(x).save(path, format=fmt, **({"quality": 80} if fmt == "JPEG" else {}))
        data = path.read_bytes()
        ref = (tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE") if fmt == "JPEG"
               else tf.io.decode_image(data, channels=3)).numpy()
        np.testing.assert_array_equal(images.read_image(path), ref)


def test_resize_matches_tensorflow_within_one_level():
    rng = np.random.default_rng(1)
    differing = total = 0
    for _ in range(20):
        x = _picture(rng, int(rng.integers(5, 70)), int(rng.integers(5, 70)))
        size = (int(rng.integers(3, 80)), int(rng.integers(3, 80)))
        ref = tf.cast(tf.clip_by_value(tf.round(tf.image.resize(x, size, "bilinear", antialias=True)), 0, 255),
                      tf.uint8).numpy()
        mine = images.resize(x, size)
        assert mine.shape == (*size, 3) and mine.dtype == np.uint8
        assert np.abs(mine.astype(int) - ref).max() <= 1  # float64 here, float32 in TensorFlow.
        differing += int((mine != ref).sum())
        total += mine.size
    assert differing / total < 0.01
    same = _picture(rng, 8, 9)
    np.testing.assert_array_equal(images.resize(same, (8, 9)), same)


def test_bad_files_are_named(tmp_path):
    (tmp_path / "text.png").write_text("not an image")
    buf = io.BytesIO()
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(buf, format="JPEG")
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[:60])
    for name in ("text.png", "cut.jpg", "missing.png"):
        with pytest.raises(images.ImageError, match=name):
            images.read_image(tmp_path / name)
    (tmp_path / "empty").mkdir()
    with pytest.raises(images.ImageError, match="holds no image files"):
        images.images_in([tmp_path / "empty"])
    with pytest.raises(images.ImageError, match="does not exist"):
        images.images_in([tmp_path / "nope"])


def test_check_pixels():
    ok = np.full((4, 4, 3), 200, np.uint8)
    assert images.check_pixels(ok, "x") is ok
    with pytest.raises(images.ImageError, match="NaN"):
        images.check_pixels(np.full((4, 4, 3), np.nan, np.float32), "img")
    with pytest.raises(images.ImageError, match="0..1"):
        images.check_pixels(np.full((4, 4, 3), 0.5, np.float32), "img")
    with pytest.raises(images.ImageError, match="outside 0..255"):
        images.check_pixels(np.full((4, 4, 3), 300.0, np.float32), "img")
    with pytest.raises(images.ImageError, match=r"\(H, W, 3\)"):
        images.check_pixels(np.zeros((4, 4)), "img")
