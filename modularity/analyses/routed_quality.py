"""MoEfication's routed inference, measured: the analysis side of ``modularity.routing``.

For each way of building experts and each router, the model runs with only the top-k
experts of every MLP active, for a ladder of k; each task and its reference are evaluated
on their evaluation splits, and the drops from the dense model get the project's 95%
intervals (:func:`modularity.analyses.effects.effect_rows`). Beside quality: how much of the
true activation mass the routed experts hold on held-out tokens (the router's accuracy, as
MoEfication measures it), which experts each task routes to (concentration by depth), and
how the experts a task prefers over its reference overlap its selective-pruning set.

Routers are built from a sample of the reference's collection split (general data, as
MoEfication's were from its pre-training corpus) and judged on the reference's evaluation
split, which no router has seen. A routing configuration is written ``method/router@share``
in the rows' ``partner`` column (e.g. ``coactivation/mlp@0.25``: a quarter of each layer's
experts per token).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from modularity.algorithms import unit_intervals
from modularity.algorithms.coactivation import CoactivationCounts
from modularity.algorithms.set_overlap import layer_groups
from modularity.algorithms.t_interval import mean_interval
from modularity.analyses.base import Row
from modularity.analyses.effects import SIDES, effect_rows, estimate_row, metric_sums
from modularity.evaluate import UnitSums, evaluate
from modularity.figures import CLUSTERING_STYLE, plt, save
from modularity.infra.outputs import format_markdown
from modularity.pipeline import DataSpec, Pipeline
from modularity.routing.hooks import RoutedLayer, routed
from modularity.routing.routers import (
    Router,
    build_router,
    captured_mass,
    expert_mass,
    experts_per_token,
    membership,
)
from modularity.routing.sample import TokenSample, routing_pass
from modularity.verdicts import VerdictConfig


def routing_label(method: str, router: str, share: float) -> str:
    return f"{method}/{router}@{share:g}"


def parse_routing(label: str) -> tuple[str, str, float]:
    """``("coactivation", "mlp", 0.25)`` from ``coactivation/mlp@0.25``."""
    method, rest = label.split("/", 1)
    router, share = rest.split("@", 1)
    return method, router, float(share)


@dataclass
class RoutingData:
    """The routers' data, each pass run once and only when asked for: the reference's
    collection split (token sample, and co-activation counts when experts need them) and
    its evaluation split (held-out token sample)."""

    pipe: Pipeline
    spec: DataSpec
    max_tokens: int
    seed: int
    rule: str
    share: float
    _collect: TokenSample | None = None
    _counts: CoactivationCounts | None = None
    _heldout: TokenSample | None = None

    def _pass(self, split: str, counts: CoactivationCounts | None) -> TokenSample:
        loader, _ = self.pipe.loader(self.spec, split)
        stage = f"routing sample {self.spec.name} ({split})"
        return routing_pass(
            self.pipe.loaded,
            loader,
            self.pipe.cfg.trainer,
            max_tokens=self.max_tokens,
            seed=self.seed,
            counts=counts,
            stage=stage,
        )

    def counts(self) -> CoactivationCounts:
        if self._counts is None:
            adapter = self.pipe.adapter
            counts = CoactivationCounts(adapter.n_layers, adapter.n_neurons, self.rule, self.share)
            self._collect = self._pass("collect", counts)
            self._counts = counts
        return self._counts

    def collect(self) -> TokenSample:
        if self._collect is None:
            self._collect = self._pass("collect", None)
        return self._collect

    def heldout(self) -> TokenSample:
        if self._heldout is None:
            self._heldout = self._pass("evaluate", None)
        return self._heldout


def layer_routers(
    kind: str,
    labels: dict[int, torch.Tensor],
    rows: dict[int, torch.Tensor],
    n_experts: int,
    data: RoutingData,
    epochs: int,
    seed: int,
) -> dict[int, Router]:
    """The ``kind`` router of every layer (the MLP router trained on the collection sample)."""
    out = {}
    for layer, layer_labels in labels.items():
        samples = data.collect().layer(layer) if kind == "mlp" else None
        out[layer] = build_router(
            kind, layer_labels, rows[layer], n_experts, samples, epochs=epochs, seed=seed + layer
        )
    return out


def captured_rows(
    label_of: dict[float, str],
    routers: dict[int, Router],
    labels: dict[int, torch.Tensor],
    n_experts: int,
    heldout: TokenSample,
) -> list[Row]:
    """Per layer and k: mean share of the held-out tokens' activation mass that the routed
    experts hold (1 for every k would be a perfect router with concentrated experts)."""
    rows = []
    for layer, router in routers.items():
        x, h = heldout.layer(layer)
        scores = router(x, h)
        mass = expert_mass(h, membership(labels[layer], n_experts))
        for share, label in label_of.items():
            k = experts_per_token(share, n_experts)
            captured = captured_mass(scores, mass, k)
            value = float(captured.nanmean())
            count = float(captured.isfinite().sum())
            rows.append(Row("captured_mass", value, partner=label, layer=str(layer), n=count))
    return rows


@dataclass
class TaskSides:
    """A task, its reference, and their dense (baseline) evaluation sums."""

    name: str
    task: DataSpec
    reference: DataSpec
    baseline: dict[str, UnitSums]
    selected: torch.Tensor  # [layers, neurons] bool, its selective-pruning set

    def pair(self, sums: dict[tuple[str, str], UnitSums]) -> dict[str, UnitSums]:
        """The task's and its reference's sums among ``sums`` (keyed by split, against)."""
        return {
            "task": sums[(self.task.name, self.reference.name)],
            "reference": sums[(self.reference.name, self.reference.name)],
        }


@dataclass
class RoutedEvaluation:
    """Evaluates the routed model on every task and reference, each split once per routing
    configuration, and counts which experts each split routes to."""

    pipe: Pipeline
    tasks: list[TaskSides]
    verdicts: VerdictConfig
    sums: dict[tuple[str, str], UnitSums] = field(default_factory=dict)
    usage: dict[tuple[str, str], dict[int, torch.Tensor]] = field(default_factory=dict)
    # The sums of every routing configuration evaluated, by label: routers compared paired.
    kept: dict[str, dict[tuple[str, str], UnitSums]] = field(default_factory=dict)

    def _evaluate(self, spec: DataSpec, against: DataSpec, layers: dict, k: int) -> None:
        key = (spec.name, against.name)
        if key in self.sums:
            return
        pipe = self.pipe
        loader, units = pipe.loader(spec, "evaluate")
        counts: dict[int, torch.Tensor] = {}
        with routed(pipe.adapter, layers, k, counts):
            self.sums[key] = evaluate(
                pipe.loaded,
                loader,
                units,
                pipe.cfg.trainer,
                pipe.frequent_tokens(against),
                f"evaluate {spec.name} (routed, k={k})",
            )
        self.usage[key] = counts

    def rows(self, label: str, layers: dict[int, RoutedLayer], k: int, n_experts: int) -> list[Row]:
        """Effect rows of every task at one routing configuration (k = all: the dense
        model itself, exactly), and, below all, expert usage and pruning-set overlap."""
        self.sums, self.usage = {}, {}
        rows: list[Row] = []
        for sides in self.tasks:
            if k == n_experts:
                after = sides.baseline
            else:
                self._evaluate(sides.task, sides.reference, layers, k)
                self._evaluate(sides.reference, sides.reference, layers, k)
                after = sides.pair(self.sums)
            effects = effect_rows(sides.name, sides.baseline, after, self.verdicts)
            rows += [tagged(r, label) for r in effects]
            if k < n_experts:
                task_use = self.usage[(sides.task.name, sides.reference.name)]
                reference_use = self.usage[(sides.reference.name, sides.reference.name)]
                rows += usage_rows(sides, label, layers, task_use, reference_use, k, n_experts)
        self.kept[label] = dict(self.sums)
        return rows

    def router_difference_rows(
        self, method: str, router: str, against: str, shares: list[float]
    ) -> list[Row]:
        """``router``'s drop minus ``against``'s at equal k, per task and side and measure,
        paired over the same held-out evaluation units (95% CR2 interval): below 0 where
        ``router`` loses less. Only shares both were evaluated at below all experts."""
        rows: list[Row] = []
        for share in shares:
            ours, theirs = (
                routing_label(method, router, share),
                routing_label(method, against, share),
            )
            if ours not in self.kept or theirs not in self.kept or not self.kept[ours]:
                continue
            label = routing_label(method, f"{router}-{against}", share)
            for sides in self.tasks:
                first, second = sides.pair(self.kept[theirs]), sides.pair(self.kept[ours])
                for side in SIDES:
                    for measure in first[side].num:
                        kind = "loss" if measure == "loss" else "accuracy"
                        estimate = unit_intervals.drop(
                            metric_sums(first[side], measure),
                            metric_sums(second[side], measure),
                            kind,
                        ).absolute
                        where = {"task": sides.name, "variant": side, "measure": measure}
                        rows.append(
                            tagged(estimate_row("router_difference", estimate, **where), label)
                        )
        return rows


def tagged(row: Row, label: str) -> Row:
    return Row(**{**row.__dict__, "partner": label})


def usage_rows(
    sides: TaskSides,
    label: str,
    layers: dict[int, RoutedLayer],
    task_use: dict[int, torch.Tensor],
    reference_use: dict[int, torch.Tensor],
    k: int,
    n_experts: int,
) -> list[Row]:
    """Per layer: how concentrated the task's routing is (1 - entropy / log E of the share of
    routings each expert receives: 0 uniform, 1 one expert), and the share of its pruning
    set that lies in the k experts it prefers most over its reference, beside the share of
    neurons those experts hold (what a set unrelated to routing would give)."""
    rows = []
    for layer, spec in layers.items():
        use = task_use[layer].double()
        p = use / use.sum()
        entropy = float(-(p[p > 0] * p[p > 0].log()).sum())
        concentration = 1 - entropy / math.log(n_experts) if n_experts > 1 else float("nan")
        where = {"task": sides.name, "partner": label, "layer": str(layer)}
        rows.append(Row("routing_concentration", concentration, **where))
        ref = reference_use[layer].double()
        preference = (p + 1e-12) / (ref / ref.sum() + 1e-12)
        preferred = torch.zeros(n_experts, dtype=torch.bool)
        preferred[preference.topk(k).indices] = True
        in_preferred = preferred[spec.labels.cpu()]
        selected = sides.selected[layer].cpu()
        n_selected = int(selected.sum())
        if n_selected:
            share = float((selected & in_preferred).sum()) / n_selected
            chance = float(in_preferred.double().mean())
            rows.append(Row("pruning_set_in_task_experts", share, n=float(n_selected), **where))
            rows.append(Row("pruning_set_in_task_experts_chance", chance, **where))
    return rows


def depth_groups(n_layers: int) -> dict[str, list[int]]:
    """Early / middle / late thirds of the layers (all of them for fewer than three)."""
    return layer_groups(n_layers) if n_layers >= 3 else {"all": list(range(n_layers))}


def by_depth(rows: list[Row], metric: str, n_layers: int, minus: str | None = None) -> list[Row]:
    """Mean of ``metric`` (less ``minus``, matched by task, configuration and layer) per
    depth third and configuration, with a 95% t-interval over tasks (each task's value
    averaged over the layers of the third first)."""
    frame = pd.DataFrame([r.__dict__ for r in rows if r.metric in (metric, minus)])
    if frame.empty:
        return []
    table = frame.pivot_table(index=["task", "partner", "layer"], columns="metric", values="value")
    values = table[metric] - (table[minus] if minus else 0.0)
    third = {
        str(layer): name for name, members in depth_groups(n_layers).items() for layer in members
    }
    frame = values.rename("value").reset_index()
    frame = frame.assign(depth=frame.layer.map(third)).dropna(subset=["depth"])
    out = []
    for (partner, depth), group in frame.groupby(["partner", "depth"]):
        per_task = group.groupby("task").value.mean().to_numpy()
        mean, low, high = mean_interval(per_task)
        name = f"{metric}_by_depth" + ("_minus_chance" if minus else "")
        out.append(
            Row(name, mean, partner=partner, layer=depth, low=low, high=high, n=len(per_task))
        )
    return out


def routed_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """The routed rows with their configuration split into method, router and share."""
    rows = rows[rows.partner.astype(str).str.contains("@", regex=False)]
    parsed = [parse_routing(p) for p in rows.partner]
    return rows.assign(
        method=[p[0] for p in parsed], router=[p[1] for p in parsed], share=[p[2] for p in parsed]
    )


def quality_table(rows: pd.DataFrame, measure: str = "top1") -> pd.DataFrame:
    """Per method, router and share: the task drop and the reference's, each with its own
    interval over evaluation units where there is one (a single task; a reference every
    task shares), else the mean over tasks with a t-interval over them."""
    drops = routed_frame(rows[(rows.metric == "drop") & (rows.measure == measure)])
    out: list[dict[str, Any]] = []
    for (method, router, share), group in drops.groupby(["method", "router", "share"]):
        task = group[group.variant == "task"]
        out.append(
            {
                "method": method,
                "router": router,
                "share": share,
                "task": _pooled(task),
                "reference": _pooled(group[group.variant == "reference"]),
                "tasks": len(task),
            }
        )
    return pd.DataFrame(out)


def _pooled(side: pd.DataFrame) -> tuple[float, float, float]:
    """One split's drop with its own interval, or the mean of several with a t-interval."""
    if len(side.drop_duplicates(["value", "low", "high"])) == 1:
        first = side.iloc[0]
        return (first.value, first.low, first.high)
    return mean_interval(side.value.to_numpy())


