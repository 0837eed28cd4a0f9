"""Training on several devices and several processes (machines).

JAX: ``keras.distribution.DataParallel`` over ``--devices`` devices in every
process; several processes (one per machine, or several on one) are joined by
``keras.distribution.initialize`` from ``--coordinator``/``--num-processes``/
``--process-id`` or Keras's ``KERAS_DISTRIBUTION_*`` variables, and train one
model. TensorFlow: ``MirroredStrategy`` on one machine only (Keras 3's own
TensorFlow distribution is marked do-not-use, and ``MultiWorkerMirroredStrategy``
has open bugs with Keras 3 models fed dicts of labels: keras-team/keras#20585,
#20329).

Only process 0 writes the run folder (record, log, epoch times, checkpoint,
model). The others read its checkpoint when resuming, so the run folder must be
one folder every process sees (a shared filesystem), or process 0's ``backup/``
copied to the same path on every machine before a restart.

Everything that must happen before JAX starts its devices (the CPU device count,
gloo collectives, the process group) happens in ``setup``; call it first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import sys
import threading
import time
import warnings

ENV_JOB_ADDRESSES = "KERAS_DISTRIBUTION_JOB_ADDRESSES"
ENV_NUM_PROCESSES = "KERAS_DISTRIBUTION_NUM_PROCESSES"
ENV_PROCESS_ID = "KERAS_DISTRIBUTION_PROCESS_ID"
DEFAULT_COORDINATOR_TIMEOUT = 120.0
# jax.distributed.initialize gives up (and aborts the process) after its own 300 s.
MAX_COORDINATOR_TIMEOUT = 280.0


@dataclasses.dataclass(frozen=True)
class ProcessGroup:
    """The processes that train one model: their count, this one's index, the coordinator."""

    num_processes: int = 1
    process_id: int = 0
    coordinator: str | None = None
    timeout: float = DEFAULT_COORDINATOR_TIMEOUT

    @property
    def several(self) -> bool:
        """True when more than one process trains."""
        return self.num_processes > 1


def process_group(coordinator: str | None = None, num_processes: int | None = None,
                  process_id: int | None = None, timeout: float = DEFAULT_COORDINATOR_TIMEOUT) -> ProcessGroup:
    """The process group from the flags, else Keras's ``KERAS_DISTRIBUTION_*`` variables.

    Raises:
        ValueError: one line naming the flag or variable that is wrong.
    """
    if coordinator is None and os.environ.get(ENV_JOB_ADDRESSES):
        # Keras takes a comma-separated list whose first address is the coordinator.
        coordinator = os.environ[ENV_JOB_ADDRESSES].split(",")[0].strip()
        coordinator_name = ENV_JOB_ADDRESSES
    else:
        coordinator_name = "--coordinator"
    num_processes, n_name = _from_env(num_processes, "--num-processes", ENV_NUM_PROCESSES)
    process_id, id_name = _from_env(process_id, "--process-id", ENV_PROCESS_ID)
    if num_processes is None:
        num_processes = 1
    if num_processes < 1:
        raise ValueError(f"{n_name} {num_processes}: give at least 1.")
    if not 0 < timeout <= MAX_COORDINATOR_TIMEOUT:
        raise ValueError(f"--coordinator-timeout {timeout:g}: give more than 0 and at most "
                         f"{MAX_COORDINATOR_TIMEOUT:g} seconds.")
    if num_processes == 1:
        if process_id not in (None, 0):
            raise ValueError(f"{id_name} {process_id}: out of range for 1 process (give 0, or set --num-processes).")
        return ProcessGroup(timeout=timeout)
    if process_id is None:
        raise ValueError(f"{n_name} {num_processes} needs --process-id (0 to {num_processes - 1}; 0 on the "
                         f"coordinator's machine), or {ENV_PROCESS_ID}.")
    if not 0 <= process_id < num_processes:
        raise ValueError(f"{id_name} {process_id}: out of range for {num_processes} processes; give 0 to "
                         f"{num_processes - 1}.")
    if not coordinator:
        raise ValueError(f"{n_name} {num_processes} needs --coordinator HOST:PORT (process 0's machine and a "
                         f"free port), or {ENV_JOB_ADDRESSES}.")
    _check_address(coordinator, coordinator_name)
    return ProcessGroup(num_processes, process_id, coordinator, float(timeout))


