"""Golden vectors: what the Python scheduler sees, for the Android core to replay.

``export_golden(out_dir)`` builds a small RAViT deterministically (no gradient
training: seeded encoders, exit heads fitted in closed form so labels vary and
entropies spread, see ``build_model``), converts it to int8
submodels with :func:`ravit_keras.deploy.export.convert.convert` (calibrated on the
``generated`` dataset), then runs a few test images through
:class:`ravit_keras.deploy.runtime.scheduler.RAViTScheduler` and records, per image:

* the uint8 pixels (base64 of the H×W×3 bytes, row-major RGB),
* every submodel's raw integer inputs and outputs (``all_exit_logits``): the
  requantised ``cls_in`` each later submodel receives, ``logits`` and ``cls_out``,
* every exit's entropy and softmax probabilities (dequantised logits, float64),
* the scheduler's decision (exit, label, entropies of the visited exits, MACs)
  at several threshold settings: 0 (no early exit), ln C (always the first
  exit), values between observed first-exit entropies (so both outcomes occur),
  and the manifest's default and battery-saver thresholds,

plus standalone cases for ``requantize`` (every source value, half-way ties,
int8/uint8/int16/float32), ``entropy`` (extreme logits), the battery and
MAC-budget policies, and the center crop + resize of camera frames.

The folder (manifest, labels, submodels, ``golden.json``) is the fixture of the
Android core's ``GoldenParityTest``; ``golden_relu`` beside it (ReLU MLPs, fused into
the int8 fully-connected layers) that of ``GoldenReluParityTest``. Regenerate them
with ``REGENERATE_COMMAND`` / ``RELU_REGENERATE_COMMAND`` whenever the export graph
changes; ``tests/deploy/test_golden*.py`` check that the committed ones still equal
what the current code produces.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

GOLDEN_FILE = "golden.json"
GOLDEN_FORMAT = "ravit-golden"
GOLDEN_VERSION = 1
DEFAULT_OUT = "android_demo/core/src/test/resources/golden"
REGENERATE_COMMAND = f"python -m ravit_keras.deploy.export.golden --out {DEFAULT_OUT}"
# The second fixture: the same model with ReLU MLPs (issue 26), whose int8 submodels fuse
# the activation into the fully-connected layer instead of a float GELU island.
RELU_OUT = "android_demo/core/src/test/resources/golden_relu"
RELU_REGENERATE_COMMAND = f"python -m ravit_keras.deploy.export.golden --mlp-activation relu --out {RELU_OUT}"

# Kept small: the fixture is committed (two tiny submodels + 16 images < 300 kB).
NUM_CLASSES = 10  # Of the "tiny" preset and the generated dataset.
NUM_TEST_IMAGES = 16
NUM_CALIBRATION = 64
NUM_THRESHOLD_CALIBRATION = 200
# The exit heads are set in closed form (see ``build_model``) and scaled so the
# entropies spread over [0, ln C] rather than all sitting near ln C.
HEAD_SCALE = 20.0
RIDGE = 0.1
# A threshold this close to an observed entropy would make the decision hang
# on the last float bit; such settings are left out.
MIN_MARGIN = 1e-6


def build_model(images: np.ndarray, labels: np.ndarray, seed: int = 0, mlp_activation: str = "gelu"):
    """The deterministic golden model: tiny "1-2" RAViT, seeded, no gradient training.

    Encoders keep their seeded initial weights. Each exit head is replaced by a
    ridge-regression probe of the one-hot labels on that exit's normalised CLS
    features over ``images`` (float64 NumPy, closed form), times ``HEAD_SCALE``:
    the exits then disagree, labels vary and entropies spread, which a parity
    test needs and a seeded head (all logits ~0, entropy ~ln C) does not give.
    """
    import keras

    from ravit_keras.config import get_config
    from ravit_keras.model import RAViT

    keras.utils.set_random_seed(seed)
    model = RAViT(get_config("tiny", layers="1-2", mlp_activation=mlp_activation))
    num_classes = model.ravit_config.num_classes
    targets = np.eye(num_classes)[np.asarray(labels)] - 1.0 / num_classes
    pixels = np.asarray(images, np.float32)
    cls = None
    for branch_model in model.branch_models():
        probe = keras.Model(branch_model.inputs, {
            "features": branch_model.get_layer("exit_norm").output,
            "cls_out": branch_model.output["cls_out"],
        })
        inputs = {"image": pixels} if cls is None else {"image": pixels, "cls_in": cls}
        out = probe.predict(inputs, batch_size=len(pixels), verbose=0)
        features = np.asarray(out["features"], np.float64)
        cls = np.asarray(out["cls_out"], np.float32)
        mean = features.mean(axis=0)
        centred = features - mean
        gram = centred.T @ centred + RIDGE * np.eye(features.shape[1])
        kernel = np.linalg.solve(gram, centred.T @ targets) * HEAD_SCALE
        head = branch_model.get_layer("exit_head")
        head.set_weights([kernel.astype(np.float32), (-mean @ kernel).astype(np.float32)])
    return model


def _tensor(array: np.ndarray) -> dict[str, Any]:
    array = np.asarray(array)
    values = array.reshape(-1)
    if np.issubdtype(array.dtype, np.integer):
        values = [int(v) for v in values]
    else:
        values = [float(v) for v in values]
    return {"dtype": array.dtype.name, "shape": [int(s) for s in array.shape], "values": values}


def _threshold_settings(entropies: np.ndarray, manifest, num_classes: int) -> list[dict]:
    """Named per-exit thresholds: 0, ln C, between-entropy quantiles, manifest ones."""
    num_exits = entropies.shape[1]
    top = math.log(num_classes)
    settings = [("none", 0.0), ("max_entropy", top)]
    first = np.sort(entropies[:, 0])
    for q in (0.25, 0.5, 0.75):
        k = int(round(q * (len(first) - 1)))
        k = min(max(k, 0), len(first) - 2)
        # Midpoint between two neighbouring entropies: both outcomes occur and
        # no entropy sits near the threshold. Skip exact duplicates forward.
        while k < len(first) - 2 and first[k + 1] - first[k] < 4 * MIN_MARGIN:
            k += 1
        if first[k + 1] - first[k] >= 4 * MIN_MARGIN:
            settings.append((f"between_q{int(q * 100)}", float((first[k] + first[k + 1]) / 2)))
    settings.append(("manifest_default", list(manifest.default_thresholds)))
    settings.append(("battery_low", list(manifest.battery_policy.thresholds_low)))
    out, seen = [], set()
    for name, value in settings:
        taus = [float(value)] * (num_exits - 1) if np.ndim(value) == 0 else [float(t) for t in value]
        gaps = np.abs(entropies[:, : num_exits - 1] - np.asarray(taus)[None, :])
        if gaps.size and gaps.min() < MIN_MARGIN and name not in ("none", "max_entropy"):
            continue  # The decision would hang on float rounding: not a fair parity case.
        if tuple(taus) in seen:
            continue
        seen.add(tuple(taus))
        out.append({"name": name, "thresholds": taus})
    return out


def _requantize_cases() -> list[dict]:
    """Every int8 value through int8 -> uint8/int8/int16/float32 specs, ties included."""
    from ravit_keras.deploy.runtime.quantization import requantize

    def spec(dtype, scale, zero_point):
        return {"dtype": dtype, "scale": scale, "zero_point": zero_point}

    all_int8 = np.arange(-128, 128, dtype=np.int64)
    cases = [
        # Ratio exactly 0.5: every odd (q - zp) lands on a half-way tie.
        ("int8_to_uint8_ratio_half", all_int8.astype(np.int8), spec("int8", 0.01, 3), spec("uint8", 0.02, 128)),
        ("int8_to_int8_ratio_half_neg_zp", all_int8.astype(np.int8), spec("int8", 0.05, -7), spec("int8", 0.1, -2)),
        # Ratio 2.5 saturates both ends.
        ("int8_to_int8_saturating", all_int8.astype(np.int8), spec("int8", 0.025, 0), spec("int8", 0.01, 1)),
        ("int8_to_uint8_real_like", all_int8.astype(np.int8),
         spec("int8", 0.014171570539474487, 4), spec("uint8", 0.017258189618587494, 133)),
        ("int8_identity", all_int8.astype(np.int8), spec("int8", 0.5, 1), spec("int8", 0.5, 1)),
        ("uint8_to_int8", np.arange(0, 256, dtype=np.int64).astype(np.uint8),
         spec("uint8", 0.02, 128), spec("int8", 0.03, -1)),
        ("int8_to_int16", all_int8.astype(np.int8), spec("int8", 0.1, 5), spec("int16", 0.001, 0)),
        ("int16_to_int8", np.arange(-32768, 32768, 257, dtype=np.int64).astype(np.int16),
         spec("int16", 0.0007, 0), spec("int8", 0.1, -3)),
        ("int8_to_float32", all_int8.astype(np.int8), spec("int8", 0.037, -4), spec("float32", 0.0, 0)),
        ("float32_to_int8", np.linspace(-3.0, 3.0, 61).astype(np.float32),
         spec("float32", 0.0, 0), spec("int8", 0.02, 2)),
    ]
    out = []
    for name, values, source, target in cases:
        result = requantize(values, source, target)
        out.append({"name": name, "source": source, "target": target,
                    "input": _tensor(values), "expected": _tensor(result)})
    return out


def _entropy_cases(num_classes: int) -> list[dict]:
    from ravit_keras.exits import entropy, softmax

    rng = np.random.default_rng(7)
    rows = [
        np.zeros(num_classes),                                   # uniform: ln C
        np.r_[1000.0, np.zeros(num_classes - 1)],                # one-hot: 0
        np.r_[-1000.0, np.zeros(num_classes - 1)],               # one class vanishes (0·ln 0)
        np.r_[50.0, 49.0, np.full(num_classes - 2, -60.0)],      # two-way
        np.linspace(-4.0, 4.0, num_classes),
        rng.normal(0.0, 3.0, num_classes),
        rng.normal(0.0, 0.01, num_classes),
        np.full(num_classes, 1e6),                               # huge but equal
    ]
    return [{"logits": [float(v) for v in r],
             "entropy": float(entropy(np.asarray(r)[None])[0]),
             "softmax": [float(p) for p in softmax(np.asarray(r))]} for r in rows]


def center_crop_box(src_w: int, src_h: int, dst_w: int, dst_h: int) -> tuple[int, int, int, int]:
    """``(left, top, width, height)`` of the largest centred crop with the destination's
    aspect ratio (kept side rounded to the nearest pixel, offset rounded down): the rule
    of the Android core's ``ImagePreprocessor.centerCropBox``."""
    if src_w * dst_h > src_h * dst_w:
        w = max(1, (src_h * dst_w + dst_h // 2) // dst_h)
        return (src_w - w) // 2, 0, w, src_h
    h = max(1, (src_w * dst_h + dst_w // 2) // dst_w)
    return 0, (src_h - h) // 2, src_w, h


def _resize_cases() -> list[dict]:
    """Center crop + antialiased bilinear resize, the resize the training data gets
    (``data._resize_uint8``: ``tf.image.resize(bilinear, antialias=True)``, rounded)."""
    import tensorflow as tf

    from ravit_keras.data import load_split

    out = []
    for (src_h, src_w), (dst_h, dst_w) in [((40, 30), (16, 16)), ((30, 40), (16, 16)), ((12, 10), (16, 16)),
                                           ((33, 45), (12, 20)), ((16, 16), (16, 16))]:
        image, _ = load_split("generated", "test", image_size=(src_h, src_w), num_examples=1,
                              num_classes=NUM_CLASSES).as_numpy()
        image = image[0]
        left, top, w, h = center_crop_box(src_w, src_h, dst_w, dst_h)
        crop = image[top:top + h, left:left + w]
        resized = tf.image.resize(crop[None].astype(np.float32), (dst_h, dst_w), method="bilinear", antialias=True)
        resized = np.clip(np.round(resized.numpy()[0]), 0, 255).astype(np.uint8)
        out.append({
            "src_width": src_w, "src_height": src_h, "dst_width": dst_w, "dst_height": dst_h,
            "crop_box": [left, top, w, h],
            "src_base64": base64.b64encode(image.tobytes()).decode("ascii"),
            "expected_base64": base64.b64encode(resized.tobytes()).decode("ascii"),
        })
    return out


def _record_images(scheduler, images: np.ndarray, labels: np.ndarray) -> tuple[list[dict], np.ndarray]:
    from ravit_keras.exits import entropy, softmax

    records, entropies = [], []
    for image, label in zip(images, labels):
        logits_all, raw = scheduler.all_exit_logits(image)
        exits = []
        row = []
        for logits, record in zip(logits_all, raw):
            u = float(entropy(logits[None])[0])
            row.append(u)
            exits.append({
                "inputs": {k[3:]: _tensor(v) for k, v in record.items() if k.startswith("in_")},
                "outputs": {k[4:]: _tensor(v) for k, v in record.items() if k.startswith("out_")},
                "entropy": u,
                "probabilities": [float(p) for p in softmax(logits)],
            })
        entropies.append(row)
        records.append({
            "label": int(label),
            "pixels_base64": base64.b64encode(np.ascontiguousarray(image, np.uint8).tobytes()).decode("ascii"),
            "exits": exits,
        })
    return records, np.asarray(entropies)


def _decisions(scheduler, images: np.ndarray, thresholds: Sequence[float]) -> list[dict]:
    out = []
    for image in images:
        c = scheduler.classify(image, thresholds)
        out.append({"exit_index": int(c.exit_index), "exit_name": c.exit_name, "label": int(c.label),
                    "label_name": c.label_name, "entropies": [float(u) for u in c.entropies],
                    "macs": int(c.macs)})
    return out


def golden_document(folder: str | os.PathLike, images: np.ndarray, labels: np.ndarray,
                    regenerate: str = REGENERATE_COMMAND) -> dict[str, Any]:
    """The golden.json content for the converted submodels in ``folder``."""
    from ravit_keras.deploy.runtime.scheduler import RAViTScheduler

    scheduler = RAViTScheduler(folder, num_threads=1)
    manifest = scheduler.manifest
    records, entropies = _record_images(scheduler, images, labels)
    settings = _threshold_settings(entropies, manifest, scheduler.num_classes)
    for s in settings:
        s["decisions"] = _decisions(scheduler, images, s["thresholds"])
    return {
        "format": GOLDEN_FORMAT,
        "format_version": GOLDEN_VERSION,
        "regenerate": regenerate,
        "num_classes": scheduler.num_classes,
        "exit_names": scheduler.exit_names,
        "image_shape": [int(s) for s in scheduler.image_shape],
        "image_dtype": scheduler.image_dtype,
        "images": records,
        "threshold_settings": settings,
        "battery_cases": _battery_cases(scheduler),
        "mac_budgets": _mac_budgets(scheduler),
        "requantize_cases": _requantize_cases(),
        "entropy_cases": _entropy_cases(scheduler.num_classes),
        "resize_cases": _resize_cases(),
    }


def _battery_cases(scheduler) -> list[dict]:
    """``battery_thresholds`` over levels, for the manifest's policy and two steeper ones
    (an untrained model's policy can be flat, which would test little)."""
    from ravit_keras.deploy.runtime.policy import BatteryPolicy

    num = len(scheduler.submodels) - 1
    policies = [
        scheduler.manifest.battery_policy,
        BatteryPolicy(high=0.5, low=0.15, thresholds_high=(0.1,) * num, thresholds_low=(1.2,) * num),
        BatteryPolicy(high=0.8, low=0.2, thresholds_high=tuple(0.05 * (k + 1) for k in range(num)),
                      thresholds_low=tuple(2.0 - 0.1 * k for k in range(num))),
    ]
    levels = [1.0, 0.9, 0.8, 0.65, 0.5, 0.4, 1 / 3, 0.3, 0.2, 0.15, 0.1, 0.0]
    cases = []
    for policy in policies:  # The very function the scheduler applies (policy.BatteryPolicy.thresholds_at).
        d = policy.to_dict()
        cases.append({"policy": {k: d[k] for k in ("high", "low", "thresholds_high", "thresholds_low")},
                      "levels": levels,
                      "thresholds": [policy.thresholds_at(v) for v in levels]})
    return cases


def _mac_budgets(scheduler) -> list[dict]:
    out = []
    for budget in (1.0, 0.9, 0.5, 0.4, 0.2, 0.01, 2_000_000):
        try:
            thresholds = scheduler.thresholds_for_mac_budget(budget)
            out.append({"budget": budget, "thresholds": [float(t) for t in thresholds]})
        except ValueError as e:
            out.append({"budget": budget, "error": str(e)})
    return out


def dumps(document: dict[str, Any]) -> str:
    """Compact JSON, one line per top-level entry (and per image): small and diffable."""
    lines = []
    for key, value in document.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            items = ",\n".join("  " + json.dumps(v, separators=(",", ":")) for v in value)
            lines.append(f" {json.dumps(key)}: [\n{items}\n ]")
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value, separators=(',', ':'))}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def export_golden(out_dir: str | os.PathLike, *, overwrite: bool = True,
                  progress=print, mlp_activation: str = "gelu") -> dict[str, Any]:
    """Builds, converts and records the golden fixture into ``out_dir`` (atomically).

    ``mlp_activation="relu"`` gives the second fixture (``RELU_OUT``): the same
    model and images with ReLU MLPs.

    Returns:
        The golden document (also written as ``out_dir/golden.json``).
    """
    from ravit_keras.data import load_split
    from ravit_keras.deploy.export.convert import ConversionOptions, convert
    from ravit_keras.io_utils import atomic_directory

    train = load_split("generated", "train", num_examples=NUM_THRESHOLD_CALIBRATION, num_classes=NUM_CLASSES)
    test = load_split("generated", "test", num_examples=NUM_TEST_IMAGES, num_classes=NUM_CLASSES)
    calib_x, calib_y = train.as_numpy()
    test_x, test_y = test.as_numpy()
    model = build_model(calib_x, calib_y, mlp_activation=mlp_activation)
    out_dir = Path(out_dir)
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        converted = tmp / "converted"
        convert(model, converted, calib_x, calib_y, class_names=train.class_names,
                options=ConversionOptions(mode="int8", num_calibration=NUM_CALIBRATION),
                progress=progress)
        for f in converted.iterdir():
            shutil.move(str(f), tmp / f.name)
        converted.rmdir()
        regenerate = {"gelu": REGENERATE_COMMAND, "relu": RELU_REGENERATE_COMMAND}.get(
            mlp_activation,
            f"python -m ravit_keras.deploy.export.golden --mlp-activation {mlp_activation} --out {out_dir}")
        document = golden_document(tmp, test_x, test_y, regenerate=regenerate)
        (tmp / GOLDEN_FILE).write_text(dumps(document))  # Atomic: the folder appears whole or not at all.
    if progress:
        size = sum(f.stat().st_size for f in out_dir.iterdir())
        progress(f"Wrote golden fixture ({len(document['images'])} images, "
                 f"{len(document['threshold_settings'])} threshold settings, {size / 1e3:.0f} kB) to {out_dir}")
    return document


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ravit_keras.deploy.export.golden",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"fixture folder (default {DEFAULT_OUT}); replaced")
    parser.add_argument("--mlp-activation", default="gelu", choices=("gelu", "relu", "relu6"),
                        help=f"the model's MLP activation (default gelu; relu: the fixture in {RELU_OUT})")
    args = parser.parse_args(argv)
    export_golden(args.out, mlp_activation=args.mlp_activation)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
