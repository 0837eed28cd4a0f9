"""The RAViT model: layers, one functional model per branch, the joint model, the cost model.

    layers.py  PatchEmbedding, ClassToken, PositionEmbedding, LayerNorm,
               TransformerEncoderBlock, ClassTokenSlice
    ravit.py   build_branch_model, RAViT (the joint model), load_ravit
    flops.py   the cost model (Eq. 3/4 of the paper); NumPy only

Names load lazily: ``ravit_keras.model.flops`` works without Keras or TensorFlow.
"""

from ravit_keras._lazy import lazy_exports

_EXPORTS = {
    "RAViT": "ravit", "build_ravit": "ravit", "build_branch_model": "ravit",
    "branch_model_name": "ravit", "load_ravit": "ravit", "count_params": "ravit",
    "PatchEmbedding": "layers", "ClassToken": "layers", "PositionEmbedding": "layers",
    "LayerNorm": "layers", "MLPBlock": "layers", "TransformerEncoderBlock": "layers", "ClassTokenSlice": "layers",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
