"""Labelled images with what the statistics need per image: the form every image source gives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from modularity.data.splits import image_halves


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
