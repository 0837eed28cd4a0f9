"""Fine-tuning: a trained RAViT (a preset, a run folder or a ``.keras`` file) as the start of a new run.

``load_init(path)`` reads the source once (its model, configuration, class names
and the SHA-256 of its model file); ``finetune_config`` derives the new run's
configuration from it (the source's architecture and normalisation, the data's
classes, optionally another image size) and refuses a configuration whose
weights cannot be copied, naming the field; ``InitSource.apply`` copies the
weights into a freshly built model:

* every branch's patch embedding, CLS token, encoder (or LIT MLP) blocks and exit
  LayerNorm, unchanged;
* position embeddings resampled over the patch grid where a branch's grid differs
  (another image size or scale): bicubic 2-D interpolation of the patch positions
  with the CLS position kept, as timm's ``resample_abs_pos_embed`` and keras-hub's
  ViT do;
* the exit heads (the Dense layers) only when the classes are the source's, by
  name; otherwise they keep their fresh initialisation.

``init_from(source, config)`` does the three in one call. Presets are looked up
by ``ravit_keras.presets`` (a layer above this one): ``from_preset(name,
num_classes=...)`` there, ``ravit train --init preset:NAME`` on the command line.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from ravit_keras import runs
from ravit_keras.config import RAViTConfig
from ravit_keras.io_utils import file_sha256

# Fields whose value fixes a weight's shape or meaning: the source's and the new
# model's must be equal (with the flag that sets each, for the refusal).
ARCHITECTURE_FIELDS = {
    "layers": "--layers", "mlp_layers": "--mlp-layers", "hidden_dim": "--hidden-dim",
    "mlp_dim": "--mlp-dim", "num_heads": "--num-heads", "patch_size": None,
    "mlp_activation": "--mlp-activation", "layer_norm_epsilon": None,
}
# The layers of a branch that belong to its exit head; every other layer with
# weights is the branch's encoder (frozen by --freeze-epochs).
HEAD_LAYERS = ("exit_norm", "exit_head")
CLASSIFIER_LAYER = "exit_head"


class ArchitectureMismatchError(ValueError):
    """The source's weights do not fit the requested architecture (names the field)."""


@dataclass
class InitSource:
    """A trained RAViT a run starts from.

    Attributes:
        label: what the user gave (``preset:NAME``, a run folder, a ``.keras`` file).
        model_file: the ``.keras`` file read.
        sha256: of that file, recorded in the new run.
        model: the loaded source model.
        class_names: the source's class names (None when it records none).
    """

    label: str
    model_file: Path
    sha256: str
    model: Any = field(repr=False)
    class_names: list[str] | None = None

    @property
    def config(self) -> RAViTConfig:
        """The source model's configuration."""
        return self.model.ravit_config

    def record(self) -> dict[str, Any]:
        """The run record's ``init`` entry: where the weights came from."""
        return {"source": self.label, "model_file": str(self.model_file), "sha256": self.sha256,
                "class_names": self.class_names}

    def keeps_heads(self, config: RAViTConfig, class_names: Sequence[str] | None) -> bool:
        """Whether the exit heads are copied: the same classes (by name when both sides name them)."""
        if config.num_classes != self.config.num_classes:
            return False
        if class_names is None or self.class_names is None:
            return class_names is None  # Unnamed new classes of the same count: kept, as keras-hub does.
        return [str(n) for n in class_names] == list(self.class_names)

    def apply(self, model, class_names: Sequence[str] | None = None) -> list[str]:
        """Copies the source's weights into ``model`` (built from ``finetune_config``).

        Returns:
            What was done beyond a plain copy (heads re-made, grids resampled), one line each.
        """
        check_compatible(self.config, model.ravit_config, self.label)
        keep_heads = self.keeps_heads(model.ravit_config, class_names)
        new = model.ravit_config
        same_count = new.num_classes == self.config.num_classes
        counts = "has other classes" if same_count else f"has {self.config.num_classes}"
        done = [] if keep_heads else [f"exit heads re-made for {new.num_classes} classes (the source {counts})"]
        for branch, src, dst in zip(new.exit_branches, self.model.branch_models(), model.branch_models()):
            for layer in dst.layers:
                if not layer.weights or (layer.name == CLASSIFIER_LAYER and not keep_heads):
                    continue
                weights = src.get_layer(layer.name).get_weights()
                old_grid, new_grid = _grid(self.config, branch), _grid(new, branch)
                if layer.name == "position_embedding" and old_grid != new_grid:
                    weights = [resample_position_embedding(weights[0], old_grid, new_grid)]
                    done.append(f"branch {branch + 1}: position embeddings resampled from a "
                                f"{old_grid[0]}x{old_grid[1]} to a {new_grid[0]}x{new_grid[1]} patch grid")
                layer.set_weights(weights)
        return done


def load_init(path: str | os.PathLike, label: str | None = None) -> InitSource:
    """Reads a fine-tuning source: a run folder (a preset's included) or a ``.keras`` file.

    Args:
        path: the run folder or model file.
        label: how the run record names it (default: ``path``), e.g. ``preset:NAME``.

    Raises:
        FileNotFoundError: nothing at ``path``, or a folder without a finished model.
        ValueError: the file is not a readable RAViT model.
    """
    from ravit_keras.model import load_ravit

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"--init {label or path}: no run folder or .keras file there.")
    model_file = runs.model_file(p)
    if not model_file.is_file():
        unfinished = " (an unfinished run: train it to the end first)" if (p / runs.BACKUP_DIR).exists() else ""
        raise FileNotFoundError(f"--init {label or path}: the folder holds no {runs.MODEL_FILE}{unfinished}.")
    model = load_ravit(str(model_file))
    names = runs.class_names(model_file, model.ravit_config.num_classes)
    return InitSource(label or str(path), model_file.resolve(), file_sha256(model_file), model,
                      None if runs.are_placeholders(names) else names)


