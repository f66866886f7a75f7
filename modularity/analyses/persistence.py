"""Does a trained model's task structure persist from initialisation? Shared by
``analysis=overlap`` (with ``compare_random``) and ``analysis=dynamics``.

Index by index, a trained model and an *unrelated* random init overlap only at chance
(hidden units are interchangeable at init): that comparison is meaningful only against the
model's own initial weights (one network evolving). The permutation-invariant comparison is a
Mantel test between task x task overlap matrices; two unrelated random inits compared with
each other are the data-only control. Tasks whose inputs overlap (a class inside its
superclass) are ranked as related by any network, trained or not, so every pair is also
tested with the tasks' data similarity partialled out (``partial_mantel_r`` rows): a task x
task similarity of the inputs themselves, computed without any network
(``data_similarity``). The structure tests use only tasks not nested in another (a
``nested_left_out`` row names each task left out and the task it lies in). Whether the
trained model agrees with its init (or with random inits) more or less than two random inits
agree with each other is tested directly: ``agreement_difference`` rows hold that difference
of (partial) Mantel correlations with a jackknife interval over tasks.
"""

from __future__ import annotations

import logging
from functools import partial
from itertools import combinations
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from modularity.algorithms.agreement_difference import MIN_TASKS as DIFFERENCE_MIN_TASKS
from modularity.algorithms.agreement_difference import agreement_difference
from modularity.algorithms.mantel import mantel, partial_mantel
from modularity.algorithms.set_overlap import intersection_null, jaccard, overlap_matrix
from modularity.analyses.base import Row
from modularity.config import choice, nested_tasks
from modularity.pipeline import Pipeline, Selection

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


def task_selections(pipe: Pipeline, tasks: list[str]) -> dict[str, Selection]:
    """Each task's selection (neurons and stability) in the pipeline's model."""
    return {name: pipe.select(pipe.task(name)) for name in tasks}


def masks(selections: dict[str, Selection]) -> Sets:
    """The selected neurons of each task's selection."""
    return {name: s.mask for name, s in selections.items()}


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


def data_similarity(pipe: Pipeline, tasks: list[str]) -> np.ndarray:
    """``[T, T]`` similarity of the tasks' collection data, no network involved: for text the
    overlap of token unigram distributions (sum of the smaller probability of each token, 1
    for identical ones), for images the correlation of the tasks' mean images."""
    profiles = []
    for name in tasks:
        spec = pipe.task(name)
        if spec.modality.tokens:
            ids = pipe.text_blocks(spec, "collect")["input_ids"].flatten()
            profiles.append(torch.bincount(ids).double())
        else:
            loader, _ = pipe.loader(spec, "collect")
            total = sum(batch["pixel_values"].double().sum(0) for batch in loader)
            profiles.append(total.flatten() / len(loader.dataset))
    if not pipe.task(tasks[0]).modality.tokens:
        return np.corrcoef(torch.stack(profiles).numpy())
    width = max(len(p) for p in profiles)
    counts = torch.stack([torch.nn.functional.pad(p, (0, width - len(p))) for p in profiles])
    dist = counts / counts.sum(1, keepdim=True)
    return torch.minimum(dist[:, None, :], dist[None, :, :]).sum(-1).numpy()


def mantel_rows(
    matrices: dict[str, np.ndarray],
    pairs: list[tuple[str, str]],
    permutations: int,
    similarity: np.ndarray | None = None,
) -> list[Row]:
    """Spearman Mantel test of the task x task Jaccard structure for each pair of models,
    and, given the data ``similarity``, the partial test with it held fixed; none with fewer
    than ``MANTEL_MIN_TASKS`` tasks (one pair of tasks has no structure to correlate;
    :func:`mantel_note` says so once per run)."""
    rows = []
    if len(next(iter(matrices.values()), [])) < MANTEL_MIN_TASKS:
        return rows
    for a, b in pairs:
        pair = (matrices[a], matrices[b])
        tests = {"mantel_r": partial(mantel, *pair, "spearman", n_permutations=permutations)}
        if similarity is not None:
            tests["partial_mantel_r"] = partial(
                partial_mantel, *pair, similarity, "spearman", n_permutations=permutations
            )
        for metric, test in tests.items():
            try:
                result = test()
            except ValueError as err:  # e.g. a model whose task sets all overlap equally
                log.warning("%s %s vs %s is not defined: %s", metric, a, b, err)
                continue
            rows.append(
                Row(
                    metric,
                    result.statistic,
                    task=a,
                    partner=b,
                    p_value=result.p_value,
                    n=float(result.n_permutations),
                )
            )
    return rows


