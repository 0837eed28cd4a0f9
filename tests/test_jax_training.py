"""Training on Keras's JAX backend: NumPy batches, augmentation inside the step, no TensorFlow.

The test process runs Keras on TensorFlow, so JAX training runs in subprocesses
in which TensorFlow cannot be imported (``tests/no_tensorflow.py``). Each such run
compiles a training step (10-20 s on 2 cores): they are marked slow. The batches
(``SplitBatches``) and the in-step layer (``PadCropFlip``) run on any backend and
are checked here directly.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from ravit_keras import runs
from ravit_keras.config import get_config
from ravit_keras.data.batches import SplitBatches
from ravit_keras.data.split import split_from_arrays
from tests.deploy.helpers import assert_int8_logits_close
from tests.no_tensorflow import run_without_tensorflow

JAX = {"KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
NO_TF = ("tensorflow",)


def _split(n=40, size=(8, 8), classes=4):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, *size, 3), dtype=np.uint8)
    return split_from_arrays(x, np.arange(n) % classes, [f"c{i}" for i in range(classes)], None)


def _batches(split, **kw):
    kw = {"training": True, "seed": 5, **kw}
    return SplitBatches(split, (8, 8), ("exit_1", "exit_2"), 8, **kw)


def _rows_of(batches, split, index):
    """The positions of batch ``index``'s images in the split (the test images are distinct)."""
    images = batches[index][0]["images"]
    flat = split._arrays[0].reshape(len(split._arrays[0]), -1)
    return [int(np.flatnonzero((flat == im.reshape(-1)).all(axis=1))[0]) for im in images]


# Batches -----------------------------------------------------------------------------------


def test_epoch_order_depends_only_on_seed_and_epoch():
    split = _split()
    a, b = _batches(split), _batches(split)
    b.set_epoch(3)  # Another history: the order of epoch 1 must not depend on it.
    b.set_epoch(1)
    a.set_epoch(1)
    assert [_rows_of(a, split, i) for i in range(a.num_batches)] == [_rows_of(b, split, i) for i in range(5)]
    np.testing.assert_array_equal(a[2][0]["seeds"], b[2][0]["seeds"])
    rows = sum((_rows_of(a, split, i) for i in range(a.num_batches)), [])
    assert sorted(rows) == list(range(40))  # One epoch: every image once.
    a.set_epoch(2)
    assert sum((_rows_of(a, split, i) for i in range(a.num_batches)), []) != rows  # Reshuffled per epoch.
    other_seed = _batches(split, seed=6)
    other_seed.set_epoch(1)
    assert _rows_of(other_seed, split, 0) != rows[:8]


def test_batches_carry_labels_for_every_exit_and_seeds():
    split = _split()
    x, y = _batches(split)[0]
    assert x["images"].dtype == np.uint8 and x["images"].shape == (8, 8, 8, 3)
    assert x["seeds"].dtype == np.uint32 and x["seeds"].shape == (8, 2)
    assert set(y) == {"exit_1", "exit_2"}
    np.testing.assert_array_equal(y["exit_1"], np.asarray(_rows_of(_batches(split), split, 0)) % 4)


def test_shards_partition_every_global_batch():
    split = _split()
    whole = _batches(split)
    shards = [_batches(split, shard_index=k, num_shards=4) for k in range(4)]
    for batch in range(whole.num_batches):
        parts = [s[batch] for s in shards]
        assert all(len(p[0]["images"]) == 2 for p in parts)
        np.testing.assert_array_equal(np.concatenate([p[0]["images"] for p in parts]), whole[batch][0]["images"])
        np.testing.assert_array_equal(np.concatenate([p[0]["seeds"] for p in parts]), whole[batch][0]["seeds"])
    with pytest.raises(ValueError, match="num_shards must divide"):
        _batches(split, shard_index=0, num_shards=3)
    with pytest.raises(ValueError, match="shard 4 of 4"):
        _batches(split, shard_index=4, num_shards=4)


def test_evaluation_batches_keep_order_and_remainder():
    split = _split(n=20)
    batches = _batches(split, training=False)
    assert batches.num_batches == 3
    np.testing.assert_array_equal(np.concatenate([batches[i][0]["images"] for i in range(3)]), split._arrays[0])
    assert _batches(split).num_batches == 2  # Training drops the partial batch.


