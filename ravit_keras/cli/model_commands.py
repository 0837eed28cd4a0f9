"""Sub-commands on Keras models (TensorFlow): flops, train, eval, convert, bench.

Each parses its flags into a library call and prints what it returns; the
policy (calibration split, normalisation, run record) is in the library.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ravit_keras.cli.common import (
    check_outputs,
    data_input,
    data_source,
    is_converted,
    load_calibration,
    load_model,
    load_reported,
    model_input,
    say,
    thresholds_text,
)
from ravit_keras.cli.options import (
    CONVERSION_MODES,
    DEFAULT_ARCH,
    architecture_flags,
    config_from_args,
    recipe_from_args,
)
from ravit_keras.console import plural


def cmd_flops(args) -> int:
    """Cost model table or JSON."""
    from ravit_keras.model import flops

    config = config_from_args(args)
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
    """Train into a run folder (``train_from_data``; with --init, ``finetune_from_data``)."""
    from ravit_keras import runs
    from ravit_keras.cli.backend import configured_backend
    from ravit_keras.train import TrainingConfig, check_xla
    from ravit_keras.training import distribution
    from ravit_keras.training.from_data import finetune_from_data, train_from_data

    check_outputs(data_input(args) + (model_input("--init", _init_path(args.init)) if args.init else []),
                  [("--out", args.out)])
    check_xla(configured_backend(), args.xla == "off")  # Before the data loads.
    if args.freeze_epochs and not args.init:
        raise ValueError("--freeze-epochs freezes trained encoders: it needs --init.")
    if args.freeze_epochs > args.epochs:
        raise ValueError(f"--freeze-epochs {args.freeze_epochs} is more than --epochs {args.epochs}.")
    group = distribution.process_group(args.coordinator, args.num_processes, args.process_id,
                                       args.coordinator_timeout)
    distribution.check_batch_size(args.batch_size, args.devices, group.num_processes)
    drop_path_rate, recipe = recipe_from_args(args)
    training = TrainingConfig(
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
        weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs, seed=args.seed,
        steps_per_epoch=args.steps_per_epoch, dtype_policy=args.dtype_policy, xla=args.xla,
        freeze_epochs=args.freeze_epochs, **recipe,
    )
    import keras

    # Last of the checks: joining the other processes waits for them.
    strategy = distribution.setup(keras.backend.backend(), args.devices, group, prog="ravit train")
    fit_verbose = {"bar": 1, "epoch": 2, "none": 0}.get(args.progress, "auto")
    if fit_verbose == "auto":
        fit_verbose = 1 if sys.stdout.isatty() else 2
    common = dict(num_classes=args.num_classes, calibration_holdout=args.calibration_holdout,
                  limit_train=args.limit_train, limit_test=args.limit_test, validate=args.validate,
                  normalization=args.normalization, name=args.name, strategy=strategy, verbose=fit_verbose, notes=say)
    if args.init:
        changes = _init_changes(args)
        if drop_path_rate:
            changes["drop_path_rate"] = drop_path_rate
        finetune_from_data(_init_path(args.init), data_source(args), args.out, training, label=args.init,
                           changes=changes, **common)
    else:
        config = config_from_args(args)
        if drop_path_rate:
            config = config.replace(drop_path_rate=drop_path_rate)
        train_from_data(config, data_source(args), args.out, training, arch=args.arch or DEFAULT_ARCH, **common)
    if distribution.is_writer():
        print(f"Saved {Path(args.out) / runs.MODEL_FILE}")
    else:
        index, count = distribution.process_shard()
        print(f"Process {index} of {count} done; process 0 saved the run.")
    return 0


def _init_path(spec: str) -> str:
    """The run folder or file of a --init value (``preset:NAME`` resolved)."""
    from ravit_keras.presets import resolve_model_path

    return resolve_model_path(spec)


def _init_changes(args) -> dict:
    """What the architecture flags change in the --init model's configuration: the
    flags given (and, with --arch, that architecture's fields that fix weight shapes)."""
    from ravit_keras.config import get_config
    from ravit_keras.training.finetune import ARCHITECTURE_FIELDS

    changes = architecture_flags(args)
    changes.pop("num_classes", None)  # The heads follow the data; --num-classes only checks it.
    if args.arch:
        arch = get_config(args.arch)
        changes = {**{f: getattr(arch, f) for f in ARCHITECTURE_FIELDS}, **changes}
    return changes


def _baselines(specs, flag: str = "--baseline") -> dict[str, str]:
    """``NAME=MODEL`` flags -> ``{name: model path}`` (``preset:NAME`` resolved)."""
    import re

    from ravit_keras.presets import resolve_model_path

    parsed = {}
    for spec in specs or []:
        name, _, path = spec.partition("=")
        if not path or not name:
            raise ValueError(f"{flag} expects NAME=MODEL_PATH, got {spec!r}.")
        if flag == "--static-baseline" and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):  # A folder name.
            raise ValueError(f"{flag} {spec!r}: NAME may hold letters, digits, '.', '_' and '-' only.")
        if name in parsed:
            raise ValueError(f"{flag} {name!r} is given twice.")
        parsed[name] = resolve_model_path(path)
    return parsed


