"""What the scheduler answers: one ``Classification`` per image, a ``StreamReport`` per stream."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:
    from ravit_keras.deploy.runtime.submodel import Submodel

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
                "p90": float(np.percentile(lat, 90)), "p95": float(np.percentile(lat, 95)),
                "p99": float(np.percentile(lat, 99)),
            },
            "invoke_ms_mean": self.invoke_ms_sum / n,
            "scheduler_overhead_ms": (self.total_ms_sum - self.invoke_ms_sum) / n,
            "scheduler_overhead_fraction": (self.total_ms_sum - self.invoke_ms_sum) / max(self.invoke_ms_sum, 1e-12),
        }

