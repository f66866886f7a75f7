"""Attention as well as MLP: for each task, what removing the same fraction of MLP neurons,
attention neurons and whole heads does, the same again matched by parameters removed, where
over depth each site's task units live, and whether task sets overlap as much in each site.

Every site's statistics come from one forward per item (``Pipeline.site_statistics``). Per
task and site (rows name it in ``partner``): the selection of the run's
``selection.fraction`` (its ``scope`` and ``layers``), its split-half stability, its effect
(task drop minus reference drop) with 95% intervals over evaluation units, as
``analysis=prune`` reports them, and the weights it takes out (``parameters_removed``, by
``Site.unit_parameters``). Matched by parameters (``partner`` ``<site>:params``): each
attention site's fraction whose units take out as many weights as the MLP selection did
(``matched_fraction``; none where the site has fewer weights than that), selected and
evaluated the same way.

Depth: each layer's share of the site's top fraction selected over all layers at once
(``global``, whatever the run's scope, since a per-layer selection has the same count in
every layer by construction), and Spearman's rank correlation over layers between the
MLP's shares and each attention site's, with a Fisher-z interval (none below ten layers), a
two-sided permutation p-value over layers and its reading in ``label``.

Overlap (two tasks or more): per site and task pair (``task``, ``variant``), the
intersection of the two tasks' sets against random sets of the same per-layer sizes, the
null of ``analysis=overlap`` (``intersection_null``): ``intersection`` with its exact
p-value, ``expected_intersection`` and ``overlap_z``. A z grows with a site's unit count at
equal excess overlap, so sites are compared by observed / expected intersection too.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
import torch

from modularity.algorithms.rank_correlation import spearman_interval, spearman_permutation_p
from modularity.algorithms.set_overlap import intersection_null
from modularity.analyses.base import Analysis, Row, RunContext
from modularity.analyses.effects import effect_rows, selection_rows
from modularity.config import choice
from modularity.errors import ConfigError, invalid_choice
from modularity.evaluate import UnitSums
from modularity.infra.outputs import format_interval, format_markdown
from modularity.infra.tidy import panels
from modularity.neurons.selection import check_layers, select_top_fraction
from modularity.neurons.sites import check_site_scorer, site_names, site_of
from modularity.pipeline import DataSpec, Pipeline, Selection
from modularity.verdicts import ALPHA

log = logging.getLogger(__name__)
MATCHED = ":params"  # partner suffix of the selections matched by parameters removed


@dataclass
class Sites(Analysis):
    """``analysis=sites``: the same fraction of each site's units removed, task by task."""

    sites: list[str] = field(default_factory=lambda: ["mlp", "attn", "heads"])

    def check(self, cfg: Any) -> None:
        super().check(cfg)
        for site in self.sites:
            if site not in site_names():
                raise invalid_choice("site in analysis.sites", site, site_names())
            check_site_scorer(site, choice(cfg.scoring.scorer))
        if len(set(self.sites)) != len(self.sites) or "mlp" not in self.sites:
            raise ConfigError(
                f"analysis.sites={list(self.sites)} must name each site once, mlp among them "
                "(the other sites are compared with it)"
            )

    def run(self, ctx: RunContext) -> list[Row]:
        pipe, cfg = ctx.pipeline, ctx.cfg
        sites = tuple(self.sites)
        names = list(cfg.tasks) or [cfg.task.name]
        rows: list[Row] = []
        sets: dict[str, dict[str, torch.Tensor]] = {site: {} for site in sites}
        for name in names:
            task = pipe.main_task() if name == cfg.task.name else pipe.task(name)
            reference = pipe.reference_of(task)
            for spec in (task, reference):  # every site in one forward per item
                pipe.site_statistics(spec, sites)
            shares, evaluated = {}, {}
            for site in sites:
                selection = pipe.select(task, site=site)
                rows += removal_rows(pipe, task, reference, selection, site, site, evaluated)
                sets[site][task.name] = selection.mask
                shares[site] = depth_shares(selection.scores, cfg.selection.fraction, cfg.layers)
                rows += [
                    Row("depth_share", float(share), task=task.name, layer=str(i), partner=site)
                    for i, share in enumerate(shares[site])
                    if not math.isnan(share)
                ]
            mlp = sets["mlp"][task.name]
            rows += matched_rows(pipe, task, reference, mlp, sites, evaluated)
            rows += correlation_rows(task.name, shares)
        rows += overlap_rows(sets)
        ctx.table("depth_shares", depth_table(rows))
        return rows

    @classmethod
    def summary(cls, rows: pd.DataFrame) -> list[str]:
        lines = []
        for label, group in panels(rows, exclude=("task", "run")):
            lines += [
                f"Sites{f' ({label})' if label else ''}: the same fraction of each site's "
                "units removed, and (`:params`) as many weights as the MLP's selection; top-1 "
                "effect (task drop minus reference drop, pp) with 95% intervals over "
                "evaluation units; rho: Spearman correlation over layers between where a "
                "task's MLP units and its attention units lie (global selection), 95% "
                "Fisher-z interval (none below 10 layers), two-sided permutation p.",
                "",
                format_markdown(*site_table(group)),
                "",
            ]
            overlap = overlap_table(group)
            if overlap[0]:
                lines += [
                    "Task sets' overlap per site against random sets of the same per-layer "
                    "sizes (the null of analysis=overlap), over task pairs; z grows with a "
                    "site's unit count, observed / expected does not.",
                    "",
                    format_markdown(*overlap),
                    "",
                ]
        return lines


