"""``Augmentation``: what the stronger recipe adds to the paper's pad-crop-flip (no TensorFlow;
``data/augment.py`` applies it in tf.data)."""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """What the stronger recipe adds to the paper's pad-crop-flip (all off by default).

    Args:
        rand_augment_ops: int >= 0. RandAugment operations per image (0: none).
        rand_augment_magnitude: float in [0, 1]. Keras's RandAugment ``factor``,
            the strength of every operation.
        random_erasing: float in [0, 1). Probability that a rectangle (2-33 % of
            the image) of each image is replaced with noise.
        cutmix_alpha: float >= 0. CutMix with a Beta(alpha, alpha) mixing ratio (0: none).
        mixup_alpha: float >= 0. MixUp with a Beta(alpha, alpha) mixing weight (0: none).
    """

    rand_augment_ops: int = 0
    rand_augment_magnitude: float = 0.0
    random_erasing: float = 0.0
    cutmix_alpha: float = 0.0
    mixup_alpha: float = 0.0

    def __post_init__(self):
        if int(self.rand_augment_ops) != self.rand_augment_ops or self.rand_augment_ops < 0:
            raise ValueError(f"rand_augment_ops must be a non-negative integer, got {self.rand_augment_ops}.")
        if not 0.0 <= self.rand_augment_magnitude <= 1.0:
            raise ValueError(f"rand_augment_magnitude must be in [0, 1], got {self.rand_augment_magnitude}.")
        if not 0.0 <= self.random_erasing < 1.0:
            raise ValueError(f"random_erasing must be in [0, 1), got {self.random_erasing}.")
        for name in ("cutmix_alpha", "mixup_alpha"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}.")

    @property
    def enabled(self) -> bool:
        """Whether anything beyond the paper's pad-crop-flip is on."""
        return bool(self.rand_augment_ops or self.random_erasing or self.mixes)

    @property
    def mixes(self) -> bool:
        """Whether labels become one-hot mixtures (CutMix or MixUp is on)."""
        return bool(self.cutmix_alpha or self.mixup_alpha)
