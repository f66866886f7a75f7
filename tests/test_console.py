"""Outside a terminal a loop prints one line per stage with its time, and no progress bar."""

from __future__ import annotations

import logging

import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from torch.utils.data import DataLoader

from modularity import console, trainer
from modularity.console import StageTimer


class Count(trainer.SumsLoop):
    def predict_step(self, batch, batch_idx):
        return None


def test_a_redirected_loop_prints_its_stage_and_time_once(monkeypatch, caplog):
    monkeypatch.setattr(trainer, "interactive", lambda: False)
    loop = trainer.make_trainer({"accelerator": "cpu", "devices": 1}, "collect code")
    assert not any(isinstance(c, TQDMProgressBar) for c in loop.callbacks)
    assert any(isinstance(c, StageTimer) for c in loop.callbacks)
    with caplog.at_level(logging.INFO, logger="modularity"):
        trainer.run_loop(loop, Count(), DataLoader(torch.arange(10), batch_size=3))
    lines = [r.getMessage() for r in caplog.records if r.name == "modularity"]
    assert len(lines) == 1 and lines[0].startswith("collect code: 4 batches in ")


def test_a_terminal_gets_one_labelled_bar(monkeypatch):
    monkeypatch.setattr(trainer, "interactive", lambda: True)
    loop = trainer.make_trainer({"accelerator": "cpu", "devices": 1}, "evaluate pile")
    bars = [c for c in loop.callbacks if isinstance(c, TQDMProgressBar)]
    assert len(bars) == 1 and bars[0].predict_description == "evaluate pile"


def test_transformers_loading_bars_are_off_unless_verbose():
    from transformers.utils import logging as hf_logging

    console.quiet_libraries(verbose=False)
    assert not hf_logging.is_progress_bar_enabled()
    console.quiet_libraries(verbose=True)
    assert hf_logging.is_progress_bar_enabled()
    console.quiet_libraries(verbose=False)
