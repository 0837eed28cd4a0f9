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

The manifest is what the runtimes (``ravit_keras.deploy.runtime.scheduler``, the Android core)
read: exit order, files and checksums, tensor names, shapes, dtypes and
quantisation parameters, MACs, thresholds and operating points.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ravit_keras.config import RAViTConfig
from ravit_keras.console import quiet_native_output
from ravit_keras.data.checks import check_class_names
from ravit_keras.deploy.export.flatbuffer import (
    builtin_op_names,
    delegate_input_requantization,
    describe_tensors,
    fix_pixel_input_quantization,
    separate_output_dequantize,
    symmetrize_matmul_operands,
)
from ravit_keras.deploy.export.graph import (
    FLOAT_ISLAND_OPS,
    branch_float_inputs,
    export_graph,
    export_saved_model,
    float_island_nodes,
    layer_norm_names,
)
from ravit_keras.deploy.export.metadata import add_metadata
from ravit_keras.deploy.runtime import policy
from ravit_keras.deploy.runtime.calibration_set import CalibrationSet
from ravit_keras.deploy.runtime.manifest import (
    LABELS_FILE,
    MANIFEST_FILE,
    ExitSpec,
    ImageSpec,
    Manifest,
    load_manifest,
    sha256,
    submodel_file,
)
from ravit_keras.deploy.runtime.modes import INT8_MATMUL_MODES, INTEGER_IO_MODES, MODES  # noqa: F401 (re-exported)
from ravit_keras.deploy.runtime.scheduler import RAViTScheduler
from ravit_keras.io_utils import atomic_directory
from ravit_keras.model import flops
from ravit_keras.runs import class_names_or_placeholders


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
    options: ConversionOptions | None = None,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = print,
    calibration_source: str = "calibration images",
    calibration_set: CalibrationSet | None = None,
) -> Manifest:
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
        calibration_set: the same as fields (the manifest's ``calibration``), so a runtime
            can leave those images out of what it reports on; ``used`` is filled in.

    Returns:
        The ``Manifest`` (also written as ``out_dir/manifest.json``).
    """
    config: RAViTConfig = model.ravit_config
    say = progress or (lambda _msg: None)
    images = _check_images(calibration_images, config)
    options = options or ConversionOptions()  # A fresh one: the dataclass is mutable.
    if options.mode not in MODES:
        raise ValueError(f"Unknown quantisation mode {options.mode!r}; choose from {MODES}.")
    # labels.txt and the TFLite metadata hold one name per line.
    class_names = check_class_names(class_names_or_placeholders(class_names, config.num_classes), "class_names")
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
        no_exit = policy.calibrate_policy(None, None, (), 0, num_exits=len(exits), **_policy_options(options))
        manifest = Manifest(
            quantization=options.mode,
            model=config.to_dict(),
            num_classes=config.num_classes,
            labels_file=LABELS_FILE,
            labels=tuple(class_names),
            image=ImageSpec(height=config.image_size[0], width=config.image_size[1],
                            dtype="uint8" if options.mode in INTEGER_IO_MODES else "float32"),
            entropy="natural log, not normalised; exit when entropy <= threshold",
            full_model_macs=flops.model_macs(config),
            exits=tuple(ExitSpec.from_dict(e, k) for k, e in enumerate(exits)),
            default_thresholds=no_exit[0], operating_points=no_exit[1], battery_policy=no_exit[2],
        )
        (tmp / MANIFEST_FILE).write_text(manifest.dumps())
        if calibration_labels is not None and len(exits) > 1:
            # Thresholds are calibrated on the submodels that ship: quantisation
            # moves entropies, and a threshold calibrated on float logits can sit
            # right at the edge of a cluster of int8 entropies.
            sched = RAViTScheduler(tmp)
            logits = [np.stack(z) for z in zip(*(sched.all_exit_logits(img)[0] for img in images))]
            del sched
            default, points, battery = policy.calibrate_policy(
                logits, np.asarray(calibration_labels), [e.cumulative_macs for e in manifest.exits],
                manifest.full_model_macs, **_policy_options(options))
            manifest = dataclasses.replace(
                manifest, default_thresholds=default, operating_points=points, battery_policy=battery,
                thresholds_calibrated_on=(f"{len(images)} {calibration_source}, "
                                          f"logits of these {options.mode} submodels"),
                calibration=None if calibration_set is None
                else dataclasses.replace(calibration_set, used=len(images)))
            (tmp / MANIFEST_FILE).write_text(manifest.dumps())
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


def _policy_options(options: ConversionOptions) -> dict[str, Any]:
    return {"mac_budgets": options.mac_budgets, "max_accuracy_drop": options.default_max_accuracy_drop,
            "battery_high": options.battery_high, "battery_low": options.battery_low}
