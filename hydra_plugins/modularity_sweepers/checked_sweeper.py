"""``hydra/sweeper=checked``, the default sweeper: Hydra's basic sweeper, with every job of
a multirun checked before the first one runs.

A sweep whose fifth job names a missing task, or a fraction outside (0, 1], would otherwise
stop after four jobs' work; here all invalid jobs are reported at once, one line each, and
nothing runs. Each job's config is composed once, for its check and its launch
(:func:`modularity.infra.sweeper.composing_once`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from modularity.errors import ModularityError
from modularity.infra.sweeper import check_job, composing_once


class CheckedSweeper(BasicSweeper):
    """``hydra/sweeper=checked``, the default: Hydra's basic sweeper (same ``params`` and
    ``max_batch_size``) whose check of a batch is the runs' own checks, every invalid job
    one line, and whose jobs are composed once."""

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        super().setup(
            hydra_context=composing_once(hydra_context), task_function=task_function, config=config
        )

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """With the first batch, every job of the sweep (later batches: nothing left)."""
        assert self.hydra_context is not None and self.config is not None
        assert self.overrides is not None
        if self.batch_index > 1:
            return
        jobs = [job for each in self.overrides for job in each]
        problems = []
        for number, overrides in enumerate(jobs):
            try:
                check_job(self.hydra_context.config_loader, self.config, overrides)
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
