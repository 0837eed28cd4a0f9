"""The ``ravit`` command line: flops, train, eval, convert, run, predict, bench, demo.

Each sub-command is a thin layer over a library function; ``main(argv)`` is
importable for tests and notebooks. Output is quiet by default (the toolkit's
own lines: progress, results, files written); ``--verbose`` shows TensorFlow's
and LiteRT's own logs, ``--debug`` a traceback on errors. ``run`` and ``predict``
on converted submodels import no TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ravit_keras.deploy.runtime.modes import MODES as CONVERSION_MODES  # noqa: E402  (no TensorFlow import)

MODES = ("auto",) + CONVERSION_MODES


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows every flag's default (where it has one) after its help."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if default not in (None, False, argparse.SUPPRESS) and "%(default)" not in text and action.option_strings:
            text += " (default: %(default)s)"
        return text


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


def _conversion_modes(text: str) -> tuple[str, ...]:
    modes = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in modes if m not in CONVERSION_MODES]
    if unknown or not modes:
        raise argparse.ArgumentTypeError(
            f"expected modes among {', '.join(CONVERSION_MODES)} separated by commas, got {text!r}")
    return modes


def _model_path(text: str) -> str:
    """A --model value: a path, or ``preset:NAME`` for a trained model that ships with the package."""
    from ravit_keras.presets import resolve_model_path

    try:
        return resolve_model_path(text)
    except LookupError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _add_model_args(p: argparse.ArgumentParser, default_config: str = "cifar10") -> None:
    g = p.add_argument_group("model")
    g.add_argument("--config", default=default_config, help="preset name (cifar10, tinyimagenet, imagenet, tiny, tiny3, ...)")
    g.add_argument("--layers", help="layers per branch, e.g. 1-3 or 2-0-3 (default: the preset's)")
    g.add_argument("--scale", type=float, help="resolution factor between branches (default: the preset's, 2)")
    g.add_argument("--hidden-dim", type=_positive_int, help="embedding width d (default: the preset's)")
    g.add_argument("--mlp-dim", type=_positive_int, help="MLP width h (default: the preset's)")
    g.add_argument("--num-heads", type=_positive_int, help="attention heads (default: the preset's)")
    g.add_argument("--num-classes", type=_positive_int, help="classes of the exit heads (default: the preset's)")
    g.add_argument("--dropout", type=float, help="dropout rate (default: the preset's)")
    g.add_argument("--exit-weights", type=_floats, help="per-exit loss weights, e.g. 0.3,0.7 (default: the preset's)")
    g.add_argument("--mlp-layers",
                   help="per branch, how many leading layers are attention-free MLP blocks (LIT), e.g. 0-1 "
                        "with --layers 1-3; a branch's last layer keeps attention (default: none)")
    g.add_argument("--mlp-activation", choices=("gelu", "relu", "relu6"),
                   help="MLP activation: gelu (the paper's) or relu/relu6, which int8 fully-connected "
                        "layers fuse as their output clamp (default: the preset's, gelu)")


def _config_from_args(args):
    from ravit_keras.config import get_config

    overrides = {
        k: v for k, v in dict(
            scale=args.scale, hidden_dim=args.hidden_dim, mlp_dim=args.mlp_dim,
            num_heads=args.num_heads, num_classes=args.num_classes, dropout=args.dropout,
            exit_weights=args.exit_weights, mlp_layers=args.mlp_layers,
            mlp_activation=args.mlp_activation,
        ).items() if v is not None
    }
    return get_config(args.config, layers=args.layers, **overrides)


def _add_data_args(p: argparse.ArgumentParser, default: str | None = None) -> None:
    g = p.add_argument_group("data (see the README's 'Data sources' for the accepted layouts)")
    g.add_argument("--data", default=default, required=default is None,
                   help="'generated', 'tfds:NAME', or a path: CIFAR-10 python folder or .tar.gz, "
                        "tiny-imagenet-200 folder, folder of class sub-folders, or .npz")
    g.add_argument("--data-dir", help="tensorflow-datasets data directory (for tfds:NAME)")
    g.add_argument("--holdout-fraction", type=float, default=0.1,
                   help="share of training images held out as 'test' where the source has no test split")
    g.add_argument("--skip-bad-images", action="store_true",
                   help="leave out image files that cannot be decoded, with a warning naming each "
                        "(default: stop at the first, naming it)")


def _add_calibration_args(p: argparse.ArgumentParser, default_images: int) -> None:
    g = p.add_argument_group("calibration")
    g.add_argument("--calibration-images", type=_positive_int, default=default_images,
                   help="labelled images the early-exit thresholds are calibrated on")
    g.add_argument("--calibration-split", default="auto", choices=("auto", "calibration", "train", "test"),
                   help="split they are taken from. auto: the training images `ravit train` held out "
                        "(--calibration-holdout), which the model never saw; without that record, the "
                        "training split, with a note that this is optimistic")


def _add_progress(p: argparse.ArgumentParser, choices=("auto", "bar", "none")) -> None:
    p.add_argument("--progress", default="auto", choices=choices,
                   help="progress display; auto: a bar in a terminal, "
                        + ("one line per epoch otherwise" if "epoch" in choices else "nothing otherwise"))


def _load(args, split: str, image_size, num_classes: int, limit: int | None,
          calibration_fraction: float = 0.0, seed: int = 0):
    from ravit_keras.data import load_split

    loaded = load_split(
        args.data, split, data_dir=args.data_dir, image_size=image_size,
        holdout_fraction=args.holdout_fraction, num_examples=limit,
        num_classes=num_classes if args.data == "generated" else None,
        calibration_fraction=calibration_fraction, seed=seed,
    )
    if getattr(args, "skip_bad_images", False):
        loaded = loaded.without_unreadable(
            lambda reason: print(f"ravit {args.command}: warning: skipped: {reason}", file=sys.stderr))
    return loaded


def _run_record(model_path: str) -> dict:
    """The run folder's config.json beside a trained model ({} when there is none)."""
    p = Path(model_path)
    try:
        record = json.loads(((p if p.is_dir() else p.parent) / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _load_calibration(args, config, model_classes):
    """The labelled images thresholds are calibrated on, and where they come from."""
    record = _run_record(args.model)
    fraction = float((record.get("data") or {}).get("calibration_holdout") or 0.0)
    seed = int((record.get("training") or {}).get("seed") or 0)
    split = args.calibration_split
    if split == "auto":
        split = "calibration" if fraction > 0 else "train"
        if split == "train":
            print("note: the model records no calibration holdout (ravit train --calibration-holdout); "
                  "thresholds are calibrated on training images, which is optimistic "
                  "(--calibration-split test uses the test split)", flush=True)
    if split == "calibration" and fraction <= 0:
        raise ValueError(f"--calibration-split calibration: {args.model} records no calibration holdout "
                         "(train with --calibration-holdout, or pass --calibration-split test).")
    drawn = (record.get("data") or {}).get("generated_images") if args.data == "generated" else None
    loaded = _load(args, split, config.image_size, config.num_classes, drawn or args.calibration_images,
                   calibration_fraction=fraction if split in ("calibration", "train") else 0.0, seed=seed)
    loaded = loaded.take(args.calibration_images)
    where = {"calibration": f"held-out training images never trained on ({fraction:g} of each class)",
             "train": "training images", "test": "test images"}[split]
    return _matched(args, loaded, model_classes, split), where


def _presets_own_data(config, args, split) -> bool:
    """Whether the training data is the dataset the preset's mean/std belong to."""
    from ravit_keras.data import CIFAR10_CLASS_NAMES, generated_class_names

    if args.config == "cifar10":
        return list(split.class_names) == list(CIFAR10_CLASS_NAMES)
    if args.config in ("tiny", "tiny3"):
        return args.data == "generated" and list(split.class_names) == generated_class_names(split.num_classes)
    if args.config.startswith("tinyimagenet"):
        return split.num_classes == 200
    if args.config == "imagenet":
        return split.num_classes == 1000
    return True


def _naming_bad_images(split, work):
    """Runs ``work()``; when TensorFlow fails to decode an image file, names the file."""
    try:
        return work()
    except Exception as e:
        if split.files is None or type(e).__name__ not in ("InvalidArgumentError", "DataLossError", "UnknownError"):
            raise
        bad = split.find_unreadable(limit=3)
        if not bad:
            raise
        from ravit_keras.data import DatasetError

        raise DatasetError("; ".join(reason for _, reason in bad)
                           + ". Fix or remove the file, or pass --skip-bad-images.") from None


# Fewer labelled images than this cannot place a threshold between confident and
# unsure images: one image alone sets it to ln C.
MIN_CALIBRATION_IMAGES = 20


def _matched(args, split, model_classes, split_name):
    """``split`` with its labels matched to the model's classes by name (or refused)."""
    from ravit_keras.data import match_classes

    matched, note = match_classes(split, model_classes, "the model")
    if note:
        print(f"note: {args.data} {split_name}: {note}", flush=True)
    return matched


def _is_converted(path: str) -> bool:
    from ravit_keras.deploy.runtime.manifest import MANIFEST_FILE

    return (Path(path) / MANIFEST_FILE).is_file()


def _thresholds_text(taus) -> str:
    return "[" + ", ".join(f"{t:.4g}" for t in taus) + "]"


# Sub-commands ------------------------------------------------------------------


def cmd_flops(args) -> int:
    from ravit_keras.model import flops

    config = _config_from_args(args)
    if args.json:
        report = flops.cost_report(config)
        if args.exit_counts:
            report["expected_macs"] = flops.expected_macs(config, args.exit_counts)
        print(json.dumps(report))
    else:
        print(flops.format_cost_table(config))
        if args.exit_counts:
            e = flops.expected_macs(config, args.exit_counts)
            print(f"expected MACs for exit counts {args.exit_counts}: {e:,.0f} ({2 * e / 1e6:.2f} MFLOPs)")
    return 0


def cmd_train(args) -> int:
    from ravit_keras.data import make_pipeline
    from ravit_keras.train import TrainingConfig, distribution_strategy, train

    strategy = distribution_strategy(args.devices) if args.devices > 1 else None
    config = _config_from_args(args)
    training = TrainingConfig(
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
        weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
        label_smoothing=args.label_smoothing, seed=args.seed,
        steps_per_epoch=args.steps_per_epoch, dtype_policy=args.dtype_policy, xla=args.xla,
    )
    import keras

    # tf.data's seeded shuffle and augmentation combine their seed with TF's global
    # seed: fixing it here makes a run depend on --seed alone.
    keras.utils.set_random_seed(args.seed)
    train_split = _load(args, "train", config.image_size, args.num_classes or config.num_classes, args.limit_train,
                        calibration_fraction=args.calibration_holdout, seed=args.seed)
    if train_split.num_examples == 0:
        raise ValueError(f"The train split of {args.data} holds no images.")
    if train_split.num_classes != config.num_classes:
        if args.num_classes is not None:
            raise ValueError(
                f"--num-classes {args.num_classes} but {args.data} has {train_split.num_classes} classes "
                f"({', '.join(train_split.class_names[:8])}{', ...' if train_split.num_classes > 8 else ''}).")
        # The head is sized for the data, not for the preset's dataset.
        config = config.replace(num_classes=train_split.num_classes)
    if args.normalization == "data" or (args.normalization == "auto" and not _presets_own_data(config, args, train_split)):
        from ravit_keras.data import compute_channel_stats

        mean, std = compute_channel_stats(train_split, limit=2000)
        std = np.maximum(std, 1.0 / 255)  # A flat channel would divide by zero.
        config = config.replace(mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std),
                                name=f"{args.config}-custom")
        print(f"note: normalising with the training data's own channel statistics (mean "
              f"{', '.join(f'{m:.3f}' for m in mean)}, std {', '.join(f'{s:.3f}' for s in std)}), not the "
              f"{args.config} preset's; the model is named {config.name}", flush=True)
    train_ds = make_pipeline(train_split, config, training.batch_size, training=True, seed=args.seed)
    val_ds = None
    if args.validate:
        val_split = _load(args, "test", config.image_size, config.num_classes, args.limit_test)
        val_ds = make_pipeline(val_split, config, training.batch_size, training=False)
    print(f"Training RAViT {config.layer_spec} ({config.name}) on {train_split.num_examples} "
          f"images from {args.data} for {training.epochs} epochs -> {args.out}", flush=True)
    fit_verbose = {"bar": 1, "epoch": 2, "none": 0}.get(args.progress, "auto")
    if fit_verbose == "auto":
        fit_verbose = 1 if sys.stdout.isatty() else 2
    signature = {"source": str(args.data), "num_examples": train_split.num_examples,
                 "class_names": list(train_split.class_names), "holdout_fraction": args.holdout_fraction,
                 "calibration_holdout": args.calibration_holdout}
    if args.data == "generated":
        # The generated set depends on how many images are drawn: the holdout is of these.
        signature["generated_images"] = args.limit_train or 2000
    _naming_bad_images(train_split, lambda: train(
        config, train_ds, args.out, training, val_ds, strategy=strategy, verbose=fit_verbose,
        class_names=train_split.class_names, data_signature=signature))
    print(f"Saved {Path(args.out) / 'model.keras'}")
    return 0


def _load_model(path: str):
    from ravit_keras.model import load_ravit
    from ravit_keras.train import MODEL_FILE

    p = Path(path)
    return load_ravit(str(p / MODEL_FILE if p.is_dir() else p))


def cmd_eval(args) -> int:
    from ravit_keras.evaluation import (
        evaluate_logits,
        format_report,
        predict_exit_logits,
    )
    from ravit_keras.io_utils import check_writable_file
    from ravit_keras.model import flops

    model = _load_model(args.model)
    config = model.ravit_config
    if args.mac_budget is not None and args.mac_budget <= 1:
        args.mac_budget *= flops.model_macs(config)  # A fraction of the full model.
    model_classes = _class_names_of(args.model, config.num_classes)
    split = _matched(args, _load(args, args.split, config.image_size, config.num_classes, args.limit),
                     model_classes, args.split)
    if split.num_examples == 0:
        raise ValueError(f"The {args.split} split of {args.data} holds no images.")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        check_writable_file(Path(args.out) / "report.json", "--out")
    logits, labels = _naming_bad_images(split, lambda: predict_exit_logits(model, split, args.batch_size))
    calibration, cal_where = None, None
    if args.mac_budget is not None or args.max_accuracy_drop is not None:
        cal_split, cal_where = _load_calibration(args, config, model_classes)
        calibration = predict_exit_logits(model, cal_split, args.batch_size)
    baselines = {}
    for spec in args.baseline or []:
        name, _, path = spec.partition("=")
        if not path:
            raise ValueError(f"--baseline expects NAME=MODEL_PATH, got {spec!r}.")
        from ravit_keras.presets import resolve_model_path

        path = resolve_model_path(path)
        base = _load_model(path)
        b_logits, b_labels = predict_exit_logits(base, split, args.batch_size)
        acc = float(np.mean(b_logits[-1].argmax(-1) == b_labels))
        baselines[name] = (2 * flops.model_macs(base.ravit_config) / 1e6, acc)
    report = evaluate_logits(
        config, logits, labels, thresholds=args.thresholds, calibration=calibration,
        mac_budget=args.mac_budget, max_accuracy_drop=args.max_accuracy_drop,
        baselines=baselines or None, class_names=split.class_names, out_dir=args.out,
        calibration_source=cal_where,
    )
    if baselines:
        report["baselines"] = {k: {"mflops": m, "accuracy": a} for k, (m, a) in baselines.items()}
    print(format_report(report))
    for name, (m, a) in baselines.items():
        print(f"baseline {name}: {100 * a:.2f}% at {m:.2f} MFLOPs")
    if args.out:
        print(f"Wrote {args.out}/: report.json, sweep.csv, sweep.json, accuracy_vs_mflops.png, "
              "exit_histogram.png, per_class.png, confusion_matrix.png")
    return 0


def cmd_convert(args) -> int:
    from ravit_keras.deploy.export.convert import ConversionOptions, convert
    from ravit_keras.deploy.export.mode_selection import convert_fastest

    model = _load_model(args.model)
    config = model.ravit_config
    model_classes = _class_names_of(args.model, config.num_classes)
    split, cal_where = _load_calibration(args, config, model_classes)
    images, labels = _naming_bad_images(split, split.as_numpy)
    if len(images) < MIN_CALIBRATION_IMAGES:
        raise ValueError(
            f"--calibration-images: {len(images)} labelled images cannot calibrate early-exit thresholds; "
            f"give at least {MIN_CALIBRATION_IMAGES}.")
    print(f"Converting RAViT {config.layer_spec} to {args.mode} submodels: int8 ranges from "
          f"{min(args.quantization_images, len(images))} and thresholds from {len(images)} "
          f"{args.data} {cal_where}", flush=True)
    options = ConversionOptions(num_calibration=args.quantization_images)
    if args.mode != "auto" and args.candidates != CONVERSION_MODES:
        raise ValueError("--candidates applies to --mode auto only.")
    if args.mode == "auto":
        manifest = convert_fastest(model, args.out, images, labels, class_names=split.class_names,
                                   calibration_source=cal_where, candidates=args.candidates,
                                   options=options, overwrite=args.overwrite)
    else:
        options.mode = args.mode
        manifest = convert(model, args.out, images, labels, class_names=split.class_names,
                           calibration_source=cal_where,
                           options=options, overwrite=args.overwrite)
    print(f"Wrote {len(manifest['exits'])} {manifest['quantization']} submodels and manifest.json to "
          f"{args.out}; default thresholds {_thresholds_text(manifest['default_thresholds'])}")
    return 0


def _scheduler_thresholds(args, sched) -> None:
    chosen = [a for a in ("thresholds", "mac_budget", "latency_budget_ms", "battery") if getattr(args, a, None) is not None]
    if len(chosen) > 1:
        flags = ", ".join("--" + c.replace("_", "-") for c in chosen)
        raise ValueError(f"Give at most one of --thresholds, --mac-budget, --latency-budget-ms, --battery; got {flags}.")
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
    from ravit_keras.console import Progress
    from ravit_keras.deploy.runtime.scheduler import RAViTScheduler
    from ravit_keras.exits import format_per_class
    from ravit_keras.io_utils import atomic_write_json, check_writable_file

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
    shape = (m["image"]["height"], m["image"]["width"])
    split = _matched(args, _load(args, args.split, shape, m["num_classes"], args.limit), sched.labels, args.split)
    if split.num_examples == 0:
        raise ValueError(f"The {args.split} split of {args.data} holds no images.")
    images, labels = _stream(split)
    print(f"Scheduling {split.num_examples} {args.data} {args.split} images through "
          f"{len(sched.submodels)} {m['quantization']} submodels, thresholds {_thresholds_text(sched.thresholds)}",
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
          f"{report['avg_mflops']:.2f} MFLOPs/image  latency mean {lat['mean']:.3f} ms, "
          f"p50 {lat['p50']:.3f}, p90 {lat['p90']:.3f}, p99 {lat['p99']:.3f}  {_overhead_text(report)}")
    print(format_per_class(report["per_class"]))
    if args.out:
        atomic_write_json(args.out, report)
        print(f"Wrote {args.out}")
    if writer is not None:
        print(f"Wrote {writer.count} per-image answers to {args.per_image}")
    taus = ", ".join(f"{t:.3g}" for t in sched.thresholds) or "-"
    setting = f"{m['quantization']} scheduler, τ = {taus}"
    if args.plot:
        from ravit_keras.exits import plot_exit_histogram

        plot_exit_histogram(report["exit_counts"], sched.exit_names, args.plot,
                            title=f"{setting}\ntop-1 {100 * report['accuracy']:.2f}%, {report['avg_mflops']:.1f} MFLOPs/image")
        print(f"Wrote {args.plot}")
    if args.per_class_plot:
        from ravit_keras.exits import plot_per_class

        plot_per_class(report["per_class"], args.per_class_plot, title=f"per class: {setting}")
        print(f"Wrote {args.per_class_plot}")
    if args.confusion_plot:
        from ravit_keras.exits import plot_confusion_matrix

        plot_confusion_matrix(report["per_class"], args.confusion_plot, title=f"confusion matrix: {setting}")
        print(f"Wrote {args.confusion_plot}")
    return 0


def cmd_predict(args) -> int:
    from ravit_keras import images as image_io
    from ravit_keras import prediction

    writer = prediction.PredictionWriter(args.out) if args.out else None
    files = image_io.images_in(args.images)
    if args.limit:
        files = files[: args.limit]
    warn = lambda msg: print(f"ravit predict: warning: {msg}", file=sys.stderr)  # noqa: E731
    if _is_converted(args.model):
        from ravit_keras.deploy.runtime.scheduler import RAViTScheduler

        sched = RAViTScheduler(args.model, num_threads=args.threads)
        if args.thresholds is not None:
            sched.set_thresholds(args.thresholds)
        m = sched.manifest
        size = (m["image"]["height"], m["image"]["width"])
        kind = f"{len(sched.submodels)} {m['quantization']} submodels, thresholds {_thresholds_text(sched.thresholds)}"
        dtype = sched.image_dtype
        items = ((f, img if dtype == "uint8" else img.astype(np.float32))
                 for f, img in prediction.read_images(files, size, args.skip_bad_images, warn))
        answers = prediction.predict_with_scheduler(sched, items, args.top_k)
    else:
        from ravit_keras import console

        console.import_tensorflow_quietly()
        model = _load_model(args.model)
        config = model.ravit_config
        taus = 0.0 if args.thresholds is None else args.thresholds
        from ravit_keras.exits import validate_thresholds

        taus = validate_thresholds(taus, len(config.exit_names), config.num_classes)
        names = _class_names_of(args.model, config.num_classes)
        kind = f"Keras RAViT {config.layer_spec}, thresholds {_thresholds_text(taus)}"
        items = list(prediction.read_images(files, config.image_size, args.skip_bad_images, warn))
        answers = prediction.predict_with_keras(model, items, taus, args.top_k, args.batch_size, names)
    print(f"Classifying {len(files)} images with {kind}", flush=True)
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
    print(f"{total} images: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if writer is not None:
        print(f"Wrote {writer.count} answers to {args.out}")
    return 0


def _class_names_of(model_path: str, num_classes: int) -> list[str]:
    """The class names saved beside a trained model (run folder's config.json), if any."""
    names = _run_record(model_path).get("class_names")
    if isinstance(names, list) and len(names) == num_classes:
        return [str(n) for n in names]
    return [f"class_{i}" for i in range(num_classes)]


def cmd_bench(args) -> int:
    from ravit_keras.deploy.measurement.benchmark import run_benchmark

    model = _load_model(args.model)
    baseline = _load_model(args.baseline) if args.baseline else None
    config = model.ravit_config
    test = _load(args, args.split, config.image_size, config.num_classes, args.limit)
    images, labels = test.as_numpy()
    cal, _ = _load_calibration(args, config, _class_names_of(args.model, config.num_classes))
    cal_images, cal_labels = cal.as_numpy()
    quiet = lambda msg: None  # noqa: E731
    result = run_benchmark(model, baseline, images, labels, cal_images, cal_labels, args.out,
                           thresholds=args.thresholds, num_threads=args.threads,
                           naive=not args.no_naive, class_names=cal.class_names, modes=args.modes,
                           progress=print if args.progress != "none" else quiet)
    print((Path(args.out) / "benchmark.md").read_text())
    return 0 if result else 1


def cmd_profile(args) -> int:
    """Per-operator time of each submodel (XNNPACK's own operators included)."""
    from ravit_keras.deploy.measurement.op_profile import format_profile, profile_ops
    from ravit_keras.io_utils import atomic_write_json, check_writable_file

    target = Path(args.model)
    if target.is_dir():
        from ravit_keras.deploy.runtime.manifest import load_manifest

        manifest = load_manifest(target)  # Names a missing or mismatched submodel first.
        files = [target / e["file"] for e in manifest["exits"]]
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
        print(f"All {len(profiles)} submodels: {sum(p.total_us for p in profiles):.1f} µs per image "
              "through every exit (profiler overhead included)")
    if args.json:
        from ravit_keras.deploy.measurement.profiling import cpu_description

        atomic_write_json(args.json, {"host": cpu_description(), "submodels": [p.to_dict() for p in profiles]})
        print(f"Wrote {args.json}")
    return 0


def cmd_demo(args) -> int:
    """Train a small RAViT on generated data, evaluate its exits, convert and schedule."""
    out = Path(args.out)
    common = ["--config", "tiny", "--layers", args.layers, "--data", "generated"]
    rc = main(["train", *common, "--out", str(out / "train"), "--epochs", str(args.epochs),
               "--batch-size", "64", "--lr", "2e-3", "--warmup-epochs", "1",
               "--limit-train", str(args.train_images), "--progress", "epoch"])
    if rc:
        return rc
    rc = main(["eval", "--model", str(out / "train"), "--data", "generated", "--split", "test",
               "--limit", str(args.test_images), "--mac-budget", str(args.mac_budget_fraction),
               "--calibration-images", str(args.test_images),
               "--out", str(out / "eval")])
    if rc:
        return rc
    rc = main(["convert", "--model", str(out / "train"), "--data", "generated", "--mode", args.mode,
               "--calibration-images", str(args.test_images), "--out", str(out / "tflite"), "--overwrite"])
    if rc:
        return rc
    return main(["run", "--model", str(out / "tflite"), "--data", "generated", "--split", "test",
                 "--limit", str(args.test_images), "--out", str(out / "run.json"),
                 "--per-image", str(out / "predictions.csv")])


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("output")
    # SUPPRESS: given after the sub-command, the flag must not reset the top-level one.
    g.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="also show TensorFlow's and LiteRT's own logs and warnings")
    g.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show the Python traceback of an error")

    parser = argparse.ArgumentParser(prog="ravit", description="RAViT: train, evaluate, convert to TFLite "
                                     "submodels, and run them with the early-exit scheduler.",
                                     formatter_class=_HelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="also show TensorFlow's and LiteRT's own logs")
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, help_text, **kw):
        return sub.add_parser(name, help=help_text, description=help_text, parents=[common],
                              formatter_class=_HelpFormatter, **kw)

    p = add("flops", "cost model: MACs per branch and per exit (Eq. 3/4 of the paper)")
    _add_model_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--exit-counts", type=lambda s: [int(x) for x in s.split(",")],
                   help="images leaving at each exit, e.g. 600,400: adds the expected MACs (Eq. 4)")
    p.set_defaults(func=cmd_flops)

    p = add("train", "train a RAViT with model.fit (resumes if --out holds an unfinished run)")
    _add_model_args(p)
    _add_data_args(p)
    p.add_argument("--out", required=True, help="run folder: config.json, log.csv, epoch_times.json, backup/, model.keras")
    p.add_argument("--epochs", type=_positive_int, default=10, help="training epochs")
    p.add_argument("--batch-size", type=_positive_int, default=128, help="images per step")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate of AdamW (cosine schedule)")
    p.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay")
    p.add_argument("--warmup-epochs", type=float, default=1.0, help="linear warm-up before the cosine decay")
    p.add_argument("--label-smoothing", type=float, default=0.0, help="label smoothing of the exit losses")
    p.add_argument("--seed", type=int, default=0, help="seeds weights, shuffling and augmentation")
    p.add_argument("--steps-per-epoch", type=_positive_int, help="steps per epoch (default: one pass over the data)")
    p.add_argument("--limit-train", type=_positive_int, help="use only the first N training images")
    p.add_argument("--limit-test", type=_positive_int, help="use only the first N test images")
    p.add_argument("--validate", action="store_true", help="evaluate on the test split after each epoch")
    p.add_argument("--normalization", default="auto", choices=("auto", "preset", "data"),
                   help="per-channel mean/std the model normalises with. auto: the preset's on its own "
                        "dataset, else the training data's (measured on 2,000 images)")
    p.add_argument("--dtype-policy", default="float32", choices=("float32", "mixed_bfloat16"),
                   help="compute precision of training (weights stay float32; the saved model is float32)")
    p.add_argument("--xla", default="auto", choices=("auto", "on", "off"),
                   help="XLA-compile the training step; auto: on for float32, off for mixed_bfloat16 "
                        "(faster so on the CPUs measured, see BENCHMARKS.md)")
    p.add_argument("--calibration-holdout", type=float, default=0.05,
                   help="share of each class's training images kept out of training, on which eval and "
                        "convert calibrate the early-exit thresholds (0: none)")
    p.add_argument("--devices", type=_positive_int, default=1, help="train with MirroredStrategy on N devices")
    _add_progress(p, ("auto", "bar", "epoch", "none"))
    p.set_defaults(func=cmd_train)

    p = add("eval", "per-exit accuracy, early-exit routing, threshold sweep, calibration, per-class results")
    p.add_argument("--model", required=True, type=_model_path, help=".keras file, training run folder or preset:NAME")
    _add_data_args(p)
    p.add_argument("--split", default="test", help="split evaluated")
    p.add_argument("--limit", type=_positive_int, help="evaluate only the first N images")
    p.add_argument("--batch-size", type=_positive_int, default=256, help="images per forward pass")
    p.add_argument("--thresholds", type=_floats, help="τ (one value, or one per exit), e.g. 0.1 or 0.1,0.2")
    p.add_argument("--mac-budget", type=float,
                   help="calibrate thresholds to this average MACs per image (a value <= 1 is a "
                        "fraction of the full model's MACs)")
    p.add_argument("--max-accuracy-drop", type=float,
                   help="calibrate the cheapest thresholds losing at most this accuracy (fraction, e.g. 0.005)")
    _add_calibration_args(p, 5000)
    p.add_argument("--baseline", action="append",
                   help="NAME=MODEL: a classic ViT to show as a point on the plot (repeatable)")
    p.add_argument("--out", help="folder for report.json, sweep.csv/json and plots")
    p.set_defaults(func=cmd_eval)

    p = add("convert", "trained model -> TFLite submodels + manifest (mode auto by default; int8 for phones)")
    p.add_argument("--model", required=True, type=_model_path, help=".keras file, training run folder or preset:NAME")
    _add_data_args(p)
    p.add_argument("--out", required=True, help="output folder (written atomically)")
    p.add_argument("--mode", default="auto", choices=MODES,
                   help="int8: integer matrix products, one XNNPACK partition per submodel (for phones); "
                        "int8-full: every op integer (NPU/DSP delegates); dynamic: int8 weights, float "
                        "activations; int16x8; float32; auto: convert all and keep the fastest ON THIS "
                        "MACHINE within 1 top-1 point")
    p.add_argument("--candidates", type=_conversion_modes, default=CONVERSION_MODES,
                   help="comma-separated modes --mode auto converts and times (default: all of "
                        + ", ".join(CONVERSION_MODES) + ")")
    _add_calibration_args(p, 2000)
    p.add_argument("--quantization-images", type=_positive_int, default=500,
                   help="how many of the calibration images calibrate the int8 activation ranges")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.set_defaults(func=cmd_convert)

    p = add("run", "the device-emulating scheduler over a labelled dataset, one image at a time")
    p.add_argument("--model", required=True, help="folder written by ravit convert")
    _add_data_args(p)
    p.add_argument("--split", default="test", help="split streamed")
    p.add_argument("--limit", type=_positive_int, help="stream only the first N images")
    p.add_argument("--threads", type=_positive_int, default=1, help="LiteRT CPU threads per submodel")
    g = p.add_argument_group("operating point (at most one; default: the manifest's thresholds)")
    g.add_argument("--thresholds", type=_floats, help="τ, one value or one per exit")
    g.add_argument("--mac-budget", type=float, help="average MACs per image (<= 1: fraction of the full model)")
    g.add_argument("--latency-budget-ms", type=float, help="expected latency per image, measured here")
    g.add_argument("--battery", type=float, help="battery level 0..1 for the battery-aware policy")
    g = p.add_argument_group("outputs")
    g.add_argument("--out", help="write the report (with per-class figures) as JSON")
    g.add_argument("--per-image", help="write every image's answer (.csv or .json)")
    g.add_argument("--top-k", type=_positive_int, default=3, help="labels per image in --per-image")
    g.add_argument("--plot", help="draw the exit histogram as PNG")
    g.add_argument("--per-class-plot", help="draw per-class top-1 and exit shares as PNG")
    g.add_argument("--confusion-plot", help="draw the confusion matrix as PNG")
    _add_progress(p)
    p.set_defaults(func=cmd_run)

    p = add("predict", "classify image files or folders (no labels needed) with a converted or a Keras model")
    p.add_argument("images", nargs="+", help="image files and/or folders (searched recursively)")
    p.add_argument("--model", required=True, type=_model_path,
                   help="folder written by ravit convert (runs the scheduler), or a .keras file / training run "
                        "folder / preset:NAME")
    p.add_argument("--thresholds", type=_floats,
                   help="τ, one value or one per exit (default: the manifest's; a Keras model: 0, no early exit)")
    p.add_argument("--top-k", type=_positive_int, default=3, help="labels and probabilities per image")
    p.add_argument("--out", help="write the answers as .csv or .json (default: print them)")
    p.add_argument("--skip-bad-images", action="store_true",
                   help="warn about an unreadable image and go on (default: stop, naming the file)")
    p.add_argument("--limit", type=_positive_int, help="classify only the first N images")
    p.add_argument("--threads", type=_positive_int, default=1, help="LiteRT CPU threads per submodel")
    p.add_argument("--batch-size", type=_positive_int, default=64, help="images per forward pass (Keras model)")
    _add_progress(p)
    p.set_defaults(func=cmd_predict)

    p = add("bench", "latency of RAViT (and optionally a classic ViT), int8 and float, side by side")
    p.add_argument("--model", required=True, type=_model_path, help="trained RAViT (.keras, run folder or preset:NAME)")
    p.add_argument("--baseline", type=_model_path, help="trained classic ViT of the compared depth (optional; path or preset:NAME)")
    _add_data_args(p)
    p.add_argument("--split", default="test", help="split streamed through the scheduler")
    p.add_argument("--limit", type=_positive_int, default=2000, help="images streamed")
    _add_calibration_args(p, 2000)
    p.add_argument("--thresholds", type=_floats,
                   help="τ grid (default: 0, 1, 2, 5, 10 and 20 %% of ln C, the largest entropy)")
    p.add_argument("--threads", type=_positive_int, default=1, help="LiteRT CPU threads")
    p.add_argument("--no-naive", action="store_true", help="skip the naive Keras-graph ViT baseline")
    p.add_argument("--modes", type=_conversion_modes, default=CONVERSION_MODES,
                   help="comma-separated conversion modes benchmarked side by side (default: all of "
                        + ", ".join(CONVERSION_MODES) + ")")
    p.add_argument("--out", required=True, help="folder for the submodels, benchmark.json and benchmark.md")
    _add_progress(p)
    p.set_defaults(func=cmd_bench)

    p = add("profile", "where a submodel's time goes: per-operator times, XNNPACK's own operators included")
    p.add_argument("--model", required=True, help="folder written by ravit convert, or one .tflite file")
    p.add_argument("--runs", type=_positive_int, default=200, help="invokes profiled per submodel")
    p.add_argument("--threads", type=_positive_int, default=1, help="LiteRT CPU threads")
    p.add_argument("--top", type=_positive_int, default=12, help="operator kinds listed per submodel")
    p.add_argument("--every-op", action="store_true", help="also list every operator in run order")
    p.add_argument("--json", help="also write the profiles (every operator) as JSON")
    p.set_defaults(func=cmd_profile)

    p = add("demo", "end to end on generated data (no network): train, eval, convert, run")
    p.add_argument("--out", default="runs/demo", help="output folder")
    p.add_argument("--layers", default="1-2", help="layers per branch")
    p.add_argument("--epochs", type=_positive_int, default=6, help="training epochs")
    p.add_argument("--train-images", type=_positive_int, default=3000, help="generated training images")
    p.add_argument("--test-images", type=_positive_int, default=1000, help="generated test images")
    p.add_argument("--mac-budget-fraction", type=float, default=0.6, help="MAC budget eval calibrates to")
    p.add_argument("--mode", default="auto", choices=MODES, help="conversion mode (int8 for the Android app)")
    p.set_defaults(func=cmd_demo)
    return parser


# Commands that always load TensorFlow (run, predict with converted submodels and flops never do).
_TENSORFLOW_COMMANDS = {"train", "eval", "convert", "bench", "demo"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from ravit_keras import console

    console.set_verbose(args.verbose)
    if not args.verbose:
        logging.getLogger("tensorflow").setLevel(logging.ERROR)  # e.g. retracing notices
        logging.getLogger("absl").setLevel(logging.ERROR)  # e.g. the converter's deprecation notes
        if args.command in _TENSORFLOW_COMMANDS:
            console.import_tensorflow_quietly()
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # `ravit flops | head`: the reader left; stop quietly like other command-line tools.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print(f"ravit {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, LookupError) as e:
        if args.debug:
            raise
        print(f"ravit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - the message, not a traceback, for a CLI user.
        if args.debug:
            raise
        print(f"ravit {args.command}: error: {type(e).__name__}: {e} (run with --debug for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
