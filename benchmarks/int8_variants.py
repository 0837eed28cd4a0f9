"""Integer-friendly RAViT 1-3 variants in int8 against the GELU float32 model (issue 26),
timed interleaved in ONE process, 1 thread, with per-operator profiles.

    python benchmarks/int8_variants.py --cifar10 runs/data/cifar-10-batches-py \
        --out runs/int8_variants --rounds 10 --repeats 2

Variants (CIFAR-10 configuration, random initial weights: latency and partitions are
those of a trained model with the same graph; accuracy comes from trainings, e.g. the
CIFAR-10 study's "RAViT 1-3 ReLU" and "RAViT 1-3 ReLU LIT"):

- RAViT 1-3 float32 with GELU: the reference every ratio is taken to;
- RAViT 1-3 int8: GELU (the shipped model), ReLU;
- RAViT 1-3 LIT (``mlp_layers`` 0-1) int8: GELU, ReLU;
- RAViT 1-3 LIT 0-2 (every full-resolution layer but the branch's last attention-free)
  int8 with ReLU: the most integer-friendly combination that keeps one attention layer
  per branch.

Each is converted with the project's converter (calibrated on 300 real training
images), then all submodels are timed together in ``--repeats`` independent
interleaved runs (``profiling.interleaved_latency``: ``--rounds`` rounds x 100 invokes,
median); the spread between the repeats is reported next to the ratios. Per-operator
profiles (``ravit profile``'s ``op_profile.profile_ops``) of every variant's last
submodel, per operator kind the median of several interleaved passes, are written as
JSON and text next to the table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

REFERENCE = "RAViT 1-3 GELU float32"
VARIANTS = {  # name: (config changes, mode)
    REFERENCE: ({"layers": "1-3"}, "float32"),
    "RAViT 1-3 GELU int8": ({"layers": "1-3"}, "int8"),
    "RAViT 1-3 ReLU int8": ({"layers": "1-3", "mlp_activation": "relu"}, "int8"),
    "RAViT 1-3 LIT GELU int8": ({"layers": "1-3", "mlp_layers": "0-1"}, "int8"),
    "RAViT 1-3 LIT ReLU int8": ({"layers": "1-3", "mlp_layers": "0-1", "mlp_activation": "relu"}, "int8"),
    "RAViT 1-3 LIT 0-2 ReLU int8": ({"layers": "1-3", "mlp_layers": "0-2", "mlp_activation": "relu"}, "int8"),
}


def _slug(name: str) -> str:
    return name.replace(" ", "_").replace("-", "")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cifar10", required=True, help="CIFAR-10 folder (calibration images)")
    p.add_argument("--out", default="runs/int8_variants")
    p.add_argument("--rounds", type=int, default=10, help="interleaved rounds per repeat (100 invokes each)")
    p.add_argument("--repeats", type=int, default=2, help="independent interleaved runs (spread between them)")
    p.add_argument("--profile-runs", type=int, default=100, help="invokes per profile pass")
    p.add_argument("--profile-passes", type=int, default=11, help="interleaved profile passes (median)")
    p.add_argument("--note", default="", help="a line about the host's load, written above the table")
    args = p.parse_args(argv)

    import keras
    import numpy as np

    from ravit_keras.config import get_config
    from ravit_keras.data import load_split
    from ravit_keras.deploy.export.convert import ConversionOptions, convert
    from ravit_keras.deploy.measurement.op_profile import format_profile, profile_ops
    from ravit_keras.deploy.measurement.profiling import cpu_description, interleaved_latency, undelegated_ops
    from ravit_keras.io_utils import atomic_write_json, atomic_write_text
    from ravit_keras.model import RAViT
    from ravit_keras.model.flops import cost_report

    out = Path(args.out)
    split = load_split(args.cifar10, "train", num_examples=300, holdout_fraction=0.1)
    x, y = split.as_numpy()
    meta = {}
    for name, (changes, mode) in VARIANTS.items():
        keras.utils.set_random_seed(0)
        config = get_config("cifar10", **changes).replace(num_classes=split.num_classes)
        folder = out / _slug(name)
        if not (folder / "manifest.json").is_file():
            print(f"converting {name}", flush=True)
            convert(RAViT(config), folder, x, y, class_names=split.class_names,
                    options=ConversionOptions(mode=mode, num_calibration=300), overwrite=True, progress=None)
        manifest = json.loads((folder / "manifest.json").read_text())
        files = [str(folder / e["file"]) for e in manifest["exits"]]
        meta[name] = {"files": files, "mode": mode, "mflops": cost_report(config)["mflops"],
                      "partitions": [undelegated_ops(f)["delegate_partitions"] for f in files],
                      "not_delegated": [undelegated_ops(f)["not_delegated"] for f in files]}

    all_files = [f for m in meta.values() for f in m["files"]]
    repeats = []
    for r in range(args.repeats):
        print(f"timing repeat {r + 1}/{args.repeats}: {len(all_files)} submodels interleaved, 1 thread", flush=True)
        timing = interleaved_latency(all_files, rounds=args.rounds, num_threads=1)
        repeats.append({name: [timing[f]["median_ms"] for f in m["files"]] for name, m in meta.items()})

    host = cpu_description()
    ref = [sum(rep[REFERENCE]) for rep in repeats]
    result = {"host": host, "note": args.note, "rounds": args.rounds, "repeats": args.repeats, "variants": {}}
    lines = [f"Host: {host}; 1 thread; {len(VARIANTS)} variants' {len(all_files)} submodels timed interleaved in "
             f"one process, {args.repeats} independent repeats x {args.rounds} rounds x 100 invokes (median).",
             *( [args.note] if args.note else []), "",
             "| variant | mode | MFLOPs | XNNPACK partitions | submodel ms (repeat 1) | end to end ms, repeat 1 / 2 "
             f"| vs {REFERENCE}, repeat 1 / 2 | spread of the ratio |",
             "|---|---|---|---|---|---|---|---|"]
    for name, m in meta.items():
        totals = [sum(rep[name]) for rep in repeats]
        ratios = [t / f for t, f in zip(totals, ref)]
        spread = (max(ratios) - min(ratios)) / np.mean(ratios)
        result["variants"][name] = {**m, "submodel_ms": [rep[name] for rep in repeats], "end_to_end_ms": totals,
                                    "ratio_to_reference": ratios}
        lines.append(f"| {name} | {m['mode']} | {m['mflops']:.2f} | {m['partitions']} | "
                     f"{' + '.join(f'{t:.4f}' for t in repeats[0][name])} | "
                     f"{' / '.join(f'{t:.4f}' for t in totals)} | {' / '.join(f'{q:.3f}x' for q in ratios)} | "
                     f"±{50 * spread:.1f} % |")

    # Per-operator profiles: --profile-passes passes over all variants, interleaved, each of
    # --profile-runs invokes; per operator kind the median over the passes (one pass's mean
    # takes every preemption of a busy host on whichever operator was running).
    passes = {name: [] for name in meta}
    for _ in range(args.profile_passes):
        for name, m in meta.items():
            passes[name].append(profile_ops(m["files"][-1], runs=args.profile_runs))
    lines += ["", f"Per-operator profile of each variant's last submodel (`ravit profile`: LiteRT's profiler; "
              f"{args.profile_passes} interleaved passes x {args.profile_runs} invokes, per operator kind the "
              "median over the passes; share of their sum):", "",
              "| variant | submodel | profiled µs | largest operator kinds |", "|---|---|---|---|"]
    texts = []
    for name, m in meta.items():
        kinds = {}
        for profile in passes[name]:
            for g in profile.by_type():
                kinds.setdefault(g["name"], {"count": g["count"], "us": []})["us"].append(g["us"])
        rows = sorted(({"name": k, "count": v["count"],
                        "us": float(np.median(v["us"] + [0.0] * (args.profile_passes - len(v["us"]))))}
                       for k, v in kinds.items()), key=lambda r: -r["us"])
        total = sum(r["us"] for r in rows)
        result["variants"][name]["op_profile"] = {"median_us_by_kind": rows, "total_us": total,
                                                  "passes": [pr.to_dict() for pr in passes[name]]}
        atomic_write_json(out / f"profile_{_slug(name)}.json", result["variants"][name]["op_profile"])
        texts.append(f"## {name}: {Path(m['files'][-1]).name}, {total:.1f} µs (sum of per-kind medians)\n\n"
                     + "\n".join(f"  {r['name'][:46]:<46} x{r['count']:<3} {r['us']:8.1f} µs {100 * r['us'] / total:5.1f} %"
                                 for r in rows) + "\n\n" + format_profile(passes[name][0], top=20) + "\n")
        lines.append(f"| {name} | {Path(m['files'][-1]).name} | {total:.0f} | "
                     + ", ".join(f"{r['name']} ×{r['count']} {100 * r['us'] / total:.0f} %" for r in rows[:6]) + " |")
    atomic_write_json(out / "int8_variants.json", result)
    atomic_write_text(out / "int8_variants.md", "\n".join(lines) + "\n")
    atomic_write_text(out / "profiles.txt", "\n".join(texts))
    print("\n".join(lines))
    print("\n" + "\n".join(texts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
