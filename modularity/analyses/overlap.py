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

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from modularity.algorithms.mantel import mantel_test
from modularity.algorithms.set_overlap import (
    intersection_null,
    jaccard,
    layer_groups,
    overlap_matrix,
    overlap_table,
)
from modularity.analyses.base import Analysis, Row, RunContext
from modularity.config import choice
from modularity.figures import plot_bars, plot_heatmap
from modularity.outputs import format_table, write_json, write_tensors
from modularity.pipeline import Pipeline, Selection

log = logging.getLogger(__name__)
MATRIX_LABELS = {
    "jaccard": "Jaccard |A∩B| / |A∪B|",
    "containment": "|A∩B| / |A| (row A, column B)",
    "z": "z vs random sets of equal size",
}


def twin_config(model_cfg: DictConfig, offset: int) -> DictConfig:
    """Random-initialisation twin ``offset``: the same architecture and tokenizer, fresh
    weights from seed ``model.seed + offset``."""
    return OmegaConf.merge(
        model_cfg,
        {"init": "random", "name": f"{model_cfg.name}-random{offset}",
         "seed": model_cfg.seed + offset, "checkpoint": None},
    )  # fmt: skip


def init_config(model_cfg: DictConfig) -> DictConfig | None:
    """The model's true initial weights, where the project trained it and kept them."""
    if (
        not model_cfg.builtin
        or model_cfg.checkpoint == "init"
        or choice(model_cfg.init) != "pretrained"
    ):
        return None
    from modularity.zoo.checkpoints import has_checkpoint

    if not has_checkpoint(model_cfg.builtin, "init"):
        return None
    return OmegaConf.merge(model_cfg, {"checkpoint": "init", "name": f"{model_cfg.name}-init"})


def task_selections(pipe: Pipeline, names: list[str]) -> dict[str, Selection]:
    return {name: pipe.select(pipe.task(name)) for name in names}


def masks(selections: dict[str, Selection]) -> dict[str, torch.Tensor]:
    return {name: s.mask for name, s in selections.items()}


