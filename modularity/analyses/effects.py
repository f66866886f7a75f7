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


def _sums(sums: UnitSums, measure: str) -> bootstrap.MetricSums:
    return bootstrap.MetricSums(sums.num[measure].numpy(), sums.den[measure].numpy())


def _row(metric: str, est: bootstrap.Estimate, scale: float = 1.0, **where: str) -> Row:
    return Row(
        metric=metric,
        value=est.value * scale,
        low=est.low * scale,
        high=est.high * scale,
        n=float(est.n_units),
        **where,
    )


def effect_rows(
    task: str,
    before: dict[str, UnitSums],
    after: dict[str, UnitSums],
    resamples: int,
    seed: int,
) -> list[Row]:
    """Levels, drops (absolute and relative, in %) per side, and the effect, per measure."""
    rows: list[Row] = []
    options = {"n_resamples": resamples, "seed": seed}
    for measure in after["task"].num:  # computed now, so in the loop's order
        kind = "loss" if measure == "loss" else "accuracy"
        sums = {side: (_sums(before[side], measure), _sums(after[side], measure)) for side in SIDES}
        relative = {}
        for side, (b, a) in sums.items():
            where = {"task": task, "measure": measure, "variant": side}
            rows.append(Row("before", b.value, n=float(b.n_units), **where))
            rows.append(Row("after", a.value, n=float(a.n_units), **where))
            drop = bootstrap.drop(b, a, kind, **options)
            rows.append(_row("drop", drop.absolute, **where))
            if drop.relative.value == drop.relative.value:  # defined where before > 0
                relative[side] = drop.relative
                rows.append(_row("relative_drop", drop.relative, 100.0, **where))
        effect = bootstrap.drop_difference(*sums["task"], *sums["reference"], kind, **options)
        where = {"task": task, "measure": measure, "variant": "task-reference"}
        rows.append(_row("effect", effect, **where))
        ref = relative.get("reference")
        if "task" in relative and ref is not None and ref.low > 0:
            rows.append(Row("drop_ratio", relative["task"].value / ref.value, **where))
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
