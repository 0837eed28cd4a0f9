"""``mlp_activation`` (issue 26): GELU (the paper's, the default), ReLU and ReLU6 in every
MLP of a RAViT: layer configs, the model configuration, the cost model and .keras files.

GELU stays the default everywhere and is left out of ``RAViTConfig.to_dict``, so configs,
manifests and .keras files written before the option existed load unchanged.
"""

import keras
import numpy as np
import pytest

from ravit_keras.config import MLP_ACTIVATIONS, RAViTConfig, get_config
from ravit_keras.model import RAViT, count_params, flops, load_ravit
from ravit_keras.model.layers import MLPBlock, TransformerEncoderBlock

D = 16
RNG = np.random.default_rng(26)
TOKENS = RNG.standard_normal((2, 5, D)).astype("float32")

BLOCKS = {
    "encoder": lambda **kw: TransformerEncoderBlock(hidden_dim=D, num_heads=2, mlp_dim=32, **kw),
    "encoder_cls_only": lambda **kw: TransformerEncoderBlock(hidden_dim=D, num_heads=2, mlp_dim=32,
                                                             cls_only=True, **kw),
    "mlp": lambda **kw: MLPBlock(hidden_dim=D, mlp_dim=32, **kw),
}
REFERENCE = {  # NumPy activation applied by the block's hidden layer.
    "gelu": None,  # Keras's GELU (tanh-free erf form); checked by comparing with keras.activations.
    "relu": lambda x: np.maximum(x, 0.0),
    "relu6": lambda x: np.clip(x, 0.0, 6.0),
}


def _np(x):
    return keras.ops.convert_to_numpy(x)


# Layers -------------------------------------------------------------------------------


def test_the_activations_are_the_three_named():
    assert MLP_ACTIVATIONS == ("gelu", "relu", "relu6")


@pytest.mark.parametrize("activation", MLP_ACTIVATIONS)
@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_block_config_round_trips_with_each_activation(block, activation):
    layer = BLOCKS[block](mlp_activation=activation, name=f"{block}_{activation}")
    out = _np(layer(TOKENS))
    config = layer.get_config()
    assert config["mlp_activation"] == activation
    assert layer.mlp_hidden.activation is keras.activations.get(activation)

    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    clone(TOKENS)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(_np(clone(TOKENS)), out)

    # Registered serialisation, what .keras files store.
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert revived.mlp_activation == activation
    revived(TOKENS)
    revived.set_weights(layer.get_weights())
    np.testing.assert_array_equal(_np(revived(TOKENS)), out)


@pytest.mark.parametrize("activation", ["relu", "relu6"])
@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_block_applies_the_activation_to_its_hidden_layer(block, activation):
    """The hidden layer's output is the activation of its pre-activation (so no GELU left)."""
    layer = BLOCKS[block](mlp_activation=activation)
    layer(TOKENS)
    x = RNG.standard_normal((3, D)).astype("float32") * 10  # Wide enough to reach 6 for ReLU6.
    layer.mlp_hidden.activation = keras.activations.linear
    pre = _np(layer.mlp_hidden(x))
    layer.mlp_hidden.activation = keras.activations.get(activation)
    np.testing.assert_allclose(_np(layer.mlp_hidden(x)), REFERENCE[activation](pre), rtol=0, atol=1e-6)


@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_block_saved_with_the_default_reloads_as_gelu(block):
    """A block serialised with the default, and one serialised before the option existed
    (its config without ``mlp_activation``), come back as GELU blocks computing the same."""
    layer = BLOCKS[block]()
    out = _np(layer(TOKENS))
    assert layer.mlp_activation == "gelu"
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["config"]["mlp_activation"] == "gelu"
    old = {**serialized, "config": {k: v for k, v in serialized["config"].items() if k != "mlp_activation"}}
    for data in (serialized, old):
        revived = keras.saving.deserialize_keras_object(data)
        assert revived.mlp_activation == "gelu"
        assert revived.mlp_hidden.activation is keras.activations.gelu
        revived(TOKENS)
        revived.set_weights(layer.get_weights())
        np.testing.assert_array_equal(_np(revived(TOKENS)), out)


