"""The named training recipes (``ravit train --recipe``), without TensorFlow (the CLI's help reads them).

``paper``: the paper's recipe, the default: pad-crop-flip augmentation, plain
cross-entropy, no stochastic depth. ``strong``: the small-ViT regularisation of
SPT_LSA_ViT ("Vision Transformer for Small-Size Datasets", Lee et al. 2021) and
DeiT: RandAugment instead of their AutoAugment (Keras has no AutoAugment), CutMix
1.0 or MixUp 0.8 per batch, label smoothing 0.1, stochastic depth 0.1, random
erasing 0.25. RandAugment's magnitude is Keras's ``factor`` and is not tuned here;
the recipe's value shows only in long runs and is not measured on this project yet.
"""

from __future__ import annotations

from typing import Any

RECIPES = ("paper", "strong")
# TrainingConfig's augmentation fields (data.augment.Augmentation's fields, in order).
AUGMENTATION_FIELDS = ("rand_augment_ops", "rand_augment_magnitude", "random_erasing", "cutmix_alpha",
                       "mixup_alpha")
PAPER_RECIPE: dict[str, Any] = dict(rand_augment_ops=0, rand_augment_magnitude=0.0, random_erasing=0.0,
                                    cutmix_alpha=0.0, mixup_alpha=0.0, label_smoothing=0.0,
                                    drop_path_rate=0.0)
STRONG_RECIPE: dict[str, Any] = dict(rand_augment_ops=2, rand_augment_magnitude=0.2, random_erasing=0.25,
                                     cutmix_alpha=1.0, mixup_alpha=0.8, label_smoothing=0.1,
                                     drop_path_rate=0.1)


def recipe_settings(name: str) -> dict[str, Any]:
    """A named recipe's settings: TrainingConfig fields, and the model's ``drop_path_rate``.

    Raises:
        ValueError: for an unknown name.
    """
    if name not in RECIPES:
        raise ValueError(f"Unknown recipe {name!r}; choose from {', '.join(RECIPES)}.")
    return dict(STRONG_RECIPE if name == "strong" else PAPER_RECIPE)


def model_and_training_settings(settings: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """``(drop_path_rate, TrainingConfig fields)`` of a recipe's settings: the drop path belongs to
    the model's config, the rest to ``TrainingConfig``."""
    fields = dict(settings)
    return fields.pop("drop_path_rate"), fields


def recipe_name(training_fields: dict[str, Any], drop_path_rate: float) -> str:
    """"paper" or "strong" if these settings are that recipe's, else "custom"."""
    settings = {**{k: training_fields.get(k, 0) for k in PAPER_RECIPE}, "drop_path_rate": drop_path_rate}
    for name in RECIPES:
        if settings == recipe_settings(name):
            return name
    return "custom"
