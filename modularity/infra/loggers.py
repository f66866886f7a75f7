"""Experiment loggers (W&B, CSV, none) behind one small interface.

Lightning's loggers are built from ``conf/logger/*.yaml`` with ``hydra.utils.instantiate``.
A W&B run is laid out so that W&B's own grouping compares runs:

- the run config holds the run's settings as flat keys (``task``, ``tasks``, ``fraction``,
  ``layers``, ``site``, ``model``, ``analysis``, ...) beside the whole composed config
  (``config``), so runs group and filter by any of them;
- headline numbers use keys that do not name the run's task (``effect/top1``,
  ``effect/top1_low``, ``effect/top1_high``, ``drop/task/top1``, ``stability``), so one chart
  shows every task's runs; they are logged once against ``fraction`` and land in the summary;
- series are logged along their natural axis (``by_layer/*`` against ``layer``,
  ``by_training_step/*`` against ``training_step``), so W&B draws them as line charts;
- matrices and alignment are long-format tables (and W&B line plots), beside the PNGs;
- the runs of one sweep share a group naming the sweep's start date and time.

Without network W&B writes offline (``wandb sync`` uploads later); its console messages are
silenced unless ``verbose=true``.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from modularity.analyses.base import analysis_name
from modularity.config import choice
from modularity.infra.artefacts import writable_directory
from modularity.infra.optional import require

# Rows whose value goes to the W&B run summary (with their interval) as headline numbers.
SUMMARY_METRICS = (
    "effect",
    "drop",
    "stability",
    "jaccard",
    "mantel_r",
    "alignment_z_by_depth",
    "matched_fraction",
)
WHOLE_MODEL_LAYERS = ("all", "early", "middle", "late")  # per-layer rows go to series
SWEEP_STARTED = ".sweep-started"  # in a sweep directory: when its first job started


def wandb_reachable(host: str = "api.wandb.ai", timeout: float = 1.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def wandb_offline() -> bool:
    """Offline unless W&B is asked to be online and its server answers."""
    mode = os.environ.get("WANDB_MODE")
    if mode in ("offline", "disabled", "dryrun"):
        return True
    return not wandb_reachable()


def sweep_started(sweep_dir: Path) -> str:
    """When the sweep in ``sweep_dir`` started (``YYYY-MM-DD HH:MM:SS``): recorded by its
    first job and read by the others, whatever launcher runs them; a resumed sweep keeps it."""
    marker = sweep_dir / SWEEP_STARTED
    if not marker.is_file():
        sweep_dir.mkdir(parents=True, exist_ok=True)
        draft = sweep_dir / f"{SWEEP_STARTED}.{os.getpid()}"
        draft.write_text(datetime.now().strftime("%Y-%m-%d %H:%M:%S"))
        try:
            os.link(draft, marker)  # atomic: the first job's time wins
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return marker.read_text().strip()


def sweep_group() -> str | None:
    """The W&B group of a sweep's jobs: its start date and time and its directory's name
    (unique across days, shared by every job); None for a single run."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hydra = HydraConfig.get()
    if choice(hydra.mode) != "MULTIRUN":
        return None
    sweep_dir = Path(hydra.sweep.dir)
    return f"{sweep_started(sweep_dir)} {sweep_dir.name}"


def run_name(config: DictConfig) -> str:
    analysis = analysis_name(config)
    subject = ",".join(config.tasks) if analysis != "prune" and config.tasks else config.task.name
    return f"{analysis} {config.model.name} {subject} top{config.selection.fraction:g}"


def run_settings(config: DictConfig) -> dict[str, Any]:
    """The run's settings (model, fraction, site, ...) as flat config keys, with its task
    and tasks, for grouping and filtering runs in W&B."""
    from modularity.analyses.base import settings

    return {
        **settings(config),
        "task": str(config.task.name),
        "tasks": ",".join(str(t) for t in config.tasks),
        "seed": int(config.seed),
    }


def headline_metrics(frame: pd.DataFrame) -> dict[str, float]:
    """The headline rows of a run as ``{key: value}``, intervals as ``<key>_low/_high``.

    A key joins metric, variant, measure, task, partner and depth third, leaving out what
    does not tell rows of the run apart: the task when the run has one (it is in the run
    config), a variant when the metric has only one (``effect``: task - reference), the
    layer when it is the whole model. So pruning runs of every task share ``effect/top1``.
    """
    rows = frame[frame.metric.isin(SUMMARY_METRICS) & frame.layer.isin(WHOLE_MODEL_LAYERS)]
    one_task = rows.task.nunique() <= 1
    variants = rows.groupby("metric").variant.nunique()
    values: dict[str, float] = {}
    for row in rows.itertuples():
        parts = (
            row.metric,
            row.variant if variants[row.metric] > 1 else "",
            row.measure,
            "" if one_task else row.task,
            row.partner,
            "" if row.layer == "all" else row.layer,
        )
        key = "/".join(p for p in parts if p)
        values[key] = float(row.value)
        if row.low == row.low:
            values[f"{key}_low"], values[f"{key}_high"] = float(row.low), float(row.high)
    return values


