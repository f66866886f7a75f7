"""Figures (matplotlib, written as PNG): heatmaps, bars, expert sizes, alignment, dynamics.

Every figure is laid out by matplotlib's constrained layout, so titles, tick labels and
legends stay inside the canvas; titles are wrapped to the figure's width. Axes are labelled
with their units, intervals say what kind they are, null or chance levels are drawn where a
null exists, and legends sit outside the data. A figure that would carry no information
(every bar the same, as with per-layer selection) is not drawn: its function returns None.
"""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from modularity.infra.artefacts import OutputError, write_atomic  # noqa: E402

log = logging.getLogger("modularity")


DEPTH_ORDER = ("early", "middle", "late")
CLUSTERING_STYLE = {
    "kmeans": ("C0", "-o"),
    "coactivation": ("C2", "-D"),
    "plain": ("C1", "--s"),
    "random": ("0.5", ":^"),
}
CLUSTERING_LABELS = {
    "kmeans": "balanced k-means experts",
    "coactivation": "co-activation (METIS) experts",
    "plain": "plain k-means experts",
    "random": "random balanced partition (control)",
}
# What each alignment statistic measures (modularity.algorithms.alignment), as z vs random sets.
STATISTIC_LABELS = {
    "topk_fraction": "share of task neurons in the top expert",
    "entropy": "low entropy of task neurons over experts",
    "ami": "mutual information (adjusted) of experts and task set",
}
TITLE_SIZE = 9


def figure(
    ncols: int = 1, nrows: int = 1, width: float = 4.4, height: float = 3.6
) -> tuple[Any, np.ndarray]:
    """A figure of ``nrows x ncols`` panels (each ``width x height`` inches) whose layout
    keeps every label inside the canvas; axes as a 2-d array."""
    return plt.subplots(
        nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, layout="constrained"
    )


def wrap(text: str, width_inches: float, fontsize: float = TITLE_SIZE) -> str:
    """``text`` broken into lines that fit ``width_inches`` at ``fontsize`` points."""
    chars = max(20, int(width_inches * 72 / (0.55 * fontsize)))
    return "\n".join(textwrap.fill(line, chars) for line in text.splitlines())


def title(fig: Any, text: str) -> None:
    """The figure's title, wrapped to its width."""
    fig.suptitle(wrap(text, fig.get_figwidth()), fontsize=TITLE_SIZE)


def panel_title(ax: Any, text: str) -> None:
    """A panel's title, wrapped to the panel's width."""
    width = ax.get_figure().get_figwidth() * ax.get_position().width
    ax.set_title(wrap(text, width, 8), fontsize=8)


def y_label(ax: Any, text: str, fontsize: float = 8) -> None:
    """A y-axis label wrapped to the panel's height."""
    height = ax.get_figure().get_figheight() * ax.get_position().height
    ax.set_ylabel(wrap(text, 0.6 * height, fontsize), fontsize=fontsize)


def legend_below(fig: Any, ax: Any, ncols: int = 3, *more_axes: Any) -> None:
    """One legend for the figure, under the panels, so it never covers data; entries of
    ``ax`` and ``more_axes``."""
    handles, labels = [], []
    for each in (ax, *more_axes):
        h, lab = each.get_legend_handles_labels()
        handles, labels = handles + h, labels + lab
    renderer = fig.canvas.get_renderer()
    for columns in range(min(ncols, len(handles)), 0, -1):  # as many columns as fit
        legend = fig.legend(handles, labels, loc="outside lower center", ncols=columns, fontsize=7)
        if columns == 1 or legend.get_window_extent(renderer).width <= 0.98 * fig.bbox.width:
            return
        legend.remove()


def save(fig: Any, path: Path) -> Path | None:
    """Write ``fig`` as a PNG, whole or not at all. A figure that cannot be written (a full
    disk) is a warning naming it, not the end of the run: the tables still get written."""
    try:
        return write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    except OutputError as err:
        log.warning("warning: figure not written: %s", err)
        return None
    finally:
        plt.close(fig)


