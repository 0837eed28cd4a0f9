"""The manifest: the contract between the converter and every runtime.

``manifest.json`` lists the exits in order with their submodel files and
checksums, tensor names, shapes, dtypes and quantisation, MACs, thresholds and
operating points. The converter builds a ``Manifest`` and writes ``to_dict()``;
``load_manifest`` (used by the Python scheduler, mirrored by the Android core's
``Manifest.parse``) reads it back into the same frozen types, checking every key a
runtime reads: each error is a ``ManifestError`` naming the key. The mutations
both runtimes must refuse are listed once, in tests/fixtures/bad_manifests.json.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Mapping

from ravit_keras.data.checks import check_class_names
from ravit_keras.deploy.runtime import fields as f
from ravit_keras.deploy.runtime.calibration_set import CalibrationSet
from ravit_keras.deploy.runtime.fields import ManifestError
from ravit_keras.deploy.runtime.modes import MODES
from ravit_keras.deploy.runtime.policy import BatteryPolicy, OperatingPoint
from ravit_keras.deploy.runtime.quantization import QUANT_RANGES
from ravit_keras.exits.uncertainty import validate_thresholds

__all__ = ["MANIFEST_FILE", "LABELS_FILE", "MANIFEST_FORMAT", "MANIFEST_VERSION", "ManifestError",
           "Manifest", "ExitSpec", "TensorSpec", "ImageSpec", "CalibrationSet", "load_manifest", "submodel_file",
           "sha256"]

MANIFEST_FILE = "manifest.json"
LABELS_FILE = "labels.txt"
MANIFEST_FORMAT = "ravit-tflite"
MANIFEST_VERSION = 1
TENSOR_DTYPES = ("int8", "uint8", "int16", "float32", "float16")

# What every runtime reads; the Android core checks the same keys.
REQUIRED_KEYS = ("exits", "labels", "num_classes", "image", "full_model_macs", "default_thresholds",
                 "quantization", "battery_policy")


def submodel_file(branch: int) -> str:
    """File name of the submodel of 0-based branch ``branch``."""
    return f"branch_{branch + 1}.tflite"


def sha256(data: bytes) -> str:
    """Lower-case hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _omit_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """A signature tensor: shape, dtype and quantisation (scale 0 means a float tensor)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int
    position: int | None = None
    tensor_name: str | None = None

    @classmethod
    def from_dict(cls, name: str, d: Any, key: str) -> "TensorSpec":
        dtype = f.string(f.get(d, "dtype", key), f"{key}.dtype")
        if dtype not in TENSOR_DTYPES:
            raise f.bad(f"{key}.dtype", f"should be one of {TENSOR_DTYPES}, got {dtype!r}")
        shape = tuple(f.positive_int(s, f"{key}.shape[{i}]")
                      for i, s in enumerate(f.array(f.get(d, "shape", key), f"{key}.shape")))
        # Quantisation is read on every exit decision and CLS handoff: present, finite, a
        # positive scale on integer tensors and an integer zero point. (Its range is the
        # file's business: a dtype that disagrees with the file is named when it is opened.)
        scale = f.number(f.get(d, "scale", key), f"{key}.scale")
        zero_point = f.integer(f.get(d, "zero_point", key), f"{key}.zero_point")
        if dtype in QUANT_RANGES:
            if scale <= 0:
                raise f.bad(f"{key}.scale", f"should be > 0 for a {dtype} tensor, got {scale}")
        elif scale < 0:
            raise f.bad(f"{key}.scale", f"should be >= 0, got {scale}")
        position = d.get("position")
        return cls(name=name, shape=shape, dtype=dtype, scale=scale, zero_point=zero_point,
                   position=None if position is None else f.integer(position, f"{key}.position"),
                   tensor_name=None if d.get("tensor_name") is None
                   else f.string(d["tensor_name"], f"{key}.tensor_name"))

    def to_dict(self) -> dict[str, Any]:
        return _omit_none({"position": self.position, "tensor_name": self.tensor_name, "shape": list(self.shape),
                           "dtype": self.dtype, "scale": self.scale, "zero_point": self.zero_point})

    def as_dict(self) -> dict[str, Any]:
        """``to_dict()``: the form ``quantization.requantize`` takes."""
        return self.to_dict()


def _tensors(d: Any, key: str) -> dict[str, TensorSpec]:
    if not isinstance(d, dict):
        raise f.bad(key, f"should be an object, got {d!r}")
    return {n: TensorSpec.from_dict(n, t, f"{key}.{n}") for n, t in d.items()}


def _relative_file(value: Any, key: str) -> str:
    """A plain relative path inside the folder: the runtimes open ``folder / file``."""
    name = f.string(value, key)
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if (not name or posix.is_absolute() or windows.is_absolute() or windows.drive
            or ".." in posix.parts or ".." in windows.parts):
        raise f.bad(key, f"should be a file name inside the model folder, got {name!r}")
    return name


@dataclasses.dataclass(frozen=True)
class ExitSpec:
    """One exit: its submodel file and checksum, signature tensors and (cumulative) MACs."""

    name: str
    file: str
    sha256: str
    inputs: Mapping[str, TensorSpec]
    outputs: Mapping[str, TensorSpec]
    cumulative_macs: int
    branch: int | None = None
    size_bytes: int | None = None
    branch_image_size: tuple[int, ...] | None = None
    tokens: int | None = None
    layers: int | None = None
    macs: int | None = None

    @classmethod
    def from_dict(cls, d: Any, k: int) -> "ExitSpec":
        key = f"exits[{k}]"
        if not isinstance(d, dict):
            raise f.bad(key, f"should be an object, got {d!r}")
        for needed in ("name", "file", "sha256", "inputs", "outputs", "cumulative_macs"):
            if d.get(needed) is None:
                raise f.bad(f"{key}.{needed}", f"exit {k} has no {needed!r}")
        opt = lambda name, read: None if d.get(name) is None else read(d[name], f"{key}.{name}")  # noqa: E731
        size = opt("branch_image_size", f.array)
        return cls(
            name=f.string(d["name"], f"{key}.name"),
            file=_relative_file(d["file"], f"{key}.file"),
            sha256=f.string(d["sha256"], f"{key}.sha256"),
            inputs=_tensors(d["inputs"], f"{key}.inputs"),
            outputs=_tensors(d["outputs"], f"{key}.outputs"),
            cumulative_macs=f.positive_int(d["cumulative_macs"], f"{key}.cumulative_macs"),
            branch=opt("branch", f.positive_int), size_bytes=opt("size_bytes", f.integer),
            branch_image_size=None if size is None else tuple(
                f.positive_int(s, f"{key}.branch_image_size") for s in size),
            tokens=opt("tokens", f.integer), layers=opt("layers", f.integer), macs=opt("macs", f.positive_int),
        )

    def to_dict(self) -> dict[str, Any]:
        return _omit_none({
            "name": self.name, "branch": self.branch, "file": self.file, "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "branch_image_size": None if self.branch_image_size is None else list(self.branch_image_size),
            "tokens": self.tokens, "layers": self.layers,
            "inputs": {n: t.to_dict() for n, t in self.inputs.items()},
            "outputs": {n: t.to_dict() for n, t in self.outputs.items()},
            "macs": self.macs, "cumulative_macs": self.cumulative_macs,
        })


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    """The full-resolution image every submodel takes."""

    height: int
    width: int
    channels: int | None = 3
    layout: str | None = "NHWC"
    color: str | None = "RGB"
    dtype: str | None = None
    value_range: tuple[float, ...] | None = (0, 255)

    @classmethod
    def from_dict(cls, d: Any) -> "ImageSpec":
        get = lambda k: d.get(k) if isinstance(d, dict) else None  # noqa: E731
        rng = get("value_range")
        return cls(
            height=f.positive_int(f.get(d, "height", "image"), "image.height"),
            width=f.positive_int(f.get(d, "width", "image"), "image.width"),
            channels=None if get("channels") is None else f.positive_int(d["channels"], "image.channels"),
            layout=None if get("layout") is None else f.string(d["layout"], "image.layout"),
            color=None if get("color") is None else f.string(d["color"], "image.color"),
            dtype=None if get("dtype") is None else f.string(d["dtype"], "image.dtype"),
            value_range=None if rng is None else f.numbers(rng, "image.value_range"),
        )

    def to_dict(self) -> dict[str, Any]:
        return _omit_none({"height": self.height, "width": self.width, "channels": self.channels,
                           "layout": self.layout, "color": self.color, "dtype": self.dtype,
                           "value_range": None if self.value_range is None else list(self.value_range)})


@dataclasses.dataclass(frozen=True)
class Manifest:
    """A validated manifest. ``to_dict()`` is the JSON the converter writes, key for key."""

    quantization: str
    num_classes: int
    labels: tuple[str, ...]
    image: ImageSpec
    full_model_macs: int
    exits: tuple[ExitSpec, ...]
    default_thresholds: tuple[float, ...]
    battery_policy: BatteryPolicy
    operating_points: tuple[OperatingPoint, ...] | None = ()
    model: Mapping[str, Any] | None = None
    labels_file: str | None = None
    entropy: str | None = None
    thresholds_calibrated_on: str | None = None
    calibration: CalibrationSet | None = None  # The same images as fields (``calibration_set``).
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # Keys this runtime does not read.
    format: str = MANIFEST_FORMAT
    format_version: int = MANIFEST_VERSION

    def to_dict(self) -> dict[str, Any]:
        d = _omit_none({
            "format": self.format, "format_version": self.format_version, "quantization": self.quantization,
            "model": None if self.model is None else dict(self.model), "num_classes": self.num_classes,
            "labels_file": self.labels_file, "labels": list(self.labels), "image": self.image.to_dict(),
            "entropy": self.entropy, "full_model_macs": self.full_model_macs,
            "exits": [e.to_dict() for e in self.exits],
            "default_thresholds": list(self.default_thresholds),
            "operating_points": None if self.operating_points is None
            else [p.to_dict() for p in self.operating_points],
            "battery_policy": self.battery_policy.to_dict(),
            "thresholds_calibrated_on": self.thresholds_calibrated_on,
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
        })
        d.update(self.extra)
        return d

    def dumps(self) -> str:
        """The text of ``manifest.json``."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @property
    def exit_names(self) -> list[str]:
        return [e.name for e in self.exits]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Manifest":
        """Parses and validates manifest JSON (no files are read); errors name the key."""
        if d.get("format") != MANIFEST_FORMAT:
            raise ManifestError(f"is not a {MANIFEST_FORMAT} manifest (format={d.get('format')!r}).")
        version = d.get("format_version")
        if type(version) is not int or version != MANIFEST_VERSION:
            raise ManifestError(f"format_version {version!r} ({type(version).__name__}); this runtime reads "
                                f"the integer {MANIFEST_VERSION}.")
        missing = [k for k in REQUIRED_KEYS if d.get(k) is None]
        if missing:
            raise ManifestError(f"has no {', '.join(repr(k) for k in missing)}.")
        exits_json = d["exits"]
        if not isinstance(exits_json, list) or not exits_json:
            raise f.bad("exits", "lists no exits")
        image = ImageSpec.from_dict(d["image"])
        labels = tuple(f.string(x, f"labels[{i}]") for i, x in enumerate(f.array(d["labels"], "labels")))
        try:  # A runtime shows them one per line (labels.txt, Android's list).
            check_class_names(labels, "labels")
        except ValueError as e:
            raise ManifestError(str(e)) from None
        num_classes = f.integer(d["num_classes"], "num_classes")
        if len(labels) != num_classes or num_classes < 2:
            raise f.bad("num_classes", f"{len(labels)} labels for num_classes={num_classes}")
        quantization = f.string(d["quantization"], "quantization")
        if quantization not in MODES:
            raise f.bad("quantization", f"should be one of {MODES}, got {quantization!r}")
        full = f.positive_int(d["full_model_macs"], "full_model_macs")
        exits = tuple(ExitSpec.from_dict(e, k) for k, e in enumerate(exits_json))
        _check_exits(exits, num_classes, image, full)
        n = len(exits)
        try:
            defaults = tuple(float(t) for t in validate_thresholds(d["default_thresholds"], n, num_classes))
        except ValueError as e:
            raise ManifestError(f"default_thresholds are invalid: {e}") from None
        points_json = d.get("operating_points")
        points = None if points_json is None else tuple(
            OperatingPoint.from_dict(p, f"operating_points[{i}]", n, num_classes)
            for i, p in enumerate(f.array(points_json, "operating_points")))
        known = {fld.name for fld in dataclasses.fields(cls)} - {"extra"}
        return cls(
            quantization=quantization, num_classes=num_classes, labels=labels, image=image,
            full_model_macs=full, exits=exits, default_thresholds=defaults,
            battery_policy=BatteryPolicy.from_dict(d["battery_policy"], n, num_classes),
            operating_points=points, model=d.get("model"),
            labels_file=None if d.get("labels_file") is None else f.string(d["labels_file"], "labels_file"),
            entropy=d.get("entropy"), thresholds_calibrated_on=d.get("thresholds_calibrated_on"),
            calibration=None if d.get("calibration") is None else CalibrationSet.from_dict(d["calibration"]),
            extra={k: v for k, v in d.items() if k not in known},
        )


