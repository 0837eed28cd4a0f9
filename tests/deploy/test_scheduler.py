"""The device-emulating early-exit scheduler (``ravit_keras.deploy.runtime.scheduler``) and ``ravit run``.

Uses the session fixtures of conftest.py (one trained tiny RAViT converted once to
int8 and once to float32); tests that corrupt a folder work on a copy.
"""

import itertools
import json
import math
import tracemalloc

import numpy as np
import pytest

from ravit_keras import exits
from ravit_keras.deploy.runtime.manifest import load_manifest
from ravit_keras.deploy.runtime.quantization import dequantize, requantize
from ravit_keras.deploy.runtime.scheduler import RAViTScheduler, Submodel

LN10 = math.log(10)


# Inputs and thresholds -----------------------------------------------------------------


@pytest.fixture(scope="module")
def int8_sched(tflite_int8_folder):
    return RAViTScheduler(tflite_int8_folder)


@pytest.fixture(scope="module")
def float32_sched(tflite_float32_folder):
    return RAViTScheduler(tflite_float32_folder)


def test_wrong_image_size_and_dtype(int8_sched, float32_sched, tflite_trained_ravit):
    img = tflite_trained_ravit.test_images[0]
    with pytest.raises(ValueError, match=r"Image shape \(16, 16, 3\) does not match the model input \(32, 32, 3\)"):
        int8_sched.classify(img[:16, :16])
    with pytest.raises(ValueError, match="does not match the model input"):
        int8_sched.classify(np.stack([img, img]))
    with pytest.raises(ValueError, match="does not match the model input"):
        int8_sched.all_exit_logits(img[..., :1])
    with pytest.raises(ValueError, match="int8 model takes uint8 pixels 0..255; got dtype float32"):
        int8_sched.classify(img.astype(np.float32))
    with pytest.raises(ValueError, match="dtype float64 not supported"):
        float32_sched.classify(img.astype(np.float64))
    # Accepted: a batch of one, and uint8 pixels for the float model.
    assert int8_sched.classify(img[None]).label == int8_sched.classify(img).label
    assert float32_sched.classify(img).label == float32_sched.classify(img.astype(np.float32)).label


@pytest.mark.parametrize("thresholds, message", [
    (-0.1, "negative"),
    (float("nan"), "not a finite number"),
    (float("inf"), "not a finite number"),
    (LN10 + 1e-4, r"above ln\(10\) = 2.3025851"),
    ([0.1, 0.2, 0.3], "must be a scalar or have 1 or 2 entries"),
    ([], "must be a scalar or have 1 or 2 entries"),
    ("abc", "not numbers"),
])
def test_thresholds_out_of_range(tflite_int8_folder, int8_sched, tflite_trained_ravit, thresholds, message):
    img = tflite_trained_ravit.test_images[0]
    before = int8_sched.thresholds
    with pytest.raises(ValueError, match=message):
        int8_sched.set_thresholds(thresholds)
    assert int8_sched.thresholds == before  # A rejected value changes nothing.
    with pytest.raises(ValueError, match=message):
        int8_sched.classify(img, thresholds=thresholds)
    with pytest.raises(ValueError, match=message):
        int8_sched.evaluate([img], thresholds=thresholds)
    with pytest.raises(ValueError, match=message):
        RAViTScheduler(tflite_int8_folder, thresholds=thresholds)


def test_threshold_edges_are_accepted(int8_sched, tflite_trained_ravit):
    img = tflite_trained_ravit.test_images[0]
    assert int8_sched.classify(img, thresholds=LN10).exit_index == 0  # ln C stops everything.
    assert int8_sched.classify(img, thresholds=0.0).exit_index == 1
    assert int8_sched.classify(img, thresholds=[0.0, 5.0]).exit_index == 1  # Last entry ignored.


@pytest.mark.parametrize("level", [-0.01, 1.01, float("nan"), float("inf")])
def test_battery_level_outside_0_1(int8_sched, level):
    with pytest.raises(ValueError, match=r"Battery level must be in \[0, 1\]"):
        int8_sched.battery_thresholds(level)


# Classification ------------------------------------------------------------------------