def removal_rows(
    pipe: Pipeline,
    task: DataSpec,
    reference: DataSpec,
    selection: Selection,
    site: str,
    partner: str,
    evaluated: dict[tuple[str, bytes], dict[str, UnitSums]],
) -> list[Row]:
    """Removing ``selection`` (units of ``site``): its effect, stability and size, and the
    weights it takes out, all named ``partner``. A mask of ``site`` already in ``evaluated``
    (the task's evaluations so far) is not evaluated again."""
    cfg = pipe.cfg
    key = (site, selection.mask.numpy().tobytes())
    if key not in evaluated:
        evaluated[key] = pipe.evaluate(task, reference, selection.mask, site=site)
    after = evaluated[key]
    per_unit = site_of(site).unit_parameters(pipe.adapter)
    site_rows = [
        *effect_rows(task.name, pipe.baseline(task, reference), after, cfg.verdict),
        *selection_rows(task.name, selection, cfg.verdict.min_stability),
        Row(
            "parameters_removed",
            float(selection.mask.sum()) * per_unit,
            task=task.name,
            n=float(selection.mask.numel()) * per_unit,
        ),
    ]
    return [replace(row, partner=partner) for row in site_rows]


def matched_fraction(parameters: float, per_unit: int, units: int) -> float:
    """The fraction of ``units`` (each taking out ``per_unit`` weights) that takes out
    ``parameters`` weights; above 1 where the units hold fewer weights than that."""
    return parameters / per_unit / units


def matched_rows(
    pipe: Pipeline,
    task: DataSpec,
    reference: DataSpec,
    mlp: torch.Tensor,
    sites: tuple[str, ...],
    evaluated: dict[tuple[str, bytes], dict[str, UnitSums]],
) -> list[Row]:
    """Each attention site's units that take out as many weights as the MLP selection ``mlp``
    did, removed: ``removal_rows`` named ``<site>:params`` beside ``matched_fraction``."""
    adapter = pipe.adapter
    budget = float(mlp.sum()) * site_of("mlp").unit_parameters(adapter)
    layers = layers_of(pipe)
    rows = []
    for site in sites:
        if site == "mlp":
            continue
        units = site_of(site)
        fraction = matched_fraction(
            budget, units.unit_parameters(adapter), len(layers) * units.width(adapter)
        )
        partner = f"{site}{MATCHED}"
        if fraction > 1:
            rows.append(
                Row(
                    "matched_fraction",
                    fraction,
                    task=task.name,
                    partner=partner,
                    label=f"not matched: all of {site} holds fewer weights than the MLP units",
                )
            )
            continue
        selection = pipe.select(task, fraction=fraction, site=site)
        everything = bool(selection.mask[layers].all())
        label = "every unit of the site: nothing task-specific is chosen" if everything else ""
        rows.append(Row("matched_fraction", fraction, task=task.name, partner=partner, label=label))
        rows += removal_rows(pipe, task, reference, selection, site, partner, evaluated)
    return rows


def depth_shares(scores: Any, fraction: float, layers: list[int] | None) -> np.ndarray:
    """Each layer's share of the top ``fraction`` of units selected over all chosen layers
    at once; NaN for layers not chosen."""
    mask = select_top_fraction(scores, fraction, "global", layers)
    shares = (mask.sum(1).double() / mask.sum()).numpy()
    if layers is not None:
        shares[[i for i in range(len(shares)) if i not in set(layers)]] = np.nan
    return shares


def layers_of(pipe: Pipeline) -> list[int]:
    """The run's chosen layers (all by default)."""
    return check_layers(pipe.cfg.layers, pipe.adapter.n_layers)


