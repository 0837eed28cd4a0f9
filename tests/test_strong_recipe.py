"""The opt-in stronger recipe: stochastic depth, Keras's augmentation layers, soft-label losses, flags.

Tiny configurations and generated data; fits run without XLA and for a few steps.
"""

import dataclasses
import json

import keras
import numpy as np
import pytest

from ravit_keras.cli import main
from ravit_keras.config import RAViTConfig, get_config
from ravit_keras.data import Augmentation, load_split, make_pipeline
from ravit_keras.model import RAViT, load_ravit
from ravit_keras.model.layers import MLPBlock, TransformerEncoderBlock
from ravit_keras.runs import RECORD_FILE
from ravit_keras.train import LOG_FILE, MODEL_FILE, TrainingConfig, compile_ravit, exit_losses, train
from ravit_keras.training.recipe import _SmoothedSparseCrossentropy
from ravit_keras.training.recipes import AUGMENTATION_FIELDS, STRONG_RECIPE, recipe_name, recipe_settings

STRONG = TrainingConfig(epochs=2, batch_size=16, seed=3, **{k: v for k, v in STRONG_RECIPE.items()
                                                            if k != "drop_path_rate"})
EACH = {
    "rand_augment": Augmentation(rand_augment_ops=2, rand_augment_magnitude=0.2),
    "random_erasing": Augmentation(random_erasing=0.5),
    "cutmix": Augmentation(cutmix_alpha=1.0),
    "mixup": Augmentation(mixup_alpha=0.8),
    "all": STRONG.augmentation,
}


# Configuration ------------------------------------------------------------------------


def test_drop_path_rate_field_round_trips_and_is_left_out_at_zero():
    paper = get_config("tiny", layers="1-2")
    assert "drop_path_rate" not in paper.to_dict()  # Existing configs and manifests stay as they were.
    strong = paper.replace(drop_path_rate=0.1)
    assert strong.to_dict()["drop_path_rate"] == 0.1
    assert RAViTConfig.from_json(strong.to_json()) == strong
    assert RAViTConfig.from_json(paper.to_json()) == paper
    assert RAViT.from_config(RAViT(strong).get_config()).ravit_config == strong


def test_drop_path_rates_rise_linearly_over_the_chain_of_blocks():
    config = get_config("tiny3", layers="1-0-3", mlp_layers="0-0-1", drop_path_rate=0.3)
    assert config.drop_path_rates() == pytest.approx({(0, 0): 0.0, (2, 0): 0.1, (2, 1): 0.2, (2, 2): 0.3})
    assert set(get_config("tiny", layers="0-1", drop_path_rate=0.3).drop_path_rates().values()) == {0.0}
    model = RAViT(config)
    rates = {layer.name: layer.drop_path for b in model.branch_models() for layer in b.layers
             if isinstance(layer, (MLPBlock, TransformerEncoderBlock))}
    assert rates == pytest.approx({"transformer_block_1": 0.0, "mlp_block_1": 0.1,
                                   "transformer_block_2": 0.2, "transformer_block_3": 0.3})


@pytest.mark.parametrize("rate", [1.0, -0.1, float("nan")])
def test_bad_drop_path_rates_are_refused(rate):
    with pytest.raises(ValueError, match=r"drop_path_rate must be in \[0, 1\)"):
        get_config("tiny", drop_path_rate=rate)
    with pytest.raises(ValueError, match=r"drop_path must be in \[0, 1\)"):
        MLPBlock(8, 16, drop_path=rate)


