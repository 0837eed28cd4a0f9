"""The device-emulating early-exit scheduler over LiteRT submodels.

``RAViTScheduler`` classifies one image at a time the way the phone does: run
the first submodel, take the softmax entropy of its logits, stop when it is
under the exit's threshold, else requantise the CLS token into the next
submodel's input and go on. The last exit always answers.

The scheduler reads only the manifest and the submodels: it needs LiteRT and
NumPy, never TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from ravit_keras.console import quiet_native_output
from ravit_keras.deploy.manifest import ManifestError, load_manifest
from ravit_keras.deploy.quantization import QUANT_RANGES, dequantize, requantize
from ravit_keras.exits.per_class import per_class_from_counts
from ravit_keras.exits.uncertainty import validate_thresholds
from ravit_keras.images import check_float_pixels


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

    def __init__(self, path: Path, entry: dict, num_threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        self.entry = entry
        self.name = entry["name"]
        try:
            with quiet_native_output():
                self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
                self.interpreter.allocate_tensors()
        except Exception as e:  # Corrupt or truncated flatbuffers fail here.
            raise ManifestError(f"{path} is not a loadable TFLite model: {e}") from None
        runner = self.interpreter.get_signature_runner()
        actual = {**runner.get_input_details(), **runner.get_output_details()}
        expected = {**entry["inputs"], **entry["outputs"]}
        if set(actual) != set(expected):
            raise ManifestError(
                f"{path.name} has signature tensors {sorted(actual)}, the manifest says {sorted(expected)}."
            )
        for name, want in expected.items():
            got = actual[name]
            scale, zp = got["quantization"]
            problems = []
            if [int(s) for s in got["shape"]] != want["shape"]:
                problems.append(f"shape {list(got['shape'])} != {want['shape']}")
            if np.dtype(got["dtype"]).name != want["dtype"]:
                problems.append(f"dtype {np.dtype(got['dtype']).name} != {want['dtype']}")
            if not math.isclose(scale, want["scale"], rel_tol=1e-6) or zp != want["zero_point"]:
                problems.append(f"quantisation ({scale}, {zp}) != ({want['scale']}, {want['zero_point']})")
            if problems:
                raise ManifestError(f"{path.name} tensor {name!r} does not match the manifest: {'; '.join(problems)}.")
        self._in = {n: actual[n]["index"] for n in entry["inputs"]}
        self._out = {n: actual[n]["index"] for n in entry["outputs"]}
        # Hot-path constants for the scheduler.
        self.image_index = self._in["image"]
        self.cls_index = self._in.get("cls_in")
        self.logits_index = self._out["logits"]
        self.cls_out_index = self._out["cls_out"]
        self.logits_scale = entry["outputs"]["logits"]["scale"] or 1.0  # 0 means float.
        self.logits_zero_point = entry["outputs"]["logits"]["zero_point"]
        self._max_entropy = math.log(entry["outputs"]["logits"]["shape"][-1])
        self.cumulative_macs = int(entry["cumulative_macs"])
        self.cls_source: dict | None = None  # Set by the scheduler: the producer's cls_out spec.
        self._cls_table: np.ndarray | None = None
        self._cls_bytes: bytes | None = None
        self._exp_table = self._z_table = self._exp_list = self._z_list = None
        if entry["outputs"]["logits"]["dtype"] in ("int8", "uint8"):
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

    def set_cls_source(self, source: dict) -> None:
        """Links this submodel's cls_in to the previous submodel's cls_out spec."""
        self.cls_source = source
        target = self.entry["inputs"]["cls_in"]
        self._cls_table = self._cls_bytes = None
        if source["dtype"] in ("int8", "uint8") and not target["dtype"].startswith("float"):
            # 256 possible inputs: a table made with `requantize` itself is exact and
            # turns the per-image requantisation into one indexing operation.
            # Indexed by the token's raw bytes (a uint8 view), so no cast is needed.
            values = np.arange(256, dtype=np.uint8).view(source["dtype"])
            self._cls_table = requantize(values, source, target)
            if self._cls_table.itemsize == 1:
                # Byte to byte: ``bytes.translate`` applies the table in one C call.
                self._cls_bytes = self._cls_table.view(np.uint8).tobytes()
                self._cls_dtype, self._cls_shape = self._cls_table.dtype, tuple(target["shape"])

    def requantize_cls(self, cls: np.ndarray) -> np.ndarray:
        """The previous submodel's cls_out expressed in this submodel's cls_in format."""
        if self._cls_bytes is not None:
            return np.frombuffer(cls.tobytes().translate(self._cls_bytes), self._cls_dtype).reshape(self._cls_shape)
        if self._cls_table is not None:
            return self._cls_table[cls.view(np.uint8)]
        return requantize(cls, self.cls_source, self.entry["inputs"]["cls_in"])

    def __call__(self, inputs: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], float]:
        """Runs once; returns the raw outputs and the invoke time in seconds."""
        it = self.interpreter
        for name, index in self._in.items():
            it.set_tensor(index, inputs[name])
        start = time.perf_counter()
        it.invoke()
        elapsed = time.perf_counter() - start
        return {n: it.get_tensor(i) for n, i in self._out.items()}, elapsed


# Results ---------------------------------------------------------------------------


class Classification:
    """The scheduler's answer for one image.

    ``probabilities`` (of the answering exit) and ``entropies`` (one per visited
    exit) are computed from the raw logits on first access, with the very function
    the exit rule is defined by (``Submodel.entropy``): a stream that only counts
    answers does not pay for them.
    """

    __slots__ = ("label", "label_name", "exit_index", "exit_name", "macs", "branch_latency_ms",
                 "total_latency_ms", "_submodels", "_logits", "_entropies", "_probabilities")

    def __init__(self, label: int, label_name: str, exit_index: int, exit_name: str, macs: int,
                 branch_latency_ms: list[float], total_latency_ms: float,
                 submodels: Sequence["Submodel"], logits: list[np.ndarray]):
        self.label = label
        self.label_name = label_name
        self.exit_index = exit_index            # 0-based position among the exits
        self.exit_name = exit_name
        self.macs = macs
        self.branch_latency_ms = branch_latency_ms  # invoke time of each visited submodel
        self.total_latency_ms = total_latency_ms    # wall time of the whole classification
        self._submodels, self._logits = submodels, logits  # raw logits of each visited exit
        self._entropies = self._probabilities = None

    @property
    def entropies(self) -> list[float]:
        """Softmax entropy of each visited exit (nats)."""
        if self._entropies is None:
            self._entropies = [sub.entropy(q)[2] for sub, q in zip(self._submodels, self._logits)]
        return self._entropies

    @property
    def probabilities(self) -> np.ndarray:
        """Softmax of the answering exit's logits."""
        if self._probabilities is None:
            e, total, _ = self._submodels[self.exit_index].entropy(self._logits[-1])
            self._probabilities = e / total
        return self._probabilities

    @property
    def overhead_ms(self) -> float:
        return self.total_latency_ms - sum(self.branch_latency_ms)

    def __repr__(self) -> str:
        return (f"Classification(label={self.label}, label_name={self.label_name!r}, "
                f"exit_name={self.exit_name!r}, macs={self.macs}, total_latency_ms={self.total_latency_ms:.3f})")


