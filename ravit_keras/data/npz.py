"""``.npz`` archives with ``x_train, y_train, x_test, y_test`` (and optional ``class_names``)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ravit_keras.data.checks import check_class_names
from ravit_keras.data.split import DataSplit, split_from_arrays, take_classes


def load_npz(path: Path, split, image_size, num_examples, num_classes) -> DataSplit:
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
        x = _array(archive, x_key, path)
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(
                f"{str(path)!r}: {x_key!r} must be uint8 images of shape (N, H, W, 3), got "
                f"{x.dtype} {x.shape}."
            )
        y = _check_labels(_array(archive, y_key, path), y_key, len(x), path)
        # The class count comes from both splits, so train and test agree.
        all_labels = [y] + [
            _check_labels(_array(archive, k, path), k, None, path) for k in ("y_train", "y_test")
            if k != y_key and k in keys
        ]
        max_label = max((int(a.max()) for a in all_labels if a.size), default=-1)
        if "class_names" in keys:
            class_names = _class_names(_array(archive, "class_names", path), path)
            if max_label >= len(class_names):
                raise ValueError(
                    f"{str(path)!r}: label {max_label} in {y_key!r} has no entry in "
                    f"'class_names' ({len(class_names)} names)."
                )
        else:
            class_names = [str(i) for i in range(max_label + 1)]
    class_names = take_classes(class_names, num_classes)
    keep = y < len(class_names)
    x, y = x[keep], y[keep]
    if num_examples is not None:
        x, y = x[:num_examples], y[:num_examples]
    return split_from_arrays(x, y, class_names, image_size)


def _array(archive, key: str, path: Path) -> np.ndarray:
    """``archive[key]``; an array NumPy cannot read without pickle (object dtype) or a
    damaged member is refused naming the file and the key."""
    try:
        return archive[key]
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise ValueError(
                f"{str(path)!r}: {key!r} is an array of Python objects, which would be read with "
                "pickle (able to run code); save it as text (e.g. np.array(names, dtype=str)) "
                "or numbers.") from None
        raise ValueError(f"{str(path)!r}: cannot read {key!r}: {e}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{str(path)!r}: cannot read {key!r}: {e}") from None


def _class_names(names: np.ndarray, path: Path) -> list[str]:
    where = f"{str(path)!r} 'class_names'"
    text = []
    for n in names.reshape(-1):
        if isinstance(n, bytes):
            try:
                n = n.decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(f"{where}: the class name {n!r} is not UTF-8 text.") from None
        text.append(str(n))
    return check_class_names(text, where)


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

