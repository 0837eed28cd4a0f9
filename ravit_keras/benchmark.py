"""Latency benchmarks of converted submodels: LiteRT benchmark tool, op delegation,
interleaved timing, and the naive Keras-graph ViT baseline.

Timing noise on shared machines is large, so compared models are timed
interleaved, in rounds, in one process, and ratios are reported.
"""

from __future__ import annotations

import collections
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

BENCHMARK_TOOL = "litert-benchmark"


def cpu_description() -> str:
    """CPU model and the SIMD features that decide int8 speed (VNNI, AMX)."""
    name, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ["avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_tile"]
    present = [f for f in wanted if f in flags]
    return f"{name}, {os.cpu_count()} cores, SIMD: {', '.join(present) or 'none of ' + '/'.join(wanted)}"


def benchmark_tool_path() -> str | None:
    """Path of ``litert-benchmark`` (installed with ai-edge-litert), if any."""
    here = Path(sys.executable).parent / BENCHMARK_TOOL
    return str(here) if here.exists() else shutil.which(BENCHMARK_TOOL)


def run_benchmark_tool(model_path: str | Path, num_threads: int = 1, num_runs: int = 200,
                       warmup_runs: int = 20, signature: str | None = None) -> dict[str, Any]:
    """Runs ``litert-benchmark`` on one model and returns its JSON result.

    Raises:
        FileNotFoundError: if the tool is not installed.
        RuntimeError: if the tool fails (its output is included).
    """
    tool = benchmark_tool_path()
    if tool is None:
        raise FileNotFoundError(f"{BENCHMARK_TOOL} not found: install ai-edge-litert.")
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        cmd = [tool, "--model", str(model_path), "--num_threads", str(num_threads),
               "--num_runs", str(num_runs), "--warmup_runs", str(warmup_runs),
               "--result_json", str(result)]
        if signature:
            cmd += ["--signature", signature]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not result.exists():
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        data = json.loads(result.read_text())
    data["command"] = " ".join([BENCHMARK_TOOL, *cmd[1:-2]])
    return data


def phone_benchmark_command(model_file: str, num_threads: int = 1) -> str:
    """The equivalent ``benchmark_model`` command for a phone over adb."""
    name = Path(model_file).name
    return (f"adb push {model_file} /data/local/tmp/ && adb shell /data/local/tmp/benchmark_model "
            f"--graph=/data/local/tmp/{name} --num_threads={num_threads} --use_xnnpack=true "
            "--enable_op_profiling=true")


def undelegated_ops(model_path: str | Path) -> dict[str, Any]:
    """Which ops the XNNPACK delegate takes and which it leaves to built-in kernels.

    Applies the default delegate with node fusion disabled, so every delegated
    op becomes its own DELEGATE node whose outputs identify it.
    """
    from ai_edge_litert.interpreter import Interpreter

    fused = Interpreter(model_path=str(model_path), num_threads=1)
    fused.allocate_tensors()
    partitions = sum(o["op_name"] == "DELEGATE" for o in fused._get_ops_details())
    it = Interpreter(model_path=str(model_path), num_threads=1,
                     experimental_disable_delegate_node_fusion=True)
    it.allocate_tensors()
    ops = it._get_ops_details()
    delegated_outputs = {int(t) for o in ops if o["op_name"] == "DELEGATE" for t in o["outputs"]}
    original = [o for o in ops if o["op_name"] != "DELEGATE"]
    left = [o["op_name"] for o in original if not {int(t) for t in o["outputs"]} <= delegated_outputs]
    return {
        "ops": len(original),
        "op_counts": dict(collections.Counter(o["op_name"] for o in original)),
        "delegated": len(original) - len(left),
        "not_delegated": dict(collections.Counter(left)),
        "delegate_partitions": partitions,
    }


def format_op_counts(counts: dict[str, int]) -> str:
    """``{"GELU": 3, "ADD": 7}`` as ``"ADD×7, GELU×3"`` (sorted), or ``"none"``."""
    return ", ".join(f"{k}×{v}" for k, v in sorted(counts.items())) or "none"


