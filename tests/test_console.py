"""Outside a terminal a loop prints one line per stage with its time, and no progress bar."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from torch.utils.data import DataLoader

from modularity.infra import console, trainer
from modularity.infra.console import StageEstimate, StageTimer


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


class Tokens(trainer.SumsLoop):
    """A loop whose every batch takes ``minutes`` of a fake clock."""

    def __init__(self, clock: list[float], minutes: float) -> None:
        super().__init__()
        self.clock, self.minutes = clock, minutes

    def predict_step(self, batch, batch_idx):
        self.clock[0] += 60 * self.minutes


def _token_batches(n_blocks: int) -> DataLoader:
    blocks = [{"input_ids": torch.zeros(64, dtype=torch.long)} for _ in range(n_blocks)]
    return DataLoader(blocks, batch_size=4)


def _estimate_lines(monkeypatch, caplog, minutes_per_batch: float) -> list[str]:
    clock = [0.0]
    monkeypatch.setattr(console, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    monkeypatch.setattr(trainer, "interactive", lambda: False)
    loop = trainer.make_trainer({"accelerator": "cpu", "devices": 1}, "collect code")
    with caplog.at_level(logging.INFO, logger="modularity"):
        trainer.run_loop(loop, Tokens(clock, minutes_per_batch), _token_batches(40))
    return [r.getMessage() for r in caplog.records if "~" in r.getMessage()]


def test_a_long_stage_first_says_its_size_and_time_from_the_pace_of_its_first_batches(
    monkeypatch, caplog
):
    """10 batches of 4 x 64 tokens at a minute each: after the second batch (the first one
    warms up and is not counted) 8 remain, about 8 minutes."""
    lines = _estimate_lines(monkeypatch, caplog, minutes_per_batch=1.0)
    assert lines == ["collect code: ~2,560 tokens, about 8 min"]


def test_a_stage_under_a_minute_prints_no_estimate(monkeypatch, caplog):
    assert _estimate_lines(monkeypatch, caplog, minutes_per_batch=0.1) == []


def test_a_terminal_bar_shows_the_time_left_itself(monkeypatch):
    monkeypatch.setattr(trainer, "interactive", lambda: True)
    loop = trainer.make_trainer({"accelerator": "cpu", "devices": 1}, "evaluate pile")
    assert not any(isinstance(c, StageEstimate) for c in loop.callbacks)
    monkeypatch.setattr(trainer, "interactive", lambda: False)
    loop = trainer.make_trainer({"accelerator": "cpu", "devices": 1}, "evaluate pile")
    assert any(isinstance(c, StageEstimate) for c in loop.callbacks)


def test_durations_read_as_minutes_then_hours():
    assert console.duration(61) == "about 1 min"
    assert console.duration(17 * 60) == "about 17 min"
    assert console.duration(150 * 60) == "about 2.5 h"
