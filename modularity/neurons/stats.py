"""Streaming per-neuron activation statistics, accumulated in float64.

Memory is O(layers x neurons) whatever the number of tokens: each batch is reduced to sums
before the next arrives. The mean absolute deviation around the mean is exact: it needs the
mean first, so collection makes two passes over the same data; the second pass accumulates
``sum |x - mean|`` and ``sum (x - mean)^2`` around the first pass's mean
(``NeuronStatsAccumulator(center=...)``), which also makes the variance free of the
cancellation that ``E[x^2] - E[x]^2`` suffers when a neuron's mean dwarfs its spread.

Each batch is reduced in its own precision (bf16/fp16 are promoted to float32; float64 stays
float64) and the batch sums are added to float64 accumulators: converting every activation
to float64 first would cost more than the forward pass itself on a CPU.

The accumulator is a ``torchmetrics.Metric`` with sum reductions, so statistics gathered on
several devices by Lightning are combined correctly.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torchmetrics import Metric

MOMENT_SUMS = ("count", "sum", "sum_sq", "sum_abs", "count_pos")
CENTERED_SUMS = ("count", "sum_abs_dev", "sum_sq_dev")


@dataclass(frozen=True)
class NeuronStats:
    """Per-layer, per-neuron statistics over a dataset; every field ``[layers, neurons]``."""

    count: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    abs_mean: torch.Tensor
    rms: torch.Tensor
    freq: torch.Tensor  # fraction of activations > 0
    mad: torch.Tensor  # mean |x - mean|

    def to_tensors(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name).contiguous() for f in fields(self)}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> NeuronStats:
        return cls(**{f.name: tensors[f.name] for f in fields(cls)})

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.mean.shape)


class NeuronStatsAccumulator(Metric):
    """Sums of activations per layer and neuron; ``center`` switches to the MAD pass.

    ``update(layer, x, keep)``: ``x`` is ``[..., neurons]``, ``keep`` a boolean mask of the
    leading dimensions (False for padding), or None to keep every position.
    """

    full_state_update = False

    def __init__(self, n_layers: int, n_neurons: int, center: torch.Tensor | None = None) -> None:
        super().__init__()
        shape = (n_layers, n_neurons)
        names = CENTERED_SUMS if center is not None else MOMENT_SUMS
        for name in names:
            self.add_state(name, torch.zeros(shape, dtype=torch.float64), dist_reduce_fx="sum")
        self.center = None if center is None else center.to(torch.float64)

    def update(self, layer: int, x: torch.Tensor, keep: torch.Tensor | None = None) -> None:
        x = x.reshape(-1, x.shape[-1])
        if keep is not None:
            x = x[keep.reshape(-1).to(x.device)]
        if x.dtype not in (torch.float32, torch.float64):
            x = x.float()
        self.count[layer] += x.shape[0]
        if self.center is not None:
            dev = x - self.center[layer].to(x.device, x.dtype)
            self.sum_sq_dev[layer] += (dev * dev).sum(0)
            self.sum_abs_dev[layer] += dev.abs_().sum(0)
            return
        self.sum[layer] += x.sum(0)
        self.sum_sq[layer] += (x * x).sum(0)
        self.sum_abs[layer] += x.abs().sum(0)
        # A float sum of the comparison: torch's integer sum over dim 0 is ~5x slower.
        self.count_pos[layer] += (x > 0).to(x.dtype).sum(0)

    def compute(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name).clone() for name in self._defaults}


def stats_from_sums(
    moments: dict[str, torch.Tensor], centered: dict[str, torch.Tensor]
) -> NeuronStats:
    """Turn the two passes' sums into statistics (population std, ddof=0)."""
    n = moments["count"].clamp_min(1)
    return NeuronStats(
        count=moments["count"],
        mean=moments["sum"] / n,
        std=(centered["sum_sq_dev"] / n).sqrt(),
        abs_mean=moments["sum_abs"] / n,
        rms=(moments["sum_sq"] / n).sqrt(),
        freq=moments["count_pos"] / n,
        mad=centered["sum_abs_dev"] / n,
    )
