"""``python -m modularity.run +model=<name> task=<name> [analysis=...]``.

A thin entry point: compose, validate, seed, dispatch the analysis named by
``analysis._target_``. Errors in the user's input print one line and exit with status 2
(``MODULARITY_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_method
from omegaconf import DictConfig, open_dict

from modularity.config import CONF_DIR, prepare, register_configs
from modularity.errors import ModularityError

log = logging.getLogger("modularity")
register_configs()


def run(cfg: DictConfig) -> Any:
    """Run the analysis ``cfg`` describes and return its result (importable, no Hydra needed)."""
    prepare(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    analysis = get_method(cfg.analysis._target_)
    return analysis(cfg)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> Any:
    if HydraConfig.initialized():
        with open_dict(cfg):
            cfg.output_dir = HydraConfig.get().runtime.output_dir
    try:
        return run(cfg)
    except ModularityError as err:
        if os.environ.get("MODULARITY_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
