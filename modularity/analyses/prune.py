"""Selective pruning: score, select, ablate and evaluate one task against its reference.

Every drop is reported with a 95% interval over evaluation units (documents, images;
``modularity.algorithms.unit_intervals``), the headline being the *effect*: the task's drop
minus the reference's (top-1 in percentage points, loss in nats), defined for every run,
with its verdict (``modularity.verdicts``). Beside it: the split-half stability of the
selection, flagged when unstable, and how much data each split actually used.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from modularity.algorithms.across_tasks import mean_over_tasks
from modularity.algorithms.unit_intervals import no_interval_reason
from modularity.analyses.base import Analysis, Row, RunContext
from modularity.analyses.effects import effect_rows, sample_rows, selection_rows
from modularity.config import choice, nested_tasks
from modularity.figures import (
    figure,
    legend_below,
    panel_title,
    plot_layer_counts,
    plt,
    save,
    title,
    y_label,
)
from modularity.infra.outputs import (
    format_interval,
    format_markdown,
    format_table,
    write_json,
    write_tensors,
)
from modularity.infra.tidy import lower_median, panels
from modularity.neurons.sites import site_of
from modularity.verdicts import (
    EFFECT,
    INCONCLUSIVE,
    NULL,
    REVERSE,
    UNSTABLE,
    VERDICTS,
    holm,
    verdict,
)

log = logging.getLogger(__name__)


@dataclass
class Prune(Analysis):
    """``analysis=prune``: the selective-pruning pipeline for ``task``."""

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
            *effect_rows(task.name, before, after, cfg.verdict),
            *selection_rows(task.name, selection, cfg.verdict.min_stability),
            *sample_rows(pipe, task, reference),
        ]
        ctx.extras.update(scores=selection.scores, mask=selection.mask, selection=selection)
        counts = selection.mask.sum(1).tolist()
        by_layer = pd.DataFrame({"layer": range(len(counts)), "selected": counts})
        ctx.table("layer_counts", by_layer)
        ctx.logger.series("layer", by_layer.assign(share=selection.mask.double().mean(1)))
        ctx.figure(
            "layer_counts",
            plot_layer_counts(
                ctx.out / "layer_counts.png",
                counts,
                pipe.n_units,
                ctx.title(f"{task.name} {site_of(pipe.site).noun} per layer"),
            ),
        )
        write_json(ctx.out / "metrics.json", nested_metrics(rows))
        log.info("%s", console_summary(cfg.model.name, task.name, reference.name, rows))
        return rows

    @classmethod
    def summary(cls, rows: pd.DataFrame) -> list[str]:
        """Per fraction: the mean effect over tasks and the Holm-corrected verdict counts;
        per task at the headline fraction: drops and effect with intervals, the verdict
        (Holm over the tasks), stability with its flag, data."""
        lines = []
        for label, group in panels(rows, exclude=("task", "fraction", "run")):
            lines += _fraction_overview(group, label) + [""]
            fraction = lower_median(group.fraction)
            table = task_table(group[np.isclose(group.fraction, fraction)])
            if not table:
                continue
            header = [
                "task",
                "task top-1",
                "task drop (pp)",
                "ref. drop (pp)",
                "effect (pp)",
                "verdict (Holm)",
                "loss effect (nats)",
                "stability",
                "evaluated on",
            ]
            lines += [
                f"Headline, declared before the run: the top-1 effect at fraction {fraction:g} "
                "(the experiment's `selection.fraction`, the lower median of its sweep). Drops "
                "in percentage points of top-1; the effect is the task's drop minus the "
                "reference's, with 95% intervals over evaluation documents or images; loss "
                "effect likewise in nats; stability is the Jaccard of the selections made from "
                "two halves of the collection data. " + _verdict_legend(group, len(table)),
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
    """``metrics.json``: the rows as ``{metric: {variant: {measure: {value, low, high, n,
    p_value, label}}}}`` (what each row has of these)."""
    out: dict = {}
    for row in rows:
        entry = {"value": row.value}
        if row.low == row.low:  # an interval was computed
            entry.update(low=row.low, high=row.high, n=row.n)
        if row.p_value == row.p_value:
            entry["p_value"] = row.p_value
        if row.label:
            entry["label"] = row.label
        out.setdefault(row.metric, {}).setdefault(row.variant or "-", {})[row.measure or "-"] = (
            entry
        )
    return out


def console_summary(model: str, task: str, reference: str, rows: list[Row]) -> str:
    """A few lines for the console: levels before/after, drops and effect with intervals,
    the effect's verdict, the stability with its flag, and why an interval is missing."""
    get = {(r.metric, r.variant, r.measure): r for r in rows}
    effects = [r for r in rows if r.metric == "effect"]

    def interval(row: Row | None, scale: float = 1.0) -> str:
        if row is None or row.value != row.value:
            return "-"
        if row.low != row.low:
            return f"{row.value * scale:+.2f} [no interval]"
        return f"{row.value * scale:+.2f} [{row.low * scale:+.2f}, {row.high * scale:+.2f}]"

    table = []
    for effect in effects:
        m = effect.measure
        levels = [
            f"{get[('before', side, m)].value:.4f} -> {get[('after', side, m)].value:.4f}"
            for side in ("task", "reference")
        ]
        margin = get.get(("null_margin", "task-reference", m))
        table.append(
            [
                m,
                *levels,
                *(interval(get.get(("drop", s, m))) for s in ("task", "reference")),
                interval(effect),
                effect.label + (f" (margin {margin.value:g})" if effect.label == NULL else ""),
            ]
        )
    header = [
        "metric",
        "task",
        "reference",
        "task drop",
        "ref. drop",
        "effect (task - ref.)",
        "verdict",
    ]
    stability = get.get(("stability", "", ""))
    sizes = {
        (r.metric, r.variant): int(r.value)
        for r in rows
        if r.metric.startswith(("collect_", "evaluate_"))
    }
    unit = "tokens" if ("collect_tokens", "task") in sizes else "units"
    used = "; ".join(
        f"{side} {sizes[('collect_' + unit, side)]} / {sizes[('evaluate_' + unit, side)]}"
        for side in ("task", "reference")
        if ("collect_" + unit, side) in sizes
    )
    noun = "tokens" if unit == "tokens" else "images"
    missing = next(
        (
            no_interval_reason(int(e.n), int(get[("before", "reference", e.measure)].n))
            for e in effects
            if e.low != e.low and e.value == e.value
        ),
        "",
    )
    return (
        f"{model} / {task} vs {reference}: accuracy drops in percentage points, loss rises "
        "in nats, 95% intervals over evaluation units\n"
        + format_table(table, header)
        + (f"\n{missing}" if missing else "")
        + (
            f"\nsplit-half stability of the selection: {stability.value:.2f} ({stability.label})"
            if stability
            else ""
        )
        + (f"\n{noun} used (collection / evaluation): {used}" if used else "")
    )


