"""Shared fixtures: composed Hydra configs with outputs and cache under ``tmp_path``."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from modularity.config import compose_config

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def make_cfg(tmp_path) -> Callable[..., DictConfig]:
    """Compose ``conf/config.yaml`` with overrides, writing into ``tmp_path``."""

    def make(*overrides: str) -> DictConfig:
        cfg = compose_config(
            [
                f"cache.dir={tmp_path / 'cache'}",
                "trainer.enable_progress_bar=false",
                "trainer.accelerator=cpu",
                *overrides,
            ]
        )
        cfg.output_dir = str(tmp_path / "run")
        os.makedirs(cfg.output_dir, exist_ok=True)
        return cfg

    yield make
    GlobalHydra.instance().clear()
