"""Where a submodel's time goes: per-operator times on LiteRT's CPU path, XNNPACK's own ops included.

A submodel that XNNPACK takes whole is ONE node to the interpreter, so the usual
op profile says nothing about it. LiteRT's ``CompiledModel`` with runtime profiling
also records the delegate's internal operators (XNNPACK's "Fully Connected (NC, QS8,
QC8W) GEMM", "Softmax (NC, F32)", ...). Python has no binding for it, so this calls
LiteRT's C API (``litert/c/litert_compiled_model.h``, ``litert_profiler.h``) in the
``libLiteRt.so`` that ``ai-edge-litert`` ships, through ctypes.

    from ravit_keras.deploy.measurement.op_profile import profile_ops, format_profile
    print(format_profile(profile_ops("runs/tflite/branch_2.tflite")))

Times come from LiteRT's profiler (microsecond timestamps, averaged over the runs);
the profiler's own bookkeeping makes the total somewhat larger than a plain invoke.
"""

from __future__ import annotations

import ctypes
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from ravit_keras.console import plural, quiet_native_output

# LiteRtProfilerEventType (litert/c/litert_profiler_event.h).
_OPERATOR_INVOKE = 1 << 1
_DELEGATE_OPERATOR_INVOKE = 1 << 2
_DELEGATE_PROFILED_OPERATOR_INVOKE = 1 << 3  # How XNNPACK's internal operators are recorded.
_DELEGATE_EVENTS = (_DELEGATE_OPERATOR_INVOKE, _DELEGATE_PROFILED_OPERATOR_INVOKE)
_HW_ACCELERATOR_CPU = 1
_HOST_MEMORY_BUFFER = 1
_LOCK_WRITE = 1
_RANKED_TENSOR_TYPE_SIZE = 72  # int32 element type + LiteRtLayout (rank bits, 8 dims, 8 strides)
# LiteRtElementType -> bytes per element (litert/c/litert_model_types.h).
_ELEMENT_BYTES = {1: 4, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 9: 1, 10: 2, 11: 8, 16: 4}


class _MemoryUsage(ctypes.Structure):
    _fields_ = [("total_allocated_bytes", ctypes.c_size_t), ("in_use_allocated_bytes", ctypes.c_size_t),
                ("private_footprint_bytes", ctypes.c_size_t)]


class _ProfiledEventData(ctypes.Structure):
    _fields_ = [("tag", ctypes.c_char_p), ("event_type", ctypes.c_int),
                ("start_timestamp_us", ctypes.c_uint64), ("elapsed_time_us", ctypes.c_uint64),
                ("begin_mem_usage", _MemoryUsage), ("end_mem_usage", _MemoryUsage),
                ("event_metadata1", ctypes.c_uint64), ("event_metadata2", ctypes.c_uint64),
                ("event_source", ctypes.c_int)]


@dataclasses.dataclass(frozen=True)
class OpTime:
    """One operator of a submodel, in run order.

    Attributes:
        name: XNNPACK's operator name (e.g. "Softmax (NC, F32)") or the TFLite
            builtin's (e.g. "QUANTIZE") for an op left to LiteRT's own kernels.
        delegated: whether XNNPACK runs it.
        mean_us: mean time per call, microseconds.
        calls: calls recorded.
    """

    name: str
    delegated: bool
    mean_us: float
    calls: int


@dataclasses.dataclass(frozen=True)
class OpProfile:
    """Per-operator times of one ``.tflite`` file (see :func:`profile_ops`)."""

    path: str
    runs: int
    num_threads: int
    ops: tuple[OpTime, ...]

    @property
    def total_us(self) -> float:
        """Sum of the operators' mean times (one invoke, profiler overhead included)."""
        return sum(op.mean_us for op in self.ops)

    def by_type(self) -> list[dict[str, Any]]:
        """Operators grouped by name: count, total µs per invoke and share, largest first."""
        groups: dict[str, dict[str, Any]] = {}
        for op in self.ops:
            g = groups.setdefault(op.name, {"name": op.name, "delegated": op.delegated, "count": 0, "us": 0.0})
            g["count"] += 1
            g["us"] += op.mean_us
        total = self.total_us or 1.0
        rows = sorted(groups.values(), key=lambda g: -g["us"])
        for g in rows:
            g["share"] = g["us"] / total
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "runs": self.runs, "num_threads": self.num_threads,
                "total_us": self.total_us, "by_type": self.by_type(),
                "ops": [dataclasses.asdict(op) for op in self.ops]}


def _library() -> ctypes.CDLL:
    import ai_edge_litert

    path = Path(ai_edge_litert.__file__).parent / "libLiteRt.so"
    if not path.is_file():
        raise RuntimeError(f"ai-edge-litert has no {path.name} at {path}; op profiling needs LiteRT's C API.")
    return ctypes.CDLL(str(path))


