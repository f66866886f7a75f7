"""MoEfication: cluster each layer's neurons into equal-size experts, and measure how the
experts line up with task neurons (per layer, against random sets of the same size).

The paper reports stronger alignment in early and late layers; the alignment z-score by
layer depth makes that claim measurable. Plain k-means and a random balanced partition run
through the same statistics as controls.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig

from modularity.algorithms.kmeans import (
    alignment_statistics,
    balanced_kmeans,
    plain_kmeans,
    random_partition,
)
from modularity.analyses.prune import task_selection
from modularity.loggers import RunLogger
from modularity.neurons.selection import check_layers
from modularity.outputs import plt, write_json, write_tensors
from modularity.pipeline import Pipeline

log = logging.getLogger(__name__)
MOEFY_VERSION = 1
CLUSTERINGS = {"balanced": balanced_kmeans, "plain": plain_kmeans, "random": random_partition}


def cluster_layers(
    pipeline: Pipeline, cfg: DictConfig, layers: list[int], method: str
) -> dict[str, torch.Tensor]:
    """Expert labels ``[layers, neurons]`` and inertia ``[layers]`` (cached per model)."""
    moefy = cfg.moefy
    key, meta = pipeline.cache_key(
        "moefy",
        method=method,
        layers=layers,
        version=MOEFY_VERSION,
        **{k: moefy[k] for k in ("experts", "weights", "n_iter")},
        seed=cfg.seed,
    )

    def compute() -> dict[str, torch.Tensor]:
        labels, inertia = [], []
        for layer in layers:
            weights = pipeline.adapter.input_weight(layer, moefy.weights).detach().float().cpu()
            kwargs = (
                {"seed": cfg.seed}
                if method == "random"
                else {"seed": cfg.seed, "n_iter": moefy.n_iter}
            )
            result = CLUSTERINGS[method](weights, moefy.experts, **kwargs)
            labels.append(torch.from_numpy(result.labels))
            inertia.append(result.inertia)
        return {
            "labels": torch.stack(labels),
            "inertia": torch.tensor(inertia, dtype=torch.float64),
        }

    return pipeline.cache.get_or_compute(key, compute, meta)[0]


def plot_size_histograms(
    path: Path, labels: torch.Tensor, layers: list[int], n_experts: int
) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for row, layer in zip(labels, layers):
        sizes = np.bincount(row.numpy(), minlength=n_experts)
        ax.hist(
            sizes,
            bins=np.arange(sizes.min() - 0.5, sizes.max() + 1.5),
            alpha=0.4,
            label=f"layer {layer}",
        )
    ax.set_xlabel("neurons per expert")
    ax.set_ylabel("experts")
    ax.set_title(f"balanced k-means expert sizes (E={n_experts})", fontsize=10)
    if len(layers) <= 8:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def alignment_rows(
    cfg: DictConfig,
    task: str,
    mask: torch.Tensor,
    labels: dict[str, torch.Tensor],
    layers: list[int],
) -> list[dict[str, Any]]:
    rows = []
    for method, clustering in labels.items():
        for row, layer in zip(clustering["labels"], layers):
            selected = mask[layer].numpy()
            stats = alignment_statistics(
                row.numpy(),
                selected,
                cfg.moefy.experts,
                top_k=cfg.moefy.top_k,
                n_null=cfg.moefy.n_null,
                seed=cfg.seed,
            )
            for statistic, s in stats.items():
                rows.append(
                    {
                        "model": cfg.model.name,
                        "task": task,
                        "layer": layer,
                        "fraction": cfg.selection.fraction,
                        "clustering": method,
                        "statistic": statistic,
                        "observed": s.observed,
                        "null_mean": s.null_mean,
                        "null_std": s.null_std,
                        "z": s.z,
                        "p_value": s.p_value,
                    }
                )
    return rows


def plot_alignment_by_depth(path: Path, frame: pd.DataFrame, n_layers: int) -> Path:
    """Alignment z by relative depth, one line per task; balanced experts solid, controls dotted."""
    statistics = list(frame.statistic.unique())
    fig, axes = plt.subplots(
        1, len(statistics), figsize=(4.2 * len(statistics), 3.6), squeeze=False
    )
    for ax, statistic in zip(axes[0], statistics):
        for (task, method), group in frame[frame.statistic == statistic].groupby(
            ["task", "clustering"]
        ):
            group = group.sort_values("layer")
            style = "-o" if method == "balanced" else ":"
            ax.plot(
                group.layer / max(n_layers - 1, 1), group.z, style, label=f"{task} ({method})", ms=3
            )
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xlabel("relative layer depth")
        ax.set_ylabel(f"z of {statistic}")
    axes[0][0].legend(fontsize=6)
    fig.suptitle("alignment of task neurons with experts vs random sets", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run(cfg: DictConfig) -> dict[str, Any]:
    """``analysis=moefy``: experts per layer; with ``tasks=[...]``, their alignment."""
    out = Path(cfg.output_dir)
    pipeline = Pipeline(cfg)
    layers = check_layers(cfg.layers, pipeline.adapter.n_layers)
    logger = RunLogger(cfg.logger, cfg, out)
    result: dict[str, Any] = {
        "model": cfg.model.name,
        "experts": cfg.moefy.experts,
        "layers": layers,
    }
    try:
        methods = ("balanced", "plain", "random") if cfg.tasks else ("balanced",)
        labels = {method: cluster_layers(pipeline, cfg, layers, method) for method in methods}
        balanced = labels["balanced"]
        write_tensors(
            out / "expert_labels.safetensors", {m: c["labels"] for m, c in labels.items()}
        )
        sizes = [
            np.bincount(row.numpy(), minlength=cfg.moefy.experts) for row in balanced["labels"]
        ]
        pd.DataFrame(
            {
                "layer": layers,
                "inertia": balanced["inertia"].numpy(),
                "min_size": [s.min() for s in sizes],
                "max_size": [s.max() for s in sizes],
            }
        ).to_csv(out / "experts.csv", index=False)
        logger.image(
            "expert_sizes",
            plot_size_histograms(
                out / "expert_sizes.png", balanced["labels"], layers, cfg.moefy.experts
            ),
        )
        result["inertia"] = balanced["inertia"].tolist()
        if cfg.tasks:
            rows = []
            for name in cfg.tasks:
                _, mask = task_selection(pipeline, cfg, pipeline.task(name))
                rows += alignment_rows(cfg, name, mask, labels, layers)
            frame = pd.DataFrame(rows)
            frame.to_csv(out / "alignment.csv", index=False)
            figure = plot_alignment_by_depth(
                out / "alignment_by_depth.png", frame, pipeline.adapter.n_layers
            )
            logger.table("alignment", frame)
            logger.image("alignment_by_depth", figure)
            mean_z = frame.groupby(["clustering", "statistic"]).z.mean()
            result["mean_alignment_z"] = {f"{c}/{s}": float(v) for (c, s), v in mean_z.items()}
        write_json(out / "moefy.json", result)
    finally:
        logger.finish()
    log.info(
        "MoEfication of %s: %d layers into %d experts; mean alignment z: %s",
        cfg.model.name,
        len(layers),
        cfg.moefy.experts,
        result.get("mean_alignment_z", "no tasks given"),
    )
    return result
