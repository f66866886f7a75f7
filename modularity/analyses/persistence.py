"""Does a trained model's task structure persist from initialisation? Shared by
``analysis=overlap`` (with ``compare_random``) and ``analysis=dynamics``.

Index by index, a trained model and an *unrelated* random init overlap only at chance
(hidden units are interchangeable at init): that comparison is meaningful only against the
model's own initial weights (one network evolving). The permutation-invariant comparison is a
Mantel test between task x task overlap matrices; two unrelated random inits compared with
each other are the data-only control: if they agree as strongly as the trained model agrees
with its init, the shared structure comes from the data, not from the initialisation.
"""

from __future__ import annotations

import logging
from itertools import combinations
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from modularity.algorithms.mantel import mantel
from modularity.algorithms.set_overlap import intersection_null, jaccard, overlap_matrix
from modularity.analyses.base import Row
from modularity.config import choice
from modularity.pipeline import Pipeline

log = logging.getLogger(__name__)
Sets = dict[str, torch.Tensor]  # task -> [layers, neurons] bool
INIT_SUFFIX = "-init"


MANTEL_MIN_TASKS = 3


def twin_config(model_cfg: DictConfig, offset: int) -> DictConfig:
    """Random-initialisation twin ``offset``: the same architecture and tokenizer, fresh
    weights from seed ``model.seed + offset``."""
    return OmegaConf.merge(
        model_cfg,
        {
            "init": "random",
            "name": f"{model_cfg.name}-random{offset}",
            "seed": model_cfg.seed + offset,
            "checkpoint": None,
        },
    )


def init_config(model_cfg: DictConfig) -> DictConfig | None:
    """The model's true initial weights, where the project trained it and kept them."""
    from modularity.errors import ModularityError
    from modularity.zoo.model_dirs import INIT, builtin_model_dir

    if not model_cfg.builtin or choice(model_cfg.init) != "pretrained" or model_cfg.checkpoint:
        return None
    try:
        builtin_model_dir(model_cfg.builtin, INIT)
    except ModularityError:  # not saved (a model trained before checkpoints existed)
        return None
    return OmegaConf.merge(
        model_cfg, {"checkpoint": INIT, "name": f"{model_cfg.name}{INIT_SUFFIX}"}
    )


def task_sets(pipe: Pipeline, tasks: list[str]) -> Sets:
    """Each task's selected neurons in the pipeline's model."""
    return {name: pipe.select(pipe.task(name)).mask for name in tasks}


def index_rows(trained: Sets, other: Sets, partner: str) -> list[Row]:
    """Per task: the same neuron indices selected in both models, against random sets."""
    rows = []
    for task in trained:
        null = intersection_null(trained[task], other[task])
        where = {"task": task, "partner": partner}
        rows.append(
            Row(
                "index_jaccard",
                jaccard(trained[task], other[task]),
                p_value=float(null.p_value),
                **where,
            )
        )
        rows.append(Row("expected_index_jaccard", float(null.expected_jaccard), **where))
        rows.append(Row("index_z", float(null.z), **where))
    return rows


def jaccard_matrix(sets: Sets) -> np.ndarray:
    return overlap_matrix(sets, "jaccard")[1]


def mantel_rows(
    matrices: dict[str, np.ndarray], pairs: list[tuple[str, str]], permutations: int
) -> list[Row]:
    """Spearman Mantel test of the task x task Jaccard structure for each pair of models;
    none with fewer than ``MANTEL_MIN_TASKS`` tasks (one pair of tasks has no structure to
    correlate; :func:`mantel_note` says so once per run)."""
    rows = []
    if len(next(iter(matrices.values()), [])) < MANTEL_MIN_TASKS:
        return rows
    for a, b in pairs:
        try:
            test = mantel(matrices[a], matrices[b], "spearman", n_permutations=permutations)
        except ValueError as err:  # e.g. a model whose task sets all overlap equally
            log.warning("Mantel test %s vs %s is not defined: %s", a, b, err)
            continue
        rows.append(
            Row(
                "mantel_r",
                test.statistic,
                task=a,
                partner=b,
                p_value=test.p_value,
                n=float(test.n_permutations),
            )
        )
    return rows


def mantel_note(tasks: list[str]) -> None:
    """Say once, before the work, that the structure tests need more tasks than given."""
    if len(tasks) < MANTEL_MIN_TASKS:
        log.info(
            "%d tasks: the task x task structure is not compared (the Mantel test needs at "
            "least %d tasks); index-by-index overlaps are",
            len(tasks),
            MANTEL_MIN_TASKS,
        )


def persistence_rows(
    cfg: DictConfig, trained: Sets, twins: int, permutations: int, init: Sets | None = None
) -> list[Row]:
    """Trained vs ``twins`` unrelated random inits and vs its true init (given, or found for
    the project's own models): index-by-index overlap and Mantel tests, plus every pair of
    twins as the data-only control."""
    model = cfg.model.name
    tasks = list(trained)
    others: dict[str, Sets] = {}
    for offset in range(1, twins + 1):
        twin = twin_config(cfg.model, offset)
        others[twin.name] = task_sets(Pipeline(cfg, twin), tasks)
    if init is None and (init_cfg := init_config(cfg.model)) is not None:
        init = task_sets(Pipeline(cfg, init_cfg), tasks)
    if init is not None:
        others[f"{model}{INIT_SUFFIX}"] = init
    rows = [row for name, sets in others.items() for row in index_rows(trained, sets, name)]
    matrices = {model: jaccard_matrix(trained)}
    matrices.update({name: jaccard_matrix(sets) for name, sets in others.items()})
    twin_names = [n for n in others if not n.endswith(INIT_SUFFIX)]
    pairs = [(model, name) for name in others] + list(combinations(twin_names, 2))
    return rows + mantel_rows(matrices, pairs, permutations)


def verdict(rows: list[Any], model: str) -> str:
    """One sentence on where shared task structure comes from, from the Mantel rows (Row
    objects or table rows with the same fields)."""
    tests = [r for r in rows if r.metric == "mantel_r"]
    if not tests:
        return (
            f"{model}: the task x task structure was not compared (the Mantel test needs at "
            f"least {MANTEL_MIN_TASKS} tasks)"
        )
    trained = [r.value for r in tests if r.task == model and not r.partner.endswith(INIT_SUFFIX)]
    control = [r.value for r in tests if r.task != model]
    init = [r for r in tests if r.task == model and r.partner.endswith(INIT_SUFFIX)]
    parts = []
    if trained:
        parts.append(f"trained vs unrelated random inits: mean Mantel r {np.mean(trained):.2f}")
    if control:
        parts.append(f"random init vs random init (data only): mean r {np.mean(control):.2f}")
    if init:
        parts.append(
            f"trained vs its own initial weights: r {init[0].value:.2f} (p {init[0].p_value:.3g})"
        )
    else:
        parts.append("the model's true initial weights are not known here")
    if control and (init or trained):
        own = init[0].value if init else float(np.mean(trained))
        excess = own - float(np.mean(control))
        parts.append(
            "two unrelated random inits agree at least as strongly, so the shared task "
            "structure comes from the data, not from the initialisation"
            if excess <= 0
            else f"the trained model agrees more, by {excess:.2f}, than unrelated random "
            f"inits agree with each other; with {len(control)} data-only pair(s) that "
            "excess has no interval, so it is not evidence that structure persists from "
            "the initialisation"
        )
    return "; ".join(parts) + "."
