"""The stronger recipe's Keras layers and their order, for both input paths (no TensorFlow import).

``StrongAugmentLayers`` builds Keras's own ``RandAugment``, ``RandomErasing``,
``CutMix`` and ``MixUp`` from an ``Augmentation`` and applies them in one order:
per image RandAugment, per batch random erasing then CutMix or MixUp (one of the
two, chosen with probability 1/2 per batch when both are on: timm's
``switch_prob``, as DeiT and SPT_LSA_ViT). Every random number comes from the
seed generator passed in for its stream (``seeds(stream)``), never from a
layer's own state: the caller decides what a run's randomness depends on.

Two callers:

- ``data/augment.py`` (TensorFlow backend): inside ``tf.data``, one image at a
  time for RandAugment, with stateless per-example seeds;
- ``training/in_step.py`` (other backends): inside the jitted training step, on
  the whole batch, with the seeds each batch carries.

Operations run through each layer's own backend (``layer.backend``), so the same
code runs as TensorFlow ops in ``tf.data`` and as JAX ops in the step.
"""

from __future__ import annotations

import keras

from ravit_keras.data.augmentation import Augmentation

# Streams: independent seeds of one batch (or image) for each random choice.
RAND_AUGMENT_STREAM, ERASING_STREAM, CHOICE_STREAM, CUTMIX_STREAM, MIXUP_STREAM = 1, 2, 3, 4, 5


class PerImageRandAugment(keras.layers.RandAugment):
    """``keras.layers.RandAugment`` that picks each image's operations and draws from the ``seed`` given.

    Keras's own picks one set of ``num_ops`` operations for a whole batch (every
    image of a batch gets the same two operations) and ignores its ``seed``
    argument. Here each image gets its own draw, as the RandAugment paper and
    timm apply it, and the sub-layers' per-image magnitudes come from the same
    seed. On a batch of one image it is RandAugment of that image.
    """

    # Operations whose statistics Keras takes over the whole batch (Equalization's histogram):
    # run image by image, so an image's result does not depend on the others in its batch.
    _BATCH_STATISTICS = ("equalization",)

    def get_random_transformation(self, data, training=True, seed=None):
        if not training:
            return None
        images = data["images"] if isinstance(data, dict) else data
        seed = seed if seed is not None else self._get_seed_generator(self.backend._backend)
        batch = self.backend.core.shape(images)[0]
        layer_idxes = self.backend.random.randint(
            (batch, self.num_ops), 0, len(self._AUGMENT_LAYERS), seed=seed)
        transforms = {name: getattr(self, name).get_random_transformation(images, training=True, seed=seed)
                      for name in self._AUGMENT_LAYERS}
        return {"transforms": transforms, "layer_idxes": layer_idxes}

    def transform_images(self, images, transformation, training=True):
        images = self.backend.cast(images, self.compute_dtype)
        if not training or transformation is None:
            return images
        where, reshape = self.backend.numpy.where, self.backend.numpy.reshape
        for i in range(self.num_ops):
            chosen = reshape(transformation["layer_idxes"][:, i], (-1, 1, 1, 1))
            for idx, (name, value) in enumerate(transformation["transforms"].items()):
                # Every operation runs on the batch and each image keeps the one it drew, as
                # Keras's own selects its batch-wide choice.
                images = where(chosen == idx, self._transformed(name, images, value), images)
        return self.backend.cast(images, self.compute_dtype)

    def _transformed(self, name, images, value):
        layer = getattr(self, name)
        if name not in self._BATCH_STATISTICS or self.backend.core.shape(images)[0] == 1:
            return layer.transform_images(images, value)
        one = lambda image: layer.transform_images(image[None], value)[0]  # noqa: E731
        # JAX vectorises it (vmap); TensorFlow's vectorized_map cannot (Equalization's data-dependent
        # shapes), so there it is a loop over the images.
        core = self.backend.core
        return core.vectorized_map(one, images) if self.backend.name == "jax" else core.map(one, images)


class StrongAugmentLayers:
    """The Keras layers of one ``Augmentation``, applied per image and per batch.

    Args:
        augmentation: what to apply.
        image_size: (height, width) of the images.
        num_classes: classes of the one-hot labels CutMix and MixUp mix.
    """

    def __init__(self, augmentation: Augmentation, image_size, num_classes: int):
        self.augmentation = augmentation
        self.num_classes = int(num_classes)
        a = augmentation
        self.rand_augment = self.random_erasing = self.cutmix = self.mixup = None
        if a.rand_augment_ops:
            self.rand_augment = PerImageRandAugment(
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
        for layer in self.layers:
            layer.build((None, *image_size, 3))

    @property
    def layers(self) -> list:
        """The Keras layers that are on."""
        return [x for x in (self.rand_augment, self.random_erasing, self.cutmix, self.mixup) if x is not None]

    def rand_augmented(self, images, seeds):
        """float32 images [B, H, W, 3] in [0, 255] -> RandAugment of each, clipped to [0, 255]."""
        layer = self.rand_augment
        if layer is None:
            return images
        t = layer.get_random_transformation(images, training=True, seed=seeds(RAND_AUGMENT_STREAM))
        return layer.backend.numpy.clip(layer.transform_images(images, t, training=True), 0.0, 255.0)

    def erased(self, images, seeds):
        """Random erasing of each image of a float32 batch (the identity when off)."""
        layer = self.random_erasing
        if layer is None:
            return images
        t = layer.get_random_transformation(images, training=True, seed=seeds(ERASING_STREAM))
        return layer.transform_images(images, t, training=True)

    def mixed(self, images, labels, seeds):
        """CutMix or MixUp of a float32 batch and its one-hot labels [B, classes] -> (images, labels).

        The labels' mixture depends on the batch's shape and seeds only, not on its
        pixels: the same seeds give the same mixture for any images of that shape.
        """
        mixed = []
        for layer, stream in ((self.cutmix, CUTMIX_STREAM), (self.mixup, MIXUP_STREAM)):
            if layer is not None:
                data = {"images": images, "labels": labels}
                t = layer.get_random_transformation(data, training=True, seed=seeds(stream))
                mixed.append((layer.transform_images(images, t, training=True),
                              layer.backend.cast(layer.transform_labels(labels, t, training=True), "float32")))
        if len(mixed) < 2:
            return mixed[0] if mixed else (images, labels)
        backend = self.cutmix.backend
        use_cutmix = backend.random.uniform((), seed=seeds(CHOICE_STREAM)) < 0.5
        return (backend.numpy.where(use_cutmix, mixed[0][0], mixed[1][0]),
                backend.numpy.where(use_cutmix, mixed[0][1], mixed[1][1]))
