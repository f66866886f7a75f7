"""Evaluation: a Lightning loop summing each metric per evaluation unit.

A unit is one independent draw for the intervals: a document for text (all of its blocks),
an image for vision. Every batch carries the ``unit`` of each item; the loop adds, per unit,
each metric's numerator (hits, summed cross-entropy) and denominator (scored tokens or images).
Keeping the sums per unit, not one mean, is what gives every reported drop its interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchmetrics import Metric

from modularity.models.loading import LoadedModel
from modularity.trainer import SumsLoop, make_trainer, model_inputs, run_loop

N_FREQUENT = 50  # the skip metrics ignore the reference's 50 most frequent tokens
LM_MEASURES = ("top1", "top10", "loss", "skip_top1", "skip_top10")
IMAGE_MEASURES = ("top1", "loss")
ROWS_PER_CHUNK = 4096  # token positions scored at once: bounds the fp32 logits copy


def measures_of(kind: str) -> tuple[str, ...]:
    return IMAGE_MEASURES if kind == "image_classifier" else LM_MEASURES


@dataclass(frozen=True)
class UnitSums:
    """Per-unit numerators and denominators of every measure: ``num``/``den`` map a measure
    to a float64 ``[units]`` tensor. A measure's value is ``num.sum() / den.sum()``."""

    num: dict[str, torch.Tensor]
    den: dict[str, torch.Tensor]

    def value(self, measure: str) -> float:
        den = float(self.den[measure].sum())
        return float(self.num[measure].sum()) / den if den > 0 else float("nan")

    def values(self) -> dict[str, float]:
        return {m: self.value(m) for m in self.num}

    def to_tensors(self) -> dict[str, torch.Tensor]:
        return {f"{part}/{m}": t for part in ("num", "den") for m, t in getattr(self, part).items()}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> UnitSums:
        parts: dict[str, dict[str, torch.Tensor]] = {"num": {}, "den": {}}
        for name, tensor in tensors.items():
            part, _, measure = name.partition("/")
            parts[part][measure] = tensor
        if set(parts["num"]) != set(parts["den"]):
            raise ValueError(f"unit sums name different measures: {sorted(tensors)}")
        return cls(parts["num"], parts["den"])


class PerUnitSums(Metric):
    """``[units, measures, 2]`` sums (numerator, denominator); summed across devices."""

    full_state_update = False

    def __init__(self, n_units: int, measures: tuple[str, ...]) -> None:
        super().__init__()
        self.measures = measures
        self.add_state("sums", torch.zeros(n_units, len(measures), 2, dtype=torch.float64), "sum")

    def update(self, measure: str, unit: torch.Tensor, num: torch.Tensor, den: torch.Tensor):
        """Add ``num``/``den`` (``[items]``) of ``measure`` to each item's ``unit``."""
        index = self.measures.index(measure)
        values = torch.stack([num, den], dim=1).to(torch.float64)
        self.sums[:, index].index_add_(0, unit.to(self.sums.device), values)

    def compute(self) -> torch.Tensor:
        return self.sums.cpu().clone()

    def unit_sums(self) -> UnitSums:
        """The sums (combined across devices) per measure."""
        sums = self.compute()
        return UnitSums(
            {m: sums[:, i, 0] for i, m in enumerate(self.measures)},
            {m: sums[:, i, 1] for i, m in enumerate(self.measures)},
        )


class Evaluation(SumsLoop):
    """Accuracy and loss of a causal LM (next token) or an image classifier (label).

    Causal LMs: ``top1``, ``top10``, ``loss`` (cross-entropy, nats) and ``skip_top1`` /
    ``skip_top10``, which ignore target tokens among ``frequent_tokens`` (the reference data's
    most common ones). Image classifiers: ``top1`` and ``loss``.
    """

    def __init__(
        self, loaded: LoadedModel, n_units: int, frequent_tokens: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        self.net = loaded.model
        self.kind = loaded.kind
        self.sums = PerUnitSums(n_units, measures_of(self.kind))
        frequent = torch.as_tensor([] if frequent_tokens is None else frequent_tokens)
        self.register_buffer("frequent", frequent.long())

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        logits = self.net(**model_inputs(batch)).logits
        if self.kind == "image_classifier":
            self._image_step(logits, batch)
        else:
            self._causal_step(logits, batch)

    def _image_step(self, logits: torch.Tensor, batch: dict[str, Any]) -> None:
        labels, unit = batch["labels"], batch["unit"]
        logits = logits.float()
        ones = torch.ones_like(labels, dtype=torch.float64)
        self.sums.update("top1", unit, (logits.argmax(-1) == labels).double(), ones)
        self.sums.update("loss", unit, F.cross_entropy(logits, labels, reduction="none"), ones)

    def _causal_step(self, logits: torch.Tensor, batch: dict[str, Any]) -> None:
        ids = batch["input_ids"]
        targets = ids[:, 1:]
        valid = torch.ones_like(targets, dtype=torch.bool)
        if "attention_mask" in batch:  # packed blocks have none; padded inputs do
            mask = batch["attention_mask"].bool()
            valid = mask[:, 1:] & mask[:, :-1]
        unit = batch["unit"][:, None].expand_as(targets)
        # Item by item, in chunks of positions: every chunk is a view of the logits, so
        # neither an fp32 copy nor a masked copy of the full-vocabulary tensor is ever
        # materialised for the whole batch.
        for item in range(ids.shape[0]):
            for start in range(0, targets.shape[1], ROWS_PER_CHUNK):
                rows = slice(start, start + ROWS_PER_CHUNK)
                self._score(
                    logits[item, :-1][rows],
                    targets[item, rows],
                    valid[item, rows],
                    unit[item, rows],
                )

    def _score(
        self, logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor, unit: torch.Tensor
    ) -> None:
        logits = logits.float()
        top10 = logits.topk(min(10, logits.shape[-1]), dim=-1).indices
        hit1 = (top10[:, 0] == targets).double()
        hit10 = (top10 == targets[:, None]).any(-1).double()
        loss = F.cross_entropy(logits, targets, reduction="none").double()
        weight = valid.double()
        rare = weight * (~torch.isin(targets, self.frequent)).double()
        for measure, num, den in (
            ("top1", hit1 * weight, weight),
            ("top10", hit10 * weight, weight),
            ("loss", loss * weight, weight),
            ("skip_top1", hit1 * rare, rare),
            ("skip_top10", hit10 * rare, rare),
        ):
            self.sums.update(measure, unit, num, den)


def evaluate(
    loaded: LoadedModel,
    loader: DataLoader,
    n_units: int,
    trainer_cfg: Any,
    frequent_tokens: torch.Tensor | None = None,
    description: str = "evaluate",
) -> UnitSums:
    """Per-unit metric sums of the model as it is now (with whatever masks are active)."""
    module = Evaluation(loaded, n_units, frequent_tokens)
    run_loop(make_trainer(trainer_cfg, description), module, loader)
    return module.sums.unit_sums()


def most_frequent_tokens(blocks: torch.Tensor, k: int = N_FREQUENT) -> torch.Tensor:
    """The ``k`` most frequent token ids in ``blocks`` (``[n, block_size]``)."""
    counts = torch.bincount(blocks.flatten())
    return counts.topk(min(k, counts.numel())).indices
