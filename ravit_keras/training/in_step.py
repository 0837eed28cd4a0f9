"""Augmentation inside the training step, on the accelerator: the input path of non-TensorFlow backends.

``AugmentedTrainer`` is a training-only model: ``PadCropFlip`` (the paper's
zero-pad, random crop back, random horizontal flip) then the joint RAViT. It is
what ``model.fit`` trains and what the run's checkpoint holds; only its ``ravit``
is saved as ``model.keras``. At inference (``training=False``) the augmentation is
the identity.

Seeded and resumable without state: each batch carries its own per-example seed
pairs (``data.batches.SplitBatches``, drawn from ``(seed, epoch, batch)``), and
the layer draws from the batch's first pair. Keras's ``BackupAndRestore``
checkpoint does not hold a ``SeedGenerator``'s state (``Layer.save_own_variables``
saves trainable and non-trainable weights only), so a stateful generator would
restart its stream on resume; seeds that come with the data make a resumed run
draw what an uninterrupted one draws.

Decision: the TensorFlow backend keeps its ``tf.data`` pipeline
(``data/pipeline.py``): there the augmentation runs in tf.data's threads beside
the XLA step instead of inside it, and its recipe (including the stronger
recipe's CutMix and MixUp, which change the labels) stays as measured. Both give
the same distribution of pad-crop-flip (crop offsets uniform in ``[0, 2 * pad]``,
flip with probability 1/2), not the same random numbers. On JAX the stronger
recipe's augmentations are not available yet (``check_in_step_recipe``).
"""

from __future__ import annotations

import keras
from keras import ops

from ravit_keras.config import RAViTConfig


class _BatchSeeds(keras.random.SeedGenerator):
    """A ``SeedGenerator`` over one seed pair tensor: draw k is ``seed + [0, k]``.

    It holds no state variable (``SeedGenerator.__init__`` is not called), so it is
    made inside the traced step; each draw of one call gets its own seed.
    """

    def __init__(self, seed):  # noqa: D107 - no variable on purpose.
        self._seed = seed
        self._draws = 0

    def next(self, ordered=True):
        self._draws += 1
        return self._seed + ops.convert_to_tensor([0, self._draws], dtype=self._seed.dtype)


def check_in_step_recipe(augmentation) -> None:
    """Refuses what the in-step path does not do yet: the stronger recipe's augmentations.

    Raises:
        ValueError: naming the flags to drop or the backend to use.
    """
    if augmentation is not None and augmentation.enabled:
        raise ValueError(
            f"The {keras.backend.backend()} backend trains with the paper's pad-crop-flip only; RandAugment, "
            "random erasing, CutMix and MixUp (--recipe strong and its flags) run in TensorFlow's input "
            "pipeline: use --backend tensorflow for them.")


def seed_dtype() -> str:
    """The dtype a backend's stateless random ops take their seed pair in."""
    return "uint32" if keras.backend.backend() == "jax" else "int32"


@keras.saving.register_keras_serializable(package="ravit")
class PadCropFlip(keras.layers.Layer):
    """Zero-pads by ``pad`` pixels, crops back at a random offset and flips half the images.

    Call with ``(images [B, H, W, 3] in [0, 255], seeds [B, 2])``; each image gets its
    own offset and flip, drawn from ``seeds[0]``. Identity (a float32 cast) when not
    training or without seeds.

    Args:
        pad: (rows, columns) of zero padding; the paper's CIFAR recipe is 4 at 32 px
            (``max(1, side // 8)``).
    """

    def __init__(self, pad, **kwargs):
        kwargs.setdefault("dtype", "float32")  # Pixels, whatever the model's policy.
        super().__init__(**kwargs)
        self.pad = tuple(int(p) for p in pad)

    def call(self, images, seeds=None, training=False):
        images = ops.cast(images, "float32")
        if not training or seeds is None:
            return images
        batch, height, width = ops.shape(images)[0], images.shape[1], images.shape[2]
        py, px = self.pad
        draws = _BatchSeeds(ops.cast(seeds[0], seed_dtype()))
        oy = keras.random.randint((batch,), 0, 2 * py + 1, seed=draws)
        ox = keras.random.randint((batch,), 0, 2 * px + 1, seed=draws)
        flip = keras.random.uniform((batch,), seed=draws) < 0.5
        padded = ops.pad(images, ((0, 0), (py, py), (px, px), (0, 0)))
        rows = oy[:, None] + ops.arange(height, dtype=oy.dtype)[None]  # [B, H] source rows
        cols = ox[:, None] + ops.arange(width, dtype=ox.dtype)[None]  # [B, W] source columns
        cols = ops.where(flip[:, None], ops.flip(cols, axis=1), cols)  # A flip reads the columns backwards.
        out = ops.take_along_axis(
            padded, ops.broadcast_to(rows[:, :, None, None], (batch, height, width + 2 * px, 3)), axis=1)
        return ops.take_along_axis(
            out, ops.broadcast_to(cols[:, None, :, None], (batch, height, width, 3)), axis=2)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "pad": list(self.pad)}


def paper_pad(config: RAViTConfig) -> tuple[int, int]:
    """The paper's padding at a model's resolution: ``max(1, side // 8)`` (4 at 32 px)."""
    return tuple(max(1, s // 8) for s in config.image_size)


class AugmentedTrainer(keras.Model):
    """Training-only model: in-step augmentation, then ``ravit``.

    Takes ``{"images": [B, H, W, 3], "seeds": [B, 2]}`` (``SplitBatches``) or bare
    images, returns the RAViT's ``{exit: logits}``. Fit this; save ``self.ravit``.

    Args:
        ravit: the joint model trained (its weights are this model's weights).
    """

    def __init__(self, ravit, **kwargs):
        kwargs.setdefault("name", "augmented_trainer")
        super().__init__(**kwargs)
        self.ravit = ravit
        self.ravit_config = ravit.ravit_config
        self.augment = PadCropFlip(paper_pad(ravit.ravit_config), name="pad_crop_flip")

    def call(self, inputs, training=False):
        if isinstance(inputs, dict):
            images, seeds = inputs["images"], inputs.get("seeds")
        else:
            images, seeds = inputs, None
        return self.ravit(self.augment(images, seeds, training=training), training=training)