def cmd_eval(args) -> int:
    """Early-exit figures of a Keras model (``evaluation``)."""
    from ravit_keras import runs
    from ravit_keras.data.source import matched, naming_bad_images
    from ravit_keras.evaluation import (
        REPORT_FILES,
        evaluate_baselines,
        evaluate_logits,
        format_report,
        predict_exit_logits,
        report_warnings,
    )
    from ravit_keras.io_utils import check_writable_file
    from ravit_keras.model import flops

    baseline_paths = _baselines(args.baseline)
    inputs = model_input("--model", args.model) + data_input(args)
    for name, path in baseline_paths.items():
        inputs += model_input(f"--baseline {name}", path)
    check_outputs(inputs, [("--out", args.out)])
    model = load_model(args.model)
    config = model.ravit_config
    if args.mac_budget is not None and args.mac_budget <= 1:
        args.mac_budget *= flops.model_macs(config)  # A fraction of the full model.
    model_classes = runs.class_names(args.model, config.num_classes)
    calibrating = args.mac_budget is not None or args.max_accuracy_drop is not None
    # A model that calibrates on test images it sets aside is reported on the rest of the test split.
    loaded, _ = load_reported(data_source(args), args.model, args.split, image_size=config.image_size,
                              num_classes=config.num_classes, limit=args.limit, calibrating=calibrating,
                              notes=say)
    split = matched(loaded, model_classes, f"{args.data} {args.split}", say)
    if split.num_examples == 0:
        raise ValueError(f"The {args.split} split of {args.data} holds no images.")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        check_writable_file(Path(args.out) / REPORT_FILES[0], "--out")
    logits, labels = naming_bad_images(split, lambda: predict_exit_logits(model, split, args.batch_size))
    calibration, cal_where = None, None
    if calibrating:
        cal_split, cal_where = load_calibration(args, config, model_classes)
        calibration = predict_exit_logits(model, cal_split, args.batch_size)
    baselines = evaluate_baselines(baseline_paths, split, args.batch_size)
    report = evaluate_logits(
        config, logits, labels, thresholds=args.thresholds, calibration=calibration,
        mac_budget=args.mac_budget, max_accuracy_drop=args.max_accuracy_drop,
        baselines=baselines or None, class_names=split.class_names, out_dir=args.out,
        calibration_source=cal_where,
    )
    print(format_report(report, warnings=False))
    for warning in report_warnings(report):  # On stderr, as convert's: the report is the output.
        print(f"ravit eval: warning: {warning}", file=sys.stderr)
    for name, (m, a) in baselines.items():
        print(f"baseline {name}: {100 * a:.2f}% at {m:.2f} MFLOPs")
    if args.out:
        print(f"Wrote {args.out}/: {', '.join(REPORT_FILES)}")
    return 0


