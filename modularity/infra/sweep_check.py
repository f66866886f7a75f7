"""Hydra callback: check every job of a multirun before the first one runs.

A sweep whose fifth job names a missing task, or a fraction outside (0, 1], would otherwise
stop after four jobs' work; here all invalid jobs are reported at once, one line each, and
nothing runs.
"""

from __future__ import annotations

import sys
from typing import Any

from hydra.core.global_hydra import GlobalHydra
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict

from modularity.analyses.base import Analysis
from modularity.errors import ModularityError
from modularity.infra.sweeps import expand


def job_overrides(config: DictConfig) -> list[list[str]]:
    """The override list of every job, as the basic sweeper builds them: the sweeper's
    ``params`` first, the command line's overrides of the same key replacing them."""
    merged: dict[str, str] = {}
    for key, value in (config.hydra.sweeper.get("params") or {}).items():
        merged[str(key)] = f"{key}={value}"
    for line in config.hydra.overrides.task:
        merged[line.split("=", 1)[0].lstrip("+~")] = line
    return expand(list(merged.values()))


def check_job(config: DictConfig, overrides: list[str]) -> None:
    from modularity.infra.validate import check_config

    loader = GlobalHydra.instance().config_loader()
    cfg = loader.load_sweep_config(config, overrides)
    with open_dict(cfg):
        cfg.pop("hydra", None)
    check_against_model(cfg, check_config(cfg))


def check_against_model(cfg: DictConfig, analysis: Analysis) -> None:
    """Values only the model can judge (``layers`` against its depth, an analysis's
    parameters against its MLP width), from its config alone: a sweep's ``layers=[0],[7]``
    on a 4-layer model fails before job 0, not at job 1."""
    from modularity.models.loading import model_depth, model_width
    from modularity.neurons.selection import check_layers

    if cfg.layers is not None:
        depth = model_depth(cfg.model)
        if depth is not None:
            check_layers(list(cfg.layers), depth)
    if type(analysis).check_width is Analysis.check_width:
        return  # nothing to check against the width: no config read for it
    width = model_width(cfg.model)
    if width is not None:
        analysis.check_width(width)


BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


class CheckJobs(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.sweeper.get("_target_") != BASIC_SWEEPER:
            return  # another sweeper chooses its jobs (make run's plan runs past a failing one)
        problems = []
        jobs = job_overrides(config)
        for number, overrides in enumerate(jobs):
            try:
                check_job(config, overrides)
            except ModularityError as err:
                problems.append(f"  job {number} ({' '.join(overrides)}): {err}")
            except Exception as err:  # noqa: BLE001 - Hydra's own composition errors
                message = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
                problems.append(f"  job {number} ({' '.join(overrides)}): {message}")
        if problems:
            print(
                f"error: {len(problems)} of {len(jobs)} jobs are invalid; none ran:",
                *problems,
                sep="\n",
                file=sys.stderr,
            )
            sys.exit(2)
