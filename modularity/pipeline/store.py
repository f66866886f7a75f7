"""The statistics store: every cached value of a run, under a key it composes itself.

A key holds everything that determines its value: the model's identity (weights, dtype,
checkpoint, twin seed), the compute settings (precision, device type), the data's
definition and role, the split, sizes, and a digest of the code that computes it
(``modularity.infra.code_version``). So a sweep collects once per model and task, whatever
its fractions, scorers and layer choices, and a changed setting or producing code never
reuses a stale value. Reading an entry needs the model's identity, never its weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from omegaconf import DictConfig

from modularity.collect import collect_statistics
from modularity.data.tasks import image_loader, text_sample
from modularity.evaluate import UnitSums, evaluate, most_frequent_tokens
from modularity.infra.cache import StatsCache
from modularity.infra.code_version import code_version
from modularity.models.handle import ModelHandle
from modularity.neurons.sites import split_statistics
from modularity.neurons.stats import CollectedStats

Tensors = dict[str, torch.Tensor]
Check = Callable[[Tensors], None]
Key = tuple[str, dict[str, Any]]  # the key and the metadata stored beside the entry

# What computes each kind of cached value: the digest of their code (and of the package
# modules they import) is the value's version in its key.
PRODUCERS: dict[str, tuple[Callable[..., Any], ...]] = {
    "tokens": (text_sample,),
    "stats": (collect_statistics, split_statistics, text_sample, image_loader),
    "frequent_tokens": (most_frequent_tokens, text_sample),
    "baseline": (evaluate, text_sample, image_loader),
}


def compute_identity(trainer_cfg: DictConfig) -> dict[str, str]:
    """What, besides model and data, changes a computed value: precision and device type."""
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    if accelerator == "auto":
        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    return {"precision": str(trainer_cfg.get("precision", "32-true")), "device": accelerator}


class StatisticsStore:
    """The run's on-disk cache with the keys of one model under one compute setting."""

    def __init__(self, cache: StatsCache, model: ModelHandle, trainer_cfg: DictConfig) -> None:
        self.cache = cache
        self.model = model
        self.trainer_cfg = trainer_cfg

    def key(self, kind: str, version: str | None = None, **parts: Any) -> Key:
        """The key of a value of this model: ``kind`` (one of ``PRODUCERS``, or any with
        ``version``), the model and compute identities, and ``parts``."""
        meta = {
            "kind": kind,
            "version": code_version(*PRODUCERS[kind]) if version is None else version,
            "model": self.model.identity,
            "compute": compute_identity(self.trainer_cfg),
            **parts,
        }
        return self.cache.key(**meta), meta

    def tokens_key(self, tokenizer: dict[str, Any], **parts: Any) -> Key:
        """The key of tokenised text: the tokenizer's identity, not the model's."""
        meta = {
            "kind": "tokens",
            "version": code_version(*PRODUCERS["tokens"]),
            "tokenizer": tokenizer,
            **parts,
        }
        return self.cache.key(**meta), meta

    def get(self, key: Key, check: Check | None = None) -> Tensors | None:
        return self.cache.get(key[0], check=check)

    def put(self, key: Key, tensors: Tensors) -> None:
        self.cache.put(key[0], tensors, key[1])

    def get_or_compute(
        self, key: Key, compute: Callable[[], Tensors], check: Check | None = None
    ) -> Tensors:
        return self.cache.get_or_compute(key[0], compute, key[1], check=check)[0]

    def cached(self, kind: str, compute: Callable[[], Tensors], **parts: Any) -> Tensors:
        """An analysis's own product of this model (e.g. expert labels), cached like the
        statistics: keyed by the model, ``kind``, ``parts`` and the digest of ``compute``'s
        module and the package modules it imports."""
        return self.get_or_compute(self.key(kind, code_version(compute), **parts), compute)


def stats_check(shape: tuple[int, int]) -> Check:
    """The cache check of statistics ``[layers, units]`` of one site."""

    def check(tensors: Tensors) -> None:
        stats = CollectedStats.from_tensors(tensors)
        if stats.full.shape != shape:
            raise ValueError(f"statistics of shape {stats.full.shape}, the site has {shape}")

    return check


def tokens_check(vocab: int) -> Check:
    """The cache check of a list of token ids of a ``vocab``-sized vocabulary."""

    def check(tensors: Tensors) -> None:
        tokens = tensors["tokens"]
        if tokens.dtype != torch.long or tokens.ndim != 1:
            raise ValueError(f"tokens must be a 1-D long tensor, got {tokens.dtype}")
        if tokens.numel() and not (int(tokens.min()) >= 0 and int(tokens.max()) < vocab):
            raise ValueError(f"token ids outside the vocabulary [0, {vocab})")

    return check


def check_blocks(tensors: Tensors) -> None:
    ids, unit, half = tensors["input_ids"], tensors["unit"], tensors["half"]
    if ids.ndim != 2 or unit.shape != (ids.shape[0],) or half.shape != (ids.shape[0],):
        raise ValueError(f"block shapes disagree: {ids.shape}, {unit.shape}, {half.shape}")
    if ids.numel() and int(ids.min()) < 0:
        raise ValueError("negative token ids")


def check_unit_sums(tensors: Tensors) -> None:
    sums = UnitSums.from_tensors(tensors)
    for measure, num in sums.num.items():
        den = sums.den[measure]
        if num.shape != den.shape or not torch.isfinite(num).all() or (den < 0).any():
            raise ValueError(f"unit sums of {measure!r} are malformed")
