"""RAViT building blocks, written with ``keras.ops`` so they run on any backend.

Each layer is registered serializable and round-trips through ``get_config``.
The ops are chosen with the int8 TFLite graph in mind: fixed shapes, separate
query/key/value projections (each gets its own quantisation parameters) and
plain matmuls for attention.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from ravit_keras.config import MLP_ACTIVATIONS

PACKAGE = "ravit"


def check_mlp_activation(name: str) -> str:
    """Returns ``name`` if it is one of ``MLP_ACTIVATIONS``, else raises ValueError.

    GELU is the paper's; ReLU and ReLU6 are the integer-friendly choices: an int8
    fully-connected layer applies them as its output clamp, where GELU runs as a
    float island between DEQUANTIZE and QUANTIZE.
    """
    if name not in MLP_ACTIVATIONS:
        raise ValueError(
            f"mlp_activation {name!r} is not supported; choose from {', '.join(MLP_ACTIVATIONS)}.")
    return name


def check_drop_path(rate) -> float:
    """Returns ``rate`` as a float if it is in [0, 1), else raises ValueError."""
    rate = float(rate)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"drop_path must be in [0, 1), got {rate}.")
    return rate


def make_drop_path_seed(rate: float, seed) -> "keras.random.SeedGenerator | None":
    """The seed generator of a block's stochastic depth; None for rate 0, so a block
    without it has exactly the variables it always had."""
    return keras.random.SeedGenerator(seed, name="drop_path_seed") if rate else None


def apply_drop_path(x, rate: float, seed_generator, training):
    """Stochastic depth of a residual branch ``x`` of shape (B, n, d).

    "Deep Networks with Stochastic Depth" (Huang et al., ECCV 2016): while training,
    each sample's branch is zeroed with probability ``rate`` and otherwise scaled by
    ``1 / (1 - rate)``; at inference it is ``x`` itself (no op in the graph).
    """
    if not (training and rate):
        return x
    return keras.random.dropout(x, rate, noise_shape=(ops.shape(x)[0], 1, 1), seed=seed_generator)


@keras.saving.register_keras_serializable(package=PACKAGE)
class PatchEmbedding(keras.layers.Layer):
    """Splits an image into non-overlapping patches and projects each to a token.

    Args:
        hidden_dim: int. Token width ``d``.
        patch_size: int. Patch side ``P``; the image sides must be multiples of it.
    """

    def __init__(self, hidden_dim, patch_size, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = int(hidden_dim)
        self.patch_size = int(patch_size)
        self.projection = keras.layers.Conv2D(
            self.hidden_dim,
            kernel_size=self.patch_size,
            strides=self.patch_size,
            padding="valid",
            name="projection",
            dtype=self.dtype_policy,
        )

    def build(self, input_shape):
        h, w = input_shape[1], input_shape[2]
        if h is None or w is None or h % self.patch_size or w % self.patch_size:
            raise ValueError(
                f"Image size {h}x{w} is not divisible by patch size {self.patch_size}."
            )
        self.projection.build(input_shape)
        self.num_patches = (h // self.patch_size) * (w // self.patch_size)

    def call(self, images):
        x = self.projection(images)
        return ops.reshape(x, (-1, self.num_patches, self.hidden_dim))

    def compute_output_shape(self, input_shape):
        n = (input_shape[1] // self.patch_size) * (input_shape[2] // self.patch_size)
        return (input_shape[0], n, self.hidden_dim)

    def get_config(self):
        config = super().get_config()
        config.update(hidden_dim=self.hidden_dim, patch_size=self.patch_size)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class ClassToken(keras.layers.Layer):
    """Prepends a CLS token to a token sequence.

    Called on ``tokens`` alone it prepends its own learned token (the first
    branch). Called on ``[tokens, cls]`` it prepends the given ``cls`` vector of
    shape ``(batch, d)`` instead: the CLS hand-over between branches.
    """

    def __init__(self, learned=True, **kwargs):
        super().__init__(**kwargs)
        self.learned = bool(learned)

    def build(self, input_shape):
        if self.learned:
            d = input_shape[-1]
            self.token = self.add_weight(
                name="token",
                shape=(1, 1, d),
                initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            )

    def call(self, inputs):
        if self.learned:
            tokens = inputs
            cls = ops.broadcast_to(
                ops.cast(self.token, tokens.dtype),
                (ops.shape(tokens)[0], 1, ops.shape(tokens)[-1]),
            )
        else:
            tokens, cls = inputs
            cls = ops.expand_dims(cls, axis=1)
        return ops.concatenate([cls, tokens], axis=1)

    def compute_output_shape(self, input_shape):
        shape = input_shape if self.learned else input_shape[0]
        n = None if shape[1] is None else shape[1] + 1
        return (shape[0], n, shape[2])

    def get_config(self):
        config = super().get_config()
        config.update(learned=self.learned)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned position embedding, one vector per token (CLS included)."""

    def build(self, input_shape):
        self.num_tokens = input_shape[1]
        if self.num_tokens is None:
            raise ValueError("PositionEmbedding needs a fixed number of tokens.")
        self.embedding = self.add_weight(
            name="embedding",
            shape=(1, self.num_tokens, input_shape[-1]),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        )

    def call(self, tokens):
        return tokens + ops.cast(self.embedding, tokens.dtype)


