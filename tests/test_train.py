"""The training recipe: optimiser schedule, joint loss, run folders, resuming, devices.

Every ``fit`` here costs a graph trace plus an XLA compile (10-20 s on 2 CPU
cores), so the fast tests share one finished run (``finished_run``) and keep
to a handful of fits; real subprocess runs (kill and resume, two devices) are
marked slow.
"""

import csv
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from ravit_keras.config import get_config
from ravit_keras.data import load_split, make_pipeline
from ravit_keras.model import RAViT, load_ravit
from ravit_keras.runs import RECORD_FILE
from ravit_keras.train import (
    BACKUP_DIR,
    CONFIG_FILE,
    EPOCH_TIMES_FILE,
    LOG_FILE,
    MODEL_FILE,
    EpochTimer,
    TrainingConfig,
    compile_ravit,
    distribution_strategy,
    exit_losses,
    load_run_config,
    make_optimizer,
    read_epoch_times,
    train,
    training_callbacks,
    training_seconds,
)

REPO = Path(__file__).resolve().parents[1]
METRICS = ("exit_1_loss", "exit_1_accuracy", "exit_2_loss", "exit_2_accuracy", "loss")
RUN = TrainingConfig(epochs=2, batch_size=16, learning_rate=2e-3, warmup_epochs=0.5, seed=3)
NUM_IMAGES = 32


def _pipeline(config, training=RUN, num_examples=NUM_IMAGES):
    """The generated data as ``ravit train`` feeds it.

    The global TF seed is reset first: tf.data's seeded shuffle and random
    datasets also depend on it (see test_pipeline_depends_only_on_its_seed).
    """
    keras.utils.set_random_seed(training.seed)
    split = load_split("generated", "train", num_examples=num_examples,
                       num_classes=config.num_classes)
    return make_pipeline(split, config, training.batch_size, training=True, seed=training.seed)


