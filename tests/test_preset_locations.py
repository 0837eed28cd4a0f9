"""Preset locations besides a shipped name: a local preset folder, ``hf://`` and ``kaggle://``.

No network here: a hub location is checked by replacing the hub client's download
call (``huggingface_hub.snapshot_download``, ``kagglehub.model_download``) with one
that returns a local copy of a preset, or fails as it does offline.
"""

import shutil
import sys
import types

import numpy as np
import pytest

from ravit_keras import presets, runs
from ravit_keras.presets.locations import PresetLocationError

PRESET = "vit3_cifar10"  # The smallest: one branch.


@pytest.fixture(scope="module")
def preset_copy(tmp_path_factory):
    """A copy of a shipped preset folder, as a user would download or unpack it."""
    folder = tmp_path_factory.mktemp("hub") / "snapshot"
    shutil.copytree(presets.preset_dir(PRESET), folder)
    return folder


def _fake_hub(monkeypatch, module: str, **functions):
    fake = types.ModuleType(module)
    for name, fn in functions.items():
        setattr(fake, name, fn)
    monkeypatch.setitem(sys.modules, module, fake)
    return fake


def _spy_keras_loader(monkeypatch):
    """Records the paths keras.saving.load_model is given (and still loads them)."""
    import keras

    seen, real = [], keras.saving.load_model

    def load_model(path, *args, **kwargs):
        seen.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(keras.saving, "load_model", load_model)
    return seen


def test_a_local_preset_folder_loads_like_a_shipped_preset(preset_copy, tmp_path, capsys):
    from PIL import Image

    from ravit_keras.cli import main

    model = presets.from_preset(str(preset_copy))
    assert model.ravit_config.layer_spec == "0-3"
    assert presets.locate(str(preset_copy)) == preset_copy
    Image.fromarray(np.full((32, 32, 3), 120, np.uint8)).save(tmp_path / "a.png")
    assert main(["predict", str(tmp_path / "a.png"), "--model", str(preset_copy), "--mode", "int8"]) == 0
    assert "1 int8 submodel" in capsys.readouterr().out


def test_a_folder_that_is_not_a_preset_is_named(tmp_path):
    (tmp_path / runs.RECORD_FILE).write_text("{}")
    with pytest.raises(PresetLocationError, match=f"no {runs.MODEL_FILE}"):
        presets.from_preset(str(tmp_path))


def test_hf_location_downloads_through_the_hub_client_and_loads_with_keras(monkeypatch, preset_copy):
    calls = []

    def snapshot_download(repo_id, revision=None, **kwargs):
        calls.append((repo_id, revision, kwargs.get("library_name")))
        return str(preset_copy)

    _fake_hub(monkeypatch, "huggingface_hub", snapshot_download=snapshot_download)
    seen = _spy_keras_loader(monkeypatch)
    model = presets.from_preset("hf://someone/ravit-presets@v1")
    assert calls == [("someone/ravit-presets", "v1", "ravit-keras")]
    assert seen == [str(preset_copy / runs.MODEL_FILE)]  # Keras's own loader reads the file.
    assert model.ravit_config.layer_spec == "0-3"
    # --model takes it too: the downloaded folder.
    assert presets.resolve_model_path("hf://someone/ravit-presets") == str(preset_copy)


def test_hf_location_offline_is_one_clear_error(monkeypatch, tmp_path, capsys):
    def snapshot_download(repo_id, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files, and couldn't find "
                      "them in the cached files.\nCheck your internet connection.")

    _fake_hub(monkeypatch, "huggingface_hub", snapshot_download=snapshot_download)
    with pytest.raises(PresetLocationError, match="hf://someone/repo: could not download it"):
        presets.from_preset("hf://someone/repo")
    from ravit_keras.cli import main

    with pytest.raises(SystemExit) as e:
        main(["predict", str(tmp_path), "--model", "hf://someone/repo", "--mode", "int8"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "hf://someone/repo: could not download it (OSError: We couldn't connect" in err
    assert "Traceback" not in err and "Check your internet" not in err  # One line.


def test_hf_location_without_the_client_or_malformed(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # Not installed: import fails.
    with pytest.raises(PresetLocationError, match="needs the huggingface_hub package"):
        presets.from_preset("hf://someone/repo")
    with pytest.raises(PresetLocationError, match="hf://OWNER/REPO"):
        presets.from_preset("hf://only-one-part")


def test_hf_snapshot_that_is_not_a_preset_is_named(monkeypatch, tmp_path):
    (tmp_path / "config.json").write_text('{"class_name": "Functional"}')  # Keras's own unzipped layout.
    (tmp_path / "model.weights.h5").write_bytes(b"")
    _fake_hub(monkeypatch, "huggingface_hub", snapshot_download=lambda repo_id, **kw: str(tmp_path))
    with pytest.raises(PresetLocationError, match="not a RAViT preset folder.*keras.saving.load_model"):
        presets.from_preset("hf://someone/keras-model")


def test_kaggle_location_downloads_through_kagglehub(monkeypatch, preset_copy):
    calls = []
    _fake_hub(monkeypatch, "kagglehub", model_download=lambda handle: calls.append(handle) or str(preset_copy))
    assert presets.locate("kaggle://someone/ravit/keras/vit3_cifar10/2") == preset_copy
    assert calls == ["someone/ravit/keras/vit3_cifar10/2"]
    with pytest.raises(PresetLocationError, match="kaggle://OWNER/MODEL/keras/VARIATION"):
        presets.locate("kaggle://someone/ravit")
