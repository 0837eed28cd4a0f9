"""Per-image answers: ``ravit predict`` on new images, ``ravit run --per-image`` on a stream.

Each answer (a ``Prediction``) holds the top-k labels and probabilities, the exit
that answered, the entropies of the exits visited, the MACs spent and, on
converted submodels, the latency. Answers come from converted submodels through
the scheduler (no TensorFlow) or from a Keras model with the same early-exit rule
(routed one image at a time after a batched forward pass). ``PredictionWriter``
streams them into a CSV or JSON file that appears only when complete.

In both files a file name whose bytes are not UTF-8 is written with ``\\xNN`` escapes
for those bytes (``io_utils.printable_path``). In the CSV, ``top_k`` is a JSON list of
``[label, probability]`` pairs and text cells that a spreadsheet would run as a formula
get a leading ``'`` (``io_utils.spreadsheet_safe``).
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ravit_keras import images as image_io
from ravit_keras.io_utils import check_writable_file, current_umask, printable_path, spreadsheet_safe

PREDICTION_FORMATS = (".csv", ".json")


@dataclass
class Prediction:
    """The answer for one image."""

    source: str                    # file name, or "#<index>" for an image of a dataset
    label: str                     # predicted class name
    label_index: int
    probability: float             # of the predicted class
    top_k: list[tuple[str, float]]
    exit_name: str
    exit_index: int
    entropies: list[float]         # one per exit visited, in order
    macs: int
    latency_ms: float | None       # scheduler wall time (None for a batched Keras pass)
    true_label: str | None = None

    @property
    def correct(self) -> bool | None:
        return None if self.true_label is None else self.true_label == self.label


def _top_k(probabilities: np.ndarray, names: Sequence[str], k: int) -> list[tuple[str, float]]:
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [(str(names[i]), float(probabilities[i])) for i in order]


def from_classification(c, source: str, class_names: Sequence[str], top_k: int = 3,
                        true_label: int | None = None) -> Prediction:
    """A ``Prediction`` from the scheduler's ``Classification``."""
    return Prediction(
        source=source, label=c.label_name, label_index=int(c.label),
        probability=float(c.probabilities[c.label]), top_k=_top_k(c.probabilities, class_names, top_k),
        exit_name=c.exit_name, exit_index=int(c.exit_index), entropies=[float(u) for u in c.entropies],
        macs=int(c.macs), latency_ms=float(c.total_latency_ms),
        true_label=None if true_label is None else str(class_names[int(true_label)]),
    )