def long_matrix(names: list[str], matrix: Any, **columns: Any) -> pd.DataFrame:
    """A square matrix as long-format rows (``row``, ``column``, ``value``), which W&B
    tables filter and plot; ``columns`` are constant columns put first (e.g. ``layers``)."""
    frame = pd.DataFrame(
        [(a, b, float(matrix[i][j])) for i, a in enumerate(names) for j, b in enumerate(names)],
        columns=["row", "column", "value"],
    )
    for position, (key, value) in enumerate(columns.items()):
        frame.insert(position, key, value)
    return frame


class RunLogger:
    """Sends a run's settings, rows, series, tables and figures to the configured logger."""

    def __init__(self, logger_cfg: DictConfig | None, config: DictConfig, run_dir: Path) -> None:
        self.logger = None
        self.fraction = float(config.selection.fraction)
        if logger_cfg:
            overrides: dict[str, Any] = {"save_dir": str(run_dir)}
            if str(logger_cfg.get("_target_", "")).endswith("WandbLogger"):
                require("wandb")
                writable_directory(Path(run_dir) / "wandb", "W&B directory")
                overrides.update(wandb_arguments(bool(config.get("verbose", False))))
                logger_cfg = OmegaConf.merge(logger_cfg, {})
                with open_dict(logger_cfg):
                    logger_cfg.name = logger_cfg.get("name") or run_name(config)
                    logger_cfg.group = logger_cfg.get("group") or sweep_group()
                    logger_cfg.job_type = logger_cfg.get("job_type") or analysis_name(config)
            self.logger = instantiate(logger_cfg, **overrides)
            if hasattr(self.logger, "_wandb_init"):
                # Lightning passes anonymous=None, which W&B reports as an ignored setting.
                self.logger._wandb_init.pop("anonymous", None)
            plain = OmegaConf.to_container(config, resolve=True, enum_to_str=True)
            self.logger.log_hyperparams({**run_settings(config), "config": plain})
        self.is_wandb = type(self.logger).__name__ == "WandbLogger"

    def _log(self, values: dict[str, Any]) -> None:
        if self.is_wandb:
            self.logger.experiment.log(values)

    def table(self, name: str, frame: pd.DataFrame) -> None:
        if self.is_wandb:
            import wandb

            self._log({name: wandb.Table(dataframe=frame)})

    def image(self, name: str, path: Path) -> None:
        if self.is_wandb:
            import wandb

            self._log({name: wandb.Image(str(path))})

    def line_plot(
        self, name: str, frame: pd.DataFrame, x: str, y: str, stroke: str, title: str
    ) -> None:
        """A W&B line plot (one line per ``stroke`` value) with its long-format table."""
        if not self.is_wandb or frame.empty:
            return
        import wandb

        plot = wandb.plot.line(wandb.Table(dataframe=frame), x, y, stroke=stroke, title=title)
        self._log({name: plot})

    def series(self, axis: str, points: pd.DataFrame) -> None:
        """One history step per value of ``axis`` (``layer``, ``training_step``), each other
        column logged as ``by_<axis>/<column>`` against it, so W&B draws line charts."""
        if self.logger is None or points.empty:
            return
        prefix = f"by_{axis}"
        records = points.sort_values(axis).to_dict("records")
        if not self.is_wandb:
            for record in records:
                step = record.pop(axis)
                values = {f"{prefix}/{k}": float(v) for k, v in record.items() if v == v}
                self.logger.log_metrics({axis: float(step), **values})
            return
        run = self.logger.experiment
        run.define_metric(axis)
        run.define_metric(f"{prefix}/*", step_metric=axis)
        for record in records:
            step = record.pop(axis)
            values = {f"{prefix}/{k}": float(v) for k, v in record.items() if v == v}
            run.log({axis: float(step), **values})

    def results(self, frame: pd.DataFrame) -> None:
        """The tidy rows as a table; headline numbers (with intervals) logged once against
        the run's ``fraction``, so they are its summary and plot over fractions."""
        if self.logger is None:
            return
        values = headline_metrics(frame)
        if not self.is_wandb:
            self.logger.log_metrics(values)
            return
        run = self.logger.experiment
        run.define_metric("fraction")
        for key in values:
            run.define_metric(key, step_metric="fraction")
        run.log({"fraction": self.fraction, **values})
        self.table("results", frame)

    def finish(self) -> None:
        """Close the run: a multirun reuses processes, and W&B would reuse a live run."""
        if self.logger is None:
            return
        self.logger.finalize("success")
        if self.is_wandb:
            import wandb

            wandb.finish()


def wandb_arguments(verbose: bool) -> dict[str, Any]:
    """``wandb.init`` arguments: offline without a reachable server, and without W&B's
    console messages (a dozen per run, its history and summary printed at the end) unless
    ``verbose``."""
    import wandb

    arguments: dict[str, Any] = {"offline": wandb_offline()}
    if not verbose:
        os.environ.setdefault("WANDB_SILENT", "true")
        arguments["settings"] = wandb.Settings(silent=True, quiet=True, show_info=False)
    return arguments
