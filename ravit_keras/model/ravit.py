"""RAViT models: one functional model per branch, chained into a joint model.

Every branch model takes the FULL-resolution image as raw pixels (float32 in
[0, 255], NHWC) and shrinks it inside to its own resolution, then normalises
per channel. Keeping resizing and normalisation inside the graph means the
training pipeline, the int8 submodels and the phone all feed the same camera
pixels, and the resize that was trained is the resize that ships.

Branch model ``branch_<i>`` (1-based branch number):
    inputs:  {"image": (B, H, W, 3)}                 first branch that runs
             {"image": (B, H, W, 3), "cls_in": (B, d)} every later one
    outputs: {"logits": (B, classes), "cls_out": (B, d)}

``cls_out`` is the CLS token of the residual stream after the branch's last
encoder layer (before the exit's LayerNorm); the next branch uses it as its
initial CLS token. The exit head is LayerNorm + Dense on that token. Since
nothing else reads the last layer's other tokens, that layer computes the CLS
token only (``TransformerEncoderBlock(cls_only=True)``).
"""

from __future__ import annotations

import math
from typing import Any

import keras

from ravit_keras.config import RAViTConfig, exit_name
from ravit_keras.model.layers import (
    PACKAGE,
    ClassToken,
    ClassTokenSlice,
    LayerNorm,
    MLPBlock,
    PatchEmbedding,
    PositionEmbedding,
    TransformerEncoderBlock,
)


def branch_model_name(branch: int) -> str:
    """Name of the model of 0-based branch ``branch``: ``branch_<branch + 1>``."""
    return f"branch_{branch + 1}"


