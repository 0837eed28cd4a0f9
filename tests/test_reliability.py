"""Fault injection: bad data, model files, parameters, interruptions, concurrency, filesystem.

Every case runs the real command line (``main(argv)``, in process) or the Python API
and asserts the exact behaviour: the exit code, no traceback, the file, field or
flag named in the message, and that nothing is lost or half-written.
docs/RELIABILITY.md lists the faults and what the toolkit does about each.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ravit_keras import runs
from ravit_keras.cli import main
from ravit_keras.data import generated_class_names

CLASSES = generated_class_names(10)


def _cli(capsys, *argv):
    """Runs ``ravit argv``; returns (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def _refused(capsys, *argv, names=()):
    """The command fails with exit code 2 and one 'ravit <cmd>: error:' line naming ``names``."""
    code, out, err = _cli(capsys, *argv)
    assert code == 2, out + err
    assert "error:" in err
    for name in names:
        assert str(name) in err, err
    return out, err


# Fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_folder(tflite_trained_ravit, tmp_path_factory):
    """The trained tiny model as a run folder (model.keras + the class names it knows)."""
    folder = tmp_path_factory.mktemp("run") / "run"
    folder.mkdir()
    tflite_trained_ravit.model.save(folder / "model.keras")
    (folder / runs.RECORD_FILE).write_text(json.dumps({"class_names": CLASSES}))
    return folder


@pytest.fixture
def converted(tflite_float32_folder, tmp_path):
    """A private copy of the converted float32 fixture, to damage."""
    copy = tmp_path / "tflite"
    shutil.copytree(tflite_float32_folder, copy)
    return copy


def _manifest(folder) -> dict:
    return json.loads((Path(folder) / "manifest.json").read_text())


def _write_manifest(folder, manifest) -> None:
    (Path(folder) / "manifest.json").write_text(json.dumps(manifest))


def _npz(path, n_train=40, n_test=20, **overrides):
    rng = np.random.default_rng(0)
    arrays = dict(x_train=rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
                  y_train=np.arange(n_train) % 10,
                  x_test=rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8),
                  y_test=np.arange(n_test) % 10)
    arrays.update(overrides)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return path


def _image_folder(root, classes, per_class=3, size=(32, 32)):
    rng = np.random.default_rng(1)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / c / f"{k}.png")
    return root


RUN = ["run", "--data", "generated", "--limit", "20", "--model"]


# Data ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault, overrides, named", [
    ("npz without x_test", dict(x_test=None), "x_test"),
    ("npz with float images", dict(x_test=np.zeros((20, 32, 32, 3), np.float32)), "uint8"),
    ("npz with a negative label", dict(y_test=np.r_[-1, np.zeros(19, int)]), "negative label"),
    ("npz with fewer labels than images", dict(y_test=np.zeros(5, int)), "5 labels for 20 images"),
    ("npz with class_names shorter than its labels", dict(class_names=np.array(["a", "b"])), "class_names"),
    ("npz with labels beyond the model's classes", dict(y_test=np.arange(20) % 13), "has 10 classes"),
])
def test_npz_faults(converted, tmp_path, capsys, fault, overrides, named):
    data = _npz(tmp_path / "d.npz", **overrides)
    _refused(capsys, "run", "--model", converted, "--data", data, names=[named])