def top1_effects(rows: pd.DataFrame) -> pd.DataFrame:
    """The top-1 effect rows, each with its equivalence p-value (``p_null``) and margin
    (from the ``null_margin`` row beside it), its standard error (``se``) and degrees of
    freedom (``df``; nan for runs that did not record them)."""
    keys = ["run", "task"]
    top1 = rows[(rows.measure == "top1") & (rows.variant == "task-reference")]
    effects = top1[top1.metric == "effect"]
    for metric, columns in (
        ("null_margin", {"value": "margin", "p_value": "p_null"}),
        ("standard_error", {"value": "se"}),
        ("degrees_of_freedom", {"value": "df"}),
    ):
        beside = top1[top1.metric == metric][[*keys, *columns]].rename(columns=columns)
        effects = effects.merge(beside, on=keys, how="left")
    return effects


def holm_verdicts(effects: pd.DataFrame) -> list[str]:
    """The verdict of each effect with both its p-values Holm-adjusted over all of them."""
    return [
        verdict(value, p_effect, p_null)
        for value, p_effect, p_null in zip(
            effects.value, holm(effects.p_value.to_numpy()), holm(effects.p_null.to_numpy())
        )
    ]


def _verdict_legend(rows: pd.DataFrame, n_tasks: int) -> str:
    """How to read the verdict column, with its margin and the family it is corrected over."""
    margins = top1_effects(rows).margin.dropna().unique()
    margin = f"±{margins[0]:g} pp" if len(margins) == 1 else "the run's margin"
    return (
        f"Verdicts are corrected for the {n_tasks} tasks by Holm's method (5% family-wise): "
        f"*{EFFECT}* the effect is above 0, *{REVERSE}* below 0, *{NULL}* its interval lies "
        f"within {margin}, *{INCONCLUSIVE}* none of these; *{UNSTABLE}* marks a split-half "
        "stability below the run's `verdict.min_stability`."
    )


def task_table(rows: pd.DataFrame) -> list[list[str]]:
    """Per task at one fraction: top-1 before/after, drops and effect with intervals, the
    Holm-corrected verdict, loss effect, stability with its flag, evaluation data."""
    effects = top1_effects(rows)
    labels = dict(zip(effects.task, holm_verdicts(effects)))
    nested = nested_tasks(sorted(labels))
    table = []
    for task, group in rows.groupby("task"):
        if task not in labels:
            continue
        pick = {(r.metric, r.variant, r.measure): r for r in group.itertuples()}
        stability = pick.get(("stability", "", ""))
        stable = stability.value if stability is not None else float("nan")
        flag = f" ({UNSTABLE})" if stability is not None and stability.label == UNSTABLE else ""
        tokens, units = (
            pick.get(("evaluate_tokens", "task", "")),
            pick.get(("evaluate_units", "task", "")),
        )
        size = f"{int(tokens.value):,} tokens" if tokens else f"{int(units.value):,} images"
        effect = pick[("effect", "task-reference", "top1")]
        before, after = pick[("before", "task", "top1")], pick[("after", "task", "top1")]
        table.append(
            [
                task + (f" (inside {nested[task]})" if task in nested else ""),
                f"{before.value:.3f} → {after.value:.3f}",
                format_interval(pick.get(("drop", "task", "top1"))),
                format_interval(pick.get(("drop", "reference", "top1"))),
                f"**{format_interval(effect)}**",
                labels[task],
                format_interval(pick.get(("effect", "task-reference", "loss")), 2),
                f"{stable:.2f}{flag}",
                f"{size} ({int(effect.n)} units)",
            ]
        )
    return table


