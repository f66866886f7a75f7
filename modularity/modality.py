"""What kind of input a model takes: text (token blocks) or images.

The one place the difference lives. A task config's ``kind`` (``text`` | ``image``) and a
model's kind (an adapter's or ``model.layout.kind``: ``causal_lm`` | ``image_classifier``)
both name a :class:`Modality`; code asks the modality what it needs (are inputs token
blocks? which measures does evaluation report? what is a unit of data called?) instead of
comparing those strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modularity.errors import ConfigError, invalid_choice


@dataclass(frozen=True)
class Modality:
    """One kind of input, with the facts that differ between kinds."""

    task_kind: str  # a task config's ``kind``
    model_kind: str  # an adapter's ``kind`` and ``model.layout.kind``
    auto_class: str  # the transformers Auto class that builds such a model
    # Inputs are token blocks: tokenised and cached, references read pools of their own
    # (no class filter), evaluation scores next tokens and has the skip measures.
    tokens: bool
    measures: tuple[str, ...]  # what evaluation reports, per unit
    item: str  # what a sample size counts, plural ("tokens", "images")

    def check_task(self, task_name: str, task_kind: Any) -> None:
        """One line if task ``task_name`` (of config ``kind`` ``task_kind``) has inputs
        this model cannot take."""
        other = modality_of_task(task_kind)
        if other is not self:
            raise ConfigError(
                f"task {task_name!r} has {other.task_kind} inputs; this model takes "
                f"{self.task_kind}"
            )


TEXT = Modality(
    task_kind="text",
    model_kind="causal_lm",
    auto_class="AutoModelForCausalLM",
    tokens=True,
    measures=("top1", "top10", "loss", "skip_top1", "skip_top10"),
    item="tokens",
)
IMAGE = Modality(
    task_kind="image",
    model_kind="image_classifier",
    auto_class="AutoModelForImageClassification",
    tokens=False,
    measures=("top1", "loss"),
    item="images",
)
MODALITIES = (TEXT, IMAGE)


def _name(value: Any) -> str:
    """A config value as the string a user typed (an Enum member's name, or the string)."""
    return str(getattr(value, "name", value))


def modality_of_task(kind: Any) -> Modality:
    """The modality a task config's ``kind`` names (``text`` | ``image``)."""
    return _modality_where("task_kind", "task kind", kind)


def modality_of_model(kind: Any) -> Modality:
    """The modality a model kind names (``causal_lm`` | ``image_classifier``)."""
    return _modality_where("model_kind", "model kind", kind)


def _modality_where(field: str, what: str, kind: Any) -> Modality:
    """The modality whose ``field`` is ``kind``, or one line naming the valid kinds."""
    name = _name(kind)
    for modality in MODALITIES:
        if getattr(modality, field) == name:
            return modality
    raise invalid_choice(what, name, [getattr(m, field) for m in MODALITIES])
