"""RAViT configuration: one dataclass plus the paper's named architectures.

An *architecture* (``get_config("cifar10")``, ``ravit train --arch cifar10``) is an
untrained configuration; a *preset* is a trained model that ships
(``preset:ravit_1-3_cifar10``, ``ravit_keras.presets``).

A configuration fully determines the architecture (branch resolutions, widths,
layers per branch, classes) and the training-time constants that belong to the
model (per-channel normalisation, exit-loss weights). Everything else in the
package (models, cost model, data pipelines, export) reads it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Sequence

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The MLP activations a model can use (the layers accept the same names); GELU is the paper's.
MLP_ACTIVATIONS = ("gelu", "relu", "relu6")


def parse_layers(spec: str | Sequence[int]) -> tuple[int, ...]:
    """Parses an ``"a-b-c"`` layer spec (or a sequence of ints) into a tuple.

    Raises:
        ValueError: if the spec is malformed, has a negative entry or is all zero.
    """
    if isinstance(spec, str):
        parts = spec.strip().split("-")
        try:
            layers = tuple(int(p) for p in parts)
        except ValueError:
            raise ValueError(
                f"Layer spec {spec!r} is not of the form 'a-b-c' with integers, "
                "e.g. '1-3' or '2-0-3'."
            ) from None
    else:
        layers = tuple(int(x) for x in spec)
    if not layers:
        raise ValueError("Layer spec is empty; give one layer count per branch.")
    if any(n < 0 for n in layers):
        raise ValueError(f"Layer spec {format_layers(layers)!r} has a negative layer count.")
    if sum(layers) == 0:
        raise ValueError(
            f"Layer spec {format_layers(layers)!r} has no layers at all: at least one "
            "branch needs a positive layer count."
        )
    return layers


def format_layers(layers: Sequence[int]) -> str:
    """Formats a layer tuple as the paper's ``"a-b-c"`` spec."""
    return "-".join(str(int(n)) for n in layers)


