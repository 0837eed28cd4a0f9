"""Every flag shared by several sub-commands, declared once (argparse parent parsers).

A sub-command lists the parents it takes (``parser.py``); a flag's name, type,
default and help live here only.
"""

from __future__ import annotations

import argparse

from ravit_keras import run_calibration
from ravit_keras.console import plural
from ravit_keras.deploy.runtime.modes import MODES as CONVERSION_MODES

MODES = ("auto",) + CONVERSION_MODES
DEFAULT_ARCH = "cifar10"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows every flag's default (where it has one) once, after its help.

    A help text that states its default in words ("(default: the architecture's)")
    keeps it; 0 and 0.0 are defaults like any other (not "no default" as False is);
    a list or tuple default reads as its comma-separated items.
    """

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        absent = default is None or default is False or default is argparse.SUPPRESS
        if not absent and action.option_strings and "%(default)" not in text and "(default:" not in text:
            shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else "%(default)s"
            text += f" (default: {shown})"
        return text


# Value types -------------------------------------------------------------------------


def floats(text: str) -> list[float]:
    """``0.1,0.2`` -> ``[0.1, 0.2]``."""
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


def conversion_modes(text: str) -> tuple[str, ...]:
    """``int8,float32`` -> the conversion modes, each one known."""
    modes = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in modes if m not in CONVERSION_MODES]
    if unknown or not modes:
        raise argparse.ArgumentTypeError(
            f"expected modes among {', '.join(CONVERSION_MODES)} separated by commas, got {text!r}")
    return modes


def model_path(text: str) -> str:
    """A --model value: a path, ``preset:NAME`` for a trained model that ships with the package, or
    ``hf://OWNER/REPO`` / ``kaggle://...`` for a preset folder on a hub (downloaded once, then cached)."""
    from ravit_keras.presets import resolve_model_path

    try:
        return resolve_model_path(text)
    except (LookupError, ValueError) as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def init_source(text: str) -> str:
    """A --init value as given: ``preset:NAME`` (checked to exist), a run folder or a ``.keras`` file."""
    from ravit_keras.presets import PREFIX, resolve_model_path

    if text.startswith(PREFIX):
        try:
            resolve_model_path(text)
        except LookupError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return text


def image_size(text: str) -> tuple[int, int]:
    """``32`` or ``48x64`` (height x width) -> ``(height, width)``."""
    parts = text.lower().split("x")
    try:
        sides = tuple(int(p) for p in parts)
    except ValueError:
        sides = ()
    if len(sides) not in (1, 2) or min(sides) < 1:
        raise argparse.ArgumentTypeError(f"expected a side (32) or HEIGHTxWIDTH (48x64) in pixels, got {text!r}")
    return (sides[0], sides[-1])


def model_name(text: str) -> str:
    """A --name value: letters, digits, '.', '_' and '-' (it names files and plot titles)."""
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", text):
        raise argparse.ArgumentTypeError(
            f"expected up to 64 letters, digits, '.', '_' or '-' (starting with a letter or digit), got {text!r}")
    return text


def available_cores() -> int:
    """The CPU cores this process may run on."""
    import os

    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def max_threads() -> int:
    """The most --threads accepted: 4 per core (above the cores is warned about)."""
    return 4 * available_cores()


def thread_count(text: str) -> int:
    """A --threads value: a whole number from 1 to 4 per CPU core."""
    value = positive_int(text)
    if value > max_threads():
        raise argparse.ArgumentTypeError(
            f"{plural(value, 'thread')} on {available_cores()} CPU cores; give at most {max_threads()} (4 per core)")
    return value


