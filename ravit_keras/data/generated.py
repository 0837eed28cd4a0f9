"""The generated dataset: synthetic images whose classes need different resolutions."""

from __future__ import annotations

import numpy as np

from ravit_keras.data.split import SPLITS, DataSplit, split_from_arrays

# Coarse classes: a big disc of this colour, visible at any resolution.
GENERATED_COARSE_CLASSES = {
    "red_blob": (205, 45, 45),
    "green_blob": (45, 185, 45),
    "blue_blob": (45, 70, 210),
    "yellow_blob": (215, 205, 40),
    "magenta_blob": (200, 45, 200),
}

# Fine classes: a grey square textured with a 2x2-periodic pattern (spatial
# tile x colour direction) of zero mean, so that any 2x2 averaging (a 2x
# down-sampling) leaves the same flat grey square for every fine class.
_VERTICAL = ((1.0, -1.0), (1.0, -1.0))
_HORIZONTAL = ((1.0, 1.0), (-1.0, -1.0))
_CHECKER = ((1.0, -1.0), (-1.0, 1.0))
GENERATED_FINE_CLASSES = {
    "fine_vertical_stripes": (_VERTICAL, (1.0, 1.0, 1.0)),
    "fine_horizontal_stripes": (_HORIZONTAL, (1.0, 1.0, 1.0)),
    "fine_checkerboard": (_CHECKER, (1.0, 1.0, 1.0)),
    "fine_red_green_stripes": (_VERTICAL, (1.5, -1.5, 0.0)),
    "fine_blue_yellow_stripes": (_HORIZONTAL, (-0.9, -0.9, 1.8)),
}

_GENERATED_MAX_CLASSES = len(GENERATED_COARSE_CLASSES) + len(GENERATED_FINE_CLASSES)


def generated_class_names(num_classes: int = 10) -> list[str]:
    """Class names of the generated dataset: coarse classes first, then fine.

    Every image has a dull random background, Gaussian pixel noise and one
    object at a random place. Coarse classes (`red_blob`, `green_blob`,
    `blue_blob`, `yellow_blob`, `magenta_blob`) are a big disc of that colour,
    clear at any resolution. Fine classes (`fine_vertical_stripes`,
    `fine_horizontal_stripes`, `fine_checkerboard`, `fine_red_green_stripes`,
    `fine_blue_yellow_stripes`) are a grey square with a 1-pixel texture of
    random phase that averages to zero over every 2x2 cell, so after a 2x
    down-sampling all fine classes look the same. A coarse exit therefore
    tops out near 50% + 50% / 5 while the full-resolution exit can reach
    100% (the "tiny" preset gets there in about 6 epochs of 2000 images).

    With `num_classes` n, the first `ceil(n / 2)` coarse and `floor(n / 2)`
    fine classes are used.
    """
    if not 2 <= num_classes <= _GENERATED_MAX_CLASSES:
        raise ValueError(
            f"The generated dataset has 2 to {_GENERATED_MAX_CLASSES} classes, got "
            f"num_classes={num_classes}."
        )
    num_coarse = (num_classes + 1) // 2
    return (
        list(GENERATED_COARSE_CLASSES)[:num_coarse]
        + list(GENERATED_FINE_CLASSES)[: num_classes - num_coarse]
    )


def _generate_images(
    num_examples: int, image_size: tuple[int, int], num_classes: int, seed: int, split: str
) -> tuple[np.ndarray, np.ndarray]:
    """Draws the generated dataset; train and test use independent seed streams.

    Each image has a random dull background with Gaussian pixel noise and one
    object at a random position: a colour disc (coarse classes) or a grey
    square with a fine 2x2-periodic texture of random phase (fine classes).
    """
    rng = np.random.default_rng([int(seed), SPLITS.index(split), 0x5241])
    names = generated_class_names(num_classes)
    h, w = image_size
    side = min(h, w)
    labels = rng.permutation(np.arange(num_examples) % num_classes)

    images = rng.uniform(40, 110, size=(num_examples, 1, 1, 3)) * np.ones((1, h, w, 1))
    yy, xx = np.mgrid[0:h, 0:w]
    for i, label in enumerate(labels):
        name = names[label]
        if name in GENERATED_COARSE_CLASSES:
            radius = rng.uniform(0.2, 0.3) * side
            cy = rng.uniform(radius, h - radius)
            cx = rng.uniform(radius, w - radius)
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
            colour = np.asarray(GENERATED_COARSE_CLASSES[name]) + rng.uniform(-20, 20, size=3)
            images[i][mask] = colour
        else:
            s = int(round(rng.uniform(0.6, 0.8) * side))
            top = rng.integers(0, h - s + 1)
            left = rng.integers(0, w - s + 1)
            tile, colour = GENERATED_FINE_CLASSES[name]
            py, px = rng.integers(0, 2, size=2)  # Random phase of the texture.
            texture = np.asarray(tile)[(yy[:s, :s] + py) % 2, (xx[:s, :s] + px) % 2]
            grey = rng.uniform(110, 150)
            amplitude = rng.uniform(50, 65)
            texture = texture[..., None] * np.asarray(colour)
            images[i, top : top + s, left : left + s, :] = grey + amplitude * texture
    images += rng.normal(0.0, 10.0, size=images.shape)
    images = np.clip(np.round(images), 0, 255).astype(np.uint8)
    return images, labels.astype(np.int32)


def load_generated(split, image_size, seed, num_examples, num_classes) -> DataSplit:
    size = image_size or (32, 32)
    if min(size) < 8:
        raise ValueError(f"The generated dataset needs images of at least 8x8, got {size}.")
    n = num_examples if num_examples is not None else (2000 if split == "train" else 500)
    classes = 10 if num_classes is None else num_classes
    x, y = _generate_images(int(n), size, classes, seed, split)
    return split_from_arrays(x, y, generated_class_names(classes), None)


# TensorFlow Datasets ----------------------------------------------------------

