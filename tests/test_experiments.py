"""Experiment configs compose and their sweeps expand as `-m` would (`make run` itself:
tests/test_make_run.py)."""

from __future__ import annotations

import math

import pytest
from cli import sweep_jobs

from modularity.config import compose_config, group_options, hydra_context, load_task_config
from modularity.infra.validate import check_config

EXPERIMENTS = group_options("experiment")


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_and_validates(name):
    cfg = compose_config([f"experiment={name}"], hydra=True)
    params = cfg.hydra.sweeper.params or {}  # none: a single job
    assert cfg.model.name and cfg.tasks, name
    check_config(cfg)  # every check that needs no model
    for task in cfg.tasks:
        assert load_task_config(task, cfg.data).name == task
    with hydra_context():
        jobs = sweep_jobs([f"{k}={v}" for k, v in params.items()])
    expected = math.prod(len(str(v).split(",")) for v in params.values())
    assert len(jobs) == expected
    assert len({tuple(j) for j in jobs}) == expected


def test_paper_experiment_reads_the_hub():
    cfg = compose_config(["experiment=mistral_domains"])
    assert cfg.data.source.name == "hub" and cfg.trainer.precision == "bf16-true"


@pytest.mark.parametrize(
    ("launcher", "target"),
    [("slurm", "submitit"), ("local", "joblib")],
)
def test_launchers_compose(launcher, target):
    cfg = compose_config(["experiment=mistral_domains", f"hydra/launcher={launcher}"], hydra=True)
    assert target in cfg.hydra.launcher._target_.lower()
    if launcher == "slurm":
        assert cfg.hydra.launcher.gpus_per_node == 1