def _check_exits(exits: tuple[ExitSpec, ...], num_classes: int, image: ImageSpec, full: int) -> None:
    """Consistency between exits: unique and in order, tensors that chain, rising MACs."""
    for k, e in enumerate(exits):
        key = f"exits[{k}]"
        needed_in = {"image"} if k == 0 else {"image", "cls_in"}
        if set(e.inputs) != needed_in or set(e.outputs) != {"logits", "cls_out"}:
            raise f.bad(f"{key}.inputs", f"exit {e.name} has inputs {sorted(e.inputs)} and outputs "
                        f"{sorted(e.outputs)}; expected {sorted(needed_in)} and ['cls_out', 'logits']")
        if list(e.outputs["logits"].shape) != [1, num_classes]:
            raise f.bad(f"{key}.outputs.logits.shape", f"exit {e.name} logits shape "
                        f"{list(e.outputs['logits'].shape)} does not match num_classes={num_classes}")
        want = (1, image.height, image.width, image.channels or 3)
        if e.inputs["image"].shape != want:
            raise f.bad("image", f"{image.height}x{image.width}x{image.channels or 3} does not fit exit {e.name}: "
                        f"tensor 'image' does not match the manifest: shape {list(e.inputs['image'].shape)}")
        if k == 0:
            continue
        prev = exits[k - 1]
        if e.name in {x.name for x in exits[:k]} or e.file in {x.file for x in exits[:k]}:
            raise f.bad(f"{key}.name", f"exit {e.name} ({e.file}) is listed twice")
        if e.branch is not None and prev.branch is not None and e.branch <= prev.branch:
            raise f.bad(f"{key}.branch", f"branch {e.branch} after branch {prev.branch}: exits must be in order")
        if e.cumulative_macs <= prev.cumulative_macs:
            raise f.bad(f"{key}.cumulative_macs", f"{e.cumulative_macs} is not above the previous exit's "
                        f"{prev.cumulative_macs}: cumulative MACs rise strictly along the exits")
        if prev.outputs["cls_out"].shape != e.inputs["cls_in"].shape:
            raise f.bad(f"{key}.inputs.cls_in", f"cls_out of {prev.name} {list(prev.outputs['cls_out'].shape)} "
                        f"does not fit cls_in of {e.name} {list(e.inputs['cls_in'].shape)}")
    del full  # Only its sign is checked: a model may end before its last branch.


