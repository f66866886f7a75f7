"""Hydra callback: at the end of a multirun, the report and ``summary.md`` of its directory.

Every failed job is logged as it ends (a user's problem as its one line, anything else
with its traceback) and listed in ``summary.md``; the report covers whatever ran, finished
jobs of earlier invocations included. The command then exits with status 1 if a job
failed, so ``make run`` ends as an error while keeping everything written.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from modularity.errors import ModularityError

log = logging.getLogger(__name__)


def failure_reason(err: BaseException) -> str:
    """One line for a failed job: the message a user's problem printed, else the exception."""
    message = getattr(err, "message", None)
    if isinstance(message, str):
        return message
    if isinstance(err, ModularityError):
        return str(err)
    return f"{type(err).__name__}: {err}"


class WriteSummary(Callback):
    """``report.csv``, the figures and ``summary.md`` (titled ``title``) in the sweep
    directory, once every job has ended (``hydra.callbacks``)."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.failures: dict[str, str] = {}
        self.start = time.perf_counter()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.failures.clear()
        self.start = time.perf_counter()

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if job_return.status != JobStatus.FAILED:
            return
        where = str(Path(config.hydra.sweep.dir) / config.hydra.sweep.subdir)
        try:
            job_return.return_value  # noqa: B018 - Hydra re-raises the job's exception here
        except Exception as err:  # noqa: BLE001 - any failure is reported, the sweep goes on
            self.failures[where] = failure_reason(err)
            if getattr(err, "message", None) is None and not isinstance(err, ModularityError):
                log.error("%s failed:\n%s", where, "".join(traceback.format_exception(err)))
            else:
                log.error("%s failed: %s", where, self.failures[where])

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from modularity.report import report
        from modularity.summary import write_summary

        root = Path(config.hydra.sweep.dir)
        frame, unreadable = report(root)
        failures = {**self.failures, **dict(line.split(": ", 1) for line in unreadable)}
        seconds = time.perf_counter() - self.start
        summary = write_summary(frame, root, failures, seconds, self.title)
        print(f"\n{summary.read_text()}\nwritten: {summary}")
        if failures:
            sys.exit(1)