@dataclasses.dataclass(frozen=True)
class RAViTConfig:
    """Architecture of a RAViT model (paper: Resolution-Adaptive Vision Transformer).

    Args:
        image_size: int or (height, width). Size of the original (finest) image.
        layers: tuple of ints, or an ``"a-b-c"`` string; one transformer layer
            count per branch, coarse to fine. A 0 skips that branch.
        scale: float, default 2.0. Branch ``i`` (1-based, of ``N``) sees the
            image shrunk by ``scale ** (N - i)``, rounded to whole patches.
        patch_size: int. Patch side shared by every branch.
        hidden_dim: int. Token width ``d`` shared by every branch.
        mlp_dim: int. MLP width ``h``.
        num_heads: int. Attention heads; must divide ``hidden_dim``.
        num_classes: int. Classes of every exit head.
        dropout: float in [0, 1), default 0. Dropout after attention and MLP.
        drop_path_rate: float in [0, 1), default 0 (the paper's: none). Stochastic
            depth ("Deep Networks with Stochastic Depth", Huang et al. 2016): each
            encoder or MLP block's residual branches are dropped per sample while
            training, with rates rising linearly over the chain of blocks (all
            branches in order, as the CLS token runs through them) from 0 at the
            first block to ``drop_path_rate`` at the last, as in DeiT and timm. A
            model of one block has rate 0. Identity at inference: the converted
            graph is the same.
        exit_weights: optional tuple of non-negative floats, one per exit
            (branches with layers > 0, in order). ``None`` means equal weights.
        mean, std: per-channel normalisation of pixels in [0, 1]; the model
            takes raw pixels in [0, 255] and normalises inside.
        layer_norm_epsilon: float, default 1e-6.
        mlp_layers: optional tuple of ints (or an ``"a-b"`` string), one per branch:
            how many of the branch's LEADING layers are attention-free MLP blocks
            (LIT, "Less is More: Pay Less Attention in Vision Transformers"). A
            branch's last layer always keeps attention, so its CLS token still
            gathers the image: ``0 <= mlp_layers[i] < layers[i]``. ``None``: none.
        branch_sizes: optional tuple of ints, one square side per branch, that
            overrides ``scale`` (the paper's ImageNet branches are 64, 128, 224,
            which no single factor gives). The last must equal the image size.
        mlp_activation: str, default ``"gelu"`` (the paper's). ``"relu"`` or ``"relu6"``
            is an integer-friendly deployment variant: int8 fully-connected layers
            apply it as their output clamp, where GELU runs in float. Same MACs.
        name: str. Preset name, informational.
    """

    image_size: tuple[int, int]
    layers: tuple[int, ...]
    scale: float = 2.0
    patch_size: int = 4
    hidden_dim: int = 128
    mlp_dim: int = 512
    num_heads: int = 4
    num_classes: int = 10
    dropout: float = 0.0
    exit_weights: tuple[float, ...] | None = None
    mean: tuple[float, float, float] = CIFAR10_MEAN
    std: tuple[float, float, float] = CIFAR10_STD
    layer_norm_epsilon: float = 1e-6
    branch_sizes: tuple[int, ...] | None = None
    name: str = "custom"
    mlp_layers: tuple[int, ...] | None = None
    mlp_activation: str = "gelu"
    drop_path_rate: float = 0.0

    def __post_init__(self):
        size = self.image_size
        if isinstance(size, int):
            size = (size, size)
        size = tuple(int(s) for s in size)
        object.__setattr__(self, "image_size", size)
        object.__setattr__(self, "layers", parse_layers(self.layers))
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if self.exit_weights is not None:
            object.__setattr__(
                self, "exit_weights", tuple(float(w) for w in self.exit_weights)
            )
        if self.branch_sizes is not None:
            object.__setattr__(self, "branch_sizes", tuple(int(s) for s in self.branch_sizes))
        if self.mlp_layers is not None:
            mlp = parse_layers(self.mlp_layers)
            object.__setattr__(self, "mlp_layers", None if not any(mlp) else mlp)
        self._validate()

    def _validate(self):
        h, w = self.image_size
        p = self.patch_size
        if len(self.image_size) != 2 or h <= 0 or w <= 0:
            raise ValueError(f"image_size must be positive (height, width), got {self.image_size}.")
        if p <= 0:
            raise ValueError(f"patch_size must be positive, got {p}.")
        if h % p or w % p:
            raise ValueError(
                f"Image size {h}x{w} is not divisible by the patch size {p}: "
                "every branch must cover the image with whole patches."
            )
        if not (self.scale >= 1.0 and math.isfinite(self.scale)):
            raise ValueError(f"scale must be a finite number >= 1, got {self.scale}.")
        for field in ("hidden_dim", "mlp_dim", "num_heads", "num_classes"):
            if getattr(self, field) <= 0:
                raise ValueError(f"{field} must be positive, got {getattr(self, field)}.")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {self.num_classes}.")
        if self.hidden_dim % self.num_heads:
            raise ValueError(
                f"hidden_dim {self.hidden_dim} is not divisible by num_heads {self.num_heads}."
            )
        if self.mlp_activation not in MLP_ACTIVATIONS:
            raise ValueError(
                f"mlp_activation {self.mlp_activation!r} is not supported; choose from "
                f"{', '.join(MLP_ACTIVATIONS)}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}.")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}.")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("mean and std must have 3 entries each, std positive.")
        if self.exit_weights is not None:
            n = len(self.exit_branches)
            if len(self.exit_weights) != n:
                raise ValueError(
                    f"exit_weights has {len(self.exit_weights)} entries but layers "
                    f"{self.layer_spec!r} has {n} exits."
                )
            if any(not math.isfinite(x) or x < 0 for x in self.exit_weights):
                raise ValueError(f"exit_weights must be non-negative, got {self.exit_weights}.")
            if sum(self.exit_weights) == 0:
                raise ValueError("exit_weights are all zero: no exit would be trained.")
        if self.branch_sizes is not None:
            if len(self.branch_sizes) != self.num_branches:
                raise ValueError(
                    f"branch_sizes {self.branch_sizes} has {len(self.branch_sizes)} entries "
                    f"but layers {self.layer_spec!r} has {self.num_branches} branches."
                )
            if any(s <= 0 or s % p for s in self.branch_sizes):
                raise ValueError(
                    f"branch_sizes {self.branch_sizes} must be positive multiples of the "
                    f"patch size {p}."
                )
            if h != w or self.branch_sizes[-1] != h:
                raise ValueError(
                    f"branch_sizes needs a square image whose side {self.image_size} equals "
                    f"the last branch size {self.branch_sizes[-1]}."
                )
        if self.mlp_layers is not None:
            if len(self.mlp_layers) != self.num_branches:
                raise ValueError(
                    f"mlp_layers {format_layers(self.mlp_layers)!r} has {len(self.mlp_layers)} entries but "
                    f"layers {self.layer_spec!r} has {self.num_branches} branches.")
            for i, (m, n) in enumerate(zip(self.mlp_layers, self.layers)):
                if m and m >= n:
                    raise ValueError(
                        f"Branch {i + 1} has {n} layers, so at most {max(n - 1, 0)} attention-free ones "
                        f"(its last layer keeps attention), got mlp_layers {format_layers(self.mlp_layers)!r}.")
        sizes = self.branch_image_sizes
        for i, (bh, bw) in enumerate(sizes[:-1]):
            nh, nw = sizes[i + 1]
            if bh > nh or bw > nw:  # Rounding to whole patches must keep coarse-to-fine order.
                raise ValueError(f"Branch sizes {sizes} are not coarse to fine.")

    # Derived architecture -------------------------------------------------

    @property
    def num_branches(self) -> int:
        return len(self.layers)

    @property
    def layer_spec(self) -> str:
        return format_layers(self.layers)

    @property
    def head_dim(self) -> int:
        return self.hidden_dim // self.num_heads

    @property
    def branch_image_sizes(self) -> tuple[tuple[int, int], ...]:
        """(height, width) seen by each branch, rounded to whole patches (>= 1 patch)."""
        if self.branch_sizes is not None:
            return tuple((s, s) for s in self.branch_sizes)
        n = self.num_branches
        p = self.patch_size
        sizes = []
        for i in range(n):
            factor = self.scale ** (n - 1 - i)
            sizes.append(
                tuple(max(p, int(round(s / factor / p)) * p) for s in self.image_size)
            )
        return tuple(sizes)

    def num_patches(self, branch: int) -> int:
        """Patch tokens of branch ``branch`` (0-based), without the CLS token."""
        h, w = self.branch_image_sizes[branch]
        return (h // self.patch_size) * (w // self.patch_size)

    def num_tokens(self, branch: int) -> int:
        """Tokens n_i of branch ``branch`` (0-based), CLS included."""
        return self.num_patches(branch) + 1

    @property
    def exit_branches(self) -> tuple[int, ...]:
        """0-based indices of the branches that run (layers > 0): one exit each."""
        return tuple(i for i, n in enumerate(self.layers) if n > 0)

    @property
    def exit_names(self) -> tuple[str, ...]:
        """Output names of the exits, ``exit_<branch>`` with 1-based branch numbers."""
        return tuple(exit_name(i) for i in self.exit_branches)

    @property
    def loss_weights(self) -> dict[str, float]:
        """Per-exit loss coefficients alpha_i (equal weights when not given)."""
        weights = self.exit_weights or (1.0,) * len(self.exit_branches)
        return dict(zip(self.exit_names, weights))

    # Variants and (de)serialisation ----------------------------------------

    def replace(self, **changes: Any) -> "RAViTConfig":
        """Returns a copy with some fields changed (validated again)."""
        if "layers" in changes and "exit_weights" not in changes:
            new_layers = parse_layers(changes["layers"])
            if sum(n > 0 for n in new_layers) != len(self.exit_branches):
                changes["exit_weights"] = None
        return dataclasses.replace(self, **changes)

    def classic(self, num_layers: int) -> "RAViTConfig":
        """The classic ViT baseline "0-...-0-L" on the original image."""
        layers = (0,) * (self.num_branches - 1) + (int(num_layers),)
        return self.replace(layers=layers, exit_weights=None)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["image_size"] = list(self.image_size)
        d["layers"] = self.layer_spec
        for key in ("mean", "std", "exit_weights", "branch_sizes"):
            if d[key] is not None:
                d[key] = list(d[key])
        # Left out when unused, so configs and manifests of attention-only models stay as they were.
        if self.mlp_layers is None:
            d.pop("mlp_layers")
        else:
            d["mlp_layers"] = format_layers(self.mlp_layers)
        if self.mlp_activation == "gelu":
            d.pop("mlp_activation")
        if not self.drop_path_rate:
            d.pop("drop_path_rate")
        return d

    def drop_path_rates(self) -> dict[tuple[int, int], float]:
        """Stochastic-depth rate of every block, by (0-based branch, 0-based layer).

        Linear over the chain of blocks, branch after branch: 0 at the first,
        ``drop_path_rate`` at the last (all 0 when the rate is 0).
        """
        blocks = [(b, j) for b in self.exit_branches for j in range(self.layers[b])]
        last = max(len(blocks) - 1, 1)
        return {block: self.drop_path_rate * k / last for k, block in enumerate(blocks)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RAViTConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"Unknown RAViTConfig fields: {sorted(unknown)}.")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "RAViTConfig":
        return cls.from_dict(json.loads(text))


def exit_name(branch: int) -> str:
    """Name of the exit after 0-based branch ``branch``: ``exit_<branch + 1>``."""
    return f"exit_{branch + 1}"


# Presets ------------------------------------------------------------------

_ARCHITECTURES: dict[str, dict[str, Any]] = {
    # Paper reference configurations (RAVIT.md, "Reference configurations").
    "cifar10": dict(
        image_size=32, layers="1-3", patch_size=4, hidden_dim=128, mlp_dim=512,
        num_heads=4, num_classes=10, mean=CIFAR10_MEAN, std=CIFAR10_STD,
    ),
    "tinyimagenet": dict(
        image_size=64, layers="2-0-3", patch_size=4, hidden_dim=768, mlp_dim=3072,
        num_heads=12, num_classes=200, mean=IMAGENET_MEAN, std=IMAGENET_STD,
    ),
    "imagenet": dict(
        image_size=224, layers="1-1-8", patch_size=16, hidden_dim=768, mlp_dim=3072,
        num_heads=12, num_classes=1000, mean=IMAGENET_MEAN, std=IMAGENET_STD,
        branch_sizes=(64, 128, 224),  # As in the paper; no single scale factor gives these.
    ),
    # Tiny variants for tests and demos (seconds on a CPU).
    "tiny": dict(
        image_size=32, layers="1-2", patch_size=4, hidden_dim=32, mlp_dim=64,
        num_heads=2, num_classes=10,
    ),
    "tiny3": dict(
        image_size=32, layers="1-1-2", patch_size=4, hidden_dim=32, mlp_dim=64,
        num_heads=2, num_classes=10,
    ),
    # CPU-sized Tiny ImageNet study (reduced width, stated in the docs).
    "tinyimagenet_small": dict(
        image_size=64, layers="2-0-3", patch_size=4, hidden_dim=192, mlp_dim=768,
        num_heads=3, num_classes=200, mean=IMAGENET_MEAN, std=IMAGENET_STD,
    ),
}


def preset_names() -> tuple[str, ...]:
    """Names of the architecture configurations (``arch_names``; kept under its old name)."""
    return tuple(_ARCHITECTURES)


def arch_names() -> tuple[str, ...]:
    """Names of the architecture configurations ``get_config`` knows."""
    return tuple(_ARCHITECTURES)


def get_config(name: str, layers: str | Sequence[int] | None = None, **overrides: Any) -> RAViTConfig:
    """Returns the named architecture configuration, optionally with another layer spec or fields.

    Raises:
        ValueError: for an unknown architecture name or invalid overrides.
    """
    if name not in _ARCHITECTURES:
        raise ValueError(
            f"Unknown configuration {name!r}; known: {', '.join(_ARCHITECTURES)}."
        )
    kwargs = dict(_ARCHITECTURES[name], name=name)
    if layers is not None:
        kwargs["layers"] = layers
    kwargs.update(overrides)
    return RAViTConfig(**kwargs)


get_arch = get_config  # The same function under the word the command line uses (--arch).
