"""Presets ready to deploy: the int8 submodels and metadata.json each preset ships.

``scripts/ship_presets.py`` converts every preset with ``ravit convert --mode int8``
into ``NAME/int8/`` and writes ``NAME/metadata.json``. These checks need no dataset:
the shipped files agree with one another and with the preset's model and record, and
``ravit run``/``predict --model preset:NAME --mode int8`` work on generated images.
(How close int8 is to Keras on real CIFAR-10: tests/deploy/test_android_default_model.py
and the script's own check.)
"""

import json
import re

import numpy as np
import pytest

from ravit_keras import presets, run_calibration, runs
from ravit_keras.deploy.runtime.manifest import load_manifest
from ravit_keras.presets.metadata import METADATA_FILE

CIFAR10_PRESETS = [n for n in presets.available_presets() if n.endswith("_cifar10")]
# Each preset's int8 submodels stay small: the package ships four of them.
MAX_INT8_BYTES = 2 * 1024 * 1024
# What a user's machine does not have: paths of the machine that made the presets.
LOCAL_PATH = re.compile(r"\.\./shared|/work/|/tmp/|runs/data|/home/|/root/")


@pytest.mark.parametrize("name", CIFAR10_PRESETS)
def test_shipped_int8_matches_its_submodels_and_the_presets_record(name):
    folder = presets.preset_dir(name)
    int8 = presets.shipped_submodels(folder, "int8")
    assert int8 == folder / "int8"
    manifest = load_manifest(int8)  # Every submodel present, its SHA-256 and tensors as listed.
    record = runs.load_record(folder)
    assert manifest.quantization == "int8" and manifest.image.dtype == "uint8"
    assert dict(manifest.model) == record["model"]
    assert list(manifest.labels) == record["class_names"]
    assert (int8 / manifest.labels_file).read_text().split("\n")[:manifest.num_classes] == record["class_names"]
    card = presets.preset_card(name)
    assert len(manifest.exits) == len(card["test_top1_per_exit"])
    assert sorted(p.name for p in int8.iterdir()) == sorted(
        ["manifest.json", "labels.txt"] + [e.file for e in manifest.exits])
    assert sum(p.stat().st_size for p in int8.iterdir()) <= MAX_INT8_BYTES
    if len(manifest.exits) > 1:
        # Thresholds calibrated on exactly the test images the record sets aside.
        reserved = run_calibration.reserved_test_images(folder)
        cal = manifest.calibration
        assert cal is not None
        assert (cal.split, cal.images, cal.seed, cal.of) == ("test", reserved.images, reserved.seed, reserved.of)
        assert cal.used == reserved.images and not LOCAL_PATH.search(cal.source)
        assert manifest.operating_points and manifest.default_thresholds[0] > 0
    else:
        assert manifest.calibration is None and manifest.default_thresholds == ()


@pytest.mark.parametrize("name", CIFAR10_PRESETS)
def test_metadata_json_has_keras_hubs_keys_and_describes_the_preset(name):
    folder = presets.preset_dir(name)
    meta = json.loads((folder / METADATA_FILE).read_text())
    for key in ("keras_version", "ravit_keras_version", "parameter_count", "date_saved", "tasks"):
        assert meta[key], key
    assert re.fullmatch(r"\d{4}-\d\d-\d\d@\d\d:\d\d:\d\d", meta["date_saved"])  # keras-hub's format.
    assert "ImageClassifier" in meta["tasks"]
    config = json.loads((folder / runs.RECORD_FILE).read_text())
    assert meta["class_names"] == config["class_names"] and meta["num_classes"] == config["model"]["num_classes"]
    assert meta["layers"] == config["model"]["layers"] and meta["converted"] == {"int8": "int8"}
    if name == "vit3_cifar10":  # One model loaded: the count is the model's own.
        assert meta["parameter_count"] == presets.from_preset(name).count_params()


@pytest.mark.parametrize("name", CIFAR10_PRESETS)
def test_preset_files_cite_no_path_of_the_machine_that_made_them(name):
    folder = presets.preset_dir(name)
    for f in ("card.json", runs.RECORD_FILE, METADATA_FILE, "int8/manifest.json"):
        text = (folder / f).read_text()
        assert not LOCAL_PATH.search(text), f"{f}: {LOCAL_PATH.search(text).group(0)}"
    card = presets.preset_card(name)
    assert "keras.datasets.cifar10" in card["data"] and "ship_presets.py" in card["measure_command"]