def load_manifest(folder: str | Path, verify_checksums: bool = True) -> Manifest:
    """Reads and validates ``folder/manifest.json`` against the files beside it.

    Raises:
        FileNotFoundError: if the folder or manifest is missing.
        ManifestError: if the manifest is malformed (naming the key), a submodel is
            missing or its checksum differs.
    """
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    if not path.exists():
        raise FileNotFoundError(f"No {MANIFEST_FILE} in {folder}: not a converted RAViT folder.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{path} holds a JSON {type(data).__name__}, not an object.")
    try:
        manifest = Manifest.from_dict(data)
    except ManifestError as e:
        raise ManifestError(f"{path}: {e}") from None
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as e:
        # A field of the wrong type deep inside: name it rather than crash.
        raise ManifestError(f"{path} is malformed ({type(e).__name__}: {e}).") from None
    root = folder.resolve()
    for e in manifest.exits:
        file = folder / e.file
        if root not in (folder / e.file).resolve().parents:  # A link out of the folder.
            raise ManifestError(f"{path}: exits[{manifest.exits.index(e)}].file {e.file!r} leaves the folder.")
        if not file.exists():
            raise ManifestError(f"Submodel {file} listed in the manifest is missing.")
        if verify_checksums:
            digest = hashlib.sha256(file.read_bytes()).hexdigest()
            if digest != e.sha256:
                raise ManifestError(
                    f"Checksum of {file} ({digest[:12]}...) differs from the manifest "
                    f"({e.sha256[:12]}...): the file was changed or belongs to another conversion."
                )
    return manifest

