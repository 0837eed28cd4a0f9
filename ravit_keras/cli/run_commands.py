"""Sub-commands on converted submodels (no TensorFlow unless a Keras model is given):
run, predict, profile.

Each parses its flags into a call of the scheduler, the prediction helpers or
the profiler and prints what it returns.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ravit_keras.cli.common import (
    check_outputs,
    data_input,
    data_source,
    is_converted,
    load_model,
    model_input,
    model_label,
    path_input,
    say,
    select_submodels,
    thresholds_text,
)
from ravit_keras.console import plural


def _scheduler_thresholds(args, sched) -> None:
    chosen = [a for a in ("thresholds", "mac_budget", "latency_budget_ms", "battery")
              if getattr(args, a, None) is not None]
    if len(chosen) > 1:
        flags = ", ".join("--" + c.replace("_", "-") for c in chosen)
        raise ValueError("Give at most one of --thresholds, --mac-budget, --latency-budget-ms, --battery; "
                         f"got {flags}.")
    if args.thresholds is not None:
        sched.set_thresholds(args.thresholds)
    elif getattr(args, "mac_budget", None) is not None:
        sched.set_thresholds(sched.thresholds_for_mac_budget(args.mac_budget))
    elif getattr(args, "latency_budget_ms", None) is not None:
        sched.set_thresholds(sched.thresholds_for_latency_budget(args.latency_budget_ms))
    elif getattr(args, "battery", None) is not None:
        sched.set_thresholds(sched.battery_thresholds(args.battery))


def _stream(split):
    """``(images, labels)`` iterators over one pass of ``split`` (flat memory): the
    scheduler takes the label right after each image, so both read one slot."""
    slot = []

    def images():
        for x, y in split.iter_numpy():
            slot[:] = [y]
            yield x

    def labels():
        while True:
            yield slot[0]

    return images(), labels()


def _overhead_text(report) -> str:
    # A percentage of a 0.05 ms invoke reads like a bug; the absolute cost says what it is.
    return (f"scheduler's own time {1e3 * report['scheduler_overhead_ms']:.0f} µs/image beside "
            f"{1e3 * report['invoke_ms_mean']:.0f} µs of submodel invokes")


def cmd_run(args) -> int:
    """Stream a labelled split through the scheduler; report, answers and plots."""
    from ravit_keras.console import Progress
    from ravit_keras.data.calibration import load_reported_converted
    from ravit_keras.data.source import matched
    from ravit_keras.deploy.runtime.scheduler import RAViTScheduler
    from ravit_keras.exits import format_per_class
    from ravit_keras.io_utils import atomic_write_json, check_writable_file

    select_submodels(args)
    outputs = ("out", "per_image", "plot", "per_class_plot", "confusion_plot")
    check_outputs(model_input("--model", args.model) + data_input(args),
                  [("--" + flag.replace("_", "-"), getattr(args, flag)) for flag in outputs])
    for flag in ("out", "plot", "per_class_plot", "confusion_plot"):
        if getattr(args, flag):
            check_writable_file(getattr(args, flag), "--" + flag.replace("_", "-"))
    writer = None
    if args.per_image:
        from ravit_keras.prediction import PredictionWriter, from_classification

        writer = PredictionWriter(args.per_image, "--per-image")
    sched = RAViTScheduler(args.model, num_threads=args.threads)
    _scheduler_thresholds(args, sched)
    m = sched.manifest
    shape = (m.image.height, m.image.width)
    # Figures on the test split leave out the images the manifest's thresholds were
    # calibrated on (as `ravit eval` does from a run record), unless thresholds are given by hand.
    calibrating = args.thresholds is None or any(t > 0 for t in args.thresholds)
    loaded, _ = load_reported_converted(data_source(args), m.calibration, args.split, image_size=shape,
                                        num_classes=m.num_classes, limit=args.limit, calibrating=calibrating,
                                        model_name=model_label(args), notes=say)
    split = matched(loaded, sched.labels, f"{args.data} {args.split}", say)
    if split.num_examples == 0:
        raise ValueError(f"The {args.split} split of {args.data} holds no images.")
    images, labels = _stream(split)
    print(f"Scheduling {plural(split.num_examples, f'{args.data} {args.split} image')} through "
          f"{plural(len(sched.submodels), f'{m.quantization} submodel')}, thresholds "
          f"{thresholds_text(sched.thresholds)}",
          flush=True)
    bar = Progress(split.num_examples, mode=args.progress)
    files = split.files

    def on_result(i, c, label):
        if writer is not None:
            source = files[i] if files is not None else f"#{i}"
            writer.write(from_classification(c, source, sched.labels, args.top_k, label))
        if (i + 1) % 50 == 0:
            bar.update(i + 1)

    if writer is not None:
        with writer:
            report = sched.evaluate(images, labels, on_result=on_result)
    else:
        report = sched.evaluate(images, labels, on_result=on_result)
    bar.close()
    report["class_names"] = split.class_names
    lat = report["latency_ms"]
    print(f"accuracy {100 * report['accuracy']:.2f}%  exits {report['exit_counts']}  "
          f"{report['avg_mflops']:.2f} MFLOPs/image")
    print(f"latency per image: mean {lat['mean']:.3f} ms, p50 {lat['p50']:.3f}, p95 {lat['p95']:.3f}, "
          f"p99 {lat['p99']:.3f} (after {plural(report['warmup_invokes'], 'warm-up invoke')} of each "
          f"submodel, not counted); {_overhead_text(report)}")
    print(format_per_class(report["per_class"]))
    if args.out:
        atomic_write_json(args.out, report)
        print(f"Wrote {args.out}")
    if writer is not None:
        print(f"Wrote {plural(writer.count, 'per-image answer')} to {args.per_image}")
    taus = ", ".join(f"{t:.3g}" for t in sched.thresholds) or "-"
    setting = f"{m.quantization} scheduler, τ = {taus}"
    from ravit_keras.exits.plots import plot_operating_point

    for path in plot_operating_point(
            report["per_class"], report["exit_counts"], sched.exit_names, heading=(
                f"{setting}\ntop-1 {100 * report['accuracy']:.2f}%, {report['avg_mflops']:.1f} MFLOPs/image"),
            subtitle=setting, histogram=args.plot, per_class_path=args.per_class_plot,
            confusion=args.confusion_plot):
        print(f"Wrote {path}")
    return 0


def cmd_predict(args) -> int:
    """Classify image files with converted submodels or a Keras model."""
    from ravit_keras import images as image_io
    from ravit_keras import prediction

    select_submodels(args)
    inputs = model_input("--model", args.model)
    for path in args.images:
        inputs += path_input("image path", path)
    check_outputs(inputs, [("--out", args.out)])
    writer = prediction.PredictionWriter(args.out) if args.out else None
    files = image_io.images_in(args.images)
    if args.limit:
        files = files[: args.limit]
    warn = lambda msg: print(f"ravit predict: warning: {msg}", file=sys.stderr)  # noqa: E731
    if is_converted(args.model):
        from ravit_keras.deploy.runtime.scheduler import RAViTScheduler

        sched = RAViTScheduler(args.model, num_threads=args.threads)
        if args.thresholds is not None:
            sched.set_thresholds(args.thresholds)
        m = sched.manifest
        size = (m.image.height, m.image.width)
        kind = (f"{plural(len(sched.submodels), f'{m.quantization} submodel')}, thresholds "
                f"{thresholds_text(sched.thresholds)}")
        dtype = sched.image_dtype
        items = ((f, img if dtype == "uint8" else img.astype(np.float32))
                 for f, img in prediction.read_images(files, size, args.skip_bad_images, warn))
        answers = prediction.predict_with_scheduler(sched, items, args.top_k)
    else:
        from ravit_keras import console, runs

        console.import_tensorflow_quietly()
        model = load_model(args.model)
        config = model.ravit_config
        taus = 0.0 if args.thresholds is None else args.thresholds
        from ravit_keras.exits import validate_thresholds

        taus = validate_thresholds(taus, len(config.exit_names), config.num_classes)
        names = runs.class_names(args.model, config.num_classes)
        kind = f"Keras RAViT {config.layer_spec}, thresholds {thresholds_text(taus)}"
        items = list(prediction.read_images(files, config.image_size, args.skip_bad_images, warn))
        answers = prediction.predict_with_keras(model, items, taus, args.top_k, args.batch_size, names)
    print(f"Classifying {plural(len(files), 'image')} with {kind}", flush=True)
    from ravit_keras.console import Progress

    bar = Progress(len(files), mode=args.progress if writer is not None else "none")
    counts: dict[str, int] = {}

    def consume():
        for i, p in enumerate(answers):
            counts[p.exit_name] = counts.get(p.exit_name, 0) + 1
            if writer is not None:
                writer.write(p)
                bar.update(i + 1)
            else:
                print(prediction.format_prediction(p))

    if writer is not None:
        with writer:
            consume()
    else:
        consume()
    bar.close()
    total = sum(counts.values())
    print(f"{plural(total, 'image')}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if writer is not None:
        print(f"Wrote {plural(writer.count, 'answer')} to {args.out}")
    return 0


def cmd_profile(args) -> int:
    """Per-operator time of each submodel (XNNPACK's own operators included)."""
    from ravit_keras.deploy.measurement.op_profile import format_profile, profile_ops
    from ravit_keras.io_utils import atomic_write_json, check_writable_file

    check_outputs(model_input("--model", args.model), [("--json", args.json)])
    target = Path(args.model)
    if target.is_dir():
        from ravit_keras.deploy.runtime.manifest import load_manifest

        manifest = load_manifest(target)  # Names a missing or mismatched submodel first.
        files = [target / e.file for e in manifest.exits]
    elif target.is_file():
        files = [target]
    else:
        raise FileNotFoundError(f"--model {target}: no such folder or .tflite file.")
    if args.json:
        check_writable_file(args.json, "--json")
    profiles = []
    for path in files:
        profile = profile_ops(path, runs=args.runs, num_threads=args.threads)
        profiles.append(profile)
        print(format_profile(profile, top=args.top, every_op=args.every_op), flush=True)
    if len(profiles) > 1:
        print(f"All {plural(len(profiles), 'submodel')}: {sum(p.total_us for p in profiles):.1f} µs per image "
              "through every exit (profiler overhead included)")
    if args.json:
        from ravit_keras.deploy.measurement.profiling import cpu_description

        atomic_write_json(args.json, {"host": cpu_description(), "submodels": [p.to_dict() for p in profiles]})
        print(f"Wrote {args.json}")
    return 0
