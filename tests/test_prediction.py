"""``ravit predict`` and ``ravit run --per-image``: per-image answers from both model kinds.

Uses the session fixtures of conftest.py (a tiny RAViT trained once, converted once).
"""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ravit_keras.cli import main
from ravit_keras.deploy.runtime.scheduler import RAViTScheduler
from tests.no_tensorflow import run_without_tensorflow


@pytest.fixture
def image_folder(tflite_trained_ravit, tmp_path):
    """6 test images as PNG files (two in a sub-folder), named after their class."""
    t = tflite_trained_ravit
    root = tmp_path / "photos"
    (root / "more").mkdir(parents=True)
    for i in range(6):
        name = f"{'more/' if i >= 4 else ''}{i}_{t.class_names[t.test_labels[i]]}.png"
        Image.fromarray(t.test_images[i]).save(root / name)
    return root


@pytest.fixture(scope="module")
def keras_model_file(tflite_trained_ravit, tmp_path_factory):
    path = tmp_path_factory.mktemp("keras") / "model.keras"
    tflite_trained_ravit.model.save(path)
    return path


def test_predict_folder_on_submodels_matches_the_scheduler(tflite_float32_folder, image_folder, tmp_path, capsys):
    out = tmp_path / "answers.csv"
    assert main(["predict", str(image_folder), "--model", str(tflite_float32_folder), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 6
    assert [Path(r["source"]).name for r in rows] == sorted(p.name for p in image_folder.glob("*.png")) + \
        sorted(p.name for p in (image_folder / "more").glob("*.png"))
    sched = RAViTScheduler(tflite_float32_folder)
    for r in rows:
        pixels = np.asarray(Image.open(r["source"]).convert("RGB"))
        c = sched.classify(pixels.astype(np.float32))
        assert r["label"] == c.label_name and int(r["exit_index"]) == c.exit_index
        assert int(r["macs"]) == c.macs
        assert [float(u) for u in r["entropies"].split(";")] == pytest.approx(c.entropies, abs=1e-6)
        top = json.loads(r["top_k"])  # [[label, probability], ...]
        assert len(top) == 3 and top[0][0] == r["label"] and float(top[0][1]) >= float(top[1][1])
        assert float(r["latency_ms"]) > 0 and r["true_label"] == "" and r["correct"] == ""
    assert "Wrote 6 answers" in capsys.readouterr().out


def test_predict_single_image_prints_answer(tflite_int8_folder, image_folder, capsys):
    image = sorted(image_folder.glob("*.png"))[0]
    assert main(["predict", str(image), "--model", str(tflite_int8_folder), "--top-k", "2"]) == 0
    out = capsys.readouterr().out
    line = [ln for ln in out.splitlines() if ln.startswith(str(image))][0]
    assert "exit_" in line and "MMACs" in line and line.count("%") == 2


def test_predict_keras_model_agrees_with_routing(tflite_trained_ravit, keras_model_file, image_folder, tmp_path):
    out = tmp_path / "answers.json"
    assert main(["predict", str(image_folder), "--model", str(keras_model_file), "--thresholds", "0.5",
                 "--out", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert len(rows) == 6
    from ravit_keras.exits import route_one_at_a_time

    pixels = np.stack([np.asarray(Image.open(r["source"])) for r in rows]).astype(np.float32)
    outputs = tflite_trained_ravit.model.predict(pixels, verbose=0)
    routing = route_one_at_a_time([outputs["exit_1"], outputs["exit_2"]], 0.5)
    assert [r["exit_index"] for r in rows] == routing.exit_index.tolist()
    assert [r["label_index"] for r in rows] == routing.predictions.tolist()
    assert all(r["latency_ms"] is None for r in rows)


def test_predict_resizes_other_sizes(tflite_float32_folder, tmp_path, capsys):
    Image.fromarray(np.full((50, 70, 3), 120, np.uint8)).save(tmp_path / "big.png")
    assert main(["predict", str(tmp_path / "big.png"), "--model", str(tflite_float32_folder)]) == 0
    assert "big.png:" in capsys.readouterr().out


def test_predict_bad_image_stops_or_is_skipped(tflite_float32_folder, image_folder, tmp_path, capsys):
    (image_folder / "broken.png").write_text("not a picture")
    out = tmp_path / "a.csv"
    assert main(["predict", str(image_folder), "--model", str(tflite_float32_folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "broken.png" in err and "Traceback" not in err
    assert not out.exists()  # No half-written answers.
    assert main(["predict", str(image_folder), "--model", str(tflite_float32_folder), "--out", str(out),
                 "--skip-bad-images"]) == 0
    assert "skipped" in capsys.readouterr().err
    assert len(list(csv.DictReader(out.open()))) == 6


@pytest.mark.parametrize("out, message", [("answers.txt", "must end in .csv or .json"),
                                          ("a_folder", "is a directory")])
def test_predict_checks_out_before_work(tflite_float32_folder, image_folder, tmp_path, capsys, out, message):
    target = tmp_path / out
    if message == "is a directory":  # An existing folder that holds none of the inputs.
        target.mkdir()
    assert main(["predict", str(image_folder), "--model", str(tflite_float32_folder), "--out", str(target)]) == 2
    assert message in capsys.readouterr().err


def test_run_per_image_and_per_class(tflite_float32_folder, tmp_path, capsys):
    per_image, report_path = tmp_path / "per_image.csv", tmp_path / "run.json"
    assert main(["run", "--model", str(tflite_float32_folder), "--data", "generated", "--limit", "120",
                 "--per-image", str(per_image), "--out", str(report_path),
                 "--per-class-plot", str(tmp_path / "pc.png"), "--confusion-plot", str(tmp_path / "cm.png")]) == 0
    rows = list(csv.DictReader(per_image.open()))
    report = json.loads(report_path.read_text())
    assert len(rows) == 120 and rows[0]["source"] == "#0"
    assert sum(int(r["correct"]) for r in rows) == round(report["accuracy"] * 120)
    per_class = report["per_class"]
    assert sum(c["images"] for c in per_class["classes"]) == 120
    assert np.trace(np.array(per_class["confusion_matrix"])) == sum(int(r["correct"]) for r in rows)
    for c in per_class["classes"]:
        mine = [r for r in rows if r["true_label"] == c["name"]]
        assert len(mine) == c["images"]
        if mine:
            assert c["accuracy"] == pytest.approx(np.mean([int(r["correct"]) for r in mine]))
    out = capsys.readouterr().out
    assert "per class" in out and "µs/image" in out
    assert (tmp_path / "pc.png").exists() and (tmp_path / "cm.png").exists()


@pytest.mark.slow
def test_run_and_predict_import_no_tensorflow(tflite_int8_folder, image_folder):
    result = run_without_tensorflow(
        "from ravit_keras.cli import main\n"
        f"assert main(['run', '--model', {str(tflite_int8_folder)!r}, '--data', 'generated', '--limit', '50']) == 0\n"
        f"assert main(['predict', {str(image_folder)!r}, '--model', {str(tflite_int8_folder)!r}]) == 0\n"
    )
    assert result.returncode == 0, result.stderr
    assert "accuracy" in result.stdout and "6 images" in result.stdout
