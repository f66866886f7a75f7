"""Per-neuron sums streamed over activations: ``torchmetrics`` Metrics with sum reductions, so
sums gathered on several devices combine.

Each item's (block's or image's) tokens are reduced in float32 (bf16/fp16 promoted; float64
stays float64) and the per-item sums are added in float64, so the sums do not depend on how
items are batched or spread over devices beyond float64 rounding; histograms are exact
integers. Sums are kept per half (``BatchItems.half``); the whole data's are their sum.
Memory is O(layers x neurons) whatever the number of tokens; a batch is taken a few items
at a time (``memory.chunk_items``), so the work tensors stay within ``memory.WORK_BYTES``
whatever the batch and block size, and they are reused from call to call, since
allocating them anew costs more than the arithmetic on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchmetrics import Metric

from modularity.neurons.mad_bound import NeuronBins, bin_codes, check_histogram_capacity
from modularity.neurons.memory import (
    EXACT_WORK_BYTES,
    STREAM_WORK_BYTES,
    chunk_items,
    chunk_positions,
)

F64 = torch.float64
# Slots of OnePassSums.moments (y = x - origin, w = the bin width) and ExactMadSums.deviations.
Y, Y_SQUARED, Y_ABOVE_EDGE, POSITIVE_PART, POSITIVE = range(5)
FULL_ABS, FULL_SQUARED, OWN_ABS, OWN_SQUARED = range(4)


@dataclass(frozen=True)
class BatchItems:
    """Which half each item of a batch belongs to, and which of its positions are tokens.

    ``half``: ``[batch]`` long (0/1); ``keep``: ``[batch, positions]`` bool, False at
    padding, or None; ``only_half``: the half of every item when they all share one.
    """

    half: torch.Tensor
    keep: torch.Tensor | None
    only_half: int | None

    @classmethod
    def of(cls, batch: dict[str, torch.Tensor]) -> BatchItems:
        inputs = batch.get("input_ids", batch.get("pixel_values"))
        mask = batch.get("attention_mask")
        # Until the data code adds "half" (assigned per document), a batch without it is
        # all half 0: the halves are then the whole data and nothing. Remove with that change.
        half = batch.get("half", torch.zeros(inputs.shape[0], dtype=torch.long))
        halves = half.unique().tolist()
        return cls(
            half=half,
            keep=None if mask is None else mask.bool(),
            only_half=halves[0] if len(halves) == 1 else None,
        )

    def rows(self, start: int, stop: int) -> BatchItems:
        """Items ``start:stop`` of the batch."""
        half = self.half[start:stop]
        if self.only_half is not None:
            only = self.only_half
        else:
            halves = half.unique().tolist()
            only = halves[0] if len(halves) == 1 else None
        keep = None if self.keep is None else self.keep[start:stop]
        return BatchItems(half=half, keep=keep, only_half=only)

    def positions(self, start: int, stop: int) -> BatchItems:
        """Positions ``start:stop`` of every item."""
        keep = None if self.keep is None else self.keep[:, start:stop]
        return BatchItems(half=self.half, keep=keep, only_half=self.only_half)

    def tokens(self, positions: int) -> torch.Tensor:
        """Tokens per item, float64 ``[batch]``."""
        if self.keep is None:
            return torch.full(self.half.shape, float(positions), dtype=F64)
        return self.keep.sum(1).to(F64).cpu()


class ItemSums(Metric):
    """Bookkeeping shared by the collection sums: items and tokens per half, the
    float64 accumulation of per-item sums, and reusable work tensors.

    ``update(layer, x, items)`` takes one layer's activations of a batch; subclasses
    implement ``update_items`` for a chunk of its items.
    """

    full_state_update = False
    work_per_activation = STREAM_WORK_BYTES  # bytes of work tensors per activation
    # Whether an item's positions may be summed in chunks (sums of positions, not of items).
    split_positions = True

    def __init__(self, n_layers: int, n_neurons: int) -> None:
        super().__init__()
        self.n_layers, self.n_neurons = n_layers, n_neurons
        for name in ("items", "tokens"):
            self.add_state(name, torch.zeros(2, dtype=F64), dist_reduce_fx="sum")
        self._work: dict[tuple, torch.Tensor] = {}

    def update(self, layer: int, x: torch.Tensor, items: BatchItems) -> None:
        """Add one layer's activations of a batch, a chunk of items at a time; an item too
        large for one chunk, a chunk of its positions at a time (``split_positions``)."""
        x = x.reshape(items.half.shape[0], -1, x.shape[-1])
        step = chunk_items(x.shape[1], x.shape[2], self.work_per_activation)
        if step >= x.shape[0]:
            self.update_items(layer, x, items)
        elif step > 1 or not self.split_positions:
            for start in range(0, x.shape[0], step):
                stop = start + step
                self.update_items(layer, x[start:stop], items.rows(start, stop))
        else:
            span = chunk_positions(x.shape[2], self.work_per_activation)
            for item in range(x.shape[0]):
                one = items.rows(item, item + 1)
                for start in range(0, x.shape[1], span):
                    stop = start + span
                    self.update_items(
                        layer, x[item : item + 1, start:stop], one.positions(start, stop)
                    )

    def update_items(self, layer: int, x: torch.Tensor, items: BatchItems) -> None:
        """Add ``x`` (``[items, positions, neurons]``) of ``layer``."""
        raise NotImplementedError

    def add_items(self, items: BatchItems, positions: int) -> None:
        """Count a batch's items (those with tokens) and tokens, once per batch."""
        tokens = items.tokens(positions)
        half = items.half.cpu()
        for h in (0, 1):
            chosen = half == h
            self.items[h] += (chosen & (tokens > 0)).sum().item()
            self.tokens[h] += tokens[chosen].sum().item()

    def work(
        self,
        name: str,
        like: torch.Tensor,
        shape: tuple[int, ...] | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """A reusable uninitialised tensor on ``like``'s device (its shape and dtype by default)."""
        shape, dtype = shape or tuple(like.shape), dtype or like.dtype
        key = (name, shape, dtype, like.device, torch.is_inference_mode_enabled())
        if key not in self._work:
            self._work[key] = torch.empty(shape, dtype=dtype, device=like.device)
        return self._work[key]

    def item_sums(self, x: torch.Tensor, count: int) -> torch.Tensor:
        """A reusable ``[count, batch, neurons]`` tensor for per-item sums of ``x``."""
        return self.work("sums", x, (count, x.shape[0], x.shape[-1]))

    @staticmethod
    def add_per_half(acc: torch.Tensor, item_sums: torch.Tensor, items: BatchItems) -> None:
        """``acc[h] += `` the float64 sum over half ``h``'s items of ``item_sums``.

        ``acc``: ``[2, sums, neurons]`` float64; ``item_sums``: ``[sums, batch, neurons]``.
        """
        # Converted first: ``sum(1, dtype=float64)`` over the middle dimension is many times
        # slower on a CPU.
        if items.only_half is not None:
            acc[items.only_half] += item_sums.double().sum(1)
            return
        for h in (0, 1):
            acc[h] += item_sums[:, items.half.to(item_sums.device) == h].double().sum(1)

    def compute(self) -> dict[str, torch.Tensor]:
        """The sums (summed over devices when distributed)."""
        return {name: getattr(self, name) for name in self._defaults}


def as_items(x: torch.Tensor, items: BatchItems) -> torch.Tensor:
    """Activations as ``[batch, positions, neurons]`` in at least float32."""
    x = x.reshape(items.half.shape[0], -1, x.shape[-1])
    return x if x.dtype in (torch.float32, F64) else x.float()


def keep_factor(x: torch.Tensor, items: BatchItems) -> torch.Tensor | None:
    """``[batch, positions, 1]`` 1/0 factor that zeroes padding, or None without padding."""
    return None if items.keep is None else items.keep.to(x.device, x.dtype).unsqueeze(-1)


class PilotSums(ItemSums):
    """Where each neuron's mean lies and how far it may stray: per-item means and spreads.

    ``sums`` ``[layers, 5, neurons]``: tokens' x, item means, their squares, tokens times
    their squares, and squared deviations from the item's own mean (so a mean that dwarfs
    the spread costs no digits); ``summary.pilot_bins`` reads them.
    """

    def __init__(self, n_layers: int, n_neurons: int) -> None:
        super().__init__(n_layers, n_neurons)
        shape = (n_layers, 5, n_neurons)
        self.add_state("sums", torch.zeros(shape, dtype=F64), dist_reduce_fx="sum")

    split_positions = False  # deviations from each item's own mean need the whole item

    def update_items(self, layer: int, x: torch.Tensor, items: BatchItems) -> None:
        x = as_items(x, items)
        keep = keep_factor(x, items)
        tokens = items.tokens(x.shape[1]).to(x.device).unsqueeze(1)
        if keep is not None:
            x = x * keep
        # An item of padding only has mean 0 and adds nothing to any sum.
        item_mean = x.sum(1, dtype=F64) / tokens.clamp_min(1)
        deviation = x - item_mean.to(x.dtype).unsqueeze(1)
        if keep is not None:
            deviation.mul_(keep)
        self.sums[layer] += torch.stack(
            [
                (item_mean * tokens).sum(0),
                item_mean.sum(0),
                item_mean.square().sum(0),
                (item_mean.square() * tokens).sum(0),
                deviation.square_().sum(1, dtype=F64).sum(0),
            ]
        )


class OnePassSums(ItemSums):
    """Moments and, with ``bins``, the MAD histogram, in one pass; per half.

    ``moments`` ``[layers, 2, 5, neurons]``: sums of ``y = x - origin``, ``y^2``,
    ``max(y, w)`` (``w`` the bin width: bin 0's sum follows from it), ``max(x, 0)`` and
    ``x > 0``; ``hist`` ``[layers, neurons, 2, bins + 2]`` int64 (``mad_bound.bin_codes``).
    Without ``bins`` the origin is 0 and only the moments are kept.
    """

    def __init__(self, n_layers: int, n_neurons: int, bins: NeuronBins | None = None) -> None:
        super().__init__(n_layers, n_neurons)
        self.bins = bins
        shape = (n_layers, 2, 5, n_neurons)
        self.add_state("moments", torch.zeros(shape, dtype=F64), dist_reduce_fx="sum")
        if bins is not None:
            # Summed over devices by one all-reduce in ``compute``: torchmetrics would gather
            # every device's copy first, and it is the largest of the sums.
            shape = (n_layers, n_neurons, 2, bins.bins + 2)
            self.register_buffer("hist", torch.zeros(shape, dtype=torch.int64), persistent=False)
            self._on_device = {}

    def add_items(self, items: BatchItems, positions: int) -> None:
        super().add_items(items, positions)
        check_histogram_capacity(self.tokens)

    def _bins_on(self, device: torch.device) -> NeuronBins:
        if device not in self._on_device:
            self._on_device[device] = self.bins.to(device)
        return self._on_device[device]

    def update_items(self, layer: int, x: torch.Tensor, items: BatchItems) -> None:
        x = as_items(x, items)
        keep = keep_factor(x, items)
        if keep is not None:
            x = torch.mul(x, keep, out=self.work("x", x))
        sums = self.item_sums(x, 5)
        scratch = self.work("scratch", x)
        if self.bins is None:
            y = x
        else:
            bins = self._bins_on(x.device)
            y = torch.sub(x, bins.origin[layer].to(x.dtype), out=self.work("y", x))
            above = torch.clamp(y, min=bins.edge(layer, x.dtype), out=scratch)
            if keep is not None:
                y.mul_(keep)
                above.mul_(keep)
            torch.sum(above, 1, out=sums[Y_ABOVE_EDGE])
        torch.sum(y, 1, out=sums[Y])
        torch.sum(torch.mul(y, y, out=scratch), 1, out=sums[Y_SQUARED])
        torch.sum(torch.clamp(x, min=0, out=scratch), 1, out=sums[POSITIVE_PART])
        torch.sum(scratch.sign_(), 1, out=sums[POSITIVE])
        self.add_per_half(self.moments[layer], sums, items)
        if self.bins is not None:
            self._bin(layer, y, items)

    def compute(self) -> dict[str, torch.Tensor]:
        sums = super().compute()
        if self.bins is not None:
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.all_reduce(self.hist)
            sums["hist"] = self.hist
        return sums

    def _bin(self, layer: int, y: torch.Tensor, items: BatchItems) -> None:
        bins = self._bins_on(y.device)
        y = y.view(-1, y.shape[-1])
        transposed = (y.shape[1], y.shape[0])  # [neurons, tokens]
        codes = self.work("codes", y, transposed, torch.int64)
        index = self.work("index", y, transposed, torch.int64)
        scaled = self.work("scaled", y, transposed)
        bin_codes(y, bins.scale[layer].to(y.dtype), bins.bins, scaled, codes, index)
        if items.keep is not None:
            codes.mul_(items.keep.to(y.device).view(1, -1))  # padding adds code 0: nothing
        if items.only_half is not None:
            table = self.hist[layer, :, items.only_half]
        else:
            table = self.hist[layer].view(y.shape[1], -1)
            half = items.half.to(y.device).repeat_interleave(y.shape[0] // len(items.half))
            index.add_(half * (bins.bins + 2))
        table.scatter_add_(1, index, codes)


class ExactMadSums(ItemSums):
    """The exact second pass: absolute and squared deviations around the final means, per half.

    ``full_mean`` ``[layers, neurons]`` and ``half_means`` ``[layers, 2, neurons]`` (float64)
    are the centres: activations are shifted by the full mean rounded to their dtype, then by
    each centre's remainder, which carries the centres to about 2^-48 of their distance from
    the full mean. ``deviations`` ``[layers, 2, 4, neurons]``: ``|x - c|`` and ``(x - c)^2``
    around the full mean, then around the item's half's own mean.
    """

    work_per_activation = EXACT_WORK_BYTES

    def __init__(self, full_mean: torch.Tensor, half_means: torch.Tensor) -> None:
        super().__init__(*full_mean.shape)
        self.full_mean, self.half_means = full_mean, half_means
        shape = (self.n_layers, 2, 4, self.n_neurons)
        self.add_state("deviations", torch.zeros(shape, dtype=F64), dist_reduce_fx="sum")

    def update_items(self, layer: int, x: torch.Tensor, items: BatchItems) -> None:
        x = as_items(x, items)
        keep = keep_factor(x, items)
        full_mean = self.full_mean[layer].to(x.device)
        origin = full_mean.to(x.dtype)
        full_offset = (full_mean - origin.double()).to(x.dtype)
        half_offset = (self.half_means[layer].to(x.device) - origin.double()).to(x.dtype)
        y = torch.sub(x, origin, out=self.work("y", x))
        sums = self.item_sums(x, 4)
        scratch = self.work("scratch", x)
        own = half_offset[items.half.to(x.device)].unsqueeze(1)  # [batch, 1, neurons]
        for absolute, squared, offset in (
            (FULL_ABS, FULL_SQUARED, full_offset),
            (OWN_ABS, OWN_SQUARED, own),
        ):
            deviation = torch.sub(y, offset, out=scratch).abs_()
            if keep is not None:
                deviation.mul_(keep)
            torch.sum(deviation, 1, out=sums[absolute])
            torch.sum(deviation.square_(), 1, out=sums[squared])
        self.add_per_half(self.deviations[layer], sums, items)