def interleaved_latency(model_paths: Sequence[str | Path], rounds: int = 5, runs: int = 100,
                        warmup: int = 20, num_threads: int = 1) -> dict[str, dict[str, float]]:
    """Median/p90 invoke latency (ms) of each model, timed interleaved in rounds."""
    from ai_edge_litert.interpreter import Interpreter

    rng = np.random.default_rng(0)
    interpreters = {}
    for path in model_paths:
        it = Interpreter(model_path=str(path), num_threads=num_threads)
        it.allocate_tensors()
        for d in it.get_input_details():
            info = np.iinfo(d["dtype"]) if np.issubdtype(d["dtype"], np.integer) else None
            value = (rng.integers(info.min, info.max, d["shape"]) if info is not None
                     else rng.uniform(0, 255, d["shape"]))
            it.set_tensor(d["index"], value.astype(d["dtype"]))
        interpreters[str(path)] = it
    times = {p: [] for p in interpreters}
    for _ in range(rounds):
        for p, it in interpreters.items():
            for _ in range(warmup):
                it.invoke()
            for _ in range(runs):
                start = time.perf_counter()
                it.invoke()
                times[p].append(time.perf_counter() - start)
    return {p: {"median_ms": 1e3 * float(np.median(t)), "p90_ms": 1e3 * float(np.percentile(t, 90)),
                "mean_ms": 1e3 * float(np.mean(t))} for p, t in times.items()}


# The naive baseline ------------------------------------------------------------


