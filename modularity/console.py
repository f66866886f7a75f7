"""What a run prints besides its results: progress per stage, and other libraries' chatter.

In a terminal each stage (``collect code``, ``evaluate pile (pruned)``) shows one progress
bar with its label and total; redirected to a file or a pipe, a bar's redraws would be
noise, so each stage prints one line with its time instead. Transformers' loading bars and
W&B's console messages are silenced unless ``verbose=true``.
"""

from __future__ import annotations

import logging
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
