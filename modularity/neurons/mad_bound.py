"""The mean absolute deviation from one pass, with a rigorous error bound.

``f(c) = E|x - c|`` is convex in ``c`` with slope ``2F(c) - 1`` (``F`` the empirical
distribution function). A histogram of a neuron's activations that holds, for each fine
bin, the exact count and the sum of its members' positions gives ``f`` and a subgradient at
every bin edge. The mean ``m``, known only at the end, falls in one bin ``[e, e + h)``; there
``f(m) - f(e) - f'(e)(m - e)`` is ``2/n`` times the sum of ``m - x`` over that bin's members
below ``m``, which the bin's count and sum bracket between a tangent and a chord: at most
``p h / 2`` wide, ``p`` the share of tokens in that bin. The midpoint is the MAD and the
half-width (plus the quantisation of positions) its error bound.

Bins are placed per neuron from a pilot (the mean of a few items and its standard error), so
that the final mean of the data and of each half lies in the fine range with near certainty;
where it does not, or its bin holds too many tokens, the bound says so and collection falls
back to the exact second pass. Counts and positions are integers packed into one int64 per
activation, so one scatter-add bins an activation and the histogram is exact: it does not
depend on batching or on how items are spread over devices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

BINS = 1024  # fine bins per neuron
POSITION_BITS = 12  # a position inside a bin is kept to 2^-12 of its width
COUNT_BITS = 37  # a packed code counts in units of 2^37: 2^25 counts and their positions fit
COUNT_UNIT = 2**COUNT_BITS
MAX_TOKENS = 2**25  # tokens one histogram can take without overflowing COUNT_UNIT
PILOT_Z = 8.0  # fine range: this many standard errors of a half's mean either side...
SMALL_PILOT = 4.0  # ...times 1 + this / pilot items, for the uncertainty of the error itself
NEGLIGIBLE_MAD = 1e-6  # a MAD below this share of its layer's largest is not held to the tolerance
LATTICE = 8  # bin widths are powers of 2^(1/8), origins multiples of the width


@dataclass(frozen=True)
class NeuronBins:
    """Histogram bins per neuron: bin ``b`` is ``[origin + b w, origin + (b + 1) w)``, with
    bin 0 and bin ``bins + 1`` also taking everything below and above the fine bins.

    ``origin`` and ``scale`` (``2^12 / w``) are float32 ``[layers, neurons]``, the precision
    the activations are binned in; ``width`` is exactly ``2^12 / scale`` in float64.
    """

    origin: torch.Tensor
    scale: torch.Tensor
    bins: int = BINS

    @property
    def width(self) -> torch.Tensor:
        return 2.0**POSITION_BITS / self.scale.double()

    @classmethod
    def around(cls, centre: torch.Tensor, radius: torch.Tensor, bins: int = BINS) -> NeuronBins:
        """Fine bins covering ``centre +- radius`` (float64 ``[layers, neurons]``).

        Widths and origins are snapped to a coarse lattice, so that centres that differ by
        float64 rounding (one process or several) give the same bins.
        """
        radius = radius.clamp_min(torch.finfo(torch.float32).eps * centre.abs()).clamp_min(1e-20)
        exponent = torch.ceil(LATTICE * torch.log2(2 * radius / (bins - 1)))
        width = torch.exp2(exponent / LATTICE)
        first_edge = torch.floor((centre - radius) / width) * width
        scale = (2.0**POSITION_BITS / width).float()
        return cls(origin=(first_edge - width).float(), scale=scale, bins=bins)

    def edge(self, layer: int, dtype: torch.dtype) -> torch.Tensor:
        """The first fine edge relative to the origin (one width), in ``dtype``, ``[neurons]``."""
        return (2.0**POSITION_BITS / self.scale[layer].double()).to(dtype)

    def to(self, device: torch.device) -> NeuronBins:
        return NeuronBins(self.origin.to(device), self.scale.to(device), self.bins)


def bin_codes(
    y: torch.Tensor,
    scale: torch.Tensor,
    bins: int,
    scaled: torch.Tensor,
    codes: torch.Tensor,
    index: torch.Tensor,
) -> None:
    """Histogram codes of ``y = x - origin`` (``[tokens, neurons]``), neuron by neuron.

    Into ``[neurons, tokens]`` buffers (``scaled`` float, ``codes`` and ``index`` int64):
    ``index`` gets each activation's bin and ``codes`` ``COUNT_UNIT + q``, ``q`` its position
    inside that bin in units of 2^-12 of it, so one scatter-add of ``codes`` at ``index``
    sums a bin's count and its members' positions at once. Neurons lead so that the
    scatter-add writes one neuron's bins at a time (a few KiB) rather than all at random.
    """
    top = (bins + 2) * 2**POSITION_BITS - 1
    torch.mul(y.T, scale.unsqueeze(1), out=scaled).clamp_(0, top)
    codes.copy_(scaled)  # truncation is floor: the values are >= 0
    torch.bitwise_right_shift(codes, POSITION_BITS, out=index)
    codes.bitwise_and_(2**POSITION_BITS - 1).add_(COUNT_UNIT)


def check_histogram_capacity(tokens: torch.Tensor) -> None:
    """Refuse more tokens (``[2]`` per half) than a packed histogram bin can count."""
    if float(tokens.sum()) > MAX_TOKENS:
        raise ValueError(
            f"one-pass statistics take at most {MAX_TOKENS} tokens; collect fewer, or use "
            "mad_tolerance=0 (two passes)"
        )


def decode_histogram(hist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-bin counts and sums of positions inside the bin (units of 2^-12 of a bin), exact
    int64. ``hist``: ``[..., bins + 2]`` sums of ``bin_codes`` codes."""
    return hist >> COUNT_BITS, hist & (COUNT_UNIT - 1)