def _log_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _weights(model):
    return [np.array(w) for w in model.get_weights()]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One real ``train`` call: tiny "1-2", 32 generated images, batch 16, 2 epochs."""
    config = get_config("tiny", layers="1-2")
    out = tmp_path_factory.mktemp("run") / "finished"
    model, history = train(config, _pipeline(config), out, RUN, verbose=0)
    return config, out, model, history


# Optimiser ------------------------------------------------------------------


def _lr_at(optimizer, step):
    optimizer.iterations.assign(step)
    return float(optimizer.learning_rate)


def test_make_optimizer_is_adamw_with_warmup_and_cosine_decay():
    opt = make_optimizer(1e-3, 0.05, total_steps=100, warmup_steps=10,
                         min_learning_rate_ratio=0.01)
    assert isinstance(opt, keras.optimizers.AdamW)
    assert opt.weight_decay == pytest.approx(0.05)
    assert isinstance(opt._learning_rate, keras.optimizers.schedules.CosineDecay)
    assert _lr_at(opt, 0) == pytest.approx(0.0, abs=1e-12)
    assert _lr_at(opt, 5) == pytest.approx(0.5e-3, rel=1e-5)  # Linear warm-up.
    assert _lr_at(opt, 10) == pytest.approx(1e-3, rel=1e-5)  # Peak at the end of warm-up.
    # Cosine from the peak to 1 % of it over the remaining 90 steps.
    mid = 1e-3 * (0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * 45 / 90)))
    assert _lr_at(opt, 55) == pytest.approx(mid, rel=1e-4)
    assert _lr_at(opt, 100) == pytest.approx(1e-5, rel=1e-4)
    assert _lr_at(opt, 500) == pytest.approx(1e-5, rel=1e-4)  # Stays at the floor.
    decay = [_lr_at(opt, s) for s in range(10, 101, 10)]
    assert all(a > b for a, b in zip(decay, decay[1:]))


def test_make_optimizer_without_warmup_starts_at_peak():
    opt = make_optimizer(3e-4, 0.0, total_steps=50, warmup_steps=0, min_learning_rate_ratio=0.1)
    assert _lr_at(opt, 0) == pytest.approx(3e-4, rel=1e-6)
    assert _lr_at(opt, 50) == pytest.approx(3e-5, rel=1e-4)


def test_make_optimizer_clamps_warmup_longer_than_training():
    opt = make_optimizer(1e-3, 0.05, total_steps=4, warmup_steps=10)
    assert _lr_at(opt, 0) == pytest.approx(0.0, abs=1e-12)
    assert _lr_at(opt, 3) == pytest.approx(1e-3, rel=1e-5)  # Warm-up ends one step early.
    assert np.isfinite(_lr_at(opt, 4))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(epochs=0), "epochs and batch_size must be positive"),
        (dict(batch_size=-1), "epochs and batch_size must be positive"),
        (dict(learning_rate=0.0), "learning_rate must be positive"),
        (dict(weight_decay=-0.1), "weight_decay and warmup_epochs must be non-negative"),
        (dict(warmup_epochs=-1), "weight_decay and warmup_epochs must be non-negative"),
        (dict(label_smoothing=1.0), r"label_smoothing must be in \[0, 1\)"),
    ],
)
def test_training_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainingConfig(**kwargs)


# Losses ---------------------------------------------------------------------------


def test_exit_losses_one_per_exit():
    config = get_config("tiny3", layers="1-0-2")
    losses = exit_losses(config)
    assert sorted(losses) == ["exit_1", "exit_3"]


def test_label_smoothed_loss_matches_formula(tiny_config):
    config = tiny_config
    loss = exit_losses(config, label_smoothing=0.1)["exit_1"]
    logits = np.random.default_rng(0).standard_normal((4, 10)).astype("float32")
    labels = np.array([0, 3, 9, 3])
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    target = np.full((4, 10), 0.1 / 10)
    target[np.arange(4), labels] += 0.9
    expected = float(np.mean(-(target * log_p).sum(-1)))
    assert float(loss(labels, logits)) == pytest.approx(expected, rel=1e-5)
    # Serialisable (it is part of a compiled .keras file).
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert float(clone(labels, logits)) == pytest.approx(expected, rel=1e-5)


def test_training_callbacks(tmp_path):
    cbs = training_callbacks(tmp_path)
    import keras

    kinds = {next(k.__name__ for k in type(cb).__mro__ if k.__module__.startswith("keras")): cb for cb in cbs}
    assert set(kinds) == {"BackupAndRestore", "CSVLogger", "TerminateOnNaN", "Callback"}
    assert isinstance(kinds["Callback"], EpochTimer) and kinds["Callback"].path == tmp_path / EPOCH_TIMES_FILE
    assert isinstance(kinds["BackupAndRestore"], keras.callbacks.BackupAndRestore)
    assert kinds["BackupAndRestore"].backup_dir == str(tmp_path / BACKUP_DIR)
    assert not kinds["BackupAndRestore"].delete_checkpoint  # train() removes it after the final save.
    assert kinds["CSVLogger"].filename == str(tmp_path / LOG_FILE)
    assert kinds["CSVLogger"].append
    # The backup is written last at an epoch's end: its log row and time come first.
    assert cbs[-1] is kinds["BackupAndRestore"]


# compile_ravit + fit ------------------------------------------------------------------


def test_compile_and_fit_logs_every_exit():
    config = get_config("tiny", layers="1-1")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (32, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, 32).astype("int32")
    data = tf.data.Dataset.from_tensor_slices((x, {n: y for n in config.exit_names})).batch(8)
    keras.utils.set_random_seed(0)
    assert compile_ravit(RAViT(config)).jit_compile  # The recipe's default...
    # ...but XLA adds ~10 s of compiling here; train() (finished_run) covers XLA.
    model = compile_ravit(RAViT(config), jit_compile=False)
    before = _weights(model)
    history = model.fit(data, epochs=2, verbose=0).history
    for key in METRICS:
        assert len(history[key]) == 2, key
        assert np.all(np.isfinite(history[key])), key
    assert history["loss"][-1] == pytest.approx(
        history["exit_1_loss"][-1] + history["exit_2_loss"][-1], rel=1e-4)
    assert all(0.0 <= a <= 1.0 for a in history["exit_1_accuracy"])
    after = _weights(model)
    assert all(not np.array_equal(a, b) for a, b in zip(before, after))  # Every weight trained.


# train(): the run folder -------------------------------------------------------------


def test_train_writes_config_log_and_model(finished_run):
    config, out, model, history = finished_run
    assert {p.name for p in out.iterdir()} >= {CONFIG_FILE, LOG_FILE, MODEL_FILE}
    assert not (out / BACKUP_DIR).exists()  # Removed once the run finished.
    assert not list(out.glob(".*partial*"))  # No half-written files left behind.

    recorded = json.loads((out / CONFIG_FILE).read_text())
    assert recorded == {"model": config.to_dict(), "training": {**dataclasses.asdict(RUN), "backend": "tensorflow"}}
    assert load_run_config(out) == (config, RUN)

    rows = _log_rows(out / LOG_FILE)
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    for key in METRICS:
        assert np.all(np.isfinite([float(r[key]) for r in rows])), key
        np.testing.assert_allclose([float(r[key]) for r in rows], history[key], rtol=1e-6)

    loaded = load_ravit(str(out / MODEL_FILE))
    assert isinstance(loaded, RAViT) and loaded.ravit_config == config
    for a, b in zip(_weights(loaded), _weights(model)):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    for key, value in loaded(x).items():
        np.testing.assert_allclose(np.array(value), np.array(model(x)[key]), rtol=0, atol=1e-6)


def test_train_records_every_epoch_time(finished_run):
    _, out, _, _ = finished_run
    seconds = read_epoch_times(out)
    assert sorted(seconds) == [0, 1] and all(s > 0 for s in seconds.values())
    assert training_seconds(out, 2) == pytest.approx(sum(seconds.values()))
    assert training_seconds(out, 3) is None  # Not every epoch of a 3-epoch run was timed.


def test_epoch_timer_replaces_an_epoch_trained_again(tmp_path):
    timer = EpochTimer(tmp_path)
    for epoch in (0, 1, 1):  # Epoch 1 again, as after a kill before its backup.
        timer.on_epoch_begin(epoch)
        timer.on_epoch_end(epoch)
    assert sorted(read_epoch_times(tmp_path)) == [0, 1]
    timer.on_epoch_end(5)  # No epoch began in this process: nothing to record.
    assert sorted(read_epoch_times(tmp_path)) == [0, 1]
    (tmp_path / EPOCH_TIMES_FILE).write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"epoch_times.json: not an epoch-times file"):
        read_epoch_times(tmp_path)


def test_run_files_share_permissions(finished_run):
    _, out, _, _ = finished_run
    modes = {name: (out / name).stat().st_mode & 0o777 for name in (CONFIG_FILE, LOG_FILE, MODEL_FILE)}
    assert modes[CONFIG_FILE] == modes[LOG_FILE] == modes[MODEL_FILE], modes


def test_load_run_config_needs_a_run_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"No {re.escape(RECORD_FILE)} in .*: not a training run folder"):
        load_run_config(tmp_path)


def test_train_is_reproducible(finished_run, tmp_path):
    """Same seed and data -> bit-identical weights, with XLA on (CPU XLA is deterministic)."""
    config, _, first, _ = finished_run
    second, _ = train(config, _pipeline(config), tmp_path / "again", RUN, verbose=0)
    for a, b in zip(_weights(first), _weights(second)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.xfail(
    reason="KNOWN LIMITATION: make_pipeline's shuffle and augmentation seeds (data.py, "
           "dataset.shuffle(seed=seed) and tf.data.Dataset.random(seed=seed)) are combined "
           "with TF's global seed, so the same `seed` gives different batches depending on "
           "earlier tf.random.set_seed/keras.utils.set_random_seed calls; two train() runs in "
           "one process with the same seed then differ unless the caller resets the global seed "
           "(`ravit train` sets it from --seed first, so CLI runs depend on --seed alone)",
    strict=True,
)
def test_pipeline_depends_only_on_its_seed():
    config = get_config("tiny")
    split = load_split("generated", "train", num_examples=32, num_classes=10)

    def first_batch():
        return next(iter(make_pipeline(split, config, 16, training=True, seed=3)))[0].numpy()

    keras.utils.set_random_seed(0)
    a = first_batch()
    keras.utils.set_random_seed(1)
    b = first_batch()
    np.testing.assert_array_equal(a, b)


# Resuming -------------------------------------------------------------------------


class _Killed(Exception):
    pass


class _KillAfterFirstEpoch(keras.callbacks.Callback):
    """Stands in for a kill: the run stops after epoch 0 was backed up and logged."""

    def on_epoch_end(self, epoch, logs=None):
        raise _Killed


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory):
    config = get_config("tiny", layers="0-1")  # One block: the cheapest compile.
    out = tmp_path_factory.mktemp("run") / "interrupted"
    with pytest.raises(_Killed):
        train(config, _pipeline(config), out, RUN, callbacks=[_KillAfterFirstEpoch()], verbose=0)
    return config, out


def test_interrupted_run_leaves_a_backup(interrupted_run):
    _, out = interrupted_run
    assert (out / BACKUP_DIR).is_dir()
    assert [int(r["epoch"]) for r in _log_rows(out / LOG_FILE)] == [0]
    assert not (out / MODEL_FILE).exists()


def test_interrupted_run_refuses_another_model_or_recipe(interrupted_run):
    config, out = interrupted_run
    other = get_config("tiny3", layers="1-1-2")
    with pytest.raises(ValueError, match=r"holds a run of another model \(tiny 0-1\); use a new "
                                         r"output folder to train tiny3 1-1-2"):
        train(other, _pipeline(config), out, RUN, verbose=0)
    with pytest.raises(ValueError, match=r"holds a run of another model"):
        train(config.replace(hidden_dim=64), _pipeline(config), out, RUN, verbose=0)
    with pytest.raises(ValueError, match=r"unfinished run with different learning_rate, epochs"):
        train(config, _pipeline(config), out,
              dataclasses.replace(RUN, epochs=3, learning_rate=1e-3), verbose=0)
    # Nothing of the refused runs was written.
    assert json.loads((out / CONFIG_FILE).read_text())["model"] == config.to_dict()
    assert [int(r["epoch"]) for r in _log_rows(out / LOG_FILE)] == [0]


class _NotTrained(Exception):
    pass


class _StopAtStart(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        raise _NotTrained


def test_finished_run_of_another_model_is_refused(finished_run, tmp_path):
    config, done, _, _ = finished_run
    out = tmp_path / "reused"
    shutil.copytree(done, out)  # A finished run: record, log, model.
    with pytest.raises(ValueError, match=r"another model"):
        train(get_config("tiny3"), _pipeline(config), out, RUN,
              callbacks=[_StopAtStart()], verbose=0)


def test_distribution_strategy_one_device_is_the_default():
    assert distribution_strategy(1) is tf.distribute.get_strategy()


# Real processes (slow) -----------------------------------------------------------------


def _env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path):
    """Kill ``ravit train`` after >= 2 logged epochs; the rerun trains only the rest.

    BackupAndRestore saves weights, optimizer and the epoch counter at each epoch
    end, after CSVLogger's row and the epoch's time; the rerun starts at the saved
    epoch, so at most the epoch in flight at the kill (logged, not yet backed up)
    is trained again and its row replaced. 512 images (16 steps per epoch, not 8)
    keep the run alive long enough after the second epoch for the kill to land
    mid-training.
    """
    out = tmp_path / "run"
    log_file = out / LOG_FILE
    cmd = [sys.executable, "-m", "ravit_keras", "train", "--config", "tiny", "--data",
           "generated", "--limit-train", "512", "--epochs", "6", "--batch-size", "32",
           "--out", str(out), "--progress", "epoch", "--calibration-holdout", "0"]
    first = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    rows = []
    try:
        while time.monotonic() < deadline and first.poll() is None:
            if log_file.exists():
                rows = _log_rows(log_file)
                if len(rows) >= 2:
                    break
            time.sleep(0.05)
        still_running = first.poll() is None
        first.send_signal(signal.SIGKILL)
    finally:
        if first.poll() is None:
            first.kill()
        first_output = first.communicate(timeout=60)[0]
    assert still_running, f"run ended before the kill:\n{first_output[-3000:]}"
    assert len(rows) >= 2, first_output[-3000:]
    assert not (out / MODEL_FILE).exists()
    assert (out / BACKUP_DIR).is_dir()
    before = _log_rows(log_file)  # Rows written before the kill (maybe one more than seen).
    assert [int(r["epoch"]) for r in before] == list(range(len(before)))

    second = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True,
                            timeout=300)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    resumed_at = int(re.search(r"Epoch (\d+)/6", second.stdout).group(1)) - 1  # Keras counts from 1.
    # The backup of every epoch before the last logged one had been written.
    assert len(before) - 1 <= resumed_at <= len(before), second.stdout[-3000:]
    for epoch in range(1, resumed_at + 1):  # Backed-up epochs are not trained again.
        assert f"Epoch {epoch}/6" not in second.stdout
    after = _log_rows(log_file)
    assert [int(r["epoch"]) for r in after] == [0, 1, 2, 3, 4, 5]  # One row per epoch...
    assert after[:resumed_at] == before[:resumed_at]  # ...finished epochs' rows kept as they were.
    # Every epoch's time is on record across the two processes: the run's training time.
    assert sorted(read_epoch_times(out)) == list(range(6)) and training_seconds(out, 6) > 0
    # Quiet by default: TensorFlow's load-time C++ lines (oneDNN, absl) are held back.
    assert "oneDNN" not in second.stdout + second.stderr and "absl" not in second.stdout + second.stderr
    assert not (out / BACKUP_DIR).exists()
    model = load_ravit(str(out / MODEL_FILE))
    assert model.ravit_config == get_config("tiny")
    # The optimizer state was restored too: 6 epochs x 16 steps in all, not fewer.
    compiled = keras.saving.load_model(out / MODEL_FILE)
    assert int(compiled.optimizer.iterations.numpy()) == 6 * 16


def test_kill_between_an_epochs_log_row_and_its_backup(tmp_path, monkeypatch):
    """The window the SIGKILL test hits only by chance, made certain: epoch 1 is
    logged and timed, then the process dies before its backup. The resumed run
    trains epoch 1 again and the log keeps one row per epoch."""
    from ravit_keras import train as train_module

    config = get_config("tiny", layers="1-1")
    real = train_module._FiniteBackupAndRestore.on_epoch_end

    def dies_before_backing_up_epoch_1(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt("killed")
        real(self, epoch, logs)

    run = dataclasses.replace(RUN, epochs=3)
    data = _pipeline(config, run)
    monkeypatch.setattr(train_module._FiniteBackupAndRestore, "on_epoch_end", dies_before_backing_up_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        train(config, data, tmp_path, run, verbose=0, jit_compile=False)
    assert [int(r["epoch"]) for r in _log_rows(tmp_path / LOG_FILE)] == [0, 1]
    assert sorted(read_epoch_times(tmp_path)) == [0, 1]
    first_rows = _log_rows(tmp_path / LOG_FILE)

    monkeypatch.setattr(train_module._FiniteBackupAndRestore, "on_epoch_end", real)
    train(config, data, tmp_path, run, verbose=0, jit_compile=False)
    rows = _log_rows(tmp_path / LOG_FILE)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert rows[0] == first_rows[0]  # The backed-up epoch's row is kept as it was.
    assert sorted(read_epoch_times(tmp_path)) == [0, 1, 2]
    assert (tmp_path / LOG_FILE).read_text().count("epoch,") == 1  # One header.


_STRATEGY_FIT = r"""
import numpy as np
import tensorflow as tf
from ravit_keras.train import compile_ravit, distribution_strategy

