"""What the command modules share: the data source of the flags, model loading, printing."""

from __future__ import annotations

import sys


def say(text: str) -> None:
    """A line of the command's own output, shown at once (before a long step)."""
    print(text, flush=True)


def data_source(args):
    """The ``DataSource`` the data flags describe; skipped files are warned about on stderr."""
    from ravit_keras.data.source import DataSource

    return DataSource(
        args.data, data_dir=args.data_dir, holdout_fraction=args.holdout_fraction,
        skip_bad_images=getattr(args, "skip_bad_images", False),
        warn=lambda reason: print(f"ravit {args.command}: warning: skipped: {reason}", file=sys.stderr))


def load_model(path: str):
    """The Keras RAViT of a ``.keras`` file or a training run folder."""
    from ravit_keras import runs
    from ravit_keras.model import load_ravit

    return load_ravit(str(runs.model_file(path)))


def load_calibration(args, config, model_classes):
    """The calibration images the flags ask for, and what they are."""
    from ravit_keras.data.calibration import load_calibration as load

    return load(data_source(args), args.model, image_size=config.image_size, num_classes=config.num_classes,
                num_images=args.calibration_images, model_classes=model_classes,
                split=args.calibration_split, notes=say)


def load_reported(*args, **kwargs):
    """The images a model's figures are reported on (``data.calibration.load_reported``)."""
    from ravit_keras.data.calibration import load_reported as load

    return load(*args, **kwargs)


def is_converted(path: str) -> bool:
    """A folder written by ``ravit convert`` (it holds a manifest)."""
    from pathlib import Path

    from ravit_keras.deploy.runtime.manifest import MANIFEST_FILE

    return (Path(path) / MANIFEST_FILE).is_file()


def thresholds_text(taus) -> str:
    """``[0.1, 0.2]`` with four significant digits."""
    return "[" + ", ".join(f"{t:.4g}" for t in taus) + "]"
