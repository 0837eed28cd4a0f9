"""Fault injection on run folders and what every command writes (issue 24 items 2, 5, 6).

Outputs never overwrite inputs; training survives a full disk, a torn checkpoint,
SIGTERM and a second writer; results are honest (steps per epoch, a torn run
record, thread counts). Each case asserts the exit code, that no traceback reaches
the user, the file, flag or path the message names, and that nothing is lost or
half-written. docs/RELIABILITY.md lists them.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ravit_keras import runs
from ravit_keras.cli import main
from ravit_keras.data import generated_class_names

CLASSES = generated_class_names(10)
ROOT = Path(__file__).resolve().parents[1]


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def _refused(capsys, *argv, names=()):
    """Exit 2 with one 'ravit <cmd>: error:' line naming ``names``."""
    code, out, err = _cli(capsys, *argv)
    assert code == 2, out + err
    assert err.count("\n") == 1 and "error:" in err, err
    for name in names:
        assert str(name) in err, err
    return out, err


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _debris(root: Path) -> list[str]:
    """Temporary files a write leaves when it is interrupted."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.name.endswith((".partial", ".tmp", ".lock", ".old")) or ".partial" in p.name)


@pytest.fixture(scope="module")
def run_folder(tflite_trained_ravit, tmp_path_factory):
    folder = tmp_path_factory.mktemp("run") / "run"
    folder.mkdir()
    tflite_trained_ravit.model.save(folder / "model.keras")
    (folder / runs.RECORD_FILE).write_text(json.dumps({"class_names": CLASSES}))
    (folder / runs.LOG_FILE).write_text("epoch,loss\n0,1.0\n")
    return folder


@pytest.fixture
def run_copy(run_folder, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_folder, copy)
    return copy


@pytest.fixture
def converted(tflite_float32_folder, tmp_path):
    copy = tmp_path / "tflite"
    shutil.copytree(tflite_float32_folder, copy)
    return copy


def _image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(path)
    return path


CONVERT = ["convert", "--data", "generated", "--mode", "float32", "--calibration-images", "40",
           "--quantization-images", "10"]
RUN = ["run", "--data", "generated", "--limit", "20"]


# Item 2: outputs never overwrite inputs ---------------------------------------------------------


def test_convert_onto_its_own_run_folder_is_refused(run_copy, capsys):
    before = _snapshot(run_copy)
    _refused(capsys, *CONVERT, "--model", run_copy, "--out", run_copy, "--overwrite",
             names=["--out", "--model", str(run_copy), "is the"])
    assert _snapshot(run_copy) == before  # model.keras, config.json, log.csv all there.


def test_convert_onto_a_folder_holding_the_run_is_refused(run_copy, tmp_path, capsys):
    before = _snapshot(run_copy)
    _refused(capsys, *CONVERT, "--model", run_copy, "--out", tmp_path, "--overwrite", names=["--out", "contains"])
    assert _snapshot(run_copy) == before


def test_an_output_through_a_symlink_to_the_input_is_refused(run_copy, tmp_path, capsys):
    link = tmp_path / "link"
    link.symlink_to(run_copy, target_is_directory=True)
    before = _snapshot(run_copy)
    _refused(capsys, *CONVERT, "--model", run_copy, "--out", link, "--overwrite", names=["--out", str(link)])
    assert _snapshot(run_copy) == before


@pytest.mark.parametrize("name", [runs.MODEL_FILE, runs.RECORD_FILE, runs.LOG_FILE, runs.BACKUP_DIR])
def test_predict_onto_a_file_of_the_run_folder_is_refused(run_copy, tmp_path, capsys, name):
    img = _image(tmp_path / "in" / "a.png")
    out = run_copy / name if name != runs.BACKUP_DIR else run_copy / name / "p.json"
    before = _snapshot(run_copy)
    _refused(capsys, "predict", img, "--model", run_copy, "--out", out, names=["--out", "--model", name])
    assert _snapshot(run_copy) == before


def test_a_new_file_inside_the_run_folder_is_allowed(run_copy, tmp_path, capsys):
    """The documented use (``eval --out RUN/eval``, ``predict --out RUN/answers.csv``) stays."""
    img = _image(tmp_path / "in" / "a.png")
    code, _, _ = _cli(capsys, "predict", img, "--model", run_copy, "--out", run_copy / "answers.csv")
    assert code == 0 and (run_copy / "answers.csv").is_file()
    assert (run_copy / runs.MODEL_FILE).is_file() and json.loads((run_copy / runs.RECORD_FILE).read_text())