@dataclasses.dataclass
class StreamReport:
    """Accumulates classifications over a stream without keeping them (flat memory)."""

    exit_names: Sequence[str]
    class_names: Sequence[str] | None = None  # Given: per-class counts (C x C + C x E ints).
    count: int = 0
    correct: int = 0
    macs_sum: float = 0.0
    invoke_ms_sum: float = 0.0
    total_ms_sum: float = 0.0

    def __post_init__(self):
        self.exit_counts = [0] * len(self.exit_names)
        self._latencies: list[float] = []
        self.confusion = self.class_exits = None
        if self.class_names is not None:
            c = len(self.class_names)
            self.confusion = np.zeros((c, c), np.int64)
            self.class_exits = np.zeros((c, len(self.exit_names)), np.int64)

    def add(self, c: Classification, label: int | None) -> None:
        self.count += 1
        self.exit_counts[c.exit_index] += 1
        self.macs_sum += c.macs
        self.invoke_ms_sum += sum(c.branch_latency_ms)
        self.total_ms_sum += c.total_latency_ms
        self._latencies.append(c.total_latency_ms)  # 8 bytes an image: fine for percentiles.
        if label is not None:
            label = int(label)
            self.correct += int(c.label == label)
            if self.confusion is not None:
                self.confusion[label, c.label] += 1
                self.class_exits[label, c.exit_index] += 1

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self._latencies or [float("nan")])
        n = max(self.count, 1)
        return {
            "images": self.count,
            "accuracy": self.correct / n,
            "exit_counts": list(self.exit_counts),
            "exit_fractions": [c / n for c in self.exit_counts],
            "avg_macs": self.macs_sum / n,
            "avg_mflops": 2 * self.macs_sum / n / 1e6,
            "latency_ms": {
                "mean": float(lat.mean()), "p50": float(np.percentile(lat, 50)),
                "p90": float(np.percentile(lat, 90)), "p99": float(np.percentile(lat, 99)),
            },
            "invoke_ms_mean": self.invoke_ms_sum / n,
            "scheduler_overhead_ms": (self.total_ms_sum - self.invoke_ms_sum) / n,
            "scheduler_overhead_fraction": (self.total_ms_sum - self.invoke_ms_sum) / max(self.invoke_ms_sum, 1e-12),
        }


