"""Training throughput (images/s) of CIFAR-10-configuration models, interleaved.

Every combination of model, dtype policy and XLA is built and compiled once, then
timed for ``--steps`` steps per round, the combinations alternating round by round
so machine noise hits all of them alike.

    python benchmarks/train_throughput.py --models 0-4,1-3 --rounds 3 --steps 10
    python benchmarks/train_throughput.py --models 1-3 --policies float32,mixed_bfloat16 --xla on,off
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from ravit_keras.config import get_config  # noqa: E402
from ravit_keras.deploy.measurement.profiling import cpu_description  # noqa: E402
from ravit_keras.model import RAViT  # noqa: E402
from ravit_keras.model.flops import model_macs  # noqa: E402
from ravit_keras.train import compile_ravit, make_optimizer  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="cifar10")
    p.add_argument("--models", default="0-4,1-3", help="comma-separated layer specs")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--policies", default="float32", help="dtype policies: float32, mixed_bfloat16")
    p.add_argument("--xla", default="on", help="XLA settings to time: on, off or on,off")
    args = p.parse_args(argv)
    import keras

    rng = np.random.default_rng(0)
    runs = {}
    combos = [(spec, policy, xla) for spec in args.models.split(",") for policy in args.policies.split(",")
              for xla in args.xla.split(",")]
    for spec, policy, xla in combos:
        config = get_config(args.config, layers=spec)
        keras.config.set_dtype_policy(policy)
        model = compile_ravit(RAViT(config), make_optimizer(1e-3, 0.05, 10_000, 100), jit_compile=xla == "on")
        keras.config.set_dtype_policy("float32")
        n = args.batch_size * args.steps
        x = rng.uniform(0, 255, (n, *config.image_size, 3)).astype("float32")
        y = rng.integers(0, config.num_classes, n)
        ds = tf.data.Dataset.from_tensor_slices((x, {e: y for e in config.exit_names}))
        ds = ds.batch(args.batch_size).cache().prefetch(2)
        model.fit(ds.take(2), epochs=1, verbose=0)  # Tracing and (XLA) compilation.
        runs[(spec, policy, xla)] = (model, ds, n, [], config)
    for _ in range(args.rounds):
        for model, ds, n, rates, _ in runs.values():
            start = time.perf_counter()
            model.fit(ds, epochs=1, verbose=0, shuffle=False)
            rates.append(n / (time.perf_counter() - start))
    print(f"CPU: {cpu_description()}; batch {args.batch_size}, {args.steps} steps x {args.rounds} rounds, interleaved")
    print("| model | dtype policy | XLA | MFLOPs (forward) | training images/s (median of rounds) |")
    print("|---|---|---|---|---|")
    for (spec, policy, xla), (_, _, _, rates, config) in runs.items():
        print(f"| {spec} | {policy} | {xla} | {2 * model_macs(config) / 1e6:.1f} | {np.median(rates):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
