"""Writing a run's artefacts (tensors, JSON, tables; each atomically, its checksum in the
run's manifest: :mod:`modularity.infra.artefacts`), and tables for the console and Markdown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors.torch import save_file

from modularity.infra.artefacts import write_atomic
from modularity.infra.optional import parquet_engine


def write_json(path: Path, data: Any) -> Path:
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    plain = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    return write_atomic(path, lambda tmp: save_file(plain, str(tmp)))


def write_csv(path: Path, frame: pd.DataFrame, **options: Any) -> Path:
    return write_atomic(path, lambda tmp: frame.to_csv(tmp, **options))


def write_parquet(path: Path, frame: pd.DataFrame) -> Path:
    engine = parquet_engine()
    return write_atomic(path, lambda tmp: frame.to_parquet(tmp, index=False, engine=engine))


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