def varies(values: Any) -> bool:
    """Whether ``values`` hold more than one distinct value (else a bar chart says nothing)."""
    return len(set(np.round(np.asarray(values, dtype=float), 12).tolist())) > 1


def plot_layer_counts(
    path: Path, counts: Sequence[int], n_neurons: int, title_text: str
) -> Path | None:
    """Bar chart of selected neurons per layer; None when every layer has as many (per-layer
    selection, the default), where it would only repeat the fraction."""
    if not varies(counts):
        return None
    fig, axes = figure(width=max(4.0, 0.35 * len(counts) + 2), height=3.2)
    ax = axes[0, 0]
    ax.bar(range(len(counts)), counts, color="#4c72b0")
    ax.set_xlabel("layer (index)")
    ax.set_ylabel(f"selected neurons (count, of {n_neurons})")
    title(fig, title_text)
    return save(fig, path)


def plot_layer_shares(
    path: Path, shares: Mapping[str, Sequence[float]], title_text: str
) -> Path | None:
    """Each task's share of each layer's neurons in its set, one line per task; None when
    every share is the same (per-layer selection, the default: each is the fraction)."""
    if not varies([v for values in shares.values() for v in values]):
        return None
    fig, axes = figure(width=5.2, height=3.4)
    ax = axes[0, 0]
    for task, values in shares.items():
        ax.plot(range(len(values)), values, "-o", ms=3, lw=1, label=task)
    ax.set_xlabel("layer (index)")
    ax.set_ylabel("share of the layer's neurons (0-1)")
    legend_below(fig, ax, 4)
    title(fig, title_text)
    return save(fig, path)


def _text_colour(rgba: Sequence[float]) -> str:
    """Black on light cells, white on dark ones (relative luminance)."""
    r, g, b = rgba[:3]
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.5 else "white"


@dataclass(frozen=True)
class HeatmapRow:
    """One row of panels sharing a colour scale: ``panels`` maps a panel title to a square
    matrix; ``label`` names the colour bar (with units); ``centre_zero`` for z-scores;
    ``mask_diagonal`` where the diagonal is a set with itself (it would set the scale)."""

    label: str
    panels: Mapping[str, Any]
    centre_zero: bool = False
    mask_diagonal: bool = True


def _colour_scale(matrices: Sequence[np.ndarray], centre_zero: bool) -> tuple[str, dict]:
    finite = np.concatenate([m[np.isfinite(m)] for m in matrices])
    bound = float(np.abs(finite).max()) if finite.size else 1.0
    bound = bound or 1.0
    if centre_zero:
        return "RdBu_r", {"vmin": -bound, "vmax": bound}
    return "viridis", {"vmin": min(0.0, float(finite.min(initial=0))), "vmax": bound}


def plot_heatmaps(
    path: Path,
    names: Sequence[str],
    rows: Sequence[HeatmapRow],
    title_text: str,
    xlabel: str = "task",
    ylabel: str = "task",
) -> Path | None:
    """Task x task heatmaps, one row of panels per :class:`HeatmapRow` (each with its colour
    bar), values in the cells."""
    ncols = max(len(r.panels) for r in rows)
    size = max(3.2, 0.45 * len(names) + 2.2)
    fig, axes = figure(ncols, len(rows), width=size + 0.6, height=size)
    for row, row_axes in zip(rows, axes):
        matrices = []
        for matrix in row.panels.values():
            values = np.array(matrix, dtype=float)
            if row.mask_diagonal:
                np.fill_diagonal(values, np.nan)
            matrices.append(values)
        cmap, limits = _colour_scale(matrices, row.centre_zero)
        colour_map = plt.get_cmap(cmap).with_extremes(bad="0.92")
        image = None
        for ax, (panel, values) in zip(row_axes, zip(row.panels, matrices)):
            image = ax.imshow(np.ma.masked_invalid(values), cmap=colour_map, **limits)
            ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
            ax.set_yticks(range(len(names)), names, fontsize=7)
            ax.set_xlabel(xlabel, fontsize=8)
            ax.set_ylabel(ylabel, fontsize=8)
            panel_title(ax, panel)
            if len(names) <= 12:
                for i, j in zip(*np.nonzero(np.isfinite(values))):
                    colour = _text_colour(colour_map(image.norm(values[i, j])))
                    text = f"{values[i, j]:.2g}"
                    ax.text(j, i, text, ha="center", va="center", fontsize=6, color=colour)
        for ax in row_axes[len(row.panels) :]:
            ax.set_visible(False)
        fig.colorbar(image, ax=list(row_axes[: len(row.panels)]), label=row.label, shrink=0.85)
    title(fig, title_text)
    return save(fig, path)


