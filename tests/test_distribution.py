"""Several devices and several processes on JAX (``training/distribution.py``).

Every JAX run is a subprocess: the backend, the CPU device count and the process
group are fixed when JAX starts. Each has a timeout; the multi-process runs are
on localhost with gloo collectives and a free port.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ravit_keras import cli
from ravit_keras.cli.options import available_cores
from ravit_keras.runs import BACKUP_DIR, LOG_FILE, MODEL_FILE
from ravit_keras.training import distribution

REPO = Path(__file__).resolve().parents[1]
# The largest difference of any weight between 1 and 2 devices after 4 AdamW steps.
# Measured: 1.2e-7 (float32 rounding: the 2-device step sums the gradient of two
# half-batches); a real difference (another batch, a missing all-reduce) moves
# weights by ~1e-3 per step at this learning rate.
SAME_WEIGHTS_ATOL = 1e-5


def _env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1", KERAS_BACKEND="jax",
               PYTHONPATH=str(REPO))
    for name in ("JAX_NUM_CPU_DEVICES", "XLA_FLAGS", "KERAS_DISTRIBUTION_JOB_ADDRESSES",
                 "KERAS_DISTRIBUTION_NUM_PROCESSES", "KERAS_DISTRIBUTION_PROCESS_ID"):
        env.pop(name, None)
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log_epochs(path: Path) -> list[int]:
    return [int(line.split(",")[0]) for line in path.read_text().splitlines()[1:]]


# The process group from flags and Keras's variables ----------------------------------


def test_process_group_from_flags_and_from_keras_variables(monkeypatch):
    for name in (distribution.ENV_JOB_ADDRESSES, distribution.ENV_NUM_PROCESSES, distribution.ENV_PROCESS_ID):
        monkeypatch.delenv(name, raising=False)
    assert not distribution.process_group().several
    group = distribution.process_group("10.0.0.1:8476", 2, 1, 30)
    assert (group.num_processes, group.process_id, group.coordinator, group.timeout) == (2, 1, "10.0.0.1:8476", 30)
    monkeypatch.setenv(distribution.ENV_JOB_ADDRESSES, "10.0.0.1:1234,10.0.0.2:2345")
    monkeypatch.setenv(distribution.ENV_NUM_PROCESSES, "2")
    monkeypatch.setenv(distribution.ENV_PROCESS_ID, "0")
    group = distribution.process_group()
    assert (group.num_processes, group.process_id, group.coordinator) == (2, 0, "10.0.0.1:1234")
    monkeypatch.setenv(distribution.ENV_PROCESS_ID, "2")
    with pytest.raises(ValueError, match="KERAS_DISTRIBUTION_PROCESS_ID 2: out of range"):
        distribution.process_group()


@pytest.mark.parametrize("kwargs, message", [
    (dict(coordinator="h:1", num_processes=2, process_id=2), "--process-id 2: out of range for 2 processes"),
    (dict(coordinator="h:1", num_processes=2, process_id=-1), "--process-id -1: out of range"),
    (dict(coordinator="h:1", num_processes=2), "needs --process-id"),
    (dict(num_processes=2, process_id=0), "needs --coordinator HOST:PORT"),
    (dict(coordinator="nohost", num_processes=2, process_id=0), "expected HOST:PORT"),
    (dict(coordinator="h:1", num_processes=2, process_id=0, timeout=0), "--coordinator-timeout 0"),
])
def test_process_group_refuses_bad_input(monkeypatch, kwargs, message):
    for name in (distribution.ENV_JOB_ADDRESSES, distribution.ENV_NUM_PROCESSES, distribution.ENV_PROCESS_ID):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match=message):
        distribution.process_group(**kwargs)


def test_batch_must_split_over_every_device():
    distribution.check_batch_size(32, 2, 2)
    with pytest.raises(ValueError, match=r"--batch-size 30: not divisible by the 4 devices \(2 per process"):
        distribution.check_batch_size(30, 2, 2)


# Bad input through the CLI: one line, exit 2, no run folder ----------------------------

_TRAIN = ["train", "--config", "tiny", "--layers", "0-1", "--data", "generated", "--limit-train", "64",
          "--epochs", "1", "--batch-size", "16", "--progress", "epoch"]


@pytest.mark.parametrize("flags, message", [
    (["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "2"],
     "--process-id 2: out of range for 2 processes; give 0 to 1"),
    (["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "0", "--batch-size", "15"],
     "--batch-size 15: not divisible by the 2 devices"),
])
def test_cli_refuses_bad_process_flags_before_any_work(tmp_path, capsys, monkeypatch, flags, message):
    for name in (distribution.ENV_JOB_ADDRESSES, distribution.ENV_NUM_PROCESSES, distribution.ENV_PROCESS_ID):
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "run"
    assert cli.main([*_TRAIN, "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ravit train: error: ") and message in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def _cli(args, env, timeout=240):
    return subprocess.run([sys.executable, "-m", "ravit_keras", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _error_lines(stderr: str) -> list[str]:
    # Native libraries may log before Python's first line (absl's start-up notice): only ours count.
    return [line for line in stderr.splitlines() if line.startswith("ravit train")]


@pytest.mark.slow
def test_cli_bad_devices_and_silent_coordinator(tmp_path):
    """--devices above the devices present; a coordinator that never answers (process 1)
    and processes that never join (process 0): one line each, exit 2, no run folder."""
    out = tmp_path / "run"
    cases = [
        (["--devices", "4"], _env(JAX_NUM_CPU_DEVICES="2"), "--devices 4: this machine has 2 cpu devices"),
        (["--devices", str(available_cores() + 1), "--batch-size", str(4 * (available_cores() + 1))], _env(),
         f"no GPU here and {available_cores()} CPU cores"),
        (["--coordinator", f"127.0.0.1:{_free_port()}", "--num-processes", "2", "--process-id", "1",
          "--coordinator-timeout", "2"], _env(), "did not answer within 2 s"),
        (["--coordinator", f"127.0.0.1:{_free_port()}", "--num-processes", "2", "--process-id", "0",
          "--coordinator-timeout", "3"], _env(), "not all 2 processes joined within 3 s"),
        (["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "0"],
         _env(KERAS_BACKEND="tensorflow"), "need the JAX backend"),
    ]
    for flags, env, message in cases:
        started = time.monotonic()
        result = _cli([*_TRAIN, "--out", str(out), *flags], env)
        lines = _error_lines(result.stderr)
        assert result.returncode == 2, (flags, result.stderr[-2000:])
        assert len(lines) == 1 and message in lines[0], (flags, result.stderr[-2000:])
        assert "Traceback" not in result.stderr and not out.exists(), flags
        assert time.monotonic() - started < 120, flags  # The timeout, not JAX's own 300 s.


# 1 device vs 2 devices -----------------------------------------------------------------

_FIT = r"""
import sys
import numpy as np
import keras
from ravit_keras.training import distribution

