"""Streaming statistics (pilot, one pass with the MAD bound, exact second pass) against numpy."""

import numpy as np
import pytest
import torch

from modularity.neurons import memory
from modularity.neurons.streaming import BatchItems, ExactMadSums, OnePassSums, PilotSums
from modularity.neurons.summary import (
    exact_means,
    one_pass_statistics,
    pilot_bins,
    with_exact_mad,
)

TOLERANCE = 1e-4


def activations(kind: str, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Random activations ``[items, positions, neurons]`` (float64) of a named distribution."""
    gen = torch.Generator().manual_seed(seed)
    if kind == "normal":
        return torch.randn(shape, generator=gen, dtype=torch.float64) * 2 + 0.5
    if kind == "student_t2":  # heavy tails, infinite variance: z / sqrt(chi2_2 / 2)
        z, a, b = torch.randn((3, *shape), generator=gen, dtype=torch.float64)
        return z / ((a.square() + b.square()) / 2).sqrt()
    if kind == "gated_silu":  # a spike near 0 with rare large values of either sign
        gate = torch.randn(shape, generator=gen, dtype=torch.float64) * 1.5 - 2
        up = torch.randn(shape, generator=gen, dtype=torch.float64)
        return torch.nn.functional.silu(gate) * up
    raise ValueError(kind)


def batches_of(x: torch.Tensor, size: int, half: torch.Tensor | None = None, keep=None):
    """``x`` ``[items, positions, neurons]`` as batches of ``size`` items (layer-0 calls)."""
    out = []
    for start in range(0, x.shape[0], size):
        batch = {"input_ids": torch.zeros(x[start : start + size].shape[:2], dtype=torch.long)}
        if half is not None:
            batch["half"] = half[start : start + size]
        if keep is not None:
            batch["attention_mask"] = keep[start : start + size]
        out.append((x[start : start + size], BatchItems.of(batch)))
    return out


def stream(sums, batches):
    for x, items in batches:
        sums.add_items(items, x.shape[1])
        sums.update(0, x, items)
    return sums.compute()


def collect(batches, pilot_batches=None, bins=None):
    """One-pass and exact statistics of one layer, as ``collect_statistics`` makes them."""
    n_neurons = batches[0][0].shape[-1]
    if bins is None:
        bins = pilot_bins(stream(PilotSums(1, n_neurons), pilot_batches or batches))
    one_pass = one_pass_statistics(stream(OnePassSums(1, n_neurons, bins), batches), bins)
    exact = with_exact_mad(one_pass, stream(ExactMadSums(*exact_means(one_pass)), batches))
    return one_pass, exact


def numpy_stats(x: np.ndarray) -> dict[str, np.ndarray]:
    mean = x.mean(0)
    return {
        "count": np.full(x.shape[1], x.shape[0]),
        "mean": mean,
        "std": x.std(0),
        "abs_mean": np.abs(x).mean(0),
        "rms": np.sqrt((x**2).mean(0)),
        "freq": (x > 0).mean(0),
        "mad": np.abs(x - mean).mean(0),
    }


def assert_matches(stats, x: np.ndarray, rtol: float) -> None:
    """Every statistic against numpy; the one-pass MAD within its stated bound."""
    want = numpy_stats(x)
    for name in ("count", "mean", "std", "abs_mean", "rms", "freq"):
        got = getattr(stats, name)[0].numpy()
        np.testing.assert_allclose(got, want[name], rtol=rtol, atol=rtol * np.abs(want[name]).max())
    slack = rtol * want["mad"]
    assert (np.abs(stats.mad[0].numpy() - want["mad"]) <= stats.mad_error[0].numpy() + slack).all()


@pytest.mark.parametrize("kind", ["normal", "student_t2", "gated_silu"])
@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-11), (torch.float32, 3e-6)])
def test_statistics_match_numpy(kind, dtype, rtol):
    x = activations(kind, (40, 50, 6), seed=3)
    one_pass, exact = collect(batches_of(x.to(dtype), 7))
    flat = x.to(dtype).double().reshape(-1, 6).numpy()
    for stats in (one_pass.full, exact.full):
        assert_matches(stats, flat, rtol)
    # The exact pass is exact; the one-pass bound is within the tolerance on these sizes.
    assert (exact.full.mad_error == 0).all()
    assert one_pass.max_relative_mad_error <= TOLERANCE
    assert exact.method == "two-pass" and one_pass.method == "one-pass"


def test_items_larger_than_the_work_budget_are_summed_a_chunk_of_positions_at_a_time(
    monkeypatch,
):
    x = activations("gated_silu", (6, 50, 4), seed=6).float()
    monkeypatch.setattr(memory, "WORK_BYTES", 7 * 4 * memory.STREAM_WORK_BYTES)  # 7 positions
    one_pass, exact = collect(batches_of(x, 3))
    flat = x.double().reshape(-1, 4).numpy()
    for stats in (one_pass.full, exact.full):
        assert_matches(stats, flat, 3e-6)


def test_one_pass_bound_is_what_it_says_when_the_pilot_misses():
    """Bins placed from a pilot far from the data: the bound grows but still holds."""
    x = activations("gated_silu", (20, 40, 5), seed=4)
    shifted = activations("gated_silu", (4, 40, 5), seed=5) + 3
    one_pass, _ = collect(batches_of(x, 6), pilot_batches=batches_of(shifted, 2))
    assert one_pass.max_relative_mad_error > TOLERANCE
    assert_matches(one_pass.full, x.reshape(-1, 5).numpy(), 1e-11)


def test_std_is_stable_when_the_mean_dwarfs_the_spread():
    gen = torch.Generator().manual_seed(2)
    x = 1000 + 0.01 * torch.randn(8, 250, 3, generator=gen)
    one_pass, exact = collect(batches_of(x, 3))
    ref = x.reshape(-1, 3).double().numpy()
    for stats in (one_pass.full, exact.full):
        np.testing.assert_allclose(stats.std[0], ref.std(0), rtol=1e-3)
        np.testing.assert_allclose(stats.mad[0], np.abs(ref - ref.mean(0)).mean(0), rtol=1e-3)


def test_padding_positions_are_excluded():
    x = activations("normal", (4, 6, 4), seed=1)
    keep = torch.ones(4, 6, dtype=torch.bool)
    keep[0, 4:] = False
    keep[2, 1:] = False
    padded = x.clone()
    padded[~keep] = 1e6  # garbage at padding positions must not leak in
    one_pass, exact = collect(batches_of(padded, 3, keep=keep))
    kept = x[keep].numpy()
    for stats in (one_pass.full, exact.full):
        assert_matches(stats, kept, 1e-11)
    assert one_pass.n_tokens == (int(keep.sum()), 0)


def test_bf16_inputs_accumulate_in_float64():
    x = torch.full((2, 500, 3), 0.1, dtype=torch.bfloat16)
    one_pass, exact = collect(batches_of(x, 1))
    value = float(torch.tensor(0.1, dtype=torch.bfloat16))
    for stats in (one_pass.full, exact.full):
        assert stats.mean.dtype == torch.float64
        assert stats.mean[0, 0].item() == pytest.approx(value, rel=1e-12)
        assert stats.std[0, 0].item() == pytest.approx(0.0, abs=1e-9)
        assert stats.mad[0, 0].item() == pytest.approx(0.0, abs=1e-9)


def test_halves_sum_to_the_whole_and_equal_their_own_data():
    x = activations("student_t2", (30, 20, 4), seed=6)
    half = (torch.arange(30) % 3 == 0).long()  # halves mix inside batches
    one_pass, exact = collect(batches_of(x, 4, half=half))
    for h in (0, 1):
        alone = x[half == h]
        own_one, own_exact = collect(
            batches_of(alone, 5), bins=pilot_bins(stream(PilotSums(1, 4), batches_of(x, 4)))
        )
        for mixed, own in ((one_pass, own_one), (exact, own_exact)):
            for name in ("count", "mean", "std", "abs_mean", "rms", "freq"):
                torch.testing.assert_close(
                    getattr(mixed.halves[h], name), getattr(own.full, name), rtol=1e-12, atol=0
                )
        assert_matches(exact.halves[h], alone.reshape(-1, 4).numpy(), 1e-11)
        assert_matches(one_pass.halves[h], alone.reshape(-1, 4).numpy(), 1e-11)
    for stats in (one_pass, exact):
        torch.testing.assert_close(stats.halves[0].count + stats.halves[1].count, stats.full.count)
    assert one_pass.n_items == (int((half == 0).sum()), int((half == 1).sum()))
    assert one_pass.n_tokens == (20 * one_pass.n_items[0], 20 * one_pass.n_items[1])


def test_statistics_do_not_depend_on_batching():
    x = activations("gated_silu", (24, 30, 5), seed=7).float()
    half = (torch.arange(24) % 2).long()
    runs = [collect(batches_of(x, size, half=half)) for size in (1, 5, 24)]
    for one_pass, exact in runs[1:]:
        for got, want in ((one_pass, runs[0][0]), (exact, runs[0][1])):
            for mine, theirs in zip((got.full, *got.halves), (want.full, *want.halves)):
                for name in ("count", "mean", "std", "abs_mean", "rms", "freq", "mad", "mad_error"):
                    torch.testing.assert_close(
                        getattr(mine, name), getattr(theirs, name), rtol=1e-12, atol=1e-15
                    )


def test_memory_does_not_grow_with_tokens():
    x = activations("normal", (4, 8, 16), seed=8)
    bins = pilot_bins(stream(PilotSums(2, 16), batches_of(x, 2)))
    sums = OnePassSums(2, 16, bins)

    def sizes():
        return {name: t.numel() for name, t in [*sums.metric_state.items(), ("hist", sums.hist)]}

    before = sizes()
    for seed in range(20):
        for xs, items in batches_of(activations("normal", (4, 8, 16), seed=seed), 4):
            sums.add_items(items, xs.shape[1])
            sums.update(1, xs, items)
    assert sizes() == before


def test_constant_neurons_have_zero_mad_within_the_bound():
    x = activations("normal", (6, 10, 4), seed=9)
    x[..., 1] = 2.5
    x[..., 2] = 0
    for layer in (x, x[..., 1:3]):  # with varying neurons beside them, and alone
        one_pass, exact = collect(batches_of(layer, 2))
        constant = slice(1, 3) if layer.shape[-1] == 4 else slice(0, 2)
        assert (exact.full.mad[0, constant] < 1e-20).all()  # float rounding of the mean only
        assert (one_pass.full.mad[0, constant] <= one_pass.full.mad_error[0, constant]).all()
        assert one_pass.max_relative_mad_error <= TOLERANCE
