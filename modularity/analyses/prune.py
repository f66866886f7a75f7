"""Selective pruning: score, select, ablate and evaluate one task against its reference.

Every drop is reported with a 95% bootstrap interval over evaluation units (documents,
images), the headline being the *effect*: the task's drop minus the reference's (top-1 in
percentage points, loss in nats), defined for every run. Beside it: the split-half
stability of the selection and how much data each split actually used.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modularity.algorithms.t_interval import mean_interval
from modularity.analyses.base import Analysis, Row, RunContext
from modularity.analyses.effects import effect_rows, sample_rows, selection_rows
from modularity.config import choice
from modularity.figures import plot_layer_counts, plt, save
from modularity.outputs import (
    format_interval,
    format_markdown,
    format_table,
    write_json,
    write_tensors,
)
from modularity.tidy import lower_median, panels

log = logging.getLogger(__name__)
UNIT_NAMES = {"mlp": "neurons", "attn": "attention neurons", "heads": "heads"}


@dataclass
class Prune(Analysis):
    """``analysis=prune``: the selective-pruning pipeline for ``task``."""

    resamples: int = 2000  # bootstrap resamples per interval

    def run(self, ctx: RunContext) -> list[Row]:
        pipe, cfg = ctx.pipeline, ctx.cfg
        task = pipe.main_task()
        reference = pipe.reference_of(task)
        selection = pipe.select(task)
        saved = {"scores": selection.scores, "mask": selection.mask}
        if choice(cfg.ablation.mode) == "mean":  # what export needs to fold the means in
            saved["means"] = pipe.ablation_means(reference)
        write_tensors(ctx.out / "scores.safetensors", saved)
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
                pipe.n_units,
                ctx.title(f"{task.name} {UNIT_NAMES[pipe.site]} per layer"),
            ),
        )
        write_json(ctx.out / "metrics.json", nested_metrics(rows))
        log.info("%s", console_summary(cfg.model.name, task.name, reference.name, rows))
        return rows

    @classmethod
    def summary(cls, rows: pd.DataFrame) -> list[str]:
        """Per fraction: the mean effect over tasks; per task at the middle fraction: drops
        and effect with intervals, stability, data; under-powered results labelled."""
        lines = []
        for label, group in panels(rows, exclude=("task", "fraction", "run")):
            lines += _fraction_overview(group, label) + [""]
            fraction = lower_median(group.fraction)
            table, flags = task_table(group[np.isclose(group.fraction, fraction)])
            if not table:
                continue
            header = [
                "task",
                "task top-1",
                "task drop (pp)",
                "ref. drop (pp)",
                "effect (pp)",
                "loss effect (nats)",
                "stability",
                "evaluated on",
            ]
            lines += [
                f"At fraction {fraction:g}: drops in percentage points of top-1, the effect is "
                "the task's drop minus the reference's, with 95% bootstrap intervals over "
                "evaluation documents or images; loss effect likewise in nats; stability is "
                "the Jaccard of the selections made from two halves of the collection data. "
                f"{sum(flags)} of {len(table)} tasks are under-powered (the interval contains "
                f"0, or stability < {STABILITY_THRESHOLD}).",
                "",
                format_markdown(table, header),
                "",
            ]
        return lines

    @classmethod
    def figures(cls, rows: pd.DataFrame, out: Path) -> list[Path]:
        path = plot_drop_vs_fraction(rows, out / "drop_vs_fraction.png")
        return [path] if path else []


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
            ]
        )
    header = ["metric", "task", "reference", "task drop", "ref. drop", "effect (task - ref.)"]
    stability = get.get(("stability", "", ""))
    sizes = {(r.metric, r.variant): int(r.value) for r in rows}
    unit = "tokens" if ("collect_tokens", "task") in sizes else "units"
    used = "; ".join(
        f"{side} {sizes[('collect_' + unit, side)]} / {sizes[('evaluate_' + unit, side)]}"
        for side in ("task", "reference")
        if ("collect_" + unit, side) in sizes
    )
    noun = "tokens" if unit == "tokens" else "images"
    return (
        f"{model} / {task} vs {reference}: accuracy drops in percentage points, loss rises "
        "in nats, 95% bootstrap intervals\n"
        + format_table(table, header)
        + (f"\nsplit-half stability of the selection: {stability.value:.2f}" if stability else "")
        + (f"\n{noun} used (collection / evaluation): {used}" if used else "")
    )


STABILITY_THRESHOLD = 0.7  # below it a selection is labelled under-powered (DESIGN.md)


def underpowered(effect: Any, stability: float) -> bool:
    """The effect's interval contains 0, or the selection is unstable."""
    no_effect = effect is None or not (effect.low > 0 or effect.high < 0)
    return bool(no_effect or not stability >= STABILITY_THRESHOLD)