def test_npz_that_is_not_an_archive(converted, tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_text("not a zip")
    _refused(capsys, "run", "--model", converted, "--data", bad, names=["bad.npz"])


def test_npz_with_an_empty_test_split(converted, tmp_path, capsys):
    data = _npz(tmp_path / "d.npz", x_test=np.zeros((0, 32, 32, 3), np.uint8), y_test=np.zeros(0, int))
    _refused(capsys, "run", "--model", converted, "--data", data, names=["holds no images"])


def test_folder_classes_unknown_to_the_model(converted, tmp_path, capsys):
    data = _image_folder(tmp_path / "photos", ["daisy", "red_blob", "tulip"])
    _refused(capsys, "run", "--model", converted, "--data", data, names=["daisy", "tulip", "unknown to it"])


def test_folder_classes_in_another_order_are_mapped_by_name(converted, tmp_path, capsys):
    # Three of the model's classes whose folder order differs from the model's label order.
    data = _image_folder(tmp_path / "photos", ["yellow_blob", "blue_blob", "fine_checkerboard"], per_class=4)
    per_image = tmp_path / "p.csv"
    code, out, _ = _cli(capsys, "run", "--model", converted, "--data", data, "--holdout-fraction", "0.5",
                        "--per-image", per_image)
    assert code == 0 and "mapped to the model's classes by name" in out
    import csv

    rows = list(csv.DictReader(per_image.open()))
    assert {r["true_label"] for r in rows} <= {"yellow_blob", "blue_blob", "fine_checkerboard"}
    for r in rows:  # The true label is the folder the file is in.
        assert Path(r["source"]).parent.name == r["true_label"]


def test_an_empty_class_folder_does_not_shift_labels(converted, tmp_path, capsys):
    data = _image_folder(tmp_path / "photos", ["blue_blob", "green_blob"], per_class=4)
    (data / "aaa_empty").mkdir()  # Sorted first: by position it would shift every label.
    per_image = tmp_path / "p.csv"
    code, _, _ = _cli(capsys, "run", "--model", converted, "--data", data, "--holdout-fraction", "0.5",
                      "--per-image", per_image)
    assert code == 0
    import csv

    for r in csv.DictReader(per_image.open()):
        assert Path(r["source"]).parent.name == r["true_label"]


@pytest.mark.parametrize("content, name", [(b"plain text, not an image", "notes.png"),
                                           (b"\xff\xd8\xff\xe0" + b"\x00" * 40, "cut.jpg")],
                         ids=["text named .png", "truncated JPEG"])
def test_unreadable_image_in_a_folder_is_named_by_run(converted, tmp_path, capsys, content, name):
    data = _image_folder(tmp_path / "photos", ["blue_blob", "red_blob"], per_class=2)
    (data / "blue_blob" / name).write_bytes(content)
    _refused(capsys, "run", "--model", converted, "--data", data, "--holdout-fraction", "0.5", names=[name])


def test_unreadable_image_is_named_by_eval_and_can_be_skipped(run_folder, tmp_path, capsys):
    data = _image_folder(tmp_path / "photos", ["blue_blob", "red_blob"], per_class=3)
    (data / "red_blob" / "broken.png").write_text("not an image")
    _refused(capsys, "eval", "--model", run_folder, "--data", data, "--split", "train",
             "--holdout-fraction", "0.2", names=["broken.png", "--skip-bad-images"])
    code, out, err = _cli(capsys, "eval", "--model", run_folder, "--data", data, "--split", "train",
                          "--holdout-fraction", "0.2", "--skip-bad-images")
    assert code == 0 and "broken.png" in err and "warning" in err


def _missing(root):
    return root


def _empty_folder(root):
    root.mkdir()
    return root


def _cifar_without_test_batch(root):
    (root / "cifar-10-batches-py").mkdir(parents=True)
    (root / "cifar-10-batches-py" / "batches.meta").write_bytes(b"x")
    return root


def _tiny_imagenet_without_classes(root):
    (root / "train").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n")
    return root


@pytest.mark.parametrize("make, named", [
    (_missing, "does not exist"),
    (_empty_folder, "Unrecognised dataset folder"),
    (_cifar_without_test_batch, "Unrecognised dataset folder"),
    (_tiny_imagenet_without_classes, "lists no classes"),
])
def test_unusable_dataset_paths(converted, tmp_path, capsys, make, named):
    _refused(capsys, "run", "--model", converted, "--data", make(tmp_path / "data"), names=[named])


def test_cifar_pickle_that_is_corrupt_is_named(converted, tmp_path, capsys):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": [n.encode() for n in CLASSES]}))
    (root / "test_batch").write_bytes(b"garbage")
    _refused(capsys, "run", "--model", converted, "--data", root, names=["test_batch"])


def test_tfds_dataset_not_prepared(converted, tmp_path, capsys):
    pytest.importorskip("tensorflow_datasets")
    _refused(capsys, "run", "--model", converted, "--data", "tfds:cifar10", "--data-dir", tmp_path,
             names=["cifar10"])


def test_train_class_count_comes_from_the_data(tmp_path, capsys):
    data = _npz(tmp_path / "five.npz", y_train=np.arange(40) % 5, y_test=np.arange(20) % 5)
    _refused(capsys, "train", "--config", "tiny", "--data", data, "--num-classes", "7", "--epochs", "1",
             "--out", tmp_path / "run", names=["--num-classes 7", "5 classes"])
    assert not (tmp_path / "run").exists()


# Model files -----------------------------------------------------------------------------------


def test_model_path_missing(tmp_path, capsys):
    _refused(capsys, "eval", "--model", tmp_path / "nothing.keras", "--data", "generated",
             names=["nothing.keras"])


@pytest.mark.parametrize("damage", ["truncated", "text"])
def test_damaged_keras_file(run_folder, tmp_path, capsys, damage):
    bad = tmp_path / "model.keras"
    data = (run_folder / "model.keras").read_bytes()
    bad.write_bytes(data[: len(data) // 3] if damage == "truncated" else b"hello")
    _, err = _refused(capsys, "eval", "--model", bad, "--data", "generated", "--limit", "10",
                      names=["model.keras", "not a readable .keras"])
    assert "not found" not in err.lower()


def test_run_folder_without_a_model(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    _refused(capsys, "convert", "--model", tmp_path / "run", "--data", "generated", "--out", tmp_path / "out",
             names=["model.keras"])


def test_converted_folder_without_manifest(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    _refused(capsys, *RUN, tmp_path / "empty", names=["manifest.json"])


def _edit(manifest, change):
    change(manifest)
    return manifest


MANIFEST_FAULTS = [
    ("not JSON", None, "not valid JSON"),
    ("a JSON list", lambda m: [m], "not an object"),
    ("no exits key", lambda m: m.pop("exits") and None, "'exits'"),
    ("no labels key", lambda m: m.pop("labels") and None, "'labels'"),
    ("format_version as a string", lambda m: m.update(format_version="1"), "'1' (str)"),
    ("a newer format_version", lambda m: m.update(format_version=2), "format_version 2"),
    ("another format", lambda m: m.update(format="onnx"), "format='onnx'"),
    ("labels and num_classes disagree", lambda m: m["labels"].pop() and None, "labels for num_classes"),
    ("an exit without sha256", lambda m: m["exits"][0].pop("sha256"), "'sha256'"),
    ("image not an object", lambda m: m.update(image="32x32"), "image: should be an object"),
    ("an exit that is a string", lambda m: m["exits"].__setitem__(1, "branch_2.tflite"),
     "exits[1]: should be an object"),
    ("thresholds above ln C", lambda m: m.update(default_thresholds=[9.0]), "default_thresholds"),
    ("a tensor shape that differs", lambda m: m["exits"][0]["outputs"]["logits"].update(shape=[1, 12]), "logits shape"),
    ("a tensor dtype that differs", lambda m: m["exits"][1]["inputs"]["cls_in"].update(dtype="int8"), "cls_in"),
]


@pytest.mark.parametrize("fault, change, named", MANIFEST_FAULTS, ids=[f[0] for f in MANIFEST_FAULTS])
def test_manifest_faults(converted, capsys, fault, change, named):
    if change is None:
        (converted / "manifest.json").write_text("{ not json")
    else:
        m = _manifest(converted)
        result = change(m)
        _write_manifest(converted, result if isinstance(result, list) else m)
    _refused(capsys, *RUN, converted, names=[named])


def test_manifest_faults_raise_manifest_error(converted):
    from ravit_keras.deploy.runtime.manifest import ManifestError, load_manifest

    _write_manifest(converted, {"format": "ravit-tflite", "format_version": 1})
    with pytest.raises(ManifestError, match="has no"):
        load_manifest(converted)


def test_submodel_missing(converted, capsys):
    (converted / "branch_2.tflite").unlink()
    _refused(capsys, *RUN, converted, names=["branch_2.tflite", "missing"])


def test_submodel_changed(converted, capsys):
    path = converted / "branch_1.tflite"
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    _refused(capsys, *RUN, converted, names=["branch_1.tflite", "Checksum"])


def test_submodel_truncated_with_a_matching_checksum(converted, capsys):
    import hashlib

    path = converted / "branch_2.tflite"
    path.write_bytes(path.read_bytes()[:200])
    m = _manifest(converted)
    m["exits"][1]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    _write_manifest(converted, m)
    _refused(capsys, *RUN, converted, names=["branch_2.tflite", "not a loadable TFLite model"])


# Parameters ----------------------------------------------------------------------------------


PARAMETER_FAULTS = [
    (["--threads", "0"], "--threads"),
    (["--thresholds", "-0.1"], "negative"),
    (["--thresholds", "5"], "above ln(10)"),
    (["--thresholds", "0.1,0.2,0.3"], "entries"),
    (["--thresholds", "abc"], "--thresholds"),
    (["--thresholds", "0.1", "--battery", "0.5"], "at most one"),
    (["--battery", "1.5"], "Battery level"),
    (["--mac-budget", "0.01"], "operating point fits"),
    (["--limit", "0"], "--limit"),
    (["--holdout-fraction", "1.5"], "holdout_fraction"),
    (["--top-k", "0"], "--top-k"),
]


@pytest.mark.parametrize("extra, named", PARAMETER_FAULTS, ids=[" ".join(f[0]) for f in PARAMETER_FAULTS])
def test_run_parameter_faults(tflite_float32_folder, capsys, extra, named):
    try:
        code, out, err = _cli(capsys, *RUN, tflite_float32_folder, *extra)
    except SystemExit as e:  # argparse's usage errors
        code, (out, err) = e.code, capsys.readouterr()
    assert code == 2 and named in err, err
    assert "Scheduling" not in out  # Refused before any work.


def test_train_parameter_faults(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--config", "tiny", "--data", "generated", "--epochs", "0", "--out", str(tmp_path / "r")])
    assert e.value.code == 2 and "--epochs" in capsys.readouterr().err


def test_too_few_calibration_images(run_folder, tmp_path, capsys):
    _refused(capsys, "convert", "--model", run_folder, "--data", "generated", "--calibration-images", "1",
             "--mode", "float32", "--out", tmp_path / "out", names=["--calibration-images", "at least 20"])
    assert not (tmp_path / "out").exists()


def test_unknown_mode(run_folder, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["convert", "--model", str(run_folder), "--data", "generated", "--mode", "int4",
              "--out", str(tmp_path / "o")])
    assert e.value.code == 2 and "--mode" in capsys.readouterr().err


# Scheduler inputs (Python API) ------------------------------------------------------------------


@pytest.mark.parametrize("image, message", [
    (np.full((32, 32, 3), np.nan, np.float32), "NaN"),
    (np.full((32, 32, 3), np.inf, np.float32), "NaN or infinite"),
    (np.full((32, 32, 3), 0.5, np.float32), "0..1"),
    (np.full((32, 32, 3), 300.0, np.float32), "values"),
    (np.zeros((16, 16, 3), np.float32), "does not match the model input"),
    (np.zeros((32, 32, 3), np.int64), "not supported"),
])
def test_scheduler_refuses_images_it_was_not_trained_on(tflite_float32_folder, image, message):
    from ravit_keras.deploy.runtime.scheduler import RAViTScheduler

    with pytest.raises(ValueError, match=message):
        RAViTScheduler(tflite_float32_folder).classify(image)


def test_int8_scheduler_refuses_float_pixels(tflite_int8_folder):
    from ravit_keras.deploy.runtime.scheduler import RAViTScheduler

    with pytest.raises(ValueError, match="uint8 pixels"):
        RAViTScheduler(tflite_int8_folder).classify(np.zeros((32, 32, 3), np.float32))


def test_scheduler_refuses_labels_outside_its_classes(tflite_float32_folder):
    from ravit_keras.deploy.runtime.scheduler import RAViTScheduler

    sched = RAViTScheduler(tflite_float32_folder)
    with pytest.raises(ValueError, match="Label 10 of image 1"):
        sched.evaluate(np.zeros((2, 32, 32, 3), np.uint8), [0, 10])


# Outputs and the filesystem ---------------------------------------------------------------------


def test_run_out_is_a_directory(tflite_float32_folder, tmp_path, capsys):
    out, _ = _refused(capsys, *RUN, tflite_float32_folder, "--out", tmp_path, names=["--out", "is a directory"])
    assert "Scheduling" not in out


def test_run_out_under_a_file(tflite_float32_folder, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    _refused(capsys, *RUN, tflite_float32_folder, "--plot", tmp_path / "file" / "h.png",
             names=["--plot", "not a writable folder"])


@pytest.mark.parametrize("flag", ["--per-image", "--per-class-plot", "--confusion-plot"])
def test_run_output_flags_checked_first(tflite_float32_folder, tmp_path, capsys, flag):
    out, _ = _refused(capsys, *RUN, tflite_float32_folder, flag, tmp_path, names=[flag])
    assert "Scheduling" not in out


def test_eval_out_is_a_file(run_folder, tmp_path, capsys):
    (tmp_path / "report").write_text("x")
    _refused(capsys, "eval", "--model", run_folder, "--data", "generated", "--limit", "10",
             "--out", tmp_path / "report")


def test_predict_out_with_an_unknown_extension(tflite_float32_folder, tmp_path, capsys):
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(img)
    _refused(capsys, "predict", img, "--model", tflite_float32_folder, "--out", tmp_path / "a.txt",
             names=[".csv or .json"])


CONVERT = ["convert", "--data", "generated", "--mode", "float32", "--calibration-images", "40",
           "--quantization-images", "10", "--model"]


def test_convert_into_an_existing_folder_needs_overwrite(run_folder, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    _refused(capsys, *CONVERT, run_folder, "--out", tmp_path / "out", names=["already exists", "--overwrite"])
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_convert_onto_a_file(run_folder, tmp_path, capsys):
    (tmp_path / "out").write_text("a file")
    _refused(capsys, *CONVERT, run_folder, "--out", tmp_path / "out", "--overwrite", names=["is a file"])
    assert (tmp_path / "out").read_text() == "a file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_convert_overwrite_leaves_no_debris(run_folder, tmp_path, capsys):
    for _ in range(2):
        code, _, _ = _cli(capsys, *CONVERT, run_folder, "--out", tmp_path / "out", "--overwrite")
        assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_second_writer_of_a_folder_fails_clearly(run_folder, tmp_path, capsys):
    (tmp_path / ".out.lock").write_text(f"{os.getpid()}\n")  # A live writer holds it.
    _refused(capsys, *CONVERT, run_folder, "--out", tmp_path / "out", names=["being written by another process"])
    assert not (tmp_path / "out").exists()


def test_stale_lock_and_debris_of_a_killed_conversion_are_cleared(run_folder, tmp_path, capsys):
    (tmp_path / ".out.lock").write_text("999999999\n")  # No such process.
    (tmp_path / ".out.abc123.partial").mkdir()
    (tmp_path / ".out.abc123.partial" / "branch_1.tflite").write_bytes(b"half")
    code, _, _ = _cli(capsys, *CONVERT, run_folder, "--out", tmp_path / "out")
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_disk_full_while_writing_a_report_leaves_nothing(monkeypatch, tmp_path):
    from ravit_keras import io_utils

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io_utils.os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        io_utils.atomic_write_json(tmp_path / "report.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_disk_full_while_writing_predictions_leaves_nothing(tflite_float32_folder, tmp_path, monkeypatch, capsys):
    from ravit_keras import prediction

    img = tmp_path / "in" / "a.png"
    img.parent.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(img)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(prediction.os, "fsync", full)
    code = main(["predict", str(img.parent), "--model", str(tflite_float32_folder), "--out", str(tmp_path / "p.csv")])
    err = capsys.readouterr().err
    assert code == 2 and "No space left" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


# Training: interruptions, divergence, resume ----------------------------------------------------


TRAIN = ["train", "--config", "tiny", "--layers", "1-2", "--data", "generated", "--limit-train", "128",
         "--batch-size", "32", "--progress", "none"]


@pytest.mark.slow
def test_failure_at_the_final_save_loses_no_epoch(tmp_path, capsys, monkeypatch):
    import ravit_keras.train as training

    real_save, calls = training.save_model, []

    def dies(*args, **kwargs):
        calls.append(1)
        raise KeyboardInterrupt  # A kill while the final model is written.

    monkeypatch.setattr(training, "save_model", dies)
    assert main([*TRAIN, "--epochs", "2", "--out", str(tmp_path / "run")]) == 130
    capsys.readouterr()
    assert (tmp_path / "run" / "backup").exists() and not (tmp_path / "run" / "model.keras").exists()
    monkeypatch.setattr(training, "save_model", real_save)
    code, _, _ = _cli(capsys, *TRAIN, "--epochs", "2", "--out", tmp_path / "run")
    assert code == 0 and (tmp_path / "run" / "model.keras").exists()
    assert not (tmp_path / "run" / "backup").exists()
    epochs = [line.split(",")[0] for line in (tmp_path / "run" / "log.csv").read_text().splitlines()[1:]]
    assert epochs == ["0", "1"]  # Not retrained from epoch 0.


@pytest.mark.slow
def test_divergence_stops_with_an_error_and_keeps_the_checkpoint(tmp_path, capsys):
    out, err = _refused(capsys, *TRAIN, "--epochs", "2", "--lr", "1e38", "--out", tmp_path / "run",
                        names=["loss became", "--lr"])
    assert not (tmp_path / "run" / "model.keras").exists()
    assert "no epoch ended with a finite loss" in err  # It diverged in its first epoch.


def test_an_epoch_with_a_nan_loss_is_never_backed_up(tmp_path):
    import keras

    from ravit_keras.train import training_callbacks

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    backup, = (cb for cb in training_callbacks(tmp_path) if isinstance(cb, keras.callbacks.BackupAndRestore))
    backup.set_model(model)
    backup.on_train_begin()
    backup.on_epoch_end(0, {"loss": float("nan")})
    assert not any((tmp_path / "backup").glob("**/*.weights.h5"))
    backup.on_epoch_end(0, {"loss": 0.5})
    assert any((tmp_path / "backup").glob("**/*.weights.h5"))


@pytest.mark.slow
@pytest.mark.parametrize("change, named", [(["--seed", "1"], "seed"), (["--limit-train", "96"], "other data")])
def test_resume_refuses_another_seed_or_dataset(tmp_path, capsys, monkeypatch, change, named):
    import ravit_keras.train as training

    def dies(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "save_model", dies)
    assert main([*TRAIN, "--epochs", "1", "--out", str(tmp_path / "run")]) == 130
    monkeypatch.undo()
    capsys.readouterr()
    argv = [*TRAIN, "--epochs", "1", "--out", tmp_path / "run"]
    if change[0] == "--limit-train":
        argv[argv.index("--limit-train") + 1] = change[1]
    else:
        argv += change
    _refused(capsys, *argv, names=[named])


@pytest.mark.slow
def test_finished_run_is_not_retrained(tmp_path, capsys):
    code, _, _ = _cli(capsys, *TRAIN, "--epochs", "1", "--out", tmp_path / "run")
    assert code == 0
    before = (tmp_path / "run" / "model.keras").stat().st_mtime_ns
    _refused(capsys, *TRAIN, "--epochs", "1", "--out", tmp_path / "run", names=["finished run"])
    assert (tmp_path / "run" / "model.keras").stat().st_mtime_ns == before


def test_keyboard_interrupt_is_reported_not_traced(monkeypatch, capsys):
    import ravit_keras.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_flops", interrupted)
    assert main(["flops"]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_unexpected_error_is_one_line_and_debug_shows_the_traceback(monkeypatch, capsys):
    import ravit_keras.model.flops as flops

    def broken(config):
        raise RuntimeError("injected")

    monkeypatch.setattr(flops, "format_cost_table", broken)
    assert main(["flops"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RuntimeError: injected" in err and "--debug" in err
    with pytest.raises(RuntimeError, match="injected"):
        main(["--debug", "flops"])


# Honest defaults -------------------------------------------------------------------------------


@pytest.mark.slow
def test_thresholds_are_calibrated_on_images_the_training_never_saw(tmp_path, capsys):
    code, out, _ = _cli(capsys, *TRAIN, "--epochs", "1", "--limit-train", "400", "--out", tmp_path / "run")
    # run_calibration.default_calibration_holdout: 500 images would be more than 20 % of 400, so 20 % of each class.
    assert code == 0 and "on 320 images" in out
    record = json.loads((tmp_path / "run" / runs.RECORD_FILE).read_text())
    assert record["data"]["calibration_holdout"] == 0.2
    code, out, err = _cli(capsys, "convert", "--model", tmp_path / "run", "--data", "generated", "--mode", "float32",
                          "--out", tmp_path / "tflite")
    assert code == 0 and "held-out training images never trained on" in out
    assert "operating points on 80 calibration images" in out  # Each with its interval.
    assert err.count("warning: 80 calibration images are too few") == 1
    manifest = _manifest(tmp_path / "tflite")
    assert manifest["thresholds_calibrated_on"].startswith("80 held-out training images")
    assert all(p["interval"]["images"] == 80 for p in manifest["operating_points"])
    code, out, _ = _cli(capsys, "eval", "--model", tmp_path / "run", "--data", "generated", "--limit", "50",
                        "--max-accuracy-drop", "0.01", "--out", tmp_path / "eval")
    assert code == 0 and "calibrated on 80 held-out training images" in out
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["operating_point"]["name"] == "calibrated thresholds"
    assert report["operating_point"]["thresholds"] == report["calibrated"]["thresholds"]


@pytest.mark.slow
def test_a_preset_trained_on_other_data_normalises_with_that_data(tmp_path, capsys):
    data = _npz(tmp_path / "d.npz", n_train=64, x_train=np.full((64, 32, 32, 3), 200, np.uint8))
    code, out, _ = _cli(capsys, "train", "--config", "cifar10", "--layers", "1-1", "--hidden-dim", "16",
                        "--mlp-dim", "32", "--num-heads", "2", "--data", data, "--epochs", "1", "--batch-size", "16",
                        "--progress", "none", "--out", tmp_path / "run")
    assert code == 0 and "own channel statistics" in out
    model = json.loads((tmp_path / "run" / runs.RECORD_FILE).read_text())["model"]
    assert model["name"] == "d"  # Named after its data (d.npz), not "cifar10".
    assert "RAViT 1-1 (d) on" in out
    assert model["mean"] == pytest.approx([200 / 255] * 3)