def finetune_config(source: InitSource | RAViTConfig, num_classes: int | None = None, **changes: Any) -> RAViTConfig:
    """The new run's configuration: the source's, with ``num_classes`` and ``changes``.

    The architecture fields (``ARCHITECTURE_FIELDS``) may be given only with the
    source's values; the image size, scale or branch sizes may change (the position
    embeddings are then resampled); the normalisation stays the source's unless
    ``mean``/``std`` are given.

    Raises:
        ArchitectureMismatchError: a change the source's weights cannot follow (names the field).
    """
    base = source.config if isinstance(source, InitSource) else source
    label = source.label if isinstance(source, InitSource) else "the source model"
    if num_classes is not None:
        changes["num_classes"] = int(num_classes)
    config = base.replace(**changes)
    check_compatible(base, config, label)
    return config


def check_compatible(source: RAViTConfig, config: RAViTConfig, label: str = "the source model") -> None:
    """Refuses a configuration the source's weights cannot be copied into.

    Raises:
        ArchitectureMismatchError: naming the first field that differs and its flag.
    """
    for name, flag in ARCHITECTURE_FIELDS.items():
        old, new = getattr(source, name), getattr(config, name)
        if old != new:
            how = f" ({flag})" if flag else ""
            raise ArchitectureMismatchError(
                f"--init {label}: its {name} is {_show(old)} but the model asked for has {_show(new)}{how}; "
                "fine-tuning copies weights, so the architectures must match: leave the architecture flags "
                "out to take the source's.")


def init_from(source: str | os.PathLike | InitSource, config: RAViTConfig | None = None, *,
              class_names: Sequence[str] | None = None, num_classes: int | None = None):
    """A new ``RAViT`` for ``config`` with the weights of ``source`` copied in.

    Args:
        source: a run folder, a ``.keras`` file or a loaded ``InitSource``.
        config: the new model's configuration (default: ``finetune_config(source, num_classes)``).
        class_names: the new data's classes; the exit heads are kept only when they
            are the source's (None: when the class count is the source's).
        num_classes: classes of the new heads when ``config`` is not given.

    Raises:
        ArchitectureMismatchError: ``config`` does not fit the source's weights.
    """
    from ravit_keras.model import RAViT

    init = source if isinstance(source, InitSource) else load_init(source)
    config = config or finetune_config(init, num_classes)
    model = RAViT(config)
    init.apply(model, class_names)
    return model


def resample_position_embedding(embedding: np.ndarray, old_grid: tuple[int, int],
                                new_grid: tuple[int, int]) -> np.ndarray:
    """A ``(1, 1 + h*w, d)`` position embedding resampled to another patch grid.

    The CLS position (first row) is kept; the patch positions, as an ``h x w``
    image of ``d`` channels, are resized bicubically (antialiased when shrinking).
    """
    d = embedding.shape[-1]
    cls, patches = embedding[:, :1], embedding[:, 1:].reshape(1, *old_grid, d)
    resized = keras.ops.image.resize(patches.astype("float32"), new_grid, interpolation="bicubic",
                                     antialias=new_grid[0] < old_grid[0] or new_grid[1] < old_grid[1])
    resized = np.asarray(keras.ops.convert_to_numpy(resized)).reshape(1, new_grid[0] * new_grid[1], d)
    return np.concatenate([cls, resized.astype(embedding.dtype)], axis=1)


def encoder_layers(model) -> list:
    """Every layer with weights outside the exit heads: what ``--freeze-epochs`` freezes."""
    return [layer for branch in model.branch_models() for layer in branch.layers
            if layer.weights and layer.name not in HEAD_LAYERS]


def _grid(config: RAViTConfig, branch: int) -> tuple[int, int]:
    h, w = config.branch_image_sizes[branch]
    return h // config.patch_size, w // config.patch_size


def _show(value) -> str:
    if isinstance(value, tuple):
        return "-".join(str(v) for v in value)
    return "none" if value is None else str(value)


class FreezeEncoders(keras.callbacks.Callback):
    """Trains only the exit heads during the first ``freeze_epochs`` epochs, then everything.

    The phase is a function of the epoch number alone: each epoch begins by
    setting the encoders' ``trainable`` for that epoch. A run resumed by
    ``BackupAndRestore`` starts at the epoch its checkpoint records, so it lands
    in the right phase without a phase being stored anywhere; the run record
    keeps ``freeze_epochs``, and a resume with another value is refused.

    The optimizer must be built on every variable before training (``train``
    does it): the frozen phase then updates a subset of the variables it knows,
    and the checkpoint holds the same optimizer state in both phases.
    """

    def __init__(self, freeze_epochs: int):
        super().__init__()
        self.freeze_epochs = int(freeze_epochs)
        self._frozen = None

    def on_epoch_begin(self, epoch, logs=None):
        frozen = epoch < self.freeze_epochs
        if frozen == self._frozen:
            return
        for layer in encoder_layers(self.model):
            layer.trainable = not frozen
        self._frozen = frozen
        # The compiled step closes over the trainable variables: trace it again.
        self.model.make_train_function(force=True)

    def on_train_end(self, logs=None):
        for layer in encoder_layers(self.model):
            layer.trainable = True  # The saved model is an ordinary, trainable one.
        self._frozen = None

