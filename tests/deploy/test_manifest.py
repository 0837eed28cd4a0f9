"""Manifest validation (``ravit_keras.deploy.runtime.manifest``): every malformed manifest is refused clearly.

Uses the session fixtures of conftest.py (one trained tiny RAViT converted once to
int8 and once to float32); tests that corrupt a folder work on a copy.
"""

import copy
import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from ravit_keras.deploy.runtime.manifest import ManifestError, load_manifest
from ravit_keras.deploy.runtime.scheduler import RAViTScheduler

# Manifest errors ---------------------------------------------------------------------


@pytest.fixture
def int8_copy(tflite_int8_folder, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tflite_int8_folder, folder)
    return folder


def _edit_manifest(folder, edit):
    path = Path(folder) / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def test_truncated_submodel_is_rejected_by_the_interpreter(int8_copy):
    path = int8_copy / "branch_2.tflite"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])

    def fix_checksum(m):
        m["exits"][1]["sha256"] = hashlib.sha256(data[: len(data) // 2]).hexdigest()

    _edit_manifest(int8_copy, fix_checksum)
    load_manifest(int8_copy)  # The checksum matches: only the interpreter can tell.
    with pytest.raises(ManifestError, match=r"branch_2\.tflite is not a loadable TFLite model"):
        RAViTScheduler(int8_copy)


def test_corrupt_submodel_fails_the_checksum(int8_copy):
    path = int8_copy / "branch_1.tflite"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=r"Checksum of .*branch_1\.tflite .*differs from the manifest"):
        load_manifest(int8_copy)
    with pytest.raises(ManifestError, match="Checksum"):
        RAViTScheduler(int8_copy)


@pytest.mark.parametrize("exit_index, io, tensor, key, value, message", [
    (0, "outputs", "logits", "scale", 0.5, r"tensor 'logits' does not match the manifest: quantisation"),
    (0, "outputs", "cls_out", "zero_point", 99, r"tensor 'cls_out' does not match the manifest: quantisation"),
    (1, "inputs", "cls_in", "scale", 1.0, r"tensor 'cls_in' does not match the manifest: quantisation"),
    (0, "inputs", "image", "shape", [1, 16, 16, 3], r"tensor 'image' does not match the manifest: shape"),
    (1, "outputs", "logits", "dtype", "uint8", r"tensor 'logits' does not match the manifest: dtype"),
])
def test_tensor_spec_mismatch_names_the_tensor(int8_copy, exit_index, io, tensor, key, value, message):
    _edit_manifest(int8_copy, lambda m: m["exits"][exit_index][io][tensor].__setitem__(key, value))
    with pytest.raises(ManifestError, match=message):
        RAViTScheduler(int8_copy)


def test_cls_shape_mismatch_between_exits(int8_copy):
    _edit_manifest(int8_copy, lambda m: m["exits"][1]["inputs"]["cls_in"].__setitem__("shape", [1, 7]))
    with pytest.raises(ManifestError, match="cls_in of exit_2"):
        load_manifest(int8_copy)


def test_missing_submodel(int8_copy):
    (int8_copy / "branch_2.tflite").unlink()
    with pytest.raises(ManifestError, match=r"branch_2\.tflite listed in the manifest is missing"):
        RAViTScheduler(int8_copy)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.__setitem__("format", "something-else"), "is not a ravit-tflite manifest"),
    (lambda m: m.__setitem__("format_version", 2), r"format_version 2 \(int\); this runtime reads the integer 1"),
    (lambda m: m.pop("format_version"), "format_version None"),
    (lambda m: m.__setitem__("exits", []), "lists no exits"),
    (lambda m: m.__setitem__("labels", m["labels"][:3]), "3 labels for num_classes=10"),
    (lambda m: m["exits"][0].pop("sha256"), "exit 0 has no 'sha256'"),
    (lambda m: m["exits"][1]["inputs"].pop("cls_in"), "expected \\['cls_in', 'image'\\]"),
])
def test_malformed_manifest(int8_copy, edit, message):
    _edit_manifest(int8_copy, edit)
    with pytest.raises(ManifestError, match=message):
        load_manifest(int8_copy)
    with pytest.raises(ValueError, match=message):  # ManifestError is a ValueError.
        RAViTScheduler(int8_copy)


