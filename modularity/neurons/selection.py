"""Select the top-scoring neurons, per layer or over all layers at once."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from modularity.config import Scope, checked_choice
from modularity.errors import ConfigError


def check_layers(layers: Sequence[int] | None, n_layers: int) -> list[int]:
    """Validate a layer subset (None = every layer) against the model's depth."""
    if layers is None:
        return list(range(n_layers))
    bad = [layer for layer in layers if not 0 <= layer < n_layers]
    if bad:
        raise ConfigError(f"layers {bad} out of range: this model has layers 0..{n_layers - 1}")
    if not layers:
        raise ConfigError("layers=[] selects nothing; give layer indices or null for all")
    return sorted(set(layers))


def n_selected(fraction: float, n: int) -> int:
    """How many of ``n`` neurons a fraction selects: rounded, at least one."""
    if not 0 < fraction <= 1:
        raise ConfigError(f"fraction {fraction} is outside (0, 1]")
    return max(1, round(fraction * n))


def select_top_fraction(
    scores: torch.Tensor,
    fraction: float,
    scope: str = "layer",
    layers: Sequence[int] | None = None,
) -> torch.Tensor:
    """Boolean mask ``[layers, neurons]`` of the top ``fraction`` of neurons by score.

    ``scope="layer"`` takes the top fraction of each chosen layer; ``"global"`` the top
    fraction of all chosen layers' neurons together. Layers not chosen select nothing.
    Ties are broken by neuron order (``torch.topk`` on a stable sort is deterministic).
    """
    n_layers, n_neurons = scores.shape
    chosen = check_layers(layers, n_layers)
    mask = torch.zeros(scores.shape, dtype=torch.bool)
    sub = scores[chosen].to(torch.float64).cpu()
    scope = checked_choice(Scope, scope, "selection.scope")
    if scope == "layer":
        k = n_selected(fraction, n_neurons)
        top = sub.argsort(dim=1, descending=True, stable=True)[:, :k]
        picked = torch.zeros_like(sub, dtype=torch.bool).scatter_(1, top, True)
    else:
        k = n_selected(fraction, sub.numel())
        top = sub.flatten().argsort(descending=True, stable=True)[:k]
        picked = torch.zeros(sub.numel(), dtype=torch.bool)
        picked[top] = True
        picked = picked.view_as(sub)
    mask[chosen] = picked
    return mask
