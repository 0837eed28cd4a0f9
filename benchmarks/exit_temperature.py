"""Does a per-exit temperature improve early exit at a given MAC budget? (accuracy only, no timing)

    python benchmarks/exit_temperature.py --out runs/exit_temperature --resplits 3 \
        --plot docs/exit_temperature_accuracy_vs_mflops.png \
        [--run ../main/runs/study/RAViT_1-3_ReLU_LIT --cifar10 runs/data/cifar-10-batches-py]

The exit rule stops an image at the first exit whose softmax entropy is ≤ that exit's τ_k.
With a temperature T_k per exit the entropy is that of softmax(z / T_k): the argmax does not
change, only which images leave early. Two ways to choose T_k on the calibration images:
"NLL" (temperature scaling: the T minimising the exit's negative log-likelihood) and
"routing" (from a grid, the T whose budget curve is most accurate on the calibration
images). Thresholds are then calibrated per MAC budget (``calibrate_thresholds``) on the
same images, with and without T, and everything is measured on the held-out images.

Cases: the CIFAR-10 presets (seed-0 weights of the GPU study, whose test logits --study
holds) and the study's seed-1 RAViT 1-3, calibrated on the 2,000 test images the presets
reserve (``run_calibration.ReservedTestImages(2000, 0, 10000)``), measured on the other 8,000;
tiny "1-2" and "1-1-2" RAViTs trained a few epochs on 2,500 generated 5-class images
(500 calibrate, 3,000 measure); optionally (--run, --cifar10) a run folder's model on the
CIFAR-10 test split, split like the presets.

Figures: T per exit; ECE (15 bins) per exit on the held-out images without and with T; at
0.6-0.9 x the full model's MACs the held-out accuracy and MACs with a paired bootstrap 95 %
interval of the accuracy difference (held-out images resampled, thresholds fixed); whole
curves (budgets every 0.01 x), accuracy interpolated at equal held-out MACs: mean (with a
bootstrap interval) and largest gap. --resplits N redoes the presets with N other draws
of the calibration images (the bootstrap above does not see that variation). Writes
``table.md`` and ``results.json`` to --out and the accuracy-vs-MFLOPs plot to --plot.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # The generated-data models import TensorFlow.
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ravit_keras import run_calibration, runs  # noqa: E402
from ravit_keras.config import get_config  # noqa: E402
from ravit_keras.exits.calibration import calibrate_thresholds  # noqa: E402
from ravit_keras.exits.routing import route  # noqa: E402
from ravit_keras.model import flops  # noqa: E402

RESERVED = run_calibration.ReservedTestImages(images=2000, seed=0, of=10000)
BUDGETS = (0.6, 0.7, 0.8, 0.9)  # x the full model's MACs
STUDY = {  # case name -> (npz seed, model name in the npz, config changes)
    "ravit_1-3_cifar10": (0, "RAViT 1-3", dict(layers="1-3")),
    "ravit_1-3_lit_cifar10": (0, "RAViT 1-3 LIT", dict(layers="1-3", mlp_layers="0-1")),
    "RAViT 1-3, seed 1": (1, "RAViT 1-3", dict(layers="1-3")),
}
BOOTSTRAP = 2000
ROUTING_GRID = (0.2, 0.3, 0.5, 0.7, 1.0, 1.4, 2.0)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of softmax(logits / T)."""
    return float(-_log_softmax(logits / temperature)[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray, lo: float = 0.05, hi: float = 20.0) -> float:
    """Temperature scaling: the T in [lo, hi] minimising the NLL (golden-section search on ln T).

    The NLL is convex in 1/T, hence unimodal in ln T, so the search finds the optimum.
    """
    a, b = math.log(lo), math.log(hi)
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = nll(logits, labels, math.exp(c)), nll(logits, labels, math.exp(d))
    while b - a > 1e-5:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = nll(logits, labels, math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = nll(logits, labels, math.exp(d))
    return math.exp(0.5 * (a + b))


def ece(logits: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error of the top-1 confidence (equal-width bins)."""
    p = np.exp(_log_softmax(logits))
    conf, correct = p.max(axis=1), p.argmax(axis=1) == labels
    which = np.minimum((conf * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            total += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(total)


def _operating_point(cal, rest, labels_cal, labels_rest, macs, budget):
    """Thresholds for ``budget`` on the calibration logits; per-image correctness and cost on the rest."""
    chosen = calibrate_thresholds(cal, labels_cal, macs, mac_budget=budget)
    routed = route(rest, chosen["thresholds"])
    return (routed.predictions == labels_rest), np.asarray(macs, dtype=np.float64)[routed.exit_index], chosen


def _curve_gap(xa, ya, xb, yb, points: int = 200):
    """Mean and largest (b − a) accuracy gap at equal MACs over the range both curves cover."""
    lo, hi = max(xa.min(), xb.min()), min(xa.max(), xb.max())
    if hi <= lo:
        return math.nan, math.nan
    grid = np.linspace(lo, hi, points)
    ia, ib = np.argsort(xa, kind="stable"), np.argsort(xb, kind="stable")
    gap = np.interp(grid, xb[ib], yb[ib]) - np.interp(grid, xa[ia], ya[ia])
    return float(gap.mean()), float(gap[np.argmax(np.abs(gap))])


def _curve_on_calibration(cal, y_cal, macs, step: float = 0.05) -> float:
    """Mean calibration-split accuracy of the operating points at budgets every ``step`` x full MACs."""
    full = float(macs[-1])
    fractions = np.arange(math.ceil(macs[0] / full / step) * step, 1.0 + 1e-9, step)
    return float(np.mean([calibrate_thresholds(cal, y_cal, macs, mac_budget=f * full)["calibration"]["accuracy"]
                          for f in fractions]))


def fit_routing_temperature(cal, y_cal, macs, grid=ROUTING_GRID) -> list[float]:
    """T per exit chosen for routing: one coordinate pass over ``grid`` (exit by exit, the last
    exit's T stays 1: it never decides routing), maximising the calibration-split mean accuracy
    over the budget curve. Ties keep the T closest to 1."""
    temps = [1.0] * len(cal)
    for e in range(len(cal) - 1):
        scores = {}
        for t in sorted(grid, key=lambda v: abs(math.log(v))):
            trial = temps[:e] + [t] + temps[e + 1:]
            scores[t] = _curve_on_calibration([z / u for z, u in zip(cal, trial)], y_cal, macs)
        temps[e] = max(scores, key=lambda t: scores[t])  # max keeps the first (closest to 1) among ties
    return temps


def _compare_variant(plain_cal, plain_rest, y_cal, y_rest, macs, temps, draws) -> dict:
    """Budget table and curve gap of one set of temperatures against none."""
    scaled_cal = [z / t for z, t in zip(plain_cal, temps)]
    scaled_rest = [z / t for z, t in zip(plain_rest, temps)]
    full = float(macs[-1])

    def points(fractions):
        return [(f, _operating_point(plain_cal, plain_rest, y_cal, y_rest, macs, f * full),
                 _operating_point(scaled_cal, scaled_rest, y_cal, y_rest, macs, f * full)) for f in fractions]

    table = []
    for f, (ok0, cost0, ch0), (ok1, cost1, ch1) in points([f for f in BUDGETS if f * full >= macs[0]]):
        diff = draws @ (ok1.astype(float) - ok0)
        table.append({
            "budget": f, "thresholds": ch0["thresholds"], "thresholds_T": ch1["thresholds"],
            "accuracy": float(ok0.mean()), "accuracy_T": float(ok1.mean()),
            "macs_fraction": float(cost0.mean() / full), "macs_fraction_T": float(cost1.mean() / full),
            "diff": float(ok1.mean() - ok0.mean()),
            "diff_ci95": [float(np.quantile(diff, 0.025)), float(np.quantile(diff, 0.975))],
        })
    step = 0.01
    fine = np.arange(math.ceil(macs[0] / full / step) * step, 1.0 + 1e-9, step)
    curve = points(fine)
    ok0 = np.stack([a[0] for _, a, _ in curve]).astype(float)
    ok1 = np.stack([b[0] for _, _, b in curve]).astype(float)
    c0 = np.stack([a[1] for _, a, _ in curve]) / full
    c1 = np.stack([b[1] for _, _, b in curve]) / full
    mean_gap, max_gap = _curve_gap(c0.mean(1), ok0.mean(1), c1.mean(1), ok1.mean(1))
    boot = [_curve_gap(c0 @ w, ok0 @ w, c1 @ w, ok1 @ w)[0] for w in draws[:500]]
    ci = [float(np.nanquantile(boot, q)) for q in (0.025, 0.975)] if np.isfinite(boot).any() else [math.nan] * 2
    return {
        "temperatures": [float(t) for t in temps],
        "ece_T": [ece(z, y_rest) for z in scaled_rest], "nll_T": [nll(z, y_rest) for z in scaled_rest],
        "budgets": table,
        "curve": {"budget": fine.tolist(), "macs": c0.mean(1).tolist(), "accuracy": ok0.mean(1).tolist(),
                  "macs_T": c1.mean(1).tolist(), "accuracy_T": ok1.mean(1).tolist(),
                  "mean_gap": mean_gap, "max_gap": max_gap, "mean_gap_ci95": ci},
    }


def compare(name, logits, labels, macs, cal_index, rest_index, seed=0) -> dict:
    """Every figure of one case (see the module docstring)."""
    rng = np.random.default_rng(seed)
    y_cal, y_rest = labels[cal_index], labels[rest_index]
    plain_cal, plain_rest = [z[cal_index] for z in logits], [z[rest_index] for z in logits]
    n = len(rest_index)
    # One resampling of the held-out images for every comparison (paired: same draws for both).
    draws = rng.multinomial(n, np.full(n, 1.0 / n), size=BOOTSTRAP).astype(np.float64) / n
    variants = {
        "NLL": [fit_temperature(z, y_cal) for z in plain_cal],
        "routing": fit_routing_temperature(plain_cal, y_cal, macs),
    }
    return {
        "name": name, "calibration_images": len(cal_index), "held_out_images": n,
        "exit_mflops": [2 * m / 1e6 for m in macs],
        "exit_accuracy_held_out": [float((z.argmax(1) == y_rest).mean()) for z in plain_rest],
        "ece": [ece(z, y_rest) for z in plain_rest], "nll": [nll(z, y_rest) for z in plain_rest],
        "variants": {k: _compare_variant(plain_cal, plain_rest, y_cal, y_rest, macs, t, draws)
                     for k, t in variants.items()},
    }


def study_cases(study: Path, reserved: run_calibration.ReservedTestImages = RESERVED, names=tuple(STUDY)):
    """The CIFAR-10 presets' seed-0 logits (and seed 1's RAViT 1-3) from the GPU study."""
    cifar = get_config("cifar10")
    for name in names:
        seed, model, changes = STUDY[name]
        z = np.load(study / f"test_logits_seed{seed}.npz")
        keys = sorted((k for k in z.files if k.startswith(model + "|exit_")), key=lambda k: int(k.rsplit("_", 1)[1]))
        labels = np.asarray(z["y_test"]).reshape(-1).astype(np.int64)
        yield (name, [np.asarray(z[k], dtype=np.float64) for k in keys], labels,
               flops.exit_macs(cifar.replace(**changes)),
               reserved.calibration_index(len(labels)), reserved.reported_index(len(labels)))


def resplit_table(study: Path, seeds) -> tuple[str, list]:
    """The presets' whole-curve gaps when another 2,000 test images calibrate (seed s of the draw)."""
    rows, out = [], ["| preset | calibration draw (seed) | T: NLL; routing | curve gap, points: NLL mean [95 % CI]; "
                     "routing mean [CI] |", "|---|---|---|---|"]
    for s in seeds:
        reserved = run_calibration.ReservedTestImages(images=2000, seed=s, of=10000)
        for case in study_cases(study, reserved, names=("ravit_1-3_cifar10", "ravit_1-3_lit_cifar10")):
            r = compare(*case)
            v = r["variants"]
            rows.append({"name": r["name"], "seed": s, **{k: {"temperatures": v[k]["temperatures"],
                         "mean_gap": v[k]["curve"]["mean_gap"], "ci95": v[k]["curve"]["mean_gap_ci95"]} for k in v}})
            out.append(f"| {r['name']} | {s} | " + "; ".join(", ".join(f"{t:.3g}" for t in v[k]["temperatures"])
                                                       for k in v) + " | "
                       + "; ".join(_gap(v[k]["curve"]["mean_gap"], v[k]["curve"]["mean_gap_ci95"]) for k in v) + " |")
    return "\n".join(out) + "\n", rows


def generated_cases(epochs: int, seed: int = 0):
    """Tiny RAViTs trained ``epochs`` epochs on 2,500 generated 5-class images (CPU, seconds)."""
    import keras

    from ravit_keras.data import load_split, make_pipeline
    from ravit_keras.evaluation import predict_exit_logits
    from ravit_keras.model import build_ravit
    from ravit_keras.train import compile_ravit, make_optimizer

    train = load_split("generated", "train", num_examples=2500, num_classes=5, seed=seed)
    test = load_split("generated", "test", num_examples=3500, num_classes=5, seed=seed)
    images, labels = test.as_numpy()
    order = np.random.default_rng(seed).permutation(len(labels))
    cal, rest = np.sort(order[:500]), np.sort(order[500:])
    for arch in ("tiny", "tiny3"):
        keras.utils.set_random_seed(seed)
        config = get_config(arch, num_classes=5)
        model = build_ravit(config)
        batch = 64
        steps = train.num_examples // batch
        compile_ravit(model, make_optimizer(2e-3, 0.05, epochs * steps, steps), jit_compile=False)
        model.fit(make_pipeline(train, config, batch, training=True), epochs=epochs, verbose=0)
        logits, _ = predict_exit_logits(model, images.astype("float32"))
        yield (f"generated 5-class, {arch} ({len(config.exit_names)} exits), {epochs} epochs",
               [np.asarray(x, dtype=np.float64) for x in logits], np.asarray(labels, dtype=np.int64),
               flops.exit_macs(config), cal, rest)


def run_case(run_dir: Path, cifar10: str):
    """A run folder's model on the CIFAR-10 test split, split like the presets."""
    from ravit_keras.data import load_split
    from ravit_keras.evaluation import predict_exit_logits
    from ravit_keras.model import load_ravit

    model = load_ravit(str(run_dir / runs.MODEL_FILE))
    images, labels = load_split(cifar10, "test").as_numpy()
    logits, _ = predict_exit_logits(model, images.astype("float32"))
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    yield (run_dir.name, [np.asarray(x, dtype=np.float64) for x in logits], labels,
           flops.exit_macs(model.ravit_config),
           RESERVED.calibration_index(len(labels)), RESERVED.reported_index(len(labels)))


def _pct(v: float) -> str:
    return "n/a" if not math.isfinite(v) else f"{100 * v:.2f}"


def _gap(v: float, ci) -> str:
    if not math.isfinite(v):
        return "n/a (one point)"
    return f"{100 * v:+.2f} [{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}]"


def markdown(results: list[dict]) -> str:
    """The tables of every case."""
    names = ("NLL", "routing")
    lines = ["| case | budget (x full MACs) | no T: top-1 % (MACs x full) "
             + " ".join(f"| {k} T: top-1 % (MACs x full) | {k} T − no T, points [paired 95 % CI]" for k in names)
             + " |", "|---|---|---" + "|---|---" * len(names) + "|"]
    for r in results:
        v = r["variants"]
        for i, b in enumerate(v[names[0]]["budgets"]):
            row = f"| {r['name']} | {b['budget']:.2f} | {_pct(b['accuracy'])} ({b['macs_fraction']:.3f})"
            for k in names:
                c = v[k]["budgets"][i]
                row += f" | {_pct(c['accuracy_T'])} ({c['macs_fraction_T']:.3f}) | {_gap(c['diff'], c['diff_ci95'])}"
            lines.append(row + " |")
    lines += ["", "| case | calibration / held-out images | top-1 % per exit (held-out) | T per exit: NLL; routing "
              "| ECE % per exit: no T; NLL T; routing T "
              "| whole curve, T − no T at equal MACs, points: "
              "NLL mean [95 % CI], largest; routing mean [CI], largest |",
              "|---|---|---|---|---|---|"]
    for r in results:
        v = r["variants"]
        temps = "; ".join(", ".join(f"{t:.3g}" for t in v[k]["temperatures"]) for k in names)
        eces = "; ".join(", ".join(_pct(e) for e in x) for x in (r["ece"], *(v[k]["ece_T"] for k in names)))
        gaps = "; ".join(f"{_gap(v[k]['curve']['mean_gap'], v[k]['curve']['mean_gap_ci95'])}, "
                         f"{100 * v[k]['curve']['max_gap']:+.2f}" for k in names)
        lines.append(f"| {r['name']} | {r['calibration_images']} / {r['held_out_images']} | "
                     f"{', '.join(_pct(a) for a in r['exit_accuracy_held_out'])} | {temps} | {eces} | {gaps} |")
    return "\n".join(lines) + "\n"


def plot(results: list[dict], path: Path) -> None:
    """Held-out accuracy vs MFLOPs, without T and with each variant's T, one panel per case."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(results))
    rows = math.ceil(len(results) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.8 * rows), squeeze=False)
    for ax, r in zip(axes.flat, results):
        full = r["exit_mflops"][-1]
        series = [("", "no temperature", "-", r["variants"]["NLL"])]
        series += [("_T", f"{k} T ({', '.join(f'{t:.2g}' for t in v['temperatures'])})", style, v)
                   for (k, v), style in zip(r["variants"].items(), ("--", ":"))]
        for key, label, style, v in series:
            c = v["curve"]
            x, y = np.asarray(c["macs" + key]) * full, 100 * np.asarray(c["accuracy" + key])
            order = np.argsort(x, kind="stable")
            ax.plot(x[order], y[order], style, label=label)
        ax.set_title(r["name"], fontsize=9)
        ax.set_xlabel("average MFLOPs per image (held-out)")
        ax.set_ylabel("top-1 % (held-out)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(results):]:
        ax.axis("off")
    fig.suptitle("Early exit with thresholds calibrated at budgets every 0.01 x full MACs: "
                 "softmax entropy with and without a per-exit temperature", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--study", type=Path, default=REPO.parent / "shared" / "gpu_study")
    p.add_argument("--out", type=Path, default=Path("runs/exit_temperature"))
    p.add_argument("--plot", type=Path, default=REPO / "docs" / "exit_temperature_accuracy_vs_mflops.png")
    p.add_argument("--generated-epochs", type=int, default=8, help="0: skip the generated-data models")
    p.add_argument("--resplits", type=int, default=0,
                   help="also redo the presets with N other draws of the 2,000 calibration images")
    p.add_argument("--run", type=Path, help="also a run folder's model on CIFAR-10 (needs --cifar10)")
    p.add_argument("--cifar10", help="the CIFAR-10 data for --run")
    a = p.parse_args(argv)
    if a.run is not None and a.cifar10 is None:
        p.error("--run needs --cifar10")
    if not (a.study / "test_logits_seed0.npz").is_file():
        p.error(f"--study {a.study}: no test_logits_seed0.npz there")
    cases = list(study_cases(a.study))
    if a.run is not None:
        cases += list(run_case(a.run, a.cifar10))
    if a.generated_epochs > 0:
        cases += list(generated_cases(a.generated_epochs))
    results = [compare(*case) for case in cases]
    text = markdown(results)
    resplits = []
    if a.resplits > 0:
        more, resplits = resplit_table(a.study, range(1, a.resplits + 1))
        text += "\n" + more
    print(text)
    a.out.mkdir(parents=True, exist_ok=True)
    record = {"cases": results, "resplits": resplits}
    for name, body in (("table.md", text), ("results.json", json.dumps(record, indent=1))):
        tmp = a.out / (name + ".tmp")
        tmp.write_text(body)
        tmp.replace(a.out / name)
    plot(results, a.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
