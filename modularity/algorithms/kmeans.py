"""MoEfication: split an MLP layer's neurons into equal-size experts, and test task alignment.

An expert is a group of neurons whose input weight vectors point in similar directions. Each
neuron's input weight vector (a row of a ``[d_mlp, d_model]`` matrix) is L2-normalised, faiss
k-means finds centroids, and a balancing step then gives every expert exactly ``d_mlp // E`` or
``d_mlp // E + 1`` neurons (any ``E`` works, e.g. 14336 neurons into 96 experts).

Balancing alternates, like Lloyd's algorithm under size constraints: a regret-ordered greedy
assignment (neurons that lose most by missing their nearest expert choose first), a few rounds
of pairwise swaps between experts, and a centroid update, until the inertia stops improving.
This stays within a fraction of a percent of the min-cost-flow optimum used by
k-means-constrained, at a small fraction of its time (``benchmarks/bench_kmeans.py``).

:func:`plain_kmeans` and :func:`random_partition` give comparison partitions of the same type.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

# Before ``import faiss``: its loader logs which SIMD build it picked at INFO, which is not news.
logging.getLogger("faiss.loader").setLevel(logging.WARNING)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from modularity.errors import ConfigError  # noqa: E402
from modularity.infra.optional import require  # noqa: E402

faiss = require("faiss")

# Faiss k-means, which only seeds the balanced iterations, trains on a random sample of this
# many neurons per expert (all of them for smaller layers): on a 14336-neuron layer with 128
# experts this cuts its cost 7x, and the balanced result from such seeds is as good (within
# +-0.3% inertia, better as often as worse, in benchmarks/bench_kmeans.py's cases).
_SEED_POINTS_PER_EXPERT = 16

# Multiply-adds in one pass of points against centroids below which faiss and torch run it on
# one thread: at this size, OpenMP hand-offs cost more than they save (several times more on
# a busy machine). Larger layers (e.g. 4096 x 4096 x 128) use every thread.
_PARALLEL_WORK = 2**30

# Pairwise-swap rounds after each greedy assignment: later rounds rarely change the final
# inertia, because the next greedy assignment starts afresh from the updated centroids.
_SWAP_ROUNDS = 3


@dataclass(frozen=True)
class BalancedKMeansResult:
    """A partition of one layer's neurons into experts (balanced, plain k-means, or random).

    ``labels`` [d_mlp] int64 expert of each neuron; ``centroids`` [E, d_model] float32 mean of
    each expert's (normalised) weight vectors; ``inertia`` sum over neurons of the squared
    distance to their expert's mean; ``sizes`` [E] int64 neurons per expert.
    """

    labels: np.ndarray
    centroids: np.ndarray
    inertia: float
    sizes: np.ndarray


def expert_capacities(d_mlp: int, n_experts: int) -> np.ndarray:
    """Expert sizes [E] int64: ``d_mlp // E`` each, the first ``d_mlp % E`` one larger."""
    check_n_experts(n_experts, d_mlp)
    sizes = np.full(n_experts, d_mlp // n_experts, dtype=np.int64)
    sizes[: d_mlp % n_experts] += 1
    return sizes


def balanced_kmeans(
    weights: np.ndarray | torch.Tensor,
    n_experts: int,
    *,
    n_iter: int = 20,
    n_restarts: int = 3,
    seed: int = 0,
    normalize: bool = True,
    device: str = "auto",
    max_balance_iter: int = 50,
    tol: float = 1e-3,
) -> BalancedKMeansResult:
    """Cluster the rows of ``weights`` [d_mlp, d_model] into ``n_experts`` equal-size experts.

    Faiss k-means (``n_iter`` iterations on up to 16 sampled neurons per expert) seeds each
    of ``n_restarts`` runs; ``device`` (auto, cpu, cuda) says where faiss and the balancing
    run: auto uses CUDA when torch has it, and faiss's GPU index when faiss-gpu is installed.
    balanced Lloyd iterations on all neurons then run until the inertia improves by less than
    ``tol`` (relative) or ``max_balance_iter`` is reached. The run with the lowest inertia
    wins. Deterministic for a given ``seed`` on a given machine.
    """
    x = _prepare_rows(weights, normalize)
    d_mlp = x.shape[0]
    capacities = expert_capacities(d_mlp, n_experts)
    check_positive("n_iter", n_iter)
    check_positive("n_restarts", n_restarts)
    check_positive("max_balance_iter", max_balance_iter)
    if tol < 0:
        raise ConfigError(f"tol must be >= 0; got {tol!r}")
    where = resolve_device(device)
    gpu = faiss_on_gpu(where)
    xt = torch.from_numpy(x).to(where)
    caps = torch.from_numpy(capacities).to(where)
    sq_total = _squared_total(x)
    best: tuple[torch.Tensor, torch.Tensor, float] | None = None
    for restart_seed in _restart_seeds(seed, n_restarts):
        kmeans = _faiss_kmeans(x, n_experts, n_iter, restart_seed, gpu, _SEED_POINTS_PER_EXPERT)
        start = torch.from_numpy(kmeans.centroids)
        run = _balanced_lloyd(xt, start.to(where), caps, sq_total, max_balance_iter, tol)
        if best is None or run[2] < best[2]:
            best = run
    labels, centroids, inertia = best
    return _result(labels, centroids, inertia)


def plain_kmeans(
    weights: np.ndarray | torch.Tensor,
    n_experts: int,
    *,
    seed: int = 0,
    n_iter: int = 20,
    normalize: bool = True,
    device: str = "auto",
) -> BalancedKMeansResult:
    """Unbalanced faiss k-means of the rows of ``weights`` [d_mlp, d_model], for comparison.

    Each neuron goes to its nearest faiss centroid; centroids and inertia are then those of
    the resulting groups, as for the balanced result (an empty expert keeps its centroid).
    """
    x = _prepare_rows(weights, normalize)
    check_n_experts(n_experts, x.shape[0])
    check_positive("n_iter", n_iter)
    gpu = faiss_on_gpu(resolve_device(device))
    kmeans = _faiss_kmeans(x, n_experts, n_iter, _restart_seeds(seed, 1)[0], gpu)
    _, nearest = kmeans.index.search(x, 1)
    labels = torch.from_numpy(nearest[:, 0].astype(np.int64))
    xt = torch.from_numpy(x)
    centroids = torch.from_numpy(kmeans.centroids)
    means, inertia = _group_means(xt, labels, centroids, _squared_total(x))
    return _result(labels, means, inertia)


def random_partition(
    weights: np.ndarray | torch.Tensor,
    n_experts: int,
    *,
    seed: int = 0,
    normalize: bool = True,
) -> BalancedKMeansResult:
    """Neurons of ``weights`` [d_mlp, d_model] dealt at random into experts of balanced sizes.

    The chance baseline: same sizes rule as :func:`balanced_kmeans`; inertia is measured
    against the means of the random groups.
    """
    x = _prepare_rows(weights, normalize)
    capacities = expert_capacities(x.shape[0], n_experts)
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(n_experts, dtype=np.int64), capacities))
    xt = torch.from_numpy(x)
    zeros = torch.zeros(n_experts, x.shape[1])
    means, inertia = _group_means(xt, torch.from_numpy(labels), zeros, _squared_total(x))
    return _result(torch.from_numpy(labels), means, inertia)


