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

:func:`alignment_statistics` asks whether a selected set of neurons (e.g. those pruning finds
task-specific) concentrates in few experts, against random sets of the same size.
:func:`plain_kmeans` and :func:`random_partition` give comparison partitions of the same type.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

# Before ``import faiss``: its loader logs which SIMD build it picked at INFO, which is not news.
logging.getLogger("faiss.loader").setLevel(logging.WARNING)

import faiss  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.special import entr, xlogy  # noqa: E402
from scipy.stats import hypergeom  # noqa: E402

from modularity.errors import ConfigError, ModularityError  # noqa: E402

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

# Names of the statistics returned by alignment_statistics, in a stable order.
ALIGNMENT_STATISTICS = ("topk_fraction", "entropy", "ami")


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


@dataclass(frozen=True)
class AlignmentStat:
    """One statistic of a selected neuron set against random sets of the same size.

    ``z`` and ``p_value`` are oriented so that a set MORE concentrated in few experts than
    chance gives ``z > 0`` and a small ``p_value``, for every statistic. ``z`` is nan when
    the null has no spread.
    """

    observed: float
    null_mean: float
    null_std: float
    z: float
    p_value: float


def expert_capacities(d_mlp: int, n_experts: int) -> np.ndarray:
    """Expert sizes [E] int64: ``d_mlp // E`` each, the first ``d_mlp % E`` one larger."""
    _check_n_experts(n_experts, d_mlp)
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
    use_gpu: bool | None = None,
    max_balance_iter: int = 50,
    tol: float = 1e-3,
) -> BalancedKMeansResult:
    """Cluster the rows of ``weights`` [d_mlp, d_model] into ``n_experts`` equal-size experts.

    Faiss k-means (``n_iter`` iterations on up to 16 sampled neurons per expert, on the GPU
    when faiss has one and ``use_gpu`` is not False) seeds each of ``n_restarts`` runs;
    balanced Lloyd iterations on all neurons then run until the inertia improves by less than
    ``tol`` (relative) or ``max_balance_iter`` is reached. The run with the lowest inertia
    wins. Deterministic for a given ``seed`` on a given machine.
    """
    x = _prepare_rows(weights, normalize)
    d_mlp = x.shape[0]
    capacities = expert_capacities(d_mlp, n_experts)
    _check_positive("n_iter", n_iter)
    _check_positive("n_restarts", n_restarts)
    _check_positive("max_balance_iter", max_balance_iter)
    if tol < 0:
        raise ConfigError(f"tol must be >= 0; got {tol!r}")
    gpu = _resolve_gpu(use_gpu)
    device = torch.device("cuda" if gpu and torch.cuda.is_available() else "cpu")
    xt = torch.from_numpy(x).to(device)
    caps = torch.from_numpy(capacities).to(device)
    sq_total = _squared_total(x)
    best: tuple[torch.Tensor, torch.Tensor, float] | None = None
    for restart_seed in _restart_seeds(seed, n_restarts):
        kmeans = _faiss_kmeans(x, n_experts, n_iter, restart_seed, gpu, _SEED_POINTS_PER_EXPERT)
        start = torch.from_numpy(kmeans.centroids)
        run = _balanced_lloyd(xt, start.to(device), caps, sq_total, max_balance_iter, tol)
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
    use_gpu: bool | None = None,
) -> BalancedKMeansResult:
    """Unbalanced faiss k-means of the rows of ``weights`` [d_mlp, d_model], for comparison.

    Each neuron goes to its nearest faiss centroid; centroids and inertia are then those of
    the resulting groups, as for the balanced result (an empty expert keeps its centroid).
    """
    x = _prepare_rows(weights, normalize)
    _check_n_experts(n_experts, x.shape[0])
    _check_positive("n_iter", n_iter)
    gpu = _resolve_gpu(use_gpu)
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


