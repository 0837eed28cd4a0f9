"""CIFAR-10 study: classic ViT-3 / ViT-4 vs RAViT 1-3 under one recipe and budget.

Trains each model with the same recipe (AdamW, cosine, pad-crop-flip) and epoch
budget, then reports top-1, MFLOPs and RAViT's early-exit sweep, plus training
throughput (images/s). Writes ``OUT/results.json``, ``OUT/results.md`` and a plot
of accuracy vs MFLOPs. Re-running resumes unfinished trainings.

    python benchmarks/cifar10_study.py --data ../shared/data-materialised/cifar-10-batches-py \
        --epochs 3 --out runs/cifar10_study
    python benchmarks/cifar10_study.py --backend jax ...   # Keras on JAX: no TensorFlow imported
    python benchmarks/cifar10_study.py --recipe strong ... # the stronger recipe (``ravit train --recipe``)

``--backend`` (default: Keras's own setting) is read from the command line before
Keras is imported; on JAX the data are NumPy batches augmented inside the step.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ravit_keras.cli.backend import BACKENDS, backend_flag  # noqa: E402

if backend_flag(["train", *sys.argv[1:]]) in BACKENDS:  # Before Keras is imported.
    os.environ["KERAS_BACKEND"] = backend_flag(["train", *sys.argv[1:]])

import numpy as np  # noqa: E402

from ravit_keras import exits  # noqa: E402
from ravit_keras.config import format_layers, get_config  # noqa: E402
from ravit_keras.data import load_split  # noqa: E402
from ravit_keras.evaluation import evaluate_logits, predict_exit_logits  # noqa: E402
from ravit_keras.io_utils import atomic_write_json, atomic_write_text  # noqa: E402
from ravit_keras.model import (  # noqa: E402
    RAViT,
    flops,  # noqa: E402
    load_ravit,
)
from ravit_keras.train import (  # noqa: E402
    MODEL_FILE,
    TrainingConfig,
    compile_ravit,
    make_optimizer,
    train,
    training_seconds,
)
from ravit_keras.training.from_data import fit_batches  # noqa: E402
from ravit_keras.training.recipes import RECIPES, model_and_training_settings, recipe_settings  # noqa: E402

# name -> config changes. "LIT": the first full-resolution layer of RAViT 1-3 is an
# attention-free MLP block (LIT, "Less is More: Pay Less Attention"). "w25-75": exit
# loss weights 0.25/0.75 instead of equal ones, so that exit 1's loss shapes the CLS
# token branch 2 starts from less (the 3-epoch diagnostic in BENCHMARKS.md §2).
MODELS = {
    "ViT-3": {"layers": "0-3"},
    "ViT-4": {"layers": "0-4"},
    "RAViT 1-3": {"layers": "1-3"},
    "RAViT 1-3 LIT": {"layers": "1-3", "mlp_layers": "0-1"},
    "RAViT 1-3 w25-75": {"layers": "1-3", "exit_weights": (0.25, 0.75)},
    # Integer-friendly variants (int8 fuses ReLU into the fully-connected layer).
    "RAViT 1-3 ReLU": {"layers": "1-3", "mlp_activation": "relu"},
    "RAViT 1-3 ReLU LIT": {"layers": "1-3", "mlp_layers": "0-1", "mlp_activation": "relu"},
    # Only each branch's last layer attends (int8 0.17x the GELU float32 model, BENCHMARKS §8).
    "RAViT 1-3 ReLU LIT 0-2": {"layers": "1-3", "mlp_layers": "0-2", "mlp_activation": "relu"},
}


def measure_throughput(config, batch_size: int, steps: int, seed: int = 0) -> float:
    """Training images/s of ``config`` on random data, after one warm-up call (in-memory arrays:
    Keras batches them on either backend, without tf.data on JAX)."""
    model = compile_ravit(RAViT(config), make_optimizer(1e-3, 0.05, 1000, 10))
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (batch_size * steps, *config.image_size, 3)).astype("float32")
    y = rng.integers(0, config.num_classes, len(x))
    labels = {n: y for n in config.exit_names}
    model.fit(x[:2 * batch_size], {n: v[:2 * batch_size] for n, v in labels.items()}, batch_size=batch_size,
              epochs=1, verbose=0, shuffle=False)  # Compiles the XLA step.
    start = time.perf_counter()
    model.fit(x, labels, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
    return len(x) / (time.perf_counter() - start)


def select_models(parser: argparse.ArgumentParser, spec: str, known: dict) -> dict:
    """``{name: changes}`` of the comma-separated ``--models`` names; an unknown name
    is a usage error naming the flag and the choices."""
    names = [m.strip() for m in spec.split(",")]
    unknown = [m for m in names if m not in known]
    if unknown:
        parser.error(f"--models: unknown {unknown}; choose from {', '.join(known)}")
    return {m: known[m] for m in names}


def add_recipe_arguments(p: argparse.ArgumentParser, *, epochs: int, batch_size: int) -> None:
    """The recipe and output flags every study shares."""
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-epochs", type=float, default=0.5)
    p.add_argument("--limit-train", type=int, help="use only the first N training images")
    p.add_argument("--dtype-policy", default="float32", choices=("float32", "mixed_bfloat16"))
    p.add_argument("--xla", default="auto", choices=("auto", "on", "off"))
    p.add_argument("--recipe", default="paper", choices=RECIPES,
                   help="paper (pad-crop-flip) or strong (RandAugment, CutMix/MixUp, label smoothing, drop path, "
                        "random erasing: `ravit train --recipe`)")
    p.add_argument("--backend", choices=BACKENDS,
                   help="Keras backend (default: Keras's own setting); read before Keras is imported")


def _describe_layers(config) -> str:
    """The layer spec, with attention-free layers and non-default exit weights if any."""
    text = config.layer_spec
    if config.mlp_layers:
        text += f", MLP {format_layers(config.mlp_layers)}"
    if config.mlp_activation != "gelu":
        text += f", {config.mlp_activation.upper()}"
    if config.exit_weights:
        text += ", weights " + "/".join(f"{w:g}" for w in config.exit_weights)
    return text


def run_study(base, models: dict, train_split, test_split, args, out: Path, dataset_title: str) -> dict:
    """Trains (or resumes) each of ``models`` ({name: layer spec}) on ``base`` and reports.

    Writes ``out/results.json`` after every model, then ``out/results.md`` and
    ``out/accuracy_vs_mflops.png``; each model's run folder is ``out/<name>``.
    """
    out.mkdir(parents=True, exist_ok=True)
    drop_path_rate, settings = model_and_training_settings(recipe_settings(getattr(args, "recipe", "paper")))
    recipe = TrainingConfig(
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
        weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs, seed=0,
        dtype_policy=args.dtype_policy, xla=args.xla, **settings,
    )
    results = {"recipe": recipe.__dict__, "train_images": train_split.num_examples,
               "test_images": test_split.num_examples, "models": {}}
    throughput_steps = getattr(args, "throughput_steps", 0)
    earlier = json.loads((out / "results.json").read_text()) if (out / "results.json").is_file() else {}
    previous = earlier.get("models", {})  # Keeps the training times of finished runs.
    # Models studied in an earlier call (trained one at a time) stay in the report,
    # before the ones of this call, if they were trained with the same recipe.
    if earlier.get("recipe") == results["recipe"]:
        results["models"].update({n: e for n, e in previous.items() if n not in models})
    for name, changes in models.items():
        config = base.replace(**{"drop_path_rate": drop_path_rate, **changes})
        run = out / name.replace(" ", "_")
        entry = {"layers": _describe_layers(config), "mflops": 2 * flops.model_macs(config) / 1e6}
        if throughput_steps:
            entry["train_images_per_s"] = measure_throughput(config, args.batch_size, throughput_steps)
            print(f"{name}: {entry['train_images_per_s']:.1f} training images/s", flush=True)
        if not (run / MODEL_FILE).exists():
            start = time.perf_counter()
            ds = fit_batches(train_split, config, recipe, training=True)
            train(config, ds, run, recipe, verbose=2, class_names=train_split.class_names)
            # Wall time of this call (XLA compilation and saving included); a resumed
            # run counts just the epochs it ran, hence the epoch times below.
            entry["train_seconds"] = time.perf_counter() - start
        elif "train_seconds" in previous.get(name, {}):
            entry["train_seconds"] = previous[name]["train_seconds"]
        epoch_seconds = training_seconds(run, args.epochs)  # Every epoch, across resumes.
        if epoch_seconds is not None:
            entry["epoch_seconds"] = epoch_seconds
        model = load_ravit(str(run / MODEL_FILE))
        logits, labels = predict_exit_logits(model, test_split)
        report = evaluate_logits(config, logits, labels, out_dir=run / "eval")
        entry.update(top1=report["accuracy"], per_exit_accuracy=report["per_exit_accuracy"])
        if len(logits) > 1:
            entry["sweep"] = report["sweep"]
        results["models"][name] = entry
        atomic_write_json(out / "results.json", results)
        print(f"{name}: top-1 {100 * entry['top1']:.2f}% at {entry['mflops']:.1f} MFLOPs", flush=True)

    baselines = {n: (e["mflops"], e["top1"]) for n, e in results["models"].items() if "sweep" not in e}
    baselines.update(getattr(args, "paper_points", None) or {})
    sweeps = {n: e["sweep"] for n, e in results["models"].items() if "sweep" in e}
    if sweeps:  # Every early-exit model's curve in one plot, beside the classic ViTs.
        exits.plot_accuracy_vs_flops(
            sweeps, out / "accuracy_vs_mflops.png", baselines=baselines,
            title=f"{dataset_title}, {args.epochs} epochs: early exit vs classic ViTs",
        )
    atomic_write_text(out / "results.md", format_markdown(results, args))
    print((out / "results.md").read_text())
    return results


# The paper's Table I (CIFAR-10, 400 epochs): top-1 at the MFLOPs of these configurations
# (ViT-3 83.17, ViT-4 110.89, RAViT 1-3 90.00 = 81 % of ViT-4; early exit at tau 0.05: 72 %).
PAPER_POINTS = {
    "paper ViT-3 (400 ep)": (83.17, 0.823),
    "paper ViT-4 (400 ep)": (110.89, 0.843),
    "paper RAViT 1-3 (400 ep)": (90.00, 0.849),
    "paper RAViT 1-3, τ 0.05": (0.72 * 110.89, 0.846),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="CIFAR-10 source (python folder, .tar.gz, .npz or tfds:cifar10)")
    p.add_argument("--out", default="runs/cifar10_study")
    add_recipe_arguments(p, epochs=3, batch_size=256)
    p.add_argument("--throughput-steps", type=int, default=12, help="0 skips the throughput measurement")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of " + ", ".join(MODELS))
    args = p.parse_args(argv)
    models = select_models(p, args.models, MODELS)

    train_split = load_split(args.data, "train", num_examples=args.limit_train)
    test_split = load_split(args.data, "test")
    args.paper_points = PAPER_POINTS
    run_study(get_config("cifar10"), models, train_split, test_split, args, Path(args.out), "CIFAR-10")
    return 0


def format_markdown(results, args) -> str:
    lines = [
        f"Budget: {args.epochs} epochs on {results['train_images']} training images, batch "
        f"{args.batch_size}, AdamW lr {args.lr} wd {args.weight_decay}, cosine, warm-up "
        f"{args.warmup_epochs} epochs, {getattr(args, 'recipe', 'paper')} recipe; test on "
        f"{results['test_images']} images.",
        "",
        "| model | layers | MFLOPs | top-1 (%) | per-exit top-1 (%) | train images/s |",
        "|---|---|---|---|---|---|",
    ]
    for name, e in results["models"].items():
        per_exit = ", ".join(f"{100 * a:.2f}" for a in e["per_exit_accuracy"])
        if "train_images_per_s" in e:
            tput = f"{e['train_images_per_s']:.0f}"
        elif "epoch_seconds" in e:  # The sum of every epoch's time, across resumes.
            tput = f"{results['train_images'] * args.epochs / e['epoch_seconds']:.0f} (epochs)"
        elif "train_seconds" in e:  # The last fit() call, XLA compilation and saving included.
            tput = f"{results['train_images'] * args.epochs / e['train_seconds']:.0f} (fit)"
        else:
            tput = "-"
        lines.append(f"| {name} | {e['layers']} | {e['mflops']:.2f} | {100 * e['top1']:.2f} | {per_exit} | {tput} |")
    for name, e in results["models"].items():
        if "sweep" not in e:
            continue
        lines += ["", f"Early-exit sweep of {name} (same τ at every exit):", "",
                  "| τ | top-1 (%) | avg MFLOPs | exits |", "|---|---|---|---|"]
        seen = set()
        for row in e["sweep"]:
            key = (round(row["accuracy"], 4), round(row["avg_mflops"], 2))
            if key in seen:
                continue
            seen.add(key)
            lines.append(f"| {row['tau']:.3f} | {100 * row['accuracy']:.2f} | {row['avg_mflops']:.2f} "
                         f"| {row['exit_counts']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
