"""Fine-tuning: weights copied from a trained model, heads re-made, grids resampled,
refusals naming the field, encoders frozen for K epochs across a kill, ``from_preset(num_classes=)``.

The fast tests copy weights between untrained tiny models saved as run folders;
the fits use ``jit_compile=False`` and a few batches. The end-to-end comparison with
training from scratch trains three tiny runs and is marked slow.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import keras
import numpy as np
import pytest

from ravit_keras import run_calibration, runs
from ravit_keras.config import get_config
from ravit_keras.data import generated_class_names, load_split, make_pipeline
from ravit_keras.model import RAViT, load_ravit
from ravit_keras.train import TrainingConfig, save_model, train
from ravit_keras.training.finetune import (
    ArchitectureMismatchError,
    encoder_layers,
    finetune_config,
    init_from,
    load_init,
    resample_position_embedding,
)


def _make_run(folder, config, class_names, seed=0):
    """A finished run folder holding an untrained model (weights seeded) and its record."""
    keras.utils.set_random_seed(seed)
    model = RAViT(config)
    folder.mkdir(parents=True)
    save_model(model, folder / runs.MODEL_FILE)
    runs.write_record(folder, config.to_dict(), {"seed": seed}, class_names)
    return model


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    """A tiny "1-2" 10-class model in a run folder, named by the generated classes."""
    config = get_config("tiny", layers="1-2")
    folder = tmp_path_factory.mktemp("finetune") / "source"
    model = _make_run(folder, config, generated_class_names(10))
    return folder, model


def _weights(layer):
    return [np.asarray(w) for w in layer.get_weights()]


def _same(a, b):
    return len(a) == len(b) and all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b))


def _encoder_weights(model):
    return {f"{b.name}/{layer.name}": _weights(layer) for b in model.branch_models()
            for layer in b.layers if layer in encoder_layers(model)}


# Copying weights -------------------------------------------------------------------------


def test_init_from_copies_the_branches_and_remakes_the_heads_for_other_classes(source_run):
    folder, source = source_run
    model = init_from(folder, num_classes=5)
    assert model.ravit_config.num_classes == 5
    assert model.ravit_config.hidden_dim == source.ravit_config.hidden_dim
    for src, dst in zip(source.branch_models(), model.branch_models()):
        for name in ("patch_embedding", "position_embedding", "transformer_block_1", "exit_norm"):
            assert _same(_weights(src.get_layer(name)), _weights(dst.get_layer(name))), name
        assert dst.get_layer("exit_head").get_weights()[0].shape == (32, 5)
    assert _same(_weights(source.branch_models()[0].get_layer("class_token")),
                 _weights(model.branch_models()[0].get_layer("class_token")))
    # The same count but other class names: fresh heads too; the same names: kept.
    other = init_from(folder, class_names=[f"flower_{i}" for i in range(10)])
    same = init_from(folder, class_names=generated_class_names(10))
    head = lambda m: _weights(m.branch_models()[-1].get_layer("exit_head"))  # noqa: E731
    assert not _same(head(other), head(source))
    assert _same(head(same), head(source))


def test_position_embeddings_are_resampled_for_another_image_size(source_run):
    folder, source = source_run
    model = init_from(folder, finetune_config(load_init(folder), 5, image_size=(48, 48)))
    for src, dst in zip(source.branch_models(), model.branch_models()):
        old, new = src.get_layer("position_embedding").embedding, dst.get_layer("position_embedding").embedding
        grid = int(round((old.shape[1] - 1) ** 0.5))
        assert new.shape[1] == 1 + (grid * 3 // 2) ** 2
        np.testing.assert_array_equal(np.asarray(new)[:, 0], np.asarray(old)[:, 0])  # The CLS position is kept.
    # The resampling itself: a smooth field over the grid stays that field.
    y, x = np.mgrid[0:4, 0:4] / 3.0
    field = np.stack([x, y], -1).reshape(1, 16, 2)
    embedding = np.concatenate([np.full((1, 1, 2), 7.0), field], 1).astype("float32")
    out = resample_position_embedding(embedding, (4, 4), (8, 8))
    assert out.shape == (1, 65, 2) and out[0, 0].tolist() == [7.0, 7.0]
    grid = out[0, 1:].reshape(8, 8, 2)
    assert np.all(np.diff(grid[..., 0], axis=1) >= -1e-6) and np.all(np.diff(grid[..., 1], axis=0) >= -1e-6)
    assert abs(grid[..., 0].mean() - 0.5) < 0.02
    np.testing.assert_allclose(resample_position_embedding(embedding, (4, 4), (4, 4)), embedding, atol=1e-5)


@pytest.mark.parametrize("change, field", [({"hidden_dim": 64, "num_heads": 2}, "hidden_dim"),
                                           ({"layers": "1-3"}, "layers"), ({"num_heads": 4}, "num_heads"),
                                           ({"mlp_layers": "0-1"}, "mlp_layers")])
def test_another_architecture_is_refused_naming_the_field(source_run, change, field):
    folder, _ = source_run
    with pytest.raises(ArchitectureMismatchError, match=rf"its {field} is .* but the model asked for has"):
        finetune_config(load_init(folder, "runs/source"), 5, **change)


def test_the_cifar10_preset_gives_a_5_class_model_with_its_encoders():
    from ravit_keras.presets import from_preset, preset_dir

    preset = load_ravit(str(preset_dir("ravit_1-3_cifar10")))
    model = from_preset("ravit_1-3_cifar10", num_classes=5)
    assert model.ravit_config.num_classes == 5 and model.ravit_config.layers == (1, 3)
    assert model.ravit_config.mean == preset.ravit_config.mean  # The preset's normalisation is kept.
    for src, dst in zip(_encoder_weights(preset).values(), _encoder_weights(model).values()):
        assert _same(src, dst)
    assert model.branch_models()[-1].get_layer("exit_head").get_weights()[1].shape == (5,)
    outputs = model(np.zeros((1, 32, 32, 3), "float32"))
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {"exit_1": (1, 5), "exit_2": (1, 5)}
    # The preset's own count (or none): the preset as it ships.
    assert _same(_weights(from_preset("ravit_1-3_cifar10", num_classes=10).branch_models()[-1]
                          .get_layer("exit_head")), _weights(preset.branch_models()[-1].get_layer("exit_head")))


# load_ravit on folders -------------------------------------------------------------------


def test_load_ravit_takes_a_run_folder_and_a_preset_folder(source_run, tmp_path):
    from ravit_keras.presets import preset_dir

    folder, source = source_run
    assert _same(load_ravit(str(folder)).get_weights(), source.get_weights())
    assert load_ravit(str(preset_dir("vit3_cifar10"))).ravit_config.layers == (0, 3)
    with pytest.raises(FileNotFoundError, match="No model file or run folder at"):
        load_ravit(str(tmp_path / "missing"))
    (tmp_path / "unfinished" / runs.BACKUP_DIR).mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="an unfinished training run"):
        load_ravit(str(tmp_path / "unfinished"))
    (tmp_path / "converted").mkdir()
    (tmp_path / "converted" / "manifest.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="converted submodels"):
        load_ravit(str(tmp_path / "converted"))


# Training: frozen encoders, kill and resume -----------------------------------------------


class _Killed(Exception):
    pass


class _KillAfterEpoch(keras.callbacks.Callback):
    """Stands in for a kill once epoch ``epoch`` (0-based) is backed up and logged."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise _Killed


