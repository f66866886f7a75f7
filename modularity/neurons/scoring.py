"""Scores: how much more a neuron is used on the task than on the reference.

Every scorer is ``stat_task / (stat_ref + eps)`` on one statistic, except ``mean``
(``|mean_task - mean_ref|``) and ``random`` (a control with no information).
"""

from __future__ import annotations

import torch

from modularity.errors import invalid_choice
from modularity.neurons.stats import NeuronStats

RATIO_STATISTICS = {"mad": "mad", "abs": "abs_mean", "std": "std", "rms": "rms", "freq": "freq"}
SCORERS = (*RATIO_STATISTICS, "mean", "random")


def score_neurons(
    task: NeuronStats, reference: NeuronStats, scorer: str = "mad", eps: float = 1e-6, seed: int = 0
) -> torch.Tensor:
    """Score every neuron, ``[layers, neurons]`` float64; higher = more task-specific."""
    if task.shape != reference.shape:
        raise ValueError(f"task stats {task.shape} and reference stats {reference.shape} differ")
    if scorer in RATIO_STATISTICS:
        name = RATIO_STATISTICS[scorer]
        return getattr(task, name) / (getattr(reference, name) + eps)
    if scorer == "mean":
        return (task.mean - reference.mean).abs()
    if scorer == "random":
        generator = torch.Generator().manual_seed(seed)
        return torch.rand(task.shape, generator=generator, dtype=torch.float64)
    raise invalid_choice("scorer", scorer, SCORERS)
