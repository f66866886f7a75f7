"""Evaluation: a Lightning loop measuring accuracy and loss of the model as it is now."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torchmetrics import MeanMetric

from modularity.models.loading import LoadedModel
from modularity.trainer import make_trainer, model_inputs

N_FREQUENT = 50  # the skip metrics ignore the reference's 50 most frequent tokens


class Evaluation(L.LightningModule):
    """Accuracy and loss of a causal LM (next token) or an image classifier (label).

    Causal LMs: ``top1``, ``top10``, ``loss`` and ``skip_top1`` / ``skip_top10``, which ignore
    target tokens among ``frequent_tokens`` (the reference data's most common ones).
    Image classifiers: ``top1`` and ``loss`` on the labels.
    """

    def __init__(self, loaded: LoadedModel, frequent_tokens: torch.Tensor | None = None) -> None:
        super().__init__()
        self.net = loaded.model
        self.kind = loaded.kind
        names = (
            ["top1", "loss"]
            if self.kind == "image_classifier"
            else ["top1", "top10", "loss", "skip_top1", "skip_top10"]
        )
        self.metrics = nn.ModuleDict({name: MeanMetric() for name in names})
        self.register_buffer(
            "frequent", torch.as_tensor([] if frequent_tokens is None else frequent_tokens).long()
        )

    def _update(self, name: str, values: torch.Tensor) -> None:
        if values.numel():
            self.metrics[name].update(values.float())

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self.net(**model_inputs(batch)).logits.float()
        if self.kind == "image_classifier":
            labels = batch["labels"]
            self._update("top1", logits.argmax(-1) == labels)
            self._update("loss", F.cross_entropy(logits, labels, reduction="none"))
        else:
            self._causal_step(logits, batch)
        for name, metric in self.metrics.items():
            self.log(name, metric, on_step=False, on_epoch=True, batch_size=logits.shape[0])

    def _causal_step(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> None:
        ids = batch["input_ids"]
        logits, targets = logits[:, :-1], ids[:, 1:]
        valid = torch.ones_like(targets, dtype=torch.bool)
        if "attention_mask" in batch:
            mask = batch["attention_mask"].bool()
            valid = mask[:, 1:] & mask[:, :-1]
        logits, targets = logits[valid], targets[valid]
        top10 = logits.topk(min(10, logits.shape[-1]), dim=-1).indices
        hit1 = top10[:, 0] == targets
        hit10 = (top10 == targets[:, None]).any(-1)
        self._update("top1", hit1)
        self._update("top10", hit10)
        self._update("loss", F.cross_entropy(logits, targets, reduction="none"))
        rare = ~torch.isin(targets, self.frequent)
        self._update("skip_top1", hit1[rare])
        self._update("skip_top10", hit10[rare])


def evaluate(
    loaded: LoadedModel,
    loader: DataLoader,
    trainer_cfg: Any,
    frequent_tokens: torch.Tensor | None = None,
) -> dict[str, float]:
    """Metrics of the model as it is now (with whatever masks are active) on ``loader``."""
    module = Evaluation(loaded, frequent_tokens)
    (results,) = make_trainer(trainer_cfg).test(module, dataloaders=loader, verbose=False)
    return {name: float(value) for name, value in results.items()}


def most_frequent_tokens(blocks: torch.Tensor, k: int = N_FREQUENT) -> torch.Tensor:
    """The ``k`` most frequent token ids in ``blocks`` (``[n, block_size]``)."""
    counts = torch.bincount(blocks.flatten())
    return counts.topk(min(k, counts.numel())).indices


def drop_summary(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Relative drop ``(before - after) / before`` of each accuracy (loss: relative rise)."""
    out = {}
    for name in before:
        base = before[name]
        if base == 0:
            continue
        change = (after[name] - base) if name == "loss" else (base - after[name])
        out[name] = change / abs(base)
    return out