def _labelled_npz(path, n=6, seed=0):
    """``n`` generated 32x32 images with CIFAR-10's class names (the keras.datasets layout)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    y = np.arange(n) % 10
    names = runs.load_record(presets.preset_dir("ravit_1-3_cifar10"))["class_names"]
    np.savez(path, x_train=x, y_train=y, x_test=x, y_test=y, class_names=np.array(names))
    return path


def test_run_and_predict_a_preset_as_int8_without_any_dataset(tmp_path, capsys):
    from PIL import Image

    from ravit_keras.cli import main

    data = _labelled_npz(tmp_path / "six.npz")
    assert main(["run", "--model", "preset:ravit_1-3_cifar10", "--mode", "int8", "--data", str(data),
                 "--out", str(tmp_path / "run.json")]) == 0
    out = capsys.readouterr().out
    assert "through 2 int8 submodels" in out
    # A 6-image test split is not the 10,000-image one the thresholds were calibrated on.
    assert "none are left out" in out
    report = json.loads((tmp_path / "run.json").read_text())
    assert sum(report["exit_counts"]) == 6
    # Without --mode, run takes the submodels the preset ships.
    assert main(["run", "--model", "preset:ravit_1-3_cifar10", "--data", str(data), "--limit", "2"]) == 0
    assert "through 2 int8 submodels" in capsys.readouterr().out
    images = tmp_path / "images"
    images.mkdir()
    for i, img in enumerate(np.load(data)["x_test"][:3]):
        Image.fromarray(img).save(images / f"{i}.png")
    assert main(["predict", str(images), "--model", "preset:vit3_cifar10", "--mode", "int8"]) == 0
    out = capsys.readouterr().out
    assert "1 int8 submodel" in out and "3 images:" in out


def test_a_mode_the_model_does_not_ship_is_one_clear_line(tmp_path, capsys):
    from ravit_keras.cli import main

    data = _labelled_npz(tmp_path / "six.npz")
    assert main(["run", "--model", "preset:ravit_1-3_cifar10", "--mode", "float32", "--data", str(data)]) == 2
    err = capsys.readouterr().err.strip()
    assert "ships no float32 submodels" in err and "ravit convert" in err and len(err.splitlines()) == 1
    int8 = str(presets.preset_dir("ravit_1-3_cifar10") / "int8")
    assert main(["predict", str(tmp_path), "--model", int8, "--mode", "float32"]) == 2
    assert "holds int8 submodels" in capsys.readouterr().err
    assert main(["predict", str(tmp_path), "--model", int8, "--mode", "keras"]) == 2
    assert "not a Keras model" in capsys.readouterr().err


def test_run_a_preset_as_int8_needs_neither_tensorflow_nor_keras(tmp_path):
    from tests.no_tensorflow import run_without_tensorflow

    data = _labelled_npz(tmp_path / "six.npz")
    result = run_without_tensorflow(
        "from ravit_keras.cli import main\n"
        f"rc = main(['run', '--model', 'preset:ravit_1-3_cifar10', '--mode', 'int8', '--data', {str(data)!r}])\n"
        "assert rc == 0, rc\n"
        "assert not any(m.split('.')[0] in ('tensorflow', 'keras') for m in sys.modules)\n")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "through 2 int8 submodels" in result.stdout


def test_every_preset_file_is_package_data():
    """A wheel ships each file of each preset folder (pyproject's package-data globs)."""
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+.
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    patterns = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"]["ravit_keras.presets"]
    shipped = {p for pattern in patterns for p in presets.PRESETS_DIR.glob(pattern)}
    for name in CIFAR10_PRESETS:
        files = {p for p in presets.preset_dir(name).rglob("*") if p.is_file()}
        assert files <= shipped, sorted(str(p) for p in files - shipped)


@pytest.mark.real_data
def test_run_on_cifar10_leaves_out_the_presets_calibration_images(tmp_path, capsys):
    """On CIFAR-10's whole test split, `ravit run` reports on the 8,000 images that did not
    calibrate the shipped thresholds, in order, and says so."""
    from ravit_keras.cli import main
    from tests.test_presets import cifar10_test_images

    x, y = cifar10_test_images(10000)
    names = runs.load_record(presets.preset_dir("ravit_1-3_cifar10"))["class_names"]
    data = tmp_path / "cifar10.npz"
    np.savez(data, x_train=x[:10], y_train=y[:10], x_test=x, y_test=y, class_names=np.array(names))
    answers = tmp_path / "answers.json"
    assert main(["run", "--model", "preset:ravit_1-3_cifar10", "--data", str(data), "--limit", "20",
                 "--per-image", str(answers)]) == 0
    out = capsys.readouterr().out
    assert "note: reporting on 20 test images: the 2000 that calibrated preset:ravit_1-3_cifar10's" in out
    reported = run_calibration.ReservedTestImages(2000, 0, 10000).reported_index(10000)[:20]
    rows = json.loads(answers.read_text())  # One object per image, in the order streamed.
    assert [r["true_label"] for r in rows] == [names[i] for i in y[reported]]
