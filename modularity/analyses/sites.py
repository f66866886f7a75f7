"""Attention as well as MLP: for each task, what removing the same fraction of MLP neurons,
attention neurons and whole heads does, and where over depth each site's task units live.

Every site's statistics come from one forward per item (``Pipeline.site_statistics``). Per
task and site: the selection of the run's ``selection.fraction`` (its ``scope`` and
``layers``), its split-half stability, and its effect (task drop minus reference drop) with
95% intervals over evaluation units, as ``analysis=prune`` reports them. Depth: each layer's
share of the site's top fraction selected over all layers at once (``global``, whatever the
run's scope, since a per-layer selection has the same count in every layer by construction), and
Spearman's rank correlation over layers between the MLP's shares and each attention site's
(with a Fisher-z interval; none below ten layers). Rows name the site in ``partner``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from modularity.algorithms.rank_correlation import spearman_interval
from modularity.analyses.base import Analysis, Row, RunContext
from modularity.analyses.effects import effect_rows, selection_rows
from modularity.config import choice
from modularity.errors import ConfigError, invalid_choice
from modularity.neurons.selection import select_top_fraction
from modularity.neurons.sites import SITES, check_site_scorer
from modularity.outputs import format_interval, format_markdown
from modularity.tidy import panels

log = logging.getLogger(__name__)


@dataclass
class Sites(Analysis):
    """``analysis=sites``: the same fraction of each site's units removed, task by task."""

    sites: list[str] = field(default_factory=lambda: ["mlp", "attn", "heads"])

    def check(self, cfg: Any) -> None:
        super().check(cfg)
        for site in self.sites:
            if site not in SITES:
                raise invalid_choice("site in analysis.sites", site, list(SITES))
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
        for name in names:
            task = pipe.main_task() if name == cfg.task.name else pipe.task(name)
            reference = pipe.reference_of(task)
            for spec in (task, reference):  # every site in one forward per item
                pipe.site_statistics(spec, sites)
            before = pipe.baseline(task, reference)
            shares = {}
            for site in sites:
                selection = pipe.select(task, site=site)
                after = pipe.evaluate(task, reference, selection.mask, site=site)
                site_rows = [
                    *effect_rows(task.name, before, after, cfg.verdict),
                    *selection_rows(task.name, selection, cfg.verdict.min_stability),
                ]
                rows += [replace(row, partner=site) for row in site_rows]
                shares[site] = depth_shares(selection.scores, cfg.selection.fraction, cfg.layers)
                rows += [
                    Row("depth_share", float(share), task=task.name, layer=str(i), partner=site)
                    for i, share in enumerate(shares[site])
                    if not math.isnan(share)
                ]
            rows += correlation_rows(task.name, shares)
        ctx.table("depth_shares", depth_table(rows))
        return rows

    @classmethod
    def summary(cls, rows: pd.DataFrame) -> list[str]:
        lines = []
        for label, group in panels(rows, exclude=("task", "run")):
            lines += [
                f"Sites{f' ({label})' if label else ''}: the same fraction of each site's "
                "units removed; top-1 effect (task drop minus reference drop, pp) with 95% "
                "intervals over evaluation units; rho: Spearman correlation over layers between "
                "where a task's MLP units and its attention units lie (global selection), 95% "
                "Fisher-z interval (none below 10 layers).",
                "",
                format_markdown(*site_table(group)),
                "",
            ]
        return lines


def depth_shares(scores: Any, fraction: float, layers: list[int] | None) -> np.ndarray:
    """Each layer's share of the top ``fraction`` of units selected over all chosen layers
    at once; NaN for layers not chosen."""
    mask = select_top_fraction(scores, fraction, "global", layers)
    shares = (mask.sum(1).double() / mask.sum()).numpy()
    if layers is not None:
        shares[[i for i in range(len(shares)) if i not in set(layers)]] = np.nan
    return shares


def correlation_rows(task: str, shares: dict[str, np.ndarray]) -> list[Row]:
    """Spearman's rho over layers between the MLP's depth shares and each other site's."""
    rows = []
    mlp = shares["mlp"]
    for site, other in shares.items():
        if site == "mlp":
            continue
        chosen = ~np.isnan(mlp) & ~np.isnan(other)
        result = spearman_interval(mlp[chosen], other[chosen])
        rows.append(
            Row(
                "layer_rank_correlation",
                result.rho,
                task=task,
                variant=f"mlp-{site}",
                partner=site,
                low=result.low,
                high=result.high,
                n=float(result.n),
            )
        )
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
    """Per task and site: units removed, top-1 effect with interval, stability, rho."""
    table = []
    for (task, site), group in rows.groupby(["task", "partner"], sort=True):
        pick = {(r.metric, r.variant, r.measure): r for r in group.itertuples()}
        effect = pick.get(("effect", "task-reference", "top1"))
        if effect is None:
            continue
        removed = pick.get(("n_selected", "", ""))
        stability = pick.get(("stability", "", ""))
        rho = pick.get(("layer_rank_correlation", f"mlp-{site}", ""))
        table.append(
            [
                task,
                site,
                f"{int(removed.value)} of {int(removed.n)}" if removed is not None else "–",
                f"**{format_interval(effect)}**",
                f"{stability.value:.2f}" if stability is not None else "–",
                format_interval(rho, 2) if rho is not None else "–",
            ]
        )
    header = ["task", "site", "units removed", "effect (pp)", "stability", "rho with mlp"]
    return table, header
