"""Keras RAViT -> TFLite submodels (``ravit_keras.deploy.export.convert``): round trip, fidelity, atomic writes, ``ravit convert``.

The tiny "1-2" model is trained and converted ONCE per session (fixtures in
conftest.py: ``tflite_trained_ravit``, ``tflite_int8_folder``,
``tflite_float32_folder``). Tests that corrupt a folder copy it first.
"""

import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from ravit_keras import exits
from ravit_keras.deploy.export.convert import ConversionOptions, convert
from ravit_keras.deploy.export.flatbuffer import (
    builtin_op_names,
    describe_tensors,
    fix_pixel_input_quantization,
    symmetrize_matmul_operands,
)
from ravit_keras.deploy.runtime.manifest import LABELS_FILE, MANIFEST_FILE, load_manifest
from ravit_keras.deploy.runtime.scheduler import RAViTScheduler
from ravit_keras.model import flops
from tests.deploy.helpers import assert_int8_logits_close, submodel_files

N_FIDELITY = 50  # test images per fidelity check


def _batch_matmul_rhs(tflite: bytes):
    """(type, scales, zero points) of the right-hand operand of every BATCH_MATMUL."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    graph = model.subgraphs[0]
    rhs = []
    for op in graph.operators:
        if flatbuffer_utils.opcode_to_name(model, op.opcodeIndex) == "BATCH_MATMUL":
            t = graph.tensors[op.inputs[1]]
            q = t.quantization
            rhs.append((t.type, list(q.scale) if q is not None and q.scale is not None else [],
                        list(q.zeroPoint) if q is not None and q.zeroPoint is not None else []))
    return rhs


def _run_submodel(tflite: bytes, inputs: dict):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=tflite)
    runner = it.get_signature_runner()
    return runner(**inputs)


# Conversion round trip ----------------------------------------------------------


def test_manifest_matches_submodels(tflite_trained_ravit, tflite_int8_folder):
    config = tflite_trained_ravit.config
    manifest = load_manifest(tflite_int8_folder).to_dict()
    assert manifest["quantization"] == "int8"
    assert manifest["num_classes"] == config.num_classes == 10
    assert manifest["image"]["dtype"] == "uint8"
    assert [e["name"] for e in manifest["exits"]] == list(config.exit_names)
    assert [e["cumulative_macs"] for e in manifest["exits"]] == flops.exit_macs(config)
    assert manifest["full_model_macs"] == flops.model_macs(config)

    sched = RAViTScheduler(tflite_int8_folder)  # Checks every tensor against the manifest.
    assert len(sched.submodels) == 2
    d = config.hidden_dim
    for k, (entry, path) in enumerate(zip(manifest["exits"], submodel_files(tflite_int8_folder))):
        described = describe_tensors(path.read_bytes())
        assert set(described) == set(entry["inputs"]) | set(entry["outputs"])
        for name, spec in {**entry["inputs"], **entry["outputs"]}.items():
            for key in ("shape", "dtype", "scale", "zero_point"):
                assert described[name][key] == spec[key], (path.name, name, key)
        image = entry["inputs"]["image"]
        assert image["shape"] == [1, 32, 32, 3]
        assert image["dtype"] == "uint8"
        assert image["scale"] == 1.0 and image["zero_point"] == 0  # Exactly raw pixels.
        assert entry["outputs"]["logits"]["shape"] == [1, config.num_classes]
        assert entry["outputs"]["logits"]["dtype"] == "int8"
        assert entry["outputs"]["cls_out"]["shape"] == [1, d]
        assert entry["outputs"]["cls_out"]["dtype"] == "int8"
        if k == 0:
            assert set(entry["inputs"]) == {"image"}
        else:
            assert set(entry["inputs"]) == {"image", "cls_in"}
            assert entry["inputs"]["cls_in"]["shape"] == [1, d]
            assert entry["inputs"]["cls_in"]["dtype"] in ("int8", "uint8")


def test_float32_manifest_has_float_interface(tflite_float32_folder):
    manifest = load_manifest(tflite_float32_folder).to_dict()
    assert manifest["quantization"] == "float32"
    assert manifest["image"]["dtype"] == "float32"
    for e in manifest["exits"]:
        for spec in {**e["inputs"], **e["outputs"]}.values():
            assert spec["dtype"] == "float32"
    RAViTScheduler(tflite_float32_folder)


@pytest.mark.parametrize("which", ["int8", "float32"])
def test_only_builtin_ops(which, tflite_int8_folder, tflite_float32_folder):
    from tensorflow.lite.tools import flatbuffer_utils

    folder = tflite_int8_folder if which == "int8" else tflite_float32_folder
    for path in submodel_files(folder):
        data = path.read_bytes()
        names = builtin_op_names(data)
        assert names, path
        assert not [n for n in names if n.startswith("CUSTOM") or "FLEX" in n.upper()], (path.name, names)
        assert "BATCH_MATMUL" in names  # Attention is there (sanity of the op listing).
        model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
        assert all(code.customCode is None for code in model.operatorCodes), path.name


def test_batch_matmul_rhs_zero_point_is_zero(tflite_int8_folder):
    for path in submodel_files(tflite_int8_folder):
        rhs = _batch_matmul_rhs(path.read_bytes())
        assert rhs, path.name
        for tensor_type, scales, zero_points in rhs:
            assert zero_points == [0], (path.name, tensor_type, scales, zero_points)
            assert scales and scales[0] > 0


def test_labels_and_checksums(tflite_trained_ravit, tflite_int8_folder):
    folder = Path(tflite_int8_folder)
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    assert manifest["labels_file"] == LABELS_FILE
    assert (folder / LABELS_FILE).read_text().splitlines() == tflite_trained_ravit.class_names
    assert manifest["labels"] == tflite_trained_ravit.class_names
    for e in manifest["exits"]:
        data = (folder / e["file"]).read_bytes()
        assert e["sha256"] == hashlib.sha256(data).hexdigest()
        assert e["size_bytes"] == len(data)
    # Nothing but the manifest, labels and submodels (no temporary leftovers).
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [MANIFEST_FILE, LABELS_FILE, *(e["file"] for e in manifest["exits"])])
    assert not [p for p in folder.parent.iterdir() if p.name.endswith(".partial")]


def test_operating_points_and_default_thresholds(tflite_trained_ravit, tflite_int8_folder):
    """Calibrated on the int8 submodels' logits of the calibration images."""
    manifest = load_manifest(tflite_int8_folder).to_dict()
    full = manifest["full_model_macs"]
    costs = [e["cumulative_macs"] for e in manifest["exits"]]
    assert manifest["operating_points"], "no MAC-budget operating point was calibrated"
    for p in manifest["operating_points"]:
        assert p["avg_macs"] <= p["mac_fraction"] * full + 1e-6
        assert costs[0] <= p["avg_macs"] <= costs[-1]
        assert math.isclose(sum(p["exit_fractions"]), 1.0)
        exits.validate_thresholds(p["thresholds"], len(costs), manifest["num_classes"])

    sched = RAViTScheduler(tflite_int8_folder)
    t = tflite_trained_ravit
    logits = [np.stack(z) for z in zip(*(sched.all_exit_logits(img)[0] for img in t.calib_images))]
    no_exit = exits.evaluate_exits(logits, t.calib_labels, 0.0, costs)
    chosen = exits.evaluate_exits(logits, t.calib_labels, manifest["default_thresholds"], costs)
    drop = ConversionOptions().default_max_accuracy_drop
    assert chosen["accuracy"] >= no_exit["accuracy"] - drop - 1e-12
    # The saver thresholds are never below the default ones.
    policy = manifest["battery_policy"]
    assert all(lo >= hi for lo, hi in zip(policy["thresholds_low"], policy["thresholds_high"]))


