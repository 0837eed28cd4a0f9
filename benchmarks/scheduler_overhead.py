"""The Python scheduler's own time per image, as a fraction of the submodels' invoke time.

    python benchmarks/scheduler_overhead.py runs/bench_modes/ravit_int8 --data runs/data/cifar-10-batches-py

Streams real test images one at a time through ``RAViTScheduler.evaluate`` (after a
warm-up pass) and reports ``scheduler_overhead_fraction``: (wall time of each
classification − the invoke times it contains) / invoke time, at τ = 0 (every image
runs both submodels) and at the manifest's default thresholds, three passes each.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", help="folders written by ravit convert")
    p.add_argument("--data", required=True)
    p.add_argument("--images", type=int, default=3000)
    p.add_argument("--passes", type=int, default=3)
    args = p.parse_args(argv)

    from ravit_keras.data import load_split
    from ravit_keras.deploy.measurement.profiling import cpu_description
    from ravit_keras.deploy.runtime.scheduler import RAViTScheduler

    print(cpu_description())
    for folder in args.folders:
        sched = RAViTScheduler(folder)
        size = (sched.manifest.image.height, sched.manifest.image.width)
        x, y = load_split(args.data, "test", num_examples=args.images, image_size=size).as_numpy()
        if sched.image_dtype != "uint8":
            x = x.astype("float32")
        sched.evaluate(x[:300], thresholds=0.0)  # Warm-up.
        for label, taus in (("tau 0", 0.0), ("default thresholds", None)):
            runs = [sched.evaluate(x, y, thresholds=taus) for _ in range(args.passes)]
            fractions = ", ".join(f"{100 * r['scheduler_overhead_fraction']:.1f} %" for r in runs)
            invoke = runs[-1]["latency_ms"]["mean"] / (1 + runs[-1]["scheduler_overhead_fraction"])
            print(f"{folder} ({label}): overhead {fractions}; mean per image {runs[-1]['latency_ms']['mean']:.4f} ms "
                  f"(invoke about {invoke:.4f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
