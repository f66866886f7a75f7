"""Resuming a multirun: a job's directory says whether it holds a finished run, and of what.

Hydra writes ``.hydra/config.yaml`` when a job starts, so that file cannot tell a finished
job from a killed one. :class:`MarkFinished`, a Hydra callback, writes the job's config to
``.hydra/finished.yaml`` once the job has completed, and removes it when a job starts in
that directory again. Hydra's callbacks cannot skip a job, so the sweeper asks
:func:`finished` before it launches one (:mod:`hydra_plugins.modularity_sweepers`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from modularity.infra.artefacts import write_atomic

FINISHED = Path(".hydra") / "finished.yaml"


def job_config_text(config: DictConfig) -> str:
    """The job's own config (``hydra`` left out), as YAML: what a finished run is compared by."""
    job = config.copy()
    with open_dict(job):
        job.pop("hydra", None)
    return OmegaConf.to_yaml(job)


def finished(job_dir: Path, config: DictConfig) -> bool:
    """Whether ``job_dir`` holds a finished run of ``config`` (the job's config as the sweep
    composes it, ``hydra`` node included or not)."""
    mark = job_dir / FINISHED
    return mark.is_file() and mark.read_text() == job_config_text(config)


class MarkFinished(Callback):
    """Marks each completed job's directory with the config it ran (``hydra.callbacks``)."""

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        (Path(config.hydra.runtime.output_dir) / FINISHED).unlink(missing_ok=True)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if job_return.status == JobStatus.COMPLETED:
            mark = Path(config.hydra.runtime.output_dir) / FINISHED
            text = job_config_text(config)
            write_atomic(mark, lambda tmp: tmp.write_text(text), record=False)