def mantel_note(tasks: list[str]) -> None:
    """Say once, before the work, which tasks the structure tests leave out as nested in
    another, and if too few are left to compare structures at all."""
    nested = nested_tasks(tasks)
    if nested:
        log.info(
            "the task x task structure tests leave out tasks nested in another (any network "
            "ranks such pairs as related): %s",
            ", ".join(f"{inner} (inside {outer})" for inner, outer in nested.items()),
        )
    if len(tasks) - len(nested) < MANTEL_MIN_TASKS:
        log.info(
            "%d tasks not nested in another: the task x task structure is not compared (the "
            "Mantel test needs at least %d); index-by-index overlaps are",
            len(tasks) - len(nested),
            MANTEL_MIN_TASKS,
        )


def persistence_rows(
    pipe: Pipeline, trained: Sets, twins: int, permutations: int, init: Sets | None = None
) -> list[Row]:
    """Trained vs ``twins`` unrelated random inits and vs its true init (given, or found for
    the project's own models), each through ``pipe``'s run: index-by-index overlap and
    Mantel tests, plus every pair of twins as the data-only control."""
    cfg = pipe.cfg
    model = cfg.model.name
    tasks = list(trained)
    others: dict[str, Sets] = {}
    for offset in range(1, twins + 1):
        twin = twin_config(cfg.model, offset)
        others[twin.name] = masks(task_selections(pipe.for_model(twin), tasks))
    if init is None and (init_cfg := init_config(cfg.model)) is not None:
        init = masks(task_selections(pipe.for_model(init_cfg), tasks))
    if init is not None:
        others[f"{model}{INIT_SUFFIX}"] = init
    rows = [row for name, sets in others.items() for row in index_rows(trained, sets, name)]
    kept, left_out = structure_tasks(tasks)
    rows += left_out
    matrices = {
        name: jaccard_matrix({t: sets[t] for t in kept})
        for name, sets in {model: trained, **others}.items()
    }
    twin_names = [n for n in others if not n.endswith(INIT_SUFFIX)]
    pairs = [(model, name) for name in others] + list(combinations(twin_names, 2))
    similarity = data_similarity(pipe, kept) if len(kept) >= MANTEL_MIN_TASKS else None
    rows += mantel_rows(matrices, pairs, permutations, similarity)
    return rows + difference_rows(matrices, model, twin_names, similarity)


def structure_tasks(tasks: list[str]) -> tuple[list[str], list[Row]]:
    """The tasks the structure tests use, those not nested in another, and a
    ``nested_left_out`` row for each task left out (``partner``: the task it lies in)."""
    nested = nested_tasks(tasks)
    rows = [
        Row("nested_left_out", 1.0, task=inner, partner=outer) for inner, outer in nested.items()
    ]
    return [t for t in tasks if t not in nested], rows


def difference_rows(
    matrices: dict[str, np.ndarray],
    model: str,
    twin_names: list[str],
    similarity: np.ndarray | None,
) -> list[Row]:
    """The trained model's agreement with its init, and with the random twins, minus the
    twins' agreement with each other, partial given the data ``similarity`` (plain without
    it), each with its jackknife interval over tasks; none without two twins or with fewer
    than ``MANTEL_MIN_TASKS`` tasks."""
    control_pairs = list(combinations(twin_names, 2))
    if not control_pairs or len(matrices[model]) < MANTEL_MIN_TASKS:
        return []
    comparisons = {"random twins": [(model, twin) for twin in twin_names]}
    comparisons.update({n: [(model, n)] for n in matrices if n.endswith(INIT_SUFFIX)})
    rows = []
    for partner, first in comparisons.items():
        try:
            result = agreement_difference(matrices, first, control_pairs, similarity)
        except ValueError as err:
            log.warning("agreement difference %s vs %s is not defined: %s", model, partner, err)
            continue
        rows.append(
            Row(
                "agreement_difference",
                result.value,
                task=model,
                partner=partner,
                measure="partial" if similarity is not None else "plain",
                variant="minus random vs random",
                low=result.low,
                high=result.high,
                p_value=result.p_value,
                n=float(result.n_tasks),
            )
        )
    return rows


