"""Co-activation counts against a direct numpy count, and the METIS partition's sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modularity.algorithms.coactivation import CoactivationCounts, active_units
from modularity.algorithms.graph_partition import balance_partition, metis_partition, within_share
from modularity.errors import ConfigError


def direct_counts(x: np.ndarray, active) -> np.ndarray:  # noqa: ANN001
    """For every pair (i, j), the tokens on which both are active, one token at a time."""
    n = x.shape[1]
    counts = np.zeros((n, n), dtype=np.int64)
    for row in x:
        on = np.flatnonzero(active(row))
        counts[np.ix_(on, on)] += 1
    return counts


def test_positive_coactivation_counts_equal_a_direct_count_over_batches():
    rng = np.random.default_rng(0)
    batches = [rng.normal(size=(3, 7, 20)).astype(np.float32) for _ in range(4)]
    counter = CoactivationCounts(n_layers=2, n_neurons=20)
    for batch in batches:
        counter.update(1, torch.from_numpy(batch))
    expected = direct_counts(np.concatenate([b.reshape(-1, 20) for b in batches]), lambda r: r > 0)
    np.testing.assert_array_equal(counter.counts[1].numpy(), expected)
    assert counter.counts[0].sum() == 0


def test_top_share_coactivation_counts_the_largest_activations_of_each_token():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 16)).astype(np.float32)
    counter = CoactivationCounts(n_layers=1, n_neurons=16, rule="top", share=0.25)
    counter.update(0, torch.from_numpy(x))
    expected = direct_counts(x, lambda r: r >= np.sort(r)[-4])  # the 4 largest of 16
    np.testing.assert_array_equal(counter.counts[0].numpy(), expected)
    assert active_units(torch.from_numpy(x), "top", 0.25).sum(1).eq(4).all()


def test_unknown_rule_names_the_valid_ones():
    with pytest.raises(ConfigError, match="positive, top"):
        CoactivationCounts(1, 4, rule="sign")


def block_graph(n_blocks: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Counts of a graph of dense blocks (heavy weights inside, light noise between),
    its neurons shuffled; returns the weights and each neuron's true block."""
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(n_blocks), size)
    perm = rng.permutation(truth.size)
    truth = truth[perm]
    same = truth[:, None] == truth[None, :]
    w = np.where(
        same, rng.integers(50, 100, (truth.size,) * 2), rng.integers(0, 5, (truth.size,) * 2)
    )
    w = np.triu(w, 1)
    return w + w.T, truth


@pytest.mark.parametrize("n, n_experts", [(96, 8), (100, 7), (64, 64), (64, 1)])
def test_metis_partition_is_exactly_balanced(n, n_experts):
    rng = np.random.default_rng(n)
    w = rng.integers(0, 20, (n, n))
    w = np.triu(w, 1) + np.triu(w, 1).T
    labels = metis_partition(w, n_experts, seed=3)
    sizes = np.bincount(labels, minlength=n_experts)
    assert sizes.sum() == n and sizes.max() - sizes.min() <= (0 if n % n_experts == 0 else 1)
    assert sorted(sizes.tolist()) == sorted(
        [n // n_experts + (i < n % n_experts) for i in range(n_experts)]
    )
    np.testing.assert_array_equal(labels, metis_partition(w, n_experts, seed=3))  # seeded


def test_metis_recovers_planted_blocks_and_keeps_more_weight_inside_than_chance():
    w, truth = block_graph(6, 16)
    labels = metis_partition(w, 6)
    pairs = labels[:, None] == labels[None, :]
    assert np.array_equal(pairs, truth[:, None] == truth[None, :])
    shuffled = np.random.default_rng(0).permutation(labels)
    assert within_share(w, labels) > 0.8 > 0.3 > within_share(w, shuffled)


def test_balancing_moves_the_least_tied_members_to_where_they_are_most_tied():
    # Part 0 holds 4 neurons, part 1 holds 2: neuron 3 is tied to part 1 and must move.
    w = np.zeros((6, 6), dtype=np.int64)
    for i, j, v in [(0, 1, 9), (1, 2, 9), (0, 2, 9), (3, 4, 5), (3, 0, 1), (4, 5, 9)]:
        w[i, j] = w[j, i] = v
    labels = balance_partition(np.array([0, 0, 0, 0, 1, 1]), w, 2)
    assert labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_bad_graphs_are_named():
    with pytest.raises(ConfigError, match="symmetric"):
        metis_partition(np.array([[0, 1], [2, 0]]), 2)
    with pytest.raises(ConfigError, match="integers"):
        metis_partition(np.zeros((2, 2)), 2)
