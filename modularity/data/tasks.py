"""Turn a task config into DataLoaders for a loaded model (collection or evaluation split)."""

from __future__ import annotations

import json

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset

from modularity.data.images import LabelledImages, class_ids, image_split
from modularity.data.packing import TextSample
from modularity.data.text import text_blocks
from modularity.errors import ConfigError
from modularity.models.loading import LoadedModel


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


# Text samples by (task, split, block size, size, model identity); oldest dropped first.
_TOKEN_BLOCKS: dict[str, TextSample] = {}
_MAX_TOKEN_BLOCKS = 64
_COLLECTION_POOLS = ("collect", "reference_collect")


def block_size_for(task: DictConfig, loaded: LoadedModel, max_length: int | None) -> int:
    """The task's block size, capped at the model's context length."""
    limit = max_length or getattr(loaded.model.config, "max_position_embeddings", None)
    return min(task.block_size, limit) if limit else task.block_size


def text_tokens(
    task: DictConfig, loaded: LoadedModel, split: str, max_length: int | None = None
) -> TextSample:
    """The task's sample of pool ``split`` (a ``TEXT_SPLITS`` name), tokenised once per
    process: every job of an in-process sweep evaluates the same reference and tasks again
    and again. Collection pools take ``collect_size`` tokens, the others ``eval_size``."""
    size = task.collect_size if split in _COLLECTION_POOLS else task.eval_size
    block_size = block_size_for(task, loaded, max_length)
    key = json.dumps(
        [OmegaConf.to_container(task, resolve=True), split, block_size, size, loaded.identity],
        sort_keys=True,
        default=str,
    )
    if key not in _TOKEN_BLOCKS:
        if len(_TOKEN_BLOCKS) >= _MAX_TOKEN_BLOCKS:
            _TOKEN_BLOCKS.pop(next(iter(_TOKEN_BLOCKS)))
        _TOKEN_BLOCKS[key] = text_blocks(task, split, loaded.tokenizer, block_size, size)
    return _TOKEN_BLOCKS[key]


def task_loader(
    task: DictConfig,
    loaded: LoadedModel,
    split: str,
    batch_size: int,
    *,
    exclude_classes_of: DictConfig | None = None,
    max_length: int | None = None,
) -> DataLoader:
    """A DataLoader over one split of ``task`` in the form ``loaded`` takes: a
    ``TEXT_SPLITS`` pool for text (``reference_*`` when ``task`` serves as a reference), an
    image split (or reference role) for images.

    ``exclude_classes_of`` drops another image task's classes (the reference's "other
    classes" when evaluating).
    """
    expected = "image" if loaded.kind == "image_classifier" else "text"
    if task.kind != expected:
        raise ConfigError(f"task {task.name!r} has {task.kind} inputs; this model takes {expected}")
    if task.kind == "text":
        dataset: Dataset = TokenBlocks(text_tokens(task, loaded, split, max_length))
        return DataLoader(dataset, batch_size=batch_size)
    exclude = None
    if exclude_classes_of is not None and exclude_classes_of.classes:
        data = image_split(exclude_classes_of, split)
        exclude = class_ids(exclude_classes_of, data.class_names, data.coarse)
    dataset = ImageItems(image_split(task, split, exclude=exclude))
    return DataLoader(
        dataset, batch_size=batch_size, collate_fn=ImageCollator(loaded.image_processor)
    )
