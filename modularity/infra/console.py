"""What a run prints besides its results: progress per stage, and other libraries' chatter.

In a terminal each stage (``collect code``, ``evaluate pile (pruned)``) shows one progress
bar with its label, total and time left; redirected to a file or a pipe, a bar's redraws
would be noise, so each stage prints one line with its time instead, and a stage that will
take over a minute says so first, from the pace of its first batches. Transformers' loading bars and
W&B's console messages are silenced unless ``verbose=true``.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from typing import Any

import lightning as L

log = logging.getLogger("modularity")


def interactive() -> bool:
    """Whether progress bars can redraw in place: stderr (where they go) is a terminal."""
    return sys.stderr.isatty()


def quiet_libraries(verbose: bool) -> None:
    """Silence transformers' loading bars and its info chatter unless ``verbose``."""
    from transformers.utils import logging as hf_logging

    if verbose:
        hf_logging.enable_progress_bar()
        return
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_warning()


class StageTimer(L.Callback):
    """One line per stage when no progress bar is shown: what ran, how many batches, how
    long."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.started = 0.0
        self.batches = 0

    def on_predict_start(self, trainer: L.Trainer, module: Any) -> None:
        self.started, self.batches = time.perf_counter(), 0

    def on_predict_batch_end(self, *args: Any, **kwargs: Any) -> None:
        self.batches += 1

    def on_predict_end(self, trainer: L.Trainer, module: Any) -> None:
        seconds = time.perf_counter() - self.started
        log.info("%s: %d batches in %.1f s", self.stage, self.batches, seconds)


# A stage expected to take at least this long announces its size and time.
LONG_STAGE_SECONDS = 60.0
# The pace is measured over this long, from the end of the first batch (which warms up).
PACE_SECONDS = 2.0


def batch_amount(batch: Any) -> tuple[int, str]:
    """How much one batch holds: its tokens for text, its images for an image model."""
    if isinstance(batch, dict) and "input_ids" in batch:
        return int(batch["input_ids"].numel()), "tokens"
    if isinstance(batch, dict) and "pixel_values" in batch:
        return int(batch["pixel_values"].shape[0]), "images"
    return 1, "batches"


def duration(seconds: float) -> str:
    """``about 4 min`` or ``about 1.5 h``."""
    minutes = seconds / 60
    return f"about {minutes / 60:.1f} h" if minutes >= 90 else f"about {max(1, round(minutes))} min"


class StageEstimate(L.Callback):
    """One line near the start of a long stage (``collect code: ~102,400 tokens, about 4
    min``): its size and the time it will take at the pace of its first batches, the first
    one not counted. Nothing for a stage of under ``long_seconds``, or of unknown length."""

    def __init__(
        self,
        stage: str,
        long_seconds: float = LONG_STAGE_SECONDS,
        pace_seconds: float = PACE_SECONDS,
    ) -> None:
        self.stage = stage
        self.long_seconds = long_seconds
        self.pace_seconds = pace_seconds
        self.batches, self.amount, self.paced_from = 0, 0, 0.0
        self.done = False

    def on_predict_start(self, trainer: L.Trainer, module: Any) -> None:
        self.batches, self.amount, self.done = 0, 0, False

    def on_predict_batch_end(
        self,
        trainer: L.Trainer,
        module: Any,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self.done:
            return
        now = time.perf_counter()
        self.batches += 1
        amount, unit = batch_amount(batch)
        self.amount += amount
        if self.batches == 1:
            self.paced_from = now
            return
        paced = now - self.paced_from
        if paced < self.pace_seconds:
            return
        self.done = True
        total = trainer.num_predict_batches[dataloader_idx]
        if not math.isfinite(total):
            return
        seconds = (total - self.batches) * paced / (self.batches - 1)
        if seconds >= self.long_seconds:
            size = round(self.amount / self.batches * total)
            log.info("%s: ~%s %s, %s", self.stage, f"{size:,}", unit, duration(seconds))
