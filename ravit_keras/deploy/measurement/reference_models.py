"""What ``ravit bench`` measures the submodels against: the naive Keras-graph ViT (what a
user gets without this package's graph shaping) and the host's ceiling (single
FULLY_CONNECTED layers timed in the same run)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from ravit_keras.console import quiet_native_output
from ravit_keras.deploy.runtime.modes import INT8_MATMUL_MODES

# The naive baseline ------------------------------------------------------------


def naive_keras_vit(config, num_layers: int):
    """A plain Keras ViT built the usual way, for the "naive int8" baseline.

    ``keras.layers.MultiHeadAttention``, ``LayerNormalization``, ``Dense(gelu)``,
    CLS sliced with ``x[:, 0]``, every layer computing all tokens: what a user
    gets without this package's graph shaping. Same sizes as ``config``'s ViT.
    """
    import keras

    from ravit_keras.model.layers import ClassToken, PatchEmbedding, PositionEmbedding

    d = config.hidden_dim
    image = keras.Input((*config.image_size, 3))
    x = keras.layers.Normalization(mean=[255 * m for m in config.mean],
                                   variance=[(255 * s) ** 2 for s in config.std])(image)
    x = PatchEmbedding(d, config.patch_size)(x)
    x = ClassToken()(x)
    x = PositionEmbedding()(x)
    for _ in range(num_layers):
        y = keras.layers.LayerNormalization(epsilon=1e-6)(x)
        y = keras.layers.MultiHeadAttention(config.num_heads, d // config.num_heads)(y, y)
        x = x + y
        y = keras.layers.LayerNormalization(epsilon=1e-6)(x)
        y = keras.layers.Dense(config.mlp_dim, activation="gelu")(y)
        x = x + keras.layers.Dense(d)(y)
    cls = keras.layers.LayerNormalization(epsilon=1e-6)(x[:, 0])
    return keras.Model(image, keras.layers.Dense(config.num_classes)(cls), name=f"naive_vit_{num_layers}")


def convert_naive(model, calibration_images: np.ndarray, path: str | Path) -> Path:
    """Naive full-int8 conversion: default ``model.export`` (dynamic batch), no graph fixes."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        model.export(tmp, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: (
            [img[None].astype(np.float32)] for img in calibration_images)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.int8
        with quiet_native_output():
            data = converter.convert()
    path = Path(path)
    path.write_bytes(data)
    return path


def naive_float_and_int8(config, num_layers: int, calibration_images, out_dir: str | Path) -> dict[str, Path]:
    """Writes the naive baseline as float32 and int8 ``.tflite`` into ``out_dir``."""
    import tensorflow as tf

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = naive_keras_vit(config, num_layers)
    paths = {"int8": convert_naive(model, calibration_images, out_dir / f"naive_vit{num_layers}_int8.tflite")}
    with tempfile.TemporaryDirectory() as tmp:
        model.export(tmp, format="tf_saved_model", verbose=False)
        with quiet_native_output():
            data = tf.lite.TFLiteConverter.from_saved_model(tmp).convert()
    paths["float32"] = out_dir / f"naive_vit{num_layers}_float32.tflite"
    paths["float32"].write_bytes(data)
    return paths


# The host's ceiling ----------------------------------------------------------------

# FULLY_CONNECTED layers of the shapes a transformer's MLP has, (tokens x width) @
# (width x out). The first keeps its float32 weights (1 MB) in a core's L2, the second
# (4 MB) does not; the faster of the two per arithmetic is the host's ceiling.
CEILING_SHAPES = ((128, 512, 512), (64, 512, 2048))


def fully_connected_ceiling_models(out_dir: str | Path,
                                   shapes: Sequence[tuple[int, int, int]] = CEILING_SHAPES) -> dict[str, list[Path]]:
    """Writes one FULLY_CONNECTED per shape as int8 and float32 ``.tflite`` files.

    Timed in the same interleaved run as the submodels, the best GMAC/s is what this
    CPU allows for int8 and float32 matrix work (``ceiling_gmacs``); a submodel's
    share of it says how much of its time is not matrix work.
    """
    import tensorflow as tf

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths: dict[str, list[Path]] = {"int8": [], "float32": []}
    for i, (tokens, width, out_width) in enumerate(shapes):
        module = _dense_module(tf, rng.normal(0, width ** -0.5, (width, out_width)).astype(np.float32),
                               rng.normal(0, 0.1, out_width).astype(np.float32), tokens)

        for mode in paths:
            # The module that owns the function (``trackable_obj``) keeps its constants alive;
            # without it TensorFlow takes a deprecated path and logs an absl warning per model.
            converter = tf.lite.TFLiteConverter.from_concrete_functions(
                [module.dense.get_concrete_function()], module)
            if mode == "int8":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
                converter.representative_dataset = lambda tokens=tokens, width=width: (
                    [rng.normal(size=(tokens, width)).astype(np.float32)] for _ in range(8))
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                converter.inference_input_type = converter.inference_output_type = tf.int8
            path = out_dir / f"fc_ceiling_{mode}_{i}.tflite"
            with quiet_native_output():
                path.write_bytes(converter.convert())
            paths[mode].append(path)
    return paths


def ceiling_arithmetic(mode: str) -> str:
    """Which ceiling a submodel of ``mode`` is measured against: its matrix products'
    arithmetic (int8 for int8, int8-full and dynamic; float32 otherwise)."""
    return "int8" if mode in INT8_MATMUL_MODES else "float32"


def _dense_module(tf, kernel: np.ndarray, bias: np.ndarray, tokens: int):
    """A ``tf.Module`` whose ``dense`` is ``x @ kernel + bias`` with a fixed 2-D (tokens, width)
    signature: one FULLY_CONNECTED."""

    class Dense(tf.Module):
        def __init__(self):
            super().__init__()
            self.kernel, self.bias = tf.constant(kernel), tf.constant(bias)

        @tf.function(input_signature=[tf.TensorSpec((tokens, kernel.shape[0]), tf.float32)])
        def dense(self, x):
            return tf.matmul(x, self.kernel) + self.bias

    return Dense()


def ceiling_gmacs(paths: dict[str, list[Path]], timing: dict[str, dict[str, float]],
                  shapes: Sequence[tuple[int, int, int]] = CEILING_SHAPES) -> dict[str, float]:
    """The best GMAC/s per arithmetic over the ceiling models (``interleaved_latency`` output)."""
    return {mode: max(int(np.prod(shape)) / timing[str(p)]["median_ms"] / 1e6 for p, shape in zip(files, shapes))
            for mode, files in paths.items()}