# Fidelity ------------------------------------------------------------------------


def test_float32_submodels_equal_keras(tflite_trained_ravit, tflite_float32_folder):
    t = tflite_trained_ravit
    keras_logits = t.keras_logits()
    sched = RAViTScheduler(tflite_float32_folder)
    for i, img in enumerate(t.test_images[:N_FIDELITY]):
        logits, _ = sched.all_exit_logits(img)
        for k, exit_logits in enumerate(logits):
            np.testing.assert_allclose(exit_logits, keras_logits[k][i], rtol=0, atol=1e-4,
                                       err_msg=f"image {i}, exit {k + 1}")


def test_int8_submodels_close_to_keras(tflite_trained_ravit, tflite_int8_folder):
    """int8 vs float Keras, per exit, on 50 test images.

    Tolerances, and why:
      * top-1 agreement >= 0.9 on the images whose Keras top-1 margin is at least
        5 int8 steps of the logits (5 x the logits' output scale, ~0.1). The
        other images are near-ties: at exit 1 every fine-texture class looks the
        same at half resolution, so Keras's top-2 logits differ by ~0.01, under
        one int8 step, and their order is noise (overall agreement is ~0.85);
      * overall agreement >= 0.7 (only those near-ties may flip);
      * mean |logit error| <= 10 % of the standard deviation of the float logits:
        quantising every activation of a 1-2 layer encoder costs a few int8 steps
        (~0.04 here for logits with std ~1), while a wrong scale, zero point or
        CLS hand-over gives errors of the order of the logits themselves.
    """
    t = tflite_trained_ravit
    keras_logits = [k[:N_FIDELITY] for k in t.keras_logits()]
    sched = RAViTScheduler(tflite_int8_folder)
    tfl = [np.stack(z) for z in zip(*(sched.all_exit_logits(img)[0] for img in t.test_images[:N_FIDELITY]))]
    assert_int8_logits_close(sched, tfl, keras_logits)