def task_table(rows: pd.DataFrame) -> tuple[list[list[str]], list[bool]]:
    """Per task: top-1 before/after, drops and effect with intervals, loss effect,
    stability, evaluation data; and which tasks are under-powered."""
    table, flags = [], []
    for task, group in rows.groupby("task"):
        pick = {(r.metric, r.variant, r.measure): r for r in group.itertuples()}
        effect = pick.get(("effect", "task-reference", "top1"))
        if effect is None:
            continue
        stability = pick.get(("stability", "", ""))
        stable = stability.value if stability is not None else float("nan")
        weak = underpowered(effect, stable)
        flags.append(weak)
        tokens, units = (
            pick.get(("evaluate_tokens", "task", "")),
            pick.get(("evaluate_units", "task", "")),
        )
        size = f"{int(tokens.value):,} tokens" if tokens else f"{int(units.value):,} images"
        before, after = pick[("before", "task", "top1")], pick[("after", "task", "top1")]
        table.append(
            [
                task + (" (under-powered)" if weak else ""),
                f"{before.value:.3f} → {after.value:.3f}",
                format_interval(pick.get(("drop", "task", "top1"))),
                format_interval(pick.get(("drop", "reference", "top1"))),
                f"**{format_interval(effect)}**",
                format_interval(pick.get(("effect", "task-reference", "loss")), 2),
                f"{stable:.2f}",
                size,
            ]
        )
    return table, flags


def _fraction_overview(rows: pd.DataFrame, label: str) -> list[str]:
    """One line per fraction: mean top-1 effect over tasks (t-interval), how many tasks'
    intervals exclude 0, mean stability."""
    effects = rows[(rows.metric == "effect") & (rows.measure == "top1")]
    stability = rows[rows.metric == "stability"]
    table = []
    for fraction, group in effects.groupby("fraction"):
        mean, low, high = mean_interval(group.value.to_numpy())
        stable = stability[np.isclose(stability.fraction, fraction)].value.mean()
        table.append(
            [
                f"{fraction:g}",
                f"{mean:+.1f} [{low:+.1f}, {high:+.1f}]"
                if low == low
                else f"{mean:+.1f} (one task: no interval over tasks)",
                f"{int((group.low > 0).sum())} of {len(group)}",
                f"{int((group.high < 0).sum())}",
                f"{stable:.2f}",
            ]
        )
    header = [
        "fraction",
        "mean effect (pp), 95% t-interval over tasks",
        "tasks hurt more than reference",
        "hurt less",
        "mean stability",
    ]
    title = f"Selective pruning{f' ({label})' if label else ''}: top-1 effect by fraction."
    return [title, "", format_markdown(table, header)]


def plot_drop_vs_fraction(frame: pd.DataFrame, path: Path) -> Path | None:
    """Top-1 drop (pp) of each task (solid) and its reference (dashed) against the fraction,
    with 95% bands, one panel per model and setting; black: the mean over tasks."""
    drops = frame[(frame.metric == "drop") & (frame.measure == "top1")]
    if drops.empty or drops.fraction.nunique() < 2:
        return None
    groups = panels(drops, exclude=("task", "fraction", "run"))
    fig, axes = plt.subplots(1, len(groups), figsize=(4.4 * len(groups), 3.9), squeeze=False)
    colours = plt.cm.tab10(np.linspace(0, 1, 10))
    for ax, (label, group) in zip(axes[0], groups):
        for i, (task, rows) in enumerate(group.groupby("task")):
            for side, style in (("task", "-"), ("reference", "--")):
                line = rows[rows.variant == side].sort_values("fraction")
                ax.plot(
                    line.fraction,
                    line.value,
                    style,
                    color=colours[i % 10],
                    lw=1,
                    label=task if side == "task" else None,
                )
                ax.fill_between(
                    line.fraction, line.low, line.high, color=colours[i % 10], alpha=0.12
                )
        for side, style in (("task", "-o"), ("reference", "--o")):
            mean = group[group.variant == side].groupby("fraction").value.mean()
            ax.plot(mean.index, mean.values, style, color="k", lw=2)
        fractions = sorted(group.fraction.unique())
        ax.set_xscale("log")
        ax.set_xticks(fractions, [f"{f:g}" for f in fractions])
        ax.minorticks_off()
        ax.axhline(0, color="grey", lw=0.6)
        ax.set_title(group.model.iloc[0] + (f"\n{label}" if label else ""), fontsize=9)
        ax.set_xlabel("prune fraction")
        ax.legend(fontsize=6, ncol=2, loc="upper left")
    axes[0][0].set_ylabel("top-1 drop (percentage points)")
    fig.suptitle(
        "selective pruning: task (solid) vs reference (dashed), 95% intervals; "
        "black: mean over tasks",
        fontsize=9,
    )
    return save(fig, path)
