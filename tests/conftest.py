"""Shared fixtures: composed Hydra configs with outputs and cache under ``tmp_path``, and the
command line's entry point run in the test's process."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable

import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from modularity.config import compose_config

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def make_cfg(tmp_path) -> Callable[..., DictConfig]:
    """Compose ``conf/config.yaml`` with overrides, writing into ``tmp_path``."""

    def make(*overrides: str) -> DictConfig:
        cfg = compose_config(
            [
                f"cache.dir={tmp_path / 'cache'}",
                "trainer.enable_progress_bar=false",
                "trainer.accelerator=cpu",
                *overrides,
            ]
        )
        cfg.output_dir = str(tmp_path / "run")
        os.makedirs(cfg.output_dir, exist_ok=True)
        return cfg

    yield make
    GlobalHydra.instance().clear()


@pytest.fixture
def in_process(tmp_path, monkeypatch, capsys):
    """``python -m modularity.run ARGS`` as its ``main()`` runs it, in this process: the same
    code from the argument list on (normalising, Hydra, every check, the one-line error and
    its status), without the seconds a fresh interpreter spends importing torch and
    Lightning. What only a fresh interpreter shows (start-up, a broken package) is checked
    by tests that start one. It runs in ``tmp_path``; signal handlers, the root logger's
    handlers and Hydra's global state are put back afterwards."""
    from modularity.run import main

    def run(*args: str) -> subprocess.CompletedProcess:
        monkeypatch.setenv("MODULARITY_CACHE_DIR", str(tmp_path / "cache"))
        monkeypatch.setenv("WANDB_MODE", "disabled")
        monkeypatch.chdir(tmp_path)  # Hydra's relative output directories land here
        argv = ["modularity.run", *args]
        monkeypatch.setattr(sys, "argv", argv)
        signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level
        status: int | str | None = 0
        try:
            main()
        except SystemExit as stopped:
            status = stopped.code
        finally:
            for signum, handler in signals.items():
                signal.signal(signum, handler)
            for handler in set(root.handlers) - set(handlers):
                handler.close()
            root.handlers[:] = handlers
            root.setLevel(level)
            GlobalHydra.instance().clear()
        out = capsys.readouterr()
        return subprocess.CompletedProcess(argv, status, out.out, out.err)

    return run