strategy = distribution_strategy(2)  # Before any TF op: splits the CPU in two.
print("REPLICAS", strategy.num_replicas_in_sync, flush=True)
from ravit_keras.config import get_config
from ravit_keras.model import RAViT

config = get_config("tiny", layers="0-1")
with strategy.scope():
    model = compile_ravit(RAViT(config), jit_compile=False)
x = np.random.default_rng(0).uniform(0, 255, (32, 32, 32, 3)).astype("float32")
y = np.arange(32, dtype="int32") % 10
data = tf.data.Dataset.from_tensor_slices((x, {n: y for n in config.exit_names})).batch(16)
history = model.fit(data, epochs=1, verbose=0).history
assert np.isfinite(history["loss"][0])
print("VARIABLE", type(model.trainable_variables[0].value).__name__, flush=True)
print("OK", flush=True)
"""


@pytest.mark.slow
def test_mirrored_strategy_on_two_cpu_devices():
    result = subprocess.run([sys.executable, "-c", _STRATEGY_FIT], cwd=REPO, env=_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "REPLICAS 2" in result.stdout
    assert "VARIABLE MirroredVariable" in result.stdout
    assert "OK" in result.stdout


_TWO_DEVICES_CLI = r"""
import sys
import ravit_keras.training.distribution as D
from ravit_keras import cli