def position_error(bins: int) -> float:
    """Largest distance, in bin widths, between an activation and the position the histogram
    keeps for it: half a quantisation step plus float32 rounding of ``x - origin`` and of
    its scaling, both relative to at most ``bins + 2`` widths."""
    return 2.0 ** -(POSITION_BITS + 1) + 2 * (bins + 2) * 2.0**-24


def mad_bracket(
    hist: torch.Tensor,
    tokens: float,
    sum_y: torch.Tensor,
    sum_above_edge: torch.Tensor,
    mean: torch.Tensor,
    bins: NeuronBins,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``E|x - mean|`` per neuron as (midpoint, absolute error bound), ``[layers, neurons]``.

    ``hist`` (``[layers, neurons, halves, bins + 2]``, summed over the halves given) and the
    exact float sums ``sum_y`` of ``y = x - origin`` and ``sum_above_edge`` of ``max(y, w)``
    describe ``tokens`` tokens; ``mean`` is their mean (float64). Layers are bracketed one
    at a time to bound memory.
    """
    width = bins.width.to(hist.device)
    m = mean - bins.origin.to(hist.device).double()
    pairs = [
        _bracket_layer(hist[k].sum(1), tokens, sum_y[k], sum_above_edge[k], m[k], width[k])
        for k in range(hist.shape[0])
    ]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


def _bracket_layer(
    hist: torch.Tensor,
    n: float,
    sum_y: torch.Tensor,
    sum_above_edge: torch.Tensor,
    m: torch.Tensor,
    width: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One layer of ``mad_bracket`` (``hist`` ``[neurons, bins + 2]``); ``m`` is the mean
    relative to the origin. Edge ``e`` of a neuron is the left edge of its bin ``e``."""
    counts, positions = decode_histogram(hist)
    fine = hist.shape[1] - 2
    # The mean's bin (NaN, the mean of no tokens, gives NaN results through n = 0), and the
    # edge it is bracketed from: that bin's left edge, or outside the fine bins the nearest.
    j = torch.floor(m / width).nan_to_num(0).clamp(0, fine + 1).long().unsqueeze(1)
    edge = j.clamp(1, fine + 1)

    def below_edge(per_bin: torch.Tensor) -> torch.Tensor:
        """Sum over the fine bins left of the edge, float64 ``[neurons]``."""
        return (per_bin.cumsum(1).gather(1, edge - 1)[:, 0] - per_bin[:, 0]).double()

    # Tokens left of the edge, and the sum of their y: bin 0's exactly from the float sums
    # (it also holds everything below), the fine bins' from their members' positions, each
    # taken at the middle of its quantisation step.
    fine_counts = below_edge(counts)
    left = counts[:, 0].double() + fine_counts
    bin_starts = torch.arange(fine + 2, device=hist.device) << POSITION_BITS
    steps = below_edge(counts * bin_starts) + below_edge(positions) + fine_counts / 2
    left_sum = sum_y + counts[:, 0] * width - sum_above_edge + width * steps / 2**POSITION_BITS
    at_edge = edge[:, 0].double() * width
    f_edge = (at_edge * (2 * left - n) - 2 * left_sum + sum_y) / n
    d = m - at_edge
    base = f_edge + (2 * left - n) / n * d  # tangent at the edge
    # Sum over the mean's bin of (right edge - member): the bin's share of the chord.
    in_bin = counts.gather(1, j)[:, 0].double()
    in_bin_steps = positions.gather(1, j)[:, 0].double() + in_bin / 2
    gap = width * (in_bin - in_bin_steps / 2**POSITION_BITS)
    inside = (j[:, 0] >= 1) & (j[:, 0] <= fine)
    lower = torch.where(inside, base + 2 * (gap - in_bin * (width - d)).clamp_min(0) / n, base)
    upper = torch.where(inside, base + 2 * d * gap / (width * n), f_edge + d.abs())
    lower = lower.clamp_min(0)
    error = (upper - lower) / 2 + 2 * position_error(fine) * width
    return (upper + lower) / 2, error


def pilot_radius(standard_error: torch.Tensor, items: float) -> torch.Tensor:
    """Half-width of the fine range: ``PILOT_Z`` standard errors of a half's mean (a half has
    half the items, so its mean strays sqrt(2) times further than the whole data's), widened
    when the error itself comes from few pilot items."""
    return PILOT_Z * (1 + SMALL_PILOT / items) * math.sqrt(2) * standard_error


def relative_error(mad: torch.Tensor, error: torch.Tensor) -> torch.Tensor:
    """``error / mad`` per neuron, 0 where the MAD is negligible (below ``NEGLIGIBLE_MAD`` of
    its layer's largest) or the set is empty; ``[layers, neurons]``."""
    floor = NEGLIGIBLE_MAD * mad.nan_to_num(0).amax(dim=1, keepdim=True)
    held = (mad > floor) & torch.isfinite(mad)
    return torch.where(held, error / mad, torch.zeros_like(mad))
