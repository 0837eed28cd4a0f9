"""Image files and pixels without TensorFlow: listing, decoding, resizing.

The scheduler side (``ravit run``, ``ravit predict`` on converted submodels) reads
images with these, so it starts without importing TensorFlow. They agree with the
training pipeline: ``read_image`` decodes as ``tf.io.decode_image(channels=3)`` with
the accurate integer IDCT (``dct_method="INTEGER_ACCURATE"``, which the data
pipeline uses), and ``resize`` is ``tf.image.resize(method="bilinear",
antialias=True)`` rounded to uint8, the rule the Android core implements too.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
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


# The most pixels a file may decode to: 100 megapixels, 300 MB of RGB (a 0.3 MB PNG can
# declare 9000 x 9000). Larger files are refused as an ImageError naming the file, which
# --skip-bad-images skips. Raise it here if you need bigger images.
MAX_IMAGE_PIXELS = 100_000_000


def _open(data: bytes, where: str):
    """Pillow's image over ``data`` (header read only), after the pixel cap.

    Pillow's own decompression-bomb check (``Image.MAX_IMAGE_PIXELS``: a warning above
    it, an error above twice it) is replaced by ``MAX_IMAGE_PIXELS``: its warning is
    silenced and its error becomes an ``ImageError`` naming the file.
    """
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as e:
            raise ImageError(f"Image {where} is too large to decode (at most {MAX_IMAGE_PIXELS / 1e6:.0f} "
                             f"megapixels, images.MAX_IMAGE_PIXELS): {e}") from None
    pixels = image.width * image.height
    if pixels > MAX_IMAGE_PIXELS:
        image.close()
        raise ImageError(
            f"Image {where} is {image.width} x {image.height} = {pixels / 1e6:.0f} megapixels, more "
            f"than the {MAX_IMAGE_PIXELS / 1e6:.0f} allowed (images.MAX_IMAGE_PIXELS; a "
            "decompression bomb?).")
    return image


def _read_bytes(path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ImageError(f"Image file {os.fspath(path)!r} does not exist.") from None
    except OSError as e:
        raise ImageError(f"Cannot read image {os.fspath(path)!r}: {e.strerror or e}") from None


_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decodes an image file into uint8 RGB pixels ``(H, W, 3)`` (first frame of a GIF),
    as the training pipeline does (``data.decode.decode_image_file``):

    - EXIF orientation applied (tag 0x0112, ``exif_orientation``), as phones show a
      photo and as the Android app's ``ImageDecoder`` does;
    - 16 bits per channel scaled to 8 by keeping the high byte (``value >> 8``), as
      ``tf.io.decode_png(dtype=uint8)`` does (Pillow alone would clip 16-bit grey to white);
    - at most ``MAX_IMAGE_PIXELS`` pixels.

    Raises:
        ImageError: naming the file, if it is missing, not an image, corrupt or too large.
    """
    from PIL import Image, UnidentifiedImageError

    where = repr(os.fspath(path))
    data = _read_bytes(path)
    try:
        with _open(data, where) as image:
            image.load()  # Decodes now, so a truncated file fails here and not later.
            if image.mode in _SIXTEEN_BIT_MODES:
                grey = (np.clip(np.asarray(image), 0, 65535).astype(np.uint16) >> 8).astype(np.uint8)
                pixels = np.repeat(grey[:, :, None], 3, axis=2)
            else:
                # convert() copies even an RGB image: 9000 x 9000 would hold three copies at once.
                pixels = np.asarray(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.uint8)
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageError(f"Cannot read image {where}: {e}") from None
    except MemoryError:
        raise ImageError(f"Image {where} is too large to decode in the memory available.") from None
    return apply_orientation(pixels, exif_orientation(data))


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(height, width)`` of an image file as ``read_image`` returns it: from its header
    (no decoding), swapped when its EXIF orientation turns it by 90 degrees."""
    from PIL import Image, UnidentifiedImageError

    where = repr(os.fspath(path))
    data = _read_bytes(path)
    try:
        with _open(data, where) as image:
            h, w = image.height, image.width
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageError(f"Cannot read image {where}: {e}") from None
    return (w, h) if exif_orientation(data) >= 5 else (h, w)


# EXIF orientation ----------------------------------------------------------------------------


def _tiff_orientation(tiff: bytes) -> int:
    """The Orientation tag (0x0112) of IFD0 in a TIFF-structured EXIF block, else 1."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return 1
    order = "<" if tiff[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(order + "I", tiff, 4)
    if ifd + 2 > len(tiff):
        return 1
    (count,) = struct.unpack_from(order + "H", tiff, ifd)
    for k in range(count):
        entry = ifd + 2 + 12 * k
        if entry + 12 > len(tiff):
            return 1
        tag, kind = struct.unpack_from(order + "HH", tiff, entry)
        if tag == 0x0112:
            if kind != 3:  # SHORT
                return 1
            (value,) = struct.unpack_from(order + "H", tiff, entry + 8)
            return value if 1 <= value <= 8 else 1
    return 1


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation (1..8; 1 when absent or unreadable) of a JPEG (APP1
    ``Exif``) or PNG (``eXIf`` chunk) file's bytes. Other formats: 1."""
    try:
        if data[:2] == b"\xff\xd8":
            pos = 2
            while pos + 4 <= len(data):
                if data[pos] != 0xFF:
                    return 1
                marker = data[pos + 1]
                if marker == 0xFF:  # Fill byte.
                    pos += 1
                    continue
                if marker in (0xD9, 0xDA):  # End of image, start of scan: no EXIF after.
                    return 1
                if marker == 0x01 or 0xD0 <= marker <= 0xD7:
                    pos += 2
                    continue
                (length,) = struct.unpack_from(">H", data, pos + 2)
                segment = data[pos + 4:pos + 2 + length]
                if marker == 0xE1 and segment[:6] == b"Exif\x00\x00":
                    return _tiff_orientation(segment[6:])
                pos += 2 + length
            return 1
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            pos = 8
            while pos + 8 <= len(data):
                length, kind = struct.unpack_from(">I4s", data, pos)
                if kind == b"eXIf":
                    return _tiff_orientation(data[pos + 8:pos + 8 + length])
                if kind == b"IEND":
                    return 1
                pos += 12 + length
    except struct.error:
        return 1
    return 1


def apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """``pixels (H, W, C)`` turned upright for an EXIF orientation 1..8, as
    ``PIL.ImageOps.exif_transpose`` does (6: rotated 90 degrees clockwise, 8: counter-clockwise)."""
    o = int(orientation)
    if o == 2:
        out = pixels[:, ::-1]
    elif o == 3:
        out = pixels[::-1, ::-1]
    elif o == 4:
        out = pixels[::-1]
    elif o == 5:
        out = pixels.transpose(1, 0, 2)
    elif o == 6:
        out = pixels.transpose(1, 0, 2)[:, ::-1]
    elif o == 7:
        out = pixels.transpose(1, 0, 2)[::-1, ::-1]
    elif o == 8:
        out = pixels.transpose(1, 0, 2)[::-1]
    else:
        return pixels
    return np.ascontiguousarray(out)


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
    rounded half to even and clipped: ``tf.image.resize(bilinear, antialias=True)``.

    Computed in float32 as TensorFlow does, columns first, over bands of input rows:
    the memory beside the input is about 20 MB even for a 9000 x 9000 image
    (the whole image in float64 took 1.9 GB).
    """
    image = np.asarray(image)
    h, w = int(size[0]), int(size[1])
    if image.shape[:2] == (h, w):
        return image.astype(np.uint8, copy=False)
    in_h, in_w = image.shape[:2]
    rows = _resize_weights(in_h, h).astype(np.float32)
    cols = _resize_weights(in_w, w).astype(np.float32)
    channels = image.shape[2]
    across = np.empty((in_h, w, channels), np.float32)  # Every input row, resized across.
    band = max(1, _BAND_BYTES // (4 * in_w * channels))
    for top in range(0, in_h, band):
        part = image[top:top + band].astype(np.float32)
        across[top:top + band] = np.matmul(cols, part)  # (w, W) @ (b, W, C) -> (b, w, C)
    out = np.tensordot(rows, across, axes=(1, 0))  # (h, H) . (H, w, C) -> (h, w, C)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


_BAND_BYTES = 8 << 20  # float32 copy of the input rows resized at once


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
