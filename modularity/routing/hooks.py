"""Routed inference on any supported model: per token, only the top-k experts' neurons stay.

A pre-hook on each MLP's input projection keeps the MLP input for the router; the neuron
site's pre-hook then zeroes the neurons of every expert the router did not pick for that
token. The result equals what :mod:`modularity.routing.routed_mlp` computes sparsely
(tested), for every architecture the adapters know, so quality is measured the same way on
all of them; the hooks are removed on exit, even when the body raises.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from modularity.models.adapter import ModelAdapter
from modularity.neurons.masks import neuron_hooks
from modularity.routing.routers import Router, top_experts


@dataclass
class RoutedLayer:
    """One layer's experts (``labels`` ``[N]`` int64) and the router choosing among them."""

    labels: torch.Tensor
    router: Router
    n_experts: int


def input_projection(adapter: ModelAdapter, layer: int) -> nn.Module:
    """The module whose input is the MLP input (the up projection; gates read the same)."""
    return adapter.blocks[layer].get_submodule(adapter.layout.up)


@contextmanager
def routed(
    adapter: ModelAdapter,
    layers: dict[int, RoutedLayer],
    k: int,
    counts: dict[int, torch.Tensor] | None = None,
) -> Iterator[None]:
    """Keep only the top-``k`` experts of each token in ``layers`` for the ``with`` body.

    ``counts``, if given, receives per layer how many tokens picked each expert (``[E]``).
    """
    inputs: dict[int, torch.Tensor] = {}
    handles = []

    def keep_input(layer: int):  # noqa: ANN202 - a hook factory
        def pre_hook(_module: nn.Module, args: tuple) -> None:
            inputs[layer] = args[0]

        return pre_hook

    def on_site(layer: int, h: torch.Tensor) -> torch.Tensor:
        spec = layers[layer]
        scores = spec.router.to(h.device)(inputs.pop(layer), h)
        chosen = top_experts(scores, k)
        if counts is not None:
            picked = chosen.reshape(-1, spec.n_experts).sum(0).cpu()
            counts[layer] = counts.get(layer, 0) + picked
        keep = chosen[..., spec.labels.to(h.device)]  # [..., N]
        return h * keep.to(h.dtype)

    try:
        for layer in layers:
            hook = keep_input(layer)
            handles.append(input_projection(adapter, layer).register_forward_pre_hook(hook))
        with neuron_hooks(adapter, on_site, list(layers)):
            yield
    finally:
        for handle in handles:
            handle.remove()