def plot_heatmap(
    path: Path,
    names: Sequence[str],
    matrix: Any,
    title_text: str,
    label: str,
    centre_zero: bool = False,
    xlabel: str = "task",
    ylabel: str = "task",
    mask_diagonal: bool = True,
) -> Path | None:
    """One task x task heatmap (see :func:`plot_heatmaps`)."""
    row = HeatmapRow(label, {"": matrix}, centre_zero, mask_diagonal)
    return plot_heatmaps(path, names, [row], title_text, xlabel, ylabel)


def plot_bars(
    path: Path,
    labels: Sequence[str],
    values: Sequence[float],
    ylabel: str,
    title_text: str,
    xlabel: str = "task",
    chance: Sequence[float] | None = None,
    notes: Sequence[str] | None = None,
) -> Path | None:
    """One bar per label; ``chance`` draws each bar's null level (a black tick), ``notes``
    a short text above each bar (e.g. its z). None when every bar is the same and there is
    no chance level to compare with."""
    if chance is None and not varies(values):
        return None
    fig, axes = figure(width=max(4.0, 0.55 * len(labels) + 2), height=3.6)
    ax = axes[0, 0]
    x = np.arange(len(labels))
    ax.bar(x, values, color="#55a868", label="observed")
    if chance is not None:
        ax.hlines(chance, x - 0.4, x + 0.4, color="k", lw=2, label="chance (random sets)")
    for xi, value, note in zip(x, values, notes or []):
        ax.annotate(note, (xi, value), ha="center", va="bottom", fontsize=6, xytext=(0, 2),
                    textcoords="offset points")  # fmt: skip
    ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.margins(y=0.15)
    if chance is not None:
        legend_below(fig, ax, 2)
    title(fig, title_text)
    return save(fig, path)


def plot_size_histograms(
    path: Path, labels: torch.Tensor, layers: list[int], n_experts: int, title_text: str
) -> Path | None:
    """How many neurons each expert holds, per layer; None when every expert of every layer
    holds the same number (balanced k-means), which one line of text says better."""
    sizes = [np.bincount(row.numpy(), minlength=n_experts) for row in labels]
    if not varies(np.concatenate(sizes)):
        return None
    fig, axes = figure(width=6, height=3.6)
    ax = axes[0, 0]
    for layer_sizes, layer in zip(sizes, layers):
        bins = np.arange(layer_sizes.min() - 0.5, layer_sizes.max() + 1.5)
        ax.hist(layer_sizes, bins=bins, alpha=0.4, label=f"layer {layer}")
    ax.set_xlabel("neurons per expert (count)")
    ax.set_ylabel("experts (count)")
    if len(layers) <= 8:
        legend_below(fig, ax, 4)
    title(fig, title_text)
    return save(fig, path)


