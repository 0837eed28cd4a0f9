"""Early-exit evaluation of a trained Keras RAViT over a dataset.

The model runs once over the data; every exit's logits are kept and all the
early-exit figures (per-exit accuracy, routed accuracy at thresholds, sweeps,
calibrated thresholds) are computed from them with ``ravit_keras.exits``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ravit_keras import exits, runs
from ravit_keras.config import RAViTConfig
from ravit_keras.exits.intervals import operating_point_interval, resolution_warning
from ravit_keras.exits.plots import plot_operating_point
from ravit_keras.io_utils import atomic_write_json
from ravit_keras.model import flops

REPORT_FILES = ("report.json", "sweep.csv", "sweep.json", "accuracy_vs_mflops.png", "exit_histogram.png",
                "per_class.png", "confusion_matrix.png")


def predict_exit_logits(model, data, batch_size: int = 256,
                        verbose: int | str = 0) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Runs ``model`` once and returns ``(logits of every exit in exit order, labels)``.

    Args:
        model: a ``RAViT``.
        data: a ``DataSplit`` (labels are returned), a batched ``tf.data`` pipeline
            of ``(images, labels-or-dict)``, or a uint8/float array of images
            (labels are then ``None``).
    """
    import keras

    from ravit_keras.data import DataSplit

    names = model.ravit_config.exit_names
    if isinstance(data, DataSplit) and keras.backend.backend() != "tensorflow":
        from ravit_keras.data.batches import SplitBatches  # NumPy and Pillow: no TensorFlow on JAX.

        batches = SplitBatches(data, model.ravit_config.image_size, names, batch_size, training=False,
                               with_seeds=False)
        outputs = model.predict(batches, verbose=verbose)
        return [np.asarray(outputs[n]) for n in names], batches.labels.astype(np.int64)
    if isinstance(data, DataSplit):
        from ravit_keras.data import make_pipeline

        data = make_pipeline(data, model.ravit_config, batch_size, training=False)
    if isinstance(data, np.ndarray):
        outputs = model.predict(data.astype("float32"), batch_size=batch_size, verbose=verbose)
        return [np.asarray(outputs[n]) for n in names], None
    # predict() runs a compiled function; labels come from a second, cheap pass.
    outputs = model.predict(data.map(lambda x, y: x), verbose=verbose)
    labels = np.concatenate([
        np.asarray(y[names[0]] if isinstance(y, Mapping) else y) for y in data.map(lambda x, y: y)
    ])
    return [np.asarray(outputs[n]) for n in names], labels.astype(np.int64)