def jaccard_matrix(sets: dict[str, torch.Tensor]) -> tuple[list[str], object]:
    return overlap_matrix(sets, "jaccard")


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
            rows += self.persistence(ctx, sets, summary)
        write_json(ctx.out / "overlap.json", summary)
        log.info("overlap of %d tasks on %s:\n%s", len(names), cfg.model.name, jaccard_text(sets))
        if "verdict" in summary:
            log.info("%s", summary["verdict"])
        return rows

    def matrices(self, ctx: RunContext, sets: dict[str, torch.Tensor]) -> list[Row]:
        """Task x task matrices (CSV and heatmap per metric and layer third) and their rows."""
        n_layers = next(iter(sets.values())).shape[0]
        groups = layer_groups(n_layers) if n_layers >= 3 else {}
        for metric, label in MATRIX_LABELS.items():
            for scope, layers in {"all": None, **groups}.items():
                names, matrix = overlap_matrix(sets, metric, layers)
                stem = f"overlap_{metric}_{scope}"
                pd.DataFrame(matrix, index=names, columns=names).to_csv(ctx.out / f"{stem}.csv")
                ctx.figure(
                    stem,
                    plot_heatmap(
                        ctx.out / f"{stem}.png", names, matrix,
                        ctx.title(f"{metric}, layers: {scope}"), label, centre_zero=metric == "z",
                    ),
                )  # fmt: skip
            ctx.logger.matrix(f"overlap_{metric}", *overlap_matrix(sets, metric))
        table = overlap_table(sets, groups=groups, per_layer=True)
        table.to_csv(ctx.out / "overlap_table.csv", index=False)
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

    def persistence(
        self, ctx: RunContext, sets: dict[str, torch.Tensor], summary: dict
    ) -> list[Row]:
        """Trained vs random twins (index by index and by Mantel test), twins vs each other,
        and trained vs its true initial weights where known."""
        cfg = ctx.cfg
        others: dict[str, dict[str, torch.Tensor]] = {}
        for offset in range(1, self.twins + 1):
            twin = twin_config(cfg.model, offset)
            others[twin.name] = masks(task_selections(Pipeline(cfg, twin), list(sets)))
        init = init_config(cfg.model)
        if init is not None:
            others[init.name] = masks(task_selections(Pipeline(cfg, init), list(sets)))
        for name, other in others.items():
            write_tensors(ctx.out / f"sets_{name}.safetensors", other)
        rows, frame = [], []
        for name, other in others.items():
            for task in sets:
                null = intersection_null(sets[task], other[task])
                frame.append({"task": task, "compared_with": name,
                              "jaccard": jaccard(sets[task], other[task]),
                              "expected_jaccard": null.expected_jaccard, "z": null.z,
                              "p_value": null.p_value})  # fmt: skip
                where = {"task": task, "partner": name}
                rows.append(
                    Row("index_jaccard", frame[-1]["jaccard"], p_value=null.p_value, **where)
                )
                rows.append(Row("expected_index_jaccard", float(null.expected_jaccard), **where))
                rows.append(Row("index_z", float(null.z), **where))
        twins = pd.DataFrame(frame)
        ctx.table("trained_vs_random", twins)
        ctx.figure(
            "trained_vs_random",
            plot_bars(
                ctx.out / "trained_vs_random.png",
                [f"{r.task}\n{r.compared_with}" for r in twins.itertuples()],
                list(twins.jaccard),
                "Jaccard (trained, other)",
                ctx.title("trained vs random twins and init, index by index"),
            ),
        )
        mantel_rows, tests = self.mantel(cfg.model.name, sets, others)
        rows += mantel_rows
        summary["mantel"] = tests
        summary["verdict"] = persistence_verdict(tests, cfg.model.name, init is not None)
        return rows

    def mantel(
        self,
        model: str,
        sets: dict[str, torch.Tensor],
        others: dict[str, dict[str, torch.Tensor]],
    ) -> tuple[list[Row], list[dict]]:
        """Mantel tests of the task x task Jaccard structure: trained vs each other model,
        and every pair of twins (the data-only control)."""
        matrices = {model: jaccard_matrix(sets)[1]}
        matrices.update({name: jaccard_matrix(other)[1] for name, other in others.items()})
        pairs = [(model, name) for name in others]
        twins = [name for name in others if not name.endswith("-init")]
        pairs += list(combinations(twins, 2))
        rows, tests = [], []
        for a, b in pairs:
            test = mantel_test(matrices[a], matrices[b], permutations=self.permutations)
            tests.append({"a": a, "b": b, "r": test.statistic, "p_value": test.p_value,
                          "exact": test.exact, "permutations": test.n_permutations})  # fmt: skip
            rows.append(Row("mantel_r", test.statistic, task=a, partner=b, p_value=test.p_value,
                            n=float(test.n_permutations)))  # fmt: skip
        return rows, tests


def persistence_verdict(tests: list[dict], model: str, has_init: bool) -> str:
    """One sentence on where shared task structure comes from."""
    trained = [t for t in tests if t["a"] == model and not t["b"].endswith("-init")]
    control = [t for t in tests if t["a"] != model]
    init = [t for t in tests if t["a"] == model and t["b"].endswith("-init")]
    mean = lambda ts: sum(t["r"] for t in ts) / len(ts)  # noqa: E731
    parts = []
    if trained:
        parts.append(f"trained vs unrelated random inits: mean Mantel r {mean(trained):.2f}")
    if control:
        parts.append(f"random init vs random init (data only): r {mean(control):.2f}")
    if init:
        parts.append(f"trained vs its own initial weights: r {init[0]['r']:.2f} "
                     f"(p {init[0]['p_value']:.3g})")  # fmt: skip
    if control and (init or trained):
        reference = init[0]["r"] if init else mean(trained)
        if mean(control) >= reference:
            parts.append(
                "two unrelated random inits agree at least as strongly, so the shared task "
                "structure comes from the data, not from the initialisation"
            )
        else:
            parts.append("the trained model agrees more than random inits agree with each other")
    elif not has_init:
        parts.append("the true initial weights are unknown for this model")
    return "; ".join(parts) + "."


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
    names, matrix = jaccard_matrix(sets)
    return format_table(
        [[a, *(f"{v:.3f}" for v in row)] for a, row in zip(names, matrix)], ["jaccard", *names]
    )