def test_images_are_resized_as_tensorflow_resizes():
    from ravit_keras.images import resize

    split = _split(size=(12, 10))
    batches = SplitBatches(split, (8, 8), ("exit_1",), 4, training=False)
    np.testing.assert_array_equal(batches[0][0]["images"][1], resize(split._arrays[0][1], (8, 8)))


# In-step augmentation -------------------------------------------------------------------------


def _crops(images, pad):
    """Every pad-crop-flip of each image: ``[(offset_y, offset_x, flipped) -> image]`` per image."""
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    h, w = images.shape[1:3]
    return [{(oy, ox, f): (p[oy:oy + h, ox:ox + w][:, ::-1] if f else p[oy:oy + h, ox:ox + w])
             for oy in range(2 * pad + 1) for ox in range(2 * pad + 1) for f in (0, 1)} for p in padded]


def test_pad_crop_flip_is_seeded_and_the_identity_at_inference():
    import keras

    from ravit_keras.training.in_step import PadCropFlip

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (16, 8, 8, 3), dtype=np.uint8)
    seeds = rng.integers(0, 2**32, (16, 2), dtype=np.uint32)
    layer = PadCropFlip((1, 1))
    first = keras.ops.convert_to_numpy(layer(images, seeds, training=True))
    np.testing.assert_array_equal(first, keras.ops.convert_to_numpy(layer(images, seeds, training=True)))
    other = keras.ops.convert_to_numpy(layer(images, seeds[::-1].copy(), training=True))
    assert not np.array_equal(first, other)  # Another seed, other crops.
    drawn = set()
    for image, crops in zip(first, _crops(images, 1)):
        matches = [k for k, crop in crops.items() if np.array_equal(image, crop)]
        assert matches, "not a pad-crop-flip of its image"
        drawn.update(matches)
    assert len({k[2] for k in drawn}) == 2 and len({k[:2] for k in drawn}) > 3  # Flips and offsets vary.
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(images, seeds, training=False)), images)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(images, training=True)), images)


# Training on JAX (subprocesses without TensorFlow) ---------------------------------------------


