"""RAViT joint and branch models on toy configurations (tiny / tiny3 presets)."""

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from ravit_keras.config import get_config
from ravit_keras.model import (
    RAViT,
    build_branch_model,
    build_ravit,
    count_params,
    load_ravit,
)
from ravit_keras.train import compile_ravit

REPO = Path(__file__).resolve().parents[2]
KEY_BIAS = "/key/bias"


def _images(n=2, seed=0, size=32):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, size=(n, size, size, 3)).astype("float32")


def _labels(config, n=2, seed=0):
    y = np.random.default_rng(seed).integers(0, config.num_classes, size=n).astype("int32")
    return {name: y for name in config.exit_names}


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _model(name="tiny", seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    return RAViT(get_config(name, **kwargs))


@pytest.fixture(scope="module")
def tiny_model():
    return _model("tiny", layers="1-2")


def _ce(labels, logits):
    return keras.ops.mean(
        keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))


# Outputs --------------------------------------------------------------------


@pytest.mark.parametrize("name, spec", [("tiny", "1-2"), ("tiny", "0-2"), ("tiny3", "1-1-2"),
                                        ("tiny3", "1-0-2"), ("tiny3", "0-3-0")])
def test_output_dict_keys_and_shapes(name, spec):
    model = _model(name, layers=spec)
    config = model.ravit_config
    out = model(_images())
    assert isinstance(out, dict)
    assert tuple(sorted(out)) == tuple(sorted(config.exit_names))
    for key in config.exit_names:
        assert tuple(out[key].shape) == (2, config.num_classes)
    assert [m.name for m in model.branch_models()] == [f"branch_{b + 1}" for b in config.exit_branches]
    # predict() takes the same path as __call__.
    predicted = model.predict(_images(), verbose=0)
    for key in config.exit_names:
        np.testing.assert_allclose(predicted[key], _np(out[key]), rtol=1e-5, atol=1e-5)


def test_no_nan_on_random_and_extreme_inputs(tiny_model):
    for images in (_images(4, seed=3), np.zeros((2, 32, 32, 3), "float32"),
                   np.full((2, 32, 32, 3), 255.0, "float32")):
        for training in (False, True):
            out = tiny_model(images, training=training)
            for logits in out.values():
                assert np.all(np.isfinite(_np(logits)))


def test_no_nan_with_dropout_in_training():
    model = _model("tiny3", dropout=0.2)
    out = model(_images(4), training=True)
    assert all(np.all(np.isfinite(_np(v))) for v in out.values())


# Branch models share the joint model's weights --------------------------------


def test_branch_models_share_weights(tiny_model):
    joint_ids = {id(v) for v in tiny_model.weights}
    branch_ids = [{id(v) for v in b.weights} for b in tiny_model.branch_models()]
    assert all(ids <= joint_ids for ids in branch_ids)
    assert set().union(*branch_ids) == joint_ids  # Nothing outside the branches.
    assert not branch_ids[0] & branch_ids[1]  # Each branch has its own weights.
    assert count_params(tiny_model) == sum(count_params(b) for b in tiny_model.branch_models())


