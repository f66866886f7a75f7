"""Fit a Hugging Face model to its own loss with Lightning, writing checkpoints on the way."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader

from modularity.infra.trainer import quiet_lightning
from modularity.zoo.checkpoints import (
    CheckpointWriter,
    Metric,
    checkpoint_steps,
    round_to_half,
    save_half,
)
from modularity.zoo.model_dirs import FINAL
from modularity.zoo.recipes import Recipe


class Fit(L.LightningModule):
    """Minimise an HF model's own loss (batches carry their labels) with AdamW, a linear
    warm-up over the first 5% of steps, then cosine decay to zero."""

    def __init__(self, net: nn.Module, lr: float, weight_decay: float, total_steps: int) -> None:
        super().__init__()
        self.net = net
        self.lr = lr
        self.weight_decay = weight_decay
        self.total_steps = total_steps

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.net(**batch).loss
        self.log("loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self) -> Any:
        # Norm gains and biases are not decayed: shrinking them only distorts the model.
        decay = [p for p in self.net.parameters() if p.ndim >= 2]
        rest = [p for p in self.net.parameters() if p.ndim < 2]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.weight_decay}, {"params": rest}],
            lr=self.lr,
            weight_decay=0.0,
        )
        warmup = max(1, self.total_steps // 20)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(1, self.total_steps - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


@dataclass(frozen=True)
class FitResult:
    """What a fit leaves for ``training.json``: checkpoints (the final one included), the
    examples consumed, and where the time went."""

    checkpoints: list[dict[str, Any]]
    steps: int
    examples_seen: int
    train_seconds: float  # optimisation only
    checkpoint_seconds: float  # saving and measuring checkpoints

    @property
    def final_metric(self) -> dict[str, float]:
        return self.checkpoints[-1]["held_out"]


def fit(
    net: nn.Module,
    loader: DataLoader,
    recipe: Recipe,
    out: Path,
    metric: Metric,
    *,
    max_steps: int | None = None,
    companions: Sequence[Any] = (),
) -> FitResult:
    """Train ``net`` (built from the recipe's seed) for the recipe's epochs, or ``max_steps``,
    on CPU; save it (with ``companions``) into ``out`` and its checkpoints under it.  ``net``
    ends on its stored float16 values.

    Deterministic algorithms are switched on for the fit and restored afterwards, since the
    flag is process-wide and the analysis that follows may run on a GPU.
    """
    steps = len(loader) * recipe.epochs
    steps = steps if max_steps is None else min(steps, max_steps)
    round_to_half(net)  # checkpoint 0 is exactly where training starts
    writer = CheckpointWriter(out, checkpoint_steps(steps), metric, companions)
    writer.write(net, 0)
    saving_before_fit = writer.seconds
    quiet_lightning()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=recipe.epochs,
        max_steps=steps,
        deterministic=True,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=True,
        callbacks=[writer],
    )
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    start = time.perf_counter()
    try:
        trainer.fit(Fit(net, recipe.lr, recipe.weight_decay, steps), loader)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
    seconds = time.perf_counter() - start
    round_to_half(net.eval())
    save_half(net, out, companions)
    final = {
        "name": FINAL,
        "step": trainer.global_step,
        "examples_seen": writer.examples_seen,
        "held_out": metric(net),
    }
    return FitResult(
        checkpoints=[*writer.records, final],
        steps=trainer.global_step,
        examples_seen=writer.examples_seen,
        train_seconds=round(seconds - (writer.seconds - saving_before_fit), 1),
        checkpoint_seconds=round(writer.seconds, 1),
    )
