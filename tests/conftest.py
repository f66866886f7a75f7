"""Shared fixtures: composed Hydra configs with outputs and cache under ``tmp_path``."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

from modularity.config import CONF_DIR, register_configs

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
register_configs()


@pytest.fixture
def make_cfg(tmp_path) -> Callable[..., DictConfig]:
    """Compose ``conf/config.yaml`` with overrides, writing into ``tmp_path``."""

    def make(*overrides: str) -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(
                "config",
                overrides=[
                    f"cache.dir={tmp_path / 'cache'}",
                    "trainer.progress_bar=false",
                    "trainer.accelerator=cpu",
                    *overrides,
                ],
            )
        with open_dict(cfg):
            cfg.output_dir = str(tmp_path / "run")
        os.makedirs(cfg.output_dir, exist_ok=True)
        return cfg

    yield make
    GlobalHydra.instance().clear()
