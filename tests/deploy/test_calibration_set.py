"""The manifest's ``calibration`` entry and ``ravit run`` leaving those images out.

A conversion records the images its thresholds were calibrated on as fields; on the
test split they are named, ``ravit run`` reports on the rest (with a note), as ``ravit
eval`` does from a run record. The golden fixture stands in for a converted model: its
manifest gains the entry (the checksums cover the submodels, not the manifest).
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ravit_keras import run_calibration, runs
from ravit_keras.deploy.runtime.calibration_set import CalibrationSet
from ravit_keras.deploy.runtime.manifest import Manifest, ManifestError, load_manifest

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "android_demo/core/src/test/resources/golden"
RESERVED = {"source": "twelve.npz", "split": "test", "images": 4, "seed": 3, "of": 12, "used": 4}


def test_entry_round_trips_and_names_the_seeded_images():
    entry = CalibrationSet.from_dict(RESERVED)
    assert entry.to_dict() == RESERVED
    # The same images as the run record's ReservedTestImages.
    expected = run_calibration.ReservedTestImages(4, 3, 12).calibration_index(12)
    assert entry.excluded_index("test", 12).tolist() == expected.tolist()
    assert entry.excluded_index("train", 12) is None  # Another split holds none of them.
    assert entry.excluded_index("test", 13) is None   # Nor a test split of another size.
    first = CalibrationSet.from_dict({"split": "test", "images": 3})  # No seed: the first images.
    assert first.excluded_index("test", 10).tolist() == [0, 1, 2]
    assert "4 of the 12 test images of twelve.npz, seed 3" == entry.description


@pytest.mark.parametrize("change, key", [
    ({"split": "validation"}, "calibration.split"),
    ({"images": 12}, "calibration.images"),
    ({"used": 5}, "calibration.used"),
    ({"seed": "zero"}, "calibration.seed"),
    ({"images": None}, "calibration.images"),
])
def test_a_bad_entry_is_refused_naming_its_key(change, key):
    manifest = json.loads((GOLDEN / "manifest.json").read_text())
    manifest["calibration"] = {k: v for k, v in {**RESERVED, **change}.items() if v is not None}
    with pytest.raises(ManifestError, match=key.replace(".", r"\.")):
        Manifest.from_dict(manifest)


def test_plan_records_what_calibrated(tmp_path):
    reserved = run_calibration.ReservedTestImages(200, 0, 1000)
    runs.write_record(tmp_path, {"name": "x"}, {"seed": 5}, ["a", "b"],
                      {"calibration_holdout": 0.0, "calibration": reserved.to_record()})
    assert run_calibration.calibration_plan(tmp_path).record(150, "data.npz") == {
        "source": "data.npz", "split": "test", "images": 200, "seed": 0, "of": 1000}
    runs.write_record(tmp_path, {"name": "x"}, {"seed": 5}, ["a", "b"], {"calibration_holdout": 0.05})
    assert run_calibration.calibration_plan(tmp_path).record(150, "generated") == {
        "source": "generated", "split": "calibration", "images": 150, "seed": 5, "fraction": 0.05}


@pytest.fixture
def converted(tmp_path):
    """The golden submodels with a manifest that calibrated on 4 of a 12-image test split."""
    folder = tmp_path / "golden"
    shutil.copytree(GOLDEN, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["calibration"] = RESERVED
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert load_manifest(folder).calibration == CalibrationSet.from_dict(RESERVED)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(12, 32, 32, 3), dtype=np.uint8)
    y = np.arange(12) % len(manifest["labels"])
    data = tmp_path / "twelve.npz"
    np.savez(data, x_train=x, y_train=y, x_test=x, y_test=y, class_names=np.array(manifest["labels"]))
    return folder, data


def _run(capsys, tmp_path, *flags):
    from ravit_keras.cli import main

    out = tmp_path / "run.json"
    assert main(["run", *map(str, flags), "--out", str(out)]) == 0
    return capsys.readouterr().out, json.loads(out.read_text())


def test_run_leaves_out_the_calibration_images_of_the_test_split(converted, capsys, tmp_path):
    folder, data = converted
    out, report = _run(capsys, tmp_path, "--model", folder, "--data", data)
    assert sum(report["exit_counts"]) == 8
    assert "note: reporting on 8 test images: the 4 that calibrated golden's thresholds are left out" in out
    _, report = _run(capsys, tmp_path, "--model", folder, "--data", data, "--limit", "3")
    assert sum(report["exit_counts"]) == 3  # --limit counts after the exclusion.
    # Thresholds by hand (0: no early exit) calibrate nothing: every image is reported, with a note.
    out, report = _run(capsys, tmp_path, "--model", folder, "--data", data, "--thresholds", "0")
    assert sum(report["exit_counts"]) == 12 and "all 12 test images are reported" in out
    # The training split holds none of them.
    out, report = _run(capsys, tmp_path, "--model", folder, "--data", data, "--split", "train")
    assert sum(report["exit_counts"]) == 12 and "note:" not in out