def evaluate_logits(
    config: RAViTConfig,
    exit_logits: Sequence[np.ndarray],
    labels: np.ndarray,
    *,
    thresholds: Any = None,
    sweep_thresholds: Sequence[float] | None = None,
    calibration: tuple[Sequence[np.ndarray], np.ndarray] | None = None,
    mac_budget: float | None = None,
    max_accuracy_drop: float | None = None,
    baselines: Mapping[str, tuple[float, float]] | None = None,
    class_names: Sequence[str] | None = None,
    out_dir: str | os.PathLike | None = None,
    calibration_source: str | None = None,
) -> dict[str, Any]:
    """All early-exit figures of one model from its exit logits.

    Args:
        config: the model's configuration (exit costs come from the cost model).
        exit_logits, labels: the evaluation split.
        thresholds: optional τ (scalar or per exit) to report routed results for.
        sweep_thresholds: τ grid for the sweep (default: ``exits.default_threshold_grid``).
        calibration: optional ``(exit_logits, labels)`` of a separate split on
            which thresholds are calibrated to ``mac_budget`` or ``max_accuracy_drop``;
            the chosen thresholds are then evaluated on the evaluation split.
        baselines: optional ``{name: (mflops, accuracy)}`` points for the plot.
        class_names: names of the labels (default: placeholders) for the per-class
            figures, which are computed at the operating point the report states
            (``operating_point``: the given thresholds, else the calibrated ones,
            else no early exit).
        calibration_source: what the calibration split is (stated in the report).
        out_dir: if given, writes report.json, sweep.csv, sweep.json,
            accuracy_vs_mflops.png, exit_histogram.png, per_class.png and
            confusion_matrix.png there.
    """
    exit_macs = flops.exit_macs(config)
    macs = flops.model_macs(config)
    report: dict[str, Any] = {
        "config": config.name,
        "layers": config.layer_spec,
        "num_images": int(len(labels)),
        "exit_names": list(config.exit_names),
        "exit_macs": exit_macs,
        "macs": macs,
        "mflops": 2 * macs / 1e6,
    }
    no_exit = exits.evaluate_exits(exit_logits, labels, 0.0, exit_macs)
    report["per_exit_accuracy"] = no_exit["per_exit_accuracy"]
    report["accuracy"] = no_exit["accuracy"]
    if thresholds is not None:
        report["at_thresholds"] = exits.evaluate_exits(exit_logits, labels, thresholds, exit_macs)
    rows = []
    if len(exit_logits) > 1:
        rows = exits.sweep(exit_logits, labels, exit_macs, sweep_thresholds)
        report["sweep"] = rows
    if calibration is not None and len(exit_logits) > 1:
        cal_logits, cal_labels = calibration
        chosen = exits.calibrate_thresholds(
            cal_logits, cal_labels, exit_macs, mac_budget=mac_budget,
            max_accuracy_drop=max_accuracy_drop,
        )
        report["calibrated"] = {
            "thresholds": chosen["thresholds"],
            "mac_budget": mac_budget,
            "max_accuracy_drop": max_accuracy_drop,
            "calibrated_on": f"{len(cal_labels)} {calibration_source or 'calibration images'}",
            "on_calibration_split": chosen["calibration"],
            "on_evaluation_split": exits.evaluate_exits(
                exit_logits, labels, chosen["thresholds"], exit_macs
            ),
            "interval_on_calibration_split": operating_point_interval(
                cal_logits, cal_labels, exit_macs, chosen["thresholds"], full_macs=macs),
        }
        if mac_budget is not None:
            warning = resolution_warning([{"mac_fraction": mac_budget / macs, "thresholds": chosen["thresholds"],
                                           "interval": report["calibrated"]["interval_on_calibration_split"]}])
            if warning:
                report["calibrated"]["warning"] = warning
    names = runs.class_names_or_placeholders(class_names, np.asarray(exit_logits[0]).shape[-1])
    point_name, taus = "no early exit", [0.0] * (len(exit_logits) - 1)
    if thresholds is not None:
        point_name, taus = "given thresholds", report["at_thresholds"]["thresholds"]
    elif "calibrated" in report:
        point_name, taus = "calibrated thresholds", report["calibrated"]["thresholds"]
    routing = exits.route(exit_logits, taus if len(exit_logits) > 1 else 0.0)
    point = exits.evaluate_exits(exit_logits, labels, taus if len(exit_logits) > 1 else 0.0, exit_macs)
    report["operating_point"] = {"name": point_name, "thresholds": [float(t) for t in taus],
                                 "accuracy": point["accuracy"], "avg_mflops": point["avg_mflops"],
                                 "exit_counts": point["exit_counts"]}
    report["per_class"] = exits.per_class_report(labels, routing.predictions, routing.exit_index,
                                                 names, config.exit_names)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "report.json", report)
        if rows:
            exits.save_sweep(rows, out / "sweep.csv")
            exits.save_sweep(rows, out / "sweep.json")
            marked = None if point_name == "no early exit" else (
                f"{point_name} (τ = {', '.join(f'{t:.3g}' for t in taus)})", point["avg_mflops"], point["accuracy"])
            exits.plot_accuracy_vs_flops(
                rows, out / "accuracy_vs_mflops.png", baselines=baselines,
                title=f"{config.name} RAViT {config.layer_spec}", operating_point=marked,
                mac_budget_mflops=None if mac_budget is None else 2 * mac_budget / 1e6,
            )
        tau_text = ", ".join(f"{t:.3g}" for t in taus) or "-"
        plot_operating_point(
            report["per_class"], point["exit_counts"], config.exit_names,
            heading=f"{point_name}, τ = {tau_text}\ntop-1 {100 * point['accuracy']:.2f}%, "
                    f"{point['avg_mflops']:.2f} MFLOPs/image",
            subtitle=f"RAViT {config.layer_spec}, {point_name} (τ = {tau_text})",
            histogram=out / "exit_histogram.png", per_class_path=out / "per_class.png",
            confusion=out / "confusion_matrix.png")
    return report


