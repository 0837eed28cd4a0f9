"""Builds the CIFAR-10 presets from the GPU study's 213-epoch runs (``../shared/gpu_study/``).

    python scripts/import_gpu_study.py --study ../shared/gpu_study \
        --data /work/main/runs/data/cifar-10-batches-py [--presets vit3_cifar10,...]

The study trained five models with the project's own model code and the presets'
recipe on one NVIDIA H200 (JAX backend; ``gpu_paper_budget.py`` there), seed 0 for
213 epochs (weights kept) and seed 1 for 200 (weights not kept). For each preset
this writes ``ravit_keras/presets/NAME/``, a run folder (``ravit_keras.runs``):

    model.keras   the seed-0 weights, float32, no optimizer state (at most 5 MB)
    config.json   the run record: model, recipe (backend jax), class names, data
                  signature, and the calibration images: the models were trained on
                  all 50,000 training images, so thresholds are calibrated on 2,000
                  test images set aside (seed 0) and figures reported on the other 8,000
    log.csv       what the run recorded: every 50 epochs the training loss and each
                  exit's test top-1 (as val_exit_i_accuracy; mixed_bfloat16)
    card.json     how it was made (script, command, host, versions, both seeds; in words
                  and commands a user can follow, no paths of this machine), the
                  project's own command that would reproduce it, and the top-1
                  re-measured here with TensorFlow through the project's pipeline: on all
                  10,000 test images, on the 8,000 reported ones, and on the first 500
                  (which ``tests/test_presets.py`` re-measures)

Deterministic given the study files and the dataset; run it once per change (it
predicts the 10,000 test images with every model: a few minutes on 2 CPU cores), then
``scripts/ship_presets.py`` (each preset's int8 submodels and metadata.json).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ravit_keras import run_calibration, runs  # noqa: E402
from ravit_keras.config import format_layers  # noqa: E402
from ravit_keras.deploy.measurement.profiling import cpu_description  # noqa: E402
from ravit_keras.io_utils import atomic_directory  # noqa: E402
from ravit_keras.presets import CARD_FILE, PRESETS_DIR  # noqa: E402
from ravit_keras.runs import MODEL_FILE  # noqa: E402

MAX_BYTES = 5 * 1024 * 1024
# preset name -> the study's model name (its results key and test-logits prefix)
PRESETS = {
    "vit3_cifar10": "ViT-3",
    "vit4_cifar10": "ViT-4",
    "ravit_1-3_cifar10": "RAViT 1-3",
    "ravit_1-3_lit_cifar10": "RAViT 1-3 LIT",
}
# The flags each model was built from in the project's own terms (``ravit train``).
TRAIN_FLAGS = {
    "ViT-3": "--layers 0-3",
    "ViT-4": "--layers 0-4",
    "RAViT 1-3": "--layers 1-3",
    "RAViT 1-3 LIT": "--layers 1-3 --mlp-layers 0-1",
}
RESERVED = run_calibration.ReservedTestImages(images=2000, seed=0, of=10000)
DATA_DESCRIPTION = (
    "CIFAR-10, the official split (https://www.cs.toronto.edu/~kriz/cifar.html, what keras.datasets.cifar10 "
    "downloads): trained on all 50,000 training images. The copy the study read kept the original pixels of "
    "8,068 training and 4,599 test images and had the rest recovered from JPEG copies (quality 75, about "
    "30.5 dB PSNR), so accuracies may sit slightly below what the original images give")
# The run record's data source: a name, not a path on the machine that made it.
DATA_SOURCE = "CIFAR-10 (official split)"
SCRIPT = ("gpu_paper_budget.py, the GPU study's training script (not distributed with the package): it builds "
          "each model with this package's ravit_keras.model.RAViT and get_config('cifar10') and trains it with "
          "the recipe below; 'reproduce' is this package's own command for the same run")
MEASURE_COMMAND = ("python scripts/import_gpu_study.py --study STUDY_DIR --data path/to/cifar-10-batches-py "
                   "(STUDY_DIR: the study's results_seed0.json, results_seed1.json and .keras files), then "
                   "python scripts/ship_presets.py --data path/to/cifar-10-batches-py (int8/ and metadata.json)")
STUDY_COMMAND = (
    'python gpu_paper_budget.py --data cifar10_compact.npz --code code --out OUT '
    '--models "ViT-3,ViT-4,RAViT 1-3,RAViT 1-3 LIT,RAViT 1-3 w25-75" --max-epochs 400 '
    '--hard-stop-s 510 --reserve-s 70 --eval-every 50   # seed 0: sized itself to 213 epochs '
    '(seed 1: --seed 1, 200 epochs, without the LIT model)')
TRAINING_HOST = "one NVIDIA H200 (CUDA), JAX 0.11.2, Keras 3.15.1; all five models side by side in one jitted program"
JAX_PENDING = ("not re-run: `ravit train` runs on JAX since issue 22 (this command, untested at this budget: "
               "no GPU was lent); "
               "the models were trained by the study's script, which uses the project's model code "
               "(ravit_keras.model.RAViT, get_config('cifar10'), commit a58da8b) and this recipe")


def reproduce_command(model: str, data: str = "path/to/cifar-10-batches-py") -> str:
    """The project's own command for the same run, once ``ravit train`` runs on JAX."""
    return (f"KERAS_BACKEND=jax ravit train --arch cifar10 {TRAIN_FLAGS[model]} --data {data} "
            "--epochs 213 --batch-size 256 --lr 1e-3 --weight-decay 0.05 --warmup-epochs 0.5 "
            "--dtype-policy mixed_bfloat16 --seed 0 --calibration-holdout 0 --out runs/NAME")