def cmd_convert(args) -> int:
    """Submodels and manifest (``deploy.convert``, or ``convert_fastest`` for --mode auto)."""
    from ravit_keras import run_calibration, runs
    from ravit_keras.data.source import naming_bad_images
    from ravit_keras.deploy.export.convert import ConversionOptions, convert
    from ravit_keras.deploy.export.mode_selection import convert_fastest
    from ravit_keras.deploy.runtime.calibration_set import CalibrationSet
    from ravit_keras.exits.intervals import format_operating_points, resolution_warning

    if args.mode != "auto" and args.candidates != CONVERSION_MODES:
        raise ValueError("--candidates applies to --mode auto only.")
    check_outputs(model_input("--model", args.model) + data_input(args), [("--out", args.out)])
    model = load_model(args.model)
    config = model.ravit_config
    split, cal_where = load_calibration(args, config, runs.class_names(args.model, config.num_classes))
    images, labels = naming_bad_images(split, split.as_numpy)
    run_calibration.check_calibration_size(len(images))
    say(f"Converting RAViT {config.layer_spec} to {args.mode} submodels: int8 ranges from "
        f"{min(args.quantization_images, len(images))} and thresholds from {len(images)} "
        f"{args.data} {cal_where}")
    options = ConversionOptions(num_calibration=args.quantization_images)
    # The same images as fields: `ravit run` leaves them out of what it reports on.
    plan = run_calibration.calibration_plan(args.model, args.calibration_split)
    cal_set = CalibrationSet.from_dict(plan.record(len(images), data_source(args).location_name))
    if args.mode == "auto":
        manifest = convert_fastest(model, args.out, images, labels, class_names=split.class_names,
                                   calibration_source=cal_where, calibration_set=cal_set,
                                   candidates=args.candidates, options=options, overwrite=args.overwrite)
    else:
        options.mode = args.mode
        manifest = convert(model, args.out, images, labels, class_names=split.class_names,
                           calibration_source=cal_where, calibration_set=cal_set, options=options,
                           overwrite=args.overwrite)
    print(f"Wrote {plural(len(manifest.exits), f'{manifest.quantization} submodel')} and manifest.json to "
          f"{args.out}; default thresholds {thresholds_text(manifest.default_thresholds)}")
    points = [p.to_dict() for p in manifest.operating_points or ()]
    for line in format_operating_points(points, manifest.full_model_macs):
        print(line)
    warning = resolution_warning(points)
    if warning:
        print(f"ravit convert: warning: {warning}", file=sys.stderr)
    return 0


def _bench_model(flag: str, path: str):
    """What ``ravit bench`` times for ``flag``: a converted folder (its path) or a Keras RAViT."""
    from ravit_keras import runs

    p = Path(path)
    if is_converted(path):
        return p
    if (p.is_file() and p.suffix == ".keras") or (p.is_dir() and (p / runs.MODEL_FILE).is_file()):
        return load_model(path)
    if not p.exists():
        raise FileNotFoundError(f"{flag} {path!r}: no such file or folder.")
    raise ValueError(f"{flag} {path!r} is neither a trained RAViT (.keras file, training run folder or "
                     "preset:NAME) nor a folder written by ravit convert (it holds no manifest.json).")


def _bench_classes(flag: str, path: str, model) -> list[str]:
    from ravit_keras import runs
    from ravit_keras.deploy.runtime.manifest import load_manifest

    if isinstance(model, Path):
        return list(load_manifest(model, verify_checksums=False).labels)
    return runs.class_names(path, model.ravit_config.num_classes)


