"""Statistics collection: Lightning loops that stream per-neuron sums over a task's data.

One forward pass per item, planned up front from the token count (``neurons.memory``):

- while the activations fit the memory budget, the pass streams the moments and keeps the
  activations; the exact MAD is then computed from memory, around the final means;
- beyond it, a pilot over items spread through the data (a quarter of them where the budget
  keeps them, fewer otherwise) places each neuron's histogram bins, and keeps its
  activations (when they fit) for the main pass, which then streams the other items; the
  MAD comes with a rigorous error bound (``modularity.neurons.mad_bound``). Only if that
  bound exceeds the tolerance for some neuron does a second pass compute the MAD exactly
  around the final means.

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

from modularity.infra.trainer import (
    SumsLoop,
    make_trainer,
    model_inputs,
    run_loop,
    trainer_arguments,
)
from modularity.models.loading import LoadedModel
from modularity.neurons.memory import CollectionPlan, memory_budget, plan_collection
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

log = logging.getLogger(__name__)

GOLDEN_RATIO = (5**0.5 - 1) / 2


class KeptActivations:
    """A loop's activations, kept (up to ``limit`` bytes) so that no later pass need
    compute them again: the pilot's for the main pass, or a whole collection's for its
    exact MAD."""

    def __init__(self, limit: int) -> None:
        self.limit, self.size = limit, 0
        self.batches: list[tuple[BatchItems, list[torch.Tensor]]] | None = []

    def add(self, items: BatchItems, layer: int, x: torch.Tensor) -> None:
        if self.batches is None:
            return
        self.size += x.numel() * x.element_size()
        if self.size > self.limit:
            self.batches = None  # larger than planned: a later pass recomputes them
            return
        if layer == 0:
            self.batches.append((items, []))
        # The site's input is a fresh tensor the model drops after the down projection:
        # holding it costs no copy. A view of a larger tensor would hold all of it: copied.
        whole = x.untyped_storage().nbytes() == x.numel() * x.element_size()
        self.batches[-1][1].append(x.detach() if whole else x.detach().clone())


class StatsCollection(SumsLoop):
    """One loop of statistics collection: stream ``sums`` over the units of ``sites`` (side by
    side, one forward), after the activations ``replay`` kept; ``keep_into`` keeps this loop's."""

    def __init__(
        self,
        loaded: LoadedModel,
        sums: ItemSums,
        *,
        keep_into: KeptActivations | None = None,
        replay: KeptActivations | None = None,
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


def pilot_items(n_items: int, count: int) -> list[int]:
    """``count`` of the ``n_items`` items (``neurons.memory.pilot_size``), spread over the data.

    Item ``k`` of the pilot sits at the fractional part of ``k`` times the golden ratio: evenly
    spread, yet never in step with a period of the data (a mixture interleaving its domains).
    """
    count = min(n_items, count)
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
    **kept: KeptActivations | None,
) -> dict[str, torch.Tensor]:
    module = StatsCollection(loaded, sums, sites=sites, **kept)
    trainer = make_trainer(trainer_cfg, stage, use_distributed_sampler=False)
    run_loop(trainer, module, _loader_over(loader, indices))
    return module.result


