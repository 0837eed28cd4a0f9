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
the same distributions (pad-crop-flip: crop offsets uniform in ``[0, 2 * pad]``,
flip with probability 1/2; the stronger recipe: the same Keras layers in the same
order, ``data/augment_layers.py``), not the same random numbers.

The stronger recipe in the step (``StrongAugment``): RandAugment (each image its
own operations), random erasing, then CutMix or MixUp on the batch. Mixing
changes the labels, which ``call`` does not see: ``AugmentedTrainer.compute_loss``
draws the same mixture again from the batch's seeds (it depends on the seeds and
the batch's shape only) and mixes the one-hot labels with it. Under ``jax.jit``
the second draw's unused image work is dropped by the compiler.
"""

from __future__ import annotations

import warnings

import keras
from keras import ops

from ravit_keras.config import RAViTConfig
from ravit_keras.data.augment_layers import StrongAugmentLayers


class _BatchSeeds(keras.random.SeedGenerator):
    """A ``SeedGenerator`` over one seed pair tensor: draw k of stream s is ``seed + [s, k]``.

    It holds no state variable (``SeedGenerator.__init__`` is not called), so it is
    made inside the traced step; each draw of one call gets its own seed, and
    each stream (pad-crop-flip 0, the stronger recipe's 1-5) its own sequence.
    """

    def __init__(self, seed, stream: int = 0):  # noqa: D107 - no variable on purpose.
        self._seed = seed
        self._stream = int(stream)
        self._draws = 0

    def next(self, ordered=True):
        self._draws += 1
        return self._seed + ops.convert_to_tensor([self._stream, self._draws], dtype=self._seed.dtype)


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


class StrongAugment(keras.layers.Layer):
    """The stronger recipe in the step: RandAugment, random erasing, CutMix or MixUp (``StrongAugmentLayers``).

    Call with ``(float32 images [B, H, W, 3] in [0, 255], seeds [B, 2])``; every draw
    comes from ``seeds[0]`` (streams 1-5, beside pad-crop-flip's 0). Identity when not
    training or without seeds. ``mixed_labels`` gives the labels of the images this
    call mixed.

    Args:
        augmentation: a ``data.augmentation.Augmentation`` (what to apply).
        image_size: (height, width) of the images.
        num_classes: classes of the one-hot labels CutMix and MixUp mix.
    """

    def __init__(self, augmentation, image_size, num_classes: int, **kwargs):
        kwargs.setdefault("dtype", "float32")  # Pixels, whatever the model's policy.
        super().__init__(**kwargs)
        self.augmentation = augmentation
        self.keras_layers = StrongAugmentLayers(augmentation, image_size, num_classes)
        self.num_classes = int(num_classes)
        if augmentation.mixup_alpha:
            # Keras's MixUp asks for an int64 permutation; JAX (no x64) gives int32, which indexes
            # any batch, and warns at every trace: quiet output by default.
            warnings.filterwarnings("ignore", message="Explicitly requested dtype int64 requested in arange")

    def call(self, images, seeds=None, training=False):
        images = ops.cast(images, "float32")
        if not training or seeds is None:
            return images
        streams = _streams(seeds)
        images = self.keras_layers.erased(self.keras_layers.rand_augmented(images, streams), streams)
        if not self.augmentation.mixes:
            return images
        return self.keras_layers.mixed(images, self.one_hot(ops.zeros((ops.shape(images)[0],), "int32")), streams)[0]

    def one_hot(self, labels):
        """float32 [B, classes] from class indices [B] (one-hot rows pass through)."""
        if len(labels.shape) == 2:
            return ops.cast(labels, "float32")
        return ops.one_hot(ops.cast(ops.reshape(labels, (-1,)), "int32"), self.num_classes, dtype="float32")

    def mixed_labels(self, images, labels, seeds):
        """The one-hot labels of what ``call(images, seeds, training=True)`` gave for ``labels``
        (class indices or one-hot rows): the same seeds draw the same mixture."""
        labels = self.one_hot(labels)
        if not self.augmentation.mixes:
            return labels
        return self.keras_layers.mixed(ops.cast(images, "float32"), labels, _streams(seeds))[1]

    def compute_output_shape(self, input_shape):
        return input_shape


def _streams(seeds):
    """``stream -> SeedGenerator`` over a batch's first seed pair."""
    seed = ops.cast(seeds[0], seed_dtype())
    return lambda stream: _BatchSeeds(seed, stream)


class AugmentedTrainer(keras.Model):
    """Training-only model: in-step augmentation, then ``ravit``.

    Takes ``{"images": [B, H, W, 3], "seeds": [B, 2]}`` (``SplitBatches``) or bare
    images, returns the RAViT's ``{exit: logits}``. Fit this; save ``self.ravit``.
    With CutMix or MixUp, compile it with soft-label losses (``compile_ravit(...,
    soft_labels=True)``): the losses take the mixed one-hot labels, the metrics
    each image's own label (one-hot).

    Args:
        ravit: the joint model trained (its weights are this model's weights).
        augmentation: optional ``data.augmentation.Augmentation``: the stronger
            recipe's augmentations after pad-crop-flip (None or all off: the paper's).
    """

    def __init__(self, ravit, augmentation=None, **kwargs):
        kwargs.setdefault("name", "augmented_trainer")
        super().__init__(**kwargs)
        self.ravit = ravit
        self.ravit_config = config = ravit.ravit_config
        self.augment = PadCropFlip(paper_pad(config), name="pad_crop_flip")
        self.strong = None
        if augmentation is not None and augmentation.enabled:
            self.strong = StrongAugment(augmentation, config.image_size, config.num_classes, name="strong_augment")

    def call(self, inputs, training=False):
        if isinstance(inputs, dict):
            images, seeds = inputs["images"], inputs.get("seeds")
        else:
            images, seeds = inputs, None
        images = self.augment(images, seeds, training=training)
        if self.strong is not None:
            images = self.strong(images, seeds, training=training)
        return self.ravit(images, training=training)

    def _targets(self, x, y, mixed: bool):
        """``y`` as the soft-label losses and metrics take it: one-hot, mixed as the images were."""
        if self.strong is None or not self.strong.augmentation.mixes or y is None:
            return y
        seeds = x.get("seeds") if isinstance(x, dict) else None
        images = x["images"] if isinstance(x, dict) else x
        some = next(iter(y.values()))  # Every exit has the same labels.
        target = (self.strong.mixed_labels(images, some, seeds) if mixed and seeds is not None
                  else self.strong.one_hot(some))
        return {name: target for name in y}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return super().compute_loss(x, self._targets(x, y, mixed=training), y_pred, sample_weight,
                                    training=training)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(x, self._targets(x, y, mixed=False), y_pred, sample_weight)