def captured_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean over layers of the captured activation mass per method, router and share."""
    captured = routed_frame(rows[rows.metric == "captured_mass"])
    if captured.empty:
        return captured
    return captured.groupby(["method", "router", "share"]).value.mean().reset_index()


ROUTER_ORDER = {"similarity": 0, "mlp": 1, "oracle": 2}


def _order(method: str, router: str, share: float) -> tuple:
    return (method, ROUTER_ORDER.get(router, len(ROUTER_ORDER)), router, share)


def routed_summary(rows: pd.DataFrame) -> list[str]:
    """``summary.md``'s routed inference: the quality curve per evaluation split, which
    experts each task uses by depth, and the trained router against similarity."""
    return curve_summary(rows) + usage_summary(rows) + router_comparison(rows)


def curve_summary(rows: pd.DataFrame) -> list[str]:
    """One table row per method, router, share below all and evaluation split: top-1 drop,
    the share of the dense top-1 kept and the loss rise, each with its 95% interval."""
    wanted = rows.metric.isin(["drop", "relative_drop"]) & rows.measure.isin(["top1", "loss"])
    drops = routed_frame(rows[wanted])
    drops = drops[drops.share < 1]
    if drops.empty:
        return []
    captured = captured_table(rows)
    mass = {(r.method, r.router, r.share): r.value for r in captured.itertuples()}
    cell = {
        (r.method, r.router, r.share, r.task, r.variant, r.metric, r.measure): r
        for r in drops.itertuples()
    }
    keys = sorted({k[:5] for k in cell}, key=lambda k: (*_order(*k[:3]), k[3], k[4] != "task"))
    table = []
    for method, router, share, task, side in keys:
        at = (method, router, share, task, side)
        table.append(
            [
                method,
                router,
                f"{share:g}",
                f"{mass[at[:3]]:.3f}" if at[:3] in mass else "–",
                task if side == "task" else f"{task}'s reference",
                _interval(cell.get((*at, "drop", "top1")), 1),
                _kept(cell.get((*at, "relative_drop", "top1"))),
                _interval(cell.get((*at, "drop", "loss")), 3),
            ]
        )
    header = [
        "experts",
        "router",
        "share of FFN active",
        "mass captured (held out)",
        "evaluation split",
        "top-1 drop (pp)",
        "dense top-1 kept (%)",
        "loss rise (nats)",
    ]
    return [
        "Routed inference: only the top-k experts of every MLP active per token (k = share x "
        "experts; with all of them the model is the dense one, exactly). Drops from the dense "
        "model on each evaluation split, 95% intervals over its evaluation units; mass "
        "captured: the share of held-out tokens' activation mass in the routed experts, mean "
        "over layers.",
        "",
        format_markdown(table, header),
        "",
    ]


def usage_summary(rows: pd.DataFrame) -> list[str]:
    """Per routing configuration and depth third: how concentrated the tasks' routing is,
    and how much more of their pruning sets lies in their preferred experts than chance."""
    metrics = {
        "routing_concentration_by_depth": "concentration",
        "pruning_set_in_task_experts_by_depth_minus_chance": "pruning set in task experts - chance",
    }
    depth = routed_frame(rows[rows.metric.isin(metrics)])
    if depth.empty:
        return []
    thirds = [d for d in ("early", "middle", "late", "all") if d in set(depth.layer)]
    cell = {(r.method, r.router, r.share, r.metric, r.layer): r for r in depth.itertuples()}
    configs = sorted({k[:3] for k in cell}, key=lambda k: _order(*k))
    table = [
        [
            m,
            r,
            f"{s:g}",
            *(_interval(cell.get((m, r, s, metric, d)), 3) for metric in metrics for d in thirds),
        ]
        for m, r, s in configs
    ]
    header = [
        "experts",
        "router",
        "share",
        *(f"{name}, {d}" for name in metrics.values() for d in thirds),
    ]
    tasks = int(depth.n.max())
    return [
        "Which experts each task routes to, by depth third (mean over "
        f"{tasks} task{'s' if tasks != 1 else ''}, 95% t-interval over tasks from 3): "
        "concentration, 1 - entropy / log E of the share of routings each expert receives "
        "(0 uniform, 1 one expert); and the share of the task's selective-pruning set inside "
        "the k experts it prefers most over its reference, minus the share of neurons those "
        "experts hold (0: no more than chance).",
        "",
        format_markdown(table, header),
        "",
    ]


def router_comparison(rows: pd.DataFrame) -> list[str]:
    """Does the trained router beat similarity at equal k on held-out tokens? From the
    ``router_difference`` rows (the MLP router's drop minus similarity's, paired over the
    same evaluation units, which no router saw), one table row per method, k and evaluation
    split, and a count of where the loss interval lies below 0, above it, or across it."""
    diff = rows[rows.metric == "router_difference"]
    if diff.empty:
        return []
    diff = routed_frame(diff)
    captured = captured_table(rows)
    mass = (
        captured.pivot_table(index=["method", "share"], columns="router", values="value")
        if not captured.empty
        else pd.DataFrame()
    )
    cells = {(r.method, r.share, r.task, r.variant, r.measure): r for r in diff.itertuples()}
    keys = sorted(
        {(m, s, t, v) for m, s, t, v, _ in cells}, key=lambda k: (k[0], k[1], k[2], k[3] != "task")
    )
    table, verdicts = [], {"below": 0, "above": 0, "across": 0}
    for method, share, task, side in keys:
        loss = cells.get((method, share, task, side, "loss"))
        top1 = cells.get((method, share, task, side, "top1"))
        if loss is not None and loss.low == loss.low:
            where = "below" if loss.high < 0 else "above" if loss.low > 0 else "across"
            verdicts[where] += 1
        captured_pair = "–"
        if {"mlp", "similarity"} <= set(mass.columns) and (method, share) in mass.index:
            m = mass.loc[(method, share)]
            captured_pair = f"{m.mlp:.3f} / {m.similarity:.3f}"
        table.append(
            [
                method,
                f"{share:g}",
                task if side == "task" else f"{task}'s reference",
                _interval(top1, 1),
                _interval(loss, 3),
                captured_pair,
            ]
        )
    header = [
        "experts",
        "share of FFN active",
        "evaluation split",
        "top-1 drop, mlp - similarity (pp)",
        "loss rise, mlp - similarity (nats)",
        "mass captured, mlp / similarity",
    ]
    total = sum(verdicts.values())
    return [
        "Trained MLP router against similarity at equal k, on held-out evaluation splits: "
        "the MLP router's drop minus similarity's, paired over the same evaluation units "
        "(95% interval; below 0: the MLP router loses less). Of the "
        f"{total} cases with an interval, its loss interval lies below 0 in "
        f"{verdicts['below']}, above 0 in {verdicts['above']}, and includes 0 in "
        f"{verdicts['across']}.",
        "",
        format_markdown(table, header),
        "",
    ]


def _kept(row: Any) -> str:
    """The share of the dense value kept, in %, from a relative drop row (in %)."""
    if row is None or row.value != row.value:
        return "–"
    if row.low != row.low:
        return f"{100 - row.value:.1f}"
    return f"{100 - row.value:.1f} [{100 - row.high:.1f}, {100 - row.low:.1f}]"


def _interval(row: Any, digits: int) -> str:
    if row is None or row.value != row.value:
        return "–"
    if row.low != row.low:
        return f"{row.value:+.{digits}f}"
    return f"{row.value:+.{digits}f} [{row.low:+.{digits}f}, {row.high:+.{digits}f}]"


ROUTER_STYLE = {"similarity": ("-", "o"), "mlp": ("--", "s"), "oracle": (":", "^")}


def plot_routed_quality(
    path: Path, top1: pd.DataFrame, loss: pd.DataFrame, title: str
) -> Path | None:
    """Quality against the share of the FFN active: the mean task top-1 drop, the
    reference's top-1 drop and its loss rise, one line per method (colour) and router
    (style), 95% bands."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    panels_of = (
        (axes[0], top1, "task", "task top-1 drop (pp); several: their mean"),
        (axes[1], top1, "reference", "reference top-1 drop (pp)"),
        (axes[2], loss, "reference", "reference loss rise (nats)"),
    )
    for ax, table, side, ylabel in panels_of:
        for (method, router), group in table.groupby(["method", "router"]):
            group = group.sort_values("share")
            values = np.array([list(v) for v in group[side]], dtype=float)
            colour = CLUSTERING_STYLE.get(method, ("k", "-"))[0]
            line, marker = ROUTER_STYLE.get(router, ("-", "."))
            ax.plot(
                group.share,
                values[:, 0],
                line,
                marker=marker,
                color=colour,
                lw=1.2,
                label=f"{method} / {router}",
            )
            ax.fill_between(group.share, values[:, 1], values[:, 2], color=colour, alpha=0.1)
        ax.set_xscale("log", base=2)
        shares = sorted(table.share.unique())
        ax.set_xticks(shares, [f"{s:g}" for s in shares])
        ax.minorticks_off()
        ax.axhline(0, color="grey", lw=0.6)
        ax.set_xlabel("share of experts (FFN) active per token")
        ax.set_ylabel(ylabel)
    axes[0].legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    return save(fig, path)