def alignment_panels(
    axes: Sequence[Any], frame: pd.DataFrame, statistics: Sequence[str], offset: float = 0.0
) -> None:
    """Mean alignment z per depth third with 95% t-intervals over tasks, one line per
    clustering; z = 0 (random sets of the same size) drawn as the null."""
    for ax, statistic in zip(axes, statistics):
        rows = frame[frame.measure == statistic]
        for method, group in rows.groupby("variant"):
            group = group.set_index("layer").reindex(
                [d for d in DEPTH_ORDER if d in set(group.layer)]
            )
            x = np.arange(len(group)) + offset
            colour, style = CLUSTERING_STYLE.get(method, ("k", "-"))
            err = np.vstack([group.value - group.low, group.high - group.value])
            ax.errorbar(
                x,
                group.value,
                yerr=np.nan_to_num(err),
                fmt=style,
                color=colour,
                capsize=3,
                label=CLUSTERING_LABELS.get(method, method),
            )
            ax.set_xticks(range(len(group)), list(group.index))
        ax.axhline(0, color="grey", lw=0.8, label="null: random sets (z = 0)")
        ax.set_xlabel("depth third of the layers")
        y_label(ax, f"z: {STATISTIC_LABELS.get(statistic, statistic)}")


def plot_alignment_by_depth(path: Path, frame: pd.DataFrame, title_text: str) -> Path | None:
    """Alignment z by depth third (mean over tasks, 95% t-interval), per clustering."""
    if frame.empty:
        return None
    statistics = [s for s in STATISTIC_LABELS if s in set(frame.measure)]
    fig, axes = figure(len(statistics), width=3.6, height=3.4)
    alignment_panels(axes[0], frame, statistics)
    legend_below(fig, axes[0, 0], 2)
    title(fig, f"{title_text}; mean z over tasks against random sets, 95% t-intervals")
    return save(fig, path)


def plot_dynamics(path: Path, summary: pd.DataFrame, title_text: str) -> Path | None:
    """Over training steps: the selectivity effect (mean over tasks, 95% t-interval); each
    task's set overlapping the final and the initial sets (same neuron indices) vs chance;
    and the task x task structure's similarity to the final one (Mantel r, which needs at
    least 3 tasks: without it the panel shows the mean Jaccard between tasks alone)."""
    if summary.empty:
        return None
    x = summary.step.to_numpy()
    fig, axes = figure(3, width=4.2, height=3.4)
    ax = axes[0, 0]
    ax.plot(x, summary.effect, "-o", color="C3", label="mean effect")
    if summary.effect_low.notna().any():
        ax.fill_between(x, summary.effect_low, summary.effect_high, color="C3", alpha=0.2)
    ax.axhline(0, color="grey", lw=0.8)
    y_label(ax, "effect: task minus reference top-1 drop (percentage points)")
    panel_title(ax, "selectivity (95% t-interval over tasks)")
    ax = axes[0, 1]
    for label, colour in (("final", "C0"), ("init", "C2")):
        ax.plot(x, summary[f"jaccard_{label}"], "-o", color=colour, label=f"with the {label} set")
        ax.plot(x, summary[f"chance_{label}"], ":", color=colour, label=f"chance ({label})")
    ax.set_ylabel("Jaccard (same neuron indices, 0-1)")
    panel_title(ax, "each task's set vs the final and initial sets")
    ax = axes[0, 2]
    ax.plot(x, summary.mean_jaccard, "--s", color="C1", label="mean Jaccard between tasks")
    if summary.mantel_final.notna().any():
        ax.plot(x, summary.mantel_final, "-o", color="C0", label="Mantel r with final structure")
        ax.set_ylabel("Jaccard (0-1) or Mantel r (-1 to 1)")
    else:
        ax.set_ylabel("mean Jaccard between task sets (0-1)")
    panel_title(ax, "task x task structure")
    legend_below(fig, axes[0, 1], 3, axes[0, 2])
    for ax in axes[0]:
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(0, max(float(x.max()), 1.0) * 1.5)  # step 0 (the init) to past the last
        ax.set_xlabel("training step (symlog)")
    title(fig, title_text)
    return save(fig, path)
