"""Writes test images as PNG files and measures the Python scheduler's overhead on them.

The Java side of the BENCHMARKS.md figure is ``dev.ravit.jvm.Classify`` on the same folder:

    python benchmarks/jvm_overhead.py export --out /tmp/ravit_images --count 1000
    python benchmarks/jvm_overhead.py python --model runs/demo/tflite --images /tmp/ravit_images --passes 3

``export`` writes the first ``--count`` images of the generated test split (model size,
so the Java center crop + resize leaves them unchanged). ``python`` classifies every PNG
with ``RAViTScheduler`` (1 thread, the manifest's thresholds unless ``--thresholds``),
``--passes`` times, and prints the last pass's summary: the same fields as the Java
command line, with ``scheduler_overhead_fraction`` = (total − invoke) / invoke.
"""

import argparse
import sys
from pathlib import Path

import numpy as np


def export(out: Path, count: int, num_classes: int) -> None:
    from PIL import Image

    from ravit_keras.data import load_split

    images, labels = load_split("generated", "test", num_examples=count, num_classes=num_classes).as_numpy()
    out.mkdir(parents=True, exist_ok=True)
    for i, (im, label) in enumerate(zip(images, labels)):
        Image.fromarray(im).save(out / f"{i:05d}_{int(label)}.png")
    print(f"wrote {len(images)} images to {out}")


def measure(model: Path, images: Path, passes: int, thresholds) -> None:
    from PIL import Image

    from ravit_keras.deploy.runtime.scheduler import RAViTScheduler

    files = sorted(images.glob("*.png"))
    if not files:
        sys.exit(f"no PNG images in {images}")
    pixels = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    s = RAViTScheduler(model, thresholds=thresholds, num_threads=1)
    for _ in range(passes):
        summary = s.evaluate(pixels)
    invoke = summary["invoke_ms_mean"]
    frac = summary["scheduler_overhead_fraction"]
    print(f"images={summary['images']} thresholds={summary['thresholds']}")
    print(f"exit_counts: {dict(zip(s.exit_names, summary['exit_counts']))}")
    print(f"latency_ms_mean={summary['latency_ms']['mean']:.4f} invoke_ms_mean={invoke:.4f} "
          f"overhead_ms_mean={invoke * frac:.4f} scheduler_overhead_fraction={frac:.4f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--count", type=int, default=1000)
    e.add_argument("--num-classes", type=int, default=10)
    m = sub.add_parser("python")
    m.add_argument("--model", type=Path, required=True)
    m.add_argument("--images", type=Path, required=True)
    m.add_argument("--passes", type=int, default=3)
    m.add_argument("--thresholds", type=lambda v: [float(x) for x in v.split(",")], default=None)
    a = p.parse_args()
    if a.cmd == "export":
        export(a.out, a.count, a.num_classes)
    else:
        measure(a.model, a.images, a.passes, a.thresholds)


if __name__ == "__main__":
    main()
