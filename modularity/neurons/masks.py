"""Ablate selected units through forward-pre-hooks on their site's module (``mlp`` neurons by
default; ``attn`` neurons and ``heads``: columns of the attention output projection's input).

Hooks leave the weights untouched, so removing them restores the model bit for bit; the
context managers remove them even when the body raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from modularity.config import AblationMode, checked_choice
from modularity.models.adapter import ModelAdapter
from modularity.neurons.sites import column_mask, site_of

SiteHook = Callable[[int, torch.Tensor], torch.Tensor | None]


@contextmanager
def neuron_hooks(
    adapter: ModelAdapter, hook: SiteHook, layers: list[int] | None = None, site: str = "mlp"
) -> Iterator[None]:
    """Call ``hook(layer, activations)`` with the input of ``site``'s module in each layer; a
    returned tensor replaces it."""
    module_of = site_of(site).module
    handles = []

    def make(layer: int) -> Callable[[nn.Module, tuple], tuple | None]:
        def pre_hook(_module: nn.Module, args: tuple) -> tuple | None:
            replaced = hook(layer, args[0])
            return None if replaced is None else (replaced, *args[1:])

        return pre_hook

    try:
        for layer in range(adapter.n_layers) if layers is None else layers:
            handles.append(module_of(adapter, layer).register_forward_pre_hook(make(layer)))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def ablate(
    adapter: ModelAdapter,
    mask: torch.Tensor,
    mode: str = "zero",
    means: torch.Tensor | None = None,
    site: str = "mlp",
) -> Iterator[None]:
    """Ablate the units of ``site`` in ``mask`` (``[layers, units]`` bool) for the ``with`` body.

    ``zero`` sets them to 0; ``mean`` to ``means`` (``[layers, columns]`` of the site's module
    input, the reference mean: for ``heads`` the attention neurons' means), which removes
    their task-dependent signal but keeps their average contribution.
    """
    if checked_choice(AblationMode, mode, "ablation mode") == "mean" and means is None:
        raise ValueError("mean ablation needs the reference means")
    mask = column_mask(adapter, site, mask)
    layers = [layer for layer in range(mask.shape[0]) if mask[layer].any()]
    keep = {layer: ~mask[layer] for layer in layers}
    fill = (
        {layer: means[layer].masked_fill(~mask[layer], 0) for layer in layers}
        if mode == "mean"
        else {}
    )
    cache: dict[
        tuple[int, torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor | None]
    ] = {}

    def on_site(layer: int, x: torch.Tensor) -> torch.Tensor:
        key = (layer, x.device, x.dtype)
        if key not in cache:
            fill_value = fill[layer].to(x.device, x.dtype) if layer in fill else None
            cache[key] = (keep[layer].to(x.device, x.dtype), fill_value)
        keep_factor, fill_value = cache[key]
        out = x * keep_factor
        return out if fill_value is None else out + fill_value

    with neuron_hooks(adapter, on_site, layers, site):
        yield
