"""Shared fixtures: toy configurations and random images (keras-hub style toy sizes)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def tiny_config():
    """Two branches (16x16 and 32x32 px), "1-2", d=32, h=64, 2 heads, 10 classes."""
    from ravit_keras.config import get_config

    return get_config("tiny", layers="1-2")


@pytest.fixture
def tiny_images():
    """A batch of 2 random raw-pixel images in [0, 255], 32x32x3, float32."""
    rng = np.random.default_rng(0)
    return rng.uniform(0, 255, size=(2, 32, 32, 3)).astype("float32")
