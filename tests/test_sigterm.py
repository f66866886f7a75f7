"""A SIGTERM inside a Lightning loop stops the run (Lightning's predict loop only records
it), so ``kill`` on a sweep or ``make run`` is not silently ignored."""

import os
import signal

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf

from modularity.trainer import make_trainer, run_loop

TRAINER = OmegaConf.create(
    {"accelerator": "cpu", "devices": 1, "strategy": "auto", "precision": "32-true"}
    | {"enable_progress_bar": False}
)


class TerminatedOnFirstBatch(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.seen = 0

    def predict_step(self, batch, batch_idx):
        self.seen += 1
        if batch_idx == 0:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_during_a_loop_interrupts_the_run():
    module = TerminatedOnFirstBatch()
    loader = torch.utils.data.DataLoader(torch.zeros(4, 2), batch_size=1)
    with pytest.raises(KeyboardInterrupt):
        run_loop(make_trainer(TRAINER, "test"), module, loader)
    assert module.seen >= 1
