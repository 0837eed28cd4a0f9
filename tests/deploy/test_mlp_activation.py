"""An integer-friendly RAViT (issue 26): ReLU / ReLU6 MLPs through the converter and the scheduler.

In ``int8`` mode GELU is a float island (DEQUANTIZE, GELU, QUANTIZE between the two MLP
layers); ReLU and ReLU6 must instead end up as the first MLP layer's fused activation:
no RELU/RELU6 op of their own, no QUANTIZE/DEQUANTIZE around them, the hidden
FULLY_CONNECTED feeding the output one directly, and still ONE XNNPACK partition per
submodel. The converter does this without any change (the TFLite converter fuses a
Dense layer's ReLU into its FULLY_CONNECTED, and only SOFTMAX, GELU and LayerNorm are
on the int8 deny lists); these tests keep it that way.

The fidelity tests use the conftest's trained tiny model recipe with ReLU MLPs, and the
tolerances of ``test_convert.py``. (The golden fixture's model, with exit heads fitted in
closed form on untrained features, is no fidelity model: its heads amplify any int8
error, GELU and ReLU alike, so Keras agreement is meaningless there.)
"""

import numpy as np
import pytest

from ravit_keras import exits
from ravit_keras.deploy.export.convert import ConversionOptions, convert
from ravit_keras.deploy.export.flatbuffer import builtin_op_names
from ravit_keras.deploy.runtime.scheduler import RAViTScheduler
from ravit_keras.model import flops
from tests.deploy.helpers import assert_int8_logits_close, submodel_files

N_FIDELITY = 50


