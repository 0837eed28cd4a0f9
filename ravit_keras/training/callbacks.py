"""Callbacks of a training run: NaN guard, CSV log, epoch times, checkpoint (resumable).

Every file they write is named by ``ravit_keras.runs``.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import keras

from ravit_keras import runs
from ravit_keras.io_utils import atomic_write_text


class _FiniteBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras's BackupAndRestore that never backs up an epoch whose loss is not finite,
    so a diverged run keeps the last good checkpoint to resume from."""

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            return
        super().on_epoch_end(epoch, logs)


class EpochTimer(keras.callbacks.Callback):
    """Records each finished epoch's wall time (training and validation) in
    ``out_dir/epoch_times.json``.

    The file survives resumes: an epoch trained again after a kill replaces its own
    entry, so the sum over the file is the run's training time however many
    processes it took (``training_seconds``). Written atomically after every epoch.
    """

    def __init__(self, out_dir: str | os.PathLike):
        super().__init__()
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / runs.EPOCH_TIMES_FILE
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if self._start is None:
            return
        seconds = runs.read_epoch_times(self.out_dir)
        seconds[epoch] = round(time.perf_counter() - self._start, 3)
        self._start = None
        runs.write_epoch_times(self.out_dir, seconds)


class _ResumableCSVLogger(keras.callbacks.CSVLogger):
    """Keras's CSVLogger(append=True) that keeps one row per epoch across resumes.

    An epoch's row is written before its backup (see ``training_callbacks``), so a
    kill between the two leaves a row for an epoch the resumed run trains again;
    the first epoch of a run drops the rows of that epoch and later ones first.
    """

    def __init__(self, filename, **kwargs):
        super().__init__(filename, append=True, **kwargs)
        self._first_epoch_of_run = True

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._first_epoch_of_run = True

    def on_epoch_begin(self, epoch, logs=None):
        if not self._first_epoch_of_run:
            return
        self._first_epoch_of_run = False
        path = Path(self.filename)
        if not path.is_file():
            return
        lines = path.read_text().splitlines(keepends=True)
        kept = lines[:1] + [line for line in lines[1:] if _log_row_epoch(line, path) < epoch]
        if len(kept) == len(lines):
            return
        self.csv_file.close()
        atomic_write_text(path, "".join(kept))
        self.csv_file = open(path, "a")


def _log_row_epoch(line: str, path: Path) -> int:
    try:
        return int(line.split(",", 1)[0])
    except ValueError as err:
        raise ValueError(f"{path}: a row does not start with its epoch number: {line.strip()!r}.") from err


def training_callbacks(out_dir: str | os.PathLike) -> list[keras.callbacks.Callback]:
    """NaN guard, CSV log, epoch times, and a checkpoint every epoch (resumable after a kill).

    The checkpoint comes last, so an epoch's log row and time are on record before
    the backup says the epoch is done: a kill between them trains that epoch again
    and replaces its row and time, instead of leaving a finished epoch without them.
    The checkpoint is not deleted when training ends: ``train`` removes it only
    once the final model is safely in place, so a kill at any moment loses nothing.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        keras.callbacks.TerminateOnNaN(),
        _ResumableCSVLogger(str(out_dir / runs.LOG_FILE)),
        EpochTimer(out_dir),
        # Weights + optimizer + epoch counter; double_checkpoint keeps the previous
        # backup, so a kill during the write still resumes from the epoch before.
        _FiniteBackupAndRestore(str(out_dir / runs.BACKUP_DIR), double_checkpoint=True, delete_checkpoint=False),
    ]
