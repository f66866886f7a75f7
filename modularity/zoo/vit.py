"""Train a small ViT classifier on the ``train`` split of a local image set.

Images are scaled from [0, 1] to [-1, 1] and no image processor is saved: that is what
``modularity.data.tasks.ImageCollator`` does for models without one.  Held-out accuracy is
measured on the ``evaluate`` split, which the tasks evaluate on too.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from modularity.data.image_sources import ImageSet, load_image_set
from modularity.data.splits import image_split_indices
from modularity.zoo.fitting import FitResult, fit
from modularity.zoo.recipes import VitRecipe

EVAL_BATCH = 512


def split_pixels(data: ImageSet, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images of one split scaled to [-1, 1] (``[n, c, h, w]``), and their labels ``[n]``."""
    index = image_split_indices(data.labels, data.origin, split)
    pixels = torch.from_numpy(data.images[index] * 2 - 1)
    return pixels, torch.from_numpy(np.ascontiguousarray(data.labels[index]))


def random_shift(pixels: torch.Tensor, shift: int) -> torch.Tensor:
    """Translate each image by up to ``shift`` pixels each way, filling with background."""
    height, width = pixels.shape[-2:]
    padded = F.pad(pixels, (shift, shift, shift, shift), value=-1.0)
    offsets = torch.randint(0, 2 * shift + 1, (len(pixels), 2)).tolist()
    return torch.stack(
        [padded[i, :, dy : dy + height, dx : dx + width] for i, (dy, dx) in enumerate(offsets)]
    )


def _image_batch(items: list[tuple[torch.Tensor, torch.Tensor]], shift: int) -> dict:
    pixels = torch.stack([x for x, _ in items])
    labels = torch.stack([y for _, y in items])
    if shift:
        pixels = random_shift(pixels, shift)
    return {"pixel_values": pixels, "labels": labels}


def vit_network(recipe: VitRecipe, data: ImageSet) -> nn.Module:
    """The untrained ViT: the same weights for the same recipe (its seed) and library
    versions, which is what checkpoint 0 is checked against."""
    from transformers import ViTConfig, ViTForImageClassification

    _, channels, size, _ = data.images.shape
    config = ViTConfig(
        image_size=size,
        patch_size=recipe.patch_size,
        num_channels=channels,
        hidden_size=recipe.hidden_size,
        intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.num_layers,
        num_attention_heads=recipe.num_heads,
        num_labels=len(data.class_names),
        id2label=dict(enumerate(data.class_names)),
        label2id={name: i for i, name in enumerate(data.class_names)},
    )
    torch.manual_seed(recipe.seed)
    return ViTForImageClassification(config)


@torch.no_grad()
def classifier_metrics(net: nn.Module, pixels: torch.Tensor, labels: torch.Tensor) -> dict:
    """Top-1 accuracy and mean cross-entropy of an image classifier."""
    logits = torch.cat([net(pixel_values=chunk).logits for chunk in pixels.split(EVAL_BATCH)])
    return {
        "accuracy": float((logits.argmax(-1) == labels).float().mean()),
        "loss": float(F.cross_entropy(logits, labels)),
        "n_images": len(labels),
    }


def train_vit(
    recipe: VitRecipe, out: Path, max_steps: int | None
) -> tuple[dict[str, Any], FitResult]:
    """Train and save a ViT with its checkpoints; returns its metrics and the fit."""
    data = load_image_set(recipe.image_set)
    train_pixels, train_labels = split_pixels(data, "train")
    held_out = split_pixels(data, "evaluate")
    net = vit_network(recipe, data)
    loader = DataLoader(
        TensorDataset(train_pixels, train_labels),
        batch_size=recipe.batch_size,
        shuffle=True,
        collate_fn=partial(_image_batch, shift=recipe.shift),
    )
    result = fit(
        net, loader, recipe, out, lambda n: classifier_metrics(n, *held_out), max_steps=max_steps
    )
    return {"held_out": result.final_metric, "train_images": len(train_labels)}, result
