"""Custom layers: config round trips, serialisation, shapes and a NumPy reference."""

import math

import keras
import numpy as np
import pytest

from ravit_keras.model.layers import (
    ClassToken,
    ClassTokenSlice,
    LayerNorm,
    MLPBlock,
    PatchEmbedding,
    PositionEmbedding,
    TransformerEncoderBlock,
)

D = 16  # Toy width: 2 heads of 8.
RNG = np.random.default_rng(1234)


def _random(*shape, scale=1.0):
    return (scale * RNG.standard_normal(shape)).astype("float32")


def _call(layer, inputs):
    out = layer(inputs)
    return keras.ops.convert_to_numpy(out)


# One check for every layer (keras-hub's run_layer_test in spirit) -------------


def _toy_layers():
    """(layer factory, inputs, expected output shape) for every custom layer."""
    tokens = _random(2, 5, D)
    return [
        (lambda: PatchEmbedding(hidden_dim=D, patch_size=4, name="patch_embedding"),
         _random(2, 16, 8, 3), (2, 8, D)),
        (lambda: ClassToken(learned=True, name="class_token"), tokens, (2, 6, D)),
        (lambda: ClassToken(learned=False, name="class_token"),
         [tokens, _random(2, D)], (2, 6, D)),
        (lambda: PositionEmbedding(name="position_embedding"), tokens, (2, 5, D)),
        (lambda: TransformerEncoderBlock(hidden_dim=D, num_heads=2, mlp_dim=32, dropout=0.1,
                                         layer_norm_epsilon=1e-5, name="transformer_block_1"),
         tokens, (2, 5, D)),
        (lambda: TransformerEncoderBlock(hidden_dim=D, num_heads=4, mlp_dim=32, cls_only=True,
                                         name="transformer_block_2"),
         tokens, (2, 1, D)),
        (lambda: ClassTokenSlice(name="cls_out"), tokens, (2, D)),
        (lambda: ClassTokenSlice(name="cls_out"), tokens[:, :1], (2, D)),
        (lambda: LayerNorm(epsilon=1e-5, name="exit_norm"), tokens, (2, 5, D)),
        (lambda: MLPBlock(hidden_dim=D, mlp_dim=32, dropout=0.1, layer_norm_epsilon=1e-5, name="mlp_block_1"),
         tokens, (2, 5, D)),
    ]


LAYER_IDS = ["patch_embedding", "class_token_learned", "class_token_given",
             "position_embedding", "encoder_block", "encoder_block_cls_only",
             "class_token_slice", "class_token_slice_one_token", "layer_norm", "mlp_block"]


@pytest.mark.parametrize("case", range(len(LAYER_IDS)), ids=LAYER_IDS)
def test_layer_round_trips_and_shapes(case):
    make, inputs, expected_shape = _toy_layers()[case]
    layer = make()
    out = _call(layer, inputs)
    assert out.shape == expected_shape
    assert np.all(np.isfinite(out))
    if type(layer).compute_output_shape is not keras.layers.Layer.compute_output_shape:
        shapes = ([tuple(x.shape) for x in inputs] if isinstance(inputs, list)
                  else tuple(inputs.shape))
        assert tuple(layer.compute_output_shape(shapes)) == expected_shape

    # get_config -> from_config: every key is accepted by the constructor.
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    clone_out_shape = _call(clone, inputs).shape
    assert clone_out_shape == expected_shape
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(_call(clone, inputs), out)

    # Registered serialisation (what .keras files use), build config included.
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == f"ravit>{type(layer).__name__}"
    revived = keras.saving.deserialize_keras_object(serialized)
    assert type(revived) is type(layer)
    assert revived.get_config() == config
    if not revived.built:
        revived(inputs)
    assert len(revived.weights) == len(layer.weights)
    revived.set_weights(layer.get_weights())
    np.testing.assert_array_equal(_call(revived, inputs), out)


# PatchEmbedding -----------------------------------------------------------------


def test_patch_embedding_is_a_per_patch_linear_map():
    layer = PatchEmbedding(hidden_dim=D, patch_size=4)
    images = _random(2, 8, 12, 3)
    out = _call(layer, images)
    assert out.shape == (2, 2 * 3, D)
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in layer.projection.weights)
    # Token t = row-major patch (r, c): flattened patch @ kernel + bias.
    for t, (r, c) in enumerate((r, c) for r in range(2) for c in range(3)):
        patch = images[:, 4 * r:4 * r + 4, 4 * c:4 * c + 4, :]
        expected = np.einsum("bhwc,hwcd->bd", patch, kernel) + bias
        np.testing.assert_allclose(out[:, t], expected, rtol=1e-5, atol=1e-5)


