"""A model trained on every training image calibrates on test images its record sets aside.

The record says ``data: {"calibration": {"split": "test", "images": K, "seed": S, "of": N}}``
(``run_calibration.ReservedTestImages``): thresholds are calibrated on exactly those K test
images and every early-exit figure is reported on the other N - K.
"""

import json

import numpy as np
import pytest

from ravit_keras import run_calibration, runs

NUM_TEST, RESERVED, SEED = 100, 30, 0


def _record(folder, **data):
    folder.mkdir(parents=True, exist_ok=True)
    entry = {"split": "test", "images": RESERVED, "seed": SEED, "of": NUM_TEST}
    (folder / runs.RECORD_FILE).write_text(json.dumps({"training": {"seed": 5}, "class_names": [str(i) for i in range(10)],
                                                        "data": {"calibration": entry, **data}}))
    return folder


def _npz(path, num_test=NUM_TEST):
    """Images whose first pixel is their position in the split (test: 0..num_test-1)."""
    def images(n):
        x = np.zeros((n, 32, 32, 3), np.uint8)
        x[:, 0, 0, 0] = np.arange(n)
        return x

    np.savez(path, x_train=images(40), y_train=np.arange(40) % 10,
             x_test=images(num_test), y_test=np.arange(num_test) % 10)
    return path


def _positions(split):
    x, _ = split.as_numpy()
    return x[:, 0, 0, 0].astype(int).tolist()


def test_the_record_sets_test_images_aside_and_auto_calibrates_on_them(tmp_path):
    run = _record(tmp_path / "run")
    reserved = run_calibration.reserved_test_images(run)
    assert reserved == run_calibration.ReservedTestImages(RESERVED, SEED, NUM_TEST)
    assert reserved.to_record() == {"split": "test", "images": RESERVED, "seed": SEED, "of": NUM_TEST}
    # The same images any tool draws from the seed (e.g. over saved test logits).
    expected = np.sort(np.random.default_rng(SEED).permutation(NUM_TEST)[:RESERVED])
    assert reserved.calibration_index(NUM_TEST).tolist() == expected.tolist()
    assert sorted(reserved.reported_index(NUM_TEST).tolist() + expected.tolist()) == list(range(NUM_TEST))
    plan = run_calibration.calibration_plan(run)
    assert plan.split == "test" and plan.test_images == reserved and plan.carve_fraction == 0.0
    assert "set aside" in plan.note and "other 70" in plan.description
    assert run_calibration.calibration_plan(run, "test").test_images == reserved  # The same images when asked for.
    assert run_calibration.calibration_plan(run, "train").test_images is None
    with pytest.raises(ValueError, match="records no calibration holdout"):
        run_calibration.calibration_plan(run, "calibration")
    with pytest.raises(ValueError, match="this test split has 99 images"):
        reserved.calibration_index(99)
    assert run_calibration.reserved_test_images(tmp_path / "nowhere") is None


def test_a_training_holdout_still_wins(tmp_path):
    run = _record(tmp_path / "run", calibration_holdout=0.05)
    assert run_calibration.calibration_plan(run).split == "calibration"


def test_calibration_loads_exactly_the_reserved_images_and_reports_on_the_rest(tmp_path):
    from ravit_keras.data.calibration import load_calibration, load_reported
    from ravit_keras.data.source import DataSource

    run, source = _record(tmp_path / "run"), DataSource(str(_npz(tmp_path / "d.npz")))
    notes = []
    cal, where = load_calibration(source, run, image_size=(32, 32), num_classes=10, num_images=500,
                                  notes=notes.append)
    reserved = run_calibration.reserved_test_images(run)
    assert _positions(cal) == reserved.calibration_index(NUM_TEST).tolist()
    assert "set aside" in where and any("set aside" in n for n in notes)
    cal, _ = load_calibration(source, run, image_size=(32, 32), num_classes=10, num_images=20, notes=notes.append)
    assert _positions(cal) == reserved.calibration_index(NUM_TEST).tolist()[:20]

    reported, excluded = load_reported(source, run, "test", image_size=(32, 32), num_classes=10, notes=notes.append)
    assert excluded == RESERVED and _positions(reported) == reserved.reported_index(NUM_TEST).tolist()
    assert "left out" in notes[-1]
    limited, _ = load_reported(source, run, "test", image_size=(32, 32), num_classes=10, limit=10, notes=notes.append)
    assert _positions(limited) == reserved.reported_index(NUM_TEST).tolist()[:10]  # The limit after the exclusion.
    everything, excluded = load_reported(source, run, "test", image_size=(32, 32), num_classes=10,
                                         calibrating=False, notes=notes.append)
    assert excluded == 0 and everything.num_examples == NUM_TEST and "all 100 test images" in notes[-1]
    train, excluded = load_reported(source, run, "train", image_size=(32, 32), num_classes=10, notes=notes.append)
    assert excluded == 0 and train.num_examples == 40

    other = DataSource(str(_npz(tmp_path / "other.npz", num_test=80)))
    with pytest.raises(ValueError, match="80 images"):
        load_calibration(other, run, image_size=(32, 32), num_classes=10, num_images=20, notes=notes.append)


def test_eval_reports_on_the_test_images_that_did_not_calibrate(tmp_path, tiny_config, capsys):
    import keras

    from ravit_keras.cli import main
    from ravit_keras.model import RAViT

    keras.utils.set_random_seed(0)
    run = _record(tmp_path / "run")
    RAViT(tiny_config).save(run / runs.MODEL_FILE)
    data = str(_npz(tmp_path / "d.npz"))
    out = tmp_path / "eval"
    assert main(["eval", "--model", str(run), "--data", data, "--split", "test", "--mac-budget", "0.9",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "reporting on 70 test images" in printed and "set aside" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["num_images"] == NUM_TEST - RESERVED
    assert "30 test images set aside for calibration (30 of 100, seed 0)" in json.dumps(report)
    # Thresholds given by hand (none calibrated): every test image, and a note saying which would calibrate.
    assert main(["eval", "--model", str(run), "--data", data, "--split", "test", "--thresholds", "0"]) == 0
    printed = capsys.readouterr().out
    assert "all 100 test images are reported" in printed
