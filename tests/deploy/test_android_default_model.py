"""The model the Android app ships by default: the preset ravit_1-3_cifar10 as int8 submodels.

``android_demo/app/default_model/`` is what Gradle copies into the APK's assets unless
``ravitModelDir`` points elsewhere. It must load in the scheduler (which checks every
submodel against the manifest and its SHA-256), be the int8 mode the phone runs, carry
the preset's labels, and, with ``../shared/data``, still classify CIFAR-10.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from ravit_keras import presets
from ravit_keras.deploy.runtime.scheduler import RAViTScheduler
from ravit_keras.runs import RECORD_FILE
from tests.test_presets import cifar10_test_images

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO / "android_demo" / "app" / "default_model"
PRESET = "ravit_1-3_cifar10"


def test_gradle_ships_the_default_model():
    props = (REPO / "android_demo" / "app" / "gradle.properties").read_text()
    assert "\nravitModelDir=default_model\n" in props
    assert sorted(p.name for p in DEFAULT_MODEL.iterdir()) == [
        "branch_1.tflite", "branch_2.tflite", "labels.txt", "manifest.json"]


def test_default_model_is_the_preset_as_int8():
    manifest = json.loads((DEFAULT_MODEL / "manifest.json").read_text())
    record = json.loads((presets.preset_dir(PRESET) / RECORD_FILE).read_text())
    assert manifest["quantization"] == "int8"
    assert manifest["labels"] == record["class_names"]
    assert (DEFAULT_MODEL / "labels.txt").read_text().split("\n")[:10] == record["class_names"]
    sched = RAViTScheduler(DEFAULT_MODEL)  # Checks hashes, shapes, dtypes and quantisation.
    assert sched.image_dtype == "uint8" and len(sched.submodels) == 2


def test_default_model_is_the_same_conversion_as_the_presets_int8_folder():
    # scripts/ship_presets.py converts the preset once and copies it here: byte for byte.
    shipped = presets.shipped_submodels(presets.preset_dir(PRESET), "int8")
    assert sorted(p.name for p in shipped.iterdir()) == sorted(p.name for p in DEFAULT_MODEL.iterdir())
    for f in shipped.iterdir():
        assert (DEFAULT_MODEL / f.name).read_bytes() == f.read_bytes(), f.name


@pytest.mark.real_data
def test_default_model_classifies_cifar10():
    x, y = cifar10_test_images(500)
    sched = RAViTScheduler(DEFAULT_MODEL)
    report = sched.evaluate(x, y, thresholds=0.0)
    card = presets.preset_card(PRESET)
    # int8 against the float preset on the same 500 images: within 2 points.
    assert report["accuracy"] == pytest.approx(card["check"]["top1_last_exit"], abs=0.02)
    assert np.isfinite(report["latency_ms"]["mean"])