@pytest.mark.parametrize("block", sorted(BLOCKS))
@pytest.mark.parametrize("bad", ["swish", "GELU", "leaky_relu", ""])
def test_block_refuses_an_unknown_activation_naming_it(block, bad):
    with pytest.raises(ValueError, match=rf"mlp_activation {bad!r} is not supported; choose from gelu, relu, relu6"):
        BLOCKS[block](mlp_activation=bad)


# RAViTConfig --------------------------------------------------------------------------


@pytest.mark.parametrize("activation", MLP_ACTIVATIONS)
def test_config_round_trips_and_leaves_gelu_out(activation):
    config = get_config("cifar10", layers="1-3", mlp_activation=activation)
    d = config.to_dict()
    if activation == "gelu":
        assert "mlp_activation" not in d  # Old configs and manifests stay byte-identical.
        assert d == get_config("cifar10", layers="1-3").to_dict()
    else:
        assert d["mlp_activation"] == activation
    assert RAViTConfig.from_dict(d) == config
    assert RAViTConfig.from_json(config.to_json()) == config


def test_config_without_the_field_is_gelu_and_an_unknown_one_is_refused():
    d = get_config("tiny", layers="1-2").to_dict()
    assert "mlp_activation" not in d
    assert RAViTConfig.from_dict(d).mlp_activation == "gelu"
    with pytest.raises(ValueError, match=r"mlp_activation 'tanh' is not supported; choose from gelu, relu, relu6"):
        RAViTConfig.from_dict({**d, "mlp_activation": "tanh"})


@pytest.mark.parametrize("changes", [dict(layers="1-3"), dict(layers="1-3", mlp_layers="0-1"),
                                     dict(layers="1-3", mlp_layers="0-2"), dict(layers="0-4")])
def test_cost_model_is_the_same_for_every_activation(changes):
    """The paper's cost model counts matrix MACs only: an activation changes none."""
    reports = [flops.cost_report(get_config("cifar10", **changes, mlp_activation=a)) for a in MLP_ACTIVATIONS]
    gelu = reports[0]
    for report in reports[1:]:
        assert report["flops"] == gelu["flops"] and report["mflops"] == gelu["mflops"]
        assert report["exit_flops"] == gelu["exit_flops"]
    configs = [get_config("cifar10", **changes, mlp_activation=a) for a in MLP_ACTIVATIONS]
    assert len({tuple(flops.exit_macs(c)) for c in configs}) == 1
    assert len({flops.model_macs(c) for c in configs}) == 1


# Models -------------------------------------------------------------------------------


@pytest.mark.parametrize("changes", [dict(layers="1-2"), dict(layers="1-2", mlp_layers="0-1")],
                         ids=["encoder", "lit"])
def test_relu_model_saves_and_reloads(tmp_path, changes):
    keras.utils.set_random_seed(0)
    model = RAViT(get_config("tiny", **changes, mlp_activation="relu"))
    keras.utils.set_random_seed(0)
    gelu = RAViT(get_config("tiny", **changes))
    assert count_params(model) == count_params(gelu)
    hidden = [layer for layer in model._flatten_layers(include_self=False) if layer.name.startswith("mlp_hidden")]
    assert hidden and all(layer.activation is keras.activations.relu for layer in hidden)

    x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    path = tmp_path / "relu.keras"
    model.save(path)
    again = load_ravit(str(path))
    assert again.ravit_config == model.ravit_config
    assert again.ravit_config.mlp_activation == "relu"
    got, want = again(x), model(x)
    for name in model.ravit_config.exit_names:
        np.testing.assert_allclose(_np(got[name]), _np(want[name]), rtol=1e-6, atol=1e-6)
    # Same weights, other activation: another function (the option is not ignored).
    gelu.set_weights(model.get_weights())
    assert not np.allclose(_np(gelu(x)["exit_2"]), _np(want["exit_2"]), atol=1e-4)
