"""Checkpoints of a training run, for the training-dynamics analysis: the exact initial
weights, about eight log-spaced points, and the final model, each saved in float16 with its
held-out metric.

Weights are stored in float16 (half the size; loaders upcast them).  The initial weights are
rounded to float16 *before* training starts, so checkpoint 0 is bit for bit the network that
training began from, and the final model is rounded before it is measured, so every recorded
metric is that of the stored weights.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
from torch import nn

from modularity.zoo.model_dirs import CHECKPOINTS, checkpoint_name

N_CHECKPOINTS = 8  # besides the initial weights and the final model

Metric = Callable[[nn.Module], dict[str, float]]


def checkpoint_steps(total_steps: int, count: int = N_CHECKPOINTS) -> list[int]:
    """The last ``count`` powers of two below ``total_steps``: log-spaced, and the same
    step numbers across models and runs of different lengths."""
    powers = [2**k for k in range(total_steps.bit_length()) if 2**k < total_steps]
    return powers[-count:]


def round_to_half(net: nn.Module) -> nn.Module:
    """Round ``net``'s weights to float16 values in place (kept in float32)."""
    return net.half().float()


def save_half(net: nn.Module, out: Path, companions: Sequence[Any] = ()) -> None:
    """Save a float16 copy of ``net`` (and ``companions`` such as a tokenizer, anything with
    ``save_pretrained``) as a complete ``save_pretrained`` directory."""
    copy.deepcopy(net).half().save_pretrained(out)
    for companion in companions:
        companion.save_pretrained(out)


class CheckpointWriter(L.Callback):
    """Save and measure the network at the scheduled optimizer steps (and step 0), without
    touching the network being trained; counts the examples seen on the way."""

    def __init__(
        self, out: Path, steps: Sequence[int], metric: Metric, companions: Sequence[Any] = ()
    ) -> None:
        self.out = out
        self.steps = set(steps)
        self.metric = metric
        self.companions = companions
        self.examples_seen = 0
        self.records: list[dict[str, Any]] = []
        self.seconds = 0.0  # time spent saving and measuring, not training

    def write(self, net: nn.Module, step: int) -> None:
        start = time.perf_counter()
        name = checkpoint_name(step)
        save_half(net, self.out / CHECKPOINTS / name, self.companions)
        stored = round_to_half(copy.deepcopy(net)).eval()
        self.records.append(
            {
                "name": name,
                "step": step,
                "examples_seen": self.examples_seen,
                "held_out": self.metric(stored),
            }
        )
        self.seconds += time.perf_counter() - start

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, _: int
    ) -> None:
        self.examples_seen += len(next(iter(batch.values())))
        if trainer.global_step in self.steps:
            self.steps.discard(trainer.global_step)
            self.write(pl_module.net, trainer.global_step)
