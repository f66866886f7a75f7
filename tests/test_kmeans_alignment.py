"""MoEfication: balanced k-means partitions, comparison partitions, and alignment statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score

from modularity.algorithms.alignment import ALIGNMENT_STATISTICS, alignment_statistics
from modularity.algorithms.kmeans import (
    balanced_kmeans,
    expert_capacities,
    plain_kmeans,
    random_partition,
)
from modularity.errors import ConfigError, ModularityError


def gaussian_rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def planted_rows(n_clusters: int, per_cluster: int, d: int, seed: int = 0):
    """Rows around ``n_clusters`` well-separated unit centres, equal sizes, shuffled."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    truth = rng.permutation(np.repeat(np.arange(n_clusters), per_cluster))
    x = centres[truth] + 0.02 * rng.standard_normal((truth.size, d))
    return x.astype(np.float32), truth


def normalised(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def group_inertia(x: np.ndarray, labels: np.ndarray) -> float:
    return sum(
        float(((x[labels == g] - x[labels == g].mean(axis=0)) ** 2).sum())
        for g in np.unique(labels)
    )


def assert_partition(result, d_mlp: int, n_experts: int) -> None:
    assert result.labels.shape == (d_mlp,)
    assert result.labels.dtype == np.int64
    assert result.labels.min() >= 0 and result.labels.max() < n_experts
    assert result.sizes.shape == (n_experts,)
    np.testing.assert_array_equal(result.sizes, np.bincount(result.labels, minlength=n_experts))
    assert result.centroids.shape[0] == n_experts


def assert_balanced(result, d_mlp: int, n_experts: int) -> None:
    assert_partition(result, d_mlp, n_experts)
    sizes = result.sizes
    assert sizes.sum() == d_mlp
    assert sizes.max() - sizes.min() <= 1
    # Which experts get the extra neuron is arbitrary; the multiset of sizes is not.
    np.testing.assert_array_equal(np.sort(sizes), np.sort(expert_capacities(d_mlp, n_experts)))


def test_expert_capacities_rule():
    sizes = expert_capacities(14336, 96)
    assert sizes.sum() == 14336
    assert set(sizes.tolist()) == {149, 150}
    assert (sizes == 150).sum() == 14336 % 96
    np.testing.assert_array_equal(expert_capacities(3072, 96), np.full(96, 32))


def test_exact_sizes_for_random_shapes():
    rng = np.random.default_rng(1234)
    shapes = [(1, 3, 1), (7, 2, 7), (50, 4, 1)]  # edge cases: E == d_mlp, E == 1
    while len(shapes) < 23:
        d_mlp = int(rng.integers(2, 300))
        shapes.append((d_mlp, int(rng.integers(2, 24)), int(rng.integers(1, d_mlp + 1))))
    for i, (d_mlp, d_model, n_experts) in enumerate(shapes):
        x = gaussian_rows(d_mlp, d_model, seed=i)
        result = balanced_kmeans(x, n_experts, n_restarts=1, n_iter=5, seed=i)
        assert_balanced(result, d_mlp, n_experts)
        assert result.centroids.shape == (n_experts, d_model)


def test_exact_sizes_non_divisible_mistral_style():
    # 14336 neurons into 96 experts does not divide; the same remainder pattern scaled down.
    d_mlp, n_experts = 1433, 96
    result = balanced_kmeans(gaussian_rows(d_mlp, 16), n_experts, n_restarts=1)
    assert_balanced(result, d_mlp, n_experts)
    assert set(result.sizes.tolist()) == {14, 15}
    assert (result.sizes == 15).sum() == d_mlp % n_experts


def test_recovers_planted_equal_clusters():
    x, truth = planted_rows(n_clusters=12, per_cluster=25, d=32)
    result = balanced_kmeans(x, 12, seed=0)
    assert adjusted_rand_score(truth, result.labels) == 1.0
    assert_balanced(result, x.shape[0], 12)


def test_reported_inertia_and_centroids_match_groups():
    x = gaussian_rows(200, 16)
    result = balanced_kmeans(x, 10)
    xn = normalised(x)
    assert result.inertia == pytest.approx(group_inertia(xn, result.labels), rel=1e-4)
    for e in range(10):
        np.testing.assert_allclose(
            result.centroids[e], xn[result.labels == e].mean(axis=0), atol=1e-5
        )


def test_balanced_beats_random_and_respects_sizes_where_plain_does_not():
    # Unequal planted clusters: plain k-means follows them, balanced must even the sizes out.
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((4, 16))
    truth = np.repeat(np.arange(4), [100, 50, 30, 20])
    x = (centres[truth] + 0.05 * rng.standard_normal((200, 16))).astype(np.float32)
    bal = balanced_kmeans(x, 4)
    rand = random_partition(x, 4)
    assert_balanced(bal, 200, 4)
    assert bal.inertia < 0.5 * rand.inertia


def test_deterministic_for_a_seed_and_seed_matters():
    x = gaussian_rows(300, 16)
    first = balanced_kmeans(x, 10, seed=7)
    again = balanced_kmeans(x, 10, seed=7)
    np.testing.assert_array_equal(first.labels, again.labels)
    assert first.inertia == again.inertia
    # Structureless data has many near-equal optima: some other seed lands elsewhere.
    others = [balanced_kmeans(x, 10, seed=s).labels for s in (8, 9, 10)]
    assert any(not np.array_equal(first.labels, other) for other in others)


def test_runs_on_cpu_and_accepts_tensors():
    x = gaussian_rows(120, 8)
    on_cpu = balanced_kmeans(x, 6, device="cpu")
    assert_balanced(on_cpu, 120, 6)
    from_tensor = balanced_kmeans(torch.from_numpy(x).to(torch.float64), 6, device="cpu")
    np.testing.assert_array_equal(on_cpu.labels, from_tensor.labels)


def test_cuda_without_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available")
    with pytest.raises(ModularityError, match="device=cuda"):
        balanced_kmeans(gaussian_rows(20, 4), 2, device="cuda")


def test_plain_kmeans_valid_partition():
    x, truth = planted_rows(n_clusters=5, per_cluster=20, d=16, seed=2)
    result = plain_kmeans(x, 5, seed=0)
    assert_partition(result, 100, 5)
    assert result.sizes.sum() == 100
    assert result.inertia == pytest.approx(group_inertia(normalised(x), result.labels), rel=1e-4)
    again = plain_kmeans(x, 5, seed=0)
    np.testing.assert_array_equal(result.labels, again.labels)


def test_random_partition_balanced_and_seeded():
    x = gaussian_rows(103, 8)
    result = random_partition(x, 10, seed=1)
    assert_balanced(result, 103, 10)
    assert result.inertia == pytest.approx(group_inertia(normalised(x), result.labels), rel=1e-4)
    np.testing.assert_array_equal(result.labels, random_partition(x, 10, seed=1).labels)
    assert not np.array_equal(result.labels, random_partition(x, 10, seed=2).labels)


def test_close_to_k_means_constrained():
    kmc = pytest.importorskip("k_means_constrained")
    x = normalised(gaussian_rows(400, 16)).astype(np.float32)
    ours = balanced_kmeans(x, 10, seed=0)
    theirs = kmc.KMeansConstrained(
        n_clusters=10, size_min=40, size_max=40, n_init=3, random_state=0
    ).fit_predict(x)
    assert ours.inertia <= 1.02 * group_inertia(x.astype(np.float64), theirs)


@pytest.mark.parametrize(
    "call",
    [
        lambda e: expert_capacities(10, e),
        lambda e: balanced_kmeans(gaussian_rows(10, 4), e),
        lambda e: plain_kmeans(gaussian_rows(10, 4), e),
        lambda e: random_partition(gaussian_rows(10, 4), e),
        lambda e: alignment_statistics(np.zeros(10, np.int64), np.arange(10) < 3, e),
    ],
    ids=["capacities", "balanced", "plain", "random", "alignment"],
)
@pytest.mark.parametrize("n_experts", [0, 11, -2])
def test_invalid_n_experts(call, n_experts):
    with pytest.raises(ConfigError, match=rf"n_experts.*got {n_experts}$"):
        call(n_experts)


def experts_of(n_experts: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(n_experts), size))


