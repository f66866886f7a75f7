"""Matched damage: the prune fraction that brings each task's top-1 to a target share of its
unpruned value, and every task evaluated at every other task's matched fraction.

Comparing tasks at one fixed fraction mixes up how specialised their neurons are with how
fragile the task is; matching the damage on the task itself removes the second factor.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd
import torch

from modularity.analyses.base import Analysis, Row, RunContext
from modularity.config import choice
from modularity.errors import ConfigError
from modularity.figures import plot_heatmap
from modularity.infra.outputs import format_markdown, format_table
from modularity.neurons.selection import select_top_fraction
from modularity.pipeline import DataSpec, Pipeline

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MatchedFraction:
    task: str
    fraction: float
    ratio: float  # task top-1 after / before at ``fraction``
    converged: bool
    steps: int


class TaskPruning:
    """One task's scores, and any task's top-1 ratio (after / before) at any fraction."""

    def __init__(self, pipe: Pipeline, task: DataSpec) -> None:
        self.pipe, self.task = pipe, task
        self.reference = pipe.reference_of(task)
        self.scores = pipe.select(task).scores

    def mask(self, fraction: float) -> torch.Tensor:
        cfg = self.pipe.cfg
        return select_top_fraction(self.scores, fraction, choice(cfg.selection.scope), cfg.layers)

    def ratio(self, target: TaskPruning, fraction: float) -> float:
        """``target``'s top-1 after pruning this task's top ``fraction``, over before."""
        before = self.pipe.baseline(target.task, target.reference)["task"].value("top1")
        masked = self.pipe.evaluate(target.task, target.reference, self.mask(fraction), ("task",))
        after = masked["task"].value("top1")
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
    converged = abs(ratio - target_ratio) <= tolerance
    return MatchedFraction(pruning.task.name, fraction, ratio, converged, steps)


@dataclass
class Match(Analysis):
    """``analysis=match``: matched fractions for ``tasks`` (or ``task``) and the cross matrix."""

    target_ratio: float = 0.8  # task top-1 after pruning / before
    tolerance: float = 0.02
    max_fraction: float = 0.5
    max_steps: int = 12

    def check(self, cfg) -> None:  # noqa: ANN001 - DictConfig
        super().check(cfg)
        if not 0 < self.target_ratio < 1:
            raise ConfigError(f"analysis.target_ratio={self.target_ratio} is outside (0, 1)")
        if not 0 < self.max_fraction <= 1:
            raise ConfigError(f"analysis.max_fraction={self.max_fraction} is outside (0, 1]")
        if self.max_steps < 1 or self.tolerance <= 0:
            raise ConfigError("analysis.max_steps must be >= 1 and analysis.tolerance > 0")

    @classmethod
    def summary(cls, rows: pd.DataFrame) -> list[str]:
        """The matched fraction of each task, and what every other task keeps there."""
        fractions = rows[rows.metric == "matched_fraction"].set_index("task").value
        if fractions.empty:
            return []
        cross = rows[rows.metric == "cross_ratio"].pivot_table(
            index="partner", columns="task", values="value"
        )
        names = list(fractions.index)
        table = [
            [n, f"{fractions[n]:.4f}", *(f"{cross.loc[n, m]:.2f}" for m in names)]
            for n in names
            if n in cross.index
        ]
        return [
            "Matched damage: the fraction that brings each task (row) to the target share of "
            "its top-1, and the share of top-1 every task (column) keeps there:",
            "",
            format_markdown(table, ["pruned for", "fraction", *names]),
        ]

    def run(self, ctx: RunContext) -> list[Row]:
        pipe = ctx.pipeline
        specs = [pipe.task(n) for n in ctx.cfg.tasks] or [pipe.main_task()]
        prunings = {spec.name: TaskPruning(pipe, spec) for spec in specs}
        matched = {
            name: match_fraction(
                p, self.target_ratio, self.tolerance, self.max_fraction, self.max_steps
            )
            for name, p in prunings.items()
        }
        names = list(prunings)
        cross = [
            [prunings[row].ratio(prunings[col], matched[row].fraction) for col in names]
            for row in names
        ]
        ctx.table("matched", pd.DataFrame([m.__dict__ for m in matched.values()]))
        frame = pd.DataFrame(cross, index=names, columns=names)
        ctx.table("cross_eval", frame.rename_axis("pruned_for"), index=True)
        ctx.figure(
            "cross_eval",
            plot_heatmap(
                ctx.out / "cross_eval.png",
                names,
                cross,
                f"{ctx.cfg.model.name}: share of each task's top-1 kept (after / before) when "
                f"the row's task's neurons are pruned at its matched fraction (target "
                f"{self.target_ratio:g}; {choice(ctx.cfg.scoring.scorer)} scores)",
                "top-1 after / before (ratio)",
                xlabel="task evaluated",
                ylabel="pruned for (at its matched fraction)",
                mask_diagonal=False,
            ),
        )
        rows = []
        for name, m in matched.items():
            rows += [
                Row("matched_fraction", m.fraction, task=name),
                Row("matched_ratio", m.ratio, task=name),
                Row("converged", float(m.converged), task=name, n=float(m.steps)),
            ]
        rows += [
            Row("cross_ratio", value, task=col, partner=row, measure="top1")
            for row, values in zip(names, cross)
            for col, value in zip(names, values)
        ]
        table = [
            [n, f"{matched[n].fraction:.4f}", f"{matched[n].ratio:.3f}", *(f"{v:.3f}" for v in r)]
            for n, r in zip(names, cross)
        ]
        header = ["pruned for", "fraction", "ratio", *names]
        log.info(
            "matched damage (target %.2f):\n%s", self.target_ratio, format_table(table, header)
        )
        for m in matched.values():
            if not m.converged:
                log.warning(unmatched_warning(m, self.target_ratio, self.max_fraction))
        return rows


def unmatched_warning(m: MatchedFraction, target_ratio: float, max_fraction: float) -> str:
    """The console line for a task whose target was not reached: its row says converged=0,
    and its cross ratios are at another damage level than the others'."""
    if m.fraction >= max_fraction:
        why = f"even analysis.max_fraction={max_fraction:g} only brings it to {m.ratio:.3f}"
        fix = "raise analysis.max_fraction or the target"
    else:
        why = f"bisection stopped at ratio {m.ratio:.3f}"
        fix = "raise analysis.max_steps or analysis.tolerance"
    return (
        f"warning: {m.task} did not reach target ratio {target_ratio:.2f} ({why}); its "
        f"matched rows are not at the target damage: {fix}"
    )