def test_predict_onto_the_manifest_is_refused(converted, tmp_path, capsys):
    img = _image(tmp_path / "in" / "a.png")
    before = _snapshot(converted)
    _refused(capsys, "predict", img, "--model", converted, "--out", converted / "manifest.json",
             names=["--out", "manifest.json", "lies inside the --model"])
    assert _snapshot(converted) == before


@pytest.mark.parametrize("flag", ["--out", "--per-image", "--plot"])
def test_run_outputs_into_the_converted_folder_are_refused(converted, capsys, flag):
    name = {"--out": "manifest.json", "--per-image": "labels.csv", "--plot": "h.png"}[flag]
    before = _snapshot(converted)
    out, _ = _refused(capsys, *RUN, "--model", converted, flag, converted / name, names=[flag, "--model"])
    assert "Scheduling" not in out and _snapshot(converted) == before


def test_two_outputs_at_one_path_are_refused(tflite_float32_folder, tmp_path, capsys):
    _refused(capsys, *RUN, "--model", tflite_float32_folder, "--out", tmp_path / "r.json",
             "--per-image", tmp_path / "r.json", names=["--out", "--per-image", "same file"])
    assert list(tmp_path.iterdir()) == []


def test_outputs_inside_the_data_or_the_images_are_refused(converted, tmp_path, capsys):
    photos = tmp_path / "photos"
    for c in ("red_blob", "blue_blob"):
        for k in range(3):
            _image(photos / c / f"{k}.png")
    before = _snapshot(photos)
    # A run folder inside a folder of class folders would become a class of the data.
    _refused(capsys, "train", "--config", "tiny", "--data", photos, "--epochs", "1", "--out", photos / "run",
             names=["--out", "--data", "lies inside"])
    _refused(capsys, "predict", photos, "--model", converted, "--out", photos / "answers.csv",
             names=["--out", "image path"])
    _refused(capsys, "eval", "--model", converted, "--data", photos, "--out", photos,
             names=["--out", "--data"])
    npz = tmp_path / "d.npz"
    npz.write_bytes(b"x")
    _refused(capsys, *RUN, "--model", converted, "--data", npz, "--per-image", npz, names=["--per-image", "--data"])
    assert _snapshot(photos) == before and npz.read_bytes() == b"x"


def test_a_preset_is_an_input_with_the_presets_folder(capsys):
    from ravit_keras.presets import PRESETS_DIR, available_presets

    if not available_presets():
        pytest.skip("no preset installed")
    name = available_presets()[0]
    before = _snapshot(PRESETS_DIR / name)
    _refused(capsys, "eval", "--model", f"preset:{name}", "--data", "generated",
             "--out", PRESETS_DIR / name / "eval", names=["--out", "presets folder"])
    _refused(capsys, *CONVERT, "--model", f"preset:{name}", "--out", PRESETS_DIR / "int8", "--overwrite",
             names=["presets folder"])
    assert _snapshot(PRESETS_DIR / name) == before and not (PRESETS_DIR / "int8").exists()


def test_check_outputs_rules(tmp_path):
    from ravit_keras.cli.common import check_outputs, model_input, path_input

    run = tmp_path / "run"
    run.mkdir()
    (run / runs.MODEL_FILE).write_bytes(b"k")
    inputs = model_input("--model", run)
    for allowed in (run / "eval", run / "tflite", run / "answers.csv", tmp_path / "elsewhere"):
        check_outputs(inputs, [("--out", allowed)])
    for refused in (run, tmp_path, run / runs.MODEL_FILE, run / runs.RECORD_FILE, run / "backup" / "x"):
        with pytest.raises(ValueError, match="--out"):
            check_outputs(inputs, [("--out", refused)])
    (tmp_path / "m.keras").write_bytes(b"k")  # A bare model file and the record read beside it.
    for refused in (tmp_path / "m.keras", tmp_path / runs.RECORD_FILE):
        with pytest.raises(ValueError):
            check_outputs(model_input("--model", tmp_path / "m.keras"), [("--out", refused)])
    check_outputs(model_input("--model", tmp_path / "m.keras"), [("--out", tmp_path / "eval")])
    with pytest.raises(ValueError, match="image path"):
        check_outputs(path_input("image path", tmp_path / "photos"), [("--out", tmp_path / "photos" / "a.csv")])


