"""The stronger recipe in ``tf.data`` (TensorFlow backend): Keras's layers, seeded per example and per batch.

``keras.layers.RandAugment``, ``RandomErasing``, ``CutMix`` and ``MixUp`` draw
their random numbers from a stateful seed generator. In a parallel ``tf.data``
map that state is read and advanced by whichever example runs first, so the
same seed would give other batches on every run. Here each call draws from a
stateless seed instead (the pipeline's per-example seed pair, or one per batch)
through the layers' public ``get_random_transformation(..., seed=...)``: a run
depends on its seed alone, at any parallelism. The layers and their order are
``data/augment_layers.py``'s, shared with the in-step path of other backends.

Order, as in DeiT and SPT_LSA_ViT: per image, the paper's pad-crop-flip then
RandAugment; per batch, random erasing then CutMix or MixUp. CutMix and MixUp
turn the labels into one-hot mixtures.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from ravit_keras.data.augment_layers import StrongAugmentLayers
from ravit_keras.data.augmentation import Augmentation

_BATCH_STREAM = 2  # The batch's seed pair: its first example's, folded with this.


class _StatelessSeeds(keras.random.SeedGenerator):
    """A ``SeedGenerator`` over one stateless seed pair: the k-th draw folds in k.

    It holds no state variable (``SeedGenerator.__init__`` is not called), so it can
    be made inside a ``tf.data`` map; every draw of one traced call gets its own seed.
    """

    def __init__(self, seed):  # noqa: D107 - no variable on purpose.
        self._seed = seed
        self._draws = 0

    def next(self, ordered=True):
        self._draws += 1
        return tf.random.experimental.stateless_fold_in(self._seed, self._draws)


def _streams(seed):
    """``stream -> SeedGenerator``: independent stateless streams of one seed pair."""
    return lambda stream: _StatelessSeeds(tf.random.experimental.stateless_fold_in(seed, stream))


def _on_tensorflow(*layers):
    """tf.data runs TensorFlow ops whatever the Keras backend (as DataLayer.__call__ does)."""
    for layer in layers:
        layer.backend.set_backend("tensorflow")
        for sub in getattr(layer, "_AUGMENT_LAYERS", ()):
            getattr(layer, sub).backend.set_backend("tensorflow")


class Augmenter:
    """``StrongAugmentLayers`` in ``tf.data``: ``image`` in the per-example map, ``batch`` after batching.

    Args:
        augmentation: what to apply.
        image_size: (height, width) of the images.
        num_classes: classes of the one-hot labels CutMix and MixUp mix.
    """

    def __init__(self, augmentation: Augmentation, image_size: tuple[int, int], num_classes: int):
        self.augmentation = augmentation
        self.num_classes = int(num_classes)
        self.layers = StrongAugmentLayers(augmentation, image_size, num_classes)
        _on_tensorflow(*self.layers.layers)

    def image(self, image, seed):
        """One image (any dtype, [H, W, 3] in [0, 255]) -> float32, RandAugment applied."""
        image = tf.cast(image, tf.float32)
        return self.layers.rand_augmented(image[None], _streams(seed))[0]

    def batch(self, images, labels, seeds):
        """A batch -> (float32 images, labels): erasing, then CutMix or MixUp.

        ``seeds`` are the batch's per-example seed pairs; the first seeds the batch.
        Labels come back one-hot (float32 [B, classes]) when mixing, else as given.
        """
        images = tf.cast(images, tf.float32)
        streams = _streams(tf.random.experimental.stateless_fold_in(seeds[0], _BATCH_STREAM))
        images = self.layers.erased(images, streams)
        if not self.augmentation.mixes:
            return images, labels
        labels = tf.one_hot(tf.cast(labels, tf.int32), self.num_classes, dtype=tf.float32)
        return self.layers.mixed(images, labels, streams)
