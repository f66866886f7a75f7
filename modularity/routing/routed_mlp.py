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
            # Gate and up rows side by side: one batched matmul computes both.
            gate_up = torch.cat([by_expert(gate.weight), by_expert(up.weight)], dim=1)
            self.register_buffer("gate_up_w", gate_up, persistent=False)  # [E, 2n, d]
            self.register_buffer("down_w", by_expert(down.weight.T), persistent=False)
            biases = None
            if gate.bias is not None or up.bias is not None:
                zeros = torch.zeros(n_neurons, 1, dtype=gate.weight.dtype)
                parts_b = [zeros if b is None else b[:, None] for b in (gate.bias, up.bias)]
                biases = torch.cat([by_expert(b) for b in parts_b], dim=1).transpose(1, 2)
            self.register_buffer("gate_up_b", biases, persistent=False)  # [E, 1, 2n]
            self.register_buffer("down_b", down.bias, persistent=False)
        self.width = width

    def dense_activations(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, N]`` every neuron's activation (only the oracle router asks for it)."""
        return self.act(self.inputs["gate"](x)) * self.inputs["up"](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        h = self.dense_activations(flat) if self.router.needs_activations else None
        chosen = self.router(flat, h).topk(self.k, dim=-1).indices  # [T, k]
        return self.compute(flat, chosen).reshape(shape).to(x.dtype)

    def _experts(
        self,
        inputs: torch.Tensor,
        gate_up_w: torch.Tensor,
        down_w: torch.Tensor,
        bias: torch.Tensor | None,
    ) -> torch.Tensor:
        """``[A, C, d]`` outputs of experts (weights ``[A, 2n, d]``, ``[A, n, d]``) on their
        gathered inputs ``[A, C, d]``: two batched matmuls."""
        gate_up = torch.bmm(inputs, gate_up_w.transpose(1, 2))  # [A, C, 2n]
        if bias is not None:
            gate_up = gate_up + bias
        gate, up = gate_up.split(self.width, dim=-1)
        return torch.bmm(self.act(gate) * up, down_w)

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
        if active.numel() == self.n_experts:
            out = self._experts(inputs, self.gate_up_w, self.down_w, self.gate_up_b)
        else:
            # Few experts picked (few tokens): gathering their weights for one batched
            # matmul would copy them, costing more memory traffic than the product itself
            # (measured: 1.7x dense for one Mistral token); views of each expert's weights
            # are read in place instead, one expert at a time.
            bias = self.gate_up_b
            out = torch.stack(
                [
                    self._experts(
                        inputs[a : a + 1],
                        self.gate_up_w[e : e + 1],
                        self.down_w[e : e + 1],
                        None if bias is None else bias[e : e + 1],
                    )[0]
                    for a, e in enumerate(active.tolist())
                ]
            )
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
