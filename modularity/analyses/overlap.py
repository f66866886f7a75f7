"""Overlap of task neuron sets: task x task matrices against a null of random sets, and
whether the task structure persists from initialisation.

Every task is scored against its own reference with cached statistics and selected with the
run's settings. Raw overlaps come with the null model of random sets of the same per-layer
sizes (exact hypergeometric p-values, ``modularity.algorithms.set_overlap``).

``compare_random=true`` adds random-initialisation twins. Index by index, a trained model and
an *unrelated* random init can only overlap at chance (hidden units are interchangeable at
init), so persistence is also tested permutation-invariantly: a Mantel test between the task x
task overlap matrices of the trained model and each twin, with two twins against each other
as the data-only control. Where the model's true initial weights are known (the project's own
models), the trained model is also compared with them, index by index and by Mantel test.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from modularity.algorithms.set_overlap import (
    intersection_null,
    layer_groups,
    overlap_matrix,
    overlap_table,
)
from modularity.analyses.base import Analysis, Row, RunContext
from modularity.analyses.persistence import INIT_SUFFIX, persistence_rows, verdict
from modularity.figures import plot_bars, plot_heatmap, plt, save
from modularity.outputs import format_table, write_csv, write_json, write_tensors
from modularity.pipeline import Pipeline, Selection

log = logging.getLogger(__name__)
MATRIX_LABELS = {
    "jaccard": "Jaccard |A∩B| / |A∪B|",
    "containment": "|A∩B| / |A| (row A, column B)",
    "z": "z vs random sets of equal size",
}


def task_selections(pipe: Pipeline, names: list[str]) -> dict[str, Selection]:
    return {name: pipe.select(pipe.task(name)) for name in names}


def masks(selections: dict[str, Selection]) -> dict[str, torch.Tensor]:
    return {name: s.mask for name, s in selections.items()}


@dataclass
class Overlap(Analysis):
    """``analysis=overlap``: compare the neuron sets of ``tasks`` (and with random twins)."""

    needs_tasks = 2
    compare_random: bool = False
    twins: int = 2  # random twins; two or more give the twin-vs-twin (data-only) control
    permutations: int = 10000  # Mantel test (exact enumeration when tasks <= 8)

    def run(self, ctx: RunContext) -> list[Row]:
        cfg, pipe = ctx.cfg, ctx.pipeline
        names = list(cfg.tasks)
        selections = task_selections(pipe, names)
        sets = masks(selections)
        write_tensors(ctx.out / "sets.safetensors", sets)
        rows = self.matrices(ctx, sets)
        rows += [
            Row("stability", s.stability, task=name, n=float(s.mask.sum()))
            for name, s in selections.items()
        ]
        rows += set_size_rows(ctx, sets)
        summary: dict = {"model": cfg.model.name, "tasks": names}
        if self.compare_random:
            compared = persistence_rows(cfg, sets, self.twins, self.permutations)
            rows += compared
            summary["verdict"] = verdict(compared, cfg.model.name)
            self.plot_index_overlap(ctx, compared)
        write_json(ctx.out / "overlap.json", summary)
        log.info("overlap of %d tasks on %s:\n%s", len(names), cfg.model.name, jaccard_text(sets))
        if "verdict" in summary:
            log.info("%s", summary["verdict"])
        return rows

    @classmethod
    def summary(cls, rows: pd.DataFrame) -> list[str]:
        """Pairwise overlap against chance; trained vs other models; Mantel tests."""
        rows = rows[rows.layer == "all"]
        lines = []
        pairs = rows[rows.partner != ""]
        jaccard, z = pairs[pairs.metric == "jaccard"].value, pairs[pairs.metric == "z"].value
        if len(jaccard):
            lines.append(
                f"- Task sets overlap (top {rows.fraction.iloc[0]:g}): mean pairwise Jaccard "
                f"**{jaccard.mean():.3f}** (range {jaccard.min():.3f}–{jaccard.max():.3f}); "
                f"mean z against random sets of the same sizes **{z.mean():.1f}**."
            )
        index = rows[rows.metric == "index_jaccard"]
        for kind, is_init in (("unrelated random twins", False), ("its own initial weights", True)):
            mine = rows[rows.partner.str.endswith(INIT_SUFFIX) == is_init]
            if (mine.metric == "index_jaccard").any():
                lines.append(
                    f"- Same neuron indices, trained vs {kind}: mean Jaccard "
                    f"**{mine[mine.metric == 'index_jaccard'].value.mean():.3f}** vs "
                    f"{mine[mine.metric == 'expected_index_jaccard'].value.mean():.3f} by "
                    f"chance (mean z {mine[mine.metric == 'index_z'].value.mean():.1f})."
                )
        lines += [
            f"- Mantel test of the task x task structure, {t.task} vs {t.partner}: "
            f"r = {t.value:.2f}, p = {t.p_value:.3g}."
            for t in rows[rows.metric == "mantel_r"].itertuples()
        ]
        if len(index) or (rows.metric == "mantel_r").any():
            lines.append(f"- {verdict(list(rows.itertuples()), rows.model.iloc[0])}")
        return lines

    @classmethod
    def figures(cls, rows: pd.DataFrame, out: Path) -> list[Path]:
        paths = plot_overlaps(rows, out)
        cdf = plot_index_cdf(rows, out / "trained_vs_random_cdf.png")
        return paths + ([cdf] if cdf else [])

    def plot_index_overlap(self, ctx: RunContext, rows: list[Row]) -> None:
        """Trained vs twins and init, index by index: table and bar chart."""
        frame = pd.DataFrame([r.__dict__ for r in rows if r.metric.endswith("index_jaccard")])
        table = frame.pivot_table(index=["task", "partner"], columns="metric", values="value")
        ctx.table("trained_vs_random", table.reset_index())
        labels = [f"{task}\n{partner}" for task, partner in table.index]
        ctx.figure(
            "trained_vs_random",
            plot_bars(
                ctx.out / "trained_vs_random.png",
                labels,
                list(table["index_jaccard"]),
                "Jaccard (same neuron indices)",
                ctx.title("trained vs random twins and init"),
            ),
        )

    def matrices(self, ctx: RunContext, sets: dict[str, torch.Tensor]) -> list[Row]:
        """Task x task matrices (CSV and heatmap per metric and layer third) and their rows."""
        n_layers = next(iter(sets.values())).shape[0]
        groups = layer_groups(n_layers) if n_layers >= 3 else {}
        for metric, label in MATRIX_LABELS.items():
            for scope, layers in {"all": None, **groups}.items():
                names, matrix = overlap_matrix(sets, metric, layers)
                stem = f"overlap_{metric}_{scope}"
                frame = pd.DataFrame(matrix, index=names, columns=names)
                write_csv(ctx.out / f"{stem}.csv", frame)
                ctx.figure(
                    stem,
                    plot_heatmap(
                        ctx.out / f"{stem}.png",
                        names,
                        matrix,
                        ctx.title(f"{metric}, layers: {scope}"),
                        label,
                        centre_zero=metric == "z",
                    ),
                )
            ctx.logger.matrix(f"overlap_{metric}", *overlap_matrix(sets, metric))
        table = overlap_table(sets, groups=groups, per_layer=True)
        write_csv(ctx.out / "overlap_table.csv", table, index=False)
        rows = [
            Row(r.metric, float(r.value), task=r.task_a, partner=r.task_b, layer=r.scope)
            for r in table.itertuples()
            if r.task_a != r.task_b
        ]
        for a, b in combinations(sets, 2):
            null = intersection_null(sets[a], sets[b])
            where = {"task": a, "partner": b}
            rows.append(Row("intersection", float(null.observed), p_value=null.p_value, **where))
            rows.append(Row("expected_intersection", float(null.expected), **where))
        return rows


def set_size_rows(ctx: RunContext, sets: dict[str, torch.Tensor]) -> list[Row]:
    rows = []
    for name, mask in sets.items():
        rows.append(Row("share_selected", float(mask.float().mean()), task=name))
        rows += [
            Row("share_selected", float(share), task=name, layer=str(i))
            for i, share in enumerate(mask.float().mean(1).tolist())
        ]
    whole = [r for r in rows if r.layer == "all"]
    ctx.figure(
        "set_sizes",
        plot_bars(
            ctx.out / "set_sizes.png",
            [r.task for r in whole],
            [r.value for r in whole],
            "share of neurons",
            ctx.title("size of each task's neuron set"),
        ),
    )
    return rows


def jaccard_text(sets: dict[str, torch.Tensor]) -> str:
    names, matrix = overlap_matrix(sets, "jaccard")
    return format_table(
        [[a, *(f"{v:.3f}" for v in row)] for a, row in zip(names, matrix)], ["jaccard", *names]
    )


def plot_overlaps(frame: pd.DataFrame, out: Path) -> list[Path]:
    """Whole-model Jaccard heatmap of each overlap run."""
    rows = frame[(frame.metric == "jaccard") & (frame.layer == "all") & (frame.partner != "")]
    paths: list[Path] = []
    for _, group in rows.groupby("run"):
        names = list(dict.fromkeys([*group.task, *group.partner]))
        matrix = group.pivot_table(index="task", columns="partner", values="value")
        first = group.iloc[0]
        stem = f"overlap_{first.model}_{first.fraction:g}"
        taken = sum(p.stem.startswith(stem) for p in paths)  # runs differing in another key
        path = out / f"{stem}{f'_{taken}' if taken else ''}.png"
        title = f"{first.model}: Jaccard of task neuron sets (top {first.fraction:g})"
        values = matrix.reindex(index=names, columns=names).values
        paths.append(plot_heatmap(path, names, values, title, "Jaccard"))
    return paths


def plot_index_cdf(frame: pd.DataFrame, path: Path) -> Path | None:
    """Index-by-index Jaccard of trained vs other models, against chance."""
    rows = frame[frame.metric.isin(["index_jaccard", "expected_index_jaccard"])]
    if rows.empty:
        return None
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for (model, is_init), group in rows.groupby(["model", rows.partner.str.endswith(INIT_SUFFIX)]):
        for metric, style in (("index_jaccard", "-"), ("expected_index_jaccard", ":")):
            values = np.sort(group[group.metric == metric].value.to_numpy())
            which = "true init" if is_init else "random twins"
            label = f"{model} vs {which}" + (" (chance)" if metric.startswith("expected") else "")
            ax.step(
                values,
                np.arange(1, len(values) + 1) / len(values),
                style,
                where="post",
                label=label,
            )
    ax.set_xlabel("Jaccard of a task's neuron sets (same neuron indices)")
    ax.set_ylabel("fraction of tasks")
    ax.legend(fontsize=6)
    return save(fig, path)