# Item 5: training survives the disk and the kill ---------------------------------------------------


TRAIN = ["train", "--config", "tiny", "--layers", "1-2", "--data", "generated", "--limit-train", "128",
         "--batch-size", "32", "--progress", "none", "--xla", "off"]


def _log_epochs(run: Path) -> list[str]:
    return [line.split(",")[0] for line in (run / runs.LOG_FILE).read_text().splitlines()[1:]]


def _tiny_model():
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.zeros((4, 2)), np.zeros((4, 3)), verbose=0)  # Builds the optimizer.
    return model


def _backup_callback(folder: Path, model, notes=None):
    from ravit_keras.training.callbacks import _FiniteBackupAndRestore

    cb = _FiniteBackupAndRestore(str(folder / runs.BACKUP_DIR), double_checkpoint=True, delete_checkpoint=False,
                                 notes=notes)
    cb.set_model(model)
    return cb


def _two_epochs_backed_up(folder: Path):
    model = _tiny_model()
    cb = _backup_callback(folder, model)
    cb.on_train_begin()
    for epoch in range(2):
        model.layers[0].kernel.assign(np.full((2, 3), epoch + 1.0))
        cb.on_epoch_end(epoch, {"loss": 1.0})
    return model


def _resume(folder: Path):
    notes = []
    model = _tiny_model()
    cb = _backup_callback(folder, model, notes.append)
    cb.on_train_begin()
    return model, notes


def test_the_checkpoint_is_written_by_renames_with_a_checksum(tmp_path):
    _two_epochs_backed_up(tmp_path)
    backup = tmp_path / runs.BACKUP_DIR
    assert sorted(p.name for p in backup.iterdir()) == [
        "latest.weights.h5", "latest.weights.h5.bkp", "training_metadata.json", "training_metadata.json.bkp"]
    assert json.loads((backup / "training_metadata.json").read_text())["epoch"] == 2
    model, notes = _resume(tmp_path)
    assert model._initial_epoch == 2 and notes == []
    assert float(model.layers[0].kernel.numpy()[0, 0]) == 2.0


@pytest.mark.parametrize("damage", ["empty metadata", "metadata not JSON", "truncated weights", "weights missing"])
def test_a_torn_checkpoint_falls_back_to_the_bkp_copy(tmp_path, damage):
    _two_epochs_backed_up(tmp_path)
    backup = tmp_path / runs.BACKUP_DIR
    if damage == "empty metadata":
        (backup / "training_metadata.json").write_text("")
    elif damage == "metadata not JSON":
        (backup / "training_metadata.json").write_text('{"epo')
    elif damage == "truncated weights":
        w = backup / "latest.weights.h5"
        w.write_bytes(w.read_bytes()[:300])
    else:
        (backup / "latest.weights.h5").unlink()
    model, notes = _resume(tmp_path)
    assert model._initial_epoch == 1  # The previous epoch's intact pair.
    assert float(model.layers[0].kernel.numpy()[0, 0]) == 1.0
    assert len(notes) == 1 and "damaged" in notes[0] and "latest.weights.h5.bkp" in notes[0]
    # The next backup does not rotate the torn pair over the good one.
    cb = _backup_callback(tmp_path, model)
    cb._current_intact = False
    cb._current_epoch = 2
    cb._save_model()
    again, notes = _resume(tmp_path)
    assert again._initial_epoch == 2 and notes == []


def test_a_checkpoint_torn_beyond_repair_names_the_files_to_remove(tmp_path, capsys):
    from ravit_keras.training.callbacks import CheckpointError

    _two_epochs_backed_up(tmp_path)
    backup = tmp_path / runs.BACKUP_DIR
    (backup / "training_metadata.json").write_text("")
    (backup / "training_metadata.json.bkp").write_text("")
    with pytest.raises(CheckpointError) as e:
        _resume(tmp_path)
    message = str(e.value)
    assert f"Remove {backup}" in message and "training_metadata.json.bkp" in message
    assert "\n" not in message


def test_a_checkpoint_written_by_keras_itself_still_resumes(tmp_path):
    import keras

    model = _tiny_model()
    cb = keras.callbacks.BackupAndRestore(str(tmp_path / runs.BACKUP_DIR), double_checkpoint=True,
                                          delete_checkpoint=False)
    cb.set_model(model)
    cb.on_epoch_end(0)
    resumed, notes = _resume(tmp_path)
    assert resumed._initial_epoch == 1 and notes == []