@keras.saving.register_keras_serializable(package=PACKAGE)
class LayerNorm(keras.layers.LayerNormalization):
    """``keras.layers.LayerNormalization`` over the last axis, as plain ops.

    Same weights, config and result; only the graph differs: mean, centre,
    mean of squares, rsqrt, scale and shift. Keras's TF lowering adds a NEG
    and SQUARED_DIFFERENCE that int8 TFLite runs in float between
    DEQUANTIZE/QUANTIZE pairs and int16x8 cannot quantise at all.
    """

    def call(self, x):
        mean = ops.mean(x, axis=-1, keepdims=True)
        centred = x - mean
        variance = ops.mean(centred * centred, axis=-1, keepdims=True)
        y = centred * ops.rsqrt(variance + self.epsilon)
        if self.scale:
            y = y * ops.cast(self.gamma, y.dtype)
        if self.center:
            y = y + ops.cast(self.beta, y.dtype)
        return y


@keras.saving.register_keras_serializable(package=PACKAGE)
class TransformerEncoderBlock(keras.layers.Layer):
    """Pre-norm ViT encoder layer: ``x + MHSA(LN(x))`` then ``x + MLP(LN(x))``.

    Args:
        hidden_dim: int. Token width ``d``.
        num_heads: int. Attention heads; must divide ``hidden_dim``.
        mlp_dim: int. Hidden width ``h`` of the two-layer MLP.
        dropout: float, default 0. Dropout after the attention projection and the MLP.
        layer_norm_epsilon: float, default 1e-6.
        mlp_activation: str, default ``"gelu"``. The MLP's activation, one of
            ``MLP_ACTIVATIONS``.
        cls_only: bool, default False. Return only the updated CLS token
            (B, 1, d). For a branch's last layer nothing reads the other tokens,
            so its query, attention output and MLP run on one token instead of
            n: same logits and CLS, far less work.
        drop_path: float in [0, 1), default 0. Stochastic depth: while training,
            each sample's attention and MLP branches are dropped (independently)
            with this probability; identity at inference.
        seed: optional int seeding the stochastic depth.
    """

    def __init__(self, hidden_dim, num_heads, mlp_dim, dropout=0.0,
                 layer_norm_epsilon=1e-6, cls_only=False, mlp_activation="gelu",
                 drop_path=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.drop_path = check_drop_path(drop_path)
        self.seed = seed
        self.drop_path_seed = make_drop_path_seed(self.drop_path, seed)
        if hidden_dim % num_heads:
            raise ValueError(
                f"hidden_dim {hidden_dim} is not divisible by num_heads {num_heads}."
            )
        self.hidden_dim = int(hidden_dim)
        self.num_heads = int(num_heads)
        self.mlp_dim = int(mlp_dim)
        self.dropout = float(dropout)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.cls_only = bool(cls_only)
        self.mlp_activation = check_mlp_activation(mlp_activation)
        self.head_dim = self.hidden_dim // self.num_heads

        def dense(units, name, activation=None):
            return keras.layers.Dense(
                units, activation=activation, name=name, dtype=self.dtype_policy,
                kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            )

        def norm(name):
            return LayerNorm(
                epsilon=self.layer_norm_epsilon, name=name, dtype=self.dtype_policy
            )

        self.attention_norm = norm("attention_norm")
        self.query = dense(self.hidden_dim, "query")
        # The key bias adds the same q·b to every score of a query, which the softmax
        # cancels (its gradient is 0); kept as in the reference ViT and saved models.
        self.key = dense(self.hidden_dim, "key")
        self.value = dense(self.hidden_dim, "value")
        self.attention_output = dense(self.hidden_dim, "attention_output")
        self.mlp_norm = norm("mlp_norm")
        self.mlp_hidden = dense(self.mlp_dim, "mlp_hidden", activation=self.mlp_activation)
        self.mlp_output = dense(self.hidden_dim, "mlp_output")
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)

    def build(self, input_shape):
        token_shape = (input_shape[0], input_shape[1], self.hidden_dim)
        for layer in (self.attention_norm, self.query, self.key, self.value,
                      self.attention_output, self.mlp_norm, self.mlp_hidden):
            layer.build(token_shape)
        self.mlp_output.build((input_shape[0], input_shape[1], self.mlp_dim))

    def _split_heads(self, x, n):
        x = ops.reshape(x, (-1, n, self.num_heads, self.head_dim))
        return ops.transpose(x, (0, 2, 1, 3))

    def call(self, x, training=None):
        n = ops.shape(x)[1]
        y = self.attention_norm(x)
        if self.cls_only:
            x, queries, m = x[:, :1, :], y[:, :1, :], 1
        else:
            queries, m = y, n
        # Scaling q (m·d values) instead of the scores (heads·m·n values).
        q = self._split_heads(self.query(queries) * (1.0 / math.sqrt(self.head_dim)), m)
        k = self._split_heads(self.key(y), n)
        v = self._split_heads(self.value(y), n)
        weights = ops.softmax(ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))), axis=-1)
        attended = ops.matmul(weights, v)
        attended = ops.reshape(ops.transpose(attended, (0, 2, 1, 3)), (-1, m, self.hidden_dim))
        attended = self.dropout_layer(self.attention_output(attended), training=training)
        x = x + apply_drop_path(attended, self.drop_path, self.drop_path_seed, training)
        y = self.dropout_layer(self.mlp_output(self.mlp_hidden(self.mlp_norm(x))), training=training)
        return x + apply_drop_path(y, self.drop_path, self.drop_path_seed, training)

    def compute_output_shape(self, input_shape):
        if self.cls_only:
            return (input_shape[0], 1, input_shape[2])
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            cls_only=self.cls_only,
            hidden_dim=self.hidden_dim,
            num_heads=self.num_heads,
            mlp_dim=self.mlp_dim,
            dropout=self.dropout,
            layer_norm_epsilon=self.layer_norm_epsilon,
            mlp_activation=self.mlp_activation,
            drop_path=self.drop_path,
            seed=self.seed,
        )
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class MLPBlock(keras.layers.Layer):
    """An attention-free encoder layer (LIT's MLP block): ``x + MLP(LN(x))``.

    "Less is More: Pay Less Attention in Vision Transformers" (Pan et al., AAAI 2022)
    finds that early self-attention layers mostly encode local patterns and can be
    replaced by such blocks at little accuracy cost. Each token is processed on its
    own, so the block costs ``2·n·d·h`` MACs instead of a full layer's
    ``2·n²·d + 4·n·d² + 2·n·d·h``, and has no softmax or attention products (the
    hardest part of an int8 graph).

    Args:
        hidden_dim: int. Token width ``d``.
        mlp_dim: int. Hidden width ``h`` of the two-layer MLP.
        dropout: float, default 0. Dropout after the MLP.
        layer_norm_epsilon: float, default 1e-6.
        mlp_activation: str, default ``"gelu"``. The MLP's activation, one of
            ``MLP_ACTIVATIONS``.
        drop_path: float in [0, 1), default 0. Stochastic depth: while training,
            each sample's MLP branch is dropped with this probability; identity
            at inference.
        seed: optional int seeding the stochastic depth.
    """

    def __init__(self, hidden_dim, mlp_dim, dropout=0.0, layer_norm_epsilon=1e-6,
                 mlp_activation="gelu", drop_path=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.drop_path = check_drop_path(drop_path)
        self.seed = seed
        self.drop_path_seed = make_drop_path_seed(self.drop_path, seed)
        self.hidden_dim = int(hidden_dim)
        self.mlp_dim = int(mlp_dim)
        self.dropout = float(dropout)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.mlp_activation = check_mlp_activation(mlp_activation)
        init = keras.initializers.TruncatedNormal(stddev=0.02)
        self.mlp_norm = LayerNorm(epsilon=self.layer_norm_epsilon, name="mlp_norm", dtype=self.dtype_policy)
        self.mlp_hidden = keras.layers.Dense(self.mlp_dim, activation=self.mlp_activation, name="mlp_hidden",
                                             kernel_initializer=init, dtype=self.dtype_policy)
        self.mlp_output = keras.layers.Dense(self.hidden_dim, name="mlp_output", kernel_initializer=init,
                                             dtype=self.dtype_policy)
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)

    def build(self, input_shape):
        token_shape = (input_shape[0], input_shape[1], self.hidden_dim)
        self.mlp_norm.build(token_shape)
        self.mlp_hidden.build(token_shape)
        self.mlp_output.build((input_shape[0], input_shape[1], self.mlp_dim))

    def call(self, x, training=None):
        y = self.dropout_layer(self.mlp_output(self.mlp_hidden(self.mlp_norm(x))), training=training)
        return x + apply_drop_path(y, self.drop_path, self.drop_path_seed, training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(hidden_dim=self.hidden_dim, mlp_dim=self.mlp_dim, dropout=self.dropout,
                      layer_norm_epsilon=self.layer_norm_epsilon, mlp_activation=self.mlp_activation,
                      drop_path=self.drop_path, seed=self.seed)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class ClassTokenSlice(keras.layers.Layer):
    """Takes the CLS token (position 0) out of a token sequence: (B, n, d) -> (B, d)."""

    def call(self, tokens):
        if tokens.shape[1] == 1:  # A cls_only block's output: no slicing op needed.
            return ops.reshape(tokens, (-1, tokens.shape[2]))
        return ops.squeeze(tokens[:, :1, :], axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])
