"""Selection: score a task's units against its reference and keep the top fraction, with
the split-half stability of that choice."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from modularity.algorithms.set_overlap import intersection_null, jaccard
from modularity.config import choice
from modularity.neurons.scoring import score_neurons
from modularity.neurons.selection import select_top_fraction
from modularity.neurons.stats import CollectedStats, NeuronStats
from modularity.pipeline.data import DataSpec


@dataclass(frozen=True)
class Selection:
    """A task's neuron scores, the selected mask, and how stable the selection is.

    ``stability`` is the Jaccard of the sets selected from the two halves of the collection
    data (split by document or image); ``chance_stability`` what two random sets of the same
    per-layer sizes would give.
    """

    scores: torch.Tensor  # [layers, neurons] float64
    mask: torch.Tensor  # [layers, neurons] bool
    stability: float
    chance_stability: float


class Selector:
    """The run's scorer and selection settings applied to statistics."""

    def __init__(
        self,
        cfg: DictConfig,
        statistics: Callable[[DataSpec, str | None], CollectedStats],
        reference_of: Callable[[DataSpec], DataSpec],
    ) -> None:
        self.cfg = cfg
        self.statistics = statistics
        self.reference_of = reference_of

    def scores(self, task: NeuronStats, reference: NeuronStats) -> torch.Tensor:
        scoring = self.cfg.scoring
        return score_neurons(task, reference, choice(scoring.scorer), scoring.eps, scoring.seed)

    def select(
        self, task: DataSpec, fraction: float | None = None, site: str | None = None
    ) -> Selection:
        """Score ``task``'s units of ``site`` (default: the run's) against its reference,
        select the top fraction, and measure the selection's split-half stability from the
        two halves of both collections."""
        fraction = self.cfg.selection.fraction if fraction is None else fraction
        task_stats = self.statistics(task, site)
        ref_stats = self.statistics(self.reference_of(task), site)

        def pick(t: NeuronStats, r: NeuronStats) -> tuple[torch.Tensor, torch.Tensor]:
            scores = self.scores(t, r)
            mask = select_top_fraction(
                scores, fraction, choice(self.cfg.selection.scope), self.cfg.layers
            )
            return scores, mask

        scores, mask = pick(task_stats.full, ref_stats.full)
        halves = [pick(task_stats.halves[i], ref_stats.halves[i])[1] for i in (0, 1)]
        return Selection(
            scores=scores,
            mask=mask,
            stability=jaccard(*halves),
            chance_stability=float(intersection_null(*halves).expected_jaccard),
        )
