"""Turn a task config into DataLoaders for a loaded model (collection or evaluation split)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset

from modularity.data.images import class_ids, image_split
from modularity.data.labelled import LabelledImages
from modularity.data.packing import TextSample
from modularity.data.text import text_blocks


class TokenBlocks(Dataset):
    """A text sample's blocks as ``{"input_ids": [block_size], "unit": [], "half": []}``."""

    def __init__(self, sample: TextSample) -> None:
        self.sample = sample

    def __len__(self) -> int:
        return self.sample.n_blocks

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        s = self.sample
        return {"input_ids": s.input_ids[i], "unit": s.unit[i], "half": s.half[i]}


class ImageItems(Dataset):
    """Labelled images as ``(image, label, unit, half)`` items for ``ImageCollator``."""

    def __init__(self, data: LabelledImages) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data.labels)

    def __getitem__(self, i: int) -> tuple[object, int, int, int]:
        d = self.data
        return d.images[i], int(d.labels[i]), int(d.unit[i]), int(d.half[i])


class ImageCollator:
    """Batch images with the model's own processor (resize, rescale, normalise), or, for
    models without one, scale [0, 1] arrays to [-1, 1] as the project's ViTs were trained.
    Labels, units and halves come along as long tensors."""

    def __init__(self, processor: object | None) -> None:
        self.processor = processor

    def __call__(self, items: list[tuple[object, int, int, int]]) -> dict[str, torch.Tensor]:
        images, labels, units, halves = zip(*items)
        if self.processor is None:
            pixels = torch.as_tensor(np.stack(images)).float() * 2 - 1
        else:
            pixels = self.processor(
                images=[_as_uint8_hwc(im) for im in images], return_tensors="pt"
            )["pixel_values"]
        return {
            "pixel_values": pixels,
            "labels": torch.tensor(labels),
            "unit": torch.tensor(units),
            "half": torch.tensor(halves),
        }


def _as_uint8_hwc(image: object) -> object:
    if isinstance(image, np.ndarray):
        return (image.transpose(1, 2, 0) * 255).round().astype(np.uint8)
    return image


def text_sample(
    task: DictConfig, split: str, tokenizer: Any, block_size: int, n_tokens: int
) -> dict[str, torch.Tensor]:
    """One pool of a text task as tensors (``input_ids``, ``unit``, ``half``, and the token
    budget asked for as ``requested_tokens``), the form the on-disk cache keeps."""
    sample = text_blocks(task, split, tokenizer, block_size, n_tokens)
    return {
        "input_ids": sample.input_ids,
        "unit": sample.unit,
        "half": sample.half,
        "requested_tokens": torch.tensor(sample.requested_tokens),
    }


def text_loader(blocks: dict[str, torch.Tensor], batch_size: int) -> DataLoader:
    """Batches of token blocks with their units and halves."""
    sample = TextSample(
        blocks["input_ids"], blocks["unit"], blocks["half"], 0, int(blocks["requested_tokens"])
    )
    return DataLoader(TokenBlocks(sample), batch_size=batch_size)


def image_loader(
    task: DictConfig,
    split: str,
    processor: Any,
    batch_size: int,
    excluding: DictConfig | None = None,
) -> tuple[DataLoader, int]:
    """Batches of one split of an image task (without the classes of ``excluding``: an image
    reference is the classes its task does not keep), and the number of images (units)."""
    exclude = None
    if excluding is not None and excluding.classes:
        data = image_split(excluding, split)
        exclude = class_ids(excluding, data.class_names, data.coarse)
    images = image_split(task, split, exclude=exclude)
    loader = DataLoader(
        ImageItems(images), batch_size=batch_size, collate_fn=ImageCollator(processor)
    )
    return loader, int(images.unit.max()) + 1  # units index the whole image set