def test_classify_follows_the_rule_on_its_own_logits(int8_sched, tflite_trained_ravit):
    """The scheduler's decision equals exits.route on the int8 logits of every exit."""
    images = tflite_trained_ravit.test_images[:60]
    logits = [np.stack(z) for z in zip(*(int8_sched.all_exit_logits(img)[0] for img in images))]
    u1 = exits.entropy(logits[0])
    costs = [s.cumulative_macs for s in int8_sched.submodels]
    exits_seen = set()
    for tau in (0.0, float(np.median(u1)) + 1e-9, LN10):
        routing = exits.route(logits, tau)
        for i, img in enumerate(images):
            c = int8_sched.classify(img, thresholds=tau)
            exits_seen.add(c.exit_index)
            assert c.exit_index == routing.exit_index[i] or abs(u1[i] - tau) < 1e-9
            if c.exit_index == routing.exit_index[i]:
                assert c.label == routing.predictions[i]
                np.testing.assert_allclose(c.probabilities, routing.probabilities[i], atol=1e-12)
            assert c.label == int(np.argmax(c.probabilities))
            assert c.label_name == int8_sched.labels[c.label]
            assert c.exit_name == int8_sched.exit_names[c.exit_index]
            assert len(c.entropies) == c.exit_index + 1 == len(c.branch_latency_ms)
            np.testing.assert_allclose(c.entropies, routing.entropies[i, : c.exit_index + 1], atol=1e-9)
            assert c.macs == costs[c.exit_index]
            assert math.isclose(c.probabilities.sum(), 1.0)
            assert c.total_latency_ms >= sum(c.branch_latency_ms) > 0
    assert exits_seen == {0, 1}


def _reference_classify(sched, image, tau):
    """The exit rule written plainly: every submodel through ``Submodel.__call__``, the
    CLS token requantised by ``requantize`` itself, the entropy by ``_exp_entropy``."""
    from ravit_keras.deploy.runtime.submodel import _exp_entropy

    image = sched._check_image(image)
    cls, entropies = None, []
    for k, sub in enumerate(sched.submodels):
        inputs = {"image": image}
        if k:
            inputs["cls_in"] = requantize(cls, sub.cls_source, sub.entry.inputs["cls_in"])
        out, _ = sub(inputs)
        e, total, u = _exp_entropy(out["logits"][0], sub.logits_scale)
        entropies.append(u)
        if k == len(sched.submodels) - 1 or u <= tau:
            p = e / total
            return int(np.argmax(p)), k, p, entropies
        cls = out["cls_out"]


@pytest.mark.parametrize("folder", ["tflite_int8_folder", "tflite_float32_folder"])
def test_the_fast_path_gives_the_plain_rules_results_bit_for_bit(folder, request, tflite_trained_ravit):
    """Tables, ``bytes.translate``, Python-summed decisions and the lazy result fields are
    speed only: label, exit, probabilities and entropies equal the plain rule's bits,
    also at thresholds equal to an image's entropy (where rounding would decide)."""
    sched = RAViTScheduler(request.getfixturevalue(folder))
    images = tflite_trained_ravit.test_images[:120]
    if sched.image_dtype != "uint8":
        images = images.astype(np.float32)
    first = [_reference_classify(sched, im, 0.0)[3][0] for im in images[:40]]
    for tau in [0.0, *np.quantile(first, [0.25, 0.5, 0.75]), first[3], first[11], LN10]:
        for im in images:
            label, k, p, entropies = _reference_classify(sched, im, float(tau))
            c = sched.classify(im, thresholds=float(tau))
            assert (c.label, c.exit_index) == (label, k)
            assert c.probabilities.tobytes() == p.tobytes()
            assert [u.hex() for u in c.entropies] == [float(u).hex() for u in entropies]
    assert sched.evaluate(images[:10], thresholds=first[3])["images"] == 10


def test_all_exit_logits_records_the_raw_integer_io(int8_sched, tflite_trained_ravit):
    logits, records = int8_sched.all_exit_logits(tflite_trained_ravit.test_images[1])
    assert len(logits) == len(records) == 2
    out = int8_sched.manifest.exits[0].outputs
    cls_in = int8_sched.manifest.exits[1].inputs["cls_in"]
    assert records[0]["out_logits"].dtype == np.int8 and records[0]["out_cls_out"].dtype == np.int8
    assert records[1]["in_cls_in"].dtype == np.dtype(cls_in.dtype)
    # The hand-over is exactly the requantisation rule.
    np.testing.assert_array_equal(records[1]["in_cls_in"],
                                  requantize(records[0]["out_cls_out"], out["cls_out"], cls_in))
    np.testing.assert_array_equal(
        logits[0], dequantize(records[0]["out_logits"][0], out["logits"].scale, out["logits"].zero_point))


