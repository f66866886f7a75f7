"""Figures of one run (matplotlib, written as PNG): heatmaps, bars, expert sizes, alignment.

Every figure names the model and the selection in its title (callers pass
``RunContext.title``); intervals are drawn wherever a value has one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from modularity.artefacts import OutputError, write_atomic  # noqa: E402

log = logging.getLogger("modularity")

DEPTH_ORDER = ("early", "middle", "late")
CLUSTERING_STYLE = {"balanced": ("C0", "-o"), "plain": ("C1", "--s"), "random": ("0.5", ":^")}


def save(fig: Any, path: Path) -> Path | None:
    """Write ``fig`` as a PNG, whole or not at all. A figure that cannot be written (a full
    disk) is a warning naming it, not the end of the run: the tables still get written."""
    fig.tight_layout()
    try:
        return write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=120))
    except OutputError as err:
        log.warning("warning: figure not written: %s", err)
        return None
    finally:
        plt.close(fig)


def plot_layer_counts(path: Path, counts: Sequence[int], n_neurons: int, title: str) -> Path | None:
    """Bar chart of selected neurons per layer."""
    fig, ax = plt.subplots(figsize=(max(4, 0.35 * len(counts) + 2), 3))
    ax.bar(range(len(counts)), counts, color="#4c72b0")
    ax.set_xlabel("layer")
    ax.set_ylabel(f"selected neurons (of {n_neurons})")
    ax.set_title(title, fontsize=9)
    return save(fig, path)


def _text_colour(rgba: Sequence[float]) -> str:
    """Black on light cells, white on dark ones (relative luminance)."""
    r, g, b = rgba[:3]
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.5 else "white"


def plot_heatmap(
    path: Path,
    names: Sequence[str],
    matrix: Any,
    title: str,
    label: str,
    centre_zero: bool = False,
) -> Path | None:
    """Task x task heatmap with values in the cells; the diagonal (a set with itself) is
    masked so it does not set the colour scale. ``centre_zero``: a diverging map centred at 0
    (for z-scores), else a sequential one from 0."""
    values = np.array(matrix, dtype=float)
    np.fill_diagonal(values, np.nan)
    finite = values[np.isfinite(values)]
    bound = float(np.abs(finite).max()) if finite.size else 1.0
    bound = bound or 1.0
    if centre_zero:
        cmap, limits = "RdBu_r", {"vmin": -bound, "vmax": bound}
    else:
        cmap, limits = "viridis", {"vmin": min(0.0, float(finite.min(initial=0))), "vmax": bound}
    size = max(4.0, 0.5 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    colour_map = plt.get_cmap(cmap).with_extremes(bad="0.92")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=colour_map, **limits)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    if len(names) <= 20:
        norm = image.norm
        for i in range(len(names)):
            for j in range(len(names)):
                if i != j and np.isfinite(values[i, j]):
                    colour = _text_colour(colour_map(norm(values[i, j])))
                    ax.text(
                        j,
                        i,
                        f"{values[i, j]:.2g}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color=colour,
                    )
    fig.colorbar(image, ax=ax, label=label, shrink=0.8)
    ax.set_title(title, fontsize=9)
    return save(fig, path)


def plot_bars(
    path: Path, labels: Sequence[str], values: Sequence[float], ylabel: str, title: str
) -> Path | None:
    fig, ax = plt.subplots(figsize=(max(4, 0.45 * len(labels) + 2), 3.4))
    ax.bar(range(len(labels)), values, color="#55a868")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    return save(fig, path)


def plot_size_histograms(
    path: Path, labels: torch.Tensor, layers: list[int], n_experts: int, title: str
) -> Path | None:
    """How many neurons each expert holds, per layer (balanced: one bar per layer)."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for row, layer in zip(labels, layers):
        sizes = np.bincount(row.numpy(), minlength=n_experts)
        bins = np.arange(sizes.min() - 0.5, sizes.max() + 1.5)
        ax.hist(sizes, bins=bins, alpha=0.4, label=f"layer {layer}")
    ax.set_xlabel("neurons per expert")
    ax.set_ylabel("experts")
    ax.set_title(title, fontsize=9)
    if len(layers) <= 8:
        ax.legend(fontsize=7)
    return save(fig, path)


def alignment_panels(
    axes: Sequence[Any], frame: pd.DataFrame, statistics: Sequence[str], offset: float = 0.0
) -> None:
    """Mean alignment z per depth third with 95% intervals, one line per clustering."""
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
                label=method,
            )
            ax.set_xticks(range(len(group)), list(group.index))
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_ylabel(f"alignment z ({statistic})")
        ax.legend(fontsize=7)


def plot_alignment_by_depth(path: Path, frame: pd.DataFrame, title: str) -> Path | None:
    """Alignment z by depth third (mean over tasks, 95% interval), per clustering."""
    if frame.empty:
        return None
    statistics = sorted(frame.measure.unique())
    fig, axes = plt.subplots(1, len(statistics), figsize=(4 * len(statistics), 3.4), squeeze=False)
    alignment_panels(axes[0], frame, statistics)
    fig.suptitle(title, fontsize=9)
    return save(fig, path)


def plot_dynamics(path: Path, summary: pd.DataFrame, title: str) -> Path | None:
    """Over training steps: the selectivity effect (mean over tasks, 95% t-interval); each
    task's set overlapping the final and the initial sets (same neuron indices) vs chance;
    and the task x task structure's similarity to the final one (Mantel r)."""
    if summary.empty:
        return None
    x = summary.step.to_numpy()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    ax = axes[0]
    ax.plot(x, summary.effect, "-o", color="C3")
    ax.fill_between(x, summary.effect_low, summary.effect_high, color="C3", alpha=0.2)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_ylabel("effect: task - reference top-1 drop (pp)")
    ax = axes[1]
    for label, colour in (("final", "C0"), ("init", "C2")):
        ax.plot(x, summary[f"jaccard_{label}"], "-o", color=colour, label=f"with {label} set")
        ax.plot(x, summary[f"chance_{label}"], ":", color=colour, label="chance")
    ax.set_ylabel("Jaccard (same neuron indices)")
    ax.legend(fontsize=7)
    ax = axes[2]
    ax.plot(x, summary.mantel_final, "-o", color="C0", label="Mantel r with final structure")
    ax.plot(x, summary.mean_jaccard, "--s", color="C1", label="mean Jaccard between tasks")
    ax.legend(fontsize=7)
    for ax in axes:
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(0, max(float(x.max()), 1.0) * 1.5)  # step 0 (the init) to past the last
        ax.set_xlabel("training step")
    fig.suptitle(title, fontsize=9)
    return save(fig, path)