def _from_env(value, flag: str, env: str):
    if value is not None:
        return value, flag
    text = os.environ.get(env)
    if text is None or not text.strip():
        return None, flag
    try:
        return int(text), env
    except ValueError:
        raise ValueError(f"{env}={text!r}: expected a whole number.") from None


def _check_address(address: str, name: str) -> None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{name} {address!r}: expected HOST:PORT, e.g. 10.0.0.1:8476.")


def setup(backend: str, num_devices: int = 1, group: ProcessGroup = ProcessGroup(), *, prog: str = "ravit"):
    """Joins the process group and lays out the devices: the ``strategy`` that
    ``train`` takes (a ``keras.distribution.DataParallel``, a TensorFlow
    ``MirroredStrategy``), or None for one device in one process.

    Call before anything starts the backend's devices. A coordinator that does
    not answer within ``group.timeout`` ends the process with one line on
    stderr and exit status 2 (JAX would abort it with a stack trace).

    Raises:
        ValueError: several processes on TensorFlow, or more devices than present.
    """
    if backend != "jax":
        if group.several:
            raise ValueError(f"several processes (--num-processes {group.num_processes}) need the JAX backend "
                             f"(KERAS_BACKEND=jax); on {backend}, --devices trains on one machine.")
        return distribution_strategy(num_devices) if num_devices > 1 else None
    import jax

    made_cpu_devices = num_devices > 1 and not _cpu_device_count_given()
    if made_cpu_devices:
        # Only the CPU platform reads it: harmless on a GPU machine.
        jax.config.update("jax_num_cpu_devices", num_devices)
    if group.several:
        # XLA's CPU client has no collectives across processes without gloo.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        initialize_processes(group, prog=prog)
    return data_parallel(num_devices, made_cpu_devices)


def _cpu_device_count_given() -> bool:
    return bool(os.environ.get("JAX_NUM_CPU_DEVICES")) or \
        "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")


def initialize_processes(group: ProcessGroup, *, prog: str = "ravit") -> None:
    """``keras.distribution.initialize`` within ``group.timeout`` seconds, else exit 2."""
    import keras

    deadline = time.monotonic() + group.timeout
    what = (f"--coordinator {group.coordinator}: not all {group.num_processes} processes joined within "
            f"{group.timeout:g} s (--coordinator-timeout); start every process with the same --coordinator and "
            f"--num-processes, each with its own --process-id. Nothing was written.")
    if group.process_id != 0 and not _answers(group.coordinator, deadline):
        _give_up(prog, f"--coordinator {group.coordinator} did not answer within {group.timeout:g} s "
                       f"(--coordinator-timeout): start process 0 there first, and check the address and "
                       f"firewall. Nothing was written.")
    timer = threading.Timer(max(0.0, deadline - time.monotonic()), _give_up, args=(prog, what))
    timer.daemon = True
    timer.start()
    try:
        keras.distribution.initialize(group.coordinator, group.num_processes, group.process_id)
    finally:
        timer.cancel()


def _answers(address: str, deadline: float) -> bool:
    host, _, port = address.rpartition(":")
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=2):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.25)


def _give_up(prog: str, message: str) -> None:
    # From a timer thread while JAX blocks in C++: only a hard exit stops it.
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    os._exit(2)


def data_parallel(num_devices: int, made_cpu_devices: bool = False):
    """``keras.distribution.DataParallel`` over the first ``num_devices`` devices of
    every process (None for one device in one process).

    Raises:
        ValueError: ``num_devices`` more than the devices present.
    """
    import jax
    import keras

    local = jax.local_devices()
    platform = local[0].platform
    if num_devices > len(local):
        hint = " (JAX_NUM_CPU_DEVICES or XLA_FLAGS sets how many the CPU is split into)" if platform == "cpu" else ""
        raise ValueError(f"--devices {num_devices}: this machine has {len(local)} {platform} device"
                         f"{'s' if len(local) != 1 else ''}{hint}.")
    if made_cpu_devices and platform == "cpu" and num_devices > _cores():
        raise ValueError(f"--devices {num_devices}: no GPU here and {_cores()} CPU cores; give at most {_cores()} "
                         "(or set JAX_NUM_CPU_DEVICES to split the CPU into more devices).")
    if num_devices == 1 and jax.process_count() == 1:
        return None
    devices = [d for d in jax.devices() if d.platform == platform]
    chosen = []
    for process in range(jax.process_count()):
        chosen += sorted((d for d in devices if d.process_index == process), key=lambda d: d.id)[:num_devices]
    return keras.distribution.DataParallel(devices=chosen)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def check_batch_size(batch_size: int, num_devices: int, num_processes: int = 1) -> None:
    """Refuses a global batch that does not split evenly over every device.

    Raises:
        ValueError: naming ``--batch-size`` and the device count.
    """
    total = num_devices * num_processes
    if batch_size % total:
        per = f" ({num_devices} per process x {num_processes} processes)" if num_processes > 1 else ""
        raise ValueError(f"--batch-size {batch_size}: not divisible by the {total} devices{per}; give a "
                         f"multiple of {total}.")


