"""MoEfication: cluster each layer's neurons into equal-size experts, and measure how the
experts line up with task neurons (per layer, against random sets of the same size).

The paper reports stronger alignment in early and late layers; the alignment z-score by
depth third, with a 95% interval over tasks, makes that claim measurable. Plain k-means and
a random balanced partition go through the same statistics as controls.

For gated MLPs (SwiGLU: ``act(gate(x)) * up(x)``) the weights that feed the nonlinearity are
the gate's, and those are clustered by default (``weights=auto``): on SmolLM2 the alignment
z by depth third was 2.9 / 1.4 / 4.1 with the gate and indistinguishable from random
partitions with the up projection.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from modularity.algorithms.alignment import alignment_statistics
from modularity.algorithms.kmeans import balanced_kmeans, plain_kmeans, random_partition
from modularity.algorithms.set_overlap import layer_groups
from modularity.algorithms.t_interval import mean_interval
from modularity.analyses.base import Analysis, Row, RunContext
from modularity.errors import ConfigError
from modularity.figures import (
    alignment_panels,
    plot_alignment_by_depth,
    plot_size_histograms,
    plt,
    save,
)
from modularity.neurons.selection import check_layers
from modularity.outputs import format_interval, format_markdown, write_tensors
from modularity.tidy import panels

log = logging.getLogger(__name__)
MOEFY_VERSION = 2
CLUSTERINGS = {"balanced": balanced_kmeans, "plain": plain_kmeans, "random": random_partition}
Weights = Enum("Weights", {n: n for n in ("auto", "up", "gate", "concat")})
Device = Enum("Device", {n: n for n in ("auto", "cpu", "cuda")})


@dataclass
class Moefy(Analysis):
    """``analysis=moefy``: experts per layer; with ``tasks=[...]``, their alignment."""

    supported_sites: ClassVar[tuple[str, ...]] = ("mlp",)  # experts cluster MLP neurons

    experts: int | None = None  # None: d_mlp // neurons_per_expert
    neurons_per_expert: int = 32
    weights: Weights = Weights["auto"]
    n_iter: int = 20
    n_null: int = 1000
    top_k: int = 1
    device: Device = Device["auto"]

    def check(self, cfg) -> None:  # noqa: ANN001 - DictConfig
        super().check(cfg)
        for name in ("neurons_per_expert", "n_iter", "n_null", "top_k"):
            if getattr(self, name) < 1:
                raise ConfigError(f"analysis.{name}={getattr(self, name)} must be >= 1")
        if self.experts is not None and self.experts < 1:
            raise ConfigError(f"analysis.experts={self.experts} must be >= 1 (or null)")

    def n_experts(self, d_mlp: int) -> int:
        n = self.experts or max(1, d_mlp // self.neurons_per_expert)
        if not 1 <= n <= d_mlp:
            raise ConfigError(f"analysis.experts={n} must be between 1 and {d_mlp} neurons")
        return n

    def which_weights(self, gated: bool) -> str:
        name = self.weights.name
        return ("gate" if gated else "up") if name == "auto" else name

    def cluster(self, ctx: RunContext, layers: list[int], method: str) -> dict[str, torch.Tensor]:
        """Expert labels ``[layers, neurons]`` and inertia ``[layers]`` (cached per model)."""
        pipe, adapter = ctx.pipeline, ctx.pipeline.adapter
        n_experts = self.n_experts(adapter.n_neurons)
        weights = self.which_weights(adapter.is_gated)

        def compute() -> dict[str, torch.Tensor]:
            labels, inertia = [], []
            for layer in layers:
                rows = adapter.input_weight(layer, weights).detach().float().cpu()
                kwargs = {"seed": ctx.cfg.seed}
                if method != "random":
                    kwargs.update(n_iter=self.n_iter, device=self.device.name)
                result = CLUSTERINGS[method](rows, n_experts, **kwargs)
                labels.append(torch.from_numpy(result.labels))
                inertia.append(result.inertia)
            return {"labels": torch.stack(labels), "inertia": torch.tensor(inertia).double()}

        return pipe.cached(
            "moefy",
            MOEFY_VERSION,
            compute,
            method=method,
            layers=layers,
            experts=n_experts,
            weights=weights,
            n_iter=self.n_iter,
            seed=ctx.cfg.seed,
        )

    def run(self, ctx: RunContext) -> list[Row]:
        pipe = ctx.pipeline
        adapter = pipe.adapter
        layers = check_layers(ctx.cfg.layers, adapter.n_layers)
        n_experts = self.n_experts(adapter.n_neurons)
        methods = ("balanced", "plain", "random") if ctx.cfg.tasks else ("balanced",)
        labels = {m: self.cluster(ctx, layers, m) for m in methods}
        write_tensors(
            ctx.out / "expert_labels.safetensors", {m: c["labels"] for m, c in labels.items()}
        )
        balanced = labels["balanced"]
        sizes = [np.bincount(row.numpy(), minlength=n_experts) for row in balanced["labels"]]
        ctx.table(
            "experts",
            pd.DataFrame(
                {
                    "layer": layers,
                    "inertia": balanced["inertia"].numpy(),
                    "min_size": [s.min() for s in sizes],
                    "max_size": [s.max() for s in sizes],
                }
            ),
        )
        ctx.figure(
            "expert_sizes",
            plot_size_histograms(
                ctx.out / "expert_sizes.png",
                balanced["labels"],
                layers,
                n_experts,
                ctx.title(f"expert sizes (E={n_experts})"),
            ),
        )
        rows = [
            Row("inertia", float(v), variant="balanced", layer=str(layer))
            for layer, v in zip(layers, balanced["inertia"].tolist())
        ]
        rows.append(Row("experts", float(n_experts), n=float(adapter.n_neurons)))
        if ctx.cfg.tasks:
            rows += self.alignment(ctx, labels, layers, n_experts)
        return rows

    @classmethod
    def summary(cls, rows: pd.DataFrame) -> list[str]:
        """Mean alignment z (top-expert share) by depth third, per clustering, with intervals."""
        rows = rows[(rows.metric == "alignment_z_by_depth") & (rows.measure == "topk_fraction")]
        if rows.empty:
            return []
        depths = [d for d in ("early", "middle", "late", "all") if d in set(rows.layer)]
        table = []
        for method, group in rows.groupby("variant"):
            by = {r.layer: r for r in group.itertuples()}
            table.append([method, *(format_interval(by.get(d), 1) for d in depths)])
        return [
            "MoEfication: how concentrated each task's neurons are in its top expert, as z "
            f"against random sets of the same size; mean over {int(rows.n.max())} tasks by "
            "depth third, 95% t-interval:",
            "",
            format_markdown(table, ["clustering", *depths]),
        ]

    @classmethod
    def figures(cls, rows: pd.DataFrame, out: Path) -> list[Path]:
        rows = rows[(rows.metric == "alignment_z_by_depth") & (rows.measure == "topk_fraction")]
        if rows.empty:
            return []
        groups = panels(rows, exclude=("run",))
        fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.5), squeeze=False)
        for ax, (label, group) in zip(axes[0], groups):
            alignment_panels([ax], group, ["topk_fraction"])
            ax.set_title(group.model.iloc[0] + (f"\n{label}" if label else ""), fontsize=9)
        fig.suptitle("experts vs task neurons: mean z over tasks, 95% intervals", fontsize=9)
        return [save(fig, out / "alignment_by_depth.png")]

    def alignment(
        self,
        ctx: RunContext,
        labels: dict[str, dict[str, torch.Tensor]],
        layers: list[int],
        n_experts: int,
    ) -> list[Row]:
        """Per layer, task and clustering: concentration of the task's neurons in experts,
        against random sets of the same size; then the mean z per depth third."""
        pipe = ctx.pipeline
        rows: list[Row] = []
        for name in ctx.cfg.tasks:
            mask = pipe.select(pipe.task(name)).mask
            for method, clustering in labels.items():
                for row, layer in zip(clustering["labels"], layers):
                    result = alignment_statistics(
                        row.numpy(),
                        mask[layer].numpy(),
                        n_experts,
                        top_k=self.top_k,
                        n_null=self.n_null,
                        seed=ctx.cfg.seed,
                    )
                    for statistic, s in result.items():
                        where = {
                            "task": name,
                            "variant": method,
                            "measure": statistic,
                            "layer": str(layer),
                        }
                        rows.append(Row("alignment", s.observed, p_value=s.p_value, **where))
                        rows.append(Row("alignment_null_mean", s.null_mean, **where))
                        rows.append(Row("alignment_z", s.z, **where))
        frame = pd.DataFrame([r.__dict__ for r in rows if r.metric == "alignment_z"])
        by_depth = depth_rows(frame, pipe.adapter.n_layers)
        ctx.table("alignment", pd.DataFrame([r.__dict__ for r in rows]))
        path = plot_alignment_by_depth(
            ctx.out / "alignment_by_depth.png",
            pd.DataFrame([r.__dict__ for r in by_depth]),
            ctx.title("alignment of task neurons with experts, by depth"),
        )
        ctx.figure("alignment_by_depth", path)
        ctx.logger.lines("alignment_by_depth", pd.DataFrame([r.__dict__ for r in by_depth]))
        return rows + by_depth


def depth_rows(frame: pd.DataFrame, n_layers: int) -> list[Row]:
    """Mean alignment z per depth third and clustering, with a 95% t-interval over tasks
    (each task's z averaged over the layers of the third first: tasks are the units)."""
    if frame.empty:
        return []
    groups = layer_groups(n_layers) if n_layers >= 3 else {"all": list(range(n_layers))}
    third = {str(layer): name for name, members in groups.items() for layer in members}
    frame = frame.assign(depth=frame.layer.map(third)).dropna(subset=["depth"])
    rows = []
    for (statistic, method, depth), group in frame.groupby(["measure", "variant", "depth"]):
        per_task = group.groupby("task").value.mean().dropna().to_numpy()
        mean, low, high = mean_interval(per_task)
        rows.append(
            Row(
                "alignment_z_by_depth",
                mean,
                variant=method,
                measure=statistic,
                layer=depth,
                low=low,
                high=high,
                n=float(len(per_task)),
            )
        )
    order = {name: i for i, name in enumerate(groups)}
    return sorted(rows, key=lambda r: (r.measure, r.variant, order[r.layer]))