def naive_keras_vit(config, num_layers: int):
    """A plain Keras ViT built the usual way, for the "naive int8" baseline.

    ``keras.layers.MultiHeadAttention``, ``LayerNormalization``, ``Dense(gelu)``,
    CLS sliced with ``x[:, 0]``, every layer computing all tokens: what a user
    gets without this package's graph shaping. Same sizes as ``config``'s ViT.
    """
    import keras

    from ravit_keras.layers import ClassToken, PatchEmbedding, PositionEmbedding

    d = config.hidden_dim
    image = keras.Input((*config.image_size, 3))
    x = keras.layers.Normalization(mean=[255 * m for m in config.mean],
                                   variance=[(255 * s) ** 2 for s in config.std])(image)
    x = PatchEmbedding(d, config.patch_size)(x)
    x = ClassToken()(x)
    x = PositionEmbedding()(x)
    for _ in range(num_layers):
        y = keras.layers.LayerNormalization(epsilon=1e-6)(x)
        y = keras.layers.MultiHeadAttention(config.num_heads, d // config.num_heads)(y, y)
        x = x + y
        y = keras.layers.LayerNormalization(epsilon=1e-6)(x)
        y = keras.layers.Dense(config.mlp_dim, activation="gelu")(y)
        x = x + keras.layers.Dense(d)(y)
    cls = keras.layers.LayerNormalization(epsilon=1e-6)(x[:, 0])
    return keras.Model(image, keras.layers.Dense(config.num_classes)(cls), name=f"naive_vit_{num_layers}")


def convert_naive(model, calibration_images: np.ndarray, path: str | Path) -> Path:
    """Naive full-int8 conversion: default ``model.export`` (dynamic batch), no graph fixes."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        model.export(tmp, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: (
            [img[None].astype(np.float32)] for img in calibration_images)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.int8
        data = converter.convert()
    path = Path(path)
    path.write_bytes(data)
    return path


def naive_float_and_int8(config, num_layers: int, calibration_images, out_dir: str | Path) -> dict[str, Path]:
    """Writes the naive baseline as float32 and int8 ``.tflite`` into ``out_dir``."""
    import tensorflow as tf

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = naive_keras_vit(config, num_layers)
    paths = {"int8": convert_naive(model, calibration_images, out_dir / f"naive_vit{num_layers}_int8.tflite")}
    with tempfile.TemporaryDirectory() as tmp:
        model.export(tmp, format="tf_saved_model", verbose=False)
        data = tf.lite.TFLiteConverter.from_saved_model(tmp).convert()
    paths["float32"] = out_dir / f"naive_vit{num_layers}_float32.tflite"
    paths["float32"].write_bytes(data)
    return paths


# The whole benchmark ----------------------------------------------------------------


def run_benchmark(
    model,
    baseline,
    images: np.ndarray,
    labels: np.ndarray,
    calibration_images: np.ndarray,
    calibration_labels: np.ndarray,
    out_dir: str | Path,
    *,
    thresholds: Sequence[float] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5),
    num_threads: int = 1,
    modes: Sequence[str] = ("int8", "float32"),
    naive: bool = True,
    class_names: Sequence[str] | None = None,
    progress=print,
) -> dict[str, Any]:
    """Converts RAViT and a classic ViT the same way and benchmarks them side by side.

    Writes every submodel (each mode) under ``out_dir``, times all of them
    interleaved in one process, runs ``litert-benchmark`` on each, lists the ops
    XNNPACK could not take, runs the scheduler end to end over ``images`` at
    each threshold, and compares with the float Keras model.
    """
    from ravit_keras import early_exit, flops
    from ravit_keras.evaluation import predict_exit_logits
    from ravit_keras.export import ConversionOptions, convert
    from ravit_keras.io_utils import atomic_write_json, atomic_write_text
    from ravit_keras.scheduler import RAViTScheduler

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"cpu": cpu_description(), "threads": num_threads, "images": int(len(images))}
    folders = {}
    for tag, m in (("ravit", model), ("vit", baseline)):
        for mode in modes:
            folder = out / f"{tag}_{mode}"
            if not (folder / "manifest.json").exists():
                progress(f"converting {tag} {m.ravit_config.layer_spec} to {mode}")
                convert(m, folder, calibration_images, calibration_labels, class_names=class_names,
                        options=ConversionOptions(mode=mode), overwrite=True, progress=None)
            folders[(tag, mode)] = folder
    files = {f"{tag}_{mode}/{e['file']}": folders[(tag, mode)] / e["file"]
             for (tag, mode) in folders
             for e in json.loads((folders[(tag, mode)] / "manifest.json").read_text())["exits"]}
    if naive:
        progress("building the naive Keras-graph ViT baseline")
        layers = baseline.ravit_config.layers[-1]
        for mode, p in naive_float_and_int8(baseline.ravit_config, layers, calibration_images[:200],
                                            out / "naive").items():
            files[f"naive_vit{layers}_{mode}"] = p
    progress(f"timing {len(files)} models interleaved ({num_threads} thread)")
    timing = interleaved_latency(list(files.values()), num_threads=num_threads)
    result["latency_ms"] = {name: timing[str(p)] for name, p in files.items()}
    result["delegation"] = {name: undelegated_ops(p) for name, p in files.items()}
    tool = {}
    if benchmark_tool_path():
        for name, p in files.items():
            r = run_benchmark_tool(p, num_threads=num_threads, num_runs=100)
            tool[name] = {**r.get("latency", {}), "fully_accelerated": r.get("fully_accelerated"),
                          "command": r["command"],
                          "phone_command": phone_benchmark_command(str(p), num_threads)}
    result["benchmark_tool"] = tool

    # Keras float reference and end-to-end scheduler runs.
    keras_logits, _ = predict_exit_logits(model, images.astype(np.float32))
    base_logits, _ = predict_exit_logits(baseline, images.astype(np.float32))
    result["keras"] = {
        "ravit_per_exit_accuracy": [float(np.mean(l.argmax(-1) == labels)) for l in keras_logits],
        "vit_accuracy": float(np.mean(base_logits[-1].argmax(-1) == labels)),
    }
    e2e = {}
    for (tag, mode), folder in folders.items():
        sched = RAViTScheduler(folder, num_threads=num_threads)
        taus = thresholds if len(sched.submodels) > 1 else [0.0]
        rows = []
        for tau in taus:
            progress(f"scheduler {tag} {mode} tau={tau} over {len(images)} images")
            r = sched.evaluate(images, labels, thresholds=tau)
            keras_route = early_exit.evaluate_exits(
                keras_logits if tag == "ravit" else base_logits, labels, tau,
                flops.exit_macs((model if tag == "ravit" else baseline).ravit_config))
            r["keras_accuracy_same_thresholds"] = keras_route["accuracy"]
            r["keras_exit_counts"] = keras_route["exit_counts"]
            rows.append({"tau": tau, **r})
        e2e[f"{tag}_{mode}"] = rows
        if tag == "ravit":
            agreement = _exit_agreement(sched, images, keras_logits)
            result.setdefault("fidelity", {})[mode] = agreement
    result["end_to_end"] = e2e
    atomic_write_json(out / "benchmark.json", result)
    atomic_write_text(out / "benchmark.md", format_benchmark(result, model.ravit_config, baseline.ravit_config))
    return result


def _exit_agreement(sched, images, keras_logits, limit: int = 1000) -> list[dict[str, float]]:
    """Per-exit logit error and top-1 agreement of the submodel chain vs Keras float."""
    per_exit = [[] for _ in sched.submodels]
    for img in images[:limit]:
        logits, _ = sched.all_exit_logits(img)
        for k, l in enumerate(logits):
            per_exit[k].append(l)
    rows = []
    for k, tl in enumerate(per_exit):
        tl = np.asarray(tl)
        kl = keras_logits[k][: len(tl)]
        rows.append({
            "exit": sched.exit_names[k],
            "max_abs_logit_error": float(np.abs(tl - kl).max()),
            "mean_abs_logit_error": float(np.abs(tl - kl).mean()),
            "top1_agreement": float(np.mean(tl.argmax(-1) == kl.argmax(-1))),
        })
    return rows


def format_benchmark(result: dict[str, Any], ravit_config, vit_config) -> str:
    """Markdown tables of a ``run_benchmark`` result."""
    from ravit_keras import flops

    lat = result["latency_ms"]
    lines = [f"CPU: {result['cpu']}; {result['threads']} thread(s); {result['images']} images.", ""]
    tool = result.get("benchmark_tool", {})
    lines += ["| submodel | MACs (layers) | median latency (ms) | litert-benchmark median (ms) | GMAC/s | ops not delegated to XNNPACK | partitions |",
              "|---|---|---|---|---|---|---|"]
    costs = {"ravit": flops.branch_costs(ravit_config), "vit": flops.branch_costs(vit_config)}
    for name, t in lat.items():
        macs = ""
        gmacs = ""
        if "/" in name:
            tag = name.split("_")[0]
            branch = int(name.rsplit("branch_", 1)[1].split(".")[0]) - 1
            m = costs[tag][branch].macs
            macs, gmacs = f"{m / 1e6:.2f} M", f"{m / t['median_ms'] / 1e6:.1f}"
        d = result["delegation"][name]
        nd = format_op_counts(d["not_delegated"])
        tool_ms = tool.get(name, {}).get("median_ms", "")
        lines.append(f"| {name} | {macs} | {t['median_ms']:.3f} | {tool_ms} | {gmacs} | {nd} | {d['delegate_partitions']} |")

    def total(prefix):
        return sum(t["median_ms"] for n, t in lat.items() if n.startswith(prefix))

    lines += ["", "| end to end (sum of submodels, no early exit) | ms |", "|---|---|"]
    for prefix in sorted({n.split("/")[0] for n in lat if "/" in n}):
        lines.append(f"| {prefix} | {total(prefix + '/'):.3f} |")
    for name in lat:
        if name.startswith("naive"):
            lines.append(f"| {name} | {lat[name]['median_ms']:.3f} |")
    lines += ["", "| model | τ | top-1 (%) | Keras top-1 same τ (%) | exits | avg MFLOPs | expected ms (histogram) | measured mean ms | p90 ms | scheduler overhead |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for name, rows in result["end_to_end"].items():
        branch_ms = [t["median_ms"] for n, t in lat.items() if n.startswith(name + "/")]
        cumulative = np.cumsum(branch_ms)
        for r in rows:
            expected = float(np.dot(r["exit_fractions"], cumulative)) if len(cumulative) == len(r["exit_fractions"]) else float("nan")
            lines.append(
                f"| {name} | {r['tau']} | {100 * r['accuracy']:.2f} | {100 * r['keras_accuracy_same_thresholds']:.2f} | "
                f"{r['exit_counts']} | {r['avg_mflops']:.2f} | {expected:.3f} | {r['latency_ms']['mean']:.3f} | "
                f"{r['latency_ms']['p90']:.3f} | {100 * r['scheduler_overhead_fraction']:.1f}% |")
    if "fidelity" in result:
        lines += ["", "| mode | exit | max abs logit error | mean abs logit error | top-1 agreement with Keras |", "|---|---|---|---|---|"]
        for mode, rows in result["fidelity"].items():
            for r in rows:
                lines.append(f"| {mode} | {r['exit']} | {r['max_abs_logit_error']:.4f} | {r['mean_abs_logit_error']:.4f} | {100 * r['top1_agreement']:.2f}% |")
    return "\n".join(lines) + "\n"
