"""Keras graph surgery for export: what each mode's submodel computes, as a SavedModel.

The branch model is rewritten into the graph the converter sees (normalisation
folded into the patch embedding, int8-friendly pooling), exported with a batch-1
signature, and its calibration inputs are produced; ``float_island_nodes`` picks
the LayerNorm ops the int8 graph keeps in float. TensorFlow and Keras.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from ravit_keras.config import RAViTConfig


def input_signature(config: RAViTConfig, first: bool) -> dict:
    """Batch-1 input signature of a branch submodel."""
    import tensorflow as tf

    sig = {"image": tf.TensorSpec((1, *config.image_size, 3), tf.float32, name="image")}
    if not first:
        sig["cls_in"] = tf.TensorSpec((1, config.hidden_dim), tf.float32, name="cls_in")
    return sig


def export_saved_model(branch_model, config: RAViTConfig, first: bool, path: str | os.PathLike) -> None:
    """Writes ``branch_model`` as a SavedModel with a batch-1 ``serving_default``.

    A fixed batch keeps SHAPE/GATHER/PACK ops (dynamic batch) out of the graph.
    """
    branch_model.export(
        str(path), format="tf_saved_model", input_signature=[input_signature(config, first)],
        verbose=False,
    )


def branch_float_inputs(model, images: np.ndarray, batch_size: int = 256) -> list[list[dict[str, np.ndarray]]]:
    """Float inputs each branch sees for ``images`` in the Keras model.

    Returns one list per running branch of ``{"image", "cls_in"?}`` dicts, one per
    image, with ``cls_in`` the previous branch's float CLS: what the submodels
    are calibrated on.
    """
    images = np.asarray(images, np.float32)
    per_branch = []
    cls = None
    for model_b in model.branch_models():
        inputs = {"image": images} if cls is None else {"image": images, "cls_in": cls}
        # Plain calls, not predict(): predict traces a function per branch model and per
        # batch shape, and TensorFlow warns about the retracing.
        cls = np.concatenate([
            np.asarray(model_b({k: v[i:i + batch_size] for k, v in inputs.items()}, training=False)["cls_out"],
                       np.float32)
            for i in range(0, len(images), batch_size)
        ])
        per_branch.append([{k: v[i:i + 1] for k, v in inputs.items()} for i in range(len(images))])
    return per_branch


# Ops left in float inside the fast int8 graph: XNNPACK has no int8 kernel for them
# (LiteRT's built-in kernels, 4-47x slower, would split the graph into partitions),
# but it runs QUANTIZE/DEQUANTIZE, so float islands stay inside one XNNPACK partition.
FLOAT_ISLAND_OPS = ("SOFTMAX", "GELU")
# LayerNorm lowers to these; the whole LayerNorm stays float (its int8 mean and
# variance are the lossy, slow part). Matrix products are never kept float.
LAYER_NORM_OPS = ("MEAN", "SUB", "MUL", "ADD", "RSQRT", "SQUARED_DIFFERENCE", "SQUARE", "DIV")


def export_graph(branch_model, mode: str):
    """The branch model as ``mode`` exports it: the same function, fewer or other ops.

    - Every mode: the pixel normalisation ``(x - mean) / std`` is folded into the
      patch-embedding convolution (weights ``W / std`` per input channel, bias
      ``b - sum(W * mean / std)``; exact, as the convolution is unpadded). Left as its
      own ops it broadcasts a 3-channel constant over the image, which XNNPACK does
      slowly (about 5 % of an int8 branch on CIFAR-10 sizes, measured by
      ``ravit profile``), and in int8 it quantises the normalised image a second time.
    - ``int8``: XNNPACK has no int8 AVERAGE_POOL_2D, so an in-graph downscale by
      average pooling becomes the equal depthwise convolution with weights 1/(kh·kw).

    Layers not replaced are shared with ``branch_model``, weights included.
    """
    import keras

    from ravit_keras.model.layers import PatchEmbedding

    norms = [layer for layer in branch_model.layers if isinstance(layer, keras.layers.Normalization)]
    patches = [layer for layer in branch_model.layers if isinstance(layer, PatchEmbedding)]
    fold = len(norms) == 1 and len(patches) == 1
    pool = mode == "int8" and any(isinstance(layer, keras.layers.AveragePooling2D) for layer in branch_model.layers)
    if not (fold or pool):
        return branch_model

    def clone(layer):
        if pool and isinstance(layer, keras.layers.AveragePooling2D):
            kh, kw = layer.pool_size
            conv = keras.layers.DepthwiseConv2D((kh, kw), strides=(kh, kw), padding=layer.padding,
                                                use_bias=False, name=layer.name)
            conv.build((None, None, None, 3))
            conv.set_weights([np.full((kh, kw, 3, 1), 1.0 / (kh * kw), np.float32)])
            return conv
        if fold and layer is norms[0]:
            return keras.layers.Identity(name=layer.name)
        if fold and layer is patches[0]:
            return _folded_patch_embedding(layer, norms[0])
        return layer

    return keras.models.clone_model(branch_model, clone_function=clone)


def _folded_patch_embedding(patch, norm):
    """A copy of PatchEmbedding ``patch`` that also applies Normalization ``norm`` first."""
    import keras

    # Keras's Normalization divides by max(sqrt(variance), epsilon).
    mean = np.asarray(norm.mean, np.float64).reshape(-1)
    std = np.maximum(np.sqrt(np.asarray(norm.variance, np.float64).reshape(-1)), keras.config.epsilon())
    kernel, bias = (np.asarray(w, np.float64) for w in patch.projection.get_weights())
    folded = kernel / std[None, None, :, None]
    bias = bias - np.einsum("hwco,c->o", folded, mean)
    folded_patch = type(patch).from_config(patch.get_config())
    folded_patch.build(patch.input.shape)  # Its image size fixes the number of patches.
    folded_patch.projection.set_weights([folded.astype(np.float32), bias.astype(np.float32)])
    return folded_patch


def layer_norm_names(branch_model) -> list[str]:
    """Names of the LayerNormalization layers inside ``branch_model`` (nested included)."""
    import keras

    return sorted({layer.name for layer in branch_model._flatten_layers(include_self=False)
                   if isinstance(layer, keras.layers.LayerNormalization)})


def float_island_nodes(calibrated: bytes, norm_names: Sequence[str]) -> list[str]:
    """Output tensor names of the LayerNorm ops in a calibrated flatbuffer (to keep float).

    An op belongs to a LayerNorm when its output name's first location lies in a
    LayerNormalization layer (``.../attention_norm_1/Mean``) and it is one of the
    element-wise ops LayerNorm lowers to; a FULLY_CONNECTED with the LayerNorm's
    scale folded in also carries its name and stays int8.
    """
    import re

    from tensorflow.lite.tools import flatbuffer_utils

    pattern = re.compile(r"/(" + "|".join(re.escape(n) for n in norm_names) + r")(_\d+)?/")
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(calibrated))
    graph = model.subgraphs[0]
    nodes = []
    for op in graph.operators:
        if flatbuffer_utils.opcode_to_name(model, op.opcodeIndex) not in LAYER_NORM_OPS:
            continue
        for t in op.outputs:
            name = graph.tensors[t].name.decode()
            if norm_names and pattern.search(name.split(";")[0]):
                nodes.append(name)
    return nodes
