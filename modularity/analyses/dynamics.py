"""When does modularity emerge during training? Selection, selectivity and task structure at
each saved checkpoint of one of the project's own models, from its exact initial weights to
the final model.

Checkpoints are one network evolving, so comparing neuron indices across them is meaningful:
each task's set is compared with the final model's set and with the initial weights' set
(against random sets of the same sizes), the selectivity effect is measured with 95%
intervals, and the task x task structure is compared with the final one (Mantel test). The
final model is also compared with its true init and with unrelated random inits, with two
random inits against each other as the data-only control.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from modularity.algorithms.t_interval import mean_interval
from modularity.analyses.base import Analysis, Row, RunContext
from modularity.analyses.effects import effect_rows, stability_row
from modularity.analyses.persistence import (
    Sets,
    index_rows,
    jaccard_matrix,
    mantel_note,
    mantel_rows,
    persistence_rows,
    verdict,
)
from modularity.errors import ConfigError
from modularity.figures import plot_dynamics
from modularity.infra.outputs import format_markdown, write_json
from modularity.pipeline import Pipeline
from modularity.verdicts import VerdictConfig

log = logging.getLogger(__name__)


def checkpoint_config(model_cfg: DictConfig, name: str, final: str) -> DictConfig:
    """The model config of checkpoint ``name`` (the final model is the model itself)."""
    if name == final:
        return model_cfg
    return OmegaConf.merge(model_cfg, {"checkpoint": name, "name": f"{model_cfg.name}@{name}"})


@dataclass
class Dynamics(Analysis):
    """``analysis=dynamics``: selection, selectivity and task structure over training."""

    needs_tasks = 2
    checkpoints: list[str] | None = None  # names to use (init, step-..., final); null: all
    evaluate: bool = True  # measure the selectivity effect at every checkpoint
    twins: int = 2  # unrelated random inits for the Mantel controls
    permutations: int = 10000

    def points(self, builtin: str) -> list:
        """The checkpoints to analyse, in training order, present on disk."""
        from modularity.zoo.model_dirs import list_checkpoints

        listed = list_checkpoints(builtin)
        available = [c for c in listed if c.path.exists()]
        if self.checkpoints is not None:
            names = {c.name for c in listed}
            unknown = [n for n in self.checkpoints if n not in names]
            if unknown:
                raise ConfigError(
                    f"analysis.checkpoints {unknown} are not checkpoints of {builtin!r}; valid: "
                    f"{', '.join(c.name for c in listed)}"
                )
            available = [c for c in available if c.name in self.checkpoints]
        missing = [c.name for c in listed if not c.path.exists()]
        if missing:
            log.warning(
                "checkpoints %s of %s are not on disk (make models writes them)",
                ", ".join(missing),
                builtin,
            )
        if len(available) < 2:
            raise ConfigError(
                f"analysis=dynamics needs at least two checkpoints of {builtin!r} on disk; "
                f"found {[c.name for c in available]}: run `make models`"
            )
        return available

    def run(self, ctx: RunContext) -> list[Row]:
        cfg = ctx.cfg
        if not cfg.model.builtin or cfg.model.checkpoint:
            raise ConfigError(
                f"analysis=dynamics needs one of the project's own models, trained with saved "
                f"checkpoints (e.g. model=tiny_lm_text); {cfg.model.name!r} is not"
            )
        points = self.points(cfg.model.builtin)
        mantel_note(list(cfg.tasks))
        first, final = points[0].name, points[-1].name
        sets: dict[str, Sets] = {}
        rows: list[Row] = []
        for point in points:
            model_cfg = checkpoint_config(cfg.model, point.name, final)
            pipe = ctx.pipeline if point.name == final else ctx.pipeline.for_model(model_cfg)
            sets[point.name], point_rows = self.at_checkpoint(pipe, list(cfg.tasks), cfg.verdict)
            rows += [dataclasses.replace(r, partner=point.name) for r in point_rows]
            rows.append(Row("step", float(point.step), partner=point.name))
            rows += [
                Row(f"held_out_{k}", float(v), partner=point.name)
                for k, v in point.held_out.items()
            ]
        rows += self.comparisons(sets, first, final)
        init = sets[first] if points[0].step == 0 else None
        persistence = persistence_rows(
            ctx.pipeline, sets[final], self.twins, self.permutations, init
        )
        rows += persistence
        statement = verdict(persistence, cfg.model.name)
        write_json(
            ctx.out / "dynamics.json",
            {"checkpoints": [p.name for p in points], "verdict": statement},
        )
        log.info("%s", statement)
        summary = summarise(pd.DataFrame([r.__dict__ for r in rows]))
        ctx.figure(
            "dynamics",
            plot_dynamics(ctx.out / "dynamics.png", summary, ctx.title("modularity over training")),
        )
        series = summary.drop(columns="checkpoint").rename(columns={"step": "training_step"})
        ctx.logger.series("training_step", series)
        return rows

    @classmethod
    def summary(cls, rows: pd.DataFrame) -> list[str]:
        """Per checkpoint: step, held-out metric, mean effect, overlap with the final and
        initial sets (vs chance), structure similarity; then where persistence comes from."""
        table = []
        for r in summarise(rows).itertuples():
            held = rows[(rows.partner == r.checkpoint) & rows.metric.str.startswith("held_out_")]
            metric = ", ".join(
                f"{m.metric.removeprefix('held_out_')} "
                + (f"{m.value:,.0f}" if m.metric.startswith("held_out_n_") else f"{m.value:.3f}")
                for m in held.itertuples()
            )
            table.append(
                [
                    r.checkpoint,
                    f"{int(r.step)}",
                    metric,
                    f"{r.effect:+.1f} [{r.effect_low:+.1f}, {r.effect_high:+.1f}]",
                    f"{r.jaccard_final:.3f} ({r.chance_final:.3f})",
                    f"{r.jaccard_init:.3f} ({r.chance_init:.3f})",
                    "-" if np.isnan(r.mantel_final) else f"{r.mantel_final:.2f}",
                ]
            )
        if not table:
            return []
        header = [
            "checkpoint",
            "step",
            "held-out",
            "mean effect (pp)",
            "Jaccard with final (chance)",
            "with init (chance)",
            "Mantel r with final",
        ]
        model = rows.model.iloc[0]
        tests = list(rows[rows.variant == ""].itertuples())  # not the checkpoint comparisons
        return [
            "Training dynamics: at each checkpoint, each task's neurons selected afresh; the "
            "effect is averaged over tasks (95% t-interval), overlaps use the same neuron "
            "indices (one network evolving), against random sets of equal size.",
            "",
            format_markdown(table, header),
            "",
            f"Persistence: {verdict(tests, model)}",
        ]

    @classmethod
    def figures(cls, rows: pd.DataFrame, out: Path) -> list[Path]:
        paths = []
        for model, group in rows.groupby("model"):
            path = plot_dynamics(
                out / f"dynamics_{model}.png",
                summarise(group),
                f"{model}: modularity over training",
            )
            paths += [path] if path else []
        return paths

    def at_checkpoint(
        self, pipe: Pipeline, tasks: list[str], verdicts: VerdictConfig
    ) -> tuple[Sets, list]:
        """Each task's selection, its stability and (if ``evaluate``) its effect."""
        sets, rows = {}, []
        for name in tasks:
            spec = pipe.task(name)
            selection = pipe.select(spec)
            sets[name] = selection.mask
            rows.append(stability_row(name, selection, verdicts.min_stability))
            if self.evaluate:
                reference = pipe.reference_of(spec)
                before = pipe.baseline(spec, reference)
                after = pipe.evaluate(spec, reference, selection.mask)
                rows += effect_rows(name, before, after, verdicts)
        return sets, rows

    def comparisons(self, sets: dict[str, Sets], first: str, final: str) -> list[Row]:
        """Every checkpoint against the final model and the first one (its initial weights,
        when the first is step 0): the same neuron indices, and the task x task structure."""
        rows = []
        matrices = {name: jaccard_matrix(s) for name, s in sets.items()}
        for name, point_sets in sets.items():
            for target, label in ((final, "final"), (first, "init")):
                compared = index_rows(point_sets, sets[target], label)
                rows += [dataclasses.replace(r, variant=label, partner=name) for r in compared]
                if name != target:
                    tested = mantel_rows(
                        {name: matrices[name], target: matrices[target]},
                        [(name, target)],
                        self.permutations,
                    )
                    rows += [
                        dataclasses.replace(r, task="", variant=label, partner=name) for r in tested
                    ]
            off = matrices[name][~np.eye(len(matrices[name]), dtype=bool)]
            rows.append(Row("mean_jaccard", float(off.mean()), partner=name))
        return rows


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """Per checkpoint: step, mean effect (top-1, pp) over tasks with a t-interval, mean
    overlap with the final and initial sets and chance, structure similarity to the final."""
    out = []
    for name, group in frame.groupby("partner", sort=False):
        steps = group[group.metric == "step"].value
        if steps.empty:
            continue
        effects = group[(group.metric == "effect") & (group.measure == "top1")].value.to_numpy()
        mean, low, high = mean_interval(effects)
        record = {
            "checkpoint": name,
            "step": float(steps.iloc[0]),
            "effect": mean,
            "effect_low": low,
            "effect_high": high,
        }
        for label in ("final", "init"):
            mine = group[group.variant == label]
            record[f"jaccard_{label}"] = mine[mine.metric == "index_jaccard"].value.mean()
            record[f"chance_{label}"] = mine[mine.metric == "expected_index_jaccard"].value.mean()
            mantel = mine[mine.metric == "mantel_r"].value
            record[f"mantel_{label}"] = mantel.iloc[0] if len(mantel) else float("nan")
        record["mean_jaccard"] = group[group.metric == "mean_jaccard"].value.mean()
        out.append(record)
    return pd.DataFrame(out).sort_values("step")
