"""Recipes of the project's own models: Hydra structured configs extended by YAML files.

A recipe says everything that decides a model's weights (data, architecture, optimisation,
seed).  ``conf/recipe/<name>.yaml`` extends ``VitRecipe`` or ``LmRecipe`` through its
defaults list, so a misspelt key fails at composition; the file name is the model's name.
A trained model's ``training.json`` stores its recipe, which is how loading tells a current
model from a stale one.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from modularity.errors import ConfigError, invalid_choice

ZOO_CONF_DIR = Path(__file__).resolve().parent / "conf"
RECIPE_DIR = ZOO_CONF_DIR / "recipe"
SCHEMA_GROUP = "recipe_schema"


@dataclass
class VitRecipe:
    """A ViT classifier trained from scratch on the ``train`` split of a local image set."""

    image_set: str = MISSING
    patch_size: int = MISSING
    hidden_size: int = MISSING
    intermediate_size: int = MISSING
    epochs: int = MISSING
    batch_size: int = MISSING
    lr: float = MISSING
    shift: int = 0  # augmentation: random translation by up to this many pixels
    num_layers: int = 4
    num_heads: int = 4
    weight_decay: float = 0.05
    seed: int = 0


@dataclass
class LmRecipe:
    """A Llama causal LM with its own byte-level BPE, trained on a mix of text domains."""

    domains: list[str] = field(default_factory=list)
    tokens_per_domain: int = MISSING  # cap, so code and prose do not swamp the rest
    eval_tokens_per_domain: int = MISSING
    vocab_size: int = MISSING
    context: int = MISSING
    hidden_size: int = MISSING
    intermediate_size: int = MISSING
    epochs: int = MISSING
    batch_size: int = MISSING
    lr: float = MISSING
    num_layers: int = 4
    num_heads: int = 4
    weight_decay: float = 0.1
    seed: int = 0


Recipe = VitRecipe | LmRecipe
SCHEMAS: dict[str, type] = {"vit": VitRecipe, "lm": LmRecipe}


def register_recipe_schemas() -> None:
    """Put the schemas where recipe files' defaults find them (``/recipe_schema/<kind>``)."""
    store = ConfigStore.instance()
    for kind, schema in SCHEMAS.items():
        store.store(group=SCHEMA_GROUP, name=kind, node=schema)


def recipe_names() -> list[str]:
    """Names of every recipe, i.e. of every model the project trains."""
    return sorted(path.stem for path in RECIPE_DIR.glob("*.yaml"))


def recipe_kind(recipe: Recipe) -> str:
    return next(kind for kind, schema in SCHEMAS.items() if isinstance(recipe, schema))


def load_recipe(name: str) -> Recipe:
    """Recipe ``name`` as Hydra composes it, read without Hydra's global state (loading a
    model inside a running Hydra app must not disturb it)."""
    path = RECIPE_DIR / f"{name}.yaml"
    if not path.is_file():
        raise invalid_choice("built-in model", name, recipe_names())
    raw = OmegaConf.load(path)
    # The one defaults entry besides _self_ is {"/recipe_schema@_here_": <kind>}.
    (kind,) = [v for entry in raw.pop("defaults", []) if entry != "_self_" for v in entry.values()]
    if kind not in SCHEMAS:
        raise ConfigError(f"recipe {name!r} extends unknown schema {kind!r}; valid: vit, lm")
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SCHEMAS[kind]), raw))


def recipe_record(recipe: Recipe) -> dict[str, Any]:
    """The recipe as JSON values, as ``training.json`` stores it."""
    return json.loads(json.dumps({"kind": recipe_kind(recipe), **dataclasses.asdict(recipe)}))
