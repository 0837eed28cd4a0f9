"""Shared test data for the early-exit tests."""

import numpy as np


def make_logits(seed, num_exits, n=300, c=10):
    """Random logits whose later exits are more often right and more confident."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, n)
    per_exit = []
    for e in range(num_exits):
        scale = rng.uniform(0.2, 3.0, size=(n, 1))  # Spread entropies over [0, ln C].
        logits = rng.normal(size=(n, c)) * scale
        logits[np.arange(n), labels] += rng.uniform(0, 2.0 + 2.0 * e, size=n)
        per_exit.append(logits.astype(np.float32))
    return per_exit, labels


def hand_example():
    # 4 images, 3 classes, 3 exits. "conf k" = logit 20 on class k (u ≈ 0); zeros = uniform (u = ln 3).
    z = [0.0, 0.0, 0.0]
    exit0 = [[20, 0, 0], z, [0, 20, 0], z]
    exit1 = [z, [0, 0, 20], z, z]
    exit2 = [[20, 0, 0], [20, 0, 0], [20, 0, 0], [0, 0, 20]]
    labels = [0, 2, 0, 1]
    return [np.array(a, dtype=np.float64) for a in (exit0, exit1, exit2)], np.array(labels)
