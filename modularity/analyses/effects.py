"""The rows every pruning analysis reports: drops and the selectivity effect with 95%
intervals, the selection's stability, and the data each split actually used.

Accuracies are reported in percentage points and loss (cross-entropy) in nats. The effect,
task drop minus reference drop, is defined for every run, unlike the ratio of drops (which
is undefined when the reference does not move): the ratio is reported only where the
reference's drop is measurably positive.
"""

from __future__ import annotations

from modularity.algorithms import bootstrap
from modularity.analyses.base import Row
from modularity.evaluate import UnitSums

SIDES = ("task", "reference")


def _sums(sums: UnitSums, measure: str) -> bootstrap.UnitSums:
    return bootstrap.UnitSums(
        num=sums.num[measure].double().numpy(), den=sums.den[measure].double().numpy()
    )


def _scale(measure: str) -> float:
    """Accuracies in percentage points; loss in nats."""
    return 1.0 if measure == "loss" else 100.0


def _row(metric: str, est: bootstrap.Estimate, scale: float = 1.0, **where: str) -> Row:
    return Row(
        metric=metric,
        value=est.value * scale,
        low=est.low * scale,
        high=est.high * scale,
        n=est.n_units,
        **where,
    )


def effect_rows(
    task: str,
    before: dict[str, UnitSums],
    after: dict[str, UnitSums],
    resamples: int,
    seed: int,
) -> list[Row]:
    """Levels, drops (absolute and relative) per side, and the effect, per measure."""
    rows: list[Row] = []
    options = {"n_boot": resamples, "seed": seed}
    for measure in before["task"].num:
        higher_is_better = measure != "loss"
        scale = _scale(measure)
        sums = {side: (_sums(before[side], measure), _sums(after[side], measure)) for side in SIDES}
        relative = {}
        for side, (b, a) in sums.items():
            where = {"task": task, "measure": measure, "variant": side}
            units = float(len(b.num))
            rows.append(Row("before", before[side].value(measure), n=units, **where))
            rows.append(Row("after", after[side].value(measure), n=units, **where))
            drop = bootstrap.drop(b, a, higher_is_better=higher_is_better, **options)
            rows.append(_row("drop", drop, scale, **where))
            if before[side].value(measure) > 0:
                relative[side] = bootstrap.drop(
                    b, a, relative=True, higher_is_better=higher_is_better, **options
                )
                rows.append(_row("relative_drop", relative[side], 100.0, **where))
        effect = bootstrap.drop_difference(
            *sums["task"], *sums["reference"], higher_is_better=higher_is_better, **options
        )
        where = {"task": task, "measure": measure, "variant": "task-reference"}
        rows.append(_row("effect", effect, scale, **where))
        ref = relative.get("reference")
        if "task" in relative and ref is not None and ref.low > 0:
            ratio = relative["task"].value / ref.value
            rows.append(Row("drop_ratio", ratio, **where))
    return rows


def selection_rows(task: str, selection: object) -> list[Row]:
    """The selection's size and split-half stability (Jaccard of the sets chosen from the
    two halves of the collection data), beside what random sets would give."""
    mask = selection.mask
    n_neurons = float(mask.numel())
    return [
        Row("stability", selection.stability, task=task, n=float(mask.sum())),
        Row("chance_stability", selection.chance_stability, task=task),
        Row("n_selected", float(mask.sum()), task=task, n=n_neurons),
        Row("share_selected", float(mask.sum()) / n_neurons, task=task, n=n_neurons),
    ]


def sample_rows(pipe: object, task: object, reference: object) -> list[Row]:
    """How much data each split used (tokens, units, items), and the statistics' MAD bound."""
    rows = []
    for side, spec in (("task", task), ("reference", reference)):
        for split in ("collect", "evaluate"):
            for what, count in pipe.sample_sizes(spec, split).items():
                rows.append(Row(f"{split}_{what}", float(count), task=task.name, variant=side))
        stats = pipe.statistics(spec)
        rows.append(
            Row("mad_relative_error", stats.max_relative_mad_error, task=task.name, variant=side)
        )
    return rows
