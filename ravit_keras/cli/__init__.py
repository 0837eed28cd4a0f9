"""The ``ravit`` command line: flops, train, eval, convert, run, predict, bench, profile, demo.

Each sub-command parses its flags, calls one library function and prints what
it returns; ``main(argv)`` is importable for tests and notebooks. Output is
quiet by default (the toolkit's own lines: progress, results, files written);
``--verbose`` shows TensorFlow's and LiteRT's own logs, ``--debug`` a traceback
on errors. ``run`` and ``predict`` on converted submodels import no TensorFlow.

    options.py         every shared flag, declared once (parent parsers), and value types
    parser.py          build_parser: each sub-command's flags
    model_commands.py  flops, train, eval, convert, bench (Keras models)
    run_commands.py    run, predict, profile (converted submodels)
    common.py          what the commands share (the data flags' source, model loading)
    backend.py         train's --backend: KERAS_BACKEND set before Keras is imported
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ravit_keras.cli import backend as _backend  # noqa: E402

_backend.select_from_argv(sys.argv[1:])  # Before any module imports Keras: `ravit train --backend jax`.

from ravit_keras.cli.model_commands import cmd_bench, cmd_convert, cmd_eval, cmd_flops, cmd_train  # noqa: E402
from ravit_keras.cli.options import MODES  # noqa: E402, F401  (the conversion modes --mode takes)
from ravit_keras.cli.parser import build_parser  # noqa: E402
from ravit_keras.cli.run_commands import cmd_predict, cmd_profile, cmd_run  # noqa: E402

__all__ = ["main", "build_parser", "cmd_bench", "cmd_convert", "cmd_demo", "cmd_eval", "cmd_flops",
           "cmd_predict", "cmd_profile", "cmd_run", "cmd_train"]


def cmd_demo(args) -> int:
    """Train a small RAViT on generated data, evaluate its exits, convert and schedule."""
    out = Path(args.out)
    common = ["--arch", "tiny", "--layers", args.layers, "--data", "generated"]
    rc = main(["train", *common, "--out", str(out / "train"), "--epochs", str(args.epochs),
               "--batch-size", "64", "--lr", "2e-3", "--warmup-epochs", "1",
               "--limit-train", str(args.train_images), "--progress", "epoch"])
    if rc:
        return rc
    rc = main(["eval", "--model", str(out / "train"), "--data", "generated", "--split", "test",
               "--limit", str(args.test_images), "--mac-budget", str(args.mac_budget_fraction),
               "--calibration-images", str(args.test_images),
               "--out", str(out / "eval")])
    if rc:
        return rc
    rc = main(["convert", "--model", str(out / "train"), "--data", "generated", "--mode", args.mode,
               "--calibration-images", str(args.test_images), "--out", str(out / "tflite"), "--overwrite"])
    if rc:
        return rc
    return main(["run", "--model", str(out / "tflite"), "--data", "generated", "--split", "test",
                 "--limit", str(args.test_images), "--out", str(out / "run.json"),
                 "--per-image", str(out / "predictions.csv")])


# Commands that always load TensorFlow (run, predict with converted submodels and flops never do).
_TENSORFLOW_COMMANDS = {"train", "eval", "convert", "bench", "demo"}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt, so every
    ``finally`` and ``except BaseException`` that cleans up after Ctrl-C (temporary
    files, ``.partial`` folders, locks) cleans up after a ``kill`` too."""


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Within the block, SIGTERM raises ``Terminated`` (main thread only; restored after)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _check_threads(args) -> None:
    """--threads above the cores: a warning; far above them (4 x): refused."""
    threads = getattr(args, "threads", None)
    if threads is None:
        return
    from ravit_keras.cli.options import available_cores, max_threads

    cores = available_cores()
    if threads > max_threads():
        raise ValueError(f"--threads {threads}: this machine has {cores} CPU cores; give at most "
                         f"{max_threads()} (4 per core), best at most {cores}.")
    if threads > cores:
        print(f"ravit {args.command}: warning: --threads {threads} is more than the {cores} CPU cores here; "
              "threads beyond the cores only compete for them.", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one ``ravit`` command; returns its exit status (2: a usage or input error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from ravit_keras import console

    console.set_verbose(args.verbose)
    if not args.verbose:
        logging.getLogger("tensorflow").setLevel(logging.ERROR)  # e.g. retracing notices
        logging.getLogger("absl").setLevel(logging.ERROR)  # e.g. the converter's deprecation notes
    # Looked up here, not bound by the parser, so a test can replace a command.
    command = globals()[f"cmd_{args.command}"]
    try:
        with _sigterm_as_interrupt():
            backend = _backend.select_backend(getattr(args, "backend", None))
            if not args.verbose and args.command in _TENSORFLOW_COMMANDS and (
                    args.command != "train" or backend == "tensorflow"):
                console.import_tensorflow_quietly()
            _check_threads(args)
            return int(command(args) or 0)
    except BrokenPipeError:
        # `ravit flops | head`: the reader left; stop quietly like other command-line tools.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except Terminated:
        print(f"ravit {args.command}: terminated (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"ravit {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, LookupError) as e:
        if args.debug:
            raise
        print(f"ravit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - the message, not a traceback, for a CLI user.
        if args.debug:
            raise
        print(f"ravit {args.command}: error: {type(e).__name__}: {e} (run with --debug for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
