"""Image tasks: labelled arrays from a local image set or an HF dataset, with a class filter.

A task keeps the images whose fine class or superclass is named in ``classes``; its
reference is the same source unfiltered, evaluated on the classes the task does not keep.
Collection and evaluation draw from disjoint, stratified splits (``modularity.data.splits``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from omegaconf import DictConfig

from modularity.config import Source, checked_choice
from modularity.data.hub import load_hub_dataset
from modularity.data.image_sources import load_image_set
from modularity.data.splits import IMAGE_SPLITS, check_split, image_halves, image_split_indices
from modularity.errors import ConfigError, ModularityError, invalid_choice

# An image reference is the *other classes* of the same images, disjoint from the task by
# class, so the reference roles read the task pools; accepting their names lets callers
# choose splits by role for text and images alike.
REFERENCE_POOLS = {"reference_collect": "collect", "reference_evaluate": "evaluate"}


@dataclass(frozen=True)
class LabelledImages:
    """Images ``[n, channels, h, w]`` float32 in [0, 1] (or PIL images from a hub dataset),
    with what the statistics need per image: ``unit``, its index in the source (the
    intervals' evaluation unit), and ``half`` in {0, 1} (for split-half stability)."""

    images: Any
    labels: np.ndarray  # [n] int64 fine class ids
    class_names: tuple[str, ...]
    coarse: dict[str, tuple[int, ...]]
    unit: np.ndarray  # [n] int64
    half: np.ndarray  # [n] int64

    @classmethod
    def whole(
        cls,
        images: Any,
        labels: np.ndarray,
        class_names: tuple[str, ...],
        coarse: dict[str, tuple[int, ...]],
        seed: int,
    ) -> LabelledImages:
        """Every image of a source, numbered in source order, with seeded halves."""
        n = len(labels)
        unit = np.arange(n, dtype=np.int64)
        return cls(images, np.asarray(labels), class_names, coarse, unit, image_halves(n, seed))

    def subset(self, index: np.ndarray) -> LabelledImages:
        images = (
            self.images[index]
            if isinstance(self.images, np.ndarray)
            else [self.images[i] for i in index]
        )
        return LabelledImages(
            images,
            self.labels[index],
            self.class_names,
            self.coarse,
            self.unit[index],
            self.half[index],
        )


def class_ids(
    task: DictConfig, names: tuple[str, ...], coarse: dict[str, tuple[int, ...]]
) -> set[int]:
    """Fine class ids named by ``task.classes`` (class or superclass names)."""
    ids: set[int] = set()
    for name in task.classes:
        name = str(name)
        if name in coarse:
            ids.update(coarse[name])
        elif name in names:
            ids.add(names.index(name))
        else:
            raise invalid_choice(f"class in task {task.name!r}", name, [*coarse, *names])
    return ids


def _local_split(task: DictConfig, split: str) -> LabelledImages:
    name = task.local.get("image_set")
    if name is None:
        raise ConfigError(f"task {task.name!r}: local image tasks need local.image_set")
    data = load_image_set(name)
    whole = LabelledImages.whole(
        data.images, data.labels, tuple(data.class_names), dict(data.coarse), task.seed
    )
    return whole.subset(image_split_indices(data.labels, data.origin, split))


def _hub_split(task: DictConfig, split: str) -> LabelledImages:
    hub = task.hub
    hf_split = hub.get(f"{split}_split", {"collect": "train", "evaluate": "test"}.get(split, split))
    data = load_hub_dataset(hub, hf_split)
    label_field, image_field = hub.get("label_field", "label"), hub.get("image_field", "img")
    names = tuple(data.features[label_field].names)
    return LabelledImages.whole(list(data[image_field]), data[label_field], names, {}, task.seed)


def image_split(task: DictConfig, split: str, exclude: set[int] | None = None) -> LabelledImages:
    """The task's images of one split, filtered to its classes and capped at its size.

    ``split`` is one of ``IMAGE_SPLITS`` or a reference role (``reference_collect``,
    ``reference_evaluate``), which reads the matching task pool.
    """
    check_split(split, [*IMAGE_SPLITS, *REFERENCE_POOLS])
    split = REFERENCE_POOLS.get(split, split)
    if checked_choice(Source, task.source, f"source of task {task.name!r}") == "local":
        data = _local_split(task, split)
    else:
        data = _hub_split(task, split)
    keep = np.ones(len(data.labels), dtype=bool)
    if task.classes:
        keep &= np.isin(data.labels, list(class_ids(task, data.class_names, data.coarse)))
    if exclude:
        keep &= ~np.isin(data.labels, list(exclude))
    size = task.collect_size if split == "collect" else task.eval_size
    # A seeded order, so a size cap keeps every class represented.
    index = np.random.default_rng(task.seed).permutation(np.flatnonzero(keep))[:size]
    if index.size == 0:
        raise ModularityError(f"task {task.name!r}: no images left in the {split!r} split")
    return data.subset(index)
