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


# Converted submodels (session-scoped: training and conversion happen once) ------


class TrainedTinyRAViT:
    """A tiny "1-2" RAViT trained briefly on generated data, with its data."""

    def __init__(self, model, config, class_names, calib_images, calib_labels, test_images, test_labels):
        self.model = model
        self.config = config
        self.class_names = class_names
        self.calib_images = calib_images    # uint8 (400, 32, 32, 3), training images
        self.calib_labels = calib_labels
        self.test_images = test_images      # uint8 (300, 32, 32, 3), test split
        self.test_labels = test_labels
        self._keras_logits = None

    def keras_logits(self):
        """Float Keras logits of every exit on ``test_images`` (computed once)."""
        if self._keras_logits is None:
            from ravit_keras.evaluation import predict_exit_logits

            self._keras_logits, _ = predict_exit_logits(self.model, self.test_images.astype("float32"))
        return self._keras_logits


@pytest.fixture(scope="session")
def tflite_trained_ravit():
    """Tiny RAViT "1-2" trained 10 epochs on 1500 generated images (coarse classes learned
    by both exits, fine classes only by the full-resolution exit, so the exits differ)."""
    import keras

    from ravit_keras.config import get_config
    from ravit_keras.data import load_split, make_pipeline
    from ravit_keras.model import build_ravit
    from ravit_keras.train import compile_ravit, make_optimizer

    keras.utils.set_random_seed(0)
    config = get_config("tiny", layers="1-2")
    model = build_ravit(config)
    train = load_split("generated", "train", num_examples=1500, num_classes=config.num_classes)
    epochs, batch = 10, 64
    steps = train.num_examples // batch
    compile_ravit(model, make_optimizer(2e-3, 0.05, epochs * steps, steps), jit_compile=False)
    model.fit(make_pipeline(train, config, batch, training=True), epochs=epochs, verbose=0)
    calib_images, calib_labels = train.as_numpy(400)
    test = load_split("generated", "test", num_examples=300, num_classes=config.num_classes)
    test_images, test_labels = test.as_numpy()
    return TrainedTinyRAViT(model, config, list(train.class_names), calib_images, calib_labels,
                            test_images, test_labels)


def _convert_once(trained, folder, mode):
    from ravit_keras.deploy.export.convert import ConversionOptions, convert

    convert(trained.model, folder, trained.calib_images, trained.calib_labels,
            class_names=trained.class_names,
            options=ConversionOptions(mode=mode, num_calibration=100), progress=None)
    return folder


@pytest.fixture(scope="session")
def tflite_int8_folder(tflite_trained_ravit, tmp_path_factory):
    """The fixture model converted once to int8 (read-only: copy it before corrupting)."""
    return _convert_once(tflite_trained_ravit, tmp_path_factory.mktemp("ravit_int8") / "model", "int8")


@pytest.fixture(scope="session")
def tflite_float32_folder(tflite_trained_ravit, tmp_path_factory):
    """The fixture model converted once to float32 (read-only: copy it before corrupting)."""
    return _convert_once(tflite_trained_ravit, tmp_path_factory.mktemp("ravit_float32") / "model", "float32")
