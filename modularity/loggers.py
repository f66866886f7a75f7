"""Experiment loggers (W&B, CSV, none) behind one small interface.

Lightning's loggers are built from ``conf/logger/*.yaml`` with ``hydra.utils.instantiate``.
On W&B a run is a dashboard: runs of one sweep share a group (the sweep directory) and a job
type (the analysis), names read ``analysis model task top-fraction``, headline numbers land in
the run summary with their intervals, task x task matrices are logged as interactive tables
(long format: row, column, value) beside their heatmaps, and alignment by depth as a line
plot. Without network W&B writes offline (``wandb sync`` uploads later).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from modularity.analyses.base import analysis_name
from modularity.artefacts import writable_directory
from modularity.config import choice
from modularity.optional import require

# Rows whose value goes to the W&B run summary (with their interval) as headline numbers.
SUMMARY_METRICS = ("effect", "drop", "stability", "jaccard", "mantel_r", "alignment_z_by_depth")


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


def sweep_group() -> str | None:
    """The sweep a job belongs to (its multirun directory), or None for a single run."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hydra = HydraConfig.get()
    return Path(hydra.sweep.dir).name if choice(hydra.mode) == "MULTIRUN" else None


def run_name(config: DictConfig) -> str:
    analysis = analysis_name(config)
    subject = ",".join(config.tasks) if analysis != "prune" and config.tasks else config.task.name
    return f"{analysis} {config.model.name} {subject} top{config.selection.fraction:g}"


class RunLogger:
    """Sends a run's settings, rows, tables and figures to the configured logger, if any."""

    def __init__(self, logger_cfg: DictConfig | None, config: DictConfig, run_dir: Path) -> None:
        self.logger = None
        if logger_cfg:
            overrides: dict[str, Any] = {"save_dir": str(run_dir)}
            if str(logger_cfg.get("_target_", "")).endswith("WandbLogger"):
                require("wandb")
                writable_directory(Path(run_dir) / "wandb", "W&B directory")
                overrides["offline"] = wandb_offline()
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
            self.logger.log_hyperparams(plain)
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

    def matrix(self, name: str, names: list[str], matrix: Any) -> None:
        """A task x task matrix as an interactive long-format table (row, column, value)."""
        frame = pd.DataFrame(
            [(a, b, float(matrix[i][j])) for i, a in enumerate(names) for j, b in enumerate(names)],
            columns=["row", "column", "value"],
        )
        self.table(name, frame)

    def lines(self, name: str, frame: pd.DataFrame) -> None:
        """Alignment by depth as an interactive line plot: one line per clustering."""
        if not self.is_wandb or frame.empty:
            return
        import wandb

        frame = frame[frame.measure == "topk_fraction"]
        depths = list(dict.fromkeys(frame.layer))
        series = [
            list(g.set_index("layer").reindex(depths).value) for _, g in frame.groupby("variant")
        ]
        plot = wandb.plot.line_series(
            xs=list(range(len(depths))),
            ys=series,
            keys=list(frame.groupby("variant").groups),
            title="alignment z by depth third (" + ", ".join(depths) + ")",
            xname="depth third",
        )
        self._log({name: plot})

    def results(self, frame: pd.DataFrame) -> None:
        """The tidy rows as a table; headline numbers (with intervals) in the run summary."""
        if self.logger is None:
            return
        headline = frame[
            frame.metric.isin(SUMMARY_METRICS)
            & (frame.layer.isin(["all", "early", "middle", "late"]))
        ]
        values = {}
        for row in headline.itertuples():
            key = "/".join(
                p
                for p in (
                    row.metric,
                    row.task,
                    row.variant,
                    row.measure,
                    row.partner,
                    "" if row.layer == "all" else row.layer,
                )
                if p
            )
            values[key] = row.value
            if row.low == row.low:
                values[f"{key}/low"], values[f"{key}/high"] = row.low, row.high
        if self.is_wandb:
            self.logger.experiment.summary.update(values)
            self.table("results", frame)
        else:
            self.logger.log_metrics(values)

    def finish(self) -> None:
        """Close the run: a multirun reuses processes, and W&B would reuse a live run."""
        if self.logger is None:
            return
        self.logger.finalize("success")
        if self.is_wandb:
            import wandb

            wandb.finish()
