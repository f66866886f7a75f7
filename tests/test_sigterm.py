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


@pytest.mark.slow
def test_sigterm_while_tokenising_stops_the_command_line_within_seconds(tmp_path):
    """The reported hang: SIGTERM while a large text sample is tokenised (outside any
    Lightning loop) is honoured at once, with Ctrl-C's line and status, and leaves neither
    a results file nor a half-written cache entry."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    run_dir = tmp_path / "run"
    args = ["model=tiny_lm_text", "data.collect_size=2000000", "data.eval_size=1000"]
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "modularity.run", *args, f"hydra.run.dir={run_dir}"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "MODULARITY_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"},
    )
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "tokenising" in line:
            break
    else:
        pytest.fail("the run ended before tokenising: " + "".join(seen)[-3000:])
    time.sleep(0.5)  # inside the tokeniser by now
    proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    rest, _ = proc.communicate(timeout=60)
    waited = time.monotonic() - sent
    assert proc.returncode == 130, rest[-3000:]
    assert "error: interrupted" in rest and "Traceback" not in rest
    assert waited < 10, f"took {waited:.1f} s to stop"
    assert not (run_dir / "results.csv").exists()
    leftovers = [p for p in (tmp_path / "cache").rglob("*") if p.name.startswith(".tmp-")]
    assert not leftovers