def test_float32_routing_equals_keras_route(tflite_trained_ravit, tflite_float32_folder):
    t = tflite_trained_ravit
    keras_logits = [k[:N_FIDELITY] for k in t.keras_logits()]
    u1 = exits.entropy(keras_logits[0])
    taus = [float(np.quantile(u1, q)) + 1e-7 for q in (0.2, 0.5, 0.8)]
    sched = RAViTScheduler(tflite_float32_folder)
    seen_exits = set()
    for tau in taus:
        routing = exits.route(keras_logits, tau)
        for i, img in enumerate(t.test_images[:N_FIDELITY]):
            c = sched.classify(img, thresholds=tau)
            if (c.exit_index, c.label) != (routing.exit_index[i], routing.predictions[i]):
                # Only a tie at the threshold may route differently.
                assert abs(routing.entropies[i, 0] - tau) < 1e-5, (tau, i, c.exit_index, routing.exit_index[i])
            seen_exits.add(c.exit_index)
    assert seen_exits == {0, 1}  # The thresholds exercise both exits.


@pytest.mark.slow
def test_symmetrize_and_pixel_fix_on_a_raw_conversion(tflite_trained_ravit, tmp_path):
    """The graph fixes on a fresh int8 conversion of branch 1: same function, zero-point-0 K/V."""
    from ravit_keras.deploy.export.convert import convert_saved_model
    from ravit_keras.deploy.export.graph import branch_float_inputs, export_saved_model

    t = tflite_trained_ravit
    representative = branch_float_inputs(t.model, t.calib_images[:50])[0]
    export_saved_model(t.model.branch_models()[0], t.config, True, tmp_path / "saved")
    raw = convert_saved_model(str(tmp_path / "saved"), "int8", representative)

    fixed_pixels = fix_pixel_input_quantization(raw)
    image = describe_tensors(fixed_pixels)["image"]
    assert (image["dtype"], image["scale"], image["zero_point"]) == ("uint8", 1.0, 0)

    raw_rhs = _batch_matmul_rhs(fixed_pixels)
    asymmetric = sum(zp != [0] for _, _, zp in raw_rhs)
    symmetric, changed = symmetrize_matmul_operands(fixed_pixels)
    assert changed == asymmetric
    assert all(zp == [0] for _, _, zp in _batch_matmul_rhs(symmetric))
    again, changed_again = symmetrize_matmul_operands(symmetric)
    assert changed_again == 0
    assert builtin_op_names(symmetric) == builtin_op_names(raw)

    # The same function: logits within a few int8 steps, same top-1.
    spec = describe_tensors(symmetric)["logits"]
    for img in t.test_images[:10]:
        a = _run_submodel(fixed_pixels, {"image": img[None]})["logits"].astype(np.int32)
        b = _run_submodel(symmetric, {"image": img[None]})["logits"].astype(np.int32)
        assert np.abs(a - b).max() <= 4, (a, b, spec)
        assert a.argmax() == b.argmax() or np.sort(a[0])[-1] - np.sort(a[0])[-2] <= 4


