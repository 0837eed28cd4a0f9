"""What ``ravit bench`` reports: the summary table the command prints, the matched-accuracy
rows, and benchmark.md (every submodel, the host's ceiling, fidelity to Keras)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ravit_keras.console import plural
from ravit_keras.deploy.measurement.profiling import format_op_counts
from ravit_keras.deploy.measurement.reference_models import CEILING_SHAPES, ceiling_arithmetic


def tau_text(tau) -> str:
    """One τ (``0.023``) or one per early exit (``[0.41, 0.2]``), four significant digits."""
    if np.ndim(tau) == 0:
        return f"{float(tau):.4g}"
    return "[" + ", ".join(f"{float(t):.4g}" for t in tau) + "]"


def matched_accuracy(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each static model beside RAViT's cheapest operating point (same mode) at least as accurate.

    Where no RAViT point reaches the static model's accuracy, the most accurate one
    is given with ``matched`` False. A static model of a mode RAViT was not run in is
    left out.
    """
    rows = []
    e2e = result["end_to_end"]
    for key, info in result["models"].items():
        if not info["tag"].startswith("static-") or f"ravit_{info['mode']}" not in e2e:
            continue
        static = e2e[key][0]
        adaptive = e2e[f"ravit_{info['mode']}"]
        reaching = [r for r in adaptive if r["accuracy"] >= static["accuracy"]]
        best = (min(reaching, key=lambda r: (r["avg_mflops"], -r["accuracy"])) if reaching
                else max(adaptive, key=lambda r: (r["accuracy"], -r["avg_mflops"])))
        rows.append({
            "static": info["tag"][len("static-"):], "mode": info["mode"], "matched": bool(reaching),
            "static_accuracy": static["accuracy"], "static_mflops": static["avg_mflops"],
            "static_latency_ms": static["latency_ms"],
            "ravit_point": best["point"], "ravit_tau": best["tau"], "ravit_accuracy": best["accuracy"],
            "ravit_mflops": best["avg_mflops"], "ravit_latency_ms": best["latency_ms"],
        })
    return rows


