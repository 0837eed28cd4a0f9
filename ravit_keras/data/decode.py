"""Decoding image files on the TensorFlow path (train/eval), pixel for pixel as Pillow's
path (``images.read_image``: predict/run) reads them."""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def _file_header(data: bytes, file: bytes) -> np.ndarray:
    """``[orientation]`` of one file's bytes; refuses more than ``images.MAX_IMAGE_PIXELS``
    (raised inside ``tf.numpy_function``, it reaches the caller as an
    ``InvalidArgumentError`` whose message names the file)."""
    import os

    from ravit_keras import images

    where = repr(os.fsdecode(file))
    with images._open(data, where):  # ImageError (a ValueError) names the file and the cap.
        pass
    return np.asarray([images.exif_orientation(data)], np.int32)


def orient_tf(image, orientation):
    """``image (H, W, C)`` turned upright for an EXIF orientation 1..8: the same result as
    ``images.apply_orientation``."""
    t = lambda x: tf.transpose(x, (1, 0, 2))  # noqa: E731
    branches = [
        lambda: image,                                  # 0 (absent): as 1
        lambda: image,                                  # 1
        lambda: image[:, ::-1],                         # 2 mirrored
        lambda: image[::-1, ::-1],                      # 3 rotated 180
        lambda: image[::-1],                            # 4 mirrored vertically
        lambda: t(image),                               # 5 transposed
        lambda: t(image)[:, ::-1],                      # 6 rotate 90 clockwise
        lambda: t(image)[::-1, ::-1],                   # 7 transversed
        lambda: t(image)[::-1],                         # 8 rotate 90 counter-clockwise
    ]
    out = tf.switch_case(tf.clip_by_value(tf.cast(orientation, tf.int32), 0, 8), branches)
    out.set_shape((None, None, image.shape[-1]))
    return out


def decode_image_file(file, jpeg_only: bool = False):
    """Reads and decodes one image file (a string tensor) into uint8 ``(H, W, 3)`` inside
    a tf.data map, the pixels ``images.read_image`` gives on the Pillow path:

    - JPEG with the accurate integer IDCT (``INTEGER_ACCURATE``, as Pillow and phones);
      PNG, BMP, GIF (first frame) with ``tf.io.decode_image``; 16 bits per channel
      become 8 by the high byte, as Pillow's path does;
    - EXIF orientation applied (``images.exif_orientation``);
    - more than ``images.MAX_IMAGE_PIXELS`` pixels refused before decoding, with an
      error naming the file (``InvalidArgumentError``).

    Needs Python for the header (a ``tf.numpy_function``: a few microseconds per file).
    """
    data = tf.io.read_file(file)
    header = tf.numpy_function(_file_header, [data, file], tf.int32, stateful=False)
    with tf.control_dependencies([header]):
        data = tf.identity(data)
    if jpeg_only:
        image = tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE")
    else:
        image = tf.cond(
            tf.io.is_jpeg(data),
            lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
            lambda: tf.io.decode_image(data, channels=3, expand_animations=False),
        )
    image.set_shape((None, None, 3))
    return orient_tf(image, tf.reshape(header, [-1])[0])