def test_a_kill_between_the_renames_resumes_from_an_intact_pair(tmp_path):
    _two_epochs_backed_up(tmp_path)
    backup = tmp_path / runs.BACKUP_DIR
    # The state after the first rename of the third backup: no current metadata.
    os.replace(backup / "training_metadata.json", backup / "training_metadata.json.bkp")
    model, _ = _resume(tmp_path)
    assert model._initial_epoch == 2 and float(model.layers[0].kernel.numpy()[0, 0]) == 2.0


def test_too_little_free_space_stops_before_writing(tmp_path, monkeypatch):
    import ravit_keras.training.callbacks as callbacks

    _two_epochs_backed_up(tmp_path)
    before = _snapshot(tmp_path)
    monkeypatch.setattr(callbacks.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, 1000))
    model = _tiny_model()
    cb = _backup_callback(tmp_path, model)
    cb._backed_up_epoch = 2
    with pytest.raises(OSError) as e:
        cb.on_epoch_end(2, {"loss": 1.0})
    assert e.value.errno == errno.ENOSPC
    assert "latest.weights.h5" in str(e.value) and "keeps the last good checkpoint (2 epochs" in str(e.value)
    assert _snapshot(tmp_path) == before


@pytest.mark.slow
def test_disk_full_stops_training_with_one_error_and_the_run_resumes(tmp_path, capsys, monkeypatch):
    import keras

    real = keras.Model.save_weights
    saves = []

    def full_at_the_second(self, filepath, *args, **kwargs):
        saves.append(filepath)
        if len(saves) == 2:
            Path(filepath).write_bytes(b"\x89HDF half")  # A torn partial file, then ENOSPC.
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, filepath, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save_weights", full_at_the_second)
    run = tmp_path / "run"
    _, err = _refused(capsys, *TRAIN, "--epochs", "3", "--out", run,
                      names=["No space left on device", str(run / "backup" / "latest.weights.h5"),
                             "keeps the last good checkpoint (1 epochs done)"])
    assert _debris(tmp_path) == [] and not (run / runs.MODEL_FILE).exists()
    monkeypatch.undo()
    code, _, _ = _cli(capsys, *TRAIN, "--epochs", "3", "--out", run)
    assert code == 0 and _log_epochs(run) == ["0", "1", "2"]
    assert _debris(tmp_path) == []


def _mount_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


