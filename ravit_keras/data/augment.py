"""The stronger recipe's augmentations: Keras's own layers, seeded per example and per batch.

``keras.layers.RandAugment``, ``RandomErasing``, ``CutMix`` and ``MixUp`` draw
their random numbers from a stateful seed generator. In a parallel ``tf.data``
map that state is read and advanced by whichever example runs first, so the
same seed would give other batches on every run. Here each call draws from a
stateless seed instead (the pipeline's per-example seed pair, or one per batch)
through the layers' public ``get_random_transformation(..., seed=...)``: a run
depends on its seed alone, at any parallelism.

Order, as in DeiT and SPT_LSA_ViT: per image, the paper's pad-crop-flip then
RandAugment; per batch, random erasing then CutMix or MixUp (one of the two,
chosen at random with probability 1/2 per batch when both are on, timm's
``switch_prob``). CutMix and MixUp turn the labels into one-hot mixtures.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from ravit_keras.data.augmentation import Augmentation  # noqa: F401  (its home before)

# Fold-in constants: independent streams from one seed pair.
_RAND_AUGMENT_STREAM = 1
_BATCH_STREAM = 2


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


class _SeededRandAugment(keras.layers.RandAugment):
    """``keras.layers.RandAugment`` that draws from the ``seed`` it is given.

    Keras's own ignores that argument and draws from its seed generator; this is
    its ``get_random_transformation`` with the seed passed through (same choice of
    operations, same transformations).
    """

    def get_random_transformation(self, data, training=True, seed=None):
        if seed is None or not training:
            return super().get_random_transformation(data, training=training, seed=seed)
        layer_idxes = self.backend.random.randint((self.num_ops,), 0, len(self._AUGMENT_LAYERS), seed=seed)
        transforms = {name: getattr(self, name).get_random_transformation(data, training=True, seed=seed)
                      for name in self._AUGMENT_LAYERS}
        return {"transforms": transforms, "layer_idxes": layer_idxes}


def _on_tensorflow(*layers):
    """tf.data runs TensorFlow ops whatever the Keras backend (as DataLayer.__call__ does)."""
    for layer in layers:
        layer.backend.set_backend("tensorflow")
        for sub in getattr(layer, "_AUGMENT_LAYERS", ()):
            getattr(layer, sub).backend.set_backend("tensorflow")


class Augmenter:
    """The Keras layers of one ``Augmentation``, applied per image and per batch.

    Args:
        augmentation: what to apply.
        image_size: (height, width) of the images.
        num_classes: classes of the one-hot labels CutMix and MixUp mix.
    """

    def __init__(self, augmentation: Augmentation, image_size: tuple[int, int], num_classes: int):
        self.augmentation = augmentation
        self.num_classes = int(num_classes)
        shape = (None, *image_size, 3)
        a = augmentation
        self.rand_augment = self.random_erasing = self.cutmix = self.mixup = None
        if a.rand_augment_ops:
            self.rand_augment = _SeededRandAugment(
                value_range=(0, 255), num_ops=a.rand_augment_ops, factor=a.rand_augment_magnitude,
                dtype="float32")
        if a.random_erasing:
            # A (p, p) factor: every image is erased with probability p (a single number p
            # would draw the probability itself uniformly from [0, p]).
            self.random_erasing = keras.layers.RandomErasing(
                factor=(a.random_erasing, a.random_erasing), value_range=(0, 255), dtype="float32")
        if a.cutmix_alpha:
            # (alpha, alpha): Beta(alpha, alpha); a single number would draw alpha from [0, alpha].
            self.cutmix = keras.layers.CutMix(factor=(a.cutmix_alpha, a.cutmix_alpha), dtype="float32")
        if a.mixup_alpha:
            self.mixup = keras.layers.MixUp(alpha=a.mixup_alpha, dtype="float32")
        layers = [x for x in (self.rand_augment, self.random_erasing, self.cutmix, self.mixup) if x is not None]
        for layer in layers:
            layer.build(shape)
        _on_tensorflow(*layers)

    def image(self, image, seed):
        """One image (any dtype, [H, W, 3] in [0, 255]) -> float32, RandAugment applied."""
        image = tf.cast(image, tf.float32)
        if self.rand_augment is None:
            return image
        seeds = _StatelessSeeds(tf.random.experimental.stateless_fold_in(seed, _RAND_AUGMENT_STREAM))
        batch = image[None]
        transformation = self.rand_augment.get_random_transformation(batch, training=True, seed=seeds)
        out = self.rand_augment.transform_images(batch, transformation, training=True)[0]
        return tf.clip_by_value(out, 0.0, 255.0)

    def batch(self, images, labels, seeds):
        """A batch -> (float32 images, labels): erasing, then CutMix or MixUp.

        ``seeds`` are the batch's per-example seed pairs; the first seeds the batch.
        Labels come back one-hot (float32 [B, classes]) when mixing, else as given.
        """
        images = tf.cast(images, tf.float32)
        seed = tf.random.experimental.stateless_fold_in(seeds[0], _BATCH_STREAM)
        erase_seed, choice_seed, cutmix_seed, mixup_seed = tf.unstack(
            tf.random.experimental.stateless_split(seed, 4))
        if self.random_erasing is not None:
            t = self.random_erasing.get_random_transformation(images, training=True,
                                                              seed=_StatelessSeeds(erase_seed))
            images = self.random_erasing.transform_images(images, t, training=True)
        if not self.augmentation.mixes:
            return images, labels
        labels = tf.one_hot(tf.cast(labels, tf.int32), self.num_classes, dtype=tf.float32)
        mixed = []
        for layer, layer_seed in ((self.cutmix, cutmix_seed), (self.mixup, mixup_seed)):
            if layer is not None:
                data = {"images": images, "labels": labels}
                t = layer.get_random_transformation(data, training=True, seed=_StatelessSeeds(layer_seed))
                mixed.append((layer.transform_images(images, t, training=True),
                              tf.cast(layer.transform_labels(labels, t, training=True), tf.float32)))
        if len(mixed) == 1:
            return mixed[0]
        use_cutmix = tf.random.stateless_uniform([], seed=choice_seed) < 0.5
        return (tf.where(use_cutmix, mixed[0][0], mixed[1][0]),
                tf.where(use_cutmix, mixed[0][1], mixed[1][1]))
