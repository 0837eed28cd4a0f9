"""The second golden fixture: the golden model with ReLU MLPs (issue 26).

``android_demo/core/src/test/resources/golden_relu`` is what the Java
``GoldenReluParityTest`` replays (written by ``python -m ravit_keras.deploy.export.golden
--mlp-activation relu --out ...``). As for the GELU fixture (``test_golden.py``): the
committed submodels reproduce every recorded tensor and decision under LiteRT (fast),
and regenerating gives the same fixture (slow). Here also: the fixture really is a ReLU
model whose int8 submodels fuse the activation, and the Java scheduler over the real
LiteRT runtime (``android_demo/jvm``'s ``ParityDump``) runs its submodels exactly as the
Python one does.
"""

import base64
import json

import numpy as np
import pytest

from ravit_keras.deploy.export import golden
from tests.deploy.test_android_parity import java_classpath  # noqa: F401 (a fixture used below)
from tests.deploy.test_golden import (
    REGENERATED_FLOAT_REL_TOL,
    REPO,
    _array,
    _first_difference,
    _load,
    _without_checksums,
)
from tests.deploy.test_mlp_activation import _hidden_layers

FIXTURE = REPO / golden.RELU_OUT
GELU_FIXTURE = REPO / golden.DEFAULT_OUT
HOW_TO_REGENERATE = (
    f"If the export graph or the scheduler changed on purpose, regenerate the fixture with "
    f"`{golden.RELU_REGENERATE_COMMAND}` (from the repository root), rerun "
    f"`bash android_demo/core/run_tests.sh`, and commit the folder.")


@pytest.fixture(scope="module")
def committed():
    if not (FIXTURE / golden.GOLDEN_FILE).exists():
        pytest.fail(f"No ReLU golden fixture at {FIXTURE}. {HOW_TO_REGENERATE}")
    return _load(FIXTURE)


def _images(doc):
    return [np.frombuffer(base64.b64decode(im["pixels_base64"]), np.uint8).reshape(doc["image_shape"])
            for im in doc["images"]]


def test_relu_fixture_is_a_small_int8_relu_model(committed):
    doc, manifest = committed
    assert doc["regenerate"] == golden.RELU_REGENERATE_COMMAND
    assert manifest["model"]["mlp_activation"] == "relu"
    assert manifest["quantization"] == "int8"
    gelu_manifest = json.loads((GELU_FIXTURE / "manifest.json").read_text())
    assert "mlp_activation" not in gelu_manifest["model"]  # The GELU fixture is unchanged.
    assert {k: v for k, v in manifest["model"].items() if k != "mlp_activation"} == gelu_manifest["model"]
    size = sum(f.stat().st_size for f in FIXTURE.iterdir())
    assert size < 300_000, f"The ReLU golden fixture is {size / 1e3:.0f} kB; keep it under 300 kB."
    assert len(doc["images"]) == golden.NUM_TEST_IMAGES
    outcomes = [{d["exit_index"] for d in s["decisions"]} for s in doc["threshold_settings"]]
    assert any(len(o) == 2 for o in outcomes), "no threshold setting mixes early and late exits"
    for e in manifest["exits"]:
        tflite = (FIXTURE / e["file"]).read_bytes()
        hidden = _hidden_layers(tflite)
        assert hidden and all(fc["activation"] == "RELU" and fc["consumers"] == ["FULLY_CONNECTED"]
                              for fc in hidden), (e["file"], hidden)


def test_relu_fixture_reproduces_with_litert(committed):
    from ravit_keras import exits
    from ravit_keras.deploy.runtime.scheduler import RAViTScheduler

    doc, _ = committed
    scheduler = RAViTScheduler(FIXTURE, num_threads=1)
    images = _images(doc)
    for i, (image, record) in enumerate(zip(images, doc["images"])):
        logits, raw = scheduler.all_exit_logits(image)
        assert len(raw) == len(record["exits"])
        for k, (got_logits, got, want) in enumerate(zip(logits, raw, record["exits"])):
            for name, tensor in {**{f"in_{n}": t for n, t in want["inputs"].items()},
                                 **{f"out_{n}": t for n, t in want["outputs"].items()}}.items():
                np.testing.assert_array_equal(got[name], _array(tensor),
                                              err_msg=f"image {i} exit {k} {name}. {HOW_TO_REGENERATE}")
            assert float(exits.entropy(got_logits[None])[0]) == pytest.approx(want["entropy"], abs=1e-9)
    for setting in doc["threshold_settings"]:
        for i, (image, want) in enumerate(zip(images, setting["decisions"])):
            c = scheduler.classify(image, setting["thresholds"])
            assert (c.exit_index, c.label, c.label_name, c.macs) == (
                want["exit_index"], want["label"], want["label_name"], want["macs"]), (setting["name"], i)


@pytest.mark.slow
def test_regenerated_relu_fixture_equals_committed(committed, tmp_path):
    doc, manifest = committed
    out = tmp_path / "golden_relu"
    golden.export_golden(out, progress=None, mlp_activation="relu")
    new_doc, new_manifest = _load(out)
    diff = _first_difference(_without_checksums(manifest), _without_checksums(new_manifest),
                             rel_tol=REGENERATED_FLOAT_REL_TOL)
    assert diff is None, f"The ReLU fixture's manifest differs at {diff}. {HOW_TO_REGENERATE}"
    diff = _first_difference(doc, new_doc, rel_tol=REGENERATED_FLOAT_REL_TOL)
    assert diff is None, f"The ReLU golden vectors differ at {diff}. {HOW_TO_REGENERATE}"


def test_java_scheduler_runs_the_relu_submodels_like_python(committed, java_classpath, tmp_path):  # noqa: F811
    """The Java core over LiteRT's C API (XNNPACK) on the fixture's ReLU submodels: every
    output and requantised CLS byte for byte, every exit/label/MAC count exactly, as
    ``test_android_parity`` checks for the GELU model. Skipped without a JDK/JNA/libLiteRt."""
    from ravit_keras.data import load_split
    from ravit_keras.deploy.runtime.scheduler import RAViTScheduler
    from tests.deploy import test_android_parity as parity

    images, _ = load_split("generated", "test", num_examples=256, num_classes=golden.NUM_CLASSES).as_numpy()
    images = np.concatenate([np.stack(_images(committed[0])), images])
    settings = parity.threshold_settings(RAViTScheduler(FIXTURE), images)
    py = parity.python_dump(FIXTURE, images, settings)
    assert len({d[0] for row in py[1] for d in row}) > 1, "both exits should answer somewhere"
    java = parity.java_dump(java_classpath, FIXTURE, images, settings, tmp_path)
    problems = parity.compare(py, java, 2)
    assert not problems, "Java and Python differ on the ReLU submodels:\n" + "\n".join(problems)
