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
