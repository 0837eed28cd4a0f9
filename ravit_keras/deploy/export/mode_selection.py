"""``--mode auto``: convert in several modes, time them here, keep the fastest accurate one.

Sits above the converter, the scheduler and the profiler, which know nothing of it.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ravit_keras.deploy.export.convert import ConversionOptions, convert
from ravit_keras.deploy.measurement.profiling import cpu_description, interleaved_latency, undelegated_ops
from ravit_keras.deploy.runtime.calibration_set import CalibrationSet
from ravit_keras.deploy.runtime.manifest import MANIFEST_FILE, Manifest, load_manifest
from ravit_keras.deploy.runtime.modes import MODES
from ravit_keras.deploy.runtime.scheduler import RAViTScheduler
from ravit_keras.io_utils import atomic_directory


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
    (no early exit). The fastest mode whose top-1 is within ``max_accuracy_drop``
    of the best candidate's wins; every candidate's latency, accuracy, XNNPACK
    partitions and undelegated ops are recorded in the manifest under
    ``mode_selection``. The timing is of THIS machine: for a phone, convert
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
            accuracy = sched.evaluate(calibration_images, calibration_labels, thresholds=0.0)["accuracy"]
            del sched
            files = [folder / e.file for e in manifest.exits]
            delegation = [undelegated_ops(f) for f in files]
            measured[mode] = {
                "files": files, "accuracy": accuracy,
                "xnnpack_partitions": [d["delegate_partitions"] for d in delegation],
                "ops_not_delegated": [d["not_delegated"] for d in delegation],
            }
        timing = interleaved_latency([f for m in measured.values() for f in m["files"]], rounds=3, runs=50)
        for m in measured.values():
            files = m.pop("files")
            m["submodel_latency_ms"] = [timing[str(f)]["median_ms"] for f in files]
            m["latency_ms"] = sum(m["submodel_latency_ms"])
        best_accuracy = max(m["accuracy"] for m in measured.values())
        eligible = {k: m for k, m in measured.items() if m["accuracy"] >= best_accuracy - max_accuracy_drop}
        chosen = min(eligible, key=lambda k: eligible[k]["latency_ms"])
        for mode, m in measured.items():
            say(f"  {mode}: {m['latency_ms']:.3f} ms (all submodels, 1 thread), top-1 "
                f"{100 * m['accuracy']:.2f}% on the calibration images")
        say(f"Chose {chosen}: fastest here within {100 * max_accuracy_drop:.1f} points of the best accuracy")
        manifest = load_manifest(tmp / chosen)
        manifest = dataclasses.replace(manifest, extra={**manifest.extra, "mode_selection": {
            "chosen": chosen, "host": cpu_description(), "measured_on_this_host": measured,
            "rule": f"fastest mode within {max_accuracy_drop} top-1 of the best, timed on the converting machine",
        }})
        (tmp / chosen / MANIFEST_FILE).write_text(manifest.dumps())
        for entry in (tmp / chosen).iterdir():
            os.replace(entry, tmp / entry.name)
        for mode in candidates:
            if mode != chosen:
                shutil.rmtree(tmp / mode)
        (tmp / chosen).rmdir()
    return manifest

