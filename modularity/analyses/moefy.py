"""MoEfication (Zhang et al. 2022): split each layer's neurons into equal-size experts, measure
how the experts line up with task neurons, and run the model with only a few experts per
token.

Experts (``methods``): ``kmeans`` balanced k-means of the neurons' input weight rows,
``coactivation`` METIS on the graph of how often two neurons are active on the same token
(collection split of the reference), then balanced, ``random`` a balanced random partition
(the control), ``plain`` unbalanced k-means. For gated MLPs (SwiGLU: ``act(gate(x)) * up(x)``)
the weights that feed the nonlinearity are the gate's, clustered by default (``weights=auto``):
on SmolLM2 the alignment z by depth third was 2.9 / 1.4 / 4.1 with the gate and
indistinguishable from random partitions with the up projection.

Alignment (with ``tasks``): how concentrated each task's selected neurons are in few experts,
against random sets of the same size, per layer and by depth third (the paper reports
stronger alignment in early and late layers), for every method.

Routed inference (with ``routers``): see :mod:`modularity.analyses.routed_quality`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from modularity.algorithms.alignment import alignment_statistics
from modularity.algorithms.coactivation import ACTIVE_RULES
from modularity.algorithms.graph_partition import metis_partition, within_share
from modularity.algorithms.kmeans import (
    balanced_kmeans,
    partition_inertia,
    plain_kmeans,
    random_partition,
)
from modularity.algorithms.set_overlap import layer_groups
from modularity.algorithms.t_interval import mean_interval
from modularity.analyses.base import Analysis, Row, RunContext
from modularity.analyses.routed_quality import (
    RoutedEvaluation,
    RoutingData,
    TaskSides,
    by_depth,
    captured_rows,
    layer_routers,
    plot_routed_quality,
    quality_table,
    routed_summary,
    routing_label,
)
from modularity.errors import ConfigError
from modularity.figures import (
    CLUSTERING_LABELS,
    alignment_panels,
    figure,
    legend_below,
    panel_title,
    plot_alignment_by_depth,
    plot_size_histograms,
    save,
    title,
)
from modularity.infra.outputs import format_interval, format_markdown, format_table, write_tensors
from modularity.infra.tidy import panels
from modularity.neurons.selection import check_layers
from modularity.routing.hooks import RoutedLayer
from modularity.routing.routers import ROUTERS, experts_per_token

log = logging.getLogger(__name__)
WEIGHT_CLUSTERINGS = {"kmeans": balanced_kmeans, "plain": plain_kmeans, "random": random_partition}
Weights = Enum("Weights", {n: n for n in ("auto", "up", "gate", "concat")})
Device = Enum("Device", {n: n for n in ("auto", "cpu", "cuda")})
Method = Enum("Method", {n: n for n in ("kmeans", "coactivation", "random", "plain")})
RouterKind = Enum("RouterKind", {n: n for n in ROUTERS})
ActiveRule = Enum("ActiveRule", {n: n for n in ACTIVE_RULES})


@dataclass
class Moefy(Analysis):
    """``analysis=moefy``: experts per layer by each method; with ``tasks``, their alignment;
    with ``routers``, routed inference quality."""

    supported_sites: ClassVar[tuple[str, ...]] = ("mlp",)  # experts cluster MLP neurons

    experts: int | None = None  # None: d_mlp // neurons_per_expert
    neurons_per_expert: int = 32
    weights: Weights = Weights["auto"]
    # coactivation costs a forward and O(layers x N^2) memory: experiments ask for it.
    methods: list[Method] = field(default_factory=lambda: [Method["kmeans"], Method["random"]])
    active: ActiveRule = ActiveRule["positive"]  # when a neuron counts as active (coactivation)
    active_share: float = 0.1  # active=top: the share of a token's largest activations
    routers: list[RouterKind] = field(default_factory=list)
    ladder: list[float] = field(default_factory=lambda: [0.125, 0.25, 0.5, 1.0])
    routing_tokens: int = 4096  # tokens sampled to train routers / judge them held out
    router_epochs: int = 10
    n_iter: int = 20
    n_null: int = 1000
    top_k: int = 1
    device: Device = Device["auto"]

    def check(self, cfg) -> None:  # noqa: ANN001 - DictConfig
        super().check(cfg)
        for name in (
            "neurons_per_expert",
            "n_iter",
            "n_null",
            "top_k",
            "routing_tokens",
            "router_epochs",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"analysis.{name}={getattr(self, name)} must be >= 1")
        if self.experts is not None and self.experts < 1:
            raise ConfigError(f"analysis.experts={self.experts} must be >= 1 (or null)")
        if not self.methods:
            raise ConfigError(f"analysis.methods is empty; choose from {[m.name for m in Method]}")
        if not 0 < self.active_share <= 1:
            raise ConfigError(f"analysis.active_share={self.active_share} must be in (0, 1]")
        bad = [share for share in self.ladder if not 0 < share <= 1]
        if bad or (self.routers and not self.ladder):
            raise ConfigError(
                f"analysis.ladder={list(self.ladder)} must list shares of experts in (0, 1]"
            )

    def check_width(self, width: int) -> None:
        self.n_experts(width)

    def n_experts(self, d_mlp: int) -> int:
        n = self.experts or max(1, d_mlp // self.neurons_per_expert)
        if not 1 <= n <= d_mlp:
            raise ConfigError(f"analysis.experts={n} must be between 1 and {d_mlp} neurons")
        return n

    def which_weights(self, gated: bool) -> str:
        name = self.weights.name
        return ("gate" if gated else "up") if name == "auto" else name

    def routing_data(self, ctx: RunContext) -> RoutingData:
        """The reference of the run's task: general data for co-activation and routers."""
        pipe = ctx.pipeline
        return RoutingData(
            pipe,
            pipe.reference_of(pipe.main_task()),
            self.routing_tokens,
            ctx.cfg.seed,
            self.active.name,
            self.active_share,
        )

    def cluster(
        self, ctx: RunContext, layers: list[int], method: str, data: RoutingData
    ) -> dict[str, torch.Tensor]:
        """Expert labels ``[layers, neurons]``, the inertia of the weight rows under them
        ``[layers]`` and, for ``coactivation``, the share of co-activations inside experts
        (``within``, beside a random balanced partition's) (cached per model and data)."""
        pipe, adapter = ctx.pipeline, ctx.pipeline.adapter
        n_experts = self.n_experts(adapter.n_neurons)
        weights = self.which_weights(adapter.is_gated)
        seed = ctx.cfg.seed

        def rows(layer: int) -> torch.Tensor:
            return adapter.input_weight(layer, weights).detach().float().cpu()

        def by_weights() -> dict[str, torch.Tensor]:
            labels, inertia = [], []
            for layer in layers:
                kwargs = {"seed": seed}
                if method != "random":
                    kwargs.update(n_iter=self.n_iter, device=self.device.name)
                result = WEIGHT_CLUSTERINGS[method](rows(layer), n_experts, **kwargs)
                labels.append(torch.from_numpy(result.labels))
                inertia.append(result.inertia)
            return {"labels": torch.stack(labels), "inertia": torch.tensor(inertia).double()}

        def by_coactivation() -> dict[str, torch.Tensor]:
            counts = data.counts().counts
            out: dict[str, list] = {"labels": [], "inertia": [], "within": [], "within_random": []}
            for layer in layers:
                graph = counts[layer].numpy()
                labels = metis_partition(graph, n_experts, seed=seed)
                control = random_partition(rows(layer), n_experts, seed=seed).labels
                out["labels"].append(torch.from_numpy(labels))
                out["inertia"].append(partition_inertia(rows(layer), labels, n_experts))
                out["within"].append(within_share(graph, labels))
                out["within_random"].append(within_share(graph, control))
            return {
                "labels": torch.stack(out["labels"]),
                **{k: torch.tensor(v).double() for k, v in out.items() if k != "labels"},
            }

        parts = {"weights": weights, "n_iter": self.n_iter}
        if method == "coactivation":
            parts = {
                "data": data.spec.identity(),
                "split": data.spec.split("collect"),
                "active": self.active.name,
                "active_share": self.active_share if self.active.name == "top" else None,
                "weights": weights,  # the inertia is measured on these rows
            }
        return pipe.cached(
            "moefy",
            by_coactivation if method == "coactivation" else by_weights,
            method=method,
            layers=layers,
            experts=n_experts,
            seed=seed,
            **parts,
        )

    def run(self, ctx: RunContext) -> list[Row]:
        pipe = ctx.pipeline
        adapter = pipe.adapter
        layers = check_layers(ctx.cfg.layers, adapter.n_layers)
        n_experts = self.n_experts(adapter.n_neurons)
        data = self.routing_data(ctx)
        methods = list(dict.fromkeys(m.name for m in self.methods))
        labels = {m: self.cluster(ctx, layers, m, data) for m in methods}
        write_tensors(
            ctx.out / "expert_labels.safetensors", {m: c["labels"] for m, c in labels.items()}
        )
        rows = self.expert_rows(ctx, labels, layers, n_experts)
        if ctx.cfg.tasks:
            rows += self.alignment(ctx, labels, layers, n_experts)
        if self.routers:
            rows += self.routed(ctx, labels, layers, n_experts, data)
        weights = self.which_weights(adapter.is_gated)
        log.info("%s", console_summary(ctx.cfg.model.name, n_experts, weights, rows))
        return rows

    def expert_rows(
        self,
        ctx: RunContext,
        labels: dict[str, dict[str, torch.Tensor]],
        layers: list[int],
        n_experts: int,
    ) -> list[Row]:
        """Per method and layer: expert sizes, weight-row inertia and, for co-activation
        experts, the share of co-activations they keep inside (against a random partition)."""
        n_neurons = ctx.pipeline.adapter.n_neurons
        table, rows = [], [Row("experts", float(n_experts), n=float(n_neurons))]
        for method, clustering in labels.items():
            for i, layer in enumerate(layers):
                sizes = np.bincount(clustering["labels"][i].numpy(), minlength=n_experts)
                entry = {
                    "method": method,
                    "layer": layer,
                    "inertia": float(clustering["inertia"][i]),
                    "min_size": int(sizes.min()),
                    "max_size": int(sizes.max()),
                }
                rows.append(Row("inertia", entry["inertia"], variant=method, layer=str(layer)))
                if "within" in clustering:
                    entry["coactivation_within"] = float(clustering["within"][i])
                    entry["coactivation_within_random"] = float(clustering["within_random"][i])
                    for name, variant in (("within", method), ("within_random", "random")):
                        value = float(clustering[name][i])
                        rows.append(
                            Row("coactivation_within", value, variant=variant, layer=str(layer))
                        )
                table.append(entry)
        ctx.table("experts", pd.DataFrame(table))
        first = next(iter(labels))
        ctx.figure(
            "expert_sizes",
            plot_size_histograms(
                ctx.out / "expert_sizes.png",
                labels[first]["labels"],
                layers,
                n_experts,
                ctx.title(f"expert sizes, {first} (E={n_experts})"),
            ),
        )
        return rows

    def routed(
        self,
        ctx: RunContext,
        labels: dict[str, dict[str, torch.Tensor]],
        layers: list[int],
        n_experts: int,
        data: RoutingData,
    ) -> list[Row]:
        """Routed inference for every method, router and share of the ladder."""
        pipe, cfg = ctx.pipeline, ctx.cfg
        adapter = pipe.adapter
        weights = self.which_weights(adapter.is_gated)
        rows_of = {
            layer: adapter.input_weight(layer, weights).detach().float().cpu() for layer in layers
        }
        names = list(cfg.tasks) or [pipe.main_task().name]
        sides = []
        for name in names:
            task = pipe.task(name) if cfg.tasks else pipe.main_task()
            reference = pipe.reference_of(task)
            selected = pipe.select(task).mask
            sides.append(TaskSides(name, task, reference, pipe.baseline(task, reference), selected))
        evaluation = RoutedEvaluation(pipe, sides, cfg.verdict)
        ladder = sorted(set(self.ladder))
        rows: list[Row] = []
        for method, clustering in labels.items():
            layer_labels = {layer: clustering["labels"][i] for i, layer in enumerate(layers)}
            for router in dict.fromkeys(r.name for r in self.routers):
                log.info("routed inference: %s experts, %s router", method, router)
                routers = layer_routers(
                    router, layer_labels, rows_of, n_experts, data, self.router_epochs, cfg.seed
                )
                label_of = {share: routing_label(method, router, share) for share in ladder}
                rows += captured_rows(label_of, routers, layer_labels, n_experts, data.heldout())
                routed_layers = {
                    layer: RoutedLayer(layer_labels[layer], routers[layer], n_experts)
                    for layer in layers
                }
                for share, label in label_of.items():
                    k = experts_per_token(share, n_experts)
                    rows += evaluation.rows(label, routed_layers, k, n_experts)
        routers = list(dict.fromkeys(r.name for r in self.routers))
        if {"mlp", "similarity"} <= set(routers):
            for method in labels:
                rows += evaluation.router_difference_rows(method, "mlp", "similarity", ladder)
        n_layers = adapter.n_layers
        rows += by_depth(rows, "routing_concentration", n_layers)
        rows += by_depth(
            rows,
            "pruning_set_in_task_experts",
            n_layers,
            minus="pruning_set_in_task_experts_chance",
        )
        frame = pd.DataFrame([r.__dict__ for r in rows])
        ctx.table("routed", frame)
        ctx.figure(
            "routed_quality",
            plot_routed_quality(
                ctx.out / "routed_quality.png",
                quality_table(frame, "top1"),
                quality_table(frame, "loss"),
                ctx.title(f"routed inference, {n_experts} experts a layer"),
            ),
        )
        return rows

    @classmethod
    def summary(cls, rows: pd.DataFrame) -> list[str]:
        """Alignment z by depth third per method; routed quality by method, router, share;
        one section per experiment (or other swept key) when several ran on one model."""
        lines: list[str] = []
        for label, group in panels(rows, exclude=("run",)):
            section = _alignment_summary(group) + routed_summary(group)
            lines += [f"{label}:", "", *section] if label and section else section
        return lines

    @classmethod
    def figures(cls, rows: pd.DataFrame, out: Path) -> list[Path]:
        paths = []
        aligned = rows[(rows.metric == "alignment_z_by_depth") & (rows.measure == "topk_fraction")]
        if not aligned.empty:
            groups = panels(aligned, exclude=("run",))
            fig, axes = figure(len(groups), width=3.8, height=3.4)
            for ax, (label, group) in zip(axes[0], groups):
                alignment_panels([ax], group, ["topk_fraction"])
                panel_title(ax, group.model.iloc[0] + (f" ({label})" if label else ""))
            legend_below(fig, axes[0, 0], 2)
            title(fig, "Experts vs task neurons: mean z over tasks vs random sets, 95% t-intervals")
            paths.append(save(fig, out / "alignment_by_depth.png"))
        for label, group in panels(rows, exclude=("run",)):
            top1 = quality_table(group, "top1")
            if top1.empty:
                continue
            suffix = "" if not label else "_" + label.replace("=", "-").replace(", ", "_")
            heading = f"{group.model.iloc[0]}: routed inference" + (f" ({label})" if label else "")
            paths.append(
                plot_routed_quality(
                    out / f"routed_quality{suffix}.png", top1, quality_table(group, "loss"), heading
                )
            )
        return [path for path in paths if path is not None]

    def alignment(
        self,
        ctx: RunContext,
        labels: dict[str, dict[str, torch.Tensor]],
        layers: list[int],
        n_experts: int,
    ) -> list[Row]:
        """Per layer, task and method: concentration of the task's neurons in experts,
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
        by_third = depth_rows(frame, pipe.adapter.n_layers)
        ctx.table("alignment", pd.DataFrame([r.__dict__ for r in rows]))
        path = plot_alignment_by_depth(
            ctx.out / "alignment_by_depth.png",
            pd.DataFrame([r.__dict__ for r in by_third]),
            ctx.title("alignment of task neurons with experts, by depth"),
        )
        ctx.figure("alignment_by_depth", path)
        self.log_alignment(ctx, frame, by_third)
        return rows + by_third

    @staticmethod
    def log_alignment(ctx: RunContext, per_layer: pd.DataFrame, by_depth: list[Row]) -> None:
        """To the logger: the top-expert z per layer (mean over tasks) as series over
        layers, one per clustering, and by depth third as a line plot with its intervals."""
        top = per_layer[per_layer.measure == "topk_fraction"]
        mean = top.assign(layer=top.layer.astype(int)).pivot_table(
            index="layer", columns="variant", values="value"
        )
        ctx.logger.series("layer", mean.add_prefix("alignment_z/").reset_index())
        depth = pd.DataFrame([r.__dict__ for r in by_depth if r.measure == "topk_fraction"])
        if depth.empty:
            return
        order = {name: i for i, name in enumerate(dict.fromkeys(depth.layer))}
        ctx.logger.line_plot(
            "alignment_by_depth",
            depth.assign(
                depth_index=depth.layer.map(order),
                clustering=depth.variant.map(lambda v: CLUSTERING_LABELS.get(v, v)),
            )[["depth_index", "layer", "clustering", "value", "low", "high", "n"]].rename(
                columns={"layer": "depth", "value": "z"}
            ),
            "depth_index",
            "z",
            "clustering",
            "alignment z (share of task neurons in the top expert) by depth third: "
            + ", ".join(order),
        )


def console_summary(model: str, n_experts: int, weights: str, rows: list[Row]) -> str:
    """What a moefy run found, for the console: the experts, and (with tasks) the alignment
    z by depth third per construction method with its interval."""
    methods = list(dict.fromkeys(r.variant for r in rows if r.metric == "inertia"))
    layers = len({r.layer for r in rows if r.metric == "inertia"})
    lines = [
        f"{model}: {n_experts} experts per layer in {layers} layers, equal sizes, built by "
        f"{', '.join(methods)} ({weights} rows for weight clustering)"
    ]
    depth = [r for r in rows if r.metric == "alignment_z_by_depth" and r.measure == "topk_fraction"]
    if depth:
        thirds = list(dict.fromkeys(r.layer for r in depth))
        cell = {(r.variant, r.layer): r for r in depth}
        table = [
            [CLUSTERING_LABELS.get(v, v), *(format_interval(cell.get((v, d)), 1) for d in thirds)]
            for v in dict.fromkeys(r.variant for r in depth)
        ]
        lines += [
            f"alignment z (share of each task's neurons in its top expert, against random sets "
            f"of the same size), mean over {int(depth[0].n)} tasks, 95% t-interval:",
            format_table(table, ["experts", *thirds]),
        ]
    return "\n".join(lines)


def _alignment_summary(rows: pd.DataFrame) -> list[str]:
    rows = rows[(rows.metric == "alignment_z_by_depth") & (rows.measure == "topk_fraction")]
    if rows.empty:
        return []
    depths = [d for d in ("early", "middle", "late", "all") if d in set(rows.layer)]
    table = []
    for method, group in rows.groupby("variant"):
        by = {r.layer: r for r in group.itertuples()}
        table.append([method, *(format_interval(by.get(d), 1) for d in depths)])
    tasks = int(rows.n.max())
    over = (
        "one task by depth third (no interval)"
        if tasks == 1
        else f"mean over {tasks} tasks by depth third, 95% t-interval"
    )
    return [
        "MoEfication: how concentrated each task's neurons are in its top expert, as z "
        f"against random sets of the same size; {over}:",
        "",
        format_markdown(table, ["experts", *depths]),
        "",
    ]


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