def fully_connected_activations(tflite: bytes) -> list[dict]:
    """Every FULLY_CONNECTED: its output tensor's name, fused activation and consumer ops."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    activation_names = {v: k for k, v in vars(schema.ActivationFunctionType).items() if not k.startswith("_")}
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    graph = model.subgraphs[0]
    name = lambda op: flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)  # noqa: E731
    out = []
    for op in graph.operators:
        if name(op) != "FULLY_CONNECTED":
            continue
        tensor = int(op.outputs[0])
        out.append({
            "output": graph.tensors[tensor].name.decode(),
            "type": graph.tensors[tensor].type,
            "units": int(graph.tensors[tensor].shape[-1]),
            "activation": activation_names[op.builtinOptions.fusedActivationFunction],
            "consumers": [name(c) for c in graph.operators if tensor in [int(t) for t in c.inputs]],
        })
    return out


def _hidden_layers(tflite: bytes, mlp_dim: int = 64) -> list[dict]:
    """The MLPs' first layers (``mlp_hidden``): the fully-connected ops with ``mlp_dim``
    outputs (the tiny preset's h = 64; d = 32, 10 classes). Found by shape, as the
    converter names a fused tensor after any of its locations (often the LayerNorm
    whose scale it folded in)."""
    return [fc for fc in fully_connected_activations(tflite) if fc["units"] == mlp_dim]


# Models and conversions, built once per module ------------------------------------------


def _train_tiny(activation: str):
    """The conftest's ``tflite_trained_ravit`` recipe (tiny "1-2", 10 epochs on 1500
    generated images, seed 0) with ``activation`` MLPs, and its calibration/test images."""
    import keras

    from ravit_keras.config import get_config
    from ravit_keras.data import load_split, make_pipeline
    from ravit_keras.model import build_ravit
    from ravit_keras.train import compile_ravit, make_optimizer

    keras.utils.set_random_seed(0)
    config = get_config("tiny", layers="1-2", mlp_activation=activation)
    model = build_ravit(config)
    train = load_split("generated", "train", num_examples=1500, num_classes=config.num_classes)
    epochs, batch = 10, 64
    steps = train.num_examples // batch
    compile_ravit(model, make_optimizer(2e-3, 0.05, epochs * steps, steps), jit_compile=False)
    model.fit(make_pipeline(train, config, batch, training=True), epochs=epochs, verbose=0)
    calib_x, calib_y = train.as_numpy(400)
    test = load_split("generated", "test", num_examples=N_FIDELITY, num_classes=config.num_classes)
    return model, calib_x, calib_y, test.as_numpy()[0], list(train.class_names)


@pytest.fixture(scope="module")
def trained_relu():
    """(model, calibration images, labels, test images, class names) of a trained ReLU model."""
    return _train_tiny("relu")


@pytest.fixture(scope="module")
def converted(trained_relu, tmp_path_factory):
    """``converted(activation, mode, mlp_layers=None, untrained=False)`` -> (Keras model, folder), cached.

    ``("relu", mode)`` is the trained ReLU model; any other combination (or
    ``untrained=True``) a seeded untrained one (for the graph's structure only).
    """
    import keras

    from ravit_keras.config import get_config
    from ravit_keras.model import RAViT

    _, calib_x, calib_y, _, names = trained_relu
    models, folders = {("relu", None, False): trained_relu[0]}, {}

    def get(activation, mode, mlp_layers=None, untrained=False):
        key = (activation, mlp_layers, untrained or activation != "relu" or mlp_layers is not None)
        if key not in models:
            keras.utils.set_random_seed(0)
            models[key] = RAViT(get_config("tiny", layers="1-2", mlp_layers=mlp_layers, mlp_activation=activation))
        if (key, mode) not in folders:
            folder = tmp_path_factory.mktemp(f"{activation}_{mode}") / "model"
            convert(models[key], folder, calib_x, calib_y, class_names=names,
                    options=ConversionOptions(mode=mode, num_calibration=100), progress=None)
            folders[key, mode] = folder
        return models[key], folders[key, mode]

    return get


def _keras_logits(model, images):
    from ravit_keras.evaluation import predict_exit_logits

    logits, _ = predict_exit_logits(model, images.astype("float32"))
    return [np.asarray(z)[: len(images)] for z in logits]


def _submodel_logits(folder, images):
    sched = RAViTScheduler(folder)
    return sched, [np.stack(z) for z in zip(*(sched.all_exit_logits(im)[0] for im in images))]


# int8: the activation is fused into the fully-connected layer ---------------------------------


@pytest.mark.parametrize("activation, fused", [("relu", "RELU"), ("relu6", "RELU6")])
@pytest.mark.parametrize("mlp_layers", [None, "0-1"], ids=["encoder", "lit"])
def test_int8_fuses_the_activation_into_the_fully_connected_layer(converted, activation, fused, mlp_layers):
    from tensorflow.lite.python import schema_py_generated as schema

    from ravit_keras.deploy.measurement.profiling import undelegated_ops

    model, folder = converted(activation, "int8", mlp_layers)
    config = model.ravit_config
    for k, path in enumerate(submodel_files(folder)):
        tflite = path.read_bytes()
        ops = builtin_op_names(tflite)
        assert not {"RELU", "RELU6", "RELU_N1_TO_1", "GELU"} & set(ops), (path.name, ops)
        hidden = _hidden_layers(tflite)
        # One MLP per layer of the branch (encoder layers and attention-free LIT blocks).
        assert len(hidden) == config.layers[config.exit_branches[k]], (path.name, hidden)
        for fc in hidden:
            assert fc["activation"] == fused, (path.name, fc)
            assert fc["type"] == schema.TensorType.INT8, (path.name, fc)
            # Straight into the MLP's second layer: no DEQUANTIZE/QUANTIZE pair around it.
            assert fc["consumers"] == ["FULLY_CONNECTED"], (path.name, fc)
        # No other fully-connected layer got an activation it should not have.
        others = [fc for fc in fully_connected_activations(tflite) if fc not in hidden]
        assert all(fc["activation"] == "NONE" for fc in others), (path.name, others)
        report = undelegated_ops(path)
        assert report["delegate_partitions"] == 1, (path.name, report)
        assert report["not_delegated"] == {}, (path.name, report["not_delegated"])


def test_gelu_stays_a_float_island_for_contrast(converted):
    """The test above is not vacuous: with GELU the same layer is unfused and leaves int8."""
    _, folder = converted("gelu", "int8")
    for path in submodel_files(folder):
        tflite = path.read_bytes()
        hidden = _hidden_layers(tflite)
        assert hidden and all(fc["activation"] == "NONE" and fc["consumers"] == ["DEQUANTIZE"] for fc in hidden)
        assert builtin_op_names(tflite).count("GELU") == len(hidden)


def test_relu_removes_the_gelu_islands_quantize_steps(converted):
    """Per MLP, the ReLU graph has one DEQUANTIZE and one QUANTIZE fewer than the GELU one
    (same seeded weights: a trained model can have other ops, e.g. a LayerNorm's affine
    part that the converter could not fold into the next layer)."""
    _, relu = converted("relu", "int8", untrained=True)
    _, gelu = converted("gelu", "int8")
    for a, b in zip(submodel_files(relu), submodel_files(gelu)):
        ra, rb = builtin_op_names(a.read_bytes()), builtin_op_names(b.read_bytes())
        mlps = rb.count("GELU")
        assert mlps > 0
        for op in ("QUANTIZE", "DEQUANTIZE"):
            assert ra.count(op) == rb.count(op) - mlps, (a.name, op, ra.count(op), rb.count(op))
        assert len(ra) == len(rb) - 3 * mlps


# Every mode: outputs match Keras ----------------------------------------------------------------


def test_float32_relu_submodels_equal_keras(converted, trained_relu):
    model, folder = converted("relu", "float32")
    images = trained_relu[3]
    want = _keras_logits(model, images)
    _, got = _submodel_logits(folder, images)
    for k, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-4, err_msg=f"exit {k + 1}")
    for path in submodel_files(folder):
        hidden = _hidden_layers(path.read_bytes())
        assert hidden and all(fc["activation"] == "RELU" for fc in hidden)


def test_int8_relu_submodels_close_to_keras(converted, trained_relu):
    """The tolerances of ``test_convert.test_int8_submodels_close_to_keras``."""
    model, folder = converted("relu", "int8")
    images = trained_relu[3]
    want = _keras_logits(model, images)
    sched, got = _submodel_logits(folder, images)
    assert_int8_logits_close(sched, got, want)


@pytest.mark.parametrize("mode, min_agreement", [("int8-full", 0.7), ("dynamic", 0.9)])
def test_other_modes_convert_a_relu_model_and_match_keras(converted, trained_relu, mode, min_agreement):
    """The tolerances of ``test_convert.test_every_mode_converts_and_matches_keras``."""
    model, folder = converted("relu", mode)
    sched = RAViTScheduler(folder)
    assert sched.manifest.to_dict()["quantization"] == mode
    assert sched.manifest.to_dict()["model"]["mlp_activation"] == "relu"
    assert sched.manifest.to_dict()["exits"][-1]["cumulative_macs"] == flops.model_macs(model.ravit_config)
    images = trained_relu[3]
    want = _keras_logits(model, images)
    _, got = _submodel_logits(folder, images)
    for k, (q, f) in enumerate(zip(got, want)):
        agree = float((q.argmax(-1) == f.argmax(-1)).mean())
        assert agree >= min_agreement, f"{mode} exit {k + 1}: top-1 agreement {agree}"
    for path in submodel_files(folder):
        ops = builtin_op_names(path.read_bytes())
        assert not {"RELU", "GELU"} & set(ops), (mode, path.name, ops)
        assert all(fc["activation"] == "RELU" for fc in _hidden_layers(path.read_bytes()))


# The scheduler on a ReLU model ------------------------------------------------------------------


def test_float32_relu_scheduler_routes_like_keras(converted, trained_relu):
    """The rule of ``test_convert.test_float32_routing_equals_keras_route``."""
    model, folder = converted("relu", "float32")
    images = trained_relu[3]
    keras_logits = _keras_logits(model, images)
    u1 = exits.entropy(keras_logits[0])
    sched = RAViTScheduler(folder)
    seen = set()
    for q in (0.2, 0.5, 0.8):
        tau = float(np.quantile(u1, q)) + 1e-7
        routing = exits.route(keras_logits, tau)
        for i, img in enumerate(images):
            c = sched.classify(img, thresholds=tau)
            if (c.exit_index, c.label) != (routing.exit_index[i], routing.predictions[i]):
                assert abs(routing.entropies[i, 0] - tau) < 1e-5, (tau, i, c.exit_index, routing.exit_index[i])
            seen.add(c.exit_index)
    assert seen == {0, 1}


def test_int8_relu_scheduler_evaluates_and_its_thresholds_hold(converted, trained_relu):
    """End to end through the int8 scheduler: every image answered, the default thresholds
    (calibrated on these submodels) lose at most the allowed accuracy on the calibration images."""
    _, folder = converted("relu", "int8")
    _, calib_x, calib_y, _, _ = trained_relu
    sched = RAViTScheduler(folder)
    report = sched.evaluate(calib_x, calib_y)
    assert sum(report["exit_counts"]) == len(calib_x)
    costs = [e["cumulative_macs"] for e in sched.manifest.to_dict()["exits"]]
    logits = [np.stack(z) for z in zip(*(sched.all_exit_logits(im)[0] for im in calib_x))]
    never = exits.evaluate_exits(logits, calib_y, 0.0, costs)
    chosen = exits.evaluate_exits(logits, calib_y, sched.manifest.to_dict()["default_thresholds"], costs)
    assert chosen["accuracy"] >= never["accuracy"] - ConversionOptions().default_max_accuracy_drop - 1e-12