def _five_class_data(config):
    split = load_split("generated", "train", num_examples=64, num_classes=5, seed=3)
    return split.class_names, make_pipeline(split, config, 32, training=True, seed=0)


def test_frozen_epochs_survive_a_kill_and_resume_never_reads_the_source_again(source_run, tmp_path):
    folder, source = source_run
    src = tmp_path / "moved_source"
    shutil.copytree(folder, src)
    init = load_init(src, "runs/source")
    config = finetune_config(init, 5)
    names, data = _five_class_data(config)
    recipe = TrainingConfig(epochs=3, batch_size=32, freeze_epochs=2, warmup_epochs=0)
    out = tmp_path / "run"

    def run(kill_after=None):
        kills = [] if kill_after is None else [_KillAfterEpoch(kill_after)]
        return train(config, data, out, recipe, callbacks=kills, verbose=0, jit_compile=False, class_names=names,
                     initialize=lambda m: init.apply(m, names), init_record=init.record())

    def checkpoint_weights():
        model = RAViT(config)
        model.load_weights(str(out / runs.BACKUP_DIR / "latest.weights.h5"))
        return model

    with pytest.raises(_Killed):
        run(kill_after=0)  # Killed inside the frozen phase.
    shutil.rmtree(src)  # A resume must not need (nor read) the source.
    with pytest.raises(_Killed):
        run(kill_after=1)  # Resumed at epoch 1: still frozen; killed at the end of the phase.
    after_freeze = checkpoint_weights()
    for name, weights in _encoder_weights(after_freeze).items():
        assert _same(weights, _encoder_weights(source)[name]), f"{name} moved while frozen"
    head = lambda m: _weights(m.branch_models()[-1].get_layer("exit_head"))  # noqa: E731
    assert not _same(head(after_freeze), head(RAViT(config)))
    model, _ = run()  # Epoch 2: everything trains.
    moved = [n for n, w in _encoder_weights(model).items() if not _same(w, _encoder_weights(source)[n])]
    assert len(moved) == len(_encoder_weights(model))
    assert all(layer.trainable for layer in encoder_layers(load_ravit(str(out))))
    record = runs.load_record(out)
    assert record["init"]["source"] == "runs/source" and record["training"]["freeze_epochs"] == 2
    assert record["init"]["sha256"] == hashlib.sha256((folder / runs.MODEL_FILE).read_bytes()).hexdigest()
    assert [int(r.split(",")[0]) for r in (out / runs.LOG_FILE).read_text().splitlines()[1:]] == [0, 1, 2]