def test_stream_is_lazy(int8_sched, tflite_trained_ravit):
    images = tflite_trained_ravit.test_images

    def endless():
        for i in itertools.count():
            yield images[i % len(images)]

    results = list(itertools.islice(int8_sched.stream(endless(), thresholds=0.5), 5))
    assert [r.label for r in results] == [int8_sched.classify(img, 0.5).label for img in images[:5]]


def test_evaluate_report(int8_sched, tflite_trained_ravit):
    t = tflite_trained_ravit
    images, labels = t.test_images[:100], t.test_labels[:100]
    tau = 0.5
    report = int8_sched.evaluate(iter(images), iter(labels), thresholds=tau)
    results = [int8_sched.classify(img, tau) for img in images]
    assert report["images"] == 100
    assert report["accuracy"] == np.mean([r.label == y for r, y in zip(results, labels)])
    assert report["exit_counts"] == [sum(r.exit_index == k for r in results) for k in range(2)]
    assert report["thresholds"] == [tau]
    assert "accuracy" not in int8_sched.evaluate(images[:3])  # No labels: no accuracy.


# Policies ------------------------------------------------------------------------------


def test_battery_policy(int8_sched):
    m = int8_sched.manifest.to_dict()
    policy = m["battery_policy"]
    assert int8_sched.battery_thresholds(1.0) == pytest.approx(m["default_thresholds"], abs=0)
    assert int8_sched.battery_thresholds(policy["high"]) == pytest.approx(m["default_thresholds"], abs=0)
    assert int8_sched.battery_thresholds(0.0) == pytest.approx(policy["thresholds_low"], abs=0)
    assert int8_sched.battery_thresholds(policy["low"]) == pytest.approx(policy["thresholds_low"], abs=0)
    levels = np.linspace(1.0, 0.0, 41)  # Battery draining.
    taus = np.array([int8_sched.battery_thresholds(float(level)) for level in levels])
    assert np.all(np.diff(taus, axis=0) >= -1e-12), taus
    for row in taus:
        exits.validate_thresholds(row, 2, 10)
    mid = 0.5 * (policy["high"] + policy["low"])
    expected = 0.5 * (np.array(policy["thresholds_high"]) + np.array(policy["thresholds_low"]))
    np.testing.assert_allclose(int8_sched.battery_thresholds(mid), expected, rtol=1e-12)


def test_mac_budget_policy(int8_sched):
    m = int8_sched.manifest.to_dict()
    full = m["full_model_macs"]
    points = m["operating_points"]
    assert points
    for fraction in sorted({p["mac_fraction"] for p in points}):
        taus = int8_sched.thresholds_for_mac_budget(fraction)
        chosen = [p for p in points if p["thresholds"] == taus]
        assert chosen, (fraction, taus)
        assert min(p["avg_macs"] for p in chosen) <= fraction * full
        # The same budget in absolute MACs.
        assert int8_sched.thresholds_for_mac_budget(fraction * full) == taus
    cheapest = min(p["avg_macs"] for p in points)
    with pytest.raises(ValueError, match="No calibrated operating point fits"):
        int8_sched.thresholds_for_mac_budget(0.5 * cheapest / full)
    with pytest.raises(ValueError, match="No calibrated operating point fits"):
        int8_sched.thresholds_for_mac_budget(0.0)
    exits.validate_thresholds(int8_sched.thresholds_for_mac_budget(1.0), 2, 10)  # The full model fits.


def _calibration_logits(sched, trained):
    return [np.stack(z) for z in zip(*(sched.all_exit_logits(img)[0] for img in trained.calib_images))]


