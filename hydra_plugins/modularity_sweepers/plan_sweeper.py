"""Hydra sweeper of ``make run``: a plan of experiments, each step expanded as ``-m`` would.

``make run`` is ``python -m modularity.run -m hydra/sweeper=embedded``. The sweeper's config
(``conf/hydra/sweeper/embedded.yaml``) names the embedded experiments and the steps each
runs. A step's jobs are the overrides ``experiment=<name> <the step's overrides>``, plus the
experiment's own ``hydra.sweeper.params`` for a ``sweep: true`` step, expanded by Hydra's own
:class:`BasicSweeper`: the pruning step is exactly what ``-m experiment=<name>`` runs, the
others the single runs the experiments' READMEs give (``experiment=<name> analysis=overlap
...``), so ``make run`` cannot drift from them. The jobs go
to the configured launcher: the basic one runs them in this process, one after another, so
they share the loaded model and cached statistics.

A step's one job writes into ``<experiment>/<step>`` of the sweep directory; several jobs
into ``<experiment>/<step>/<n>_<overrides>``, named as ``-m`` names its jobs. Unlike the
basic sweeper, a failing job does not stop the plan: Hydra records it (the
:class:`~modularity.infra.sweep_summary.WriteSummary` callback lists it) and the next job
runs. A job whose directory holds a finished run of the same config
(:mod:`modularity.infra.resume`) is not launched again. Each job's config is composed once,
for that test and its launch (:func:`modularity.infra.sweeper.composing_once`).
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from modularity.errors import ConfigError, invalid_choice
from modularity.infra.resume import finished
from modularity.infra.sweeper import composing_once

log = logging.getLogger(__name__)


class JobFailed(Exception):
    """A job that stopped the command with a message (:class:`modularity.run.Failed`), as
    an exception Hydra records as the job's failure instead of exiting."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def keep_going(task_function: TaskFunction) -> TaskFunction:
    """``task_function`` whose exit (a user's problem, printed as one line) fails only its job."""

    @functools.wraps(task_function)
    def job(cfg: DictConfig) -> Any:
        try:
            return task_function(cfg)
        except SystemExit as stop:
            if stop.code in (0, None):
                return None
            message = getattr(stop, "message", None) or f"exited with status {stop.code}"
            raise JobFailed(message) from None

    return job


class PlanSweeper(BasicSweeper):
    """Runs ``experiments`` (name -> its ``steps`` and per-step ``overrides``), each step as
    defined in ``steps`` (name -> ``overrides``, and ``sweep``: add the experiment's own
    sweep); ``only`` restricts the plan to some of its experiments. ``params`` (the basic
    sweeper's) is merged into each experiment's own, as with ``-m experiment=<name>``; all
    jobs go to the launcher in one batch."""

    def __init__(
        self,
        steps: Mapping[str, Any],
        experiments: Mapping[str, Any],
        only: Sequence[str] | None = None,
        params: dict[str, str] | None = None,
    ) -> None:
        super().__init__(max_batch_size=None, params=params)
        self.steps = steps
        self.experiments = experiments
        self.only = only

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        super().setup(
            hydra_context=composing_once(hydra_context),
            task_function=keep_going(task_function),
            config=config,
        )

    def chosen(self) -> list[str]:
        """The plan's experiments that run, in the plan's order."""
        names = list(self.experiments)
        for name in self.only or ():
            if name not in names:
                raise invalid_choice("experiment of the plan (hydra.sweeper.only)", name, names)
        return [n for n in names if self.only is None or n in self.only]

    def experiment_params(self, name: str, arguments: Sequence[str]) -> list[str]:
        """``hydra.sweeper.params`` of ``-m experiment=<name> <arguments>``, as overrides."""
        assert self.hydra_context is not None and self.config is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides(list(arguments))
        fixed = [o.input_line for o in overrides if not o.is_sweep_override()]
        cfg = self.hydra_context.config_loader.load_sweep_config(
            self.config, [f"experiment={name}", *fixed]
        )
        params = cfg.hydra.sweeper.get("params") or {}
        return [f"{key}={value}" for key, value in params.items()]

    def step_jobs(self, name: str, step: str, arguments: Sequence[str]) -> list[list[str]]:
        """Every job of one step of one experiment, its directory included."""
        if step not in self.steps:
            raise invalid_choice(f"step of experiment {name!r}", step, list(self.steps))
        spec = self.steps[step] or {}
        own = (self.experiments[name] or {}).get("overrides") or {}
        params = self.experiment_params(name, arguments) if spec.get("sweep") else []
        lines = [
            *params,
            f"experiment={name}",
            *arguments,
            *(spec.get("overrides") or ()),
            *(own.get(step) or ()),
        ]
        assert self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        (jobs,) = self.split_arguments(parser.parse_overrides(lines), None)
        if len(jobs) == 1:
            return [[*jobs[0], f"hydra.sweep.subdir='{name}/{step}'"]]
        named = "${hydra.job.override_dirname}"  # as -m names a job's directory
        return [
            [*job, f"hydra.sweep.subdir='{name}/{step}/{n}_{named}'"] for n, job in enumerate(jobs)
        ]

    def plan(self, arguments: Sequence[str]) -> list[list[str]]:
        """Every job of the plan, in order."""
        return [
            job
            for name in self.chosen()
            for step in (self.experiments[name] or {}).get("steps") or ()
            for job in self.step_jobs(name, step, arguments)
        ]

    def is_finished(self, job: list[str]) -> bool:
        """Whether the job's directory holds a finished run of the job's config."""
        assert self.hydra_context is not None and self.config is not None
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, job)
        return finished(Path(cfg.hydra.sweep.dir) / cfg.hydra.sweep.subdir, cfg)

    def sweep(self, arguments: list[str]) -> list[Sequence[JobReturn]]:
        assert self.config is not None and self.launcher is not None
        try:
            jobs = self.plan(arguments)
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        pending = [job for job in jobs if not self.is_finished(job)]
        if len(pending) < len(jobs):
            log.info(
                "%d of %d jobs finished earlier with the same config: kept",
                len(jobs) - len(pending),
                len(jobs),
            )
        return [self.launcher.launch(pending, initial_job_idx=0)] if pending else []