@pytest.mark.parametrize("layer", [
    TransformerEncoderBlock(32, 2, 64, drop_path=0.2, seed=7, name="t"),
    TransformerEncoderBlock(32, 2, 64, cls_only=True, name="t0"),
    MLPBlock(32, 64, drop_path=0.1, seed=1, name="m"),
])
def test_blocks_round_trip_through_get_config(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    assert (clone.drop_path_seed is None) == (layer.drop_path == 0)


# Stochastic depth: training only ----------------------------------------------------------


def _pair(config):
    """Models without and with stochastic depth, the same weights."""
    keras.utils.set_random_seed(0)
    plain = RAViT(config)
    keras.utils.set_random_seed(0)
    dropped = RAViT(config.replace(drop_path_rate=0.1))
    assert len(plain.get_weights()) == len(dropped.get_weights())  # No weight is added.
    dropped.set_weights(plain.get_weights())
    return plain, dropped


def test_drop_path_changes_nothing_at_inference_and_is_seeded_in_training():
    config = get_config("tiny", layers="1-2", mlp_layers="0-1")
    plain, dropped = _pair(config)
    x = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    a, b = plain(x, training=False), dropped(x, training=False)
    for name in config.exit_names:
        np.testing.assert_array_equal(np.asarray(a[name]), np.asarray(b[name]))
    # Training: the branch with blocks at positive rates changes, the first (rate 0) does not.
    t = dropped(x, training=True)
    np.testing.assert_array_equal(np.asarray(t["exit_1"]), np.asarray(a["exit_1"]))
    assert not np.allclose(np.asarray(t["exit_2"]), np.asarray(a["exit_2"]))
    # Seeded: the same global seed builds the same drop-path generators.
    _, again = _pair(config)
    np.testing.assert_array_equal(np.asarray(again(x, training=True)["exit_2"]), np.asarray(t["exit_2"]))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["int8", "float32"])
def test_drop_path_converts_to_the_same_bytes(mode, tmp_path):
    from ravit_keras.deploy.export.convert import convert_branch
    from ravit_keras.deploy.export.graph import branch_float_inputs

    config = get_config("tiny", layers="1-2", mlp_layers="0-1")  # Branch 2: an MLP block and an encoder.
    plain, dropped = _pair(config)
    images = np.random.default_rng(1).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    inputs = branch_float_inputs(plain, images)[1]
    flatbuffers = [convert_branch(m.branch_model(1), config, False, mode, inputs, tmp_path / name)
                   for name, m in (("plain", plain), ("dropped", dropped))]
    assert flatbuffers[0] == flatbuffers[1]


# Augmentation ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def split():
    return load_split("generated", "train", num_examples=48, num_classes=10)


def _batches(split, seed, augmentation, global_seed=0, epochs=1):
    keras.utils.set_random_seed(global_seed)
    ds = make_pipeline(split, get_config("tiny"), 16, training=True, seed=seed, augmentation=augmentation)
    return [(x.numpy(), y["exit_1"].numpy(), y["exit_2"].numpy()) for _ in range(epochs) for x, y in ds]


def _equal(a, b):
    return all(np.array_equal(p, q) for u, v in zip(a, b) for p, q in zip(u, v))


@pytest.mark.parametrize("name", list(EACH))
def test_each_augmentation_is_seeded(split, name):
    augmentation = EACH[name]
    first = _batches(split, 3, augmentation)
    assert _equal(first, _batches(split, 3, augmentation))  # Same seed: the same batches...
    assert not _equal(first, _batches(split, 4, augmentation))  # ...another seed: others.
    assert not _equal(first, _batches(split, 3, None))  # It does something beyond pad-crop-flip.
    images, labels, other_exit = first[0]
    assert images.dtype == np.float32 and 0 <= images.min() and images.max() <= 255
    np.testing.assert_array_equal(labels, other_exit)  # Every exit gets the same labels.
    if augmentation.mixes:
        assert labels.shape == (16, 10) and labels.dtype == np.float32
        np.testing.assert_allclose(labels.sum(axis=1), 1.0, rtol=1e-5)
        assert (labels.max(axis=1) < 1).any()  # Some labels are mixtures.
    else:
        assert labels.shape == (16,) and labels.dtype == np.int32


def test_augmentation_differs_between_epochs(split):
    one, two = _batches(split, 3, EACH["all"], epochs=2)[:3], _batches(split, 3, EACH["all"], epochs=2)[3:]
    assert not _equal(one, two)