def _resize_layer(config: RAViTConfig, branch: int) -> keras.layers.Layer | None:
    """Down-sizing from the original image to the branch's resolution.

    An integer factor uses average pooling (exact area resize, no aliasing, and a
    cheap int8 op); other factors use bilinear resizing.
    """
    (h, w), (bh, bw) = config.image_size, config.branch_image_sizes[branch]
    if (bh, bw) == (h, w):
        return None
    name = f"resize_{bh}x{bw}"
    if h % bh == 0 and w % bw == 0:
        return keras.layers.AveragePooling2D(pool_size=(h // bh, w // bw), name=name)
    return keras.layers.Resizing(bh, bw, interpolation="bilinear", name=name)


def build_branch_model(config: RAViTConfig, branch: int) -> keras.Model:
    """Builds the functional model of 0-based branch ``branch`` (which must run).

    Raises:
        ValueError: if the branch index is out of range or the branch has 0 layers.
    """
    if not 0 <= branch < config.num_branches:
        raise ValueError(f"Branch {branch} out of range for {config.num_branches} branches.")
    num_layers = config.layers[branch]
    if num_layers == 0:
        raise ValueError(
            f"Branch {branch + 1} has 0 layers in {config.layer_spec!r}: it is skipped "
            "and has no model."
        )
    d = config.hidden_dim
    first = branch == config.exit_branches[0]
    image = keras.Input(shape=(*config.image_size, 3), name="image")
    inputs = {"image": image}
    x = image
    resize = _resize_layer(config, branch)
    if resize is not None:
        x = resize(x)
    x = keras.layers.Normalization(
        mean=[255.0 * m for m in config.mean],
        variance=[(255.0 * s) ** 2 for s in config.std],
        name="normalization",
    )(x)
    tokens = PatchEmbedding(d, config.patch_size, name="patch_embedding")(x)
    if first:
        tokens = ClassToken(learned=True, name="class_token")(tokens)
    else:
        cls_in = keras.Input(shape=(d,), name="cls_in")
        inputs["cls_in"] = cls_in
        tokens = ClassToken(learned=False, name="class_token")([tokens, cls_in])
    tokens = PositionEmbedding(name="position_embedding")(tokens)
    if config.dropout:
        tokens = keras.layers.Dropout(config.dropout, name="embedding_dropout")(tokens)
    num_mlp = config.mlp_layers[branch] if config.mlp_layers else 0
    rates = config.drop_path_rates()
    for j in range(num_mlp):  # LIT: the leading layers are attention-free.
        tokens = MLPBlock(
            hidden_dim=d, mlp_dim=config.mlp_dim, dropout=config.dropout,
            layer_norm_epsilon=config.layer_norm_epsilon, mlp_activation=config.mlp_activation,
            drop_path=rates[branch, j], name=f"mlp_block_{j + 1}",
        )(tokens)
    for j in range(num_mlp, num_layers):
        tokens = TransformerEncoderBlock(
            hidden_dim=d,
            num_heads=config.num_heads,
            mlp_dim=config.mlp_dim,
            dropout=config.dropout,
            layer_norm_epsilon=config.layer_norm_epsilon,
            mlp_activation=config.mlp_activation,
            cls_only=j == num_layers - 1,
            drop_path=rates[branch, j],
            name=f"transformer_block_{j + 1}",
        )(tokens)
    cls_out = ClassTokenSlice(name="cls_out")(tokens)
    y = LayerNorm(epsilon=config.layer_norm_epsilon, name="exit_norm")(cls_out)
    logits = keras.layers.Dense(
        config.num_classes,
        name="exit_head",
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
    )(y)
    return keras.Model(
        inputs=inputs, outputs={"logits": logits, "cls_out": cls_out},
        name=branch_model_name(branch),
    )


@keras.saving.register_keras_serializable(package=PACKAGE)
class RAViT(keras.Model):
    """Resolution-Adaptive Vision Transformer: the joint multi-exit model.

    Chains one functional model per branch that runs (see ``build_branch_model``),
    handing each branch's CLS token to the next, and returns a dict
    ``{"exit_<i>": logits}`` with one entry per exit. The branch models are
    sub-models of this one and share its weights, so ``branch_model(i)`` after
    training is the trained branch, ready to export.

    Reference: "Resolution-Adaptive Vision Transformer" (RAViT); see RAVIT.md.

    Args:
        config: ``RAViTConfig`` or its dict form.
    """

    def __init__(self, config: RAViTConfig | dict, **kwargs: Any):
        if isinstance(config, dict):
            config = RAViTConfig.from_dict(config)
        image = keras.Input(shape=(*config.image_size, 3), name="image")
        outputs = {}
        cls = None
        for branch in config.exit_branches:
            model = build_branch_model(config, branch)
            branch_inputs = {"image": image} if cls is None else {"image": image, "cls_in": cls}
            out = model(branch_inputs)
            outputs[exit_name(branch)] = out["logits"]
            cls = out["cls_out"]
        kwargs.setdefault("name", f"ravit_{config.layer_spec.replace('-', '_')}")
        super().__init__(inputs=image, outputs=outputs, **kwargs)
        self.ravit_config = config

    def branch_model(self, branch: int) -> keras.Model:
        """The (weight-sharing) model of 0-based branch ``branch``."""
        if branch not in self.ravit_config.exit_branches:
            raise ValueError(
                f"Branch {branch + 1} does not run in {self.ravit_config.layer_spec!r}; "
                f"running branches: {[b + 1 for b in self.ravit_config.exit_branches]}."
            )
        return self.get_layer(branch_model_name(branch))

    def branch_models(self) -> list[keras.Model]:
        """The models of the branches that run, coarse to fine."""
        return [self.branch_model(b) for b in self.ravit_config.exit_branches]

    def get_config(self):
        return {"config": self.ravit_config.to_dict(), "name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def build_ravit(config: RAViTConfig) -> RAViT:
    """Builds the joint RAViT model for ``config``."""
    return RAViT(config)


def load_ravit(path: str) -> RAViT:
    """Loads a RAViT from a ``.keras`` file written by ``RAViT.save`` (or training's
    checkpoints), or from a training run folder or a preset's folder (its ``model.keras``).

    Raises:
        FileNotFoundError: nothing at ``path``, or a folder without a model file
            (the message says what the folder is: an unfinished run, converted submodels).
        ValueError: if the file does not hold a RAViT model.
    """
    import os
    import zipfile

    from ravit_keras import runs

    if not os.path.exists(path):
        raise FileNotFoundError(f"No model file or run folder at {path}.")
    if os.path.isdir(path):
        # Keras reads a folder as a model archive and fails inside (UnboundLocalError).
        path = str(runs.model_file(path))
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No {runs.MODEL_FILE} in the folder {os.path.dirname(path)}: "
                                    f"{_folder_kind(os.path.dirname(path))}")
    if str(path).endswith(".keras") and not zipfile.is_zipfile(path):
        # Keras would say "file not found" for a file that is only damaged.
        raise ValueError(f"{path} is not a readable .keras model file: not a complete zip archive "
                         "(truncated, or another format).")
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as e:  # zipfile, h5py and Keras raise many types for a damaged file.
        raise ValueError(f"{path} is not a readable .keras model file ({type(e).__name__}: {e}).") from None
    if not isinstance(model, RAViT):
        raise ValueError(f"{path} holds a {type(model).__name__}, not a RAViT model.")
    return model


def _folder_kind(folder: str) -> str:
    """What a folder without ``model.keras`` is, as the end of an error message."""
    import os

    from ravit_keras import runs

    if os.path.isfile(os.path.join(folder, "manifest.json")):
        return "it holds converted submodels (load them with ravit_keras.load_manifest / RAViTScheduler)."
    if os.path.isdir(os.path.join(folder, runs.BACKUP_DIR)):
        return "an unfinished training run (rerun its training command to finish it)."
    return f"give a .keras file, or a training run folder ({', '.join(runs.RUN_FILES)})."


def count_params(model: keras.Model) -> int:
    return int(sum(math.prod(w.shape) for w in model.weights))