def training_recipe(results: dict, seed: int):
    """The recipe as ``ravit train`` records it, from a study results file."""
    from ravit_keras.training.recipe import TrainingConfig

    recipe = TrainingConfig(
        epochs=int(results["epochs_done"]), batch_size=int(results["batch"]),
        learning_rate=float(results["lr"]), weight_decay=float(results["wd"]),
        warmup_epochs=float(results["warmup_epochs"]), min_learning_rate_ratio=0.01, label_smoothing=0.0,
        seed=seed, steps_per_epoch=int(results["steps_per_epoch"]), dtype_policy=results["policy"], xla="on")
    return {**dataclasses.asdict(recipe), "backend": "jax"}


def log_rows(results: dict, model_index: int, num_exits: int) -> str:
    """log.csv: one row per evaluation (every 50 epochs): training loss and test top-1 per exit."""
    out = io.StringIO()
    fields = ["epoch", "loss"] + [f"val_exit_{i + 1}_accuracy" for i in range(num_exits)]
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for point in results["curve"]:
        acc = point["acc"][model_index]
        writer.writerow({"epoch": int(point["epoch"]) - 1,  # Keras's CSVLogger counts epochs from 0.
                         "loss": point["loss"][model_index],
                         **{f"val_exit_{i + 1}_accuracy": acc[i] for i in range(num_exits)}})
    return out.getvalue()