def read_images(files: Sequence[str], size: tuple[int, int], skip_bad: bool = False,
                warn: Callable[[str], None] | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """Yields ``(file, uint8 pixels at size)``: decoded with Pillow, resized with
    ``images.resize`` (the training pipeline's antialiased bilinear rule).

    Raises:
        images.ImageError: naming the file, for an unreadable image (unless
            ``skip_bad``, which warns and goes on).
    """
    for file in files:
        try:
            pixels = image_io.read_image(file)
        except image_io.ImageError as e:
            if not skip_bad:
                raise
            if warn is not None:
                warn(f"skipped: {e}")
            continue
        yield file, image_io.resize(pixels, size)


def predict_with_scheduler(scheduler, items: Iterable[tuple[str, np.ndarray]], top_k: int = 3,
                           thresholds: Any = None) -> Iterator[Prediction]:
    """Classifies ``(source, image)`` pairs one at a time on converted submodels."""
    for source, image in items:
        c = scheduler.classify(image, thresholds)
        yield from_classification(c, source, scheduler.labels, top_k)


def predict_with_keras(model, items: Iterable[tuple[str, np.ndarray]], thresholds: Any = 0.0,
                       top_k: int = 3, batch_size: int = 64,
                       class_names: Sequence[str] | None = None) -> list[Prediction]:
    """Classifies ``(source, image)`` pairs with a Keras RAViT and the early-exit rule.

    Every exit is computed in one batched pass; each image then takes the exit the
    one-image-at-a-time rule gives (``exits.route_one_at_a_time``).
    """
    from ravit_keras.exits import route_one_at_a_time
    from ravit_keras.model import flops
    from ravit_keras.runs import class_names_or_placeholders

    items = list(items)
    config = model.ravit_config
    names = class_names_or_placeholders(class_names, config.num_classes)
    if not items:
        return []
    batch = np.stack([img for _, img in items]).astype(np.float32)
    outputs = model.predict(batch, batch_size=batch_size, verbose=0)
    logits = [np.asarray(outputs[n]) for n in config.exit_names]
    routing = route_one_at_a_time(logits, thresholds)
    exit_macs = flops.exit_macs(config)
    out = []
    for i, (source, _) in enumerate(items):
        e = int(routing.exit_index[i])
        p = routing.probabilities[i]
        label = int(routing.predictions[i])
        out.append(Prediction(
            source=source, label=names[label], label_index=label, probability=float(p[label]),
            top_k=_top_k(p, names, top_k), exit_name=config.exit_names[e], exit_index=e,
            entropies=[float(u) for u in routing.entropies[i, :e + 1]], macs=int(exit_macs[e]),
            latency_ms=None,
        ))
    return out


def prediction_row(p: Prediction) -> dict[str, Any]:
    """One flat row (CSV columns; JSON keeps the lists)."""
    row = asdict(p)
    row["correct"] = p.correct
    return row


def _json_row(p: Prediction) -> dict[str, Any]:
    row = prediction_row(p)
    row["source"] = printable_path(p.source)
    return row


def _csv_row(p: Prediction) -> dict[str, Any]:
    """One CSV row. Text cells are ``spreadsheet_safe`` (a cell beginning with ``= + - @``,
    tab or CR gets a leading ``'``); ``top_k`` is a JSON list of ``[label, probability]``
    pairs, so a ``;``, ``:`` or ``,`` inside a label cannot split it."""
    row = prediction_row(p)
    row["source"] = spreadsheet_safe(printable_path(p.source))
    row["label"] = spreadsheet_safe(p.label)
    row["exit_name"] = spreadsheet_safe(p.exit_name)
    row["top_k"] = json.dumps([[name, float(f"{prob:.6f}")] for name, prob in p.top_k], ensure_ascii=False)
    row["entropies"] = ";".join(f"{u:.6f}" for u in p.entropies)
    row["probability"] = f"{p.probability:.6f}"
    row["latency_ms"] = "" if p.latency_ms is None else f"{p.latency_ms:.4f}"
    row["true_label"] = "" if p.true_label is None else spreadsheet_safe(p.true_label)
    row["correct"] = "" if p.correct is None else int(p.correct)
    return row


CSV_COLUMNS = ["source", "label", "label_index", "probability", "top_k", "exit_name", "exit_index",
               "entropies", "macs", "latency_ms", "true_label", "correct"]


def check_output_path(path: str | os.PathLike, what: str = "--out") -> Path:
    """Checks before any work that predictions can be written to ``path``.

    Raises:
        ValueError: for an unknown extension, a directory, or a folder that
            cannot be written.
    """
    path = check_writable_file(path, what)
    if path.suffix.lower() not in PREDICTION_FORMATS:
        raise ValueError(f"{what} {os.fspath(path)!r} must end in .csv or .json.")
    return path


class PredictionWriter:
    """Streams predictions into ``path`` (.csv or .json); the file appears complete or not at all."""

    def __init__(self, path: str | os.PathLike, what: str = "--out"):
        self.path = check_output_path(path, what)
        self.count = 0

    def __enter__(self) -> "PredictionWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        self._file = open(fd, "w", newline="", encoding="utf-8")
        self._json = self.path.suffix.lower() == ".json"
        if self._json:
            self._file.write("[\n")
        else:
            self._csv = csv.DictWriter(self._file, fieldnames=CSV_COLUMNS)
            self._csv.writeheader()
        return self

    def write(self, p: Prediction) -> None:
        if self._json:
            self._file.write((",\n" if self.count else "") + json.dumps(_json_row(p)))
        else:
            self._csv.writerow(_csv_row(p))
        self.count += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self._json:
                self._file.write("\n]\n")
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            if exc_type is None:
                os.chmod(self._tmp, 0o666 & ~current_umask())
                os.replace(self._tmp, self.path)
        finally:
            if os.path.exists(self._tmp):
                os.unlink(self._tmp)


def format_prediction(p: Prediction) -> str:
    """One line for the terminal."""
    top = ", ".join(f"{name} {100 * prob:.1f}%" for name, prob in p.top_k)
    us = "/".join(f"{u:.3f}" for u in p.entropies)
    latency = "" if p.latency_ms is None else f", {p.latency_ms:.2f} ms"
    truth = "" if p.true_label is None else f"  (true: {p.true_label})"
    return f"{printable_path(p.source)}: {top}  [{p.exit_name}, entropy {us}, {p.macs / 1e6:.2f} MMACs{latency}]{truth}"
