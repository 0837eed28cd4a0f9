"""ravit_keras.evaluation and the `ravit eval` command."""

import json

import numpy as np

from ravit_keras.cli import main
from ravit_keras.config import get_config
from ravit_keras.evaluation import evaluate_logits, format_report
from ravit_keras.model import flops


def _logits(rng, n, exits=2, classes=10):
    return [rng.normal(size=(n, classes)) * (1 + 2 * k) for k in range(exits)]


def test_evaluate_logits_reports_every_figure_and_writes_files(tmp_path):
    config = get_config("tiny", layers="1-2")
    rng = np.random.default_rng(0)
    logits, labels = _logits(rng, 300), rng.integers(0, 10, 300)
    calibration = (_logits(rng, 300), rng.integers(0, 10, 300))
    budget = 0.6 * flops.model_macs(config)
    report = evaluate_logits(config, logits, labels, thresholds=1.0, calibration=calibration,
                             mac_budget=budget, baselines={"ViT": (3.0, 0.5)}, out_dir=tmp_path)
    assert report["exit_macs"] == flops.exit_macs(config)
    assert len(report["per_exit_accuracy"]) == 2
    assert sum(report["at_thresholds"]["exit_counts"]) == 300
    assert report["calibrated"]["on_calibration_split"]["avg_macs"] <= budget
    for name in ("report.json", "sweep.csv", "sweep.json", "accuracy_vs_mflops.png", "exit_histogram.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert json.loads((tmp_path / "report.json").read_text())["layers"] == "1-2"
    text = format_report(report)
    assert "per-exit accuracy" in text and "calibrated thresholds" in text
    assert "(at the given thresholds)" in text  # Which operating point the per-class table is at.
    plain = format_report(evaluate_logits(config, logits, labels))
    assert plain.rstrip().endswith("(without early exit)")


def test_eval_command_on_a_trained_model(tflite_trained_ravit, tmp_path, capsys):
    model_path = tmp_path / "model.keras"
    tflite_trained_ravit.model.save(model_path)
    out = tmp_path / "eval"
    rc = main(["eval", "--model", str(model_path), "--data", "generated", "--limit", "200",
               "--mac-budget", "0.7", "--calibration-images", "200",
               "--baseline", f"same={model_path}", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "per-exit accuracy" in printed and "baseline same" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["num_images"] == 200
    budget = 0.7 * flops.model_macs(tflite_trained_ravit.config)
    assert report["calibrated"]["on_calibration_split"]["avg_macs"] <= budget
    assert (out / "accuracy_vs_mflops.png").exists()


def test_eval_warns_on_stderr_when_the_calibration_images_cannot_resolve_the_budget(tflite_trained_ravit, tmp_path,
                                                                                      capsys):
    """The warning goes where convert's goes (stderr); the report on stdout and report.json keep it apart."""
    model_path = tmp_path / "model.keras"
    tflite_trained_ravit.model.save(model_path)
    assert main(["eval", "--model", str(model_path), "--data", "generated", "--limit", "100",
                 "--mac-budget", "0.7", "--calibration-images", "30", "--out", str(tmp_path / "eval")]) == 0
    out, err = capsys.readouterr()
    assert "warning" not in out
    assert err.strip().startswith("ravit eval: warning: 30 calibration images are too few") and err.count("\n") == 1
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["calibrated"]["warning"].startswith("30 calibration images are too few")
    assert "warning: 30 calibration images" in format_report(report)  # The library's summary still says it.
