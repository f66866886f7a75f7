"""Image tasks: labelled images from the task's image source, with a class filter.

A task keeps the images whose fine class or superclass is named in ``classes``; its
reference is the same source unfiltered, evaluated on the classes the task does not keep.
Collection and evaluation draw from disjoint, stratified splits (``modularity.data.splits``).
"""

from __future__ import annotations

import numpy as np
from omegaconf import DictConfig

from modularity.data.labelled import LabelledImages
from modularity.data.sources import ImageSource, source_of
from modularity.data.splits import IMAGE_SPLITS, check_split
from modularity.errors import ModularityError, invalid_choice

# An image reference is the *other classes* of the same images, disjoint from the task by
# class, so the reference roles read the task pools; accepting their names lets callers
# choose splits by role for text and images alike.
REFERENCE_POOLS = {"reference_collect": "collect", "reference_evaluate": "evaluate"}


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


def image_split(task: DictConfig, split: str, exclude: set[int] | None = None) -> LabelledImages:
    """The task's images of one split, filtered to its classes and capped at its size.

    ``split`` is one of ``IMAGE_SPLITS`` or a reference role (``reference_collect``,
    ``reference_evaluate``), which reads the matching task pool.
    """
    check_split(split, [*IMAGE_SPLITS, *REFERENCE_POOLS])
    split = REFERENCE_POOLS.get(split, split)
    source = source_of(task)
    assert isinstance(source, ImageSource)  # source_of checks the task's kind
    data = source.images(split, task.seed)
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
