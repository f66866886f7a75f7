"""Unit statistics of data specs: read from the store, else collected in one forward per
item for every missing site at once, and stored."""

from __future__ import annotations

from omegaconf import DictConfig

from modularity.collect import collect_statistics, collection_device
from modularity.infra.code_version import code_version
from modularity.models.handle import ModelHandle
from modularity.neurons.memory import memory_budget
from modularity.neurons.sites import site_of, site_widths, split_statistics
from modularity.neurons.stats import CollectedStats
from modularity.pipeline.data import DataSpec
from modularity.pipeline.inputs import Inputs
from modularity.pipeline.store import StatisticsStore, stats_check


class SiteStatistics:
    """Statistics of one model's sites on the collection split of data specs."""

    def __init__(
        self,
        cfg: DictConfig,
        model: ModelHandle,
        store: StatisticsStore,
        inputs: Inputs,
    ) -> None:
        self.cfg = cfg
        self.model = model
        self.store = store
        self.inputs = inputs

    def of_sites(self, spec: DataSpec, sites: tuple[str, ...]) -> dict[str, CollectedStats]:
        """Statistics of several sites on the collection split of ``spec``: cached per site,
        the missing ones collected together in one forward per item."""
        structure = self.model.structure
        out: dict[str, CollectedStats] = {}
        keys = {}
        for site, width in zip(sites, site_widths(structure, sites)):
            keys[site] = self.store.key(
                "stats",
                data=spec.identity(),
                split=spec.split("collect"),
                site=site,
                # A site of another package: its own code reads the units, so it versions them.
                site_code=code_version(type(site_of(site))),
            )
            tensors = self.store.get(keys[site], check=stats_check((structure.n_layers, width)))
            if tensors is not None:
                out[site] = CollectedStats.from_tensors(tensors)
        missing = tuple(site for site in sites if site not in out)
        if missing:
            loader, _ = self.inputs.loader(spec, "collect")
            stage = f"collect {spec.name}" + (
                "" if missing == ("mlp",) else f" ({', '.join(missing)})"
            )
            budget = memory_budget(
                self.cfg.collection.memory_gib, collection_device(self.cfg.trainer)
            )
            loaded = self.model.loaded
            stats = collect_statistics(
                loaded,
                loader,
                self.cfg.trainer,
                stage=stage,
                sites=missing,
                memory_budget=budget,
            )
            for site, collected in split_statistics(stats, loaded.adapter, missing).items():
                self.store.put(keys[site], collected.to_tensors())
                out[site] = collected
        return {site: out[site] for site in sites}
