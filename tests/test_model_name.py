"""A model is named after its data (or --name), never "<arch>-custom" (issue 25)."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from ravit_keras import runs
from ravit_keras.cli import main
from ravit_keras.config import get_config
from ravit_keras.data.source import DataSource, dataset_name
from ravit_keras.training.normalization import model_name


@pytest.mark.parametrize("data, name", [
    ("tfds:tf_flowers", "tf_flowers"),
    ("tfds:imagenet2012/subset", "imagenet2012-subset"),
    ("/data/flowers", "flowers"),
    ("/data/flowers/", "flowers"),
    ("faces.npz", "faces"),
    ("/x/cifar-10-python.tar.gz", "cifar-10-python"),
    ("/x/my photos", "my-photos"),
    ("generated", "generated"),
])
def test_dataset_name(data, name):
    assert dataset_name(data) == name
    assert DataSource(data).name == name


def test_model_name_prefers_the_flag_then_the_architectures_own_data():
    config = get_config("cifar10")
    flowers = SimpleNamespace(class_names=["daisy", "rose"], num_classes=2)
    source = DataSource("/data/flowers")
    assert model_name(config, "cifar10", source, flowers) == "flowers"
    assert model_name(config, "cifar10", source, flowers, name="petals") == "petals"
    from ravit_keras.data import CIFAR10_CLASS_NAMES

    cifar = SimpleNamespace(class_names=list(CIFAR10_CLASS_NAMES), num_classes=10)
    assert model_name(config, "cifar10", DataSource("/data/cifar-10-batches-py"), cifar) == "cifar10"


def test_name_flag_is_checked(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--data", "generated", "--out", "x", "--name", "a/b"])
    assert "--name: expected up to 64 letters" in capsys.readouterr().err


def test_a_model_trained_on_a_flower_folder_is_named_flowers(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for c, cls in enumerate(("daisy", "rose")):
        (tmp_path / "flowers" / cls).mkdir(parents=True)
        for i in range(12):
            pixels = np.clip(rng.normal(60 + 120 * c, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "flowers" / cls / f"{i}.png")
    out = tmp_path / "run"
    assert main(["train", "--arch", "tiny", "--layers", "0-1", "--data", str(tmp_path / "flowers"),
                 "--epochs", "1", "--batch-size", "8", "--progress", "none", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "RAViT 0-1 (flowers) on" in printed and "custom" not in printed
    record = json.loads((out / runs.RECORD_FILE).read_text())
    assert record["model"]["name"] == "flowers"
