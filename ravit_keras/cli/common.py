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


def select_submodels(args) -> None:
    """``--mode`` of run and predict: points ``args.model`` at the submodels of that mode
    that ship with it (``MODEL/MODE/manifest.json``, as every preset ships ``int8/``).

    Without ``--mode``, ``run`` takes a converted ``--model`` as it is, else the int8
    submodels the model ships; ``predict`` takes ``--model`` as it is. ``--mode keras``
    (predict) keeps a Keras model.

    Raises:
        ValueError: the mode is not what a converted ``--model`` holds, or the model
            ships no submodels of that mode (the message says how to convert it).
    """
    import json
    from pathlib import Path

    from ravit_keras.deploy.runtime.manifest import MANIFEST_FILE
    from ravit_keras.presets import shipped_submodels

    mode = getattr(args, "mode", None)
    if mode is None and args.command == "run" and not is_converted(args.model):
        mode = "int8" if shipped_submodels(args.model, "int8") else None
    if mode is None or mode == "keras":
        if mode == "keras" and is_converted(args.model):
            raise ValueError(f"--mode keras: --model {args.model} holds converted submodels, not a Keras model.")
        return
    if is_converted(args.model):
        try:
            held = json.loads((Path(args.model) / MANIFEST_FILE).read_text()).get("quantization")
        except (OSError, ValueError, AttributeError):
            return  # The scheduler names what is wrong with the manifest.
        if held != mode:
            raise ValueError(f"--mode {mode}: --model {args.model} holds {held} submodels.")
        return
    shipped = shipped_submodels(args.model, mode)
    if shipped is None:
        raise ValueError(f"--mode {mode}: --model {args.model} ships no {mode} submodels ({mode}/{MANIFEST_FILE}); "
                         f"convert it (ravit convert --model {args.model} --data DATA --mode {mode} --out DIR) "
                         "and give --model DIR.")
    args.model = str(shipped)


def model_label(args) -> str:
    """How output names ``--model``: ``preset:NAME`` for a shipped preset (or its submodels),
    else the folder or file name."""
    from pathlib import Path

    from ravit_keras.presets import PREFIX, PRESETS_DIR

    path = Path(args.model).resolve()
    if PRESETS_DIR in path.parents:
        return PREFIX + path.relative_to(PRESETS_DIR).parts[0]
    return path.name


def thresholds_text(taus) -> str:
    """``[0.1, 0.2]`` with four significant digits."""
    return "[" + ", ".join(f"{t:.4g}" for t in taus) + "]"


# Outputs never overwrite inputs ------------------------------------------------------------


class _Input:
    """A path a command reads. ``strict``: nothing may be written at, in or around it.
    Otherwise (a training run folder) an output may be a new path inside the folder,
    but never the folder, a folder holding it, or one of the files it consists of."""

    def __init__(self, flag: str, path, *, strict: bool = True, parts=()):
        from pathlib import Path

        self.flag, self.given = flag, str(path)
        self.root = Path(path).resolve()
        self.strict = strict
        self.parts = [self.root / p for p in parts]


def model_input(flag: str, path) -> list[_Input]:
    """What a ``--model`` path consists of: a converted folder or a preset (the package's
    presets folder) entirely; a training run folder's own files; a ``.keras`` file and
    the run record beside it; any other file itself."""
    from pathlib import Path

    from ravit_keras import runs
    from ravit_keras.presets import CARD_FILE, PRESETS_DIR

    p = Path(path)
    if not p.exists():
        return []  # The command names the missing model.
    resolved = p.resolve()
    if resolved == PRESETS_DIR or PRESETS_DIR in resolved.parents:
        return [_Input(f"{flag} (a preset: the package's presets folder)", PRESETS_DIR)]
    if p.is_dir():
        if is_converted(p):
            return [_Input(flag, path)]
        names = [n.rstrip("/") for n in runs.RUN_FILES] + [CARD_FILE]
        return [_Input(flag, path, strict=False, parts=names)]
    if p.suffix == ".keras":
        return [_Input(flag, path), _Input(f"{flag}'s run record", p.parent / runs.RECORD_FILE)]
    return [_Input(flag, path)]


def path_input(flag: str, path) -> list[_Input]:
    """A path read as a whole (an image file or folder): nothing written at, in or around it."""
    return [_Input(flag, path)]


def data_input(args) -> list[_Input]:
    """``--data`` when it is a path (not ``generated`` nor ``tfds:NAME``)."""
    from pathlib import Path

    data = getattr(args, "data", None)
    if not data or data == "generated" or data.startswith("tfds:") or not Path(data).exists():
        return []
    return [_Input("--data", data)]


def check_outputs(inputs: list[_Input], outputs) -> None:
    """Refuses, before any work, an output path that is, contains or lies inside an input.

    ``outputs``: ``(flag, path)`` pairs; a ``None`` path (flag not given) is skipped.
    Paths are compared after ``Path.resolve()`` (symbolic links followed). Two
    outputs at one path are refused too.

    Raises:
        ValueError: naming the output's flag and path and the input's.
    """
    from pathlib import Path

    given = [(flag, str(path), Path(path).resolve()) for flag, path in outputs if path]
    for k, (flag, text, out) in enumerate(given):
        for flag2, text2, out2 in given[:k]:
            if out == out2:
                raise ValueError(f"{flag2} {text2!r} and {flag} {text!r} are the same file; give each its own path.")
        for i in inputs:
            problem = _overlap(out, i.root)
            if problem is not None and (i.strict or problem != "lies inside"):
                _refuse(flag, text, f"{problem} the {i.flag} {i.given!r}")
            if i.strict or problem is None:
                continue
            for part in i.parts:  # Inside a run folder: anything but the run's own files.
                problem = _overlap(out, part)
                if problem is not None:
                    _refuse(flag, text, f"{problem} {str(part)!r}, part of the {i.flag} run folder {i.given!r}")


def _refuse(flag: str, text: str, problem: str):
    raise ValueError(f"{flag} {text!r} {problem}: an output never replaces or writes into what the "
                     "command reads; give another path.")


def _overlap(out, path) -> str | None:
    if out == path:
        return "is"
    if path in out.parents:
        return "lies inside"
    if out in path.parents:
        return "contains"
    return None
