"""Tiny ImageNet study: RAViT 2-0-3 vs classic ViT-3 / ViT-4 at a reduced width.

The paper's Tiny ImageNet configuration (d=768, h=3072, 12 heads, 50 epochs) is
far beyond a 2-core CPU, so this study keeps its structure (64x64 input, patch 4,
branches at 16/32/64 pixels, 200 classes) and shrinks the width (default d=64,
h=256, 2 heads of 32) and the epoch budget. All three models share width and
recipe. Only the training images are needed: the "test" split is a seeded,
stratified holdout of them (``--holdout-fraction`` per class). Re-running resumes
unfinished trainings; writes ``OUT/results.{json,md}`` and a plot.

    python ../shared/data/materialize.py tinyimagenet /tmp/data
    python benchmarks/tinyimagenet_study.py --data /tmp/data/tiny-imagenet-200 \
        --epochs 8 --out runs/tinyimagenet_study   # the run in BENCHMARKS.md section 4

``--backend jax`` trains on Keras's JAX backend without TensorFlow (see cifar10_study.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cifar10_study import add_recipe_arguments, run_study, select_models  # noqa: E402

from ravit_keras.config import get_config  # noqa: E402
from ravit_keras.data import load_split  # noqa: E402
from ravit_keras.data.batches import decoded  # noqa: E402

MODELS = {"RAViT 2-0-3": {"layers": "2-0-3"}, "ViT-3": {"layers": "0-0-3"}, "ViT-4": {"layers": "0-0-4"}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="tiny-imagenet-200 folder (train/ is enough)")
    p.add_argument("--out", default="runs/tinyimagenet_study")
    p.add_argument("--holdout-fraction", type=float, default=0.1)
    p.add_argument("--hidden-dim", type=int, default=64)
    p.add_argument("--mlp-dim", type=int, default=256)
    p.add_argument("--num-heads", type=int, default=2)
    add_recipe_arguments(p, epochs=3, batch_size=128)
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of " + ", ".join(MODELS))
    args = p.parse_args(argv)
    models = select_models(p, args.models, MODELS)

    base = get_config("tinyimagenet").replace(
        hidden_dim=args.hidden_dim, mlp_dim=args.mlp_dim, num_heads=args.num_heads
    )
    split_args = dict(holdout_fraction=args.holdout_fraction, seed=0)
    import keras  # Here: cifar10_study's import has set the --backend.

    # Decoded once and kept in memory: JPEG decoding would otherwise take CPU from training
    # (tf.data's cache on TensorFlow; NumPy arrays, decoded with Pillow, on other backends).
    train_split = load_split(args.data, "train", num_examples=args.limit_train, **split_args)
    train_split = train_split.cached() if keras.backend.backend() == "tensorflow" else decoded(train_split)
    test_split = load_split(args.data, "test", **split_args)
    title = f"Tiny ImageNet (holdout), d={args.hidden_dim}"
    run_study(base, models, train_split, test_split, args, Path(args.out), title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
