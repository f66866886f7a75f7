"""``Pipeline``: the steps every analysis shares, composed from parts with one job each.

Data (:mod:`.data`), inputs (:mod:`.inputs`), the statistics store that owns cache keys
(:mod:`.store`), statistics (:mod:`.statistics`), selection (:mod:`.selection`) and
evaluation (:mod:`.evaluation`), over one model (:class:`ModelHandle`) whose weights load
only when a step runs it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from modularity.config import choice
from modularity.evaluate import UnitSums
from modularity.infra.cache import StatsCache
from modularity.models.adapter import ModelAdapter
from modularity.models.cache import ModelCache
from modularity.models.handle import ModelHandle
from modularity.models.loading import LoadedModel
from modularity.neurons.selection import check_layers
from modularity.neurons.sites import site_of
from modularity.neurons.stats import CollectedStats, NeuronStats
from modularity.pipeline.data import DataSpec, RunData
from modularity.pipeline.evaluation import Evaluator
from modularity.pipeline.inputs import Inputs
from modularity.pipeline.selection import Selection, Selector
from modularity.pipeline.statistics import SiteStatistics
from modularity.pipeline.store import StatisticsStore


class Pipeline:
    """One model, its cache, and the shared steps of every analysis.

    ``models`` is the run's model cache (its jobs and steps share loaded models through
    it); without one the pipeline keeps its model to itself.
    """

    def __init__(
        self,
        cfg: DictConfig,
        model_cfg: DictConfig | None = None,
        models: ModelCache | None = None,
    ) -> None:
        self.cfg = cfg
        self.model_cfg = model_cfg if model_cfg is not None else cfg.model
        self.model = ModelHandle(self.model_cfg, models if models is not None else ModelCache())
        self.store = StatisticsStore(
            StatsCache(cfg.cache.dir, enabled=cfg.cache.enabled), self.model, cfg.trainer
        )
        self.inputs = Inputs(self.model, self.store)
        check_layers(cfg.layers, self.model.structure.n_layers)
        self.site = choice(cfg.get("site", "mlp"))
        # Units per layer of the run's site; a family without that site fails here, in a line.
        self.n_units = site_of(self.site).width(self.model.structure)
        self._compose()

    def _compose(self) -> None:
        """The parts that read the run's data, selection and evaluation settings."""
        self.data = RunData(self.cfg)
        self.site_stats = SiteStatistics(self.cfg, self.model, self.store, self.inputs)
        self.selector = Selector(self.cfg, self.statistics, self.data.reference_of)
        self.evaluator = Evaluator(
            self.cfg, self.site, self.model, self.store, self.inputs, self.statistics
        )

    def with_data(self, **sizes: int) -> Pipeline:
        """This pipeline, sharing its model and cache, with other ``data`` settings (e.g.
        ``collect_size``): what an analysis that varies the sample sizes needs."""
        other = copy.copy(self)
        other.cfg = OmegaConf.merge(self.cfg, {"data": sizes})
        other._compose()
        return other

    def for_model(self, model_cfg: DictConfig) -> Pipeline:
        """A pipeline of the same run (settings, cache, loaded models) for another model,
        e.g. a random twin or a training checkpoint."""
        return Pipeline(self.cfg, model_cfg, self.model.models)

    # ----------------------------------------------------------------------- model

    @property
    def loaded(self) -> LoadedModel:
        """The model with its weights, loaded on first use."""
        return self.model.loaded

    @property
    def adapter(self) -> ModelAdapter:
        return self.model.loaded.adapter

    # ----------------------------------------------------------------------- data

    def task(self, name: str) -> DataSpec:
        return self.data.task(name)

    def main_task(self) -> DataSpec:
        return self.data.main_task()

    def reference_of(self, task: DataSpec) -> DataSpec:
        return self.data.reference_of(task)

    def text_blocks(self, spec: DataSpec, split: str) -> dict[str, torch.Tensor]:
        return self.inputs.text_blocks(spec, split)

    def loader(self, spec: DataSpec, split: str) -> tuple[DataLoader, int]:
        return self.inputs.loader(spec, split)

    def sample_sizes(self, spec: DataSpec, split: str) -> dict[str, int]:
        return self.inputs.sample_sizes(spec, split)

    # ----------------------------------------------------------------------- statistics

    def cached(
        self, kind: str, compute: Callable[[], dict[str, torch.Tensor]], **parts: Any
    ) -> dict[str, torch.Tensor]:
        return self.store.cached(kind, compute, **parts)

    def statistics(self, spec: DataSpec, site: str | None = None) -> CollectedStats:
        """Unit statistics of ``site`` (default: the run's) on the collection split of
        ``spec`` (cached)."""
        site = self.site if site is None else site
        return self.site_stats.of_sites(spec, (site,))[site]

    def site_statistics(self, spec: DataSpec, sites: tuple[str, ...]) -> dict[str, CollectedStats]:
        return self.site_stats.of_sites(spec, sites)

    # ----------------------------------------------------------------------- selection

    def scores(self, task: NeuronStats, reference: NeuronStats) -> torch.Tensor:
        return self.selector.scores(task, reference)

    def select(
        self, task: DataSpec, fraction: float | None = None, site: str | None = None
    ) -> Selection:
        return self.selector.select(task, fraction, site)

    # ----------------------------------------------------------------------- evaluation

    def frequent_tokens(self, reference: DataSpec) -> torch.Tensor | None:
        return self.evaluator.frequent_tokens(reference)

    def evaluate(
        self,
        task: DataSpec,
        reference: DataSpec,
        mask: torch.Tensor | None = None,
        sides: tuple[str, ...] = ("task", "reference"),
        site: str | None = None,
    ) -> dict[str, UnitSums]:
        return self.evaluator.evaluate(task, reference, mask, sides, site)

    def ablation_means(self, reference: DataSpec, site: str | None = None) -> torch.Tensor:
        return self.evaluator.ablation_means(reference, site)

    def baseline(self, task: DataSpec, reference: DataSpec) -> dict[str, UnitSums]:
        return self.evaluator.baseline(task, reference)
