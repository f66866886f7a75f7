"""How much data does a claim about ``task`` need? ``analysis=power``.

Two curves, each over the run's data sizes halved 0..``doublings`` times:

- **split-half stability against collection tokens** (images for image tasks): at each size
  the task and its reference are collected afresh (statistics cached per size, so the
  largest is the one a pruning run of the same sizes already has) and the selection's
  split-half Jaccard measured; a size's stability compares two selections made from half of
  that size each;
- **the top-1 effect's 95% interval width against evaluation tokens**: the selection from the
  largest collection is evaluated once on the largest evaluation split (before and after,
  the unpruned pass cached), and each smaller size is a nested random subset of those
  evaluation units (documents or images; seeded by ``seed``) holding that share of each
  side's scored tokens, so no size costs a forward pass of its own.

Then the data each target needs (``target_stability``, ``target_width_pp``) from fits of both
curves (``modularity.algorithms.data_needed``; the width through the effect's standard error
at the largest size and the 1/sqrt(tokens) law, as a large-sample interval), labelled
*interpolated* or *extrapolated*.
Rows: ``stability_by_size``/``chance_stability_by_size`` and ``effect_by_size`` /
``width_by_size`` (``n``: the size's tokens or images; ``variant``: the share of the largest,
e.g. ``1/8``) and ``data_needed`` (``measure``: which target, ``label``: how it was found);
``power.csv`` holds both curves as a table, ``power.png`` draws them with the fits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from modularity.algorithms.data_needed import Needed, stability_needed, width_needed, z_quantile
from modularity.algorithms.unit_intervals import MetricSums, drop_difference
from modularity.analyses.base import Analysis, Row, RunContext
from modularity.errors import ConfigError
from modularity.evaluate import UnitSums
from modularity.figures import figure, legend_below, panel_title, save, title
from modularity.infra.outputs import format_table
from modularity.pipeline import DataSpec, Pipeline

log = logging.getLogger(__name__)
MEASURE = "top1"
STABILITY, WIDTH = "stability", "top-1 effect interval width"


@dataclass
class Power(Analysis):
    """``analysis=power``: stability and interval width against data, for ``task``."""

    doublings: int = 3
    target_stability: float = 0.7
    target_width_pp: float = 2.0

    def check(self, cfg: DictConfig) -> None:
        super().check(cfg)
        if self.doublings < 1:
            raise ConfigError(
                f"analysis.doublings={self.doublings}: give at least 1 (two sizes to fit)"
            )
        if not 0 < self.target_stability < 1:
            raise ConfigError(
                f"analysis.target_stability={self.target_stability} is outside (0, 1)"
            )
        if not self.target_width_pp > 0:
            raise ConfigError(f"analysis.target_width_pp={self.target_width_pp} must be > 0")

    def shares(self) -> list[int]:
        """Divisors of the largest sizes, smallest size first: 2^doublings .. 1."""
        return [2**k for k in range(self.doublings, -1, -1)]

    def run(self, ctx: RunContext) -> list[Row]:
        pipe = ctx.pipeline
        task = pipe.main_task()
        noun = task.modality.item
        collection, mask = collection_curve(pipe, task, self.shares(), noun)
        reference = pipe.reference_of(task)
        before = pipe.baseline(task, reference)
        after = pipe.evaluate(task, reference, mask)
        evaluation = evaluation_curve(before, after, self.shares(), ctx.cfg.seed)
        needed = {
            STABILITY: stability_needed(
                collection.tokens, collection.stability, self.target_stability
            ),
            WIDTH: width_needed(evaluation.tokens, evaluation.se, self.target_width_pp),
        }
        targets = {
            STABILITY: f">= {self.target_stability:g}",
            WIDTH: f"<= {self.target_width_pp:g} pp",
        }
        table = pd.concat([collection, evaluation], ignore_index=True)
        ctx.table("power", table)
        ctx.figure(
            "power",
            plot_power(
                ctx.out / "power.png",
                table,
                needed,
                (self.target_stability, self.target_width_pp),
                noun,
                ctx.title(f"{task.name}: how much data"),
            ),
        )
        rows = curve_rows(task.name, table) + [
            Row(
                "data_needed",
                n.amount,
                task=task.name,
                measure=what,
                variant=targets[what],
                label=n.label,
            )
            for what, n in needed.items()
        ]
        log.info("%s", console_text(task.name, table, needed, targets, noun))
        return rows

    @classmethod
    def summary(cls, rows: pd.DataFrame) -> list[str]:
        """Per task: the data each target needs, and how that was found."""
        lines = []
        for task, group in rows[rows.metric == "data_needed"].groupby("task"):
            for r in group.itertuples():
                lines.append(f"- {task}: {r.measure} {r.variant}: {needed_text(r.value, r.label)}.")
        return lines


def share_label(share: int) -> str:
    return f"1/{share}" if share > 1 else "1"


def collection_curve(
    pipe: Pipeline, task: DataSpec, shares: list[int], noun: str
) -> tuple[pd.DataFrame, object]:
    """Stability and chance stability of the selection at each collection size (task and
    reference collected at that size), and the mask selected at the largest."""
    largest = int(task.config.collect_size)
    records, mask = [], None
    for share in shares:
        sized = pipe.with_data(collect_size=max(1, largest // share))
        spec = sized.main_task()
        selection = sized.select(spec)
        used = sized.sample_sizes(spec, "collect")
        records.append(
            {
                "split": "collection",
                "share": share_label(share),
                "tokens": used["tokens" if noun == "tokens" else "units"],
                "units": used["units"],
                "stability": selection.stability,
                "chance_stability": selection.chance_stability,
            }
        )
        mask = selection.mask
    return pd.DataFrame(records), mask


def evaluation_curve(
    before: dict[str, UnitSums], after: dict[str, UnitSums], shares: list[int], seed: int
) -> pd.DataFrame:
    """The top-1 effect and its interval on nested random subsets of the evaluation units
    holding ``1 / share`` of each side's scored tokens (images); a share whose subset of a
    side is empty (fewer units than shares) is left out."""
    rng = np.random.default_rng(seed)
    orders = {side: rng.permutation(len(before[side].den[MEASURE])) for side in before}
    records = []
    for share in shares:
        sums = []
        for side in ("task", "reference"):
            tokens = before[side].den[MEASURE].numpy()
            order = orders[side]
            kept = order[np.cumsum(tokens[order]) <= tokens.sum() / share]
            sums += [
                MetricSums(s.num[MEASURE].numpy()[kept], s.den[MEASURE].numpy()[kept])
                for s in (before[side], after[side])
            ]
        if not (sums[0].den.sum() > 0 and sums[2].den.sum() > 0):
            continue  # too few units for this share: a side's subset holds no token
        effect = drop_difference(*sums)
        records.append(
            {
                "split": "evaluation",
                "share": share_label(share),
                "tokens": int(sums[0].den.sum()),
                "units": effect.n_units,
                "effect": effect.value,
                "low": effect.low,
                "high": effect.high,
                "width": effect.high - effect.low,
                "se": effect.se,
                "df": effect.df,
                "p_value": effect.p_value(),
            }
        )
    return pd.DataFrame(records)


def curve_rows(task: str, table: pd.DataFrame) -> list[Row]:
    """The curves as tidy rows; ``n`` is the size's tokens (images)."""
    rows = []
    for r in table.itertuples():
        where = {"task": task, "variant": r.share, "n": float(r.tokens)}
        if r.split == "collection":
            rows.append(Row("stability_by_size", r.stability, **where))
            rows.append(Row("chance_stability_by_size", r.chance_stability, **where))
        else:
            interval = {"low": r.low, "high": r.high, "p_value": r.p_value}
            rows.append(Row("effect_by_size", r.effect, measure=MEASURE, **interval, **where))
            rows.append(Row("width_by_size", r.width, measure=MEASURE, **where))
    return rows


