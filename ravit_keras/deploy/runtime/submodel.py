"""One branch submodel in a LiteRT interpreter, and the exit rule's entropy on its logits.

Checked against its manifest entry when opened; holds the hot-path tables
(exp and requantisation) the scheduler uses for every image.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from ravit_keras.console import quiet_native_output
from ravit_keras.deploy.runtime.fields import ManifestError
from ravit_keras.deploy.runtime.manifest import ExitSpec, TensorSpec
from ravit_keras.deploy.runtime.quantization import requantize

# Python's and NumPy's sums of at most a few thousand terms in [0, 1] differ by ~1e-13:
# a margin a thousand times wider leaves no decision to rounding.
_DECISION_MARGIN = 1e-9


def _exp_entropy(q: np.ndarray, scale: float) -> tuple[np.ndarray, float, float]:
    """Entropy of the softmax of raw logits ``q`` (integer with ``scale``, or float).

    Returns ``(e, Σe, u)`` with ``e = exp(x - max x)`` (the softmax is ``e / Σe``)
    and ``u = ln Σe − (e·(x − max x)) / Σe`` clipped to [0, ln C]: the same value
    as ``exits.entropy`` in few NumPy calls. The zero point cancels in
    ``x − max x``, so integer logits need no dequantisation first.
    """
    q = q.astype(np.float64)
    z = (q - q.max()) * scale
    e = np.exp(z)
    total = float(e.sum())
    u = math.log(total) - float(e @ z) / total
    return e, total, min(max(u, 0.0), math.log(len(q)))


# Submodels -----------------------------------------------------------------------


class Submodel:
    """One branch submodel in a LiteRT interpreter, checked against its manifest entry."""

    def __init__(self, path: Path, entry: ExitSpec, num_threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        self.entry = entry
        self.name = entry.name
        try:
            with quiet_native_output():
                self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
                self.interpreter.allocate_tensors()
        except Exception as e:  # Corrupt or truncated flatbuffers fail here.
            raise ManifestError(f"{path} is not a loadable TFLite model: {e}") from None
        runner = self.interpreter.get_signature_runner()
        actual = {**runner.get_input_details(), **runner.get_output_details()}
        expected = {**entry.inputs, **entry.outputs}
        if set(actual) != set(expected):
            raise ManifestError(
                f"{path.name} has signature tensors {sorted(actual)}, the manifest says {sorted(expected)}."
            )
        for name, want in expected.items():
            got = actual[name]
            scale, zp = got["quantization"]
            problems = []
            if tuple(int(s) for s in got["shape"]) != want.shape:
                problems.append(f"shape {list(got['shape'])} != {list(want.shape)}")
            if np.dtype(got["dtype"]).name != want.dtype:
                problems.append(f"dtype {np.dtype(got['dtype']).name} != {want.dtype}")
            if not math.isclose(scale, want.scale, rel_tol=1e-6) or zp != want.zero_point:
                problems.append(f"quantisation ({scale}, {zp}) != ({want.scale}, {want.zero_point})")
            if problems:
                raise ManifestError(f"{path.name} tensor {name!r} does not match the manifest: {'; '.join(problems)}.")
        self._in = {n: actual[n]["index"] for n in entry.inputs}
        self._out = {n: actual[n]["index"] for n in entry.outputs}
        # Hot-path constants for the scheduler.
        self.image_index = self._in["image"]
        self.cls_index = self._in.get("cls_in")
        self.logits_index = self._out["logits"]
        self.cls_out_index = self._out["cls_out"]
        logits = entry.outputs["logits"]
        self.logits_scale = logits.scale or 1.0  # 0 means float.
        self.logits_zero_point = logits.zero_point
        self._max_entropy = math.log(logits.shape[-1])
        self.cumulative_macs = entry.cumulative_macs
        self.cls_source: TensorSpec | None = None  # Set by the scheduler: the producer's cls_out spec.
        self._cls_table: np.ndarray | None = None
        self._cls_bytes: bytes | None = None
        self._exp_table = self._z_table = self._exp_list = self._z_list = None
        if logits.dtype in ("int8", "uint8"):
            # z = (q - max q)·scale takes 256 values: tables of z and exp(z), made with
            # the very operations `_exp_entropy` applies, give the same bits in fewer calls.
            self._z_table = (0.0 - np.arange(256, dtype=np.float64)) * self.logits_scale
            self._exp_table = np.exp(self._z_table)
            self._exp_list, self._z_list = self._exp_table.tolist(), self._z_table.tolist()

    def exits_at(self, q: np.ndarray, tau: float) -> bool:
        """Whether the exit rule stops at this exit: ``entropy(q)[2] <= tau``, exactly.

        For integer logits the entropy is first summed in plain Python from the
        tables (a few microseconds, where NumPy's calls cost tens right after an
        invoke has evicted the caches). Its rounding differs from NumPy's by far
        less than ``_DECISION_MARGIN``; only a value that close to ``tau`` is
        decided by the NumPy computation itself, so every decision is the one
        ``entropy`` gives.
        """
        if self._exp_list is None:
            return self.entropy(q)[2] <= tau
        v = q.tolist()
        m = max(v)
        exp_t, z_t = self._exp_list, self._z_list
        total = dot = 0.0
        for x in v:
            d = m - x
            w = exp_t[d]
            total += w
            dot += w * z_t[d]
        u = min(max(math.log(total) - dot / total, 0.0), self._max_entropy)
        if abs(u - tau) > _DECISION_MARGIN:
            return u <= tau
        return self.entropy(q)[2] <= tau

    def label(self, q: np.ndarray) -> int:
        """The class of the softmax's largest probability (its first, on a tie)."""
        if self._exp_list is not None:
            # Distinct integer logits have distinct exp-table entries: the softmax's
            # argmax is the logits' argmax.
            return int(q.argmax())
        return int(np.argmax(self.entropy(q)[0]))  # Float exp can round close logits together.

    def entropy(self, q: np.ndarray) -> tuple[np.ndarray, float, float]:
        """``_exp_entropy(q, logits_scale)``, bit for bit, from the tables for integer logits."""
        if self._exp_table is None:
            return _exp_entropy(q, self.logits_scale)
        d = np.subtract(q.max(), q, dtype=np.intp)
        e = self._exp_table[d]
        total = float(e.sum())
        u = math.log(total) - float(e @ self._z_table[d]) / total
        return e, total, min(max(u, 0.0), self._max_entropy)

    def set_cls_source(self, source: TensorSpec) -> None:
        """Links this submodel's cls_in to the previous submodel's cls_out spec."""
        self.cls_source = source
        target = self.entry.inputs["cls_in"]
        self._cls_table = self._cls_bytes = None
        if source.dtype in ("int8", "uint8") and not target.dtype.startswith("float"):
            # 256 possible inputs: a table made with `requantize` itself is exact and
            # turns the per-image requantisation into one indexing operation.
            # Indexed by the token's raw bytes (a uint8 view), so no cast is needed.
            values = np.arange(256, dtype=np.uint8).view(source.dtype)
            self._cls_table = requantize(values, source, target)
            if self._cls_table.itemsize == 1:
                # Byte to byte: ``bytes.translate`` applies the table in one C call.
                self._cls_bytes = self._cls_table.view(np.uint8).tobytes()
                self._cls_dtype, self._cls_shape = self._cls_table.dtype, target.shape

    def requantize_cls(self, cls: np.ndarray) -> np.ndarray:
        """The previous submodel's cls_out expressed in this submodel's cls_in format."""
        if self._cls_bytes is not None:
            return np.frombuffer(cls.tobytes().translate(self._cls_bytes), self._cls_dtype).reshape(self._cls_shape)
        if self._cls_table is not None:
            return self._cls_table[cls.view(np.uint8)]
        return requantize(cls, self.cls_source, self.entry.inputs["cls_in"])

    def __call__(self, inputs: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], float]:
        """Runs once; returns the raw outputs and the invoke time in seconds."""
        it = self.interpreter
        for name, index in self._in.items():
            it.set_tensor(index, inputs[name])
        start = time.perf_counter()
        it.invoke()
        elapsed = time.perf_counter() - start
        return {n: it.get_tensor(i) for n, i in self._out.items()}, elapsed