class _Session:
    """A compiled model with profiling on, its buffers and the handles to free."""

    def __init__(self, lib: ctypes.CDLL, path: Path, num_threads: int):
        self.lib = lib
        self.where = str(path)
        self.handles: list[tuple[str, ctypes.c_void_p]] = []
        self._keep = []  # Option payloads and the destructor callback must outlive the model.
        try:
            self._open(path, num_threads)
        except BaseException:
            self.close()
            raise

    def _open(self, path: Path, num_threads: int) -> None:
        p = ctypes.c_void_p
        env, model, options, compiled = p(), p(), p(), p()
        self._call("LiteRtCreateEnvironment", 0, None, ctypes.byref(env))
        self.handles.append(("LiteRtDestroyEnvironment", env))
        self.env = env
        self._call("LiteRtCreateModelFromFile", env, str(path).encode(), ctypes.byref(model))
        self.handles.append(("LiteRtDestroyModel", model))
        signature = p()
        self._call("LiteRtGetModelSignature", model, ctypes.c_size_t(0), ctypes.byref(signature))
        self._call("LiteRtCreateOptions", ctypes.byref(options))
        self.handles.append(("LiteRtDestroyOptions", options))
        self._call("LiteRtSetOptionsHardwareAccelerators", options, _HW_ACCELERATOR_CPU)
        keep_payload = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(lambda _payload: None)
        self._keep.append(keep_payload)
        # Options travel as TOML text under an identifier (litert/c/options/*.cc).
        for identifier, toml in (("xnnpack", f"num_threads = {int(num_threads)}\n"),
                                 ("runtime_options_string", "enable_profiling = true\n")):
            payload = ctypes.create_string_buffer(toml.encode())
            self._keep.append(payload)
            opaque = p()
            self._call("LiteRtCreateOpaqueOptions", identifier.encode(), payload, keep_payload,
                       ctypes.byref(opaque))
            self._call("LiteRtAddOpaqueOptions", options, opaque)
        self._call("LiteRtCreateCompiledModel", env, model, options, ctypes.byref(compiled))
        self.handles.append(("LiteRtDestroyCompiledModel", compiled))
        self.compiled = compiled
        self.inputs = self._buffers(signature, "Input")
        self.outputs = self._buffers(signature, "Output")

    def _call(self, name: str, *args) -> None:
        status = getattr(self.lib, name)(*args)
        if status != 0:
            raise RuntimeError(f"{self.where}: LiteRT's {name} failed (status {status}); "
                               "is it a valid .tflite file?")

    def _buffers(self, signature, kind: str):
        p = ctypes.c_void_p
        count = ctypes.c_size_t()
        self._call(f"LiteRtGetNumSignature{kind}s", signature, ctypes.byref(count))
        buffers = []
        for i in range(count.value):
            tensor, buffer = p(), p()
            self._call(f"LiteRtGetSignature{kind}TensorByIndex", signature, ctypes.c_size_t(i), ctypes.byref(tensor))
            ranked = ctypes.create_string_buffer(_RANKED_TENSOR_TYPE_SIZE)
            self._call("LiteRtGetRankedTensorType", tensor, ranked)
            words = np.frombuffer(ranked.raw, np.int32)
            dims = words[2:2 + (int(words[1]) & 0x7F)]
            size = int(np.prod(dims)) * _ELEMENT_BYTES.get(int(words[0]), 8)
            self._call("LiteRtCreateManagedTensorBuffer", self.env, _HOST_MEMORY_BUFFER, ranked,
                       ctypes.c_size_t(size), ctypes.byref(buffer))
            self.handles.append(("LiteRtDestroyTensorBuffer", buffer))
            buffers.append((buffer, size, int(words[0])))
        return buffers

    def fill_inputs(self, rng: np.random.Generator) -> None:
        """Random values in every input: 0..255 (pixels; float inputs as floats, never NaN)."""
        for buffer, size, element_type in self.inputs:
            if element_type == 1:  # float32
                data = rng.uniform(0, 255, size // 4).astype(np.float32).tobytes()
            else:
                data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
            host = ctypes.c_void_p()
            self._call("LiteRtLockTensorBuffer", buffer, ctypes.byref(host), _LOCK_WRITE)
            try:
                ctypes.memmove(host, data, size)
            finally:
                self._call("LiteRtUnlockTensorBuffer", buffer)

    def run(self) -> None:
        ins = (ctypes.c_void_p * len(self.inputs))(*[b for b, _, _ in self.inputs])
        outs = (ctypes.c_void_p * len(self.outputs))(*[b for b, _, _ in self.outputs])
        self._call("LiteRtRunCompiledModel", self.compiled, ctypes.c_size_t(0), ctypes.c_size_t(len(self.inputs)),
                   ins, ctypes.c_size_t(len(self.outputs)), outs)

    def close(self) -> None:
        for name, handle in reversed(self.handles):
            getattr(self.lib, name)(handle)
        self.handles.clear()


def profile_ops(path: str | Path, runs: int = 200, warmup: int = 20, num_threads: int = 1,
                seed: int = 0) -> OpProfile:
    """Profiles ``runs`` invokes of the ``.tflite`` file at ``path`` operator by operator.

    Inputs are random values in 0..255 (a CLS-token input too: the time of these
    graphs does not depend on the values).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a TFLite flatbuffer.
        RuntimeError: LiteRT cannot load, compile or run it (names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No .tflite file at {path}.")
    with open(path, "rb") as f:
        head = f.read(8)
    if head[4:8] != b"TFL3":  # The flatbuffer file identifier of every .tflite model.
        raise ValueError(f"{path} is not a TFLite model (no 'TFL3' flatbuffer identifier).")
    _verify(path)
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0; got {runs}, {warmup}.")
    lib = _library()
    with quiet_native_output():
        session = _Session(lib, path, num_threads)
    try:
        session.fill_inputs(np.random.default_rng(seed))
        for _ in range(warmup):
            session.run()
        profiler = ctypes.c_void_p()
        session._call("LiteRtCompiledModelGetProfiler", session.compiled, ctypes.byref(profiler))
        session._call("LiteRtResetProfiler", profiler)
        session._call("LiteRtStartProfiler", profiler)
        for _ in range(runs):
            session.run()
        session._call("LiteRtStopProfiler", profiler)
        count = ctypes.c_int()
        session._call("LiteRtGetNumProfilerEvents", profiler, ctypes.byref(count))
        events = (_ProfiledEventData * max(count.value, 1))()
        if count.value:
            session._call("LiteRtGetProfilerEvents", profiler, count, events)
        ops = _aggregate(events[:count.value])
    finally:
        with quiet_native_output():
            session.close()
    return OpProfile(str(path), runs, num_threads, tuple(ops))


def _verify(path: Path) -> None:
    """Runs TFLite's flatbuffer verifier (through the Python interpreter) on ``path``:
    LiteRT's C API trusts the file, and a truncated one would crash the process."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    try:
        with quiet_native_output():
            Interpreter(model_path=str(path),
                        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    except Exception as e:  # The verifier's failures come as ValueError or RuntimeError.
        raise ValueError(f"{path} is not a valid TFLite model: {str(e).strip().splitlines()[-1]}") from None


def _aggregate(events) -> list[OpTime]:
    """Mean time per operator, in run order.

    Every invoke records the same sequence of operator events (after its "Invoke"
    event), so an operator is its position in that sequence; node indices alone are
    not unique (each XNNPACK partition numbers its operators from 0). The delegate
    node itself is left out when its internal operators were recorded (it would
    count them twice).
    """
    nodes: dict[tuple[int, str], dict[str, Any]] = {}
    position = 0
    for e in events:
        tag = (e.tag or b"?").decode(errors="replace")
        if e.event_type != _OPERATOR_INVOKE and e.event_type not in _DELEGATE_EVENTS:
            if tag == "Invoke":
                position = 0
            continue
        delegated = e.event_type in _DELEGATE_EVENTS
        if delegated and tag.startswith("Delegate/"):
            tag = tag[len("Delegate/"):]
        node = nodes.setdefault((position, tag), {"name": tag, "delegated": delegated, "us": 0, "calls": 0})
        node["us"] += int(e.elapsed_time_us)
        node["calls"] += 1
        position += 1
    has_internal = any(n["delegated"] for n in nodes.values())
    return [OpTime(n["name"], n["delegated"], n["us"] / n["calls"], n["calls"]) for n in nodes.values()
            if not (has_internal and not n["delegated"] and _is_delegate_node(n["name"]))]


def _is_delegate_node(tag: str) -> bool:
    """Whether an interpreter-level event is a delegate's node (e.g. "TfLiteXNNPackDelegate")."""
    return "delegate" in tag.lower()


def format_profile(profile: OpProfile, top: int = 12, every_op: bool = False) -> str:
    """The profile as text: operators grouped by name (largest first), optionally every op."""
    total = profile.total_us
    lines = [f"{profile.path}: {len(profile.ops)} operators, {total:.1f} µs per invoke "
             f"({plural(profile.runs, 'run')}, {plural(profile.num_threads, 'thread')})",
             f"  {'operator':<44} {'count':>5} {'µs':>8} {'share':>6}"]
    rows = profile.by_type()
    for g in rows[:top]:
        where = "" if g["delegated"] else "  (LiteRT built-in kernel)"
        lines.append(f"  {g['name'][:44]:<44} {g['count']:>5} {g['us']:>8.1f} {100 * g['share']:>5.1f}%{where}")
    if len(rows) > top:
        rest = rows[top:]
        lines.append(f"  {f'({len(rest)} more kinds)':<44} {sum(g['count'] for g in rest):>5} "
                     f"{sum(g['us'] for g in rest):>8.1f} {100 * sum(g['share'] for g in rest):>5.1f}%")
    if every_op:
        lines.append(f"  {'#':>4} {'operator (run order)':<44} {'µs':>8}")
        for i, op in enumerate(profile.ops):
            lines.append(f"  {i:>4} {op.name[:44]:<44} {op.mean_us:>8.2f}{'' if op.delegated else '  (built-in)'}")
    return "\n".join(lines)
