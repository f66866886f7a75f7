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
from modularity.analyses.persistence import (
    INIT_SUFFIX,
    mantel_note,
    masks,
    persistence_rows,
    task_selections,
    verdict,
)
from modularity.figures import (
    HeatmapRow,
    figure,
    legend_below,
    plot_bars,
    plot_heatmaps,
    plot_layer_shares,
    save,
    title,
)
from modularity.infra.loggers import long_matrix
from modularity.infra.outputs import format_table, write_csv, write_json, write_tensors
from modularity.infra.tidy import panels

log = logging.getLogger(__name__)
INDEX_METRICS = ("index_jaccard", "expected_index_jaccard", "index_z")
MATRIX_LABELS = {
    "jaccard": "Jaccard |A∩B| / |A∪B|",
    "containment": "|A∩B| / |A| (row A, column B)",
    "z": "z vs random sets of equal size",
}


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
            mantel_note(names)
            compared = persistence_rows(ctx.pipeline, sets, self.twins, self.permutations)
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
        lines += [
            f"- The same with the tasks' data similarity held fixed (partial Mantel), "
            f"{t.task} vs {t.partner}: r = {t.value:.2f}, p = {t.p_value:.3g}."
            for t in rows[rows.metric == "partial_mantel_r"].itertuples()
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
        """Trained vs twins and init, index by index, against chance: table and bars."""
        frame = pd.DataFrame([r.__dict__ for r in rows if r.metric.startswith(INDEX_METRICS)])
        table = frame.pivot_table(index=["task", "partner"], columns="metric", values="value")
        ctx.table("trained_vs_random", table.reset_index())
        labels = [f"{task} vs {partner}" for task, partner in table.index]
        ctx.figure(
            "trained_vs_random",
            plot_bars(
                ctx.out / "trained_vs_random.png",
                labels,
                list(table["index_jaccard"]),
                "Jaccard of the same neuron indices (0-1)",
                ctx.title("trained vs random twins and init, against chance; z above each bar"),
                xlabel="task vs compared model",
                chance=list(table["expected_index_jaccard"]),
                notes=[f"z {z:.1f}" for z in table["index_z"]],
            ),
        )

    def matrices(self, ctx: RunContext, sets: dict[str, torch.Tensor]) -> list[Row]:
        """Task x task matrices per metric and layer third: CSVs, one multi-panel heatmap
        (a row per metric, a column per third), long tables for W&B; and their rows."""
        n_layers = next(iter(sets.values())).shape[0]
        groups = layer_groups(n_layers) if n_layers >= 3 else {}
        heatmaps = []
        for metric, label in MATRIX_LABELS.items():
            matrices, long = {}, []
            for scope, layers in {"all": None, **groups}.items():
                names, matrix = overlap_matrix(sets, metric, layers)
                frame = pd.DataFrame(matrix, index=names, columns=names)
                write_csv(ctx.out / f"overlap_{metric}_{scope}.csv", frame)
                matrices[f"{metric}, layers: {scope}"] = matrix
                long.append(long_matrix(names, matrix, layers=scope))
            heatmaps.append(HeatmapRow(label, matrices, centre_zero=metric == "z"))
            ctx.logger.table(f"overlap_{metric}", pd.concat(long, ignore_index=True))
        ctx.figure(
            "overlap",
            plot_heatmaps(
                ctx.out / "overlap.png",
                names,
                heatmaps,
                ctx.title("overlap of task neuron sets, whole model and by depth third"),
                xlabel="task B",
                ylabel="task A",
            ),
        )
        table = overlap_table(sets, groups=groups, per_layer=True)
        write_csv(ctx.out / "overlap_table.csv", table, index=False)
        ctx.logger.series("layer", per_layer_series(table))
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


def per_layer_series(table: pd.DataFrame) -> pd.DataFrame:
    """Each task pair's Jaccard and z per layer (``<metric>/<task>/<task>``) as columns of
    one row per layer, for line charts over depth."""
    per_layer = table[
        table.scope.str.isdigit()
        & table.metric.isin(["jaccard", "z"])
        & (table.task_a < table.task_b)
    ]
    if per_layer.empty:
        return pd.DataFrame()
    wide = per_layer.assign(
        key=per_layer.metric + "/" + per_layer.task_a + "/" + per_layer.task_b,
        layer=per_layer.scope.astype(int),
    ).pivot_table(index="layer", columns="key", values="value")
    return wide.reset_index()


def set_size_rows(ctx: RunContext, sets: dict[str, torch.Tensor]) -> list[Row]:
    rows = []
    for name, mask in sets.items():
        rows.append(Row("share_selected", float(mask.float().mean()), task=name))
        rows += [
            Row("share_selected", float(share), task=name, layer=str(i))
            for i, share in enumerate(mask.float().mean(1).tolist())
        ]
    shares = {name: mask.double().mean(1).tolist() for name, mask in sets.items()}
    ctx.figure(
        "set_sizes",
        plot_layer_shares(
            ctx.out / "set_sizes.png", shares, ctx.title("each task's share of neurons per layer")
        ),
    )
    return rows


def jaccard_text(sets: dict[str, torch.Tensor]) -> str:
    names, matrix = overlap_matrix(sets, "jaccard")
    return format_table(
        [[a, *(f"{v:.3f}" for v in row)] for a, row in zip(names, matrix)], ["jaccard", *names]
    )


def plot_overlaps(frame: pd.DataFrame, out: Path) -> list[Path]:
    """Whole-model Jaccard of every overlap run, one panel per run, in one figure."""
    rows = frame[(frame.metric == "jaccard") & (frame.layer == "all") & (frame.partner != "")]
    if rows.empty:
        return []
    matrices, names = {}, list(dict.fromkeys([*rows.task, *rows.partner]))
    for label, group in panels(rows, exclude=("task", "partner", "run")):
        first = group.iloc[0]
        matrix = group.pivot_table(index="task", columns="partner", values="value")
        key = f"{first.model} (top {first.fraction:g}{f', {label}' if label else ''})"
        matrices[key] = matrix.reindex(index=names, columns=names).values
    path = plot_heatmaps(
        out / "overlap_jaccard.png",
        names,
        [HeatmapRow(MATRIX_LABELS["jaccard"], matrices)],
        "Jaccard of task neuron sets (grey: not in that run)",
        xlabel="task B",
        ylabel="task A",
    )
    return [path]


def plot_index_cdf(frame: pd.DataFrame, path: Path) -> Path | None:
    """Index-by-index Jaccard of trained vs other models, against chance."""
    rows = frame[frame.metric.isin(["index_jaccard", "expected_index_jaccard"])]
    if rows.empty:
        return None
    fig, axes = figure(width=5.6, height=3.6)
    ax = axes[0, 0]
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
    ax.set_xlabel("Jaccard of a task's sets, same neuron indices (0-1)")
    ax.set_ylabel("cumulative share of tasks (0-1)")
    legend_below(fig, ax, 2)
    title(fig, "Trained vs random-init sets, index by index (dotted: chance level)")
    return save(fig, path)
