"""Statistics collection: a Lightning loop that streams per-neuron sums over a task's data."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from modularity.models.loading import LoadedModel
from modularity.neurons.masks import neuron_hooks
from modularity.neurons.stats import NeuronStats, NeuronStatsAccumulator, stats_from_sums
from modularity.trainer import make_trainer, model_inputs


class StatsCollection(L.LightningModule):
    """One pass of statistics collection: moments, or |x - center| sums when centred."""

    def __init__(self, loaded: LoadedModel, center: torch.Tensor | None = None) -> None:
        super().__init__()
        self.net = loaded.model
        self.adapter = loaded.adapter
        self.accumulator = NeuronStatsAccumulator(
            self.adapter.n_layers, self.adapter.n_neurons, center=center
        )

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        mask = batch.get("attention_mask")
        keep = None if mask is None else mask.bool()

        def record(layer: int, x: torch.Tensor) -> None:
            self.accumulator.update(layer, x, keep)

        with neuron_hooks(self.adapter, record):
            # The backbone only: the head (an LM's vocabulary projection, up to half the
            # cost of a small LM's forward) has no MLP neurons to record.
            self.net.base_model(**model_inputs(batch))


def collect_statistics(loaded: LoadedModel, loader: DataLoader, trainer_cfg: Any) -> NeuronStats:
    """Two passes over ``loader``: moments first, then the exact MAD around their mean."""
    first = StatsCollection(loaded)
    make_trainer(trainer_cfg).test(first, dataloaders=loader, verbose=False)
    moments = first.accumulator.compute()
    mean = moments["sum"] / moments["count"].clamp_min(1)
    second = StatsCollection(loaded, center=mean)
    make_trainer(trainer_cfg).test(second, dataloaders=loader, verbose=False)
    return stats_from_sums(moments, second.accumulator.compute())
