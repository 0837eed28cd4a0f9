"""The run folder (``ravit_keras.runs``): names, record, class names, calibration policy (no TensorFlow)."""

import json

import pytest

from ravit_keras import run_calibration, runs
from tests.no_tensorflow import run_without_tensorflow


def _record(folder, **fields):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / runs.RECORD_FILE).write_text(json.dumps(fields))
    return folder


def test_placeholders_are_spelled_once_and_recognised():
    names = runs.placeholder_class_names(3)
    assert names == ["class_0", "class_1", "class_2"]
    assert runs.are_placeholders(names) and runs.are_placeholders(["0", "1"])
    assert not runs.are_placeholders(["cat", "dog"])
    assert runs.class_names_or_placeholders(None, 2) == names[:2]


def test_class_names_come_from_the_record_when_they_fit(tmp_path):
    run = _record(tmp_path / "run", class_names=["cat", "dog"])
    assert runs.class_names(run, 2) == ["cat", "dog"]
    assert runs.class_names(run / runs.MODEL_FILE, 2) == ["cat", "dog"]  # A model file inside the run.
    assert runs.class_names(run, 3) == runs.placeholder_class_names(3)  # Another model: not its names.
    assert runs.class_names(tmp_path / "nowhere.keras", 2) == runs.placeholder_class_names(2)


def test_calibration_plan_prefers_the_runs_holdout(tmp_path):
    run = _record(tmp_path / "run", data={"calibration_holdout": 0.05}, training={"seed": 3})
    plan = run_calibration.calibration_plan(run)
    assert (plan.split, plan.fraction, plan.seed, plan.note) == ("calibration", 0.05, 3, None)
    assert plan.carve_fraction == 0.05 and "never trained on" in plan.description
    assert run_calibration.calibration_plan(run, "test").carve_fraction == 0.0


def test_calibration_plan_without_a_holdout_notes_the_optimism(tmp_path):
    plan = run_calibration.calibration_plan(tmp_path / "model.keras")
    assert plan.split == "train" and "optimistic" in plan.note
    with pytest.raises(ValueError, match="records no calibration holdout"):
        run_calibration.calibration_plan(tmp_path / "model.keras", "calibration")


def test_calibration_size_has_a_floor():
    run_calibration.check_calibration_size(run_calibration.MIN_CALIBRATION_IMAGES)
    with pytest.raises(ValueError, match=f"give at least {run_calibration.MIN_CALIBRATION_IMAGES}"):
        run_calibration.check_calibration_size(run_calibration.MIN_CALIBRATION_IMAGES - 1)


def test_record_round_trip_and_strict_load(tmp_path):
    runs.write_record(tmp_path, {"m": 1}, {"t": 2}, ["a"], {"source": "x"})
    assert runs.load_record(tmp_path) == {"model": {"m": 1}, "training": {"t": 2}, "class_names": ["a"],
                                          "data": {"source": "x"}}
    with pytest.raises(FileNotFoundError, match="not a training run folder"):
        runs.load_record(tmp_path / "empty")


def test_runs_imports_no_tensorflow():
    out = run_without_tensorflow("import ravit_keras.runs, ravit_keras.data.source\nprint('ok')\n")
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
