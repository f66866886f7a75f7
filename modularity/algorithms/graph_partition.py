"""Split a weighted graph of neurons into experts of exactly equal size: METIS, then balance.

METIS (through ``pymetis``) cuts the co-activation graph into ``E`` parts with little weight
between parts, but allows a few percent of imbalance. Balancing then makes every part hold
exactly ``N // E`` or ``N // E + 1`` neurons (the sizes rule of balanced k-means): each
over-full part gives up the members least tied to it, and those join, strongest tie first,
the under-full part they are most tied to. MoEfication moved random members instead; moving
the weakest keeps more of the co-activation inside experts.
"""

from __future__ import annotations

import numpy as np

from modularity.algorithms.kmeans import check_n_experts, expert_capacities
from modularity.errors import ConfigError
from modularity.infra.optional import require

pymetis = require("pymetis")


def metis_partition(weights: np.ndarray, n_experts: int, *, seed: int = 0) -> np.ndarray:
    """Expert labels ``[N]`` int64 of a graph given by its symmetric ``[N, N]`` matrix of
    non-negative integer edge weights (the diagonal is ignored); sizes exactly balanced."""
    w = _check_weights(weights)
    n = w.shape[0]
    check_n_experts(n_experts, n)
    if n_experts == 1:
        return np.zeros(n, dtype=np.int64)
    np.fill_diagonal(w, 0)
    rows, cols = np.nonzero(w)
    if rows.size == 0:  # no edges: METIS has nothing to cut, any balanced split is as good
        parts = np.arange(n) % n_experts
    else:
        starts = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])
        _, parts = pymetis.part_graph(
            n_experts,
            adjacency=pymetis.CSRAdjacency(adj_starts=starts, adjacent=cols),
            eweights=w[rows, cols],
            options=pymetis.Options(seed=int(seed) % 2**31),
        )
    return balance_partition(np.asarray(parts, dtype=np.int64), w, n_experts)


def balance_partition(labels: np.ndarray, weights: np.ndarray, n_experts: int) -> np.ndarray:
    """``labels`` ``[N]`` changed as little as the sizes rule needs: over-full parts release
    their least-tied members (tie: summed edge weight to the part), which join under-full
    parts by strongest tie first. Returns new int64 labels with exactly balanced sizes."""
    labels = np.asarray(labels, dtype=np.int64).copy()
    n = labels.shape[0]
    capacities = expert_capacities(n, n_experts)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n, n) or labels.min() < 0 or labels.max() >= n_experts:
        raise ConfigError(
            f"labels [{n}] in [0, {n_experts}) and weights [{n}, {n}] expected; got labels in "
            f"[{labels.min()}, {labels.max()}] and weights {w.shape}"
        )
    sizes = np.bincount(labels, minlength=n_experts)
    # Parts with more members than capacity (largest first, so the +1 capacities go to them).
    order = np.argsort(-sizes, kind="stable")
    capacities = capacities[np.argsort(order, kind="stable")]
    tie = w @ np.eye(n_experts)[labels]  # [N, E] summed weight of each neuron to each part
    released = []
    for part in np.flatnonzero(sizes > capacities):
        members = np.flatnonzero(labels == part)
        weakest = members[np.argsort(tie[members, part], kind="stable")]
        released.extend(weakest[: sizes[part] - capacities[part]].tolist())
    if not released:
        return labels
    pool = np.array(released)
    labels[pool] = -1
    tie = w @ np.eye(n_experts + 1)[labels][:, :n_experts]  # ties to the kept members only
    room = capacities - np.bincount(labels[labels >= 0], minlength=n_experts)
    pool_tie = tie[pool]
    for i in np.argsort(-pool_tie.max(axis=1), kind="stable"):
        options = np.where(room > 0, pool_tie[i], -np.inf)
        part = int(np.argmax(options))
        labels[pool[i]] = part
        room[part] -= 1
        pool_tie[:, part] += w[pool, pool[i]]
    return labels


def within_share(weights: np.ndarray, labels: np.ndarray) -> float:
    """Share of the graph's off-diagonal weight that lies inside parts (1: nothing is cut)."""
    w = np.asarray(weights, dtype=np.float64)
    same = labels[:, None] == labels[None, :]
    off = ~np.eye(len(labels), dtype=bool)
    total = w[off].sum()
    return float(w[same & off].sum() / total) if total > 0 else float("nan")


def _check_weights(weights: np.ndarray) -> np.ndarray:
    w = np.asarray(weights)
    if w.ndim != 2 or w.shape[0] != w.shape[1] or w.shape[0] == 0:
        raise ConfigError(f"graph weights must be a square [N, N] matrix; got {w.shape}")
    if not np.issubdtype(w.dtype, np.integer):
        raise ConfigError(f"graph weights must be integers (counts); got dtype {w.dtype}")
    if (w < 0).any() or not np.array_equal(w, w.T):
        raise ConfigError("graph weights must be non-negative and symmetric")
    return w.astype(np.int64, copy=True)
