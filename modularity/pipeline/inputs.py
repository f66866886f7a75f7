"""A model's inputs from a data spec: tokenised text blocks (cached) and DataLoaders.

Which loader and pre-processor a spec needs follows from the model's modality; text
blocks are cached under the tokenizer's identity, so tokenising needs the tokenizer, never
the model's weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
from functools import cached_property
from typing import Any

import torch
from torch.utils.data import DataLoader

from modularity.data.tasks import image_loader, text_loader, text_sample
from modularity.models.handle import ModelHandle
from modularity.pipeline.data import DataSpec
from modularity.pipeline.store import StatisticsStore, check_blocks

log = logging.getLogger(__name__)


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


class Inputs:
    """Loaders over the splits of data specs, as one model takes them."""

    def __init__(self, model: ModelHandle, store: StatisticsStore) -> None:
        self.model = model
        self.store = store

    @cached_property
    def tokenizer_id(self) -> dict[str, Any]:
        return tokenizer_identity(self.model.tokenizer)

    def block_size(self, spec: DataSpec) -> int:
        """The task's block size, capped at the model's context length."""
        limit = self.model.cfg.max_length or getattr(
            self.model.hf_config, "max_position_embeddings", None
        )
        return min(spec.config.block_size, limit) if limit else spec.config.block_size

    def text_blocks(self, spec: DataSpec, split: str) -> dict[str, torch.Tensor]:
        """Tokenised blocks of a text split (``input_ids``, ``unit``, ``half``), cached on
        disk beside the statistics: a sweep tokenises each task and split once."""
        size = spec.config.collect_size if split == "collect" else spec.config.eval_size
        block = self.block_size(spec)
        key = self.store.tokens_key(
            self.tokenizer_id,
            data=spec.identity(),
            split=spec.split(split),
            block_size=block,
            size=size,
        )

        def compute() -> dict[str, torch.Tensor]:
            log.info("tokenising %s tokens of %s (%s split)", f"{size:,}", spec.name, split)
            return text_sample(spec.config, spec.split(split), self.model.tokenizer, block, size)

        return self.store.get_or_compute(key, compute, check=check_blocks)

    def loader(self, spec: DataSpec, split: str) -> tuple[DataLoader, int]:
        """A DataLoader over one split of ``spec`` and the number of its evaluation units."""
        self.model.modality.check_task(spec.name, spec.config.kind)
        batch = self.model.cfg.batch_size
        if spec.modality.tokens:
            blocks = self.text_blocks(spec, split)
            return text_loader(blocks, batch), int(blocks["unit"].max()) + 1
        return image_loader(
            spec.config, spec.split(split), self.model.image_processor, batch, spec.excluding
        )

    def sample_sizes(self, spec: DataSpec, split: str) -> dict[str, int]:
        """How much data a split actually used: items (blocks or images), units (documents or
        images) and, for text, tokens."""
        if spec.modality.tokens:
            blocks = self.text_blocks(spec, split)
            return {
                "items": int(blocks["input_ids"].shape[0]),
                "units": int(blocks["unit"].unique().numel()),
                "tokens": int(blocks["input_ids"].numel()),
            }
        loader, _ = self.loader(spec, split)
        return {"items": len(loader.dataset), "units": len(loader.dataset)}
