"""``--mode auto``: convert in several modes, time them here, keep the fastest accurate one.

Sits above the converter, the scheduler and the profiler, which know nothing of it.
"As accurate" is ``choose_mode``'s rule, decided on paired answers so that one or
two images cannot flip it.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ravit_keras.deploy.export.convert import ConversionOptions, convert
from ravit_keras.deploy.measurement.profiling import cpu_description, interleaved_latency, undelegated_ops
from ravit_keras.deploy.runtime.calibration_set import CalibrationSet
from ravit_keras.deploy.runtime.manifest import MANIFEST_FILE, Manifest, load_manifest
from ravit_keras.deploy.runtime.modes import MODES
from ravit_keras.deploy.runtime.scheduler import RAViTScheduler
from ravit_keras.exits.intervals import CONFIDENCE, paired_accuracy_loss
from ravit_keras.io_utils import atomic_directory

# A mode must answer as the reference does on this share of the images: one that changes
# more answers (twice the default 1-point tolerance) is another model, even when its
# accuracy happens to match on these images.
MIN_AGREEMENT = 0.98
REFERENCE_MODE = "float32"


def choose_mode(predictions: Mapping[str, np.ndarray], labels: np.ndarray, latency_ms: Mapping[str, float], *,
                max_accuracy_drop: float = 0.01, min_agreement: float = MIN_AGREEMENT,
                confidence: float = CONFIDENCE) -> tuple[str, dict[str, Any]]:
    """The fastest mode as accurate as the reference, and the numbers behind each verdict.

    The reference is ``float32`` (the unquantised model) when it is a candidate,
    else the most accurate candidate. Another mode is as accurate when, on these
    images, (1) its top-1 answers agree with the reference's on at least
    ``min_agreement`` of them, and (2) the one-sided ``confidence`` upper bound of
    its accuracy loss against the reference (``paired_accuracy_loss``: McNemar's
    discordant pairs, Wilson bound) is at most ``max_accuracy_drop``. Not the raw
    gap: with 150 images one image is 0.67 points.

    Args:
        predictions: per mode, the (N,) top-1 classes on the labelled images.
        labels: the (N,) true classes.
        latency_ms: per mode, the measured no-early-exit latency.

    Returns:
        ``(chosen, {mode: {..paired figures.., "as_accurate": bool}})``; the
        reference's entry compares it with itself.
    """
    labels = np.asarray(labels).ravel()
    correct = {m: np.asarray(p).ravel() == labels for m, p in predictions.items()}
    reference = (REFERENCE_MODE if REFERENCE_MODE in predictions
                 else max(predictions, key=lambda m: correct[m].mean()))  # The first of equals.
    verdicts = {}
    for mode, pred in predictions.items():
        agreement = float(np.mean(np.asarray(pred).ravel() == np.asarray(predictions[reference]).ravel()))
        v = paired_accuracy_loss(correct[reference], correct[mode], agreement=agreement, confidence=confidence)
        v["as_accurate"] = mode == reference or (agreement >= min_agreement
                                                 and v["loss_upper_bound"] <= max_accuracy_drop)
        verdicts[mode] = v
    chosen = min((m for m in predictions if verdicts[m]["as_accurate"]), key=lambda m: latency_ms[m])
    return chosen, {"reference": reference, "modes": verdicts}


def convert_fastest(
    model,
    out_dir: str | os.PathLike,
    calibration_images: np.ndarray,
    calibration_labels: np.ndarray,
    *,
    candidates: Sequence[str] = MODES,
    max_accuracy_drop: float = 0.01,
    class_names: Sequence[str] | None = None,
    options: ConversionOptions | None = None,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = print,
    calibration_source: str = "calibration images",
    calibration_set: CalibrationSet | None = None,
) -> Manifest:
    """Converts in every candidate mode and keeps the fastest one that stays accurate.

    Each candidate is timed here (its submodels interleaved, 1 thread, summed:
    the no-early-exit latency) and evaluated on the labelled calibration images
    (no early exit). The fastest mode as accurate as the reference wins
    (``choose_mode``: agreement with float32 and a confidence bound on the
    accuracy loss, at most ``max_accuracy_drop``); every candidate's latency,
    accuracy, agreement, loss bound, XNNPACK partitions and undelegated ops are
    recorded in the manifest under ``mode_selection``. The timing is of THIS machine: for a phone, convert
    with the mode that is fast there (``int8`` on ARM CPUs with dot-product
    instructions).
    """
    say = progress or (lambda _msg: None)
    options = options or ConversionOptions()
    if calibration_labels is None:
        raise ValueError("Choosing a mode needs labelled calibration images.")
    unknown = [m for m in candidates if m not in MODES]
    if unknown or not candidates:
        raise ValueError(f"Candidate modes {unknown or '(none)'} are not among {MODES}.")
    out_dir = Path(out_dir)
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        measured = {}
        for mode in candidates:
            folder = tmp / mode
            convert(model, folder, calibration_images, calibration_labels, class_names=class_names,
                    calibration_source=calibration_source, calibration_set=calibration_set,
                    options=dataclasses.replace(options, mode=mode), progress=progress)
            manifest = load_manifest(folder)
            sched = RAViTScheduler(folder)
            answers = np.zeros(len(calibration_labels), np.int64)

            def keep(i, c, _label, answers=answers):
                answers[i] = c.label
            accuracy = sched.evaluate(calibration_images, calibration_labels, thresholds=0.0,
                                      on_result=keep)["accuracy"]
            del sched
            files = [folder / e.file for e in manifest.exits]
            delegation = [undelegated_ops(f) for f in files]
            measured[mode] = {
                "files": files, "accuracy": accuracy, "answers": answers,
                "xnnpack_partitions": [d["delegate_partitions"] for d in delegation],
                "ops_not_delegated": [d["not_delegated"] for d in delegation],
            }
        timing = interleaved_latency([f for m in measured.values() for f in m["files"]], rounds=3, runs=50)
        for m in measured.values():
            files = m.pop("files")
            m["submodel_latency_ms"] = [timing[str(f)]["median_ms"] for f in files]
            m["latency_ms"] = sum(m["submodel_latency_ms"])
        chosen, verdicts = choose_mode({k: m.pop("answers") for k, m in measured.items()},
                                       np.asarray(calibration_labels),
                                       {k: m["latency_ms"] for k, m in measured.items()},
                                       max_accuracy_drop=max_accuracy_drop)
        reference = verdicts["reference"]
        for mode, m in measured.items():
            v = verdicts["modes"][mode]
            versus = "" if mode == reference else (
                f", agrees with {reference} on {100 * v['agreement']:.1f}%, loses at most "
                f"{100 * v['loss_upper_bound']:.2f} points ({100 * v['confidence']:g} % bound)"
                + ("" if v["as_accurate"] else ": not as accurate"))
            say(f"  {mode}: {m['latency_ms']:.3f} ms (all submodels, 1 thread), top-1 "
                f"{100 * m['accuracy']:.2f}% on {len(calibration_labels)} calibration images{versus}")
        say(f"Chose {chosen}: fastest here of the modes as accurate as {reference} (agreement >= "
            f"{100 * MIN_AGREEMENT:g}%, accuracy loss <= {100 * max_accuracy_drop:g} points at "
            f"{100 * CONFIDENCE:g} % confidence)")
        manifest = load_manifest(tmp / chosen)
        manifest = dataclasses.replace(manifest, extra={**manifest.extra, "mode_selection": {
            "chosen": chosen, "host": cpu_description(), "measured_on_this_host": measured,
            "accuracy_comparison": verdicts,
            "rule": (f"fastest mode, timed on the converting machine, among those whose top-1 agrees with "
                     f"the reference's on >= {MIN_AGREEMENT} of the calibration images and whose accuracy "
                     f"loss against it has a one-sided {CONFIDENCE} upper bound <= {max_accuracy_drop} "
                     "(McNemar's discordant pairs, Wilson bound)"),
        }})
        (tmp / chosen / MANIFEST_FILE).write_text(manifest.dumps())
        for entry in (tmp / chosen).iterdir():
            os.replace(entry, tmp / entry.name)
        for mode in candidates:
            if mode != chosen:
                shutil.rmtree(tmp / mode)
        (tmp / chosen).rmdir()
    return manifest