def _whole_number(text: str, minimum: int, expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1."""
    return _whole_number(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """A whole number >= 0."""
    return _whole_number(text, 0, "a whole number >= 0")


def unit_rate(text: str) -> float:
    """A number in [0, 1): a probability or rate that cannot be 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {value}")
    return value


def mix_alpha(text: str) -> float:
    """A Beta distribution's alpha: a finite number >= 0 (0: off)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not (value >= 0.0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {value}")
    return value


def rand_augment(text: str) -> tuple[int, float]:
    """``N,M``: N RandAugment operations per image (0: off) at magnitude M in [0, 1]."""
    parts = [p.strip() for p in text.split(",")]
    try:
        ops, magnitude = int(parts[0]), float(parts[1])
        if len(parts) != 2:
            raise ValueError
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"expected N,M (operations, magnitude), e.g. 2,0.2, got {text!r}") from None
    if ops < 0 or not 0.0 <= magnitude <= 1.0:
        raise argparse.ArgumentTypeError(
            f"expected N >= 0 operations and a magnitude M in [0, 1], got {text!r}")
    return ops, magnitude


# Parent parsers ----------------------------------------------------------------------


def _parent() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(add_help=False)


def output_parent() -> argparse.ArgumentParser:
    """-v/--verbose and --debug, also accepted after the sub-command."""
    p = _parent()
    g = p.add_argument_group("output")
    # SUPPRESS: given after the sub-command, the flag must not reset the top-level one.
    g.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="also show TensorFlow's and LiteRT's own logs and warnings")
    g.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show the Python traceback of an error")
    return p


def arch_parent() -> argparse.ArgumentParser:
    """The architecture: a named configuration and its overrides."""
    p = _parent()
    g = p.add_argument_group("architecture")
    g.add_argument("--arch", "--config", dest="arch",
                   help="architecture configuration (cifar10, tinyimagenet, imagenet, tiny, tiny3, ...); "
                        "--config is the same flag under its former name. A trained model that ships is "
                        "not an architecture: give it as --model preset:NAME, or train from it with --init "
                        f"(default: {DEFAULT_ARCH}; with --init, the --init model's)")
    g.add_argument("--image-size", type=image_size, metavar="SIZE",
                   help="image side or HEIGHTxWIDTH in pixels the model takes (default: the architecture's)")
    g.add_argument("--layers", help="layers per branch, e.g. 1-3 or 2-0-3 (default: the architecture's)")
    g.add_argument("--scale", type=float, help="resolution factor between branches (default: the architecture's, 2)")
    g.add_argument("--hidden-dim", type=positive_int, help="embedding width d (default: the architecture's)")
    g.add_argument("--mlp-dim", type=positive_int, help="MLP width h (default: the architecture's)")
    g.add_argument("--num-heads", type=positive_int, help="attention heads (default: the architecture's)")
    g.add_argument("--num-classes", type=positive_int, help="classes of the exit heads (default: the architecture's)")
    g.add_argument("--dropout", type=float, help="dropout rate (default: the architecture's)")
    g.add_argument("--exit-weights", type=floats,
                   help="per-exit loss weights, e.g. 0.3,0.7 (default: the architecture's)")
    g.add_argument("--mlp-layers",
                   help="per branch, how many leading layers are attention-free MLP blocks (LIT), e.g. 0-1 "
                        "with --layers 1-3; a branch's last layer keeps attention (default: none)")
    g.add_argument("--mlp-activation", choices=("gelu", "relu", "relu6"),
                   help="MLP activation: gelu (the paper's) or relu/relu6, which int8 fully-connected "
                        "layers fuse as their output clamp (default: the architecture's, gelu)")
    return p


def config_from_args(args):
    """The ``RAViTConfig`` the architecture flags describe."""
    from ravit_keras.config import get_config

    return get_config(args.arch or DEFAULT_ARCH, **architecture_flags(args))


def architecture_flags(args) -> dict:
    """The configuration fields the architecture flags give (those not given left out)."""
    return {
        k: v for k, v in dict(
            image_size=args.image_size, layers=args.layers,
            scale=args.scale, hidden_dim=args.hidden_dim, mlp_dim=args.mlp_dim,
            num_heads=args.num_heads, num_classes=args.num_classes, dropout=args.dropout,
            exit_weights=args.exit_weights, mlp_layers=args.mlp_layers,
            mlp_activation=args.mlp_activation,
        ).items() if v is not None
    }


def recipe_parent() -> argparse.ArgumentParser:
    """The training recipe: a named one (``training.recipe.RECIPES``) and its regularisers one by one."""
    from ravit_keras.training.recipes import RECIPES, STRONG_RECIPE

    s = STRONG_RECIPE
    p = _parent()
    g = p.add_argument_group("recipe (each flag overrides the --recipe's value)")
    g.add_argument("--recipe", default="paper", choices=RECIPES,
                   help="paper: the paper's (pad-crop-flip, plain cross-entropy). strong: the small-ViT "
                        f"regularisation of SPT_LSA_ViT and DeiT: --rand-augment {s['rand_augment_ops']},"
                        f"{s['rand_augment_magnitude']} --cutmix {s['cutmix_alpha']} --mixup {s['mixup_alpha']} "
                        f"--label-smoothing {s['label_smoothing']} --drop-path {s['drop_path_rate']} "
                        f"--random-erasing {s['random_erasing']}; meant for long runs (200+ epochs), not yet measured "
                        "on this project")
    g.add_argument("--label-smoothing", type=unit_rate, metavar="EPS",
                   help="label smoothing of the exit losses (default: the recipe's; paper: 0)")
    g.add_argument("--rand-augment", type=rand_augment, metavar="N,M",
                   help="RandAugment (Keras's): N operations per image at magnitude M in [0, 1]; 0,0 is off "
                        "(default: the recipe's; paper: off)")
    g.add_argument("--cutmix", type=mix_alpha, metavar="ALPHA",
                   help="CutMix with Beta(ALPHA, ALPHA) mixing; 0 is off. With --mixup too, each batch gets "
                        "one of the two at random (default: the recipe's; paper: off)")
    g.add_argument("--mixup", type=mix_alpha, metavar="ALPHA",
                   help="MixUp with Beta(ALPHA, ALPHA) weights; 0 is off (default: the recipe's; paper: off)")
    g.add_argument("--random-erasing", type=unit_rate, metavar="P",
                   help="probability that a random rectangle of an image is replaced by noise "
                        "(default: the recipe's; paper: 0)")
    g.add_argument("--drop-path", type=unit_rate, metavar="RATE",
                   help="stochastic depth: per-sample drop rate of the last block's residual branches, "
                        "rising linearly from 0 at the first block (default: the recipe's; paper: 0)")
    return p


def recipe_from_args(args) -> tuple[float, dict]:
    """``(drop_path_rate, TrainingConfig fields)`` of the recipe flags: the named recipe's
    settings, each overridden by its flag when given."""
    from ravit_keras.training.recipes import model_and_training_settings, recipe_settings

    settings = recipe_settings(args.recipe)
    given = dict(label_smoothing=args.label_smoothing, cutmix_alpha=args.cutmix, mixup_alpha=args.mixup,
                 random_erasing=args.random_erasing, drop_path_rate=args.drop_path)
    if args.rand_augment is not None:
        given["rand_augment_ops"], given["rand_augment_magnitude"] = args.rand_augment
    settings.update({k: v for k, v in given.items() if v is not None})
    return model_and_training_settings(settings)


def data_parent() -> argparse.ArgumentParser:
    """Where the labelled images are (``DataSource``)."""
    p = _parent()
    g = p.add_argument_group("data (see the README's 'Data sources' for the accepted layouts)")
    g.add_argument("--data", required=True,
                   help="'generated', 'tfds:NAME', or a path: CIFAR-10 python folder or .tar.gz, "
                        "tiny-imagenet-200 folder, folder of class sub-folders, or .npz")
    g.add_argument("--data-dir", help="tensorflow-datasets data directory (for tfds:NAME)")
    g.add_argument("--holdout-fraction", type=float, default=0.1,
                   help="share of training images held out as 'test' where the source has no test split")
    g.add_argument("--skip-bad-images", action="store_true",
                   help="leave out image files that cannot be decoded, with a warning naming each "
                        "(default: stop at the first, naming it)")
    return p


def model_parent() -> argparse.ArgumentParser:
    """--model: what a command reads (its description says which kinds it takes)."""
    p = _parent()
    p.add_argument("--model", required=True, type=model_path,
                   help="the model: a .keras file, a training run folder, preset:NAME (a trained model "
                        "that ships), hf://OWNER/REPO or kaggle://... (a preset folder on a hub), or a folder "
                        "written by ravit convert; the command's description says which it takes")
    return p


def out_parent(what: str, *, required: bool = False, default: str | None = None) -> argparse.ArgumentParser:
    """--out: where a command writes; ``what`` names what it writes there."""
    p = _parent()
    p.add_argument("--out", required=required, default=default, help=f"where to write {what}")
    return p


def threads_parent() -> argparse.ArgumentParser:
    """--threads for LiteRT."""
    p = _parent()
    p.add_argument("--threads", type=thread_count, default=1,
                   help="LiteRT CPU threads per submodel (a warning above the CPU cores, refused above 4 per core)")
    return p


def thresholds_parent() -> argparse.ArgumentParser:
    """--thresholds: the entropy thresholds τ of the early exits."""
    p = _parent()
    g = p.add_argument_group("operating point")
    g.add_argument("--thresholds", type=floats,
                   help="τ, the entropy under which an image leaves at an exit: one value, or one per "
                        "early exit, e.g. 0.1 or 0.1,0.2 (default: a converted model's manifest "
                        "thresholds; a Keras model: 0, no early exit; bench: the grid 0, 1, 2, 5, 10 and "
                        "20 %% of ln C, the largest entropy, and the model's calibrated thresholds). At most "
                        "ln C (as printed, e.g. 1.60944 for 5 classes), which stops every image at that exit")
    return p


def calibration_parent() -> argparse.ArgumentParser:
    """The labelled images the thresholds are calibrated on (``run_calibration.calibration_plan``)."""
    p = _parent()
    g = p.add_argument_group("calibration")
    # One default for eval, convert and bench: the same images give the same thresholds.
    g.add_argument("--calibration-images", type=positive_int, default=run_calibration.DEFAULT_CALIBRATION_IMAGES,
                   help="how many labelled images (at most) the early-exit thresholds are calibrated on "
                        "(the same in eval, convert and bench)")
    g.add_argument("--calibration-split", default="auto", choices=run_calibration.CALIBRATION_SPLITS,
                   help="split they are taken from. auto: the training images `ravit train` held out "
                        "(--calibration-holdout), which the model never saw; without that record, the "
                        "training split, with a note that this is optimistic")
    return p


def progress_parent(choices=("auto", "bar", "none")) -> argparse.ArgumentParser:
    """--progress: a bar, one line per epoch (training), or nothing."""
    p = _parent()
    p.add_argument("--progress", default="auto", choices=choices,
                   help="progress display; auto: a bar in a terminal, "
                        + ("one line per epoch otherwise" if "epoch" in choices else "nothing otherwise"))
    return p


def distribution_parent() -> argparse.ArgumentParser:
    """--devices, and the process group of a multi-process (multi-machine) run (JAX)."""
    from ravit_keras.training.distribution import DEFAULT_COORDINATOR_TIMEOUT, MAX_COORDINATOR_TIMEOUT

    p = _parent()
    g = p.add_argument_group("devices and machines (several processes: JAX only; default: Keras's "
                             "KERAS_DISTRIBUTION_JOB_ADDRESSES, _NUM_PROCESSES, _PROCESS_ID)")
    g.add_argument("--devices", type=positive_int, default=1,
                   help="devices per process: JAX: keras.distribution.DataParallel over N GPUs (on a CPU-only "
                        "machine the CPU is split into N devices); TensorFlow: MirroredStrategy")
    g.add_argument("--coordinator", metavar="HOST:PORT",
                   help="process 0's machine and a free port, the same for every process")
    g.add_argument("--num-processes", type=positive_int, help="processes training one model (one per machine)")
    g.add_argument("--process-id", type=int, help="this process's index, 0 to --num-processes - 1; process 0 "
                                                  "writes the run folder")
    g.add_argument("--coordinator-timeout", type=float, default=DEFAULT_COORDINATOR_TIMEOUT,
                   help=f"seconds to wait for every process to join (at most {MAX_COORDINATOR_TIMEOUT:g})")
    return p
