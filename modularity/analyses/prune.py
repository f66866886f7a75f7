"""Selective pruning: score, select, ablate and evaluate one task against its reference.

Every drop is reported with a 95% bootstrap interval over evaluation units (documents,
images), the headline being the *effect*: the task's drop minus the reference's (top-1 in
percentage points, loss in nats), defined for every run. Beside it: the split-half
stability of the selection and how much data each split actually used.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd

from modularity.analyses.base import Analysis, Row, RunContext
from modularity.analyses.effects import effect_rows, sample_rows, selection_rows
from modularity.figures import plot_layer_counts
from modularity.outputs import format_table, write_json, write_tensors

log = logging.getLogger(__name__)


@dataclass
class Prune(Analysis):
    """``analysis=prune``: the selective-pruning pipeline for ``task``."""

    resamples: int = 2000  # bootstrap resamples per interval

    def run(self, ctx: RunContext) -> list[Row]:
        pipe, cfg = ctx.pipeline, ctx.cfg
        task = pipe.main_task()
        reference = pipe.reference_of(task)
        selection = pipe.select(task)
        write_tensors(
            ctx.out / "scores.safetensors", {"scores": selection.scores, "mask": selection.mask}
        )
        before = pipe.baseline(task, reference)
        after = pipe.evaluate(task, reference, selection.mask)
        rows = [
            *effect_rows(task.name, before, after, self.resamples, cfg.seed),
            *selection_rows(task.name, selection),
            *sample_rows(pipe, task, reference),
        ]
        ctx.extras.update(scores=selection.scores, mask=selection.mask, selection=selection)
        counts = selection.mask.sum(1).tolist()
        ctx.table("layer_counts", pd.DataFrame({"layer": range(len(counts)), "selected": counts}))
        ctx.figure(
            "layer_counts",
            plot_layer_counts(
                ctx.out / "layer_counts.png",
                counts,
                pipe.adapter.n_neurons,
                ctx.title(f"{task.name} neurons per layer"),
            ),
        )
        write_json(ctx.out / "metrics.json", nested_metrics(rows))
        log.info("%s", console_summary(cfg.model.name, task.name, reference.name, rows))
        return rows


def nested_metrics(rows: list[Row]) -> dict:
    """``metrics.json``: the rows as ``{metric: {variant: {measure: {value, low, high}}}}``."""
    out: dict = {}
    for row in rows:
        entry = {"value": row.value}
        if row.low == row.low:  # an interval was computed
            entry.update(low=row.low, high=row.high, n=row.n)
        out.setdefault(row.metric, {}).setdefault(row.variant or "-", {})[row.measure or "-"] = (
            entry
        )
    return out


def console_summary(model: str, task: str, reference: str, rows: list[Row]) -> str:
    """A few lines for the console: levels before/after, drops and effect with intervals."""
    get = {(r.metric, r.variant, r.measure): r for r in rows}
    measures = [r.measure for r in rows if r.metric == "effect"]

    def interval(row: Row | None, scale: float = 1.0) -> str:
        if row is None or row.value != row.value:
            return "-"
        return f"{row.value * scale:+.2f} [{row.low * scale:+.2f}, {row.high * scale:+.2f}]"

    table = []
    for m in measures:
        levels = [
            f"{get[('before', side, m)].value:.4f} -> {get[('after', side, m)].value:.4f}"
            for side in ("task", "reference")
        ]
        table.append(
            [
                m,
                *levels,
                *(interval(get.get(("drop", s, m))) for s in ("task", "reference")),
                interval(get.get(("effect", "task-reference", m))),
            ]  # fmt: skip
        )
    header = ["metric", "task", "reference", "task drop", "ref. drop", "effect (task - ref.)"]
    stability = get.get(("stability", "", ""))
    tokens = {r.variant: int(r.value) for r in rows if r.metric in ("evaluate_tokens",)}
    return (
        f"{model} / {task} vs {reference}: accuracy drops in percentage points, loss rises "
        "in nats, 95% bootstrap intervals\n"
        + format_table(table, header)
        + (f"\nsplit-half stability of the selection: {stability.value:.2f}" if stability else "")
        + (f"; evaluation tokens: {tokens}" if tokens else "")
    )
