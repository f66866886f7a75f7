"""Where the project's trained models live, and which of them is current.  Loading only
looks here: it never trains (``make models`` does).

A model directory is a ``save_pretrained`` directory (weights in float16) with a
``training.json`` that records the recipe it was trained to, and its checkpoints under
``checkpoints/step-<step>/`` (``step-000000`` is the initial weights, also called ``init``;
the model directory itself is the final model, also listed as ``final``).  Each checkpoint
directory is a complete ``save_pretrained`` directory: a language model's holds its
tokenizer files too, so a checkpoint loads by path exactly like the final model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modularity.errors import ModularityError, invalid_choice
from modularity.infra.paths import models_root
from modularity.zoo.recipes import load_recipe, recipe_record

PACKAGED_MODELS = Path(__file__).resolve().parent.parent / "assets" / "models"
TRAINING_RECORD = "training.json"
CHECKPOINTS = "checkpoints"
INIT = "init"
FINAL = "final"


@dataclass(frozen=True)
class Checkpoint:
    """One saved point of a training run, with its held-out metric (``accuracy`` for image
    classifiers, ``loss`` in nats for the language model)."""

    name: str  # "step-000128"; the first is the initial weights, the last "final"
    step: int  # optimizer steps taken
    examples_seen: int  # training images or token blocks consumed
    held_out: dict[str, float]
    path: Path


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


def read_record(path: Path) -> dict[str, Any] | None:
    """The ``training.json`` of model directory ``path``, or None if unreadable."""
    try:
        return json.loads((path / TRAINING_RECORD).read_text())
    except (OSError, ValueError):
        return None


def _current_dir(name: str) -> Path | None:
    """A copy of ``name`` trained to the full current recipe: the user's first, else the
    shipped one."""
    expected = recipe_record(load_recipe(name))
    for root in (models_root(), PACKAGED_MODELS):
        record = read_record(root / name)
        if record and record.get("recipe") == expected and record.get("max_steps") is None:
            return root / name
    return None


def _model_dir(name: str) -> Path:
    path = _current_dir(name)
    if path is None:
        raise ModularityError(
            f"built-in model {name!r} is missing or older than its recipe in {PACKAGED_MODELS} "
            f"and {models_root()}: run `make models` (or python -m modularity.zoo recipe={name})"
        )
    return path


def list_checkpoints(name: str) -> list[Checkpoint]:
    """Every checkpoint the current copy of ``name`` recorded, by step, ending with the
    final model.  A listed directory may be absent where it is not shipped (the language
    model's intermediate checkpoints): ``make models`` regenerates it."""
    return _checkpoints(_model_dir(name))


def _checkpoints(path: Path) -> list[Checkpoint]:
    return [
        Checkpoint(
            name=entry["name"],
            step=entry["step"],
            examples_seen=entry["examples_seen"],
            held_out=entry["held_out"],
            path=path if entry["name"] == FINAL else path / CHECKPOINTS / entry["name"],
        )
        for entry in read_record(path)["checkpoints"]
    ]


def builtin_model_dir(name: str, checkpoint: str | None = None) -> Path:
    """The ``save_pretrained`` directory of project-trained model ``name`` (or of one of its
    checkpoints: a name from ``list_checkpoints``, or ``init``).

    Raises ``ModularityError``, in one line naming ``make models``, when no current copy
    (or the checkpoint's directory) exists; nothing is ever trained here.
    """
    path = _model_dir(name)
    if checkpoint is None or checkpoint == FINAL:
        return path
    wanted = checkpoint_name(0) if checkpoint == INIT else checkpoint
    recorded = {c.name: c.path for c in _checkpoints(path)}
    if wanted not in recorded:
        raise invalid_choice(f"checkpoint of {name!r}", checkpoint, [INIT, *recorded])
    if not recorded[wanted].is_dir():
        raise ModularityError(
            f"checkpoint {checkpoint!r} of built-in model {name!r} is not in {path} (not "
            "shipped): run `make models` to regenerate it"
        )
    return recorded[wanted]
