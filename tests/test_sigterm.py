"""Ctrl-C and SIGTERM stop every command line (``modularity.run``, ``make run``'s multirun
of it) in any phase within seconds, with one line and status 130, and
leave no partial file: inside a Lightning loop (which only records a SIGTERM, and turns
Ctrl-C into ``sys.exit(1)``), during data preparation and tokenising, and when Python drops
the interrupt because it arrived inside a finaliser."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf

from modularity.infra.interrupts import INTERRUPTED
from modularity.infra.resume import FINISHED
from modularity.infra.trainer import make_trainer, run_loop

ROOT = Path(__file__).resolve().parent.parent

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


class InterruptedOnFirstBatch(L.LightningModule):
    def predict_step(self, batch, batch_idx):
        raise KeyboardInterrupt


def test_sigterm_during_a_loop_interrupts_the_run():
    module = TerminatedOnFirstBatch()
    loader = torch.utils.data.DataLoader(torch.zeros(4, 2), batch_size=1)
    with pytest.raises(KeyboardInterrupt):
        run_loop(make_trainer(TRAINER, "test"), module, loader)
    assert module.seen >= 1


def test_ctrl_c_during_a_loop_stays_an_interrupt_and_ctrl_c_works_afterwards():
    """Lightning turns the KeyboardInterrupt into ``sys.exit(1)`` (``make run`` then ended
    with status 1 and no message) and ignores Ctrl-C while it shuts down."""
    before = signal.getsignal(signal.SIGINT)
    loader = torch.utils.data.DataLoader(torch.zeros(4, 2), batch_size=1)
    with pytest.raises(KeyboardInterrupt):
        run_loop(make_trainer(TRAINER, "test"), InterruptedOnFirstBatch(), loader)
    assert signal.getsignal(signal.SIGINT) is before


def _wait_for(proc: subprocess.Popen, marker: str) -> str:
    """Read the process's output until a line containing ``marker``; returns what it read."""
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            return "".join(seen)
    pytest.fail(f"the run ended before {marker!r}: " + "".join(seen)[-3000:])


def _stopped_by_sigterm(proc: subprocess.Popen, delay: float) -> str:
    """SIGTERM ``delay`` seconds from now; the rest of the output, once it has stopped with
    the interrupted line and status 130 within 10 s."""
    time.sleep(delay)
    proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    rest, _ = proc.communicate(timeout=60)
    waited = time.monotonic() - sent
    assert proc.returncode == 130, rest[-3000:]
    assert "error: interrupted" in rest and "Traceback" not in rest, rest[-3000:]
    assert waited < 10, f"took {waited:.1f} s to stop"
    return rest


def _no_temporaries(*roots: Path) -> None:
    leftovers = [p for root in roots for p in root.rglob(".tmp-*")]
    assert not leftovers


def _popen(module: str, args: list[str], tmp_path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-u", "-m", module, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "MODULARITY_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"},
    )


def test_an_interrupt_dropped_inside_a_finaliser_is_raised_again():
    """Python prints and drops an exception raised inside ``__del__``: a single SIGTERM
    that lands there must still stop the run (it was ignored for minutes)."""
    script = """
import os, signal, time
from modularity.infra.interrupts import exit_interrupted, stop_on_signals
class Finaliser:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs here; its KeyboardInterrupt is dropped
            pass
stop_on_signals()
try:
    Finaliser()
    print("survived the finaliser", flush=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        pass
    print("never interrupted")
except KeyboardInterrupt:
    exit_interrupted()
"""
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert "survived the finaliser" in proc.stdout  # the first interrupt was indeed dropped
    assert "never interrupted" not in proc.stdout
    assert proc.returncode == 130 and proc.stderr.strip().endswith(
        "error: interrupted; nothing cached was lost (finished statistics stay cached)"
    ), proc.stderr
    assert time.monotonic() - start < 15


def test_an_interrupt_that_escaped_a_c_extension_keeps_status_130(tmp_path):
    """A ``KeyboardInterrupt`` once escaped a C extension's ``PyRun_String`` (during data
    preparation): CPython then ended ``python -m`` by SIGINT (status -2) after the
    interrupted line, though the interrupt was caught and reported."""
    (tmp_path / "interrupted_in_c.py").write_text(
        """
import ctypes
from modularity.infra.interrupts import exit_interrupted
run_string = ctypes.pythonapi.PyRun_String
run_string.restype = ctypes.py_object
run_string.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.py_object, ctypes.py_object]
try:
    run_string(b"raise KeyboardInterrupt", 257, {}, {})
except KeyboardInterrupt:
    exit_interrupted()
"""
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    proc = subprocess.run(
        [sys.executable, "-m", "interrupted_in_c"], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip() == f"error: {INTERRUPTED}"


@pytest.mark.slow
def test_sigterm_inside_a_loop_stops_make_runs_driver(tmp_path):
    """``make run`` (``python -m modularity.run -m hydra/sweeper=embedded``) killed while a
    collection loop runs: it ended with status 1 and no message. One batch per image keeps
    the loop long."""
    out = tmp_path / "out"
    args = [
        "-m",
        "hydra/sweeper=embedded",
        f"hydra.sweep.dir={out}",
        "hydra.sweeper.only=[embedded_fashion]",
        "model=tiny_vit",
        "model.batch_size=1",
        "tasks=[digits-0,digits-1]",
        "hydra.sweeper.params={task:'digits-0'}",
        f"cache.dir={tmp_path / 'cache'}",
    ]
    proc = _popen("modularity.run", args, tmp_path)
    _wait_for(proc, "collect digits: ")  # the reference's loop: 324 batches, seconds
    rest = _stopped_by_sigterm(proc, 0.5)
    assert "finished jobs are kept" in rest
    job = next((out / "embedded_fashion" / "prune").iterdir())
    assert not (job / FINISHED).exists()  # unfinished: the next run redoes it
    assert not (job / "results.csv").exists()
    _no_temporaries(tmp_path)


@pytest.mark.slow
def test_sigterm_during_data_preparation_stops_the_command_line(tmp_path):
    """Cleaning the text corpora into an empty cache (tens of seconds, before any line is
    printed) is cut short, and leaves no half-written corpus entry."""
    run_dir = tmp_path / "run"
    args = ["model=tiny_llama", "task=code", f"hydra.run.dir={run_dir}"]
    proc = _popen("modularity.run", args, tmp_path)
    deadline = time.monotonic() + 120
    while not (run_dir / ".hydra" / "config.yaml").exists():  # Hydra starts the job
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    _stopped_by_sigterm(proc, 2.0)
    assert not (run_dir / "results.csv").exists()
    assert not list((tmp_path / "cache").rglob("*.json"))  # no corpus was finished
    _no_temporaries(tmp_path)


@pytest.mark.slow
def test_sigterm_while_tokenising_stops_the_command_line_within_seconds(tmp_path):
    """The reported hang: SIGTERM while a large text sample is tokenised (outside any
    Lightning loop) is honoured at once, with Ctrl-C's line and status, and leaves neither
    a results file nor a half-written cache entry."""
    run_dir = tmp_path / "run"
    args = ["model=tiny_lm_text", "data.collect_size=2000000", "data.eval_size=1000"]
    proc = _popen("modularity.run", [*args, f"hydra.run.dir={run_dir}"], tmp_path)
    _wait_for(proc, "tokenising")
    _stopped_by_sigterm(proc, 0.5)  # inside the tokeniser by then
    assert not (run_dir / "results.csv").exists()
    _no_temporaries(tmp_path)
