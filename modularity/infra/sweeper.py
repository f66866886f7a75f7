"""What the sweepers (:mod:`hydra_plugins.modularity_sweepers`) do before a job runs:
check it as its run would, composing each job's config once.

Hydra composes a job's config wherever it needs it (its sweeper's check, its launcher, the
plan sweeper's resume test); :class:`ComposedOnce` keeps each composition, so a job is
composed once.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hydra.core.config_loader import ConfigLoader
from hydra.types import HydraContext
from omegaconf import DictConfig, open_dict

if TYPE_CHECKING:  # Hydra imports every module of hydra_plugins at start-up, the sweepers'
    from modularity.analyses.base import Analysis  # this one too: torch only where needed


class ComposedOnce:
    """A Hydra config loader that composes each job's config (master config, overrides)
    once and hands out copies: composing reads and merges dozens of YAML files (tenths of a
    second), a copy takes a hundredth. Everything else goes to the wrapped loader."""

    def __init__(self, loader: ConfigLoader) -> None:
        self._loader = loader
        self._jobs: dict[tuple[int, tuple[str, ...]], tuple[DictConfig, DictConfig]] = {}

    def load_sweep_config(
        self, master_config: DictConfig, sweep_overrides: list[str]
    ) -> DictConfig:
        key = (id(master_config), tuple(sweep_overrides))
        if key not in self._jobs:  # the master is kept with it, so its id stays its own
            composed = self._loader.load_sweep_config(master_config, list(sweep_overrides))
            self._jobs[key] = (master_config, composed)
        return copy.deepcopy(self._jobs[key][1])

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the kept configs: a launcher that sends itself to each job's
        process (joblib, submitit) would otherwise send every job's config to every job."""
        return {"_loader": self._loader, "_jobs": {}}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # not delegated: unpickling (the joblib launcher) looks
            raise AttributeError(name)  # these up before the instance has its attributes
        return getattr(self._loader, name)


def composing_once(hydra_context: HydraContext) -> HydraContext:
    """``hydra_context`` whose config loader composes each job once (:class:`ComposedOnce`)."""
    loader = ComposedOnce(hydra_context.config_loader)
    return HydraContext(config_loader=loader, callbacks=hydra_context.callbacks)  # type: ignore[arg-type]


def check_job(loader: ConfigLoader, config: DictConfig, overrides: Sequence[str]) -> None:
    """Compose one job of the sweep ``config`` and check it as its run would."""
    from modularity.infra.validate import check_config

    cfg = loader.load_sweep_config(config, list(overrides))
    with open_dict(cfg):
        cfg.pop("hydra", None)
    check_against_model(cfg, check_config(cfg))


def check_against_model(cfg: DictConfig, analysis: Analysis) -> None:
    """Values only the model can judge (``layers`` against its depth, an analysis's
    parameters against its MLP width), from its config alone: a sweep's ``layers=[0],[7]``
    on a 4-layer model fails before job 0, not at job 1."""
    from modularity.analyses.base import Analysis
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
