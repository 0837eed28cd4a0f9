"""``ravit bench``: RAViT and a classic ViT converted the same way, benchmarked side by
side, with the naive Keras-graph ViT as a baseline."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ravit_keras.console import quiet_native_output
from ravit_keras.deploy.export.convert import ConversionOptions, convert
from ravit_keras.deploy.measurement.profiling import (
    benchmark_tool_path,
    cpu_description,
    format_op_counts,
    interleaved_latency,
    matrix_macs,
    phone_benchmark_command,
    run_benchmark_tool,
    undelegated_ops,
)
from ravit_keras.deploy.runtime.manifest import load_manifest
from ravit_keras.deploy.runtime.modes import INT8_MATMUL_MODES, MODES
from ravit_keras.deploy.runtime.scheduler import RAViTScheduler
from ravit_keras.exits import evaluate_exits
from ravit_keras.io_utils import atomic_write_json, atomic_write_text
from ravit_keras.model import flops

# The naive baseline ------------------------------------------------------------


def naive_keras_vit(config, num_layers: int):
    """A plain Keras ViT built the usual way, for the "naive int8" baseline.

    ``keras.layers.MultiHeadAttention``, ``LayerNormalization``, ``Dense(gelu)``,
    CLS sliced with ``x[:, 0]``, every layer computing all tokens: what a user
    gets without this package's graph shaping. Same sizes as ``config``'s ViT.
    """
    import keras

    from ravit_keras.model.layers import ClassToken, PatchEmbedding, PositionEmbedding

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


# The host's ceiling ----------------------------------------------------------------

# FULLY_CONNECTED layers of the shapes a transformer's MLP has, (tokens x width) @
# (width x out). The first keeps its float32 weights (1 MB) in a core's L2, the second
# (4 MB) does not; the faster of the two per arithmetic is the host's ceiling.
CEILING_SHAPES = ((128, 512, 512), (64, 512, 2048))


def fully_connected_ceiling_models(out_dir: str | Path,
                                   shapes: Sequence[tuple[int, int, int]] = CEILING_SHAPES) -> dict[str, list[Path]]:
    """Writes one FULLY_CONNECTED per shape as int8 and float32 ``.tflite`` files.

    Timed in the same interleaved run as the submodels, the best GMAC/s is what this
    CPU allows for int8 and float32 matrix work (``ceiling_gmacs``); a submodel's
    share of it says how much of its time is not matrix work.
    """
    import tensorflow as tf

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths: dict[str, list[Path]] = {"int8": [], "float32": []}
    for i, (tokens, width, out_width) in enumerate(shapes):
        dense = _dense_function(tf, rng.normal(0, width ** -0.5, (width, out_width)).astype(np.float32),
                                rng.normal(0, 0.1, out_width).astype(np.float32), tokens)

        for mode in paths:
            converter = tf.lite.TFLiteConverter.from_concrete_functions([dense.get_concrete_function()])
            if mode == "int8":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
                converter.representative_dataset = lambda tokens=tokens, width=width: (
                    [rng.normal(size=(tokens, width)).astype(np.float32)] for _ in range(8))
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                converter.inference_input_type = converter.inference_output_type = tf.int8
            path = out_dir / f"fc_ceiling_{mode}_{i}.tflite"
            with quiet_native_output():
                path.write_bytes(converter.convert())
            paths[mode].append(path)
    return paths


def ceiling_arithmetic(mode: str) -> str:
    """Which ceiling a submodel of ``mode`` is measured against: its matrix products'
    arithmetic (int8 for int8, int8-full and dynamic; float32 otherwise)."""
    return "int8" if mode in INT8_MATMUL_MODES else "float32"


def _dense_function(tf, kernel: np.ndarray, bias: np.ndarray, tokens: int):
    """``x @ kernel + bias`` with a fixed 2-D (tokens, width) signature: one FULLY_CONNECTED."""
    k, b = tf.constant(kernel), tf.constant(bias)

    @tf.function(input_signature=[tf.TensorSpec((tokens, kernel.shape[0]), tf.float32)])
    def dense(x):
        return tf.matmul(x, k) + b

    return dense


def ceiling_gmacs(paths: dict[str, list[Path]], timing: dict[str, dict[str, float]],
                  shapes: Sequence[tuple[int, int, int]] = CEILING_SHAPES) -> dict[str, float]:
    """The best GMAC/s per arithmetic over the ceiling models (``interleaved_latency`` output)."""
    return {mode: max(int(np.prod(shape)) / timing[str(p)]["median_ms"] / 1e6 for p, shape in zip(files, shapes))
            for mode, files in paths.items()}


# The whole benchmark ----------------------------------------------------------------


# Entropy thresholds as fractions of ln C, the largest possible entropy: the same
# grid means the same thing for 5 classes (ln C = 1.61) as for 200 (5.30). The
# paper's useful CIFAR-10 range, 0.05-0.15, is 0.02-0.065 of ln 10.
RELATIVE_THRESHOLDS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2)


def relative_thresholds(num_classes: int) -> list[float]:
    """``RELATIVE_THRESHOLDS`` times ln(num_classes), rounded to 4 digits."""
    import math

    return [round(f * math.log(num_classes), 4) for f in RELATIVE_THRESHOLDS]


def run_benchmark(
    model,
    baseline,
    images: np.ndarray,
    labels: np.ndarray,
    calibration_images: np.ndarray,
    calibration_labels: np.ndarray,
    out_dir: str | Path,
    *,
    thresholds: Sequence[float] | None = None,
    num_threads: int = 1,
    modes: Sequence[str] = MODES,
    naive: bool = True,
    class_names: Sequence[str] | None = None,
    progress=print,
) -> dict[str, Any]:
    """Converts RAViT (and a classic ViT ``baseline``, optional) the same way and
    benchmarks them side by side.

    Writes every submodel (each mode) under ``out_dir``, times all of them
    interleaved in one process, runs ``litert-benchmark`` on each, lists the ops
    XNNPACK could not take, runs the scheduler end to end over ``images`` at
    each threshold, and compares with the float Keras model. Single int8 and
    float32 FULLY_CONNECTED models (``CEILING_SHAPES``), timed in the same run, give
    the host's matrix-work ceiling and each submodel's share of it. ``thresholds``
    default to ``relative_thresholds(num_classes)``: the same grid for any class count.
    """
    say = progress or (lambda _msg: None)
    if thresholds is None:
        thresholds = relative_thresholds(model.ravit_config.num_classes)
    from ravit_keras.evaluation import (
        predict_exit_logits,  # Runs the Keras model: TensorFlow.
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"cpu": cpu_description(), "threads": num_threads, "images": int(len(images))}
    folders = {}
    models = (("ravit", model),) + ((("vit", baseline),) if baseline is not None else ())
    for tag, m in models:
        for mode in modes:
            folder = out / f"{tag}_{mode}"
            if not (folder / "manifest.json").exists():
                say(f"converting {tag} {m.ravit_config.layer_spec} to {mode}")
                convert(m, folder, calibration_images, calibration_labels, class_names=class_names,
                        options=ConversionOptions(mode=mode), overwrite=True, progress=None)
            folders[(tag, mode)] = folder
    files = {f"{tag}_{mode}/{e.file}": folders[(tag, mode)] / e.file
             for (tag, mode) in folders
             for e in load_manifest(folders[(tag, mode)], verify_checksums=False).exits}
    if naive and baseline is not None:
        say("building the naive Keras-graph ViT baseline")
        layers = baseline.ravit_config.layers[-1]
        for mode, p in naive_float_and_int8(baseline.ravit_config, layers, calibration_images[:200],
                                            out / "naive").items():
            files[f"naive_vit{layers}_{mode}"] = p
    ceiling = fully_connected_ceiling_models(out / "ceiling")
    files.update({p.stem: p for paths in ceiling.values() for p in paths})
    say(f"timing {len(files)} models interleaved ({num_threads} thread)")
    timing = interleaved_latency(list(files.values()), num_threads=num_threads)
    result["latency_ms"] = {name: timing[str(p)] for name, p in files.items()}
    result["delegation"] = {name: undelegated_ops(p) for name, p in files.items()}
    result["fc_ceiling_gmacs"] = ceiling_gmacs(ceiling, timing)
    result["matrix_macs"] = {name: matrix_macs(p) for name, p in files.items() if "/" in name}
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
    result["keras"] = {"ravit_per_exit_accuracy": [float(np.mean(lg.argmax(-1) == labels)) for lg in keras_logits]}
    base_logits = None
    if baseline is not None:
        base_logits, _ = predict_exit_logits(baseline, images.astype(np.float32))
        result["keras"]["vit_accuracy"] = float(np.mean(base_logits[-1].argmax(-1) == labels))
    e2e = {}
    for (tag, mode), folder in folders.items():
        sched = RAViTScheduler(folder, num_threads=num_threads)
        taus = thresholds if len(sched.submodels) > 1 else [0.0]
        rows = []
        for tau in taus:
            say(f"scheduler {tag} {mode} tau={tau} over {len(images)} images")
            r = sched.evaluate(images, labels, thresholds=tau)
            keras_route = evaluate_exits(
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
    atomic_write_text(out / "benchmark.md", format_benchmark(result, model.ravit_config, None if baseline is None else baseline.ravit_config))
    return result


def _exit_agreement(sched, images, keras_logits, limit: int = 1000) -> list[dict[str, float]]:
    """Per-exit logit error and top-1 agreement of the submodel chain vs Keras float."""
    per_exit = [[] for _ in sched.submodels]
    for img in images[:limit]:
        logits, _ = sched.all_exit_logits(img)
        for k, exit_logits in enumerate(logits):
            per_exit[k].append(exit_logits)
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
    lat = result["latency_ms"]
    lines = [f"CPU: {result['cpu']}; {result['threads']} thread(s); {result['images']} images.", ""]
    ceiling = result.get("fc_ceiling_gmacs", {})
    if ceiling:
        shapes = ", ".join("x".join(map(str, sh)) for sh in CEILING_SHAPES)
        lines += [f"Fully-connected ceiling here (best of {shapes} MACs, same run): "
                  f"int8 {ceiling['int8']:.1f} GMAC/s, float32 {ceiling['float32']:.1f} GMAC/s. "
                  "GMAC/s counts the paper's MACs (cost model); the share counts the matrix MACs the "
                  "graph executes (its FULLY_CONNECTED, BATCH_MATMUL and convolutions) per second over "
                  "the ceiling of its arithmetic (int8 for int8, int8-full and dynamic; float32 "
                  "otherwise).", ""]
    tool = result.get("benchmark_tool", {})
    lines += ["| submodel | MACs (layers) | median latency (ms) | litert-benchmark median (ms) | GMAC/s | share of FC ceiling | ops not delegated to XNNPACK | partitions |",
              "|---|---|---|---|---|---|---|---|"]
    costs = {"ravit": flops.branch_costs(ravit_config)}
    if vit_config is not None:
        costs["vit"] = flops.branch_costs(vit_config)
    for name, t in lat.items():
        macs = gmacs = share = ""
        if "/" in name:
            tag, mode = name.split("/")[0].split("_", 1)
            branch = int(name.rsplit("branch_", 1)[1].split(".")[0]) - 1
            m = costs[tag][branch].macs
            macs, gmacs = f"{m / 1e6:.2f} M", f"{m / t['median_ms'] / 1e6:.1f}"
            arithmetic = ceiling_arithmetic(mode)
            executed = result.get("matrix_macs", {}).get(name)
            if arithmetic in ceiling and executed:
                share = f"{100 * executed / t['median_ms'] / 1e6 / ceiling[arithmetic]:.0f}% of {arithmetic}"
        d = result["delegation"][name]
        nd = format_op_counts(d["not_delegated"])
        tool_ms = tool.get(name, {}).get("median_ms", "")
        lines.append(f"| {name} | {macs} | {t['median_ms']:.3f} | {tool_ms} | {gmacs} | {share} | {nd} | {d['delegate_partitions']} |")

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
