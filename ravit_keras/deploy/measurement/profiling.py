"""What LiteRT does with a submodel here: interleaved timing, the benchmark tool, and
which ops the XNNPACK delegate takes.

Timing noise on shared machines is large, so compared models are timed
interleaved, in rounds, in one process, and ratios are reported.
"""

from __future__ import annotations

import collections
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ravit_keras.console import quiet_native_output

BENCHMARK_TOOL = "litert-benchmark"


def cpu_description() -> str:
    """CPU model and the SIMD features that decide int8 speed (VNNI, AMX)."""
    name, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ["avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_tile"]
    present = [f for f in wanted if f in flags]
    return f"{name}, {os.cpu_count()} cores, SIMD: {', '.join(present) or 'none of ' + '/'.join(wanted)}"


def benchmark_tool_path() -> str | None:
    """Path of ``litert-benchmark`` (installed with ai-edge-litert), if any."""
    here = Path(sys.executable).parent / BENCHMARK_TOOL
    return str(here) if here.exists() else shutil.which(BENCHMARK_TOOL)


def run_benchmark_tool(model_path: str | Path, num_threads: int = 1, num_runs: int = 200,
                       warmup_runs: int = 20, signature: str | None = None) -> dict[str, Any]:
    """Runs ``litert-benchmark`` on one model and returns its JSON result.

    Raises:
        FileNotFoundError: if the tool is not installed.
        RuntimeError: if the tool fails (its output is included).
    """
    tool = benchmark_tool_path()
    if tool is None:
        raise FileNotFoundError(f"{BENCHMARK_TOOL} not found: install ai-edge-litert.")
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        cmd = [tool, "--model", str(model_path), "--num_threads", str(num_threads),
               "--num_runs", str(num_runs), "--warmup_runs", str(warmup_runs),
               "--result_json", str(result)]
        if signature:
            cmd += ["--signature", signature]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not result.exists():
            raise RuntimeError(
                f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        data = json.loads(result.read_text())
    data["command"] = " ".join([BENCHMARK_TOOL, *cmd[1:-2]])
    return data


def phone_benchmark_command(model_file: str, num_threads: int = 1) -> str:
    """The equivalent ``benchmark_model`` command for a phone over adb."""
    name = Path(model_file).name
    return (f"adb push {model_file} /data/local/tmp/ && adb shell /data/local/tmp/benchmark_model "
            f"--graph=/data/local/tmp/{name} --num_threads={num_threads} --use_xnnpack=true "
            "--enable_op_profiling=true")


_MATRIX_OPS = ("FULLY_CONNECTED", "BATCH_MATMUL", "CONV_2D", "DEPTHWISE_CONV_2D")


def matrix_macs(model_path: str | Path) -> int:
    """Multiply-accumulates of the matrix ops the graph really runs (FULLY_CONNECTED,
    BATCH_MATMUL, convolutions), read from its tensors' shapes.

    Unlike the paper's cost model, this counts what the submodel executes (a
    branch's last layer computes the CLS token only), so GMAC/s against the host's
    ceiling is a fair share.
    """
    from ai_edge_litert.interpreter import Interpreter

    with quiet_native_output():
        it = Interpreter(model_path=str(model_path), num_threads=1,
                         experimental_op_resolver_type=_builtin_resolver())
        it.allocate_tensors()
    shapes = {t["index"]: [int(d) for d in t["shape"]] for t in it.get_tensor_details()}
    total = 0
    for op in it._get_ops_details():
        name = op["op_name"]
        if name not in _MATRIX_OPS:
            continue
        out = int(np.prod(shapes[int(op["outputs"][0])]))
        if name == "FULLY_CONNECTED":
            total += out * shapes[int(op["inputs"][1])][-1]     # weights (out, in)
        elif name == "BATCH_MATMUL":
            total += out * shapes[int(op["inputs"][0])][-1]     # (.., m, k) @ (.., k, n)
        elif name == "CONV_2D":
            total += out * int(np.prod(shapes[int(op["inputs"][1])][1:]))  # filter (cout, kh, kw, cin)
        else:
            total += out * int(np.prod(shapes[int(op["inputs"][1])][1:3]))  # depthwise (1, kh, kw, c)
    return total


def _builtin_resolver():
    from ai_edge_litert.interpreter import OpResolverType

    # Without the XNNPACK delegate every op keeps its own node, so all are listed.
    return OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES


def undelegated_ops(model_path: str | Path) -> dict[str, Any]:
    """Which ops the XNNPACK delegate takes and which it leaves to built-in kernels.

    Applies the default delegate with node fusion disabled, so every delegated
    op becomes its own DELEGATE node whose outputs identify it.
    """
    from ai_edge_litert.interpreter import Interpreter

    with quiet_native_output():
        fused = Interpreter(model_path=str(model_path), num_threads=1)
        fused.allocate_tensors()
    partitions = sum(o["op_name"] == "DELEGATE" for o in fused._get_ops_details())
    with quiet_native_output():
        it = Interpreter(model_path=str(model_path), num_threads=1,
                         experimental_disable_delegate_node_fusion=True)
        it.allocate_tensors()
    ops = it._get_ops_details()
    delegated_outputs = {int(t) for o in ops if o["op_name"] == "DELEGATE" for t in o["outputs"]}
    original = [o for o in ops if o["op_name"] != "DELEGATE"]
    left = [o["op_name"] for o in original if not {int(t) for t in o["outputs"]} <= delegated_outputs]
    return {
        "ops": len(original),
        "op_counts": dict(collections.Counter(o["op_name"] for o in original)),
        "delegated": len(original) - len(left),
        "not_delegated": dict(collections.Counter(left)),
        "delegate_partitions": partitions,
    }


def format_op_counts(counts: dict[str, int]) -> str:
    """``{"GELU": 3, "ADD": 7}`` as ``"ADD×7, GELU×3"`` (sorted), or ``"none"``."""
    return ", ".join(f"{k}×{v}" for k, v in sorted(counts.items())) or "none"


def interleaved_latency(model_paths: Sequence[str | Path], rounds: int = 5, runs: int = 100,
                        warmup: int = 20, num_threads: int = 1) -> dict[str, dict[str, float]]:
    """Median/p90 invoke latency (ms) of each model, timed interleaved in rounds."""
    from ai_edge_litert.interpreter import Interpreter

    rng = np.random.default_rng(0)
    interpreters = {}
    for path in model_paths:
        with quiet_native_output():
            it = Interpreter(model_path=str(path), num_threads=num_threads)
            it.allocate_tensors()
        for d in it.get_input_details():
            info = np.iinfo(d["dtype"]) if np.issubdtype(d["dtype"], np.integer) else None
            value = (rng.integers(info.min, info.max, d["shape"]) if info is not None
                     else rng.uniform(0, 255, d["shape"]))
            it.set_tensor(d["index"], value.astype(d["dtype"]))
        interpreters[str(path)] = it
    times = {p: [] for p in interpreters}
    for _ in range(rounds):
        for p, it in interpreters.items():
            for _ in range(warmup):
                it.invoke()
            for _ in range(runs):
                start = time.perf_counter()
                it.invoke()
                times[p].append(time.perf_counter() - start)
    return {p: {"median_ms": 1e3 * float(np.median(t)), "p90_ms": 1e3 * float(np.percentile(t, 90)),
                "mean_ms": 1e3 * float(np.mean(t))} for p, t in times.items()}