def alignment_statistics(
    labels: np.ndarray,
    selected: np.ndarray,
    n_experts: int,
    *,
    top_k: int = 1,
    n_null: int = 1000,
    seed: int = 0,
) -> dict[str, AlignmentStat]:
    """Is the ``selected`` [d_mlp] bool neuron set concentrated in few of the experts?

    ``labels`` [d_mlp] gives each neuron's expert. Returns, keyed by
    :data:`ALIGNMENT_STATISTICS`:

    - ``topk_fraction``: fraction of selected neurons in the ``top_k`` experts holding most;
    - ``entropy``: entropy (nats) of the selected neurons' distribution over experts;
    - ``ami``: adjusted mutual information between expert labels and selected/unselected
      (as ``sklearn.metrics.adjusted_mutual_info_score``).

    The null is ``n_null`` sets of the same size drawn uniformly from the layer's neurons
    (exact multivariate hypergeometric expert counts). ``z`` is ``(observed - null_mean) /
    null_std`` for topk_fraction and ami, and ``(null_mean - observed) / null_std`` for entropy,
    so concentration is positive; ``p_value`` is ``(1 + #null at least as concentrated) /
    (1 + n_null)``.
    """
    labels = np.asarray(labels)
    selected = np.asarray(selected)
    if labels.ndim != 1 or selected.shape != labels.shape:
        raise ConfigError(
            f"labels and selected must be 1-D of the same length; got shapes {labels.shape} "
            f"and {selected.shape}"
        )
    if selected.dtype != np.bool_:
        raise ConfigError(f"selected must be a boolean mask; got dtype {selected.dtype}")
    d_mlp = labels.shape[0]
    _check_n_experts(n_experts, d_mlp)
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= n_experts:
        raise ConfigError(
            f"labels must be integers in [0, {n_experts}); got dtype {labels.dtype}, "
            f"range [{labels.min()}, {labels.max()}]"
        )
    if not 1 <= top_k <= n_experts:
        raise ConfigError(f"top_k must be between 1 and n_experts={n_experts}; got {top_k}")
    _check_positive("n_null", n_null)
    n_selected = int(selected.sum())
    if not 0 < n_selected < d_mlp:
        raise ConfigError(
            f"selected must mark between 1 and {d_mlp - 1} of the {d_mlp} neurons; got {n_selected}"
        )

    sizes = np.bincount(labels, minlength=n_experts)
    observed = np.bincount(labels[selected], minlength=n_experts)
    rng = np.random.default_rng(seed)
    null = rng.multivariate_hypergeometric(sizes, n_selected, size=n_null, method="count")
    counts = np.vstack([observed, null])
    fractions = counts / n_selected
    values = {
        "topk_fraction": np.sort(fractions, axis=1)[:, n_experts - top_k :].sum(axis=1),
        "entropy": entr(fractions).sum(axis=1),
        "ami": _ami_from_counts(counts, sizes, n_selected),
    }
    signs = {"topk_fraction": 1.0, "entropy": -1.0, "ami": 1.0}
    return {name: _against_null(values[name], signs[name]) for name in ALIGNMENT_STATISTICS}


def _check_n_experts(n_experts: int, d_mlp: int) -> None:
    if not 1 <= n_experts <= d_mlp:
        raise ConfigError(f"n_experts must be between 1 and d_mlp={d_mlp}; got {n_experts!r}")


def _check_positive(name: str, value: int) -> None:
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


def _resolve_gpu(use_gpu: bool | None) -> bool:
    """Whether faiss runs on GPU: auto-detected for None; True insists on one."""
    available = faiss.get_num_gpus() > 0
    if use_gpu and not available:
        raise ModularityError(
            "use_gpu=True but faiss sees no GPU; install faiss-gpu or pass use_gpu=None"
        )
    return available if use_gpu is None else use_gpu


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


def _ami_from_counts(counts: np.ndarray, sizes: np.ndarray, n_selected: int) -> np.ndarray:
    """AMI [R] of expert labels vs selected, for each row of selected-per-expert counts [R, E].

    Same definition as sklearn (arithmetic normalisation). Every row shares the marginals, so
    the entropies and the expected mutual information are computed once.
    """
    nonempty = sizes > 0
    if nonempty.sum() == 1:
        return np.zeros(counts.shape[0])
    a = sizes[nonempty].astype(np.float64)
    n = a.sum()
    b = np.array([n_selected, n - n_selected], dtype=np.float64)
    inside = counts[:, nonempty].astype(np.float64)
    table = np.stack([inside, a - inside], axis=2)  # [R, E, 2] contingency tables
    mi = xlogy(table, n * table / (a[:, None] * b[None, :])).sum(axis=(1, 2)) / n
    mi = np.clip(mi, 0.0, None)
    h_experts = entr(a / n).sum()
    h_selected = entr(b / n).sum()
    emi = _expected_mutual_information(a, b, n)
    denominator = (h_experts + h_selected) / 2.0 - emi
    eps = np.finfo(np.float64).eps
    denominator = min(denominator, -eps) if denominator < 0 else max(denominator, eps)
    return (mi - emi) / denominator


def _expected_mutual_information(a: np.ndarray, b: np.ndarray, n: float) -> float:
    """E[MI] between labelings with marginals a [E] and b [2] under random permutation."""
    values, multiplicity = np.unique(a, return_counts=True)
    k = np.arange(1, int(values.max()) + 1, dtype=np.float64)[None, None, :]
    row = values[:, None, None]
    col = b[None, :, None]
    pmf = hypergeom.pmf(k, int(n), row, col)  # P(cell = k), zero outside the support
    terms = (k / n) * np.log(n * k / (row * col)) * pmf
    return float((terms.sum(axis=(1, 2)) * multiplicity).sum())


def _against_null(values: np.ndarray, sign: float) -> AlignmentStat:
    """values[0] observed, values[1:] null draws; sign +1 when larger is more concentrated."""
    observed, null = float(values[0]), values[1:]
    mean = float(null.mean())
    std = float(null.std(ddof=1)) if null.size > 1 else 0.0
    z = sign * (observed - mean) / std if std > 0 else float("nan")
    # Count ties as at least as extreme, with slack for rounding in sums of the same counts.
    slack = 1e-9 * max(1.0, abs(observed))
    as_extreme = int(np.sum(sign * (null - observed) >= -slack))
    return AlignmentStat(
        observed=observed,
        null_mean=mean,
        null_std=std,
        z=z,
        p_value=(1 + as_extreme) / (1 + null.size),
    )
