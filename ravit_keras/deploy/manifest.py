"""The manifest: the contract between the converter and every runtime.

``manifest.json`` lists the exits in order with their submodel files and
checksums, tensor names, shapes, dtypes and quantisation, MACs, thresholds and
operating points. The converter writes it; ``load_manifest`` (used by the Python
scheduler, mirrored by the Android core) reads and validates it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ravit_keras.exits.uncertainty import validate_thresholds

MANIFEST_FILE = "manifest.json"
LABELS_FILE = "labels.txt"
MANIFEST_FORMAT = "ravit-tflite"
MANIFEST_VERSION = 1


def submodel_file(branch: int) -> str:
    """File name of the submodel of 0-based branch ``branch``."""
    return f"branch_{branch + 1}.tflite"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ManifestError(ValueError):
    """A manifest that is malformed or does not match its submodels."""


# What every runtime reads; the Android core checks the same keys.
REQUIRED_KEYS = ("exits", "labels", "num_classes", "image", "full_model_macs", "default_thresholds")


def load_manifest(folder: str | Path, verify_checksums: bool = True) -> dict[str, Any]:
    """Reads and validates ``folder/manifest.json`` against the files beside it.

    Raises:
        FileNotFoundError: if the folder or manifest is missing.
        ManifestError: if the manifest is malformed, a submodel is missing or its
            checksum differs.
    """
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    if not path.exists():
        raise FileNotFoundError(f"No {MANIFEST_FILE} in {folder}: not a converted RAViT folder.")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(manifest, dict):
        raise ManifestError(f"{path} holds a JSON {type(manifest).__name__}, not an object.")
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ManifestError(f"{path} is not a {MANIFEST_FORMAT} manifest (format={manifest.get('format')!r}).")
    version = manifest.get("format_version")
    if type(version) is not int or version != MANIFEST_VERSION:
        raise ManifestError(
            f"{path} has format_version {version!r} ({type(version).__name__}); this runtime reads "
            f"the integer {MANIFEST_VERSION}."
        )
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise ManifestError(f"{path} has no {', '.join(repr(k) for k in missing)}.")
    try:
        return _validate(manifest, folder, path, verify_checksums)
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as e:
        if isinstance(e, ManifestError):
            raise
        # A field of the wrong type deep inside: name it rather than crash.
        raise ManifestError(f"{path} is malformed ({type(e).__name__}: {e}).") from None


def _validate(manifest: dict[str, Any], folder: Path, path: Path, verify_checksums: bool) -> dict[str, Any]:
    exits = manifest.get("exits")
    if not exits or not isinstance(exits, list):
        raise ManifestError(f"{path} lists no exits.")
    image = manifest["image"]
    if not isinstance(image, dict) or not all(isinstance(image.get(k), int) for k in ("height", "width")):
        raise ManifestError(f"{path}: 'image' must give the integer height and width, got {image!r}.")
    labels = manifest.get("labels", [])
    if len(labels) != manifest.get("num_classes"):
        raise ManifestError(f"{path}: {len(labels)} labels for num_classes={manifest.get('num_classes')}.")
    for k, e in enumerate(exits):
        for key in ("name", "file", "sha256", "inputs", "outputs", "cumulative_macs"):
            if key not in e:
                raise ManifestError(f"{path}: exit {k} has no {key!r}.")
        needed_in = {"image"} if k == 0 else {"image", "cls_in"}
        if set(e["inputs"]) != needed_in or set(e["outputs"]) != {"logits", "cls_out"}:
            raise ManifestError(
                f"{path}: exit {e['name']} has inputs {sorted(e['inputs'])} and outputs "
                f"{sorted(e['outputs'])}; expected {sorted(needed_in)} and ['cls_out', 'logits']."
            )
        logits_shape = e["outputs"]["logits"].get("shape")
        if logits_shape != [1, manifest.get("num_classes")]:
            raise ManifestError(
                f"{path}: exit {e['name']} logits shape {logits_shape} does not match "
                f"num_classes={manifest.get('num_classes')}."
            )
        file = folder / e["file"]
        if not file.exists():
            raise ManifestError(f"Submodel {file} listed in the manifest is missing.")
        if verify_checksums:
            digest = hashlib.sha256(file.read_bytes()).hexdigest()
            if digest != e["sha256"]:
                raise ManifestError(
                    f"Checksum of {file} ({digest[:12]}...) differs from the manifest "
                    f"({e['sha256'][:12]}...): the file was changed or belongs to another conversion."
                )
        if k > 0:
            produced, consumed = exits[k - 1]["outputs"]["cls_out"], e["inputs"]["cls_in"]
            if produced["shape"] != consumed["shape"]:
                raise ManifestError(
                    f"{path}: cls_out of {exits[k - 1]['name']} {produced['shape']} does not fit "
                    f"cls_in of {e['name']} {consumed['shape']}."
                )
    try:
        validate_thresholds(manifest.get("default_thresholds", 0.0), len(exits), len(labels))
    except ValueError as e:
        raise ManifestError(f"{path}: default_thresholds are invalid: {e}") from None
    return manifest
