"""The steps every analysis shares (load, sample, collect, select, evaluate), cached on disk.

Every cached value is keyed by everything that determines it: the model's identity (weights,
dtype, checkpoint, twin seed), the compute settings (precision, device type), the data's
definition and role, the split, sizes, and a digest of the code that computes it
(``modularity.infra.code_version``). So a sweep collects once per model and task, whatever its
fractions, scorers and layer choices, and a changed setting or producing code never reuses a
stale value.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from modularity.algorithms.set_overlap import intersection_null, jaccard
from modularity.collect import collect_statistics, collection_device
from modularity.config import choice, load_task_config, with_data_settings
from modularity.data.reference import text_reference
from modularity.data.sources import source_identity
from modularity.data.tasks import image_loader, text_loader, text_sample
from modularity.errors import ConfigError
from modularity.evaluate import UnitSums, evaluate, most_frequent_tokens
from modularity.infra.cache import StatsCache
from modularity.infra.code_version import code_version
from modularity.models.loading import LoadedModel, load_model
from modularity.neurons.masks import ablate
from modularity.neurons.memory import memory_budget
from modularity.neurons.scoring import score_neurons
from modularity.neurons.selection import check_layers, select_top_fraction
from modularity.neurons.sites import site_of, site_widths, split_statistics
from modularity.neurons.stats import CollectedStats, NeuronStats

log = logging.getLogger(__name__)

# What computes each kind of cached value: the digest of their code (and of the package
# modules they import) is the value's version in its key.
PRODUCERS: dict[str, tuple[Callable[..., Any], ...]] = {
    "tokens": (text_sample,),
    "stats": (collect_statistics, split_statistics, text_sample, image_loader),
    "frequent_tokens": (most_frequent_tokens, text_sample),
    "baseline": (evaluate, text_sample, image_loader),
}


@dataclass(frozen=True)
class DataSpec:
    """What one loader reads: a task config in the role of task or reference, and, for an
    image reference, the task whose classes it leaves out."""

    config: DictConfig
    role: str  # "task" | "reference"
    excluding: DictConfig | None = None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def is_text(self) -> bool:
        return choice(self.config.kind) == "text"

    def split(self, split: str) -> str:
        """Text references read their own document pools, disjoint from every task's."""
        return f"reference_{split}" if self.role == "reference" and self.is_text else split

    def identity(self) -> dict[str, Any]:
        return {
            "task": plain(self.config, drop=("description",)),
            "source": source_identity(self.config),
            "role": self.role,
            "excluding": None if self.excluding is None else self.excluding.name,
            "excluded_classes": None if self.excluding is None else list(self.excluding.classes),
        }


@dataclass(frozen=True)
class Selection:
    """A task's neuron scores, the selected mask, and how stable the selection is.

    ``stability`` is the Jaccard of the sets selected from the two halves of the collection
    data (split by document or image); ``chance_stability`` what two random sets of the same
    per-layer sizes would give.
    """

    scores: torch.Tensor  # [layers, neurons] float64
    mask: torch.Tensor  # [layers, neurons] bool
    stability: float
    chance_stability: float


