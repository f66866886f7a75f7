"""``modularity.moefy(model, ...)``: turn a Hugging Face model you loaded into a routed one.

Experts come from the weights (``kmeans``, ``random``) or from co-activation on ``data``
(``coactivation``); routers from the weights (``similarity``), from ``data`` (``mlp``), or
from the true activations (``oracle``, the upper bound, which computes the dense activations
to choose). Every MLP is then replaced by a :class:`RoutedGatedMLP` that computes only the
``k`` chosen experts of each token.
"""

from __future__ import annotations

import torch
from torch import nn

from modularity.algorithms.coactivation import CoactivationCounts
from modularity.algorithms.graph_partition import metis_partition
from modularity.algorithms.kmeans import balanced_kmeans, random_partition
from modularity.errors import ConfigError, invalid_choice
from modularity.models.adapter import ModelAdapter
from modularity.routing.routed_mlp import route_model
from modularity.routing.routers import ROUTERS, build_router, experts_per_token
from modularity.routing.sample import RoutingPass, TokenSample

METHODS = ("kmeans", "coactivation", "random")


def data_pass(
    model: nn.Module, data: torch.Tensor, counts: CoactivationCounts | None, batch_size: int = 8
) -> TokenSample:
    """Token sample (and co-activation counts) of ``data`` ``[items, tokens]`` token ids."""
    module = RoutingPass(
        _Loaded(model), data.shape[0], max_tokens=data.numel(), seed=0, counts=counts
    )
    device = next(model.parameters()).device
    with torch.no_grad():
        for start in range(0, data.shape[0], batch_size):
            module.predict_step({"input_ids": data[start : start + batch_size].to(device)}, 0)
    return module.sample()


class _Loaded:
    """The two things :class:`RoutingPass` reads of a loaded model."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.adapter = model, ModelAdapter.for_model(model)


def moefy_model(
    model: nn.Module,
    k: int | float = 0.25,
    *,
    method: str = "kmeans",
    router: str = "similarity",
    experts: int | None = None,
    neurons_per_expert: int = 32,
    data: torch.Tensor | None = None,
    seed: int = 0,
) -> nn.Module:
    """Replace every MLP of ``model`` (in place) by one that computes only ``k`` experts per
    token (``k`` an int, or a share of the experts in (0, 1]); returns ``model``."""
    if method not in METHODS:
        raise invalid_choice("method", method, METHODS)
    if router not in ROUTERS:
        raise invalid_choice("router", router, ROUTERS)
    needs_data = method == "coactivation" or router == "mlp"
    if needs_data and (data is None or data.ndim != 2 or data.numel() == 0):
        raise ConfigError(
            f"method={method!r} with router={router!r} needs data: token ids [items, tokens]"
        )
    adapter = ModelAdapter.for_model(model)
    n_neurons = adapter.n_neurons
    n_experts = experts or max(1, n_neurons // neurons_per_expert)
    if not 1 <= n_experts <= n_neurons:
        raise ConfigError(f"experts={n_experts} must be between 1 and {n_neurons}")
    share = isinstance(k, float)
    per_token = experts_per_token(k, n_experts) if share else k
    if (share and not 0 < k <= 1) or not 1 <= per_token <= n_experts:
        raise ConfigError(f"k={k!r}: give 1..{n_experts} experts or a share in (0, 1]")
    counts = None
    if method == "coactivation":
        counts = CoactivationCounts(adapter.n_layers, n_neurons)
    sample = data_pass(model, data, counts) if needs_data else None
    labels, routers = {}, {}
    for layer in range(adapter.n_layers):
        rows = adapter.input_weight(layer, "gate" if adapter.is_gated else "up").detach().float()
        if method == "coactivation":
            found = metis_partition(counts.counts[layer].numpy(), n_experts, seed=seed)
        elif method == "kmeans":
            found = balanced_kmeans(rows, n_experts, seed=seed).labels
        else:
            found = random_partition(rows, n_experts, seed=seed).labels
        labels[layer] = torch.from_numpy(found)
        samples = sample.layer(layer) if router == "mlp" else None
        routers[layer] = build_router(
            router, labels[layer], rows.cpu(), n_experts, samples, seed=seed + layer
        ).to(rows.device)
    route_model(adapter, labels, n_experts, routers, per_token)
    return model
