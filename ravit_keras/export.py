"""Branch models -> TFLite submodels + metadata + ``manifest.json``.

One submodel per branch that runs, each with batch 1 fixed in its signature:

    inputs:  image  (1, H, W, 3) full-resolution RGB pixels (uint8 in int8 mode)
             cls_in (1, d)       CLS token of the previous branch (not on the first)
    outputs: logits (1, classes), cls_out (1, d)

Modes: ``int8`` (full integer, calibrated on real images: uint8 pixels and a
uint8 ``cls_in`` in, since the converter applies one input type to every input;
int8 ``logits`` and ``cls_out`` out; the scheduler requantises cls_out into
cls_in), ``int16x8`` (16-bit activations, 8-bit weights, float32 interface: for
when full int8 loses too much) and ``float32``. ``convert_fastest`` (the CLI's
``--mode auto``) converts to several and keeps the fastest accurate one.

The manifest is what the runtimes (``ravit_keras.scheduler``, the Android core)
read: exit order, files and checksums, tensor names, shapes, dtypes and
quantisation parameters, MACs, thresholds and operating points.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ravit_keras import early_exit, flops
from ravit_keras.config import RAViTConfig
from ravit_keras.io_utils import atomic_directory

MANIFEST_FILE = "manifest.json"
LABELS_FILE = "labels.txt"
MANIFEST_FORMAT = "ravit-tflite"
MANIFEST_VERSION = 1
MODES = ("int8", "int16x8", "float32")


def submodel_file(branch: int) -> str:
    """File name of the submodel of 0-based branch ``branch``."""
    return f"branch_{branch + 1}.tflite"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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
        out = model_b.predict(inputs, batch_size=batch_size, verbose=0)
        per_branch.append([{k: v[i:i + 1] for k, v in inputs.items()} for i in range(len(images))])
        cls = np.asarray(out["cls_out"], np.float32)
    return per_branch


def convert_saved_model(saved_model_dir: str, mode: str,
                        representative: Sequence[dict[str, np.ndarray]] | None) -> bytes:
    """TFLite flatbuffer of a SavedModel in ``mode`` (builtin ops only, no Flex)."""
    import tensorflow as tf

    if mode not in MODES:
        raise ValueError(f"Unknown quantisation mode {mode!r}; choose from {MODES}.")
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    if mode == "float32":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        return converter.convert()
    if not representative:
        raise ValueError(f"Mode {mode} needs calibration images.")
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: iter(representative)
    if mode == "int8":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8  # Camera pixels go in as they are.
        converter.inference_output_type = tf.int8
    else:
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
    return converter.convert()


def fix_pixel_input_quantization(tflite: bytes) -> bytes:
    """Sets the uint8 image input to exactly scale 1, zero point 0.

    Calibration estimates the pixel range from the images it saw (e.g. scale
    0.99999); pixels are 0..255 by definition, so the exact values make the
    uint8 input the raw camera pixel.
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    graph = model.subgraphs[0]
    for index in graph.inputs:
        tensor = graph.tensors[index]
        if tensor.type == schema.TensorType.UINT8 and tensor.shape is not None and len(tensor.shape) == 4:
            tensor.quantization.scale = [1.0]
            tensor.quantization.zeroPoint = [0]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def symmetrize_matmul_operands(tflite: bytes) -> tuple[bytes, int]:
    """Requantises the right-hand operands of int8 BATCH_MATMULs to zero point 0.

    XNNPACK runs an int8 BATCH_MATMUL only when its right-hand operand (K for
    Q·Kᵀ, V for P·V) has zero point 0; calibration never gives that, so
    attention would fall back to the slow built-in kernel. The operand is the
    output of a projection followed by RESHAPE/TRANSPOSE ops, which all share
    one quantisation; this widens that range to be symmetric around 0 (zero
    point 0, scale max(|min|, |max|)/127). Kernels read quantisation from the
    tensors, so the projection simply requantises to the new scale: the graph
    computes the same function with at most 1 bit less resolution on K and V.

    Returns the new flatbuffer and the number of operands changed.
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    graph = model.subgraphs[0]
    op_name = lambda op: flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)  # noqa: E731
    producer = {t: op for op in graph.operators for t in op.outputs}
    changed = 0
    for op in graph.operators:
        if op_name(op) != "BATCH_MATMUL":
            continue
        chain = [op.inputs[1]]
        while chain[-1] in producer and op_name(producer[chain[-1]]) in ("RESHAPE", "TRANSPOSE"):
            chain.append(producer[chain[-1]].inputs[0])
        tensors = [graph.tensors[t] for t in chain]
        q = tensors[0].quantization
        if tensors[0].type != schema.TensorType.INT8 or q is None or not q.scale or q.zeroPoint[0] == 0:
            continue
        if any(t.quantization is None or list(t.quantization.scale) != list(q.scale)
               or list(t.quantization.zeroPoint) != list(q.zeroPoint) for t in tensors):
            continue  # Not one shared quantisation: leave it to the built-in kernel.
        scale, zp = float(q.scale[0]), int(q.zeroPoint[0])
        bound = max(abs((-128 - zp) * scale), abs((127 - zp) * scale))
        for t in tensors:
            t.quantization.scale = [bound / 127.0]
            t.quantization.zeroPoint = [0]
            t.quantization.min, t.quantization.max = [-bound], [bound]
        changed += 1
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), changed


# Metadata ----------------------------------------------------------------------


def add_metadata(tflite: bytes, config: RAViTConfig, branch: int, first: bool,
                 labels_path: str, tensors: dict[str, dict]) -> bytes:
    """Adds TFLite metadata with tflite-support's metadata writers.

    The image input carries image metadata (RGB, raw pixels: mean 0, std 1) and
    the logits carry the label file, so the first branch reads as an image
    classifier; the CLS input/output are described as plain tensors.
    """
    from tensorflow_lite_support.metadata import metadata_schema_py_generated as md_fb
    from tensorflow_lite_support.metadata.python.metadata_writers import (
        metadata_info,
        metadata_writer,
        writer_utils,
    )

    in_types = writer_utils.get_input_tensor_types(tflite)
    out_types = writer_utils.get_output_tensor_types(tflite)
    size = config.branch_image_sizes[branch]
    by_position_in = sorted((t["position"], name) for name, t in tensors.items() if t["io"] == "input")
    by_position_out = sorted((t["position"], name) for name, t in tensors.items() if t["io"] == "output")
    input_md = []
    for pos, name in by_position_in:
        if name == "image":
            input_md.append(metadata_info.InputImageTensorMd(
                name="image",
                description=(f"RGB pixels 0..255, {config.image_size[0]}x{config.image_size[1]}; "
                             f"resized to {size[0]}x{size[1]} and normalised inside the model."),
                norm_mean=[0.0], norm_std=[1.0],
                color_space_type=md_fb.ColorSpaceType.RGB,
                tensor_type=in_types[pos],
            ))
        else:
            input_md.append(metadata_info.TensorMd(
                name="cls_in",
                description=f"CLS token handed over by the previous branch ({config.hidden_dim} values).",
            ))
    output_md = []
    for pos, name in by_position_out:
        if name == "logits":
            output_md.append(metadata_info.ClassificationTensorMd(
                name="logits",
                description=(f"Exit logits of branch {branch + 1} (softmax them; early exit when "
                             "their entropy is under the exit's threshold)."),
                label_files=[metadata_info.LabelFileMd(file_path=labels_path)],
                tensor_type=out_types[pos],
            ))
        else:
            output_md.append(metadata_info.TensorMd(
                name="cls_out",
                description="CLS token for the next branch's cls_in (requantise if scales differ).",
            ))
    general = metadata_info.GeneralMd(
        name=f"RAViT {config.layer_spec} branch {branch + 1}",
        version=f"manifest v{MANIFEST_VERSION}",
        description=(
            f"Branch {branch + 1} of a Resolution-Adaptive Vision Transformer ({config.name}, "
            f"{config.layer_spec}); runs on {size[0]}x{size[1]}"
            + ("." if first else ", starting from the previous branch's CLS token.")
        ),
        author="ravit-keras",
        licenses="Apache-2.0",
    )
    writer = metadata_writer.MetadataWriter.create_from_metadata_info(
        tflite, general_md=general, input_md=input_md, output_md=output_md,
        associated_files=[labels_path],
    )
    return _with_fixed_zip_timestamps(bytes(writer.populate()))


def _with_fixed_zip_timestamps(tflite: bytes) -> bytes:
    """Re-packs the associated-files zip appended to a model with fixed timestamps.

    The metadata populator zips the label file with the current time, so two
    conversions of the same model would differ (and so would their checksums).
    """
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(tflite)) as zf:
        infos = zf.infolist()
        contents = [(i, zf.read(i)) for i in infos]
    start = min(i.header_offset for i in infos)
    out = io.BytesIO(tflite[:start])
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, "a") as zf:
        for info, data in contents:
            fixed = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            fixed.compress_type = info.compress_type
            zf.writestr(fixed, data)
    return out.getvalue()


# Tensor introspection ----------------------------------------------------------


def describe_tensors(tflite: bytes) -> dict[str, dict[str, Any]]:
    """Signature tensors of a submodel: name -> index, shape, dtype, quantisation.

    Raises:
        ValueError: if the flatbuffer cannot be read by the LiteRT interpreter.
    """
    from ai_edge_litert.interpreter import Interpreter

    try:
        interpreter = Interpreter(model_content=tflite)
    except Exception as e:  # The interpreter raises ValueError/RuntimeError for bad buffers.
        raise ValueError(f"Not a valid TFLite model: {e}") from None
    runner = interpreter.get_signature_runner()
    positions_in = {d["index"]: i for i, d in enumerate(interpreter.get_input_details())}
    positions_out = {d["index"]: i for i, d in enumerate(interpreter.get_output_details())}
    result = {}
    for io, details, positions in (("input", runner.get_input_details(), positions_in),
                                   ("output", runner.get_output_details(), positions_out)):
        for name, d in details.items():
            scale, zero_point = d["quantization"]
            result[name] = {
                "io": io,
                "position": positions[d["index"]],
                "tensor_name": d["name"],
                "shape": [int(s) for s in d["shape"]],
                "dtype": np.dtype(d["dtype"]).name,
                "scale": float(scale),
                "zero_point": int(zero_point),
            }
    return result


def builtin_op_names(tflite: bytes) -> list[str]:
    """Names of the operators in the flatbuffer (to check for Flex/custom ops)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    names = []
    for op in model.subgraphs[0].operators:
        code = model.operatorCodes[op.opcodeIndex]
        names.append(flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)
                     if code.customCode is None else f"CUSTOM:{code.customCode.decode()}")
    return names


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
) -> dict[str, Any]:
    """Converts a trained ``RAViT`` into submodels + manifest in ``out_dir``.

    Args:
        model: the trained joint model (its branch models are exported).
        out_dir: output folder; it appears only when everything succeeded.
        calibration_images: uint8 (N, H, W, 3) real training images. The first
            ``options.num_calibration`` calibrate the int8 ranges; all of them (with
            ``calibration_labels``) calibrate the early-exit thresholds.
        class_names: labels written to labels.txt (default "class_<i>").

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
            saved = Path(work) / f"saved_{branch + 1}"
            export_saved_model(branch_model, config, first, saved)
            tflite = convert_saved_model(str(saved), options.mode, per_branch_inputs[k])
            if options.mode == "int8":
                tflite = fix_pixel_input_quantization(tflite)
                tflite, _ = symmetrize_matmul_operands(tflite)
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
                "dtype": "uint8" if options.mode == "int8" else "float32",
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
            from ravit_keras.scheduler import RAViTScheduler

            sched = RAViTScheduler(tmp)
            logits = [np.stack(z) for z in zip(*(sched.all_exit_logits(img)[0] for img in images))]
            del sched
            manifest.update(_operating_points(logits, np.asarray(calibration_labels), options,
                                              exit_macs=[e["cumulative_macs"] for e in exits],
                                              full_macs=manifest["full_model_macs"]))
            manifest["thresholds_calibrated_on"] = (
                f"{len(images)} calibration images, logits of these {options.mode} submodels")
            (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        from ravit_keras.scheduler import load_manifest  # Validates what was just written.

        load_manifest(tmp)
    say(f"Wrote {len(exits)} {options.mode} submodels and {MANIFEST_FILE} to {out_dir}")
    return manifest


def convert_fastest(
    model,
    out_dir: str | os.PathLike,
    calibration_images: np.ndarray,
    calibration_labels: np.ndarray,
    *,
    candidates: Sequence[str] = ("int8", "float32"),
    max_accuracy_drop: float = 0.01,
    class_names: Sequence[str] | None = None,
    options: ConversionOptions = ConversionOptions(),
    overwrite: bool = False,
    progress: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Converts in every candidate mode and keeps the fastest one that stays accurate.

    Each candidate is timed here (its submodels interleaved, 1 thread, summed:
    the no-early-exit latency) and evaluated on the labelled calibration images
    (no early exit). The fastest mode whose top-1 is within ``max_accuracy_drop``
    of the best candidate's wins; the measurements are recorded in the manifest
    under ``mode_selection``. The timing is of THIS machine: for a phone, convert
    with the mode that is fast there (``int8`` on ARM CPUs with dot-product
    instructions).
    """
    from ravit_keras.benchmark import interleaved_latency
    from ravit_keras.scheduler import RAViTScheduler

    say = progress or (lambda _msg: None)
    if calibration_labels is None:
        raise ValueError("Choosing a mode needs labelled calibration images.")
    out_dir = Path(out_dir)
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        measured = {}
        for mode in candidates:
            folder = tmp / mode
            convert(model, folder, calibration_images, calibration_labels, class_names=class_names,
                    options=dataclasses.replace(options, mode=mode), progress=progress)
            manifest = json.loads((folder / MANIFEST_FILE).read_text())
            sched = RAViTScheduler(folder)
            accuracy = sched.evaluate(calibration_images, calibration_labels, thresholds=0.0)["accuracy"]
            del sched
            files = [folder / e["file"] for e in manifest["exits"]]
            measured[mode] = {"files": files, "accuracy": accuracy}
        timing = interleaved_latency([f for m in measured.values() for f in m["files"]], rounds=3, runs=50)
        for m in measured.values():
            m["latency_ms"] = sum(timing[str(f)]["median_ms"] for f in m.pop("files"))
        best_accuracy = max(m["accuracy"] for m in measured.values())
        eligible = {k: m for k, m in measured.items() if m["accuracy"] >= best_accuracy - max_accuracy_drop}
        chosen = min(eligible, key=lambda k: eligible[k]["latency_ms"])
        for mode, m in measured.items():
            say(f"  {mode}: {m['latency_ms']:.3f} ms (all submodels, 1 thread), top-1 "
                f"{100 * m['accuracy']:.2f}% on the calibration images")
        say(f"Chose {chosen}: fastest here within {100 * max_accuracy_drop:.1f} points of the best accuracy")
        manifest_path = tmp / chosen / MANIFEST_FILE
        manifest = json.loads(manifest_path.read_text())
        manifest["mode_selection"] = {
            "chosen": chosen, "measured_on_this_host": measured,
            "rule": f"fastest mode within {max_accuracy_drop} top-1 of the best, timed on the converting machine",
        }
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
        for entry in (tmp / chosen).iterdir():
            os.replace(entry, tmp / entry.name)
        for mode in candidates:
            if mode != chosen:
                import shutil

                shutil.rmtree(tmp / mode)
        (tmp / chosen).rmdir()
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
    default = early_exit.calibrate_thresholds(
        logits, labels, exit_macs, max_accuracy_drop=options.default_max_accuracy_drop
    )["thresholds"]
    points = []
    for fraction in options.mac_budgets:
        budget = fraction * full_macs
        if budget < exit_macs[0]:
            continue
        chosen = early_exit.calibrate_thresholds(logits, labels, exit_macs, mac_budget=budget)
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
