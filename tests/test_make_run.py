"""``make run`` and ``make run-full``: one Hydra multirun each, whose sweeper expands a plan
of experiments into the jobs ``-m experiment=<name>`` runs; resume and the summary are
Hydra callbacks. The Makefile's own command line runs here, restricted to a tiny plan."""

from __future__ import annotations

import itertools
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hydra._internal.callbacks import Callbacks
from hydra.core.global_hydra import GlobalHydra
from hydra.core.plugins import Plugins
from hydra.types import HydraContext, RunMode
from omegaconf import OmegaConf

from modularity.config import compose_config, group_options, hydra_context
from modularity.errors import ConfigError
from modularity.infra.resume import FINISHED

ROOT = Path(__file__).resolve().parent.parent
MAKEFILE = (ROOT / "Makefile").read_text()


def recipe(target: str) -> list[str]:
    """The Makefile's command for ``target``, with this interpreter as ``$(BIN)/python``."""
    (line,) = re.findall(rf"^{target}: .*\n\t(.*)$", MAKEFILE, flags=re.M)
    words = shlex.split(line)
    assert words[0] == "$(BIN)/python", line
    return [sys.executable, *words[1:]]


def plan_jobs(*overrides: str) -> list[list[str]]:
    """Every job's overrides as the sweeper of ``python -m modularity.run -m <overrides>``
    would launch them (nothing runs)."""
    with hydra_context():
        loader = GlobalHydra.instance().config_loader()
        cfg = loader.load_configuration("config", list(overrides), run_mode=RunMode.MULTIRUN)
        context = HydraContext(config_loader=loader, callbacks=Callbacks())
        sweeper = Plugins.instance().instantiate_sweeper(
            hydra_context=context, task_function=lambda cfg: None, config=cfg
        )
        return sweeper.plan(list(cfg.hydra.overrides.task))


def by_step(jobs: list[list[str]]) -> dict[str, list[list[str]]]:
    """Jobs grouped by ``<experiment>/<step>``, the directory option removed."""
    steps: dict[str, list[list[str]]] = {}
    for job in jobs:
        (subdir,) = [o for o in job if o.startswith("hydra.sweep.subdir=")]
        step = "/".join(subdir.split("=", 1)[1].strip("'").split("/")[:2])
        steps.setdefault(step, []).append([o for o in job if o != subdir])
    return steps


def choices(job: list[str]) -> dict[str, str]:
    return dict(o.split("=", 1) for o in job)


def test_make_run_and_run_full_are_multiruns_of_a_plan():
    assert recipe("run")[1:] == ["-m", "modularity.run", "-m", "hydra/sweeper=embedded"]
    assert recipe("run-full")[1:] == ["-m", "modularity.run", "-m", "hydra/sweeper=embedded_full"]


def test_each_step_is_what_minus_m_experiment_runs():
    """A sweep step: every task x fraction of the experiment's own sweep, as `-m
    experiment=<name>`; any other step: one job, the experiment with the step's analysis."""
    steps = by_step(plan_jobs("hydra/sweeper=embedded"))
    assert set(steps) == {
        *(f"embedded_fashion/{s}" for s in ("prune", "overlap", "moefy", "dynamics")),
        *(
            f"{e}/{s}"
            for e in ("embedded_text", "embedded_smollm2")
            for s in ("prune", "overlap", "moefy")
        ),
        "embedded_smollm2_moe/moefy",
        "embedded_fashion_sites/sites",
        "embedded_smollm2_sites/sites",
    }
    assert {e.split("/")[0] for e in steps} <= set(group_options("experiment"))
    for experiment in ("embedded_fashion", "embedded_text", "embedded_smollm2"):
        cfg = compose_config([f"experiment={experiment}"], hydra=True)
        fractions = str(cfg.hydra.sweeper.params["selection.fraction"]).split(",")
        jobs = steps[f"{experiment}/prune"]
        expected = {(t, f) for t, f in itertools.product(cfg.tasks, fractions)}
        assert {(choices(j)["task"], choices(j)["selection.fraction"]) for j in jobs} == expected
        assert len(jobs) == len(expected)
        assert all(choices(j)["experiment"] == experiment for j in jobs)
        (overlap,) = steps[f"{experiment}/overlap"]
        assert choices(overlap) == {
            "experiment": experiment,
            "analysis": "overlap",
            "analysis.compare_random": "True",
        }
    (dynamics,) = steps["embedded_fashion/dynamics"]
    assert choices(dynamics)["analysis.checkpoints"].startswith("[step-000000,")


