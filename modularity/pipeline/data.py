"""Which data a run reads: its tasks with the run's ``data`` settings, and their references.

Configs only, nothing loaded: a :class:`DataSpec` says what one loader reads, and its
identity is the data part of every cache key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from modularity.config import choice, load_task_config, with_data_settings
from modularity.data.reference import text_reference
from modularity.data.sources import source_identity
from modularity.modality import Modality, modality_of_task


def plain(node: DictConfig, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """A config node as JSON values (Enums as their names), for cache keys and metadata."""
    out = OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    for key in drop:
        out.pop(key, None)
    return out


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
    def modality(self) -> Modality:
        return modality_of_task(self.config.kind)

    def split(self, split: str) -> str:
        """Text references read their own document pools, disjoint from every task's."""
        return f"reference_{split}" if self.role == "reference" and self.modality.tokens else split

    def identity(self) -> dict[str, Any]:
        return {
            "task": plain(self.config, drop=("description",)),
            "source": source_identity(self.config),
            "role": self.role,
            "excluding": None if self.excluding is None else self.excluding.name,
            "excluded_classes": None if self.excluding is None else list(self.excluding.classes),
        }


class RunData:
    """The run's tasks and references, each with the run's ``data`` settings."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg

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
        if not task.modality.tokens:
            return DataSpec(reference, "reference", excluding=task.config)
        exclude = choice(self.cfg.data.exclude_from_reference)
        return DataSpec(text_reference(task.config, reference, exclude), "reference")