def test_describe_tensors_rejects_garbage():
    with pytest.raises(ValueError, match="Not a valid TFLite model"):
        describe_tensors(b"definitely not a flatbuffer" * 10)


# Atomic writes and argument errors ---------------------------------------------


def _fail_on_second_call(real, calls):
    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("injected failure in the second branch")
        return real(*args, **kwargs)

    return wrapper


def test_failed_conversion_leaves_nothing(tflite_trained_ravit, tmp_path, monkeypatch):
    import ravit_keras.deploy.export.convert as export

    t = tflite_trained_ravit
    calls = []
    # Branch 1 is converted and written into the temporary folder; branch 2 fails.
    monkeypatch.setattr(export, "export_saved_model", _fail_on_second_call(export.export_saved_model, calls))
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="injected failure"):
        convert(t.model, out, t.calib_images[:20], class_names=t.class_names,
                options=ConversionOptions(mode="float32"), progress=None)
    assert len(calls) == 2  # It did fail part-way, after branch 1 was written.
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # No .partial folder left behind.


def test_failed_overwrite_keeps_the_old_folder(tflite_trained_ravit, tflite_int8_folder, tmp_path, monkeypatch):
    import ravit_keras.deploy.export.convert as export

    t = tflite_trained_ravit
    out = tmp_path / "model"
    shutil.copytree(tflite_int8_folder, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    calls = []
    monkeypatch.setattr(export, "export_saved_model", _fail_on_second_call(export.export_saved_model, calls))
    with pytest.raises(RuntimeError, match="injected failure"):
        convert(t.model, out, t.calib_images[:20], class_names=t.class_names,
                options=ConversionOptions(mode="float32"), overwrite=True, progress=None)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    RAViTScheduler(out)


def test_existing_folder_without_overwrite(tflite_trained_ravit, tflite_int8_folder, tmp_path):
    t = tflite_trained_ravit
    out = tmp_path / "model"
    shutil.copytree(tflite_int8_folder, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(FileExistsError, match="already exists"):
        convert(t.model, out, t.calib_images[:20], class_names=t.class_names, progress=None)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


@pytest.mark.parametrize("images, message", [
    (np.zeros((4, 32, 32, 3), np.float32), "uint8"),
    (np.zeros((4, 16, 16, 3), np.uint8), r"\(N, 32, 32, 3\)"),
    (np.zeros((32, 32, 3), np.uint8), r"\(N, 32, 32, 3\)"),
    (np.zeros((4, 32, 32, 1), np.uint8), r"\(N, 32, 32, 3\)"),
    (np.zeros((0, 32, 32, 3), np.uint8), "No calibration images"),
])
def test_convert_rejects_bad_calibration_images(tflite_trained_ravit, tmp_path, images, message):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=message):
        convert(tflite_trained_ravit.model, out, images, progress=None)
    assert list(tmp_path.iterdir()) == []


def test_convert_rejects_wrong_class_name_count_and_mode(tflite_trained_ravit, tmp_path):
    t = tflite_trained_ravit
    with pytest.raises(ValueError, match="3 class names for a 10-class model"):
        convert(t.model, tmp_path / "a", t.calib_images[:4], class_names=["a", "b", "c"], progress=None)
    with pytest.raises(ValueError, match="Unknown quantisation mode 'int4'"):
        convert(t.model, tmp_path / "b", t.calib_images[:4], options=ConversionOptions(mode="int4"),
                progress=None)
    assert list(tmp_path.iterdir()) == []


# The convert command -----------------------------------------------------------


@pytest.mark.slow
def test_cli_convert_saved_model(tflite_trained_ravit, tmp_path, capsys):
    from ravit_keras.cli import main

    model_path = tmp_path / "model.keras"
    tflite_trained_ravit.model.save(model_path)
    out = tmp_path / "tflite"
    rc = main(["convert", "--model", str(model_path), "--data", "generated", "--mode", "float32",
               "--calibration-images", "100", "--quantization-images", "20", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    manifest = load_manifest(out).to_dict()
    assert manifest["quantization"] == "float32"
    assert manifest["labels"] == tflite_trained_ravit.class_names
    assert "default thresholds" in capsys.readouterr().out
    # A second run without --overwrite refuses, with the CLI's exit code 2.
    assert main(["convert", "--model", str(model_path), "--data", "generated", "--mode", "float32",
                 "--calibration-images", "100", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


# LIT: a model with attention-free layers converts and schedules ---------------------------


@pytest.mark.parametrize("mode", ["float32", "int8"])
def test_model_with_mlp_layers_converts_and_schedules(tmp_path, mode):
    import keras

    from ravit_keras.config import get_config
    from ravit_keras.data import load_split
    from ravit_keras.model import RAViT

    keras.utils.set_random_seed(3)
    model = RAViT(get_config("tiny", layers="1-3", mlp_layers="0-2"))
    images, labels = load_split("generated", "train", num_examples=60).as_numpy()
    manifest = convert(model, tmp_path / mode, images, labels, options=ConversionOptions(mode=mode, num_calibration=30),
                       progress=None).to_dict()
    assert manifest["model"]["mlp_layers"] == "0-2"
    assert manifest["exits"][1]["macs"] == flops.branch_costs(model.ravit_config)[1].macs
    ops = builtin_op_names((tmp_path / mode / "branch_2.tflite").read_bytes())
    assert ops.count("SOFTMAX") == 1  # Only the last of its three layers attends.
    sched = RAViTScheduler(tmp_path / mode)
    keras_logits = model.predict(images[:20].astype("float32"), verbose=0)
    sub = np.stack([sched.all_exit_logits(img)[0][1] for img in images[:20]])
    agree = np.mean(sub.argmax(-1) == np.asarray(keras_logits["exit_2"]).argmax(-1))
    if mode == "float32":
        np.testing.assert_allclose(sub, keras_logits["exit_2"], atol=1e-4)
    else:
        assert agree >= 0.8
    report = sched.evaluate(images[:20], labels[:20])
    assert sum(report["exit_counts"]) == 20


# The fast int8 mode and the other modes (issue 11) ------------------------------------


def test_int8_is_one_xnnpack_partition_per_submodel(tflite_int8_folder):
    """LiteRT's op details after delegation: one XNNPACK partition per int8 submodel.

    Every op is inside it: matrix products, softmax, GELU and LayerNorm (float
    islands), the branch-1 downscale, and the uint8 inputs' requantisation (as
    DEQUANTIZE + QUANTIZE, which XNNPACK runs; it has no uint8 -> int8 kernel).
    """
    from ravit_keras.deploy.measurement.profiling import undelegated_ops

    for path in submodel_files(tflite_int8_folder):
        report = undelegated_ops(path)
        assert report["delegate_partitions"] == 1, (path.name, report)
        assert report["not_delegated"] == {}, (path.name, report["not_delegated"])
        # Integer matrix products, float islands where XNNPACK has no int8 kernel.
        ops = set(builtin_op_names(path.read_bytes()))
        assert {"FULLY_CONNECTED", "BATCH_MATMUL", "SOFTMAX", "GELU", "DEQUANTIZE"} <= ops


def test_int8_matrix_products_are_integer(tflite_int8_folder):
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    for path in submodel_files(tflite_int8_folder):
        model = flatbuffer_utils.read_model_from_bytearray(bytearray(path.read_bytes()))
        graph = model.subgraphs[0]
        for op in graph.operators:
            name = flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)
            if name in ("FULLY_CONNECTED", "BATCH_MATMUL", "CONV_2D"):
                assert graph.tensors[op.inputs[0]].type == schema.TensorType.INT8, (path.name, name)


@pytest.mark.parametrize("mode", ["int8", "float32"])
def test_export_graph_is_the_same_function(tflite_trained_ravit, mode):
    """The export graph (normalisation folded into the patch convolution; in int8 the
    average-pool downscale as a depthwise convolution) computes what Keras computes."""
    import keras

    from ravit_keras.deploy.export.graph import export_graph

    t = tflite_trained_ravit
    images = t.test_images[:8].astype(np.float32)
    cls = None
    for branch_model in t.model.branch_models():
        graph = export_graph(branch_model, mode)
        inputs = {"image": images} if cls is None else {"image": images, "cls_in": cls}
        want, got = branch_model(inputs), graph(inputs)
        for name in ("logits", "cls_out"):
            np.testing.assert_allclose(np.asarray(got[name]), np.asarray(want[name]), atol=1e-5)
        assert not any(isinstance(lay, keras.layers.Normalization) for lay in graph.layers)
        pools = [lay for lay in graph.layers if isinstance(lay, keras.layers.AveragePooling2D)]
        had_pool = any(isinstance(lay, keras.layers.AveragePooling2D) for lay in branch_model.layers)
        assert bool(pools) == (had_pool and mode != "int8")
        # The original keeps its own layers and weights.
        assert any(isinstance(lay, keras.layers.Normalization) for lay in branch_model.layers)
        cls = np.asarray(want["cls_out"])


def test_input_requantization_moves_into_xnnpack_with_the_same_results(tflite_trained_ravit, tmp_path):
    """The converter's uint8 -> int8 QUANTIZE of each input runs outside XNNPACK; the
    rewrite (DEQUANTIZE + QUANTIZE) puts it inside and gives bit-identical outputs."""
    from ai_edge_litert.interpreter import Interpreter

    from ravit_keras.deploy.export.convert import convert_branch
    from ravit_keras.deploy.export.flatbuffer import delegate_input_requantization
    from ravit_keras.deploy.export.graph import branch_float_inputs
    from ravit_keras.deploy.measurement.profiling import undelegated_ops

    t = tflite_trained_ravit
    k = len(t.model.branch_models()) - 1  # The last branch: pixels and a CLS token in.
    inputs = branch_float_inputs(t.model, t.calib_images[:50])[k]
    before = convert_branch(t.model.branch_models()[k], t.model.ravit_config, k == 0, "int8",
                            inputs, tmp_path / "saved", delegate_inputs=False)
    after, changed = delegate_input_requantization(before)
    assert changed == (1 if k == 0 else 2)
    assert delegate_input_requantization(after)[1] == 0
    reports = []
    for name, blob in (("before", before), ("after", after)):
        (tmp_path / f"{name}.tflite").write_bytes(blob)
        reports.append(undelegated_ops(tmp_path / f"{name}.tflite"))
    assert reports[0]["not_delegated"] == {"QUANTIZE": changed}
    assert reports[1]["not_delegated"] == {} and reports[1]["delegate_partitions"] == 1

    rng = np.random.default_rng(0)
    interpreters = [Interpreter(model_content=b, num_threads=1) for b in (before, after)]
    for it in interpreters:
        it.allocate_tensors()
    for _ in range(10):
        feeds = {d["name"]: rng.integers(0, 256, d["shape"]).astype(d["dtype"])
                 for d in interpreters[0].get_input_details()}
        outs = []
        for it in interpreters:
            for d in it.get_input_details():
                it.set_tensor(d["index"], feeds[d["name"]])
            it.invoke()
            outs.append({d["name"]: it.get_tensor(d["index"]).copy() for d in it.get_output_details()})
        for name in outs[0]:
            np.testing.assert_array_equal(outs[1][name], outs[0][name])


@pytest.mark.parametrize("mode, min_agreement", [("int8-full", 0.7), ("dynamic", 0.9), ("int16x8", 0.9)])
def test_every_mode_converts_and_matches_keras(tflite_trained_ravit, tmp_path, mode, min_agreement):
    """Each mode converts, records itself in the manifest and agrees with Keras per exit.

    Tolerance: top-1 agreement on 50 test images (int8-full quantises every
    activation of a 1-2 layer encoder, so near-ties may flip as in the int8 test;
    dynamic and int16x8 keep activations in float or 16 bits).
    """
    t = tflite_trained_ravit
    folder = tmp_path / mode
    manifest = convert(t.model, folder, t.calib_images, t.calib_labels,
                       options=ConversionOptions(mode=mode, num_calibration=100), progress=None).to_dict()
    assert manifest["quantization"] == mode
    want_dtype = "uint8" if mode == "int8-full" else "float32"
    assert manifest["image"]["dtype"] == want_dtype
    sched = RAViTScheduler(folder)
    keras_logits = [k[:N_FIDELITY] for k in t.keras_logits()]
    tfl = [np.stack(z) for z in zip(*(sched.all_exit_logits(img)[0] for img in t.test_images[:N_FIDELITY]))]
    for k, (q, f) in enumerate(zip(tfl, keras_logits)):
        agree = float((q.argmax(-1) == f.argmax(-1)).mean())
        assert agree >= min_agreement, f"{mode} exit {k + 1}: top-1 agreement {agree}"
