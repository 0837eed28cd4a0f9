"""Benchmark helpers (``ravit_keras.deploy.measurement.benchmark``, ``ravit_keras.deploy.measurement.profiling``): behaviour and structure, never timing values.

Uses the session-scoped converted submodels of conftest.py.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from ravit_keras.deploy.export.flatbuffer import builtin_op_names
from ravit_keras.deploy.measurement.profiling import (
    benchmark_tool_path,
    cpu_description,
    interleaved_latency,
    phone_benchmark_command,
    run_benchmark_tool,
    undelegated_ops,
)
from ravit_keras.deploy.measurement.reference_models import naive_keras_vit


def _files(folder):
    manifest = json.loads((Path(folder) / "manifest.json").read_text())
    return [Path(folder) / e["file"] for e in manifest["exits"]]


@pytest.mark.parametrize("which", ["int8", "float32"])
def test_undelegated_ops_structure(which, tflite_int8_folder, tflite_float32_folder):
    folder = tflite_int8_folder if which == "int8" else tflite_float32_folder
    for path in _files(folder):
        r = undelegated_ops(path)
        assert set(r) == {"ops", "op_counts", "delegated", "not_delegated", "delegate_partitions"}
        assert r["ops"] == sum(r["op_counts"].values()) == len(builtin_op_names(path.read_bytes()))
        not_delegated = sum(r["not_delegated"].values())
        assert r["delegated"] + not_delegated == r["ops"]
        assert 0 < r["delegated"] <= r["ops"]  # XNNPACK takes at least the matmuls.
        assert r["delegate_partitions"] >= 1
        for op, count in r["not_delegated"].items():
            assert 0 < count <= r["op_counts"][op], op
        assert r["op_counts"].get("BATCH_MATMUL", 0) > 0
        assert "DELEGATE" not in r["op_counts"]


def test_interleaved_latency_two_models(tflite_int8_folder, tflite_float32_folder):
    paths = [_files(tflite_int8_folder)[0], _files(tflite_float32_folder)[0]]
    r = interleaved_latency(paths, rounds=2, runs=5, warmup=1)
    assert set(r) == {str(p) for p in paths}
    for stats in r.values():
        assert set(stats) == {"median_ms", "p90_ms", "mean_ms"}
        assert stats["median_ms"] > 0 and stats["p90_ms"] > 0 and stats["mean_ms"] > 0
        assert stats["median_ms"] <= stats["p90_ms"]


def test_run_benchmark_tool(tflite_int8_folder):
    if benchmark_tool_path() is None:
        pytest.skip("litert-benchmark is not installed")
    path = _files(tflite_int8_folder)[0]
    assert path.name == "branch_1.tflite"
    r = run_benchmark_tool(path, num_runs=5, warmup_runs=1)
    latency = r["latency"]
    assert latency["num_runs"] == 5
    assert latency["avg_ms"] >= 0 and latency["median_ms"] >= 0
    assert r["command"].startswith("litert-benchmark --model ")
    assert str(path) in r["command"]


def test_run_benchmark_tool_failure(tmp_path):
    if benchmark_tool_path() is None:
        pytest.skip("litert-benchmark is not installed")
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a model")
    with pytest.raises(RuntimeError, match="failed"):
        run_benchmark_tool(bad, num_runs=1, warmup_runs=0)


def test_run_benchmark_tool_missing(monkeypatch, tmp_path):
    import ravit_keras.deploy.measurement.profiling as profiling

    monkeypatch.setattr(profiling, "benchmark_tool_path", lambda: None)
    with pytest.raises(FileNotFoundError, match="litert-benchmark not found"):
        run_benchmark_tool(tmp_path / "x.tflite")


def test_naive_keras_vit_builds_and_predicts():
    from ravit_keras.config import get_config

    config = get_config("tiny")
    model = naive_keras_vit(config, 2)
    x = np.random.default_rng(0).uniform(0, 255, (3, *config.image_size, 3)).astype("float32")
    y = model.predict(x, verbose=0)
    assert y.shape == (3, config.num_classes)
    assert np.isfinite(y).all()
    assert model.name == "naive_vit_2"
    assert sum(isinstance(layer, __import__("keras").layers.MultiHeadAttention) for layer in model.layers) == 2


def test_descriptions():
    assert "cores" in cpu_description()
    cmd = phone_benchmark_command("/x/y/branch_1.tflite", num_threads=2)
    assert "adb push /x/y/branch_1.tflite /data/local/tmp/" in cmd
    assert "--graph=/data/local/tmp/branch_1.tflite" in cmd and "--num_threads=2" in cmd


def test_relative_thresholds_follow_the_class_count():
    import math

    from ravit_keras.deploy.measurement.benchmark import RELATIVE_THRESHOLDS, relative_thresholds

    for c in (5, 10, 200):
        taus = relative_thresholds(c)
        assert taus[0] == 0.0 and len(taus) == len(RELATIVE_THRESHOLDS)
        assert taus == pytest.approx([f * math.log(c) for f in RELATIVE_THRESHOLDS], abs=1e-4)


@pytest.mark.slow
def test_bench_a_ravit_alone(tflite_trained_ravit, tmp_path):
    from ravit_keras.deploy.measurement.benchmark import run_benchmark

    t = tflite_trained_ravit
    result = run_benchmark(t.model, None, t.test_images[:60], t.test_labels[:60], t.calib_images[:100],
                           t.calib_labels[:100], tmp_path / "bench", modes=("float32",), progress=None)
    assert set(result["end_to_end"]) == {"ravit_float32"}
    rows = result["end_to_end"]["ravit_float32"]
    assert [r["tau"] for r in rows[:6]] == pytest.approx(
        [0.0, 0.023, 0.0461, 0.1151, 0.2303, 0.4605], abs=1e-4)  # Fractions of ln 10.
    # Then the folder's own calibrated thresholds, as it ships them.
    assert any("calibrated: default" in r["point"] for r in rows)
    assert "vit_accuracy" not in result["keras"]
    md = (tmp_path / "bench" / "benchmark.md").read_text()
    assert md.count("ravit_float32") >= 3
    # The host's fully-connected ceiling, timed in the same run, and each submodel's share.
    assert set(result["fc_ceiling_gmacs"]) == {"int8", "float32"}
    assert all(g > 0 for g in result["fc_ceiling_gmacs"].values())
    assert result["delegation"]["fc_ceiling_int8_0"]["delegate_partitions"] == 1
    assert "Fully-connected ceiling here" in md and md.count("% of float32 |") == 2


def test_matrix_macs_counts_what_the_graph_runs(tmp_path, tflite_float32_folder, tflite_trained_ravit):
    from ravit_keras.deploy.measurement.profiling import matrix_macs
    from ravit_keras.deploy.measurement.reference_models import fully_connected_ceiling_models
    from ravit_keras.model import flops

    paths = fully_connected_ceiling_models(tmp_path, shapes=((2, 4, 8),))
    assert matrix_macs(paths["int8"][0]) == matrix_macs(paths["float32"][0]) == 2 * 4 * 8
    from ravit_keras.deploy.measurement.profiling import undelegated_ops

    for mode in ("int8", "float32"):  # One op, all of it in XNNPACK: a clean ceiling.
        ops = undelegated_ops(paths[mode][0])
        assert ops["delegate_partitions"] == 1 and ops["ops"] in (1, 3), ops  # int8: + QUANTIZE in/out
    # A branch's last layer computes the CLS token only: fewer MACs run than the paper counts.
    config = tflite_trained_ravit.model.ravit_config
    last = flops.branch_costs(config)[-1].macs
    executed = matrix_macs(tflite_float32_folder / f"branch_{len(config.layers)}.tflite")
    assert 0 < executed < last


def test_submodel_latency_script_times_folders_side_by_side(tflite_int8_folder, tflite_float32_folder,
                                                            tmp_path, capsys):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import submodel_latency

    argv = [f"int8={tflite_int8_folder}", f"float32={tflite_float32_folder}",
            "--repeats", "2", "--rounds", "1", "--runs", "3"]
    assert submodel_latency.main(argv) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert rows[0] == "| repeat | int8 ms | float32 ms | float32 / int8 |"
    assert [r.split(" | ")[0] for r in rows[1:]] == ["| 1", "| 2"]
    # Each cell is the sum of that folder's submodels (two branches here).
    cell = rows[1].split(" | ")[1]
    parts, total = cell.split(" = ")
    assert len(parts.split(" + ")) == 2
    assert float(total) == pytest.approx(sum(float(x) for x in parts.split(" + ")), abs=2e-3)
    with pytest.raises(SystemExit):
        submodel_latency.main([f"x={tmp_path}"])
    assert "x: No manifest.json" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        submodel_latency.main(["no-equals-sign"])
    assert "give NAME=FOLDER" in capsys.readouterr().err
