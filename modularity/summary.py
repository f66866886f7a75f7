"""``summary.md``: the headline numbers of a report's tidy table, with their intervals.

Reads only the table ``modularity.report`` gathers, by metric name, so it summarises
``make run`` and any sweep alike. A pruning result whose effect interval contains 0, or
whose selection's split-half stability is below 0.7, is marked under-powered; negative
results are stated as such.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modularity.outputs import format_markdown

STABILITY_THRESHOLD = 0.7


def interval(row: pd.Series | None, digits: int = 1, unit: str = "") -> str:
    if row is None or not np.isfinite(row.value):
        return "–"
    if not np.isfinite(row.low):
        return f"{row.value:+.{digits}f}{unit}"
    return f"{row.value:+.{digits}f}{unit} [{row.low:+.{digits}f}, {row.high:+.{digits}f}]"


def underpowered(effect: pd.Series | None, stability: float) -> bool:
    """The effect's interval contains 0, or the selection is unstable."""
    no_effect = effect is None or not (effect.low > 0 or effect.high < 0)
    return bool(no_effect or not stability >= STABILITY_THRESHOLD)


def headline_fraction(frame: pd.DataFrame, model: str) -> float:
    """The fraction of the model's overlap run, else the median pruned fraction."""
    rows = frame[(frame.model == model) & (frame.analysis == "overlap")]
    if len(rows):
        return float(rows.fraction.iloc[0])
    pruned = np.sort(frame[(frame.model == model) & (frame.analysis == "prune")].fraction.unique())
    return float(pruned[len(pruned) // 2]) if len(pruned) else float("nan")


def pruning_section(frame: pd.DataFrame, model: str) -> list[str]:
    """Per task at the headline fraction: top-1 before/after, drops and effect with 95%
    intervals, loss effect, stability, evaluation data; then what holds and what does not."""
    fraction = headline_fraction(frame, model)
    rows = frame[(frame.model == model) & (frame.analysis == "prune")]
    rows = rows[np.isclose(rows.fraction, fraction)]
    table, effects, flags = [], [], []
    for task, group in rows.groupby("task"):
        pick = {(r.metric, r.variant, r.measure): r for r in group.itertuples()}

        def get(*key: str, pick: dict = pick) -> Any:
            return pick.get(key)

        effect = get("effect", "task-reference", "top1")
        if effect is None:
            continue
        stability = get("stability", "", "")
        stable = stability.value if stability is not None else float("nan")
        weak = underpowered(effect, stable)
        flags.append(weak)
        effects.append(effect.value)
        units = get("evaluate_units", "task", "")
        tokens = get("evaluate_tokens", "task", "")
        size = (
            f"{int(tokens.value):,} tok"
            if tokens
            else f"{int(units.value):,} img"
            if units
            else "–"
        )
        before, after = get("before", "task", "top1"), get("after", "task", "top1")
        table.append([
            task + (" (under-powered)" if weak else ""),
            f"{before.value:.3f} → {after.value:.3f}",
            interval(get("drop", "task", "top1")),
            interval(get("drop", "reference", "top1")),
            f"**{interval(effect)}**",
            interval(get("effect", "task-reference", "loss"), 2),
            f"{stable:.2f}",
            size,
        ])  # fmt: skip
    if not table:
        return []
    header = ["task", "task top-1", "task drop (pp)", "ref. drop (pp)", "effect (pp)",
              "loss effect (nats)", "stability", "evaluated on"]  # fmt: skip
    effect_rows = rows[(rows.metric == "effect") & (rows.measure == "top1")]
    positive = int((effect_rows.low > 0).sum())
    return [
        f"Pruning the top {fraction:g} of neurons by task score. Drops are in percentage "
        "points of top-1 accuracy; the effect is the task's drop minus the reference's, with a "
        "95% bootstrap interval over evaluation documents or images; loss effect likewise in "
        "nats; stability is the Jaccard of the selections made from two halves of the "
        f"collection data. Mean effect over {len(table)} tasks: **{np.mean(effects):+.1f} pp**; "
        f"the interval excludes 0 (task hurt more) in {positive} of {len(table)} tasks; "
        f"{sum(flags)} of {len(table)} are under-powered (interval contains 0, or stability "
        f"< {STABILITY_THRESHOLD}).",
        "",
        format_markdown(table, header),
    ]


def overlap_section(frame: pd.DataFrame, model: str) -> list[str]:
    """Pairwise overlap against chance, trained vs other models, and Mantel tests."""
    rows = frame[(frame.model == model) & (frame.analysis == "overlap") & (frame.layer == "all")]
    lines = []
    jaccard = rows[(rows.metric == "jaccard") & (rows.partner != "")].value
    z = rows[(rows.metric == "z") & (rows.partner != "")].value
    if len(jaccard):
        lines.append(
            f"- Task sets overlap: mean pairwise Jaccard **{jaccard.mean():.3f}** (range "
            f"{jaccard.min():.3f}–{jaccard.max():.3f}); mean z against random sets of the same "
            f"sizes **{z.mean():.1f}**."
        )
    index = rows[rows.metric == "index_jaccard"]
    if len(index):
        chance = rows[rows.metric == "expected_index_jaccard"]
        zs = rows[rows.metric == "index_z"]
        for kind, is_init in (
            ("unrelated random twins", False),
            ("its true initial weights", True),
        ):
            mine = index.partner.str.endswith("-init") == is_init
            if mine.any():
                sel = chance.partner.str.endswith("-init") == is_init
                zsel = zs.partner.str.endswith("-init") == is_init
                lines.append(
                    f"- Same neuron indices, trained vs {kind}: mean Jaccard "
                    f"**{index[mine].value.mean():.3f}** vs {chance[sel].value.mean():.3f} by "
                    f"chance (mean z {zs[zsel].value.mean():.1f})."
                )
    mantel = rows[rows.metric == "mantel_r"]
    for test in mantel.itertuples():
        lines.append(
            f"- Mantel test of task x task structure, {test.task} vs {test.partner}: "
            f"r = {test.value:.2f}, p = {test.p_value:.3g}."
        )
    return lines


def alignment_section(frame: pd.DataFrame, model: str) -> list[str]:
    """Mean alignment z (top-expert share) by depth third, per clustering, with intervals."""
    rows = frame[(frame.model == model) & (frame.metric == "alignment_z_by_depth")
                 & (frame.measure == "topk_fraction")]  # fmt: skip
    if rows.empty:
        return []
    depths = [d for d in ("early", "middle", "late", "all") if d in set(rows.layer)]
    table = []
    for method, group in rows.groupby("variant"):
        by = {r.layer: r for r in group.itertuples()}
        table.append([method, *(interval(by.get(d), 1) for d in depths)])
    n = int(rows.n.max())
    return [
        f"MoEfication: how concentrated each task's neurons are in its top expert, as z against "
        f"random sets of the same size; mean over {n} tasks by depth third, 95% t-interval:",
        "",
        format_markdown(table, ["clustering", *depths]),
    ]


def write_summary(
    frame: pd.DataFrame, out: Path, failures: Mapping[str, str], seconds: float, title: str
) -> Path:
    """Write ``out/summary.md`` from the tidy table and link every figure under ``out``."""
    lines = [f"# {title}", "", f"This invocation: {seconds / 60:.1f} min.", ""]
    for model in sorted(frame.model.dropna().unique()):
        sections = pruning_section(frame, model) + [""] + overlap_section(frame, model)
        sections += [""] + alignment_section(frame, model)
        lines += [f"## {model}", "", *sections, ""]
    lines += ["## Figures", ""]
    lines += [f"![{p.stem}]({p.name})" for p in sorted(out.glob("*.png"))]
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
