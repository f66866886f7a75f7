"""The one-pass MAD bracket against a brute-force E|x - m|, and the packed histogram codes."""

import numpy as np
import pytest
import torch

from modularity.neurons.mad_bound import (
    POSITION_BITS,
    NeuronBins,
    bin_codes,
    decode_histogram,
    mad_bracket,
)


def bracket_of(x: torch.Tensor, m: torch.Tensor, bins: NeuronBins):
    """Histogram ``x`` (``[tokens, neurons]``, one layer) and bracket ``E|x - m|``."""
    n_neurons = x.shape[1]
    y = x - bins.origin[0].to(x.dtype)
    shape = (n_neurons, x.shape[0])
    codes, index = torch.empty(shape, dtype=torch.int64), torch.empty(shape, dtype=torch.int64)
    bin_codes(
        y, bins.scale[0].to(x.dtype), bins.bins, torch.empty(shape, dtype=x.dtype), codes, index
    )
    hist = torch.zeros(n_neurons, bins.bins + 2, dtype=torch.int64).scatter_add_(1, index, codes)
    above = torch.maximum(y, bins.edge(0, x.dtype)).sum(0, dtype=torch.float64)
    sum_y = y.sum(0, dtype=torch.float64)
    return mad_bracket(hist[None, :, None], x.shape[0], sum_y[None], above[None], m[None], bins)


@pytest.mark.parametrize("seed", range(4))
def test_bracket_holds_the_true_value_wherever_the_centre_falls(seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.cat(
        [
            torch.randn(3000, 4, generator=gen, dtype=torch.float64),
            torch.randn(40, 4, generator=gen, dtype=torch.float64) * 30,  # a heavy tail
            torch.zeros(300, 4, dtype=torch.float64),  # a spike
        ]
    )
    bins = NeuronBins.around(
        torch.zeros(1, 4, dtype=torch.float64),
        torch.tensor([[0.05, 0.5, 2.0, 8.0]], dtype=torch.float64),
        bins=64,
    )
    # Centres inside the fine range, on a bin edge, at a member, and outside on both sides.
    for centre in (0.013, 0.0, float(x[5, 0]), 0.4, -3.0, 25.0):
        m = torch.full((4,), centre, dtype=torch.float64)
        mid, err = bracket_of(x, m, bins)
        truth = (x - m).abs().mean(0)
        assert ((truth - mid[0]).abs() <= err[0] * (1 + 1e-9)).all(), centre


def test_bound_is_small_when_the_bins_are_fine():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(20000, 3, generator=gen, dtype=torch.float64)
    m = x.mean(0)
    bins = NeuronBins.around(
        torch.zeros(1, 3, dtype=torch.float64), torch.full((1, 3), 0.1, dtype=torch.float64)
    )
    mid, err = bracket_of(x, m, bins)
    truth = (x - m).abs().mean(0)
    # At most (share of tokens in one bin) x width / 4, plus the quantisation of positions.
    width = bins.width[0]
    share = 0.4 * width * 2  # the normal density is below 0.4; two bins' worth of slack
    assert (err[0] <= share * width / 4 + 2 * width * 2.0**-POSITION_BITS).all()
    assert ((truth - mid[0]).abs() <= err[0]).all()


def test_codes_pack_counts_and_positions_exactly():
    bins = NeuronBins(
        origin=torch.zeros(1, 1), scale=torch.full((1, 1), 2.0**POSITION_BITS), bins=4
    )
    y = torch.tensor([[-3.0], [0.25], [1.5], [1.75], [4.5], [99.0]])  # width 1
    codes = torch.empty(1, 6, dtype=torch.int64)
    index = torch.empty(1, 6, dtype=torch.int64)
    bin_codes(y, bins.scale[0], 4, torch.empty(1, 6), codes, index)
    hist = torch.zeros(1, 6, dtype=torch.int64).scatter_add_(1, index, codes)
    counts, positions = decode_histogram(hist)
    np.testing.assert_array_equal(counts[0], [2, 2, 0, 0, 1, 1])
    # In units of 2^-12 of a bin from the bin's left edge; below and above, clamped.
    unit = 2**POSITION_BITS
    want = [0.25 * unit, 1.25 * unit, 0, 0, 0.5 * unit, unit - 1]
    np.testing.assert_array_equal(positions[0], want)


def test_bins_do_not_move_with_float64_rounding_of_the_pilot():
    gen = torch.Generator().manual_seed(6)
    centre = torch.randn(3, 50, generator=gen, dtype=torch.float64)
    radius = torch.rand(3, 50, generator=gen, dtype=torch.float64) + 1e-3
    a = NeuronBins.around(centre, radius)
    b = NeuronBins.around(centre * (1 + 2e-16), radius * (1 - 2e-16))
    assert torch.equal(a.origin, b.origin) and torch.equal(a.scale, b.scale)
    # The fine range covers centre +- radius.
    first = a.origin.double() + a.width  # up to float32 rounding of the origin
    assert (first <= centre - radius + 1e-6).all()
    assert (first + a.bins * a.width >= centre + radius - 1e-6).all()
