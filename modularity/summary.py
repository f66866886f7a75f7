"""``summary.md``: the headline numbers of a report's tidy table, in words and small tables.

Reads only the table ``modularity.report`` gathers (columns model, task, layer, fraction,
metric, value), so it summarises ``make run`` and any sweep alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from modularity.outputs import format_markdown


def headline_fraction(frame: pd.DataFrame, model: str) -> float:
    """The fraction the model's overlap run used, else the median pruned fraction."""
    rows = frame[(frame.model == model) & frame.metric.str.startswith("overlap/")]
    fractions = rows.fraction.dropna()
    if len(fractions):
        return float(fractions.iloc[0])
    pruned = frame[(frame.model == model) & (frame.metric == "selectivity")].fraction
    return float(pruned.sort_values().iloc[len(pruned) // 2])


def pruning_section(frame: pd.DataFrame, model: str) -> list[str]:
    """Per task: top-1 and loss before/after on task and reference at the headline fraction.

    Relative loss rise is reported beside top-1: on small evaluation sets a confident
    classifier keeps its top-1 while its loss already shows the damage.
    """
    fraction = headline_fraction(frame, model)
    rows = frame[(frame.model == model) & np.isclose(frame.fraction, fraction)]
    table, drops = [], []
    for task, group in rows[rows.layer == "all"].groupby("task"):
        if "selectivity" not in set(group.metric):
            continue
        get = dict(zip(group.metric, group.value))
        drops.append(
            [get[f"{side}/drop/{m}"] for side in ("task", "reference") for m in ("top1", "loss")]
        )
        table.append(
            [
                task,
                f"{get['task/before/top1']:.3f} → {get['task/after/top1']:.3f}",
                f"{get['reference/before/top1']:.3f} → {get['reference/after/top1']:.3f}",
                f"{get['task/drop/top1']:+.1%}",
                f"{get['reference/drop/top1']:+.1%}",
                f"{get['task/drop/loss']:+.0%}",
                f"{get['reference/drop/loss']:+.0%}",
            ]
        )
    if not table:
        return []
    task_top1, task_loss, ref_top1, ref_loss = np.mean(drops, axis=0)
    hurt_more = sum(d[0] > d[2] for d in drops)
    header = [
        "task",
        "task top-1",
        "ref. top-1",
        "task drop",
        "ref. drop",
        "task loss",
        "ref. loss",
    ]
    return [
        f"Pruning the top {fraction:g} of each layer's neurons by task score (drops are "
        f"relative; loss columns are the relative rise of cross-entropy). Mean over "
        f"{len(table)} tasks: top-1 drop **{task_top1:.1%} on the task vs {ref_top1:.1%} on "
        f"the reference**; loss rise **{task_loss:.0%} vs {ref_loss:.0%}**. The task lost "
        f"more top-1 than the reference in {hurt_more} of {len(table)} tasks.",
        "",
        format_markdown(table, header),
    ]


def overlap_section(frame: pd.DataFrame, model: str) -> list[str]:
    """Pairwise overlap, set sizes, and trained vs random twin."""
    rows = frame[(frame.model == model) & (frame.layer == "all")]
    lines = []
    pairs = rows[rows.metric.isin(["overlap/jaccard", "overlap/z"])]
    pairs = pairs[pairs.task.str.split("|").map(lambda ab: ab[0] != ab[1])]
    if len(pairs):
        jaccard = pairs[pairs.metric == "overlap/jaccard"].value
        z = pairs[pairs.metric == "overlap/z"].value
        lines.append(
            f"- Task sets overlap: mean pairwise Jaccard **{jaccard.mean():.3f}** "
            f"(range {jaccard.min():.3f}–{jaccard.max():.3f}); mean z vs random sets of the "
            f"same sizes **{z.mean():.1f}**."
        )
    shares = rows[rows.metric == "set_share"].value
    if len(shares) and shares.std(ddof=0) > 0:  # per-layer selection fixes the share
        lines.append(
            f"- Each task's set is {shares.mean():.1%} ± {shares.std(ddof=0):.1%} of all neurons."
        )
    twin = rows[rows.metric.str.startswith("trained_vs_random/")]
    if len(twin):
        by = twin.pivot_table(index="task", columns="metric", values="value")
        lines.append(
            "- Trained vs random twin: mean Jaccard "
            f"**{by['trained_vs_random/jaccard'].mean():.3f}** against "
            f"{by['trained_vs_random/expected_jaccard'].mean():.3f} expected by chance "
            f"(mean z {by['trained_vs_random/z'].mean():.1f})."
        )
    return lines


def alignment_section(frame: pd.DataFrame, model: str) -> list[str]:
    """Mean alignment z by layer (over tasks), per clustering."""
    rows = frame[
        (frame.model == model)
        & frame.metric.str.startswith("alignment/")
        & frame.metric.str.endswith("/topk_fraction_z")
    ]
    if rows.empty:
        return []
    rows = rows.assign(clustering=rows.metric.str.split("/").str[1])
    by = rows.pivot_table(index="layer", columns="clustering", values="value", aggfunc="mean")
    by = by.loc[sorted(by.index, key=int)]
    table = [[layer, *(f"{v:.1f}" for v in row)] for layer, row in zip(by.index, by.values)]
    return [
        "MoEfication: mean z (over tasks) of the share of a task's neurons in its top expert, "
        "against random sets of the same size:",
        "",
        format_markdown(table, ["layer", *by.columns]),
    ]


def write_summary(
    frame: pd.DataFrame, out: Path, failures: Mapping[str, str], seconds: float
) -> Path:
    """Write ``out/summary.md`` from the tidy table and link every figure under ``out``."""
    lines = ["# modularity: embedded default", "", f"This invocation: {seconds / 60:.1f} min.", ""]
    for model in sorted(frame.model.dropna().unique()):
        sections = pruning_section(frame, model) + [""] + overlap_section(frame, model)
        sections += [""] + alignment_section(frame, model)
        lines += [f"## {model}", "", *sections, ""]
    lines += ["## Figures", ""]
    lines += [f"![{p.stem}]({p.name})" for p in sorted(out.glob("*.png"))]
    # Analysis-level figures; each pruning run also has its own layer_counts.png.
    runs = sorted(p for p in out.rglob("*.png") if p.parent != out and "prune" not in p.parts)
    lines += ["", "Per analysis:", ""]
    lines += [f"- [{p.relative_to(out)}]({p.relative_to(out)})" for p in runs]
    lines += ["", "Tidy table of every run: [report.csv](report.csv)."]
    if failures:
        lines += ["", "## Steps that failed", ""]
        lines += [f"- `{where}`: {why}" for where, why in failures.items()]
    path = out / "summary.md"
    path.write_text("\n".join(lines) + "\n")
    return path