def partition_inertia(
    weights: np.ndarray | torch.Tensor,
    labels: np.ndarray,
    n_experts: int,
    *,
    normalize: bool = True,
) -> float:
    """Inertia of any partition ``labels`` [d_mlp] of the rows of ``weights`` (normalised as
    the clusterings see them), so partitions built otherwise (co-activation) compare."""
    x = _prepare_rows(weights, normalize)
    zeros = torch.zeros(n_experts, x.shape[1])
    labels_t = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    return _group_means(torch.from_numpy(x), labels_t, zeros, _squared_total(x))[1]


def check_n_experts(n_experts: int, d_mlp: int) -> None:
    if not 1 <= n_experts <= d_mlp:
        raise ConfigError(f"n_experts must be between 1 and d_mlp={d_mlp}; got {n_experts!r}")


def check_positive(name: str, value: int) -> None:
    if value < 1:
        raise ConfigError(f"{name} must be >= 1; got {value!r}")


def _prepare_rows(weights: np.ndarray | torch.Tensor, normalize: bool) -> np.ndarray:
    """Contiguous float32 [d_mlp, d_model], rows L2-normalised (zero rows stay zero)."""
    if isinstance(weights, torch.Tensor):
        x = weights.detach().to("cpu", torch.float32).numpy()
    else:
        x = np.asarray(weights, dtype=np.float32)
    if x.ndim != 2 or 0 in x.shape:
        raise ConfigError(f"weights must be a non-empty 2-D [d_mlp, d_model] matrix; got {x.shape}")
    if not np.isfinite(x).all():
        raise ConfigError(f"weights contain {int((~np.isfinite(x)).sum())} NaN or inf values")
    if normalize:
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.maximum(norms, np.finfo(np.float32).tiny)
    return np.ascontiguousarray(x, dtype=np.float32)