def plain(node: DictConfig, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """A config node as JSON values (Enums as their names), for cache keys and metadata."""
    out = OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    for key in drop:
        out.pop(key, None)
    return out


def compute_identity(trainer_cfg: DictConfig) -> dict[str, str]:
    """What, besides model and data, changes a computed value: precision and device type."""
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    if accelerator == "auto":
        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    return {"precision": str(trainer_cfg.get("precision", "32-true")), "device": accelerator}


class Pipeline:
    """One model, its cache, and the shared steps of every analysis."""

    def __init__(self, cfg: DictConfig, model_cfg: DictConfig | None = None) -> None:
        self.cfg = cfg
        self.model_cfg = model_cfg if model_cfg is not None else cfg.model
        self.cache = StatsCache(cfg.cache.dir, enabled=cfg.cache.enabled)
        self.loaded: LoadedModel = load_model(self.model_cfg)
        check_layers(cfg.layers, self.adapter.n_layers)
        self.site = choice(cfg.get("site", "mlp"))
        # Units per layer of the run's site; a family without that site fails here, in a line.
        self.n_units = site_of(self.site).width(self.adapter)

    def with_data(self, **sizes: int) -> Pipeline:
        """This pipeline, sharing its loaded model and cache, with other ``data`` settings
        (e.g. ``collect_size``): what an analysis that varies the sample sizes needs."""
        other = copy.copy(self)
        other.cfg = OmegaConf.merge(self.cfg, {"data": sizes})
        return other

    @property
    def adapter(self):  # noqa: ANN201 - ModelAdapter
        return self.loaded.adapter

    @cached_property
    def tokenizer_id(self) -> dict[str, Any]:
        return tokenizer_identity(self.loaded.tokenizer)

    # ----------------------------------------------------------------------- data

    def task(self, name: str) -> DataSpec:
        """Task ``name`` with the run's ``data`` settings, in the role of task."""
        return DataSpec(load_task_config(name, self.cfg.data), "task")

    def main_task(self) -> DataSpec:
        """The run's ``task`` node (with any command-line edits) as a task."""
        return DataSpec(with_data_settings(self.cfg.task, self.cfg.data), "task")

    def reference_of(self, task: DataSpec) -> DataSpec:
        """The task's reference: for images the classes the task does not keep; for text
        general data from the reference pools, without the task's domains if
        ``data.exclude_from_reference=domain`` (``modularity.data.reference``)."""
        reference = load_task_config(task.config.reference, self.cfg.data)
        if not task.is_text:
            return DataSpec(reference, "reference", excluding=task.config)
        exclude = choice(self.cfg.data.exclude_from_reference)
        return DataSpec(text_reference(task.config, reference, exclude), "reference")

    def _key(self, kind: str, version: str | None = None, **parts: Any) -> tuple[str, dict]:
        meta = {
            "kind": kind,
            "version": code_version(*PRODUCERS[kind]) if version is None else version,
            "model": self.loaded.identity,
            "compute": compute_identity(self.cfg.trainer),
            **parts,
        }
        return self.cache.key(**meta), meta

    def cached(
        self, kind: str, compute: Callable[[], dict[str, torch.Tensor]], **parts: Any
    ) -> dict[str, torch.Tensor]:
        """An analysis's own product of this model (e.g. expert labels), cached like the
        statistics: keyed by the model, ``kind``, ``parts`` and the digest of ``compute``'s
        module and the package modules it imports."""
        key, meta = self._key(kind, code_version(compute), **parts)
        return self.cache.get_or_compute(key, compute, meta)[0]

    def _block_size(self, spec: DataSpec) -> int:
        limit = self.model_cfg.max_length or getattr(
            self.loaded.model.config, "max_position_embeddings", None
        )
        return min(spec.config.block_size, limit) if limit else spec.config.block_size

    def text_blocks(self, spec: DataSpec, split: str) -> dict[str, torch.Tensor]:
        """Tokenised blocks of a text split (``input_ids``, ``unit``, ``half``), cached on
        disk beside the statistics: a sweep tokenises each task and split once."""
        size = spec.config.collect_size if split == "collect" else spec.config.eval_size
        block = self._block_size(spec)
        meta = {
            "kind": "tokens",
            "version": code_version(*PRODUCERS["tokens"]),
            "tokenizer": self.tokenizer_id,
            "data": spec.identity(),
            "split": spec.split(split),
            "block_size": block,
            "size": size,
        }
        key = self.cache.key(**meta)

        def compute() -> dict[str, torch.Tensor]:
            log.info("tokenising %s tokens of %s (%s split)", f"{size:,}", spec.name, split)
            return text_sample(spec.config, spec.split(split), self.loaded.tokenizer, block, size)

        blocks, _ = self.cache.get_or_compute(key, compute, meta, check=check_blocks)
        return blocks

    def loader(self, spec: DataSpec, split: str) -> tuple[DataLoader, int]:
        """A DataLoader over one split of ``spec`` and the number of its evaluation units."""
        expected = "image" if self.loaded.kind == "image_classifier" else "text"
        if choice(spec.config.kind) != expected:
            raise ConfigError(
                f"task {spec.name!r} has {choice(spec.config.kind)} inputs; this model takes "
                f"{expected}"
            )
        batch = self.model_cfg.batch_size
        if spec.is_text:
            blocks = self.text_blocks(spec, split)
            return text_loader(blocks, batch), int(blocks["unit"].max()) + 1
        return image_loader(
            spec.config, spec.split(split), self.loaded.image_processor, batch, spec.excluding
        )

    def sample_sizes(self, spec: DataSpec, split: str) -> dict[str, int]:
        """How much data a split actually used: items (blocks or images), units (documents or
        images) and, for text, tokens."""
        if spec.is_text:
            blocks = self.text_blocks(spec, split)
            return {
                "items": int(blocks["input_ids"].shape[0]),
                "units": int(blocks["unit"].unique().numel()),
                "tokens": int(blocks["input_ids"].numel()),
            }
        loader, _ = self.loader(spec, split)
        return {"items": len(loader.dataset), "units": len(loader.dataset)}

    # ----------------------------------------------------------------------- statistics

    def statistics(self, spec: DataSpec, site: str | None = None) -> CollectedStats:
        """Unit statistics of ``site`` (default: the run's) on the collection split of
        ``spec`` (cached)."""
        site = self.site if site is None else site
        return self.site_statistics(spec, (site,))[site]

    def site_statistics(self, spec: DataSpec, sites: tuple[str, ...]) -> dict[str, CollectedStats]:
        """Statistics of several sites on the collection split of ``spec``: cached per site,
        the missing ones collected together in one forward per item."""
        out: dict[str, CollectedStats] = {}
        keys = {}
        for site, width in zip(sites, site_widths(self.adapter, sites)):
            keys[site] = self._key(
                "stats", data=spec.identity(), split=spec.split("collect"), site=site
            )
            shape = (self.adapter.n_layers, width)
            tensors = self.cache.get(keys[site][0], check=_stats_check(shape))
            if tensors is not None:
                out[site] = CollectedStats.from_tensors(tensors)
        missing = tuple(site for site in sites if site not in out)
        if missing:
            loader, _ = self.loader(spec, "collect")
            stage = f"collect {spec.name}" + (
                "" if missing == ("mlp",) else f" ({', '.join(missing)})"
            )
            budget = memory_budget(
                self.cfg.collection.memory_gib, collection_device(self.cfg.trainer)
            )
            stats = collect_statistics(
                self.loaded,
                loader,
                self.cfg.trainer,
                stage=stage,
                sites=missing,
                memory_budget=budget,
            )
            for site, collected in split_statistics(stats, self.adapter, missing).items():
                key, meta = keys[site]
                self.cache.put(key, collected.to_tensors(), meta)
                out[site] = collected
        return {site: out[site] for site in sites}

    def scores(self, task: NeuronStats, reference: NeuronStats) -> torch.Tensor:
        scoring = self.cfg.scoring
        return score_neurons(task, reference, choice(scoring.scorer), scoring.eps, scoring.seed)

    def select(
        self, task: DataSpec, fraction: float | None = None, site: str | None = None
    ) -> Selection:
        """Score ``task``'s units of ``site`` (default: the run's) against its reference,
        select the top fraction, and measure the selection's split-half stability from the
        two halves of both collections."""
        fraction = self.cfg.selection.fraction if fraction is None else fraction
        task_stats = self.statistics(task, site)
        ref_stats = self.statistics(self.reference_of(task), site)

        def pick(t: NeuronStats, r: NeuronStats) -> tuple[torch.Tensor, torch.Tensor]:
            scores = self.scores(t, r)
            mask = select_top_fraction(
                scores, fraction, choice(self.cfg.selection.scope), self.cfg.layers
            )
            return scores, mask

        scores, mask = pick(task_stats.full, ref_stats.full)
        halves = [pick(task_stats.halves[i], ref_stats.halves[i])[1] for i in (0, 1)]
        return Selection(
            scores=scores,
            mask=mask,
            stability=jaccard(*halves),
            chance_stability=float(intersection_null(*halves).expected_jaccard),
        )

    # ----------------------------------------------------------------------- evaluation

    def frequent_tokens(self, reference: DataSpec) -> torch.Tensor | None:
        """The reference collection data's most frequent tokens (for the skip metrics)."""
        if self.loaded.kind != "causal_lm":
            return None
        key, meta = self._key("frequent_tokens", data=reference.identity())
        vocab = self.loaded.model.config.vocab_size

        def compute() -> dict[str, torch.Tensor]:
            blocks = self.text_blocks(reference, "collect")["input_ids"]
            return {"tokens": most_frequent_tokens(blocks)}

        def check(tensors: dict[str, torch.Tensor]) -> None:
            tokens = tensors["tokens"]
            if tokens.dtype != torch.long or tokens.ndim != 1:
                raise ValueError(f"tokens must be a 1-D long tensor, got {tokens.dtype}")
            if tokens.numel() and not (int(tokens.min()) >= 0 and int(tokens.max()) < vocab):
                raise ValueError(f"token ids outside the vocabulary [0, {vocab})")

        return self.cache.get_or_compute(key, compute, meta, check=check)[0]["tokens"]

    def evaluate(
        self,
        task: DataSpec,
        reference: DataSpec,
        mask: torch.Tensor | None = None,
        sides: tuple[str, ...] = ("task", "reference"),
        site: str | None = None,
    ) -> dict[str, UnitSums]:
        """Per-unit metric sums on the evaluation splits, with ``mask`` (units of ``site``,
        default: the run's) ablated."""
        site = self.site if site is None else site
        frequent = self.frequent_tokens(reference)
        specs = {"task": task, "reference": reference}
        means = None
        if mask is not None and choice(self.cfg.ablation.mode) == "mean":
            means = self.ablation_means(reference, site)
        masked = (
            nullcontext()
            if mask is None
            else ablate(self.adapter, mask, choice(self.cfg.ablation.mode), means, site)
        )
        out = {}
        with masked:
            for side in sides:
                loader, units = self.loader(specs[side], "evaluate")
                stage = f"evaluate {specs[side].name}" + (" (pruned)" if mask is not None else "")
                out[side] = evaluate(self.loaded, loader, units, self.cfg.trainer, frequent, stage)
        return out

    def ablation_means(self, reference: DataSpec, site: str | None = None) -> torch.Tensor:
        """What mean ablation puts in place of ``site``'s units (default: the run's): the
        reference means of the site's module input columns (``[layers, columns]``; for heads
        the attention neurons' means)."""
        site = self.site if site is None else site
        return self.statistics(reference, site_of(site).means_site).full.mean

    def baseline(self, task: DataSpec, reference: DataSpec) -> dict[str, UnitSums]:
        """Unpruned per-unit sums, cached per side: every fraction of a sweep shares them,
        and every text task of a sweep shares its reference's."""
        out = {}
        for side, spec in (("task", task), ("reference", reference)):
            # The skip metrics depend on the reference's frequent tokens.
            key, meta = self._key(
                "baseline", data=spec.identity(), against=reference.identity(), side=side
            )

            def compute(side: str = side) -> dict[str, torch.Tensor]:
                return self.evaluate(task, reference, sides=(side,))[side].to_tensors()

            tensors, _ = self.cache.get_or_compute(key, compute, meta, check=check_unit_sums)
            out[side] = UnitSums.from_tensors(tensors)
        return out


def tokenizer_identity(tokenizer: Any) -> dict[str, Any]:
    """What determines tokenisation: the tokenizer's class and a hash of its full
    definition (vocabulary and merges of a fast tokenizer), not where it was loaded from."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    definition = (
        backend.to_str()
        if backend is not None
        else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    )
    return {
        "class": type(tokenizer).__name__,
        "sha256": hashlib.sha256(definition.encode()).hexdigest()[:24],
        "eos": tokenizer.eos_token_id,
    }


def _stats_check(shape: tuple[int, int]) -> Any:
    """The cache check of statistics ``[layers, units]`` of one site."""

    def check(tensors: dict[str, torch.Tensor]) -> None:
        stats = CollectedStats.from_tensors(tensors)
        if stats.full.shape != shape:
            raise ValueError(f"statistics of shape {stats.full.shape}, the site has {shape}")

    return check


def check_blocks(tensors: dict[str, torch.Tensor]) -> None:
    ids, unit, half = tensors["input_ids"], tensors["unit"], tensors["half"]
    if ids.ndim != 2 or unit.shape != (ids.shape[0],) or half.shape != (ids.shape[0],):
        raise ValueError(f"block shapes disagree: {ids.shape}, {unit.shape}, {half.shape}")
    if ids.numel() and int(ids.min()) < 0:
        raise ValueError("negative token ids")


def check_unit_sums(tensors: dict[str, torch.Tensor]) -> None:
    sums = UnitSums.from_tensors(tensors)
    for measure, num in sums.num.items():
        den = sums.den[measure]
        if num.shape != den.shape or not torch.isfinite(num).all() or (den < 0).any():
            raise ValueError(f"unit sums of {measure!r} are malformed")
