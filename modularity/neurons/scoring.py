"""Scores: how much more a neuron is used on the task than on the reference.

Every built-in scorer is ``stat_task / (stat_ref + eps)`` on one statistic, except ``mean``
(``|mean_task - mean_ref|``) and ``random`` (a control with no information). This module is
the one place scorers are declared: ``scoring.scorer=<name>`` accepts every name registered
here with :func:`register_scorer`, or declared by an installed package under the
``modularity.scorers`` entry-point group (``name = "pkg.module:function"``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from modularity.errors import invalid_choice
from modularity.neurons.stats import NeuronStats

# (task, reference, eps, seed) -> scores [layers, neurons], float64, higher = more specific.
ScoreFunction = Callable[[NeuronStats, NeuronStats, float, int], torch.Tensor]
ENTRY_POINT_GROUP = "modularity.scorers"
_SCORERS: dict[str, ScoreFunction] = {}


def register_scorer(name: str) -> Callable[[ScoreFunction], ScoreFunction]:
    """Decorator: make ``function`` the scorer users select with ``scoring.scorer=name``."""

    def register(function: ScoreFunction) -> ScoreFunction:
        _SCORERS[name] = function
        return function

    return register


def _ratio_of(statistic: str) -> ScoreFunction:
    def ratio(task: NeuronStats, reference: NeuronStats, eps: float, seed: int) -> torch.Tensor:
        return getattr(task, statistic) / (getattr(reference, statistic) + eps)

    ratio.__doc__ = f"{statistic} on the task over {statistic} on the reference."
    return ratio


# The scorer name as users type it -> the NeuronStats statistic it compares.
RATIO_STATISTICS = {"mad": "mad", "abs": "abs_mean", "std": "std", "rms": "rms", "freq": "freq"}
for _name, _statistic in RATIO_STATISTICS.items():
    register_scorer(_name)(_ratio_of(_statistic))


@register_scorer("mean")
def _mean_shift(task: NeuronStats, reference: NeuronStats, eps: float, seed: int) -> torch.Tensor:
    return (task.mean - reference.mean).abs()


@register_scorer("random")
def _random(task: NeuronStats, reference: NeuronStats, eps: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(task.shape, generator=generator, dtype=torch.float64)


def _load_entry_points() -> None:
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name not in _SCORERS:
            register_scorer(entry.name)(entry.load())


def scorer_names() -> list[str]:
    """Every selectable scorer, built-in first, then those of installed packages."""
    _load_entry_points()
    return list(_SCORERS)


def check_scorer(name: str) -> None:
    """One line naming the valid scorers when ``name`` is not one of them."""
    if name not in scorer_names():
        raise invalid_choice("scorer", name, scorer_names())


def score_neurons(
    task: NeuronStats, reference: NeuronStats, scorer: str = "mad", eps: float = 1e-6, seed: int = 0
) -> torch.Tensor:
    """Score every neuron, ``[layers, neurons]`` float64; higher = more task-specific."""
    if task.shape != reference.shape:
        raise ValueError(f"task stats {task.shape} and reference stats {reference.shape} differ")
    check_scorer(scorer)
    return _SCORERS[scorer](task, reference, eps, seed)
