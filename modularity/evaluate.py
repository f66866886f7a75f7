"""Evaluation: a Lightning loop summing each metric per evaluation unit.

A unit is one independent draw for the intervals: a document for text (all of its blocks),
an image for vision. Every batch carries the ``unit`` of each item; the loop adds, per unit,
each metric's numerator (hits, summed cross-entropy) and denominator (scored tokens or images).
Keeping the sums per unit, not one mean, is what gives every reported drop its interval.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchmetrics import Metric

from modularity.infra.trainer import SumsLoop, make_trainer, model_inputs, run_loop
from modularity.models.loading import LoadedModel

log = logging.getLogger(__name__)

N_FREQUENT = 50  # the skip metrics ignore the reference's 50 most frequent tokens
# Logits computed and scored at once (a chunk of positions x the vocabulary): 128 MB in fp32.
ELEMENTS_PER_CHUNK = 2**25


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

    A causal LM's vocabulary logits are never materialised for a whole batch: the backbone
    gives the final hidden states, and the LM head maps a chunk of positions at a time
    (``ELEMENTS_PER_CHUNK`` logits), each chunk scored and freed before the next. With a
    262k-token vocabulary the full logits would outweigh the rest of the forward.
    """

    def __init__(
        self, loaded: LoadedModel, n_units: int, frequent_tokens: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        self.net = loaded.model
        self.modality = loaded.modality
        self.sums = PerUnitSums(n_units, self.modality.measures)
        frequent = torch.as_tensor([] if frequent_tokens is None else frequent_tokens)
        self.register_buffer("frequent", frequent.long())
        self.head: LMHead | None = None  # checked against the model on the first batch

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        inputs = model_inputs(batch)
        if not self.modality.tokens:
            self._image_step(self.net(**inputs).logits, batch)
            return
        if self.head is None:
            self.head = LMHead.checked(self.net, inputs)
        self._causal_step(self.head.hidden(inputs), batch)

    def _image_step(self, logits: torch.Tensor, batch: dict[str, Any]) -> None:
        labels, unit = batch["labels"], batch["unit"]
        logits = logits.float()
        ones = torch.ones_like(labels, dtype=torch.float64)
        self.sums.update("top1", unit, (logits.argmax(-1) == labels).double(), ones)
        self.sums.update("loss", unit, F.cross_entropy(logits, labels, reduction="none"), ones)

    def _causal_step(self, hidden: torch.Tensor, batch: dict[str, Any]) -> None:
        """Score every position's next token from ``hidden`` (``[batch, positions, width]``:
        final hidden states, or the logits themselves where the head cannot be split off)."""
        ids = batch["input_ids"]
        # Position t predicts token t + 1; the last position of an item predicts nothing.
        targets = F.pad(ids[:, 1:], (0, 1))
        valid = torch.ones_like(ids, dtype=torch.bool)
        valid[:, -1] = False
        if "attention_mask" in batch:  # packed blocks have none; padded inputs do
            mask = batch["attention_mask"].bool()
            valid[:, :-1] &= mask[:, 1:] & mask[:, :-1]
        unit = batch["unit"][:, None].expand_as(ids)
        # A view, not a copy, of the hidden states (or of the full logits, unsplit).
        rows = hidden.reshape(-1, hidden.shape[-1])
        targets, valid, unit = targets.reshape(-1), valid.reshape(-1), unit.reshape(-1)
        step = max(1, ELEMENTS_PER_CHUNK // self.head.vocab_size)
        for start in range(0, rows.shape[0], step):
            chunk = slice(start, start + step)
            logits = self.head.logits(rows[chunk])
            self._score(logits, targets[chunk], valid[chunk], unit[chunk])

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


# Whether each network's LM head reproduces its logits when applied to the backbone's output.
_SPLITS_CHECKED: weakref.WeakKeyDictionary[torch.nn.Module, bool] = weakref.WeakKeyDictionary()


class LMHead:
    """A causal LM split into backbone and vocabulary projection, so the projection can run
    on a few positions at a time.

    The split is the backbone (``base_model``), then the output embeddings, then Gemma 2's
    final logit soft-capping where the config sets it. ``checked`` compares that with the
    model's own forward on a few tokens; a model that computes its logits differently is
    evaluated from its full logits instead (correct, without the memory saving).
    """

    def __init__(self, net: torch.nn.Module, split: bool) -> None:
        self.net, self.split = net, split
        self.vocab_size = int(net.config.get_text_config().vocab_size)
        self.projection = net.get_output_embeddings() if split else None
        self.softcap = getattr(net.config, "final_logit_softcapping", None) if split else None

    @classmethod
    def checked(cls, net: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> LMHead:
        """The split head if it reproduces ``net``'s logits on the first item of ``inputs``."""
        if net.base_model is net or net.get_output_embeddings() is None:
            return cls(net, split=False)
        head = cls(net, split=True)
        if net not in _SPLITS_CHECKED:  # a structural fact: probed once per network
            probe = {name: tensor[:1, :8] for name, tensor in inputs.items()}
            with torch.no_grad():
                expected = net(**probe).logits.float()
                got = head.logits(head.hidden(probe)).float()
            _SPLITS_CHECKED[net] = got.shape == expected.shape and torch.allclose(
                got, expected, rtol=1e-4, atol=1e-4, equal_nan=True
            )
        if _SPLITS_CHECKED[net]:
            return head
        log.warning(
            "%s: the LM head cannot be split from the backbone (its logits differ); "
            "evaluating from the full logits, which takes more memory",
            type(net).__name__,
        )
        return cls(net, split=False)

    def hidden(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Final hidden states (split head) or the logits (``[batch, positions, ...]``)."""
        if self.split:
            return self.net.base_model(**inputs).last_hidden_state
        return self.net(**inputs).logits

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits of the given hidden-state rows (the rows themselves unsplit)."""
        if not self.split:
            return hidden
        logits = self.projection(hidden)
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits


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
