"""A gated MLP that computes only the experts its router picks for each token.

Each expert's gate, up and down weights are stored together (``[E, n, d]``, padded with zero
neurons where sizes differ by one). For a batch, the (token, expert) pairs are grouped by
expert into a ``[active experts, capacity, d]`` gather of the inputs; one batched matmul per
projection computes them, and the outputs are added back to their tokens. Experts no token
picked are never touched, and no dense activation is computed except by the oracle router,
which by definition needs it.
"""

from __future__ import annotations

import torch
from torch import nn

from modularity.errors import ConfigError
from modularity.models.adapter import ModelAdapter
from modularity.routing.routers import Router


class RoutedGatedMLP(nn.Module):
    """Replaces a gated MLP ``down(act(gate(x)) * up(x))``; ``dense`` keeps the original."""

    def __init__(
        self,
        dense: nn.Module,
        parts: dict[str, nn.Linear],
        labels: torch.Tensor,
        n_experts: int,
        router: Router,
        k: int,
    ) -> None:
        super().__init__()
        if not callable(getattr(dense, "act_fn", None)):
            raise ConfigError(f"{type(dense).__name__} has no act_fn: not a gated Llama-style MLP")
        self.dense, self.router, self.k = dense, router, k
        self.act = dense.act_fn
        self.inputs = {name: parts[name] for name in ("gate", "up")}  # the dense module's own
        labels = labels.long().cpu()
        if not 1 <= k <= n_experts:
            raise ConfigError(f"k={k} experts per token must be between 1 and {n_experts}")
        self.n_experts = n_experts
        sizes = torch.bincount(labels, minlength=n_experts)
        width = int(sizes.max())
        # slots[e, j]: the j-th neuron of expert e, or N (a zero neuron) where e has fewer.
        n_neurons = labels.numel()
        order = torch.argsort(labels, stable=True)
        position = torch.arange(n_neurons) - (torch.cumsum(sizes, 0) - sizes)[labels[order]]
        slots = torch.full((n_experts, width), n_neurons, dtype=torch.long)
        slots[labels[order], position] = order
        self.register_buffer("slots", slots, persistent=False)

        def by_expert(rows: torch.Tensor) -> torch.Tensor:  # [N, ...] -> [E, width, ...]
            padded = torch.cat([rows, rows.new_zeros(1, *rows.shape[1:])])
            return padded[slots].contiguous()

        gate, up, down = parts["gate"], parts["up"], parts["down"]
        with torch.no_grad():
            self.register_buffer("gate_w", by_expert(gate.weight), persistent=False)
            self.register_buffer("up_w", by_expert(up.weight), persistent=False)
            self.register_buffer("down_w", by_expert(down.weight.T), persistent=False)
            for name, linear in (("gate_b", gate), ("up_b", up)):
                bias = None if linear.bias is None else by_expert(linear.bias[:, None])
                self.register_buffer(name, bias, persistent=False)
            self.register_buffer("down_b", down.bias, persistent=False)

    def dense_activations(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, N]`` every neuron's activation (only the oracle router asks for it)."""
        return self.act(self.inputs["gate"](x)) * self.inputs["up"](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        h = self.dense_activations(flat) if self.router.needs_activations else None
        chosen = self.router(flat, h).topk(self.k, dim=-1).indices  # [T, k]
        return self.compute(flat, chosen).reshape(shape).to(x.dtype)

    def compute(self, flat: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        """The MLP output ``[T, d]`` from only the experts ``chosen`` ``[T, k]``."""
        n_tokens = flat.shape[0]
        expert = chosen.reshape(-1)
        token = torch.arange(n_tokens, device=flat.device).repeat_interleave(chosen.shape[1])
        counts = torch.bincount(expert, minlength=self.n_experts)
        active = torch.nonzero(counts).squeeze(1)  # experts some token picked
        rank = torch.full((self.n_experts,), -1, dtype=torch.long, device=flat.device)
        rank[active] = torch.arange(active.numel(), device=flat.device)
        order = torch.argsort(expert, stable=True)
        starts = torch.cumsum(counts, 0) - counts
        position = torch.arange(expert.numel(), device=flat.device) - starts[expert[order]]
        # table[a, c]: the token in slot c of active expert a, or n_tokens (a zero row).
        table = torch.full(
            (active.numel(), int(counts.max())), n_tokens, dtype=torch.long, device=flat.device
        )
        table[rank[expert[order]], position] = token[order]
        inputs = torch.cat([flat, flat.new_zeros(1, flat.shape[1])])[table]  # [A, C, d]
        weights = {name: getattr(self, name) for name in ("gate_w", "up_w", "down_w")}
        if active.numel() < self.n_experts:
            weights = {name: w.index_select(0, active) for name, w in weights.items()}
        gate = torch.bmm(inputs, weights["gate_w"].transpose(1, 2))  # [A, C, n]
        up = torch.bmm(inputs, weights["up_w"].transpose(1, 2))
        if self.gate_b is not None:
            gate = gate + self.gate_b.index_select(0, active).transpose(1, 2)
        if self.up_b is not None:
            up = up + self.up_b.index_select(0, active).transpose(1, 2)
        out = torch.bmm(self.act(gate) * up, weights["down_w"])  # [A, C, d]
        summed = flat.new_zeros(n_tokens + 1, flat.shape[1])
        summed.index_add_(0, table.reshape(-1), out.reshape(-1, flat.shape[1]).to(flat.dtype))
        result = summed[:n_tokens]
        return result if self.down_b is None else result + self.down_b


def mlp_module_path(adapter: ModelAdapter) -> str:
    """Path of the MLP module inside a block (the parent of its projections)."""
    return adapter.layout.up.rsplit(".", 1)[0]


def route_model(
    adapter: ModelAdapter,
    labels: dict[int, torch.Tensor],
    n_experts: int,
    routers: dict[int, Router],
    k: int,
) -> None:
    """Replace the MLP of every layer in ``labels`` by a :class:`RoutedGatedMLP`, in place."""
    if not adapter.is_gated:
        raise ConfigError(
            f"the routed MLP computes gated MLPs (Llama, Mistral, Qwen); "
            f"{type(adapter.model).__name__} has a plain MLP"
        )
    path = mlp_module_path(adapter)
    paths = adapter.projection_paths()
    for layer, layer_labels in labels.items():
        block = adapter.blocks[layer]
        dense = block.get_submodule(path)
        if isinstance(dense, RoutedGatedMLP):
            dense = dense.dense
        parts = {name: block.get_submodule(paths[name]) for name in ("gate", "up", "down")}
        routed = RoutedGatedMLP(dense, parts, layer_labels, n_experts, routers[layer], k)
        parent, _, name = path.rpartition(".")
        (block.get_submodule(parent) if parent else block).register_module(name, routed)


def unroute_model(adapter: ModelAdapter) -> None:
    """Put every layer's original MLP back (undoes :func:`route_model`)."""
    path = mlp_module_path(adapter)
    parent, _, name = path.rpartition(".")
    for block in adapter.blocks:
        module = block.get_submodule(path)
        if isinstance(module, RoutedGatedMLP):
            (block.get_submodule(parent) if parent else block).register_module(name, module.dense)
