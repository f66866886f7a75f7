"""Evaluation of one model on the held-out splits, with or without units ablated; the
unpruned baseline and the reference's frequent tokens are cached."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import torch
from omegaconf import DictConfig

from modularity.config import choice
from modularity.evaluate import UnitSums, evaluate, most_frequent_tokens
from modularity.models.handle import ModelHandle
from modularity.neurons.masks import ablate
from modularity.neurons.sites import site_of
from modularity.neurons.stats import CollectedStats
from modularity.pipeline.data import DataSpec
from modularity.pipeline.inputs import Inputs
from modularity.pipeline.store import StatisticsStore, check_unit_sums, tokens_check


class Evaluator:
    """Per-unit metric sums of one model on data specs' evaluation splits."""

    def __init__(
        self,
        cfg: DictConfig,
        site: str,
        model: ModelHandle,
        store: StatisticsStore,
        inputs: Inputs,
        statistics: Callable[[DataSpec, str | None], CollectedStats],
    ) -> None:
        self.cfg = cfg
        self.site = site
        self.model = model
        self.store = store
        self.inputs = inputs
        self.statistics = statistics

    def frequent_tokens(self, reference: DataSpec) -> torch.Tensor | None:
        """The reference collection data's most frequent tokens (for the skip metrics)."""
        if not self.model.modality.tokens:
            return None
        key = self.store.key("frequent_tokens", data=reference.identity())

        def compute() -> dict[str, torch.Tensor]:
            blocks = self.inputs.text_blocks(reference, "collect")["input_ids"]
            return {"tokens": most_frequent_tokens(blocks)}

        check = tokens_check(self.model.hf_config.vocab_size)
        return self.store.get_or_compute(key, compute, check=check)["tokens"]

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
        mode = choice(self.cfg.ablation.mode)
        if mask is not None and mode == "mean":
            means = self.ablation_means(reference, site)
        loaded = self.model.loaded
        masked = nullcontext() if mask is None else ablate(loaded.adapter, mask, mode, means, site)
        out = {}
        with masked:
            for side in sides:
                loader, units = self.inputs.loader(specs[side], "evaluate")
                stage = f"evaluate {specs[side].name}" + (" (pruned)" if mask is not None else "")
                out[side] = evaluate(loaded, loader, units, self.cfg.trainer, frequent, stage)
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
            key = self.store.key(
                "baseline", data=spec.identity(), against=reference.identity(), side=side
            )

            def compute(side: str = side) -> dict[str, torch.Tensor]:
                return self.evaluate(task, reference, sides=(side,))[side].to_tensors()

            out[side] = UnitSums.from_tensors(
                self.store.get_or_compute(key, compute, check=check_unit_sums)
            )
        return out