make_strategy = D.distribution_strategy

def spy(n):
    strategy = make_strategy(n)
    print("REPLICAS", strategy.num_replicas_in_sync, flush=True)
    return strategy

D.distribution_strategy = spy
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_cli_train_on_two_devices(tmp_path):
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-c", _TWO_DEVICES_CLI, "train", "--config", "tiny", "--layers", "0-1",
         "--data", "generated", "--limit-train", "32", "--epochs", "1", "--batch-size", "16",
         "--devices", "2", "--out", str(out), "--progress", "epoch"],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300,
    )
    assert "REPLICAS 2" in result.stdout, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert [int(r["epoch"]) for r in _log_rows(out / LOG_FILE)] == [0]
    assert load_ravit(str(out / MODEL_FILE)).ravit_config == get_config("tiny", layers="0-1")


def test_mixed_bfloat16_training_saves_a_float32_model(tmp_path):
    import keras

    import ravit_keras.train as T
    from ravit_keras.config import get_config
    from ravit_keras.data import load_split, make_pipeline
    from ravit_keras.model import load_ravit

    config = get_config("tiny", layers="1-2")
    ds = make_pipeline(load_split("generated", "train", num_examples=64), config, 32, training=True)
    recipe = T.TrainingConfig(epochs=1, batch_size=32, dtype_policy="mixed_bfloat16")
    model, _ = T.train(config, ds, tmp_path / "run", recipe, verbose=0)
    assert keras.config.dtype_policy().name == "float32"  # The global policy is restored.
    saved = load_ravit(str(tmp_path / "run" / T.MODEL_FILE))
    assert {layer.dtype_policy.name for b in saved.branch_models() for layer in b.layers} == {"float32"}
    np.testing.assert_allclose(
        [np.asarray(w) for w in saved.get_weights()][0], np.asarray(model.get_weights()[0]))
    assert json.loads((tmp_path / "run" / T.CONFIG_FILE).read_text())["training"]["dtype_policy"] == "mixed_bfloat16"
    with pytest.raises(ValueError, match="dtype_policy"):
        T.TrainingConfig(dtype_policy="float16")