def test_patch_embedding_rejects_indivisible_image():
    layer = PatchEmbedding(hidden_dim=D, patch_size=4)
    with pytest.raises(ValueError, match=r"Image size 30x32 is not divisible by patch size 4"):
        layer(np.zeros((1, 30, 32, 3), "float32"))


# ClassToken -------------------------------------------------------------------


def test_learned_class_token_is_prepended_at_position_0():
    layer = ClassToken(learned=True)
    tokens = _random(3, 4, D)
    out = _call(layer, tokens)
    token = keras.ops.convert_to_numpy(layer.token)
    assert token.shape == (1, 1, D)
    for b in range(3):
        np.testing.assert_array_equal(out[b, 0], token[0, 0])
    np.testing.assert_array_equal(out[:, 1:], tokens)
    assert [w.name for w in layer.trainable_weights] == ["token"]


def test_given_class_token_is_put_at_position_0():
    layer = ClassToken(learned=False)
    tokens = _random(3, 4, D)
    cls = _random(3, D)
    out = _call(layer, [tokens, cls])
    assert out.shape == (3, 5, D)
    np.testing.assert_array_equal(out[:, 0], cls)  # Each sample gets its own CLS.
    np.testing.assert_array_equal(out[:, 1:], tokens)
    assert layer.weights == []  # Hand-over form has no parameters of its own.


# PositionEmbedding ------------------------------------------------------------


def test_position_embedding_adds_one_vector_per_token():
    layer = PositionEmbedding()
    tokens = _random(2, 7, D)
    out = _call(layer, tokens)
    embedding = keras.ops.convert_to_numpy(layer.embedding)
    assert embedding.shape == (1, 7, D)
    np.testing.assert_allclose(out, tokens + embedding, rtol=0, atol=1e-6)


def test_position_embedding_needs_fixed_token_count():
    with pytest.raises(ValueError, match=r"needs a fixed number of tokens"):
        PositionEmbedding().build((None, None, D))


# LayerNorm ----------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [{}, dict(epsilon=1e-3), dict(center=False), dict(scale=False)])
def test_layer_norm_equals_keras_layer_normalization(kwargs):
    ours = LayerNorm(**kwargs)
    reference = keras.layers.LayerNormalization(**kwargs)
    x = _random(2, 5, D, scale=3.0) + 1.5
    ours.build(x.shape)
    reference.build(x.shape)
    assert len(ours.weights) == len(reference.weights)
    weights = [(1.0 if w.name == "gamma" else 0.0) + _random(*w.shape, scale=0.5)
               for w in reference.weights]
    ours.set_weights(weights)
    reference.set_weights(weights)
    np.testing.assert_allclose(_call(ours, x), _call(reference, x), rtol=1e-5, atol=1e-5)
    eps = kwargs.get("epsilon", 1e-3)
    gamma = weights[0] if ours.scale else 1.0
    beta = weights[-1] if ours.center else 0.0
    np.testing.assert_allclose(_call(ours, x), _layer_norm(x, gamma, beta, eps), rtol=1e-5, atol=1e-5)


# ClassTokenSlice ------------------------------------------------------------------


def test_class_token_slice_takes_position_0():
    tokens = _random(2, 5, D)
    np.testing.assert_array_equal(_call(ClassTokenSlice(), tokens), tokens[:, 0])


# TransformerEncoderBlock against a NumPy reference ---------------------------


def _layer_norm(x, gamma, beta, eps):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


_erf = np.vectorize(math.erf)


def _gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _reference_block(x, w, num_heads, eps):
    """Pre-norm ViT layer in float64: x + MHSA(LN(x)), then x + MLP(LN(x))."""
    b, n, d = x.shape
    hd = d // num_heads

    def heads(t):
        return t.reshape(b, n, num_heads, hd).transpose(0, 2, 1, 3)

    y = _layer_norm(x, w["attention_norm.gamma"], w["attention_norm.beta"], eps)
    q = heads(y @ w["query.kernel"] + w["query.bias"])
    k = heads(y @ w["key.kernel"] + w["key.bias"])
    v = heads(y @ w["value.kernel"] + w["value.bias"])
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd)
    scores -= scores.max(-1, keepdims=True)
    p = np.exp(scores)
    p /= p.sum(-1, keepdims=True)
    attended = (p @ v).transpose(0, 2, 1, 3).reshape(b, n, d)
    x = x + attended @ w["attention_output.kernel"] + w["attention_output.bias"]
    y = _layer_norm(x, w["mlp_norm.gamma"], w["mlp_norm.beta"], eps)
    h = _gelu(y @ w["mlp_hidden.kernel"] + w["mlp_hidden.bias"])
    return x + h @ w["mlp_output.kernel"] + w["mlp_output.bias"]


