"""Branch models -> TFLite submodels + metadata + ``manifest.json``.

One submodel per branch that runs, each with batch 1 fixed in its signature:

    inputs:  image  (1, H, W, 3) full-resolution RGB pixels (uint8 in int8 mode)
             cls_in (1, d)       CLS token of the previous branch (not on the first)
    outputs: logits (1, classes), cls_out (1, d)

Modes:

- ``int8`` (default, fast on XNNPACK): int8 weights and activations for every
  matrix product (fully-connected layers, the attention BATCH_MATMULs, the
  patch-embedding convolution), float only where XNNPACK has no int8 kernel
  (SOFTMAX, GELU, LayerNorm), so each submodel runs as ONE XNNPACK partition.
  Calibrated on real images; uint8 pixels and a uint8 ``cls_in`` in (the
  converter applies one input type to every input), int8 ``logits`` and
  ``cls_out`` out; the scheduler requantises cls_out into cls_in.
- ``int8-full``: every op in int8 (the same interface), for NPU/DSP delegates
  that need an all-integer graph; on XNNPACK it splits into many partitions.
- ``dynamic``: int8 weights, float activations (dynamic range), float32 interface.
- ``int16x8``: 16-bit activations, 8-bit weights, float32 interface: for when
  int8 loses too much (not delegated to XNNPACK: slow on CPUs).
- ``float32``.

``mode_selection.convert_fastest`` (the CLI's ``--mode auto``) converts to all
of them and keeps the fastest accurate one on the converting machine.

The manifest is what the runtimes (``ravit_keras.deploy.scheduler``, the Android core)
read: exit order, files and checksums, tensor names, shapes, dtypes and
quantisation parameters, MACs, thresholds and operating points.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ravit_keras.config import RAViTConfig
from ravit_keras.console import quiet_native_output
from ravit_keras.deploy.flatbuffer import (
    builtin_op_names,
    delegate_input_requantization,
    describe_tensors,
    fix_pixel_input_quantization,
    separate_output_dequantize,
    symmetrize_matmul_operands,
)
from ravit_keras.deploy.manifest import (
    LABELS_FILE,
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    MANIFEST_VERSION,
    load_manifest,
    sha256,
    submodel_file,
)
from ravit_keras.deploy.metadata import add_metadata
from ravit_keras.deploy.scheduler import RAViTScheduler
from ravit_keras.exits import calibrate_thresholds
from ravit_keras.io_utils import atomic_directory
from ravit_keras.model import flops

MODES = ("int8", "int8-full", "dynamic", "int16x8", "float32")
# Modes whose submodels take uint8 pixels and give int8 logits and CLS tokens.
INTEGER_IO_MODES = ("int8", "int8-full")
# Modes whose matrix products run in int8 arithmetic (dynamic quantises activations
# on the fly), so int8 GEMM speed is their ceiling.
INT8_MATMUL_MODES = ("int8", "int8-full", "dynamic")


# Keras -> SavedModel -> TFLite ----------------------------------------------


def input_signature(config: RAViTConfig, first: bool) -> dict:
    """Batch-1 input signature of a branch submodel."""
    import tensorflow as tf

    sig = {"image": tf.TensorSpec((1, *config.image_size, 3), tf.float32, name="image")}
    if not first:
        sig["cls_in"] = tf.TensorSpec((1, config.hidden_dim), tf.float32, name="cls_in")
    return sig


def export_saved_model(branch_model, config: RAViTConfig, first: bool, path: str | os.PathLike) -> None:
    """Writes ``branch_model`` as a SavedModel with a batch-1 ``serving_default``.

    A fixed batch keeps SHAPE/GATHER/PACK ops (dynamic batch) out of the graph.
    """
    branch_model.export(
        str(path), format="tf_saved_model", input_signature=[input_signature(config, first)],
        verbose=False,
    )


def branch_float_inputs(model, images: np.ndarray, batch_size: int = 256) -> list[list[dict[str, np.ndarray]]]:
    """Float inputs each branch sees for ``images`` in the Keras model.

    Returns one list per running branch of ``{"image", "cls_in"?}`` dicts, one per
    image, with ``cls_in`` the previous branch's float CLS: what the submodels
    are calibrated on.
    """
    images = np.asarray(images, np.float32)
    per_branch = []
    cls = None
    for model_b in model.branch_models():
        inputs = {"image": images} if cls is None else {"image": images, "cls_in": cls}
        # Plain calls, not predict(): predict traces a function per branch model and per
        # batch shape, and TensorFlow warns about the retracing.
        cls = np.concatenate([
            np.asarray(model_b({k: v[i:i + batch_size] for k, v in inputs.items()}, training=False)["cls_out"],
                       np.float32)
            for i in range(0, len(images), batch_size)
        ])
        per_branch.append([{k: v[i:i + 1] for k, v in inputs.items()} for i in range(len(images))])
    return per_branch


# Ops left in float inside the fast int8 graph: XNNPACK has no int8 kernel for them
# (LiteRT's built-in kernels, 4-47x slower, would split the graph into partitions),
# but it runs QUANTIZE/DEQUANTIZE, so float islands stay inside one XNNPACK partition.
FLOAT_ISLAND_OPS = ("SOFTMAX", "GELU")
# LayerNorm lowers to these; the whole LayerNorm stays float (its int8 mean and
# variance are the lossy, slow part). Matrix products are never kept float.
LAYER_NORM_OPS = ("MEAN", "SUB", "MUL", "ADD", "RSQRT", "SQUARED_DIFFERENCE", "SQUARE", "DIV")


def export_graph(branch_model, mode: str):
    """The branch model as ``mode`` exports it: the same function, fewer or other ops.

    - Every mode: the pixel normalisation ``(x - mean) / std`` is folded into the
      patch-embedding convolution (weights ``W / std`` per input channel, bias
      ``b - sum(W * mean / std)``; exact, as the convolution is unpadded). Left as its
      own ops it broadcasts a 3-channel constant over the image, which XNNPACK does
      slowly (about 5 % of an int8 branch on CIFAR-10 sizes, measured by
      ``ravit profile``), and in int8 it quantises the normalised image a second time.
    - ``int8``: XNNPACK has no int8 AVERAGE_POOL_2D, so an in-graph downscale by
      average pooling becomes the equal depthwise convolution with weights 1/(kh·kw).

    Layers not replaced are shared with ``branch_model``, weights included.
    """
    import keras

    from ravit_keras.model.layers import PatchEmbedding

    norms = [l for l in branch_model.layers if isinstance(l, keras.layers.Normalization)]
    patches = [l for l in branch_model.layers if isinstance(l, PatchEmbedding)]
    fold = len(norms) == 1 and len(patches) == 1
    pool = mode == "int8" and any(isinstance(l, keras.layers.AveragePooling2D) for l in branch_model.layers)
    if not (fold or pool):
        return branch_model

    def clone(layer):
        if pool and isinstance(layer, keras.layers.AveragePooling2D):
            kh, kw = layer.pool_size
            conv = keras.layers.DepthwiseConv2D((kh, kw), strides=(kh, kw), padding=layer.padding,
                                                use_bias=False, name=layer.name)
            conv.build((None, None, None, 3))
            conv.set_weights([np.full((kh, kw, 3, 1), 1.0 / (kh * kw), np.float32)])
            return conv
        if fold and layer is norms[0]:
            return keras.layers.Identity(name=layer.name)
        if fold and layer is patches[0]:
            return _folded_patch_embedding(layer, norms[0])
        return layer

    return keras.models.clone_model(branch_model, clone_function=clone)


def _folded_patch_embedding(patch, norm):
    """A copy of PatchEmbedding ``patch`` that also applies Normalization ``norm`` first."""
    import keras

    # Keras's Normalization divides by max(sqrt(variance), epsilon).
    mean = np.asarray(norm.mean, np.float64).reshape(-1)
    std = np.maximum(np.sqrt(np.asarray(norm.variance, np.float64).reshape(-1)), keras.config.epsilon())
    kernel, bias = (np.asarray(w, np.float64) for w in patch.projection.get_weights())
    folded = kernel / std[None, None, :, None]
    bias = bias - np.einsum("hwco,c->o", folded, mean)
    folded_patch = type(patch).from_config(patch.get_config())
    folded_patch.build(patch.input.shape)  # Its image size fixes the number of patches.
    folded_patch.projection.set_weights([folded.astype(np.float32), bias.astype(np.float32)])
    return folded_patch


def layer_norm_names(branch_model) -> list[str]:
    """Names of the LayerNormalization layers inside ``branch_model`` (nested included)."""
    import keras

    return sorted({l.name for l in branch_model._flatten_layers(include_self=False)
                   if isinstance(l, keras.layers.LayerNormalization)})


def float_island_nodes(calibrated: bytes, norm_names: Sequence[str]) -> list[str]:
    """Output tensor names of the LayerNorm ops in a calibrated flatbuffer (to keep float).

    An op belongs to a LayerNorm when its output name's first location lies in a
    LayerNormalization layer (``.../attention_norm_1/Mean``) and it is one of the
    element-wise ops LayerNorm lowers to; a FULLY_CONNECTED with the LayerNorm's
    scale folded in also carries its name and stays int8.
    """
    import re

    from tensorflow.lite.tools import flatbuffer_utils

    pattern = re.compile(r"/(" + "|".join(re.escape(n) for n in norm_names) + r")(_\d+)?/")
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(calibrated))
    graph = model.subgraphs[0]
    nodes = []
    for op in graph.operators:
        if flatbuffer_utils.opcode_to_name(model, op.opcodeIndex) not in LAYER_NORM_OPS:
            continue
        for t in op.outputs:
            name = graph.tensors[t].name.decode()
            if norm_names and pattern.search(name.split(";")[0]):
                nodes.append(name)
    return nodes


def convert_saved_model(saved_model_dir: str, mode: str,
                        representative: Sequence[dict[str, np.ndarray]] | None,
                        float_norms: Sequence[str] = ()) -> bytes:
    """TFLite flatbuffer of a SavedModel in ``mode`` (builtin ops only, no Flex).

    ``float_norms``: LayerNormalization layer names kept in float in ``int8`` mode.
    """
    import tensorflow as tf

    if mode not in MODES:
        raise ValueError(f"Unknown quantisation mode {mode!r}; choose from {MODES}.")
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    if mode == "float32":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        return converter.convert()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "dynamic":  # int8 weights, float activations: XNNPACK's QD8 kernels.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        return converter.convert()
    if not representative:
        raise ValueError(f"Mode {mode} needs calibration images.")
    converter.representative_dataset = lambda: iter(representative)
    if mode == "int16x8":
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
        return converter.convert()
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8  # Camera pixels go in as they are.
    converter.inference_output_type = tf.int8
    if mode == "int8-full":
        return converter.convert()
    # int8: the converter's own selective quantisation (what QuantizationDebugger
    # does): calibrate, then quantise with the float islands on its deny lists.
    from tensorflow.lite.python import convert as tflite_convert

    converter._experimental_calibrate_only = True
    calibrated = converter.convert()
    from tensorflow.lite.python import util as tflite_util

    quantized = tflite_convert.mlir_quantize(
        calibrated, fully_quantize=False,  # The body only: float I/O with QUANTIZE/DEQUANTIZE.
        denylisted_ops=list(FLOAT_ISLAND_OPS),
        denylisted_nodes=float_island_nodes(calibrated, float_norms),
    )
    # Float I/O with QUANTIZE/DEQUANTIZE at the edges; the converter's own IO rewrite
    # (as for int8-full) turns them into uint8 inputs and int8 outputs.
    return bytes(tflite_util.modify_model_io_type(separate_output_dequantize(quantized),
                                                  inference_input_type=tf.uint8,
                                                  inference_output_type=tf.int8))


# The whole conversion ----------------------------------------------------------


@dataclasses.dataclass
class ConversionOptions:
    """Options of ``convert``.

    Args:
        mode: "int8" (default), "int16x8" or "float32".
        num_calibration: images used to calibrate int8 ranges.
        default_max_accuracy_drop: the default thresholds are the cheapest that
            lose at most this top-1 (fraction) on the held-out calibration images.
        mac_budgets: fractions of the full model's MACs for which operating points
            (per-exit thresholds) are calibrated and stored in the manifest.
        battery_high, battery_low: battery levels of the battery-aware policy.
    """

    mode: str = "int8"
    num_calibration: int = 500
    default_max_accuracy_drop: float = 0.005
    mac_budgets: tuple[float, ...] = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4)
    battery_high: float = 0.5
    battery_low: float = 0.15


def convert_branch(branch_model, config: RAViTConfig, first: bool, mode: str,
                   float_inputs: list[dict[str, np.ndarray]], saved_model_dir: str | os.PathLike,
                   *, delegate_inputs: bool = True) -> bytes:
    """One branch model -> the flatbuffer of its submodel (no metadata yet).

    Exports the deployment graph of ``mode`` as a SavedModel in ``saved_model_dir``,
    converts it (int8 modes calibrated on ``float_inputs``) and applies the
    flatbuffer rewrites of the mode. ``delegate_inputs=False`` skips the last
    rewrite (int8 input requantisation into XNNPACK), for tests that compare both.
    """
    graph = export_graph(branch_model, mode)
    with quiet_native_output():  # The converter's C++ logs; shown if it fails.
        export_saved_model(graph, config, first, saved_model_dir)
        tflite = convert_saved_model(str(saved_model_dir), mode, float_inputs,
                                     float_norms=layer_norm_names(branch_model))
    if mode in INTEGER_IO_MODES:
        tflite = fix_pixel_input_quantization(tflite)
        tflite, _ = symmetrize_matmul_operands(tflite)
    if mode == "int8" and delegate_inputs:
        tflite, _ = delegate_input_requantization(tflite)
    return tflite


def convert(
    model,
    out_dir: str | os.PathLike,
    calibration_images: np.ndarray,
    calibration_labels: np.ndarray | None = None,
    *,
    class_names: Sequence[str] | None = None,
    options: ConversionOptions = ConversionOptions(),
    overwrite: bool = False,
    progress: Callable[[str], None] | None = print,
    calibration_source: str = "calibration images",
) -> dict[str, Any]:
    """Converts a trained ``RAViT`` into submodels + manifest in ``out_dir``.

    Args:
        model: the trained joint model (its branch models are exported).
        out_dir: output folder; it appears only when everything succeeded.
        calibration_images: uint8 (N, H, W, 3) real training images. The first
            ``options.num_calibration`` calibrate the int8 ranges; all of them (with
            ``calibration_labels``) calibrate the early-exit thresholds.
        class_names: labels written to labels.txt (default "class_<i>").
        calibration_source: what the calibration images are, recorded in the
            manifest (``thresholds_calibrated_on``), e.g. "held-out training images".

    Returns:
        The manifest (also written as ``out_dir/manifest.json``).
    """
    config: RAViTConfig = model.ravit_config
    say = progress or (lambda _msg: None)
    images = _check_images(calibration_images, config)
    if options.mode not in MODES:
        raise ValueError(f"Unknown quantisation mode {options.mode!r}; choose from {MODES}.")
    class_names = list(class_names or [f"class_{i}" for i in range(config.num_classes)])
    if len(class_names) != config.num_classes:
        raise ValueError(f"{len(class_names)} class names for a {config.num_classes}-class model.")
    calib = images[: options.num_calibration]
    per_branch_inputs = branch_float_inputs(model, calib)

    with atomic_directory(out_dir, overwrite=overwrite) as tmp, tempfile.TemporaryDirectory() as work:
        labels_path = tmp / LABELS_FILE
        labels_path.write_text("\n".join(class_names) + "\n")
        exits = []
        costs = flops.branch_costs(config)
        cumulative = flops.exit_macs(config)
        for k, (branch, branch_model) in enumerate(zip(config.exit_branches, model.branch_models())):
            first = k == 0
            start = time.perf_counter()
            tflite = convert_branch(branch_model, config, first, options.mode, per_branch_inputs[k],
                                    Path(work) / f"saved_{branch + 1}")
            ops = builtin_op_names(tflite)
            bad = sorted({o for o in ops if o.startswith("CUSTOM") or "FLEX" in o.upper()})
            if bad:
                raise RuntimeError(f"Branch {branch + 1} needs non-builtin ops {bad}.")
            tensors = describe_tensors(tflite)
            tflite = add_metadata(tflite, config, branch, first, str(labels_path), tensors)
            (tmp / submodel_file(branch)).write_bytes(tflite)
            exits.append({
                "name": config.exit_names[k],
                "branch": branch + 1,
                "file": submodel_file(branch),
                "sha256": sha256(tflite),
                "size_bytes": len(tflite),
                "branch_image_size": list(config.branch_image_sizes[branch]),
                "tokens": config.num_tokens(branch),
                "layers": config.layers[branch],
                "inputs": {n: _public(t) for n, t in tensors.items() if t["io"] == "input"},
                "outputs": {n: _public(t) for n, t in tensors.items() if t["io"] == "output"},
                "macs": costs[branch].macs,
                "cumulative_macs": cumulative[k],
            })
            say(f"  branch {branch + 1}: {options.mode} submodel, {len(tflite) / 1e3:.0f} kB, "
                f"{len(ops)} ops, {time.perf_counter() - start:.1f} s")
        manifest = {
            "format": MANIFEST_FORMAT,
            "format_version": MANIFEST_VERSION,
            "quantization": options.mode,
            "model": config.to_dict(),
            "num_classes": config.num_classes,
            "labels_file": LABELS_FILE,
            "labels": class_names,
            "image": {
                "height": config.image_size[0], "width": config.image_size[1], "channels": 3,
                "layout": "NHWC", "color": "RGB",
                "dtype": "uint8" if options.mode in INTEGER_IO_MODES else "float32",
                "value_range": [0, 255],
            },
            "entropy": "natural log, not normalised; exit when entropy <= threshold",
            "full_model_macs": flops.model_macs(config),
            "exits": exits,
        }
        manifest.update(_operating_points(None, None, options, num_exits=len(exits)))
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        if calibration_labels is not None and len(exits) > 1:
            # Thresholds are calibrated on the submodels that ship: quantisation
            # moves entropies, and a threshold calibrated on float logits can sit
            # right at the edge of a cluster of int8 entropies.
            sched = RAViTScheduler(tmp)
            logits = [np.stack(z) for z in zip(*(sched.all_exit_logits(img)[0] for img in images))]
            del sched
            manifest.update(_operating_points(logits, np.asarray(calibration_labels), options,
                                              exit_macs=[e["cumulative_macs"] for e in exits],
                                              full_macs=manifest["full_model_macs"]))
            manifest["thresholds_calibrated_on"] = (
                f"{len(images)} {calibration_source}, logits of these {options.mode} submodels")
            (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        load_manifest(tmp)  # Validates what was just written.
    return manifest


def _public(t: dict) -> dict:
    return {k: v for k, v in t.items() if k not in ("io",)}


def _check_images(images, config: RAViTConfig) -> np.ndarray:
    images = np.asarray(images)
    expected = (*config.image_size, 3)
    if images.ndim != 4 or images.shape[1:] != expected:
        raise ValueError(f"Calibration images must be (N, {expected[0]}, {expected[1]}, 3), got {images.shape}.")
    if images.dtype != np.uint8:
        raise ValueError(f"Calibration images must be uint8 pixels, got {images.dtype}.")
    if len(images) == 0:
        raise ValueError("No calibration images.")
    return images


def _operating_points(logits, labels, options: ConversionOptions, exit_macs=None,
                      full_macs=None, num_exits: int = 1) -> dict[str, Any]:
    """Default thresholds, MAC-budget operating points and the battery policy.

    Calibrated on per-exit ``logits`` of labelled calibration images. Without
    them the thresholds are 0: no early exit.
    """
    if logits is None:
        no_exit = [0.0] * (num_exits - 1)
        return {"default_thresholds": no_exit, "operating_points": [],
                "battery_policy": _battery(no_exit, no_exit, options)}
    default = calibrate_thresholds(
        logits, labels, exit_macs, max_accuracy_drop=options.default_max_accuracy_drop
    )["thresholds"]
    points = []
    for fraction in options.mac_budgets:
        budget = fraction * full_macs
        if budget < exit_macs[0]:
            continue
        chosen = calibrate_thresholds(logits, labels, exit_macs, mac_budget=budget)
        r = chosen["calibration"]
        points.append({
            "mac_fraction": fraction,
            "thresholds": [float(t) for t in chosen["thresholds"]],
            "accuracy": r["accuracy"],
            "avg_macs": r["avg_macs"],
            "exit_fractions": r["exit_fractions"],
        })
    saver = points[-1]["thresholds"] if points else default
    return {
        "default_thresholds": [float(t) for t in default],
        "operating_points": points,
        "battery_policy": _battery(default, saver, options),
    }


def _battery(high_thresholds, low_thresholds, options: ConversionOptions) -> dict[str, Any]:
    return {
        "curve": "thresholds_high at battery >= high, thresholds_low at battery <= low, "
                 "linear in between",
        "high": options.battery_high,
        "low": options.battery_low,
        "thresholds_high": [float(t) for t in high_thresholds],
        "thresholds_low": [float(max(a, b)) for a, b in zip(low_thresholds, high_thresholds)],
    }