def test_invalid_default_thresholds_in_manifest(int8_copy):
    _edit_manifest(int8_copy, lambda m: m.__setitem__("default_thresholds", [-1.0]))
    with pytest.raises(ManifestError, match=r"manifest\.json.*negative"):
        load_manifest(int8_copy)


def test_invalid_json_and_missing_manifest(int8_copy, tmp_path):
    (int8_copy / "manifest.json").write_text('{"format": "ravit-tflite", "exits": [')
    with pytest.raises(ManifestError, match="is not valid JSON"):
        RAViTScheduler(int8_copy)
    with pytest.raises(FileNotFoundError, match="No manifest.json"):
        RAViTScheduler(tmp_path / "nowhere")


# The bad manifests shared with the Android core's ManifestTest -------------------------

REPO = Path(__file__).resolve().parents[2]
BAD_MANIFESTS = json.loads((REPO / "tests/fixtures/bad_manifests.json").read_text())["cases"]
GOLDEN = REPO / "android_demo/core/src/test/resources/golden"


def mutate(manifest: dict, case: dict) -> dict:
    """``manifest`` with ``case``'s mutation applied (the format of bad_manifests.json)."""
    m = copy.deepcopy(manifest)

    def walk(path):
        *parents, last = path.split(".")
        node = m
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        return node, int(last) if isinstance(node, list) else last

    def value(v):
        return float(v["number"]) if isinstance(v, dict) and set(v) == {"number"} else v

    for path, v in case.get("set", {}).items():
        node, key = walk(path)
        node[key] = value(v)
    for path in case.get("delete", []):
        node, key = walk(path)
        del node[key]
    for path in case.get("append_copy", []):
        node, key = walk(path)
        node.append(copy.deepcopy(node[key]))
    return m


def test_bad_manifest_cases_are_well_formed():
    manifest = json.loads((GOLDEN / "manifest.json").read_text())
    assert len(BAD_MANIFESTS) >= 20 and len({c["name"] for c in BAD_MANIFESTS}) == len(BAD_MANIFESTS)
    for case in BAD_MANIFESTS:
        assert mutate(manifest, case) != manifest, case["name"]


@pytest.mark.parametrize("case", BAD_MANIFESTS, ids=[c["name"] for c in BAD_MANIFESTS])
def test_bad_manifest_is_refused_naming_the_key(case, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(GOLDEN, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps(mutate(manifest, case)))
    with pytest.raises(ManifestError) as e:
        load_manifest(folder)
    assert case["key"] in str(e.value), f"{case['name']}: {e.value}"


def test_good_manifest_round_trips_byte_for_byte():
    # to_dict() writes what the converter wrote: every key, in order, every number as written.
    for folder in (GOLDEN, REPO / "android_demo/app/default_model"):
        assert load_manifest(folder).dumps() == (folder / "manifest.json").read_text()


def test_operating_point_intervals_are_optional_and_kept(tmp_path):
    # Written by converters since issue 25; a manifest without them (older converters') loads as before.
    folder = tmp_path / "model"
    shutil.copytree(GOLDEN, folder)
    _edit_manifest(folder, lambda m: [p.pop("interval", None) for p in m["operating_points"]])
    before = load_manifest(folder)
    assert before.operating_points and all(p.interval is None for p in before.operating_points)
    interval = {"confidence": 0.95, "images": 150, "accuracy": [0.78, 0.9], "avg_macs": [8.1e5, 9.9e5],
                "mac_fraction": [0.74, 0.9], "method": "accuracy: Wilson score; MACs: bootstrap"}
    _edit_manifest(folder, lambda m: [p.setdefault("interval", interval) for p in m["operating_points"]])
    after = load_manifest(folder)
    assert [p.interval for p in after.operating_points] == [interval] * len(before.operating_points)
    assert json.loads(after.dumps())["operating_points"][0]["interval"] == interval
    # Nothing the runtime decides on changes.
    strip = [dataclasses.replace(p, interval=None) for p in after.operating_points]
    assert strip == list(before.operating_points)
