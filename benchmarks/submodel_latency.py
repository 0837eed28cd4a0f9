"""Invoke latency of several converted models' submodels, timed interleaved in one process.

    python benchmarks/submodel_latency.py "RAViT 1-3 LIT=runs/bench_lit/ravit_int8" \
        "RAViT 1-3=runs/bench_vit3_again/ravit_int8" "ViT-3=runs/bench_lit/vit_int8" --repeats 4

Each NAME=FOLDER is a folder written by ``ravit convert`` (or ``ravit bench``'s
``ravit_int8``/``vit_int8``). Every submodel of every folder is timed in the same
rounds (``profiling.interleaved_latency``), so a host that speeds up or slows down
mid-run shifts all models alike; absolute times on a shared 2-core host drift between
repeats, the ratios much less, which is why the ratios to the first model are printed.
The end-to-end time is the sum of a model's submodels (no early exit).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _named_folder(text: str) -> tuple[str, Path]:
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise argparse.ArgumentTypeError(f"{text!r}: give NAME=FOLDER")
    return name, Path(folder)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", type=_named_folder, metavar="NAME=FOLDER")
    p.add_argument("--repeats", type=int, default=3, help="independent interleaved runs (default: 3)")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--runs", type=int, default=200, help="invokes per submodel per round")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    from ravit_keras.deploy.measurement.profiling import cpu_description, interleaved_latency
    from ravit_keras.deploy.runtime.manifest import ManifestError, load_manifest

    files = {}
    for name, folder in args.models:
        try:
            manifest = load_manifest(folder)
        except (FileNotFoundError, ManifestError) as err:
            p.error(f"{name}: {err}")
        files[name] = [folder / e.file for e in manifest.exits]
    print(f"{cpu_description()}; {args.threads} thread(s); {args.rounds} rounds x {args.runs} invokes")
    first = args.models[0][0]
    print("| repeat | " + " | ".join(f"{n} ms" for n in files) + " | " +
          " | ".join(f"{n} / {first}" for n in list(files)[1:]) + " |")
    print("|---" * (2 * len(files)) + "|")
    for repeat in range(args.repeats):
        times = interleaved_latency([f for fs in files.values() for f in fs], rounds=args.rounds,
                                    runs=args.runs, num_threads=args.threads)
        total = {n: sum(times[str(f)]["median_ms"] for f in fs) for n, fs in files.items()}
        cells = [" + ".join(f"{times[str(f)]['median_ms']:.3f}" for f in fs) + f" = {total[n]:.3f}"
                 for n, fs in files.items()]
        ratios = [f"{total[n] / total[first]:.2f}" for n in list(files)[1:]]
        print(f"| {repeat + 1} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
