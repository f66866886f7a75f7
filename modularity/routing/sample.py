"""What routers and co-activation experts are built from: one pass over a data split that
streams the co-activation counts of every layer and keeps a sample of tokens' MLP inputs
and neuron activations.

The sample takes each token with the same probability (seeded), sized so that about
``max_tokens`` tokens are kept from the whole split, then cut at ``max_tokens``; activations
are kept in float16 (they only weigh experts). Memory: the counts are O(layers x N^2) int64,
the sample ``max_tokens x layers x (d_model + N)``. One process: under DDP each rank would
see only its shard.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader

from modularity.algorithms.coactivation import CoactivationCounts
from modularity.infra.trainer import SumsLoop, make_trainer, model_inputs, run_loop
from modularity.models.loading import LoadedModel
from modularity.neurons.masks import neuron_hooks
from modularity.routing.hooks import input_projection


@dataclass
class TokenSample:
    """Per layer, ``inputs[layer]`` ``[T, d]`` float32 MLP inputs and ``activations[layer]``
    ``[T, N]`` float16 neuron activations of the same ``T`` tokens."""

    inputs: dict[int, torch.Tensor] = field(default_factory=dict)
    activations: dict[int, torch.Tensor] = field(default_factory=dict)

    @property
    def n_tokens(self) -> int:
        return next(iter(self.inputs.values())).shape[0] if self.inputs else 0

    def layer(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs[layer], self.activations[layer].float()


class RoutingPass(SumsLoop):
    """Streams co-activation counts (if asked) and keeps the token sample."""

    def __init__(
        self,
        loaded: LoadedModel,
        n_items: int,
        max_tokens: int,
        seed: int,
        counts: CoactivationCounts | None,
    ) -> None:
        super().__init__()
        self.net, self.adapter = loaded.model, loaded.adapter
        self.n_items, self.max_tokens, self.counts = n_items, max_tokens, counts
        self.generator = torch.Generator().manual_seed(seed)
        self.parts: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self.kept = 0

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        inputs: dict[int, torch.Tensor] = {}
        state: dict[str, torch.Tensor] = {}
        mask = batch.get("attention_mask")
        n_items = next(v for k, v in batch.items() if k in ("input_ids", "pixel_values")).shape[0]

        def keep_input(layer: int):  # noqa: ANN202 - a hook factory
            return lambda _module, args: inputs.__setitem__(layer, args[0])

        def on_site(layer: int, h: torch.Tensor) -> None:
            x = inputs.pop(layer)
            tokens = h.reshape(-1, h.shape[-1])
            if mask is not None and mask.shape == h.shape[:-1]:
                valid = mask.reshape(-1).bool()
                tokens, x = tokens[valid], x.reshape(-1, x.shape[-1])[valid]
            if self.counts is not None:
                self.counts.update(layer, tokens)
            if "take" not in state:
                state["take"] = self._draw(tokens.shape[0], n_items)
            take = state["take"].to(tokens.device)
            if take.numel():
                sample = (x.reshape(-1, x.shape[-1])[take].float().cpu(), tokens[take].half().cpu())
                self.parts.setdefault(layer, []).append(sample)

        handles = [
            input_projection(self.adapter, layer).register_forward_pre_hook(keep_input(layer))
            for layer in range(self.adapter.n_layers)
        ]
        try:
            with neuron_hooks(self.adapter, on_site):
                self.net.base_model(**model_inputs(batch))
        finally:
            for handle in handles:
                handle.remove()
        self.kept += int(state["take"].numel()) if "take" in state else 0

    def _draw(self, n_tokens: int, n_items: int) -> torch.Tensor:
        """Indices of the batch's tokens to keep: each with the probability that keeps about
        ``max_tokens`` of the split, none once ``max_tokens`` are kept."""
        room = self.max_tokens - self.kept
        if room <= 0:
            return torch.empty(0, dtype=torch.long)
        per_item = max(1, n_tokens // n_items)
        rate = min(1.0, self.max_tokens / (self.n_items * per_item))
        chosen = torch.nonzero(torch.rand(n_tokens, generator=self.generator) < rate).squeeze(1)
        return chosen[:room]

    def sample(self) -> TokenSample:
        out = TokenSample()
        for layer, parts in self.parts.items():
            out.inputs[layer] = torch.cat([p[0] for p in parts])
            out.activations[layer] = torch.cat([p[1] for p in parts])
        return out


def routing_pass(
    loaded: LoadedModel,
    loader: DataLoader,
    trainer_cfg: Any,
    *,
    max_tokens: int,
    seed: int,
    counts: CoactivationCounts | None = None,
    stage: str = "routing sample",
) -> TokenSample:
    """Run the model over ``loader`` once: fill ``counts`` and return the token sample."""
    module = RoutingPass(loaded, len(loader.dataset), max_tokens, seed, counts)
    run_loop(make_trainer(trainer_cfg, stage), module, loader)
    return module.sample()
