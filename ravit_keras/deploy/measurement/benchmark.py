"""``ravit bench``: RAViT's submodels timed and run end to end beside what they are
compared with, every model converted the same way.

Compared: a classic ViT of the same depth (optional), smaller static models at
matched accuracy (optional), the naive Keras-graph ViT (``reference_models``) and
the host's fully-connected ceiling. The model may be a Keras RAViT (converted here
to each mode) or a folder ``ravit convert`` wrote (timed as it is).

    reference_models.py  the naive Keras-graph ViT and the fully-connected ceiling
    bench_report.py      benchmark.md and the command's one summary table
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ravit_keras.console import plural
from ravit_keras.deploy.export.convert import ConversionOptions, convert
from ravit_keras.deploy.measurement.bench_report import format_benchmark, matched_accuracy
from ravit_keras.deploy.measurement.profiling import (
    benchmark_tool_path,
    cpu_description,
    interleaved_latency,
    matrix_macs,
    phone_benchmark_command,
    run_benchmark_tool,
    undelegated_ops,
)
from ravit_keras.deploy.measurement.reference_models import (
    ceiling_gmacs,
    fully_connected_ceiling_models,
    naive_float_and_int8,
)
from ravit_keras.deploy.runtime.manifest import load_manifest
from ravit_keras.deploy.runtime.modes import MODES
from ravit_keras.deploy.runtime.scheduler import RAViTScheduler
from ravit_keras.exits import evaluate_exits
from ravit_keras.io_utils import atomic_write_json, atomic_write_text

# Entropy thresholds as fractions of ln C, the largest possible entropy: the same
# grid means the same thing for 5 classes (ln C = 1.61) as for 200 (5.30). The
# paper's useful CIFAR-10 range, 0.05-0.15, is 0.02-0.065 of ln 10.
RELATIVE_THRESHOLDS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2)

STATIC_POINT = "static: every submodel"  # The one row of a model without early exits.


def relative_thresholds(num_classes: int) -> list[float]:
    """``RELATIVE_THRESHOLDS`` times ln(num_classes), rounded to 4 digits."""
    import math

    return [round(f * math.log(num_classes), 4) for f in RELATIVE_THRESHOLDS]


def operating_points(manifest, grid: Sequence[float]) -> list[dict[str, Any]]:
    """The operating points a converted folder is run at, each once: the ``grid`` (one τ
    after every exit) and the folder's own calibrated points (its default thresholds and
    each MAC-budget point of the manifest).

    The grid is relative to ln C, so on a model with few classes it may never reach the
    thresholds calibration chose; these rows time early exit as the model ships.
    Each point: ``{"tau": float or per-exit list, "point": what it is}``, e.g.
    "grid", "calibrated: default, 90/80 % of the MACs".
    """
    early = len(manifest.exits) - 1
    found: dict[tuple[float, ...], dict[str, Any]] = {}

    def add(tau, grid=False, default=False, fraction=None):
        per_exit = [tau] * early if np.ndim(tau) == 0 else list(tau)[:early]
        key = tuple(round(float(t), 6) for t in per_exit)
        row = found.setdefault(key, {"tau": float(tau) if np.ndim(tau) == 0 else [float(t) for t in per_exit],
                                     "grid": False, "default": False, "fractions": []})
        row["grid"] |= grid
        row["default"] |= default
        if fraction is not None:
            row["fractions"].append(fraction)

    for tau in grid:
        add(float(tau), grid=True)
    add(list(manifest.default_thresholds), default=True)
    for p in manifest.operating_points or ():
        add(list(p.thresholds), fraction=p.mac_fraction)
    return [{"tau": row["tau"], "point": _point_label(row)} for row in found.values()]


def _point_label(row) -> str:
    calibrated = (["default"] if row["default"] else []) + (
        ["/".join(f"{100 * f:.0f}" for f in row["fractions"] if f is not None) + " % of the MACs"]
        if any(f is not None for f in row["fractions"]) else [])
    if not calibrated and row["fractions"]:
        calibrated = ["budget"]
    label = "calibrated: " + ", ".join(calibrated) if calibrated else ""
    return "; ".join(x for x in ("grid" if row["grid"] else "", label) if x)


def _is_folder(model) -> bool:
    return isinstance(model, (str, Path))


def _folders(sources, modes, calibration_images, calibration_labels, class_names, out: Path, say):
    """``{(tag, mode): folder}``: a converted folder as it is, a Keras model converted to each mode."""
    folders = {}
    for tag, m in sources:
        if _is_folder(m):
            folders[(tag, load_manifest(m, verify_checksums=False).quantization)] = Path(m)
            continue
        for mode in modes:
            folder = out / f"{tag}_{mode}"
            if not (folder / "manifest.json").exists():
                say(f"converting {tag} {m.ravit_config.layer_spec} to {mode}")
                convert(m, folder, calibration_images, calibration_labels, class_names=class_names,
                        options=ConversionOptions(mode=mode), overwrite=True, progress=None)
            folders[(tag, mode)] = folder
    return folders


def run_benchmark(
    model,
    baseline,
    images: np.ndarray,
    labels: np.ndarray,
    calibration_images: np.ndarray | None,
    calibration_labels: np.ndarray | None,
    out_dir: str | Path,
    *,
    thresholds: Sequence[float] | None = None,
    num_threads: int = 1,
    modes: Sequence[str] = MODES,
    naive: bool = True,
    class_names: Sequence[str] | None = None,
    static_baselines: Mapping[str, Any] | None = None,
    progress=print,
) -> dict[str, Any]:
    """Converts RAViT (and what it is compared with) the same way and benchmarks them side by side.

    ``model`` is a Keras RAViT, converted here to each of ``modes``, or a folder
    ``ravit convert`` wrote, timed as it is (no Keras reference figures then).
    ``baseline`` (a classic ViT) and each of ``static_baselines`` (``{name: Keras model
    or converted folder}``, smaller models without early exit) are converted the same
    way; each static model is set beside RAViT's cheapest operating point at least as
    accurate (``matched_accuracy``). Calibration images are needed only to convert.

    Writes every submodel under ``out_dir``, times all of them interleaved in one
    process, runs ``litert-benchmark`` on each, lists the ops XNNPACK could not take,
    runs the scheduler end to end over ``images`` at each operating point (the τ grid,
    default ``relative_thresholds(num_classes)``, and each folder's calibrated points),
    and compares with the float Keras model. Single int8 and float32 FULLY_CONNECTED
    models (``CEILING_SHAPES``), timed in the same run, give the host's matrix-work
    ceiling and each submodel's share of it. Writes benchmark.json and benchmark.md.
    """
    say = progress or (lambda _msg: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sources = [("ravit", model)] + ([("vit", baseline)] if baseline is not None else [])
    sources += [(f"static-{name}", m) for name, m in (static_baselines or {}).items()]
    if thresholds is None:
        num_classes = (load_manifest(model, verify_checksums=False).num_classes if _is_folder(model)
                       else model.ravit_config.num_classes)
        thresholds = relative_thresholds(num_classes)
    folders = _folders(sources, modes, calibration_images, calibration_labels, class_names, out, say)
    result: dict[str, Any] = {"cpu": cpu_description(), "threads": num_threads, "images": int(len(images)),
                              "models": {}, "submodels": {}}
    files = {}
    for (tag, mode), folder in folders.items():
        key = f"{tag}_{mode}"
        manifest = load_manifest(folder, verify_checksums=False)
        result["models"][key] = {"tag": tag, "mode": mode, "folder": str(folder),
                                 "layers": [e.layers for e in manifest.exits]}
        previous = 0
        for e in manifest.exits:
            files[f"{key}/{e.file}"] = folder / e.file
            result["submodels"][f"{key}/{e.file}"] = {"model": key, "mode": mode,
                                                      "macs": int(e.cumulative_macs - previous)}
            previous = e.cumulative_macs
    if naive and baseline is not None and not _is_folder(baseline):
        say("building the naive Keras-graph ViT baseline")
        layers = baseline.ravit_config.layers[-1]
        for mode, p in naive_float_and_int8(baseline.ravit_config, layers, calibration_images[:200],
                                            out / "naive").items():
            files[f"naive_vit{layers}_{mode}"] = p
    ceiling = fully_connected_ceiling_models(out / "ceiling")
    files.update({p.stem: p for paths in ceiling.values() for p in paths})
    _time_files(result, files, ceiling, num_threads, say)

    keras_logits = _keras_logits(sources, images)
    result["keras"] = {f"{tag}_per_exit_accuracy": [float(np.mean(lg.argmax(-1) == labels)) for lg in logits]
                       for tag, (logits, _) in keras_logits.items()}
    e2e = {}
    for (tag, mode), folder in folders.items():
        sched = RAViTScheduler(folder, num_threads=num_threads)
        if tag.startswith("static-") or len(sched.submodels) == 1:
            points = [{"tau": 0.0, "point": STATIC_POINT}]
        else:
            points = operating_points(sched.manifest, thresholds)
        rows = []
        for point in points:
            say(f"scheduler {tag} {mode} {point['point']} τ={point['tau']} over {plural(len(images), 'image')}")
            r = sched.evaluate(images, labels, thresholds=point["tau"])
            r.pop("per_class", None)
            if tag in keras_logits:
                logits, exit_macs = keras_logits[tag]
                route = evaluate_exits(logits, labels, point["tau"], exit_macs)
                r["keras_accuracy_same_thresholds"] = route["accuracy"]
                r["keras_exit_counts"] = route["exit_counts"]
            rows.append({**point, **r})
        e2e[f"{tag}_{mode}"] = rows
        if tag == "ravit" and tag in keras_logits:
            result.setdefault("fidelity", {})[mode] = _exit_agreement(sched, images, keras_logits[tag][0])
    result["end_to_end"] = e2e
    result["matched_accuracy"] = matched_accuracy(result)
    atomic_write_json(out / "benchmark.json", result)
    atomic_write_text(out / "benchmark.md", format_benchmark(result))
    return result


def _time_files(result, files, ceiling, num_threads, say) -> None:
    """Interleaved latency, delegation and litert-benchmark figures of every file, into ``result``."""
    say(f"timing {plural(len(files), 'model')} interleaved ({plural(num_threads, 'thread')})")
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


def _keras_logits(sources, images) -> dict[str, tuple[list[np.ndarray], list[int]]]:
    """``{tag: (per-exit float logits, cumulative MACs per exit)}`` of each Keras model."""
    from ravit_keras.evaluation import predict_exit_logits  # Runs the Keras model: TensorFlow.
    from ravit_keras.model import flops

    found = {}
    for tag, m in sources:
        if not _is_folder(m):
            logits, _ = predict_exit_logits(m, images.astype(np.float32))
            found[tag] = (logits, flops.exit_macs(m.ravit_config))
    return found


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
