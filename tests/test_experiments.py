"""Experiment configs compose, their sweeps expand as `-m` would, and `make run`'s driver
runs an embedded experiment end to end (on a tiny random model, so no training)."""

from __future__ import annotations

import math

import pytest
from omegaconf import OmegaConf

from modularity.config import compose_config, group_options, load_task_config
from modularity.default import PLANS, Experiment, experiment_jobs, run_plan, sweep_jobs
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
    jobs = sweep_jobs(name)
    expected = math.prod(len(str(v).split(",")) for v in params.values())
    assert len(jobs) == expected
    assert len({tuple(j) for j in jobs}) == expected


def test_plans_name_existing_experiments():
    assert {e.name for plan in PLANS.values() for e in plan} <= set(EXPERIMENTS)


def test_paper_experiment_reads_the_hub():
    cfg = compose_config(["experiment=mistral_domains"])
    assert cfg.data.source.name == "hub" and cfg.trainer.precision == "bf16-true"


@pytest.mark.slow
def test_embedded_plan_end_to_end(tmp_path):
    overrides = [
        "model=tiny_vit",
        "tasks=[digits-0,digits-1]",
        "hydra.sweeper.params={task:'digits-0,digits-1'}",
        f"cache.dir={tmp_path / 'cache'}",
        "trainer.enable_progress_bar=false",
        "trainer.accelerator=cpu",
    ]
    quick = {"moefy": ["analysis.n_null=50"]}
    plan = [Experiment("embedded_digits", step_overrides=quick)]
    failures = run_plan(plan, tmp_path / "out", overrides)
    assert failures == {}
    root = tmp_path / "out" / "embedded_digits"
    assert len(list((root / "prune").glob("*/results.csv"))) == 2 * 4  # tasks x fractions
    assert (root / "overlap" / "trained_vs_random.csv").is_file()
    assert (root / "moefy" / "alignment.csv").is_file()
    saved = OmegaConf.load(root / "overlap" / ".hydra" / "config.yaml")
    assert saved.model.name == "tiny_vit" and saved.analysis._target_.endswith("Overlap")

    # Again, after "killing" one job (no saved config): only that job runs.
    results = sorted(root.rglob("results.csv"))
    stamps = {p: p.stat().st_mtime_ns for p in results}
    (results[0].parent / ".hydra" / "config.yaml").unlink()
    assert run_plan(plan, tmp_path / "out", overrides) == {}
    rerun = [p for p in results if p.stat().st_mtime_ns != stamps[p]]
    assert rerun == [results[0]]


@pytest.mark.slow
def test_failed_steps_are_reported_and_the_rest_runs(tmp_path):
    plan = [
        Experiment("embedded_digits", ("overlap",), requires="no_such_package_here"),
        Experiment("embedded_digits", ("overlap",)),  # fails: one task cannot overlap
        Experiment("embedded_digits", ("moefy",), step_overrides={"moefy": ["analysis.n_null=20"]}),
    ]
    overrides = ["model=tiny_vit", "tasks=[digits-0]"]
    failures = run_plan(
        plan, tmp_path, [*overrides, "trainer.enable_progress_bar=false", f"cache.dir={tmp_path}/c"]
    )
    root = tmp_path / "embedded_digits"
    assert set(failures) == {str(root), str(root / "overlap")}
    assert "no_such_package_here" in failures[str(root)]
    assert "at least 2 tasks" in failures[str(root / "overlap")]
    assert (root / "moefy" / "alignment.csv").is_file()


@pytest.mark.parametrize(
    ("launcher", "target"),
    [("slurm", "submitit"), ("local", "joblib")],
)
def test_launchers_compose(launcher, target):
    cfg = compose_config(["experiment=mistral_domains", f"hydra/launcher={launcher}"], hydra=True)
    assert target in cfg.hydra.launcher._target_.lower()
    if launcher == "slurm":
        assert cfg.hydra.launcher.gpus_per_node == 1


def test_make_run_routes_smollm2_through_every_router_on_the_ladder(tmp_path):
    plan = {e.name: e for e in PLANS["default"]}
    jobs = experiment_jobs(plan["embedded_smollm2_moe"], tmp_path, [])
    assert [out.name for _, out in jobs] == ["moefy"]  # routing only, no pruning sweep
    cfg = compose_config(jobs[0][0])
    assert list(cfg.analysis.routers) == ["similarity", "mlp", "oracle"]
    assert list(cfg.analysis.ladder) == [0.125, 0.25, 0.5, 1.0]
    assert {"kmeans", "random"} <= set(cfg.analysis.methods)
    check_config(cfg)
