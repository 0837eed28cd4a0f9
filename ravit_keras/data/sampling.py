"""Seeded, stratified holdouts and orders: the same seed gives the same split everywhere."""

from __future__ import annotations

import numpy as np

SPLITS = ("train", "test")


def holdout(files, labels, split, fraction, seed, salt: int = 0x484F):
    """Seeded stratified split: `fraction` of each class is "test", the rest "train".

    ``salt`` keeps different holdouts (test, calibration) independent of each other.
    """
    is_test = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = int(round(len(idx) * fraction))
        k = min(max(k, 1), len(idx) - 1) if len(idx) > 1 else 0
        # A per-class stream keeps each class's holdout independent of the others.
        rng = np.random.default_rng([int(seed), int(c), salt])
        is_test[rng.permutation(idx)[:k]] = True
    keep = is_test if split == "test" else ~is_test
    return files[keep], labels[keep]


def seeded_order(files, labels, seed, split, num_examples):
    rng = np.random.default_rng([int(seed), SPLITS.index(split), 0x4F52])
    order = rng.permutation(len(files))
    if num_examples is not None:
        order = order[:num_examples]
    return files[order], labels[order]