def format_summary(result: dict[str, Any]) -> str:
    """The one table ``ravit bench`` prints: every model's operating points end to end, and
    the static models at matched accuracy."""
    warmup = next((r["warmup_invokes"] for rows in result["end_to_end"].values() for r in rows), 1)
    lines = [f"{plural(result['images'], 'image')}, {plural(result['threads'], 'LiteRT thread')}; latency "
             f"per image after {plural(warmup, 'warm-up invoke')} of each submodel (not counted).", "",
             "| model | operating point | τ | top-1 (%) | exits | MFLOPs/image | p50 ms | p95 ms | p99 ms |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, rows in result["end_to_end"].items():
        for r in rows:
            lat = r["latency_ms"]
            lines.append(f"| {name} | {r['point']} | {tau_text(r['tau'])} | {100 * r['accuracy']:.2f} | "
                         f"{r['exit_counts']} | {r['avg_mflops']:.2f} | {lat['p50']:.3f} | {lat['p95']:.3f} | "
                         f"{lat['p99']:.3f} |")
    matched = result.get("matched_accuracy") or []
    if matched:
        lines += ["", "At matched accuracy: each static model beside RAViT's cheapest operating point at least "
                  "as accurate (same mode, same images).", "",
                  "| mode | static model | top-1 (%) | MFLOPs/image | p50 ms | RAViT operating point | τ | "
                  "top-1 (%) | MFLOPs/image | p50 ms |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for m in matched:
            point = m["ravit_point"] if m["matched"] else f"none as accurate; most accurate: {m['ravit_point']}"
            lines.append(
                f"| {m['mode']} | {m['static']} | {100 * m['static_accuracy']:.2f} | {m['static_mflops']:.2f} | "
                f"{m['static_latency_ms']['p50']:.3f} | {point} | {tau_text(m['ravit_tau'])} | "
                f"{100 * m['ravit_accuracy']:.2f} | {m['ravit_mflops']:.2f} | {m['ravit_latency_ms']['p50']:.3f} |")
    return "\n".join(lines) + "\n"


def format_benchmark(result: dict[str, Any]) -> str:
    """benchmark.md: the summary, then every submodel's timing, the end-to-end details and
    the fidelity of the submodels to the Keras model."""
    lat = result["latency_ms"]
    lines = [f"CPU: {result['cpu']}.", "", format_summary(result)]
    ceiling = result.get("fc_ceiling_gmacs", {})
    if ceiling:
        shapes = ", ".join("x".join(map(str, sh)) for sh in CEILING_SHAPES)
        lines += [f"Fully-connected ceiling here (best of {shapes} MACs, same run): "
                  f"int8 {ceiling['int8']:.1f} GMAC/s, float32 {ceiling['float32']:.1f} GMAC/s. "
                  "GMAC/s counts the paper's MACs (cost model); the share counts the matrix MACs the "
                  "graph executes (its FULLY_CONNECTED, BATCH_MATMUL and convolutions) per second over "
                  "the ceiling of its arithmetic (int8 for int8, int8-full and dynamic; float32 "
                  "otherwise).", ""]
    tool = result.get("benchmark_tool", {})
    lines += ["| submodel | MACs (layers) | median latency (ms) | litert-benchmark median (ms) | GMAC/s | share of FC ceiling | ops not delegated to XNNPACK | partitions |",
              "|---|---|---|---|---|---|---|---|"]
    for name, t in lat.items():
        macs = gmacs = share = ""
        sub = result.get("submodels", {}).get(name)
        if sub is not None:
            m = sub["macs"]
            macs, gmacs = f"{m / 1e6:.2f} M", f"{m / t['median_ms'] / 1e6:.1f}"
            arithmetic = ceiling_arithmetic(sub["mode"])
            executed = result.get("matrix_macs", {}).get(name)
            if arithmetic in ceiling and executed:
                share = f"{100 * executed / t['median_ms'] / 1e6 / ceiling[arithmetic]:.0f}% of {arithmetic}"
        d = result["delegation"][name]
        nd = format_op_counts(d["not_delegated"])
        tool_ms = tool.get(name, {}).get("median_ms", "")
        lines.append(f"| {name} | {macs} | {t['median_ms']:.3f} | {tool_ms} | {gmacs} | {share} | {nd} | {d['delegate_partitions']} |")

    def branch_ms(model):
        return [t["median_ms"] for n, t in lat.items() if result.get("submodels", {}).get(n, {}).get("model") == model]

    lines += ["", "| end to end (sum of submodels, no early exit) | ms |", "|---|---|"]
    for model in sorted(result.get("models", {})):
        lines.append(f"| {model} | {sum(branch_ms(model)):.3f} |")
    for name in lat:
        if name.startswith("naive"):
            lines.append(f"| {name} | {lat[name]['median_ms']:.3f} |")
    lines += ["", "| model | operating point | τ | top-1 (%) | Keras top-1 same τ (%) | exits | avg MFLOPs | "
              "expected ms (histogram) | measured mean ms | p95 ms | scheduler overhead |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, rows in result["end_to_end"].items():
        cumulative = np.cumsum(branch_ms(name))
        for r in rows:
            expected = (float(np.dot(r["exit_fractions"], cumulative)) if len(cumulative) == len(r["exit_fractions"])
                        else float("nan"))
            keras = r.get("keras_accuracy_same_thresholds")
            keras = "" if keras is None else f"{100 * keras:.2f}"
            lines.append(
                f"| {name} | {r['point']} | {tau_text(r['tau'])} | {100 * r['accuracy']:.2f} | {keras} | "
                f"{r['exit_counts']} | {r['avg_mflops']:.2f} | {expected:.3f} | {r['latency_ms']['mean']:.3f} | "
                f"{r['latency_ms']['p95']:.3f} | {100 * r['scheduler_overhead_fraction']:.1f}% |")
    if "fidelity" in result:
        lines += ["", "| mode | exit | max abs logit error | mean abs logit error | top-1 agreement with Keras |", "|---|---|---|---|---|"]
        for mode, rows in result["fidelity"].items():
            for r in rows:
                lines.append(f"| {mode} | {r['exit']} | {r['max_abs_logit_error']:.4f} | {r['mean_abs_logit_error']:.4f} | {100 * r['top1_agreement']:.2f}% |")
    return "\n".join(lines) + "\n"