def evaluate_baselines(baselines: Mapping[str, str], data, batch_size: int = 256) -> dict[str, tuple[float, float]]:
    """``{name: (MFLOPs, top-1 of the last exit)}`` of trained models (classic ViTs) on ``data``,
    the points ``evaluate_logits`` draws beside the early-exit curve."""
    from ravit_keras.model import load_ravit

    points = {}
    for name, path in baselines.items():
        base = load_ravit(str(runs.model_file(path)))
        b_logits, b_labels = predict_exit_logits(base, data, batch_size)
        acc = float(np.mean(b_logits[-1].argmax(-1) == b_labels))
        points[name] = (2 * flops.model_macs(base.ravit_config) / 1e6, acc)
    return points


def report_warnings(report: Mapping[str, Any]) -> list[str]:
    """The report's warnings, one line each (calibration images too few for the budget asked)."""
    calibrated = report.get("calibrated") or {}
    return [calibrated["warning"]] if "warning" in calibrated else []


def format_report(report: Mapping[str, Any], *, warnings: bool = True) -> str:
    """A short human-readable summary of ``evaluate_logits``'s report (``warnings=False``: without
    the warning lines, which ``report_warnings`` gives, for a caller that prints them apart)."""
    from ravit_keras.console import plural

    lines = [
        f"RAViT {report['layers']} ({report['config']}), {plural(report['num_images'], 'image')}, "
        f"{report['mflops']:.2f} MFLOPs without early exit",
        "per-exit accuracy: " + ", ".join(
            f"{n} {100 * a:.2f}%" for n, a in zip(report["exit_names"], report["per_exit_accuracy"])
        ),
    ]
    if "at_thresholds" in report:
        r = report["at_thresholds"]
        lines.append(
            f"thresholds {r['thresholds']}: accuracy {100 * r['accuracy']:.2f}%, "
            f"{r['avg_mflops']:.2f} MFLOPs, exits {r['exit_counts']}"
        )
    if report.get("sweep"):
        lines.append(f"{'tau':>8} {'accuracy':>9} {'MFLOPs':>8}  exits  (rows equal to the one above are left out)")
        previous = last_accuracy = None
        for row in report["sweep"]:
            if row["exit_counts"] == previous and row["accuracy"] == last_accuracy:
                continue
            previous, last_accuracy = row["exit_counts"], row["accuracy"]
            tau = row.get("tau")
            tau = f"{tau:8.3f}" if tau is not None else f"{str(row['thresholds']):>8}"
            lines.append(
                f"{tau} {100 * row['accuracy']:8.2f}% {row['avg_mflops']:8.2f}  {row['exit_counts']}"
            )
    if "calibrated" in report:
        c = report["calibrated"]
        e = c["on_evaluation_split"]
        lines.append(
            f"calibrated thresholds {[round(t, 4) for t in c['thresholds']]}: "
            f"accuracy {100 * e['accuracy']:.2f}%, {e['avg_mflops']:.2f} MFLOPs on the evaluation split "
            f"(calibrated on {c['calibrated_on']})"
        )
        if "interval_on_calibration_split" in c:
            iv, k = c["interval_on_calibration_split"], c["on_calibration_split"]
            mflops = [2 * m / 1e6 for m in iv["avg_macs"]]
            lines.append(
                f"  on the calibration images: accuracy {100 * k['accuracy']:.2f}% "
                f"[{100 * iv['accuracy'][0]:.1f}, {100 * iv['accuracy'][1]:.1f}], {k['avg_mflops']:.2f} MFLOPs "
                f"[{mflops[0]:.2f}, {mflops[1]:.2f}] ({100 * iv['confidence']:g} % intervals)")
        if "warning" in c and warnings:
            lines.append(f"warning: {c['warning']}")
    if "per_class" in report:
        point = report["operating_point"]["name"]
        lines.append(f"{exits.format_per_class(report['per_class'])}\n"
                     f"({'without early exit' if point == 'no early exit' else 'at the ' + point})")
    return "\n".join(lines)