def test_paper_pipeline_is_unchanged(split):
    assert not Augmentation().enabled
    assert _equal(_batches(split, 3, None), _batches(split, 3, Augmentation()))
    ev = make_pipeline(split, get_config("tiny"), 16, training=False, one_hot=True)
    labels = next(iter(ev))[1]["exit_1"].numpy()
    sparse = next(iter(make_pipeline(split, get_config("tiny"), 16, training=False)))[1]["exit_1"].numpy()
    np.testing.assert_array_equal(labels, np.eye(10, dtype="float32")[sparse])


@pytest.mark.parametrize("kwargs, match", [
    (dict(rand_augment_ops=-1), "rand_augment_ops must be a non-negative integer"),
    (dict(rand_augment_magnitude=1.5), r"rand_augment_magnitude must be in \[0, 1\]"),
    (dict(random_erasing=1.0), r"random_erasing must be in \[0, 1\)"),
    (dict(cutmix_alpha=-1.0), "cutmix_alpha must be a finite number >= 0"),
    (dict(mixup_alpha=float("inf")), "mixup_alpha must be a finite number >= 0"),
])
def test_bad_augmentation_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainingConfig(**kwargs)


def test_recipe_fields_and_names():
    assert AUGMENTATION_FIELDS == tuple(f.name for f in dataclasses.fields(Augmentation))
    assert recipe_settings("paper") == {**{f: getattr(TrainingConfig(), f) for f in AUGMENTATION_FIELDS},
                                        "label_smoothing": 0.0, "drop_path_rate": 0.0}
    assert recipe_name(dataclasses.asdict(TrainingConfig()), 0.0) == "paper"
    assert recipe_name(dataclasses.asdict(STRONG), 0.1) == "strong"
    assert recipe_name(dataclasses.asdict(STRONG), 0.0) == "custom"
    with pytest.raises(ValueError, match="Unknown recipe 'heavy'"):
        recipe_settings("heavy")


# Losses ------------------------------------------------------------------------------------


def test_sparse_losses_are_unchanged_and_soft_ones_take_mixtures(tiny_config):
    assert all(type(loss) is keras.losses.SparseCategoricalCrossentropy for loss in exit_losses(tiny_config).values())
    assert all(type(loss) is _SmoothedSparseCrossentropy for loss in exit_losses(tiny_config, 0.1).values())
    loss = exit_losses(tiny_config, 0.1, soft_labels=True)["exit_1"]
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4, 10)).astype("float32")
    target = np.zeros((4, 10), "float32")
    target[np.arange(4), [0, 3, 9, 3]] = 0.7
    target[np.arange(4), [1, 1, 2, 5]] += 0.3
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    smoothed = 0.9 * target + 0.1 / 10
    assert float(loss(target, logits)) == pytest.approx(float(np.mean(-(smoothed * log_p).sum(-1))), rel=1e-5)
    # A one-hot target gives what the sparse loss gives on its index.
    one_hot = np.eye(10, dtype="float32")[[0, 3, 9, 3]]
    assert float(loss(one_hot, logits)) == pytest.approx(
        float(exit_losses(tiny_config, 0.1)["exit_1"](np.array([0, 3, 9, 3]), logits)), rel=1e-5)


def test_fit_on_mixed_labels_logs_accuracy(split):
    config = get_config("tiny", layers="1-1", drop_path_rate=0.1)
    data = make_pipeline(split, config, 16, training=True, seed=0, augmentation=EACH["all"])
    model = compile_ravit(RAViT(config), label_smoothing=0.1, soft_labels=True, jit_compile=False)
    history = model.fit(data, epochs=1, verbose=0, shuffle=False,
                        validation_data=make_pipeline(split, config, 16, training=False, one_hot=True)).history
    for key in ("loss", "exit_1_accuracy", "exit_2_accuracy", "val_exit_2_accuracy"):
        assert np.isfinite(history[key][0]) and (key == "loss" or 0 <= history[key][0] <= 1), key


