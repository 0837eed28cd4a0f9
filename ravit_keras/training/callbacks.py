"""Callbacks of a training run: NaN guard, CSV log, epoch times, checkpoint (resumable).

Every file they write is named by ``ravit_keras.runs``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import keras

from ravit_keras import runs
from ravit_keras.io_utils import atomic_write_text, file_sha256
from ravit_keras.training.distribution import all_gather, writing_alone


class CheckpointError(ValueError):
    """The run's checkpoint cannot be resumed; the message names the file to remove."""


class _FiniteBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras's BackupAndRestore(double_checkpoint=True), written so that no kill, full
    disk or torn file loses the last good epoch.

    * An epoch whose loss is not finite is never backed up (a diverged run keeps
      the last good checkpoint).
    * Each backup is written beside the current one (``latest.partial.weights.h5``,
      ``.training_metadata.json.tmp``) and put in place by renames; the previous pair
      becomes the ``.bkp`` pair. The metadata, renamed last, records the SHA-256 of
      its weights file, so a pair torn by a kill between the renames is recognised.
    * Before writing, the free space is checked against the size of the last
      backup; a full disk (then or during the write) stops training with one
      ``OSError`` naming the file, the temporary files removed and the last good
      checkpoint intact.
    * On resume, the newest intact pair is loaded (the current one, else the
      ``.bkp`` copy, with a note); when none is intact the error names the files.
    * A reader (``writer=False``: the processes other than 0 of a multi-process
      run) never writes: it only loads the checkpoint process 0 wrote.
    """

    def __init__(self, *args, notes=None, writer=True, **kwargs):
        super().__init__(*args, **kwargs)
        self._writer = writer
        self._notes = notes or (lambda text: print(text, flush=True))
        self._backed_up_epoch = None  # The epoch count the intact checkpoint on disk holds.
        self._current_intact = True  # False after resuming from the .bkp pair: never rotate a torn pair into it.

    # Writing ---------------------------------------------------------------------

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            return
        super().on_epoch_end(epoch, logs)

    def _save_model(self):
        if not self._writer:
            return
        backup = Path(self.backup_dir)
        weights, meta = Path(self._weights_path), Path(self._training_metadata_path)
        tmp_weights = backup / "latest.partial.weights.h5"
        tmp_meta = backup / f".{meta.name}.tmp"
        try:
            backup.mkdir(parents=True, exist_ok=True)
            self._check_free_space(backup, weights)
            with writing_alone():
                self.model.save_weights(str(tmp_weights), overwrite=True)
            metadata = {"epoch": self._current_epoch, "batch": self._last_batch_seen,
                        "weights_sha256": file_sha256(tmp_weights)}
            with open(tmp_meta, "w") as f:
                f.write(json.dumps(metadata))
                f.flush()
                os.fsync(f.fileno())
            if not self._current_intact:
                for torn in (meta, weights):
                    with contextlib.suppress(FileNotFoundError):
                        torn.unlink()
            elif self.double_checkpoint and weights.exists() and meta.exists():
                os.replace(meta, self._prev_training_metadata_path)
                os.replace(weights, self._prev_weights_path)
            os.replace(tmp_weights, weights)
            os.replace(tmp_meta, meta)
        except BaseException as err:
            for tmp in (tmp_weights, tmp_meta):
                with contextlib.suppress(OSError):
                    tmp.unlink()
            if isinstance(err, OSError) and not isinstance(err, CheckpointWriteError):
                raise CheckpointWriteError(err, weights, backup, self._backed_up_epoch) from None
            raise
        self._backed_up_epoch = self._current_epoch
        self._current_intact = True

    def _check_free_space(self, backup: Path, weights: Path) -> None:
        sizes = [p.stat().st_size for p in (weights, Path(self._prev_weights_path)) if p.exists()]
        if not sizes:
            # The first backup: the weights and the optimizer's variables, as float32.
            variables = list(self.model.weights) + list(getattr(self.model.optimizer, "variables", []) or [])
            sizes = [sum(4 * int(math.prod(v.shape)) for v in variables)]
        needed = int(max(sizes) * 1.1) + (1 << 20)
        free = shutil.disk_usage(backup).free
        if free < needed:
            raise OSError(errno.ENOSPC, f"No space left on device: {free / 1e6:.1f} MB free, the checkpoint "
                                        f"needs about {needed / 1e6:.1f} MB")

    # Resuming --------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        backup = Path(self.backup_dir)
        weights, meta = Path(self._weights_path), Path(self._training_metadata_path)
        prev_weights, prev_meta = Path(self._prev_weights_path), Path(self._prev_training_metadata_path)
        for tmp in (backup / "latest.partial.weights.h5", backup / "restore.partial.weights.h5",
                    backup / f".{meta.name}.tmp"):
            with contextlib.suppress(OSError):
                if self._writer:
                    tmp.unlink()  # A write a kill interrupted.
        present = [p for p in (weights, meta, prev_weights, prev_meta) if p.exists()]
        if not present:
            return
        if not self.model.built:
            raise ValueError("BackupAndRestore needs a built model.")
        problems = []
        for label, m in (("current", meta), ("previous", prev_meta)):
            pair = _checkpoint_pair(m, (weights, prev_weights) if label == "current" else (prev_weights, weights),
                                    problems)
            if pair is None:
                continue
            epoch, w = pair
            try:
                if self.model.optimizer is not None and not self.model.optimizer.built:
                    self.model.optimizer.build(self.model.trainable_variables)
                _load_weights(self.model, w, private=not self._writer)
            except Exception as err:  # noqa: BLE001 - h5py raises OSError, KeyError, ValueError...
                problems.append(f"{w} cannot be loaded ({type(err).__name__}: {_first_line(err)})")
                continue
            if problems:
                self._notes(f"note: the checkpoint is damaged ({'; '.join(problems)}); resuming from the "
                            f"previous one ({w.name}, {epoch} epochs done): one epoch is trained again")
            self.model._initial_epoch = epoch
            self._backed_up_epoch = epoch
            self._current_intact = label == "current"
            return
        files = ", ".join(str(p) for p in present)
        raise CheckpointError(
            f"The checkpoint in {backup} cannot be resumed: {'; '.join(problems)}. Remove {backup} (files: "
            f"{files}) to train this run again from its first epoch.")


class CheckpointWriteError(OSError):
    """Writing the checkpoint failed (a full disk): one line naming the file and what is kept."""

    def __init__(self, err: OSError, path: Path, backup: Path, kept_epochs):
        kept = (f"{backup} keeps the last good checkpoint ({kept_epochs} epochs done); rerun the same "
                "command to resume" if kept_epochs else "no epoch was backed up yet")
        reason = err.strerror or str(err)
        super().__init__(err.errno, f"{reason} while writing the checkpoint {path}: training stopped and the "
                                    f"partial file was removed; {kept} once there is space.")

    def __str__(self):
        return self.strerror


def _checkpoint_pair(meta: Path, weights_files, problems) -> tuple[int, Path] | None:
    """``(epochs done, weights file)`` of an intact metadata file, else None (the
    problem appended to ``problems``)."""
    if not meta.exists():
        return None
    try:
        record = json.loads(meta.read_text())
        epoch = int(record["epoch"])
        if epoch < 0:
            raise ValueError(f"epoch {epoch}")
    except (OSError, ValueError, KeyError, TypeError) as err:
        problems.append(f"{meta} is torn ({type(err).__name__}: {_first_line(err) or 'empty'})")
        return None
    digest = record.get("weights_sha256")
    candidates = [w for w in weights_files if w.exists()]
    if digest is None:  # Written by Keras's own callback: paired by name.
        if candidates and candidates[0] == weights_files[0]:
            return epoch, candidates[0]
        problems.append(f"{weights_files[0]} is missing")
        return None
    for w in candidates:
        if file_sha256(w) == digest:
            return epoch, w
    problems.append(f"no weights file matches {meta} (checksum): {weights_files[0]} is torn or missing")
    return None


def _load_weights(model, path: Path, private: bool = False) -> None:
    """``model.load_weights`` of ``path``; Keras wants a ``.weights.h5`` name, so the
    ``.bkp`` copy is read through a hard link (or a copy) under such a name, made
    in a temporary folder of its own when ``private`` (a reader of another
    process's checkpoint writes nothing beside it)."""
    if path.name.endswith(".weights.h5"):
        model.load_weights(str(path))
        return
    if private:
        with tempfile.TemporaryDirectory() as folder:
            alias = Path(folder) / "restore.weights.h5"
            shutil.copyfile(path, alias)
            model.load_weights(str(alias))
        return
    alias = path.with_name("restore.partial.weights.h5")
    alias.unlink(missing_ok=True)
    try:
        try:
            os.link(path, alias)
        except OSError:
            shutil.copyfile(path, alias)
        model.load_weights(str(alias))
    finally:
        alias.unlink(missing_ok=True)


def _first_line(err) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else ""


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


class _SameStartEverywhere(keras.callbacks.Callback):
    """With several processes: every process must resume from the same epoch (one
    that sees no checkpoint would start again while the others go on)."""

    def __init__(self, backup_dir: Path):
        super().__init__()
        self.backup_dir = backup_dir

    def on_train_begin(self, logs=None):
        epochs = all_gather(int(getattr(self.model, "_initial_epoch", None) or 0))
        if len(set(epochs)) > 1:
            found = ", ".join(f"process {i}: {e} epochs" for i, e in enumerate(epochs))
            raise CheckpointError(
                f"The processes found different checkpoints in {self.backup_dir} ({found}): the run folder must "
                f"be one folder every process sees (a shared filesystem), or process 0's {self.backup_dir} "
                "copied to the same path on every machine; then restart all processes.")


def training_callbacks(out_dir: str | os.PathLike, writer: bool = True,
                       processes: int = 1) -> list[keras.callbacks.Callback]:
    """NaN guard, CSV log, epoch times, and a checkpoint every epoch (resumable after a kill).

    ``writer=False`` (processes other than 0 of a multi-process run): only the NaN
    guard and the checkpoint's loading; with ``processes`` > 1, a check that every
    process resumes from the same epoch.

    The checkpoint comes last, so an epoch's log row and time are on record before
    the backup says the epoch is done: a kill between them trains that epoch again
    and replaces its row and time, instead of leaving a finished epoch without them.
    The checkpoint is not deleted when training ends: ``train`` removes it only
    once the final model is safely in place, so a kill at any moment loses nothing.
    """
    out_dir = Path(out_dir)
    same_start = [_SameStartEverywhere(out_dir / runs.BACKUP_DIR)] if processes > 1 else []
    if not writer:
        return [keras.callbacks.TerminateOnNaN(),
                _FiniteBackupAndRestore(str(out_dir / runs.BACKUP_DIR), double_checkpoint=True,
                                        delete_checkpoint=False, writer=False), *same_start]
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        keras.callbacks.TerminateOnNaN(),
        _ResumableCSVLogger(str(out_dir / runs.LOG_FILE)),
        EpochTimer(out_dir),
        # Weights + optimizer + epoch counter; double_checkpoint keeps the previous
        # backup, so a kill during the write still resumes from the epoch before.
        _FiniteBackupAndRestore(str(out_dir / runs.BACKUP_DIR), double_checkpoint=True, delete_checkpoint=False),
        *same_start,
    ]
