"""Golden vectors shared with the Android core (``ravit_keras.deploy.export.golden``).

The committed fixture ``android_demo/core/src/test/resources/golden`` is what
the Java ``GoldenParityTest`` replays. These tests keep it honest:

* ``test_fixture_reproduces_with_litert`` (fast): the committed submodels, run
  by the Python scheduler over the real LiteRT interpreter, give exactly the
  recorded raw outputs, entropies and decisions;
* ``test_regenerated_fixture_equals_committed`` (slow): regenerating from the
  current code gives the same fixture, so a change of the export graph cannot
  leave the Java test checking stale numbers.
"""

import base64
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from ravit_keras.deploy import golden

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / golden.DEFAULT_OUT
HOW_TO_REGENERATE = (
    f"If the export graph or the scheduler changed on purpose, regenerate the fixture "
    f"with `{golden.REGENERATE_COMMAND}` (from the repository root), rerun "
    f"`bash android_demo/core/run_tests.sh`, and commit the folder."
)


def _load(folder: Path) -> tuple[dict, dict]:
    return (json.loads((folder / golden.GOLDEN_FILE).read_text()),
            json.loads((folder / "manifest.json").read_text()))


def _first_difference(a, b, path="$", rel_tol=0.0):
    """JSON path of the first place ``a`` and ``b`` differ, with both values; None if equal.

    Two floats are equal when within ``rel_tol`` of each other (relative); every
    other value (ints, strings, lengths, keys) must match exactly.
    """
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                return f"{path}.{key}: present only in the {'committed' if key in a else 'regenerated'} fixture"
            diff = _first_difference(a[key], b[key], f"{path}.{key}", rel_tol)
            if diff:
                return diff
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} entries committed, {len(b)} regenerated"
        for i, (x, y) in enumerate(zip(a, b)):
            diff = _first_difference(x, y, f"{path}[{i}]", rel_tol)
            if diff:
                return diff
        return None
    if isinstance(a, float) and isinstance(b, float):
        if (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=rel_tol, abs_tol=rel_tol * 1e-6):
            return None
    elif a == b:
        return None
    return f"{path}: committed {str(a)[:80]!r}, regenerated {str(b)[:80]!r}"


def test_first_difference_tolerates_float_rounding_only():
    committed = {"scale": 0.06589977443218231, "q": [1, -3], "name": "exit_1"}
    assert _first_difference(committed, {**committed, "scale": 0.0658998191356659}, rel_tol=1e-4) is None
    assert _first_difference(committed, {**committed, "scale": 0.0658998191356659}) is not None
    assert "$.scale" in _first_difference(committed, {**committed, "scale": 0.066}, rel_tol=1e-4)
    assert "$.q[1]" in _first_difference(committed, {**committed, "q": [1, -2]}, rel_tol=1e-4)
    assert "$.name" in _first_difference(committed, {**committed, "name": "exit_2"}, rel_tol=1e-4)


# Regenerating the fixture refits the exit heads on float features computed by
# TensorFlow's CPU kernels, which round differently on AVX2 and AVX-512 hosts: the
# quantisation scales, thresholds and entropies then move in the 6th-7th digit
# (seen: 1.5e-5 relative at most), while every integer tensor and decision stays
# identical. Floats are compared to this tolerance, everything else exactly.
REGENERATED_FLOAT_REL_TOL = 1e-4


def _without_checksums(manifest: dict) -> dict:
    m = json.loads(json.dumps(manifest))
    for e in m["exits"]:
        e.pop("sha256", None)
    return m


def _array(t: dict) -> np.ndarray:
    return np.asarray(t["values"], dtype=t["dtype"]).reshape(t["shape"])


# Fast: the committed fixture against the real interpreter ---------------------------


@pytest.fixture(scope="module")
def committed():
    if not (FIXTURE / golden.GOLDEN_FILE).exists():
        pytest.fail(f"No golden fixture at {FIXTURE}. {HOW_TO_REGENERATE}")
    return _load(FIXTURE)


@pytest.fixture(scope="module")
def scheduler():
    from ravit_keras.deploy.runtime.scheduler import RAViTScheduler

    return RAViTScheduler(FIXTURE, num_threads=1)


def _images(doc: dict) -> list[np.ndarray]:
    shape = doc["image_shape"]
    return [np.frombuffer(base64.b64decode(im["pixels_base64"]), np.uint8).reshape(shape)
            for im in doc["images"]]


def test_fixture_is_small_and_complete(committed):
    doc, manifest = committed
    assert doc["format"] == golden.GOLDEN_FORMAT and doc["format_version"] == golden.GOLDEN_VERSION
    size = sum(f.stat().st_size for f in FIXTURE.iterdir())
    assert size < 300_000, f"The golden fixture is {size / 1e3:.0f} kB; keep it under 300 kB."
    files = {"manifest.json", "labels.txt", golden.GOLDEN_FILE, *(e["file"] for e in manifest["exits"])}
    assert files <= {f.name for f in FIXTURE.iterdir()}
    assert len(doc["images"]) == golden.NUM_TEST_IMAGES
    # Both outcomes occur at some threshold between "never exit" and "always exit".
    outcomes = [{d["exit_index"] for d in s["decisions"]} for s in doc["threshold_settings"]]
    assert any(len(o) == 2 for o in outcomes), "no threshold setting mixes early and late exits"
    names = {s["name"] for s in doc["threshold_settings"]}
    assert {"none", "max_entropy"} <= names