def test_train_refuses_labels_of_the_other_kind(split, tmp_path):
    config = get_config("tiny", layers="0-1")
    sparse = make_pipeline(split, config, 16, training=True)
    with pytest.raises(ValueError, match="mixes images .* class-index labels"):
        train(config, sparse, tmp_path / "a", STRONG, verbose=0)
    mixed = make_pipeline(split, config, 16, training=True, augmentation=EACH["mixup"])
    with pytest.raises(ValueError, match="one-hot labels but the recipe does not mix"):
        train(config, mixed, tmp_path / "b", TrainingConfig(epochs=1, batch_size=16), verbose=0)


# Run folders: record, resume ----------------------------------------------------------------


class _Killed(Exception):
    pass


class _KillAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise _Killed


def test_strong_run_is_recorded_and_resumes_only_with_the_same_recipe(split, tmp_path):
    config = get_config("tiny", layers="0-1", drop_path_rate=0.1)
    data = make_pipeline(split, config, 16, training=True, seed=STRONG.seed, augmentation=STRONG.augmentation)
    out = tmp_path / "run"
    with pytest.raises(_Killed):
        train(config, data, out, STRONG, callbacks=[_KillAfterFirstEpoch()], verbose=0, jit_compile=False)
    record = json.loads((out / RECORD_FILE).read_text())
    assert record["model"]["drop_path_rate"] == 0.1
    assert {k: record["training"][k] for k in STRONG_RECIPE if k != "drop_path_rate"} == {
        k: v for k, v in STRONG_RECIPE.items() if k != "drop_path_rate"}
    with pytest.raises(ValueError, match="unfinished run with different cutmix_alpha, mixup_alpha"):
        train(config, data, out, dataclasses.replace(STRONG, cutmix_alpha=0.0, mixup_alpha=0.2), verbose=0)
    with pytest.raises(ValueError, match="holds a run of another model"):
        train(config.replace(drop_path_rate=0.2), data, out, STRONG, verbose=0)
    train(config, data, out, STRONG, verbose=0, jit_compile=False)
    assert [int(r.split(",")[0]) for r in (out / LOG_FILE).read_text().splitlines()[1:]] == [0, 1]
    assert load_ravit(str(out / MODEL_FILE)).ravit_config == config


# Command line -------------------------------------------------------------------------------


def test_cli_trains_the_strong_recipe_and_records_it(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--arch", "tiny", "--layers", "0-1", "--data", "generated", "--limit-train", "32",
                 "--epochs", "1", "--batch-size", "16", "--recipe", "strong", "--mixup", "0", "--xla", "off",
                 "--calibration-holdout", "0", "--progress", "none", "--out", str(out)]) == 0
    assert "(custom recipe)" in capsys.readouterr().out  # strong with MixUp off.
    record = json.loads((out / RECORD_FILE).read_text())
    assert record["model"]["drop_path_rate"] == 0.1
    expected = dict(STRONG_RECIPE, mixup_alpha=0.0)
    expected.pop("drop_path_rate")
    assert {k: record["training"][k] for k in expected} == expected
    assert "exit_2_accuracy" in (out / LOG_FILE).read_text().splitlines()[0]


@pytest.mark.parametrize("flag, value, message", [
    ("--drop-path", "1", "expected a number in [0, 1), got 1.0"),
    ("--random-erasing", "-0.1", "expected a number in [0, 1), got -0.1"),
    ("--label-smoothing", "1", "expected a number in [0, 1), got 1.0"),
    ("--cutmix", "-1", "expected a finite number >= 0, got -1.0"),
    ("--mixup", "x", "expected a number >= 0, got 'x'"),
    ("--rand-augment", "2", "expected N,M (operations, magnitude)"),
    ("--rand-augment", "2,1.5", "expected N >= 0 operations and a magnitude M in [0, 1]"),
    ("--recipe", "heavy", "invalid choice: 'heavy'"),
])
def test_bad_recipe_flags_are_refused_naming_the_flag(flag, value, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--arch", "tiny", "--data", "generated", "--out", str(tmp_path), f"{flag}={value}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err and message in err