def test_a_resume_with_another_init_or_freeze_is_refused(source_run, tmp_path):
    folder, _ = source_run
    init = load_init(folder, "runs/source")
    config = finetune_config(init, 5)
    names, data = _five_class_data(config)
    recipe = TrainingConfig(epochs=2, batch_size=32, freeze_epochs=1, warmup_epochs=0)
    out = tmp_path / "run"
    with pytest.raises(_Killed):
        train(config, data, out, recipe, callbacks=[_KillAfterEpoch(0)], verbose=0, jit_compile=False,
              initialize=lambda m: init.apply(m, names), init_record=init.record())
    with pytest.raises(ValueError, match="was started from --init runs/source; resume it with the same command"):
        train(config, data, out, recipe, verbose=0, jit_compile=False)
    with pytest.raises(ValueError, match="different freeze_epochs"):
        train(config, data, out, TrainingConfig(epochs=2, batch_size=32, freeze_epochs=2, warmup_epochs=0),
              verbose=0, jit_compile=False, init_record=init.record())


# Command line ----------------------------------------------------------------------------


def test_cli_refuses_a_mismatch_and_a_freeze_without_init_in_one_line(source_run, tmp_path, capsys):
    from ravit_keras.cli import main

    folder, _ = source_run
    common = ["train", "--data", "generated", "--epochs", "1", "--out", str(tmp_path / "out")]
    assert main([*common, "--init", str(folder), "--hidden-dim", "64"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "its hidden_dim is 32 but the model asked for has 64 (--hidden-dim)" in err
    assert main([*common, "--init", str(folder), "--arch", "cifar10"]) == 2  # cifar10 is 1-3.
    assert "its layers is 1-2 but the model asked for has 1-3" in capsys.readouterr().err
    assert main([*common, "--freeze-epochs", "1"]) == 2
    assert "--freeze-epochs freezes trained encoders: it needs --init" in capsys.readouterr().err
    assert main([*common, "--init", str(folder), "--freeze-epochs", "2"]) == 2
    assert "--freeze-epochs 2 is more than --epochs 1" in capsys.readouterr().err
    assert main([*common, "--init", str(tmp_path / "nothing")]) == 2
    assert "--init" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*common, "--init", "preset:no_such_preset"])
    assert "No preset named 'no_such_preset'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def trained_source(tmp_path_factory):
    """A tiny "1-2" trained 4 epochs on 1,000 generated 10-class images (ravit train)."""
    from ravit_keras.cli import main

    out = tmp_path_factory.mktemp("finetune") / "source"
    assert main(["train", "--arch", "tiny", "--data", "generated", "--limit-train", "1000", "--epochs", "4",
                 "--batch-size", "64", "--lr", "2e-3", "--out", str(out), "--progress", "none"]) == 0
    return out


def _final_exit_accuracy(run, num_classes=5):
    test = load_split("generated", "test", num_examples=300, num_classes=num_classes)
    images, labels = test.as_numpy()
    logits = load_ravit(str(run)).predict(images.astype("float32"), verbose=0)
    return float(np.mean(np.argmax(logits["exit_2"], -1) == labels))


@pytest.mark.slow
def test_finetuning_a_trained_run_beats_the_same_budget_from_scratch(trained_source, tmp_path):
    """Same data (300 generated images, 5 classes), epochs, recipe and seed. Measured here (TensorFlow
    CPU, 20 % calibration holdout by the default rule): fine-tuned 0.800 vs from scratch 0.607 top-1
    of the last exit on 300 test images, a margin of 19.3 points; the test asserts 5 points, so that
    another CPU's rounding cannot flip it."""
    from ravit_keras.cli import main

    budget = ["--data", "generated", "--num-classes", "5", "--limit-train", "300", "--epochs", "3",
              "--batch-size", "32", "--lr", "2e-3", "--seed", "0", "--progress", "none"]
    assert main(["train", "--init", str(trained_source), "--freeze-epochs", "1", *budget,
                 "--out", str(tmp_path / "finetuned")]) == 0
    assert main(["train", "--arch", "tiny", *budget, "--out", str(tmp_path / "scratch")]) == 0
    finetuned, scratch = _final_exit_accuracy(tmp_path / "finetuned"), _final_exit_accuracy(tmp_path / "scratch")
    print(f"fine-tuned {finetuned:.3f} vs from scratch {scratch:.3f}")
    assert finetuned >= scratch + 0.05

    record = runs.load_record(tmp_path / "finetuned")
    source_sha = hashlib.sha256((trained_source / runs.MODEL_FILE).read_bytes()).hexdigest()
    assert record["init"]["source"] == str(trained_source) and record["init"]["sha256"] == source_sha
    assert record["class_names"] == generated_class_names(5)
    assert record["model"]["hidden_dim"] == 32 and record["model"]["num_classes"] == 5  # No --arch needed.
    assert record["model"]["mean"] == json.loads((trained_source / runs.RECORD_FILE).read_text())["model"]["mean"]
    plan = run_calibration.calibration_plan(tmp_path / "finetuned")
    assert plan.split == "calibration" and plan.fraction == run_calibration.default_calibration_holdout(300)