def heldout_figures(config, logits, labels, vit4_mflops: float) -> dict:
    """Top-1 on the 8,000 reported test images; for RAViT, the early-exit operating points at
    0.75x and 0.70x ViT-4's MFLOPs with thresholds calibrated on the 2,000 set aside."""
    import numpy as np

    from ravit_keras.exits.calibration import calibrate_thresholds
    from ravit_keras.exits.routing import evaluate_exits
    from ravit_keras.model import flops

    cal, rest = RESERVED.calibration_index(len(labels)), RESERVED.reported_index(len(labels))
    figures = {"reported_images": int(len(rest)),
               "top1_no_early_exit": float(np.mean(logits[-1][rest].argmax(-1) == labels[rest]))}
    if len(logits) < 2:
        return figures
    macs = flops.exit_macs(config)
    points = []
    for fraction in (0.75, 0.70):
        budget = fraction * vit4_mflops / 2 * 1e6
        chosen = calibrate_thresholds([x[cal] for x in logits], labels[cal], macs, mac_budget=budget)
        measured = evaluate_exits([x[rest] for x in logits], labels[rest], chosen["thresholds"], macs)
        points.append({"budget_vs_vit4": fraction, "thresholds": [float(t) for t in chosen["thresholds"]],
                       "top1": float(measured["accuracy"]), "avg_mflops": float(measured["avg_mflops"]),
                       "exit_fractions": [float(f) for f in measured["exit_fractions"]]})
    figures["early_exit_at_budget"] = points
    return figures


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--study", default=str(REPO.parent / "shared" / "gpu_study"),
                   help="the GPU study folder (results_seed*.json, *.keras)")
    p.add_argument("--data", required=True, help="CIFAR-10 (its test split is measured), e.g. cifar-10-batches-py")
    p.add_argument("--presets", default=",".join(PRESETS), help="which presets to build")
    p.add_argument("--check-images", type=int, default=500)
    args = p.parse_args(argv)

    import keras
    import numpy as np

    from ravit_keras.config import get_config
    from ravit_keras.data import load_split
    from ravit_keras.evaluation import predict_exit_logits
    from ravit_keras.model import RAViT, load_ravit
    from ravit_keras.model.flops import model_macs

    study = Path(args.study)
    results = {seed: json.loads((study / f"results_seed{seed}.json").read_text()) for seed in (0, 1)}
    names = [n.strip() for n in args.presets.split(",") if n.strip()]
    unknown = sorted(set(names) - set(PRESETS))
    if unknown:
        raise SystemExit(f"unknown presets {unknown}; the study gives {sorted(PRESETS)}")
    vit4_mflops = 2 * model_macs(get_config("cifar10").classic(4)) / 1e6
    test = None
    for name in names:
        model_name = PRESETS[name]
        entry = results[0]["models"][model_name]
        trained = load_ravit(str(study / entry["file"]))
        config = trained.ravit_config
        recorded = {k: v for k, v in entry["config"].items()}
        if config.to_dict() != recorded:
            raise SystemExit(f"{entry['file']}: config {config.to_dict()} is not the study's {recorded}")
        keras.config.set_dtype_policy("float32")
        model = RAViT(config)  # Uncompiled: the file keeps weights, not optimizer state.
        model.set_weights(trained.get_weights())
        if test is None:
            test = load_split(args.data, "test", image_size=config.image_size)
            if test.num_examples != RESERVED.of:
                raise SystemExit(f"{args.data}: {test.num_examples} test images, not CIFAR-10's {RESERVED.of}")
        print(f"{name}: predicting {test.num_examples} test images", flush=True)
        logits, labels = predict_exit_logits(model, test)
        per_exit = [float(np.mean(x.argmax(-1) == labels)) for x in logits]
        n = args.check_images
        model_index = list(results[0]["models"]).index(model_name)
        seeds = {}
        for seed, res in results.items():
            if model_name in res["models"]:
                seeds[f"seed_{seed}"] = {"epochs": res["epochs_done"],
                                         "test_top1_per_exit_float32": res["models"][model_name]["acc_float32"],
                                         "weights": "this preset" if seed == 0 else "not kept"}
        card = {
            "name": name,
            "layers": config.layer_spec,
            **({"mlp_layers": format_layers(config.mlp_layers)} if config.mlp_layers else {}),
            "mflops": 2 * model_macs(config) / 1e6,
            "data": DATA_DESCRIPTION,
            "command": STUDY_COMMAND,
            "script": SCRIPT,
            "host": TRAINING_HOST,
            "train_seconds": round(float(results[0]["train_seconds"]), 1),
            "train_seconds_note": "all five models of the study together, on the H200",
            "epochs": int(results[0]["epochs_done"]),
            "recipe": ("batch 256, AdamW lr 1e-3 wd 0.05 (every variable), 0.5-epoch linear warm-up then cosine to "
                       "1 % of the peak, pad-4 crop + horizontal flip, mixed_bfloat16, per-exit cross-entropy "
                       "summed with the config's loss weights; 195 steps per epoch (last partial batch dropped)"),
            "seeds": seeds,
            "reproduce": {"command": reproduce_command(model_name), "status": JAX_PENDING},
            "calibration": {**RESERVED.to_record(),
                            "why": "trained on all 50,000 training images (no training holdout): thresholds "
                                   "are calibrated on these test images and every early-exit figure is "
                                   "reported on the other 8,000"},
            "measured_on": cpu_description() + f", TensorFlow backend, Keras {keras.__version__}",
            "measure_command": MEASURE_COMMAND,
            "test_images": int(len(labels)),
            "test_top1": per_exit[-1],
            "test_top1_per_exit": per_exit,
            "heldout": heldout_figures(config, logits, labels, vit4_mflops),
            "check": {"first_test_images": n,
                      "top1_last_exit": float(np.mean(logits[-1][:n].argmax(-1) == labels[:n]))},
        }
        data = runs.data_signature(
            DATA_SOURCE, 50000, test.class_names, holdout_fraction=0.1,
            calibration_holdout=0.0)
        data["calibration"] = RESERVED.to_record()
        out = PRESETS_DIR / name
        with atomic_directory(out, overwrite=True) as tmp:
            model.save(tmp / MODEL_FILE)
            size = (tmp / MODEL_FILE).stat().st_size
            if size > MAX_BYTES:
                raise SystemExit(f"{MODEL_FILE} is {size / 1e6:.1f} MB; presets ship at most {MAX_BYTES / 1e6:.1f} MB.")
            runs.write_record(tmp, config.to_dict(), training_recipe(results[0], seed=0), test.class_names, data)
            (tmp / runs.LOG_FILE).write_text(log_rows(results[0], model_index, len(per_exit)))
            (tmp / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
        print(json.dumps({k: card[k] for k in ("name", "test_top1_per_exit", "heldout", "check")}, indent=1),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