def test_fixture_reproduces_with_litert(committed, scheduler):
    doc, _ = committed
    images = _images(doc)
    for i, (image, record) in enumerate(zip(images, doc["images"])):
        logits, raw = scheduler.all_exit_logits(image)
        assert len(raw) == len(record["exits"])
        for k, (got_logits, got, want) in enumerate(zip(logits, raw, record["exits"])):
            for name, tensor in {**{f"in_{n}": t for n, t in want["inputs"].items()},
                                 **{f"out_{n}": t for n, t in want["outputs"].items()}}.items():
                expected = _array(tensor)
                assert got[name].dtype == expected.dtype, f"image {i} exit {k} {name} dtype"
                np.testing.assert_array_equal(
                    got[name], expected,
                    err_msg=f"image {i} exit {k} {name}: LiteRT output differs from the fixture "
                            f"(a different CPU kernel, or a stale fixture). {HOW_TO_REGENERATE}")
            from ravit_keras import exits

            u = float(exits.entropy(got_logits[None])[0])
            assert u == pytest.approx(want["entropy"], abs=1e-9)
            np.testing.assert_allclose(exits.softmax(got_logits), want["probabilities"], atol=1e-12)
    for setting in doc["threshold_settings"]:
        for i, (image, want) in enumerate(zip(images, setting["decisions"])):
            c = scheduler.classify(image, setting["thresholds"])
            where = f"setting {setting['name']} {setting['thresholds']}, image {i}"
            assert (c.exit_index, c.label, c.label_name, c.macs) == (
                want["exit_index"], want["label"], want["label_name"], want["macs"]), where
            np.testing.assert_allclose(c.entropies, want["entropies"], atol=1e-9, err_msg=where)


def test_fixture_policies_reproduce(committed, scheduler):
    doc, _ = committed
    import copy

    for case in doc["battery_cases"]:
        other = copy.copy(scheduler)
        other.manifest = {**scheduler.manifest, "battery_policy": case["policy"]}
        for level, want in zip(case["levels"], case["thresholds"]):
            assert other.battery_thresholds(level) == pytest.approx(want, abs=1e-12), (case["policy"], level)
    assert doc["battery_cases"][0]["policy"]["thresholds_low"] == scheduler.manifest["battery_policy"]["thresholds_low"]
    for case in doc["mac_budgets"]:
        if "error" in case:
            with pytest.raises(ValueError):
                scheduler.thresholds_for_mac_budget(case["budget"])
        else:
            assert scheduler.thresholds_for_mac_budget(case["budget"]) == pytest.approx(case["thresholds"])


def test_fixture_requantize_and_entropy_cases_match_the_code(committed):
    """The standalone cases the Java core checks still describe the Python rule."""
    from ravit_keras import exits
    from ravit_keras.deploy.runtime.quantization import requantize

    doc, _ = committed
    for case in doc["requantize_cases"]:
        got = requantize(_array(case["input"]), case["source"], case["target"])
        np.testing.assert_array_equal(got, _array(case["expected"]), err_msg=case["name"])
        assert np.asarray(got).dtype.name == case["expected"]["dtype"], case["name"]
    for case in doc["entropy_cases"]:
        logits = np.asarray(case["logits"])
        assert float(exits.entropy(logits[None])[0]) == pytest.approx(case["entropy"], abs=1e-12)
        np.testing.assert_allclose(exits.softmax(logits), case["softmax"], atol=1e-15)


# Slow: regenerate and compare --------------------------------------------------------


@pytest.mark.slow
def test_regenerated_fixture_equals_committed(committed, tmp_path):
    doc, manifest = committed
    out = tmp_path / "golden"
    golden.export_golden(out, progress=None)
    new_doc, new_manifest = _load(out)

    diff = _first_difference(_without_checksums(manifest), _without_checksums(new_manifest),
                             rel_tol=REGENERATED_FLOAT_REL_TOL)
    assert diff is None, (
        f"The manifest the current code writes differs from the committed golden fixture at {diff}. "
        f"{HOW_TO_REGENERATE}")
    diff = _first_difference(doc, new_doc, rel_tol=REGENERATED_FLOAT_REL_TOL)
    assert diff is None, (
        f"The golden vectors the current code produces differ from the committed fixture at {diff}. "
        f"{HOW_TO_REGENERATE}")

    changed = []
    for e in manifest["exits"]:
        old, new = (FIXTURE / e["file"]).read_bytes(), (out / e["file"]).read_bytes()
        if old != new:
            n = sum(a != b for a, b in zip(old, new)) + abs(len(old) - len(new))
            changed.append(f"{e['file']} ({n} byte(s))")
    if changed:
        # Everything recorded is equal, so the fixture stays valid. The usual cause is
        # the timestamp of labels.txt inside the metadata's zip, written by the converter.
        warnings.warn(
            "Regenerated submodel bytes differ from the committed ones: " + ", ".join(changed)
            + ", but the manifest (apart from checksums) and every recorded input, output, "
              "entropy and decision are equal, so the committed fixture is still valid. "
              "(Typically the embedded metadata zip's timestamps.)",
            stacklevel=1,
        )
