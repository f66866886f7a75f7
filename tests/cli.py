"""The command line as tests run it: ``python -m modularity.run`` in a subprocess, offline,
small sizes on a tiny model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SMALL = [
    "data.collect_size=2048",
    "data.eval_size=1024",
    "data.block_size=64",
    "trainer.enable_progress_bar=false",
    "trainer.accelerator=cpu",
]


def modularity_run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    """Run the entry point with ``args`` and extra environment ``env``; it must succeed."""
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HYDRA_FULL_ERROR": "1", **env}
    proc = subprocess.run(
        [sys.executable, "-m", "modularity.run", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc


def sweep_jobs(overrides: list[str]) -> list[list[str]]:
    """Every job of a sweep, as Hydra's basic sweeper expands it (inside ``hydra_context``:
    a glob sweep lists the config repository)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    loader = GlobalHydra.instance().config_loader()
    parsed = OverridesParser.create(config_loader=loader).parse_overrides(overrides)
    (jobs,) = BasicSweeper.split_arguments(parsed, None)
    return jobs
