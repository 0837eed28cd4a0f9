"""The device-emulating early-exit scheduler over LiteRT submodels.

``RAViTScheduler`` classifies one image at a time the way the phone does: run
the first submodel, take the softmax entropy of its logits, stop when it is
under the exit's threshold, else requantise the CLS token into the next
submodel's input and go on. The last exit always answers.

The scheduler reads only the manifest and the submodels: it needs LiteRT and
NumPy, never TensorFlow.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from ravit_keras.deploy.runtime import policy
from ravit_keras.deploy.runtime.fields import ManifestError
from ravit_keras.deploy.runtime.manifest import load_manifest
from ravit_keras.deploy.runtime.quantization import dequantize
from ravit_keras.deploy.runtime.reports import Classification, StreamReport
from ravit_keras.deploy.runtime.submodel import Submodel
from ravit_keras.exits.per_class import per_class_from_counts
from ravit_keras.exits.uncertainty import validate_thresholds
from ravit_keras.images import check_float_pixels

__all__ = ["RAViTScheduler", "Classification", "StreamReport", "Submodel", "ManifestError"]


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
        self.exit_names = m.exit_names
        self.labels = list(m.labels)
        self.num_classes = m.num_classes
        self.submodels = [Submodel(self.folder / e.file, e, num_threads) for e in m.exits]
        self._last = len(self.submodels) - 1
        for prev, sub in zip(self.submodels, self.submodels[1:]):
            sub.set_cls_source(prev.entry.outputs["cls_out"])
        # load_manifest checked `image` against every exit's image tensor, and each
        # Submodel its tensor against the file: the shape below is the manifest's `image`.
        image = m.exits[0].inputs["image"]
        self.image_shape = image.shape[1:]
        self.image_dtype = image.dtype
        self._input_dtype = np.dtype(image.dtype)
        self.set_thresholds(list(m.default_thresholds) if thresholds is None else thresholds)

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
        m = self.manifest
        return policy.thresholds_for_mac_budget(m.full_model_macs, m.operating_points or (), budget,
                                                self.thresholds)

    def measure_branch_latency(self, runs: int = 20) -> list[float]:
        """Median invoke time (ms) of every submodel on a blank input."""
        medians = []
        for sub in self.submodels:
            inputs = {n: np.zeros(t.shape, t.dtype) for n, t in sub.entry.inputs.items()}
            times = [sub(inputs)[1] for _ in range(runs + 3)][3:]
            medians.append(1e3 * float(np.median(times)))
        return medians

    def thresholds_for_latency_budget(self, budget_ms: float, runs: int = 20) -> list[float]:
        """Most accurate operating point whose expected latency fits ``budget_ms``.

        Expected latency = Σ_i f_i · (t_1 + … + t_i) with the calibrated exit
        fractions f_i and the submodel latencies measured here and now.
        """
        return policy.thresholds_for_latency_budget(self.manifest.operating_points or (),
                                                    self.measure_branch_latency(runs), budget_ms)

    def battery_thresholds(self, level: float) -> list[float]:
        """Thresholds of the battery-aware policy at battery ``level`` in [0, 1].

        At or above ``high`` the default thresholds apply, at or below ``low``
        the saver thresholds (the cheapest calibrated operating point); in
        between they are interpolated linearly, so accuracy is traded for
        battery life gradually as the battery drains.
        """
        return self.manifest.battery_policy.thresholds_at(level)

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
            spec = sub.entry.outputs["logits"]
            logits_all.append(dequantize(outputs["logits"][0], spec.scale, spec.zero_point))
            records.append({**{f"in_{n}": v for n, v in inputs.items() if n != "image"},
                            **{f"out_{n}": v.copy() for n, v in outputs.items()}})
            cls = outputs["cls_out"]
        return logits_all, records

    def stream(self, images: Iterable[np.ndarray], thresholds: Any = None) -> Iterator[Classification]:
        """Classifies images one by one as they come (a camera stream)."""
        for image in images:
            yield self.classify(image, thresholds)

    def warm_up(self, invokes: int = 1) -> None:
        """Invokes every submodel ``invokes`` times on a blank input.

        A submodel's first invoke prepares its delegate (XNNPACK packs the weights then)
        and takes many times a steady one: timed, it would skew a stream's latency
        statistics.
        """
        for sub in self.submodels:
            inputs = {n: np.zeros(t.shape, t.dtype) for n, t in sub.entry.inputs.items()}
            for _ in range(invokes):
                sub(inputs)

    def evaluate(self, images: Iterable[np.ndarray], labels: Iterable[int] | None = None,
                 thresholds: Any = None,
                 on_result: Callable[[int, Classification, int | None], None] | None = None,
                 warmup: int = 1) -> dict[str, Any]:
        """Streams ``images`` through the scheduler; returns accuracy, exits, MACs, latency.

        With ``labels`` the report also holds per-class figures (``per_class``:
        accuracy, exit shares, confusion matrix). ``on_result(i, classification,
        label)`` is called for every image (e.g. to write per-image answers).
        ``warmup`` blank invokes of every submodel come first and are not timed
        (``warmup_invokes`` in the report).
        """
        if thresholds is not None:
            thresholds = validate_thresholds(thresholds, len(self.submodels), self.num_classes)
        self.warm_up(warmup)
        report = StreamReport(self.exit_names, class_names=self.labels if labels is not None else None)
        label_iter = iter(labels) if labels is not None else None
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
        summary = report.summary()
        summary["warmup_invokes"] = int(warmup)
        summary["thresholds"] = self.thresholds if thresholds is None else [float(t) for t in thresholds]
        if labels is None:
            summary.pop("accuracy")
        elif report.confusion is not None:
            summary["per_class"] = per_class_from_counts(report.confusion, report.class_exits,
                                                         self.labels, self.exit_names)
        return summary
