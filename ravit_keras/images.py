"""Image files and pixels without TensorFlow: listing, decoding, resizing.

The scheduler side (``ravit run``, ``ravit predict`` on converted submodels) reads
images with these, so it starts without importing TensorFlow. They agree with the
training pipeline: ``read_image`` decodes as ``tf.io.decode_image(channels=3)`` with
the accurate integer IDCT (``dct_method="INTEGER_ACCURATE"``, which the data
pipeline uses), and ``resize`` is ``tf.image.resize(method="bilinear",
antialias=True)`` rounded to uint8, the rule the Android core implements too.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


class ImageError(ValueError):
    """An image file that cannot be read, or pixels that are not an RGB image."""


def list_images(folder: str | os.PathLike) -> list[str]:
    """Image files under ``folder`` (recursive, hidden entries skipped), sorted for a stable order."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."):
                found.append(os.path.join(dirpath, name))
    return found


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decodes an image file into uint8 RGB pixels ``(H, W, 3)`` (first frame of a GIF).

    Raises:
        ImageError: naming the file, if it is missing, not an image, or corrupt.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()  # Decodes now, so a truncated file fails here and not later.
            rgb = image.convert("RGB")
    except FileNotFoundError:
        raise ImageError(f"Image file {os.fspath(path)!r} does not exist.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"Cannot read image {os.fspath(path)!r}: {e}") from None
    return np.asarray(rgb, dtype=np.uint8)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(height, width)`` of an image file from its header (no decoding)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.height, image.width
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"Cannot read image {os.fspath(path)!r}: {e}") from None


def _resize_weights(in_size: int, out_size: int) -> np.ndarray:
    """``(out, in)`` weights of TF's antialiased triangle filter (ComputeSpans in
    scale_and_translate_op.cc): half-pixel centres, the filter widened by the
    down-scaling factor, each row normalised."""
    inv_scale = in_size / out_size
    kernel_scale = max(inv_scale, 1.0)
    weights = np.zeros((out_size, in_size))
    for x in range(out_size):
        sample = (x + 0.5) * inv_scale
        lo = min(max(int(np.ceil(sample - kernel_scale - 0.5)), 0), in_size - 1)
        hi = min(max(int(np.floor(sample + kernel_scale - 0.5)), 0), in_size - 1) + 1
        s = np.arange(lo, hi)
        w = np.maximum(0.0, 1.0 - np.abs((s + 0.5 - sample) / kernel_scale))
        total = w.sum()
        weights[x, lo:hi] = w / total if total > 0 else w
    return weights


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Antialiased bilinear resize of uint8 ``(H, W, 3)`` pixels to ``size = (h, w)``,
    rounded half to even and clipped: ``tf.image.resize(bilinear, antialias=True)``."""
    image = np.asarray(image)
    h, w = int(size[0]), int(size[1])
    if image.shape[:2] == (h, w):
        return image.astype(np.uint8, copy=False)
    rows = _resize_weights(image.shape[0], h)
    cols = _resize_weights(image.shape[1], w)
    out = np.einsum("yi,ijc,xj->yxc", rows, image.astype(np.float64), cols, optimize=True)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def check_pixels(image: np.ndarray, where: str) -> np.ndarray:
    """Checks that ``image`` holds RGB pixels a RAViT model takes: ``(H, W, 3)``, uint8,
    or float with finite values in 0..255 (a float image in 0..1 is refused: the
    models take raw pixels and normalise inside).

    Raises:
        ImageError: naming ``where`` and what is wrong.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ImageError(f"{where}: expected an RGB image of shape (H, W, 3), got shape {image.shape}.")
    if image.dtype == np.uint8:
        return image
    if not np.issubdtype(image.dtype, np.floating):
        raise ImageError(f"{where}: expected uint8 or float pixels, got dtype {image.dtype}.")
    check_float_pixels(image, where)
    return image


def check_float_pixels(image: np.ndarray, where: str = "The image") -> None:
    """Refuses float pixels a model was not trained on: NaN, infinite, outside 0..255,
    or all within 0..1 (an image scaled to 0..1 would be read as near-black).

    Two reductions only (NaN and inf propagate into min/max): cheap enough for the
    scheduler's per-image path.

    Raises:
        ImageError: naming ``where`` and what is wrong.
    """
    lo, hi = float(image.min()), float(image.max())
    if not (0.0 <= lo and hi <= 255.0):  # NaN fails both comparisons.
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise ImageError(f"{where} holds NaN or infinite values; the models take pixels 0..255.")
        raise ImageError(f"{where}: pixel values {lo:g}..{hi:g} are outside 0..255.")
    if hi <= 1.0 and image.size > 3:
        raise ImageError(
            f"{where}: float pixels all within 0..1; the models take raw pixels 0..255 "
            "(multiply by 255 first).")


def images_in(paths: list[str | os.PathLike]) -> list[str]:
    """Expands files and folders (recursively) into a sorted list of image files.

    Raises:
        ImageError: for a path that does not exist, or a folder without images.
    """
    files: list[str] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = list_images(path)
            if not found:
                raise ImageError(f"Folder {os.fspath(p)!r} holds no image files ({', '.join(IMAGE_EXTENSIONS)}).")
            files += found
        elif path.is_file():
            files.append(os.fspath(p))
        else:
            raise ImageError(f"Image path {os.fspath(p)!r} does not exist.")
    return files
