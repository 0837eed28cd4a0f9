"""Training throughput (images/s) of CIFAR-10-configuration models on each Keras backend, interleaved.

One worker process per backend (Keras reads its backend once, at import) builds
every combination of model, dtype policy and XLA setting and compiles it, then
the workers take turns: each round, every worker times ``--steps`` steps of every
combination, so machine noise hits both backends alike. What is timed is what
``ravit train`` runs on that backend: on TensorFlow the tf.data pipeline with its
pad-crop-flip and the (XLA) step; on JAX NumPy batches (``SplitBatches``) and the
jitted step with the augmentation inside (``AugmentedTrainer``); random images
in memory, so no file reading is timed. ``--recipes paper,strong`` times the stronger
recipe beside the paper's (its augmentations in tf.data on TensorFlow, inside the
step on JAX; its drop path in the model).

With ``--peak-tflops`` (the device's dense bf16 peak, e.g. 989 for an H100/H200 SXM)
the table adds the share of that peak the training reaches, counting a training
step as 3 x the forward FLOPs (forward, and backward at twice the forward).

    python benchmarks/train_throughput.py --models 1-3 --rounds 3 --steps 20
    python benchmarks/train_throughput.py --models 1-3 --recipes paper,strong
    python benchmarks/train_throughput.py --backends jax --policies mixed_bfloat16 --batch-size 1024 \\
        --peak-tflops 989     # a GPU machine
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

BACKENDS = ("tensorflow", "jax")


def _combos(args, backend: str):
    for spec in args.models.split(","):
        for policy in args.policies.split(","):
            for xla in args.xla.split(","):
                if backend == "jax" and xla == "off":
                    continue  # JAX always compiles the step.
                for recipe in args.recipes.split(","):
                    yield spec, policy, xla, recipe


def worker(args) -> int:
    """One backend: compile every combination, then time a round per line read from stdin."""
    import keras
    import numpy as np

    from ravit_keras.config import get_config
    from ravit_keras.data.split import split_from_arrays
    from ravit_keras.model import RAViT
    from ravit_keras.train import TrainingConfig, compile_ravit, make_optimizer
    from ravit_keras.training.from_data import fit_batches
    from ravit_keras.training.recipes import model_and_training_settings, recipe_settings

    backend = keras.backend.backend()
    rng = np.random.default_rng(0)
    runs = {}
    for spec, policy, xla, recipe_name in _combos(args, backend):
        drop_path_rate, settings = model_and_training_settings(recipe_settings(recipe_name))
        config = get_config(args.config, layers=spec, drop_path_rate=drop_path_rate)
        n = args.batch_size * args.steps
        x = rng.integers(0, 256, (n, *config.image_size, 3), dtype=np.uint8)
        names = [str(i) for i in range(config.num_classes)]
        split = split_from_arrays(x, rng.integers(0, config.num_classes, n), names, None)
        recipe = TrainingConfig(batch_size=args.batch_size, dtype_policy=policy, xla=xla, **settings)
        data = fit_batches(split, config, recipe, training=True)
        keras.config.set_dtype_policy(policy)
        model = RAViT(config)
        if backend != "tensorflow":
            from ravit_keras.training.in_step import AugmentedTrainer

            model = AugmentedTrainer(model, recipe.augmentation)
        compile_ravit(model, make_optimizer(1e-3, 0.05, 10_000, 100), recipe.label_smoothing,
                      soft_labels=recipe.augmentation.mixes, jit_compile=xla == "on")
        keras.config.set_dtype_policy("float32")
        model.fit(data, epochs=1, steps_per_epoch=min(2, args.steps), verbose=0, shuffle=False)  # Compiles.
        runs[f"{spec}|{policy}|{xla}|{recipe_name}"] = (model, data, n)
    print(json.dumps({"ready": backend, "device": _device(backend)}), flush=True)
    for _ in sys.stdin:
        rates = {}
        for key, (model, data, n) in runs.items():
            start = time.perf_counter()
            model.fit(data, epochs=1, verbose=0, shuffle=False)
            rates[key] = n / (time.perf_counter() - start)
        print(json.dumps(rates), flush=True)
    return 0


def _device(backend: str) -> str:
    from ravit_keras.deploy.measurement.profiling import cpu_description

    if backend == "jax":
        import jax

        d = jax.devices()[0]
        return f"cpu: {cpu_description()}" if d.platform == "cpu" else f"{d.platform}: {d.device_kind}"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return f"gpu: {len(gpus)} GPU(s)" if gpus else f"cpu: {cpu_description()}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated: tensorflow, jax")
    p.add_argument("--config", default="cifar10")
    p.add_argument("--models", default="1-3", help="comma-separated layer specs")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=10, help="steps timed per combination and round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--policies", default="float32", help="dtype policies: float32, mixed_bfloat16")
    p.add_argument("--xla", default="on", help="XLA settings (TensorFlow): on, off or on,off; JAX is always on")
    p.add_argument("--recipes", default="paper", help="training recipes: paper, strong")
    p.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak, TFLOP/s: adds the share of it")
    p.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    backends = args.backends.split(",")
    if not set(backends) <= set(BACKENDS):
        p.error(f"--backends: choose from {', '.join(BACKENDS)}")
    from ravit_keras.training.recipes import RECIPES

    if not set(args.recipes.split(",")) <= set(RECIPES):
        p.error(f"--recipes {args.recipes}: choose from {', '.join(RECIPES)}")
    passed = [a for a in (argv if argv is not None else sys.argv[1:])]
    workers = {}
    for backend in backends:  # Started together: they compile in parallel.
        env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=REPO)
        workers[backend] = subprocess.Popen([sys.executable, os.path.abspath(__file__), *passed, "--worker", backend],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    devices, rates = {}, {}
    try:
        for backend, proc in workers.items():
            line = proc.stdout.readline()
            if not line:
                raise SystemExit(f"the {backend} worker failed (its errors are above)")
            devices[backend] = json.loads(line)["device"]
        for _ in range(args.rounds):
            for backend, proc in workers.items():  # Interleaved: one backend's round, then the other's.
                proc.stdin.write("round\n")
                proc.stdin.flush()
                for key, rate in json.loads(proc.stdout.readline()).items():
                    rates.setdefault((backend, key), []).append(rate)
    finally:
        for proc in workers.values():
            if proc.stdin:
                proc.stdin.close()
            proc.wait(timeout=120)
    print(format_table(rates, devices, args))
    return 0


def format_table(rates, devices, args) -> str:
    """The Markdown table of the medians (and the share of the bf16 peak when given)."""
    import numpy as np

    from ravit_keras.config import get_config
    from ravit_keras.model.flops import model_macs

    lines = [f"{b}: {d}" for b, d in devices.items()]
    lines.append(f"batch {args.batch_size}, {args.steps} steps x {args.rounds} rounds, backends interleaved")
    peak = " | share of bf16 peak" if args.peak_tflops else ""
    lines += [f"| backend | model | dtype policy | XLA | recipe | training images/s (median){peak} |",
              "|---|---|---|---|---|---|" + ("---|" if peak else "")]
    for (backend, key), values in rates.items():
        spec, policy, xla, recipe = key.split("|")
        rate = float(np.median(values))
        row = f"| {backend} | {spec} | {policy} | {xla} | {recipe} | {rate:.0f} |"
        if args.peak_tflops:
            train_flops = 3 * 2 * model_macs(get_config(args.config, layers=spec))  # Per image.
            row += f" {100 * rate * train_flops / (args.peak_tflops * 1e12):.2f} % |"
        lines.append(row)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
