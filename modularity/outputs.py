"""Writing a run's artefacts: tensors, JSON, and tables for the console and Markdown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    return path


def write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path))
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


def format_interval(row: object | None, digits: int = 1) -> str:
    """``+1.2 [+0.4, +2.0]`` for a row with ``value``, ``low``, ``high``; the value alone
    where it has no interval; a dash where it has no value."""
    value = getattr(row, "value", float("nan"))
    if row is None or value != value:
        return "–"
    if row.low != row.low:
        return f"{value:+.{digits}f}"
    return f"{value:+.{digits}f} [{row.low:+.{digits}f}, {row.high:+.{digits}f}]"
