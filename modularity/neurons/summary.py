"""From streamed sums (``streaming``) to statistics, per half and for the whole data (the sum
of the halves): moments, and the MAD bracketed from the one-pass histogram or exact from the
second pass."""

from __future__ import annotations

from dataclasses import replace

import torch

from modularity.neurons.mad_bound import (
    BINS,
    NeuronBins,
    check_histogram_capacity,
    mad_bracket,
    pilot_radius,
    relative_error,
)
from modularity.neurons.stats import CollectedStats, NeuronStats
from modularity.neurons.streaming import (
    FULL_ABS,
    FULL_SQUARED,
    OWN_ABS,
    OWN_SQUARED,
    POSITIVE,
    POSITIVE_PART,
    Y_ABOVE_EDGE,
    Y_SQUARED,
    Y,
)

Sums = dict[str, torch.Tensor]


def by_target(tensor: torch.Tensor, half_dim: int) -> list[torch.Tensor]:
    """The whole data's, half 0's and half 1's part of a tensor with a halves dimension."""
    return [tensor.sum(half_dim), tensor.select(half_dim, 0), tensor.select(half_dim, 1)]


def pilot_bins(sums: Sums, bins: int = BINS) -> NeuronBins:
    """``bins`` histogram bins per neuron around the pilot mean, ``PILOT_Z`` standard errors
    of a half's mean wide.

    The standard error is the larger of the spread of item means over sqrt(items) and the
    tokens' spread over sqrt(tokens), so neither few items nor uniform items make it vanish.
    """
    items, tokens = sums["items"].sum(), sums["tokens"].sum()
    x_sum, mean_sum, mean_squares, weighted_squares, within = sums["sums"].unbind(1)
    location = x_sum / tokens
    spread = (mean_squares - mean_sum.square() / items).clamp_min(0) / (items - 1).clamp_min(1)
    token_var = (within + weighted_squares - tokens * location.square()).clamp_min(0) / tokens
    error = torch.maximum(spread / items, token_var / tokens).sqrt()
    return NeuronBins.around(location, pilot_radius(error, float(items)), bins)


def one_pass_statistics(sums: Sums, bins: NeuronBins | None) -> CollectedStats:
    """Statistics from ``OnePassSums``; without ``bins`` the MAD is unknown (NaN)."""
    origin = 0.0 if bins is None else bins.origin.double().to(sums["moments"].device)
    if bins is not None:
        check_histogram_capacity(sums["tokens"])  # all devices' tokens
    # The whole data's histogram is summed layer by layer in ``mad_bracket``.
    hists = [None] * 3 if bins is None else [sums["hist"], *sums["hist"].split(1, dim=2)]
    targets = []
    for n, moments, hist in zip(by_target(sums["tokens"], 0), by_target(sums["moments"], 1), hists):
        n = float(n)
        sum_y = moments[:, Y]
        mean = origin + sum_y / n
        variance = (moments[:, Y_SQUARED] / n - (sum_y / n).square()).clamp_min(0)
        if hist is None:
            mad = error = torch.full_like(mean, float("nan"))
        else:
            bracket = mad_bracket(hist, n, sum_y, moments[:, Y_ABOVE_EDGE], mean, bins)
            mad, error = _within_std(*bracket, variance.sqrt())
        targets.append(
            NeuronStats(
                count=torch.full_like(mean, n),
                mean=mean,
                std=variance.sqrt(),
                abs_mean=(2 * moments[:, POSITIVE_PART] - sum_y - n * origin) / n,
                rms=(variance + mean.square()).sqrt(),
                freq=moments[:, POSITIVE] / n,
                mad=mad,
                mad_error=error,
            )
        )
    worst = float("inf")
    if bins is not None:
        held = [relative_error(t.mad, t.mad_error).max() for t in targets if t.count.max() > 0]
        worst = float(max(held))
    return _collected(sums, targets, "one-pass", worst)


def _within_std(
    mad: torch.Tensor, error: torch.Tensor, std: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Narrow a MAD bracket with MAD <= std (Jensen), which settles near-constant neurons."""
    upper = torch.minimum(mad + error, std)
    lower = torch.minimum(mad - error, upper)
    return (upper + lower) / 2, (upper - lower) / 2


def exact_means(stats: CollectedStats) -> tuple[torch.Tensor, torch.Tensor]:
    """The centres of the exact pass: the whole data's mean ``[layers, neurons]`` and the
    halves' ``[layers, 2, neurons]`` (0 for an empty half), float64."""
    halves = torch.stack([half.mean.nan_to_num(0) for half in stats.halves], dim=1)
    return stats.full.mean, halves


def with_exact_mad(stats: CollectedStats, sums: Sums, method: str = "two-pass") -> CollectedStats:
    """``stats`` with MAD, std and rms from ``ExactMadSums`` around ``exact_means(stats)``;
    ``method`` says where the sums came from (a second pass, or ``kept`` activations)."""
    deviations = sums["deviations"]
    around = [
        (deviations[:, :, FULL_ABS].sum(1), deviations[:, :, FULL_SQUARED].sum(1)),
        *((deviations[:, h, OWN_ABS], deviations[:, h, OWN_SQUARED]) for h in (0, 1)),
    ]
    targets = []
    for old, (absolute, squares) in zip((stats.full, *stats.halves), around):
        variance = squares / old.count
        targets.append(
            replace(
                old,
                std=variance.sqrt(),
                rms=(variance + old.mean.square()).sqrt(),
                mad=absolute / old.count,
                mad_error=torch.zeros_like(old.mad),
            )
        )
    return _collected(sums, targets, method, 0.0)


def _collected(sums: Sums, targets: list[NeuronStats], method: str, worst: float) -> CollectedStats:
    return CollectedStats(
        full=targets[0],
        halves=(targets[1], targets[2]),
        method=method,
        max_relative_mad_error=worst,
        n_items=tuple(int(v) for v in sums["items"]),
        n_tokens=tuple(int(v) for v in sums["tokens"]),
    )
