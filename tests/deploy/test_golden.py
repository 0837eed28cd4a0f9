"""Golden vectors shared with the Android core (``ravit_keras.deploy.export.golden``).

The committed fixture ``android_demo/core/src/test/resources/golden`` is what
the Java ``GoldenParityTest`` replays. These tests keep it honest:

* ``test_fixture_reproduces_with_litert`` (fast): the committed submodels, run
  by the Python scheduler over the real LiteRT interpreter, give exactly the
  recorded raw outputs, entropies and decisions;
* ``test_regenerated_fixture_equals_committed`` (slow): regenerating from the
  current code gives the same fixture, so a change of the export graph cannot
  leave the Java test checking stale numbers.

Both compare numbers made on the machine that recorded the fixture with numbers
made here, so they hold on every CPU: XNNPACK's int8 kernels round differently per
instruction set (AVX2, AVX-512, Zen 4's VNNI), and the same submodel then gives
int8 logits and CLS tokens 1 LSB apart (seen: 3 logits on Zen 4). Integer tensors
are compared to ±1 LSB, the floats derived from them (entropies, probabilities,
thresholds) to what ±1 LSB can move, and decisions (exit taken, label, MACs)
exactly wherever ±1 LSB cannot change them: every visited entropy more than
``2 * _entropy_bound`` from its threshold and the top two logits more than 2 LSB
apart. A decision closer than that is not a property of the code but of the CPU,
and is skipped (counted, and at least half must be checked). Comparisons of two
runtimes on ONE machine (tests/deploy/test_android_parity.py) stay byte-exact.
"""

import base64
import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from ravit_keras.deploy.export import golden

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


def _first_difference(a, b, path="$", rel_tol=0.0, tolerances=()):
    """JSON path of the first place ``a`` and ``b`` differ, with both values; None if equal.

    Two floats are equal when within ``rel_tol`` of each other (relative); every
    other value (ints, strings, lengths, keys) must match exactly, except numbers
    at a path matching one of ``tolerances`` ((regex, absolute tolerance) pairs).
    """
    for pattern, tol in tolerances:
        if (isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool)
                and re.search(pattern, path)):
            return None if abs(a - b) <= tol else f"{path}: committed {a!r}, regenerated {b!r} (tolerance {tol})"
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                return f"{path}.{key}: present only in the {'committed' if key in a else 'regenerated'} fixture"
            diff = _first_difference(a[key], b[key], f"{path}.{key}", rel_tol, tolerances)
            if diff:
                return diff
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} entries committed, {len(b)} regenerated"
        for i, (x, y) in enumerate(zip(a, b)):
            diff = _first_difference(x, y, f"{path}[{i}]", rel_tol, tolerances)
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


# ±1 LSB on integer tensors recomputed on another CPU (see the module docstring).
INT_TENSOR_TOL = 1


def _entropy_bound(probabilities, scale: float) -> float:
    """Most that ±1 LSB on every logit can move the entropy of softmax ``probabilities``.

    dH/dz_i = -p_i (ln p_i + H), so to first order |dH| <= scale * sum_i p_i |ln p_i + H|
    when each logit moves by at most ``scale`` (1 LSB); 1.5x for the curvature.
    """
    p = np.asarray(probabilities, np.float64)
    logp = np.log(np.where(p > 0, p, 1.0))
    h = -float(p @ logp)
    return 1.5 * scale * float(p @ np.abs(logp + h)) + 1e-9


def _robust(entropies, thresholds, bounds) -> bool:
    """Whether ±1 LSB on the logits cannot change which exit answers.

    The threshold may itself be an entropy of the fixture, moved by as much: hence 2x.
    """
    return all(abs(u - t) > 2 * b for u, t, b in zip(entropies, thresholds, bounds))


def _label_robust(logits_q) -> bool:
    """Whether ±1 LSB cannot change the label: the top two logits more than 2 LSB apart.

    (Saturated logits tie at 127 in the fixture: which of them stays 127 is the CPU's call.)
    """
    top = np.sort(np.asarray(logits_q, np.int64))[-2:]
    return int(top[1] - top[0]) > 2 * INT_TENSOR_TOL


