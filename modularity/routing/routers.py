"""Routers: score each expert for each token; the top-k experts are the ones computed.

An expert's *activation mass* on a token is the sum of its neurons' absolute activations:
MoEfication's "summed positive activation" for ReLU models (where activations are >= 0), and
for gated SiLU MLPs, whose negative activations also reach the output, the same magnitude.

- ``similarity``: the token's MLP input against the mean of the expert's input weight rows
  (for gated MLPs the gate's): the expert's mean pre-activation, no training.
- ``mlp``: MoEfication's small router (linear, tanh, linear; the first layer starts at the
  normalised mean rows, the second at the identity), trained to predict each expert's mass
  relative to the token's largest; deterministic given the seed.
- ``oracle``: the experts with the largest true mass (needs the dense activations): the
  upper bound of any router.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from modularity.errors import ConfigError, invalid_choice

ROUTERS = ("similarity", "mlp", "oracle")


def membership(labels: torch.Tensor, n_experts: int) -> torch.Tensor:
    """``[N, E]`` float32: 1 where neuron n belongs to expert e."""
    return F.one_hot(labels.long(), n_experts).float()


def expert_mass(activations: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
    """``[..., E]`` summed absolute activation of each expert, from ``[..., N]``."""
    return activations.float().abs() @ members.to(activations.device)


def experts_per_token(share: float, n_experts: int) -> int:
    """k for a share of the experts: rounded, at least one."""
    return min(n_experts, max(1, round(share * n_experts)))


def top_experts(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Bool ``[..., E]``: the ``k`` highest-scoring experts of each token."""
    if not 1 <= k <= scores.shape[-1]:
        raise ConfigError(f"k={k} experts per token must be between 1 and {scores.shape[-1]}")
    chosen = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    return chosen.scatter_(-1, scores.topk(k, dim=-1).indices, True)


def captured_mass(scores: torch.Tensor, mass: torch.Tensor, k: int) -> torch.Tensor:
    """``[tokens]`` share of each token's activation mass held by its routed top-k experts
    (nan for a token with no mass)."""
    picked = (mass * top_experts(scores, k)).sum(-1)
    total = mass.sum(-1)
    return torch.where(total > 0, picked / total, torch.full_like(total, float("nan")))


def expert_centroids(rows: torch.Tensor, labels: torch.Tensor, n_experts: int) -> torch.Tensor:
    """``[E, d]`` mean input weight row of each expert, from rows ``[N, d]``."""
    members = membership(labels, n_experts)
    return (members.T @ rows.float()) / members.sum(0).clamp(min=1)[:, None]


class Router(nn.Module):
    """Scores ``[..., E]`` from the MLP input ``x`` ``[..., d]`` (and, for the oracle, the
    neuron activations ``h`` ``[..., N]``)."""

    needs_activations = False

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError


class SimilarityRouter(Router):
    def __init__(self, centroids: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("centroids", centroids.float())

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        return x.float() @ self.centroids.T


class MlpRouter(Router):
    def __init__(self, centroids: torch.Tensor) -> None:
        super().__init__()
        n_experts, d_model = centroids.shape
        self.net = nn.Sequential(
            nn.Linear(d_model, n_experts, bias=False),
            nn.Tanh(),
            nn.Linear(n_experts, n_experts, bias=False),
        )
        with torch.no_grad():
            self.net[0].weight.copy_(F.normalize(centroids.float(), dim=-1))
            self.net[2].weight.copy_(torch.eye(n_experts))

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(F.normalize(x.float(), dim=-1))


class OracleRouter(Router):
    needs_activations = True

    def __init__(self, labels: torch.Tensor, n_experts: int) -> None:
        super().__init__()
        self.register_buffer("members", membership(labels, n_experts))

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        if h is None:
            raise ValueError("the oracle router needs the neuron activations")
        return expert_mass(h, self.members)


def train_mlp_router(
    inputs: torch.Tensor,
    mass: torch.Tensor,
    centroids: torch.Tensor,
    *,
    epochs: int = 10,
    batch_size: int = 512,
    lr: float = 1e-2,
    seed: int = 0,
) -> MlpRouter:
    """Fit an :class:`MlpRouter` on MLP inputs ``[T, d]`` and expert masses ``[T, E]``:
    binary cross-entropy against each token's masses divided by its largest (MoEfication's
    target), Adam, shuffled with a generator seeded by ``seed``."""
    if inputs.shape[0] != mass.shape[0] or inputs.shape[0] == 0:
        raise ConfigError(f"router training needs tokens; got {inputs.shape[0]} inputs")
    router = MlpRouter(centroids)
    mass = mass.detach().float()
    target = mass / mass.amax(-1, keepdim=True).clamp(min=1e-12)
    inputs = inputs.detach().float()
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(router.parameters(), lr=lr)
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(inputs.shape[0], generator=generator)
            for start in range(0, inputs.shape[0], batch_size):
                batch = order[start : start + batch_size]
                loss = F.binary_cross_entropy_with_logits(router(inputs[batch]), target[batch])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
    return router.eval().requires_grad_(False)


def build_router(
    kind: str,
    labels: torch.Tensor,
    rows: torch.Tensor,
    n_experts: int,
    samples: tuple[torch.Tensor, torch.Tensor] | None = None,
    **training: int | float,
) -> Router:
    """The ``kind`` router of one layer: ``labels`` ``[N]``, input weight ``rows`` ``[N, d]``;
    ``samples`` (MLP inputs ``[T, d]``, activations ``[T, N]``) train the ``mlp`` router."""
    if kind == "oracle":
        return OracleRouter(labels, n_experts)
    centroids = expert_centroids(rows, labels, n_experts)
    if kind == "similarity":
        return SimilarityRouter(centroids)
    if kind != "mlp":
        raise invalid_choice("router", kind, ROUTERS)
    if samples is None:
        raise ConfigError("router=mlp needs data to train on (MLP inputs and activations)")
    inputs, activations = samples
    mass = expert_mass(activations, membership(labels, n_experts))
    return train_mlp_router(inputs, mass, centroids, **training)