def needed_text(amount: float, label: str) -> str:
    return label if amount != amount else f"{amount:,.0f} ({label})"


def console_text(
    task: str,
    table: pd.DataFrame,
    needed: dict[str, Needed],
    targets: dict[str, str],
    noun: str,
) -> str:
    """The two curves and the data each target needs, for the console."""
    lines = []
    for r in table.itertuples():
        if r.split == "collection":
            what = f"stability {r.stability:.2f} (chance {r.chance_stability:.2f})"
        elif r.low == r.low:
            what = f"effect {r.effect:+.2f} [{r.low:+.2f}, {r.high:+.2f}] pp, width {r.width:.2f}"
        else:
            what = f"effect {r.effect:+.2f} pp, no interval ({r.units} units)"
        lines.append([r.split, r.share, f"{r.tokens:,}", f"{r.units:,}", what])
    header = ["split", "share", noun, "units", "measured"]
    needs = [
        f"{noun} needed for {what} {targets[what]}: {needed_text(n.amount, n.label)}"
        for what, n in needed.items()
    ]
    return f"{task}: how much data\n" + format_table(lines, header) + "\n" + "\n".join(needs)


def plot_power(
    path: Path,
    table: pd.DataFrame,
    needed: dict[str, Needed],
    targets: tuple[float, float],
    noun: str,
    title_text: str,
) -> Path | None:
    """Stability against collection data and interval width against evaluation data
    (log2 axes of data), each with its fit (dashed; for the width, the large-sample interval
    of the largest size's standard error carried by the 1/sqrt law) and target."""
    fig, axes = figure(2, width=4.4, height=3.4)
    panels = (
        ("collection", "stability", STABILITY, "split-half stability (Jaccard, 0-1)"),
        ("evaluation", "width", WIDTH, "top-1 effect: 95% interval width (pp)"),
    )
    for ax, (split, column, what, label), target in zip(axes[0], panels, targets):
        points = table[(table.split == split) & np.isfinite(table[column].astype(float))]
        panel_title(ax, f"{what} against {split} {noun}")
        if points.empty:  # e.g. no size had enough evaluation units for an interval
            ax.text(0.5, 0.5, "nothing measured", ha="center", transform=ax.transAxes)
            continue
        ax.plot(points.tokens, points[column], "o", color="#4c72b0", label="measured")
        fit = needed[what]
        if fit.slope == fit.slope:
            reach = fit.amount if fit.amount == fit.amount else points.tokens.max()
            span = np.geomspace(
                min(points.tokens.min(), reach), max(points.tokens.max(), reach), 100
            )
            ax.plot(span, _fitted(fit, span, what), "--", color="#dd8452", label="fit")
        ax.axhline(target, color="grey", lw=0.8, label="target")
        if fit.amount == fit.amount:
            ax.axvline(fit.amount, color="grey", lw=0.8, ls=":", label=f"needed ({fit.label})")
        ax.set_xscale("log", base=2)
        ax.set_xlabel(f"{split} {noun} (log scale)")
        ax.set_ylabel(label)
    legend_below(fig, axes[0, 0], 4)
    title(fig, title_text)
    return save(fig, path)


def _fitted(fit: Needed, tokens: np.ndarray, what: str) -> np.ndarray:
    if what == STABILITY:
        return 1 / (1 + np.exp(-(fit.intercept + fit.slope * np.log2(tokens))))
    return 2 * z_quantile(0.95) * np.exp(fit.intercept + fit.slope * np.log(tokens))
