"""Matched damage: the prune fraction that brings each task's top-1 to a target share of its
unpruned value, and every task evaluated at every other task's matched fraction.

Comparing tasks at one fixed fraction mixes up how specialised their neurons are with how
fragile the task is; matching the damage on the task itself removes the second factor.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from omegaconf import DictConfig

from modularity.errors import ConfigError
from modularity.loggers import RunLogger
from modularity.neurons.scoring import score_neurons
from modularity.neurons.selection import select_top_fraction
from modularity.outputs import format_table, plot_heatmap, write_json
from modularity.pipeline import Pipeline

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MatchedFraction:
    task: str
    fraction: float
    ratio: float  # task top-1 after / before at ``fraction``
    converged: bool
    steps: int


class TaskPruning:
    """One task's scores, and its top-1 ratio (after / before) at any prune fraction."""

    def __init__(self, pipeline: Pipeline, cfg: DictConfig, task: DictConfig) -> None:
        self.pipeline, self.cfg, self.task = pipeline, cfg, task
        self.reference = pipeline.reference_of(task)
        reference_stats = pipeline.statistics(self.reference)
        self.means = reference_stats.mean if cfg.ablation.mode == "mean" else None
        self.scores = score_neurons(
            pipeline.statistics(task),
            reference_stats,
            cfg.scoring.scorer,
            cfg.scoring.eps,
            cfg.scoring.seed,
        )

    def mask(self, fraction: float) -> torch.Tensor:
        return select_top_fraction(self.scores, fraction, self.cfg.selection.scope, self.cfg.layers)

    def ratio(self, target: TaskPruning, fraction: float) -> float:
        """``target``'s top-1 after pruning this task's top ``fraction``, over before."""
        before = self.pipeline.baseline(target.task, target.reference)["task"]["top1"]
        after = self.pipeline.evaluate(
            target.task, target.reference, self.mask(fraction), self.means, sides=("task",)
        )["task"]["top1"]
        return after / before if before > 0 else float("nan")


def match_fraction(
    pruning: TaskPruning, target_ratio: float, tolerance: float, max_fraction: float, max_steps: int
) -> MatchedFraction:
    """Bisect the fraction in (0, max_fraction] whose ratio is within ``tolerance`` of target.

    Evaluation is deterministic (fixed data, eval mode), and the ratio falls with the
    fraction, so bisection converges; if even ``max_fraction`` does not reach the target,
    that is reported (``converged=False``), not hidden.
    """
    lo, hi = 0.0, max_fraction
    ratio = pruning.ratio(pruning, hi)
    steps = 1
    if ratio > target_ratio + tolerance:
        return MatchedFraction(pruning.task.name, hi, ratio, False, steps)
    fraction = hi
    while abs(ratio - target_ratio) > tolerance and steps < max_steps:
        fraction = (lo + hi) / 2
        ratio = pruning.ratio(pruning, fraction)
        steps += 1
        if ratio > target_ratio:
            lo = fraction
        else:
            hi = fraction
    return MatchedFraction(
        pruning.task.name, fraction, ratio, abs(ratio - target_ratio) <= tolerance, steps
    )


def run(cfg: DictConfig) -> dict[str, Any]:
    """``analysis=match``: matched fractions for ``tasks`` (or ``task``) and the cross matrix."""
    names = list(cfg.tasks) or [cfg.task.name]
    match = cfg.match
    if not 0 < match.target_ratio < 1:
        raise ConfigError(f"match.target_ratio={match.target_ratio} is outside (0, 1)")
    if not 0 < match.max_fraction <= 1:
        raise ConfigError(f"match.max_fraction={match.max_fraction} is outside (0, 1]")
    out = Path(cfg.output_dir)
    pipeline = Pipeline(cfg)
    logger = RunLogger(cfg.logger, cfg, out)
    try:
        prunings = {name: TaskPruning(pipeline, cfg, pipeline.task(name)) for name in names}
        matched = {
            name: match_fraction(
                p, match.target_ratio, match.tolerance, match.max_fraction, match.max_steps
            )
            for name, p in prunings.items()
        }
        pd.DataFrame([asdict(m) for m in matched.values()]).to_csv(out / "matched.csv", index=False)
        cross = [
            [prunings[row].ratio(prunings[col], matched[row].fraction) for col in names]
            for row in names
        ]
        frame = pd.DataFrame(cross, index=names, columns=names)
        frame.to_csv(out / "cross_eval.csv")
        figure = plot_heatmap(
            out / "cross_eval.png",
            names,
            cross,
            f"top-1 after/before, rows pruned at matched fraction (target {match.target_ratio})",
            "top-1 ratio",
        )
        logger.table("matched", pd.DataFrame([asdict(m) for m in matched.values()]))
        logger.table("cross_eval", frame.reset_index(names="pruned_for"))
        logger.image("cross_eval", figure)
        result = {
            "matched": {n: asdict(m) for n, m in matched.items()},
            "cross_eval": frame.to_dict(),
        }
        write_json(out / "match.json", result)
    finally:
        logger.finish()
    rows = [
        [n, f"{matched[n].fraction:.4f}", f"{matched[n].ratio:.3f}", *(f"{v:.3f}" for v in r)]
        for n, r in zip(names, cross)
    ]
    log.info(
        "matched damage (target %.2f):\n%s",
        match.target_ratio,
        format_table(rows, ["pruned for", "fraction", "ratio", *names]),
    )
    return result
