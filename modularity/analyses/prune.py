"""Selective pruning: score, select, ablate and evaluate one task against its reference."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from omegaconf import DictConfig

from modularity.evaluate import drop_summary
from modularity.loggers import RunLogger
from modularity.neurons.scoring import score_neurons
from modularity.neurons.selection import check_layers, select_top_fraction
from modularity.outputs import format_table, plot_layer_counts, write_json, write_tensors
from modularity.pipeline import Pipeline

log = logging.getLogger(__name__)


def task_selection(
    pipeline: Pipeline, cfg: DictConfig, task: DictConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores ``[layers, neurons]`` of ``task`` against its reference, and the selected mask."""
    reference = pipeline.reference_of(task)
    scores = score_neurons(
        pipeline.statistics(task),
        pipeline.statistics(reference),
        cfg.scoring.scorer,
        cfg.scoring.eps,
        cfg.scoring.seed,
    )
    mask = select_top_fraction(scores, cfg.selection.fraction, cfg.selection.scope, cfg.layers)
    return scores, mask


def prune_and_evaluate(
    pipeline: Pipeline, cfg: DictConfig, task: DictConfig, mask: torch.Tensor
) -> dict[str, Any]:
    """Before/after metrics on task and reference, with relative drops and their ratio."""
    reference = pipeline.reference_of(task)
    means = pipeline.statistics(reference).mean if cfg.ablation.mode == "mean" else None
    before = pipeline.baseline(task, reference)
    after = pipeline.evaluate(task, reference, mask, means)
    drops = {side: drop_summary(before[side], after[side]) for side in before}
    task_drop, ref_drop = drops["task"].get("top1", 0.0), drops["reference"].get("top1", 0.0)
    return {
        "before": before,
        "after": after,
        "drop": drops,
        # The headline: how much more the task loses than the reference (top-1, relative).
        "selectivity": task_drop / ref_drop
        if ref_drop > 0
        else float("inf")
        if task_drop > 0
        else 0.0,
        "fraction": cfg.selection.fraction,
        "n_selected": int(mask.sum()),
        "n_neurons": mask.numel(),
    }


def flat_metrics(result: dict[str, Any]) -> dict[str, float]:
    """``{"task/before/top1": ...}`` for loggers and tidy tables."""
    flat = {
        f"{side}/{stage}/{name}": v
        for stage in ("before", "after")
        for side, m in result[stage].items()
        for name, v in m.items()
    }
    flat.update(
        {f"{side}/drop/{name}": v for side, m in result["drop"].items() for name, v in m.items()}
    )
    flat["selectivity"] = result["selectivity"]
    return flat


def summary_table(result: dict[str, Any]) -> str:
    rows = []
    for name in result["before"]["task"]:
        rows.append(
            [name]
            + [
                f"{result[stage][side][name]:.4f}"
                for side in ("task", "reference")
                for stage in ("before", "after")
            ]
        )
    header = ["metric", "task before", "task after", "ref before", "ref after"]
    return format_table(rows, header)


def run(cfg: DictConfig) -> dict[str, Any]:
    """``analysis=prune``: the selective-pruning pipeline for ``cfg.task``."""
    out = Path(cfg.output_dir)
    pipeline = Pipeline(cfg)
    check_layers(cfg.layers, pipeline.adapter.n_layers)
    logger = RunLogger(cfg.logger, cfg, out)
    try:
        scores, mask = task_selection(pipeline, cfg, cfg.task)
        write_tensors(out / "scores.safetensors", {"scores": scores, "mask": mask})
        result = prune_and_evaluate(pipeline, cfg, cfg.task, mask)
        result.update(model=cfg.model.name, task=cfg.task.name, scorer=cfg.scoring.scorer)
        write_json(out / "metrics.json", result)
        counts = mask.sum(1).tolist()
        counts_frame = pd.DataFrame({"layer": range(len(counts)), "selected": counts})
        counts_frame.to_csv(out / "layer_counts.csv", index=False)
        figure = plot_layer_counts(
            out / "layer_counts.png",
            counts,
            pipeline.adapter.n_neurons,
            f"{cfg.model.name} / {cfg.task.name}: "
            f"top {cfg.selection.fraction:g} by {cfg.scoring.scorer}",
        )
        logger.metrics(flat_metrics(result))
        logger.table("layer_counts", counts_frame)
        logger.image("layer_counts", figure)
    finally:
        logger.finish()
    log.info(
        "%s on %s: pruned %d of %d neurons (%s, %s scope)\n%s\n"
        "selectivity (task top-1 drop / reference top-1 drop): %.2f",
        cfg.model.name,
        cfg.task.name,
        result["n_selected"],
        result["n_neurons"],
        cfg.scoring.scorer,
        cfg.selection.scope,
        summary_table(result),
        result["selectivity"],
    )
    return result
