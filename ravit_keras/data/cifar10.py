"""The official CIFAR-10 python version: the batches folder or the .tar.gz archive."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path
from typing import Sequence

import numpy as np

from ravit_keras.data.checks import check_class_names
from ravit_keras.data.split import DataSplit, split_from_arrays, take_classes

CIFAR10_CLASS_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)


def find_cifar10(path: Path) -> Path | None:
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


class UnsafePickleError(ValueError):
    """A CIFAR-10 pickle that asks for a global the official files never need."""


def _allowed_globals() -> dict[tuple[str, str], object]:
    """The only globals the official CIFAR-10 python batches (and re-pickled copies made
    with NumPy 1 or 2) refer to: a NumPy array's reconstructor
    (``_reconstruct``; ``_frombuffer`` for protocol 5), ``ndarray`` and ``dtype``.

    The batches are dicts of bytes keys to bytes, lists of ints/bytes and one uint8
    array; the meta file is a dict of lists and ints (no globals at all).
    """
    reconstruct = np.empty(0).__reduce__()[0]  # numpy(._)core.multiarray._reconstruct
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
               # Protocol 2 written by Python 3 stores bytes as _codecs.encode(text, "latin1").
               ("_codecs", "encode"): _latin1_bytes}
    frombuffer = np.empty(0).__reduce_ex__(5)[0]  # numpy(._)core.numeric._frombuffer (protocol 5)
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return allowed


def _latin1_bytes(text, encoding="utf-8"):
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"_codecs.encode with {encoding!r} is not how bytes are pickled.")
    return text.encode("latin1")


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles plain data and NumPy arrays; refuses every other global, so a crafted
    file cannot run code (``os.system``, ``builtins.eval``, ...) while it is read."""

    def __init__(self, file, where: str):
        super().__init__(file, encoding="bytes")
        self._where = where
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._where} is not a CIFAR-10 pickle: it asks for {module}.{name}, which the "
                "official files never do; refused without running it.") from None

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self._where} is not a CIFAR-10 pickle: it holds a persistent id.")


def _unpickle(data: bytes, where: str) -> dict:
    """Reads a CIFAR-10 pickle without running code from it (see ``_RestrictedUnpickler``).

    Raises:
        UnsafePickleError: naming the file and the global it asked for.
        ValueError: naming the file, for anything else that is not a CIFAR-10 dict.
    """
    try:
        value = _RestrictedUnpickler(io.BytesIO(data), where).load()
    except UnsafePickleError:
        raise
    except Exception as e:
        raise ValueError(f"Cannot read {where} as a CIFAR-10 pickle: {e}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{where} is not a CIFAR-10 pickle: it holds a {type(value).__name__}, not a dict.")
    return value


def _label_text(name, where: str) -> str:
    if isinstance(name, bytes):
        try:
            return name.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{where}: the class name {name!r} is not UTF-8 text.") from None
    return str(name)


def load_cifar10(path: Path, split, image_size, num_examples, num_classes) -> DataSplit:
    batch_names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    class_names = list(CIFAR10_CLASS_NAMES)
    (_, meta_bytes), = _cifar10_members(path, ["batches.meta"])
    meta = _unpickle(meta_bytes, f"{path}/batches.meta")
    if b"label_names" in meta:
        names = meta[b"label_names"]
        if not isinstance(names, (list, tuple)):
            raise ValueError(f"{path}/batches.meta: b'label_names' must be a list, got {type(names).__name__}.")
        class_names = check_class_names(
            [_label_text(n, f"{path}/batches.meta") for n in names], f"{path}/batches.meta")
    num_source_classes = len(class_names)
    class_names = take_classes(class_names, num_classes)

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
    return split_from_arrays(np.ascontiguousarray(x), y, class_names, image_size)

