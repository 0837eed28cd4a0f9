"""The CIFAR-10 Table I at the GPU study's budget, from its saved test logits (no model is run).

    python benchmarks/gpu_study_table.py --study ../shared/gpu_study --out runs/gpu_study_table \
        --plot docs/cifar10_213epochs_accuracy_vs_mflops.png

For seed 0 (213 epochs) and seed 1 (200 epochs) and every model of the study: top-1
on all 10,000 test images and on the 8,000 the figures are reported on. For the
early-exit models, operating points at budgets of 0.50-0.80x ViT-4's MFLOPs with
thresholds calibrated (``calibrate_thresholds``) on the 2,000 test images the
presets set aside (``run_calibration.ReservedTestImages(2000, 0, 10000)``) and measured on the
other 8,000 (``evaluate_exits``), beside the paper's Table I. Writes ``table.md`` and
``table.json`` to --out and the accuracy-vs-MFLOPs plot (seed 0) to --plot.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ravit_keras import run_calibration  # noqa: E402
from ravit_keras.config import get_config  # noqa: E402
from ravit_keras.exits.calibration import calibrate_thresholds  # noqa: E402
from ravit_keras.exits.routing import evaluate_exits  # noqa: E402
from ravit_keras.model import flops  # noqa: E402

RESERVED = run_calibration.ReservedTestImages(images=2000, seed=0, of=10000)
MODELS = {  # study name -> (config changes, the paper's Table I top-1 after 400 epochs or None)
    "ViT-3": (dict(layers="0-3"), 0.823),
    "ViT-4": (dict(layers="0-4"), 0.843),
    "RAViT 1-3": (dict(layers="1-3"), 0.849),
    "RAViT 1-3 LIT": (dict(layers="1-3", mlp_layers="0-1"), None),
    "RAViT 1-3 w25-75": (dict(layers="1-3", exit_weights=(0.25, 0.75)), None),
}
BUDGETS = (0.80, 0.75, 0.70, 0.65, 0.60, 0.55, 0.50)  # x ViT-4's MFLOPs
PAPER_EARLY_EXIT = (0.72, 0.846)  # RAViT 1-3 at τ 0.05: 72 % of ViT-4's FLOPs, 84.6 %


def model_logits(z, name: str) -> list[np.ndarray]:
    exits = sorted((k for k in z.files if k.startswith(name + "|exit_")), key=lambda k: int(k.rsplit("_", 1)[1]))
    return [np.asarray(z[k]) for k in exits]


def study_table(study: Path) -> dict:
    cifar = get_config("cifar10")
    vit4 = 2 * flops.model_macs(cifar.classic(4)) / 1e6
    table = {"reserved": RESERVED.to_record(), "vit4_mflops": vit4, "seeds": {}}
    for seed in (0, 1):
        results = json.loads((study / f"results_seed{seed}.json").read_text())
        z = np.load(study / f"test_logits_seed{seed}.npz")
        labels = np.asarray(z["y_test"]).reshape(-1)
        cal, rest = RESERVED.calibration_index(len(labels)), RESERVED.reported_index(len(labels))
        rows = {}
        for name, (changes, paper) in MODELS.items():
            logits = model_logits(z, name)
            if not logits:
                continue
            config = cifar.replace(**changes)
            macs = flops.exit_macs(config)
            row = {"mflops": 2 * macs[-1] / 1e6, "paper_top1": paper,
                   "top1_per_exit_10000": [float(np.mean(x.argmax(-1) == labels)) for x in logits],
                   "top1_8000": float(np.mean(logits[-1][rest].argmax(-1) == labels[rest]))}
            if len(logits) > 1:
                points = []
                for fraction in BUDGETS:
                    budget = fraction * vit4 / 2 * 1e6
                    if budget < macs[0]:
                        continue
                    chosen = calibrate_thresholds([x[cal] for x in logits], labels[cal], macs, mac_budget=budget)
                    measured = evaluate_exits([x[rest] for x in logits], labels[rest], chosen["thresholds"], macs)
                    points.append({"budget_vs_vit4": fraction,
                                   "thresholds": [float(t) for t in chosen["thresholds"]],
                                   "calibration_top1": float(chosen["calibration"]["accuracy"]),
                                   "accuracy": float(measured["accuracy"]),
                                   "avg_mflops": float(measured["avg_mflops"]),
                                   "exit_counts": [int(c) for c in measured["exit_counts"]]})
                row["early_exit_heldout"] = points
            rows[name] = row
        table["seeds"][str(seed)] = {"epochs": results["epochs_done"], "models": rows}
    return table


def markdown(table: dict) -> str:
    vit4 = table["vit4_mflops"]
    s0, s1 = table["seeds"]["0"], table["seeds"]["1"]
    lines = [f"Seed 0: {s0['epochs']} epochs; seed 1: {s1['epochs']} epochs. Top-1 (%) of the last exit; "
             "8,000 = the test images not set aside for calibration.", "",
             "| model | MFLOPs | x ViT-4 | seed 0, 10,000 (exit 1 / last) | seed 0, 8,000 | seed 1, 10,000 | "
             "seed 1, 8,000 | paper Table I (400 epochs) |", "|---|---|---|---|---|---|---|---|"]
    for name, row in s0["models"].items():
        other = s1["models"].get(name)
        acc = " / ".join(f"{100 * a:.2f}" for a in row["top1_per_exit_10000"])
        acc1 = " / ".join(f"{100 * a:.2f}" for a in other["top1_per_exit_10000"]) if other else "not trained"
        held1 = f"{100 * other['top1_8000']:.2f}" if other else "–"
        paper = f"{100 * row['paper_top1']:.1f}" if row["paper_top1"] else "–"
        lines.append(f"| {name} | {row['mflops']:.2f} | {row['mflops'] / vit4:.2f} | {acc} | "
                     f"{100 * row['top1_8000']:.2f} | {acc1} | {held1} | {paper} |")
    for seed, entry in table["seeds"].items():
        lines += ["", f"Early exit, seed {seed}: thresholds calibrated on the 2,000 set-aside test images to a "
                  "budget, measured on the other 8,000:", "",
                  "| model | budget (x ViT-4) | τ | top-1 on 8,000 (%) | avg MFLOPs | x ViT-4 | "
                  "images leaving at [exit 1, exit 2] |", "|---|---|---|---|---|---|---|"]
        for name, row in entry["models"].items():
            for p in row.get("early_exit_heldout", []):
                lines.append(f"| {name} | {p['budget_vs_vit4']:.2f} | {p['thresholds'][0]:.3f} | "
                             f"{100 * p['accuracy']:.2f} | {p['avg_mflops']:.2f} | {p['avg_mflops'] / vit4:.2f} | "
                             f"{p['exit_counts']} |")
    return "\n".join(lines) + "\n"


def plot(table: dict, path: Path) -> Path:
    from ravit_keras.exits.plots import plot_accuracy_vs_flops

    seed0 = table["seeds"]["0"]["models"]
    curves, points = {}, {}
    for name, row in seed0.items():
        if "early_exit_heldout" in row:
            no_exit = {"avg_mflops": row["mflops"], "accuracy": row["top1_8000"]}
            curves[f"{name} (held-out τ)"] = [no_exit] + row["early_exit_heldout"]
        else:
            points[f"{name}, 213 ep"] = (row["mflops"], row["top1_8000"])
    for name, (_changes, paper) in MODELS.items():
        if paper is not None:
            points[f"paper {name} (400 ep)"] = (seed0[name]["mflops"], paper)
    points["paper RAViT 1-3, τ 0.05"] = (PAPER_EARLY_EXIT[0] * table["vit4_mflops"], PAPER_EARLY_EXIT[1])
    return plot_accuracy_vs_flops(curves, path, baselines=points,
                                  title="CIFAR-10, 213 epochs (seed 0), 8,000 test images")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--study", default=str(REPO.parent / "shared" / "gpu_study"))
    p.add_argument("--out", default="runs/gpu_study_table")
    p.add_argument("--plot", help="accuracy-vs-MFLOPs PNG (seed 0)")
    args = p.parse_args(argv)
    table = study_table(Path(args.study))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.json").write_text(json.dumps(table, indent=1) + "\n")
    (out / "table.md").write_text(markdown(table))
    if args.plot:
        print(f"Wrote {plot(table, Path(args.plot))}")
    print((out / "table.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