def _assert_tensor_close(got: np.ndarray, expected: np.ndarray, msg: str) -> None:
    """Integer tensors to ±1 LSB (recorded on another CPU), float tensors exactly."""
    assert got.dtype == expected.dtype and got.shape == expected.shape, msg
    if np.issubdtype(expected.dtype, np.integer):
        diff = np.abs(got.astype(np.int64) - expected.astype(np.int64))
        assert diff.max(initial=0) <= INT_TENSOR_TOL, f"{msg}: {int(diff.max())} LSB apart"
    else:
        np.testing.assert_array_equal(got, expected, err_msg=msg)


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
    moved: set[int] = set()
    for i, (image, record) in enumerate(zip(images, doc["images"])):
        logits, raw = scheduler.all_exit_logits(image)
        assert len(raw) == len(record["exits"])
        for k, (got_logits, got, want) in enumerate(zip(logits, raw, record["exits"])):
            for name, tensor in {**{f"in_{n}": t for n, t in want["inputs"].items()},
                                 **{f"out_{n}": t for n, t in want["outputs"].items()}}.items():
                expected = _array(tensor)
                assert got[name].dtype == expected.dtype, f"image {i} exit {k} {name} dtype"
                _assert_tensor_close(
                    got[name], expected,
                    f"image {i} exit {k} {name}: LiteRT output differs from the fixture by more than "
                    f"{INT_TENSOR_TOL} LSB (a stale fixture). {HOW_TO_REGENERATE}")
            from ravit_keras import exits

            same = np.array_equal(got["out_logits"], _array(want["outputs"]["logits"]))
            if not same:
                moved.add(i)  # Recomputed 1 LSB off on this CPU: its floats get the ±1-LSB bound.
            bound = 1e-9 if same else _entropy_bound(want["probabilities"], scheduler.submodels[k].logits_scale)
            u = float(exits.entropy(got_logits[None])[0])
            assert u == pytest.approx(want["entropy"], abs=bound)
            np.testing.assert_allclose(exits.softmax(got_logits), want["probabilities"],
                                       atol=1e-12 if same else bound)
    exits_checked = labels_checked = total = 0
    for setting in doc["threshold_settings"]:
        for i, (image, want) in enumerate(zip(images, setting["decisions"])):
            total += 1
            exit_ok, label_ok = _decision_is_robust(doc, scheduler, i, want, setting["thresholds"])
            if i not in moved:
                exit_ok = label_ok = True  # Same raw logits as recorded: every decision must match.
            if not exit_ok:
                continue  # Within ±1 LSB of the threshold: the CPU decides, not the code.
            exits_checked += 1
            c = scheduler.classify(image, setting["thresholds"])
            where = f"setting {setting['name']} {setting['thresholds']}, image {i}"
            assert (c.exit_index, c.macs) == (want["exit_index"], want["macs"]), where
            if label_ok:
                labels_checked += 1
                assert (c.label, c.label_name) == (want["label"], want["label_name"]), where
            bounds = [_entropy_bound(e["probabilities"], s.logits_scale)
                      for e, s in zip(doc["images"][i]["exits"], scheduler.submodels)]
            np.testing.assert_allclose(c.entropies, want["entropies"], err_msg=where,
                                       atol=1e-9 if i not in moved else max(bounds))
    assert exits_checked >= total // 2, f"only {exits_checked} of {total} exit decisions robust to ±1 LSB"
    assert labels_checked > 0


def _decision_is_robust(doc: dict, scheduler, i: int, want: dict, thresholds) -> tuple[bool, bool]:
    """(exit robust, label robust) to ±1 LSB for decision ``want`` on image ``i`` of the fixture."""
    record = doc["images"][i]["exits"]
    bounds = [_entropy_bound(e["probabilities"], s.logits_scale) for e, s in zip(record, scheduler.submodels)]
    exit_ok = _robust(want["entropies"][: len(thresholds)], thresholds, bounds)
    return exit_ok, exit_ok and _label_robust(record[want["exit_index"]]["outputs"]["logits"]["values"])


def test_fixture_policies_reproduce(committed, scheduler):
    doc, _ = committed
    from ravit_keras.deploy.runtime.policy import BatteryPolicy

    for case in doc["battery_cases"]:
        policy = BatteryPolicy.from_dict(case["policy"], len(scheduler.submodels), scheduler.num_classes)
        for level, want in zip(case["levels"], case["thresholds"]):
            assert policy.thresholds_at(level) == pytest.approx(want, abs=1e-12), (case["policy"], level)
    # The manifest's own policy is the first case, applied through the scheduler.
    for level, want in zip(doc["battery_cases"][0]["levels"], doc["battery_cases"][0]["thresholds"]):
        assert scheduler.battery_thresholds(level) == pytest.approx(want, abs=1e-12), level
    assert doc["battery_cases"][0]["policy"]["thresholds_low"] == list(scheduler.manifest.battery_policy.thresholds_low)
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
    # Across CPUs (see the module docstring): recorded integer tensors to ±1 LSB, the
    # floats derived from logits to the largest ±1-LSB entropy bound of the fixture,
    # and decisions only where ±1 LSB cannot change them.
    bound = max(_entropy_bound(e["probabilities"], scale)
                for im in doc["images"] for e, scale in zip(im["exits"], _logit_scales(manifest)))
    tolerances = [(r"^\$\.images\[\d+\]\.exits\[\d+\]\.(inputs|outputs)\.\w+\.values\[", INT_TENSOR_TOL),
                  (r"(entropy|entropies\[\d+\]|probabilities\[\d+\]|thresholds\[\d+\])$", 2 * bound)]
    doc, new_doc = _robust_decisions_only(doc, new_doc, manifest)
    diff = _first_difference(doc, new_doc, rel_tol=REGENERATED_FLOAT_REL_TOL, tolerances=tolerances)
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


def _logit_scales(manifest: dict) -> list[float]:
    return [e["outputs"]["logits"]["scale"] for e in manifest["exits"]]


def _robust_decisions_only(doc: dict, new_doc: dict, manifest: dict) -> tuple[dict, dict]:
    """Copies of both documents whose decisions keep only what ±1 LSB cannot change.

    A decision near its threshold becomes ``None`` in both (the CPU decides it); a
    label within 2 LSB of a tie is dropped from both.
    """
    doc, new_doc = json.loads(json.dumps(doc)), json.loads(json.dumps(new_doc))
    scales = _logit_scales(manifest)
    for setting, new_setting in zip(doc["threshold_settings"], new_doc["threshold_settings"]):
        for i, want in enumerate(setting["decisions"]):
            record = doc["images"][i]["exits"]
            bounds = [_entropy_bound(e["probabilities"], s) for e, s in zip(record, scales)]
            if not _robust(want["entropies"][: len(setting["thresholds"])], setting["thresholds"], bounds):
                setting["decisions"][i] = new_setting["decisions"][i] = None
            elif not _label_robust(record[want["exit_index"]]["outputs"]["logits"]["values"]):
                for d in (want, new_setting["decisions"][i]):
                    d.pop("label", None), d.pop("label_name", None)
    return doc, new_doc
