"""Streaming statistics against numpy on random activations."""

import numpy as np
import pytest
import torch

from modularity.neurons.stats import NeuronStatsAccumulator, stats_from_sums


def collect(batches, keeps=None):
    """Two streaming passes over ``batches`` of ``[B, T, N]`` activations for one layer."""
    keeps = keeps or [None] * len(batches)
    first = NeuronStatsAccumulator(1, batches[0].shape[-1])
    for x, keep in zip(batches, keeps):
        first.update(0, x, keep)
    moments = first.compute()
    second = NeuronStatsAccumulator(
        1, batches[0].shape[-1], center=moments["sum"] / moments["count"]
    )
    for x, keep in zip(batches, keeps):
        second.update(0, x, keep)
    return stats_from_sums(moments, second.compute())


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-12), (torch.float32, 2e-6)])
def test_statistics_match_numpy(dtype, rtol):
    gen = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(3, 70, 5, generator=gen, dtype=torch.float64) * 2 + 0.5).to(dtype)
        for _ in range(4)
    ]
    stats = collect(batches)
    x = torch.cat([b.reshape(-1, 5) for b in batches]).double().numpy()
    np.testing.assert_allclose(stats.mean[0], x.mean(0), rtol=rtol)
    np.testing.assert_allclose(stats.std[0], x.std(0), rtol=rtol)
    np.testing.assert_allclose(stats.abs_mean[0], np.abs(x).mean(0), rtol=rtol)
    np.testing.assert_allclose(stats.rms[0], np.sqrt((x**2).mean(0)), rtol=rtol)
    np.testing.assert_allclose(stats.freq[0], (x > 0).mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.mad[0], np.abs(x - x.mean(0)).mean(0), rtol=rtol)
    assert stats.count[0, 0] == x.shape[0]


def test_std_is_stable_when_the_mean_dwarfs_the_spread():
    gen = torch.Generator().manual_seed(2)
    x = 1000 + 0.01 * torch.randn(4, 500, 3, generator=gen)
    stats = collect(list(x))
    ref = x.reshape(-1, 3).double().numpy()
    np.testing.assert_allclose(stats.std[0], ref.std(0), rtol=1e-3)


def test_padding_positions_are_excluded():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 6, 4, generator=gen, dtype=torch.float64)
    keep = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    x_padded = x.clone()
    x_padded[~keep] = 1e6  # garbage at padding positions must not leak in
    stats = collect([x_padded], [keep])
    kept = x[keep].double().numpy()
    np.testing.assert_allclose(stats.mean[0], kept.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.mad[0], np.abs(kept - kept.mean(0)).mean(0), rtol=1e-10)
    assert stats.count[0, 0] == keep.sum()


def test_bf16_inputs_accumulate_in_float64():
    x = torch.full((1, 1000, 3), 0.1, dtype=torch.bfloat16)
    stats = collect([x])
    assert stats.mean.dtype == torch.float64
    assert stats.mean[0, 0].item() == pytest.approx(
        float(torch.tensor(0.1, dtype=torch.bfloat16)), rel=1e-12
    )
    assert stats.std[0, 0].item() == pytest.approx(0.0, abs=1e-9)


def test_memory_does_not_grow_with_tokens():
    acc = NeuronStatsAccumulator(2, 8)
    sizes = {name: t.numel() for name, t in acc.compute().items()}
    for _ in range(50):
        acc.update(1, torch.randn(16, 32, 8))
    assert {name: t.numel() for name, t in acc.compute().items()} == sizes
