"""``python -m modularity.zoo recipe=<name> [into=<dir>] [force=true]``: train one of the
project's models (``make models`` trains them all into ``modularity/assets/models``).

A thin Hydra entry point; recipe fields can be overridden (``recipe.epochs=5``), and such a
model records its recipe, so loading never mistakes it for the current one.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import transformers
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import MISSING, DictConfig, OmegaConf

from modularity.errors import ModularityError
from modularity.infra.paths import models_root
from modularity.zoo.model_dirs import TRAINING_RECORD, read_record
from modularity.zoo.recipes import ZOO_CONF_DIR, recipe_record, register_recipe_schemas
from modularity.zoo.training import install

log = logging.getLogger("modularity.zoo")


@dataclass
class ZooConfig:
    recipe: Any = MISSING
    into: str | None = None  # models directory; null: $MODULARITY_MODELS_DIR or the user cache
    force: bool = False  # retrain even when a copy trained to this recipe exists
    max_steps: int | None = None  # cut training short (smoke tests); never counts as current


def register_configs() -> None:
    """Store the recipe schemas and the root schema the zoo's ``config.yaml`` extends."""
    register_recipe_schemas()
    ConfigStore.instance().store(name="zoo_schema", node=ZooConfig)


def train_recipe(name: str, cfg: DictConfig) -> dict[str, Any]:
    """Train recipe ``name`` as composed in ``cfg`` unless an identical model exists."""
    recipe = OmegaConf.to_object(cfg.recipe)
    root = Path(cfg.into) if cfg.into else models_root()
    existing = read_record(root / name)
    same = existing and (existing["recipe"], existing["max_steps"]) == (
        recipe_record(recipe),
        cfg.max_steps,
    )
    if same and not cfg.force:
        log.info("%s is already trained to this recipe in %s (force=true retrains)", name, root)
        return existing
    log.info("training %s into %s", name, root)
    return install(name, root, recipe, max_steps=cfg.max_steps)


def main() -> None:
    """The command: register the schemas (never at import), then let Hydra compose and train."""
    register_configs()
    hydra.main(version_base="1.3", config_path=str(ZOO_CONF_DIR), config_name="config")(train)()


def train(cfg: DictConfig) -> None:
    """Hydra's task function: train the chosen recipe and print its record's summary."""
    name = HydraConfig.get().runtime.choices["recipe"]
    transformers.utils.logging.disable_progress_bar()  # one bar per checkpoint saved
    try:
        record = train_recipe(name, cfg)
    except ModularityError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    summary = {k: record[k] for k in ("metrics", "train_seconds", "checkpoint_seconds")}
    print(f"{name} ({record['recipe']['kind']}, see its {TRAINING_RECORD}):")
    print(json.dumps(summary, indent=2))