def _squared_total(x: np.ndarray) -> float:
    """Sum of squared entries of x [N, d] in float64 (a float64 torch copy is much slower)."""
    return float(np.einsum("ij,ij->", x, x, dtype=np.float64))


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads, then restore the caller's setting."""
    previous = torch.get_num_threads()
    if n == previous:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def resolve_device(device: str) -> torch.device:
    """The torch device for ``auto`` / ``cpu`` / ``cuda``; cuda without CUDA is an error."""
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device={device!r}; valid: auto, cpu, cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but torch sees no CUDA device; use device=auto or cpu")
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    return torch.device("cuda" if cuda else "cpu")


def faiss_on_gpu(device: torch.device) -> bool:
    """Faiss runs on the GPU when the work does and faiss-gpu is installed."""
    return device.type == "cuda" and faiss.get_num_gpus() > 0


def _restart_seeds(seed: int, n: int) -> list[int]:
    """Independent faiss seeds (faiss takes a non-negative C int) for each restart."""
    states = np.random.SeedSequence(seed).generate_state(n)
    return [int(s) % 2**31 for s in states]


def _faiss_kmeans(
    x: np.ndarray,
    n_experts: int,
    n_iter: int,
    seed: int,
    gpu: bool,
    points_per_expert: int | None = None,
) -> faiss.Kmeans:
    """Faiss k-means of the rows of x [N, d]; ``.centroids`` is [E, d] float32.

    Trains on all rows, or on a seeded random sample of ``points_per_expert * E`` of them.
    """
    kmeans = faiss.Kmeans(
        x.shape[1],
        n_experts,
        niter=n_iter,
        seed=seed,
        gpu=gpu,
        verbose=False,
        min_points_per_centroid=1,  # silences faiss's warning for few neurons per expert
        max_points_per_centroid=points_per_expert or x.shape[0],
    )
    n_train = min(x.shape[0], (points_per_expert or x.shape[0]) * n_experts)
    previous = faiss.omp_get_max_threads()
    if n_train * x.shape[1] * n_experts < _PARALLEL_WORK:
        faiss.omp_set_num_threads(1)
    try:
        kmeans.train(x)
    finally:
        faiss.omp_set_num_threads(previous)
    return kmeans


