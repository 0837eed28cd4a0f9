"""The ``ravit`` command line: train, eval, flops, convert, run, bench, demo.

Each sub-command is a thin layer over a library function; ``main(argv)`` is
importable for tests and notebooks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _add_model_args(p: argparse.ArgumentParser, default_config: str = "cifar10") -> None:
    g = p.add_argument_group("model")
    g.add_argument("--config", default=default_config, help="preset name (cifar10, tinyimagenet, imagenet, tiny, tiny3, ...)")
    g.add_argument("--layers", help="layers per branch, e.g. 1-3 or 2-0-3 (default: the preset's)")
    g.add_argument("--scale", type=float, help="resolution factor between branches (default 2)")
    g.add_argument("--hidden-dim", type=int)
    g.add_argument("--mlp-dim", type=int)
    g.add_argument("--num-heads", type=int)
    g.add_argument("--num-classes", type=int)
    g.add_argument("--dropout", type=float)
    g.add_argument("--exit-weights", type=_floats, help="per-exit loss weights, e.g. 0.3,0.7")


def _config_from_args(args):
    from ravit_keras.config import get_config

    overrides = {
        k: v for k, v in dict(
            scale=args.scale, hidden_dim=args.hidden_dim, mlp_dim=args.mlp_dim,
            num_heads=args.num_heads, num_classes=args.num_classes, dropout=args.dropout,
            exit_weights=args.exit_weights,
        ).items() if v is not None
    }
    return get_config(args.config, layers=args.layers, **overrides)


def _add_data_args(p: argparse.ArgumentParser, default: str | None = None) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", default=default, required=default is None,
                   help="'generated', 'tfds:NAME', or a path: CIFAR-10 python folder or .tar.gz, "
                        "tiny-imagenet-200 folder, folder of class sub-folders, or .npz")
    g.add_argument("--data-dir", help="tensorflow-datasets data directory (for tfds:NAME)")
    g.add_argument("--holdout-fraction", type=float, default=0.1,
                   help="share of training images held out as 'test' where the source has no test split")


def _add_calibration_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--calibration-images", type=int, default=2000,
                   help="labelled images that calibrate int8 ranges and the early-exit thresholds")
    p.add_argument("--calibration-split", default="train", help="split they are taken from")


def _load(args, split: str, image_size, num_classes: int, limit: int | None):
    from ravit_keras.data import load_split

    return load_split(
        args.data, split, data_dir=args.data_dir, image_size=image_size,
        holdout_fraction=args.holdout_fraction, num_examples=limit,
        num_classes=num_classes if args.data == "generated" else None,
    )


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
        steps_per_epoch=args.steps_per_epoch,
    )
    import keras

    # tf.data's seeded shuffle and augmentation combine their seed with TF's global
    # seed: fixing it here makes a run depend on --seed alone.
    keras.utils.set_random_seed(args.seed)
    train_split = _load(args, "train", config.image_size, config.num_classes, args.limit_train)
    train_ds = make_pipeline(train_split, config, training.batch_size, training=True, seed=args.seed)
    val_ds = None
    if args.validate:
        val_split = _load(args, "test", config.image_size, config.num_classes, args.limit_test)
        val_ds = make_pipeline(val_split, config, training.batch_size, training=False)
    print(f"Training RAViT {config.layer_spec} ({config.name}) on {train_split.num_examples} "
          f"images from {args.data} for {training.epochs} epochs -> {args.out}", flush=True)
    train(config, train_ds, args.out, training, val_ds, strategy=strategy,
          verbose=args.verbose)
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
    from ravit_keras.model import flops

    model = _load_model(args.model)
    config = model.ravit_config
    if args.mac_budget is not None and args.mac_budget <= 1:
        args.mac_budget *= flops.model_macs(config)  # A fraction of the full model.
    split = _load(args, args.split, config.image_size, config.num_classes, args.limit)
    logits, labels = predict_exit_logits(model, split, args.batch_size)
    calibration = None
    if args.mac_budget is not None or args.max_accuracy_drop is not None:
        cal_split = _load(args, args.calibration_split, config.image_size, config.num_classes,
                          args.calibration_limit)
        calibration = predict_exit_logits(model, cal_split, args.batch_size)
    baselines = {}
    for spec in args.baseline or []:
        name, _, path = spec.partition("=")
        if not path:
            raise SystemExit(f"--baseline expects NAME=MODEL_PATH, got {spec!r}")
        base = _load_model(path)
        b_logits, b_labels = predict_exit_logits(base, split, args.batch_size)
        acc = float(np.mean(b_logits[-1].argmax(-1) == b_labels))
        baselines[name] = (2 * flops.model_macs(base.ravit_config) / 1e6, acc)
    report = evaluate_logits(
        config, logits, labels, thresholds=args.thresholds, calibration=calibration,
        mac_budget=args.mac_budget, max_accuracy_drop=args.max_accuracy_drop,
        baselines=baselines or None, out_dir=args.out,
    )
    if baselines:
        report["baselines"] = {k: {"mflops": m, "accuracy": a} for k, (m, a) in baselines.items()}
    print(format_report(report))
    for name, (m, a) in baselines.items():
        print(f"baseline {name}: {100 * a:.2f}% at {m:.2f} MFLOPs")
    if args.out:
        print(f"Wrote {args.out}/report.json, sweep.csv, accuracy_vs_mflops.png, exit_histogram.png")
    return 0


def _calibration(args, config, limit):
    split = _load(args, args.calibration_split, config.image_size, config.num_classes, limit)
    images, labels = split.as_numpy()
    return images, labels, split.class_names


def cmd_convert(args) -> int:
    from ravit_keras.deploy.convert import ConversionOptions, convert
    from ravit_keras.deploy.mode_selection import convert_fastest

    model = _load_model(args.model)
    config = model.ravit_config
    images, labels, names = _calibration(args, config, args.calibration_images)
    print(f"Converting RAViT {config.layer_spec} to {args.mode} submodels, calibrated on "
          f"{min(args.num_calibration, len(images))} {args.data} {args.calibration_split} images "
          f"(thresholds on {len(images)})", flush=True)
    if args.mode == "auto":
        options = ConversionOptions(num_calibration=args.num_calibration)
        manifest = convert_fastest(model, args.out, images, labels, class_names=names,
                                   options=options, overwrite=args.overwrite)
    else:
        options = ConversionOptions(mode=args.mode, num_calibration=args.num_calibration)
        manifest = convert(model, args.out, images, labels, class_names=names, options=options,
                           overwrite=args.overwrite)
    print(f"mode: {manifest['quantization']}; default thresholds: "
          f"{[round(t, 4) for t in manifest['default_thresholds']]}")
    return 0


def cmd_run(args) -> int:
    from ravit_keras.deploy.scheduler import RAViTScheduler
    from ravit_keras.io_utils import atomic_write_json

    sched = RAViTScheduler(args.model, num_threads=args.threads)
    chosen = [a for a in ("thresholds", "mac_budget", "latency_budget_ms", "battery") if getattr(args, a) is not None]
    if len(chosen) > 1:
        raise ValueError(f"Give at most one of --thresholds, --mac-budget, --latency-budget-ms, --battery; got {chosen}.")
    if args.thresholds is not None:
        sched.set_thresholds(args.thresholds)
    elif args.mac_budget is not None:
        sched.set_thresholds(sched.thresholds_for_mac_budget(args.mac_budget))
    elif args.latency_budget_ms is not None:
        sched.set_thresholds(sched.thresholds_for_latency_budget(args.latency_budget_ms))
    elif args.battery is not None:
        sched.set_thresholds(sched.battery_thresholds(args.battery))
    m = sched.manifest
    shape = (m["image"]["height"], m["image"]["width"])
    split = _load(args, args.split, shape, m["num_classes"], args.limit)
    images = (img for img, _ in split.dataset.as_numpy_iterator())
    labels = (int(lbl) for _, lbl in split.dataset.as_numpy_iterator())
    print(f"Scheduling {split.num_examples} {args.data} {args.split} images through "
          f"{len(sched.submodels)} {m['quantization']} submodels, thresholds {[round(t, 4) for t in sched.thresholds]}",
          flush=True)
    report = sched.evaluate(images, labels, progress=args.verbose, total=split.num_examples)
    lat = report["latency_ms"]
    print(f"accuracy {100 * report['accuracy']:.2f}%  exits {report['exit_counts']}  "
          f"{report['avg_mflops']:.2f} MFLOPs/image  latency mean {lat['mean']:.3f} ms, "
          f"p50 {lat['p50']:.3f}, p90 {lat['p90']:.3f}, p99 {lat['p99']:.3f}  "
          f"scheduler overhead {100 * report['scheduler_overhead_fraction']:.1f}% of invoke time")
    if args.out:
        atomic_write_json(args.out, report)
        print(f"Wrote {args.out}")
    if args.plot:
        from ravit_keras.exits import plot_exit_histogram

        taus = ", ".join(f"{t:.3g}" for t in sched.thresholds)
        plot_exit_histogram(report["exit_counts"], sched.exit_names, args.plot,
                            title=f"{m['quantization']} scheduler, τ = {taus}\n"
                                  f"top-1 {100 * report['accuracy']:.2f}%, {report['avg_mflops']:.1f} MFLOPs/image")
        print(f"Wrote {args.plot}")
    return 0


def cmd_bench(args) -> int:
    from ravit_keras.deploy.benchmark import run_benchmark

    model = _load_model(args.model)
    baseline = _load_model(args.baseline)
    config = model.ravit_config
    test = _load(args, args.split, config.image_size, config.num_classes, args.limit)
    images, labels = test.as_numpy()
    cal_images, cal_labels, names = _calibration(args, config, args.calibration_images)
    result = run_benchmark(model, baseline, images, labels, cal_images, cal_labels, args.out,
                           thresholds=args.thresholds, num_threads=args.threads,
                           naive=not args.no_naive, class_names=names)
    print((Path(args.out) / "benchmark.md").read_text())
    return 0 if result else 1


def cmd_demo(args) -> int:
    """Train a small RAViT on generated data, evaluate its exits, convert and schedule."""
    out = Path(args.out)
    common = ["--config", "tiny", "--layers", args.layers, "--data", "generated"]
    rc = main(["train", *common, "--out", str(out / "train"), "--epochs", str(args.epochs),
               "--batch-size", "64", "--lr", "2e-3", "--warmup-epochs", "1",
               "--limit-train", str(args.train_images), "--verbose", "2"])
    if rc:
        return rc
    rc = main(["eval", "--model", str(out / "train"), "--data", "generated", "--split", "test",
               "--limit", str(args.test_images), "--mac-budget", str(args.mac_budget_fraction),
               "--calibration-split", "train", "--calibration-limit", str(args.test_images),
               "--out", str(out / "eval")])
    if rc:
        return rc
    rc = main(["convert", "--model", str(out / "train"), "--data", "generated", "--mode", args.mode,
               "--calibration-images", str(args.test_images), "--out", str(out / "tflite"), "--overwrite"])
    if rc:
        return rc
    return main(["run", "--model", str(out / "tflite"), "--data", "generated", "--split", "test",
                 "--limit", str(args.test_images), "--out", str(out / "run.json")])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ravit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("flops", help="cost model: MACs per branch and per exit")
    _add_model_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--exit-counts", type=lambda s: [int(x) for x in s.split(",")],
                   help="images leaving at each exit, e.g. 600,400: adds the expected MACs (Eq. 4)")
    p.set_defaults(func=cmd_flops)

    p = sub.add_parser("train", help="train a RAViT (resumes if --out holds an unfinished run)")
    _add_model_args(p)
    _add_data_args(p)
    p.add_argument("--out", required=True, help="run folder: config.json, log.csv, backup/, model.keras")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps-per-epoch", type=int)
    p.add_argument("--limit-train", type=int, help="use only the first N training images")
    p.add_argument("--limit-test", type=int, help="use only the first N test images")
    p.add_argument("--validate", action="store_true", help="evaluate on the test split after each epoch")
    p.add_argument("--devices", type=int, default=1, help="train with MirroredStrategy on N devices")
    p.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2), help="Keras fit verbosity")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="per-exit accuracy, early-exit routing, threshold sweep, calibration")
    p.add_argument("--model", required=True, help=".keras file or training run folder")
    _add_data_args(p)
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--thresholds", type=_floats, help="τ (one value, or one per exit), e.g. 0.1 or 0.1,0.2")
    p.add_argument("--mac-budget", type=float,
                   help="calibrate thresholds to this average MACs per image (a value <= 1 is a "
                        "fraction of the full model's MACs)")
    p.add_argument("--max-accuracy-drop", type=float,
                   help="calibrate the cheapest thresholds losing at most this accuracy (fraction, e.g. 0.005)")
    p.add_argument("--calibration-split", default="train", help="split the thresholds are calibrated on")
    p.add_argument("--calibration-limit", type=int, default=5000)
    p.add_argument("--baseline", action="append",
                   help="NAME=MODEL: a classic ViT to show as a point on the plot (repeatable)")
    p.add_argument("--out", help="folder for report.json, sweep.csv/json and plots")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("convert", help="trained model -> TFLite submodels + manifest (int8 by default)")
    p.add_argument("--model", required=True, help=".keras file or training run folder")
    _add_data_args(p)
    p.add_argument("--out", required=True, help="output folder (written atomically)")
    p.add_argument("--mode", default="auto", choices=("auto", "int8", "int16x8", "float32"),
                   help="auto (default): convert int8 and float32, keep the one fastest ON THIS "
                        "MACHINE within 1 top-1 point; for a phone pass int8 (fast on ARM)")
    p.add_argument("--num-calibration", type=int, default=500, help="images that calibrate int8 ranges")
    _add_calibration_args(p)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("run", help="the device-emulating scheduler over a dataset, one image at a time")
    p.add_argument("--model", required=True, help="folder written by ravit convert")
    _add_data_args(p)
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--thresholds", type=_floats, help="τ, one value or one per exit")
    p.add_argument("--mac-budget", type=float, help="average MACs per image (<= 1: fraction of the full model)")
    p.add_argument("--latency-budget-ms", type=float, help="expected latency per image, measured here")
    p.add_argument("--battery", type=float, help="battery level 0..1 for the battery-aware policy")
    p.add_argument("--out", help="write the report as JSON")
    p.add_argument("--plot", help="draw the exit histogram as PNG")
    p.add_argument("--verbose", action="store_true", help="progress bar")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("bench", help="latency of RAViT vs a classic ViT, int8 and float, side by side")
    p.add_argument("--model", required=True, help="trained RAViT (.keras or run folder)")
    p.add_argument("--baseline", required=True, help="trained classic ViT of the compared depth")
    _add_data_args(p)
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=2000)
    _add_calibration_args(p)
    p.add_argument("--thresholds", type=_floats, default=[0.0, 0.05, 0.1, 0.2, 0.3, 0.5])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-naive", action="store_true", help="skip the naive Keras-graph ViT baseline")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("demo", help="end to end on generated data (no network): train, eval, convert, run")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--layers", default="1-2")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--train-images", type=int, default=3000)
    p.add_argument("--test-images", type=int, default=1000)
    p.add_argument("--mac-budget-fraction", type=float, default=0.6)
    p.add_argument("--mode", default="auto", choices=("auto", "int8", "int16x8", "float32"),
                   help="conversion mode (int8 for the Android app)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"ravit {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