def test_operating_points_reproduce_on_the_scheduler(int8_sched, tflite_trained_ravit):
    """At a calibrated operating point, over its own calibration images, routing the
    int8 logits reproduces the calibrated figures, and the scheduler routes every image
    the same way except exact ties (|u - tau| < 1e-12: see the xfail test below)."""
    t = tflite_trained_ravit
    logits = _calibration_logits(int8_sched, t)
    u1 = exits.entropy(logits[0])
    costs = [s.cumulative_macs for s in int8_sched.submodels]
    for p in int8_sched.manifest.to_dict()["operating_points"]:
        expected = exits.evaluate_exits(logits, t.calib_labels, p["thresholds"], costs)
        assert expected["exit_fractions"] == pytest.approx(p["exit_fractions"], abs=1e-12)
        assert expected["accuracy"] == pytest.approx(p["accuracy"], abs=1e-12)
        assert expected["avg_macs"] == pytest.approx(p["avg_macs"], rel=1e-12)
        routing = exits.route(logits, p["thresholds"])
        for i, img in enumerate(t.calib_images):
            c = int8_sched.classify(img, thresholds=p["thresholds"])
            if c.exit_index != routing.exit_index[i]:
                assert abs(u1[i] - p["thresholds"][0]) < 1e-12, (p, i)


def test_operating_points_keep_a_margin_from_calibration_entropies(int8_sched, tflite_trained_ravit):
    logits = _calibration_logits(int8_sched, tflite_trained_ravit)
    u1 = exits.entropy(logits[0])
    m = int8_sched.manifest.to_dict()
    for taus in [m["default_thresholds"], *(p["thresholds"] for p in m["operating_points"])]:
        tau = taus[0]
        if tau in (0.0, LN10):
            continue
        margin = float(np.min(np.abs(u1 - tau)))
        assert margin > 1e-12 * max(1.0, tau), f"tau {tau!r} is {margin} from a calibration entropy"


def test_latency_budget_policy(int8_sched):
    assert int8_sched.thresholds_for_latency_budget(1e9, runs=3) == [0.0]  # No early exit: most accurate.
    with pytest.raises(ValueError, match="No operating point fits 1e-09 ms"):
        int8_sched.thresholds_for_latency_budget(1e-9, runs=3)


# Streaming memory ----------------------------------------------------------------------