def test_make_run_routes_smollm2_through_every_router_on_the_ladder():
    only = "hydra.sweeper.only=[embedded_smollm2_moe]"
    (job,) = by_step(plan_jobs("hydra/sweeper=embedded", only))["embedded_smollm2_moe/moefy"]
    cfg = compose_config(job)  # the experiment's own config, validated in test_experiments.py
    assert list(cfg.analysis.routers) == ["similarity", "mlp", "oracle"]
    assert list(cfg.analysis.ladder) == [0.125, 0.25, 0.5, 1.0]
    assert {"kmeans", "random"} <= set(cfg.analysis.methods)


def test_run_full_is_the_smollm2_headline():
    steps = by_step(plan_jobs("hydra/sweeper=embedded_full"))
    assert list(steps) == [
        f"embedded_smollm2_full/{s}" for s in ("prune", "overlap", "moefy", "prune_domain")
    ]
    prune = steps["embedded_smollm2_full/prune"]
    assert {choices(j)["selection.fraction"] for j in prune} == {"0.02"} and len(prune) == 5
    (overlap,) = steps["embedded_smollm2_full/overlap"]
    assert choices(overlap)["analysis.compare_random"] == "False"
    (domain,) = steps["embedded_smollm2_full/prune_domain"]
    cfg = compose_config(domain)
    assert cfg.task.name == "code" and cfg.data.exclude_from_reference.name == "domain"
    assert cfg.data.collect_size == 102400


def test_only_picks_experiments_and_names_the_valid_ones():
    jobs = plan_jobs("hydra/sweeper=embedded", "hydra.sweeper.only=[embedded_smollm2_moe]")
    assert [choices(j[:-1]) for j in jobs] == [
        {"experiment": "embedded_smollm2_moe", "analysis": "moefy"}
    ]
    with pytest.raises(ConfigError, match="'embedded_nope'; valid: embedded_fashion, "):
        plan_jobs("hydra/sweeper=embedded", "hydra.sweeper.only=[embedded_nope]")


def test_overrides_reach_every_job_and_the_experiments_sweep():
    """As with `-m experiment=<name> tasks=[...]`: the override applies to every job, and
    the experiment's sweep (`task: ${csv:${tasks}}`) follows it."""
    jobs = plan_jobs(
        "hydra/sweeper=embedded", "hydra.sweeper.only=[embedded_text]", "tasks=[code,prose]"
    )
    steps = by_step(jobs)
    assert {choices(j)["task"] for j in steps["embedded_text/prune"]} == {"code", "prose"}
    assert all(choices(j)["tasks"] == "[code,prose]" for j in jobs)


@pytest.mark.slow
def test_make_run_reports_a_failing_job_runs_the_rest_and_resumes(tmp_path):
    """The Makefile's command on a plan of one tiny experiment: overlap fails (one task),
    MoEfication runs; summary.md names the failure; the second invocation keeps the
    finished job and tries the failed one again."""
    out = tmp_path / "out"
    steps = "overlap:['tasks=[digits-0]'],moefy:['analysis.n_null=20']"
    plan = f"{{steps:[overlap,moefy],overrides:{{{steps}}}}}"
    command = [
        *recipe("run"),
        f"hydra.sweep.dir={out}",
        f"+hydra.sweeper.experiments.embedded_digits={plan}",
        "hydra.sweeper.only=[embedded_digits]",
        "model=tiny_vit",
        "tasks=[digits-0,digits-1]",
        "data.collect_size=200",
        "data.eval_size=200",
        f"cache.dir={tmp_path / 'cache'}",
        "trainer.enable_progress_bar=false",
        "trainer.accelerator=cpu",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    def make_run() -> subprocess.CompletedProcess:
        return subprocess.run(
            command, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300
        )

    first = make_run()
    output = first.stdout + first.stderr
    assert first.returncode == 1, output[-3000:]
    assert "error: analysis=overlap needs at least 2 tasks" in output, output[-3000:]
    moefy = out / "embedded_digits" / "moefy"
    assert (moefy / "alignment.csv").is_file() and (moefy / FINISHED).is_file()
    assert not (out / "embedded_digits" / "overlap" / FINISHED).exists()
    summary = (out / "summary.md").read_text()
    assert "## Steps that failed" in summary
    assert (
        f"- `{out / 'embedded_digits' / 'overlap'}`: analysis=overlap needs at least 2 tasks"
        in summary
    )
    report = (out / "report.csv").read_text()
    assert "moefy" in report
    saved = OmegaConf.load(moefy / ".hydra" / "config.yaml")
    assert saved.model.name == "tiny_vit" and saved.analysis._target_.endswith("Moefy")

    stamp = (moefy / "alignment.csv").stat().st_mtime_ns
    second = make_run()
    output = second.stdout + second.stderr
    assert second.returncode == 1, output[-3000:]
    assert "1 of 2 jobs finished earlier with the same config: kept" in output
    assert "error: analysis=overlap needs at least 2 tasks" in output  # tried again
    assert (moefy / "alignment.csv").stat().st_mtime_ns == stamp
    assert "overlap needs at least 2 tasks" in (out / "summary.md").read_text()