# The scheduler ---------------------------------------------------------------------


class RAViTScheduler:
    """Runs converted RAViT submodels with the early-exit rule, one image at a time.

    Args:
        folder: output of ``ravit convert`` (manifest.json + branch_*.tflite).
        thresholds: per-exit τ (or one value); default: the manifest's.
        num_threads: LiteRT CPU threads per submodel.
        verify_checksums: check every submodel's SHA-256 against the manifest.
    """

    def __init__(self, folder: str | Path, thresholds: Any = None, num_threads: int = 1,
                 verify_checksums: bool = True):
        self.folder = Path(folder)
        self.manifest = load_manifest(self.folder, verify_checksums)
        m = self.manifest
        self.exit_names = [e["name"] for e in m["exits"]]
        self.labels = m["labels"]
        self.num_classes = m["num_classes"]
        self.submodels = [Submodel(self.folder / e["file"], e, num_threads) for e in m["exits"]]
        self._last = len(self.submodels) - 1
        for prev, sub in zip(self.submodels, self.submodels[1:]):
            sub.set_cls_source(prev.entry["outputs"]["cls_out"])
        image = m["exits"][0]["inputs"]["image"]
        self.image_shape = tuple(image["shape"][1:])
        self.image_dtype = image["dtype"]
        self._input_dtype = np.dtype(image["dtype"])
        self.set_thresholds(m["default_thresholds"] if thresholds is None else thresholds)

    # Thresholds and policies ----------------------------------------------------

    @property
    def thresholds(self) -> list[float]:
        return [float(t) for t in self._thresholds]

    def set_thresholds(self, thresholds: Any) -> None:
        """Sets τ (one value for every exit, or one per exit); validated against [0, ln C]."""
        self._thresholds = validate_thresholds(thresholds, len(self.submodels), self.num_classes)

    def thresholds_for_mac_budget(self, budget: float) -> list[float]:
        """Most accurate calibrated operating point whose average MACs fit ``budget``.

        ``budget`` <= 1 is read as a fraction of the full model's MACs.
        """
        full = self.manifest["full_model_macs"]
        macs = budget * full if budget <= 1 else budget
        fitting = [p for p in self.manifest.get("operating_points", []) if p["avg_macs"] <= macs]
        if macs >= full:
            return self.thresholds
        if not fitting:
            raise ValueError(
                f"No calibrated operating point fits {macs:,.0f} MACs; the cheapest needs "
                f"{min((p['avg_macs'] for p in self.manifest.get('operating_points', [])), default=float('nan')):,.0f}."
            )
        return max(fitting, key=lambda p: p["accuracy"])["thresholds"]

    def measure_branch_latency(self, runs: int = 20) -> list[float]:
        """Median invoke time (ms) of every submodel on a blank input."""
        medians = []
        for sub in self.submodels:
            inputs = {n: np.zeros(t["shape"], t["dtype"]) for n, t in sub.entry["inputs"].items()}
            times = [sub(inputs)[1] for _ in range(runs + 3)][3:]
            medians.append(1e3 * float(np.median(times)))
        return medians

    def thresholds_for_latency_budget(self, budget_ms: float, runs: int = 20) -> list[float]:
        """Most accurate operating point whose expected latency fits ``budget_ms``.

        Expected latency = Σ_i f_i · (t_1 + … + t_i) with the calibrated exit
        fractions f_i and the submodel latencies measured here and now.
        """
        cumulative = np.cumsum(self.measure_branch_latency(runs))
        best = None
        points = [{"thresholds": [0.0] * (len(self.submodels) - 1), "accuracy": float("inf"),
                   "exit_fractions": [0.0] * (len(self.submodels) - 1) + [1.0]}]
        points += self.manifest.get("operating_points", [])
        for p in points:
            expected = float(np.dot(p["exit_fractions"], cumulative))
            if expected <= budget_ms and (best is None or p["accuracy"] > best["accuracy"]):
                best = p
        if best is None:
            raise ValueError(
                f"No operating point fits {budget_ms} ms; the first exit alone takes {cumulative[0]:.3f} ms here."
            )
        return best["thresholds"]

    def battery_thresholds(self, level: float) -> list[float]:
        """Thresholds of the battery-aware policy at battery ``level`` in [0, 1].

        At or above ``high`` the default thresholds apply, at or below ``low``
        the saver thresholds (the cheapest calibrated operating point); in
        between they are interpolated linearly, so accuracy is traded for
        battery life gradually as the battery drains.
        """
        if not 0.0 <= level <= 1.0 or math.isnan(level):
            raise ValueError(f"Battery level must be in [0, 1], got {level}.")
        policy = self.manifest["battery_policy"]
        hi, lo = policy["high"], policy["low"]
        t_hi, t_lo = np.asarray(policy["thresholds_high"]), np.asarray(policy["thresholds_low"])
        w = 0.0 if level >= hi else 1.0 if level <= lo else (hi - level) / (hi - lo)
        return [float(t) for t in (1 - w) * t_hi + w * t_lo]

    # Classification ----------------------------------------------------------------

    def _check_image(self, image: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        if image.dtype == self._input_dtype and image.shape == self.image_shape:
            if image.dtype.kind == "f":
                check_float_pixels(image)
            return image[None]
        if image.shape == self.image_shape:
            image = image[None]
        if image.shape != (1, *self.image_shape):
            raise ValueError(
                f"Image shape {tuple(image.shape)} does not match the model input "
                f"{self.image_shape} (H, W, 3; resize the image first)."
            )
        if self.image_dtype == "uint8":
            if image.dtype != np.uint8:
                raise ValueError(f"This int8 model takes uint8 pixels 0..255; got dtype {image.dtype}.")
            return image
        if image.dtype == np.uint8:
            return image.astype(np.float32)
        if image.dtype != np.float32:
            raise ValueError(f"Image dtype {image.dtype} not supported; give uint8 or float32 pixels 0..255.")
        check_float_pixels(image)
        return image

    def classify(self, image: np.ndarray, thresholds: Any = None) -> Classification:
        """Classifies one (H, W, 3) image with the early-exit rule."""
        taus = self._thresholds if thresholds is None else validate_thresholds(
            thresholds, len(self.submodels), self.num_classes)
        return self._classify(image, taus.tolist())

    def _classify(self, image: np.ndarray, taus: list[float]) -> Classification:
        # The hot path: every Python call here is microseconds on top of invoke times of
        # a tenth of a millisecond, so it keeps to the few calls the rule needs. ``taus``
        # are Python floats: NumPy scalars would cost a microsecond per comparison.
        clock = time.perf_counter
        start = clock()
        image = self._check_image(image)
        latencies, logits = [], []
        cls = None
        for k, sub in enumerate(self.submodels):
            it = sub.interpreter
            it.set_tensor(sub.image_index, image)
            if k:
                it.set_tensor(sub.cls_index, sub.requantize_cls(cls))
            t0 = clock()
            it.invoke()
            latencies.append(1e3 * (clock() - t0))
            q = it.get_tensor(sub.logits_index)[0]
            logits.append(q)
            if k == self._last or sub.exits_at(q, taus[k]):
                label = sub.label(q)
                return Classification(label, self.labels[label], k, self.exit_names[k], sub.cumulative_macs,
                                      latencies, 1e3 * (clock() - start), self.submodels, logits)
            cls = it.get_tensor(sub.cls_out_index)
        raise AssertionError("unreachable: the last exit always answers")

    def all_exit_logits(self, image: np.ndarray) -> tuple[list[np.ndarray], list[dict[str, np.ndarray]]]:
        """Runs every submodel; returns each exit's dequantised logits and raw I/O.

        For fidelity checks and golden vectors: the raw record holds each
        submodel's integer inputs and outputs exactly as the device sees them.
        """
        image = self._check_image(image)
        logits_all, records = [], []
        cls = None
        for k, sub in enumerate(self.submodels):
            inputs = {"image": image}
            if k:
                inputs["cls_in"] = sub.requantize_cls(cls)
            outputs, _ = sub(inputs)
            spec = sub.entry["outputs"]["logits"]
            logits_all.append(dequantize(outputs["logits"][0], spec["scale"], spec["zero_point"]))
            records.append({**{f"in_{n}": v for n, v in inputs.items() if n != "image"},
                            **{f"out_{n}": v.copy() for n, v in outputs.items()}})
            cls = outputs["cls_out"]
        return logits_all, records

    def stream(self, images: Iterable[np.ndarray], thresholds: Any = None) -> Iterator[Classification]:
        """Classifies images one by one as they come (a camera stream)."""
        for image in images:
            yield self.classify(image, thresholds)

    def evaluate(self, images: Iterable[np.ndarray], labels: Iterable[int] | None = None,
                 thresholds: Any = None, progress: bool = False, total: int | None = None,
                 on_result: Callable[[int, Classification, int | None], None] | None = None,
                 ) -> dict[str, Any]:
        """Streams ``images`` through the scheduler; returns accuracy, exits, MACs, latency.

        With ``labels`` the report also holds per-class figures (``per_class``:
        accuracy, exit shares, confusion matrix). ``on_result(i, classification,
        label)`` is called for every image (e.g. to write per-image answers).
        """
        if thresholds is not None:
            thresholds = validate_thresholds(thresholds, len(self.submodels), self.num_classes)
        report = StreamReport(self.exit_names, class_names=self.labels if labels is not None else None)
        label_iter = iter(labels) if labels is not None else None
        bar = None
        if progress:
            import keras

            bar = keras.utils.Progbar(total, unit_name="image")
        taus = (self._thresholds if thresholds is None else thresholds).tolist()
        for i, image in enumerate(images):
            c = self._classify(image, taus)
            label = next(label_iter) if label_iter is not None else None
            if label is not None and not 0 <= int(label) < self.num_classes:
                raise ValueError(
                    f"Label {int(label)} of image {i} is outside the model's {self.num_classes} classes "
                    f"(0..{self.num_classes - 1}).")
            report.add(c, label)
            if on_result is not None:
                on_result(i, c, label)
            if bar is not None and (i + 1) % 100 == 0:
                bar.update(i + 1)
        if bar is not None:
            bar.update(report.count, finalize=True)
        summary = report.summary()
        summary["thresholds"] = self.thresholds if thresholds is None else [float(t) for t in thresholds]
        if labels is None:
            summary.pop("accuracy")
        elif report.confusion is not None:
            summary["per_class"] = per_class_from_counts(report.confusion, report.class_exits,
                                                         self.labels, self.exit_names)
        return summary