def verdict(rows: list[Any], model: str) -> str:
    """One sentence on where shared task structure comes from, from the Mantel rows (Row
    objects or table rows with the same fields): which tasks the structure tests left out as
    nested, the agreements, and what the tested differences between them support; only the
    partial tests (data similarity held fixed) speak to persistence."""
    left_out = [f"{r.task} (inside {r.partner})" for r in rows if r.metric == "nested_left_out"]
    parts = []
    if left_out:
        parts.append(f"structure tests leave out tasks nested in another: {', '.join(left_out)}")
    tests = [r for r in rows if r.metric == "mantel_r"]
    if not tests:
        parts.append(
            f"{model}: the task x task structure was not compared (the Mantel test needs at "
            f"least {MANTEL_MIN_TASKS} tasks not nested in another)"
        )
        return "; ".join(parts) + "."
    held_fixed = {(r.task, r.partner): r for r in rows if r.metric == "partial_mantel_r"}
    trained = [r.value for r in tests if r.task == model and not r.partner.endswith(INIT_SUFFIX)]
    control = [r for r in tests if r.task != model]
    init = [r for r in tests if r.task == model and r.partner.endswith(INIT_SUFFIX)]
    if trained:
        parts.append(f"trained vs unrelated random inits: mean Mantel r {np.mean(trained):.2f}")
    if control:
        parts.append(
            f"random init vs random init (data only): mean r "
            f"{np.mean([r.value for r in control]):.2f}"
        )
    if init:
        parts.append(
            f"trained vs its own initial weights: r {init[0].value:.2f} (p {init[0].p_value:.3g})"
        )
    else:
        parts.append("the model's true initial weights are not known here")
    for test in [*init, *control]:
        held = held_fixed.get((test.task, test.partner))
        if held is not None:
            beyond = "beyond" if held.p_value < 0.05 else "not beyond"
            parts.append(
                f"with the tasks' data similarity held fixed, {test.task} vs {test.partner}: "
                f"partial r {held.value:.2f} (p {held.p_value:.3g}), {beyond} what the "
                "data's own similarity explains"
            )
    differences = [r for r in rows if r.metric == "agreement_difference"]
    parts += [difference_sentence(r) for r in differences]
    if control and (init or trained) and not differences:
        parts.append("these correlations are point estimates, and their differences are not tested")
    return "; ".join(parts) + "."


def difference_sentence(row: Any) -> str:
    """What one ``agreement_difference`` row supports, in words."""
    with_what = "its own init" if row.partner.endswith(INIT_SUFFIX) else "random inits"
    kind = (
        "partial Mantel r, data similarity held fixed" if row.measure == "partial" else "Mantel r"
    )
    head = f"trained-vs-{with_what} minus random-vs-random agreement ({kind}): {row.value:+.2f}"
    if row.low != row.low:
        return (
            f"{head}, not tested ({int(row.n)} tasks not nested in another; the jackknife "
            f"interval needs {DIFFERENCE_MIN_TASKS})"
        )
    if row.low > 0:
        meaning = (
            f"the trained model agrees with {with_what} more than random inits agree with each "
            "other: structure beyond what data and architecture give any initialisation"
        )
    elif row.high < 0:
        meaning = (
            f"the trained model agrees with {with_what} less than random inits agree with each "
            "other: training changed the structure data and architecture give at initialisation"
        )
    else:
        meaning = "no difference detected (the interval includes 0; that is not a shown equality)"
    return (
        f"{head} [{row.low:+.2f}, {row.high:+.2f}] (95% jackknife interval over {int(row.n)} "
        f"tasks, p {row.p_value:.3g}): {meaning}"
    )