def cmd_bench(args) -> int:
    """RAViT (a Keras model or a converted folder) timed beside what it is compared with
    (``deploy.measurement.benchmark``); prints one summary table."""
    from ravit_keras import runs
    from ravit_keras.console import is_verbose
    from ravit_keras.data.calibration import load_calibration as calibration_images
    from ravit_keras.data.source import matched
    from ravit_keras.deploy.measurement.bench_report import format_summary
    from ravit_keras.deploy.measurement.benchmark import run_benchmark
    from ravit_keras.deploy.runtime.manifest import load_manifest
    from ravit_keras.exits import validate_thresholds

    statics = _baselines(args.static_baseline, "--static-baseline")
    inputs = model_input("--model", args.model) + data_input(args)
    if args.baseline:
        inputs += model_input("--baseline", args.baseline)
    for name, path in statics.items():
        inputs += model_input(f"--static-baseline {name}", path)
    check_outputs(inputs, [("--out", args.out)])
    model = _bench_model("--model", args.model)
    converted = isinstance(model, Path)
    if converted and args.modes is not None:
        raise ValueError("--modes applies to a Keras model; a folder written by ravit convert is timed in "
                         "its own mode.")
    manifest = load_manifest(model) if converted else None  # Names a missing or altered submodel first.
    modes = (manifest.quantization,) if converted else (args.modes or CONVERSION_MODES)
    classes = _bench_classes("--model", args.model, model)
    compared = {f"--static-baseline {name}": path for name, path in statics.items()}
    if args.baseline:
        compared["--baseline"] = args.baseline
    loaded = {flag: _bench_model(flag, path) for flag, path in compared.items()}
    for flag, m in loaded.items():
        theirs = _bench_classes(flag, compared[flag], m)
        unnamed = runs.placeholder_class_names(len(theirs))  # A bare .keras file: its count alone says.
        if len(theirs) != len(classes) or theirs not in (classes, unnamed) and classes != unnamed:
            raise ValueError(f"{flag} {compared[flag]!r} classifies {plural(len(theirs), 'class', 'classes')}"
                             f" ({', '.join(theirs[:5])}, ...), the --model {plural(len(classes), 'class', 'classes')}"
                             f" ({', '.join(classes[:5])}, ...): compare models of the same classes.")
    for tau in args.thresholds or ():
        validate_thresholds(tau, 2, len(classes))  # Before any conversion.
    if converted:
        m = manifest
        split = data_source(args).load(args.split, (m.image.height, m.image.width), m.num_classes, args.limit)
        test = matched(split, classes, f"{args.data} {args.split}", say)
    else:
        config = model.ravit_config
        # Thresholds other than 0 route on calibrated entropies: a model that calibrates on test
        # images it sets aside is then measured on the rest of the test split.
        test, _ = load_reported(data_source(args), args.model, args.split, image_size=config.image_size,
                                num_classes=config.num_classes, limit=args.limit, calibrating=True, notes=say)
    if test.num_examples == 0:
        raise ValueError(f"The {args.split} split of {args.data} holds no images.")
    images, labels = test.as_numpy()
    # Calibration images convert the Keras models (int8 ranges, thresholds): those of the first one.
    keras_paths = [(args.model, model)] if not converted else []
    keras_paths += [(compared[f], m) for f, m in loaded.items() if not isinstance(m, Path)]
    cal_images = cal_labels = None
    if keras_paths:
        path, keras_model = keras_paths[0]
        config = keras_model.ravit_config
        cal, _ = calibration_images(data_source(args), path, image_size=config.image_size,
                                    num_classes=config.num_classes, num_images=args.calibration_images,
                                    model_classes=classes, split=args.calibration_split, notes=say)
        cal_images, cal_labels = cal.as_numpy()
    steps = say if is_verbose() or args.progress == "bar" else None
    result = run_benchmark(model, loaded.get("--baseline"), images, labels, cal_images, cal_labels, args.out,
                           thresholds=args.thresholds, num_threads=args.threads, naive=not args.no_naive,
                           class_names=classes, modes=modes, progress=steps,
                           static_baselines={n: loaded[f"--static-baseline {n}"] for n in statics})
    if is_verbose():
        print((Path(args.out) / "benchmark.md").read_text())
    else:
        print(format_summary(result))
    print(f"Wrote {args.out}/benchmark.md (every submodel's timing, the host's ceiling, fidelity to Keras) "
          "and benchmark.json")
    return 0