@pytest.mark.slow
def test_a_really_full_disk_stops_training_cleanly(tmp_path):
    """On a 1 MB tmpfs (root only; skipped elsewhere): one line, exit 2, no crash."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "1M"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        proc = subprocess.run([sys.executable, "-m", "ravit_keras", *TRAIN, "--epochs", "3", "--out",
                               str(disk / "run")], capture_output=True, text=True, timeout=600,
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        err = proc.stderr
        lines = [line for line in err.splitlines() if line.startswith("ravit train:")]
        assert proc.returncode == 2, err[-2000:]
        assert "Traceback" not in err and "HDF5-DIAG" not in err
        assert len(lines) == 1 and "No space left on device" in lines[0] and str(disk / "run") in lines[0]
        assert _debris(disk) == []
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_sigterm_is_handled_like_ctrl_c(monkeypatch, capsys):
    import ravit_keras.cli as cli

    def killed(args):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # The handler raises before this ends.
        return 0

    monkeypatch.setattr(cli, "cmd_flops", killed)
    before = signal.getsignal(signal.SIGTERM)
    assert main(["flops"]) == 143
    err = capsys.readouterr().err
    assert err == "ravit flops: terminated (SIGTERM)\n"
    assert signal.getsignal(signal.SIGTERM) is before  # Restored for the caller.


def test_sigterm_during_a_final_save_leaves_no_partial_file(tmp_path, monkeypatch):
    from ravit_keras.cli import Terminated
    from ravit_keras.train import save_model

    class Model:
        def save(self, path):
            Path(path).write_bytes(b"half")
            raise Terminated()

    with pytest.raises(Terminated):
        save_model(Model(), tmp_path / "model.keras")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_sigterm_stops_training_cleanly_and_the_rerun_resumes(tmp_path):
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "ravit_keras", *TRAIN, "--epochs", "4", "--progress", "epoch", "--out", str(run)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    metadata = run / runs.BACKUP_DIR / "training_metadata.json"
    deadline = time.monotonic() + 500
    while not metadata.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-2000:]
    assert "ravit train: terminated (SIGTERM)" in err and "Traceback" not in err
    assert _debris(tmp_path) == [] and not (run / runs.MODEL_FILE).exists()
    done = json.loads(metadata.read_text())["epoch"]
    assert done >= 1
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Epoch 1/4" not in proc.stdout and f"Epoch {done + 1}/4" in proc.stdout  # Resumed.
    assert _log_epochs(run) == ["0", "1", "2", "3"] and _debris(tmp_path) == []


def test_a_second_training_into_one_folder_fails_at_once(tmp_path, capsys):
    run = tmp_path / "run"
    (tmp_path / ".run.lock").write_text(f"{os.getpid()}\n")  # A live training holds it.
    _refused(capsys, *TRAIN, "--epochs", "1", "--out", run,
             names=[str(run), "being written by another process", ".run.lock"])
    assert not run.exists()


@pytest.mark.slow
def test_two_trainings_into_one_folder_one_is_refused(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "ravit_keras", *TRAIN, "--epochs", "2", "--out", str(run)]
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    deadline = time.monotonic() + 300
    while not (tmp_path / ".run.lock").exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    second = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert first.wait(timeout=600) == 0, first.stderr.read()[-2000:]
    assert second.returncode == 2 and "being written by another process" in second.stderr
    assert "Traceback" not in second.stderr
    assert _log_epochs(run) == ["0", "1"]  # No duplicated rows.


@pytest.mark.slow
def test_the_stale_lock_of_a_killed_training_is_taken_over(tmp_path, capsys):
    (tmp_path / ".run.lock").write_text("999999999\n")  # Its owner is gone (kill -9).
    code, _, _ = _cli(capsys, *TRAIN, "--epochs", "1", "--out", tmp_path / "run")
    assert code == 0 and _debris(tmp_path) == []


# Item 6: honest results ---------------------------------------------------------------------------


def test_steps_per_epoch_beyond_the_data_is_refused(tmp_path, capsys):
    _refused(capsys, *TRAIN, "--epochs", "1", "--steps-per-epoch", "40", "--out", tmp_path / "run",
             names=["--steps-per-epoch 40", "only 3 batches"])
    assert not (tmp_path / "run").exists() and _debris(tmp_path) == []


@pytest.mark.parametrize("record, named", [
    ("", "cannot be read"),
    ('{"class_names": ["a", ', "cannot be read"),
    ("[1, 2]", "not a run record"),
    ('{"class_names": "airplane"}', "'class_names'"),
], ids=["empty", "torn", "a JSON list", "class_names a string"])
def test_a_torn_run_record_is_an_error_naming_it(run_copy, tmp_path, capsys, record, named):
    (run_copy / runs.RECORD_FILE).write_text(record)
    img = _image(tmp_path / "in" / "a.png")
    for argv in (["predict", img, "--model", run_copy],
                 ["eval", "--model", run_copy, "--data", "generated", "--limit", "10"],
                 [*CONVERT, "--model", run_copy, "--out", tmp_path / "out"]):
        _refused(capsys, *argv, names=[str(run_copy / runs.RECORD_FILE), named])
    assert not (tmp_path / "out").exists()


def test_a_missing_run_record_stays_lenient(run_copy, tmp_path, capsys):
    (run_copy / runs.RECORD_FILE).unlink()
    code, out, _ = _cli(capsys, "predict", _image(tmp_path / "a.png"), "--model", run_copy)
    assert code == 0 and "class_" in out


def test_threads_far_above_the_cores_are_refused(tflite_float32_folder, monkeypatch, capsys):
    from ravit_keras.cli import options

    monkeypatch.setattr(options, "available_cores", lambda: 2)
    with pytest.raises(SystemExit) as e:
        main([*RUN, "--model", str(tflite_float32_folder), "--threads", "10000"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--threads" in err and "at most 8" in err and "2 CPU cores" in err


def test_threads_above_the_cores_are_warned_about(tflite_float32_folder, monkeypatch, capsys):
    from ravit_keras.cli import options

    monkeypatch.setattr(options, "available_cores", lambda: 2)
    code, out, err = _cli(capsys, *RUN, "--model", tflite_float32_folder, "--threads", "3")
    assert code == 0 and "warning: --threads 3 is more than the 2 CPU cores" in err