def test_modifying_a_branch_variable_changes_the_joint_model():
    model = _model("tiny")
    x = _images()
    before = {k: _np(v) for k, v in model(x).items()}
    bias = model.branch_model(0).get_layer("exit_head").bias
    bias.assign(bias + 1.0)
    after = {k: _np(v) for k, v in model(x).items()}
    # The first exit's head is not on the CLS path: only exit_1 moves, by exactly +1.
    np.testing.assert_allclose(after["exit_1"], before["exit_1"] + 1.0, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(after["exit_2"], before["exit_2"])
    # A weight on the CLS path of branch 1 moves both exits.
    token = model.branch_model(0).get_layer("class_token").token
    # (Not a constant shift: every LayerNorm would remove that.)
    token.assign(token + np.random.default_rng(1).standard_normal(token.shape).astype("float32"))
    moved = {k: _np(v) for k, v in model(x).items()}
    assert not np.allclose(moved["exit_1"], after["exit_1"])
    assert not np.allclose(moved["exit_2"], after["exit_2"])


# The CLS hand-off ---------------------------------------------------------------


def test_last_exit_gradient_reaches_first_branch(tiny_model):
    config = tiny_model.ravit_config
    x, y = _images(4), _labels(config, 4)
    first = tiny_model.branch_model(0)
    with tf.GradientTape() as tape:
        loss = _ce(y["exit_2"], tiny_model(x, training=True)["exit_2"])
    grads = dict(zip([v.path for v in first.trainable_variables],
                     tape.gradient(loss, first.trainable_variables)))
    on_path = [p for p in grads if not p.startswith(("exit_norm/", "exit_head/"))
               and not p.endswith(KEY_BIAS)]
    assert len(on_path) == len(grads) - 5  # All but the exit head, exit norm and key bias.
    for path in on_path:
        assert grads[path] is not None, path
        assert np.any(_np(grads[path]) != 0), path
    # Branch 1's own exit head is not on the way to exit 2.
    for path in ("exit_head/kernel", "exit_head/bias", "exit_norm/gamma", "exit_norm/beta"):
        assert grads[path] is None or not np.any(_np(grads[path])), path


def test_second_branch_uses_the_given_cls(tiny_model):
    second = tiny_model.branch_model(1)
    assert sorted(second.input) == ["cls_in", "image"]
    x = _images()
    rng = np.random.default_rng(5)
    c1 = rng.standard_normal((2, 32)).astype("float32")
    c2 = rng.standard_normal((2, 32)).astype("float32")
    out1 = second({"image": x, "cls_in": c1})
    out2 = second({"image": x, "cls_in": c2})
    assert not np.allclose(_np(out1["logits"]), _np(out2["logits"]))
    assert not np.allclose(_np(out1["cls_out"]), _np(out2["cls_out"]))


def test_joint_model_equals_chained_branches(tiny_model):
    """Running branch models one by one, handing cls_out on, is the joint model."""
    x = keras.ops.convert_to_tensor(_images(3, seed=7))
    first, second = tiny_model.branch_models()
    assert sorted(first.input) == ["image"]
    o1 = first({"image": x})
    o2 = second({"image": x, "cls_in": o1["cls_out"]})
    joint = tiny_model(x)
    np.testing.assert_allclose(_np(joint["exit_1"]), _np(o1["logits"]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_np(joint["exit_2"]), _np(o2["logits"]), rtol=1e-5, atol=1e-5)
    for out in (o1, o2):
        assert tuple(out["cls_out"].shape) == (3, 32)


# Every parameter receives a gradient (timm) -------------------------------------


@pytest.mark.parametrize("name, spec", [("tiny", "1-2"), ("tiny3", "1-0-2"), ("tiny3", "1-1-2")])
def test_every_parameter_gets_a_gradient_from_the_total_loss(name, spec):
    model = compile_ravit(_model(name, layers=spec), jit_compile=False)
    config = model.ravit_config
    x, y = _images(4, seed=1), _labels(config, 4, seed=1)
    variables = model.trainable_variables
    assert len(variables) == len(model.weights)  # Normalisation constants are not variables.
    with tf.GradientTape() as tape:
        loss = model.compute_loss(x=x, y=y, y_pred=model(x, training=True))
    grads = tape.gradient(loss, variables)
    heads = 0
    for branch in model.branch_models():
        for v in branch.trainable_variables:
            g = grads[[id(w) for w in variables].index(id(v))]
            label = f"{branch.name}/{v.path}"
            assert g is not None, label
            g = _np(g)
            assert np.all(np.isfinite(g)), label
            if v.path.endswith(KEY_BIAS):
                # Softmax is shift-invariant along the keys, so q·b_k cancels: the key
                # bias gets an exactly-zero gradient in exact arithmetic (as in any ViT).
                assert np.max(np.abs(g)) < 1e-7, label
            else:
                assert np.any(g != 0), label
            heads += v.path.startswith("exit_head/")
    assert heads == 2 * len(config.exit_names)  # Kernel and bias of every exit head.


# Skipped branches ----------------------------------------------------------------


def test_skipped_first_branch_0_2():
    model = _model("tiny", layers="0-2")
    assert model.ravit_config.exit_names == ("exit_2",)
    assert [m.name for m in model.branch_models()] == ["branch_2"]
    with pytest.raises(ValueError):
        model.get_layer("branch_1")
    only = model.branch_model(1)
    assert sorted(only.input) == ["image"]  # It starts from a learned CLS token.
    assert not any(layer.name.startswith("resize") for layer in only.layers)
    assert tuple(only.get_layer("position_embedding").embedding.shape) == (1, 65, 32)
    with pytest.raises(ValueError, match=r"Branch 1 does not run in '0-2'; running branches: \[2\]"):
        model.branch_model(0)


def test_skipped_middle_branch_passes_cls_through():
    model = _model("tiny3", layers="1-0-2")
    config = model.ravit_config
    assert config.exit_names == ("exit_1", "exit_3")
    first, last = model.branch_models()
    assert (first.name, last.name) == ("branch_1", "branch_3")
    with pytest.raises(ValueError, match=r"Branch 2 does not run in '1-0-2'"):
        model.branch_model(1)
    with pytest.raises(ValueError):
        model.get_layer("branch_2")
    # Branch 1 at 8x8 (5 tokens), branch 3 at 32x32 (65 tokens).
    assert tuple(first.get_layer("position_embedding").embedding.shape) == (1, 5, 32)
    assert tuple(last.get_layer("position_embedding").embedding.shape) == (1, 65, 32)
    # Branch 3 gets branch 1's CLS unchanged.
    x = keras.ops.convert_to_tensor(_images(3))
    o1 = first({"image": x})
    o3 = last({"image": x, "cls_in": o1["cls_out"]})
    joint = model(x)
    np.testing.assert_allclose(_np(joint["exit_3"]), _np(o3["logits"]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("branch", [-1, 3, 7])
def test_branch_model_out_of_range(tiny_model, branch):
    with pytest.raises(ValueError, match=r"does not run"):
        tiny_model.branch_model(branch)


def test_build_branch_model_errors():
    config = get_config("tiny3", layers="1-0-2")
    with pytest.raises(ValueError, match=r"Branch 2 has 0 layers in '1-0-2'"):
        build_branch_model(config, 1)
    with pytest.raises(ValueError, match=r"Branch 3 out of range for 3 branches"):
        build_branch_model(config, 3)


# Scale factors: each branch sees its own resolution --------------------------------


@pytest.mark.parametrize(
    "name, scale, sizes, kinds",
    [
        ("tiny", 2.0, (16,), ("AveragePooling2D",)),
        ("tiny", 1.5, (20,), ("Resizing",)),
        ("tiny", 1.2, (28,), ("Resizing",)),
        ("tiny3", 1.5, (16, 20), ("AveragePooling2D", "Resizing")),
    ],
)
def test_scales_build_and_run(name, scale, sizes, kinds):
    model = _model(name, scale=scale)
    config = model.ravit_config
    for branch, (size, kind) in enumerate(zip(sizes, kinds)):
        assert config.branch_image_sizes[branch] == (size, size)
        bm = model.branch_model(branch)
        resize = bm.get_layer(f"resize_{size}x{size}")
        assert type(resize).__name__ == kind
        assert tuple(resize.output.shape) == (None, size, size, 3)
        tokens = (size // 4) ** 2 + 1
        assert tuple(bm.get_layer("position_embedding").embedding.shape) == (1, tokens, 32)
    last = model.branch_model(config.num_branches - 1)
    assert not any(layer.name.startswith("resize") for layer in last.layers)
    out = model(_images())
    assert all(tuple(v.shape) == (2, 10) and np.all(np.isfinite(_np(v))) for v in out.values())


def test_scale_2_resize_is_an_exact_area_average(tiny_model):
    first = tiny_model.branch_model(0)
    resized = keras.Model(first.inputs, first.get_layer("resize_16x16").output)
    x = _images()
    expected = x.reshape(2, 16, 2, 16, 2, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(_np(resized({"image": x})), expected, rtol=1e-5, atol=1e-3)


def test_normalisation_uses_config_mean_and_std(tiny_model):
    config = tiny_model.ravit_config
    last = tiny_model.branch_model(1)
    norm = keras.Model(last.inputs, last.get_layer("normalization").output)
    x = _images()
    c = np.random.default_rng(0).standard_normal((2, 32)).astype("float32")
    expected = (x / 255.0 - np.array(config.mean)) / np.array(config.std)
    np.testing.assert_allclose(_np(norm({"image": x, "cls_in": c})), expected, rtol=1e-4, atol=1e-4)


# Saving ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, kwargs",
    [("tiny", {}), ("tiny3", dict(layers="1-0-2", scale=1.5, exit_weights=(0.3, 0.7)))],
)
def test_keras_file_round_trip(tmp_path, name, kwargs):
    model = _model(name, **kwargs)
    x = _images(3, seed=9)
    expected = {k: _np(v) for k, v in model(x).items()}
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = load_ravit(str(path))
    assert isinstance(loaded, RAViT)
    assert loaded.ravit_config == model.ravit_config
    assert loaded.name == model.name
    got = loaded(x)
    assert sorted(got) == sorted(expected)
    for k in expected:
        np.testing.assert_allclose(_np(got[k]), expected[k], rtol=0, atol=1e-6)
    # The loaded model's branches still share its weights.
    first = loaded.branch_models()[0]
    assert {id(v) for v in first.weights} <= {id(v) for v in loaded.weights}


def test_get_config_from_config(tiny_model):
    clone = RAViT.from_config(tiny_model.get_config())
    assert clone.ravit_config == tiny_model.ravit_config
    assert count_params(clone) == count_params(tiny_model)
    assert isinstance(build_ravit(tiny_model.ravit_config), RAViT)
    assert RAViT(tiny_model.ravit_config.to_dict()).ravit_config == tiny_model.ravit_config


def test_load_ravit_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"No model file (or run folder )?at"):
        load_ravit(str(tmp_path / "missing.keras"))
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    path = tmp_path / "other.keras"
    other.save(path)
    with pytest.raises(ValueError, match=r"holds a Sequential, not a RAViT model"):
        load_ravit(str(path))


# Loss weights -----------------------------------------------------------------------


def _exit_head_grads(model, x, y):
    variables = [model.branch_model(b).get_layer("exit_head").kernel
                 for b in model.ravit_config.exit_branches]
    block = model.branch_model(0).get_layer("transformer_block_1").mlp_output.kernel
    with tf.GradientTape() as tape:
        loss = model.compute_loss(x=x, y=y, y_pred=model(x, training=True))
    grads = tape.gradient(loss, [*variables, block])
    return [None if g is None else _np(g) for g in grads], float(loss)


def test_zero_exit_weight_gives_no_gradient_to_that_head():
    model = compile_ravit(_model("tiny", exit_weights=(0, 1)), jit_compile=False)
    x, y = _images(4), _labels(model.ravit_config, 4)
    (head_1, head_2, block_1), _ = _exit_head_grads(model, x, y)
    assert head_1 is None or not np.any(head_1)
    assert np.any(head_2 != 0)
    assert np.any(block_1 != 0)  # Branch 1 is still trained through the CLS hand-off.


def test_total_loss_is_weighted_sum_of_exit_losses():
    model = compile_ravit(_model("tiny", exit_weights=(0.3, 0.7)), jit_compile=False)
    x, y = _images(4), _labels(model.ravit_config, 4)
    out = model(x)
    ce1, ce2 = float(_ce(y["exit_1"], out["exit_1"])), float(_ce(y["exit_2"], out["exit_2"]))
    total = float(model.compute_loss(x=x, y=y, y_pred=out))
    assert total == pytest.approx(0.3 * ce1 + 0.7 * ce2, rel=1e-5)
    # Equal default weights: plain sum.
    model = compile_ravit(_model("tiny"), jit_compile=False)
    out = model(x)
    ce1, ce2 = float(_ce(y["exit_1"], out["exit_1"])), float(_ce(y["exit_2"], out["exit_2"]))
    assert float(model.compute_loss(x=x, y=y, y_pred=out)) == pytest.approx(ce1 + ce2, rel=1e-5)


# Other backends ------------------------------------------------------------------------


def test_jax_backend_forward_pass():
    pytest.importorskip("jax")
    code = (
        "import numpy as np\n"
        "from ravit_keras.config import get_config\n"
        "from ravit_keras.model import RAViT\n"
        "import keras\n"
        "assert keras.backend.backend() == 'jax'\n"
        "m = RAViT(get_config('tiny', layers='1-2'))\n"
        "out = m(np.random.rand(2, 32, 32, 3).astype('float32') * 255)\n"
        "assert sorted(out) == ['exit_1', 'exit_2']\n"
        "assert all(v.shape == (2, 10) and np.isfinite(np.asarray(v)).all() for v in out.values())\n"
        "print('ok')\n"
    )
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ok" in result.stdout


# LIT: attention-free leading layers ---------------------------------------------------


def test_mlp_layers_build_mlp_blocks_first_and_keep_attention_last():
    model = _model("tiny3", layers="2-0-3", mlp_layers="1-0-2")
    names = [[layer.name for layer in b.layers if "block" in layer.name] for b in model.branch_models()]
    assert names == [["mlp_block_1", "transformer_block_2"],
                     ["mlp_block_1", "mlp_block_2", "transformer_block_3"]]
    assert model.ravit_config.to_dict()["mlp_layers"] == "1-0-2"
    assert "mlp_layers" not in get_config("tiny3", layers="2-0-3").to_dict()  # Unused: left out.
    with pytest.raises(ValueError, match="last layer keeps attention"):
        get_config("tiny", layers="1-2", mlp_layers="1-0")
    with pytest.raises(ValueError, match="2 branches"):
        get_config("tiny", layers="1-2", mlp_layers="0-0-1")


def test_cls_handoff_carries_gradient_through_mlp_blocks():
    model = _model("tiny", layers="2-2", mlp_layers="1-1")
    config = model.ravit_config
    x, y = _images(4), _labels(config, 4)
    first = model.branch_model(0)
    with tf.GradientTape() as tape:
        loss = _ce(y["exit_2"], model(x, training=True)["exit_2"])
    grads = dict(zip([v.path for v in first.trainable_variables], tape.gradient(loss, first.trainable_variables)))
    mlp = [p for p in grads if p.startswith("mlp_block_1/")]
    assert len(mlp) == 6  # Its norm and two dense layers.
    for path in mlp:
        assert grads[path] is not None and np.any(_np(grads[path]) != 0), path


def test_model_with_mlp_layers_saves_and_reloads(tmp_path):
    model = _model("tiny", layers="1-2", mlp_layers="0-1")
    x = _images(2)
    path = tmp_path / "lit.keras"
    model.save(path)
    again = load_ravit(str(path))
    assert again.ravit_config == model.ravit_config
    for name in model.ravit_config.exit_names:
        np.testing.assert_allclose(_np(again(x)[name]), _np(model(x)[name]), rtol=1e-6, atol=1e-6)
