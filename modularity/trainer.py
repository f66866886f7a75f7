"""Lightning Trainers for the inference loops (collection, evaluation), built from config.

Lightning places the model and batches on the configured device, applies the precision
(``bf16-true`` keeps a 7B model in bf16), reduces metrics across devices and draws the
progress bars; the modules that use these Trainers only say what one batch does.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import lightning as L
import torch


def quiet_lightning() -> None:
    """Silence Lightning's start-up chatter (device lines, tips, worker-count advice), which
    would otherwise repeat for every loop of a sweep; real warnings still show."""
    for name in (
        "lightning.pytorch.utilities.rank_zero",
        "lightning.fabric.utilities.rank_zero",
        "lightning.pytorch.accelerators.cuda",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in (
        ".*does not have many workers.*",
        ".*GPU available but not used.*",
        ".*LeafSpec.*is deprecated.*",
    ):
        warnings.filterwarnings("ignore", message)


def make_trainer(trainer_cfg: Any, *, distributed_sampler: bool = True) -> L.Trainer:
    """A Trainer for inference loops: no logger, checkpoints or model summary.

    ``distributed_sampler=False`` leaves the loaders' samplers alone, for loops that shard
    items themselves (Lightning's sampler repeats items to even the shards out).
    """
    quiet_lightning()
    return L.Trainer(
        accelerator=trainer_cfg.accelerator,
        devices=trainer_cfg.devices,
        strategy=trainer_cfg.strategy,
        precision=trainer_cfg.precision,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=trainer_cfg.progress_bar,
        use_distributed_sampler=distributed_sampler,
    )


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The keyword arguments the HF model takes (labels are scored here, not by the model)."""
    return {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "pixel_values")}
