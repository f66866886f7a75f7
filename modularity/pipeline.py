"""The steps every analysis shares (load, collect, evaluate), with results cached on disk.

Statistics are keyed by everything that determines them (model identity, task definition,
split, size, the statistics code version), so every fraction, scorer and layer choice of a
sweep reuses one collection per (model, task).
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from modularity.cache import StatsCache
from modularity.collect import collect_statistics
from modularity.config import load_task_config
from modularity.data.tasks import task_loader, text_tokens
from modularity.errors import ConfigError
from modularity.evaluate import evaluate, most_frequent_tokens
from modularity.models.loading import LoadedModel, load_model
from modularity.neurons.masks import ablate
from modularity.neurons.stats import COLLECTED_STATS_FORMAT, CollectedStats, NeuronStats

STATS_VERSION = 2  # bump when the statistics code changes what it computes
EVAL_VERSION = 3


def _task_identity(task: DictConfig) -> dict[str, Any]:
    identity = OmegaConf.to_container(task, resolve=True)
    identity.pop("description", None)
    return identity


class Pipeline:
    """One model, its cache, and the shared steps of every analysis."""

    def __init__(self, cfg: DictConfig, model_cfg: DictConfig | None = None) -> None:
        self.cfg = cfg
        self.model_cfg = model_cfg if model_cfg is not None else cfg.model
        self.loaded: LoadedModel = load_model(self.model_cfg)
        self.cache = StatsCache(cfg.cache.dir, enabled=cfg.cache.enabled)

    @property
    def adapter(self):  # noqa: ANN201 - ModelAdapter
        return self.loaded.adapter

    def task(self, name: str) -> DictConfig:
        """A task config by name, with the run's ``data`` sizes applied."""
        return load_task_config(name, self.cfg.data)

    def reference_of(self, task: DictConfig) -> DictConfig:
        if not task.reference:
            raise ConfigError(f"task {task.name!r} names no reference task (task.reference)")
        return self.task(task.reference)

    def _loader(self, task: DictConfig, split: str, exclude_classes_of: DictConfig | None = None):
        return task_loader(
            task,
            self.loaded,
            split,
            self.model_cfg.batch_size,
            exclude_classes_of=exclude_classes_of,
            max_length=self.model_cfg.max_length,
        )

    def cache_key(
        self, kind: str, task: DictConfig | None = None, **extra: Any
    ) -> tuple[str, dict[str, Any]]:
        """Cache key (and its readable parts) of a result of this model on ``task``."""
        parts = {
            "kind": kind,
            "model": self.loaded.identity,
            "task": None if task is None else _task_identity(task),
            "max_length": self.model_cfg.max_length,
            **extra,
        }
        return self.cache.key(**parts), parts

    def statistics(self, task: DictConfig) -> NeuronStats:
        """Neuron statistics on the task's collection split (cached); the whole data's for now."""
        key, meta = self.cache_key(
            "stats", task, version=STATS_VERSION, format=COLLECTED_STATS_FORMAT
        )

        def compute() -> dict[str, torch.Tensor]:
            stats = collect_statistics(self.loaded, self._loader(task, "collect"), self.cfg.trainer)
            return stats.to_tensors()

        tensors, _ = self.cache.get_or_compute(key, compute, meta)
        return CollectedStats.from_tensors(tensors).full

    def frequent_tokens(self, reference: DictConfig) -> torch.Tensor | None:
        """The reference collection data's most frequent tokens (for the skip metrics)."""
        if self.loaded.kind != "causal_lm":
            return None
        key, meta = self.cache_key("frequent_tokens", reference, version=EVAL_VERSION)

        def compute() -> dict[str, torch.Tensor]:
            blocks = text_tokens(reference, self.loaded, "collect", self.model_cfg.max_length)
            return {"tokens": most_frequent_tokens(blocks)}

        return self.cache.get_or_compute(key, compute, meta)[0]["tokens"]

    def evaluate(
        self,
        task: DictConfig,
        reference: DictConfig,
        mask: torch.Tensor | None = None,
        means: torch.Tensor | None = None,
        sides: tuple[str, ...] = ("task", "reference"),
    ) -> dict[str, dict[str, float]]:
        """Metrics on the task's and the reference's evaluation splits, with ``mask`` ablated.

        For image tasks the reference is evaluated on the classes the task does not keep.
        """
        frequent = self.frequent_tokens(reference)
        exclude = task if task.kind == "image" else None
        build = {
            "task": lambda: self._loader(task, "evaluate"),
            "reference": lambda: self._loader(reference, "evaluate", exclude_classes_of=exclude),
        }
        loaders = {side: build[side]() for side in sides}
        masked = (
            nullcontext()
            if mask is None
            else ablate(self.adapter, mask, self.cfg.ablation.mode, means)
        )
        with masked:
            return {
                name: evaluate(self.loaded, dl, self.cfg.trainer, frequent)
                for name, dl in loaders.items()
            }

    def baseline(self, task: DictConfig, reference: DictConfig) -> dict[str, dict[str, float]]:
        """Unpruned metrics (cached per side: every fraction of a sweep shares them, and
        every text task of a sweep shares its reference's)."""
        # What else each side's metrics depend on: the task's skip metrics use the
        # reference's frequent tokens; an image reference leaves out the task's classes.
        excluded = _task_identity(task) if task.kind == "image" else None
        keyed = {
            "task": (task, {"against": _task_identity(reference)}),
            "reference": (reference, {"excluding": excluded}),
        }
        out: dict[str, dict[str, float]] = {}
        for side, (data, depends) in keyed.items():
            key, meta = self.cache_key("baseline", data, version=EVAL_VERSION, **depends)

            def compute(side: str = side) -> dict[str, torch.Tensor]:
                metrics = self.evaluate(task, reference, sides=(side,))[side]
                return {k: torch.tensor(v, dtype=torch.float64) for k, v in metrics.items()}

            tensors, _ = self.cache.get_or_compute(key, compute, meta)
            out[side] = {k: float(v) for k, v in tensors.items()}
        return out
