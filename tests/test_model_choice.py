"""``+model=NAME`` (the spelling users type) and ``model=NAME`` choose the same model, alone
or with an experiment, on the command line as users run it (README "Models")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent


def job_config(*arguments: str):
    """The job config ``python -m modularity.run <arguments>`` composes (``--cfg job``)."""
    done = subprocess.run(
        [sys.executable, "-m", "modularity.run", *arguments, "--cfg", "job"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return OmegaConf.create(done.stdout)


@pytest.mark.parametrize("spelling", ["+model=tiny_gpt2", "model=tiny_gpt2"])
def test_model_choice_alone(spelling):
    cfg = job_config(spelling, "task=prose")
    assert cfg.model.name == "tiny_gpt2" and cfg.task.name == "prose"


@pytest.mark.parametrize(
    "arguments",
    [
        ["+model=tiny_gpt2", "experiment=embedded_smollm2"],
        ["experiment=embedded_smollm2", "model=tiny_gpt2"],
    ],
    ids=["+model", "model"],
)
def test_model_choice_replaces_the_experiments_model(arguments):
    cfg = job_config(*arguments)
    assert cfg.model.name == "tiny_gpt2"
    assert list(cfg.tasks) == ["code", "prose", "biology", "chemistry", "physics"]
    assert cfg.data.collect_size == 2048  # the rest of the experiment stays