def _balanced_lloyd(
    x: torch.Tensor,
    centroids: torch.Tensor,
    capacities: torch.Tensor,
    sq_total: float,
    max_iter: int,
    tol: float,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Alternate balanced assignment and mean update from ``centroids``; keep the best.

    x [N, d], centroids [E, d], capacities [E]. Returns labels [N], centroids [E, d], inertia.

    On the CPU only the [N, d] x [d, E] product of a large layer uses all of torch's threads:
    the balancing steps are many small ops, for which thread hand-offs cost more than they
    save (ten times more on a busy machine).
    """
    cpu = x.device.type == "cpu"
    threads = torch.get_num_threads() if x.numel() * centroids.shape[0] >= _PARALLEL_WORK else 1
    best: tuple[torch.Tensor, torch.Tensor, float] | None = None
    previous = float("inf")
    for _ in range(max_iter):
        with _torch_threads(threads) if cpu else nullcontext():
            products = x @ centroids.T
        with _torch_threads(1) if cpu else nullcontext():
            # ||x - c||^2 minus the per-row constant ||x||^2, which no assignment can change.
            cost = (centroids * centroids).sum(dim=1)[None, :] - 2.0 * products
            labels = _greedy_assign(cost, capacities)
            for _ in range(_SWAP_ROUNDS):
                if _swap_round(cost, labels) == 0:
                    break
            centroids, inertia = _group_means(x, labels, centroids, sq_total)
        if best is None or inertia < best[2]:
            best = (labels, centroids, inertia)
        if inertia >= previous * (1.0 - tol):  # >=: with tol=0, stop once it stops improving
            break
        previous = inertia
    assert best is not None  # max_iter >= 1
    return best


def _greedy_assign(cost: torch.Tensor, capacities: torch.Tensor) -> torch.Tensor:
    """Fill experts to their exact capacities, most-regretful points first.

    cost [N, E], capacities [E] summing to N; returns labels [N]. In each round, every
    unassigned point proposes to its cheapest expert with room; each expert accepts the
    proposers with the largest regret (cost gap to their second-best open expert) up to its
    remaining room. Every round fills at least one expert or places every proposer.
    """
    n, n_experts = cost.shape
    labels = torch.zeros(n, dtype=torch.long, device=cost.device)
    if n_experts == 1:
        return labels
    remaining = capacities.clone()
    pending = torch.arange(n, device=cost.device)
    while pending.numel() > 0:
        open_cost = cost[pending].masked_fill_((remaining == 0)[None, :], float("inf"))
        top, index = open_cost.topk(2, dim=1, largest=False)
        best = index[:, 0]
        regret = top[:, 1] - top[:, 0]  # inf when one expert is left open: it takes all
        order = torch.argsort(regret, descending=True, stable=True)
        order = order[torch.argsort(best[order], stable=True)]
        target = best[order]
        proposals = torch.bincount(target, minlength=n_experts)
        first = torch.cumsum(proposals, dim=0) - proposals
        rank = torch.arange(order.numel(), device=cost.device) - first[target]
        accept = rank < remaining[target]
        labels[pending[order[accept]]] = target[accept]
        remaining -= torch.bincount(target[accept], minlength=n_experts)
        pending = pending[order[~accept]]
    return labels


def _swap_round(cost: torch.Tensor, labels: torch.Tensor) -> int:
    """One round of improving exchanges between expert pairs, in place; returns #swaps.

    Experts are paired greedily by their best single-swap gain; within each pair, points are
    exchanged in order of benefit while a swap still lowers the total cost. This is the
    optimal exchange between the two experts, and keeps every expert's size.
    """
    n_experts = cost.shape[1]
    gain = cost.gather(1, labels[:, None]) - cost  # [N, E] saving of moving a point to e
    best_gain = torch.full((n_experts, n_experts), -float("inf"), device=cost.device)
    best_gain.scatter_reduce_(0, labels[:, None].expand_as(gain), gain, "amax")
    partner = _match_experts(best_gain + best_gain.T)
    paired = torch.nonzero(partner[labels] >= 0)[:, 0]
    if paired.numel() == 0:
        return 0
    source = labels[paired]
    benefit = gain[paired, partner[source]]
    order = torch.argsort(benefit, descending=True, stable=True)
    order = order[torch.argsort(source[order], stable=True)]
    points, source, benefit = paired[order], source[order], benefit[order]
    counts = torch.bincount(source, minlength=n_experts)
    first = torch.cumsum(counts, dim=0) - counts
    rank = torch.arange(points.numel(), device=cost.device) - first[source]
    dest = partner[source]
    has_mate = rank < counts[dest]
    mate = torch.where(has_mate, first[dest] + rank, 0)
    swap = has_mate & (benefit + benefit[mate] > 0)
    labels[points[swap]] = dest[swap]
    return int(swap.sum()) // 2


def _match_experts(pair_gain: torch.Tensor) -> torch.Tensor:
    """Greedy matching of experts on positive symmetric gains [E, E]; partner [E] or -1.

    Repeatedly pairs experts that are each other's best remaining partner (the same pairs the
    sort-by-gain greedy matching picks, found in a few vectorised steps).
    """
    n_experts = pair_gain.shape[0]
    gain = pair_gain.clamp_min(0.0).fill_diagonal_(0.0)
    partner = torch.full((n_experts,), -1, dtype=torch.long, device=pair_gain.device)
    experts = torch.arange(n_experts, device=pair_gain.device)
    while True:
        value, choice = gain.max(dim=1)
        mutual = (value > 0) & (choice[choice] == experts)
        if not bool(mutual.any()):
            return partner
        chosen = experts[mutual]
        partner[chosen] = choice[chosen]
        gain[chosen, :] = 0.0
        gain[:, chosen] = 0.0


def _group_means(
    x: torch.Tensor, labels: torch.Tensor, fallback: torch.Tensor, sq_total: float
) -> tuple[torch.Tensor, float]:
    """Means [E, d] of the labelled groups (``fallback`` rows for empty groups) and inertia.

    Inertia is ``sum ||x||^2 - sum_e n_e ||mean_e||^2`` in float64, exact for group means.
    """
    n_experts = fallback.shape[0]
    sums = torch.zeros_like(fallback).index_add_(0, labels, x)
    sizes = torch.bincount(labels, minlength=n_experts)
    means = torch.where(sizes[:, None] > 0, sums / sizes.clamp_min(1)[:, None], fallback)
    explained = ((sums.double() ** 2).sum(dim=1) / sizes.clamp_min(1)).sum()
    return means, max(sq_total - float(explained), 0.0)


def _result(labels: torch.Tensor, centroids: torch.Tensor, inertia: float) -> BalancedKMeansResult:
    labels_np = labels.cpu().numpy().astype(np.int64)
    return BalancedKMeansResult(
        labels=labels_np,
        centroids=centroids.cpu().numpy().astype(np.float32),
        inertia=float(inertia),
        sizes=np.bincount(labels_np, minlength=centroids.shape[0]).astype(np.int64),
    )