def _fraction_overview(rows: pd.DataFrame, label: str) -> list[str]:
    """One line per fraction over the tasks not nested in another: mean top-1 effect with
    its interval over tasks, the verdicts corrected by Holm over every such task and
    fraction of the table, unstable selections, mean stability."""
    nested = nested_tasks(sorted(rows.task.unique()))
    effects = top1_effects(rows[~rows.task.isin(list(nested))])
    effects["verdict"] = holm_verdicts(effects)
    stability = rows[(rows.metric == "stability") & ~rows.task.isin(list(nested))]
    table = []
    for fraction, group in effects.groupby("fraction"):
        pooled = mean_over_tasks(*(group[c].to_numpy() for c in ("value", "se", "df")))
        stable = stability[np.isclose(stability.fraction, fraction)]
        counts = group.verdict.value_counts()
        table.append(
            [
                f"{fraction:g}",
                f"{pooled.value:+.1f} [{pooled.low:+.1f}, {pooled.high:+.1f}]"
                if pooled.low == pooled.low
                else f"{pooled.value:+.1f} (one task: no interval over tasks)",
                f"{pooled.tau:.1f}" if pooled.tau == pooled.tau else "-",
                *(f"{counts.get(name, 0)} of {len(group)}" for name in VERDICTS),
                f"{int((stable.label == UNSTABLE).sum())}",
                f"{stable.value.mean():.2f}",
            ]
        )
    header = [
        "fraction",
        "mean effect (pp), 95% interval over tasks",
        "between-task sd (pp)",
        *VERDICTS,
        UNSTABLE,
        "mean stability",
    ]
    title = f"Selective pruning{f' ({label})' if label else ''}: top-1 effect by fraction."
    notes = [
        f"Verdict counts are corrected by Holm's method over all {len(effects)} task x "
        "fraction effects of this table (5% family-wise). The mean's interval is a two-level t "
        "interval: the tasks' scatter over K - 1 df, never narrower than the tasks' own "
        "standard errors allow with their degrees of freedom "
        "(`modularity/algorithms/across_tasks.py`); the between-task sd is what the scatter "
        "leaves once those errors are taken out."
    ]
    if nested:
        inside = ", ".join(f"{inner} (inside {outer})" for inner, outer in sorted(nested.items()))
        notes.append(f"Left out as nested in another task (their images overlap): {inside}.")
    return [title, "", format_markdown(table, header), "", *notes]


def plot_drop_vs_fraction(frame: pd.DataFrame, path: Path) -> Path | None:
    """Against the prune fraction, one column of panels per model and setting: above, each
    task's effect (its top-1 drop minus its reference's) with its 95% interval band and the
    mean over tasks (black); below, the drops themselves, task solid and reference dashed."""
    rows = frame[frame.metric.isin(["drop", "effect"]) & (frame.measure == "top1")]
    if rows.empty or rows.fraction.nunique() < 2:
        return None
    groups = panels(rows, exclude=("task", "fraction", "run"))
    fig, axes = figure(len(groups), 2, width=4.4, height=3.0)
    tasks = sorted(rows.task.unique())
    colours = {task: plt.cm.tab10(i % 10) for i, task in enumerate(tasks)}
    for (label, group), (top, bottom) in zip(groups, axes.T):
        for task, mine in group.groupby("task"):
            colour = colours[task]
            effect = mine[mine.metric == "effect"].sort_values("fraction")
            top.plot(effect.fraction, effect.value, "-o", ms=3, color=colour, lw=1, label=task)
            top.fill_between(effect.fraction, effect.low, effect.high, color=colour, alpha=0.15)
            for side, style in (("task", "-"), ("reference", "--")):
                line = mine[(mine.metric == "drop") & (mine.variant == side)]
                line = line.sort_values("fraction")
                bottom.plot(line.fraction, line.value, style, color=colour, lw=1)
        mean = group[group.metric == "effect"].groupby("fraction").value.mean()
        top.plot(mean.index, mean.values, "-", color="k", lw=2, label="mean over tasks")
        fractions = sorted(group.fraction.unique())
        for ax in (top, bottom):
            ax.set_xscale("log")
            ax.set_xticks(fractions, [f"{f:g}" for f in fractions])
            ax.minorticks_off()
            ax.axhline(0, color="grey", lw=0.6)
            ax.set_xlabel("prune fraction (share of neurons, log scale)")
        panel_title(top, group.model.iloc[0] + (f" ({label})" if label else ""))
        y_label(top, "effect: task minus reference top-1 drop (pp)")
        y_label(bottom, "top-1 drop (pp): task solid, reference dashed")
    legend_below(fig, axes[0, 0], 5)
    title(
        fig,
        "Selective pruning: effect with 95% intervals over evaluation units (bands) and mean "
        "over tasks (black); drops below",
    )
    return save(fig, path)
