"""RAViT cost model (RAVIT.md, "Cost model"): MACs per branch, per exit and on average.

Pure Python/NumPy so schedulers and notebooks can use it without TensorFlow.

Headline figure, as in the paper: one transformer layer of branch i costs
``MAC_i = 2·n_i²·d + 4·n_i·d² + 2·n_i·d·h`` and the model costs ``Σ_i L_i·MAC_i``.
Patch embeddings and exit heads are left out of that figure and reported
separately; position embeddings, norms and softmax are not counted at all.
FLOPs = 2 × MACs.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np

from ravit_keras.config import RAViTConfig, format_layers


def layer_macs(num_tokens: int, hidden_dim: int, mlp_dim: int, attention: bool = True) -> int:
    """MACs of one transformer layer: ``2·n²·d + 4·n·d² + 2·n·d·h``; of an
    attention-free MLP block (LIT): ``2·n·d·h``."""
    for name, value in (("num_tokens", num_tokens), ("hidden_dim", hidden_dim), ("mlp_dim", mlp_dim)):
        if int(value) != value or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    n, d, h = int(num_tokens), int(hidden_dim), int(mlp_dim)
    if not attention:
        return 2 * n * d * h
    return 2 * n * n * d + 4 * n * d * d + 2 * n * d * h


@dataclasses.dataclass(frozen=True)
class BranchCost:
    """Cost of one branch (0-based ``branch``); a skipped branch has ``layers == 0``.

    ``macs_per_layer`` is what one (attention) layer would cost at this branch's
    token count, even for a skipped branch; ``mlp_layers`` of the branch's layers are
    attention-free MLP blocks (LIT) costing ``macs_per_mlp_layer`` each; ``macs``,
    ``patch_embedding_macs`` and ``head_macs`` are 0 for a skipped branch.
    """

    branch: int
    image_size: tuple[int, int]
    tokens: int
    layers: int
    macs_per_layer: int
    macs: int
    patch_embedding_macs: int
    head_macs: int
    mlp_layers: int = 0
    macs_per_mlp_layer: int = 0

    @property
    def is_exit(self) -> bool:
        return self.layers > 0

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["image_size"] = list(self.image_size)
        return d


def branch_costs(config: RAViTConfig) -> list[BranchCost]:
    """One :class:`BranchCost` per branch, coarse to fine, skipped branches included."""
    d, p = config.hidden_dim, config.patch_size
    costs = []
    for i, num_layers in enumerate(config.layers):
        tokens = config.num_tokens(i)
        per_layer = layer_macs(tokens, d, config.mlp_dim)
        per_mlp = layer_macs(tokens, d, config.mlp_dim, attention=False)
        num_mlp = config.mlp_layers[i] if config.mlp_layers else 0
        runs = num_layers > 0
        costs.append(
            BranchCost(
                branch=i,
                image_size=tuple(config.branch_image_sizes[i]),
                tokens=tokens,
                layers=num_layers,
                macs_per_layer=per_layer,
                macs=(num_layers - num_mlp) * per_layer + num_mlp * per_mlp,
                mlp_layers=num_mlp,
                macs_per_mlp_layer=per_mlp,
                # A patch is flattened to P·P·3 values and projected to d.
                patch_embedding_macs=config.num_patches(i) * p * p * 3 * d if runs else 0,
                head_macs=d * config.num_classes if runs else 0,
            )
        )
    return costs


def model_macs(config: RAViTConfig) -> int:
    """Headline MACs of the whole model, ``Σ_i L_i·MAC_i`` (every branch run)."""
    return sum(c.macs for c in branch_costs(config))


def exit_macs(config: RAViTConfig) -> list[int]:
    """Cumulative cost C_i of an image that leaves at each exit, in exit order.

    ``C_i = Σ_{j≤i} L_j·MAC_j``; only branches with layers > 0 are exits (skipped
    branches cost nothing, so they do not change the running sum).
    """
    total, out = 0, []
    for c in branch_costs(config):
        total += c.macs
        if c.is_exit:
            out.append(total)
    return out


def _as_exit_macs(config_or_exit_macs: RAViTConfig | Sequence[float]) -> list:
    if isinstance(config_or_exit_macs, RAViTConfig):
        return exit_macs(config_or_exit_macs)
    values = list(np.asarray(config_or_exit_macs).reshape(-1).tolist())
    if not values:
        raise ValueError("exit_macs is empty; give one cumulative cost per exit.")
    for i, v in enumerate(values):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ValueError(f"exit_macs[{i}] = {v!r} is not a finite non-negative number.")
    return values


def expected_macs(
    config_or_exit_macs: RAViTConfig | Sequence[float], exit_counts: Sequence[int]
) -> float:
    """Average MACs per image with early exit (Eq. 4): ``(1/N)·Σ_i N_i·C_i``.

    Args:
        config_or_exit_macs: a config, or the cumulative exit costs C_i.
        exit_counts: N_i, how many images left at each exit (exit order).

    Raises:
        ValueError: if the counts do not match the exits, are negative or sum to 0.
    """
    costs = _as_exit_macs(config_or_exit_macs)
    counts = list(np.asarray(exit_counts).reshape(-1).tolist())
    if len(counts) != len(costs):
        raise ValueError(
            f"exit_counts {counts} has {len(counts)} entries but there are {len(costs)} exits."
        )
    for i, n in enumerate(counts):
        if not (isinstance(n, (int, float)) and math.isfinite(n) and n >= 0):
            raise ValueError(f"exit_counts[{i}] = {n!r} is not a non-negative count.")
    total = sum(counts)
    if total <= 0:
        raise ValueError(f"exit_counts {counts} sum to 0: no images to average over.")
    # Python ints keep the numerator exact, so the same counts always give the same float.
    return sum(n * c for n, c in zip(counts, costs)) / total


def cost_report(config: RAViTConfig) -> dict[str, Any]:
    """JSON-ready summary of the cost model for ``config``."""
    costs = branch_costs(config)
    macs = sum(c.macs for c in costs)
    exits = exit_macs(config)
    return {
        "config": config.name,
        "layers": config.layer_spec,
        "mlp_layers": format_layers(config.mlp_layers) if config.mlp_layers else None,
        "macs": macs,
        "flops": 2 * macs,
        "mflops": 2 * macs / 1e6,
        "exit_names": list(config.exit_names),
        "exit_macs": exits,
        "exit_flops": [2 * c for c in exits],
        "exit_mflops": [2 * c / 1e6 for c in exits],
        "branches": [c.to_dict() for c in costs],
        "extra_macs": {
            "patch_embedding": sum(c.patch_embedding_macs for c in costs),
            "heads": sum(c.head_macs for c in costs),
        },
    }


def _fmt_macs(macs: int) -> str:
    return f"{macs:,} ({macs / 1e6:.2f} M)"


def format_cost_table(config: RAViTConfig) -> str:
    """Readable per-branch cost table (branches numbered from 1, as in the paper)."""
    costs = branch_costs(config)
    h, w = config.image_size
    lines = [
        f"RAViT cost model: {config.name} \"{config.layer_spec}\" "
        f"({h}x{w}, P={config.patch_size}, d={config.hidden_dim}, h={config.mlp_dim})"
        + (f", attention-free leading layers \"{format_layers(config.mlp_layers)}\" (LIT MLP blocks: "
           "'m+a' below is m of them, then a attention layers)" if config.mlp_layers else ""),
    ]
    header = f"{'branch':>6}  {'image':>9}  {'tokens':>6}  {'layers':>6}  {'MACs/layer':>24}  {'MACs':>26}"
    lines += [header, "-" * len(header)]
    for c in costs:
        size = f"{c.image_size[0]}x{c.image_size[1]}"
        total = _fmt_macs(c.macs) if c.layers else "skipped"
        layers = f"{c.mlp_layers}+{c.layers - c.mlp_layers}" if c.mlp_layers else str(c.layers)
        lines.append(
            f"{c.branch + 1:>6}  {size:>9}  {c.tokens:>6}  {layers:>6}  "
            f"{_fmt_macs(c.macs_per_layer):>24}  {total:>26}"
        )
    lines.append("-" * len(header))
    macs = sum(c.macs for c in costs)
    lines.append(f"total Σ L_i·MAC_i: {_fmt_macs(macs)} MACs = {2 * macs / 1e6:.2f} MFLOPs")
    for name, c in zip(config.exit_names, exit_macs(config)):
        lines.append(f"  leave at {name}: C = {_fmt_macs(c)} MACs = {2 * c / 1e6:.2f} MFLOPs")
    lines.append("not in the total:")
    lines.append(f"  patch embeddings: {_fmt_macs(sum(c.patch_embedding_macs for c in costs))} MACs")
    lines.append(f"  exit heads:       {_fmt_macs(sum(c.head_macs for c in costs))} MACs")
    return "\n".join(lines)