def layer_agreement(rho: float, p_value: float) -> str:
    """What a depth correlation supports, in words: a two-sided permutation test at 5%."""
    if math.isnan(rho):
        return "undefined: a site's shares are equal in every layer"
    if not p_value < ALPHA:
        return "no association shown"
    return "same layers" if rho > 0 else "opposite layers"


def correlation_rows(task: str, shares: dict[str, np.ndarray]) -> list[Row]:
    """Spearman's rho over layers between the MLP's depth shares and each other site's."""
    rows = []
    mlp = shares["mlp"]
    for site, other in shares.items():
        if site == "mlp":
            continue
        chosen = ~np.isnan(mlp) & ~np.isnan(other)
        result = spearman_interval(mlp[chosen], other[chosen])
        p_value = spearman_permutation_p(mlp[chosen], other[chosen])
        rows.append(
            Row(
                "layer_rank_correlation",
                result.rho,
                task=task,
                variant=f"mlp-{site}",
                partner=site,
                low=result.low,
                high=result.high,
                p_value=p_value,
                n=float(result.n),
                label=layer_agreement(result.rho, p_value),
            )
        )
    return rows


def overlap_rows(sets: dict[str, dict[str, torch.Tensor]]) -> list[Row]:
    """Per site and task pair, the sets' intersection against random sets of the same
    per-layer sizes (``intersection_null``, as ``analysis=overlap``)."""
    rows = []
    for site, by_task in sets.items():
        for a, b in combinations(by_task, 2):
            null = intersection_null(by_task[a], by_task[b])
            where = {"task": a, "variant": b, "partner": site}
            rows += [
                Row("intersection", float(null.observed), p_value=null.p_value, **where),
                Row("expected_intersection", float(null.expected), **where),
                Row("overlap_z", float(null.z), **where),
            ]
    return rows


def depth_table(rows: list[Row]) -> pd.DataFrame:
    """``depth_shares.csv``: task, site, layer, share of the site's global selection."""
    return pd.DataFrame(
        [
            {"task": r.task, "site": r.partner, "layer": int(r.layer), "share": r.value}
            for r in rows
            if r.metric == "depth_share"
        ]
    )


def site_table(rows: pd.DataFrame) -> tuple[list[list[str]], list[str]]:
    """Per task and site: units and weights removed, top-1 effect with interval, stability,
    rho with the MLP."""
    table = []
    for (task, site), group in rows.groupby(["task", "partner"], sort=True):
        pick = {(r.metric, r.variant, r.measure): r for r in group.itertuples()}
        matched = pick.get(("matched_fraction", "", ""))
        effect = pick.get(("effect", "task-reference", "top1"))
        if effect is None and matched is None:
            continue
        removed = pick.get(("n_selected", "", ""))
        weights = pick.get(("parameters_removed", "", ""))
        everything = matched is not None and bool(matched.label) and effect is not None
        stability = pick.get(("stability", "", ""))
        rho = pick.get(("layer_rank_correlation", f"mlp-{site}", ""))
        table.append(
            [
                task,
                site,
                f"{int(removed.value)} of {int(removed.n)}{' (all)' if everything else ''}"
                if removed is not None
                else "–",
                f"{weights.value:,.0f}" if weights is not None else "–",
                f"**{format_interval(effect)}**" if effect is not None else matched.label,
                f"{stability.value:.2f}" if stability is not None else "–",
                "–"
                if rho is None
                else rho.label
                if math.isnan(rho.value)
                else f"{format_interval(rho, 2)}, p={rho.p_value:.2g}: {rho.label}",
            ]
        )
    header = [
        "task",
        "site",
        "units removed",
        "weights removed",
        "effect (pp)",
        "stability",
        "rho with mlp",
    ]
    return table, header


def overlap_table(rows: pd.DataFrame) -> tuple[list[list[str]], list[str]]:
    """Per site over task pairs: mean z, mean observed / expected intersection, and how many
    pairs overlap above chance (exact p < 0.05)."""
    table = []
    for site, group in rows[rows.metric.str.contains("intersection|overlap_z")].groupby(
        "partner", sort=True
    ):
        wide = group.pivot_table(index=["task", "variant"], columns="metric", values="value")
        p = group[group.metric == "intersection"].p_value
        ratio = wide.intersection / wide.expected_intersection
        table.append(
            [
                site,
                str(len(wide)),
                f"{wide.overlap_z.mean():.1f} ({wide.overlap_z.min():.1f} to "
                f"{wide.overlap_z.max():.1f})",
                f"{ratio.mean():.2f} ({ratio.min():.2f} to {ratio.max():.2f})",
                f"{int((p < ALPHA).sum())} of {len(p)}",
            ]
        )
    header = ["site", "task pairs", "z: mean (range)", "observed / expected", "p < 0.05"]
    return table, header