@pytest.mark.parametrize("num_heads, cls_only", [(1, False), (2, False), (4, False), (2, True)])
def test_encoder_block_matches_numpy_reference(num_heads, cls_only):
    eps = 1e-6
    block = TransformerEncoderBlock(hidden_dim=D, num_heads=num_heads, mlp_dim=24,
                                    layer_norm_epsilon=eps, cls_only=cls_only)
    x = _random(2, 9, D)
    block(x)
    weights = {}
    for sub in ("attention_norm", "query", "key", "value", "attention_output",
                "mlp_norm", "mlp_hidden", "mlp_output"):
        for var in getattr(block, sub).weights:
            base = 1.0 if var.name == "gamma" else 0.0
            value = (base + 0.3 * RNG.standard_normal(var.shape)).astype("float32")
            var.assign(value)
            weights[f"{sub}.{var.name}"] = value.astype("float64")
    assert len(weights) == 16 == len(block.weights)
    out = keras.ops.convert_to_numpy(block(x))
    expected = _reference_block(x.astype("float64"), weights, num_heads, eps)
    if cls_only:  # Only the CLS token's row of the full layer.
        assert out.shape == (2, 1, D)
        expected = expected[:, :1]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_cls_only_block_equals_first_row_of_full_block():
    full = TransformerEncoderBlock(hidden_dim=D, num_heads=2, mlp_dim=24)
    x = _random(3, 6, D)
    expected = _call(full, x)[:, :1]
    config = full.get_config()
    assert config["cls_only"] is False
    cls_only = TransformerEncoderBlock.from_config({**config, "cls_only": True})
    cls_only(x)
    cls_only.set_weights(full.get_weights())
    np.testing.assert_allclose(_call(cls_only, x), expected, rtol=1e-5, atol=1e-6)


def test_encoder_block_sublayer_names_are_stable():
    block = TransformerEncoderBlock(hidden_dim=D, num_heads=2, mlp_dim=24,
                                    name="transformer_block_1")
    block(_random(1, 3, D))
    paths = {w.path for w in block.weights}
    for sub in ("attention_norm", "query", "key", "value", "attention_output", "mlp_norm",
                "mlp_hidden", "mlp_output"):
        assert any(p.startswith(f"transformer_block_1/{sub}/") for p in paths), sub


def test_encoder_block_dropout_only_in_training():
    block = TransformerEncoderBlock(hidden_dim=D, num_heads=2, mlp_dim=24, dropout=0.5)
    x = _random(2, 5, D)
    a = keras.ops.convert_to_numpy(block(x, training=False))
    b = keras.ops.convert_to_numpy(block(x, training=False))
    np.testing.assert_array_equal(a, b)
    c = keras.ops.convert_to_numpy(block(x, training=True))
    assert not np.allclose(a, c)


def test_encoder_block_rejects_heads_not_dividing_width():
    with pytest.raises(ValueError, match=r"hidden_dim 16 is not divisible by num_heads 3"):
        TransformerEncoderBlock(hidden_dim=16, num_heads=3, mlp_dim=32)


# MLPBlock (LIT) against a NumPy reference ----------------------------------------------


def test_mlp_block_matches_numpy_and_mixes_no_tokens():
    block = MLPBlock(hidden_dim=D, mlp_dim=32)
    x = _random(2, 5, D)
    out = _call(block, x)
    (gamma, beta, w1, b1, w2, b2) = [np.asarray(w, np.float64) for w in block.get_weights()]
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    y = (x - mean) / np.sqrt(var + 1e-6) * gamma + beta
    hidden = y @ w1 + b1
    gelu = 0.5 * hidden * (1 + np.vectorize(math.erf)(hidden / math.sqrt(2)))
    np.testing.assert_allclose(out, x + gelu @ w2 + b2, rtol=1e-4, atol=1e-5)
    # Attention-free: changing one token changes no other token's output.
    x2 = x.copy()
    x2[:, 3] += 1.0
    out2 = _call(block, x2)
    np.testing.assert_array_equal(np.delete(out2, 3, axis=1), np.delete(out, 3, axis=1))
    assert not np.allclose(out2[:, 3], out[:, 3])