n, out = int(sys.argv[1]), sys.argv[2]
strategy = distribution.setup("jax", n)
from ravit_keras.config import get_config
from ravit_keras.model import RAViT
from ravit_keras.train import compile_ravit

config = get_config("tiny", layers="0-1")
rng = np.random.default_rng(0)
x = rng.uniform(0, 255, (64, 32, 32, 3)).astype("float32")
y = np.arange(64, dtype="int32") % 10
with distribution.fit_scope(strategy, x):
    keras.utils.set_random_seed(0)
    model = compile_ravit(RAViT(config), keras.optimizers.AdamW(1e-3))
    first = [np.array(w) for w in model.get_weights()]
    model.fit(x, {e: y for e in config.exit_names}, batch_size=16, epochs=1, shuffle=False, verbose=0)
print("DEVICES", len(model.trainable_variables[0].value.sharding.device_set), flush=True)
np.savez(out, *first, *[np.array(w) for w in model.get_weights()])
"""


@pytest.mark.slow
def test_two_cpu_devices_train_the_same_weights_as_one(tmp_path):
    weights = {}
    for n in (1, 2):
        out = tmp_path / f"w{n}.npz"
        result = subprocess.run([sys.executable, "-c", _FIT, str(n), str(out)], cwd=REPO, capture_output=True,
                                text=True, timeout=300, env=_env(JAX_NUM_CPU_DEVICES=str(n)))
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        assert f"DEVICES {n}" in result.stdout
        arrays = np.load(out)
        values = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
        weights[n] = (values[:len(values) // 2], values[len(values) // 2:])
    (first1, last1), (first2, last2) = weights[1], weights[2]
    for a, b in zip(first1, first2):
        np.testing.assert_array_equal(a, b)  # The same start: same seed, same layout of values.
    moved = max(float(np.abs(a - b).max()) for a, b in zip(first1, last1))
    assert moved > 100 * SAME_WEIGHTS_ATOL  # Training changed the weights: the comparison means something.
    for a, b in zip(last1, last2):
        np.testing.assert_allclose(a, b, rtol=0, atol=SAME_WEIGHTS_ATOL)


@pytest.mark.slow
@pytest.mark.skipif(available_cores() < 2, reason="the CPU is split into at most one device per core")
def test_cli_devices_2_on_jax_splits_the_cpu_itself(tmp_path):
    """No JAX_NUM_CPU_DEVICES: ``--devices 2`` makes the two CPU devices and trains on both."""
    spy = (r"import sys, keras; from ravit_keras.training import distribution as D; from ravit_keras import cli; "
           r"setup = D.setup; D.setup = lambda *a, **k: (lambda s: (print('MESH', s.device_mesh.devices.size, "
           r"flush=True), s)[1])(setup(*a, **k)); sys.exit(cli.main(sys.argv[1:]))")
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, "-c", spy, *_TRAIN, "--devices", "2", "--out", str(out)], cwd=REPO,
                            env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "MESH 2" in result.stdout
    assert _log_epochs(out / LOG_FILE) == [0] and (out / MODEL_FILE).is_file()


# Two processes on localhost --------------------------------------------------------------


def _start_pair(out: Path, epochs: int, tag: str, tmp_path: Path):
    port = _free_port()
    procs = []
    for pid in (1, 0):
        args = ["train", "--config", "tiny", "--layers", "0-1", "--data", "generated", "--limit-train", "256",
                "--epochs", str(epochs), "--batch-size", "16", "--progress", "epoch", "--out", str(out),
                "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(pid),
                "--coordinator-timeout", "120"]
        log = open(tmp_path / f"{tag}-{pid}.log", "w")
        procs.append((pid, subprocess.Popen([sys.executable, "-m", "ravit_keras", *args], cwd=REPO, env=_env(),
                                            stdout=log, stderr=subprocess.STDOUT), log))
    return {pid: (proc, log) for pid, proc, log in procs}


def _stop(pair):
    for proc, log in pair.values():
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        log.close()


def _backed_up_epochs(out: Path) -> int:
    try:
        return int(json.loads((out / BACKUP_DIR / "training_metadata.json").read_text())["epoch"])
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.slow
def test_two_processes_train_one_model_and_resume_after_a_kill(tmp_path):
    """Process 0 alone writes the run folder; a SIGKILL of process 1 after >= 1 finished
    epoch, then a restart of both, resumes after the last finished epoch."""
    out, epochs = tmp_path / "run", 6
    pair = _start_pair(out, epochs, "first", tmp_path)
    try:
        deadline = time.monotonic() + 400
        while _backed_up_epochs(out) < 1:
            assert all(p.poll() is None for p, _ in pair.values()), (tmp_path / "first-0.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no epoch finished in time"
            time.sleep(0.1)
        pair[1][0].send_signal(signal.SIGKILL)
        pair[1][0].wait(timeout=30)
        done = _backed_up_epochs(out)
    finally:
        _stop(pair)  # Process 0 would wait for process 1 in the next all-reduce: both are restarted.
    assert 1 <= done < epochs, "the run ended before the kill: make the epochs longer"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("run")) == ["run"]

    pair = _start_pair(out, epochs, "second", tmp_path)
    try:
        for pid, (proc, _) in pair.items():
            assert proc.wait(timeout=400) == 0, (tmp_path / f"second-{pid}.log").read_text()[-3000:]
    finally:
        _stop(pair)
    first_epoch = {pid: next(line for line in (tmp_path / f"second-{pid}.log").read_text().splitlines()
                             if line.startswith("Epoch ")) for pid in (0, 1)}
    assert first_epoch == {0: f"Epoch {done + 1}/{epochs}", 1: f"Epoch {done + 1}/{epochs}"}
    assert _log_epochs(out / LOG_FILE) == list(range(epochs))
    assert (out / MODEL_FILE).is_file() and not (out / BACKUP_DIR).exists()
    assert "process 0 saved the run" in (tmp_path / "second-1.log").read_text()
    # The run's files and nothing else (process 1 neither logged nor checkpointed beside them).
    assert sorted(p.name for p in out.iterdir()) == sorted(["config.json", "epoch_times.json", "log.csv",
                                                            "model.keras"])
