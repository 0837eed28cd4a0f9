"""The stronger recipe inside the training step (the JAX path): per-image RandAugment, seeds, mixed labels.

The layers run on any Keras backend; the fast tests run them here on TensorFlow, and
``tests/test_jax_training.py`` trains with them on JAX with TensorFlow blocked.
"""

import keras
import numpy as np
import pytest

from ravit_keras.config import get_config
from ravit_keras.data import Augmentation
from ravit_keras.data.augment_layers import PerImageRandAugment
from ravit_keras.data.batches import SplitBatches
from ravit_keras.data.split import split_from_arrays
from ravit_keras.model import RAViT
from ravit_keras.train import compile_ravit
from ravit_keras.training.in_step import AugmentedTrainer, StrongAugment
from ravit_keras.training.recipes import STRONG_RECIPE

STRONG = Augmentation(**{k: v for k, v in STRONG_RECIPE.items() if k in Augmentation.__dataclass_fields__})


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _seeds(batch, seed=0):
    return np.random.default_rng(seed).integers(0, 2**31, (batch, 2)).astype(np.uint32)


def test_rand_augment_picks_each_images_operations():
    """Keras's RandAugment gives a whole batch the same operations; here each image draws its own,
    and each image is what its chosen operation makes of it."""
    layer = PerImageRandAugment(value_range=(0, 255), num_ops=1, factor=0.5, dtype="float32")
    images = np.random.default_rng(0).uniform(0, 255, (32, 16, 16, 3)).astype("float32")
    layer.build(images.shape)
    t = layer.get_random_transformation(images, training=True, seed=keras.random.SeedGenerator(4))
    chosen = _np(t["layer_idxes"])
    assert chosen.shape == (32, 1) and len(set(chosen[:, 0])) > 3
    out = _np(layer.transform_images(images, t, training=True))
    names = list(t["transforms"])
    for k in range(32):  # Image k alone, through its operation: its result does not depend on the batch.
        name = names[chosen[k, 0]]
        value = t["transforms"][name]
        if value is not None and name != "random_rotation":  # Per-image parameters: image k's row.
            value = {key: v[k:k + 1] if getattr(v, "shape", None) and v.shape[0] == 32 else v
                     for key, v in value.items()}
        if name == "random_rotation":
            value = {**value, "batch_size": 1, "angle": value["angle"][k:k + 1],
                     "rotation_matrix": value["rotation_matrix"][k:k + 1]}
        expected = _np(getattr(layer, name).transform_images(images[k:k + 1], value))[0]
        np.testing.assert_allclose(out[k], expected, atol=1e-3, err_msg=name)


def test_strong_augment_is_seeded_and_the_identity_at_inference():
    layer = StrongAugment(STRONG, (16, 16), 10)
    images = np.random.default_rng(1).integers(0, 256, (8, 16, 16, 3)).astype("float32")
    seeds = _seeds(8)
    first = _np(layer(images, seeds, training=True))
    np.testing.assert_array_equal(first, _np(layer(images, seeds, training=True)))  # Same seeds, same batch.
    assert not np.array_equal(first, _np(layer(images, _seeds(8, 1), training=True)))
    assert not np.array_equal(first, images)
    assert first.dtype == np.float32 and 0 <= first.min() and first.max() <= 255
    np.testing.assert_array_equal(_np(layer(images, seeds, training=False)), images)
    np.testing.assert_array_equal(_np(layer(images, training=True)), images)


def _class_valued_batch():
    """Ten 16x16 images, image k of class k filled with the value 20 k + 10 (a class is
    read back from a pixel)."""
    labels = np.arange(10)
    images = np.broadcast_to((20.0 * labels + 10)[:, None, None, None], (10, 16, 16, 3)).astype("float32")
    return images, labels


@pytest.mark.parametrize("augmentation", [Augmentation(cutmix_alpha=1.0), Augmentation(mixup_alpha=0.8),
                                          Augmentation(cutmix_alpha=1.0, mixup_alpha=0.8)],
                         ids=["cutmix", "mixup", "both"])
def test_mixed_labels_are_the_mixture_of_the_mixed_images(augmentation):
    """The labels the loss takes (``mixed_labels``, drawn again from the seeds) mix the classes
    in the shares the images were mixed in: an image's mean value is its label's expected value."""
    layer = StrongAugment(augmentation, (16, 16), 10)
    images, labels = _class_valued_batch()
    values = 20.0 * np.arange(10) + 10
    mixed_any = False
    for seed in range(4):
        seeds = _seeds(10, seed)
        out = _np(layer(images, seeds, training=True))
        target = _np(layer.mixed_labels(images, labels, seeds))
        assert target.shape == (10, 10)
        np.testing.assert_allclose(target.sum(axis=1), 1.0, atol=1e-5)
        # CutMix's share is its box's area, the pixels a whole number of rows and columns of it.
        tolerance = 1e-3 if not augmentation.cutmix_alpha else 0.15 * np.ptp(values)
        np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), target @ values, atol=tolerance)
        if not augmentation.mixup_alpha:  # CutMix pastes pixels: a label's classes are the values seen.
            for k in range(10):
                seen = {int(round((v - 10) / 20)) for v in np.unique(out[k])}
                assert set(np.flatnonzero(target[k] > 1e-6)) <= seen
        mixed_any |= bool((target.max(axis=1) < 0.999).any())
    assert mixed_any


def test_trainer_loss_takes_mixed_labels_and_metrics_the_images_own():
    """``AugmentedTrainer`` on class-index batches (``SplitBatches``): the training loss is the
    cross-entropy of the mixed one-hot labels, evaluation's and the metrics' of each image's own."""
    config = get_config("tiny", layers="1-1")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (32, *config.image_size, 3), dtype=np.uint8)
    split = split_from_arrays(x, np.arange(32) % 10, [f"c{i}" for i in range(10)], None)
    data = SplitBatches(split, config.image_size, config.exit_names, 16, training=True, seed=1)
    trainer = AugmentedTrainer(RAViT(config), Augmentation(mixup_alpha=0.8))
    compile_ravit(trainer, soft_labels=True, jit_compile=False)
    history = trainer.fit(data, epochs=1, verbose=0, shuffle=False).history
    assert np.isfinite(history["loss"][0]) and 0 <= history["exit_1_accuracy"][0] <= 1
    inputs, y = data[0]
    rng = np.random.default_rng(2)  # Confident logits: the cross-entropy tells the targets apart.
    y_pred = {name: 3 * rng.standard_normal((16, 10)).astype("float32") for name in config.exit_names}
    mixed = _np(trainer.strong.mixed_labels(inputs["images"], y["exit_1"], inputs["seeds"]))
    assert (mixed.max(axis=1) < 0.999).any()

    def joint_loss(target):
        total = 0.0
        for name, weight in config.loss_weights.items():
            log_p = y_pred[name] - np.log(np.exp(y_pred[name]).sum(-1, keepdims=True))
            total += weight * -(target * log_p).sum(-1).mean()
        return total

    own = np.eye(10, dtype="float32")[y["exit_1"]]
    assert abs(joint_loss(own) - joint_loss(mixed)) > 0.1
    assert float(trainer.compute_loss(inputs, y, y_pred, training=False)) == pytest.approx(joint_loss(own), rel=1e-4)
    assert float(trainer.compute_loss(inputs, y, y_pred, training=True)) == pytest.approx(joint_loss(mixed), rel=1e-4)
