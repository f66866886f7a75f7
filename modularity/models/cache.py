"""The models a run has loaded, owned by the run and passed down to its steps.

Loading takes seconds to minutes, and every job of an in-process sweep (and every step of
``make run``) analyses the same model: the run creates one :class:`ModelCache` and every
pipeline of its jobs loads through it. Nothing is kept between runs or at module level.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:
    from modularity.models.loading import LoadedModel


class ModelCache:
    """Loaded models by their checked config, the ``capacity`` most recently used ones.

    One by default: a run analyses one model at a time, and a model is let go before the
    next one loads, so two never share memory.
    """

    def __init__(self, capacity: int = 1) -> None:
        if capacity < 1:
            raise ValueError(f"a model cache holds at least one model, not {capacity}")
        self.capacity = capacity
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()

    def __len__(self) -> int:
        return len(self._models)

    def holds(self, cfg: DictConfig | dict[str, Any]) -> bool:
        """Whether the model ``cfg`` describes is loaded already."""
        return _key(cfg) in self._models

    def load(self, cfg: DictConfig | dict[str, Any]) -> LoadedModel:
        """The model ``cfg`` (a ``model`` node) describes: the one loaded before, or a fresh
        load that takes the place of the least recently used model."""
        key = _key(cfg)
        if key in self._models:
            self._models.move_to_end(key)
            return self._models[key]
        from modularity.models.loading import load_model  # torch and transformers: on use

        while len(self._models) >= self.capacity:
            self._models.popitem(last=False)
        self._models[key] = loaded = load_model(cfg)
        return loaded

    def clear(self) -> None:
        self._models.clear()


def _key(cfg: DictConfig | dict[str, Any]) -> str:
    from modularity.models.loading import checked_model_config

    plain = OmegaConf.to_container(checked_model_config(cfg))
    return json.dumps(plain, sort_keys=True)
