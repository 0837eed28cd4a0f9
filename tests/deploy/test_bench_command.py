"""``ravit bench``: its operating points, the matched-accuracy rows, a converted folder as
--model, a static baseline, quiet output. Behaviour only, never timing values."""

import json
import math
import shutil

from ravit_keras.cli import main
from ravit_keras.deploy.measurement.bench_report import format_summary, matched_accuracy
from ravit_keras.deploy.measurement.benchmark import operating_points, relative_thresholds
from ravit_keras.deploy.runtime.manifest import load_manifest


def test_operating_points_add_the_calibrated_ones_to_the_grid(tflite_float32_folder):
    manifest = load_manifest(tflite_float32_folder)
    grid = relative_thresholds(manifest.num_classes)
    points = operating_points(manifest, grid)
    assert [p["tau"] for p in points[: len(grid)]] == grid
    assert all(p["point"].startswith("grid") for p in points[: len(grid)])
    calibrated = [p for p in points if "calibrated" in p["point"]]
    # The manifest's default and each MAC-budget point is run, each set of thresholds once.
    wanted = {tuple(round(t, 6) for t in manifest.default_thresholds)}
    wanted |= {tuple(round(t, 6) for t in p.thresholds) for p in manifest.operating_points}
    got = {tuple(round(t, 6) for t in ([p["tau"]] if isinstance(p["tau"], float) else p["tau"]))
           for p in calibrated}
    assert got == wanted
    assert sum("default" in p["point"] for p in points) == 1
    keys = [json.dumps(p["tau"]) for p in points]
    assert len(keys) == len(set(keys))


def test_operating_points_reach_thresholds_above_the_grid(tflite_float32_folder):
    # A small-class model calibrates thresholds near ln C, far above 20 % of it.
    manifest = load_manifest(tflite_float32_folder)
    high = round(0.9 * math.log(manifest.num_classes), 4)
    import dataclasses

    shifted = dataclasses.replace(manifest, default_thresholds=(high,), operating_points=())
    points = operating_points(shifted, relative_thresholds(manifest.num_classes))
    assert points[-1] == {"tau": [high], "point": "calibrated: default"}
    # A calibrated point the grid already holds is one row with both names.
    same = dataclasses.replace(manifest, default_thresholds=(0.0,), operating_points=())
    assert operating_points(same, [0.0, 0.1])[0]["point"] == "grid; calibrated: default"


def _row(point, accuracy, mflops, p50):
    return {"point": point, "tau": 0.0, "accuracy": accuracy, "avg_mflops": mflops, "exit_counts": [1, 1],
            "latency_ms": {"p50": p50, "p95": p50, "p99": p50}, "warmup_invokes": 1}


def test_matched_accuracy_picks_the_cheapest_point_as_accurate():
    result = {"images": 1, "threads": 1, "models": {
        "ravit_int8": {"tag": "ravit", "mode": "int8"},
        "static-small_int8": {"tag": "static-small", "mode": "int8"},
        "static-big_int8": {"tag": "static-big", "mode": "int8"},
        "static-f_float32": {"tag": "static-f", "mode": "float32"}},
        "end_to_end": {
            "ravit_int8": [_row("grid", 0.80, 10.0, 2.0), _row("a", 0.70, 6.0, 1.5), _row("b", 0.60, 4.0, 1.0)],
            "static-small_int8": [_row("static", 0.65, 5.0, 1.2)],
            "static-big_int8": [_row("static", 0.90, 20.0, 3.0)],
            "static-f_float32": [_row("static", 0.5, 1.0, 1.0)]}}
    rows = {r["static"]: r for r in matched_accuracy(result)}
    assert set(rows) == {"small", "big"}  # No float32 RAViT ran: the float32 static model is left out.
    assert rows["small"]["matched"] and rows["small"]["ravit_point"] == "a"
    assert (rows["small"]["ravit_accuracy"], rows["small"]["ravit_mflops"]) == (0.70, 6.0)
    assert not rows["big"]["matched"] and rows["big"]["ravit_point"] == "grid"
    result["matched_accuracy"] = list(rows.values())
    text = format_summary(result)
    assert "1 image, 1 LiteRT thread" in text and "1 warm-up invoke of each" in text
    assert "| int8 | small | 65.00 | 5.00 | 1.200 | a |" in text
    assert "none as accurate; most accurate: grid" in text


def test_bench_a_converted_folder_with_a_static_baseline(tflite_float32_folder, tmp_path, capfd):
    import keras

    from ravit_keras.config import get_config
    from ravit_keras.model import build_ravit

    keras.utils.set_random_seed(0)
    static = tmp_path / "static.keras"
    build_ravit(get_config("tiny", layers="0-1")).save(static)  # One exit: a static model.
    folder = tmp_path / "converted"
    shutil.copytree(tflite_float32_folder, folder)
    capfd.readouterr()
    out = tmp_path / "bench"
    assert main(["bench", "--model", str(folder), "--data", "generated", "--limit", "30", "--no-naive",
                 "--calibration-images", "50", "--static-baseline", f"small={static}", "--out", str(out)]) == 0
    stdout, stderr = capfd.readouterr()
    for noise in ("WARNING", "absl", "XNNPACK", "converting", "scheduler ", "Traceback"):
        assert noise not in stdout + stderr, noise
    result = json.loads((out / "benchmark.json").read_text())
    # The folder is timed as it is (float32, no conversion), the static model converted to its mode.
    assert set(result["end_to_end"]) == {"ravit_float32", "static-small_float32"}
    assert not (out / "ravit_float32").exists() and (out / "static-small_float32" / "manifest.json").exists()
    assert result["models"]["ravit_float32"]["folder"] == str(folder)
    points = [r["point"] for r in result["end_to_end"]["ravit_float32"]]
    assert any("calibrated: default" in p for p in points)
    assert "fidelity" not in result  # No Keras model to compare with.
    (matched,) = result["matched_accuracy"]
    assert matched["static"] == "small" and matched["mode"] == "float32"
    table = [ln for ln in stdout.splitlines() if ln.startswith("| ")]
    assert table[0].startswith("| model | operating point | τ |")
    assert any(ln.startswith("| float32 | small |") for ln in table)
    assert stdout.rstrip().splitlines()[-1].startswith(f"Wrote {out}/benchmark.md")


def test_bench_refuses_a_folder_that_is_no_model(tmp_path, capsys):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("x")
    assert main(["bench", "--model", str(tmp_path / "stuff"), "--data", "generated",
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is neither a trained RAViT" in err[0] and "manifest.json" in err[0]
    assert not (tmp_path / "out").exists()


def test_bench_refuses_modes_for_a_converted_folder(tflite_float32_folder, tmp_path, capsys):
    assert main(["bench", "--model", str(tflite_float32_folder), "--data", "generated", "--modes", "int8",
                 "--out", str(tmp_path / "out")]) == 2
    assert "--modes applies to a Keras model" in capsys.readouterr().err
