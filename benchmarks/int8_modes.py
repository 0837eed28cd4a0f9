"""Conversion modes side by side: XNNPACK partitions, latency and share of the host's
fully-connected ceiling for several architectures, timed in ONE interleaved run.

    python benchmarks/int8_modes.py --cifar10 runs/data/cifar-10-batches-py \
        --tinyimagenet runs/data/tiny-imagenet-200 \
        --weights "RAViT 1-3=runs/study/RAViT_1-3/model.keras" --out runs/int8_modes

Models: RAViT 1-3, RAViT 1-3 LIT (its first full-resolution layer an attention-free MLP
block) and ViT-4 in the CIFAR-10 configuration, RAViT 2-0-3 and ViT-4 in
the Tiny ImageNet configuration of the study (d=64, h=256, 2 heads). A model without
``--weights`` keeps its random initialisation: its latency and partitions are those of
a trained model (same graph, same shapes), its accuracy means nothing and is not
reported. Every model is calibrated on 300 real training images of its dataset.
Accuracy per mode comes from ``ravit bench`` on a trained model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MODES = ("int8", "int8-full", "dynamic", "float32")
MODELS = {  # name: (dataset, config name, changes)
    "RAViT 1-3": ("cifar10", "cifar10", {"layers": "1-3"}),
    "RAViT 1-3 LIT": ("cifar10", "cifar10", {"layers": "1-3", "mlp_layers": "0-1"}),
    "ViT-4": ("cifar10", "cifar10", {"layers": "0-4"}),
    "RAViT 2-0-3 (Tiny ImageNet)": ("tinyimagenet", "tinyimagenet",
                                    {"layers": "2-0-3", "hidden_dim": 64, "mlp_dim": 256, "num_heads": 2}),
    "ViT-4 (Tiny ImageNet)": ("tinyimagenet", "tinyimagenet",
                              {"layers": "0-0-4", "hidden_dim": 64, "mlp_dim": 256, "num_heads": 2}),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cifar10", required=True, help="CIFAR-10 folder (calibration images)")
    p.add_argument("--tinyimagenet", help="tiny-imagenet-200 folder (skip its models without it)")
    p.add_argument("--weights", action="append", default=[], help="NAME=model.keras: trained weights for NAME")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--out", default="runs/int8_modes")
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (100 invokes each)")
    args = p.parse_args(argv)

    import keras

    from ravit_keras.config import get_config
    from ravit_keras.data import load_split
    from ravit_keras.deploy.export.convert import ConversionOptions, convert
    from ravit_keras.deploy.measurement.op_profile import profile_ops
    from ravit_keras.deploy.measurement.profiling import (
        cpu_description,
        interleaved_latency,
        matrix_macs,
        undelegated_ops,
    )
    from ravit_keras.deploy.measurement.reference_models import (
        CEILING_SHAPES,
        ceiling_arithmetic,
        ceiling_gmacs,
        fully_connected_ceiling_models,
    )
    from ravit_keras.deploy.runtime.manifest import load_manifest
    from ravit_keras.io_utils import atomic_write_json, atomic_write_text
    from ravit_keras.model import RAViT, load_ravit
    from ravit_keras.model.flops import branch_costs

    weights = dict(w.split("=", 1) for w in args.weights)
    modes = args.modes.split(",")
    out = Path(args.out)
    data = {"cifar10": args.cifar10, "tinyimagenet": args.tinyimagenet}
    files, meta = {}, {}
    for name, (dataset, preset, changes) in MODELS.items():
        if not data[dataset]:
            continue
        split = load_split(data[dataset], "train", num_examples=300, holdout_fraction=0.1)
        x, y = split.as_numpy()
        if name in weights:
            model = load_ravit(weights[name])
        else:
            keras.utils.set_random_seed(0)
            model = RAViT(get_config(preset, **changes).replace(num_classes=split.num_classes))
        config = model.ravit_config
        costs = branch_costs(config)
        for mode in modes:
            folder = out / name.split(" (")[0].replace(" ", "_") / dataset / mode
            if not (folder / "manifest.json").is_file():
                print(f"converting {name} to {mode}", flush=True)
                convert(model, folder, x, y, class_names=split.class_names,
                        options=ConversionOptions(mode=mode, num_calibration=300), overwrite=True, progress=None)
            manifest = load_manifest(folder)
            subs = [folder / e.file for e in manifest.exits]
            # Submodel files are named branch_<i>.tflite after the branch they end with.
            macs = [costs[int(f.stem.rsplit("_", 1)[1]) - 1].macs for f in subs]
            meta[(name, mode)] = {"files": [str(f) for f in subs], "macs": macs,
                                  "trained": name in weights}
            files.update({str(f): None for f in subs})
    ceiling = fully_connected_ceiling_models(out / "ceiling")
    ceiling_files = [str(p) for paths in ceiling.values() for p in paths]
    print(f"timing {len(files) + len(ceiling_files)} models interleaved, 1 thread", flush=True)
    timing = interleaved_latency(list(files) + ceiling_files, rounds=args.rounds, num_threads=1)
    gmacs = ceiling_gmacs(ceiling, timing)

    result = {"host": cpu_description(), "fc_ceiling_gmacs": gmacs, "models": {}}
    for (name, mode), m in meta.items():
        ms = [timing[f]["median_ms"] for f in m["files"]]
        parts = [undelegated_ops(f)["delegate_partitions"] for f in m["files"]]
        arithmetic = ceiling_arithmetic(mode)
        # Share of the ceiling: the matrix MACs the graph executes per second.
        share = [100 * matrix_macs(f) / t / 1e6 / gmacs[arithmetic] for f, t in zip(m["files"], ms)]
        result["models"].setdefault(name, {})[mode] = {"submodel_ms": ms, "end_to_end_ms": sum(ms),
                                                       "partitions": parts, "share_of_ceiling_pct": share,
                                                       "trained_weights": m["trained"]}
    lines = [f"Host: {result['host']}; 1 thread; all submodels and the two ceiling models timed interleaved "
             f"in one process ({args.rounds} rounds x 100 invokes, median).",
             f"Fully-connected ceiling (best of {', '.join('x'.join(map(str, c)) for c in CEILING_SHAPES)}): "
             f"int8 {gmacs['int8']:.1f} GMAC/s, "
             f"float32 {gmacs['float32']:.1f} GMAC/s.", "",
             "| model | mode | XNNPACK partitions per submodel | submodel ms | end to end ms | vs float32 | vs int8-full | share of FC ceiling per submodel |",
             "|---|---|---|---|---|---|---|---|"]
    for name, by_mode in result["models"].items():
        for mode, r in by_mode.items():
            f32 = by_mode.get("float32", {}).get("end_to_end_ms")
            full = by_mode.get("int8-full", {}).get("end_to_end_ms")
            lines.append(
                f"| {name} | {mode} | {r['partitions']} | {', '.join(f'{t:.4f}' for t in r['submodel_ms'])} | "
                f"{r['end_to_end_ms']:.4f} | {r['end_to_end_ms'] / f32:.2f}x | {r['end_to_end_ms'] / full:.2f}x | "
                f"{', '.join(f'{s:.0f} %' for s in r['share_of_ceiling_pct'])} |")
    # Where the int8 time goes: XNNPACK's operators of each model's last (largest) int8
    # submodel, grouped by kind (LiteRT's profiler; its bookkeeping adds a little).
    lines += ["", "Where the int8 time goes (`ravit profile`, last submodel of each model, share of its "
              "profiled time):", "", "| model | submodel | profiled µs | largest operator kinds |", "|---|---|---|---|"]
    for (name, mode), m in meta.items():
        if mode != "int8":
            continue
        profile = profile_ops(m["files"][-1], runs=200)
        kinds = profile.by_type()
        result["models"][name][mode]["op_profile"] = profile.to_dict()
        lines.append(f"| {name} | {Path(m['files'][-1]).name} | {profile.total_us:.0f} | "
                     + ", ".join(f"{k['name'].split(' (')[0]} ×{k['count']} {100 * k['share']:.0f} %"
                                 for k in kinds[:5]) + " |")
    atomic_write_json(out / "int8_modes.json", result)
    atomic_write_text(out / "int8_modes.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
