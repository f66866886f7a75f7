"""Statistics collection: Lightning loops that stream per-neuron sums over a task's data.

One forward pass per item in the normal case. A pilot over a few items spread through the
data (about a sixteenth of them) places each neuron's histogram bins, and keeps its
activations (when they fit ``PILOT_KEPT_BYTES``) for the main pass, which then streams the
other items; the MAD comes with a rigorous error bound (``modularity.neurons.mad_bound``).
Only if that bound exceeds the tolerance for some neuron does a second pass compute the
MAD exactly around the final means.

Every loop shards items over devices itself (Lightning's own sampler would repeat items to
even the shards), and the sums are combined across devices by ``torchmetrics``, so several
devices give the statistics of one within float64 rounding; the pilot's bins come from
summed, hence identical, sums on every device. Each device needs at least one item per loop.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler

from modularity.models.loading import LoadedModel
from modularity.neurons.sites import reading_hooks, site_widths
from modularity.neurons.stats import CollectedStats
from modularity.neurons.streaming import (
    BatchItems,
    ExactMadSums,
    ItemSums,
    OnePassSums,
    PilotSums,
)
from modularity.neurons.summary import (
    exact_means,
    one_pass_statistics,
    pilot_bins,
    with_exact_mad,
)
from modularity.trainer import SumsLoop, make_trainer, model_inputs, run_loop

log = logging.getLogger(__name__)

PILOT_SHARE = 16  # the pilot takes one item in this many...
PILOT_ITEMS = (8, 64)  # ...but at least and at most this many
GOLDEN_RATIO = (5**0.5 - 1) / 2
PILOT_KEPT_BYTES = 2**30  # the pilot's activations are kept for the main pass up to this size


class PilotActivations:
    """The pilot's activations, kept (up to ``limit`` bytes) so that the main pass need not
    compute them again: with them the pilot costs no extra forward pass."""

    def __init__(self, limit: int) -> None:
        self.limit, self.size = limit, 0
        self.batches: list[tuple[BatchItems, list[torch.Tensor]]] | None = []

    def add(self, items: BatchItems, layer: int, x: torch.Tensor) -> None:
        if self.batches is None:
            return
        self.size += x.numel() * x.element_size()
        if self.size > self.limit:
            self.batches = None  # too large: the main pass recomputes the pilot's items
            return
        if layer == 0:
            self.batches.append((items, []))
        self.batches[-1][1].append(x.detach().clone())


class StatsCollection(SumsLoop):
    """One loop of statistics collection: stream ``sums`` over the units of ``sites`` (side by
    side, one forward), after the activations ``replay`` kept; ``keep_into`` keeps this loop's."""

    def __init__(
        self,
        loaded: LoadedModel,
        sums: ItemSums,
        *,
        keep_into: PilotActivations | None = None,
        replay: PilotActivations | None = None,
        sites: Sequence[str] = ("mlp",),
    ) -> None:
        super().__init__()
        self.net = loaded.model
        self.adapter = loaded.adapter
        self.sites = tuple(sites)
        self.sums = sums
        self.keep_into, self.replay = keep_into, replay
        self.result: dict[str, torch.Tensor] = {}

    def record(self, items: BatchItems, layer: int, x: torch.Tensor) -> None:
        if layer == 0:  # count once per batch; an image's tokens are its patches
            self.sums.add_items(items, x.numel() // (len(items.half) * x.shape[-1]))
        self.sums.update(layer, x, items)
        if self.keep_into is not None:
            self.keep_into.add(items, layer, x)

    def on_predict_start(self) -> None:
        super().on_predict_start()
        if self.replay is not None:
            for items, layers in self.replay.batches:
                for layer, x in enumerate(layers):
                    self.record(items, layer, x.to(self.device))
            self.replay.batches = None

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        items = BatchItems.of(batch)
        with reading_hooks(self.adapter, self.sites, lambda layer, x: self.record(items, layer, x)):
            # The backbone only: the head (an LM's vocabulary projection, up to half the
            # cost of a small LM's forward) has no MLP neurons to record.
            self.net.base_model(**model_inputs(batch))

    def on_predict_epoch_end(self) -> None:
        self.result = self.sums.compute()
        if self.keep_into is not None:  # every device keeps its share, or none does
            kept = self.keep_into.batches is not None
            if not self.trainer.strategy.reduce_boolean_decision(kept, all=True):
                self.keep_into.batches = None


class ItemShard(Sampler[int]):
    """The given items, split over the devices of a distributed run without repeats."""

    def __init__(self, indices: Sequence[int]) -> None:
        self.indices = list(indices)

    def _mine(self) -> list[int]:
        if not torch.distributed.is_available() or not torch.distributed.is_initialized():
            return self.indices
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        return self.indices[rank::world]

    def __iter__(self) -> Iterator[int]:
        return iter(self._mine())

    def __len__(self) -> int:
        return len(self._mine())


def pilot_items(n_items: int) -> list[int]:
    """About a sixteenth of the items (within ``PILOT_ITEMS``), spread over the data.

    Item ``k`` of the pilot sits at the fractional part of ``k`` times the golden ratio: evenly
    spread, yet never in step with a period of the data (a mixture interleaving its domains).
    """
    count = min(n_items, max(PILOT_ITEMS[0], min(PILOT_ITEMS[1], n_items // PILOT_SHARE)))
    chosen: set[int] = set()
    k = 0
    while len(chosen) < count:
        k += 1
        chosen.add(int((k * GOLDEN_RATIO) % 1 * n_items))
    return sorted(chosen)


def _loader_over(loader: DataLoader, indices: Sequence[int]) -> DataLoader:
    """``loader`` restricted to ``indices``, sharded over devices."""
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        sampler=ItemShard(indices),
        collate_fn=loader.collate_fn,
        num_workers=loader.num_workers,
        pin_memory=loader.pin_memory,
    )


def _stream(
    loaded: LoadedModel,
    loader: DataLoader,
    indices: Sequence[int],
    trainer_cfg: Any,
    sums: ItemSums,
    stage: str,
    sites: Sequence[str],
    **kept: PilotActivations | None,
) -> dict[str, torch.Tensor]:
    module = StatsCollection(loaded, sums, sites=sites, **kept)
    trainer = make_trainer(trainer_cfg, stage, use_distributed_sampler=False)
    run_loop(trainer, module, _loader_over(loader, indices))
    return module.result


def collect_statistics(
    loaded: LoadedModel,
    loader: DataLoader,
    trainer_cfg: Any,
    *,
    mad_tolerance: float = 1e-4,
    stage: str = "collect",
    sites: Sequence[str] = ("mlp",),
) -> CollectedStats:
    """Unit statistics of every item of ``loader`` (a map-style dataset), per half and whole.

    ``sites`` are read in the same forward, their units side by side in the statistics
    (``modularity.neurons.sites.split_statistics`` separates them).

    The MAD comes from one pass with an error bound (``method="one-pass"``) when its relative
    bound is within ``mad_tolerance`` for every neuron with a non-negligible MAD, and exactly
    from a second pass otherwise (``"two-pass"``); ``mad_tolerance=0`` skips the pilot and
    the histogram and always makes the exact second pass, ``inf`` never makes it.
    """
    n_layers, n_neurons = loaded.adapter.n_layers, sum(site_widths(loaded.adapter, sites))
    everything = range(len(loader.dataset))
    if len(everything) == 0:
        raise ValueError("no items to collect statistics on")
    bins, main, replay = None, everything, None
    if mad_tolerance > 0:
        pilot = pilot_items(len(everything))
        kept = PilotActivations(PILOT_KEPT_BYTES if len(pilot) < len(everything) else 0)
        pilot_sums = PilotSums(n_layers, n_neurons)
        pilot_stage = f"{stage} (pilot)"
        bins = pilot_bins(
            _stream(
                loaded, loader, pilot, trainer_cfg, pilot_sums, pilot_stage, sites, keep_into=kept
            )
        )
        if kept.batches is not None:
            main, replay = sorted(set(everything) - set(pilot)), kept
    one_pass = OnePassSums(n_layers, n_neurons, bins)
    sums = _stream(loaded, loader, main, trainer_cfg, one_pass, stage, sites, replay=replay)
    stats = one_pass_statistics(sums, bins)
    if stats.max_relative_mad_error <= mad_tolerance:
        return stats
    if bins is not None:
        log.info(
            "one-pass MAD bound %.2g exceeds the tolerance %.2g: exact second pass",
            stats.max_relative_mad_error,
            mad_tolerance,
        )
    exact = ExactMadSums(*exact_means(stats))
    exact_stage = f"{stage} (exact MAD)"
    return with_exact_mad(
        stats, _stream(loaded, loader, everything, trainer_cfg, exact, exact_stage, sites)
    )
