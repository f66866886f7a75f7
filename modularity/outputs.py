"""Writing a run's artefacts: tensors, JSON, CSV and figures, plus the logger hand-off."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path))
    return path


def plot_layer_counts(path: Path, counts: Sequence[int], n_neurons: int, title: str) -> Path:
    """Bar chart of selected neurons per layer."""
    fig, ax = plt.subplots(figsize=(max(4, 0.35 * len(counts) + 2), 3))
    ax.bar(range(len(counts)), counts, color="#4c72b0")
    ax.set_xlabel("layer")
    ax.set_ylabel(f"selected neurons (of {n_neurons})")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def format_table(rows: list[list[str]], header: list[str]) -> str:
    """A plain fixed-width table for the console."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def format_markdown(rows: list[list[str]], header: list[str]) -> str:
    """A GitHub-flavoured Markdown table (pandas' ``to_markdown`` would add a dependency)."""
    line = lambda cells: "| " + " | ".join(str(c) for c in cells) + " |"  # noqa: E731
    return "\n".join([line(header), line(["---"] * len(header)), *map(line, rows)])


def plot_heatmap(
    path: Path, names: Sequence[str], matrix: Any, title: str, label: str, diverging: bool = False
) -> Path:
    """Task x task heatmap with values printed in the cells (readable up to ~20 tasks)."""
    size = max(4.0, 0.45 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    finite = [v for row in matrix for v in row if v == v and abs(v) != float("inf")]
    bound = max((abs(v) for v in finite), default=1.0) or 1.0
    limits = {"vmin": -bound, "vmax": bound} if diverging else {"vmin": 0, "vmax": max(bound, 1e-9)}
    image = ax.imshow(matrix, cmap="RdBu_r" if diverging else "viridis", **limits)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    if len(names) <= 20:
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                ax.text(j, i, f"{value:.2g}", ha="center", va="center", fontsize=6, color="w")
    fig.colorbar(image, ax=ax, label=label, shrink=0.8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_bars(
    path: Path, labels: Sequence[str], values: Sequence[float], ylabel: str, title: str
) -> Path:
    fig, ax = plt.subplots(figsize=(max(4, 0.4 * len(labels) + 2), 3.2))
    ax.bar(range(len(labels)), values, color="#55a868")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