def test_evaluate_streams_with_flat_memory(int8_sched, tflite_trained_ravit):
    """3000 images through evaluate(): the traced peak grows < 300 kB from image 500 to 3000.

    The report keeps one latency per image for percentiles (a Python float in a
    list: ~32 bytes, ~80 kB for 2500 images); keeping each Classification (with
    its probabilities) would cost several MB.
    """
    t = tflite_trained_ravit
    images, labels = t.test_images, t.test_labels
    total, checkpoint = 3000, 500
    logits = [np.stack(z) for z in zip(*(int8_sched.all_exit_logits(img)[0] for img in images))]
    tau = float(np.median(exits.entropy(logits[0])))
    peaks = {}

    def image_stream():
        for i in range(total):
            if i == checkpoint:
                peaks["at_500"] = tracemalloc.get_traced_memory()[1]
            yield images[i % len(images)]

    label_stream = (int(labels[i % len(labels)]) for i in range(total))
    tracemalloc.start()
    try:
        report = int8_sched.evaluate(image_stream(), label_stream, thresholds=tau)
        peaks["at_3000"] = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    growth = peaks["at_3000"] - peaks["at_500"]
    assert growth < 300_000, f"peak traced memory grew by {growth} bytes from image 500 to 3000"

    assert report["images"] == total
    assert sum(report["exit_counts"]) == total
    assert all(c > 0 for c in report["exit_counts"])
    costs = [s.cumulative_macs for s in int8_sched.submodels]
    assert costs[0] < report["avg_macs"] < costs[-1]
    expected = exits.evaluate_exits(logits, labels, tau, costs)
    assert report["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-12)  # 10 passes over the set.
    assert report["exit_fractions"] == pytest.approx(expected["exit_fractions"], abs=1e-12)
    lat = report["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
    assert lat["mean"] > 0
    assert report["scheduler_overhead_fraction"] >= 0
    assert report["avg_mflops"] == pytest.approx(2 * report["avg_macs"] / 1e6)


# The run command -------------------------------------------------------------------------


def _run(folder, out, *extra):
    from ravit_keras.cli import main

    return main(["run", "--model", str(folder), "--data", "generated", "--limit", "50", "--out", str(out), *extra])


def test_cli_run_writes_a_report(tflite_int8_folder, tmp_path, capsys):
    out = tmp_path / "run.json"
    assert _run(tflite_int8_folder, out) == 0
    report = json.loads(out.read_text())
    assert report["images"] == 50 and sum(report["exit_counts"]) == 50
    assert 0.0 <= report["accuracy"] <= 1.0
    assert report["thresholds"] == list(load_manifest(tflite_int8_folder).default_thresholds)
    assert {"p50", "p90", "p99", "mean"} <= set(report["latency_ms"])
    assert "accuracy" in capsys.readouterr().out


def test_cli_run_draws_the_exit_histogram(tflite_int8_folder, tmp_path):
    plot = tmp_path / "exits.png"
    assert _run(tflite_int8_folder, tmp_path / "run.json", "--plot", str(plot)) == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_run_policies(tflite_int8_folder, tmp_path):
    sched = RAViTScheduler(tflite_int8_folder)
    out = tmp_path / "battery.json"
    assert _run(tflite_int8_folder, out, "--battery", "0.1") == 0
    assert json.loads(out.read_text())["thresholds"] == sched.battery_thresholds(0.1)
    out = tmp_path / "macs.json"
    assert _run(tflite_int8_folder, out, "--mac-budget", "0.5") == 0
    report = json.loads(out.read_text())
    assert report["thresholds"] == sched.thresholds_for_mac_budget(0.5)
    out = tmp_path / "taus.json"
    assert _run(tflite_int8_folder, out, "--thresholds", "0.25") == 0
    assert json.loads(out.read_text())["thresholds"] == [0.25]


def test_cli_run_errors(tflite_int8_folder, tmp_path, capsys):
    out = tmp_path / "run.json"
    assert _run(tflite_int8_folder, out, "--thresholds", "0.1", "--battery", "0.5") == 2
    err = capsys.readouterr().err
    assert "at most one of --thresholds, --mac-budget, --latency-budget-ms, --battery" in err
    assert "ravit run: error" in err
    assert _run(tflite_int8_folder, out, "--battery", "1.5") == 2
    assert "Battery level must be in [0, 1]" in capsys.readouterr().err
    assert _run(tflite_int8_folder, out, "--thresholds", "-1") == 2
    assert "negative" in capsys.readouterr().err
    assert _run(tmp_path / "missing", out) == 2
    assert "No manifest.json" in capsys.readouterr().err
    assert not out.exists()


def test_warm_up_invokes_are_not_timed(tflite_float32_folder, tflite_trained_ravit, monkeypatch):
    # Each submodel is invoked once on a blank input before the stream; only the
    # stream's classifications enter the latency statistics.
    sched = RAViTScheduler(tflite_float32_folder)
    calls = []
    invoke = Submodel.__call__
    monkeypatch.setattr(Submodel, "__call__", lambda self, inputs: calls.append(self) or invoke(self, inputs))
    timed = []
    classify = sched._classify
    monkeypatch.setattr(sched, "_classify", lambda image, taus: timed.append(len(calls)) or classify(image, taus))
    images = tflite_trained_ravit.test_images[:3]
    report = sched.evaluate(images, tflite_trained_ravit.test_labels[:3], thresholds=0.0)
    assert report["warmup_invokes"] == 1 and report["images"] == 3
    assert calls == sched.submodels  # Each once, in order,
    assert timed == [len(sched.submodels)] * 3  # before the first timed image.
    assert {"p50", "p95", "p99"} <= set(report["latency_ms"])
    calls.clear()
    timed.clear()
    assert sched.evaluate(images[:1], warmup=0)["warmup_invokes"] == 0 and timed == [0]


def test_cli_run_says_what_its_latency_excludes_and_counts_in_words(tflite_float32_folder, tmp_path, capsys):
    from ravit_keras.cli import main

    answers = tmp_path / "one.csv"
    assert main(["run", "--model", str(tflite_float32_folder), "--data", "generated", "--limit", "1",
                 "--per-image", str(answers)]) == 0
    out = capsys.readouterr().out
    assert "Scheduling 1 generated test image through 2 float32 submodels" in out
    assert "p50" in out and "p95" in out and "p99" in out
    assert "after 1 warm-up invoke of each submodel, not counted" in out
    assert f"Wrote 1 per-image answer to {answers}" in out
    assert "1 images" not in out and "1 answers" not in out
