"""Trained presets that ship in ``ravit_keras/presets/`` (``from_preset``, ``--model preset:NAME``).

The real-data checks classify the first CIFAR-10 test images of ``../shared/data``
and compare with the accuracy the preset's card recorded when it was made
(``scripts/make_preset.py``); they skip without that folder.
"""

import io
import json

import numpy as np
import pytest

from ravit_keras import presets, run_calibration, runs
from tests.data.builders import SHARED_DATA

CIFAR10_PRESETS = [n for n in presets.available_presets() if n.endswith("_cifar10")]
# A few images may flip between hosts (BLAS and oneDNN round differently): 1.5 points of 500.
ACCURACY_TOLERANCE = 0.015


def cifar10_test_images(n: int):
    """The first ``n`` CIFAR-10 test images and labels, decoded as ``materialize.py`` does."""
    from PIL import Image

    compact = SHARED_DATA / "cifar10_compact.npz"
    if not compact.is_file():
        pytest.skip(f"real CIFAR-10 not found at {SHARED_DATA} (only present beside the dev checkout)")
    with np.load(compact) as z:
        off, blob = z["test_offsets"], z["test_jpeg"]
        x = np.stack([np.asarray(Image.open(io.BytesIO(blob[off[i]:off[i + 1]].tobytes())).convert("RGB"))
                      for i in range(n)])
        exact, exact_x = z["test_exact_index"], z["test_exact_x"]
        keep = exact < n
        x[exact[keep]] = exact_x[keep]  # The images whose original pixels were kept.
        return x, z["y_test"][:n].astype(np.int64)


def test_the_reference_presets_ship():
    assert {"ravit_1-3_cifar10", "vit3_cifar10", "vit4_cifar10", "ravit_1-3_lit_cifar10"} <= set(
        presets.available_presets())
    assert presets.from_preset("vit3_cifar10").ravit_config.layer_spec == "0-3"
    # The LIT preset is a RAViT 1-3 whose first full-resolution layer is an MLP block.
    lit = presets.from_preset("ravit_1-3_lit_cifar10").ravit_config
    assert lit.layers == (1, 3) and lit.mlp_layers == (0, 1)
    assert presets.preset_card("ravit_1-3_lit_cifar10")["mlp_layers"] == "0-1"
    from ravit_keras import train

    assert presets.MODEL_FILE == train.MODEL_FILE  # A preset is a run folder: the same file name.


@pytest.mark.parametrize("name", CIFAR10_PRESETS)
def test_preset_folder_is_complete_and_small(name):
    folder = presets.preset_dir(name)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["card.json", runs.RECORD_FILE, runs.LOG_FILE, runs.MODEL_FILE, "metadata.json", "int8"])
    assert (folder / "model.keras").stat().st_size <= 5 * 1024 * 1024
    card = presets.preset_card(name)
    for field in ("command", "data", "host", "test_top1", "test_top1_per_exit", "check"):
        assert card[field], field
    record = json.loads((folder / runs.RECORD_FILE).read_text())
    assert record["class_names"][:2] == ["airplane", "automobile"]
    assert presets.preset_dir("preset:" + name) == folder


@pytest.mark.parametrize("name", CIFAR10_PRESETS)
def test_cifar10_presets_are_the_213_epoch_runs_and_calibrate_on_reserved_test_images(name):
    """Trained on all 50,000 training images (GPU study, scripts/import_gpu_study.py): the record
    sets 2,000 test images aside for the thresholds; figures are reported on the other 8,000."""
    folder = presets.preset_dir(name)
    record = runs.load_record(folder)
    assert record["training"]["epochs"] == 213 and record["training"]["backend"] == "jax"
    assert run_calibration.reserved_test_images(folder) == run_calibration.ReservedTestImages(2000, 0, 10000)
    plan = run_calibration.calibration_plan(folder)
    assert plan.split == "test" and plan.test_images is not None
    from ravit_keras.train import load_run_config

    assert load_run_config(folder)[1].epochs == 213  # The recipe loads despite the extra "backend".
    card = presets.preset_card(name)
    assert card["seeds"]["seed_0"]["epochs"] == 213 and card["heldout"]["reported_images"] == 8000
    assert "not re-run" in card["reproduce"]["status"] and "KERAS_BACKEND=jax" in card["reproduce"]["command"]
    assert card["calibration"]["images"] == 2000


def test_unknown_preset_names_the_ones_that_exist(capsys):
    with pytest.raises(LookupError, match="ravit_1-3_cifar10"):
        presets.from_preset("nope")
    from ravit_keras.cli import main

    with pytest.raises(SystemExit) as e:
        main(["convert", "--model", "preset:nope", "--data", "generated", "--out", "x"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "No preset named 'nope'" in err and "Traceback" not in err


@pytest.mark.real_data
@pytest.mark.parametrize("name", CIFAR10_PRESETS)
def test_preset_classifies_cifar10_at_its_recorded_accuracy(name):
    card = presets.preset_card(name)
    n = card["check"]["first_test_images"]
    x, y = cifar10_test_images(n)
    model = presets.from_preset(name)
    assert model.ravit_config.layer_spec == card["layers"]
    logits = model.predict(x.astype(np.float32), batch_size=250, verbose=0)
    accuracy = float(np.mean(np.asarray(logits[sorted(logits)[-1]]).argmax(-1) == y))
    assert accuracy == pytest.approx(card["check"]["top1_last_exit"], abs=ACCURACY_TOLERANCE)
    assert accuracy > 0.5  # Trained, not a stub: a tenth would be chance.


@pytest.mark.slow
@pytest.mark.real_data
def test_cli_converts_a_preset_to_int8_and_runs_it(tmp_path):
    from ravit_keras.cli import main

    x, y = cifar10_test_images(600)
    data = tmp_path / "cifar10.npz"  # The keras.datasets layout the CLI reads.
    np.savez(data, x_train=x[:300], y_train=y[:300], x_test=x[300:], y_test=y[300:])
    out = tmp_path / "tflite"
    assert main(["convert", "--model", "preset:ravit_1-3_cifar10", "--data", str(data), "--mode", "int8",
                 "--calibration-split", "train", "--calibration-images", "200",
                 "--quantization-images", "100", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["quantization"] == "int8" and manifest["labels"][0] == "airplane"
    report = tmp_path / "report.json"
    assert main(["run", "--model", str(out), "--data", str(data), "--thresholds", "0",
                 "--out", str(report)]) == 0
    accuracy = json.loads(report.read_text())["accuracy"]
    card = presets.preset_card("ravit_1-3_cifar10")
    assert accuracy > card["test_top1"] - 0.08  # 300 images: a loose check that int8 kept the model.