def test_alignment_planted_two_experts_is_strongly_concentrated():
    labels = experts_of(40, 40)
    selected = np.isin(labels, [3, 17])
    stats = alignment_statistics(labels, selected, 40, top_k=2, n_null=500)
    assert tuple(stats) == ALIGNMENT_STATISTICS
    for name, stat in stats.items():
        assert stat.z > 5, (name, stat)
        assert stat.p_value == pytest.approx(1 / 501), name
    assert stats["topk_fraction"].observed == 1.0
    assert stats["entropy"].observed == pytest.approx(np.log(2))
    assert stats["ami"].observed == pytest.approx(adjusted_mutual_info_score(labels, selected))


def test_alignment_random_sets_look_like_chance():
    labels = experts_of(40, 40)
    zs = {name: [] for name in ALIGNMENT_STATISTICS}
    ps = []
    for seed in range(12):
        rng = np.random.default_rng(100 + seed)
        selected = np.zeros(labels.size, dtype=bool)
        selected[rng.choice(labels.size, 80, replace=False)] = True
        stats = alignment_statistics(labels, selected, 40, n_null=400, seed=seed)
        assert stats["ami"].observed == pytest.approx(adjusted_mutual_info_score(labels, selected))
        for name, stat in stats.items():
            assert abs(stat.z) < 4, (seed, name, stat)
            zs[name].append(stat.z)
        ps.append(stats["entropy"].p_value)
    for name, values in zs.items():
        assert abs(np.mean(values)) < 1.5, (name, values)
    assert np.median(ps) > 0.1


def test_alignment_rejects_bad_inputs():
    labels = experts_of(4, 5)
    with pytest.raises(ConfigError, match="boolean"):
        alignment_statistics(labels, (np.arange(20) < 3).astype(float), 4)
    with pytest.raises(ConfigError, match="got 0"):
        alignment_statistics(labels, np.zeros(20, dtype=bool), 4)
    with pytest.raises(ConfigError, match="top_k"):
        alignment_statistics(labels, np.arange(20) < 3, 4, top_k=5)
    with pytest.raises(ConfigError, match="labels must be integers"):
        alignment_statistics(labels + 1, np.arange(20) < 3, 4)
