"""The rows every pruning analysis reports: drops and the selectivity effect with 95%
intervals and verdicts, the selection's stability, and the data each split actually used.

Accuracies are reported in percentage points and loss (cross-entropy) in nats. The effect,
task drop minus reference drop, is defined for every run, unlike the ratio of drops (which
is undefined when the reference does not move): the ratio is reported only where the
reference's drop is measurably positive. ``n`` is always the number of evaluation units
that contributed (those with a scored token or image).
"""

from __future__ import annotations

from modularity.algorithms import unit_intervals
from modularity.analyses.base import Row
from modularity.evaluate import UnitSums
from modularity.verdicts import VerdictConfig, null_margin, selection_flag, verdict

SIDES = ("task", "reference")


def metric_sums(sums: UnitSums, measure: str) -> unit_intervals.MetricSums:
    """One measure's per-unit numerators and denominators, as the intervals take them."""
    return unit_intervals.MetricSums(sums.num[measure].numpy(), sums.den[measure].numpy())


def estimate_row(
    metric: str, est: unit_intervals.Estimate, scale: float = 1.0, **where: str
) -> Row:
    return Row(
        metric=metric,
        value=est.value * scale,
        low=est.low * scale,
        high=est.high * scale,
        p_value=est.p_value(),
        n=float(est.n_units),
        **where,
    )


def effect_rows(
    task: str,
    before: dict[str, UnitSums],
    after: dict[str, UnitSums],
    verdicts: VerdictConfig,
) -> list[Row]:
    """Levels, drops (absolute and relative, in %) per side, and the effect, per measure.

    The effect row carries its p-value against 0 and its verdict (``label``); beside it a
    ``null_margin`` row holds the margin and the equivalence p-value, and
    ``standard_error`` / ``degrees_of_freedom`` rows what the interval was built from."""
    rows: list[Row] = []
    for measure in after["task"].num:  # computed now, so in the loop's order
        kind = "loss" if measure == "loss" else "accuracy"
        sums = {
            side: (metric_sums(before[side], measure), metric_sums(after[side], measure))
            for side in SIDES
        }
        relative = {}
        for side, (b, a) in sums.items():
            where = {"task": task, "measure": measure, "variant": side}
            rows.append(Row("before", b.value, n=float(b.n_units), **where))
            rows.append(Row("after", a.value, n=float(a.n_units), **where))
            drop = unit_intervals.drop(b, a, kind)
            rows.append(estimate_row("drop", drop.absolute, **where))
            if drop.relative.value == drop.relative.value:  # defined where before > 0
                relative[side] = drop.relative
                rows.append(estimate_row("relative_drop", drop.relative, 100.0, **where))
        effect = unit_intervals.drop_difference(*sums["task"], *sums["reference"], kind)
        where = {"task": task, "measure": measure, "variant": "task-reference"}
        margin = null_margin(verdicts, measure)
        p_null = effect.p_within(margin)
        label = verdict(effect.value, effect.p_value(), p_null)
        rows.append(
            Row(
                "effect",
                effect.value,
                low=effect.low,
                high=effect.high,
                p_value=effect.p_value(),
                n=float(effect.n_units),
                label=label,
                **where,
            )
        )
        units = float(effect.n_units)
        rows.append(Row("null_margin", margin, p_value=p_null, n=units, **where))
        rows.append(Row("standard_error", effect.se, n=units, **where))
        rows.append(Row("degrees_of_freedom", effect.df, n=units, **where))
        ref = relative.get("reference")
        if "task" in relative and ref is not None and ref.low > 0:
            rows.append(Row("drop_ratio", relative["task"].value / ref.value, **where))
    return rows


def stability_row(task: str, selection: object, min_stability: float) -> Row:
    """The split-half stability (Jaccard of the sets chosen from the two halves of the
    collection data), flagged ``unstable selection`` below ``min_stability``."""
    stability = selection.stability
    return Row(
        "stability",
        stability,
        task=task,
        n=float(selection.mask.sum()),
        label=selection_flag(stability, min_stability),
    )


def selection_rows(task: str, selection: object, min_stability: float) -> list[Row]:
    """The selection's size and flagged stability, beside what random sets would give."""
    mask = selection.mask
    n_neurons = float(mask.numel())
    return [
        stability_row(task, selection, min_stability),
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