def item_positions(loaded: LoadedModel, dataset: Any) -> int | None:
    """Activations per item and neuron: a text block's length, or a ViT's patches and its
    class token; None when neither the data nor the model's config says."""
    first = dataset[0]
    if isinstance(first, dict) and "input_ids" in first:
        return int(first["input_ids"].shape[-1])
    config = loaded.model.config
    image, patch = getattr(config, "image_size", None), getattr(config, "patch_size", None)
    if isinstance(image, int) and isinstance(patch, int):
        return (image // patch) ** 2 + 1
    return None


def activation_bytes(loaded: LoadedModel, trainer_cfg: Any) -> int:
    """Bytes per activation: 2 under 16-bit ``*-true`` precision or 16-bit weights, else 4
    (an upper bound: mixed precision computes some activations in 16 bits)."""
    precision = str(trainer_arguments(trainer_cfg).get("precision", "32-true"))
    weights = next((p.dtype for p in loaded.model.parameters() if p.is_floating_point()), None)
    half = precision in ("bf16-true", "16-true") or weights in (torch.float16, torch.bfloat16)
    return 2 if half else 4


def collection_device(trainer_cfg: Any) -> str:
    """``gpu`` when the loops run on a GPU, else ``cpu``: where the activations live."""
    accelerator = str(trainer_arguments(trainer_cfg).get("accelerator", "auto"))
    if accelerator == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    return "gpu" if accelerator in ("gpu", "cuda") else "cpu"


def plan_for(
    loaded: LoadedModel,
    loader: DataLoader,
    trainer_cfg: Any,
    budget: int | None,
    histogram: bool,
    keep: bool = True,
    n_units: int | None = None,
) -> CollectionPlan:
    """The collection's plan, from its token count and the budget (default: a share of free
    memory where the activations live)."""
    adapter, n_items = loaded.adapter, len(loader.dataset)
    if budget is None:
        budget = memory_budget(None, collection_device(trainer_cfg))
    positions = item_positions(loaded, loader.dataset)
    return plan_collection(
        adapter.n_layers,
        adapter.n_neurons if n_units is None else n_units,
        n_items,
        positions if positions is not None else 0,
        activation_bytes(loaded, trainer_cfg),
        budget,
        batch_items=loader.batch_size or 1,
        histogram=histogram,
        keep=keep and positions is not None,
    )


def _exact_from_kept(stats: CollectedStats, kept: KeptActivations) -> dict[str, torch.Tensor]:
    """The exact MAD sums around the final means, from the kept activations (then freed)."""
    device = kept.batches[0][1][0].device
    exact = ExactMadSums(*exact_means(stats)).to(device)
    with torch.inference_mode():
        for items, layers in kept.batches:
            exact.add_items(items, layers[0].numel() // (len(items.half) * layers[0].shape[-1]))
            for layer, x in enumerate(layers):
                exact.update(layer, x, items)
    kept.batches = None
    return exact.compute()


def collect_statistics(
    loaded: LoadedModel,
    loader: DataLoader,
    trainer_cfg: Any,
    *,
    mad_tolerance: float = 1e-4,
    stage: str = "collect",
    sites: Sequence[str] = ("mlp",),
    memory_budget: int | None = None,
    keep_activations: bool = True,
) -> CollectedStats:
    """Unit statistics of every item of ``loader`` (a map-style dataset), per half and whole.

    ``sites`` are read in the same forward, their units side by side in the statistics
    (``modularity.neurons.sites.split_statistics`` separates them).

    With one forward pass: exact (``method="kept"``: moments, then deviations around the
    final means) when the activations fit ``memory_budget`` bytes (default: a quarter of
    free memory where they live) and ``keep_activations`` allows keeping them; otherwise
    one pass with an error bound (``"one-pass"``) when its relative bound is within
    ``mad_tolerance`` for every neuron with a non-negligible MAD, and an exact second pass
    (``"two-pass"``) otherwise. ``mad_tolerance=0``
    skips the pilot and the histogram (exact, two passes unless kept), ``inf`` never makes
    the second pass.
    """
    n_layers, n_neurons = loaded.adapter.n_layers, sum(site_widths(loaded.adapter, sites))
    everything = range(len(loader.dataset))
    if len(everything) == 0:
        raise ValueError("no items to collect statistics on")
    plan = plan_for(
        loaded, loader, trainer_cfg, memory_budget, mad_tolerance > 0, keep_activations, n_neurons
    )
    log.info("%s: %s", stage, plan.describe())
    if plan.keep:
        kept = KeptActivations(plan.kept_bytes)
        sums = _stream(
            loaded,
            loader,
            everything,
            trainer_cfg,
            OnePassSums(n_layers, n_neurons),
            stage,
            sites,
            keep_into=kept,
        )
        stats = one_pass_statistics(sums, None)
        if kept.batches is not None:
            return with_exact_mad(stats, _exact_from_kept(stats, kept), "kept")
        log.warning("%s: activations outgrew the plan; the exact MAD takes a second pass", stage)
    else:
        bins, main, replay = None, everything, None
        if mad_tolerance > 0:
            pilot = pilot_items(len(everything), plan.pilot_items)
            kept = KeptActivations(plan.kept_bytes)
            pilot_sums = PilotSums(n_layers, n_neurons)
            pilot_stage = f"{stage} (pilot)"
            bins = pilot_bins(
                _stream(
                    loaded,
                    loader,
                    pilot,
                    trainer_cfg,
                    pilot_sums,
                    pilot_stage,
                    sites,
                    keep_into=kept,
                ),
                plan.bins,
            )
            if plan.kept_bytes and kept.batches is not None:
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
