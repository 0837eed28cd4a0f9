"""Atomic file and folder writes: a failed or killed write leaves nothing behind."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Writes ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp's 0600 would survive the rename.
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def current_umask() -> int:
    """The process umask, read without changing it."""
    umask = os.umask(0)
    os.umask(umask)
    return umask


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yields a temporary folder that becomes ``path`` only if the block succeeds.

    A lock file beside ``path`` (``.<name>.lock``) is held for the whole block, so a
    second writer of the same folder fails at once instead of both "succeeding".

    Raises:
        FileExistsError: if ``path`` exists and ``overwrite`` is False, or another
            process is writing it (the lock is held).
        NotADirectoryError: if ``path`` is a file.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path} is a file; the output must be a folder (give another path).")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True (--overwrite) to replace it.")
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.with_name(f".{path.name}.lock")):
        # Holding the lock, anything a killed writer left beside ``path`` is debris.
        for debris in path.parent.glob(f".{glob.escape(path.name)}.*.partial"):
            shutil.rmtree(debris, ignore_errors=True)
        shutil.rmtree(path.with_name(f".{path.name}.old"), ignore_errors=True)
        yield from _into_place(path)


_HELD_LOCKS: set[Path] = set()


@contextlib.contextmanager
def folder_lock(path: str | os.PathLike) -> Iterator[None]:
    """Holds the lock of the folder ``path`` (``.<name>.lock`` beside it, the one
    ``atomic_directory`` takes) for the block: a second writer fails at once, naming
    the folder, the owner's pid and the lock. A lock whose owner is dead (a kill -9)
    is stale and taken over. Re-entrant within one process.

    Raises:
        FileExistsError: another live process holds the lock.
    """
    path = Path(path).absolute()
    lock = path.with_name(f".{path.name}.lock")
    if lock in _HELD_LOCKS:
        yield
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    with _locked(lock):
        _HELD_LOCKS.add(lock)
        try:
            yield
        finally:
            _HELD_LOCKS.discard(lock)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _locked(lock: Path) -> Iterator[None]:
    for attempt in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            try:
                owner = int(lock.read_text().strip() or "0")
            except (OSError, ValueError):
                owner = 0
            if attempt == 0 and owner and not _pid_alive(owner):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(lock)  # Left by a writer that was killed.
                continue
            raise FileExistsError(
                f"{lock.with_name(lock.name[1:-5])} is being written by another process "
                f"(pid {owner or 'unknown'}, lock {lock}); wait for it to finish.") from None
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)


def _into_place(path: Path) -> Iterator[Path]:
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp's 0700 would survive the rename.
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_writable_file(path: str | os.PathLike, what: str) -> Path:
    """Checks that a file can be created at ``path`` (its folder exists or can be made,
    and is writable; the path is not a directory).

    Raises:
        ValueError: naming ``what`` and the path.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {os.fspath(path)!r} is a directory; give a file name.")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {os.fspath(path)!r} cannot be written: "
                         f"{os.fspath(parent)!r} is not a writable folder.")
    return path


# Text that reaches files other programs open -------------------------------------------------

# A spreadsheet runs a cell that begins with one of these as a formula (OWASP, "CSV injection").
SPREADSHEET_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """``text`` for a CSV cell: prefixed with a single quote when it begins with a
    character a spreadsheet would run as a formula (``= + - @``, tab, carriage return).

    Spreadsheets show the quote-prefixed cell as the text itself; a program reading
    the CSV sees the leading ``'`` and can strip it. Only text cells pass through
    this: numbers the toolkit formats itself are written as they are.
    """
    return "'" + text if text.startswith(SPREADSHEET_TRIGGERS) else text


def printable_path(path: str | os.PathLike) -> str:
    """A file name as valid UTF-8 text: bytes of the name that are not UTF-8 (which
    Python holds as lone surrogates, ``\\udce9``) are written as ``\\xe9``, as
    ``ls -b`` and Python's ``backslashreplace`` do; everything else is unchanged."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        return text.decode("utf-8", "backslashreplace")
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        try:
            raw = text.encode("utf-8", "surrogateescape")  # The name's own bytes.
        except UnicodeEncodeError:
            return text.encode("utf-8", "backslashreplace").decode("utf-8")
        return raw.decode("utf-8", "backslashreplace")


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks (checkpoints can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
