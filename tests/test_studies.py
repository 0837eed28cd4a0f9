"""The benchmark studies (benchmarks/*_study.py) run end to end on tiny data and resume."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.data.builders import make_tiny_imagenet

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

pytestmark = pytest.mark.slow


def test_tinyimagenet_study_trains_reports_and_resumes(tmp_path):
    import tinyimagenet_study

    data_dir = make_tiny_imagenet(tmp_path / "tiny-imagenet-200", with_val=False, per_class=8)
    out = tmp_path / "study"
    argv = ["--data", str(data_dir), "--out", str(out), "--epochs", "1", "--batch-size", "6",
            "--hidden-dim", "16", "--mlp-dim", "32", "--num-heads", "2", "--holdout-fraction", "0.25"]
    assert tinyimagenet_study.main(argv) == 0

    results = json.loads((out / "results.json").read_text())
    assert (results["train_images"], results["test_images"]) == (18, 6)
    models = results["models"]
    assert list(models) == ["RAViT 2-0-3", "ViT-3", "ViT-4"]
    assert [m["layers"] for m in models.values()] == ["2-0-3", "0-0-3", "0-0-4"]
    # 2-0-3 adds two cheap 16x16 layers to ViT-3's three 64x64 ones and costs less than ViT-4.
    assert models["ViT-3"]["mflops"] < models["RAViT 2-0-3"]["mflops"] < models["ViT-4"]["mflops"]
    assert len(models["RAViT 2-0-3"]["per_exit_accuracy"]) == 2  # branch 2 has no layers, no exit
    sweep = models["RAViT 2-0-3"]["sweep"]
    assert sweep[0]["exit_counts"] == [0, 6] and sum(sweep[-1]["exit_counts"]) == 6
    assert "sweep" not in models["ViT-3"]
    assert (out / "accuracy_vs_mflops.png").stat().st_size > 0
    assert "| RAViT 2-0-3 | 2-0-3 |" in (out / "results.md").read_text()
    # Training time is the sum of the epochs' times on record (it survives resumes).
    assert all(0 < m["epoch_seconds"] for m in models.values())
    assert "(epochs) |" in (out / "results.md").read_text()

    # A rerun evaluates the finished models again without training them.
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("*/model.keras")}
    assert len(mtimes) == 3
    assert tinyimagenet_study.main(argv) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/model.keras")} == mtimes
    rerun = json.loads((out / "results.json").read_text())["models"]
    assert rerun["ViT-4"]["train_seconds"] == models["ViT-4"]["train_seconds"]
    assert rerun["ViT-4"]["top1"] == models["ViT-4"]["top1"]

    # Models studied one call at a time (as the 30-epoch CIFAR-10 runs are): a call for one
    # model keeps the others' rows, so the report and plot cover all of them.
    assert tinyimagenet_study.main([*argv, "--models", "ViT-3"]) == 0
    merged = json.loads((out / "results.json").read_text())["models"]
    assert set(merged) == {"RAViT 2-0-3", "ViT-3", "ViT-4"}
    assert merged["ViT-4"] == rerun["ViT-4"]
    # ... but not rows trained with another recipe.
    assert tinyimagenet_study.main([*argv, "--models", "ViT-3", "--lr", "0.01"]) == 0
    assert set(json.loads((out / "results.json").read_text())["models"]) == {"ViT-3"}

    # The stronger recipe (--recipe strong): its settings in the run and the report, its own rows.
    strong = tmp_path / "strong"
    assert tinyimagenet_study.main([*argv, "--out", str(strong), "--models", "ViT-3", "--recipe", "strong"]) == 0
    record = json.loads((strong / "ViT-3" / "config.json").read_text())
    assert record["model"]["drop_path_rate"] == 0.1 and record["training"]["cutmix_alpha"] == 1.0
    assert "strong recipe" in (strong / "results.md").read_text()


@pytest.mark.parametrize("study", ["cifar10_study", "tinyimagenet_study"])
def test_an_unknown_model_is_a_usage_error_before_any_data_is_read(study, tmp_path, capsys):
    module = __import__(study)
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--data", str(tmp_path / "absent"), "--models", "ViT-3,ViT-9"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--models: unknown ['ViT-9']; choose from" in err and "ViT-3" in err
