"""Co-activation of neurons: for every pair, on how many tokens both are active.

MoEfication (Zhang et al. 2022) builds experts from this graph: neurons that fire together
go into one expert, so a token needs few experts. A neuron counts as active on a token when
its activation is positive (``positive``, MoEfication's rule for ReLU models) or when it is
among the token's ``share`` largest activations (``top``: for gated SiLU MLPs, where about
half the neurons are positive on any token and sign says little). Counts stream over batches
of tokens as one matrix product per batch, never a loop over tokens.
"""

from __future__ import annotations

import math

import torch

from modularity.errors import ConfigError, invalid_choice

ACTIVE_RULES = ("positive", "top")
# A float32 product of 0/1 matrices counts exactly up to 2**24 tokens: larger batches are
# split into chunks of this many tokens.
_EXACT_TOKENS = 2**24


def active_units(x: torch.Tensor, rule: str = "positive", share: float = 0.1) -> torch.Tensor:
    """Which neurons count as active on each token: bool ``[tokens, neurons]`` from the
    activations ``x`` ``[tokens, neurons]``."""
    if rule == "positive":
        return x > 0
    if rule != "top":
        raise invalid_choice("co-activation rule", rule, ACTIVE_RULES)
    if not 0 < share <= 1:
        raise ConfigError(f"active share={share!r} must be in (0, 1]")
    k = max(1, math.ceil(share * x.shape[-1]))
    active = torch.zeros(x.shape, dtype=torch.bool, device=x.device)
    return active.scatter_(-1, x.topk(k, dim=-1).indices, True)


class CoactivationCounts:
    """Streaming co-activation counts of each layer: ``counts[layer]`` is ``[N, N]`` int64,
    entry ``(i, j)`` the number of tokens on which neurons i and j were both active (the
    diagonal: how often each neuron was active). Memory O(layers x N^2)."""

    def __init__(
        self, n_layers: int, n_neurons: int, rule: str = "positive", share: float = 0.1
    ) -> None:
        if rule not in ACTIVE_RULES:
            raise invalid_choice("co-activation rule", rule, ACTIVE_RULES)
        self.rule, self.share = rule, share
        self.counts = torch.zeros(n_layers, n_neurons, n_neurons, dtype=torch.int64)
        self.tokens = 0

    def update(self, layer: int, x: torch.Tensor) -> None:
        """Add the tokens of ``x`` ``[..., N]`` (any leading shape) to ``layer``'s counts."""
        flat = x.detach().reshape(-1, x.shape[-1])
        for start in range(0, flat.shape[0], _EXACT_TOKENS):
            active = active_units(
                flat[start : start + _EXACT_TOKENS].float(), self.rule, self.share
            )
            a = active.float()
            self.counts[layer] += (a.T @ a).round().to(torch.int64).cpu()
        if layer == 0:
            self.tokens += flat.shape[0]
