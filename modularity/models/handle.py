"""One model of a run, known from its config before (and often without) loading it.

What cache keys and checks need, the model's identity, its layers and unit widths, its
HF config and modality, comes from the config and a weightless copy of the network on the
meta device. The weights load, through the run's :class:`ModelCache`, on the first step
that runs the model; a step that only reads cached statistics never loads them.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from omegaconf import DictConfig
from transformers import PretrainedConfig

from modularity.modality import Modality
from modularity.models.adapter import ModelAdapter
from modularity.models.cache import ModelCache
from modularity.models.loading import (
    LoadedModel,
    checked_model_config,
    load_image_processor,
    load_tokenizer,
    model_identity,
    model_structure,
    source_dir,
)


class ModelHandle:
    """A ``model`` config node, with its weights loaded through ``models`` on first use."""

    def __init__(self, cfg: DictConfig | dict[str, Any], models: ModelCache) -> None:
        self.cfg = checked_model_config(cfg)
        self.models = models

    @cached_property
    def source(self) -> str | None:
        """Directory or hub id holding weights, tokenizer and config (None for config dicts)."""
        return source_dir(self.cfg)

    @cached_property
    def identity(self) -> dict[str, Any]:
        """What makes two loads give the same weights (``loading.model_identity``)."""
        return model_identity(self.cfg, self.source)

    @cached_property
    def structure(self) -> ModelAdapter:
        """The adapter of a weightless copy (meta device): layers, widths, sites."""
        return model_structure(self.cfg)

    @property
    def hf_config(self) -> PretrainedConfig:
        return self.structure.model.config

    @property
    def modality(self) -> Modality:
        return self.structure.modality

    @property
    def loaded(self) -> LoadedModel:
        """The model with its weights (loaded now if the run's cache does not hold it)."""
        return self.models.load(self.cfg)

    @property
    def is_loaded(self) -> bool:
        return self.models.holds(self.cfg)

    @cached_property
    def tokenizer(self) -> Any:
        """The tokenizer, without loading the weights."""
        return self.loaded.tokenizer if self.is_loaded else load_tokenizer(self.cfg, self.source)

    @cached_property
    def image_processor(self) -> Any:
        """The image processor (None where there is none), without loading the weights."""
        if self.is_loaded:
            return self.loaded.image_processor
        return load_image_processor(self.source)
