"""Train a recipe into a model directory, atomically, with a ``training.json`` record.

Training is seeded and deterministic on a given machine and library versions (recorded), so
``make models`` regenerates the same weights, including checkpoints that are not shipped.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from modularity.infra.atomic import atomic_directory
from modularity.infra.paths import models_root
from modularity.zoo.lm import train_lm
from modularity.zoo.model_dirs import TRAINING_RECORD
from modularity.zoo.recipes import LmRecipe, Recipe, load_recipe, recipe_record
from modularity.zoo.vit import train_vit

# One intra-op thread: the same float results on machines with any number of cores (so
# `make models` regenerates what was shipped), and no collapse on a shared CPU, where two
# threads that wait on each other ran 11x slower than one (measured on 2 busy cores).
TRAIN_THREADS = 1


def library_versions() -> dict[str, str]:
    """The versions that decide the weights a seed gives."""
    import tokenizers
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "lightning": L.__version__,
    }


def train_model(
    name: str, recipe: Recipe, out: Path, *, max_steps: int | None = None
) -> dict[str, Any]:
    """Train ``recipe`` and save model, checkpoints and ``training.json`` into ``out``.

    ``max_steps`` cuts training short (for tests); the record notes it, and a model so cut
    is never taken for a current one.
    """
    start = time.perf_counter()
    L.seed_everything(recipe.seed, verbose=False)
    train = train_lm if isinstance(recipe, LmRecipe) else train_vit
    threads = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS)
    try:
        metrics, result = train(recipe, out, max_steps)
    finally:
        torch.set_num_threads(threads)
    record = {
        "name": name,
        "recipe": recipe_record(recipe),
        "max_steps": max_steps,
        "metrics": metrics,
        "checkpoints": result.checkpoints,
        "steps": result.steps,
        "examples_seen": result.examples_seen,
        "train_seconds": result.train_seconds,
        "checkpoint_seconds": result.checkpoint_seconds,
        "total_seconds": round(time.perf_counter() - start, 1),
        "torch_threads": TRAIN_THREADS,
        "versions": library_versions(),
    }
    (out / TRAINING_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return record


def install(
    name: str,
    root: Path | None = None,
    recipe: Recipe | None = None,
    *,
    max_steps: int | None = None,
) -> dict[str, Any]:
    """Train ``name`` (its current recipe unless ``recipe`` is given) into ``root/name``
    (default: the user cache), replacing what is there only once training has finished."""
    recipe = load_recipe(name) if recipe is None else recipe
    root = models_root() if root is None else root
    with atomic_directory(root / name, replace=True) as tmp:
        return train_model(name, recipe, tmp, max_steps=max_steps)