def _image_folder(root: Path, per_class=12):
    from PIL import Image

    rng = np.random.default_rng(2)
    for c, colour in enumerate(((200, 40, 40), (40, 40, 200))):
        (root / f"class_{c}").mkdir(parents=True)
        for i in range(per_class):
            size = (36 + i % 3, 40)  # Sizes differ: each image is resized as it is read.
            pixels = np.clip(rng.normal(colour, 40, (*size[::-1], 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / f"class_{c}" / f"{i}.png")


def _check_ran(result):
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["paper", "strong"])
def test_cli_trains_on_jax_without_tensorflow(tmp_path, recipe):
    """``ravit train --backend jax`` (the program, argv read at start-up) on an image folder, with
    the paper's recipe and with the stronger one (its augmentations in the step, mixed labels)."""
    _image_folder(tmp_path / "images")
    out = tmp_path / "run"
    argv = ["ravit", "train", "--backend", "jax", "--arch", "tiny", "--layers", "0-1", "--data",
            str(tmp_path / "images"), "--epochs", "2", "--batch-size", "8", "--validate", "--out", str(out),
            "--progress", "epoch", "--calibration-holdout", "0", "--recipe", recipe]
    result = run_without_tensorflow(
        f"import runpy\nsys.argv = {argv!r}\n"
        "try:\n    runpy.run_module('ravit_keras', run_name='__main__')\n"
        "finally:\n    print('loaded:', sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'jax')"
        ")[:1], 'tried:', Block.tried)\n",
        blocked=NO_TF, env={"TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=300)
    _check_ran(result)
    # JAX ran; TensorFlow was never loaded, nor asked for (not even by a probe that would catch the error).
    assert "loaded: ['jax'] tried: []" in result.stdout
    assert "Epoch 2/2" in result.stdout and "val_loss" in result.stdout
    assert f"({recipe} recipe)" in result.stdout and "Warning" not in result.stderr
    for name in (n for n in runs.RUN_FILES if not n.endswith("/")):
        assert (out / name).is_file(), name
    assert not (out / runs.BACKUP_DIR).exists()
    record = json.loads((out / runs.RECORD_FILE).read_text())
    assert record["training"]["backend"] == "jax" and record["model"]["name"] == "images"  # named after its data folder
    assert record["class_names"] == ["class_0", "class_1"]
    assert record["model"].get("drop_path_rate", 0.0) == (0.1 if recipe == "strong" else 0.0)
    assert record["training"]["mixup_alpha"] == (0.8 if recipe == "strong" else 0.0)


def test_unknown_backend_is_one_line_and_writes_nothing(tmp_path, capsys):
    from ravit_keras.cli import main

    assert main(["train", "--backend", "torch", "--data", "generated", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "ravit train: error: --backend 'torch': choose one of jax, tensorflow."
    assert not (tmp_path / "run").exists()


def test_another_backend_than_the_loaded_one_is_refused(tmp_path, capsys):
    import keras

    from ravit_keras.cli import main

    assert keras.backend.backend() == "tensorflow"
    assert main(["train", "--backend", "jax", "--data", "generated", "--out", str(tmp_path / "run")]) == 2
    assert "Keras is already loaded in this process with the tensorflow backend" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_resume_on_the_other_backend_is_refused(tmp_path):
    from ravit_keras.train import TrainingConfig, check_resume_compatible

    config = get_config("tiny", layers="0-1")
    training = TrainingConfig(epochs=2)
    runs.write_record(tmp_path, config.to_dict(), training.__dict__, backend="jax")
    assert runs.recorded_backend(tmp_path) == "jax"
    with pytest.raises(ValueError, match="trained on the jax backend; resume it with --backend jax"):
        check_resume_compatible(tmp_path, config, training, None, "tensorflow")
    check_resume_compatible(tmp_path, config, training, None, "jax")


RESUME = """
import keras
import numpy as np
from pathlib import Path
from ravit_keras.config import get_config
from ravit_keras.data import load_split
from ravit_keras.data.batches import SplitBatches
from ravit_keras.train import BACKUP_DIR, MODEL_FILE, TrainingConfig, train
from ravit_keras.training.recipes import recipe_settings

class Stop(Exception):
    pass

class StopAfterFirstEpoch(keras.callbacks.Callback):  # After the run's own callbacks: epoch 0 is backed up.
    def on_epoch_end(self, epoch, logs=None):
        raise Stop

out = Path(sys.argv[1])
recipe = recipe_settings(sys.argv[2])
config = get_config("tiny", layers="0-1", drop_path_rate=recipe.pop("drop_path_rate"))
split = load_split("generated", "train", num_examples=64, num_classes=config.num_classes)
run = TrainingConfig(epochs=3, batch_size=16, learning_rate=2e-3, warmup_epochs=0.5, seed=3, **recipe)
data = lambda: SplitBatches(split, config.image_size, config.exit_names, 16, training=True, seed=3)
full, _ = train(config, data(), out / "full", run, verbose=0)
try:
    train(config, data(), out / "resumed", run, callbacks=[StopAfterFirstEpoch()], verbose=0)
except Stop:
    pass
assert (out / "resumed" / BACKUP_DIR).is_dir() and not (out / "resumed" / MODEL_FILE).exists()
resumed, history = train(config, data(), out / "resumed", run, verbose=0)
assert len(history["loss"]) == 2, history  # Only epochs 1 and 2 trained again.
print("MAXDIFF", max(float(np.abs(a - b).max()) for a, b in zip(full.get_weights(), resumed.get_weights())))
print("tried:", Block.tried)
"""


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["paper", "strong"])
def test_resumed_jax_run_equals_an_uninterrupted_one(tmp_path, recipe):
    """Stopped after epoch 0 (backed up), resumed: the weights equal an uninterrupted run's.

    The order of each epoch and its augmentation seeds are functions of (seed, epoch, batch),
    so the resumed epochs see what the uninterrupted ones saw (the stronger recipe's RandAugment,
    erasing, CutMix/MixUp and their mixed labels included); XLA on one CPU is deterministic,
    so the tolerance (1e-5) only allows for a float32 rounding difference.
    """
    result = run_without_tensorflow("sys.argv = ['resume', sys.argv[1], sys.argv[2]]\n" + RESUME, blocked=NO_TF,
                                    env=JAX, timeout=400, args=[str(tmp_path), recipe])
    _check_ran(result)
    diff = float(result.stdout.split("MAXDIFF")[1].split()[0])
    print(f"resumed vs uninterrupted: max |weight difference| {diff}")
    assert diff <= 1e-5, diff
    assert "tried: []" in result.stdout


EXPORT = """
import numpy as np
from pathlib import Path
from ravit_keras.data import load_split
from ravit_keras.evaluation import predict_exit_logits
from ravit_keras.model import load_ravit
from ravit_keras.cli import main

out = Path(sys.argv[1])
assert main(["train", "--arch", "tiny", "--layers", "1-2", "--data", "generated", "--limit-train", "1500",
             "--epochs", "10", "--batch-size", "64", "--lr", "2e-3", "--out", str(out / "run"),
             "--progress", "none"]) == 0
model = load_ravit(str(out / "run" / "model.keras"))
test = load_split("generated", "test", num_examples=50, num_classes=10, image_size=model.ravit_config.image_size)
images, labels = test.as_numpy()
logits, _ = predict_exit_logits(model, images.astype("float32"))
np.savez(out / "jax_logits.npz", images=images, **{f"exit_{k}": l for k, l in enumerate(logits)})
"""


@pytest.mark.slow
def test_jax_trained_model_converts_to_int8_and_matches(tmp_path):
    """A model trained on JAX, converted on TensorFlow (``ravit convert --mode int8``): its scheduler's
    logits against the JAX model's, within ``tests/deploy/test_convert.py``'s int8 tolerances
    (top-1 agreement >= 0.9 on images with a clear Keras margin, >= 0.7 overall, mean |error|
    <= 10 % of the logits' std); and the float Keras model on TensorFlow equals JAX's logits."""
    from ravit_keras.cli import main
    from ravit_keras.deploy import RAViTScheduler
    from ravit_keras.evaluation import predict_exit_logits
    from ravit_keras.model import load_ravit

    result = run_without_tensorflow("sys.argv = ['export', sys.argv[1]]\n" + EXPORT, blocked=NO_TF, env=JAX,
                                    timeout=500, args=[str(tmp_path)])
    _check_ran(result)
    saved = np.load(tmp_path / "jax_logits.npz")
    images = saved["images"]
    jax_logits = [saved["exit_0"], saved["exit_1"]]
    tf_logits, _ = predict_exit_logits(load_ravit(str(tmp_path / "run" / "model.keras")), images.astype("float32"))
    for k in range(2):
        np.testing.assert_allclose(tf_logits[k], jax_logits[k], rtol=0, atol=1e-4)
    assert main(["convert", "--model", str(tmp_path / "run"), "--data", "generated", "--mode", "int8",
                 "--calibration-images", "100", "--out", str(tmp_path / "int8")]) == 0
    sched = RAViTScheduler(tmp_path / "int8")
    tfl = [np.stack(z) for z in zip(*(sched.all_exit_logits(img)[0] for img in images))]
    assert_int8_logits_close(sched, tfl, jax_logits)


@pytest.mark.slow
def test_studies_run_on_jax_without_tensorflow(tmp_path):
    """``tinyimagenet_study.py --backend jax`` trains, evaluates and reports with TensorFlow blocked;
    the CIFAR-10 study's throughput measurement runs there too."""
    from tests.data.builders import make_tiny_imagenet

    data = make_tiny_imagenet(tmp_path / "tiny-imagenet-200", with_val=False, per_class=8)
    out = tmp_path / "study"
    argv = ["tinyimagenet_study.py", "--backend", "jax", "--data", str(data), "--out", str(out), "--epochs", "1",
            "--batch-size", "6", "--hidden-dim", "16", "--mlp-dim", "32", "--num-heads", "2",
            "--holdout-fraction", "0.25", "--models", "RAViT 2-0-3"]
    result = run_without_tensorflow(
        f"import runpy\nsys.argv = {argv!r}\nsys.path.insert(0, 'benchmarks')\n"
        "try:\n    runpy.run_path('benchmarks/tinyimagenet_study.py', run_name='__main__')\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        "import cifar10_study\nfrom ravit_keras.config import get_config\n"
        "print('THROUGHPUT', cifar10_study.measure_throughput(get_config('tiny', layers='0-1'), 8, 2))\n",
        blocked=NO_TF, env={"TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=400)
    _check_ran(result)
    assert float(result.stdout.split("THROUGHPUT")[1].split()[0]) > 0
    record = json.loads((out / "RAViT_2-0-3" / runs.RECORD_FILE).read_text())
    assert record["training"]["backend"] == "jax"
    models = json.loads((out / "results.json").read_text())["models"]
    assert len(models["RAViT 2-0-3"]["per_exit_accuracy"]) == 2


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