# What each process does ------------------------------------------------------------


def process_shard() -> tuple[int, int]:
    """``(this process's index, process count)``: the shard of the training data this
    process feeds (``PyDataset(shard_index=..., num_shards=...)``, NumPy slices)."""
    import keras

    if keras.backend.backend() != "jax":
        return 0, 1
    import jax

    return jax.process_index(), jax.process_count()


def local_batch_size(global_batch_size: int) -> int:
    """Images per step this process feeds: the global batch over the processes."""
    return global_batch_size // process_shard()[1]


def is_writer() -> bool:
    """True in the process that writes the run folder (process 0; the only one, usually)."""
    return process_shard()[0] == 0


def writer_lock(out_dir):
    """The run folder's lock, taken by the writing process only (the others write nothing)."""
    from ravit_keras.io_utils import folder_lock

    return folder_lock(out_dir) if is_writer() else contextlib.nullcontext()


def on_writer(action, what: str):
    """Runs ``action()`` on the writing process; every process raises if it failed
    there (instead of the others waiting for it in the next collective)."""
    error = None
    if is_writer():
        try:
            action()
        except Exception as err:  # noqa: BLE001 - re-raised below, after the others have been told.
            error = err
    failed = all_gather(1 if error is not None else 0)
    if error is not None:
        raise error
    if any(failed):
        raise RuntimeError(f"process 0 failed while {what}; its own output says why.")


def all_gather(value: int) -> list[int]:
    """One whole number from every process, in process order (a collective: every
    process must call it)."""
    index, count = process_shard()
    if count == 1:
        return [value]
    import numpy as np
    from jax.experimental import multihost_utils

    return [int(v) for v in np.asarray(multihost_utils.process_allgather(np.array([value], "int32"))).ravel()]


def fit_scope(strategy, train_data):
    """The scope ``model.fit`` runs in: a Keras distribution is set for the whole
    training (JAX distributes each batch at fit time); with several processes,
    a ``tf.data`` dataset is sharded by Keras and anything else (NumPy,
    ``PyDataset``) must already be this process's shard (``process_shard``)."""
    import keras

    if not isinstance(strategy, keras.distribution.DataParallel):
        return contextlib.nullcontext()
    strategy.auto_shard_dataset = _is_tf_dataset(train_data)
    scope = contextlib.ExitStack()
    scope.enter_context(strategy.scope())
    if strategy.auto_shard_dataset and process_shard()[1] > 1:
        # Keras's rebatched shard has an unknown length, which its first epoch learns by
        # running out: expected, not the user's data being short.
        scope.enter_context(warnings.catch_warnings())
        warnings.filterwarnings("ignore", message="Your input ran out of data")
    return scope


@contextlib.contextmanager
def writing_alone():
    """The block runs with no Keras distribution set: saving in the writing process
    alone (Keras's saving builds throwaway variables, which under a multi-process
    distribution would wait for the other processes to build theirs)."""
    import keras

    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(previous)


def _is_tf_dataset(data) -> bool:
    module = type(data).__module__ or ""
    return module.startswith("tensorflow") and hasattr(data, "element_spec")


def splits_xla(strategy) -> bool:
    """True for a TensorFlow strategy over several replicas: XLA cannot place a step
    across MirroredStrategy's logical CPUs (JAX's DataParallel compiles one program)."""
    return strategy is not None and getattr(strategy, "num_replicas_in_sync", 1) > 1


def distribution_strategy(num_devices: int):
    """A TensorFlow ``MirroredStrategy`` over ``num_devices`` devices (GPUs, else logical CPUs).

    On a CPU-only machine the CPU is split into ``num_devices`` logical devices;
    this must run before TensorFlow initialises its devices.
    """
    import tensorflow as tf

    if num_devices <= 1:
        return tf.distribute.get_strategy()
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) >= num_devices:
        return tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in range(num_devices)])
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(num_devices)]
    )
    return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(num_devices)])
