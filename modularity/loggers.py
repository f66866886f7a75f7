"""Experiment loggers (W&B, CSV, none) behind one small interface.

Lightning's loggers are built from ``conf/logger/*.yaml`` with ``hydra.utils.instantiate``;
W&B additionally gets tables and images, and goes offline by itself when it cannot reach
its server (``wandb sync`` uploads later).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf


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


class RunLogger:
    """Sends a run's metrics, tables and figures to the configured logger, if any."""

    def __init__(self, logger_cfg: DictConfig | None, config: DictConfig, run_dir: Path) -> None:
        self.logger = None
        if logger_cfg:
            overrides: dict[str, Any] = {"save_dir": str(run_dir)}
            if str(logger_cfg.get("_target_", "")).endswith("WandbLogger"):
                overrides["offline"] = wandb_offline()
            self.logger = instantiate(logger_cfg, **overrides)
            self.logger.log_hyperparams(OmegaConf.to_container(config, resolve=True))
        self.is_wandb = type(self.logger).__name__ == "WandbLogger"

    def metrics(self, values: dict[str, float]) -> None:
        if self.logger is not None:
            self.logger.log_metrics(values)

    def table(self, name: str, frame: pd.DataFrame) -> None:
        if self.is_wandb:
            import wandb

            self.logger.experiment.log({name: wandb.Table(dataframe=frame)})

    def image(self, name: str, path: Path) -> None:
        if self.is_wandb:
            import wandb

            self.logger.experiment.log({name: wandb.Image(str(path))})

    def finish(self) -> None:
        """Close the run: a multirun reuses processes, and W&B would reuse a live run."""
        if self.logger is None:
            return
        self.logger.finalize("success")
        if self.is_wandb:
            import wandb

            wandb.finish()
