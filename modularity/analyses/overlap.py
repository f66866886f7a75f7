"""Overlap of task neuron sets: task x task matrices, set sizes, and trained vs random twin.

Every task is scored against its own reference with cached statistics, selected with the
run's selection settings, and compared. Raw overlaps come with the null model of random
sets of the same per-layer sizes (hypergeometric z-scores and p-values,
``modularity.algorithms.set_overlap``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from modularity.algorithms.set_overlap import (
    intersection_null,
    jaccard,
    layer_groups,
    layer_share,
    overlap_matrix,
    overlap_table,
    set_share,
)
from modularity.analyses.prune import task_selection
from modularity.errors import ConfigError
from modularity.loggers import RunLogger
from modularity.outputs import format_table, plot_bars, plot_heatmap, write_json, write_tensors
from modularity.pipeline import Pipeline

log = logging.getLogger(__name__)
MATRIX_LABELS = {
    "jaccard": "Jaccard |A∩B| / |A∪B|",
    "containment": "|A∩B| / |A| (row A, column B)",
    "z": "z vs random sets of equal size",
}


def twin_config(model_cfg: DictConfig) -> DictConfig:
    """The random-initialisation twin: same architecture and tokenizer, fresh weights."""
    twin = OmegaConf.merge(model_cfg, {"init": "random", "name": f"{model_cfg.name}-random"})
    if model_cfg.hf_config is not None:  # already random: the twin needs other weights
        twin.seed = model_cfg.seed + 1
    return twin


def task_sets(pipeline: Pipeline, cfg: DictConfig, names: list[str]) -> dict[str, torch.Tensor]:
    """Selected neuron mask ``[layers, neurons]`` of every task."""
    return {name: task_selection(pipeline, cfg, pipeline.task(name))[1] for name in names}


def write_matrices(
    out: Path, sets: dict[str, torch.Tensor], logger: RunLogger, prefix: str = ""
) -> pd.DataFrame:
    """CSV and heatmap of each metric, whole model and per layer third; the tidy table."""
    n_layers = next(iter(sets.values())).shape[0]
    groups = layer_groups(n_layers) if n_layers >= 3 else {}
    for metric, label in MATRIX_LABELS.items():
        for scope, layers in {"all": None, **groups}.items():
            names, matrix = overlap_matrix(sets, metric, layers)
            stem = f"{prefix}overlap_{metric}_{scope}"
            pd.DataFrame(matrix, index=names, columns=names).to_csv(out / f"{stem}.csv")
            figure = plot_heatmap(
                out / f"{stem}.png",
                names,
                matrix,
                f"{prefix}{metric}, layers: {scope}",
                label,
                diverging=metric == "z",
            )
            logger.image(stem, figure)
    table = overlap_table(sets, groups=groups, per_layer=True)
    table.to_csv(out / f"{prefix}overlap_table.csv", index=False)
    logger.table(f"{prefix}overlap_table", table[table.scope == "all"])
    return table


def write_set_sizes(out: Path, sets: dict[str, torch.Tensor], logger: RunLogger) -> pd.DataFrame:
    rows = [{"task": name, "layer": "all", "share": set_share(mask)} for name, mask in sets.items()]
    for name, mask in sets.items():
        rows += [
            {"task": name, "layer": str(i), "share": s} for i, s in enumerate(layer_share(mask))
        ]
    frame = pd.DataFrame(rows)
    whole = frame[frame.layer == "all"]
    publish(out, "set_sizes", frame, whole, whole.share, "share of neurons", logger)
    return frame


def trained_vs_random(
    trained: dict[str, torch.Tensor], twin: dict[str, torch.Tensor], out: Path, logger: RunLogger
) -> pd.DataFrame:
    """Per task: overlap of the trained model's set with its random twin's, and its z-score."""
    rows = []
    for name in trained:
        null = intersection_null(trained[name], twin[name])
        rows.append(
            {
                "task": name,
                "jaccard": jaccard(trained[name], twin[name]),
                "expected_jaccard": null.expected_jaccard,
                "intersection": null.observed,
                "expected_intersection": null.expected,
                "z": null.z,
                "p_value": null.p_value,
            }
        )
    frame = pd.DataFrame(rows)
    publish(out, "trained_vs_random", frame, frame, frame.jaccard, "Jaccard(trained, twin)", logger)
    return frame


def publish(
    out: Path,
    stem: str,
    frame: pd.DataFrame,
    shown: pd.DataFrame,
    values: pd.Series,
    ylabel: str,
    logger: RunLogger,
) -> None:
    """``frame`` as ``<stem>.csv``; ``shown`` (one row per task) as a logged table and as a
    bar chart of ``values`` (``<stem>.png``)."""
    frame.to_csv(out / f"{stem}.csv", index=False)
    figure = plot_bars(
        out / f"{stem}.png", list(shown.task), list(values), ylabel, stem.replace("_", " ")
    )
    logger.table(stem, shown)
    logger.image(stem, figure)


def run(cfg: DictConfig) -> dict[str, Any]:
    """``analysis=overlap``: compare the neuron sets of ``tasks`` (and with the random twin)."""
    names = list(cfg.tasks)
    if len(names) < 2:
        raise ConfigError(
            f"analysis=overlap needs at least two tasks, e.g. tasks=[code,prose]; got {names}"
        )
    out = Path(cfg.output_dir)
    pipeline = Pipeline(cfg)
    logger = RunLogger(cfg.logger, cfg, out)
    result: dict[str, Any] = {
        "model": cfg.model.name,
        "tasks": names,
        "fraction": cfg.selection.fraction,
    }
    try:
        sets = task_sets(pipeline, cfg, names)
        write_tensors(out / "sets.safetensors", sets)
        table = write_matrices(out, sets, logger)
        sizes = write_set_sizes(out, sets, logger)
        whole = table[(table.scope == "all") & (table.task_a != table.task_b)]
        result["mean_offdiag"] = whole.groupby("metric").value.mean().to_dict()
        shares = sizes[sizes.layer == "all"].share
        result["set_share"] = {"mean": float(shares.mean()), "std": float(shares.std(ddof=0))}
        if cfg.compare_random:
            twin = task_sets(Pipeline(cfg, twin_config(cfg.model)), cfg, names)
            write_tensors(out / "random_twin_sets.safetensors", twin)
            frame = trained_vs_random(sets, twin, out, logger)
            result["trained_vs_random"] = frame.set_index("task").to_dict(orient="index")
        write_json(out / "overlap.json", result)
        logger.metrics({f"mean_offdiag/{k}": v for k, v in result["mean_offdiag"].items()})
    finally:
        logger.finish()
    log.info(
        "overlap of %d tasks on %s (top %g):\n%s",
        len(names),
        cfg.model.name,
        cfg.selection.fraction,
        _jaccard_table(sets),
    )
    return result


def _jaccard_table(sets: dict[str, torch.Tensor]) -> str:
    names, matrix = overlap_matrix(sets, "jaccard")
    return format_table(
        [[a, *(f"{v:.3f}" for v in row)] for a, row in zip(names, matrix)], ["jaccard", *names]
    )
